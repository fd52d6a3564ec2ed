//! The runner: executes an optimised plan on timely dataflow.
//!
//! Given a [`PipelineGraph`](sluice_plan::PipelineGraph) and its fused
//! [`ExecutionGraph`](sluice_plan::ExecutionGraph), [`run`] lowers every
//! [`FusedStage`](sluice_plan::FusedStage) onto one timely operator per worker:
//!
//! - a stage rooted at a source takes splits (byte ranges, chunks of values) from a
//!   shared queue, one bundle per split, so fast workers take more;
//! - a stage rooted at a shuffle receives the records its worker owns (by the hash of
//!   the encoded key), buffers them, and once its input frontier is complete — every
//!   upstream worker has finished — emits the groups in bundles;
//! - inside a stage, the fused units pass elements directly ([`stage`]);
//! - a bundle's shuffle records and sink bytes leave the stage only when the bundle has
//!   finished without error, and sinks make their output visible only when the whole job
//!   has succeeded.
//!
//! Only the [`engine`] module knows about timely; everything else speaks in stages,
//! bundles and records.
//!
//! ```no_run
//! # fn plan() -> (std::sync::Arc<sluice_plan::PipelineGraph>, std::sync::Arc<sluice_plan::ExecutionGraph>) { unimplemented!() }
//! use sluice_runtime::{RunnerConfig, run};
//! let (pipeline, graph) = plan();
//! let outcome = run(pipeline, graph, RunnerConfig::new("2026-11-22_13_05_09-1", 2));
//! println!("{:?}", outcome.state);
//! ```
#![deny(missing_docs)]

mod engine;
pub mod job;
pub mod live;
pub mod metrics;
mod retry;
pub mod stage;
mod stage_run;
pub mod watchdog;
mod watermark;

pub use job::{ClusterConfig, JobOutcome, JobState, RunnerConfig, run};
pub use live::{LiveMetrics, LiveSnapshot};
pub use metrics::{
    JobMetrics, MemoryMetrics, StageMetrics, StepMemory, TransformMetrics, UserMetric,
};
