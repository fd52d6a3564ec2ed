//! Sample: a uniform random sample of fixed size, globally or per key.

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;

/// Keeps a uniform random sample of `n` inputs: every input draws a random priority and
/// the `n` lowest priorities win (bottom-k sampling), which merges exactly: the union of
/// two samples' candidates, cut to the `n` lowest, is a sample of the union.
pub struct SampleFn<T> {
    n: usize,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T> SampleFn<T> {
    /// A sample of `n`.
    pub fn of_size(n: usize) -> Self {
        SampleFn {
            n,
            _type: std::marker::PhantomData,
        }
    }

    fn keep(&self, acc: &mut Vec<(u64, T)>) {
        acc.sort_by_key(|(priority, _)| *priority);
        acc.truncate(self.n);
    }
}

impl<T> Clone for SampleFn<T> {
    fn clone(&self) -> Self {
        SampleFn::of_size(self.n)
    }
}

impl<T: Element> CombineFn for SampleFn<T> {
    type Input = T;
    type Accumulator = Vec<(u64, T)>;
    type Output = Vec<T>;
    fn create_accumulator(&self) -> Vec<(u64, T)> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<(u64, T)>, input: T) {
        if self.n == 0 {
            return;
        }
        acc.push((fastrand::u64(..), input));
        if acc.len() >= 2 * self.n {
            self.keep(acc);
        }
    }
    fn merge_accumulators(&self, acc: &mut Vec<(u64, T)>, other: Vec<(u64, T)>) {
        acc.extend(other);
        if acc.len() >= 2 * self.n {
            self.keep(acc);
        }
    }
    fn extract_output(&self, mut acc: Vec<(u64, T)>) -> Vec<T> {
        self.keep(&mut acc);
        acc.into_iter().map(|(_, v)| v).collect()
    }
}

impl<T: Element> PCollection<T> {
    /// `n` elements chosen uniformly at random (all of them if there are fewer), in no
    /// particular order (Beam's `Sample.fixedSizeGlobally`).
    pub fn sample(&self, name: &str, n: usize) -> PCollection<Vec<T>> {
        self.combine_globally(name, SampleFn::of_size(n))
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// `n` values of each key chosen uniformly at random (Beam's `Sample.fixedSizePerKey`).
    pub fn sample_per_key(&self, name: &str, n: usize) -> PCollection<(K, Vec<V>)> {
        self.combine_per_key(name, SampleFn::of_size(n))
    }
}
