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
        .and_then(|exe| sluice_client::binary_hash(&exe))
        .unwrap_or_else(|_| format!("{:016x}", 0));
    format!(
        "{:016x}-{binary}",
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
    startup_secs: f64,
) -> ! {
    let cluster = ClusterConfig::new(role.index, role.peers.clone());
    // Test hook (built only for sluice's own tests): this worker hangs on the first
    // attempt, sending no heartbeat.
    #[cfg(feature = "test-hooks")]
    if role.attempt <= 1 && options_hang(role.index) {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    if let Some(path) = role.heartbeat.clone() {
        let steps = config.steps.clone();
        let startup = Duration::from_secs_f64(startup_secs);
        std::thread::spawn(move || heartbeat(&path, &steps, startup));
    }
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
        _ => {
            // The workers connect and exchange their plan hashes among themselves too,
            // before any data moves. A connection that cannot be made (a port taken
            // since the launcher chose it) leaves no report: the launcher takes the
            // worker for lost and runs the job again on other ports.
            if let Err(message) = cluster.join(hash, &config.job_id) {
                log::error!("worker process {}: {message}", role.index);
                std::process::exit(3);
            }
            config.cluster = Some(cluster);
            run_member_part(pipeline, plan, config, role)
        }
    }
}

/// Runs a member's part once connected, reports, and ends the process.
fn run_member_part(
    pipeline: Arc<PipelineGraph>,
    plan: Arc<ExecutionGraph>,
    config: RunnerConfig,
    role: &WorkerRole,
) -> ! {
    match job::begin_sinks(&pipeline, &config.job_id, true) {
        Ok(sinks) => {
            let part = job::run_part(pipeline.clone(), plan, config, &sinks);
            write_report(role, job::member_report(part, &sinks))
        }
        Err(error) => write_report(
            role,
            job::member_report(job::PartOutcome::failed(error), &Vec::new()),
        ),
    }
}

/// Touches `path` every second while the engine makes progress — or, for at most
/// `startup`, before it starts (connecting to its peers) — so that the launcher can tell
/// a hung worker, or one that never connects, from a busy one.
fn heartbeat(path: &std::path::Path, steps: &std::sync::atomic::AtomicU64, startup: Duration) {
    let born = Instant::now();
    let mut last = 0;
    loop {
        let now = steps.load(Ordering::Relaxed);
        let starting = now == 0 && born.elapsed() < startup;
        if starting || (now != 0 && now != last) {
            let _ = std::fs::write(path, now.to_string());
        }
        last = now;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether the test hook asks worker `index` to hang (`SLUICE_TEST_HANG_WORKER`).
#[cfg(feature = "test-hooks")]
fn options_hang(index: usize) -> bool {
    std::env::var("SLUICE_TEST_HANG_WORKER")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(index)
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
    /// The file the worker touches while it makes progress.
    heartbeat: PathBuf,
    exited: Option<std::process::ExitStatus>,
    /// Killed by the launcher because another worker failed.
    stopped: bool,
    /// Killed by the launcher because it stopped making progress.
    hung: bool,
}

/// How one attempt of a cluster job ended.
struct AttemptEnd {
    /// Per process: its report, or what happened to it; the first failure first.
    members: Vec<(usize, std::result::Result<Vec<u8>, String>)>,
    /// A worker process was lost (it died or hung without reporting): the job may be
    /// attempted again. A failure a worker reported (its user code failed every
    /// attempt of a bundle, a plan mismatch) is final.
    lost: Option<String>,
}

/// Starts the worker processes, waits for them, and commits the job's output if all
/// succeeded. An attempt that loses a worker process is retried whole, up to
/// `--max_job_attempts`; a failed attempt commits nothing, so the output is what a run
/// without the fault writes.
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
    let max_attempts = options.max_job_attempts.max(1);
    for attempt in 1..=max_attempts {
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
        let end = match run_attempt(&binary, config, options, hash, attempt) {
            Ok(end) => end,
            Err(e) => {
                for (_, sink) in &sinks {
                    sink.abort();
                }
                return Err(e);
            }
        };
        if let Some(lost) = &end.lost
            && attempt < max_attempts
            && config.cancel.load(Ordering::SeqCst) == 0
            && !config.drain.load(Ordering::SeqCst)
        {
            log::warn!(
                "job {}: attempt {attempt} of {max_attempts} failed: {lost}; nothing was committed, running the job again",
                config.job_id
            );
            for (_, sink) in &sinks {
                sink.abort();
            }
            continue;
        }
        let mut outcome =
            job::finish_cluster(&pipeline, &plan, workers, &sinks, end.members, started);
        outcome.metrics.job_attempts = attempt;
        return Ok(outcome);
    }
    unreachable!("the last attempt returns")
}

/// Runs one attempt: starts the workers and waits for them.
fn run_attempt(
    binary: &PathBuf,
    config: &RunnerConfig,
    options: &PipelineOptions,
    hash: &str,
    attempt: u32,
) -> Result<AttemptEnd> {
    let processes = options.num_workers.max(1);
    let threads = config.workers;
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
        "job {} attempt {attempt}: starting {processes} worker processes of {} with {threads} thread{} each, at {}",
        config.job_id,
        binary.display(),
        if threads == 1 { "" } else { "s" },
        addresses.join(", ")
    );
    let mut running: Vec<Worker> = Vec::with_capacity(processes);
    for index in 0..processes {
        let file = |what: &str| {
            std::env::temp_dir().join(format!(
                "sluice-{}-attempt-{attempt}-worker-{index}.{what}",
                config.job_id
            ))
        };
        let (report, heartbeat) = (file("report"), file("heartbeat"));
        let _ = std::fs::remove_file(&report);
        let _ = std::fs::write(&heartbeat, b"");
        let spawned = Command::new(binary)
            .args(&passed)
            .arg(format!("--worker_threads={threads}"))
            .arg(format!("--sluice_worker_index={index}"))
            .arg(format!("--sluice_peers={}", addresses.join(",")))
            .arg(format!("--sluice_job_id={}", config.job_id))
            .arg(format!("--sluice_report={}", report.display()))
            .arg(format!("--sluice_heartbeat={}", heartbeat.display()))
            .arg(format!("--sluice_plan_hash={hash}"))
            .arg(format!("--sluice_attempt={attempt}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(child) => running.push(Worker {
                child,
                report,
                heartbeat,
                exited: None,
                stopped: false,
                hung: false,
            }),
            Err(e) => {
                stop(&mut running);
                return Err(OptionsError::Invalid {
                    flag: "worker_binary".into(),
                    value: binary.display().to_string(),
                    expected: format!("a binary that can be started ({e})"),
                }
                .into());
            }
        }
    }
    let timeout = Duration::from_secs_f64(options.worker_timeout_secs);
    let first_failed = wait_all(&mut running, config, timeout);
    let mut lost = None;
    let mut members: Vec<(usize, std::result::Result<Vec<u8>, String>)> = running
        .iter()
        .enumerate()
        .map(|(index, w)| {
            let report = std::fs::read(&w.report);
            let _ = std::fs::remove_file(&w.report);
            let _ = std::fs::remove_file(&w.heartbeat);
            let member = match (report, w.exited) {
                (Ok(bytes), Some(_)) => Ok(bytes),
                (_, _) if w.hung => Err(format!(
                    "it made no progress for {} s (--worker_timeout_secs) and was stopped",
                    timeout.as_secs_f64()
                )),
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
            if let (Err(why), Some(first)) = (&member, first_failed)
                && first == index
            {
                lost = Some(format!("worker process {index} was lost: {why}"));
            }
            (index, member)
        })
        .collect();
    // The worker that failed first is the job's failure.
    if let Some(first) = first_failed {
        members.sort_by_key(|(index, _)| *index != first);
    }
    Ok(AttemptEnd { members, lost })
}

/// Waits for every worker process; returns the first that failed. When one fails the
/// others are stopped (they may be waiting for it: a cluster job is fail-stop); a
/// worker whose heartbeat is older than `timeout` is taken for hung and stopped too;
/// when the launcher is asked to cancel, each worker is told to cancel its part.
fn wait_all(running: &mut [Worker], config: &RunnerConfig, timeout: Duration) -> Option<usize> {
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
                continue;
            }
            let silent = std::fs::metadata(&w.heartbeat)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > timeout);
            if silent {
                log::error!(
                    "worker process {index} made no progress for {} s: stopping it",
                    timeout.as_secs_f64()
                );
                let _ = w.child.kill();
                w.exited = w.child.wait().ok();
                w.hung = true;
                failed.get_or_insert(index);
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
        let cancelled = config.cancel.load(Ordering::SeqCst) != 0;
        let drained = config.drain.load(Ordering::SeqCst);
        if (cancelled || drained) && !forwarded {
            // Stopped: a cancel (by a signal in batch, or by the job service) cancels
            // every worker's part (SIGUSR1, whatever the mode); a drain drains it
            // (SIGTERM, which drains a streaming job).
            forwarded = true;
            let signal = if cancelled {
                rustix::process::Signal::USR1
            } else {
                rustix::process::Signal::TERM
            };
            for w in running.iter().filter(|w| w.exited.is_none()) {
                if let Some(pid) = rustix::process::Pid::from_raw(w.child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, signal);
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

/// Runs this process's part of a cluster job whose processes were started one by one
/// (`--worker_hosts=FILE --sluice_worker_index=i`, on one machine or several): the
/// processes connect, agree on the plan and the job id, and run the job; process 0 then
/// gathers the others' reports from `--temp_location` (a directory they all share) and
/// commits. Returns on process 0; the others end their process.
pub(crate) fn run_hosted(
    pipeline: Arc<PipelineGraph>,
    plan: Arc<ExecutionGraph>,
    mut config: RunnerConfig,
    options: &PipelineOptions,
    hash: &str,
) -> Result<JobOutcome> {
    let started = Instant::now();
    let invalid = |flag: &str, value: String, expected: String| {
        Error::from(OptionsError::Invalid {
            flag: flag.into(),
            value,
            expected,
        })
    };
    let hosts_file = options.worker_hosts.clone().unwrap_or_default();
    let hosts: Vec<String> = std::fs::read_to_string(&hosts_file)
        .map_err(|e| {
            invalid(
                "worker_hosts",
                hosts_file.display().to_string(),
                format!("a readable file of host:port lines ({e})"),
            )
        })?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let index = options.worker.as_ref().map_or(0, |role| role.index);
    if hosts.is_empty() || index >= hosts.len() {
        return Err(invalid(
            "sluice_worker_index",
            index.to_string(),
            format!(
                "this process's line in {} (0 to {}); start one process per line",
                hosts_file.display(),
                hosts.len().saturating_sub(1)
            ),
        ));
    }
    let Some(temp) = options.temp_location.clone().map(PathBuf::from) else {
        return Err(invalid(
            "temp_location",
            String::new(),
            "a directory every worker process can read and write (shared between machines): \
             the workers leave their reports there for process 0"
                .into(),
        ));
    };
    let mut cluster = ClusterConfig::new(index, hosts.clone());
    cluster.connect_deadline = Duration::from_secs_f64(options.worker_timeout_secs);
    let job_id = match cluster.join(hash, &config.job_id) {
        Ok(id) => id,
        Err(message) if index == 0 => {
            return Ok(job::finish_cluster(
                &pipeline,
                &plan,
                config.total_workers(),
                &Vec::new(),
                vec![(0, Err(message))],
                started,
            ));
        }
        Err(message) => {
            log::error!("worker process {index}: {message}");
            std::process::exit(1);
        }
    };
    config.job_id = job_id.clone();
    config.cluster = Some(cluster);
    let workers = config.total_workers();
    let report_of = |i: usize| temp.join(format!("sluice-{job_id}-worker-{i}.report"));
    let leader = index == 0;
    let (bytes, ok, sinks) = match job::begin_sinks(&pipeline, &job_id, !leader) {
        Ok(sinks) => {
            let part = job::run_part(pipeline.clone(), plan.clone(), config, &sinks);
            let (bytes, ok) = job::member_report(part, &sinks);
            (bytes, ok, sinks)
        }
        Err(error) => {
            let (bytes, ok) = job::member_report(job::PartOutcome::failed(error), &Vec::new());
            (bytes, ok, Vec::new())
        }
    };
    if !leader {
        // Written whole, then renamed: process 0 never reads half a report.
        let path = report_of(index);
        let partial = path.with_extension("partial");
        let written =
            std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            log::error!(
                "worker process {index}: cannot leave its report at {}: {e}",
                path.display()
            );
            std::process::exit(1);
        }
        std::process::exit(if ok { 0 } else { 2 });
    }
    let mut members = vec![(0, Ok(bytes))];
    let deadline = Instant::now() + Duration::from_secs_f64(options.worker_timeout_secs);
    for i in 1..hosts.len() {
        let path = report_of(i);
        let member = loop {
            if let Ok(bytes) = std::fs::read(&path) {
                let _ = std::fs::remove_file(&path);
                break Ok(bytes);
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "left no report at {} within {} s (--worker_timeout_secs); is --temp_location shared by every machine?",
                    path.display(),
                    options.worker_timeout_secs
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        members.push((i, member));
    }
    if let Some(first) = members.iter().position(|(_, m)| m.is_err()) {
        members.swap(0, first);
    }
    Ok(job::finish_cluster(
        &pipeline, &plan, workers, &sinks, members, started,
    ))
}
