//! The job store: job records and their messages in an embedded SQLite database,
//! write-ahead logged, so that a restarted service loses nothing.
//!
//! A job record is the Dataflow-shaped Job JSON (`id`, `name`, `type`, `currentState`,
//! `createTime`, `pipelineDescription`, `metrics`, ...) plus what the service needs to run
//! it (arguments, binary, its hash, the process's id). Lists are ordered newest first by
//! an insertion sequence and paginated by it, so thousands of jobs stay fast.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// A store error: the database failed or holds something unreadable.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct StoreError(String);

impl StoreError {
    /// A job that should exist does not.
    pub fn missing(id: &str) -> StoreError {
        StoreError(format!("no job with id {id}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Which jobs a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// Jobs not yet in a terminal state.
    Active,
    /// Jobs in a terminal state.
    Terminated,
    /// Every job.
    All,
}

pub use sluice_client::{TERMINAL_STATES as TERMINAL, is_terminal};

/// A job as the service keeps it.
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// The Job JSON.
    pub job: Value,
    /// The arguments the job's process runs with.
    pub args: Vec<String>,
    /// The binary that runs it.
    pub binary: String,
    /// The binary's hash when submitted.
    pub binary_hash: String,
    /// The working directory the job was submitted from.
    pub dir: String,
    /// The job's process, while the service runs it.
    pub pid: Option<u32>,
}

impl JobRecord {
    /// The job's id.
    pub fn id(&self) -> &str {
        self.job["id"].as_str().unwrap_or_default()
    }

    /// The job's current state.
    pub fn state(&self) -> &str {
        self.job["currentState"].as_str().unwrap_or_default()
    }
}

/// A job message (Dataflow's `JobMessage`).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// When, RFC 3339.
    pub time: String,
    /// `JOB_MESSAGE_DEBUG|DETAILED|BASIC|WARNING|ERROR`.
    pub importance: String,
    /// The text.
    pub text: String,
}

/// How important a message importance is (higher is more).
pub fn importance_rank(importance: &str) -> u8 {
    match importance {
        "JOB_MESSAGE_DEBUG" => 0,
        "JOB_MESSAGE_DETAILED" => 1,
        "JOB_MESSAGE_BASIC" => 2,
        "JOB_MESSAGE_WARNING" => 3,
        "JOB_MESSAGE_ERROR" => 4,
        _ => 2,
    }
}

/// The job store.
pub struct Store {
    db: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                state TEXT NOT NULL,
                job TEXT NOT NULL,
                args TEXT NOT NULL,
                binary TEXT NOT NULL,
                binary_hash TEXT NOT NULL,
                dir TEXT NOT NULL,
                pid INTEGER
            );
            CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
            CREATE TABLE IF NOT EXISTS messages (
                job_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                time TEXT NOT NULL,
                importance TEXT NOT NULL,
                rank INTEGER NOT NULL,
                text TEXT NOT NULL,
                PRIMARY KEY (job_id, seq)
            );",
        )?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a job; fails if its id exists.
    pub fn insert(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO jobs (id, state, job, args, binary, binary_hash, dir, pid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.id(),
                record.state(),
                record.job.to_string(),
                serde_json::to_string(&record.args)?,
                record.binary,
                record.binary_hash,
                record.dir,
                record.pid,
            ],
        )?;
        Ok(())
    }

    fn row(
        row: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(String, String, String, String, String, Option<u32>)> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    fn record(
        (job, args, binary, binary_hash, dir, pid): (
            String,
            String,
            String,
            String,
            String,
            Option<u32>,
        ),
    ) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            job: serde_json::from_str(&job)?,
            args: serde_json::from_str(&args)?,
            binary,
            binary_hash,
            dir,
            pid,
        })
    }

    /// The job `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .db()
            .query_row(
                "SELECT job, args, binary, binary_hash, dir, pid FROM jobs WHERE id = ?1",
                params![id],
                Self::row,
            )
            .optional()?;
        row.map(Self::record).transpose()
    }

    /// Applies `change` to the job `id`'s JSON and stores it; returns the new record.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut JobRecord),
    ) -> Result<Option<JobRecord>, StoreError> {
        let db = self.db();
        let row = db
            .query_row(
                "SELECT job, args, binary, binary_hash, dir, pid FROM jobs WHERE id = ?1",
                params![id],
                Self::row,
            )
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut record = Self::record(row)?;
        change(&mut record);
        db.execute(
            "UPDATE jobs SET state = ?2, job = ?3, pid = ?4 WHERE id = ?1",
            params![id, record.state(), record.job.to_string(), record.pid],
        )?;
        Ok(Some(record))
    }

    /// Jobs newest first: at most `page_size` after the page token (a sequence number),
    /// and the token of the next page if there is one.
    pub fn list(
        &self,
        filter: StateFilter,
        page_size: usize,
        page_token: Option<i64>,
    ) -> Result<(Vec<JobRecord>, Option<i64>), StoreError> {
        let terminal = TERMINAL
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let condition = match filter {
            StateFilter::Active => format!("state NOT IN ({terminal})"),
            StateFilter::Terminated => format!("state IN ({terminal})"),
            StateFilter::All => "1 = 1".into(),
        };
        let db = self.db();
        let mut statement = db.prepare(&format!(
            "SELECT seq, job, args, binary, binary_hash, dir, pid FROM jobs
             WHERE {condition} AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
        ))?;
        let rows = statement.query_map(
            params![page_token.unwrap_or(i64::MAX), page_size as i64 + 1],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    (
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    ),
                ))
            },
        )?;
        let mut jobs = Vec::new();
        let mut next = None;
        for row in rows {
            let (seq, row) = row?;
            if jobs.len() == page_size {
                next = Some(seq + 1);
                break;
            }
            jobs.push(Self::record(row)?);
        }
        Ok((jobs, next))
    }

    /// Adds messages to the job `id`.
    pub fn add_messages(&self, id: &str, messages: &[Message]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let next: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE job_id = ?1",
            params![id],
            |row| row.get(0),
        )?;
        for (i, m) in messages.iter().enumerate() {
            tx.execute(
                "INSERT INTO messages (job_id, seq, time, importance, rank, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, next + 1 + i as i64, m.time, m.importance, importance_rank(&m.importance), m.text],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The job's messages at `minimum` importance or above, oldest first: at most
    /// `page_size` after the page token, and the next page's token.
    pub fn messages(
        &self,
        id: &str,
        minimum: &str,
        page_size: usize,
        page_token: Option<i64>,
    ) -> Result<MessagePage, StoreError> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT seq, time, importance, text FROM messages
             WHERE job_id = ?1 AND rank >= ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )?;
        let rows = statement.query_map(
            params![
                id,
                importance_rank(minimum),
                page_token.unwrap_or(0),
                page_size as i64 + 1
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    Message {
                        time: row.get(1)?,
                        importance: row.get(2)?,
                        text: row.get(3)?,
                    },
                ))
            },
        )?;
        let mut out = Vec::new();
        let mut next = None;
        let mut last = page_token.unwrap_or(0);
        for row in rows {
            let (seq, message) = row?;
            if out.len() == page_size {
                next = Some(last);
                break;
            }
            last = seq;
            out.push(message);
        }
        Ok(MessagePage {
            messages: out,
            next,
            last,
        })
    }
}

/// A page of a job's messages.
#[derive(Debug)]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// The token of the next page, if there are more messages now.
    pub next: Option<i64>,
    /// The token that follows the last message returned: messages added later come
    /// after it (for following a running job).
    pub last: i64,
}

/// A message as JSON, as Dataflow's API shows it.
pub fn message_json(m: &Message) -> Value {
    json!({"time": m.time, "messageImportance": m.importance, "messageText": m.text})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, state: &str) -> JobRecord {
        JobRecord {
            job: json!({"id": id, "name": "wc", "currentState": state}),
            args: vec!["--input=x".into()],
            binary: "/bin/wordcount".into(),
            binary_hash: "h".into(),
            dir: "/".into(),
            pid: None,
        }
    }

    #[test]
    fn jobs_list_newest_first_by_state_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("jobs.db")).unwrap();
        for i in 0..5 {
            let state = if i % 2 == 0 {
                "JOB_STATE_DONE"
            } else {
                "JOB_STATE_RUNNING"
            };
            store.insert(&record(&format!("j{i}"), state)).unwrap();
        }
        let (page, next) = store.list(StateFilter::All, 2, None).unwrap();
        assert_eq!(
            page.iter().map(JobRecord::id).collect::<Vec<_>>(),
            ["j4", "j3"]
        );
        let (page, next) = store.list(StateFilter::All, 2, next).unwrap();
        assert_eq!(
            page.iter().map(JobRecord::id).collect::<Vec<_>>(),
            ["j2", "j1"]
        );
        let (page, next) = store.list(StateFilter::All, 2, next).unwrap();
        assert_eq!(page.iter().map(JobRecord::id).collect::<Vec<_>>(), ["j0"]);
        assert_eq!(next, None);
        let (active, _) = store.list(StateFilter::Active, 10, None).unwrap();
        assert_eq!(
            active.iter().map(JobRecord::id).collect::<Vec<_>>(),
            ["j3", "j1"]
        );
        store
            .update("j3", |r| {
                r.job["currentState"] = json!("JOB_STATE_CANCELLED")
            })
            .unwrap();
        let (done, _) = store.list(StateFilter::Terminated, 10, None).unwrap();
        assert_eq!(done.len(), 4);
        assert!(
            store.insert(&record("j0", "JOB_STATE_DONE")).is_err(),
            "ids are unique"
        );
    }

    #[test]
    fn messages_page_by_importance_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        {
            let store = Store::open(&path).unwrap();
            store.insert(&record("j", "JOB_STATE_RUNNING")).unwrap();
            let messages: Vec<Message> = (0..5)
                .map(|i| Message {
                    time: format!("t{i}"),
                    importance: if i % 2 == 0 {
                        "JOB_MESSAGE_WARNING"
                    } else {
                        "JOB_MESSAGE_BASIC"
                    }
                    .into(),
                    text: format!("m{i}"),
                })
                .collect();
            store.add_messages("j", &messages).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let first = store.messages("j", "JOB_MESSAGE_WARNING", 2, None).unwrap();
        let texts = |page: &MessagePage| {
            page.messages
                .iter()
                .map(|m| m.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&first), ["m0", "m2"]);
        let rest = store
            .messages("j", "JOB_MESSAGE_WARNING", 2, first.next)
            .unwrap();
        assert_eq!(texts(&rest), ["m4"]);
        assert_eq!(rest.next, None);
        // Following: nothing new after the last message, then what is added.
        let none = store
            .messages("j", "JOB_MESSAGE_WARNING", 2, Some(rest.last))
            .unwrap();
        assert!(none.messages.is_empty());
        assert_eq!(none.last, rest.last);
        store
            .add_messages(
                "j",
                &[Message {
                    time: "t5".into(),
                    importance: "JOB_MESSAGE_ERROR".into(),
                    text: "m5".into(),
                }],
            )
            .unwrap();
        let later = store
            .messages("j", "JOB_MESSAGE_WARNING", 2, Some(rest.last))
            .unwrap();
        assert_eq!(texts(&later), ["m5"]);
        let all = store.messages("j", "JOB_MESSAGE_DEBUG", 100, None).unwrap();
        assert_eq!(all.messages.len(), 6);
        assert!(store.get("j").unwrap().is_some());
    }
}
