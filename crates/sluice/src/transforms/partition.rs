//! Partition: one PCollection into N, by a function of each element.

use std::sync::Arc;

use sluice_core::{BoxError, Element};

use crate::dofn::{Context, DoFn, TagSpec, TupleTag};
use crate::pcollection::PCollection;

/// Sends each element to the output its function chooses.
struct PartitionFn<T, F> {
    f: F,
    parts: usize,
    tags: Arc<Vec<TupleTag<T>>>,
}

impl<T, F: Clone> Clone for PartitionFn<T, F> {
    fn clone(&self) -> Self {
        PartitionFn {
            f: self.f.clone(),
            parts: self.parts,
            tags: self.tags.clone(),
        }
    }
}

impl<T, F> DoFn for PartitionFn<T, F>
where
    T: Element,
    F: Fn(&T, usize) -> usize + Clone + Send + 'static,
{
    type In = T;
    type Out = T;
    fn process(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        let part = (self.f)(&element, self.parts);
        match part {
            0 => ctx.emit(element),
            p if p < self.parts => ctx.emit_to(&self.tags[p - 1], element),
            p => {
                return Err(format!(
                    "the partition function chose partition {p} of {}",
                    self.parts
                )
                .into());
            }
        }
        Ok(())
    }
}

impl<T: Element> PCollection<T> {
    /// Splits the elements into `parts` PCollections: `f(element, parts)` gives each
    /// element's partition, `0..parts` (Beam's `Partition`). A partition number out of
    /// range fails the element's bundle.
    pub fn partition<F>(&self, name: &str, parts: usize, f: F) -> Vec<PCollection<T>>
    where
        F: Fn(&T, usize) -> usize + Clone + Send + 'static,
    {
        let parts = parts.max(1);
        let tags: Vec<TupleTag<T>> = (1..parts)
            .map(|i| TupleTag::new(&format!("part{i}")))
            .collect();
        let specs: Vec<TagSpec> = tags.iter().map(TupleTag::spec).collect();
        let dofn = PartitionFn {
            f,
            parts,
            tags: Arc::new(tags.clone()),
        };
        let (first, rest) = self.par_do_with_outputs(name, dofn, &specs);
        std::iter::once(first)
            .chain(tags.iter().map(|t| rest.get(t)))
            .collect()
    }
}
