//! Flatten: many PCollections of one type as one.

use sluice_core::Element;
use sluice_core::unit::TypeOf;
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

/// Merges `inputs` into one PCollection. Nothing is copied: the consumers of the result
/// are fused after each input.
pub(crate) fn flatten<T: Element>(
    pipeline: &Pipeline,
    name: &str,
    inputs: &[PCollection<T>],
) -> PCollection<T> {
    let ids = inputs.iter().map(|p| p.id).collect();
    let (_, outs) = pipeline.add_transform(
        name,
        ids,
        Payload::Flatten,
        vec![("out".into(), TypeOf::<T>::arc())],
    );
    PCollection::new(pipeline, outs[0])
}

impl<T: Element> PCollection<T> {
    /// This collection and `others`, as one.
    pub fn flatten_with(&self, name: &str, others: &[PCollection<T>]) -> PCollection<T> {
        let mut all = vec![self.clone()];
        all.extend(others.iter().cloned());
        flatten(&self.pipeline, name, &all)
    }
}
