//! Combine: reduce the values of each key (or of a whole collection) with a [`CombineFn`].
//!
//! A per-key combine is a GroupByKey followed by a combine of each key's values. The
//! optimiser lifts it (see `LiftCombiners`): each bundle combines its own values per key
//! into accumulators before the shuffle, and only accumulators cross it. A `CombineFn`
//! must therefore give the same result however its inputs are split into accumulators
//! and merged: it must be associative and commutative.
//!
//! ```
//! use sluice::prelude::*;
//!
//! /// The longest string per key.
//! #[derive(Clone)]
//! struct Longest;
//!
//! impl CombineFn for Longest {
//!     type Input = String;
//!     type Accumulator = String;
//!     type Output = String;
//!     fn create_accumulator(&self) -> String { String::new() }
//!     fn add_input(&self, acc: &mut String, input: String) { if input.len() > acc.len() { *acc = input } }
//!     fn merge_accumulators(&self, acc: &mut String, other: String) { self.add_input(acc, other) }
//!     fn extract_output(&self, acc: String) -> String { acc }
//! }
//!
//! let p = Pipeline::for_test();
//! let words = p.create("Words", vec![("a".to_string(), "xy".to_string()), ("a".to_string(), "xyz".to_string())]);
//! let longest = words.combine_per_key("Longest", Longest).collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(longest.values(), [("a".to_string(), "xyz".to_string())]);
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use sluice_core::receiver::{AnyPort, AnyReceiver, Port};
use sluice_core::shuffle::{GroupingKey, KeyedTable, ShuffleWriter};
use sluice_core::trigger::{TimestampCombiner, Windowing};
use sluice_core::unit::{CombineFactory, ShuffleReader, UnitContext};
use sluice_core::{
    Coder, Element, ExecError, Receiver, Timestamp, UnitResult, WindowedValue, key_hash,
};
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::transforms::group_by_key::{GroupByKeyPayload, KeySplit, Pairs, check_key_coder};
use crate::transforms::guard;
use crate::transforms::pane_reader::{Grouping, PaneReader};

/// How to reduce many values to one, in parts: values are added to accumulators,
/// accumulators merged, and the output extracted at the end.
pub trait CombineFn: Clone + Send + 'static {
    /// The values combined.
    type Input: Element;
    /// The partial result.
    type Accumulator: Element;
    /// The result.
    type Output: Element;

    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Accumulator;
    /// Adds one value to an accumulator.
    fn add_input(&self, accumulator: &mut Self::Accumulator, input: Self::Input);
    /// Merges `other` into `accumulator`.
    fn merge_accumulators(&self, accumulator: &mut Self::Accumulator, other: Self::Accumulator);
    /// The result of an accumulator.
    fn extract_output(&self, accumulator: Self::Accumulator) -> Self::Output;
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Combines the values of each key with `combine_fn`: `(K, V)` becomes
    /// `(K, Output)`, one per key (and window).
    pub fn combine_per_key<F: CombineFn<Input = V>>(
        &self,
        name: &str,
        combine_fn: F,
    ) -> PCollection<(K, F::Output)> {
        combine_per_key::<Pairs<K, V>, F>(self, name, combine_fn, None)
    }
}

impl<T: Element> PCollection<T> {
    /// Combines every element into one result per window. In the global window an empty
    /// input still has a result, the output of an empty accumulator; other windows have a
    /// result only if they have elements.
    pub fn combine_globally<F: CombineFn<Input = T>>(
        &self,
        name: &str,
        combine_fn: F,
    ) -> PCollection<F::Output> {
        self.composite(name, |input| {
            let keyed = input.map("WithVoidKey", |v: T| ((), v));
            let mut void_key = Vec::new();
            // The unit type encodes to nothing; any failure here is a coder bug worth a problem.
            if let Err(e) = ().encode_to(&mut void_key) {
                input
                    .pipeline()
                    .problem(name, e.to_string(), "report this as a bug");
            }
            // Only the global window exists whatever the input: other windows have a result
            // only where they have elements (Beam's `withoutDefaults`).
            let default_key = input.windowing().window_fn.is_global().then_some(void_key);
            combine_per_key::<Pairs<(), T>, F>(&keyed, "CombinePerKey", combine_fn, default_key)
                .map("Values", |(_, out): ((), F::Output)| out)
        })
    }
}

/// A per-key combine of `input`, whose elements `S` splits into key and value.
pub(crate) fn combine_per_key<S: KeySplit, F: CombineFn<Input = S::Value>>(
    input: &PCollection<S::In>,
    name: &str,
    combine_fn: F,
    default_key: Option<Vec<u8>>,
) -> PCollection<(S::Key, F::Output)> {
    input.composite(name, |input| {
        check_key_coder::<S::Key>(&input, "GroupByKey");
        let grouped: PCollection<(S::Key, Vec<S::Value>)> = input.apply_leaf(
            "GroupByKey",
            Payload::GroupByKey(Arc::new(GroupByKeyPayload::<S>::new(
                default_key.clone(),
                input.windowing(),
            ))),
        );
        grouped.apply_leaf(
            "Combine",
            Payload::CombineValues(Arc::new(CombinePayload::<S, F> {
                prototype: Mutex::new(combine_fn),
                default_key,
                windowing: input.windowing(),
                _split: std::marker::PhantomData,
            })),
        )
    })
}

/// The execution units of a per-key combine.
struct CombinePayload<S, F> {
    prototype: Mutex<F>,
    default_key: Option<Vec<u8>>,
    /// The input's windowing (the lifted merge groups by it).
    windowing: Arc<Windowing>,
    _split: std::marker::PhantomData<fn(S)>,
}

impl<S, F: CombineFn> CombinePayload<S, F> {
    fn instance(&self, ctx: &UnitContext) -> Result<F, Box<ExecError>> {
        self.prototype.lock().map(|f| f.clone()).map_err(|_| {
            ctx.error("a previous instance of this CombineFn panicked while being cloned")
        })
    }
}

impl<S: KeySplit, F: CombineFn<Input = S::Value>> CombineFactory for CombinePayload<S, F> {
    fn partial(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        let combiner = self
            .windowing
            .tracks_output_time()
            .then_some(self.windowing.timestamp_combiner);
        Ok(AnyReceiver::new::<S::In>(Box::new(
            PartialCombine::<S, F> {
                combine_fn: self.instance(ctx)?,
                ctx: ctx.clone(),
                shuffle,
                table: KeyedTable::default(),
                group: GroupingKey::default(),
                combiner,
                _split: std::marker::PhantomData,
            },
        )))
    }

    fn merge_reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        Ok(Box::new(PaneReader::<S::Key, _>::new(
            ctx,
            &self.windowing,
            self.default_key.clone(),
            MergeAccumulators(self.instance(ctx)?),
        )))
    }

    fn grouped(&self, ctx: &UnitContext, output: AnyPort) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<(S::Key, Vec<F::Input>)>(Box::new(
            CombineGrouped::<S::Key, F> {
                combine_fn: self.instance(ctx)?,
                ctx: ctx.clone(),
                output: output.downcast().map_err(|e| ctx.error(e))?,
            },
        )))
    }
}

/// Before the shuffle: one accumulator per key and window for the current bundle, with
/// the combined timestamp of its inputs when the windowing's timestamp combiner needs it.
struct PartialCombine<S, F: CombineFn> {
    combine_fn: F,
    ctx: UnitContext,
    shuffle: ShuffleWriter,
    table: KeyedTable<(F::Accumulator, Timestamp)>,
    group: GroupingKey,
    /// The earliest or latest combiner; `None` for the end of the window.
    combiner: Option<TimestampCombiner>,
    _split: std::marker::PhantomData<fn(S)>,
}

impl<S: KeySplit, F: CombineFn<Input = S::Value>> Receiver<S::In> for PartialCombine<S, F> {
    fn start_bundle(&mut self) -> UnitResult {
        // Whatever a failed bundle left behind is not part of this one.
        self.table.drain().for_each(drop);
        Ok(())
    }

    #[inline]
    fn receive(&mut self, element: WindowedValue<S::In>) -> UnitResult {
        let (k, v) = S::split(element.value);
        self.group
            .set(element.window, |out| k.encode_to(out))
            .map_err(|e| self.ctx.error(e))?;
        let f = &self.combine_fn;
        let (acc, time) =
            self.table
                .get_or_insert_with(&self.group, key_hash(self.group.key()), || {
                    (f.create_accumulator(), element.timestamp)
                });
        if let Some(combiner) = self.combiner {
            *time = combiner.combine(*time, element.timestamp);
        }
        guard(&self.ctx, || f.add_input(acc, v));
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        for (key, window, (acc, time)) in self.table.drain() {
            // The inputs' combined event time (the merging reader takes it as one
            // element's), or the end of the window.
            let time = if self.combiner.is_some() {
                time
            } else {
                window.max_timestamp()
            };
            self.shuffle
                .write_keyed(&key, key_hash(&key), window, time, |out| acc.encode_to(out))
                .map_err(|e| self.ctx.error(e))?;
        }
        Ok(())
    }
}

/// How many received accumulators a key and window keeps encoded before merging them.
const COMPACT_AFTER: usize = 8;

/// What the merging reader holds for one key and window: accumulators merged so far,
/// and accumulators received since, still encoded.
///
/// User code (`merge_accumulators`) never changes what a failure could not restore:
/// received accumulators are merged into a copy, every [`COMPACT_AFTER`] of them, and a
/// merge that panics leaves them encoded, to be merged again when the pane fires —
/// inside a bundle, where failures are retried as every bundle's are.
#[derive(Clone, Debug)]
struct Buffered<A> {
    /// The accumulator merged so far (the first one received, decoded, until a merge).
    first: Option<A>,
    /// More decoded accumulators, from windows that merged into this one.
    merged: Vec<A>,
    /// Encoded accumulators, back to back, each after its length (u32 LE).
    pending: Vec<u8>,
    /// How many `pending` holds.
    count: u32,
    /// A merge here failed once: leave the rest to the bundle that fires the pane.
    no_compaction: bool,
}

impl<A> Default for Buffered<A> {
    fn default() -> Self {
        Buffered {
            first: None,
            merged: Vec::new(),
            pending: Vec::new(),
            count: 0,
            no_compaction: false,
        }
    }
}

impl<A: Element> Buffered<A> {
    /// Takes in a received accumulator: the first is decoded (no user code runs), the
    /// others are kept encoded.
    fn push(&mut self, encoded: &[u8], ctx: &UnitContext) -> UnitResult {
        if self.first.is_none() && self.merged.is_empty() && self.count == 0 {
            let acc = sluice_core::coder::decode_exact::<A>(encoded).map_err(|e| ctx.error(e))?;
            self.first = Some(acc);
            return Ok(());
        }
        let len = u32::try_from(encoded.len())
            .map_err(|_| ctx.error("an accumulator of 4 GiB or more cannot be buffered"))?;
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending.extend_from_slice(encoded);
        self.count += 1;
        Ok(())
    }

    /// Takes in another window's contents (windows merged): no user code runs.
    fn absorb(&mut self, other: Buffered<A>) {
        self.merged.extend(other.first);
        self.merged.extend(other.merged);
        self.pending.extend_from_slice(&other.pending);
        self.count += other.count;
        self.no_compaction |= other.no_compaction;
    }

    /// Every accumulator held, merged into one (a fresh one when there are none): the
    /// contents are left as they were.
    fn merge_all<F: CombineFn<Accumulator = A>>(
        &self,
        f: &F,
        ctx: &UnitContext,
    ) -> Result<A, Box<ExecError>> {
        let mut merged = self.first.iter().chain(&self.merged).cloned();
        let mut acc = merged.next();
        let mut rest = &self.pending[..];
        let decoded = std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let (slice, tail) = tail.split_at(len.min(tail.len()));
            rest = tail;
            Some(sluice_core::coder::decode_exact::<A>(slice).map_err(|e| ctx.error(e)))
        });
        for other in merged.map(Ok).chain(decoded) {
            let other = other?;
            match &mut acc {
                Some(acc) => guard(ctx, || f.merge_accumulators(acc, other)),
                None => acc = Some(other),
            }
        }
        Ok(acc.unwrap_or_else(|| guard(ctx, || f.create_accumulator())))
    }

    /// Merges the encoded accumulators into one decoded one, if that succeeds; after a
    /// panic the contents stay as they were and compaction stops for this pane.
    fn compact<F: CombineFn<Accumulator = A>>(&mut self, f: &F, ctx: &UnitContext) -> UnitResult {
        let attempt = catch_unwind(AssertUnwindSafe(|| self.merge_all(f, ctx)));
        match attempt {
            Ok(Ok(acc)) => {
                self.first = Some(acc);
                self.merged.clear();
                self.pending.clear();
                self.count = 0;
                Ok(())
            }
            // Decoding what this job encoded failed: not something a retry mends.
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                sluice_core::error::current_step::take_panicked_step();
                self.no_compaction = true;
                log::warn!(
                    "transform '{}': merge_accumulators panicked ({}) while merging received accumulators; they are kept and merged again when the pane fires, in a bundle that is retried as any other",
                    ctx.transform,
                    sluice_core::error::panic_message(&*panic)
                );
                Ok(())
            }
        }
    }
}

/// After the shuffle: a lifted combine's grouping buffers accumulators per key and
/// window as they arrive and merges them (see [`Buffered`]); a fired pane's output is
/// the merged accumulator's.
struct MergeAccumulators<F>(F);

impl<F: CombineFn> Grouping for MergeAccumulators<F> {
    type Contents = Buffered<F::Accumulator>;
    type Out = F::Output;

    fn add(
        &self,
        ctx: &UnitContext,
        contents: &mut Option<Self::Contents>,
        value: &[u8],
    ) -> UnitResult {
        let buffered = contents.get_or_insert_with(Buffered::default);
        buffered.push(value, ctx)?;
        if buffered.count as usize >= COMPACT_AFTER && !buffered.no_compaction {
            buffered.compact(&self.0, ctx)?;
        }
        Ok(())
    }

    fn merge(into: &mut Self::Contents, other: Self::Contents) {
        into.absorb(other);
    }

    fn output(
        &self,
        ctx: &UnitContext,
        contents: Option<&Self::Contents>,
    ) -> Result<F::Output, Box<ExecError>> {
        let f = &self.0;
        // Merged into a copy, so that a failed bundle can emit the same groups again.
        let acc = match contents {
            Some(buffered) => buffered.merge_all(f, ctx)?,
            None => guard(ctx, || f.create_accumulator()),
        };
        Ok(guard(ctx, || f.extract_output(acc)))
    }
}

/// Not lifted: combines the grouped values of one key.
struct CombineGrouped<K, F: CombineFn> {
    combine_fn: F,
    ctx: UnitContext,
    output: Port<(K, F::Output)>,
}

impl<K: Element, F: CombineFn> Receiver<(K, Vec<F::Input>)> for CombineGrouped<K, F> {
    fn start_bundle(&mut self) -> UnitResult {
        self.output.start_bundle()
    }

    fn receive(&mut self, element: WindowedValue<(K, Vec<F::Input>)>) -> UnitResult {
        let WindowedValue {
            value: (k, values),
            timestamp,
            window,
            pane,
        } = element;
        let f = &self.combine_fn;
        let out = guard(&self.ctx, || {
            let mut acc = f.create_accumulator();
            for v in values {
                f.add_input(&mut acc, v);
            }
            f.extract_output(acc)
        });
        self.output.emit(WindowedValue {
            value: (k, out),
            timestamp,
            window,
            pane,
        })
    }

    fn finish_bundle(&mut self) -> UnitResult {
        self.output.finish_bundle()
    }
}

/// The first level of a fanned-out combine: accumulates, and outputs the accumulator.
#[derive(Clone)]
struct Accumulate<F>(F);

impl<F: CombineFn> CombineFn for Accumulate<F> {
    type Input = F::Input;
    type Accumulator = F::Accumulator;
    type Output = F::Accumulator;
    fn create_accumulator(&self) -> F::Accumulator {
        self.0.create_accumulator()
    }
    fn add_input(&self, acc: &mut F::Accumulator, input: F::Input) {
        self.0.add_input(acc, input)
    }
    fn merge_accumulators(&self, acc: &mut F::Accumulator, other: F::Accumulator) {
        self.0.merge_accumulators(acc, other)
    }
    fn extract_output(&self, acc: F::Accumulator) -> F::Accumulator {
        acc
    }
}

/// The second level of a fanned-out combine (and of a column combine): merges
/// accumulators, extracts the output.
#[derive(Clone)]
pub(crate) struct MergeExtract<F>(pub(crate) F);

impl<F: CombineFn> CombineFn for MergeExtract<F> {
    type Input = F::Accumulator;
    type Accumulator = F::Accumulator;
    type Output = F::Output;
    fn create_accumulator(&self) -> F::Accumulator {
        self.0.create_accumulator()
    }
    fn add_input(&self, acc: &mut F::Accumulator, input: F::Accumulator) {
        self.0.merge_accumulators(acc, input)
    }
    fn merge_accumulators(&self, acc: &mut F::Accumulator, other: F::Accumulator) {
        self.0.merge_accumulators(acc, other)
    }
    fn extract_output(&self, acc: F::Accumulator) -> F::Output {
        self.0.extract_output(acc)
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Like [`PCollection::combine_per_key`], for keys too hot for one worker (Beam's
    /// `withHotKeyFanout`): each key's values are spread over `fanout` sub-keys and
    /// combined there first, so up to `fanout` workers share a hot key; the partial results
    /// are then merged per key.
    pub fn combine_per_key_with_fanout<F: CombineFn<Input = V>>(
        &self,
        name: &str,
        fanout: u32,
        combine_fn: F,
    ) -> PCollection<(K, F::Output)> {
        let fanout = fanout.max(1);
        self.composite(name, |input| {
            let first = Accumulate(combine_fn.clone());
            input
                .map("AddNonce", move |(k, v): (K, V)| {
                    ((k, fastrand::u32(..fanout)), v)
                })
                .combine_per_key("PreCombine", first)
                .map("StripNonce", |((k, _), acc): ((K, u32), F::Accumulator)| {
                    (k, acc)
                })
                .combine_per_key("PostCombine", MergeExtract(combine_fn))
        })
    }
}
