//! The shared test kit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sluice::{Pipeline, PipelineOptions};

/// Worker counts every result must be identical across.
pub const WORKERS: [usize; 3] = [1, 2, 4];

/// A pipeline on the embedded runner with `workers` threads and extra flags.
///
/// `SLUICE_TEST_MAX_MEMORY=SIZE` in the environment runs every test pipeline under that
/// memory budget (`--max_memory`): with a tiny one, every grouping spills to disk, and
/// every result must stay the same (`spill::every_test_under_a_tiny_budget` does so).
pub fn pipeline_with(workers: usize, flags: &[&str]) -> Pipeline {
    let mut args = vec![format!("--direct_num_workers={workers}")];
    if let Ok(budget) = std::env::var("SLUICE_TEST_MAX_MEMORY") {
        args.push(format!("--max_memory={budget}"));
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    Pipeline::with_options(PipelineOptions::parse(args).expect("test flags parse"))
}

/// A pipeline on the embedded runner with `workers` threads.
pub fn pipeline(workers: usize) -> Pipeline {
    pipeline_with(workers, &[])
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 30 s) until something listens on loopback `port`; `what` names it if
/// nothing does.
pub fn wait_for_port(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `p`, a valid pipeline whose job must fail, and returns why it failed.
pub fn job_failure(p: &Pipeline) -> String {
    p.run()
        .expect("the pipeline is valid")
        .wait_until_finish()
        .expect_err("the job should fail")
        .to_string()
}

/// The shard files written for `prefix` (`prefix-SSSSS-of-NNNNN`), in shard order.
pub fn shards(prefix: &Path) -> Vec<PathBuf> {
    let dir = prefix.parent().expect("prefix has a directory");
    let name = prefix.file_name().unwrap().to_str().unwrap().to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with(&format!("{name}-")) && f.contains("-of-"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Every line of every shard of `prefix`.
pub fn read_lines(prefix: &Path) -> Vec<String> {
    shards(prefix)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every file and directory under `dir`, relative, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Beam's word rule, counted plainly: the reference for wordcount.
pub fn count_words(text: &str) -> HashMap<String, u64> {
    let word = regex::Regex::new(r"[\w']+").unwrap();
    let mut counts = HashMap::new();
    for line in text.lines() {
        for m in word.find_iter(line) {
            *counts.entry(m.as_str().to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Parses `word: count` lines.
pub fn parse_counts(lines: &[String]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for line in lines {
        let (word, n) = line
            .rsplit_once(": ")
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let previous = counts.insert(word.to_string(), n.parse().unwrap());
        assert!(previous.is_none(), "{word} appears twice");
    }
    counts
}

/// `v`, sorted.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}
