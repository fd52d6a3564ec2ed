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

/// The results of query `q` on 20,000 events, with `flags`, sorted.
fn results(dir: &std::path::Path, q: u32, label: &str, flags: &[&str]) -> Vec<String> {
    let output = dir.join(format!("q{q}-{label}.json"));
    let run = nexmark()
        .args([
            format!("--query={q}"),
            "--num_events=20000".into(),
            format!("--output={}", output.display()),
        ])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "q{q} {label}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn every_query_gives_the_same_results_on_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = [
        "--runner=ClusterRunner",
        "--num_workers=2",
        "--worker_threads=1",
    ];
    for q in 0..=12 {
        let embedded = results(dir.path(), q, "embedded", &["--direct_num_workers=2"]);
        let processes = results(dir.path(), q, "cluster", &cluster);
        assert_eq!(embedded, processes, "query {q}");
    }
}

/// Each worker process spills under its own budget: q4 (a CoGroupByKey, then combines)
/// and q9 (a join of merging windows) on two processes under 256 KB each give the
/// embedded in-memory results, report what they spilled, and leave no spill files.
#[test]
fn queries_spill_on_two_processes_with_the_embedded_results() {
    let dir = tempfile::tempdir().unwrap();
    let temp = dir.path().join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    for q in [4, 9] {
        let embedded = results(dir.path(), q, "embedded", &["--direct_num_workers=2"]);
        let plan = dir.path().join(format!("q{q}-plan.json"));
        let spilled = results(
            dir.path(),
            q,
            "spilled",
            &[
                "--runner=ClusterRunner",
                "--num_workers=2",
                "--worker_threads=1",
                "--max_memory=256KB",
                &format!("--temp_location={}", temp.display()),
                &format!("--plan_out={}", plan.display()),
            ],
        );
        assert!(!embedded.is_empty());
        assert!(
            embedded == spilled,
            "query {q}: results differ when spilled"
        );
        let job: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
        let memory = &job["metrics"]["memory"];
        assert_eq!(memory["maxMemory"], 256 << 10, "{memory}");
        assert!(memory["bytesSpilled"].as_u64().unwrap() > 0, "{memory}");
        let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
        assert!(left.is_empty(), "spill files left: {left:?}");
    }
}

/// SIGTERM to the launcher of a streaming job drains every worker process, and the
/// output is committed.
#[test]
fn a_streaming_job_on_two_processes_drains_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("q1.json");
    let mut launcher = nexmark()
        .args([
            "--query=1".to_string(),
            "--streaming".into(),
            "--event_rate=2000".into(),
            "--num_events=0".into(),
            "--runner=ClusterRunner".into(),
            "--num_workers=2".into(),
            "--worker_threads=1".into(),
            format!("--output={}", output.display()),
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Events flow for a few seconds once the worker processes are started (counted from
    // then, not from the launcher's start, which a loaded machine can delay); the log is
    // read to its end meanwhile so that the launcher never blocks on a full pipe.
    let (started, worker_processes) = std::sync::mpsc::channel();
    let stderr = launcher.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap_or_default();
            if line.contains("starting 2 worker processes") {
                let _ = started.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    worker_processes
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the launcher starts its worker processes");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let pid = rustix::process::Pid::from_raw(launcher.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = launcher.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(launcher.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{stdout}\n{log}");
    let written: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a 'wrote N results' line");
    assert!(written > 0, "{stdout}\n{log}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        written
    );
}

/// `collect()` gathers the results in the launcher, whichever worker processes computed
/// them.
#[test]
fn collected_results_reach_the_launcher_of_a_cluster_job() {
    let collect = |flags: &[&str]| {
        let run = nexmark()
            .args(["--query=3", "--num_events=20000", "--collect"])
            .args(flags)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        String::from_utf8(run.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("collected="))
            .expect("a collected= line")
            .to_string()
    };
    let embedded = collect(&["--direct_num_workers=2"]);
    let cluster = collect(&[
        "--runner=ClusterRunner",
        "--num_workers=2",
        "--worker_threads=1",
    ]);
    assert!(!embedded.starts_with("collected=0 "), "{embedded}");
    assert_eq!(embedded, cluster);
}
