//! GroupByKey: all values of each key (and window), together.

use std::marker::PhantomData;
use std::sync::Arc;

use sluice_core::panes::Panes;
use sluice_core::receiver::AnyReceiver;
use sluice_core::shuffle::ShuffleWriter;
use sluice_core::trigger::Windowing;
use sluice_core::unit::{GroupByKeyFactory, ShuffleReader, UnitContext};
use sluice_core::{Coder, Element, ExecError, Receiver, UnitResult, WindowedValue, key_hash};
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::transforms::pane_reader::{Grouping, PaneReader};

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
            GroupOf(ValuesOf(PhantomData)),
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

/// A GroupByKey's (or CoGroupByKey's) grouping: each pane buffers its values encoded,
/// and `D` decodes them when it fires.
pub(crate) struct GroupOf<D>(pub(crate) D);

impl<D: GroupValues> Grouping for GroupOf<D> {
    type Contents = Group;
    type Out = D::Out;

    fn add(&self, _ctx: &UnitContext, contents: &mut Option<Group>, value: &[u8]) -> UnitResult {
        let group = contents.get_or_insert_with(Group::default);
        group.values.extend_from_slice(value);
        group.count += 1;
        Ok(())
    }

    fn merge(into: &mut Group, other: Group) {
        into.values.extend_from_slice(&other.values);
        into.count += other.count;
    }

    fn output(
        &self,
        ctx: &UnitContext,
        contents: Option<&Group>,
    ) -> Result<D::Out, Box<ExecError>> {
        match contents {
            Some(group) => self.0.decode(ctx, &group.values, group.count),
            None => self.0.decode(ctx, &[], 0),
        }
    }
}

/// Groups values per key and window, and emits each pane as `(K, D::Out)`.
pub(crate) type GroupRead<K, D> = PaneReader<K, GroupOf<D>>;

/// Moves what `panes` dropped as late into the unit's counters.
pub(crate) fn count_dropped<C: Clone>(ctx: &UnitContext, panes: &mut Panes<C>) {
    let dropped = panes.take_dropped();
    if dropped > 0 {
        ctx.counters
            .late_dropped
            .set(ctx.counters.late_dropped.get() + dropped);
    }
}
