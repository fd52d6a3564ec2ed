//! `LiftCombiners`: combine before the shuffle, not after.
//!
//! A per-key combine is a GroupByKey followed by a combine of each key's grouped values.
//! Shuffling every value only to reduce them afterwards wastes the shuffle; instead each
//! bundle combines its own values per key into accumulators, only the accumulators are
//! shuffled, and the receiving side merges them. Before:
//!
//! ```text
//! ParDo CountWords/Init: ExtractWords.out -> CountWords/Init.out
//! GroupByKeyWrite CountWords/Count/GroupByKey/Write: CountWords/Init.out -> shuffle[CountWords/Count/GroupByKey]
//! GroupByKeyRead CountWords/Count/GroupByKey/Read: shuffle[CountWords/Count/GroupByKey] -> CountWords/Count/GroupByKey.out
//! CombineValues CountWords/Count/Combine: CountWords/Count/GroupByKey.out -> CountWords/Count/Combine.out
//! ```
//!
//! After:
//!
//! ```text
//! ParDo CountWords/Init: ExtractWords.out -> CountWords/Init.out
//! PartialCombine CountWords/Count/Combine/Partial: CountWords/Init.out -> shuffle[CountWords/Count/GroupByKey]
//! MergeAccumulators CountWords/Count/Combine/Merge: shuffle[CountWords/Count/GroupByKey] -> CountWords/Count/Combine.out
//! ```
//!
//! The rule applies only when the grouped values feed nothing but the combine; if they
//! are also read elsewhere, the grouping must happen anyway.

use crate::execution::{ExecutionGraph, Step, StepId, StepOp};
use crate::graph::PipelineGraph;
use crate::optimizer::{OptimizeOptions, OptimizerRule};

/// Splits GroupByKey + CombineValues into PartialCombine → shuffle → MergeAccumulators.
pub struct LiftCombiners;

impl OptimizerRule for LiftCombiners {
    fn name(&self) -> &'static str {
        "LiftCombiners"
    }

    fn rewrite(
        &self,
        graph: &mut ExecutionGraph,
        pipeline: &PipelineGraph,
        options: &OptimizeOptions,
    ) {
        if !options.lift_combiners {
            return;
        }
        let mut remove = Vec::new();
        for c in 0..graph.steps.len() {
            let Some((write, read)) = liftable(graph, StepId(c)) else {
                continue;
            };
            // Merging windows (sessions) are only known once a key's windows meet at the
            // grouping; a partial combine per bundle cannot know which session a value
            // ends up in. And a trigger other than the default may count elements, which a
            // partial combine would turn into accumulators.
            let unliftable =
                graph.steps[write.0]
                    .inputs
                    .iter()
                    .any(|e| match graph.edge(*e).kind {
                        crate::execution::EdgeKind::PCollection(pc) => {
                            let windowing = &pipeline.pcollection(pc).windowing;
                            windowing.is_merging()
                                || windowing.trigger != sluice_core::trigger::Trigger::Default
                        }
                        _ => false,
                    });
            if unliftable {
                continue;
            }
            let combine = graph.steps[c].clone();
            let shuffle = graph.steps[write.0].outputs.clone();
            graph.steps[write.0] = Step {
                name: format!("{}/Partial", combine.name),
                op: StepOp::PartialCombine,
                original: combine.original,
                inputs: graph.steps[write.0].inputs.clone(),
                outputs: shuffle.clone(),
                side_inputs: Vec::new(),
            };
            graph.steps[read.0] = Step {
                name: format!("{}/Merge", combine.name),
                op: StepOp::MergeAccumulators,
                original: combine.original,
                inputs: shuffle,
                outputs: combine.outputs,
                side_inputs: Vec::new(),
            };
            remove.push(c);
        }
        let mut index = 0;
        graph.steps.retain(|_| {
            index += 1;
            !remove.contains(&(index - 1))
        });
    }
}

/// The GroupByKey write and read steps feeding only this combine, if it can be lifted.
fn liftable(graph: &ExecutionGraph, combine: StepId) -> Option<(StepId, StepId)> {
    let step = graph.step(combine);
    if step.op != StepOp::CombineValues || step.inputs.len() != 1 {
        return None;
    }
    let grouped = step.inputs[0];
    let only_consumer = graph.consumers(grouped).eq([combine]);
    let mut producers = graph.producers(grouped);
    let read = producers.next().filter(|_| producers.next().is_none())?;
    if !only_consumer || graph.step(read).op != StepOp::GroupByKeyRead {
        return None;
    }
    let shuffle = *graph.step(read).inputs.first()?;
    let mut writers = graph.producers(shuffle);
    let write = writers.next().filter(|_| writers.next().is_none())?;
    let only_reader = graph.consumers(shuffle).eq([read]);
    (only_reader && graph.step(write).op == StepOp::GroupByKeyWrite).then_some((write, read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::testkit::{G, wordcount};

    fn lifted(pipeline: &PipelineGraph) -> (String, String) {
        let mut graph = ExecutionGraph::from_pipeline(pipeline);
        let before = graph.to_text();
        LiftCombiners.rewrite(&mut graph, pipeline, &OptimizeOptions::default());
        (before, graph.to_text())
    }

    #[test]
    fn wordcount_combine_is_split_around_the_shuffle() {
        let (before, after) = lifted(&wordcount());
        assert_eq!(
            before,
            "\
Read ReadLines:  -> ReadLines.out
ParDo ExtractWords: ReadLines.out -> ExtractWords.out
ParDo CountWords/Init: ExtractWords.out -> CountWords/Init.out
GroupByKeyWrite CountWords/Count/GroupByKey/Write: CountWords/Init.out -> shuffle[CountWords/Count/GroupByKey]
GroupByKeyRead CountWords/Count/GroupByKey/Read: shuffle[CountWords/Count/GroupByKey] -> CountWords/Count/GroupByKey.out
CombineValues CountWords/Count/Combine: CountWords/Count/GroupByKey.out -> CountWords/Count/Combine.out
ParDo Format: CountWords/Count/Combine.out -> Format.out
Write Write: Format.out
"
        );
        assert_eq!(
            after,
            "\
Read ReadLines:  -> ReadLines.out
ParDo ExtractWords: ReadLines.out -> ExtractWords.out
ParDo CountWords/Init: ExtractWords.out -> CountWords/Init.out
PartialCombine CountWords/Count/Combine/Partial: CountWords/Init.out -> shuffle[CountWords/Count/GroupByKey]
MergeAccumulators CountWords/Count/Combine/Merge: shuffle[CountWords/Count/GroupByKey] -> CountWords/Count/Combine.out
ParDo Format: CountWords/Count/Combine.out -> Format.out
Write Write: Format.out
"
        );
    }

    #[test]
    fn grouped_values_read_elsewhere_are_not_lifted() {
        let mut g = G::default();
        let pairs = g.create("Pairs");
        let grouped = g.gbk("Group", pairs);
        let _ = g.pardo("Inspect", grouped);
        let t = g.g.add_transform(
            "Sum",
            None,
            vec![grouped],
            crate::graph::Payload::CombineValues(std::sync::Arc::new(
                crate::optimizer::testkit::Inert,
            )),
        );
        g.g.add_output(t, "Sum.out", sluice_core::unit::TypeOf::<u32>::arc());
        let (before, after) = lifted(&g.g);
        assert_eq!(before, after);
    }

    #[test]
    fn combines_over_merging_windows_are_not_lifted() {
        let mut g = G::default();
        let pairs = g.create("Pairs");
        g.g.set_windowing(
            pairs,
            std::sync::Arc::new(sluice_core::trigger::Windowing::new(std::sync::Arc::new(
                sluice_core::windowing::Sessions::with_gap_millis(10),
            ))),
        );
        let _ = g.combine_per_key("Count", pairs);
        let (before, after) = lifted(&g.g);
        assert_eq!(before, after);
        assert!(after.contains("CombineValues Count/Combine"), "{after}");
    }

    #[test]
    fn lifting_can_be_turned_off() {
        let pipeline = wordcount();
        let mut graph = ExecutionGraph::from_pipeline(&pipeline);
        let before = graph.clone();
        LiftCombiners.rewrite(
            &mut graph,
            &pipeline,
            &OptimizeOptions {
                lift_combiners: false,
            },
        );
        assert_eq!(graph, before);
    }
}
