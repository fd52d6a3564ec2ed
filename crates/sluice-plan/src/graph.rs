//! The pipeline graph as constructed by the user.

use std::fmt;
use std::sync::Arc;

use sluice_core::trigger::Windowing;
use sluice_core::unit::{
    CombineFactory, ElementType, GroupByKeyFactory, ParDoFactory, SinkFactory, SourceFactory,
    StatefulFactory, ViewFactory,
};

/// Index of a transform in its [`PipelineGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransformId(pub usize);

/// Index of a PCollection in its [`PipelineGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PCollectionId(pub usize);

/// What a transform is, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransformKind {
    /// A named group of other transforms.
    Composite,
    /// Reads a bounded source.
    Read,
    /// Produces fixed values given at construction.
    Create,
    /// Runs a DoFn on each element.
    ParDo,
    /// Groups values by key (and window).
    GroupByKey,
    /// Combines the grouped values of each key; liftable ahead of its GroupByKey.
    CombineValues,
    /// Merges PCollections of one type.
    Flatten,
    /// Redistributes elements evenly over workers; a fusion barrier.
    Reshuffle,
    /// Writes to a sink.
    Write,
    /// Materialises a PCollection as a side input.
    View,
    /// Runs a DoFn with per-key state and timers.
    StatefulParDo,
}

impl TransformKind {
    /// Dataflow's name for this kind (`KindType`).
    pub fn dataflow_kind(self) -> &'static str {
        match self {
            TransformKind::Composite => "UNKNOWN_KIND",
            TransformKind::Read => "READ_KIND",
            TransformKind::Create => "CONSTANT_KIND",
            TransformKind::ParDo | TransformKind::CombineValues => "PAR_DO_KIND",
            TransformKind::GroupByKey => "GROUP_BY_KEY_KIND",
            TransformKind::Flatten => "FLATTEN_KIND",
            TransformKind::Reshuffle => "SHUFFLE_KIND",
            TransformKind::Write => "WRITE_KIND",
            TransformKind::View => "SINGLETON_KIND",
            TransformKind::StatefulParDo => "PAR_DO_KIND",
        }
    }
}

impl fmt::Display for TransformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the runtime needs to execute a transform.
#[derive(Clone)]
pub enum Payload {
    /// A composite: its parts are the transforms whose parent it is.
    Composite,
    /// A bounded source.
    Read(Arc<dyn SourceFactory>),
    /// Values fixed at construction, read like a source.
    Create(Arc<dyn SourceFactory>),
    /// A ParDo's DoFn.
    ParDo(Arc<dyn ParDoFactory>),
    /// A GroupByKey of typed keys and values.
    GroupByKey(Arc<dyn GroupByKeyFactory>),
    /// The combine of a CombinePerKey.
    CombineValues(Arc<dyn CombineFactory>),
    /// A Flatten.
    Flatten,
    /// A Reshuffle.
    Reshuffle,
    /// A sink.
    Write(Arc<dyn SinkFactory>),
    /// A side-input view of its input.
    View(Arc<dyn ViewFactory>),
    /// A stateful DoFn.
    StatefulParDo(Arc<dyn StatefulFactory>),
}

impl Payload {
    /// The kind of transform this payload executes.
    pub fn kind(&self) -> TransformKind {
        match self {
            Payload::Composite => TransformKind::Composite,
            Payload::Read(_) => TransformKind::Read,
            Payload::Create(_) => TransformKind::Create,
            Payload::ParDo(_) => TransformKind::ParDo,
            Payload::GroupByKey(_) => TransformKind::GroupByKey,
            Payload::CombineValues(_) => TransformKind::CombineValues,
            Payload::Flatten => TransformKind::Flatten,
            Payload::Reshuffle => TransformKind::Reshuffle,
            Payload::Write(_) => TransformKind::Write,
            Payload::View(_) => TransformKind::View,
            Payload::StatefulParDo(_) => TransformKind::StatefulParDo,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())
    }
}

/// One applied transform.
#[derive(Clone, Debug)]
pub struct TransformNode {
    /// Full hierarchical name, unique in the pipeline (`CountWords/Combine/GroupByKey`).
    pub name: String,
    /// The composite this transform is part of.
    pub parent: Option<TransformId>,
    /// Input PCollections.
    pub inputs: Vec<PCollectionId>,
    /// Output PCollections, main output first.
    pub outputs: Vec<PCollectionId>,
    /// Side inputs: outputs of View transforms, read whole by every worker.
    pub side_inputs: Vec<PCollectionId>,
    /// How to execute it.
    pub payload: Payload,
    /// Facts shown with the transform in plans (Dataflow's `displayData`).
    pub display_data: Vec<(String, String)>,
}

impl TransformNode {
    /// The kind of this transform.
    pub fn kind(&self) -> TransformKind {
        self.payload.kind()
    }
}

/// One PCollection.
#[derive(Clone)]
pub struct PCollectionNode {
    /// Unique name, derived from the producing transform (`ExtractWords.out`).
    pub name: String,
    /// The transform that produces it.
    pub producer: TransformId,
    /// Its element type.
    pub element: Arc<dyn ElementType>,
    /// Whether it is finite.
    pub bounded: bool,
    /// How its elements are windowed, and when its groupings fire.
    pub windowing: Arc<Windowing>,
}

impl fmt::Debug for PCollectionNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PCollectionNode")
            .field("name", &self.name)
            .field("producer", &self.producer)
            .field("element", &self.element.type_name())
            .field("bounded", &self.bounded)
            .field("windowing", &self.windowing.describe())
            .finish()
    }
}

/// A problem found while the graph was built, reported by [`crate::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstructionProblem {
    /// The transform concerned.
    pub transform: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// Transforms and PCollections in construction order, which is a topological order.
#[derive(Clone, Debug, Default)]
pub struct PipelineGraph {
    /// All transforms, composites included, indexed by [`TransformId`].
    pub transforms: Vec<TransformNode>,
    /// All PCollections, indexed by [`PCollectionId`].
    pub pcollections: Vec<PCollectionNode>,
    /// Problems noticed during construction.
    pub problems: Vec<ConstructionProblem>,
    /// Triggers that may finish before their window expires (losing later data) are
    /// accepted (`--allow_unsafe_triggers`).
    pub allow_unsafe_triggers: bool,
}

impl PipelineGraph {
    /// Adds a transform reading `inputs`; its outputs are added with [`PipelineGraph::add_output`].
    pub fn add_transform(
        &mut self,
        name: impl Into<String>,
        parent: Option<TransformId>,
        inputs: Vec<PCollectionId>,
        payload: Payload,
    ) -> TransformId {
        let id = TransformId(self.transforms.len());
        self.transforms.push(TransformNode {
            name: name.into(),
            parent,
            inputs,
            outputs: Vec::new(),
            side_inputs: Vec::new(),
            payload,
            display_data: Vec::new(),
        });
        id
    }

    /// Adds an output PCollection to `producer`.
    pub fn add_output(
        &mut self,
        producer: TransformId,
        name: impl Into<String>,
        element: Arc<dyn ElementType>,
    ) -> PCollectionId {
        let id = PCollectionId(self.pcollections.len());
        let inputs = &self.transforms[producer.0].inputs;
        let bounded = match &self.transforms[producer.0].payload {
            Payload::Read(source) | Payload::Create(source) => !source.is_unbounded(),
            _ => inputs.iter().all(|i| self.pcollections[i.0].bounded),
        };
        // Windowing passes through a transform, from its (first) input; a grouping's output
        // keeps the windows (merged) and continues the trigger.
        let windowing = inputs
            .first()
            .map(|i| self.pcollections[i.0].windowing.clone())
            .unwrap_or_default();
        let windowing = if self.transforms[producer.0].kind() == TransformKind::GroupByKey {
            Arc::new(windowing.after_grouping())
        } else {
            windowing
        };
        self.pcollections.push(PCollectionNode {
            name: name.into(),
            producer,
            element,
            bounded,
            windowing,
        });
        self.transforms[producer.0].outputs.push(id);
        id
    }

    /// Records a problem to report at validation.
    pub fn add_problem(
        &mut self,
        transform: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(ConstructionProblem {
            transform: transform.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// The transform with this id.
    pub fn transform(&self, id: TransformId) -> &TransformNode {
        &self.transforms[id.0]
    }

    /// The PCollection with this id.
    pub fn pcollection(&self, id: PCollectionId) -> &PCollectionNode {
        &self.pcollections[id.0]
    }

    /// Transforms reading `pc`, in construction order.
    pub fn consumers(&self, pc: PCollectionId) -> impl Iterator<Item = TransformId> + '_ {
        self.transforms
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.kind() != TransformKind::Composite && t.inputs.contains(&pc))
            .map(|(i, _)| TransformId(i))
    }
}

impl PipelineGraph {
    /// Sets how a PCollection is windowed (what `WindowInto` produces).
    pub fn set_windowing(&mut self, pc: PCollectionId, windowing: Arc<Windowing>) {
        self.pcollections[pc.0].windowing = windowing;
    }

    /// Sets the side inputs of a transform.
    pub fn set_side_inputs(&mut self, transform: TransformId, side_inputs: Vec<PCollectionId>) {
        self.transforms[transform.0].side_inputs = side_inputs;
    }

    /// Sets the outputs of a composite: the PCollections its parts produced for it.
    pub fn set_composite_outputs(&mut self, composite: TransformId, outputs: Vec<PCollectionId>) {
        self.transforms[composite.0].outputs = outputs;
    }

    /// Leaf transforms (all but composites), in construction order.
    pub fn leaves(&self) -> impl Iterator<Item = (TransformId, &TransformNode)> + '_ {
        self.transforms
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind() != TransformKind::Composite)
            .map(|(i, t)| (TransformId(i), t))
    }
}
