//! The built-in combiners — count, sum, min, max, mean — and `Count::per_element`.

use std::marker::PhantomData;
use std::ops::Add;

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::{CombineFn, combine_per_key};
use crate::transforms::group_by_key::Elements;

/// `new`, `Default` and `Clone` for combiners that hold nothing but their input type
/// (deriving them would demand the same of the input type).
macro_rules! stateless {
    ($($name:ident),*) => {$(
        impl<T> $name<T> {
            /// The combiner.
            pub fn new() -> Self {
                $name(PhantomData)
            }
        }
        impl<T> Default for $name<T> {
            fn default() -> Self {
                $name::new()
            }
        }
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name::new()
            }
        }
    )*};
}

stateless!(CountFn, SumFn, MinFn, MaxFn, MeanFn);

/// Counts its inputs.
pub struct CountFn<T>(PhantomData<fn(T)>);

impl<T: Element> CombineFn for CountFn<T> {
    type Input = T;
    type Accumulator = u64;
    type Output = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    #[inline]
    fn add_input(&self, acc: &mut u64, _input: T) {
        *acc += 1;
    }
    fn merge_accumulators(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn extract_output(&self, acc: u64) -> u64 {
        acc
    }
}

/// Sums its inputs (the sum of nothing is `N::default()`).
pub struct SumFn<N>(PhantomData<fn(N)>);

impl<N: Element + Copy + Default + Add<Output = N>> CombineFn for SumFn<N> {
    type Input = N;
    type Accumulator = N;
    type Output = N;
    fn create_accumulator(&self) -> N {
        N::default()
    }
    fn add_input(&self, acc: &mut N, input: N) {
        *acc = *acc + input;
    }
    fn merge_accumulators(&self, acc: &mut N, other: N) {
        *acc = *acc + other;
    }
    fn extract_output(&self, acc: N) -> N {
        acc
    }
}

/// The smallest input (`None` for no input; incomparable values such as NaN are skipped).
pub struct MinFn<T>(PhantomData<fn(T)>);

/// The largest input (`None` for no input; incomparable values such as NaN are skipped).
pub struct MaxFn<T>(PhantomData<fn(T)>);

fn keep<T: PartialOrd>(acc: &mut Option<T>, input: T, want: std::cmp::Ordering) {
    match acc {
        None => {
            if input.partial_cmp(&input).is_some() {
                *acc = Some(input);
            }
        }
        Some(current) => {
            if input.partial_cmp(current) == Some(want) {
                *current = input;
            }
        }
    }
}

impl<T: Element + PartialOrd> CombineFn for MinFn<T> {
    type Input = T;
    type Accumulator = Option<T>;
    type Output = Option<T>;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    fn add_input(&self, acc: &mut Option<T>, input: T) {
        keep(acc, input, std::cmp::Ordering::Less);
    }
    fn merge_accumulators(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            keep(acc, o, std::cmp::Ordering::Less);
        }
    }
    fn extract_output(&self, acc: Option<T>) -> Option<T> {
        acc
    }
}

impl<T: Element + PartialOrd> CombineFn for MaxFn<T> {
    type Input = T;
    type Accumulator = Option<T>;
    type Output = Option<T>;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    fn add_input(&self, acc: &mut Option<T>, input: T) {
        keep(acc, input, std::cmp::Ordering::Greater);
    }
    fn merge_accumulators(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            keep(acc, o, std::cmp::Ordering::Greater);
        }
    }
    fn extract_output(&self, acc: Option<T>) -> Option<T> {
        acc
    }
}

/// The arithmetic mean of its inputs (NaN for no input, as in Beam).
pub struct MeanFn<N>(PhantomData<fn(N)>);

impl<N: Element + Into<f64>> CombineFn for MeanFn<N> {
    type Input = N;
    /// (sum, count)
    type Accumulator = (f64, u64);
    type Output = f64;
    fn create_accumulator(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add_input(&self, acc: &mut (f64, u64), input: N) {
        acc.0 += input.into();
        acc.1 += 1;
    }
    fn merge_accumulators(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract_output(&self, acc: (f64, u64)) -> f64 {
        acc.0 / acc.1 as f64
    }
}

impl<T: Element> PCollection<T> {
    /// Counts the occurrences of each distinct element (Beam's `Count.perElement`):
    /// `T` becomes `(T, count)`.
    pub fn count_per_element(&self, name: &str) -> PCollection<(T, u64)> {
        self.composite(name, |input| {
            // The element is the key: grouped directly, without pairing it with `()` first.
            combine_per_key::<Elements<T>, _>(&input, "Count", CountFn::<()>::new(), None)
        })
    }

    /// Counts all elements.
    pub fn count_globally(&self, name: &str) -> PCollection<u64> {
        self.combine_globally(name, CountFn::<T>::new())
    }
}

impl<T: Element + Copy + Default + Add<Output = T>> PCollection<T> {
    /// Sums all elements.
    pub fn sum_globally(&self, name: &str) -> PCollection<T> {
        self.combine_globally(name, SumFn::<T>::default())
    }
}

impl<T: Element + PartialOrd> PCollection<T> {
    /// The smallest element, or `None` if there is none.
    pub fn min_globally(&self, name: &str) -> PCollection<Option<T>> {
        self.combine_globally(name, MinFn::<T>::default())
    }

    /// The largest element, or `None` if there is none.
    pub fn max_globally(&self, name: &str) -> PCollection<Option<T>> {
        self.combine_globally(name, MaxFn::<T>::default())
    }
}

impl<T: Element + Into<f64>> PCollection<T> {
    /// The mean of all elements (NaN if there are none).
    pub fn mean_globally(&self, name: &str) -> PCollection<f64> {
        self.combine_globally(name, MeanFn::<T>::default())
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Counts the values of each key.
    pub fn count_per_key(&self, name: &str) -> PCollection<(K, u64)> {
        self.combine_per_key(name, CountFn::<V>::new())
    }
}

impl<K: Element, V: Element + Copy + Default + Add<Output = V>> PCollection<(K, V)> {
    /// Sums the values of each key.
    pub fn sum_per_key(&self, name: &str) -> PCollection<(K, V)> {
        self.combine_per_key(name, SumFn::<V>::default())
    }
}

impl<K: Element, V: Element + PartialOrd> PCollection<(K, V)> {
    /// The smallest value of each key (keys whose values are all incomparable, such as
    /// NaN, have none and are left out).
    pub fn min_per_key(&self, name: &str) -> PCollection<(K, V)> {
        self.composite(name, |input| {
            input
                .combine_per_key("Min", MinFn::<V>::default())
                .flat_map("Present", |(k, v): (K, Option<V>)| v.map(|v| (k, v)))
        })
    }

    /// The largest value of each key (keys whose values are all incomparable, such as
    /// NaN, have none and are left out).
    pub fn max_per_key(&self, name: &str) -> PCollection<(K, V)> {
        self.composite(name, |input| {
            input
                .combine_per_key("Max", MaxFn::<V>::default())
                .flat_map("Present", |(k, v): (K, Option<V>)| v.map(|v| (k, v)))
        })
    }
}

impl<K: Element, V: Element + Into<f64>> PCollection<(K, V)> {
    /// The mean of the values of each key.
    pub fn mean_per_key(&self, name: &str) -> PCollection<(K, f64)> {
        self.combine_per_key(name, MeanFn::<V>::default())
    }
}
