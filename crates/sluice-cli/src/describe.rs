//! The monitoring view of a job description.

use std::fmt::Write;

use anyhow::{Context, bail};
use serde_json::Value;
use sluice_plan::json::PipelineDescription;

fn size(bytes: Option<&str>) -> String {
    match bytes.and_then(|b| b.parse::<f64>().ok()) {
        None => String::new(),
        Some(b) if b >= 1e6 => format!(" ({:.1} MB)", b / 1e6),
        Some(b) if b >= 1e3 => format!(" ({:.1} kB)", b / 1e3),
        Some(b) => format!(" ({b} B)"),
    }
}

fn count(v: &Value) -> String {
    v.as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "-".into())
}

/// Renders a job JSON (Dataflow's `Job` shape, as sluice writes it) as text.
pub fn render(job: &Value) -> anyhow::Result<String> {
    let Some(description) = job.get("pipelineDescription") else {
        bail!(
            "the file has no pipelineDescription; pass a file written by --plan_out or --dry_run"
        );
    };
    let description: PipelineDescription = serde_json::from_value(description.clone())
        .context("pipelineDescription is not in the expected shape")?;
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    writeln!(
        out,
        "job {}  {}  {}  {}",
        text(&job["id"]),
        text(&job["name"]),
        text(&job["type"]),
        text(&job["currentState"])
    )?;
    let stage_metrics = job["metrics"]["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, stage) in description.execution_pipeline_stage.iter().enumerate() {
        write!(out, "\nstage {} {}  {}", stage.id, stage.name, stage.kind)?;
        if !stage.prerequisite_stage.is_empty() {
            write!(out, "  after {}", stage.prerequisite_stage.join(", "))?;
        }
        if let Some(m) = stage_metrics.get(i) {
            write!(
                out,
                "  {:.0} ms in {} bundles",
                m["wallTime"].as_f64().unwrap_or(0.0),
                count(&m["bundles"])
            )?;
        }
        writeln!(out)?;
        for input in &stage.input_source {
            writeln!(
                out,
                "  reads   {}{}",
                input.user_name,
                size(input.size_bytes.as_deref())
            )?;
        }
        let steps: Vec<&str> = stage
            .component_transform
            .iter()
            .map(|c| c.user_name.as_str())
            .collect();
        writeln!(out, "  runs    {}", steps.join(" > "))?;
        for output in &stage.output_source {
            writeln!(
                out,
                "  writes  {}{}",
                output.user_name,
                size(output.size_bytes.as_deref())
            )?;
        }
    }
    if let Some(transforms) = job["metrics"]["transforms"].as_array() {
        let width = transforms
            .iter()
            .filter_map(|t| t["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(4);
        writeln!(
            out,
            "\n{:<width$}  {:>12}  {:>12}  {:>14}",
            "transform", "elements in", "elements out", "bytes out"
        )?;
        for t in transforms {
            writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {:>14}",
                text(&t["name"]),
                count(&t["elementsIn"]),
                count(&t["elementsOut"]),
                count(&t["bytesOut"])
            )?;
        }
    }
    if let Some(user) = job["metrics"]["user"].as_array().filter(|u| !u.is_empty()) {
        writeln!(out, "\nuser metrics")?;
        for m in user {
            let value = match m["kind"].as_str() {
                Some("distribution") => format!(
                    "count {} sum {} min {} max {}",
                    count(&m["count"]),
                    m["sum"],
                    m["min"],
                    m["max"]
                ),
                _ => m["value"].to_string(),
            };
            writeln!(
                out,
                "  {} {} ({}): {value}",
                text(&m["transform"]),
                text(&m["name"]),
                text(&m["kind"])
            )?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_without_a_description_is_refused_with_a_hint() {
        let err = render(&serde_json::json!({"id": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--plan_out"), "{err}");
    }

    #[test]
    fn stages_show_their_steps_sizes_and_order() {
        let job = serde_json::json!({
            "id": "2026-11-22_13_05_09-1", "name": "wc", "type": "JOB_TYPE_BATCH", "currentState": "JOB_STATE_DONE",
            "pipelineDescription": {
                "originalPipelineTransform": [], "displayData": [],
                "executionPipelineStage": [
                    {"name": "F1", "id": "S01", "kind": "READ_KIND", "prerequisiteStage": [],
                     "inputSource": [{"userName": "ReadLines", "name": "s1", "originalTransformOrCollection": "ReadLines", "sizeBytes": "50000000"}],
                     "outputSource": [{"userName": "Count/GroupByKey", "name": "e9", "originalTransformOrCollection": "Count", "sizeBytes": "2048"}],
                     "componentTransform": [{"userName": "ReadLines", "name": "s1", "originalTransform": "ReadLines"}, {"userName": "Count/Partial", "name": "s2", "originalTransform": "Count"}],
                     "componentSource": []},
                    {"name": "F2", "id": "S02", "kind": "GROUP_BY_KEY_KIND", "prerequisiteStage": ["S01"],
                     "inputSource": [], "outputSource": [], "componentTransform": [{"userName": "Count/Merge", "name": "s3", "originalTransform": "Count"}], "componentSource": []}
                ]
            },
            "metrics": {"stages": [{"wallTime": 812.4, "bundles": 8}, {"wallTime": 3.0, "bundles": 2}],
                        "user": [{"transform": "Parse", "name": "bad", "kind": "counter", "value": 3}],
                        "transforms": [{"name": "ReadLines", "elementsIn": null, "elementsOut": 936000, "bytesOut": 51000000}]}
        });
        let text = render(&job).unwrap();
        assert!(
            text.contains("stage S01 F1  READ_KIND  812 ms in 8 bundles"),
            "{text}"
        );
        assert!(text.contains("reads   ReadLines (50.0 MB)"), "{text}");
        assert!(text.contains("runs    ReadLines > Count/Partial"), "{text}");
        assert!(text.contains("writes  Count/GroupByKey (2.0 kB)"), "{text}");
        assert!(
            text.contains("stage S02 F2  GROUP_BY_KEY_KIND  after S01"),
            "{text}"
        );
        assert!(
            text.contains("ReadLines             -        936000"),
            "{text}"
        );
    }
}
