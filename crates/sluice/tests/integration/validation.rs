//! Errors found before any data moves; nothing is read or written when they are.

use sluice::Error;

use crate::kit::{listing, pipeline, pipeline_with};

#[test]
fn an_input_pattern_matching_no_file_fails_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(2);
    let pattern = format!("{}/nothing-*.txt", dir.path().display());
    let _ = p.read_text("ReadLines", &pattern).collect("Out");
    let err = p.run().unwrap_err();
    assert!(matches!(err, Error::Validation(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("ReadLines: the input pattern")
            && text.contains(&pattern)
            && text.contains("matches no file"),
        "{text}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn an_output_location_that_cannot_be_created_fails_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taken"), "a file, not a directory").unwrap();
    let p = pipeline(2);
    let lines = p.create("Lines", vec!["a".to_string()]);
    lines.write_text(
        "Write",
        &format!("{}/taken/out/counts", dir.path().display()),
    );
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("Write: cannot write output") && text.contains("is a file, not a directory"),
        "{text}"
    );
    assert_eq!(listing(dir.path()), ["taken"]);
}

/// Regression: `read_text` returned its error at once, so a pipeline with a bad input
/// and a bad output reported only the input.
#[test]
fn regression_a_bad_input_and_a_bad_output_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taken"), "a file, not a directory").unwrap();
    let p = pipeline(2);
    p.read_text(
        "ReadLines",
        &format!("{}/missing-*.txt", dir.path().display()),
    )
    .write_text("Write", &format!("{}/taken/counts", dir.path().display()));
    let err = p.run().unwrap_err();
    let Error::Validation(errors) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.0.len(), 2, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ReadLines: the input pattern") && text.contains("Write: cannot write"),
        "{text}"
    );
    assert_eq!(listing(dir.path()), ["taken"]);
}

#[test]
fn duplicate_transform_names_fail_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    let output = dir.path().join("out/counts");
    let p = pipeline(2);
    let lines = p.read_text("Read", input.to_str().unwrap());
    let upper = lines.map("Transform", |s: String| s.to_uppercase());
    let doubled = upper.map("Transform", |s: String| s.repeat(2));
    doubled.write_text("Write", output.to_str().unwrap());
    let err = p.run().unwrap_err();
    assert!(matches!(err, Error::Validation(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Transform: 2 transforms share this name") && text.contains("unique name"),
        "{text}"
    );
    assert_eq!(listing(dir.path()), ["in.txt"], "nothing may be written");
}

#[test]
fn grouping_by_a_non_deterministic_key_is_a_graph_error() {
    let p = pipeline(2);
    let pairs = p.create("Pairs", vec![(1.5f64, 1u8)]);
    let _ = pairs.group_by_key("GroupByFloat");
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("GroupByFloat") && text.contains("non-deterministic coder"),
        "{text}"
    );
    assert!(text.contains("not floats"), "the fix is named: {text}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = pipeline(2);
    let a = p.create("Same", vec![1u8]);
    let _ = p.create("Same", vec![2u8]);
    let _ = a.map("Key", |x: u8| (x as f32, x)).group_by_key("Group");
    let err = p.run().unwrap_err();
    let Error::Validation(errors) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.0.len(), 2, "{err}");
}

#[test]
fn an_unknown_runner_is_refused_with_the_flag_named() {
    let p = pipeline_with(1, &["--runner=FlinkRunner"]);
    let _ = p.create("Numbers", vec![1u8]).collect("Out");
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("--runner") && text.contains("FlinkRunner") && text.contains("DirectRunner"),
        "{text}"
    );
}

#[test]
fn missing_and_malformed_pipeline_flags_are_named() {
    let p = pipeline_with(1, &["--limit=ten"]);
    assert!(
        p.arg("input")
            .unwrap_err()
            .to_string()
            .contains("missing required flag --input")
    );
    assert!(
        p.arg_parse::<u32>("limit")
            .unwrap_err()
            .to_string()
            .contains("--limit")
    );
    assert_eq!(p.arg_or("mode", "fast"), "fast");
}
