//! Top: the largest or smallest N elements, globally or per key — by the elements' own
//! order, or by a comparator (Beam's `Top.of(n, comparator)`), so that types without a
//! total order (`f64`) and records compared by one field can be ranked too.
//!
//! ```
//! use sluice::prelude::*;
//!
//! let p = Pipeline::for_test();
//! let prices = p.create("Prices", vec![("a".to_string(), 2.5f64), ("a".to_string(), 9.0), ("a".to_string(), 0.5)]);
//! let best = prices.top_per_key_by("Best", 2, |x: &f64, y: &f64| x.total_cmp(y)).collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(best.values(), [("a".to_string(), vec![9.0, 2.5])]);
//! ```

use std::cmp::Ordering;

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;

/// Keeps the `n` largest inputs (or smallest, with `largest` false) by their `Ord`.
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

    /// This combiner for elements of type `T`.
    pub fn of<T: Ord>(self) -> TopFnOf<T> {
        let compare: fn(&T, &T) -> Ordering = if self.largest {
            T::cmp
        } else {
            |a, b| b.cmp(a)
        };
        TopBy::new(self.n, compare)
    }
}

/// A [`TopFn`] for elements of type `T`.
pub type TopFnOf<T> = TopBy<T, fn(&T, &T) -> Ordering>;

/// Keeps the `n` inputs that `compare` ranks largest, largest first (Beam's
/// `Top.of(n, comparator)`). To keep the smallest, reverse the comparator.
pub struct TopBy<T, C> {
    n: usize,
    compare: C,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T, C: Clone> Clone for TopBy<T, C> {
    fn clone(&self) -> Self {
        TopBy {
            n: self.n,
            compare: self.compare.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T, C: Fn(&T, &T) -> Ordering> TopBy<T, C> {
    /// The `n` largest by `compare`.
    pub fn new(n: usize, compare: C) -> Self {
        TopBy {
            n,
            compare,
            _type: std::marker::PhantomData,
        }
    }

    /// Sorts best first and cuts to `n`. The sort is stable, so equal elements keep the
    /// order they were added in.
    fn keep(&self, acc: &mut Vec<T>) {
        acc.sort_by(|a, b| (self.compare)(b, a));
        acc.truncate(self.n);
    }

    /// Adds `input`, cutting the accumulator back to the best `n` whenever it reaches
    /// `2n`: amortised O(log n) per input.
    fn push_bounded(&self, acc: &mut Vec<T>, input: T) {
        if self.n == 0 {
            return;
        }
        acc.push(input);
        if acc.len() >= 2 * self.n {
            self.keep(acc);
        }
    }
}

impl<T, C> CombineFn for TopBy<T, C>
where
    T: Element,
    C: Fn(&T, &T) -> Ordering + Clone + Send + 'static,
{
    type Input = T;
    type Accumulator = Vec<T>;
    type Output = Vec<T>;
    fn create_accumulator(&self) -> Vec<T> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<T>, input: T) {
        self.push_bounded(acc, input);
    }
    fn merge_accumulators(&self, acc: &mut Vec<T>, other: Vec<T>) {
        for v in other {
            self.push_bounded(acc, v);
        }
    }
    fn extract_output(&self, mut acc: Vec<T>) -> Vec<T> {
        self.keep(&mut acc);
        acc
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

impl<T: Element> PCollection<T> {
    /// The `n` elements `compare` ranks largest, largest first (Beam's
    /// `Top.of(n, comparator)`); for the smallest, reverse the comparator.
    pub fn top_by<C>(&self, name: &str, n: usize, compare: C) -> PCollection<Vec<T>>
    where
        C: Fn(&T, &T) -> Ordering + Clone + Send + 'static,
    {
        self.combine_globally(name, TopBy::new(n, compare))
    }

    /// The `n` elements with the largest `key`, largest first.
    pub fn top_by_key<K, F>(&self, name: &str, n: usize, key: F) -> PCollection<Vec<T>>
    where
        K: Ord,
        F: Fn(&T) -> K + Clone + Send + 'static,
    {
        self.top_by(name, n, move |a: &T, b: &T| key(a).cmp(&key(b)))
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

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// The `n` values of each key that `compare` ranks largest, largest first (Beam's
    /// `Top.perKey(n, comparator)`).
    pub fn top_per_key_by<C>(&self, name: &str, n: usize, compare: C) -> PCollection<(K, Vec<V>)>
    where
        C: Fn(&V, &V) -> Ordering + Clone + Send + 'static,
    {
        self.combine_per_key(name, TopBy::new(n, compare))
    }
}
