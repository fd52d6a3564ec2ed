//! How the runtime builds execution units for transforms whose types it does not know.
//!
//! The execution plan holds, for each transform, a factory object implementing one of the
//! traits below. The factories are written by typed code (the SDK and the connectors);
//! the runtime calls them with erased ports and receivers when it instantiates a fused
//! stage on a worker. Each factory call happens once per stage instance — on first use
//! and again after a failed bundle tears the instance down — never per element.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::coder::Element;
use crate::error::{BoxError, ExecError, UnitResult};
use crate::receiver::{
    AnyPort, AnyReceiver, Port, PortCounters, Receiver, TypeMismatch, build_port, flatten_receivers,
};
use crate::shuffle::{ShuffleRecord, ShuffleWriter};
use crate::time::Timestamp;
use crate::window::WindowedValue;

/// Where a unit is being built, and the channels between it and the runtime.
#[derive(Clone, Debug)]
pub struct UnitContext {
    /// The user name of the transform the unit executes.
    pub transform: String,
    /// The step's index in the execution graph, for [`crate::error::current_step`].
    pub step: u32,
    /// This worker's index, `0..workers`.
    pub worker: usize,
    /// How many workers the job has, across all processes.
    pub workers: usize,
    /// The attempt of the bundle being run, shared by every unit of the stage instance.
    pub attempt: Rc<Attempt>,
    /// What this unit reports about itself.
    pub counters: Rc<UnitCounters>,
    /// Where a root unit publishes its position in the current split (a byte offset, an
    /// element or group index), so that a stuck bundle can be located from another thread.
    pub position: Arc<AtomicU64>,
    /// The side inputs materialised for this stage, by the id of their view.
    pub side_inputs: Rc<SideInputs>,
    /// The job runs in streaming mode: groupings evaluate triggers as data arrives, and
    /// unbounded sources are read in small bundles.
    pub streaming: bool,
    /// The job's processing-time clock.
    pub clock: crate::time::Clock,
    /// The running job, as sources that pace themselves against it see it.
    pub job: Option<Arc<dyn JobControl>>,
    /// The process's memory budget, which buffering units account against and spill
    /// under (`None`: unbounded, nothing spills).
    pub memory: Option<Arc<crate::spill::MemoryBudget>>,
}

/// What a source can ask of the job it runs in.
pub trait JobControl: Send + Sync + Debug {
    /// Whether every grouping stage has taken in all data sent so far and acted on input
    /// watermark `watermark` and processing time `now_ms`: the pipeline is quiet up to
    /// there. A test source waits for this before its next scripted step.
    fn settled(&self, watermark: Timestamp, now_ms: i64) -> bool;
    /// Whether the job is draining: unbounded sources stop reading and report that they
    /// are done, so that every window fires.
    fn draining(&self) -> bool;
}

/// A materialised side input: a view's value, built once per worker and shared by the
/// units of that worker.
pub type SideInputValue = Rc<dyn Any>;

/// The side inputs of a stage instance, by view id.
#[derive(Clone, Default)]
pub struct SideInputs(pub Vec<(usize, SideInputValue)>);

impl std::fmt::Debug for SideInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(id, _)| id))
            .finish()
    }
}

impl SideInputs {
    /// The value of the view `id`, if the stage has it.
    pub fn get(&self, id: usize) -> Option<&SideInputValue> {
        self.0
            .iter()
            .find(|(v, _)| *v == id)
            .map(|(_, value)| value)
    }
}

/// Materialises a PCollection as a side input (a view): every worker receives every
/// element and builds the view's value once its input is complete.
pub trait ViewFactory: Send + Sync {
    /// The unit that sends the PCollection's elements to every worker.
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>>;
    /// Builds the view's value from every record received.
    fn materialize(
        &self,
        ctx: &UnitContext,
        records: &[Vec<u8>],
    ) -> Result<SideInputValue, Box<ExecError>>;
}

/// Which attempt of its bundle a stage is running.
///
/// When a bundle fails, the runner divides it before the element that was being
/// processed: what came before is retried as a new bundle, and the rest is retried with
/// that element — the *suspect* — first. So a retry knows which element failed, and an
/// element that keeps failing is the only one a retry can blame.
#[derive(Debug)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: Cell<u32>,
    /// How many attempts a bundle gets before the job fails.
    pub max: u32,
    /// On a retry, the position (see [`UnitContext::position`]) of the element that failed
    /// on the previous attempt.
    pub suspect: Cell<Option<u64>>,
}

impl Attempt {
    /// The first of `max` attempts.
    pub fn first_of(max: u32) -> Attempt {
        Attempt {
            number: Cell::new(1),
            max: max.max(1),
            suspect: Cell::new(None),
        }
    }

    /// Whether the element at `position` failed on the previous attempt: units render it
    /// before processing it, to report it if it fails again.
    #[inline]
    pub fn is_suspect(&self, position: u64) -> bool {
        self.suspect.get() == Some(position)
    }

    /// Whether this is a retry of a failed element.
    pub fn is_retry(&self) -> bool {
        self.number.get() > 1 && self.suspect.get().is_some()
    }

    /// The last attempt: a unit with a dead-letter output routes the suspect there if it
    /// fails again, instead of failing the bundle.
    pub fn is_last(&self) -> bool {
        self.number.get() >= self.max
    }
}

/// What a unit counts about itself, read by the runtime.
#[derive(Debug, Default)]
pub struct UnitCounters {
    /// DoFn instances torn down.
    pub teardowns: Cell<u64>,
    /// Elements routed to a dead-letter output (counted when their bundle commits).
    pub dead_lettered: Cell<u64>,
    /// Metrics the unit's user code updated during the current bundle.
    pub user: crate::user_metrics::UserMetrics,
    /// Elements a grouping dropped because their window had expired (or its trigger had
    /// finished).
    pub late_dropped: Cell<u64>,
    /// The most bytes the unit held against the memory budget since the last report.
    pub held_peak: Cell<u64>,
    /// Bytes of records the unit wrote to spill files since the last report.
    pub spilled_bytes: Cell<u64>,
    /// Spill files the unit made since the last report.
    pub spill_files: Cell<u64>,
}

impl UnitCounters {
    /// The unit now holds `bytes` against the memory budget.
    pub fn note_held(&self, bytes: u64) {
        self.held_peak.set(self.held_peak.get().max(bytes));
    }

    /// The unit made `files` spill files.
    pub fn note_spill_files(&self, files: u64) {
        self.spill_files.set(self.spill_files.get() + files);
    }

    /// The unit wrote `bytes` bytes of records to a spill file.
    pub fn note_spilled(&self, bytes: u64) {
        self.spilled_bytes.set(self.spilled_bytes.get() + bytes);
    }
}

impl UnitContext {
    /// A context for a unit built outside a runner (tests, tools): worker 0 of 1, a
    /// single-attempt bundle.
    pub fn standalone(transform: impl Into<String>) -> UnitContext {
        UnitContext {
            transform: transform.into(),
            step: 0,
            worker: 0,
            workers: 1,
            attempt: Rc::new(Attempt::first_of(1)),
            counters: Rc::default(),
            position: Arc::default(),
            side_inputs: Rc::default(),
            streaming: false,
            clock: crate::time::Clock::wall(),
            job: None,
            memory: None,
        }
    }

    /// An [`ExecError`] of this unit's transform.
    pub fn error(&self, source: impl Into<BoxError>) -> Box<ExecError> {
        ExecError::new(self.transform.clone(), source)
    }
}

/// Builds the execution unit of a ParDo.
pub trait ParDoFactory: Send + Sync {
    /// Instantiates the DoFn (running its setup) wired to one port per output, main output
    /// first; returns the receiver of its input.
    fn build(
        &self,
        ctx: &UnitContext,
        outputs: Vec<AnyPort>,
    ) -> Result<AnyReceiver, Box<ExecError>>;
}

/// A part of a bounded source that one bundle reads.
pub trait SourceSplit: Send + Sync + Debug {
    /// The split as `Any`, for its reader to downcast.
    fn as_any(&self) -> &dyn Any;
    /// How many bytes the split covers, if known.
    fn size_bytes(&self) -> Option<u64>;
    /// Divides the split before the element at `position` (as the reader publishes it in
    /// [`UnitContext::position`]): the elements before it, and it with those after. `None`
    /// when the split cannot be divided there (it is unsplittable, or `position` is its
    /// first element or outside it).
    fn split_at(&self, _position: u64) -> Option<(Arc<dyn SourceSplit>, Arc<dyn SourceSplit>)> {
        None
    }
}

/// What a source needs to know to split itself.
#[derive(Clone, Copy, Debug)]
pub struct SplitHint {
    /// Workers that will read in parallel.
    pub workers: usize,
    /// The preferred size of one bundle, in bytes of input.
    pub desired_bundle_bytes: u64,
}

/// Reads splits of a source into the stage it roots.
pub trait SourceReader {
    /// Connects the reader to the first unit of its stage (again after a teardown).
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch>;
    /// Drops the units attached, tearing them down.
    fn detach(&mut self);
    /// A bundle begins.
    fn start_bundle(&mut self) -> UnitResult;
    /// Reads one split, emitting its elements.
    fn read(&mut self, split: &dyn SourceSplit) -> UnitResult;
    /// The bundle ends.
    fn finish_bundle(&mut self) -> UnitResult;
    /// Bytes read from storage since the last call.
    fn take_bytes_read(&mut self) -> u64;
    /// Reads the next part of a split of an unbounded source — at most `max_elements`
    /// elements, or none if none is due — and returns what is left of the split. The split
    /// itself is unchanged, so a failed bundle reads the same part again.
    fn read_some(
        &mut self,
        _split: &dyn SourceSplit,
        _max_elements: usize,
    ) -> Result<Continuation, Box<ExecError>> {
        Err(ExecError::new(
            "source",
            "internal error: this source is bounded and has no unbounded reader",
        ))
    }
}

/// Where an unbounded split stands after a bundle read part of it.
#[derive(Clone, Debug)]
pub struct Continuation {
    /// What is left to read; `None` when the split is exhausted.
    pub rest: Option<Arc<dyn SourceSplit>>,
    /// The split's watermark: nothing it emits from now on is earlier, except late data.
    pub watermark: Timestamp,
    /// Nothing is due before this processing time (ms since the epoch): read again then.
    pub not_before_ms: Option<i64>,
}

/// A bounded source of elements: files, in-memory values, generators.
pub trait SourceFactory: Send + Sync {
    /// Divides the source into splits. Called once per job, before any data moves.
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError>;
    /// A reader for this worker.
    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>>;
    /// The total size of the source in bytes, if known.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
    /// Whether the source is unbounded: each split is read part by part
    /// ([`SourceReader::read_some`]) for as long as the job runs, with a watermark.
    fn is_unbounded(&self) -> bool {
        false
    }
    /// The hand-moved clock the source scripts processing time with, if it does (a test
    /// stream): the job then runs on it instead of the wall clock.
    fn test_clock(&self) -> Option<crate::time::Clock> {
        None
    }
}

/// The receiving side of a shuffle: buffers records, and when the runner asks, makes
/// what is ready — panes whose trigger fired, windows that expired, records to pass on,
/// timers that are due — the *groups* to emit next, which it emits in bundles. Emission
/// is replayable: a failed bundle re-emits the same range into freshly built units.
pub trait ShuffleReader {
    /// The input watermark and processing time (ms since the epoch) moved. Called before
    /// each activation's records are accepted.
    fn advance(&mut self, _watermark: Timestamp, _now_ms: i64) {}
    /// Buffers one record.
    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult;
    /// Makes what is ready the groups to emit next (replacing the previous ones, which
    /// have all been emitted); returns how many there are. Once the watermark has reached
    /// [`Timestamp::MAX`], everything buffered is ready.
    fn fire(&mut self) -> Result<usize, Box<ExecError>>;
    /// The earliest timestamp the reader may still emit for what it buffers: its watermark
    /// hold. [`Timestamp::MAX`] when it holds nothing back.
    fn hold(&self) -> Timestamp {
        Timestamp::MAX
    }
    /// The processing time (ms since the epoch) at which [`ShuffleReader::fire`] may
    /// have something new, if a processing-time trigger or timer waits.
    fn next_wakeup_ms(&self) -> Option<i64> {
        None
    }
    /// Connects the reader to the first unit of its stage (again after a teardown).
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch>;
    /// Drops the units attached, tearing them down.
    fn detach(&mut self);
    /// A bundle begins.
    fn start_bundle(&mut self) -> UnitResult;
    /// Emits the groups in `range` (indices into `0..fire()`).
    fn emit(&mut self, range: Range<usize>) -> UnitResult;
    /// The bundle ends.
    fn finish_bundle(&mut self) -> UnitResult;
    /// The bundle committed: make what it changed (state) permanent.
    fn commit(&mut self) {}
    /// The bundle failed: forget what it changed.
    fn abort(&mut self) {}
}

/// Builds both halves of a stateful ParDo: its input shuffled by key, and the ParDo
/// running as the root of the next stage, where each key's state lives.
pub trait StatefulFactory: Send + Sync {
    /// The unit that encodes keyed elements into the shuffle.
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>>;
    /// The reader that runs the DoFn over each key's elements, with its state and timers.
    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>>;
}

/// Builds both halves of a GroupByKey.
pub trait GroupByKeyFactory: Send + Sync {
    /// The unit that encodes keyed elements into the shuffle.
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>>;
    /// The reader that groups values per key and window.
    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>>;
}

/// Builds the execution units of a per-key combine, lifted or not.
pub trait CombineFactory: Send + Sync {
    /// Lifted, before the shuffle: combines each bundle's values per key into accumulators
    /// and writes those to the shuffle when the bundle finishes.
    fn partial(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>>;
    /// Lifted, after the shuffle: merges accumulators per key as they arrive and emits the
    /// extracted outputs.
    fn merge_reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>>;
    /// Not lifted: combines the grouped values `(K, Vec<V>)` of a GroupByKey.
    fn grouped(&self, ctx: &UnitContext, output: AnyPort) -> Result<AnyReceiver, Box<ExecError>>;
}

/// Bytes a sink unit produced during the current bundle.
#[derive(Clone, Debug, Default)]
pub struct SinkBuffer(Rc<RefCell<SinkBytes>>);

/// The contents of a [`SinkBuffer`].
#[derive(Debug, Default)]
pub struct SinkBytes {
    /// The encoded records, in the sink's own format.
    pub bytes: Vec<u8>,
    /// How many records `bytes` holds.
    pub records: u64,
}

impl SinkBuffer {
    /// Appends one record, written by `write`.
    #[inline]
    pub fn append<E>(&self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let mut inner = self.0.borrow_mut();
        let start = inner.bytes.len();
        match write(&mut inner.bytes) {
            Ok(()) => {
                inner.records += 1;
                Ok(())
            }
            Err(e) => {
                inner.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Takes the bundle's bytes.
    pub fn take(&self) -> SinkBytes {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Forgets the bundle's bytes (a failed bundle).
    pub fn discard(&self) {
        self.take();
    }
}

/// Facts about the running job that sinks need.
#[derive(Clone, Debug)]
pub struct JobInfo {
    /// The job's id.
    pub job_id: String,
    /// This process is a member of a cluster job: another process (the launcher) has
    /// begun the sink and commits it; this one only writes, and hands what it wrote over
    /// ([`SinkJob::handoff`]).
    pub member: bool,
    /// The sink's input is unbounded: the job may never end, so output meant to be seen
    /// while it runs must be published bundle by bundle.
    pub unbounded: bool,
}

/// A sink of a pipeline.
pub trait SinkFactory: Send + Sync {
    /// The unit that turns elements into the sink's bytes.
    fn unit(&self, ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>>;
    /// The sink's part in one job: where its temporary output goes.
    fn begin(&self, job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError>;
}

/// One job's use of a sink. Output stays invisible until [`SinkJob::commit`].
pub trait SinkJob: Send + Sync {
    /// A writer for this worker.
    fn open(&self, worker: usize) -> Result<Box<dyn SinkWriter>, BoxError>;
    /// The job succeeded: makes every closed writer's output visible, atomically as far as
    /// the storage allows (a commit that fails leaves what was there before). Returns a
    /// short description of what was written.
    fn commit(&self) -> Result<String, BoxError>;
    /// Another sink of the job failed to commit after this one did: restores what was
    /// there before this commit. Only possible until [`SinkJob::finalize`]. An error
    /// says what could not be restored; [`SinkJob::abort`] then keeps it.
    fn undo(&self) -> Result<(), BoxError>;
    /// Every sink of the job committed: drops what `undo` would have needed.
    fn finalize(&self) {}
    /// The job failed: removes all temporary output.
    fn abort(&self);
    /// In a member process of a cluster job, once its writers have closed: what they
    /// produced, for the launcher's [`SinkJob::adopt`].
    fn handoff(&self) -> Result<Vec<u8>, BoxError> {
        Ok(Vec::new())
    }
    /// In the launcher of a cluster job: takes in what a member's writers produced, as
    /// if written here, before the commit.
    fn adopt(&self, _handoff: &[u8]) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes the committed bundles of one worker.
pub trait SinkWriter {
    /// Writes one committed bundle.
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError>;
    /// No more bundles: flush and hand the output to the job for commit.
    fn close(self: Box<Self>) -> Result<(), BoxError>;
}

/// The operations the runtime needs on a PCollection's element type.
pub trait ElementType: Send + Sync {
    /// The Rust type name, for plans and error messages.
    fn type_name(&self) -> &'static str;
    /// The port of a PCollection, feeding the given consumers.
    fn port(
        &self,
        consumers: Vec<AnyReceiver>,
        counters: Rc<PortCounters>,
    ) -> Result<AnyPort, TypeMismatch>;
    /// The unit of a Flatten with `inputs` edges inside one stage.
    fn flatten(&self, inputs: usize, output: AnyPort) -> Result<Vec<AnyReceiver>, TypeMismatch>;
    /// The writing half of a Reshuffle: spreads elements evenly over workers.
    fn reshuffle_writer(&self, ctx: &UnitContext, shuffle: ShuffleWriter) -> AnyReceiver;
    /// The reading half of a Reshuffle.
    fn reshuffle_reader(&self, ctx: &UnitContext) -> Box<dyn ShuffleReader>;
}

/// The [`ElementType`] of `T`.
pub struct TypeOf<T>(PhantomData<fn() -> T>);

impl<T> TypeOf<T> {
    /// The element type of `T`, ready to share.
    pub fn arc() -> Arc<dyn ElementType>
    where
        T: Element,
    {
        Arc::new(TypeOf::<T>(PhantomData))
    }
}

impl<T: Element> ElementType for TypeOf<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn port(
        &self,
        consumers: Vec<AnyReceiver>,
        counters: Rc<PortCounters>,
    ) -> Result<AnyPort, TypeMismatch> {
        build_port::<T>(consumers, counters)
    }

    fn flatten(&self, inputs: usize, output: AnyPort) -> Result<Vec<AnyReceiver>, TypeMismatch> {
        Ok(flatten_receivers(inputs, output.downcast::<T>()?))
    }

    fn reshuffle_writer(&self, ctx: &UnitContext, shuffle: ShuffleWriter) -> AnyReceiver {
        AnyReceiver::new::<T>(Box::new(ReshuffleWrite {
            ctx: ctx.clone(),
            shuffle,
        }))
    }

    fn reshuffle_reader(&self, ctx: &UnitContext) -> Box<dyn ShuffleReader> {
        Box::new(ReshuffleRead::<T> {
            ctx: ctx.clone(),
            pending: Records::default(),
            ready: Records::default(),
            output: None,
        })
    }
}

struct ReshuffleWrite {
    ctx: UnitContext,
    shuffle: ShuffleWriter,
}

impl<T: Element> Receiver<T> for ReshuffleWrite {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, e: WindowedValue<T>) -> UnitResult {
        self.shuffle
            .write_spread(e.window, e.timestamp, |out| e.value.encode_to(out))
            .map_err(|err| self.ctx.error(err))
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

/// Encoded values back to back, with each one's end, window and timestamp.
#[derive(Default)]
struct Records {
    bytes: Vec<u8>,
    records: Vec<(usize, crate::Window, crate::Timestamp)>,
}

struct ReshuffleRead<T> {
    ctx: UnitContext,
    /// Received since the last firing.
    pending: Records,
    /// Being emitted.
    ready: Records,
    output: Option<Port<T>>,
}

impl<T: Element> ShuffleReader for ReshuffleRead<T> {
    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        self.pending.bytes.extend_from_slice(record.value);
        self.pending
            .records
            .push((self.pending.bytes.len(), record.window, record.timestamp));
        Ok(())
    }
    fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        // A reshuffle holds nothing back: whatever arrived goes on.
        self.ready = std::mem::take(&mut self.pending);
        Ok(self.ready.records.len())
    }
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast::<T>()?);
        Ok(())
    }
    fn detach(&mut self) {
        self.output = None;
    }
    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }
    fn emit(&mut self, range: Range<usize>) -> UnitResult {
        let output = attached(&mut self.output, &self.ctx)?;
        let ready = &self.ready;
        for i in range {
            self.ctx
                .position
                .store(i as u64, std::sync::atomic::Ordering::Relaxed);
            let start = if i == 0 { 0 } else { ready.records[i - 1].0 };
            let (end, window, timestamp) = ready.records[i];
            let value = crate::coder::decode_exact::<T>(&ready.bytes[start..end])
                .map_err(|e| self.ctx.error(e))?;
            output.emit(WindowedValue {
                value,
                timestamp,
                window,
                pane: crate::window::PaneInfo::NO_FIRING,
            })?;
        }
        Ok(())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
}

/// The port a reader was attached to, or an error naming the transform if it never was.
pub fn attached<'a, T>(
    output: &'a mut Option<Port<T>>,
    ctx: &UnitContext,
) -> Result<&'a mut Port<T>, Box<ExecError>> {
    output
        .as_mut()
        .ok_or_else(|| ctx.error("internal error: reader used before it was attached to its stage"))
}
