//! The optimiser: an ordered list of rules, each in its own file, named after the rule.
//!
//! | rule | file | what it does |
//! |---|---|---|
//! | `LiftCombiners` | `lift_combiners.rs` | Splits a GroupByKey followed by a combine into a partial combine before the shuffle and a merge of accumulators after it. |
//! | `MaterializeSideInputs` | `materialize_side_inputs.rs` | Reshuffles the main input of a side-input consumer whose view is computed from the consumer's own stage, so the stage cannot wait on itself. |
//! | `FuseStages` | `fuse_stages.rs` | Groups steps connected by PCollections into fused stages, cutting at shuffles; a Flatten is never materialised. |
//!
//! The order matters: lifting moves the partial combine to the producer side of the
//! shuffle, so it must run before fusion decides which stage each step belongs to.
//! Materialising side-input consumers adds shuffles, so it too runs before fusion, and
//! after lifting, whose shuffles it must see. Fusion runs last because it only groups
//! steps and never changes them.

mod fuse_stages;
mod lift_combiners;
mod materialize_side_inputs;

pub use fuse_stages::FuseStages;
pub use lift_combiners::LiftCombiners;
pub use materialize_side_inputs::MaterializeSideInputs;

use crate::execution::ExecutionGraph;
use crate::graph::PipelineGraph;

/// Choices that change what the optimiser does.
#[derive(Clone, Debug)]
pub struct OptimizeOptions {
    /// Lift combiners ahead of their shuffle (default: yes).
    pub lift_combiners: bool,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            lift_combiners: true,
        }
    }
}

/// One rewrite of the execution graph.
pub trait OptimizerRule {
    /// The rule's name, as in the table above.
    fn name(&self) -> &'static str;
    /// Rewrites `graph` in place.
    fn rewrite(
        &self,
        graph: &mut ExecutionGraph,
        pipeline: &PipelineGraph,
        options: &OptimizeOptions,
    );
}

/// The rules, in the order they run.
pub fn rules() -> Vec<Box<dyn OptimizerRule>> {
    vec![
        Box::new(LiftCombiners),
        Box::new(MaterializeSideInputs),
        Box::new(FuseStages),
    ]
}

/// Translates a validated pipeline into its optimised, fused execution graph.
pub fn optimize(pipeline: &PipelineGraph, options: &OptimizeOptions) -> ExecutionGraph {
    let mut graph = ExecutionGraph::from_pipeline(pipeline);
    for rule in rules() {
        rule.rewrite(&mut graph, pipeline, options);
    }
    graph
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table_lists_every_rule_in_order() {
        let doc = include_str!("mod.rs");
        let table: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("//! | `"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let names: Vec<&str> = rules().iter().map(|r| r.name()).collect();
        assert_eq!(table, names);
        for name in names {
            let file = format!("src/optimizer/{}.rs", snake(name));
            assert!(
                std::path::Path::new(&file).exists(),
                "{name} should live in {file}"
            );
        }
    }

    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
}
