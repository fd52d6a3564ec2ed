//! GroupByKey: all values of each key (and window), together.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use sluice_core::receiver::{AnyPort, AnyReceiver, Port, TypeMismatch};
use sluice_core::shuffle::{GroupingKey, KeyedTable, ShuffleRecord, ShuffleWriter};
use sluice_core::unit::{GroupByKeyFactory, ShuffleReader, UnitContext, attached};
use sluice_core::windowing::{WindowFn, contains};
use sluice_core::{
    Coder, Element, ExecError, Receiver, UnitResult, Window, WindowedValue, key_hash, route,
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
    /// The input's windowing: merging windows (sessions) merge when the groups are sealed.
    windowing: Arc<dyn WindowFn>,
    _types: PhantomData<fn(S)>,
}

impl<S> GroupByKeyPayload<S> {
    pub(crate) fn new(default_key: Option<Vec<u8>>, windowing: Arc<dyn WindowFn>) -> Self {
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
        Ok(Box::new(GroupRead::<S::Key, S::Value> {
            ctx: ctx.clone(),
            group: GroupingKey::default(),
            table: KeyedTable::default(),
            sealed: Vec::new(),
            output: None,
            default_key: self.default_key.clone(),
            windowing: self.windowing.clone(),
        }))
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

#[derive(Default)]
struct Group {
    /// The encoded values, back to back (each coder reads exactly its own bytes).
    values: Vec<u8>,
    count: usize,
}

struct GroupRead<K, V> {
    ctx: UnitContext,
    group: GroupingKey,
    table: KeyedTable<Group>,
    sealed: Vec<(Box<[u8]>, Window, Group)>,
    output: Option<Port<(K, Vec<V>)>>,
    default_key: Option<Vec<u8>>,
    windowing: Arc<dyn WindowFn>,
}

/// Merges each key's windows (sessions) and the groups in them.
fn merge_windows(
    windowing: &dyn WindowFn,
    groups: Vec<(Box<[u8]>, Window, Group)>,
) -> Vec<(Box<[u8]>, Window, Group)> {
    let mut by_key: BTreeMap<Box<[u8]>, Vec<(Window, Group)>> = BTreeMap::new();
    for (key, window, group) in groups {
        by_key.entry(key).or_default().push((window, group));
    }
    let mut merged_groups = Vec::new();
    for (key, entries) in by_key {
        let mut windows: Vec<Window> = entries.iter().map(|(w, _)| *w).collect();
        let merged = windowing.merge(&mut windows);
        let mut groups: Vec<Group> = merged.iter().map(|_| Group::default()).collect();
        for (window, group) in entries {
            let i = merged
                .iter()
                .position(|m| contains(*m, window))
                .unwrap_or(0);
            groups[i].values.extend_from_slice(&group.values);
            groups[i].count += group.count;
        }
        merged_groups.extend(
            merged
                .into_iter()
                .zip(groups)
                .map(|(w, g)| (key.clone(), w, g)),
        );
    }
    merged_groups
}

impl<K: Element, V: Element> ShuffleReader for GroupRead<K, V> {
    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        self.group.set_encoded(record.window, record.key);
        let group =
            self.table
                .get_or_insert_with(&self.group, key_hash(record.key), Group::default);
        group.values.extend_from_slice(record.value);
        group.count += 1;
        Ok(())
    }

    fn seal(&mut self) -> Result<usize, Box<ExecError>> {
        if let Some(key) = &self.default_key {
            let hash = key_hash(key);
            if route(hash, self.ctx.workers) == self.ctx.worker {
                self.group.set_encoded(Window::Global, key);
                self.table
                    .get_or_insert_with(&self.group, hash, Group::default);
            }
        }
        let groups: Vec<(Box<[u8]>, Window, Group)> = self.table.drain().collect();
        self.sealed = if self.windowing.is_merging() {
            merge_windows(&*self.windowing, groups)
        } else {
            groups
        };
        Ok(self.sealed.len())
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
        for (i, (key, window, group)) in self.sealed[range.clone()].iter().enumerate() {
            self.ctx.position.store(
                (range.start + i) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let k = sluice_core::coder::decode_exact::<K>(key).map_err(|e| self.ctx.error(e))?;
            let mut input = &group.values[..];
            let mut values = Vec::with_capacity(group.count);
            for _ in 0..group.count {
                values.push(V::decode_from(&mut input).map_err(|e| self.ctx.error(e))?);
            }
            output.emit(WindowedValue {
                value: (k, values),
                timestamp: window.max_timestamp(),
                window: *window,
            })?;
        }
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
}
