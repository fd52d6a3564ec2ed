//! Failed jobs: their state, their error, and no output left behind.

use sluice::prelude::*;
use sluice::{Error, JobState};

use crate::kit::{listing, pipeline, sorted};

#[derive(Clone)]
struct FailOn(u64);

impl DoFn for FailOn {
    type In = u64;
    type Out = u64;
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        if x == self.0 {
            return Err(format!("cannot handle {x}").into());
        }
        ctx.emit(x);
        Ok(())
    }
}

#[test]
fn a_failing_dofn_fails_the_job_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out/numbers");
    let p = pipeline(2);
    p.create("Numbers", (0..10_000u64).collect())
        .par_do("Check", FailOn(7_777))
        .map("Format", |x: u64| x.to_string())
        .write_text("Write", output.to_str().unwrap());
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(
        text.contains("transform 'Check' failed") && text.contains("cannot handle 7777"),
        "{text}"
    );
    let err = result.wait_until_finish().unwrap_err();
    assert!(matches!(err, Error::JobFailed { .. }));
    assert!(err.to_string().contains("JOB_STATE_FAILED"));
    // The output directory may exist (created when the job started), but holds nothing.
    assert_eq!(
        listing(dir.path())
            .into_iter()
            .filter(|f| f != "out")
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
}

#[test]
fn a_panicking_closure_fails_the_job_naming_its_transform() {
    let p = pipeline(2);
    let out = p
        .create("Numbers", (0..1_000u32).collect())
        .map("Fine", |x: u32| x + 1)
        .map(
            "Explode",
            |x: u32| if x == 500 { panic!("boom at {x}") } else { x },
        )
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(
        text.contains("'Explode'") && text.contains("panicked: boom at 500"),
        "{text}"
    );
    assert!(out.values().is_empty(), "a failed job commits nothing");
}

#[test]
fn a_failure_after_the_shuffle_still_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("counts");
    let p = pipeline(2);
    p.create(
        "Words",
        (0..5_000u32).map(|i| format!("w{}", i % 50)).collect(),
    )
    .count_per_element("Count")
    .map("Format", |(w, n): (String, u64)| {
        if w == "w42" {
            panic!("late failure")
        } else {
            format!("{w}: {n}")
        }
    })
    .write_text("Write", output.to_str().unwrap());
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[derive(Clone)]
struct BadSetup;

impl DoFn for BadSetup {
    type In = u8;
    type Out = u8;
    fn setup(&mut self) -> Result<(), BoxError> {
        Err("the model file is missing".into())
    }
    fn process(&mut self, x: u8, ctx: &mut Context<'_, u8>) -> Result<(), BoxError> {
        ctx.emit(x);
        Ok(())
    }
}

#[test]
fn a_setup_failure_names_the_dofn_transform() {
    let p = pipeline(1);
    let _ = p
        .create("Numbers", vec![1u8, 2])
        .par_do("LoadModel", BadSetup)
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(
        text.contains("'LoadModel'")
            && text.contains("setup failed")
            && text.contains("model file is missing"),
        "{text}"
    );
}

#[test]
fn input_that_is_not_utf8_fails_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("latin1.txt");
    std::fs::write(&input, b"fine\ncaf\xe9\n").unwrap();
    let p = pipeline(1);
    let lines = p
        .read_text("ReadLines", input.to_str().unwrap())
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(
        text.contains("latin1.txt is not UTF-8") && text.contains("offset 8"),
        "{text}"
    );
    assert!(lines.values().is_empty());
}

#[test]
fn a_successful_job_after_a_failed_one_writes_normally() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("n");
    let p = pipeline(2);
    p.create("Numbers", vec![1u64, 2, 3])
        .par_do("Check", FailOn(2))
        .map("F", |x: u64| x.to_string())
        .write_text("Write", output.to_str().unwrap());
    assert_eq!(p.run().unwrap().state(), JobState::Failed);
    let p = pipeline(2);
    p.create("Numbers", vec![1u64, 2, 3])
        .map("F", |x: u64| x.to_string())
        .write_text("Write", output.to_str().unwrap());
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(sorted(crate::kit::read_lines(&output)), ["1", "2", "3"]);
    assert!(
        listing(dir.path())
            .iter()
            .all(|f| !f.contains(".temp-sluice")),
        "{:?}",
        listing(dir.path())
    );
}

#[test]
fn a_worker_dying_in_the_engine_fails_the_job_instead_of_hanging_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out/sums");
    let out = output.to_str().unwrap().to_string();
    let (done, finished) = std::sync::mpsc::channel();
    // Run on a thread: a regression would hang, and the test must fail instead.
    std::thread::spawn(move || {
        let p = crate::kit::pipeline_with(2, &["--test_engine_panic_on_worker=1"]);
        p.create("Numbers", (0..200_000u64).collect())
            .map("Key", |x: u64| (x % 100, x))
            .sum_per_key("Sum")
            .map("Format", |(k, v): (u64, u64)| format!("{k}: {v}"))
            .write_text("Write", &out);
        let result = p.run().unwrap();
        let _ = done.send((result.state(), result.error().map(|e| e.to_string())));
    });
    let (state, error) = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the job ended rather than waiting for the dead worker");
    assert_eq!(state, JobState::Failed);
    let text = error.unwrap_or_default();
    assert!(
        text.contains("worker 1 panicked") && text.contains("injected engine failure"),
        "{text}"
    );
    assert_eq!(
        listing(dir.path())
            .into_iter()
            .filter(|f| f != "out")
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
}

/// Passes elements through; when torn down, deletes the temporary output of the sink
/// writing `victim` (as a storage failure would), so that sink's commit fails.
#[derive(Clone)]
struct LoseTemporaryOutput {
    dir: std::path::PathBuf,
    victim: String,
}

impl DoFn for LoseTemporaryOutput {
    type In = String;
    type Out = String;
    fn process(&mut self, x: String, ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
        ctx.emit(x);
        Ok(())
    }
    fn teardown(&mut self) {
        let prefix = format!(".temp-sluice-{}-", self.victim);
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[test]
fn a_sink_failing_to_commit_undoes_the_sinks_committed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    // An earlier run's output of the first sink.
    let p = pipeline(1);
    p.create("Old", vec!["old".to_string()])
        .write_text("WriteFirst", first.to_str().unwrap());
    p.run().unwrap().wait_until_finish().unwrap();
    let before = listing(dir.path());
    let old = std::fs::read_to_string(dir.path().join(&before[0])).unwrap();

    let p = pipeline(1);
    p.create("New", vec!["new".to_string()])
        .write_text("WriteFirst", first.to_str().unwrap());
    p.create("Other", vec!["other".to_string()])
        .par_do(
            "Lose",
            LoseTemporaryOutput {
                dir: dir.path().to_path_buf(),
                victim: "second".into(),
            },
        )
        .write_text("WriteSecond", second.to_str().unwrap());
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(text.contains("WriteSecond"), "{text}");
    // The cause is typed: callers can tell a missing file from a full disk.
    assert_eq!(
        result.error().unwrap().io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{text}"
    );
    // The first sink's commit was undone: its earlier output is back, and nothing of
    // this job remains.
    assert_eq!(listing(dir.path()), before);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&before[0])).unwrap(),
        old
    );
}

/// An error whose `Display` panics.
#[derive(Debug)]
struct Unprintable;

impl std::fmt::Display for Unprintable {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("this error cannot be printed")
    }
}

impl std::error::Error for Unprintable {}

#[derive(Clone)]
struct FailUnprintably;

impl DoFn for FailUnprintably {
    type In = u64;
    type Out = u64;
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        if x == 3 {
            return Err(Box::new(Unprintable));
        }
        ctx.emit(x);
        Ok(())
    }
}

/// Regression: formatting a failure panicked while the failure lock was held; the
/// poisoned lock then read as "no failure" and the job committed its output as DONE.
#[test]
fn regression_an_error_whose_message_panics_still_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("numbers");
    let p = crate::kit::pipeline_with(2, &["--max_bundle_attempts=1"]);
    p.create("Numbers", (0..10u64).collect())
        .par_do("Check", FailUnprintably)
        .map("Format", |x: u64| x.to_string())
        .write_text("Write", output.to_str().unwrap());
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let text = result.error().unwrap().to_string();
    assert!(
        text.contains("'Check'") && text.contains("Display panicked"),
        "{text}"
    );
    assert!(crate::kit::shards(&output).is_empty(), "nothing committed");
}
