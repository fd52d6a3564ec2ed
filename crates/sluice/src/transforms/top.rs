//! Top: the largest or smallest N elements, globally or per key.

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;

/// Keeps the `n` largest inputs (or smallest, with `largest` false).
#[derive(Clone)]
pub struct TopFn {
    n: usize,
    largest: bool,
}

impl TopFn {
    /// The `n` largest.
    pub fn largest(n: usize) -> Self {
        TopFn { n, largest: true }
    }

    /// The `n` smallest.
    pub fn smallest(n: usize) -> Self {
        TopFn { n, largest: false }
    }

    fn keep<T: Ord>(&self, acc: &mut Vec<T>) {
        // Largest first (or smallest first), cut to n.
        if self.largest {
            acc.sort_by(|a, b| b.cmp(a));
        } else {
            acc.sort();
        }
        acc.truncate(self.n);
    }
}

/// Adds `input`, cutting the accumulator back to the best `n` whenever it reaches `2n`:
/// amortised O(log n) per input.
fn push_bounded<T: Ord>(top: &TopFn, acc: &mut Vec<T>, input: T) {
    if top.n == 0 {
        return;
    }
    acc.push(input);
    if acc.len() >= 2 * top.n {
        top.keep(acc);
    }
}

impl<T: Element + Ord> CombineFn for TopFnOf<T> {
    type Input = T;
    type Accumulator = Vec<T>;
    type Output = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, input: T) {
        push_bounded(&self.top, acc, input);
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        for v in other {
            push_bounded(&self.top, acc, v);
        }
    }
    fn extract_output(&self, mut acc: Vec<T>) -> Vec<T> {
        self.top.keep(&mut acc);
        acc
    }
}

/// A [`TopFn`] for elements of type `T`.
pub struct TopFnOf<T> {
    top: TopFn,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for TopFnOf<T> {
    fn clone(&self) -> Self {
        TopFnOf {
            top: self.top.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl TopFn {
    /// This combiner for elements of type `T`.
    pub fn of<T>(self) -> TopFnOf<T> {
        TopFnOf {
            top: self,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: Element + Ord> PCollection<T> {
    /// The `n` largest elements, largest first (Beam's `Top.largest`).
    pub fn top_largest(&self, name: &str, n: usize) -> PCollection<Vec<T>> {
        self.combine_globally(name, TopFn::largest(n).of::<T>())
    }

    /// The `n` smallest elements, smallest first (Beam's `Top.smallest`).
    pub fn top_smallest(&self, name: &str, n: usize) -> PCollection<Vec<T>> {
        self.combine_globally(name, TopFn::smallest(n).of::<T>())
    }
}

impl<K: Element, V: Element + Ord> PCollection<(K, V)> {
    /// The `n` largest values of each key, largest first.
    pub fn top_largest_per_key(&self, name: &str, n: usize) -> PCollection<(K, Vec<V>)> {
        self.combine_per_key(name, TopFn::largest(n).of::<V>())
    }

    /// The `n` smallest values of each key, smallest first.
    pub fn top_smallest_per_key(&self, name: &str, n: usize) -> PCollection<(K, Vec<V>)> {
        self.combine_per_key(name, TopFn::smallest(n).of::<V>())
    }
}
