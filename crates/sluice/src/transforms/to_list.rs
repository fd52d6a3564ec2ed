//! ToList: all elements (or all values of a key) as one `Vec`.

use std::marker::PhantomData;

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;

/// Collects its inputs into a `Vec`, in no particular order.
pub struct ToListFn<T>(PhantomData<fn(T)>);

impl<T> Clone for ToListFn<T> {
    fn clone(&self) -> Self {
        ToListFn(PhantomData)
    }
}

impl<T: Element> CombineFn for ToListFn<T> {
    type Input = T;
    type Accumulator = Vec<T>;
    type Output = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, input: T) {
        acc.push(input);
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn extract_output(&self, acc: Vec<T>) -> Vec<T> {
        acc
    }
}

impl<T: Element> PCollection<T> {
    /// Every element in one `Vec` (one per window), in no particular order; an empty
    /// input gives an empty `Vec`. Everything is held in memory on one worker.
    pub fn to_list(&self, name: &str) -> PCollection<Vec<T>> {
        self.combine_globally(name, ToListFn(PhantomData))
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// The values of each key in one `Vec`, in no particular order.
    pub fn to_list_per_key(&self, name: &str) -> PCollection<(K, Vec<V>)> {
        self.combine_per_key(name, ToListFn(PhantomData))
    }
}
