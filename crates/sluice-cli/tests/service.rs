//! The job service end to end, as people use it: `sluice serve` running, pipeline
//! binaries submitting with `--service_url`, `sluice jobs` listing, describing,
//! cancelling and draining — every part a real process on 127.0.0.1, stopped by pid.
//!
//! The pipeline binaries are the `wordcount`, `faults` and `nexmark` examples, which
//! `cargo test --workspace` builds before it runs the tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `sluice serve` on a free port, stopped (SIGTERM, then waited for) when dropped.
struct Serve {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

impl Serve {
    fn start(data_dir: &Path, port: u16) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--port", &port.to_string(), "--data_dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("sluice job service at ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sluice serve did not start");
        Serve {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `sluice jobs ARGS` against this service.
    fn jobs(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["jobs", "--service_url", &self.url, "--data_dir"])
            .arg(&self.data_dir)
            .args(args)
            .env_remove("SLUICE_TOKEN")
            .output()
            .unwrap()
    }

    fn jobs_ok(&self, args: &[&str]) -> String {
        let out = self.jobs(args);
        assert!(
            out.status.success(),
            "sluice jobs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn job(&self, id: &str) -> Value {
        serde_json::from_str(&self.jobs_ok(&["describe", id, "--full", "--format", "json"]))
            .unwrap()
    }

    fn wait_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.job(id);
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: {what} never happened: {job}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
        // A failed test may leave jobs running: stop their processes, by the pids the
        // service recorded.
        if std::thread::panicking() {
            for entry in std::fs::read_dir(self.data_dir.join("logs"))
                .into_iter()
                .flatten()
            {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "pid")
                    && let Some(pid) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|p| p.trim().parse().ok())
                        .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// A submitting process, killed if the test ends before it does.
struct Submitter(Child);

impl Drop for Submitter {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An example binary of the workspace.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test --workspace`, which builds the examples",
        path.display()
    );
    let mut command = Command::new(path);
    command.env("RUST_LOG", "warn").env_remove("SLUICE_TOKEN");
    command
}

/// A pipeline binary submitting to `serve`; it finds the token in the data directory
/// its environment names as the default.
fn submitting(serve: &Serve, name: &str) -> Command {
    let mut command = example(name);
    command
        .arg(format!("--service_url={}", serve.url))
        .env("XDG_DATA_HOME", serve.data_dir.parent().unwrap());
    command
}

fn submitted_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Submitted job: "))
        .unwrap_or_else(|| panic!("no `Submitted job:` line in {stderr}"))
        .trim()
        .to_string()
}

/// A submitting process still running: its id, from its first line.
fn spawn_submitting(mut command: Command) -> (Submitter, String) {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    (Submitter(child), submitted_id(&first))
}

fn wait_exit(child: &mut Submitter) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            panic!("the submitting process did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sorted_shards(prefix: &Path) -> Vec<String> {
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_str().unwrap();
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{stem}-"))
        })
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_submitted_batch_job_runs_in_the_service_and_the_cli_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("sluice"), 0);
    let input = tmp.path().join("in.txt");
    std::fs::write(
        &input,
        "the cat sat on the mat\nthe dog sat\nand the cat ran\n",
    )
    .unwrap();

    let run = submitting(&serve, "wordcount")
        .arg(format!("--input={}", input.display()))
        .arg(format!("--output={}/counts", tmp.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let id = submitted_id(&stderr);
    assert!(
        stderr.contains(&format!("Follow it at {}/jobs/{id}", serve.url)),
        "{stderr}"
    );
    // The service's run wrote what the embedded runner writes.
    let here = example("wordcount")
        .arg(format!("--input={}", input.display()))
        .arg(format!("--output={}/here", tmp.path().display()))
        .output()
        .unwrap();
    assert!(here.status.success());
    let counts = sorted_shards(&tmp.path().join("counts"));
    assert_eq!(counts.len(), 8, "{counts:?}");
    assert_eq!(counts, sorted_shards(&tmp.path().join("here")));

    // The job as scripts see it.
    let list: Value = serde_json::from_str(&serve.jobs_ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["currentState"], "JOB_STATE_DONE");
    assert_eq!(list[0]["type"], "JOB_TYPE_BATCH");
    let job = serve.job(&id);
    assert!(job["pipelineDescription"]["executionPipelineStage"].is_array());
    let read = job["metrics"]["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ReadLines")
        .unwrap();
    assert_eq!(read["elementsOut"], 3);
    let yaml = serve.jobs_ok(&["describe", &id, "--format", "yaml"]);
    assert!(
        yaml.contains("\"currentState\": \"JOB_STATE_DONE\""),
        "{yaml}"
    );
    // ... and as people see it.
    let table = serve.jobs_ok(&["list", "--status", "terminated"]);
    assert!(
        table.starts_with("JOB_ID") && table.contains(&id) && table.contains("DONE"),
        "{table}"
    );
    assert!(
        serve
            .jobs_ok(&["list", "--status", "active"])
            .contains("no active jobs")
    );
    let text = serve.jobs_ok(&["describe", &id]);
    assert!(
        text.contains("S01") && text.contains("ExtractWords"),
        "{text}"
    );
    let metrics = serve.jobs_ok(&["metrics", &id]);
    assert!(
        metrics.contains("STAGE") && metrics.contains("CountWords"),
        "{metrics}"
    );
    assert!(metrics.contains("memory: peak"), "{metrics}");
    let messages = serve.jobs_ok(&["messages", &id]);
    assert!(
        messages.contains("job ended JOB_STATE_DONE") && messages.contains("wrote Write"),
        "{messages}"
    );

    // Exit codes scripts rely on.
    assert_eq!(
        serve
            .jobs(&["describe", "2026-01-01_00_00_00-9"])
            .status
            .code(),
        Some(4)
    );
    assert_eq!(serve.jobs(&["cancel", &id]).status.code(), Some(5));
    assert_eq!(serve.jobs(&["drain", &id]).status.code(), Some(5));
    assert_eq!(
        serve.jobs(&["describe", "not a job id"]).status.code(),
        Some(1)
    );
    let wrong = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "jobs",
            "--service_url",
            &serve.url,
            "--token",
            "wrong",
            "cancel",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(6));
    let free_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let nobody = format!("http://127.0.0.1:{free_port}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["jobs", "--service_url", &nobody, "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));

    // A pipeline given a service that does not run fails at once, saying how to start one.
    let started = Instant::now();
    let run = example("wordcount")
        .arg(format!("--input={}", input.display()))
        .arg(format!("--output={}/never", tmp.path().display()))
        .arg(format!("--service_url={nobody}"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("sluice serve") && stderr.contains(&nobody),
        "{stderr}"
    );
    assert!(sorted_shards(&tmp.path().join("never")).is_empty());
    serve.stop();
}

#[test]
fn a_failing_job_fails_the_process_that_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("sluice"), 0);
    let run = submitting(&serve, "faults")
        .args(["--num=20000", "--fail_mode=permanent"])
        .arg(format!("--output={}/squares", tmp.path().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    let id = submitted_id(&stderr);
    assert!(stderr.contains("on element 100000000"), "{stderr}");
    let job = serve.job(&id);
    assert_eq!(job["currentState"], "JOB_STATE_FAILED");
    assert!(
        job["failureMessage"]
            .as_str()
            .unwrap()
            .contains("on element 100000000"),
        "{job}"
    );
    let errors = serve.jobs_ok(&["messages", &id, "--importance", "error"]);
    assert!(errors.contains("on element 100000000"), "{errors}");
    assert!(
        sorted_shards(&tmp.path().join("squares")).is_empty(),
        "a failed job commits nothing"
    );
    serve.stop();
}

fn nexmark_streaming(serve: &Serve, output: &Path) -> (Submitter, String) {
    let mut command = submitting(serve, "nexmark");
    command
        .args([
            "--query=5",
            "--streaming",
            "--event_rate=2000",
            "--num_events=0",
        ])
        .arg(format!("--output={}", output.display()));
    spawn_submitting(command)
}

fn events_read(job: &Value) -> u64 {
    job["metrics"]["transforms"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == "Events"))
        .and_then(|t| t["elementsOut"].as_u64())
        .unwrap_or(0)
}

#[test]
fn streaming_jobs_report_live_and_drain_or_cancel_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("sluice"), 0);

    // Drained: live metrics while it runs, its output committed when it ends.
    let drained_out = tmp.path().join("q5-drained.json");
    let (submitter, id) = nexmark_streaming(&serve, &drained_out);
    let running = serve.wait_until(&id, "live metrics", |j| {
        j["currentState"] == "JOB_STATE_RUNNING" && events_read(j) > 0
    });
    assert_eq!(running["type"], "JOB_TYPE_STREAMING");
    let first = events_read(&running);
    serve.wait_until(&id, "more events", |j| events_read(j) > first);
    // Stages after a shuffle report their watermark and data freshness.
    serve.wait_until(&id, "a watermark", |j| {
        j["metrics"]["stages"].as_array().is_some_and(|stages| {
            stages
                .iter()
                .any(|s| s["watermark"].is_string() && s["dataFreshnessSecs"].is_number())
        })
    });
    // The job lives on without the process that submitted it.
    drop(submitter);
    std::thread::sleep(Duration::from_secs(1));
    let still = serve.job(&id);
    assert_eq!(still["currentState"], "JOB_STATE_RUNNING", "{still}");
    let said = serve.jobs_ok(&["drain", &id]);
    assert!(said.contains("JOB_STATE_DRAINING"), "{said}");
    serve.wait_until(&id, "drained", |j| j["currentState"] == "JOB_STATE_DRAINED");
    let results = std::fs::read_to_string(&drained_out).unwrap();
    assert!(
        results.lines().count() > 0,
        "a drained job commits its output"
    );

    // Cancelled: nothing committed; the waiting process fails.
    let cancelled_out = tmp.path().join("q5-cancelled.json");
    let (mut submitter, id) = nexmark_streaming(&serve, &cancelled_out);
    serve.wait_until(&id, "running", |j| events_read(j) > 0);
    assert!(
        serve
            .jobs_ok(&["cancel", &id])
            .contains("JOB_STATE_CANCELLING")
    );
    assert!(!wait_exit(&mut submitter).success());
    assert_eq!(serve.job(&id)["currentState"], "JOB_STATE_CANCELLED");
    assert!(!cancelled_out.exists(), "a cancelled job commits nothing");
    serve.stop();
}

#[test]
fn a_restarted_service_reattaches_to_running_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("sluice");
    let serve = Serve::start(&data_dir, 0);
    let port = serve.port();
    let out = tmp.path().join("q5.json");
    let (mut submitter, id) = nexmark_streaming(&serve, &out);
    serve.wait_until(&id, "running", |j| events_read(j) > 0);
    serve.stop();

    // The same port: the job reports to the address it was given.
    let serve = Serve::start(&data_dir, port);
    let before = serve.job(&id);
    assert_eq!(before["currentState"], "JOB_STATE_RUNNING", "{before}");
    let reported = before["lastReportTime"].clone();
    serve.wait_until(&id, "a report after the restart", |j| {
        j["lastReportTime"] != reported && events_read(j) > events_read(&before)
    });
    serve.jobs_ok(&["drain", &id]);
    assert!(wait_exit(&mut submitter).success());
    assert_eq!(serve.job(&id)["currentState"], "JOB_STATE_DRAINED");
    assert!(std::fs::read_to_string(&out).unwrap().lines().count() > 0);
    serve.stop();
}

#[test]
fn a_cancelled_cluster_runner_job_commits_nothing_on_any_process() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = Serve::start(&tmp.path().join("sluice"), 0);
    let out = tmp.path().join("q5.json");
    let mut command = submitting(&serve, "nexmark");
    command
        .args([
            "--runner=ClusterRunner",
            "--num_workers=2",
            "--query=5",
            "--streaming",
            "--event_rate=2000",
            "--num_events=0",
        ])
        .arg(format!("--output={}", out.display()));
    let (mut submitter, id) = spawn_submitting(command);
    serve.wait_until(&id, "running", |j| j["currentState"] == "JOB_STATE_RUNNING");
    // Its workers read for a while (a streaming worker told to drain would commit).
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    serve.jobs_ok(&["cancel", &id]);
    assert!(!wait_exit(&mut submitter).success());
    // The job acted on the cancel itself, well before the service would kill it.
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(serve.job(&id)["currentState"], "JOB_STATE_CANCELLED");
    let messages = serve.jobs_ok(&["messages", &id]);
    assert!(!messages.contains("was killed"), "{messages}");
    assert!(!out.exists(), "a cancelled job commits nothing");
    serve.stop();
}
