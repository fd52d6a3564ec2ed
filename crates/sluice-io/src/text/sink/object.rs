//! A sharded sink's job on an object store (`s3://`, `gs://`, `az://`).
//!
//! Object stores have no rename and no directories, so the local sink's commit is made
//! of copies and deletes: every worker writes its file locally, as the local sink does,
//! and uploads it when it closes to a temporary prefix next to the output,
//! `DIR/.temp-sluice-<prefix>-<job id>/`. Nothing under the output's names exists until
//! the commit, which journals its plan in the temporary prefix, moves (copies, then
//! deletes) the earlier run's shards aside into it and the new shards into place. The job
//! then finalises by deleting the temporary prefix; a failed job deletes it too, so it
//! leaves no output. A job killed before its commit leaves only the temporary prefix,
//! which the next run at the same output removes (the journal first undoing a commit it
//! had begun) once the job that made it is known to be dead: its `lock` object names
//! the host and process, and a prefix of another host is taken as dead after a day.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::BoxError;
use sluice_core::error::FileError;
use sluice_core::unit::{JobInfo, SinkBytes, SinkJob, SinkWriter};

use super::{
    JOURNAL, LOCK_FILE, REPLACED, ShardWriter, TEMP_MARK, TextSink, decode_handoff, encode_handoff,
    journal_line,
};
use crate::storage::Bucket;

/// A temporary prefix of another host's job is taken as dead after this long.
const FOREIGN_STALE_SECS: i64 = 24 * 3600;

/// This machine's name, for telling its jobs from other hosts'.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

pub(super) struct ObjectSinkJob {
    sink: TextSink,
    bucket: Arc<Bucket>,
    /// `DIR/.temp-sluice-<prefix>-<job id>`, as a URL.
    temp: PathBuf,
    /// Where workers write their files before uploading them.
    local: PathBuf,
    next_file: AtomicUsize,
    /// Uploaded temporary objects of closed writers, with their worker.
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    /// The moves (copy, then delete) a commit made, in order, for an undo.
    moved: Mutex<Vec<(PathBuf, PathBuf)>>,
    undo_failed: AtomicBool,
    member: bool,
}

impl ObjectSinkJob {
    pub(super) fn begin(
        sink: &TextSink,
        bucket: &Arc<Bucket>,
        job: &JobInfo,
    ) -> Result<ObjectSinkJob, BoxError> {
        let temp = sink
            .dir
            .join(format!("{TEMP_MARK}{}-{}", sink.file_prefix, job.job_id));
        let local = std::env::temp_dir().join(format!(
            "sluice-upload-{}-{}-{}",
            job.job_id,
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&local)
            .map_err(|e| FileError::new("create the local upload directory", &local, e))?;
        let made = ObjectSinkJob {
            sink: sink.clone(),
            bucket: Arc::clone(bucket),
            temp,
            local,
            next_file: AtomicUsize::new(0),
            closed: Arc::default(),
            moved: Mutex::default(),
            undo_failed: AtomicBool::new(false),
            member: job.member,
        };
        if !job.member {
            made.clean_stale();
            // Writing the lock object also checks, before any data moves, that the
            // output location can be written.
            let owner = format!(
                "prefix={}\njob={}\nhost={}\npid={}\n",
                sink.file_prefix,
                job.job_id,
                host_name(),
                std::process::id()
            );
            let lock = made.temp.join(LOCK_FILE);
            if let Err(e) = bucket.put(&lock, owner.into_bytes()) {
                let _ = std::fs::remove_dir_all(&made.local);
                return Err(format!(
                    "transform '{}': cannot write to {}: {e}; check the bucket, the credentials and that they allow writing",
                    sink.transform,
                    sink.dir.display()
                )
                .into());
            }
        }
        Ok(made)
    }

    /// Removes what dead jobs left under this output: their temporary prefixes, after
    /// undoing any commit they had begun.
    fn clean_stale(&self) {
        let Ok(entries) = self.bucket.entries(&self.sink.dir) else {
            return;
        };
        let mark = format!("{TEMP_MARK}{}-", self.sink.file_prefix);
        for name in entries {
            if !name.starts_with(&mark) {
                continue;
            }
            let temp = self.sink.dir.join(&name);
            let Ok(objects) = self.bucket.objects_under(&temp) else {
                continue;
            };
            let newest = objects.iter().map(|(_, t)| *t).max().unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let owner = self
                .bucket
                .get(&temp.join(LOCK_FILE))
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let field = |key: &str| {
                owner.as_deref().and_then(|o| {
                    o.lines()
                        .find_map(|l| l.strip_prefix(key).map(str::to_string))
                })
            };
            // `.temp-sluice-out-…` also begins `.temp-sluice-out-2-…`: only this
            // prefix's own.
            if owner.is_some() && field("prefix=").as_deref() != Some(&self.sink.file_prefix) {
                continue;
            }
            let here = field("host=").is_some_and(|h| h == host_name());
            let alive = match field("pid=") {
                Some(pid) if here => Path::new(&format!("/proc/{pid}")).exists(),
                // No lock yet (a job starting) or another host's: by age.
                _ => {
                    now - newest
                        < if owner.is_none() {
                            60
                        } else {
                            FOREIGN_STALE_SECS
                        }
                }
            };
            if alive {
                continue;
            }
            let job = field("job=").unwrap_or_else(|| "unknown".into());
            if objects.iter().any(|(o, _)| o.ends_with(JOURNAL)) {
                match roll_back(&self.bucket, &temp) {
                    Ok(0) => {}
                    Ok(n) => log::warn!(
                        "job {job} died while committing its output under {}: undid its {n} move(s), so the earlier output is back",
                        self.sink.dir.join(&self.sink.file_prefix).display()
                    ),
                    Err(e) => {
                        log::error!(
                            "job {job} died while committing its output under {}, and undoing its commit failed: {e}; its temporary objects under {} are kept",
                            self.sink.dir.join(&self.sink.file_prefix).display(),
                            temp.display()
                        );
                        continue;
                    }
                }
            }
            match delete_all(&self.bucket, &temp) {
                Ok(n) => log::info!(
                    "removed the {n} temporary object(s) under {} of job {job}, which is no longer running",
                    temp.display()
                ),
                Err(e) => log::warn!(
                    "could not remove the temporary objects under {}: {e}",
                    temp.display()
                ),
            }
        }
    }

    fn closed(&self) -> Vec<(usize, PathBuf)> {
        let mut files = self
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        files.sort();
        files
    }

    /// The temporary objects the commit moves into place, one per shard: the workers'
    /// objects, or — when the shard count is fixed and differs — their records
    /// redivided (downloaded, rewritten as the local sink does, uploaded).
    fn shard_objects(&self) -> Result<Vec<PathBuf>, FileError> {
        let objects: Vec<PathBuf> = self.closed().into_iter().map(|(_, p)| p).collect();
        let wanted = self.sink.options.num_shards.unwrap_or(objects.len().max(1));
        if objects.len() == wanted {
            return Ok(objects);
        }
        let work = self.local.join("redivide");
        std::fs::create_dir_all(&work).map_err(|e| FileError::new("create", &work, e))?;
        let mut files = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let to = work.join(format!("input-{i:05}"));
            self.bucket
                .download(object, &to)
                .map_err(|e| FileError::new("download", object, e))?;
            files.push(to);
        }
        let local_shards = self.sink.redivide(&files, wanted, &work)?;
        let mut shards = Vec::new();
        for (i, local) in local_shards.iter().enumerate() {
            let url = self.temp.join(format!("shard-{i:05}"));
            self.bucket
                .upload(local, &url)
                .map_err(|e| FileError::new("upload", &url, e))?;
            shards.push(url);
        }
        for object in &objects {
            self.bucket
                .delete(object)
                .map_err(|e| FileError::new("delete", object, e))?;
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(shards)
    }

    /// Moves `from` to `to` (copy, then delete), noting it for an undo.
    fn move_object(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        move_object(&self.bucket, from, to)?;
        self.moved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    /// Journals, then makes, the moves of the commit.
    fn publish(&self, shards: &[PathBuf]) -> Result<(), FileError> {
        let count = shards.len();
        let aside = self.temp.join(REPLACED);
        let mut plan = Vec::new();
        let existing = self
            .bucket
            .entries(&self.sink.dir)
            .map_err(|e| FileError::new("list", &self.sink.dir, e))?;
        let mut earlier: Vec<&String> =
            existing.iter().filter(|n| self.sink.is_output(n)).collect();
        earlier.sort();
        for name in earlier {
            plan.push((self.sink.dir.join(name), aside.join(name)));
        }
        for (i, temp) in shards.iter().enumerate() {
            plan.push((temp.clone(), self.sink.shard_path(i, count)));
        }
        let mut journal = String::new();
        for (from, to) in &plan {
            journal.push_str(&journal_line(from, to)?);
        }
        let journal_url = self.temp.join(JOURNAL);
        self.bucket
            .put(&journal_url, journal.into_bytes())
            .map_err(|e| FileError::new("write", &journal_url, e))?;
        for (from, to) in &plan {
            if to.starts_with(&aside) {
                log::info!("replacing {} from an earlier run", from.display());
            }
            self.move_object(from, to)?;
        }
        Ok(())
    }
}

/// Copies `from` to `to`, then deletes `from`.
fn move_object(bucket: &Bucket, from: &Path, to: &Path) -> Result<(), FileError> {
    bucket
        .copy(from, to)
        .map_err(|e| FileError::new(format!("copy {} to", from.display()), to, e))?;
    bucket
        .delete(from)
        .map_err(|e| FileError::new("delete", from, e))
}

/// Deletes every object under `dir`; returns how many there were.
fn delete_all(bucket: &Bucket, dir: &Path) -> std::io::Result<usize> {
    let objects = bucket.objects_under(dir)?;
    for (object, _) in &objects {
        bucket.delete(object)?;
    }
    Ok(objects.len())
}

/// Undoes the moves a commit journal under `temp` lists, last first: a move that
/// finished is reversed; one that copied but did not delete loses its copy. Returns how
/// many moves were reversed.
fn roll_back(bucket: &Bucket, temp: &Path) -> Result<usize, FileError> {
    let journal_url = temp.join(JOURNAL);
    let Some(text) = bucket
        .get(&journal_url)
        .map_err(|e| FileError::new("read", &journal_url, e))?
    else {
        return Ok(0);
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let exists = |url: &Path| -> Result<bool, FileError> {
        Ok(bucket
            .get(url)
            .map_err(|e| FileError::new("read", url, e))?
            .is_some())
    };
    let mut undone = 0;
    for line in text.lines().rev() {
        let Some((from, to)) = line.split_once('\t') else {
            continue;
        };
        let (from, to) = (Path::new(from), Path::new(to));
        if exists(from)? {
            bucket
                .delete(to)
                .map_err(|e| FileError::new("delete", to, e))?;
        } else if exists(to)? {
            move_object(bucket, to, from)?;
            undone += 1;
        }
    }
    bucket
        .delete(&journal_url)
        .map_err(|e| FileError::new("delete", &journal_url, e))?;
    Ok(undone)
}

impl SinkJob for ObjectSinkJob {
    fn open(&self, worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let name = format!("worker-{worker:05}-{n:05}");
        let path = self.local.join(&name);
        let out = self.sink.shard_writer(&path)?;
        Ok(Box::new(ObjectWriter {
            bucket: Arc::clone(&self.bucket),
            closed: Arc::clone(&self.closed),
            worker,
            path,
            url: self.temp.join(name),
            out,
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let shards = self.shard_objects()?;
        let count = shards.len();
        if let Err(e) = self.publish(&shards) {
            if let Err(undo) = self.undo() {
                return Err(
                    format!("{e}; undoing the moves made so far failed too: {undo}").into(),
                );
            }
            return Err(e.into());
        }
        Ok(self.sink.committed(count))
    }

    fn undo(&self) -> Result<(), BoxError> {
        let moved = std::mem::take(&mut *self.moved.lock().unwrap_or_else(PoisonError::into_inner));
        let mut failures = Vec::new();
        for (from, to) in moved.into_iter().rev() {
            if let Err(e) = move_object(&self.bucket, &to, &from) {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            let journal = self.temp.join(JOURNAL);
            self.bucket
                .delete(&journal)
                .map_err(|e| FileError::new("delete", &journal, e))?;
            return Ok(());
        }
        self.undo_failed.store(true, Ordering::Release);
        Err(format!(
            "could not undo the commit of '{}': {}; the earlier output that could not be put back is kept under {}",
            self.sink.transform,
            failures.join("; "),
            self.temp.join(REPLACED).display()
        )
        .into())
    }

    fn finalize(&self) {
        self.moved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Deleting the journal makes the commit final; the rest is cleaning up.
        let journal = self.temp.join(JOURNAL);
        if let Err(e) = self.bucket.delete(&journal) {
            log::warn!("could not delete {}: {e}", journal.display());
        }
        if let Err(e) = delete_all(&self.bucket, &self.temp) {
            log::warn!(
                "could not delete the temporary objects under {}: {e}",
                self.temp.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.local);
    }

    fn handoff(&self) -> Result<Vec<u8>, BoxError> {
        let closed =
            std::mem::take(&mut *self.closed.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = std::fs::remove_dir_all(&self.local);
        encode_handoff(closed)
    }

    fn adopt(&self, handoff: &[u8]) -> Result<(), BoxError> {
        let adopted = decode_handoff(handoff, &self.temp, "temporary prefix")?;
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(adopted);
        Ok(())
    }

    fn abort(&self) {
        let _ = std::fs::remove_dir_all(&self.local);
        if self.member {
            // The launcher removes the job's temporary objects.
            return;
        }
        if self.undo_failed.load(Ordering::Acquire) {
            log::error!(
                "the earlier output of '{}' that could not be put back is under {}",
                self.sink.transform,
                self.temp.join(REPLACED).display()
            );
            return;
        }
        if let Err(e) = delete_all(&self.bucket, &self.temp) {
            log::warn!(
                "could not delete the temporary objects under {}: {e}",
                self.temp.display()
            );
        }
    }
}

struct ObjectWriter {
    bucket: Arc<Bucket>,
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    worker: usize,
    path: PathBuf,
    url: PathBuf,
    out: Box<dyn ShardWriter>,
}

impl SinkWriter for ObjectWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        self.out
            .write(&bundle.bytes)
            .map_err(|e| FileError::new("write", &self.path, e).into())
    }

    fn close(self: Box<Self>) -> Result<(), BoxError> {
        let ObjectWriter {
            bucket,
            closed,
            worker,
            path,
            url,
            out,
        } = *self;
        drop(
            out.finish()
                .map_err(|e| FileError::new("write", &path, e))?,
        );
        bucket
            .upload(&path, &url)
            .map_err(|e| FileError::new("upload", &url, e))?;
        let _ = std::fs::remove_file(&path);
        closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((worker, url));
        Ok(())
    }
}
