//! `FuseStages`: producer–consumer fusion.
//!
//! Steps connected by PCollection edges run in one stage, each element passed from unit
//! to unit without being materialised; a shuffle edge (GroupByKey, Reshuffle, a lifted
//! combine) ends a stage, and its reading side roots the next. Every stage therefore has
//! exactly one root: a source, or the read side of a shuffle.
//!
//! A Flatten is never materialised. When its inputs come from different stages, the
//! Flatten and everything fused after it, up to the next shuffle, become part of *each*
//! of those stages (Dataflow calls this unzipping), so each producer feeds the consumers
//! directly.
//!
//! ```text
//! S01 F1: ReadLines | ExtractWords | CountWords/Init | CountWords/Count/Combine/Partial
//! S02 F2 (after S01): CountWords/Count/Combine/Merge | Format | Write
//! ```

use std::collections::BTreeSet;

use crate::execution::{EdgeKind, ExecutionGraph, FusedStage, StepId};
use crate::graph::PipelineGraph;
use crate::optimizer::{OptimizeOptions, OptimizerRule};

/// Groups steps into fused stages, cutting at shuffles.
pub struct FuseStages;

impl OptimizerRule for FuseStages {
    fn name(&self) -> &'static str {
        "FuseStages"
    }

    fn rewrite(
        &self,
        graph: &mut ExecutionGraph,
        _pipeline: &PipelineGraph,
        _options: &OptimizeOptions,
    ) {
        let mut stages: Vec<FusedStage> = Vec::new();
        // The stages each step runs in; more than one after an unzipped Flatten.
        let mut stages_of: Vec<BTreeSet<usize>> = Vec::with_capacity(graph.steps.len());
        for (i, step) in graph.steps.iter().enumerate() {
            let mut member_of = BTreeSet::new();
            if step.op.is_root() {
                let mut prerequisites = BTreeSet::new();
                for input in &step.inputs {
                    if graph.edge(*input).kind == EdgeKind::Shuffle {
                        for writer in graph.producers(*input) {
                            prerequisites.extend(stages_of[writer.0].iter().copied());
                        }
                    }
                }
                let n = stages.len() + 1;
                stages.push(FusedStage {
                    id: format!("S{n:02}"),
                    name: format!("F{n}"),
                    steps: Vec::new(),
                    prerequisites: prerequisites.into_iter().collect(),
                });
                member_of.insert(stages.len() - 1);
            } else {
                for input in &step.inputs {
                    for producer in graph.producers(*input) {
                        member_of.extend(stages_of[producer.0].iter().copied());
                    }
                }
            }
            // A step reading side inputs runs after the stages that produce them.
            let mut views = BTreeSet::new();
            for side in &step.side_inputs {
                for producer in graph.producers(*side) {
                    views.extend(stages_of[producer.0].iter().copied());
                }
            }
            for s in &member_of {
                stages[*s].steps.push(StepId(i));
                for v in &views {
                    if v != s && !stages[*s].prerequisites.contains(v) {
                        stages[*s].prerequisites.push(*v);
                        stages[*s].prerequisites.sort();
                    }
                }
            }
            stages_of.push(member_of);
        }
        graph.stages = in_dependency_order(stages);
    }
}

/// Orders stages so that every stage comes after its prerequisites (a side input can make
/// a stage created early depend on one created later), keeping creation order otherwise,
/// and numbers them in that order: stage ids are the order stages can start in.
fn in_dependency_order(stages: Vec<FusedStage>) -> Vec<FusedStage> {
    let mut order: Vec<usize> = Vec::with_capacity(stages.len());
    let mut placed = vec![false; stages.len()];
    while order.len() < stages.len() {
        let Some(next) = (0..stages.len())
            .find(|&i| !placed[i] && stages[i].prerequisites.iter().all(|p| placed[*p]))
        else {
            // A cycle cannot arise from a DAG of steps; keep what is left in creation order.
            order.extend((0..stages.len()).filter(|i| !placed[*i]));
            break;
        };
        placed[next] = true;
        order.push(next);
    }
    let position: Vec<usize> = {
        let mut position = vec![0; stages.len()];
        for (new, old) in order.iter().enumerate() {
            position[*old] = new;
        }
        position
    };
    let mut renumbered: Vec<FusedStage> = order.iter().map(|old| stages[*old].clone()).collect();
    for (i, stage) in renumbered.iter_mut().enumerate() {
        stage.id = format!("S{:02}", i + 1);
        stage.name = format!("F{}", i + 1);
        stage.prerequisites = stage.prerequisites.iter().map(|p| position[*p]).collect();
        stage.prerequisites.sort();
    }
    renumbered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::optimize;
    use crate::optimizer::testkit::{G, wordcount};

    fn stages(pipeline: &PipelineGraph) -> String {
        let graph = optimize(pipeline, &OptimizeOptions::default());
        graph
            .to_text()
            .lines()
            .filter(|l| l.starts_with('S'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn wordcount_fuses_into_two_stages_around_the_lifted_combine() {
        assert_eq!(
            stages(&wordcount()),
            "\
S01 F1: ReadLines | ExtractWords | CountWords/Init | CountWords/Count/Combine/Partial
S02 F2 (after S01): CountWords/Count/Combine/Merge | Format | Write"
        );
    }

    #[test]
    fn an_unlifted_combine_fuses_after_its_grouping() {
        let graph = optimize(
            &wordcount(),
            &OptimizeOptions {
                lift_combiners: false,
            },
        );
        let text = graph.to_text();
        let stages: Vec<_> = text.lines().filter(|l| l.starts_with('S')).collect();
        assert_eq!(
            stages,
            [
                "S01 F1: ReadLines | ExtractWords | CountWords/Init | CountWords/Count/GroupByKey/Write",
                "S02 F2 (after S01): CountWords/Count/GroupByKey/Read | CountWords/Count/Combine | Format | Write",
            ]
        );
    }

    #[test]
    fn reshuffle_is_a_fusion_barrier() {
        let mut g = G::default();
        let lines = g.read("Read");
        let spread = g.reshuffle("Reshuffle", lines);
        let parsed = g.pardo("Parse", spread);
        g.write("Write", parsed);
        assert_eq!(
            stages(&g.g),
            "\
S01 F1: Read | Reshuffle/Write
S02 F2 (after S01): Reshuffle/Read | Parse | Write"
        );
    }

    #[test]
    fn a_flatten_of_two_stages_is_unzipped_into_both() {
        let mut g = G::default();
        let a = g.read("ReadA");
        let b = g.read("ReadB");
        let both = g.flatten("Both", &[a, b]);
        let keyed = g.pardo("Key", both);
        let grouped = g.gbk("Group", keyed);
        g.write("Write", grouped);
        assert_eq!(
            stages(&g.g),
            "\
S01 F1: ReadA | Both | Key | Group/Write
S02 F2: ReadB | Both | Key | Group/Write
S03 F3 (after S01, S02): Group/Read | Write"
        );
    }

    #[test]
    fn a_flatten_inside_one_stage_stays_a_merge() {
        let mut g = G::default();
        let nums = g.create("Numbers");
        let evens = g.pardo("Evens", nums);
        let odds = g.pardo("Odds", nums);
        let both = g.flatten("Both", &[evens, odds]);
        g.write("Write", both);
        assert_eq!(
            stages(&g.g),
            "S01 F1: Numbers | Evens | Odds | Both | Write"
        );
    }

    #[test]
    fn a_plan_without_barriers_is_one_stage() {
        let mut g = G::default();
        let nums = g.create("Numbers");
        let doubled = g.pardo("Double", nums);
        g.write("Write", doubled);
        assert_eq!(stages(&g.g), "S01 F1: Numbers | Double | Write");
    }
}
