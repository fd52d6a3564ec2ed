//! The execution graph: the pipeline as the runtime will run it.
//!
//! Each leaf transform becomes one or more [`Step`]s connected by [`Edge`]s. An edge is
//! either a PCollection (elements passed from unit to unit, fusable) or a shuffle (records
//! moved between workers by key: a fusion barrier). A GroupByKey becomes a shuffle write
//! and a shuffle read, so the barrier is visible in the graph before any rule runs.
//! Optimiser rules rewrite steps; [`crate::optimizer::FuseStages`] finally groups them
//! into [`FusedStage`]s.

use std::fmt::{self, Write};

use crate::graph::{PCollectionId, PipelineGraph, TransformId, TransformKind};

/// Index of a step in its [`ExecutionGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId(pub usize);

/// Index of an edge in its [`ExecutionGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeId(pub usize);

/// What travels along an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// Elements of a PCollection, handed from unit to unit inside a stage.
    PCollection(PCollectionId),
    /// Records moved between workers by the hash of their key.
    Shuffle,
    /// A PCollection sent whole to every worker, to be read as a side input.
    SideInput,
}

/// A connection between steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The PCollection's name, or the name of the transform that owns the shuffle.
    pub name: String,
    /// What travels along it.
    pub kind: EdgeKind,
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepOp {
    /// Reads a bounded source.
    Read,
    /// Emits values given at construction.
    Create,
    /// Runs a DoFn.
    ParDo,
    /// Merges its inputs.
    Flatten,
    /// Encodes keyed elements into a shuffle.
    GroupByKeyWrite,
    /// Groups shuffled values per key and window.
    GroupByKeyRead,
    /// Combines the grouped values of each key (a combine that was not lifted).
    CombineValues,
    /// Combines each bundle's values per key into accumulators and shuffles those.
    PartialCombine,
    /// Merges shuffled accumulators per key and extracts the outputs.
    MergeAccumulators,
    /// Spreads elements evenly over workers.
    ReshuffleWrite,
    /// Receives reshuffled elements.
    ReshuffleRead,
    /// Writes to a sink.
    Write,
    /// Sends a PCollection to every worker as a side input.
    ViewWrite,
    /// Encodes keyed elements into the shuffle feeding a stateful ParDo.
    StatefulWrite,
    /// Runs a stateful DoFn over each key's shuffled elements.
    StatefulParDo,
}

impl StepOp {
    /// Whether the step roots a stage (it has no input, or reads a shuffle).
    pub fn is_root(self) -> bool {
        matches!(
            self,
            StepOp::Read
                | StepOp::Create
                | StepOp::GroupByKeyRead
                | StepOp::MergeAccumulators
                | StepOp::ReshuffleRead
                | StepOp::StatefulParDo
        )
    }

    /// Dataflow's `KindType` for a stage rooted at this step.
    pub fn dataflow_kind(self) -> &'static str {
        match self {
            StepOp::Read => "READ_KIND",
            StepOp::Create => "CONSTANT_KIND",
            StepOp::GroupByKeyRead | StepOp::MergeAccumulators | StepOp::GroupByKeyWrite => {
                "GROUP_BY_KEY_KIND"
            }
            StepOp::ReshuffleRead | StepOp::ReshuffleWrite => "SHUFFLE_KIND",
            StepOp::Flatten => "FLATTEN_KIND",
            StepOp::Write => "WRITE_KIND",
            StepOp::ViewWrite => "SINGLETON_KIND",
            StepOp::StatefulWrite => "SHUFFLE_KIND",
            StepOp::StatefulParDo => "PAR_DO_KIND",
            StepOp::ParDo | StepOp::CombineValues | StepOp::PartialCombine => "PAR_DO_KIND",
        }
    }
}

/// One unit of execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Unique name (`CountWords/Combine/Partial`).
    pub name: String,
    /// What it does.
    pub op: StepOp,
    /// The user transform it executes (all or part of).
    pub original: TransformId,
    /// Input edges.
    pub inputs: Vec<EdgeId>,
    /// Output edges, main output first.
    pub outputs: Vec<EdgeId>,
    /// Side-input edges the step reads whole before it runs.
    pub side_inputs: Vec<EdgeId>,
}

/// Steps that run together, element by element, without materialising what passes
/// between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusedStage {
    /// Stable id (`S01`).
    pub id: String,
    /// Display name (`F1`).
    pub name: String,
    /// Component steps in topological order; the first is the root.
    pub steps: Vec<StepId>,
    /// Stages whose output this stage reads (indices into [`ExecutionGraph::stages`]).
    pub prerequisites: Vec<usize>,
}

/// The pipeline as steps, edges and (once fused) stages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionGraph {
    /// Steps in topological order.
    pub steps: Vec<Step>,
    /// Edges; the first `pcollections.len()` are the pipeline's PCollections, in order.
    pub edges: Vec<Edge>,
    /// Fused stages, filled by [`crate::optimizer::FuseStages`].
    pub stages: Vec<FusedStage>,
}

impl ExecutionGraph {
    /// Translates each leaf transform into steps.
    pub fn from_pipeline(graph: &PipelineGraph) -> ExecutionGraph {
        let mut eg = ExecutionGraph {
            edges: graph
                .pcollections
                .iter()
                .enumerate()
                .map(|(i, pc)| Edge {
                    name: pc.name.clone(),
                    kind: EdgeKind::PCollection(PCollectionId(i)),
                })
                .collect(),
            ..ExecutionGraph::default()
        };
        let pcoll_edges =
            |ids: &[PCollectionId]| ids.iter().map(|p| EdgeId(p.0)).collect::<Vec<_>>();
        for (id, t) in graph.leaves() {
            let inputs = pcoll_edges(&t.inputs);
            let outputs = pcoll_edges(&t.outputs);
            let single = |op| Step {
                name: t.name.clone(),
                op,
                original: id,
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                side_inputs: pcoll_edges(&t.side_inputs),
            };
            match t.kind() {
                TransformKind::Composite => unreachable!("leaves() skips composites"),
                TransformKind::Read => eg.steps.push(single(StepOp::Read)),
                TransformKind::Create => eg.steps.push(single(StepOp::Create)),
                TransformKind::ParDo => eg.steps.push(single(StepOp::ParDo)),
                TransformKind::Flatten => eg.steps.push(single(StepOp::Flatten)),
                TransformKind::CombineValues => eg.steps.push(single(StepOp::CombineValues)),
                TransformKind::Write => eg.steps.push(single(StepOp::Write)),
                TransformKind::View => {
                    // A view's output is not passed element by element: it is sent whole.
                    for output in &outputs {
                        eg.edges[output.0].kind = EdgeKind::SideInput;
                    }
                    eg.steps.push(single(StepOp::ViewWrite))
                }
                TransformKind::GroupByKey => eg.push_shuffle(
                    id,
                    &t.name,
                    StepOp::GroupByKeyWrite,
                    StepOp::GroupByKeyRead,
                    inputs,
                    outputs,
                ),
                TransformKind::Reshuffle => eg.push_shuffle(
                    id,
                    &t.name,
                    StepOp::ReshuffleWrite,
                    StepOp::ReshuffleRead,
                    inputs,
                    outputs,
                ),
                TransformKind::StatefulParDo => {
                    // Keyed state lives where the key is owned: the input is shuffled by key,
                    // and the DoFn runs as the root of the stage that reads the shuffle.
                    let shuffle = eg.add_edge(format!("{}/Shuffle", t.name), EdgeKind::Shuffle);
                    eg.steps.push(Step {
                        name: format!("{}/Write", t.name),
                        op: StepOp::StatefulWrite,
                        original: id,
                        inputs,
                        outputs: vec![shuffle],
                        side_inputs: Vec::new(),
                    });
                    eg.steps.push(Step {
                        name: t.name.clone(),
                        op: StepOp::StatefulParDo,
                        original: id,
                        inputs: vec![shuffle],
                        outputs,
                        side_inputs: Vec::new(),
                    });
                }
            }
        }
        eg
    }

    fn push_shuffle(
        &mut self,
        original: TransformId,
        name: &str,
        write: StepOp,
        read: StepOp,
        inputs: Vec<EdgeId>,
        outputs: Vec<EdgeId>,
    ) {
        let shuffle = self.add_edge(name, EdgeKind::Shuffle);
        self.steps.push(Step {
            name: format!("{name}/Write"),
            op: write,
            original,
            inputs,
            outputs: vec![shuffle],
            side_inputs: Vec::new(),
        });
        self.steps.push(Step {
            name: format!("{name}/Read"),
            op: read,
            original,
            inputs: vec![shuffle],
            outputs,
            side_inputs: Vec::new(),
        });
    }

    /// Adds an edge.
    pub fn add_edge(&mut self, name: impl Into<String>, kind: EdgeKind) -> EdgeId {
        self.edges.push(Edge {
            name: name.into(),
            kind,
        });
        EdgeId(self.edges.len() - 1)
    }

    /// The step with this id.
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.0]
    }

    /// The edge with this id.
    pub fn edge(&self, id: EdgeId) -> &Edge {
        &self.edges[id.0]
    }

    /// Steps that write `edge`.
    pub fn producers(&self, edge: EdgeId) -> impl Iterator<Item = StepId> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.outputs.contains(&edge))
            .map(|(i, _)| StepId(i))
    }

    /// Steps that read `edge`.
    pub fn consumers(&self, edge: EdgeId) -> impl Iterator<Item = StepId> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.inputs.contains(&edge))
            .map(|(i, _)| StepId(i))
    }

    /// The steps as text, one per line: `Op name: inputs -> outputs`; then the stages.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let names = |ids: &[EdgeId]| {
            ids.iter()
                .map(|e| {
                    let edge = self.edge(*e);
                    match edge.kind {
                        EdgeKind::Shuffle => format!("shuffle[{}]", edge.name),
                        EdgeKind::SideInput => format!("side[{}]", edge.name),
                        EdgeKind::PCollection(_) => edge.name.clone(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for s in &self.steps {
            let _ = write!(out, "{:?} {}: {}", s.op, s.name, names(&s.inputs));
            if !s.side_inputs.is_empty() {
                let _ = write!(out, " + {}", names(&s.side_inputs));
            }
            if !s.outputs.is_empty() {
                let _ = write!(out, " -> {}", names(&s.outputs));
            }
            out.push('\n');
        }
        for stage in &self.stages {
            let _ = write!(out, "{} {}", stage.id, stage.name);
            if !stage.prerequisites.is_empty() {
                let after: Vec<_> = stage
                    .prerequisites
                    .iter()
                    .map(|p| self.stages[*p].id.as_str())
                    .collect();
                let _ = write!(out, " (after {})", after.join(", "));
            }
            let steps: Vec<_> = stage
                .steps
                .iter()
                .map(|s| self.step(*s).name.as_str())
                .collect();
            let _ = writeln!(out, ": {}", steps.join(" | "));
        }
        out
    }
}

impl fmt::Display for ExecutionGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
