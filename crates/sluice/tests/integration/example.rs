//! The wordcount example binary, as a user runs it.

use std::path::PathBuf;
use std::process::Command;

use crate::kit::{count_words, parse_counts, read_lines};

/// The example binary `cargo test` builds next to this test binary.
fn wordcount() -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples");
    let path = dir.join("wordcount");
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test`, which builds examples",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.env("RUST_LOG", "warn");
    cmd
}

#[test]
fn wordcount_succeeds_prints_a_summary_and_writes_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "It's the end of the world\nthe end\n").unwrap();
    let output = dir.path().join("out/counts");
    let run = wordcount()
        .args([
            format!("--input={}", input.display()),
            format!("--output={}", output.display()),
            "--direct_num_workers=2".into(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("JOB_STATE_DONE"), "{stdout}");
    assert!(stdout.contains("2 lines, 8 words, 5 distinct"), "{stdout}");
    assert!(stdout.contains("output: Write: "), "{stdout}");
    assert!(
        stdout.lines().count() <= 4,
        "stdout carries only a short summary: {stdout}"
    );
    assert_eq!(
        parse_counts(&read_lines(&output)),
        count_words("It's the end of the world\nthe end\n")
    );
}

#[test]
fn wordcount_fails_with_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let run = wordcount()
        .args([
            format!("--input={}/missing-*.txt", dir.path().display()),
            format!("--output={}/out", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("ReadLines: the input pattern") && stderr.contains("matches no file"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn wordcount_dry_run_prints_the_job_json_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    let run = wordcount()
        .args([
            format!("--input={}", input.display()),
            format!("--output={}/out/c", dir.path().display()),
            "--dry_run".into(),
        ])
        .output()
        .unwrap();
    assert!(run.status.success());
    let job: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("stdout is the job JSON");
    assert_eq!(
        job["pipelineDescription"]["executionPipelineStage"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!dir.path().join("out").exists());
}

/// The faults example binary.
fn faults() -> Command {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("faults");
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test`",
        path.display()
    );
    Command::new(path)
}

#[test]
fn faults_example_reports_retries_and_fails_cleanly_on_poison() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("squares");
    let run = faults()
        .args([
            "--num=20000",
            "--fail_rate=0.01",
            &format!("--output={}", out.display()),
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.contains("JOB_STATE_DONE") && stdout.contains("retries"),
        "{stdout}"
    );
    assert_eq!(read_lines(&out).len(), 20_000);

    let run = faults()
        .args([
            "--num=20000",
            "--fail_mode=permanent",
            &format!("--output={}/p", dir.path().display()),
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("failed after 4 attempts") && stderr.contains("on element 100000000"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("p-00000-of-00001").exists()
            && !dir.path().join("p-00000-of-00002").exists()
    );
}

#[test]
fn a_stuck_bundle_is_reported_with_its_transform_and_element() {
    let dir = tempfile::tempdir().unwrap();
    let run = faults()
        .args([
            "--num=3000",
            "--stall_ms=800",
            "--stuck_bundle_secs=0.2",
            "--direct_num_workers=1",
            &format!("--output={}/s", dir.path().display()),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("worker 0 has been running one bundle of stage S01 (F1)")
            && stderr.contains("in transform 'Check', at position 1000"),
        "{stderr}"
    );
}

#[test]
fn join_example_writes_every_customer_and_counts_unknown_orders() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("join");
    let out = dir.path().join("spend");
    let run = Command::new(path)
        .args([
            "--orders=3000",
            "--customers=200",
            &format!("--output={}", out.display()),
        ])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(run.status.success(), "{stdout}");
    // The example's generator: order i belongs to customer i*2654435761 mod (n + n/100 + 1).
    let unknown = (0..3000u64)
        .filter(|i| i.wrapping_mul(2_654_435_761) % 203 >= 200)
        .count();
    assert!(
        stdout.contains(&format!(
            "200 customers written; {unknown} orders of unknown customers"
        )),
        "{stdout}"
    );
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 200);
    let orders: u64 = lines
        .iter()
        .map(|l| l.split('\t').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(orders as usize, 3000 - unknown);
}

/// Regression: a job that failed while running printed its partial counts as if they
/// were its result.
#[test]
fn regression_a_failed_run_prints_its_failure_not_partial_counts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, b"fine words\nnot \xff utf-8\n").unwrap();
    let run = wordcount()
        .args([
            format!("--input={}", input.display()),
            format!("--output={}/out/counts", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.contains("JOB_STATE_FAILED") && stdout.contains("not UTF-8"),
        "{stdout}"
    );
    assert!(!stdout.contains("lines,"), "no partial counts: {stdout}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input is left"
    );
}

/// Starts wordcount on a 30 MB corpus with one worker (several seconds in a debug build)
/// and waits until its job has begun (its temporary output directory exists).
fn start_long_wordcount(dir: &std::path::Path) -> (std::process::Child, PathBuf) {
    let input = dir.join("in.txt");
    sluice::io::corpus::write_file(&input, 30_000_000, 7).unwrap();
    let out_dir = dir.join("out");
    let child = wordcount()
        .args([
            format!("--input={}", input.display()),
            format!("--output={}/counts", out_dir.display()),
            "--direct_num_workers=1".into(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let temp = loop {
        let found = std::fs::read_dir(&out_dir).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().contains(".temp-sluice-counts-"))
        });
        if let Some(temp) = found {
            break temp;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the job never started its output"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    (child, temp)
}

/// Sends `signal` to the child, by its pid.
fn send_signal(child: &std::process::Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    rustix::process::kill_process(pid, signal).unwrap();
}

/// Regression: SIGTERM (or Ctrl-C) on a batch job killed it mid-write and left its
/// temporary folder, with partial worker files, forever.
#[test]
fn regression_sigterm_cancels_a_batch_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _temp) = start_long_wordcount(dir.path());
    send_signal(&child, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(143), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cancelled (SIGTERM): no output was committed"),
        "{stderr}"
    );
    assert!(stdout.contains("JOB_STATE_CANCELLED"), "{stdout}");
    assert_eq!(
        crate::kit::listing(dir.path()),
        ["in.txt"],
        "no output, no temporary folder, not even the output directory"
    );
}

/// Regression: a job killed with SIGKILL (or by the OOM killer) left its temporary
/// folder forever; the next run at the same prefix now removes it, and says so.
#[test]
fn regression_a_killed_jobs_leftovers_are_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, temp) = start_long_wordcount(dir.path());
    send_signal(&child, rustix::process::Signal::KILL);
    child.wait().unwrap();
    assert!(temp.exists(), "a killed job cannot clean up after itself");
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "a b a\n").unwrap();
    let run = wordcount()
        .env("RUST_LOG", "info")
        .args([
            format!("--input={}", small.display()),
            format!("--output={}/out/counts", dir.path().display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed the temporary output") && stderr.contains("no longer running"),
        "{stderr}"
    );
    assert!(!temp.exists());
    let left: Vec<String> = crate::kit::listing(&dir.path().join("out"));
    assert!(
        left.iter().all(|f| f.starts_with("counts-")),
        "only the new output: {left:?}"
    );
    assert_eq!(
        parse_counts(&read_lines(&dir.path().join("out/counts"))),
        count_words("a b a\n")
    );
}

/// Regression: `--help` ran the default job (generating a corpus and counting it).
#[test]
fn regression_help_lists_the_flags_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = wordcount()
        .current_dir(dir.path())
        .args([
            "--help".to_string(),
            format!("--output={}/out/counts", dir.path().display()),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(run.status.success(), "{stdout}");
    for expected in [
        "Pipeline flags:",
        "--input",
        "a path or a glob",
        "--output",
        "Runner flags:",
        "--direct_num_workers",
        "--streaming",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    assert!(!stdout.contains("JOB_STATE"), "nothing ran: {stdout}");
    assert!(
        crate::kit::listing(dir.path()).is_empty(),
        "nothing written"
    );
}

/// Regression: a typo in a flag was only warned about, and the job ran with the
/// default it was meant to change.
#[test]
fn regression_a_mistyped_flag_fails_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let run = wordcount()
        .args([
            format!("--ouptut={}/out/counts", dir.path().display()),
            "--corpus_mb=1".into(),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("unknown flag --ouptut") && stderr.contains("did you mean --output?"),
        "{stderr}"
    );
}

/// Regression: 1% transient panics over 100,000 elements printed about 4,000 lines on
/// stderr (90,000 with RUST_BACKTRACE=1): every panic through the default hook, and a
/// log line per retry.
#[test]
fn regression_transient_panics_do_not_flood_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let run = faults()
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "info")
        .args([
            "--fail_rate=0.01".to_string(),
            "--fail_mode=panic".into(),
            "--num=100000".into(),
            format!("--output={}/squares", dir.path().display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(run.stderr).unwrap();
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(run.status.success(), "{stdout}\n{stderr}");
    // About 1,000 panics were retried: a few log lines say so.
    let failed: u64 = stdout
        .split("Check failed ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the summary counts Check's failed attempts");
    assert!(failed > 500, "{stdout}");
    assert!(
        stderr.lines().count() < 30,
        "{} lines:\n{stderr}",
        stderr.lines().count()
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(
        stderr.contains("more retried failure(s) like \"panicked: injected panic on #\""),
        "{stderr}"
    );
}

/// The example binary `name`, built next to this test binary.
pub(crate) fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    let mut cmd = Command::new(path);
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Every line of every shard under `prefix`, sorted.
fn sorted_lines(prefix: &std::path::Path) -> Vec<String> {
    let mut lines = read_lines(prefix);
    lines.sort();
    lines
}

#[test]
fn the_cluster_runner_gives_the_embedded_results_on_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    sluice::io::corpus::write_file(&input, 2_000_000, 11).unwrap();
    let cluster = [
        "--runner=ClusterRunner",
        "--num_workers=2",
        "--worker_threads=1",
    ];
    for (name, args) in [
        ("wordcount", vec![format!("--input={}", input.display())]),
        ("join", vec![]),
    ] {
        let mut outputs = Vec::new();
        for (label, runner) in [("embedded", &[][..]), ("cluster", &cluster[..])] {
            let prefix = dir.path().join(format!("{name}-{label}/out"));
            let run = example(name)
                .args(&args)
                .args(runner)
                .arg(format!("--output={}", prefix.display()))
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{name} {label}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let stdout = String::from_utf8(run.stdout).unwrap();
            assert!(stdout.contains("JOB_STATE_DONE"), "{stdout}");
            outputs.push(sorted_lines(&prefix));
        }
        assert!(!outputs[0].is_empty());
        assert_eq!(
            outputs[0], outputs[1],
            "{name}: cluster and embedded differ"
        );
    }
}

#[test]
fn a_worker_running_another_binary_fails_the_job_naming_both_plan_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    // The same program, one byte longer: another build.
    let other = dir.path().join("wordcount-other-build");
    let mut bytes = std::fs::read(example("wordcount").get_program()).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = example("wordcount")
        .args([
            "--runner=ClusterRunner".to_string(),
            "--num_workers=2".into(),
            "--worker_threads=1".into(),
            format!("--worker_binary={}", other.display()),
            format!("--input={}", input.display()),
            format!("--output={}/out/counts", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Both workers run the other build; whichever reports first fails the job.
    assert!(
        stderr.contains("failed: built a different plan or runs a different binary")
            && stderr.contains("its plan hash is")
            && stderr.contains("the launcher's"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "nothing written: {:?}",
        crate::kit::listing(dir.path())
    );
}

/// Starts a cluster wordcount of `input` on 2 processes with `flags`, kills worker 1 with
/// SIGKILL once the job has begun, and returns the launcher's exit status and stderr.
fn cluster_wordcount_losing_a_worker(
    input: &std::path::Path,
    out: &std::path::Path,
    flags: &[&str],
) -> (std::process::ExitStatus, String) {
    let mut launcher = example("wordcount")
        .env("RUST_LOG", "info")
        .args([
            "--runner=ClusterRunner".to_string(),
            "--num_workers=2".into(),
            "--worker_threads=1".into(),
            format!("--input={}", input.display()),
            format!("--output={}/counts", out.display()),
        ])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Worker 1 is one of the launcher's children; find it by its flags once the job has
    // begun (its output directory exists).
    let started = std::time::Instant::now();
    let victim = loop {
        let children = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            launcher.id(),
            launcher.id()
        ))
        .unwrap_or_default();
        let found = children.split_whitespace().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("--sluice_worker_index=1"))
                .unwrap_or(false)
        });
        if let Some(pid) = found
            && out.exists()
        {
            break pid.parse::<i32>().unwrap();
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the workers never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = rustix::process::Pid::from_raw(victim).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let status = launcher.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// A worker process killed mid-job: the launcher stops the other (which would wait for
/// its lost peer forever) and runs the job again; the output is what a run without the
/// fault writes, and the metrics count 2 attempts.
#[test]
fn a_lost_worker_process_makes_the_launcher_run_the_job_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    sluice::io::corpus::write_file(&input, 30_000_000, 5).unwrap();
    let out = dir.path().join("out");
    let plan = dir.path().join("plan.json");
    let plan_flag = format!("--plan_out={}", plan.display());
    let (status, stderr) = cluster_wordcount_losing_a_worker(&input, &out, &[&plan_flag]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("attempt 1 of 3 failed: worker process 1 was lost")
            && stderr.contains("SIGKILL"),
        "{stderr}"
    );
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(job["metrics"]["jobAttempts"], 2);
    let text = std::fs::read_to_string(&input).unwrap();
    assert_eq!(
        parse_counts(&read_lines(&out.join("counts"))),
        count_words(&text)
    );
}

/// With one attempt allowed, a lost worker fails the job without hanging, names the lost
/// worker and its signal, and writes nothing.
#[test]
fn a_lost_worker_process_on_the_last_attempt_fails_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    sluice::io::corpus::write_file(&input, 30_000_000, 5).unwrap();
    let out = dir.path().join("out");
    let (status, stderr) =
        cluster_wordcount_losing_a_worker(&input, &out, &["--max_job_attempts=1"]);
    assert!(!status.success());
    assert!(
        stderr.contains("worker process 1 failed") && stderr.contains("SIGKILL"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "nothing written: {:?}",
        crate::kit::listing(dir.path())
    );
}

/// A worker that stops making progress (a test hook hangs it on the first attempt) is
/// found by its missing heartbeat, stopped, and the job runs again.
#[test]
fn a_hung_worker_process_is_detected_and_the_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\nc\n").unwrap();
    let run = example("wordcount")
        .env("SLUICE_TEST_HANG_WORKER", "1")
        .args([
            "--runner=ClusterRunner".to_string(),
            "--num_workers=2".into(),
            "--worker_threads=1".into(),
            "--worker_timeout_secs=3".into(),
            format!("--input={}", input.display()),
            format!("--output={}/out/counts", dir.path().display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("worker process 1 made no progress for 3 s"),
        "{stderr}"
    );
    assert_eq!(
        parse_counts(&read_lines(&dir.path().join("out/counts"))),
        count_words("a b a\nc\n")
    );
}

/// A hosts file of `n` free loopback ports.
fn hosts_file(dir: &std::path::Path, n: usize) -> PathBuf {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let lines: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let path = dir.join("hosts");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Processes started one by one from a hosts file, as on several machines: process 0
/// gathers the others' reports from the shared temporary location and commits.
#[test]
fn processes_started_by_hand_from_a_hosts_file_run_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    sluice::io::corpus::write_file(&input, 1_000_000, 9).unwrap();
    let hosts = hosts_file(dir.path(), 2);
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let out = dir.path().join("out/counts");
    let args = |index: usize, program: &std::ffi::OsStr| {
        let mut cmd = Command::new(program);
        cmd.env("RUST_LOG", "warn").args([
            "--runner=ClusterRunner".to_string(),
            format!("--worker_hosts={}", hosts.display()),
            format!("--sluice_worker_index={index}"),
            "--worker_threads=1".into(),
            format!("--temp_location={}", shared.display()),
            format!("--input={}", input.display()),
            format!("--output={}", out.display()),
        ]);
        cmd
    };
    let program = example("wordcount").get_program().to_owned();
    let mut second = args(1, &program).spawn().unwrap();
    let first = args(0, &program).output().unwrap();
    let second = second.wait().unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success() && second.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("JOB_STATE_DONE"), "{stdout}");
    let text = std::fs::read_to_string(&input).unwrap();
    assert_eq!(parse_counts(&read_lines(&out)), count_words(&text));
    assert!(
        crate::kit::listing(&shared).is_empty(),
        "reports are removed"
    );

    // A process of another build is refused by the others before any data moves.
    let other = dir.path().join("wordcount-other-build");
    let mut bytes = std::fs::read(&program).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let mut second = args(1, other.as_os_str()).spawn().unwrap();
    let first = args(0, &program).output().unwrap();
    let second = second.wait().unwrap();
    assert!(!first.status.success() && !second.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("process 1 built a different plan or runs a different binary")
            && stderr.contains("its plan hash is"),
        "{stderr}"
    );
    assert!(crate::kit::shards(&out).is_empty(), "nothing written");
}

/// A peer that never starts, and a port another program holds, each fail the job with
/// the process and address named, within the deadline.
#[test]
fn a_missing_peer_or_a_port_in_use_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let hosts = hosts_file(dir.path(), 2);
    let run = |hosts: &std::path::Path| {
        example("wordcount")
            .args([
                "--runner=ClusterRunner".to_string(),
                format!("--worker_hosts={}", hosts.display()),
                "--sluice_worker_index=0".into(),
                "--worker_threads=1".into(),
                "--worker_timeout_secs=2".into(),
                format!("--temp_location={}", dir.path().display()),
                format!("--input={}", input.display()),
                format!("--output={}/out/counts", dir.path().display()),
            ])
            .output()
            .unwrap()
    };
    // Process 1 is never started.
    let alone = run(&hosts);
    assert!(!alone.status.success());
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(
        stderr.contains("process 0 was never reached by process(es) [1] within 2 s"),
        "{stderr}"
    );
    // Process 0's port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = dir.path().join("busy-hosts");
    std::fs::write(
        &busy,
        format!("{}\n127.0.0.1:1\n", taken.local_addr().unwrap()),
    )
    .unwrap();
    let blocked = run(&busy);
    assert!(!blocked.status.success());
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        stderr.contains("process 0 cannot listen on") && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}

/// The sales example: CSV files (one gzip-compressed) in, Parquet shards out with the
/// columns and types it documents, totals equal to a plain computation.
#[test]
fn sales_sums_csv_rows_per_region_and_product_into_parquet() {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray};
    use std::collections::BTreeMap;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<(String, String), (f64, i64)> = BTreeMap::new();
    for (f, name) in ["a.csv", "b.csv.gz"].iter().enumerate() {
        let mut text = String::from("region,product,amount\n");
        for i in 0..5_000 {
            let (region, product) = (["n", "s", "e"][i % 3], format!("p{}", (i + f) % 7));
            let amount = (i % 100) as f64 * 0.5;
            text.push_str(&format!("{region},{product},{amount}\n"));
            let e = expected.entry((region.to_string(), product)).or_default();
            e.0 += amount;
            e.1 += 1;
        }
        let path = dir.path().join(name);
        if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            std::fs::write(&path, gz.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&path, text).unwrap();
        }
    }
    // On the embedded runner, and on two worker processes (the cluster runner).
    for (label, runner) in [
        ("embedded", vec!["--direct_num_workers=2"]),
        (
            "cluster",
            vec![
                "--runner=ClusterRunner",
                "--num_workers=2",
                "--worker_threads=1",
            ],
        ),
    ] {
        let prefix = dir.path().join(format!("{label}/totals"));
        let run = example("sales")
            .arg(format!("--input={}/*.csv*", dir.path().display()))
            .arg(format!("--output={}", prefix.display()))
            .args(&runner)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stdout = String::from_utf8(run.stdout).unwrap();
        assert!(stdout.contains("read 10000 sales"), "{label}: {stdout}");

        let mut got: BTreeMap<(String, String), (f64, i64)> = BTreeMap::new();
        let files = crate::kit::shards(&prefix);
        assert!(!files.is_empty());
        for file in files {
            assert!(file.to_str().unwrap().ends_with(".parquet"));
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&file).unwrap(),
            )
            .unwrap();
            let schema = reader.schema().clone();
            let types: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect();
            assert_eq!(
                types,
                [
                    "region:Utf8",
                    "product:Utf8",
                    "total:Float64",
                    "count:Int64"
                ]
            );
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                let col = |i: usize| batch.column(i).clone();
                let (region, product) = (col(0), col(1));
                let region = region.as_any().downcast_ref::<StringArray>().unwrap();
                let product = product.as_any().downcast_ref::<StringArray>().unwrap();
                let total = col(2);
                let total = total.as_any().downcast_ref::<Float64Array>().unwrap();
                let count = col(3);
                let count = count.as_any().downcast_ref::<Int64Array>().unwrap();
                for i in 0..batch.num_rows() {
                    got.insert(
                        (region.value(i).to_string(), product.value(i).to_string()),
                        (total.value(i), count.value(i)),
                    );
                }
            }
        }
        assert_eq!(got.len(), expected.len(), "{label}");
        for (key, (total, count)) in &expected {
            let (t, c) = got[key];
            assert_eq!(c, *count, "{label} {key:?}");
            assert!((t - total).abs() < 1e-6, "{label} {key:?}: {t} != {total}");
        }
    }
}
