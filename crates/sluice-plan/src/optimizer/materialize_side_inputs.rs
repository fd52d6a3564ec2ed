//! `MaterializeSideInputs`: a stage never waits for a view that needs the stage itself.
//!
//! A step that reads a side input runs only once the view is complete. If the view is
//! computed from the same stage the step would be fused into — say, a ParDo over words
//! that reads the count of those same words — the stage could never finish: it waits for
//! the view, which waits for the stage. Such a step's main input is therefore
//! materialised first (a reshuffle), so the step roots a stage of its own that starts
//! after the view is ready. Before:
//!
//! ```text
//! Create Words:  -> Words.out
//! ...
//! ViewWrite Total/View: Total/Values.out -> side[Total/View.out]
//! ParDo Share: Words.out + side[Total/View.out] -> Share.out
//! ```
//!
//! After:
//!
//! ```text
//! ReshuffleWrite Share/Materialize/Write: Words.out -> shuffle[Share/Materialize]
//! ReshuffleRead Share/Materialize/Read: shuffle[Share/Materialize] -> Words.out
//! ParDo Share: Words.out + side[Total/View.out] -> Share.out
//! ```
//!
//! A view computed independently of the consumer's stage needs no such cut.

use std::collections::BTreeSet;

use crate::execution::{EdgeKind, ExecutionGraph, Step, StepId, StepOp};
use crate::graph::PipelineGraph;
use crate::optimizer::{OptimizeOptions, OptimizerRule};

/// Cuts fusion before side-input consumers that would wait on their own stage.
pub struct MaterializeSideInputs;

impl OptimizerRule for MaterializeSideInputs {
    fn name(&self) -> &'static str {
        "MaterializeSideInputs"
    }

    fn rewrite(
        &self,
        graph: &mut ExecutionGraph,
        _pipeline: &PipelineGraph,
        _options: &OptimizeOptions,
    ) {
        let mut i = 0;
        while i < graph.steps.len() {
            let step = &graph.steps[i];
            if step.side_inputs.is_empty()
                || step.inputs.len() != 1
                || !would_wait_on_itself(graph, StepId(i))
            {
                i += 1;
                continue;
            }
            let consumer = step.clone();
            let main = consumer.inputs[0];
            let EdgeKind::PCollection(pc) = graph.edge(main).kind else {
                i += 1;
                continue;
            };
            let name = format!("{}/Materialize", consumer.name);
            let shuffle = graph.add_edge(name.clone(), EdgeKind::Shuffle);
            let materialized =
                graph.add_edge(graph.edge(main).name.clone(), EdgeKind::PCollection(pc));
            let write = Step {
                name: format!("{name}/Write"),
                op: StepOp::ReshuffleWrite,
                original: consumer.original,
                inputs: vec![main],
                outputs: vec![shuffle],
                side_inputs: Vec::new(),
            };
            let read = Step {
                name: format!("{name}/Read"),
                op: StepOp::ReshuffleRead,
                original: consumer.original,
                inputs: vec![shuffle],
                outputs: vec![materialized],
                side_inputs: Vec::new(),
            };
            graph.steps[i].inputs = vec![materialized];
            graph.steps.insert(i, read);
            graph.steps.insert(i, write);
            i += 3;
        }
    }
}

/// Whether a view `step` reads is computed from a stage `step` would be fused into.
fn would_wait_on_itself(graph: &ExecutionGraph, step: StepId) -> bool {
    // The roots of the stage the step joins: back along element edges to a source or a
    // shuffle read.
    let mut roots = BTreeSet::new();
    let mut stack = vec![step];
    let mut seen = BTreeSet::new();
    while let Some(s) = stack.pop() {
        if !seen.insert(s) {
            continue;
        }
        if graph.step(s).op.is_root() {
            roots.insert(s);
            continue;
        }
        for input in &graph.step(s).inputs {
            stack.extend(graph.producers(*input));
        }
    }
    let views: BTreeSet<StepId> = graph
        .step(step)
        .side_inputs
        .iter()
        .flat_map(|e| graph.producers(*e).collect::<Vec<_>>())
        .collect();
    // Everything downstream of those roots, across every kind of edge.
    let mut stack: Vec<StepId> = roots.into_iter().collect();
    let mut reached = BTreeSet::new();
    while let Some(s) = stack.pop() {
        if !reached.insert(s) {
            continue;
        }
        if views.contains(&s) {
            return true;
        }
        for output in &graph.step(s).outputs {
            for (i, other) in graph.steps.iter().enumerate() {
                if other.inputs.contains(output) || other.side_inputs.contains(output) {
                    stack.push(StepId(i));
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::testkit::G;
    use crate::optimizer::{FuseStages, LiftCombiners};

    fn optimized(pipeline: &PipelineGraph) -> (String, String) {
        let mut graph = ExecutionGraph::from_pipeline(pipeline);
        LiftCombiners.rewrite(&mut graph, pipeline, &OptimizeOptions::default());
        let before = graph.to_text();
        MaterializeSideInputs.rewrite(&mut graph, pipeline, &OptimizeOptions::default());
        FuseStages.rewrite(&mut graph, pipeline, &OptimizeOptions::default());
        (before, graph.to_text())
    }

    #[test]
    fn a_view_of_the_consumers_own_input_is_materialised_first() {
        let mut g = G::default();
        let words = g.create("Words");
        let total = g.combine_per_key("Total", words);
        let view = g.view("TotalView", total);
        let shares = g.pardo_with_side("Share", words, view);
        g.write("Write", shares);
        let (before, after) = optimized(&g.g);
        assert!(
            before.contains("ParDo Share: Words.out + side[TotalView.out] -> Share.out"),
            "{before}"
        );
        let stages: Vec<&str> = after.lines().filter(|l| l.starts_with('S')).collect();
        assert_eq!(
            stages,
            [
                "S01 F1: Words | Total/Combine/Partial | Share/Materialize/Write",
                "S02 F2 (after S01): Total/Combine/Merge | TotalView",
                "S03 F3 (after S01, S02): Share/Materialize/Read | Share | Write",
            ],
            "{after}"
        );
    }

    #[test]
    fn an_independent_view_needs_no_cut() {
        let mut g = G::default();
        let words = g.create("Words");
        let other = g.create("Stopwords");
        let view = g.view("StopwordView", other);
        let kept = g.pardo_with_side("Filter", words, view);
        g.write("Write", kept);
        let (_, after) = optimized(&g.g);
        let stages: Vec<&str> = after.lines().filter(|l| l.starts_with('S')).collect();
        assert_eq!(
            stages,
            [
                "S01 F1: Stopwords | StopwordView",
                "S02 F2 (after S01): Words | Filter | Write"
            ]
        );
    }
}
