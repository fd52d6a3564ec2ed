//! Typed PCollections and the transforms applied to them.

use std::marker::PhantomData;
use std::sync::Arc;

use sluice_core::Element;
use sluice_core::unit::TypeOf;
use sluice_plan::{PCollectionId, Payload};

use crate::dofn::{
    DeadLetter, DoFn, FilterFn, FlatMapFn, MapFn, ParDoPayload, TagSpec, TryMapFn, TupleTag,
};
use crate::pipeline::Pipeline;

/// A distributed collection of elements of type `T`, produced by a transform.
///
/// Applying a transform returns a new PCollection; nothing runs until
/// [`Pipeline::run`]. Clones refer to the same collection.
pub struct PCollection<T> {
    pub(crate) pipeline: Pipeline,
    pub(crate) id: PCollectionId,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for PCollection<T> {
    fn clone(&self) -> Self {
        PCollection {
            pipeline: self.pipeline.clone(),
            id: self.id,
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PCollection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.pipeline.inner.borrow();
        write!(f, "PCollection({})", inner.graph.pcollection(self.id).name)
    }
}

/// Values that hold PCollections: what a composite transform returns.
pub trait PValue {
    /// The ids of the PCollections held.
    fn pcollection_ids(&self) -> Vec<PCollectionId>;
}

impl<T> PValue for PCollection<T> {
    fn pcollection_ids(&self) -> Vec<PCollectionId> {
        vec![self.id]
    }
}

impl PValue for () {
    fn pcollection_ids(&self) -> Vec<PCollectionId> {
        Vec::new()
    }
}

impl<A: PValue, B: PValue> PValue for (A, B) {
    fn pcollection_ids(&self) -> Vec<PCollectionId> {
        let mut ids = self.0.pcollection_ids();
        ids.extend(self.1.pcollection_ids());
        ids
    }
}

impl<A: PValue> PValue for Vec<A> {
    fn pcollection_ids(&self) -> Vec<PCollectionId> {
        self.iter().flat_map(PValue::pcollection_ids).collect()
    }
}

impl<A: PValue, E> PValue for Result<A, E> {
    fn pcollection_ids(&self) -> Vec<PCollectionId> {
        self.as_ref()
            .map(PValue::pcollection_ids)
            .unwrap_or_default()
    }
}

/// A reusable composite transform: a named group of transforms applied with
/// [`PCollection::apply`]. Transforms applied in `expand` are named under the
/// composite's name (`CountWords/Init`).
pub trait PTransform<In> {
    /// What the composite produces.
    type Out: PValue;
    /// Applies the composite's parts to `input`.
    fn expand(&self, input: In) -> Self::Out;
}

/// The additional outputs of a multi-output ParDo.
pub struct TaggedOutputs {
    pipeline: Pipeline,
    transform: String,
    outputs: Vec<(Arc<str>, PCollectionId)>,
}

impl TaggedOutputs {
    /// The PCollection of the output named by `tag`.
    ///
    /// # Panics
    /// If the tag was not declared when the ParDo was applied.
    pub fn get<T: Element>(&self, tag: &TupleTag<T>) -> PCollection<T> {
        match self.outputs.iter().find(|(id, _)| &**id == tag.id()) {
            Some((_, pc)) => PCollection::new(&self.pipeline, *pc),
            None => panic!(
                "'{}' has no output tagged '{}': declare it with tag.spec() in par_do_with_outputs",
                self.transform,
                tag.id()
            ),
        }
    }
}

impl<T: Element> PCollection<T> {
    pub(crate) fn new(pipeline: &Pipeline, id: PCollectionId) -> Self {
        PCollection {
            pipeline: pipeline.clone(),
            id,
            _type: PhantomData,
        }
    }

    /// The pipeline this collection belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// How this collection's elements are windowed.
    pub fn windowing(&self) -> std::sync::Arc<sluice_core::trigger::Windowing> {
        self.pipeline
            .inner
            .borrow()
            .graph
            .pcollection(self.id)
            .windowing
            .clone()
    }

    /// Applies a transform producing one PCollection of `O`.
    pub(crate) fn apply_leaf<O: Element>(&self, name: &str, payload: Payload) -> PCollection<O> {
        let (_, outs) = self.pipeline.add_transform(
            name,
            vec![self.id],
            payload,
            vec![("out".into(), TypeOf::<O>::arc())],
        );
        PCollection::new(&self.pipeline, outs[0])
    }

    /// Runs a [`DoFn`] on every element.
    pub fn par_do<D: DoFn<In = T>>(&self, name: &str, dofn: D) -> PCollection<D::Out> {
        self.apply_leaf(
            name,
            Payload::ParDo(Arc::new(ParDoPayload::new(dofn, Vec::new()))),
        )
    }

    /// Runs a [`DoFn`] with additional outputs, one per tag; returns the main output and
    /// the others.
    pub fn par_do_with_outputs<D: DoFn<In = T>>(
        &self,
        name: &str,
        dofn: D,
        tags: &[TagSpec],
    ) -> (PCollection<D::Out>, TaggedOutputs) {
        let mut outputs = vec![("out".to_string(), TypeOf::<D::Out>::arc())];
        for t in tags {
            if &*t.id == "out" || tags.iter().filter(|o| o.id == t.id).count() > 1 {
                self.pipeline.problem(
                    name,
                    format!(
                        "output tag '{}' is used twice (the main output is 'out')",
                        t.id
                    ),
                    "give each output tag a unique name",
                );
            }
            outputs.push((t.id.to_string(), t.element.clone()));
        }
        let payload = ParDoPayload::new(dofn, tags.iter().map(|t| t.id.clone()).collect());
        let (_, ids) = self.pipeline.add_transform(
            name,
            vec![self.id],
            Payload::ParDo(Arc::new(payload)),
            outputs,
        );
        let tagged = TaggedOutputs {
            pipeline: self.pipeline.clone(),
            transform: self.pipeline.full_name(name),
            outputs: tags
                .iter()
                .map(|t| t.id.clone())
                .zip(ids[1..].iter().copied())
                .collect(),
        };
        (PCollection::new(&self.pipeline, ids[0]), tagged)
    }

    /// Runs a [`DoFn`], routing elements it still fails on after every attempt to a
    /// dead-letter output instead of failing the job.
    ///
    /// A failing element's bundle is retried like any other (transient failures then
    /// succeed); on the bundle's last attempt, an element whose processing fails — an
    /// error or a panic — goes to the second output with the reason, and the rest of the
    /// bundle commits. The failing element's own outputs are dropped, so it contributes
    /// nothing to the main output.
    pub fn par_do_with_dead_letter<D: DoFn<In = T>>(
        &self,
        name: &str,
        dofn: D,
    ) -> (PCollection<D::Out>, PCollection<DeadLetter<T>>) {
        let outputs = vec![
            ("out".to_string(), TypeOf::<D::Out>::arc()),
            ("dead_letter".to_string(), TypeOf::<DeadLetter<T>>::arc()),
        ];
        let payload = ParDoPayload::with_dead_letter(dofn);
        let (_, ids) = self.pipeline.add_transform(
            name,
            vec![self.id],
            Payload::ParDo(Arc::new(payload)),
            outputs,
        );
        (
            PCollection::new(&self.pipeline, ids[0]),
            PCollection::new(&self.pipeline, ids[1]),
        )
    }

    /// One output per element.
    pub fn map<O, F>(&self, name: &str, f: F) -> PCollection<O>
    where
        O: Element,
        F: Fn(T) -> O + Clone + Send + 'static,
    {
        self.par_do(
            name,
            MapFn {
                f,
                _types: PhantomData,
            },
        )
    }

    /// One output per element, or an error that fails the bundle (and names the element).
    pub fn try_map<O, E, F>(&self, name: &str, f: F) -> PCollection<O>
    where
        O: Element,
        E: Into<sluice_core::BoxError>,
        F: Fn(T) -> Result<O, E> + Clone + Send + 'static,
    {
        self.par_do(
            name,
            TryMapFn {
                f,
                _types: PhantomData,
            },
        )
    }

    /// Any number of outputs per element.
    pub fn flat_map<O, I, F>(&self, name: &str, f: F) -> PCollection<O>
    where
        O: Element,
        I: IntoIterator<Item = O>,
        F: Fn(T) -> I + Clone + Send + 'static,
    {
        self.par_do(
            name,
            FlatMapFn {
                f,
                _types: PhantomData,
            },
        )
    }

    /// The elements for which `f` is true.
    pub fn filter<F>(&self, name: &str, f: F) -> PCollection<T>
    where
        F: Fn(&T) -> bool + Clone + Send + 'static,
    {
        self.par_do(
            name,
            FilterFn {
                f,
                _types: PhantomData,
            },
        )
    }

    /// Pairs each element with a key computed from it.
    pub fn key_by<K, F>(&self, name: &str, f: F) -> PCollection<(K, T)>
    where
        K: Element,
        F: Fn(&T) -> K + Clone + Send + 'static,
    {
        self.map(name, move |v: T| (f(&v), v))
    }

    /// Applies a composite transform.
    pub fn apply<P: PTransform<PCollection<T>>>(&self, name: &str, transform: P) -> P::Out {
        let input = self.clone();
        self.pipeline
            .in_composite(name, vec![self.id], move || transform.expand(input))
    }

    /// Applies transforms inside a composite named `name`.
    pub fn composite<O: PValue>(&self, name: &str, expand: impl FnOnce(PCollection<T>) -> O) -> O {
        let input = self.clone();
        self.pipeline
            .in_composite(name, vec![self.id], move || expand(input))
    }
}
