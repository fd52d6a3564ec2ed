//! One fused stage on one worker: its execution units, wired, and its bundles.
//!
//! A [`StageInstance`] has a *root* — a source reader or a shuffle reader — and a
//! *chain*: the units of every other step, built back to front so that each producer's
//! [`Port`](sluice_core::Port) can be handed its consumers' receivers. The root outlives
//! the chain: a failed bundle can discard the chain and rebuild it, and the root (which
//! may hold everything its worker received from a shuffle) attaches to the new one.
//!
//! A bundle's effects — shuffle records, sink bytes, element counts — collect in the
//! chain's buffers and leave only through [`StageInstance`]'s bundle methods, which
//! return them on success and drop them on failure.

use std::collections::HashMap;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sluice_core::error::{current_step, panic_message, quiet_panics};
use sluice_core::receiver::{AnyPort, AnyReceiver, PortCounters};
use sluice_core::shuffle::{RecordBatch, ShuffleRecord, ShuffleWriter};
use sluice_core::time::Clock;
use sluice_core::unit::{
    Attempt, Continuation, JobControl, ShuffleReader, SideInputs, SinkBuffer, SinkBytes,
    SourceReader, SourceSplit, UnitContext, UnitCounters,
};
use sluice_core::user_metrics::MetricValue;
use sluice_core::{ExecError, Timestamp, UnitResult};
use sluice_plan::{
    EdgeId, EdgeKind, ExecutionGraph, Payload, PipelineGraph, StepId, StepOp, TransformId,
};

/// What a stage reads and writes, derived once per job from the plan.
#[derive(Clone, Debug)]
pub struct StageLayout {
    /// Index of the stage in the execution graph.
    pub index: usize,
    /// The root step.
    pub root: StepId,
    /// Shuffle and side-input edges the stage writes, in the order of its engine outputs.
    pub shuffle_outputs: Vec<EdgeId>,
    /// The shuffle edge the root reads, if it reads one.
    pub shuffle_input: Option<EdgeId>,
    /// Side-input edges the stage's steps read whole before the stage runs.
    pub side_inputs: Vec<EdgeId>,
}

impl StageLayout {
    /// The layout of stage `index`.
    pub fn new(graph: &ExecutionGraph, index: usize) -> StageLayout {
        let stage = &graph.stages[index];
        let root = stage.steps[0];
        let mut shuffle_outputs = Vec::new();
        let mut side_inputs = Vec::new();
        for step in &stage.steps {
            for output in &graph.step(*step).outputs {
                let crosses = matches!(
                    graph.edge(*output).kind,
                    EdgeKind::Shuffle | EdgeKind::SideInput
                );
                if crosses && !shuffle_outputs.contains(output) {
                    shuffle_outputs.push(*output);
                }
            }
            for side in &graph.step(*step).side_inputs {
                if !side_inputs.contains(side) {
                    side_inputs.push(*side);
                }
            }
        }
        let shuffle_input = graph
            .step(root)
            .inputs
            .iter()
            .copied()
            .find(|e| graph.edge(*e).kind == EdgeKind::Shuffle);
        StageLayout {
            index,
            root,
            shuffle_outputs,
            shuffle_input,
            side_inputs,
        }
    }
}

/// Everything a successful bundle produced.
#[derive(Debug, Default)]
pub struct BundleOutput {
    /// Record batches per shuffle output, aligned with [`StageLayout::shuffle_outputs`].
    pub shuffles: Vec<Vec<RecordBatch>>,
    /// Bytes per sink, by the sink's transform.
    pub sinks: Vec<(TransformId, SinkBytes)>,
    /// Elements and estimated bytes per PCollection edge.
    pub counts: Vec<(EdgeId, u64, u64)>,
    /// Bytes the root read from storage.
    pub bytes_read: u64,
}

enum Root {
    Source(Box<dyn SourceReader>),
    Shuffle(Box<dyn ShuffleReader>),
}

/// The buffers of one built chain.
struct Chain {
    shuffles: Vec<ShuffleWriter>,
    sinks: Vec<(TransformId, SinkBuffer)>,
    counters: Vec<(EdgeId, Rc<PortCounters>)>,
}

/// One stage's units on one worker.
pub struct StageInstance {
    builder: Builder,
    root: Root,
    /// The units of every step but the root; `None` after a failure tore them down.
    chain: Option<Chain>,
    /// Step index and name of every step of the stage, to name the one that panicked.
    step_names: Vec<(u32, String)>,
}

/// Builds the units of one stage on one worker, as often as failures require.
struct Builder {
    pipeline: Arc<PipelineGraph>,
    graph: Arc<ExecutionGraph>,
    layout: StageLayout,
    worker: usize,
    workers: usize,
    attempt: Rc<Attempt>,
    position: Arc<AtomicU64>,
    /// Per step: what its units report; kept across rebuilds.
    counters: Vec<(StepId, Rc<UnitCounters>)>,
    /// The views this stage reads, once materialised.
    side_inputs: Rc<SideInputs>,
    /// How the job runs: streaming or batch, its clock, its controls.
    mode: JobMode,
}

/// What every unit of a job learns about how it runs.
#[derive(Clone, Debug, Default)]
pub struct JobMode {
    /// Streaming: triggers evaluate as data arrives; unbounded sources read part by part.
    pub streaming: bool,
    /// Processing time.
    pub clock: Clock,
    /// The job, for sources that pace themselves against it.
    pub job: Option<Arc<dyn JobControl>>,
    /// Attempts a bundle gets before the job fails.
    pub max_attempts: u32,
    /// The process's memory budget.
    pub memory: Option<Arc<sluice_core::spill::MemoryBudget>>,
}

/// What the units of a stage reported, per step.
#[derive(Debug, Default)]
pub struct StepReport {
    /// (step, DoFn instances torn down since the last report).
    pub teardowns: Vec<(StepId, u64)>,
    /// (step, elements dead-lettered by the committed bundle).
    pub dead_lettered: Vec<(StepId, u64)>,
    /// (step, metric name, value) the committed bundle's user code reported.
    pub user: Vec<(StepId, String, MetricValue)>,
    /// (step, elements dropped as late since the last report).
    pub late_dropped: Vec<(StepId, u64)>,
    /// (step, what it held and spilled since the last report).
    pub memory: Vec<(StepId, crate::metrics::StepMemory)>,
}

impl StageInstance {
    /// Builds the stage's root for this worker. Its other units are built by
    /// [`StageInstance::prepare`], before the first bundle and after each failure.
    pub fn new(
        pipeline: Arc<PipelineGraph>,
        graph: Arc<ExecutionGraph>,
        layout: &StageLayout,
        worker: usize,
        workers: usize,
        position: Arc<AtomicU64>,
        mode: JobMode,
    ) -> Result<StageInstance, Box<ExecError>> {
        let counters = graph.stages[layout.index]
            .steps
            .iter()
            .map(|s| (*s, Rc::default()))
            .collect();
        let step_names = graph.stages[layout.index]
            .steps
            .iter()
            .map(|s| (s.0 as u32, graph.step(*s).name.clone()))
            .collect();
        let builder = Builder {
            pipeline,
            graph,
            layout: layout.clone(),
            worker,
            workers,
            attempt: Rc::new(Attempt::first_of(mode.max_attempts)),
            position,
            counters,
            side_inputs: Rc::default(),
            mode,
        };
        let root_step = builder.graph.step(layout.root);
        let ctx = builder.ctx(layout.root);
        let payload = &builder.pipeline.transform(root_step.original).payload;
        let root = match (root_step.op, payload) {
            (StepOp::Read, Payload::Read(source)) | (StepOp::Create, Payload::Create(source)) => {
                Root::Source(source.reader(&ctx)?)
            }
            (StepOp::GroupByKeyRead, Payload::GroupByKey(gbk)) => Root::Shuffle(gbk.reader(&ctx)?),
            (StepOp::StatefulParDo, Payload::StatefulParDo(stateful)) => {
                Root::Shuffle(stateful.reader(&ctx)?)
            }
            (StepOp::MergeAccumulators, Payload::CombineValues(combine)) => {
                Root::Shuffle(combine.merge_reader(&ctx)?)
            }
            (StepOp::ReshuffleRead, _) => {
                let element = builder.element_of(root_step.outputs[0])?;
                Root::Shuffle(element.reshuffle_reader(&ctx))
            }
            (op, payload) => {
                return Err(ctx.error(format!(
                    "internal error: a {op:?} step cannot root a stage ({payload:?})"
                )));
            }
        };
        Ok(StageInstance {
            builder,
            root,
            chain: None,
            step_names,
        })
    }

    /// Whether a panic now may fail the job: the bundle is on its last attempt.
    fn loud(&self) -> bool {
        self.builder.attempt.is_last()
    }

    /// Gives the stage the views it reads (before its units are built).
    pub fn set_side_inputs(&mut self, side_inputs: SideInputs) {
        self.builder.side_inputs = Rc::new(side_inputs);
    }

    /// Sets the attempt of the next bundle (1 for a first attempt) and, on a retry, the
    /// position of the element that failed before.
    pub fn set_attempt(&mut self, attempt: u32, suspect: Option<u64>) {
        self.builder.attempt.number.set(attempt);
        self.builder.attempt.suspect.set(suspect);
    }

    /// Builds the units of every step but the root — running each DoFn's setup — unless
    /// they are built already.
    pub fn prepare(&mut self) -> UnitResult {
        let loud = self.loud();
        if self.chain.is_some() {
            return Ok(());
        }
        let builder = &self.builder;
        let (head, chain) = guarded(&self.step_names, loud, || builder.build_chain())?;
        let attached = match &mut self.root {
            Root::Source(r) => r.attach(head),
            Root::Shuffle(r) => r.attach(head),
        };
        attached.map_err(|e| self.builder.ctx(self.builder.layout.root).error(e))?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Tears down every unit but the root (each DoFn's teardown runs), after a failure.
    pub fn discard_chain(&mut self) {
        match &mut self.root {
            Root::Source(r) => r.detach(),
            Root::Shuffle(r) => r.detach(),
        }
        self.chain = None;
    }

    /// Tears the whole instance down, root included, and reports what its units did
    /// since the last report (the root's teardown among it).
    pub fn close(mut self) -> StepReport {
        self.discard_chain();
        let counters = self.builder.counters.clone();
        let mut report = self.take_step_report(false);
        drop(self);
        for (step, c) in counters {
            let teardowns = c.teardowns.replace(0);
            if teardowns > 0 {
                report.teardowns.push((step, teardowns));
            }
        }
        report
    }

    /// What the units reported since the last call; teardowns are always reported,
    /// dead letters only with `committed` (a failed bundle's do not count).
    pub fn take_step_report(&mut self, committed: bool) -> StepReport {
        let mut report = StepReport::default();
        for (step, c) in &self.builder.counters {
            let teardowns = c.teardowns.replace(0);
            if teardowns > 0 {
                report.teardowns.push((*step, teardowns));
            }
            let dead = c.dead_lettered.replace(0);
            if committed && dead > 0 {
                report.dead_lettered.push((*step, dead));
            }
            let late = c.late_dropped.replace(0);
            if late > 0 {
                report.late_dropped.push((*step, late));
            }
            let memory = crate::metrics::StepMemory {
                peak_bytes_held: c.held_peak.replace(0),
                bytes_spilled: c.spilled_bytes.replace(0),
                spill_files: c.spill_files.replace(0),
            };
            if memory != crate::metrics::StepMemory::default() {
                report.memory.push((*step, memory));
            }
            let user = c.user.take();
            if committed {
                report
                    .user
                    .extend(user.into_iter().map(|(name, value)| (*step, name, value)));
            }
        }
        report
    }

    /// Reads one split of the root source as one bundle.
    pub fn run_source_bundle(
        &mut self,
        split: &dyn SourceSplit,
    ) -> Result<BundleOutput, Box<ExecError>> {
        let loud = self.loud();
        self.prepare()?;
        let Root::Source(reader) = &mut self.root else {
            return Err(ExecError::new(
                "runtime",
                "internal error: not a source stage",
            ));
        };
        let result = guarded(&self.step_names, loud, || {
            reader.start_bundle()?;
            reader.read(split)?;
            reader.finish_bundle()
        });
        let bytes_read = reader.take_bytes_read();
        self.finish_bundle(result, bytes_read)
    }

    /// Buffers one record received from the shuffle the root reads.
    pub fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        let loud = self.loud();
        match &mut self.root {
            Root::Shuffle(reader) => guarded(&self.step_names, loud, || reader.accept(record)),
            Root::Source(_) => Err(ExecError::new(
                "runtime",
                "internal error: not a shuffle stage",
            )),
        }
    }

    /// The input watermark and processing time moved.
    pub fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        if let Root::Shuffle(reader) = &mut self.root {
            reader.advance(watermark, now_ms);
        }
    }

    /// Makes what the shuffle reader has ready the next groups to emit; returns how many.
    pub fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        let loud = self.loud();
        match &mut self.root {
            Root::Shuffle(reader) => {
                let mut groups = 0;
                guarded(&self.step_names, loud, || {
                    groups = reader.fire()?;
                    Ok(())
                })?;
                Ok(groups)
            }
            Root::Source(_) => Err(ExecError::new(
                "runtime",
                "internal error: not a shuffle stage",
            )),
        }
    }

    /// The watermark hold of what the shuffle reader buffers.
    pub fn hold(&self) -> Timestamp {
        match &self.root {
            Root::Shuffle(reader) => reader.hold(),
            Root::Source(_) => Timestamp::MAX,
        }
    }

    /// When the shuffle reader next has something due by processing time.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        match &self.root {
            Root::Shuffle(reader) => reader.next_wakeup_ms(),
            Root::Source(_) => None,
        }
    }

    /// Reads the next part of an unbounded split as one bundle.
    pub fn run_unbounded_bundle(
        &mut self,
        split: &dyn SourceSplit,
        max_elements: usize,
    ) -> Result<(BundleOutput, Continuation), Box<ExecError>> {
        let loud = self.loud();
        self.prepare()?;
        let Root::Source(reader) = &mut self.root else {
            return Err(ExecError::new(
                "runtime",
                "internal error: not a source stage",
            ));
        };
        let mut continuation = None;
        let result = guarded(&self.step_names, loud, || {
            reader.start_bundle()?;
            continuation = Some(reader.read_some(split, max_elements)?);
            reader.finish_bundle()
        });
        let bytes_read = reader.take_bytes_read();
        let output = self.finish_bundle(result, bytes_read)?;
        let continuation = continuation.ok_or_else(|| {
            ExecError::new(
                "runtime",
                "internal error: an unbounded read returned nothing",
            )
        })?;
        Ok((output, continuation))
    }

    /// Emits the groups in `range` as one bundle.
    pub fn run_group_bundle(
        &mut self,
        range: Range<usize>,
    ) -> Result<BundleOutput, Box<ExecError>> {
        let loud = self.loud();
        self.prepare()?;
        let Root::Shuffle(reader) = &mut self.root else {
            return Err(ExecError::new(
                "runtime",
                "internal error: not a shuffle stage",
            ));
        };
        let result = guarded(&self.step_names, loud, || {
            reader.start_bundle()?;
            reader.emit(range)?;
            reader.finish_bundle()
        });
        self.finish_bundle(result, 0)
    }

    /// The stage's layout.
    pub fn layout(&self) -> &StageLayout {
        &self.builder.layout
    }

    /// The step named `name` in this stage, if any.
    pub fn step_named(&self, name: &str) -> Option<StepId> {
        self.step_names
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| StepId(*id as usize))
    }

    fn finish_bundle(
        &mut self,
        result: UnitResult,
        bytes_read: u64,
    ) -> Result<BundleOutput, Box<ExecError>> {
        let Some(chain) = &self.chain else {
            return Err(ExecError::new(
                "runtime",
                "internal error: bundle without units",
            ));
        };
        if let Root::Shuffle(reader) = &mut self.root {
            if result.is_ok() {
                reader.commit();
            } else {
                reader.abort();
            }
        }
        if let Err(e) = result {
            for w in &chain.shuffles {
                w.discard();
            }
            for (_, s) in &chain.sinks {
                s.discard();
            }
            for (_, c) in &chain.counters {
                c.reset();
            }
            return Err(e);
        }
        Ok(BundleOutput {
            shuffles: chain
                .shuffles
                .iter()
                .map(ShuffleWriter::take_batches)
                .collect(),
            sinks: chain.sinks.iter().map(|(t, s)| (*t, s.take())).collect(),
            counts: chain
                .counters
                .iter()
                .map(|(e, c)| {
                    let (n, bytes) = c.take();
                    (*e, n, bytes)
                })
                .collect(),
            bytes_read,
        })
    }
}

/// Runs `f`, turning a panic into an error of the step whose code panicked.
///
/// Panics are caught here, once per bundle, rather than around every element: units
/// mark the step they run (`current_step`), which costs far less per element than a
/// catch and lets the compiler inline fused units into each other.
fn guarded<R>(
    step_names: &[(u32, String)],
    loud: bool,
    f: impl FnOnce() -> Result<R, Box<ExecError>>,
) -> Result<R, Box<ExecError>> {
    // Panics that a retry may mend are not printed; the last attempt's are.
    match quiet_panics::quietly(loud, || catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result,
        Err(panic) => {
            let step = current_step::take_panicked_step();
            let name = step
                .and_then(|s| step_names.iter().find(|(id, _)| *id == s))
                .map(|(_, name)| name.as_str())
                .unwrap_or("the runner");
            Err(ExecError::new(
                name,
                format!("panicked: {}", panic_message(&*panic)),
            ))
        }
    }
}

impl Builder {
    fn ctx(&self, step: StepId) -> UnitContext {
        let counters = self
            .counters
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        UnitContext {
            transform: self.graph.step(step).name.clone(),
            step: step.0 as u32,
            worker: self.worker,
            workers: self.workers,
            attempt: self.attempt.clone(),
            counters,
            position: self.position.clone(),
            side_inputs: self.side_inputs.clone(),
            streaming: self.mode.streaming,
            clock: self.mode.clock.clone(),
            job: self.mode.job.clone(),
            memory: self.mode.memory.clone(),
        }
    }

    fn element_of(
        &self,
        edge: EdgeId,
    ) -> Result<std::sync::Arc<dyn sluice_core::unit::ElementType>, Box<ExecError>> {
        match self.graph.edge(edge).kind {
            EdgeKind::PCollection(pc) => Ok(self.pipeline.pcollection(pc).element.clone()),
            EdgeKind::Shuffle | EdgeKind::SideInput => Err(ExecError::new(
                self.graph.edge(edge).name.clone(),
                "internal error: a shuffle or side-input edge has no element type",
            )),
        }
    }

    /// Builds every non-root unit of the stage, last step first; returns the port of the
    /// root's output and the chain's buffers.
    fn build_chain(&self) -> Result<(AnyPort, Chain), Box<ExecError>> {
        let stage = &self.graph.stages[self.layout.index];
        let in_stage = |s: StepId| stage.steps.contains(&s);
        let mut receivers: HashMap<EdgeId, Vec<AnyReceiver>> = HashMap::new();
        let mut chain = Chain {
            shuffles: self
                .layout
                .shuffle_outputs
                .iter()
                .map(|_| ShuffleWriter::new(self.workers))
                .collect(),
            sinks: Vec::new(),
            counters: Vec::new(),
        };
        for &id in stage.steps[1..].iter().rev() {
            let step = self.graph.step(id);
            let ctx = self.ctx(id);
            let mut ports = Vec::new();
            for output in &step.outputs {
                if let EdgeKind::PCollection(_) = self.graph.edge(*output).kind {
                    ports.push(self.port(*output, &mut receivers, &mut chain)?);
                }
            }
            let shuffle_writer = || {
                step.outputs
                    .iter()
                    .find_map(|e| self.layout.shuffle_outputs.iter().position(|o| o == e))
                    .map(|i| chain.shuffles[i].clone())
                    .ok_or_else(|| {
                        ctx.error("internal error: shuffle writer without a shuffle output")
                    })
            };
            let payload = &self.pipeline.transform(step.original).payload;
            let mismatch = |e| ctx.error(e);
            let built: Vec<(EdgeId, AnyReceiver)> = match (step.op, payload) {
                (StepOp::ParDo, Payload::ParDo(f)) => vec![(step.inputs[0], f.build(&ctx, ports)?)],
                (StepOp::CombineValues, Payload::CombineValues(f)) => {
                    vec![(step.inputs[0], f.grouped(&ctx, single(ports, &ctx)?)?)]
                }
                (StepOp::GroupByKeyWrite, Payload::GroupByKey(f)) => {
                    vec![(step.inputs[0], f.writer(&ctx, shuffle_writer()?)?)]
                }
                (StepOp::PartialCombine, Payload::CombineValues(f)) => {
                    vec![(step.inputs[0], f.partial(&ctx, shuffle_writer()?)?)]
                }
                (StepOp::StatefulWrite, Payload::StatefulParDo(stateful)) => {
                    vec![(step.inputs[0], stateful.writer(&ctx, shuffle_writer()?)?)]
                }
                (StepOp::ViewWrite, Payload::View(view)) => {
                    vec![(step.inputs[0], view.writer(&ctx, shuffle_writer()?)?)]
                }
                // A reshuffle may also be one the optimiser added (to materialise a
                // side-input consumer's input): only the element type matters.
                (StepOp::ReshuffleWrite, _) => {
                    let element = self.element_of(step.inputs[0])?;
                    vec![(
                        step.inputs[0],
                        element.reshuffle_writer(&ctx, shuffle_writer()?),
                    )]
                }
                (StepOp::Write, Payload::Write(sink)) => {
                    let buffer = SinkBuffer::default();
                    chain.sinks.push((step.original, buffer.clone()));
                    vec![(step.inputs[0], sink.unit(&ctx, buffer)?)]
                }
                (StepOp::Flatten, Payload::Flatten) => {
                    // Only the inputs produced in this stage feed this instance of the Flatten.
                    let local: Vec<EdgeId> = step
                        .inputs
                        .iter()
                        .copied()
                        .filter(|e| self.graph.producers(*e).any(in_stage))
                        .collect();
                    let element = self.element_of(step.outputs[0])?;
                    let edges = element
                        .flatten(local.len(), single(ports, &ctx)?)
                        .map_err(mismatch)?;
                    local.into_iter().zip(edges).collect()
                }
                (op, payload) => {
                    return Err(ctx.error(format!(
                        "internal error: cannot build a {op:?} step from {payload:?}"
                    )));
                }
            };
            for (edge, receiver) in built {
                receivers.entry(edge).or_default().push(receiver);
            }
        }
        let root = self.graph.step(self.layout.root);
        let head = self.port(root.outputs[0], &mut receivers, &mut chain)?;
        Ok((head, chain))
    }

    fn port(
        &self,
        edge: EdgeId,
        receivers: &mut HashMap<EdgeId, Vec<AnyReceiver>>,
        chain: &mut Chain,
    ) -> Result<AnyPort, Box<ExecError>> {
        let element = self.element_of(edge)?;
        let counters = Rc::new(PortCounters::default());
        chain.counters.push((edge, counters.clone()));
        let consumers = receivers.remove(&edge).unwrap_or_default();
        element
            .port(consumers, counters)
            .map_err(|e| ExecError::new(self.graph.edge(edge).name.clone(), e))
    }
}

fn single(mut ports: Vec<AnyPort>, ctx: &UnitContext) -> Result<AnyPort, Box<ExecError>> {
    if ports.len() == 1 {
        Ok(ports.remove(0))
    } else {
        Err(ctx.error(format!(
            "internal error: expected one output, found {}",
            ports.len()
        )))
    }
}
