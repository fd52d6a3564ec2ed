//! The plan as JSON, in the shape of Dataflow's `PipelineDescription`.
//!
//! Two views: `originalPipelineTransform[]` lists the transforms as written
//! (Dataflow's `TransformSummary`), and `executionPipelineStage[]` the fused stages after
//! optimisation (`ExecutionStageSummary`, with `componentTransform[]`, `componentSource[]`,
//! `inputSource[]`, `outputSource[]` and `prerequisiteStage[]`). Field names are
//! Dataflow's, in camelCase; 64-bit sizes are strings, as in Dataflow's JSON. Ids are
//! stable: they follow construction order, so the same pipeline always gets the same ids.

use serde::{Deserialize, Serialize};

use crate::execution::{EdgeKind, ExecutionGraph, StepOp};
use crate::graph::{Payload, PipelineGraph};

/// Dataflow's `PipelineDescription`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDescription {
    /// The transforms as the user wrote them.
    pub original_pipeline_transform: Vec<TransformSummary>,
    /// The fused stages that run.
    pub execution_pipeline_stage: Vec<ExecutionStageSummary>,
    /// Pipeline-level display data.
    pub display_data: Vec<DisplayData>,
}

/// Dataflow's `TransformSummary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformSummary {
    /// `PAR_DO_KIND`, `GROUP_BY_KEY_KIND`, ...
    pub kind: String,
    /// Stable id (`T3`).
    pub id: String,
    /// Full user name.
    pub name: String,
    /// Transform-specific facts.
    pub display_data: Vec<DisplayData>,
    /// Names of the output PCollections.
    pub output_collection_name: Vec<String>,
    /// Names of the input PCollections.
    pub input_collection_name: Vec<String>,
}

/// Dataflow's `DisplayData` (string values only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisplayData {
    /// The fact's name.
    pub key: String,
    /// Who defined it.
    pub namespace: String,
    /// Its value.
    pub str_value: String,
}

/// Dataflow's `ExecutionStageSummary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStageSummary {
    /// Display name (`F1`).
    pub name: String,
    /// Stable id (`S01`).
    pub id: String,
    /// Kind of the stage's root.
    pub kind: String,
    /// What the stage reads: a source, or shuffles.
    pub input_source: Vec<StageSource>,
    /// What the stage writes: shuffles and sinks.
    pub output_source: Vec<StageSource>,
    /// Ids of stages that must finish first.
    pub prerequisite_stage: Vec<String>,
    /// The steps fused into the stage.
    pub component_transform: Vec<ComponentTransform>,
    /// The PCollections passed between the stage's steps.
    pub component_source: Vec<ComponentSource>,
}

/// Dataflow's `StageSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageSource {
    /// Human-readable name.
    pub user_name: String,
    /// Generated name.
    pub name: String,
    /// The user transform or collection it belongs to.
    pub original_transform_or_collection: String,
    /// Size in bytes, when measured (a decimal string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<String>,
}

/// Dataflow's `ComponentTransform`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentTransform {
    /// Human-readable name of the step.
    pub user_name: String,
    /// Generated name (`s4`).
    pub name: String,
    /// The user transform it executes.
    pub original_transform: String,
}

/// Dataflow's `ComponentSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSource {
    /// The PCollection's name.
    pub user_name: String,
    /// Generated name (`e2`).
    pub name: String,
    /// The transform that produces it.
    pub original_transform_or_collection: String,
}

/// Renders both views of a pipeline.
pub fn pipeline_description(
    pipeline: &PipelineGraph,
    graph: &ExecutionGraph,
) -> PipelineDescription {
    let original_pipeline_transform = pipeline
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| TransformSummary {
            kind: t.kind().dataflow_kind().to_string(),
            id: format!("T{}", i + 1),
            name: t.name.clone(),
            display_data: t
                .display_data
                .iter()
                .map(|(k, v)| DisplayData {
                    key: k.clone(),
                    namespace: "sluice".into(),
                    str_value: v.clone(),
                })
                .collect(),
            output_collection_name: t
                .outputs
                .iter()
                .map(|p| pipeline.pcollection(*p).name.clone())
                .collect(),
            input_collection_name: t
                .inputs
                .iter()
                .map(|p| pipeline.pcollection(*p).name.clone())
                .collect(),
        })
        .collect();

    let execution_pipeline_stage = graph
        .stages
        .iter()
        .map(|stage| {
            let root = graph.step(stage.steps[0]);
            let original_name =
                |step: &crate::execution::Step| pipeline.transform(step.original).name.clone();
            let mut input_source = Vec::new();
            for input in &root.inputs {
                input_source.push(StageSource {
                    user_name: graph.edge(*input).name.clone(),
                    name: format!("e{}", input.0 + 1),
                    original_transform_or_collection: original_name(root),
                    size_bytes: None,
                });
            }
            if let Payload::Read(source) | Payload::Create(source) =
                &pipeline.transform(root.original).payload
            {
                input_source.push(StageSource {
                    user_name: root.name.clone(),
                    name: format!("s{}", stage.steps[0].0 + 1),
                    original_transform_or_collection: original_name(root),
                    size_bytes: source.size_bytes().map(|b| b.to_string()),
                });
            }
            for id in &stage.steps {
                for side in &graph.step(*id).side_inputs {
                    input_source.push(StageSource {
                        user_name: graph.edge(*side).name.clone(),
                        name: format!("e{}", side.0 + 1),
                        original_transform_or_collection: original_name(graph.step(*id)),
                        size_bytes: None,
                    });
                }
            }
            let mut output_source = Vec::new();
            let mut component_source = Vec::new();
            for id in &stage.steps {
                let step = graph.step(*id);
                if step.op == StepOp::Write {
                    output_source.push(StageSource {
                        user_name: step.name.clone(),
                        name: format!("s{}", id.0 + 1),
                        original_transform_or_collection: original_name(step),
                        size_bytes: None,
                    });
                }
                for output in &step.outputs {
                    let edge = graph.edge(*output);
                    let entry = (
                        edge.name.clone(),
                        format!("e{}", output.0 + 1),
                        original_name(step),
                    );
                    match edge.kind {
                        EdgeKind::Shuffle | EdgeKind::SideInput => {
                            output_source.push(StageSource {
                                user_name: entry.0,
                                name: entry.1,
                                original_transform_or_collection: entry.2,
                                size_bytes: None,
                            })
                        }
                        EdgeKind::PCollection(_) => component_source.push(ComponentSource {
                            user_name: entry.0,
                            name: entry.1,
                            original_transform_or_collection: entry.2,
                        }),
                    }
                }
            }
            ExecutionStageSummary {
                name: stage.name.clone(),
                id: stage.id.clone(),
                kind: root.op.dataflow_kind().to_string(),
                input_source,
                output_source,
                prerequisite_stage: stage
                    .prerequisites
                    .iter()
                    .map(|p| graph.stages[*p].id.clone())
                    .collect(),
                component_transform: stage
                    .steps
                    .iter()
                    .map(|id| {
                        let step = graph.step(*id);
                        ComponentTransform {
                            user_name: step.name.clone(),
                            name: format!("s{}", id.0 + 1),
                            original_transform: original_name(step),
                        }
                    })
                    .collect(),
                component_source,
            }
        })
        .collect();

    PipelineDescription {
        original_pipeline_transform,
        execution_pipeline_stage,
        display_data: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::testkit::wordcount;
    use crate::optimizer::{OptimizeOptions, optimize};

    #[test]
    fn wordcount_stages_show_the_lifted_combine_before_the_shuffle() {
        let pipeline = wordcount();
        let graph = optimize(&pipeline, &OptimizeOptions::default());
        let json = serde_json::to_value(pipeline_description(&pipeline, &graph)).unwrap();
        let stages = json["executionPipelineStage"].as_array().unwrap();
        assert_eq!(stages.len(), 2);
        let first: Vec<_> = stages[0]["componentTransform"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["userName"].as_str().unwrap())
            .collect();
        assert_eq!(first.last(), Some(&"CountWords/Count/Combine/Partial"));
        assert_eq!(
            stages[0]["componentTransform"][3]["originalTransform"],
            "CountWords/Count/Combine"
        );
        assert_eq!(
            stages[0]["outputSource"][0]["userName"],
            "CountWords/Count/GroupByKey"
        );
        assert_eq!(stages[0]["kind"], "READ_KIND");
        assert_eq!(stages[1]["kind"], "GROUP_BY_KEY_KIND");
        assert_eq!(stages[1]["prerequisiteStage"], serde_json::json!(["S01"]));
        assert_eq!(
            stages[1]["inputSource"][0]["userName"],
            "CountWords/Count/GroupByKey"
        );
        assert_eq!(stages[1]["outputSource"][0]["userName"], "Write");

        let transforms = json["originalPipelineTransform"].as_array().unwrap();
        let gbk = transforms
            .iter()
            .find(|t| t["name"] == "CountWords/Count/GroupByKey")
            .unwrap();
        assert_eq!(gbk["kind"], "GROUP_BY_KEY_KIND");
        assert_eq!(
            gbk["inputCollectionName"],
            serde_json::json!(["CountWords/Init.out"])
        );
    }

    #[test]
    fn ids_are_stable_across_constructions() {
        let a = wordcount();
        let b = wordcount();
        let opts = OptimizeOptions::default();
        let ja = serde_json::to_string(&pipeline_description(&a, &optimize(&a, &opts))).unwrap();
        let jb = serde_json::to_string(&pipeline_description(&b, &optimize(&b, &opts))).unwrap();
        assert_eq!(ja, jb);
    }
}
