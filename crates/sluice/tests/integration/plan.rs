//! The plan: fused stages, the lifted combiner, `--plan_out` and `--dry_run`.

use serde_json::Value;

use crate::kit::{listing, pipeline_with};

use crate::wordcount_example as example;

fn components(stage: &Value) -> Vec<&str> {
    stage["componentTransform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["userName"].as_str().unwrap())
        .collect()
}

#[test]
fn wordcount_plan_shows_two_fused_stages_and_the_lifted_combiner() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let plan_path = dir.path().join("plan.json");
    let p = pipeline_with(2, &[&format!("--plan_out={}", plan_path.display())]);
    example::build(
        &p,
        input.to_str().unwrap(),
        dir.path().join("out/counts").to_str().unwrap(),
    );
    let result = p.run().unwrap();
    let job: Value = serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();

    assert_eq!(job["id"], result.job_id());
    assert_eq!(job["type"], "JOB_TYPE_BATCH");
    assert_eq!(job["currentState"], "JOB_STATE_DONE");
    let stages = job["pipelineDescription"]["executionPipelineStage"]
        .as_array()
        .unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(
        components(&stages[0]),
        [
            "ReadLines",
            "ExtractWords",
            "CountWords/Count/Combine/Partial"
        ]
    );
    assert_eq!(
        components(&stages[1]),
        ["CountWords/Count/Combine/Merge", "Format", "Write"]
    );
    assert_eq!(
        stages[0]["outputSource"][0]["userName"],
        "CountWords/Count/GroupByKey"
    );
    assert_eq!(
        stages[1]["inputSource"][0]["userName"],
        "CountWords/Count/GroupByKey"
    );
    assert_eq!(stages[1]["prerequisiteStage"], serde_json::json!(["S01"]));
    assert_eq!(
        stages[0]["componentTransform"][2]["originalTransform"],
        "CountWords/Count/Combine"
    );

    let transforms = job["pipelineDescription"]["originalPipelineTransform"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = transforms
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ReadLines",
            "ExtractWords",
            "CountWords",
            "CountWords/Count",
            "CountWords/Count/GroupByKey",
            "CountWords/Count/Combine",
            "Format",
            "Write"
        ]
    );
    let read = &transforms[0];
    assert_eq!(read["kind"], "READ_KIND");
    assert_eq!(read["displayData"][0]["key"], "filePattern");
    // Metrics are written with the final state.
    assert!(job["metrics"]["stages"][0]["wallTime"].as_f64().is_some());
}

#[test]
fn a_flatten_of_two_reads_is_unzipped_into_both_stages() {
    let p = pipeline_with(1, &[]);
    let a = p.create("A", vec![("x".to_string(), 1u32)]);
    let b = p.create("B", vec![("y".to_string(), 2u32)]);
    let _ = p
        .flatten("Both", &[a, b])
        .group_by_key("Group")
        .collect("Out");
    let graph = sluice::plan::optimize(&p_graph(&p), &sluice::plan::OptimizeOptions::default());
    let stages: Vec<String> = graph
        .to_text()
        .lines()
        .filter(|l| l.starts_with('S'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        stages,
        [
            "S01 F1: A | Both | Group/Write",
            "S02 F2: B | Both | Group/Write",
            "S03 F3 (after S01, S02): Group/Read | Out"
        ]
    );
    p.run().unwrap().wait_until_finish().unwrap();
}

fn p_graph(p: &sluice::Pipeline) -> sluice::plan::PipelineGraph {
    p.graph()
}

#[test]
fn dry_run_writes_the_plan_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let plan_path = dir.path().join("plan.json");
    let p = pipeline_with(
        2,
        &["--dry_run", &format!("--plan_out={}", plan_path.display())],
    );
    example::build(
        &p,
        input.to_str().unwrap(),
        dir.path().join("out/counts").to_str().unwrap(),
    );
    let result = p.run().unwrap();
    assert!(result.is_dry_run());
    assert_eq!(result.state(), sluice::JobState::Pending);
    result.wait_until_finish().unwrap();
    assert_eq!(listing(dir.path()), ["in.txt", "plan.json"]);
    let job: Value = serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    assert_eq!(job["currentState"], "JOB_STATE_PENDING");
}
