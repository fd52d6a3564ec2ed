//! Latest: the element with the latest event timestamp, globally or per key.

use sluice_core::{BoxError, Element, Timestamp};

use crate::dofn::{Context, DoFn};
use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;

/// Pairs each element with its event timestamp.
struct ReifyTimestamp<T>(std::marker::PhantomData<fn(T)>);

impl<T> Clone for ReifyTimestamp<T> {
    fn clone(&self) -> Self {
        ReifyTimestamp(std::marker::PhantomData)
    }
}

impl<T: Element> DoFn for ReifyTimestamp<T> {
    type In = T;
    type Out = (Timestamp, T);
    fn process(
        &mut self,
        element: T,
        ctx: &mut Context<'_, (Timestamp, T)>,
    ) -> Result<(), BoxError> {
        let timestamp = ctx.timestamp();
        ctx.emit((timestamp, element));
        Ok(())
    }
}

/// Keeps the value with the latest timestamp (ties: any one of them).
struct LatestFn<T>(std::marker::PhantomData<fn(T)>);

impl<T> Clone for LatestFn<T> {
    fn clone(&self) -> Self {
        LatestFn(std::marker::PhantomData)
    }
}

impl<T: Element> CombineFn for LatestFn<T> {
    type Input = (Timestamp, T);
    type Accumulator = Option<(Timestamp, T)>;
    type Output = Option<T>;
    fn create_accumulator(&self) -> Self::Accumulator {
        None
    }
    fn add_input(&self, acc: &mut Self::Accumulator, input: (Timestamp, T)) {
        if acc.as_ref().is_none_or(|(t, _)| input.0 > *t) {
            *acc = Some(input);
        }
    }
    fn merge_accumulators(&self, acc: &mut Self::Accumulator, other: Self::Accumulator) {
        if let Some(o) = other {
            self.add_input(acc, o);
        }
    }
    fn extract_output(&self, acc: Self::Accumulator) -> Option<T> {
        acc.map(|(_, v)| v)
    }
}

impl<T: Element> PCollection<T> {
    /// The element with the latest event timestamp, or `None` for an empty input
    /// (Beam's `Latest.globally`).
    pub fn latest(&self, name: &str) -> PCollection<Option<T>> {
        self.composite(name, |input| {
            input
                .par_do("ReifyTimestamps", ReifyTimestamp(std::marker::PhantomData))
                .combine_globally("Latest", LatestFn(std::marker::PhantomData))
        })
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// The value with the latest event timestamp, per key (Beam's `Latest.perKey`).
    pub fn latest_per_key(&self, name: &str) -> PCollection<(K, V)> {
        self.composite(name, |input| {
            input
                .par_do("ReifyTimestamps", ReifyTimestamp(std::marker::PhantomData))
                .map("Rekey", |(t, (k, v)): (Timestamp, (K, V))| (k, (t, v)))
                .combine_per_key("Latest", LatestFn(std::marker::PhantomData))
                .flat_map("Present", |(k, v): (K, Option<V>)| v.map(|v| (k, v)))
        })
    }
}
