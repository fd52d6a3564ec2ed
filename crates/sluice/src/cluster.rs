//! The cluster runner: one job run by several processes of the same binary, connected
//! over TCP by the engine (`--runner=ClusterRunner --num_workers=N --worker_threads=T`).
//!
//! The process the user starts is the *launcher*: it builds the pipeline as any run
//! does, prepares the sinks' temporary output, and starts N worker processes of its own
//! binary with its own arguments plus the flags of their role (index, peers, job id,
//! where to report, the plan's hash). Each worker runs `main` again up to `run()`,
//! checks that it built the same plan, runs its share of the job — its splits of every
//! source, the keys that hash to its threads — writes its report (metrics, failure, the
//! files its sinks wrote) and exits. The launcher waits for them all and commits the
//! sinks once, if every worker succeeded; a worker that failed or died fails the job
//! (the others are stopped), and nothing is committed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_plan::{ExecutionGraph, PipelineGraph};
use sluice_runtime::job::{self, JobError, JobOutcome};
use sluice_runtime::{ClusterConfig, RunnerConfig};

use crate::error::{Error, Result};
use crate::options::{OptionsError, PipelineOptions, WorkerRole};

/// The hash every process of a job must agree on: the optimised plan as JSON, and the
/// binary that runs it.
pub(crate) fn plan_hash(description: &serde_json::Value) -> String {
    let plan = serde_json::to_string(description).unwrap_or_default();
    let binary = std::env::current_exe()
        .and_then(std::fs::read)
        .map(|bytes| xxhash_rust::xxh3::xxh3_64(&bytes))
        .unwrap_or(0);
    format!(
        "{:016x}-{binary:016x}",
        xxhash_rust::xxh3::xxh3_64(plan.as_bytes())
    )
}

/// Runs this worker process's part of a cluster job, reports to the launcher, and ends
/// the process.
pub(crate) fn run_member(
    pipeline: Arc<PipelineGraph>,
    plan: Arc<ExecutionGraph>,
    mut config: RunnerConfig,
    role: &WorkerRole,
    hash: &str,
) -> ! {
    config.cluster = Some(ClusterConfig {
        process: role.index,
        addresses: role.peers.clone(),
    });
    let nothing = Vec::new();
    match &role.plan_hash {
        Some(expected) if expected != hash => {
            let mismatch = JobError::Worker {
                process: role.index,
                message: format!(
                    "built a different plan or runs a different binary: its plan hash is {hash}, the launcher's {expected}; \
                     start every worker with the same binary and the same flags"
                ),
            };
            write_report(
                role,
                job::member_report(job::PartOutcome::failed(mismatch), &nothing),
            )
        }
        _ => match job::begin_sinks(&pipeline, &config.job_id, true) {
            Ok(sinks) => {
                let part = job::run_part(pipeline.clone(), plan, config, &sinks);
                write_report(role, job::member_report(part, &sinks))
            }
            Err(error) => write_report(
                role,
                job::member_report(job::PartOutcome::failed(error), &nothing),
            ),
        },
    }
}

/// Writes a member's report where the launcher reads it, and ends the process: exit
/// code 0 if its part succeeded, 2 if the report says it failed (so that the launcher
/// stops the other workers, which may be waiting for this one), 1 if it could not
/// report.
fn write_report(role: &WorkerRole, (bytes, ok): (Vec<u8>, bool)) -> ! {
    let code = match &role.report {
        Some(path) => match std::fs::write(path, &bytes) {
            Ok(()) if ok => 0,
            Ok(()) => 2,
            Err(e) => {
                log::error!(
                    "worker {}: cannot write its report to {}: {e}",
                    role.index,
                    path.display()
                );
                1
            }
        },
        None => {
            log::error!(
                "worker {}: no --sluice_report path to report to",
                role.index
            );
            1
        }
    };
    std::process::exit(code)
}

/// Picks `n` free ports on the loopback interface.
fn free_addresses(n: usize) -> std::io::Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect()
}

/// A started worker process.
struct Worker {
    child: Child,
    report: PathBuf,
    exited: Option<std::process::ExitStatus>,
    /// Killed by the launcher because another worker failed.
    stopped: bool,
}

/// Starts the worker processes, waits for them, and commits the job's output if all
/// succeeded.
pub(crate) fn launch(
    pipeline: Arc<PipelineGraph>,
    plan: Arc<ExecutionGraph>,
    config: &RunnerConfig,
    options: &PipelineOptions,
    hash: &str,
) -> Result<JobOutcome> {
    let started = Instant::now();
    let processes = options.num_workers.max(1);
    let threads = config.workers;
    let workers = processes * threads;
    let sinks = match job::begin_sinks(&pipeline, &config.job_id, false) {
        Ok(sinks) => sinks,
        Err(error) => {
            return Ok(job::finish_cluster(
                &pipeline,
                &plan,
                workers,
                &Vec::new(),
                vec![(0, Err(error.to_string()))],
                started,
            ));
        }
    };
    let binary = match &options.worker_binary {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe().map_err(|e| {
            Error::from(OptionsError::Invalid {
                flag: "worker_binary".into(),
                value: String::new(),
                expected: format!("a worker binary (this program's path is unknown: {e})"),
            })
        })?,
    };
    let addresses = free_addresses(processes).map_err(|e| {
        Error::from(OptionsError::Invalid {
            flag: "num_workers".into(),
            value: processes.to_string(),
            expected: format!("as many free ports on 127.0.0.1 ({e})"),
        })
    })?;
    let passed: Vec<&String> = options
        .args
        .iter()
        .filter(|a| !a.starts_with("--sluice_"))
        .collect();
    log::info!(
        "job {}: starting {processes} worker processes of {} with {threads} thread{} each, at {}",
        config.job_id,
        binary.display(),
        if threads == 1 { "" } else { "s" },
        addresses.join(", ")
    );
    let mut running: Vec<Worker> = Vec::with_capacity(processes);
    for index in 0..processes {
        let report =
            std::env::temp_dir().join(format!("sluice-{}-worker-{index}.report", config.job_id));
        let _ = std::fs::remove_file(&report);
        let spawned = Command::new(&binary)
            .args(&passed)
            .arg(format!("--worker_threads={threads}"))
            .arg(format!("--sluice_worker_index={index}"))
            .arg(format!("--sluice_peers={}", addresses.join(",")))
            .arg(format!("--sluice_job_id={}", config.job_id))
            .arg(format!("--sluice_report={}", report.display()))
            .arg(format!("--sluice_plan_hash={hash}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(child) => running.push(Worker {
                child,
                report,
                exited: None,
                stopped: false,
            }),
            Err(e) => {
                stop(&mut running);
                for (_, sink) in &sinks {
                    sink.abort();
                }
                return Err(OptionsError::Invalid {
                    flag: "worker_binary".into(),
                    value: binary.display().to_string(),
                    expected: format!("a binary that can be started ({e})"),
                }
                .into());
            }
        }
    }
    let first_failed = wait_all(&mut running, &config.cancel);
    let mut members: Vec<(usize, std::result::Result<Vec<u8>, String>)> = running
        .iter()
        .enumerate()
        .map(|(index, w)| {
            let report = std::fs::read(&w.report);
            let _ = std::fs::remove_file(&w.report);
            let member = match (report, w.exited) {
                (Ok(bytes), Some(_)) => Ok(bytes),
                (_, Some(_)) if first_failed.is_some_and(|f| f != index) && w.stopped => {
                    Err(format!(
                        "stopped by the launcher after worker process {} failed",
                        first_failed.unwrap_or_default()
                    ))
                }
                (_, Some(status)) => {
                    Err(format!("its process ended with {status} without a report"))
                }
                (_, None) => Err("its process did not end".to_string()),
            };
            (index, member)
        })
        .collect();
    // The worker that failed first is the job's failure.
    if let Some(first) = first_failed {
        members.sort_by_key(|(index, _)| *index != first);
    }
    Ok(job::finish_cluster(
        &pipeline, &plan, workers, &sinks, members, started,
    ))
}

/// Waits for every worker process; returns the first that failed. When one fails the
/// others are stopped (they may be waiting for it: a cluster job is fail-stop); when the
/// launcher is asked to cancel, each worker is told to cancel its part.
fn wait_all(running: &mut [Worker], cancel: &std::sync::atomic::AtomicUsize) -> Option<usize> {
    let mut forwarded = false;
    loop {
        let mut failed = None;
        for (index, w) in running.iter_mut().enumerate() {
            if w.exited.is_some() {
                continue;
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                w.exited = Some(status);
                if !status.success() {
                    failed.get_or_insert(index);
                }
            }
        }
        if let Some(index) = failed {
            if running.iter().any(|w| w.exited.is_none()) {
                log::error!("worker process {index} failed: stopping the others");
                stop(running);
            }
            return Some(index);
        }
        if running.iter().all(|w| w.exited.is_some()) {
            return None;
        }
        let signal = cancel.load(Ordering::SeqCst);
        if signal != 0 && !forwarded {
            // Cancelled by a signal: every worker cancels its part as the launcher does.
            forwarded = true;
            for w in running.iter().filter(|w| w.exited.is_none()) {
                if let Some(pid) = rustix::process::Pid::from_raw(w.child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the worker processes still running and waits for them.
fn stop(running: &mut [Worker]) {
    for w in running.iter_mut().filter(|w| w.exited.is_none()) {
        let _ = w.child.kill();
        w.exited = w.child.wait().ok();
        w.stopped = true;
    }
}
