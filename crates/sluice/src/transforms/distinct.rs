//! Distinct: each element once.

use sluice_core::Element;

use crate::pcollection::PCollection;
use crate::transforms::combine::{CombineFn, combine_per_key};
use crate::transforms::group_by_key::Elements;

/// Remembers nothing: combining only to group.
#[derive(Clone)]
struct Nothing;

impl CombineFn for Nothing {
    type Input = ();
    type Accumulator = ();
    type Output = ();
    fn create_accumulator(&self) {}
    fn add_input(&self, _: &mut (), _: ()) {}
    fn merge_accumulators(&self, _: &mut (), _: ()) {}
    fn extract_output(&self, _: ()) {}
}

impl<T: Element> PCollection<T> {
    /// Each distinct element once (per window), compared by its encoding, so the element
    /// type's coder must be deterministic. Duplicates are dropped before the shuffle.
    pub fn distinct(&self, name: &str) -> PCollection<T> {
        self.composite(name, |input| {
            combine_per_key::<Elements<T>, _>(&input, "Combine", Nothing, None)
                .map("Keys", |(t, ()): (T, ())| t)
        })
    }
}
