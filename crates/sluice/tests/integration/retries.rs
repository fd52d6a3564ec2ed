//! Bundle failure semantics: retries, teardown, coupled failure, dead letters.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sluice::prelude::*;

use crate::kit::{WORKERS, pipeline, pipeline_with, read_lines, sorted};

/// Counts lifecycle calls and processed elements; clones share the counts.
#[derive(Clone, Default)]
struct Counts {
    setup: Arc<AtomicUsize>,
    processed: Arc<AtomicUsize>,
    teardown: Arc<AtomicUsize>,
}

/// Doubles numbers, counting.
#[derive(Clone, Default)]
struct Double(Counts);

impl DoFn for Double {
    type In = u64;
    type Out = u64;
    fn setup(&mut self) -> Result<(), BoxError> {
        self.0.setup.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        self.0.processed.fetch_add(1, Ordering::SeqCst);
        ctx.emit(x * 2);
        Ok(())
    }
    fn teardown(&mut self) {
        self.0.teardown.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum How {
    Error,
    Panic,
}

/// Fails on chosen elements: `transient` ones on their first attempt only, `poison` ones
/// always.
#[derive(Clone)]
struct Flaky {
    how: How,
    transient: Arc<HashSet<u64>>,
    poison: Arc<HashSet<u64>>,
    failed_once: Arc<Mutex<HashSet<u64>>>,
    counts: Counts,
}

impl Flaky {
    fn new(
        how: How,
        transient: impl IntoIterator<Item = u64>,
        poison: impl IntoIterator<Item = u64>,
    ) -> Self {
        Flaky {
            how,
            transient: Arc::new(transient.into_iter().collect()),
            poison: Arc::new(poison.into_iter().collect()),
            failed_once: Arc::default(),
            counts: Counts::default(),
        }
    }
}

impl DoFn for Flaky {
    type In = u64;
    type Out = u64;
    fn setup(&mut self) -> Result<(), BoxError> {
        self.counts.setup.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        self.counts.processed.fetch_add(1, Ordering::SeqCst);
        let fail = self.poison.contains(&x)
            || (self.transient.contains(&x) && self.failed_once.lock().unwrap().insert(x));
        if fail {
            if self.how == How::Panic {
                panic!("flaky panic on {x}");
            }
            return Err(format!("flaky error on {x}").into());
        }
        ctx.emit(x + 1);
        Ok(())
    }
    fn teardown(&mut self) {
        self.counts.teardown.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every 100th number: 1% of the input.
fn one_percent(n: u64) -> Vec<u64> {
    (0..n).filter(|x| x % 100 == 37).map(|x| x * 2).collect()
}

#[test]
fn one_percent_transient_failures_give_the_fault_free_output() {
    let n = 20_000u64;
    let expected: Vec<u64> = (0..n).map(|x| x * 2 + 1).collect();
    for how in [How::Error, How::Panic] {
        for workers in WORKERS {
            let p = pipeline(workers);
            let first = Double::default();
            let flaky = Flaky::new(how, one_percent(n), []);
            let probe = (first.0.clone(), flaky.counts.clone());
            let out = p
                .create("Numbers", (0..n).collect())
                .par_do("Double", first)
                .par_do("Flaky", flaky)
                .collect("Out");
            let result = p.run().unwrap();
            assert_eq!(
                result.state(),
                JobState::Done,
                "{:?}",
                result.error().map(|e| e.to_string())
            );
            assert_eq!(sorted(out.values()), expected, "{workers} workers");
            let stage = &result.metrics().stages[0];
            assert!(stage.retries > 0, "retries were needed");
            assert_eq!(
                result.metrics().transform("Flaky").unwrap().failed_attempts,
                n / 100
            );
            // Every failure tore down every instance of the stage, and each was set up again.
            let (double, flaky) = probe;
            assert_eq!(
                double.teardown.load(Ordering::SeqCst),
                double.setup.load(Ordering::SeqCst)
            );
            assert_eq!(
                flaky.teardown.load(Ordering::SeqCst),
                flaky.setup.load(Ordering::SeqCst)
            );
            assert!(flaky.setup.load(Ordering::SeqCst) as u64 > n / 100);
        }
    }
}

#[test]
fn a_permanent_failure_fails_the_job_after_exactly_four_attempts() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let first = Double::default();
        let flaky = Flaky::new(How::Error, [], [2 * 7_777]);
        let probe = (first.0.clone(), flaky.counts.clone());
        let out = p
            .create("Numbers", (0..10_000u64).collect())
            .par_do("Double", first)
            .par_do("Check", flaky)
            .collect("Out");
        let result = p.run().unwrap();
        assert_eq!(result.state(), JobState::Failed);
        let text = result.error().unwrap().to_string();
        assert!(
            text.contains("stage S01 (F1) failed after 4 attempts: transform 'Check' failed on element 15554: flaky error on 15554"),
            "{text}"
        );
        assert_eq!(
            result.metrics().transform("Check").unwrap().failed_attempts,
            4
        );
        assert!(out.values().is_empty(), "a failed job commits nothing");
        // Coupled failure: the first DoFn of the fused pair was torn down with the second,
        // every time, and re-ran the bundle's elements.
        let (double, check) = probe;
        assert_eq!(
            double.teardown.load(Ordering::SeqCst),
            double.setup.load(Ordering::SeqCst)
        );
        assert_eq!(
            check.teardown.load(Ordering::SeqCst),
            check.setup.load(Ordering::SeqCst)
        );
        assert!(
            double.teardown.load(Ordering::SeqCst) >= 4,
            "{workers} workers"
        );
    }
}

#[test]
fn a_failure_in_the_second_dofn_of_a_fused_pair_re_runs_the_first() {
    let p = pipeline(1);
    let first = Double::default();
    let processed = first.0.processed.clone();
    // The failing element is the last of its bundle, so the whole bundle runs again.
    let out = p
        .create("Numbers", (0..1_000u64).collect())
        .par_do("Double", first)
        .par_do("Flaky", Flaky::new(How::Error, [2 * 999], []))
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(out.values().len(), 1_000);
    assert!(
        processed.load(Ordering::SeqCst) > 1_000,
        "Double ran again for the retried elements"
    );
}

#[test]
fn dead_letters_hold_exactly_the_poison_elements() {
    let poison: Vec<u64> = vec![4, 3_000, 3_002, 19_998];
    for workers in WORKERS {
        let p = pipeline(workers);
        let (good, bad) = p
            .create("Numbers", (0..10_000u64).map(|x| x * 2).collect())
            .par_do_with_dead_letter(
                "Check",
                Flaky::new(How::Panic, one_percent(10_000), poison.clone()),
            );
        let good = good.collect("Good");
        let bad = bad.collect("Bad");
        let result = p.run().unwrap();
        assert_eq!(
            result.state(),
            JobState::Done,
            "{:?}",
            result.error().map(|e| e.to_string())
        );
        let letters = bad.values();
        assert_eq!(
            sorted(letters.iter().map(|d| d.element).collect()),
            poison,
            "{workers} workers"
        );
        for d in &letters {
            assert_eq!(d.transform, "Check");
            assert_eq!(d.attempts, 4);
            assert!(d.error.contains("panicked: flaky panic on"), "{}", d.error);
        }
        let expected: Vec<u64> = (0..10_000u64)
            .map(|x| x * 2)
            .filter(|x| !poison.contains(x))
            .map(|x| x + 1)
            .collect();
        assert_eq!(sorted(good.values()), expected);
        assert_eq!(
            result.metrics().transform("Check").unwrap().dead_lettered,
            poison.len() as u64
        );
    }
}

#[test]
fn dead_letters_can_be_written_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(2);
    let (_, bad) = p
        .create("Numbers", (0..100u64).collect())
        .par_do_with_dead_letter("Check", Flaky::new(How::Error, [], [42]));
    bad.map("Format", |d: DeadLetter<u64>| {
        format!("{} {}", d.element, d.error)
    })
    .write_text("WriteBad", dir.path().join("bad").to_str().unwrap());
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        read_lines(&dir.path().join("bad")),
        ["42 flaky error on 42"]
    );
}

#[test]
fn the_attempt_limit_is_a_flag() {
    let p = pipeline_with(2, &["--max_bundle_attempts=2"]);
    let _ = p
        .create("Numbers", (0..100u64).collect())
        .par_do("Check", Flaky::new(How::Error, [], [50]))
        .collect("Out");
    let result = p.run().unwrap();
    let text = result.error().unwrap().to_string();
    assert!(text.contains("failed after 2 attempts"), "{text}");
    assert_eq!(
        result.metrics().transform("Check").unwrap().failed_attempts,
        2
    );
}

/// Fails its setup a given number of times (shared across instances).
#[derive(Clone)]
struct FlakySetup {
    failures_left: Arc<AtomicUsize>,
}

impl DoFn for FlakySetup {
    type In = u64;
    type Out = u64;
    fn setup(&mut self) -> Result<(), BoxError> {
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("the connection pool is not ready".into());
        }
        Ok(())
    }
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        ctx.emit(x);
        Ok(())
    }
}

#[test]
fn setup_failures_are_retried_and_bounded() {
    let p = pipeline(1);
    let out = p
        .create("Numbers", (0..100u64).collect())
        .par_do(
            "Connect",
            FlakySetup {
                failures_left: Arc::new(AtomicUsize::new(2)),
            },
        )
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(out.values().len(), 100);

    let p = pipeline(1);
    let _ = p
        .create("Numbers", (0..100u64).collect())
        .par_do(
            "Connect",
            FlakySetup {
                failures_left: Arc::new(AtomicUsize::new(usize::MAX)),
            },
        )
        .collect("Out");
    let text = p.run().unwrap().error().unwrap().to_string();
    assert!(text.contains("failed after 4 attempts: transform 'Connect' failed: setup failed: the connection pool is not ready"), "{text}");
}

#[test]
fn failures_after_a_shuffle_are_retried_too() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let keys: Vec<u64> = (0..3_000u64).collect();
        let out = p
            .create("Pairs", keys.iter().map(|k| (*k, 1u64)).collect())
            .sum_per_key("Sum")
            .map("Key", |(k, _): (u64, u64)| k)
            .par_do(
                "Flaky",
                Flaky::new(How::Error, (0..3_000u64).filter(|k| k % 250 == 0), []),
            )
            .collect("Out");
        let result = p.run().unwrap();
        assert_eq!(
            result.state(),
            JobState::Done,
            "{:?}",
            result.error().map(|e| e.to_string())
        );
        assert_eq!(
            sorted(out.values()),
            keys.iter().map(|k| k + 1).collect::<Vec<_>>()
        );
        assert!(result.metrics().stages[1].retries > 0);
    }
}

/// Reports user metrics, and fails transiently on every 100th element.
#[derive(Clone)]
struct Measured {
    failed_once: Arc<Mutex<HashSet<u64>>>,
}

impl DoFn for Measured {
    type In = u64;
    type Out = u64;
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        ctx.metrics().inc_counter("seen", 1);
        ctx.metrics().update_distribution("value", x as i64);
        if x.is_multiple_of(2) {
            ctx.metrics().inc_counter("even", 1);
        }
        if x % 100 == 42 && self.failed_once.lock().unwrap().insert(x) {
            return Err("transient".into());
        }
        ctx.metrics().set_gauge("last", 7);
        ctx.emit(x);
        Ok(())
    }
}

#[test]
fn user_metrics_count_committed_bundles_only_whatever_the_retries() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let _ = p
            .create("Numbers", (0..10_000u64).collect())
            .par_do(
                "Measure",
                Measured {
                    failed_once: Arc::default(),
                },
            )
            .collect("Out");
        let result = p.run().unwrap();
        assert_eq!(result.state(), JobState::Done);
        let m = result.metrics();
        assert!(m.stages[0].retries > 0, "bundles were retried");
        assert_eq!(
            m.counter("Measure", "seen"),
            Some(10_000),
            "{workers} workers"
        );
        assert_eq!(m.counter("Measure", "even"), Some(5_000));
        assert_eq!(
            m.user_metric("Measure", "value"),
            Some(sluice::MetricValue::Distribution {
                count: 10_000,
                sum: 49_995_000,
                min: 0,
                max: 9_999
            })
        );
        assert!(matches!(
            m.user_metric("Measure", "last"),
            Some(sluice::MetricValue::Gauge { value: 7, .. })
        ));
        assert_eq!(m.counter("Measure", "absent"), None);
    }
}

/// Sums per key, and panics where told: in `merge_accumulators`, `create_accumulator` or
/// `extract_output`, the first `fail_first` times (shared by every clone), or always.
#[derive(Clone)]
struct FlakySum {
    fail_in: &'static str,
    fail_first: usize,
    calls: Arc<AtomicUsize>,
}

impl FlakySum {
    fn new(fail_in: &'static str, fail_first: usize) -> Self {
        FlakySum {
            fail_in,
            fail_first,
            calls: Arc::default(),
        }
    }

    fn maybe_fail(&self, method: &str) {
        if method == self.fail_in && self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            panic!("{method} fails");
        }
    }
}

impl CombineFn for FlakySum {
    type Input = u64;
    type Accumulator = u64;
    type Output = u64;
    fn create_accumulator(&self) -> u64 {
        self.maybe_fail("create_accumulator");
        0
    }
    fn add_input(&self, acc: &mut u64, input: u64) {
        *acc += input;
    }
    fn merge_accumulators(&self, acc: &mut u64, other: u64) {
        self.maybe_fail("merge_accumulators");
        *acc += other;
    }
    fn extract_output(&self, acc: u64) -> u64 {
        self.maybe_fail("extract_output");
        acc
    }
}

/// Sums per key over many small bundles, so that every key's reader merges many
/// accumulators.
fn flaky_sums(
    workers: usize,
    flags: &[&str],
    combine: FlakySum,
) -> (JobState, Vec<(u64, u64)>, String) {
    let p = pipeline_with(workers, flags);
    let numbers: Vec<(u64, u64)> = (0..4_000u64).map(|i| (i % 7, i)).collect();
    let sums = p
        .create("Numbers", numbers)
        .reshuffle("Spread")
        .combine_per_key("Sum", combine)
        .collect("Out");
    let empty = p
        .create("Nothing", Vec::<u64>::new())
        .combine_globally("EmptySum", FlakySum::new("", 0))
        .collect("EmptyOut");
    let result = p.run().unwrap();
    let error = result.error().map(|e| e.to_string()).unwrap_or_default();
    let state = result.state();
    if state == JobState::Done {
        assert_eq!(empty.values(), [0]);
    }
    (state, sorted(sums.values()), error)
}

/// Regression: user code run by a shuffle reader — a `CombineFn`'s
/// `merge_accumulators` as accumulators arrive, `create_accumulator` and
/// `extract_output` as panes fire — failed the job on its first failure, ignoring the
/// bundle retry rules.
#[test]
fn regression_combine_fn_failures_in_the_merging_reader_are_retried() {
    let expected: Vec<(u64, u64)> = (0..7u64)
        .map(|k| (k, (0..4_000u64).filter(|i| i % 7 == k).sum()))
        .collect();
    for workers in [1, 2] {
        for method in ["merge_accumulators", "create_accumulator", "extract_output"] {
            let (state, sums, error) = flaky_sums(
                workers,
                &["--max_bundle_attempts=4"],
                FlakySum::new(method, 2),
            );
            assert_eq!(
                state,
                JobState::Done,
                "{method}, {workers} workers: {error}"
            );
            assert_eq!(sums, expected, "{method}, {workers} workers");
        }
    }
}

#[test]
fn a_combine_fn_that_always_fails_in_the_merging_reader_fails_after_every_attempt() {
    let (state, _, error) = flaky_sums(
        2,
        &["--max_bundle_attempts=3"],
        FlakySum::new("merge_accumulators", usize::MAX),
    );
    assert_eq!(state, JobState::Failed);
    assert!(
        error.contains("after 3 attempts")
            && error.contains("'Sum/Combine/Merge'")
            && error.contains("merge_accumulators fails"),
        "{error}"
    );
}
