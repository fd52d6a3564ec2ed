//! The pipeline as a graph, checked and optimised before anything runs.
//!
//! A pipeline moves through this crate in three steps:
//!
//! 1. [`PipelineGraph`]: the transforms and PCollections as the user wrote them, with
//!    hierarchical names. Each leaf transform carries a factory (from `sluice-core`) that
//!    the runtime later uses to build its execution unit.
//! 2. [`validate`]: names are unique, inputs exist, keys are deterministic — every
//!    problem is reported, naming the transform and the fix, before data moves.
//! 3. [`optimize`]: the graph becomes an [`ExecutionGraph`] of steps; the rules of the
//!    [`optimizer`] lift combiners ahead of their shuffle and fuse steps into
//!    [`FusedStage`]s.
//!
//! [`json`] renders both views in the shape of Dataflow's job description
//! (`originalPipelineTransform[]`, `executionPipelineStage[]`), and [`ExecutionGraph`]
//! prints as plain text for tests and logs.
//!
//! ```
//! use sluice_plan::{PipelineGraph, Payload, optimize, OptimizeOptions};
//! use sluice_core::unit::TypeOf;
//!
//! let mut g = PipelineGraph::default();
//! let t = g.add_transform("Flatten", None, vec![], Payload::Flatten);
//! g.add_output(t, "Flatten.out", TypeOf::<u32>::arc());
//! sluice_plan::validate(&g).unwrap();
//! let plan = optimize(&g, &OptimizeOptions::default());
//! assert_eq!(plan.steps.len(), 1);
//! ```
#![deny(missing_docs)]

pub mod execution;
pub mod graph;
pub mod json;
pub mod optimizer;
pub mod validate;

pub use execution::{Edge, EdgeId, EdgeKind, ExecutionGraph, FusedStage, Step, StepId, StepOp};
pub use graph::{
    PCollectionId, PCollectionNode, Payload, PipelineGraph, TransformId, TransformKind,
    TransformNode,
};
pub use optimizer::{OptimizeOptions, OptimizerRule, optimize};
pub use validate::{ValidationError, ValidationErrors, validate};
