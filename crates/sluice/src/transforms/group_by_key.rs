//! GroupByKey: all values of each key (and window), together.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use sluice_core::panes::{Firing, Panes};
use sluice_core::receiver::{AnyPort, AnyReceiver, Port, TypeMismatch};
use sluice_core::shuffle::{ShuffleRecord, ShuffleWriter};
use sluice_core::trigger::Windowing;
use sluice_core::unit::{GroupByKeyFactory, ShuffleReader, UnitContext, attached};
use sluice_core::{
    Coder, Element, ExecError, Receiver, Timestamp, UnitResult, Window, WindowedValue, key_hash,
    route,
};
use sluice_plan::Payload;

use crate::pcollection::PCollection;

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Groups the values of each key: `(K, V)` becomes `(K, Vec<V>)`, one element per key
    /// (and window). Keys are compared by their encoded bytes, so the key type's coder
    /// must be deterministic. Values arrive in no particular order.
    pub fn group_by_key(&self, name: &str) -> PCollection<(K, Vec<V>)> {
        check_key_coder::<K>(self, name);
        let payload = GroupByKeyPayload::<Pairs<K, V>>::new(None, self.windowing());
        self.apply_leaf(name, Payload::GroupByKey(Arc::new(payload)))
    }
}

/// How the input elements of a grouping transform split into key and value.
pub(crate) trait KeySplit: 'static {
    /// The input element.
    type In: Element;
    /// Its key.
    type Key: Element;
    /// Its value.
    type Value: Element;
    /// Splits an element.
    fn split(element: Self::In) -> (Self::Key, Self::Value);
}

/// `(K, V)` pairs: the usual keyed input.
pub(crate) struct Pairs<K, V>(PhantomData<fn(K, V)>);

impl<K: Element, V: Element> KeySplit for Pairs<K, V> {
    type In = (K, V);
    type Key = K;
    type Value = V;
    #[inline(always)]
    fn split(element: (K, V)) -> (K, V) {
        element
    }
}

/// Whole elements as keys, with no value: grouping by the element itself (as counting
/// per element does) without first pairing each element with `()`.
pub(crate) struct Elements<T>(PhantomData<fn(T)>);

impl<T: Element> KeySplit for Elements<T> {
    type In = T;
    type Key = T;
    type Value = ();
    #[inline(always)]
    fn split(element: T) -> (T, ()) {
        (element, ())
    }
}

/// Records a construction problem if `K`'s coder cannot group.
pub(crate) fn check_key_coder<K: Element>(pc: &PCollection<impl Element>, transform: &str) {
    if !K::is_deterministic() {
        pc.pipeline().problem(
            transform,
            format!("the key type {} has a non-deterministic coder, so equal keys could land in different groups", std::any::type_name::<K>()),
            "key by a type whose encoding is deterministic (integers, strings, tuples of them; not floats or hash maps)",
        );
    }
}

/// Both halves of a GroupByKey.
pub(crate) struct GroupByKeyPayload<S> {
    /// An encoded key that gets a group even when no value arrives for it (the void key
    /// of a global combine, whose empty input still has a result).
    default_key: Option<Vec<u8>>,
    /// The input's windowing: windows, trigger, lateness.
    windowing: Arc<Windowing>,
    _types: PhantomData<fn(S)>,
}

impl<S> GroupByKeyPayload<S> {
    pub(crate) fn new(default_key: Option<Vec<u8>>, windowing: Arc<Windowing>) -> Self {
        GroupByKeyPayload {
            default_key,
            windowing,
            _types: PhantomData,
        }
    }
}

impl<S: KeySplit> GroupByKeyFactory for GroupByKeyPayload<S> {
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<S::In>(Box::new(KeyedWrite::<S>::new(
            ctx, shuffle,
        ))))
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        Ok(Box::new(GroupRead::<S::Key, ValuesOf<S::Value>>::new(
            ctx,
            &self.windowing,
            self.default_key.clone(),
            ValuesOf(PhantomData),
        )))
    }
}

/// Encodes keyed elements into a shuffle, routed by the hash of the encoded key.
pub(crate) struct KeyedWrite<S> {
    ctx: UnitContext,
    shuffle: ShuffleWriter,
    /// Scratch space for the encoded key.
    key: Vec<u8>,
    _split: PhantomData<fn(S)>,
}

impl<S> KeyedWrite<S> {
    pub(crate) fn new(ctx: &UnitContext, shuffle: ShuffleWriter) -> Self {
        KeyedWrite {
            ctx: ctx.clone(),
            shuffle,
            key: Vec::new(),
            _split: PhantomData,
        }
    }
}

impl<S: KeySplit> Receiver<S::In> for KeyedWrite<S> {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }

    #[inline]
    fn receive(&mut self, element: WindowedValue<S::In>) -> UnitResult {
        let (k, v) = S::split(element.value);
        self.key.clear();
        k.encode_to(&mut self.key).map_err(|e| self.ctx.error(e))?;
        self.shuffle
            .write_keyed(
                &self.key,
                key_hash(&self.key),
                element.window,
                element.timestamp,
                |out| v.encode_to(out),
            )
            .map_err(|e| self.ctx.error(e))
    }

    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

#[derive(Clone, Default)]
pub(crate) struct Group {
    /// The encoded values, back to back (each coder reads exactly its own bytes).
    values: Vec<u8>,
    count: usize,
}

/// What a grouping reader makes of one group's encoded values.
pub(crate) trait GroupValues: 'static {
    /// The grouped value it emits with each key.
    type Out: Element;
    /// Decodes `count` values encoded back to back in `values`.
    fn decode(
        &self,
        ctx: &UnitContext,
        values: &[u8],
        count: usize,
    ) -> Result<Self::Out, Box<ExecError>>;
}

/// The values, decoded into a list: a GroupByKey's output.
pub(crate) struct ValuesOf<V>(PhantomData<fn() -> V>);

impl<V: Element> GroupValues for ValuesOf<V> {
    type Out = Vec<V>;
    fn decode(
        &self,
        ctx: &UnitContext,
        values: &[u8],
        count: usize,
    ) -> Result<Vec<V>, Box<ExecError>> {
        let mut input = values;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(V::decode_from(&mut input).map_err(|e| ctx.error(e))?);
        }
        Ok(out)
    }
}

/// Groups values per key and window, and emits each pane as `(K, D::Out)`.
pub(crate) struct GroupRead<K, D: GroupValues> {
    ctx: UnitContext,
    panes: Panes<Group>,
    fired: Vec<Firing<Group>>,
    output: Option<Port<(K, D::Out)>>,
    default_key: Option<Vec<u8>>,
    decoder: D,
}

impl<K, D: GroupValues> GroupRead<K, D> {
    pub(crate) fn new(
        ctx: &UnitContext,
        windowing: &Windowing,
        default_key: Option<Vec<u8>>,
        decoder: D,
    ) -> Self {
        GroupRead {
            ctx: ctx.clone(),
            panes: Panes::new(windowing.clone(), ctx.streaming),
            fired: Vec::new(),
            output: None,
            default_key,
            decoder,
        }
    }
}

impl<K: Element, D: GroupValues> ShuffleReader for GroupRead<K, D> {
    fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        self.panes.advance(watermark, now_ms);
    }

    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        let taken = self.panes.accept::<()>(
            record.key,
            key_hash(record.key),
            record.window,
            record.timestamp,
            |group| {
                let group = group.get_or_insert_with(Group::default);
                group.values.extend_from_slice(record.value);
                group.count += 1;
                Ok(())
            },
            |a, b| {
                a.values.extend_from_slice(&b.values);
                a.count += b.count;
            },
        );
        if taken == Ok(false) {
            count_dropped(&self.ctx, &mut self.panes);
        }
        Ok(())
    }

    fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        if self.panes.watermark() == Timestamp::MAX
            && let Some(key) = self.default_key.take()
        {
            let hash = key_hash(&key);
            if route(hash, self.ctx.workers) == self.ctx.worker {
                self.panes
                    .ensure(&key, hash, Window::Global, Group::default);
            }
        }
        self.fired = self.panes.fire(|a, b| {
            a.values.extend_from_slice(&b.values);
            a.count += b.count;
        });
        Ok(self.fired.len())
    }

    fn hold(&self) -> Timestamp {
        self.panes.hold()
    }

    fn next_wakeup_ms(&self) -> Option<i64> {
        self.panes.next_deadline()
    }

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

    fn emit(&mut self, range: Range<usize>) -> UnitResult {
        let output = attached(&mut self.output, &self.ctx)?;
        for (i, firing) in self.fired[range.clone()].iter().enumerate() {
            self.ctx.position.store(
                (range.start + i) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let k = sluice_core::coder::decode_exact::<K>(&firing.key)
                .map_err(|e| self.ctx.error(e))?;
            let values = match &firing.contents {
                Some(group) => self.decoder.decode(&self.ctx, &group.values, group.count)?,
                None => self.decoder.decode(&self.ctx, &[], 0)?,
            };
            output.emit(WindowedValue {
                value: (k, values),
                timestamp: firing.timestamp,
                window: firing.window,
                pane: firing.pane,
            })?;
        }
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
}

/// Moves what `panes` dropped as late into the unit's counters.
pub(crate) fn count_dropped<C: Clone>(ctx: &UnitContext, panes: &mut Panes<C>) {
    let dropped = panes.take_dropped();
    if dropped > 0 {
        ctx.counters
            .late_dropped
            .set(ctx.counters.late_dropped.get() + dropped);
    }
}
