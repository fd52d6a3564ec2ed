//! sluice: data pipelines in the Apache Beam model, as typed Rust.
//!
//! A pipeline is built from typed [`PCollection`]s and transforms — [`DoFn`]s, GroupByKey,
//! Combine, Flatten, Reshuffle, composites — then validated, optimised (ParDo chains
//! fused into stages, combiners lifted ahead of their shuffle) and run in bundles on an
//! embedded runner built on timely dataflow. The same binary describes, plans and runs
//! the pipeline, so there is no second environment to drift from the first.
//!
//! ```
//! use sluice::prelude::*;
//!
//! fn main() -> sluice::Result<()> {
//!     let dir = tempfile::tempdir().unwrap();
//!     let input = dir.path().join("in.txt");
//!     std::fs::write(&input, "the cat\nthe dog\n").unwrap();
//!     let output = dir.path().join("counts");
//!
//!     let p = Pipeline::from_flags([format!("--input={}", input.display()), format!("--output={}", output.display())])?;
//!     p.read_text("ReadLines", &p.arg("input")?)
//!         .flat_map("ExtractWords", |line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
//!         .count_per_element("CountWords")
//!         .map("Format", |(w, n): (String, u64)| format!("{w}: {n}"))
//!         .write_text("Write", &p.arg("output")?);
//!     p.run()?.wait_until_finish()?;
//!
//!     let text = std::fs::read_to_string(dir.path().join("counts-00000-of-00001"))
//!         .or_else(|_| std::fs::read_to_string(dir.path().join("counts-00000-of-00002")))
//!         .unwrap();
//!     assert!(text.lines().count() >= 1);
//!     Ok(())
//! }
//! ```
//!
//! Crates below this one: `sluice-core` (elements, coders, execution-unit interfaces),
//! `sluice-plan` (graph, validation, optimiser, plan JSON), `sluice-runtime` (the runner)
//! and `sluice-io` (connectors). This crate re-exports what a pipeline author needs; see
//! [`prelude`].
#![deny(missing_docs)]

mod cluster;
pub mod dofn;
mod drain;
pub mod error;
pub mod options;
pub mod pcollection;
pub mod pipeline;
pub mod result;
mod service;
pub mod transforms;

pub use dofn::{Context, DeadLetter, DoFn, FinishContext, TagSpec, TupleTag};
pub use error::{Error, Result};
pub use options::{OptionsError, PipelineOptions};
pub use pcollection::{PCollection, PTransform, PValue, TaggedOutputs};
pub use pipeline::Pipeline;
pub use result::PipelineResult;
pub use sluice_core::user_metrics::{MetricValue, UserMetrics};
pub use sluice_core::{
    BoxError, Coder, CoderError, Element, PaneInfo, PaneTiming, Permanent, SerdeCoder, Timestamp,
    Window, serde_coder,
};
pub use sluice_io::text::source::BadRecord;
pub use sluice_runtime::job::JobError;
pub use sluice_runtime::{
    JobMetrics, JobState, MemoryMetrics, StageMetrics, StepMemory, TransformMetrics, UserMetric,
};
pub use transforms::collect::Collected;
pub use transforms::combine::CombineFn;
pub use transforms::combiners::{CountFn, MaxFn, MeanFn, MinFn, SumFn};
pub use transforms::text::{ReadText, WriteText};

/// Window functions, re-exported from `sluice-core`.
pub mod windowing {
    pub use sluice_core::windowing::*;
}

/// Triggers, accumulation modes and windowing strategies, re-exported from `sluice-core`.
pub mod trigger {
    pub use sluice_core::trigger::{AccumulationMode, TimestampCombiner, Trigger, Windowing};
}

/// What pipeline authors use of the connectors: the corpus generator, the errors of
/// files that cannot be read or written, and the records a Read sets aside.
pub mod io {
    pub use sluice_io::text::source::{BadRecord, LineFormat};
    pub use sluice_io::{IoError, corpus, kafka, postgres, storage};
}

/// The plan, for inspecting what a pipeline becomes: the graph as built, the optimised
/// execution graph (`optimize(..).to_text()`), validation errors and the plan JSON.
pub mod plan {
    pub use sluice_plan::json;
    pub use sluice_plan::{
        ExecutionGraph, OptimizeOptions, PipelineGraph, ValidationError, ValidationErrors, optimize,
    };
}

/// What a pipeline author needs in scope.
pub mod prelude {
    pub use crate::{
        BadRecord, BoxError, Coder, CoderError, Collected, CombineFn, Context, CountFn, DeadLetter,
        DoFn, Element, FinishContext, JobState, MaxFn, MeanFn, MinFn, PCollection, PTransform,
        PValue, Permanent, Pipeline, PipelineResult, ReadText, SumFn, Timestamp, TupleTag, Window,
        WriteText,
    };
}
