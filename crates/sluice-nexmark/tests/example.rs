//! The `nexmark` example binary, as a user runs it.

use std::path::PathBuf;
use std::process::Command;

/// The example binary `cargo test` builds next to this test binary.
fn nexmark() -> Command {
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("nexmark");
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test`, which builds examples",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Regression: `--output` naming an existing directory was found only after the whole
/// job ran, which then failed leaving hidden shard files behind.
#[test]
fn regression_an_unusable_output_fails_before_the_job_runs_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let run = nexmark()
        .args([
            "--query=1".to_string(),
            "--num_events=1000".into(),
            format!("--output={}", dir.path().join("taken").display()),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("Results: cannot write output") && stderr.contains("is a directory"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8(run.stdout).unwrap().contains("events="),
        "the job did not run"
    );
    assert_eq!(listing(dir.path()), ["taken"]);
    assert!(listing(&dir.path().join("taken")).is_empty());
}

#[test]
fn results_go_to_exactly_the_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("q2.json");
    let run = nexmark()
        .args([
            "--query=2".to_string(),
            "--num_events=20000".into(),
            "--direct_num_workers=2".into(),
            format!("--output={}", output.display()),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(run.status.success(), "{stdout}");
    let results = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a 'wrote N results' line");
    assert!(results > 0);
    assert_eq!(listing(dir.path()), ["q2.json"]);
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), results);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["auction"].as_u64().unwrap().is_multiple_of(123), "{line}");
    }
}
