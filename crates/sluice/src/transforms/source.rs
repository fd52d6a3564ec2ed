//! Sources of your own: bounded ones read split by split, unbounded ones read part by
//! part for as long as the job runs.
//!
//! A [`BoundedSource`] divides itself into splits, which workers claim as they become
//! free, and reads each split whole as a bundle. An [`UnboundedSource`] divides itself
//! into splits too, each owned by one worker, which reads it a part at a time: each read
//! returns the split's new position, its watermark, and — when nothing is due yet — when
//! to read again. A bundle that fails reads the same part again, so a source must read the
//! same elements from the same position.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::source::{BoundedSource, Emit};
//!
//! /// The numbers below `n`, timestamped one second apart.
//! struct Numbers { n: u64 }
//!
//! impl BoundedSource for Numbers {
//!     type Output = u64;
//!     type Split = std::ops::Range<u64>;
//!     fn split(&self, workers: usize) -> Result<Vec<Self::Split>, BoxError> {
//!         let per = self.n.div_ceil(workers as u64 * 4).max(1);
//!         Ok((0..self.n).step_by(per as usize).map(|s| s..(s + per).min(self.n)).collect())
//!     }
//!     fn read(&self, split: &Self::Split, out: &mut Emit<'_, u64>) -> Result<(), BoxError> {
//!         for i in split.clone() {
//!             out.emit(i, Timestamp::from_millis(i as i64 * 1000))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let p = Pipeline::for_test();
//! let total = p.read_source("Numbers", Numbers { n: 100 }).sum_globally("Sum").collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(total.values(), [4950]);
//! ```

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::time::Clock;
use sluice_core::unit::{
    Continuation, SourceFactory, SourceReader, SourceSplit, SplitHint, TypeOf, UnitContext,
    attached,
};
use sluice_core::{
    BoxError, Element, ExecError, PaneInfo, Timestamp, UnitResult, Window, WindowedValue,
};
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

/// Where a source's reader puts elements.
pub struct Emit<'a, T> {
    port: &'a mut Port<T>,
    ctx: &'a UnitContext,
    emitted: u64,
    first_position: u64,
    /// A failure downstream of the source, kept with its own transform's name.
    downstream: Option<Box<ExecError>>,
}

impl<T: Element> Emit<'_, T> {
    /// Emits `value` with event time `timestamp`, in the global window.
    pub fn emit(&mut self, value: T, timestamp: Timestamp) -> Result<(), BoxError> {
        self.ctx
            .position
            .store(self.first_position + self.emitted, Ordering::Relaxed);
        self.emitted += 1;
        if self.downstream.is_some() {
            return Err("a transform after this source failed".into());
        }
        self.port
            .emit(WindowedValue {
                value,
                timestamp,
                window: Window::Global,
                pane: PaneInfo::NO_FIRING,
            })
            .map_err(|e| {
                let message = e.to_string();
                self.downstream = Some(e);
                message.into()
            })
    }

    /// How many elements were emitted through this emitter.
    pub fn count(&self) -> u64 {
        self.emitted
    }
}

/// A finite source, read in splits.
pub trait BoundedSource: Send + Sync + 'static {
    /// The elements it produces.
    type Output: Element;
    /// A part of the source one bundle reads.
    type Split: Clone + Debug + Send + Sync + 'static;
    /// Divides the source for `workers` workers (a few splits per worker balance load).
    fn split(&self, workers: usize) -> Result<Vec<Self::Split>, BoxError>;
    /// Reads one split whole.
    fn read(&self, split: &Self::Split, out: &mut Emit<'_, Self::Output>) -> Result<(), BoxError>;
    /// Estimated size in bytes, for plans.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}

/// What an unbounded read returns: where the split stands now.
#[derive(Clone, Debug)]
pub struct Progress<C> {
    /// The split's position after the part just read; `None` when it is exhausted.
    pub next: Option<C>,
    /// The split's watermark: no element it emits later has an earlier event time (late
    /// data aside).
    pub watermark: Timestamp,
    /// Nothing is due before this processing time (ms since the epoch).
    pub not_before_ms: Option<i64>,
}

/// What an unbounded source sees of the job while it reads.
pub struct ReadContext<'a> {
    ctx: &'a UnitContext,
}

impl ReadContext<'_> {
    /// The job's processing time, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.ctx.clock.now_ms()
    }

    /// The job's clock.
    pub fn clock(&self) -> &Clock {
        &self.ctx.clock
    }

    /// Whether the pipeline has taken in everything sent so far and acted on `watermark`
    /// and processing time `now_ms` (see [`sluice_core::unit::JobControl::settled`]).
    /// Outside a job, true.
    pub fn settled(&self, watermark: Timestamp, now_ms: i64) -> bool {
        self.ctx
            .job
            .as_ref()
            .is_none_or(|job| job.settled(watermark, now_ms))
    }
}

/// A source without end, read part by part (see the module documentation).
pub trait UnboundedSource: Send + Sync + 'static {
    /// The elements it produces.
    type Output: Element;
    /// A split's position: where its next read starts.
    type Checkpoint: Clone + Debug + Send + Sync + 'static;
    /// Divides the source for `workers` workers; each split is read by one worker.
    fn split(&self, workers: usize) -> Result<Vec<Self::Checkpoint>, BoxError>;
    /// Reads at most `max_elements` elements from `at` (none if none is due).
    fn read(
        &self,
        at: &Self::Checkpoint,
        max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, Self::Output>,
    ) -> Result<Progress<Self::Checkpoint>, BoxError>;
    /// A hand-moved clock the source scripts processing time with (test streams).
    fn test_clock(&self) -> Option<Clock> {
        None
    }
}

/// The source of a Read whose resource was unusable (a connector's problem is recorded):
/// the pipeline is invalid and never runs, so it is never read. Bounded or not, as the
/// usable source would have been.
pub(crate) struct Unusable<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Unusable<T> {
    pub(crate) fn new() -> Unusable<T> {
        Unusable(std::marker::PhantomData)
    }
}

const INVALID_READ: &str = "internal error: an invalid Read ran";

impl<T: Element> BoundedSource for Unusable<T> {
    type Output = T;
    type Split = ();
    fn split(&self, _workers: usize) -> Result<Vec<()>, BoxError> {
        Err(INVALID_READ.into())
    }
    fn read(&self, _split: &(), _out: &mut Emit<'_, T>) -> Result<(), BoxError> {
        Err(INVALID_READ.into())
    }
}

impl<T: Element> UnboundedSource for Unusable<T> {
    type Output = T;
    type Checkpoint = ();
    fn split(&self, _workers: usize) -> Result<Vec<()>, BoxError> {
        Err(INVALID_READ.into())
    }
    fn read(
        &self,
        _at: &(),
        _max_elements: usize,
        _job: &ReadContext<'_>,
        _out: &mut Emit<'_, T>,
    ) -> Result<Progress<()>, BoxError> {
        Err(INVALID_READ.into())
    }
}

impl Pipeline {
    /// The elements of a [`BoundedSource`].
    pub fn read_source<S: BoundedSource>(&self, name: &str, source: S) -> PCollection<S::Output> {
        self.add_source(name, Arc::new(SourceOf(Arc::new(Bounded(source)))))
    }

    /// The elements of an [`UnboundedSource`]; the pipeline runs in streaming mode.
    pub fn read_unbounded<S: UnboundedSource>(
        &self,
        name: &str,
        source: S,
    ) -> PCollection<S::Output> {
        self.add_source(name, Arc::new(SourceOf(Arc::new(Unbounded(source)))))
    }

    fn add_source<T: Element>(&self, name: &str, source: Arc<dyn SourceFactory>) -> PCollection<T> {
        let (_, outs) = self.add_transform(
            name,
            Vec::new(),
            Payload::Read(source),
            vec![("out".into(), TypeOf::<T>::arc())],
        );
        PCollection::new(self, outs[0])
    }
}

/// A split of a user source, erased for the runtime.
struct UserSplit<C> {
    at: C,
}

impl<C: Debug> Debug for UserSplit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.at.fmt(f)
    }
}

impl<C: Debug + Send + Sync + 'static> SourceSplit for UserSplit<C> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}

/// A user source as the runtime reads it, bounded or not: the one reader below serves
/// both kinds.
trait UserSource: Send + Sync + 'static {
    type Output: Element;
    /// A split's position.
    type Position: Clone + Debug + Send + Sync + 'static;
    /// Whether the source is read part by part, without end.
    const UNBOUNDED: bool;
    fn positions(&self, workers: usize) -> Result<Vec<Self::Position>, BoxError>;
    /// Reads a split: whole (bounded), or its next part (unbounded; `Some` progress).
    fn read_from(
        &self,
        at: &Self::Position,
        max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, Self::Output>,
    ) -> Result<Option<Progress<Self::Position>>, BoxError>;
    fn size_bytes(&self) -> Option<u64> {
        None
    }
    fn test_clock(&self) -> Option<Clock> {
        None
    }
}

struct Bounded<S>(S);
struct Unbounded<S>(S);

impl<S: BoundedSource> UserSource for Bounded<S> {
    type Output = S::Output;
    type Position = S::Split;
    const UNBOUNDED: bool = false;
    fn positions(&self, workers: usize) -> Result<Vec<S::Split>, BoxError> {
        self.0.split(workers)
    }
    fn read_from(
        &self,
        at: &S::Split,
        _max_elements: usize,
        _job: &ReadContext<'_>,
        out: &mut Emit<'_, S::Output>,
    ) -> Result<Option<Progress<S::Split>>, BoxError> {
        self.0.read(at, out).map(|()| None)
    }
    fn size_bytes(&self) -> Option<u64> {
        self.0.size_bytes()
    }
}

impl<S: UnboundedSource> UserSource for Unbounded<S> {
    type Output = S::Output;
    type Position = S::Checkpoint;
    const UNBOUNDED: bool = true;
    fn positions(&self, workers: usize) -> Result<Vec<S::Checkpoint>, BoxError> {
        self.0.split(workers)
    }
    fn read_from(
        &self,
        at: &S::Checkpoint,
        max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, S::Output>,
    ) -> Result<Option<Progress<S::Checkpoint>>, BoxError> {
        self.0.read(at, max_elements, job, out).map(Some)
    }
    fn test_clock(&self) -> Option<Clock> {
        self.0.test_clock()
    }
}

/// A user source, erased for the runtime.
struct SourceOf<U>(Arc<U>);

impl<U: UserSource> SourceFactory for SourceOf<U> {
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        Ok(self
            .0
            .positions(hint.workers)?
            .into_iter()
            .map(|at| Arc::new(UserSplit { at }) as Arc<dyn SourceSplit>)
            .collect())
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(Box::new(UserReader::<U> {
            source: self.0.clone(),
            ctx: ctx.clone(),
            output: None,
        }))
    }

    fn size_bytes(&self) -> Option<u64> {
        self.0.size_bytes()
    }

    fn is_unbounded(&self) -> bool {
        U::UNBOUNDED
    }

    fn test_clock(&self) -> Option<Clock> {
        self.0.test_clock()
    }
}

struct UserReader<U: UserSource> {
    source: Arc<U>,
    ctx: UnitContext,
    output: Option<Port<U::Output>>,
}

impl<U: UserSource> UserReader<U> {
    /// Reads from the split's position, at most `max_elements` of an unbounded source.
    fn read_split(
        &mut self,
        split: &dyn SourceSplit,
        max_elements: usize,
    ) -> Result<Option<Progress<U::Position>>, Box<ExecError>> {
        let at = split
            .as_any()
            .downcast_ref::<UserSplit<U::Position>>()
            .map(|s| &s.at)
            .ok_or_else(|| {
                self.ctx
                    .error("internal error: a source was given another source's split")
            })?;
        let port = attached(&mut self.output, &self.ctx)?;
        let mut out = Emit {
            port,
            ctx: &self.ctx,
            emitted: 0,
            first_position: 0,
            downstream: None,
        };
        let job = ReadContext { ctx: &self.ctx };
        let result = self.source.read_from(at, max_elements, &job, &mut out);
        match out.downstream.take() {
            // The failure belongs to the transform that failed, not to the source.
            Some(e) => Err(e),
            None => result.map_err(|e| self.ctx.error(e)),
        }
    }
}

impl<U: UserSource> SourceReader for UserReader<U> {
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast()?);
        Ok(())
    }
    fn detach(&mut self) {
        self.output = None;
    }
    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }
    fn read(&mut self, split: &dyn SourceSplit) -> UnitResult {
        if U::UNBOUNDED {
            return Err(self
                .ctx
                .error("internal error: an unbounded source is read part by part"));
        }
        self.read_split(split, usize::MAX).map(|_| ())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
    fn take_bytes_read(&mut self) -> u64 {
        0
    }
    fn read_some(
        &mut self,
        split: &dyn SourceSplit,
        max_elements: usize,
    ) -> Result<Continuation, Box<ExecError>> {
        let progress = self.read_split(split, max_elements)?.ok_or_else(|| {
            self.ctx
                .error("internal error: a bounded source was read part by part")
        })?;
        Ok(Continuation {
            rest: progress
                .next
                .map(|at| Arc::new(UserSplit { at }) as Arc<dyn SourceSplit>),
            watermark: progress.watermark,
            not_before_ms: progress.not_before_ms,
        })
    }
}
