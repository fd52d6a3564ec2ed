//! Starting and watching the processes of submitted jobs.
//!
//! A submitted job runs as its own binary with its own arguments, plus
//! `--sluice_service_job=<id>` and `--service_url`: it runs on the runner its flags name
//! (embedded or cluster) and reports to the service every second. Its standard error goes
//! to `logs/<id>.log` in the data directory. The service notices when the process ends:
//! a job whose process ended without reporting its end is failed with the exit status
//! and the last lines of its log. After a restart the service re-attaches to the jobs
//! whose processes still run (they go on reporting) and fails those whose processes are
//! gone. A cancel that the job does not act on within [`CANCEL_GRACE`] kills its
//! process.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::Service;
use crate::api::{ApiError, now};
use crate::store::{JobRecord, Message, StateFilter, is_terminal};

/// How long a job may take to act on a cancel before its process is killed.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// The processes this service started.
#[derive(Default)]
pub struct Supervisor {
    children: Mutex<HashMap<String, Child>>,
}

fn log_path(service: &Service, id: &str) -> std::path::PathBuf {
    service.data_dir.join("logs").join(format!("{id}.log"))
}

/// Marks a job failed (unless it has ended) with `reason`, and adds the reason and the
/// last lines of its log as error messages.
fn fail(service: &Service, id: &str, reason: &str) {
    let mut messages = vec![Message {
        time: now(),
        importance: "JOB_MESSAGE_ERROR".into(),
        text: reason.to_string(),
    }];
    if let Ok(log) = std::fs::read_to_string(log_path(service, id)) {
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            messages.push(Message {
                time: now(),
                importance: "JOB_MESSAGE_DETAILED".into(),
                text: format!("log: {line}"),
            });
        }
    }
    let updated = service.store.update(id, |r| {
        if !is_terminal(r.state()) {
            let cancelled = r.job["requestedState"] == "JOB_STATE_CANCELLED";
            r.job["currentState"] = json!(if cancelled {
                "JOB_STATE_CANCELLED"
            } else {
                "JOB_STATE_FAILED"
            });
            r.job["currentStateTime"] = json!(now());
            if !cancelled {
                r.job["failureMessage"] = json!(reason);
            }
        }
    });
    if let Err(e) = updated.and_then(|_| service.store.add_messages(id, &messages)) {
        log::error!("job {id}: {e}");
    }
}

/// Starts the process of job `id`; returns its record.
pub fn start(service: &Arc<Service>, id: &str) -> Result<JobRecord, ApiError> {
    let record = service
        .store
        .get(id)?
        .ok_or_else(|| ApiError::from(crate::store::StoreError::missing(id)))?;
    // The binary must be the one submitted: a rebuilt or replaced binary may build
    // another pipeline, or read its data differently.
    match sluice_client::binary_hash(std::path::Path::new(&record.binary)) {
        Ok(hash) => {
            if hash != record.binary_hash {
                fail(
                    service,
                    id,
                    &format!(
                        "the binary {} changed since the job was submitted (hash {hash}, submitted {}); submit the job again",
                        record.binary, record.binary_hash
                    ),
                );
                return Ok(service.store.get(id)?.unwrap_or(record));
            }
        }
        Err(e) => {
            fail(
                service,
                id,
                &format!("cannot read the job's binary {}: {e}", record.binary),
            );
            return Ok(service.store.get(id)?.unwrap_or(record));
        }
    }
    let log = std::fs::File::create(log_path(service, id));
    let stderr = match log {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    };
    let spawned = Command::new(&record.binary)
        .args(&record.args)
        .arg(format!("--sluice_service_job={id}"))
        .arg(format!("--service_url={}", service.url))
        .env("SLUICE_TOKEN", &service.token)
        .current_dir(&record.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    match spawned {
        Ok(child) => {
            let pid = child.id();
            // For operators (and tests) who need to find the job's process.
            let _ = std::fs::write(
                service.data_dir.join("logs").join(format!("{id}.pid")),
                format!("{pid}\n"),
            );
            service
                .supervisor
                .children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_string(), child);
            Ok(service
                .store
                .update(id, |r| r.pid = Some(pid))?
                .unwrap_or(record))
        }
        Err(e) => {
            fail(service, id, &format!("cannot start {}: {e}", record.binary));
            Ok(service.store.get(id)?.unwrap_or(record))
        }
    }
}

/// Whether process `pid` runs.
fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// After a (re)start: jobs left active by a previous run are re-attached if their
/// process still runs, failed otherwise.
pub fn reattach(service: &Arc<Service>) {
    let mut token = None;
    loop {
        let Ok((jobs, next)) = service.store.list(StateFilter::Active, 500, token) else {
            return;
        };
        for job in jobs {
            match job.pid {
                Some(pid) if alive(pid) => {
                    log::info!("re-attached to job {} (process {pid})", job.id());
                }
                _ => fail(
                    service,
                    job.id(),
                    "the service restarted, and the job's process had ended without reporting its end",
                ),
            }
        }
        match next {
            Some(next) => token = Some(next),
            None => return,
        }
    }
}

/// Watches the jobs' processes twice a second.
pub async fn watch(service: Arc<Service>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let shared = service.clone();
        let _ = tokio::task::spawn_blocking(move || check(&shared)).await;
    }
}

fn seconds_since(rfc3339: &serde_json::Value) -> Option<f64> {
    let when = time::OffsetDateTime::parse(
        rfc3339.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some((time::OffsetDateTime::now_utc() - when).as_seconds_f64())
}

/// One round of watching: ended processes, unanswered cancels, re-attached processes
/// that died.
fn check(service: &Arc<Service>) {
    let mut ended = Vec::new();
    {
        let mut children = service
            .supervisor
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        children.retain(|id, child| match child.try_wait() {
            Ok(Some(status)) => {
                ended.push((id.clone(), status.to_string()));
                false
            }
            _ => true,
        });
    }
    for (id, status) in ended {
        let state = service
            .store
            .get(&id)
            .ok()
            .flatten()
            .map(|r| r.state().to_string());
        if state.as_deref().is_some_and(|s| !is_terminal(s)) {
            fail(
                service,
                &id,
                &format!("the job's process ended ({status}) before reporting its end"),
            );
        }
    }
    let Ok((active, _)) = service.store.list(StateFilter::Active, 1000, None) else {
        return;
    };
    for job in active {
        let id = job.id().to_string();
        let ours = service
            .supervisor
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id);
        if !ours && job.pid.is_some_and(|pid| !alive(pid)) {
            fail(service, &id, "the job's process is gone");
            continue;
        }
        let cancelling = job.state() == "JOB_STATE_CANCELLING";
        let waited = seconds_since(&job.job["currentStateTime"]).unwrap_or(0.0);
        if cancelling && waited > CANCEL_GRACE.as_secs_f64() {
            if let Some(mut child) = service
                .supervisor
                .children
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id)
            {
                let _ = child.kill();
                let _ = child.wait();
            } else if let Some(pid) = job
                .pid
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            fail(
                service,
                &id,
                &format!(
                    "the job did not act on the cancel within {} s; its process was killed",
                    CANCEL_GRACE.as_secs()
                ),
            );
        }
    }
}
