//! A job: one execution of a plan, from splitting sources to committing sinks.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use sluice_core::time::Clock;
use sluice_core::unit::{JobControl, JobInfo, SinkJob, SourceSplit, SplitHint};
use sluice_core::{BoxError, ExecError, Timestamp};
use sluice_plan::{ExecutionGraph, Payload, PipelineGraph, StepOp, TransformId};

use crate::metrics::{JobMetrics, WorkerReport};
use crate::stage::StageLayout;
use crate::watchdog::{Watchdog, WorkerProgress};

/// The state of a job, as Dataflow names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum JobState {
    /// Accepted, not yet running.
    #[serde(rename = "JOB_STATE_PENDING")]
    Pending,
    /// Running.
    #[serde(rename = "JOB_STATE_RUNNING")]
    Running,
    /// Finished successfully; output is committed.
    #[serde(rename = "JOB_STATE_DONE")]
    Done,
    /// Failed; no output was committed.
    #[serde(rename = "JOB_STATE_FAILED")]
    Failed,
    /// Being cancelled.
    #[serde(rename = "JOB_STATE_CANCELLING")]
    Cancelling,
    /// Cancelled.
    #[serde(rename = "JOB_STATE_CANCELLED")]
    Cancelled,
    /// Draining: no new input, in-flight work finishing.
    #[serde(rename = "JOB_STATE_DRAINING")]
    Draining,
    /// Drained.
    #[serde(rename = "JOB_STATE_DRAINED")]
    Drained,
}

impl JobState {
    /// Dataflow's name for the state (`JOB_STATE_DONE`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "JOB_STATE_PENDING",
            JobState::Running => "JOB_STATE_RUNNING",
            JobState::Done => "JOB_STATE_DONE",
            JobState::Failed => "JOB_STATE_FAILED",
            JobState::Cancelling => "JOB_STATE_CANCELLING",
            JobState::Cancelled => "JOB_STATE_CANCELLED",
            JobState::Draining => "JOB_STATE_DRAINING",
            JobState::Drained => "JOB_STATE_DRAINED",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A source could not be split (before any data moved).
    #[error("could not split the input of '{transform}': {source}")]
    Split {
        /// The Read transform.
        transform: String,
        /// The cause.
        source: BoxError,
    },
    /// A sink could not prepare its temporary output (before any data moved).
    #[error("could not prepare the output of '{transform}': {source}")]
    SinkBegin {
        /// The Write transform.
        transform: String,
        /// The cause.
        source: BoxError,
    },
    /// A bundle failed on every attempt.
    #[error("stage {stage} failed after {attempts} attempt{}: {error}", if *attempts == 1 { "" } else { "s" })]
    Bundle {
        /// Stage id and name (`S01 (F1)`).
        stage: String,
        /// What failed, where, on what.
        error: Box<ExecError>,
        /// How many times the bundle was tried.
        attempts: u32,
    },
    /// Committed bundles could not be written or closed.
    #[error("could not write the output of '{transform}': {source}")]
    SinkWrite {
        /// The Write transform.
        transform: String,
        /// The cause.
        source: BoxError,
    },
    /// The job's output could not be made visible.
    #[error("could not commit the output of '{transform}': {source}")]
    Commit {
        /// The Write transform.
        transform: String,
        /// The cause.
        source: BoxError,
    },
    /// The execution engine itself failed.
    #[error("the execution engine failed: {0}")]
    Engine(String),
    /// A worker process of a cluster job failed, or was lost.
    #[error("worker process {process} failed: {message}")]
    Worker {
        /// The process's index.
        process: usize,
        /// What happened to it.
        message: String,
    },
    /// The job was cancelled before it finished; no output was committed.
    #[error("the job was cancelled ({reason}); no output was committed")]
    Cancelled {
        /// Who cancelled it: `SIGTERM`, `SIGINT`, a request.
        reason: String,
    },
}

impl JobError {
    /// The operating system's error behind this failure, if an I/O operation failed:
    /// tells a full disk (`StorageFull`) from a permission error (`PermissionDenied`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            JobError::Split { source, .. }
            | JobError::SinkBegin { source, .. }
            | JobError::SinkWrite { source, .. }
            | JobError::Commit { source, .. } => sluice_core::error::find_io_error(source.as_ref()),
            JobError::Bundle { error, .. } => {
                sluice_core::error::find_io_error(error.source.as_ref())
            }
            JobError::Engine(_) | JobError::Worker { .. } | JobError::Cancelled { .. } => None,
        }
    }
}

/// The value of [`RunnerConfig::cancel`] when a caller, not a signal, cancelled the job.
pub const CANCEL_REQUESTED: usize = usize::MAX;

/// Why a job was cancelled, from the value of [`RunnerConfig::cancel`].
fn cancel_reason(code: usize) -> String {
    match code {
        2 => "interrupted by SIGINT".into(),
        15 => "terminated by SIGTERM".into(),
        CANCEL_REQUESTED => "cancel requested".into(),
        n => format!("signal {n}"),
    }
}

/// This process's part in a job that several processes of the same binary run together
/// (the cluster runner), connected over TCP by the engine.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This process's index, `0..addresses.len()`.
    pub process: usize,
    /// Every process's `host:port`, in process order.
    pub addresses: Vec<String>,
    /// Connections made ahead of the job by [`ClusterConfig::join`]; the engine makes
    /// them itself otherwise.
    pub connected: Arc<Mutex<Option<Vec<Option<std::net::TcpStream>>>>>,
    /// How long a process waits for its peers to connect or accept.
    pub connect_deadline: std::time::Duration,
}

impl ClusterConfig {
    /// This process's part of a cluster of `addresses`.
    pub fn new(process: usize, addresses: Vec<String>) -> ClusterConfig {
        ClusterConfig {
            process,
            addresses,
            connected: Arc::default(),
            connect_deadline: std::time::Duration::from_secs(60),
        }
    }

    /// Connects to every other process now, before the job starts, and checks that all
    /// built the same plan: each process sends its `plan_hash`, and a process whose hash
    /// differs from another's fails with both hashes and the process named. Process 0's
    /// `job_id` becomes every process's: returns it.
    pub fn join(&self, plan_hash: &str, job_id: &str) -> Result<String, String> {
        let (sockets, agreed) = crate::engine::connect_and_agree(self, plan_hash, job_id)?;
        *self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sockets);
        Ok(agreed)
    }
}

/// How to run a job.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The job's id.
    pub job_id: String,
    /// Worker threads (of this process, in a cluster).
    pub workers: usize,
    /// Set when this process is one of several running the job.
    pub cluster: Option<ClusterConfig>,
    /// Counts the engine's steps, so that a watcher can tell a worker process that makes
    /// progress from one that hangs.
    pub steps: Arc<AtomicU64>,
    /// Preferred input bytes per source bundle.
    pub desired_bundle_bytes: u64,
    /// Most groups a bundle emits after a shuffle.
    pub max_groups_per_bundle: usize,
    /// Attempts a bundle gets before the job fails (Dataflow's batch default: 4).
    pub max_bundle_attempts: u32,
    /// A bundle running longer than this is reported as possibly stuck.
    pub stuck_bundle_warning: std::time::Duration,
    /// Streaming mode: groupings evaluate triggers as data arrives, unbounded sources are
    /// read part by part, and failed bundles are retried without limit.
    pub streaming: bool,
    /// Most elements one bundle reads from an unbounded split.
    pub unbounded_bundle_elements: usize,
    /// Processing time (the wall clock unless a test source scripts it).
    pub clock: Clock,
    /// Set to drain the job: unbounded sources stop, every window fires, sinks commit.
    pub drain: Arc<AtomicBool>,
    /// Set to cancel the job: every worker stops, nothing is committed, temporary
    /// output is removed, and the job ends `JOB_STATE_CANCELLED`. The value says why:
    /// a signal's number (set from a signal handler, hence an atomic), or
    /// [`CANCEL_REQUESTED`].
    pub cancel: Arc<AtomicUsize>,
    /// Where workers publish their counts as the job runs, for a reporter to read.
    pub live: Option<Arc<crate::live::LiveMetrics>>,
    /// Bytes of encoded records this process's grouping readers may hold before they
    /// spill to disk (`None`: [`sluice_core::spill::default_limit`]).
    pub max_memory: Option<u64>,
    /// Where spill files go (a `sluice-spill-<job>-<process>` directory under it).
    pub temp_dir: std::path::PathBuf,
    /// Test hook: this worker panics inside the engine (not in user code) once its
    /// dataflow runs, so tests can check that the other workers stop and the job fails.
    #[cfg(feature = "test-hooks")]
    pub panic_worker_for_test: Option<usize>,
}

impl RunnerConfig {
    /// How many processes run the job.
    pub fn processes(&self) -> usize {
        self.cluster
            .as_ref()
            .map_or(1, |c| c.addresses.len().max(1))
    }

    /// This process's index.
    pub fn process(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.process)
    }

    /// Worker threads of the whole job, across processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.processes()
    }

    /// Defaults for a job with `workers` worker threads.
    pub fn new(job_id: impl Into<String>, workers: usize) -> RunnerConfig {
        RunnerConfig {
            job_id: job_id.into(),
            workers: workers.max(1),
            cluster: None,
            steps: Arc::default(),
            desired_bundle_bytes: 8 << 20,
            max_groups_per_bundle: 16_384,
            max_bundle_attempts: 4,
            stuck_bundle_warning: std::time::Duration::from_secs(300),
            streaming: false,
            unbounded_bundle_elements: 10_000,
            clock: Clock::wall(),
            drain: Arc::default(),
            cancel: Arc::default(),
            live: None,
            max_memory: None,
            temp_dir: std::env::temp_dir(),
            #[cfg(feature = "test-hooks")]
            panic_worker_for_test: None,
        }
    }
}

/// How a job ended.
#[derive(Debug)]
pub struct JobOutcome {
    /// `Done`, `Failed` or `Cancelled`.
    pub state: JobState,
    /// Why it failed.
    pub error: Option<JobError>,
    /// What it measured.
    pub metrics: JobMetrics,
    /// What each sink committed, one line per sink.
    pub committed: Vec<String>,
}

/// State shared by every worker of a job.
pub(crate) struct JobShared {
    pub pipeline: Arc<PipelineGraph>,
    pub graph: Arc<ExecutionGraph>,
    pub config: RunnerConfig,
    pub layouts: Vec<StageLayout>,
    /// Per stage: the splits of its source (empty for shuffle-rooted stages).
    pub splits: Vec<Vec<Arc<dyn SourceSplit>>>,
    /// Per stage: the next split to take.
    pub cursors: Vec<AtomicUsize>,
    /// Per Write transform: its part of the job.
    pub sinks: Vec<(TransformId, Arc<dyn SinkJob>)>,
    /// Per worker: what it is doing, for the watchdog.
    pub progress: Vec<Arc<WorkerProgress>>,
    /// When execution started.
    pub epoch: Instant,
    /// Per stage: whether its root reads an unbounded source.
    pub unbounded: Vec<bool>,
    /// Batches sent between stages, and batches taken in by their receivers.
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    /// Per stage, per worker: what the stage has acted on.
    pub acted: Vec<Vec<Acted>>,
    /// Per stage: the stages whose output it reads (through its shuffle or side inputs).
    pub upstream: Vec<Vec<usize>>,
    /// Retried failures, logged without flooding.
    pub retry_log: crate::retry::RetryLog,
    /// What this process's grouping readers may hold in memory.
    pub memory: Option<Arc<sluice_core::spill::MemoryBudget>>,
    failed: AtomicBool,
    failure: Mutex<Option<JobError>>,
    /// A worker died in the engine: the others stop stepping rather than wait for it.
    abandoned: AtomicBool,
}

/// How far one stage on one worker has caught up.
#[derive(Debug)]
pub(crate) struct Acted {
    /// The output watermark (engine time) the stage holds: what the stages it feeds can
    /// reach. A hold (a buffered pane's timestamp, a timer) keeps it below the input
    /// watermark.
    pub output: AtomicU64,
    /// The input watermark (as an engine time) it last fired at with nothing left to do.
    pub watermark: AtomicU64,
    /// The processing time it last fired at.
    pub now_ms: AtomicI64,
    /// Nothing taken in since, nothing left to emit.
    pub idle: AtomicBool,
}

impl Default for Acted {
    fn default() -> Self {
        Acted {
            output: AtomicU64::new(0),
            watermark: AtomicU64::new(0),
            now_ms: AtomicI64::new(0),
            idle: AtomicBool::new(false),
        }
    }
}

impl fmt::Debug for JobShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobShared")
            .field("job_id", &self.config.job_id)
            .finish_non_exhaustive()
    }
}

impl JobControl for JobShared {
    fn settled(&self, watermark: Timestamp, now_ms: i64) -> bool {
        if self.sent.load(Ordering::Acquire) != self.accepted.load(Ordering::Acquire) {
            return false;
        }
        let wm = crate::watermark::engine_time(watermark);
        // Each grouping stage must have acted on the watermark it can reach: the
        // source's, or less where a stage before it holds the watermark back.
        let quiet = self.acted.iter().enumerate().all(|(stage, workers)| {
            if self.layouts[stage].shuffle_input.is_none() {
                return true;
            }
            let reachable = self.upstream[stage]
                .iter()
                .flat_map(|u| self.acted[*u].iter())
                .map(|a| a.output.load(Ordering::Acquire))
                .fold(wm, u64::min);
            workers.iter().all(|a| {
                a.idle.load(Ordering::Acquire)
                    && a.watermark.load(Ordering::Acquire) >= reachable
                    && a.now_ms.load(Ordering::Acquire) >= now_ms
            })
        });
        // The counts again: nothing moved while the stages were read.
        quiet && self.sent.load(Ordering::Acquire) == self.accepted.load(Ordering::Acquire)
    }

    fn draining(&self) -> bool {
        self.config.drain.load(Ordering::Acquire)
    }
}

impl JobShared {
    /// Whether the job has failed; every worker stops at its next activation.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A worker died in the engine; the others are to stop.
    pub fn abandon(&self, error: JobError) {
        self.fail(error);
        self.abandoned.store(true, Ordering::Release);
    }

    /// Fails the job as cancelled if someone asked to cancel it; returns whether it
    /// was.
    pub fn check_cancelled(&self) -> bool {
        match self.config.cancel.load(Ordering::Acquire) {
            0 => false,
            code => {
                if !self.has_failed() {
                    self.fail(JobError::Cancelled {
                        reason: cancel_reason(code),
                    });
                }
                true
            }
        }
    }

    /// Whether a worker died in the engine.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Records a failure; the first one is the one reported.
    pub fn fail(&self, error: JobError) {
        // Flagged first: whatever happens below, no sink commits.
        self.failed.store(true, Ordering::Release);
        // Formatted outside the lock (a user error's message is user code), and a lock
        // poisoned by a panic elsewhere is still used: its contents are a plain Option.
        let message = sluice_core::error::display_safely(&error);
        let mut slot = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
            drop(slot);
            log::error!("{message}");
        }
    }

    /// The recorded failure, if the job failed. A failure flagged without an error (which
    /// should not happen) still counts: the job must not commit.
    fn take_failure(&self) -> Option<JobError> {
        let recorded = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match recorded {
            Some(error) => Some(error),
            None if self.has_failed() => Some(JobError::Engine(
                "a failure was flagged but its error was not recorded".into(),
            )),
            None => None,
        }
    }

    /// The job of the sink written by `transform`.
    pub fn sink(&self, transform: TransformId) -> Option<&Arc<dyn SinkJob>> {
        self.sinks
            .iter()
            .find(|(t, _)| *t == transform)
            .map(|(_, s)| s)
    }

    /// The index of global worker `worker` among this process's threads.
    pub fn local(&self, worker: usize) -> usize {
        worker % self.config.workers
    }

    /// Stage id and name, for messages.
    pub fn stage_label(&self, stage: usize) -> String {
        let s = &self.graph.stages[stage];
        format!("{} ({})", s.id, s.name)
    }
}

/// Per stage, the stages that write what it reads.
fn upstream_stages(graph: &ExecutionGraph, layouts: &[StageLayout]) -> Vec<Vec<usize>> {
    let stage_of =
        |step: sluice_plan::StepId| graph.stages.iter().position(|s| s.steps.contains(&step));
    layouts
        .iter()
        .map(|layout| {
            let mut up: Vec<usize> = layout
                .shuffle_input
                .iter()
                .chain(&layout.side_inputs)
                .flat_map(|edge| graph.producers(*edge))
                .filter_map(stage_of)
                .collect();
            up.sort_unstable();
            up.dedup();
            up
        })
        .collect()
}

/// The sinks of a job, each begun: its temporary output prepared (by the process that
/// will commit), or — for a `member` of a cluster job — joined.
pub type Sinks = Vec<(TransformId, Arc<dyn SinkJob>)>;

/// Begins every sink of the pipeline; on an error, the sinks begun so far are aborted.
pub fn begin_sinks(
    pipeline: &PipelineGraph,
    job_id: &str,
    member: bool,
) -> Result<Sinks, JobError> {
    let mut sinks: Sinks = Vec::new();
    for (id, t) in pipeline.leaves() {
        if let Payload::Write(sink) = &t.payload {
            let info = JobInfo {
                job_id: job_id.to_string(),
                member,
                unbounded: t.inputs.iter().any(|i| !pipeline.pcollection(*i).bounded),
            };
            match sink.begin(&info) {
                Ok(job) => sinks.push((id, job)),
                Err(source) => {
                    for (_, begun) in &sinks {
                        begun.abort();
                    }
                    let transform = t.name.clone();
                    return Err(JobError::SinkBegin { transform, source });
                }
            }
        }
    }
    Ok(sinks)
}

/// What this process's part of a job did: its workers' merged report, and why it
/// failed, if it did. Nothing is committed yet.
pub struct PartOutcome {
    failure: Option<JobError>,
    report: WorkerReport,
}

impl PartOutcome {
    /// A part that failed before it ran.
    pub fn failed(error: JobError) -> PartOutcome {
        PartOutcome {
            failure: Some(error),
            report: WorkerReport::default(),
        }
    }
}

/// Runs a validated, optimised plan to completion in this process.
pub fn run(
    pipeline: Arc<PipelineGraph>,
    graph: Arc<ExecutionGraph>,
    config: RunnerConfig,
) -> JobOutcome {
    let started = Instant::now();
    let workers = config.total_workers();
    let sinks = match begin_sinks(&pipeline, &config.job_id, false) {
        Ok(sinks) => sinks,
        Err(error) => return failed_before_start(&pipeline, &graph, workers, error, started),
    };
    let part = run_part(pipeline.clone(), graph.clone(), config, &sinks);
    finish(&pipeline, &graph, workers, &sinks, part, started)
}

fn failed_before_start(
    pipeline: &PipelineGraph,
    graph: &ExecutionGraph,
    workers: usize,
    error: JobError,
    started: Instant,
) -> JobOutcome {
    JobOutcome {
        state: JobState::Failed,
        error: Some(error),
        metrics: JobMetrics::from_report(
            pipeline,
            graph,
            &WorkerReport::default(),
            workers,
            started.elapsed(),
        ),
        committed: Vec::new(),
    }
}

/// Runs this process's part of the job — all of it on the embedded runner — writing to
/// `sinks`; commits nothing.
pub fn run_part(
    pipeline: Arc<PipelineGraph>,
    graph: Arc<ExecutionGraph>,
    config: RunnerConfig,
    sinks: &Sinks,
) -> PartOutcome {
    // Panics of user code that a retry may mend stay off stderr (see `quiet_panics`).
    sluice_core::error::quiet_panics::install();
    let layouts: Vec<StageLayout> = (0..graph.stages.len())
        .map(|i| StageLayout::new(&graph, i))
        .collect();
    let hint = SplitHint {
        workers: config.total_workers(),
        desired_bundle_bytes: config.desired_bundle_bytes,
    };
    let mut splits = Vec::with_capacity(layouts.len());
    let mut unbounded = Vec::with_capacity(layouts.len());
    for layout in &layouts {
        let root = graph.step(layout.root);
        let transform = pipeline.transform(root.original);
        let stage_splits = match (&transform.payload, root.op) {
            (Payload::Read(source) | Payload::Create(source), StepOp::Read | StepOp::Create) => {
                unbounded.push(source.is_unbounded());
                match source.splits(&hint) {
                    Ok(s) => s,
                    Err(source) => {
                        let transform = transform.name.clone();
                        return PartOutcome {
                            failure: Some(JobError::Split { transform, source }),
                            report: WorkerReport::default(),
                        };
                    }
                }
            }
            _ => {
                unbounded.push(false);
                Vec::new()
            }
        };
        splits.push(stage_splits);
    }

    // Spill directories of jobs that died are removed first.
    let stale = sluice_core::spill::remove_stale(&config.temp_dir);
    if stale > 0 {
        log::info!(
            "removed {stale} spill director{} left by jobs that no longer run in {}",
            if stale == 1 { "y" } else { "ies" },
            config.temp_dir.display()
        );
    }
    let budget = sluice_core::spill::MemoryBudget::new(
        config
            .max_memory
            .unwrap_or_else(sluice_core::spill::default_limit),
        config.temp_dir.join(format!(
            "sluice-spill-{}-{}",
            config.job_id,
            config.process()
        )),
    );
    let shared = Arc::new(JobShared {
        pipeline: pipeline.clone(),
        graph: graph.clone(),
        cursors: layouts.iter().map(|_| AtomicUsize::new(0)).collect(),
        progress: (0..config.workers).map(|_| Arc::default()).collect(),
        epoch: Instant::now(),
        acted: layouts
            .iter()
            .map(|_| (0..config.workers).map(|_| Acted::default()).collect())
            .collect(),
        upstream: upstream_stages(&graph, &layouts),
        unbounded,
        sent: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        retry_log: crate::retry::RetryLog::default(),
        memory: Some(Arc::new(budget)),
        layouts,
        splits,
        config,
        sinks: sinks.clone(),
        failed: AtomicBool::new(false),
        failure: Mutex::new(None),
        abandoned: AtomicBool::new(false),
    });

    if let Some(live) = &shared.config.live {
        live.attach(&shared);
    }
    let watchdog = Watchdog::start(
        shared.progress.clone(),
        graph.clone(),
        shared.epoch,
        shared.config.stuck_bundle_warning,
    );
    let report = match crate::engine::execute(shared.clone()) {
        Ok(report) => report,
        Err(e) => {
            shared.fail(JobError::Engine(e));
            WorkerReport::default()
        }
    };
    drop(watchdog);
    let mut report = report;
    if let Some(memory) = &shared.memory {
        let stats = memory.stats();
        report.memory = crate::metrics::MemoryMetrics {
            max_memory: stats.limit,
            peak_bytes_held: stats.peak,
            bytes_spilled: stats.spilled_bytes,
            spill_files: stats.spill_files,
            over_budget: stats.over_budget,
        };
        // Whatever the outcome, no spill file outlives the job.
        memory.remove_dir();
    }
    for (transform, kind, n) in shared.retry_log.unlogged() {
        log::warn!(
            "transform '{transform}': {n} more retried failure(s) like \"{kind}\" were not logged one by one"
        );
    }
    PartOutcome {
        failure: shared.take_failure(),
        report,
    }
}

/// Measures the job and, if no part failed, commits its sinks (two-phase); otherwise
/// aborts them.
fn finish(
    pipeline: &PipelineGraph,
    graph: &ExecutionGraph,
    workers: usize,
    sinks: &Sinks,
    part: PartOutcome,
    started: Instant,
) -> JobOutcome {
    let mut metrics =
        JobMetrics::from_report(pipeline, graph, &part.report, workers, started.elapsed());
    let mut warnings = metrics.fan_out_warnings(pipeline, graph, workers);
    for stage in &metrics.stages {
        if !stage.stragglers.is_empty() {
            warnings.push(format!(
                "stage {} ({}): worker(s) {:?} took much longer than the others; see the stage's workerWallTime",
                stage.id, stage.name, stage.stragglers
            ));
        }
    }
    for warning in &warnings {
        log::warn!("{warning}");
    }
    metrics.warnings = warnings;

    if let Some(error) = part.failure {
        for (_, sink) in sinks {
            sink.abort();
        }
        let state = match error {
            JobError::Cancelled { .. } => JobState::Cancelled,
            _ => JobState::Failed,
        };
        return JobOutcome {
            state,
            error: Some(error),
            metrics,
            committed: Vec::new(),
        };
    }
    // Two phases across sinks: each commit can be undone until every sink has committed,
    // so a failure in one leaves none of the job's output.
    let mut committed = Vec::new();
    for (i, (id, sink)) in sinks.iter().enumerate() {
        match sink.commit() {
            Ok(description) => committed.push(description),
            Err(source) => {
                for (done_id, done) in sinks[..i].iter().rev() {
                    if let Err(e) = done.undo() {
                        log::error!(
                            "could not undo the commit of '{}': {}",
                            pipeline.transform(*done_id).name,
                            sluice_core::error::display_safely(&*e)
                        );
                    }
                }
                for (_, any) in sinks {
                    any.abort();
                }
                return JobOutcome {
                    state: JobState::Failed,
                    error: Some(JobError::Commit {
                        transform: pipeline.transform(*id).name.clone(),
                        source,
                    }),
                    metrics,
                    committed: Vec::new(),
                };
            }
        }
    }
    for (_, sink) in sinks {
        sink.finalize();
    }
    JobOutcome {
        state: JobState::Done,
        error: None,
        metrics,
        committed,
    }
}

/// What a member process of a cluster job tells its launcher at the end: its workers'
/// report, how its part ended, and what its sinks wrote.
#[derive(Serialize, serde::Deserialize)]
struct MemberReport {
    failure: Option<String>,
    cancelled: bool,
    report: WorkerReport,
    /// Per sink (its transform's index): what the member's writers produced.
    handoffs: Vec<(usize, Vec<u8>)>,
}

/// The report a member process sends its launcher (see [`finish_cluster`]), and whether
/// its part succeeded.
pub fn member_report(part: PartOutcome, sinks: &Sinks) -> (Vec<u8>, bool) {
    let mut failure = match &part.failure {
        Some(JobError::Cancelled { reason }) => Some(reason.clone()),
        // The launcher names the process itself.
        Some(JobError::Worker { message, .. }) => Some(message.clone()),
        Some(error) => Some(sluice_core::error::display_safely(error)),
        None => None,
    };
    let cancelled = matches!(part.failure, Some(JobError::Cancelled { .. }));
    let mut handoffs = Vec::new();
    for (id, sink) in sinks {
        match sink.handoff() {
            Ok(bytes) => handoffs.push((id.0, bytes)),
            Err(e) => {
                failure.get_or_insert_with(|| sluice_core::error::display_safely(&*e));
            }
        }
    }
    let ok = failure.is_none();
    let report = MemberReport {
        failure,
        cancelled,
        report: part.report,
        handoffs,
    };
    (postcard::to_stdvec(&report).unwrap_or_default(), ok)
}

/// The launcher's end of a cluster job: takes in every member's report (or what
/// happened to a member that sent none), by process index — the first failure listed
/// is the one reported — and commits the sinks if every member succeeded, or aborts
/// them.
pub fn finish_cluster(
    pipeline: &PipelineGraph,
    graph: &ExecutionGraph,
    workers: usize,
    sinks: &Sinks,
    members: Vec<(usize, Result<Vec<u8>, String>)>,
    started: Instant,
) -> JobOutcome {
    let mut merged = WorkerReport::default();
    let mut failure: Option<JobError> = None;
    for (process, member) in members {
        let report = member.and_then(|bytes| {
            postcard::from_bytes::<MemberReport>(&bytes)
                .map_err(|e| format!("its report could not be read: {e}"))
        });
        let report = match report {
            Ok(report) => report,
            Err(message) => {
                failure.get_or_insert(JobError::Worker { process, message });
                continue;
            }
        };
        if let Some(message) = report.failure {
            failure.get_or_insert(if report.cancelled {
                JobError::Cancelled { reason: message }
            } else {
                JobError::Worker { process, message }
            });
        }
        for (transform, bytes) in &report.handoffs {
            if let Some((_, sink)) = sinks.iter().find(|(t, _)| t.0 == *transform)
                && let Err(source) = sink.adopt(bytes)
            {
                failure.get_or_insert(JobError::SinkWrite {
                    transform: pipeline.transform(TransformId(*transform)).name.clone(),
                    source,
                });
            }
        }
        merged.merge(report.report);
    }
    let part = PartOutcome {
        failure,
        report: merged,
    };
    finish(pipeline, graph, workers, sinks, part, started)
}
