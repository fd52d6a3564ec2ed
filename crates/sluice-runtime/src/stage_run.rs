//! A fused stage's progress on one worker: the engine-independent half of its operator.
//!
//! The engine ([`crate::engine`]) activates a stage's operator; the operator hands this
//! module what arrived and the input watermark, and gets back what to send and where its
//! output watermark may go. Here live the bundles: which one runs next (a source split,
//! a range of fired groups, the next part of an unbounded split), its attempts and
//! retries ([`crate::retry`] decides them), committing its output and sink bytes, and
//! materialising side inputs.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_core::error::panic_message;
use sluice_core::shuffle::records;
use sluice_core::unit::{Continuation, SinkWriter, SourceSplit};
use sluice_core::{ExecError, Timestamp};
use sluice_plan::TransformId;

use crate::job::{JobError, JobShared};
use crate::metrics::{WorkerReport, shuffle_key};
use crate::stage::{BundleOutput, StageInstance, StageLayout};
use crate::watermark::{Held, engine_time, output_watermark};
use sluice_core::spill::human_bytes;

/// Records bound for one worker, as they cross the engine's exchange.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub(crate) dest: u32,
    pub(crate) records: u64,
    pub(crate) bytes: Vec<u8>,
}

/// The batches of one output of one activation.
pub(crate) type Batches = Vec<Batch>;

/// What one worker thread owns besides its operators.
#[derive(Default)]
pub(crate) struct WorkerState {
    pub(crate) report: WorkerReport,
    /// Sink writers, opened when the worker commits its first bundle to a sink.
    pub(crate) writers: HashMap<TransformId, Box<dyn SinkWriter>>,
}

/// What roots a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootKind {
    /// A bounded source: its splits are claimed by whichever worker is free.
    BoundedSource,
    /// An unbounded source: each worker reads its own splits, part by part.
    UnboundedSource,
    /// A shuffle reader.
    Shuffle,
}

/// What one activation of a stage did.
#[derive(Default)]
pub(crate) struct Work {
    /// Committed batches per shuffle output.
    pub(crate) emitted: Vec<Vec<Batch>>,
    /// There is more to do without waiting for input.
    pub(crate) more: bool,
    /// The stage is done on this worker.
    pub(crate) finished: bool,
    /// The stage's output watermark now, if it may move.
    pub(crate) hold: Option<Timestamp>,
    /// Processing time (ms) at which the stage has something due.
    pub(crate) wakeup_ms: Option<i64>,
    /// A retry is backing off: come back after this long (wall time).
    pub(crate) retry_after: Option<Duration>,
}

/// The input of a bundle.
#[derive(Clone, Debug)]
enum Pending {
    /// A split of the stage's source (or part of one, after a failure divided it).
    Split(Arc<dyn SourceSplit>),
    /// A range of the groups the stage's shuffle reader holds.
    Groups(Range<usize>),
    /// The next part of this worker's unbounded split `slot`.
    Unbounded {
        /// Index into the worker's splits.
        slot: usize,
        /// Where the split stands.
        split: Arc<dyn SourceSplit>,
    },
}

/// A bundle to run. It stays queued until it commits, so that a failed attempt can be
/// retried with the same input.
#[derive(Clone, Debug)]
struct WorkItem {
    pending: Pending,
    /// The attempt it is on, from 1: how often its first element has been tried.
    attempt: u32,
    /// The position of its first element if that element failed before.
    suspect: Option<u64>,
    /// Created by a failure (a retry, or the part of a failed bundle before its failing
    /// element).
    retry: bool,
    /// In streaming, a retry of a failing element waits until then (exponential backoff).
    not_before: Option<Instant>,
}

impl Pending {
    /// Divides the input before the element at `position`, if it lies strictly inside.
    fn divide(&self, position: u64) -> Option<(Pending, Pending)> {
        match self {
            Pending::Split(split) => split
                .split_at(position)
                .map(|(before, rest)| (Pending::Split(before), Pending::Split(rest))),
            Pending::Unbounded { .. } => None,
            Pending::Groups(range) => {
                let at = usize::try_from(position).ok()?;
                (at > range.start && at < range.end).then(|| {
                    (
                        Pending::Groups(range.start..at),
                        Pending::Groups(at..range.end),
                    )
                })
            }
        }
    }
}

/// A stage's progress on one worker: the engine-independent half of its operator.
pub(crate) struct StageRun {
    job: Arc<JobShared>,
    layout: StageLayout,
    kind: RootKind,
    worker: usize,
    peers: usize,
    state: Rc<RefCell<WorkerState>>,
    instance: Option<StageInstance>,
    /// How many groups the shuffle reader last fired, and the next to emit.
    groups: usize,
    next_group: usize,
    /// Bundles to run; more than one only after a failure divided a bundle.
    queue: VecDeque<WorkItem>,
    /// Per side input: the encoded elements received so far.
    side_records: Vec<Vec<Vec<u8>>>,
    /// Bytes of side-input records held, counted against the memory budget.
    side_bytes: u64,
    /// Every side input is complete and materialised.
    sides_ready: bool,
    /// This worker's unbounded splits, once claimed.
    splits: Option<Vec<UnboundedSplit>>,
    /// The unbounded split to read next, round robin.
    next_split: usize,
    /// The reader fired since it last took in records.
    fired_since_accept: bool,
    /// The watermark and processing time of the last firing.
    fired_at: (Timestamp, i64),
    finished: bool,
}

/// One split of an unbounded source, owned by one worker.
struct UnboundedSplit {
    /// What is left to read; `None` once exhausted.
    rest: Option<Arc<dyn SourceSplit>>,
    watermark: Timestamp,
    not_before_ms: Option<i64>,
}

impl StageRun {
    /// The stage laid out by `layout` on `worker` of `peers`, rooted as `kind`.
    pub(crate) fn new(
        job: Arc<JobShared>,
        layout: &StageLayout,
        kind: RootKind,
        worker: usize,
        peers: usize,
        state: Rc<RefCell<WorkerState>>,
    ) -> StageRun {
        StageRun {
            job,
            layout: layout.clone(),
            kind,
            worker,
            peers,
            state,
            instance: None,
            groups: 0,
            next_group: 0,
            queue: VecDeque::new(),
            side_records: vec![Vec::new(); layout.side_inputs.len()],
            side_bytes: 0,
            sides_ready: layout.side_inputs.is_empty(),
            splits: None,
            next_split: 0,
            fired_since_accept: true,
            fired_at: (Timestamp::MIN, i64::MIN),
            finished: false,
        }
    }

    fn instance(&mut self) -> Option<&mut StageInstance> {
        if self.instance.is_none() && !self.finished {
            match StageInstance::new(
                self.job.pipeline.clone(),
                self.job.graph.clone(),
                &self.layout,
                self.worker,
                self.peers,
                self.job.progress[self.job.local(self.worker)]
                    .position
                    .clone(),
                crate::stage::JobMode {
                    streaming: self.job.config.streaming,
                    clock: self.job.config.clock.clone(),
                    job: Some(self.job.clone()),
                    max_attempts: self.job.config.max_bundle_attempts,
                    memory: self.job.memory.clone(),
                },
            ) {
                Ok(instance) => self.instance = Some(instance),
                Err(error) => self.fail(error, 1),
            }
        }
        self.instance.as_mut()
    }

    fn fail(&mut self, error: Box<ExecError>, attempts: u32) {
        let stage = self.job.stage_label(self.layout.index);
        self.job.fail(JobError::Bundle {
            stage,
            error,
            attempts,
        });
        self.finish();
    }

    fn finish(&mut self) {
        self.finished = true;
        if let Some(memory) = &self.job.memory {
            memory.release(std::mem::take(&mut self.side_bytes));
        }
        // Dropping the units runs each DoFn's teardown.
        if let Some(instance) = self.instance.take() {
            let dropped =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| instance.close()));
            match dropped {
                Ok(report) => self.record_steps(report),
                Err(panic) => log::warn!(
                    "teardown in stage {} panicked: {}",
                    self.job.stage_label(self.layout.index),
                    panic_message(&*panic)
                ),
            }
        }
    }

    fn record_steps(&mut self, report: crate::stage::StepReport) {
        let mut state = self.state.borrow_mut();
        for (step, n) in report.teardowns {
            *state.report.step_teardowns.entry(step.0).or_default() += n;
        }
        for (step, n) in report.dead_lettered {
            *state.report.step_dead_lettered.entry(step.0).or_default() += n;
        }
        for (step, n) in report.late_dropped {
            *state.report.step_late_dropped.entry(step.0).or_default() += n;
        }
        for (step, memory) in report.memory {
            // One worker: its peak is the most it held at any report.
            let mine = state.report.step_memory.entry(step.0).or_default();
            mine.peak_bytes_held = mine.peak_bytes_held.max(memory.peak_bytes_held);
            mine.bytes_spilled += memory.bytes_spilled;
            mine.spill_files += memory.spill_files;
        }
        for (step, name, value) in report.user {
            match state.report.user.entry((step.0, name)) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                std::collections::btree_map::Entry::Occupied(mut cell) => {
                    cell.get_mut().merge(value)
                }
            }
        }
    }

    /// Tells the shuffle reader the input watermark and processing time.
    pub(crate) fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        if self.kind != RootKind::Shuffle || self.finished || self.job.has_failed() {
            return;
        }
        if let Some(instance) = self.instance() {
            instance.advance(watermark, now_ms);
        }
    }

    /// Publishes the output watermark the stage holds (an engine time).
    pub(crate) fn publish_output(&self, time: u64) {
        self.job.acted[self.layout.index][self.job.local(self.worker)]
            .output
            .store(time, Ordering::Release);
    }

    /// Publishes how far the stage has caught up, for sources that wait for the pipeline
    /// to settle.
    pub(crate) fn publish_acted(&self) {
        if self.kind != RootKind::Shuffle {
            return;
        }
        let acted = &self.job.acted[self.layout.index][self.job.local(self.worker)];
        if self.finished {
            acted.watermark.store(u64::MAX, Ordering::Release);
            acted.now_ms.store(i64::MAX, Ordering::Release);
            acted.idle.store(true, Ordering::Release);
            return;
        }
        let idle =
            self.queue.is_empty() && self.next_group >= self.groups && self.fired_since_accept;
        if idle {
            // Caught up on processing time until just before its next deadline.
            let caught_up = self
                .instance
                .as_ref()
                .and_then(StageInstance::next_wakeup_ms)
                .map_or(i64::MAX, |at| at - 1);
            acted
                .watermark
                .store(engine_time(self.fired_at.0), Ordering::Release);
            acted.now_ms.store(caught_up, Ordering::Release);
        }
        acted.idle.store(idle, Ordering::Release);
    }

    pub(crate) fn accept(&mut self, batch: Batch) {
        if self.finished || self.job.has_failed() {
            return;
        }
        self.fired_since_accept = false;
        let Some(instance) = self.instance() else {
            return;
        };
        let mut error = None;
        for record in records(&batch.bytes) {
            let result = match record {
                Ok(record) => instance.accept(record),
                Err(malformed) => Err(ExecError::new("shuffle", malformed)),
            };
            if let Err(e) = result {
                error = Some(e);
                break;
            }
        }
        if let Some(error) = error {
            self.fail(error, 1);
        }
    }

    /// Keeps a side input's records until it is complete.
    pub(crate) fn accept_side(&mut self, side: usize, batch: Batch) {
        if self.finished || self.job.has_failed() {
            return;
        }
        // Every worker holds its own copy of a side input: one that alone exceeds the
        // budget fails the job with a clear error instead of exhausting the memory.
        if let Some(memory) = &self.job.memory {
            let n = batch.bytes.len() as u64;
            memory.force_reserve(n);
            self.side_bytes += n;
            let copies = self.job.config.workers as u64;
            if self.side_bytes * copies > memory.limit() {
                let view = self.side_view_name(side);
                self.fail(
                    ExecError::permanent(
                        view,
                        format!(
                            "this side input holds {} on each of the {copies} worker(s) of the process, more than the memory budget of {} (--max_memory) allows; side inputs are held in memory whole: raise --max_memory, or join the data with CoGroupByKey instead",
                            human_bytes(self.side_bytes),
                            human_bytes(memory.limit())
                        ),
                    ),
                    1,
                );
                return;
            }
        }
        for record in records(&batch.bytes) {
            match record {
                Ok(record) => self.side_records[side].push(record.value.to_vec()),
                Err(malformed) => {
                    self.fail(ExecError::new("side input", malformed), 1);
                    return;
                }
            }
        }
    }

    /// The name of the view that writes side input `side`.
    fn side_view_name(&self, side: usize) -> String {
        let graph = &self.job.graph;
        self.layout
            .side_inputs
            .get(side)
            .and_then(|edge| graph.producers(*edge).next())
            .map(|writer| {
                self.job
                    .pipeline
                    .transform(graph.step(writer).original)
                    .name
                    .clone()
            })
            .unwrap_or_else(|| "side input".into())
    }

    /// Builds every view the stage reads from its complete side inputs.
    fn materialize_side_inputs(&mut self) -> Result<(), Box<ExecError>> {
        let mut views = Vec::new();
        for (edge, records) in self
            .layout
            .side_inputs
            .iter()
            .zip(std::mem::take(&mut self.side_records))
        {
            let graph = &self.job.graph;
            let Some(writer) = graph.producers(*edge).next() else {
                return Err(ExecError::new(
                    graph.edge(*edge).name.clone(),
                    "internal error: a side input without a view",
                ));
            };
            let transform = self.job.pipeline.transform(graph.step(writer).original);
            let sluice_plan::Payload::View(view) = &transform.payload else {
                return Err(ExecError::new(
                    transform.name.clone(),
                    "internal error: a side input not written by a view",
                ));
            };
            let mut ctx = sluice_core::unit::UnitContext::standalone(transform.name.clone());
            ctx.worker = self.worker;
            ctx.workers = self.peers;
            views.push((edge.0, view.materialize(&ctx, &records)?));
        }
        if let Some(instance) = self.instance() {
            instance.set_side_inputs(sluice_core::unit::SideInputs(views));
        }
        Ok(())
    }

    pub(crate) fn work(
        &mut self,
        watermark: Timestamp,
        inputs_done: bool,
        sides_complete: bool,
        now_ms: i64,
    ) -> Work {
        let done = Work {
            finished: true,
            ..Work::default()
        };
        if self.finished {
            return done;
        }
        if self.job.has_failed() {
            self.finish();
            return done;
        }
        if !self.sides_ready {
            if !sides_complete {
                return Work::default();
            }
            if let Err(error) = self.materialize_side_inputs() {
                self.fail(error, 1);
                return done;
            }
            self.sides_ready = true;
        }
        if self.queue.is_empty() {
            let next = match self.kind {
                RootKind::BoundedSource => match self.next_split() {
                    Some(pending) => pending,
                    None => {
                        self.finish();
                        return done;
                    }
                },
                RootKind::UnboundedSource => match self.next_unbounded(now_ms) {
                    Ok(pending) => pending,
                    Err(idle) => return idle,
                },
                RootKind::Shuffle => match self.next_groups(watermark, now_ms) {
                    Ok(Some(pending)) => pending,
                    // Only once no input can arrive: a watermark at the end of time
                    // may still bring late data.
                    Ok(None) if inputs_done => {
                        self.finish();
                        return done;
                    }
                    Ok(None) => return self.idle(watermark),
                    Err(error) => {
                        self.fail(error, 1);
                        return done;
                    }
                },
            };
            self.queue.push_back(WorkItem {
                pending: next,
                attempt: 1,
                suspect: None,
                retry: false,
                not_before: None,
            });
        }
        let mut work = self.attempt_next();
        if !work.finished && self.queue.is_empty() {
            work.hold = self.output_watermark(watermark);
        }
        work
    }

    /// Nothing to do until the input or the clock moves: the stage's output watermark
    /// and its next processing-time deadline.
    fn idle(&mut self, watermark: Timestamp) -> Work {
        Work {
            hold: self.output_watermark(watermark),
            wakeup_ms: self
                .instance
                .as_ref()
                .and_then(StageInstance::next_wakeup_ms),
            ..Work::default()
        }
    }

    /// Where the stage's output watermark may move, once its queue is empty.
    fn output_watermark(&self, watermark: Timestamp) -> Option<Timestamp> {
        let held = match self.kind {
            RootKind::BoundedSource => Held::BoundedSource,
            RootKind::UnboundedSource => {
                Held::UnboundedSource(self.splits.as_ref().map(|splits| {
                    splits
                        .iter()
                        .filter(|s| s.rest.is_some())
                        .map(|s| s.watermark)
                        .min()
                        .unwrap_or(Timestamp::MAX)
                }))
            }
            RootKind::Shuffle => Held::Shuffle {
                emitting: self.next_group < self.groups,
                hold: self
                    .instance
                    .as_ref()
                    .map_or(Timestamp::MAX, StageInstance::hold),
            },
        };
        output_watermark(held, watermark)
    }

    /// The next part of one of this worker's unbounded splits that is due, or — when none
    /// is — the activation's result: waiting for the earliest, or finished.
    fn next_unbounded(&mut self, now_ms: i64) -> Result<Pending, Work> {
        let stage = self.layout.index;
        let splits = self.splits.get_or_insert_with(|| {
            self.job.splits[stage]
                .iter()
                .enumerate()
                .filter(|(i, _)| i % self.peers == self.worker)
                .map(|(_, split)| UnboundedSplit {
                    rest: Some(split.clone()),
                    watermark: Timestamp::MIN,
                    not_before_ms: None,
                })
                .collect()
        });
        if self.job.config.drain.load(Ordering::Acquire) && splits.iter().any(|s| s.rest.is_some())
        {
            // Draining: stop reading; the watermark goes to the end of time.
            log::info!(
                "draining: stage {} on worker {} stops reading its source",
                self.job.stage_label(stage),
                self.worker
            );
            for split in splits.iter_mut() {
                split.rest = None;
            }
        }
        let n = splits.len();
        let mut earliest: Option<i64> = None;
        for k in 0..n {
            let slot = (self.next_split + k) % n;
            let split = &splits[slot];
            let Some(rest) = &split.rest else {
                continue;
            };
            // A hand-moved clock does not move while the source waits: its waits are
            // polls, timed by the wakeup after the read that asked to wait.
            let manual = self.job.config.clock.is_manual();
            match split.not_before_ms {
                Some(at) if at > now_ms && !manual => {
                    earliest = Some(earliest.map_or(at, |e: i64| e.min(at)));
                }
                _ => {
                    self.next_split = slot + 1;
                    return Ok(Pending::Unbounded {
                        slot,
                        split: rest.clone(),
                    });
                }
            }
        }
        if splits.iter().all(|s| s.rest.is_none()) {
            self.finish();
            return Err(Work {
                finished: true,
                ..Work::default()
            });
        }
        Err(Work {
            hold: self.output_watermark(Timestamp::MAX),
            // Checked at least every 100 ms, so that a drain is noticed.
            wakeup_ms: Some(earliest.unwrap_or(now_ms + 100).min(now_ms + 100)),
            ..Work::default()
        })
    }

    /// Claims the next split of the stage's source; `None` when none is left.
    fn next_split(&mut self) -> Option<Pending> {
        let stage = self.layout.index;
        // Each process reads its share of the splits (every process computes the same
        // splits); its threads take them in turn as they are free.
        let taken = self.job.cursors[stage].fetch_add(1, Ordering::Relaxed);
        let next = taken
            .saturating_mul(self.job.config.processes())
            .saturating_add(self.job.config.process());
        self.job.splits[stage]
            .get(next)
            .cloned()
            .map(Pending::Split)
    }

    /// The next range of groups to emit, firing the shuffle reader when the previous
    /// groups are all out; `None` when nothing is ready.
    fn next_groups(
        &mut self,
        watermark: Timestamp,
        now_ms: i64,
    ) -> Result<Option<Pending>, Box<ExecError>> {
        let max = self.job.config.max_groups_per_bundle.max(1);
        if self.next_group >= self.groups {
            let Some(instance) = self.instance() else {
                return Ok(None);
            };
            let fired = instance.fire()?;
            self.fired_since_accept = true;
            self.fired_at = (watermark, now_ms);
            self.groups = fired;
            self.next_group = 0;
        }
        let start = self.next_group;
        let end = (start + max).min(self.groups);
        self.next_group = end.max(start);
        Ok((start < end).then_some(Pending::Groups(start..end)))
    }

    /// Runs one attempt of the next bundle: commits it, or — after tearing the stage's
    /// units down — queues its retry, divided before the failing element; or fails the
    /// job when that element has had its last attempt.
    fn attempt_next(&mut self) -> Work {
        let Some(item) = self.queue.front().cloned() else {
            return Work::default();
        };
        if let Some(at) = item.not_before {
            let now = Instant::now();
            if at > now {
                return Work {
                    retry_after: Some(at - now),
                    ..Work::default()
                };
            }
        }
        let stage = self.layout.index;
        let description = match &item.pending {
            Pending::Split(split) => format!("{split:?}"),
            Pending::Groups(range) => format!("groups {}..{}", range.start, range.end),
            Pending::Unbounded { split, .. } => format!("{split:?}"),
        };
        let progress = self.job.progress[self.job.local(self.worker)].clone();
        if self.instance().is_none() {
            return Work {
                finished: true,
                ..Work::default()
            };
        }
        let Some(mut instance) = self.instance.take() else {
            return Work::default();
        };
        instance.set_attempt(item.attempt, item.suspect);
        progress.begin(stage, &description);
        let mut continuation: Option<(usize, Continuation)> = None;
        let result = match &item.pending {
            Pending::Split(split) => instance.run_source_bundle(&**split),
            Pending::Groups(range) => instance.run_group_bundle(range.clone()),
            Pending::Unbounded { slot, split } => instance
                .run_unbounded_bundle(&**split, self.job.config.unbounded_bundle_elements)
                .map(|(output, c)| {
                    continuation = Some((*slot, c));
                    output
                }),
        };
        let position = progress.position.load(Ordering::Relaxed);
        progress.end();
        {
            let mut state = self.state.borrow_mut();
            *state.report.stage_attempts.entry(stage).or_default() += 1;
            if item.retry {
                *state.report.stage_retries.entry(stage).or_default() += 1;
            }
        }
        self.queue.pop_front();
        match result {
            Ok(output) => {
                let report = instance.take_step_report(true);
                self.instance = Some(instance);
                self.record_steps(report);
                let mut wait = None;
                if let (Some((slot, c)), Some(splits)) = (continuation, self.splits.as_mut())
                    && let Some(split) = splits.get_mut(slot)
                {
                    split.rest = c.rest;
                    split.watermark = split.watermark.max(c.watermark);
                    split.not_before_ms = c.not_before_ms;
                    wait = c.not_before_ms;
                }
                if let Some(at) = wait {
                    // The source has nothing due: come back then, not at once.
                    return Work {
                        emitted: self.commit(output),
                        wakeup_ms: Some(at),
                        ..Work::default()
                    };
                }
                Work {
                    emitted: self.commit(output),
                    more: true,
                    ..Work::default()
                }
            }
            Err(error) => {
                // Coupled failure: every unit of the stage is torn down; the retry runs
                // the bundle's elements through fresh instances.
                instance.discard_chain();
                let failed_step = instance.step_named(&error.transform);
                let report = instance.take_step_report(false);
                self.instance = Some(instance);
                self.record_steps(report);
                {
                    let mut state = self.state.borrow_mut();
                    *state.report.stage_failed_attempts.entry(stage).or_default() += 1;
                    if let Some(step) = failed_step {
                        *state.report.step_failures.entry(step.0).or_default() += 1;
                    }
                }
                let max = self.job.config.max_bundle_attempts;
                let unlimited = max == u32::MAX;
                // Streaming retries a failing element without limit, waiting longer each
                // time (50 ms, doubling, at most a minute) so a stalled pipeline neither
                // spins nor hides: every failure is counted and logged.
                let streaming = self.job.config.streaming;
                let decision = if error.permanent {
                    // Malformed input fails the same way on every attempt.
                    crate::retry::Retry::GiveUp
                } else {
                    crate::retry::after_failure(item.pending.divide(position), item.attempt, max)
                };
                let (retry, wait) = match decision {
                    // The failing element was not the first: what came before it runs
                    // again as a bundle of its own, and the rest starts at the element
                    // that failed, on its second attempt.
                    crate::retry::Retry::Divide { before, rest } => {
                        let wait = crate::retry::backoff(streaming, 2);
                        self.queue.push_front(WorkItem {
                            pending: rest,
                            attempt: 2,
                            suspect: Some(position),
                            retry: true,
                            not_before: wait.map(|d| Instant::now() + d),
                        });
                        self.queue.push_front(WorkItem {
                            pending: before,
                            attempt: 1,
                            suspect: None,
                            retry: true,
                            not_before: None,
                        });
                        (2, wait)
                    }
                    crate::retry::Retry::GiveUp => {
                        self.fail(error, item.attempt);
                        return Work {
                            finished: true,
                            ..Work::default()
                        };
                    }
                    crate::retry::Retry::Again { attempt } => {
                        let wait = crate::retry::backoff(streaming, attempt);
                        self.queue.push_front(WorkItem {
                            attempt,
                            suspect: Some(position),
                            retry: true,
                            not_before: wait.map(|d| Instant::now() + d),
                            ..item
                        });
                        (attempt, wait)
                    }
                };
                let message = sluice_core::error::display_safely(&error.source);
                if let Some(unlogged) =
                    self.job
                        .retry_log
                        .admit(&error.transform, &message, Instant::now())
                {
                    let limit = if unlimited {
                        "without limit".to_string()
                    } else {
                        format!("of {max}")
                    };
                    let after = wait.map_or(String::new(), |d| format!(" in {} ms", d.as_millis()));
                    let more = if unlogged > 0 {
                        format!(
                            " ({unlogged} more failure(s) like it in the last {} s were retried without a log line)",
                            crate::retry::LOG_INTERVAL.as_secs()
                        )
                    } else {
                        String::new()
                    };
                    log::warn!(
                        "stage {} on worker {}: bundle ({description}) failed, retrying its failing element{after} (attempt {retry} {limit}): {error}{more}",
                        self.job.stage_label(stage),
                        self.worker,
                    );
                }
                Work {
                    more: true,
                    ..Work::default()
                }
            }
        }
    }

    /// Accounts for a committed bundle, writes its sink bytes, and returns its batches.
    fn commit(&mut self, output: BundleOutput) -> Vec<Batches> {
        let stage = self.layout.index;
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let report = &mut state.report;
        *report.stage_bundles.entry(stage).or_default() += 1;
        if output.bytes_read > 0 {
            *report.source_bytes.entry(stage).or_default() += output.bytes_read;
        }
        for (edge, n, bytes) in output.counts {
            let e = report.edges.entry(edge.0).or_default();
            e.0 += n;
            e.1 += bytes;
        }
        let mut emitted = Vec::with_capacity(output.shuffles.len());
        for (edge, batches) in self.layout.shuffle_outputs.iter().zip(output.shuffles) {
            let e = report
                .shuffle
                .entry(shuffle_key(stage, edge.0))
                .or_default();
            emitted.push(
                batches
                    .into_iter()
                    .map(|b| {
                        e.0 += b.records;
                        e.1 += b.bytes.len() as u64;
                        Batch {
                            dest: b.dest as u32,
                            records: b.records,
                            bytes: b.bytes,
                        }
                    })
                    .collect(),
            );
        }
        let mut failure = None;
        for (transform, bytes) in output.sinks {
            if bytes.records == 0 {
                continue;
            }
            let sink = report.sink.entry(transform.0).or_default();
            sink.0 += bytes.records;
            sink.1 += bytes.bytes.len() as u64;
            let writer = match state.writers.entry(transform) {
                std::collections::hash_map::Entry::Occupied(w) => w.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let opened = self.job.sink(transform).map(|s| s.open(self.worker));
                    match opened {
                        Some(Ok(w)) => slot.insert(w),
                        Some(Err(source)) => {
                            failure = Some((transform, source));
                            break;
                        }
                        None => {
                            failure =
                                Some((transform, "internal error: no job for this sink".into()));
                            break;
                        }
                    }
                }
            };
            if let Err(source) = writer.write_bundle(bytes) {
                failure = Some((transform, source));
                break;
            }
        }
        if let Some((transform, source)) = failure {
            let transform = self.job.pipeline.transform(transform).name.clone();
            self.job.fail(JobError::SinkWrite { transform, source });
        }
        if let Some(live) = &self.job.config.live {
            live.publish(self.job.local(self.worker), &state.report, false);
        }
        emitted
    }

    pub(crate) fn add_time(&mut self, started: Instant) {
        let nanos = started.elapsed().as_nanos() as u64;
        *self
            .state
            .borrow_mut()
            .report
            .stage_nanos
            .entry(self.layout.index)
            .or_default() += nanos;
    }
}
