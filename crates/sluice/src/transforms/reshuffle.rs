//! Reshuffle: redistributes elements evenly over workers, and prevents fusion.

use sluice_core::Element;
use sluice_plan::Payload;

use crate::pcollection::PCollection;

impl<T: Element> PCollection<T> {
    /// Spreads the elements evenly over all workers. The steps before and after a
    /// Reshuffle run in different stages, so a slow or unsplittable input (a `.gz` file)
    /// or a high fan-out step no longer limits the parallelism of what follows.
    pub fn reshuffle(&self, name: &str) -> PCollection<T> {
        self.apply_leaf(name, Payload::Reshuffle)
    }
}
