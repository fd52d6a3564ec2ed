//! The semantics of each transform, on several worker counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice::prelude::*;
use sluice::{Coder, CoderError, PTransform, TagSpec};

use crate::kit::{WORKERS, pipeline, sorted};

fn keyed_values(n: u64, keys: u64) -> Vec<(String, u64)> {
    (0..n).map(|i| (format!("key{}", i % keys), i)).collect()
}

#[test]
fn group_by_key_is_identical_on_every_worker_count() {
    // More keys than one bundle emits (16,384 groups), so each worker emits several.
    let input = keyed_values(120_000, 40_000);
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, v) in &input {
        expected.entry(k.clone()).or_default().push(*v);
    }
    let expected: Vec<(String, Vec<u64>)> = expected.into_iter().collect();
    for workers in WORKERS {
        let p = pipeline(workers);
        let grouped = p
            .create("Pairs", input.clone())
            .group_by_key("Group")
            .map("Sort", |(k, vs): (String, Vec<u64>)| (k, sorted(vs)))
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(sorted(grouped.values()), expected, "{workers} workers");
    }
}

/// Regression: a stage with no shuffle output held no timely capability, so timely retired
/// it after its first activation and the rest of its splits (or groups) were never
/// processed: wordcount on one worker emitted only the first 16,384 words.
#[test]
fn regression_stage_without_shuffle_output_processes_every_bundle() {
    for workers in WORKERS {
        let p = pipeline(workers);
        // 40 splits of Create, read in one stage with no shuffle.
        let out = p
            .create("Numbers", (0..100_000u64).collect())
            .map("Double", |x: u64| x * 2)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            (0..100_000u64).map(|x| x * 2).collect::<Vec<_>>(),
            "{workers} workers"
        );
    }
}

#[test]
fn built_in_combiners_per_key_match_plain_computation() {
    let input: Vec<(String, i64)> = (0..5_000i64)
        .map(|i| (format!("k{}", i % 37), i * 7 % 1001 - 500))
        .collect();
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (k, v) in &input {
        by_key.entry(k.clone()).or_default().push(*v);
    }
    for workers in WORKERS {
        let p = pipeline(workers);
        let pairs = p.create("Pairs", input.clone());
        let sums = pairs.sum_per_key("Sum").collect("Sums");
        let mins = pairs.min_per_key("Min").collect("Mins");
        let maxs = pairs.max_per_key("Max").collect("Maxs");
        let counts = pairs.count_per_key("Count").collect("Counts");
        let means = pairs
            .map("ToF64", |(k, v): (String, i64)| (k, v as f64))
            .mean_per_key("Mean")
            .collect("Means");
        p.run().unwrap().wait_until_finish().unwrap();
        let want = |f: &dyn Fn(&Vec<i64>) -> i64| {
            by_key
                .iter()
                .map(|(k, v)| (k.clone(), f(v)))
                .collect::<Vec<_>>()
        };
        assert_eq!(sorted(sums.values()), want(&|v| v.iter().sum()));
        assert_eq!(sorted(mins.values()), want(&|v| *v.iter().min().unwrap()));
        assert_eq!(sorted(maxs.values()), want(&|v| *v.iter().max().unwrap()));
        assert_eq!(
            sorted(counts.values()),
            by_key
                .iter()
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect::<Vec<_>>()
        );
        let mut got_means = means.values();
        got_means.sort_by(|a, b| a.0.cmp(&b.0));
        for ((k, mean), (ek, vs)) in got_means.iter().zip(&by_key) {
            assert_eq!(k, ek);
            let expected = vs.iter().sum::<i64>() as f64 / vs.len() as f64;
            assert!((mean - expected).abs() < 1e-9, "{k}: {mean} vs {expected}");
        }
    }
}

#[test]
fn global_combines_have_a_result_even_for_empty_input() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let empty = p.create("Empty", Vec::<u64>::new());
        let count = empty.count_globally("Count").collect("C");
        let sum = empty.sum_globally("Sum").collect("S");
        let min = empty.min_globally("Min").collect("M");
        let numbers = p.create("Numbers", (1..=100u64).collect());
        let total = numbers.sum_globally("Total").collect("T");
        let max = numbers.max_globally("Max").collect("X");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(count.values(), [0], "{workers} workers");
        assert_eq!(sum.values(), [0]);
        assert_eq!(min.values(), [None]);
        assert_eq!(total.values(), [5050]);
        assert_eq!(max.values(), [Some(100)]);
    }
}

/// Keeps the two smallest values: correct only if partial results merge properly.
#[derive(Clone)]
struct TwoSmallest;

impl CombineFn for TwoSmallest {
    type Input = u32;
    type Accumulator = Vec<u32>;
    type Output = Vec<u32>;
    fn create_accumulator(&self) -> Vec<u32> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<u32>, input: u32) {
        acc.push(input);
        acc.sort();
        acc.truncate(2);
    }
    fn merge_accumulators(&self, acc: &mut Vec<u32>, other: Vec<u32>) {
        for v in other {
            self.add_input(acc, v);
        }
    }
    fn extract_output(&self, acc: Vec<u32>) -> Vec<u32> {
        acc
    }
}

#[test]
fn a_custom_combine_fn_merges_partial_results_across_bundles_and_workers() {
    let input: Vec<(u8, u32)> = (0..50_000u32).rev().map(|i| ((i % 5) as u8, i)).collect();
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = p
            .create("Pairs", input.clone())
            .combine_per_key("TwoSmallest", TwoSmallest)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let expected: Vec<(u8, Vec<u32>)> = (0..5u8)
            .map(|k| (k, vec![k as u32, k as u32 + 5]))
            .collect();
        assert_eq!(sorted(out.values()), expected, "{workers} workers");
    }
}

#[test]
fn flatten_of_two_sources_feeds_one_grouping() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let a = p.create("A", (0..1000u32).map(|i| (i % 10, 1u32)).collect());
        let b = p.create("B", (0..500u32).map(|i| (i % 10, 2u32)).collect());
        let both = p.flatten("Both", &[a, b]);
        let sums = both.sum_per_key("Sum").collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(sums.values()),
            (0..10u32).map(|k| (k, 100 + 100)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn flatten_inside_one_stage_keeps_every_element() {
    let p = pipeline(2);
    let numbers = p.create("Numbers", (0..1000i32).collect());
    let evens = numbers.filter("Evens", |x: &i32| x % 2 == 0);
    let negated_odds = numbers
        .filter("Odds", |x: &i32| x % 2 == 1)
        .map("Negate", |x: i32| -x);
    let out = evens.flatten_with("Both", &[negated_odds]).collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    let expected: Vec<i32> = (0..1000).map(|x| if x % 2 == 0 { x } else { -x }).collect();
    assert_eq!(sorted(out.values()), sorted(expected));
}

#[test]
fn reshuffle_keeps_every_element() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = p
            .create("Numbers", (0..10_000u64).collect())
            .reshuffle("Reshuffle")
            .map("Inc", |x: u64| x + 1)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            (1..=10_000u64).collect::<Vec<_>>(),
            "{workers} workers"
        );
    }
}

#[derive(Clone)]
struct SplitSigns {
    negative: TupleTag<i64>,
    zero: TupleTag<String>,
}

impl DoFn for SplitSigns {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut Context<'_, i64>) -> Result<(), BoxError> {
        match x.signum() {
            1 => ctx.emit(x),
            -1 => ctx.emit_to(&self.negative, x),
            _ => ctx.emit_to(&self.zero, "zero".to_string()),
        }
        Ok(())
    }
}

#[test]
fn tagged_outputs_receive_what_the_dofn_sends_them() {
    let p = pipeline(2);
    let negative = TupleTag::<i64>::new("negative");
    let zero = TupleTag::<String>::new("zero");
    let dofn = SplitSigns {
        negative: negative.clone(),
        zero: zero.clone(),
    };
    let specs: Vec<TagSpec> = vec![negative.spec(), zero.spec()];
    let (positive, tagged) = p
        .create("Numbers", (-50..=50i64).collect())
        .par_do_with_outputs("Split", dofn, &specs);
    let pos = positive.collect("Pos");
    let neg = tagged.get(&negative).collect("Neg");
    let zeros = tagged.get(&zero).collect("Zero");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(sorted(pos.values()), (1..=50).collect::<Vec<_>>());
    assert_eq!(sorted(neg.values()), (-50..=-1).collect::<Vec<_>>());
    assert_eq!(zeros.values(), ["zero"]);
}

/// Counts its lifecycle calls; clones share the counters.
#[derive(Clone, Default)]
struct Lifecycle {
    setup: Arc<AtomicUsize>,
    start: Arc<AtomicUsize>,
    process: Arc<AtomicUsize>,
    finish: Arc<AtomicUsize>,
    teardown: Arc<AtomicUsize>,
    /// Elements of the current bundle, emitted as one sum when it finishes.
    pending: u64,
}

impl DoFn for Lifecycle {
    type In = u64;
    type Out = u64;
    fn setup(&mut self) -> Result<(), BoxError> {
        self.setup.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn start_bundle(&mut self) -> Result<(), BoxError> {
        self.start.fetch_add(1, Ordering::SeqCst);
        self.pending = 0;
        Ok(())
    }
    fn process(&mut self, x: u64, _ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        self.process.fetch_add(1, Ordering::SeqCst);
        self.pending += x;
        Ok(())
    }
    fn finish_bundle(&mut self, ctx: &mut FinishContext<'_, u64>) -> Result<(), BoxError> {
        self.finish.fetch_add(1, Ordering::SeqCst);
        ctx.emit(self.pending);
        Ok(())
    }
    fn teardown(&mut self) {
        self.teardown.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dofn_lifecycle_is_setup_then_bundles_then_teardown() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let dofn = Lifecycle::default();
        let probe = dofn.clone();
        let sums = p
            .create("Numbers", (1..=10_000u64).collect())
            .par_do("Sum", dofn)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let setups = probe.setup.load(Ordering::SeqCst);
        let bundles = probe.start.load(Ordering::SeqCst);
        assert!(
            (1..=workers).contains(&setups),
            "{setups} instances for {workers} workers"
        );
        assert_eq!(
            probe.teardown.load(Ordering::SeqCst),
            setups,
            "every instance is torn down"
        );
        assert_eq!(probe.finish.load(Ordering::SeqCst), bundles);
        assert!(bundles >= workers, "{bundles} bundles");
        assert_eq!(probe.process.load(Ordering::SeqCst), 10_000);
        // finish_bundle's outputs arrive: one per bundle, together the total.
        assert_eq!(sums.values().len(), bundles);
        assert_eq!(sums.values().iter().sum::<u64>(), 50_005_000);
    }
}

/// Formats each element with its timestamp and window, as the DoFn sees them.
#[derive(Clone)]
struct ShowTime;

impl DoFn for ShowTime {
    type In = (String, Vec<u8>);
    type Out = String;
    fn process(
        &mut self,
        (k, _): (String, Vec<u8>),
        ctx: &mut Context<'_, String>,
    ) -> Result<(), BoxError> {
        ctx.emit(format!("{k} {:?} {:?}", ctx.timestamp(), ctx.window()));
        Ok(())
    }
}

#[test]
fn elements_carry_the_global_window_and_grouped_results_its_end() {
    let p = pipeline(2);
    let out = p
        .create("Pairs", vec![("a".to_string(), 1u8), ("a".to_string(), 2)])
        .group_by_key("Group")
        .par_do("Show", ShowTime)
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(out.values(), ["a Timestamp::END_OF_GLOBAL_WINDOW Global"]);
}

/// A composite: non-empty lines, trimmed.
struct CleanLines;

impl PTransform<PCollection<String>> for CleanLines {
    type Out = PCollection<String>;
    fn expand(&self, input: PCollection<String>) -> PCollection<String> {
        input
            .map("Trim", |s: String| s.trim().to_string())
            .filter("NonEmpty", |s: &String| !s.is_empty())
    }
}

#[test]
fn composites_name_their_parts_hierarchically() {
    let p = pipeline(1);
    let lines = p.create(
        "Lines",
        vec![" a ".to_string(), "   ".to_string(), "b".to_string()],
    );
    let out = lines.apply("Clean", CleanLines).collect("Out");
    let result = p.run().unwrap();
    assert_eq!(sorted(out.values()), ["a", "b"]);
    let m = result.metrics();
    assert_eq!(m.transform("Clean/Trim").unwrap().elements_out, Some(3));
    assert_eq!(m.transform("Clean/NonEmpty").unwrap().elements_out, Some(2));
    // The composite reports its own input and output.
    assert_eq!(m.transform("Clean").unwrap().elements_in, Some(3));
    assert_eq!(m.transform("Clean").unwrap().elements_out, Some(2));
}

#[test]
fn key_by_and_try_map() {
    let p = pipeline(2);
    let parsed = p
        .create(
            "Text",
            vec!["1".to_string(), "22".to_string(), "333".to_string()],
        )
        .try_map("Parse", |s: String| s.parse::<u32>())
        .key_by("ByDigits", |n: &u32| n.to_string().len())
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(sorted(parsed.values()), [(1, 1), (2, 22), (3, 333)]);
}

/// A key type that is not serde-capable, with a hand-written coder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Sensor {
    site: u16,
    name: String,
}

impl Coder for Sensor {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.site.encode_to(out)?;
        self.name.encode_to(out)
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(Sensor {
            site: u16::decode_from(input)?,
            name: String::decode_from(input)?,
        })
    }
}

/// A serde type, opted in.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    celsius: i32,
    note: Option<String>,
}
sluice::serde_coder!(Reading);

#[test]
fn custom_and_serde_coders_cross_the_shuffle() {
    let input: Vec<(Sensor, Reading)> = (0..300)
        .map(|i| {
            (
                Sensor {
                    site: i % 3,
                    name: format!("s{}", i % 7),
                },
                Reading {
                    celsius: i as i32,
                    note: None,
                },
            )
        })
        .collect();
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = p
            .create("Readings", input.clone())
            .group_by_key("BySensor")
            .map("Hottest", |(s, rs): (Sensor, Vec<Reading>)| {
                (s, rs.iter().map(|r| r.celsius).max().unwrap_or(0))
            })
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let mut expected: BTreeMap<Sensor, i32> = BTreeMap::new();
        for (s, r) in &input {
            let e = expected.entry(s.clone()).or_insert(i32::MIN);
            *e = (*e).max(r.celsius);
        }
        assert_eq!(
            sorted(out.values()),
            expected.into_iter().collect::<Vec<_>>(),
            "{workers} workers"
        );
    }
}

/// Regression: a stage writing several shuffles sent every output's batches under the
/// first output's capability, which timely rejects (the worker panicked).
#[test]
fn regression_one_stage_feeding_several_shuffles() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let pairs = p.create("Pairs", keyed_values(3_000, 10));
        let counts = pairs.count_per_key("Count").collect("Counts");
        let groups = pairs
            .group_by_key("Group")
            .map("Len", |(k, v): (String, Vec<u64>)| (k, v.len() as u64))
            .collect("Groups");
        let total = pairs.count_globally("Total").collect("TotalOut");
        p.run().unwrap().wait_until_finish().unwrap();
        let expected: Vec<(String, u64)> = (0..10).map(|k| (format!("key{k}"), 300)).collect();
        assert_eq!(sorted(counts.values()), expected, "{workers} workers");
        assert_eq!(sorted(groups.values()), expected);
        assert_eq!(total.values(), [3_000]);
    }
}

#[test]
fn high_fan_out_kept_in_few_bundles_is_reported_with_the_reshuffle_fix() {
    let build = |reshuffle: bool| {
        let p = pipeline(2);
        let exploded = p
            .create("Seeds", vec![0u64, 1])
            .flat_map("Explode", |seed: u64| {
                (0..150_000u64).map(move |i| seed * 1_000_000 + i)
            });
        let exploded = if reshuffle {
            exploded.reshuffle("Spread")
        } else {
            exploded
        };
        let total = exploded
            .map("Work", |x: u64| x % 7)
            .sum_globally("Total")
            .collect("Out");
        let result = p.run().unwrap();
        let warnings = result.metrics().warnings.clone();
        result.wait_until_finish().unwrap();
        assert_eq!(total.values().len(), 1);
        warnings
    };
    let warnings = build(false);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'Explode' emitted 300000 elements from 2")
                && w.contains("add a Reshuffle after 'Explode'")),
        "{warnings:?}"
    );
    let warnings = build(true);
    assert!(
        !warnings.iter().any(|w| w.contains("Reshuffle")),
        "{warnings:?}"
    );
}
