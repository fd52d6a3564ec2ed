//! Event time and windows in batch: assignment, grouping and combining per window.

use sluice::prelude::*;
use sluice::windowing::{FixedWindows, Sessions, SlidingWindows};

use crate::kit::{WORKERS, pipeline, sorted};

fn ms(t: i64) -> Timestamp {
    Timestamp::from_millis(t)
}

/// Shows each grouped element with its window (start and end in ms) and timestamp.
#[derive(Clone)]
struct ShowWindow;

impl DoFn for ShowWindow {
    type In = (String, Vec<i64>);
    type Out = (String, i64, i64, Vec<i64>, i64);
    fn process(
        &mut self,
        (k, v): (String, Vec<i64>),
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let Window::Interval { start, end } = ctx.window() else {
            return Err("expected an interval window".into());
        };
        ctx.emit((
            k,
            start.as_millis(),
            end.as_millis(),
            sorted(v),
            ctx.timestamp().0,
        ));
        Ok(())
    }
}

fn events(p: &Pipeline, times: &[(&str, i64)]) -> PCollection<(String, i64)> {
    p.create(
        "Events",
        times.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
    )
    .with_timestamps("Stamp", |(_, t): &(String, i64)| ms(*t))
}

#[test]
fn fixed_windows_group_per_key_and_window() {
    let times = [
        ("a", 1_000),
        ("a", 9_999),
        ("a", 10_000),
        ("b", 5),
        ("a", 25_000),
    ];
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = events(&p, &times)
            .window_into("Ten", FixedWindows::of_millis(10_000))
            .group_by_key("Group")
            .par_do("Show", ShowWindow)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("a".to_string(), 0, 10_000, vec![1_000, 9_999], 9_999_999),
                ("a".to_string(), 10_000, 20_000, vec![10_000], 19_999_999),
                ("a".to_string(), 20_000, 30_000, vec![25_000], 29_999_999),
                ("b".to_string(), 0, 10_000, vec![5], 9_999_999),
            ],
            "{workers} workers: grouped per window, stamped with the window's last microsecond"
        );
    }
}

#[test]
fn sliding_windows_put_each_element_in_several_windows() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let sums = events(&p, &[("a", 1_000), ("a", 4_000), ("a", 7_000)])
            .window_into("Sliding", SlidingWindows::of_millis(6_000, 3_000))
            .sum_per_key("Sum")
            .par_do("Windows", ShowSum)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        // Windows [-3,3) [0,6) [3,9) [6,12) seconds.
        assert_eq!(
            sorted(sums.values()),
            [(-3_000, 1_000), (0, 5_000), (3_000, 11_000), (6_000, 7_000)],
            "{workers} workers"
        );
    }
}

/// (window start in ms, sum).
#[derive(Clone)]
struct ShowSum;

impl DoFn for ShowSum {
    type In = (String, i64);
    type Out = (i64, i64);
    fn process(
        &mut self,
        (_, sum): (String, i64),
        ctx: &mut Context<'_, (i64, i64)>,
    ) -> Result<(), BoxError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("expected an interval window".into());
        };
        ctx.emit((start.as_millis(), sum));
        Ok(())
    }
}

#[test]
fn sessions_merge_per_key() {
    // Gap 5s: a's events at 0, 3, 7 form one session [0, 12), 20 another [20, 25);
    // b's windows [6, 11) and [11.5, 16.5) do not touch: two sessions.
    let times = [
        ("a", 0),
        ("a", 7_000),
        ("a", 3_000),
        ("a", 20_000),
        ("b", 6_000),
        ("b", 11_500),
    ];
    for workers in WORKERS {
        let p = pipeline(workers);
        let windowed = events(&p, &times).window_into("Sessions", Sessions::with_gap_millis(5_000));
        let grouped = windowed
            .group_by_key("Group")
            .par_do("Show", ShowWindow)
            .collect("Out");
        let counts = windowed
            .count_per_key("Count")
            .par_do("CountWindows", ShowCount)
            .collect("Counts");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(grouped.values()),
            [
                (
                    "a".to_string(),
                    0,
                    12_000,
                    vec![0, 3_000, 7_000],
                    11_999_999
                ),
                ("a".to_string(), 20_000, 25_000, vec![20_000], 24_999_999),
                ("b".to_string(), 6_000, 11_000, vec![6_000], 10_999_999),
                ("b".to_string(), 11_500, 16_500, vec![11_500], 16_499_999),
            ],
            "{workers} workers"
        );
        assert_eq!(
            sorted(counts.values()),
            [
                ("a".to_string(), 0, 3),
                ("a".to_string(), 20_000, 1),
                ("b".to_string(), 6_000, 1),
                ("b".to_string(), 11_500, 1)
            ]
        );
    }
}

/// (key, window start, count).
#[derive(Clone)]
struct ShowCount;

impl DoFn for ShowCount {
    type In = (String, u64);
    type Out = (String, i64, u64);
    fn process(
        &mut self,
        (k, n): (String, u64),
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("expected an interval window".into());
        };
        ctx.emit((k, start.as_millis(), n));
        Ok(())
    }
}

#[test]
fn combines_lift_for_fixed_windows_but_not_for_sessions() {
    let p = pipeline(1);
    let e = p.create("Events", vec![("a".to_string(), 1i64)]);
    let _ = e
        .window_into("Fixed", FixedWindows::of_millis(1_000))
        .count_per_key("FixedCount")
        .collect("F");
    let _ = e
        .window_into("Sessions", Sessions::with_gap_millis(1_000))
        .count_per_key("SessionCount")
        .collect("S");
    let plan =
        sluice::plan::optimize(&p.graph(), &sluice::plan::OptimizeOptions::default()).to_text();
    assert!(
        plan.contains("PartialCombine FixedCount/Combine/Partial"),
        "{plan}"
    );
    assert!(
        plan.contains("GroupByKeyWrite SessionCount/GroupByKey/Write"),
        "{plan}"
    );
    assert!(
        plan.contains("CombineValues SessionCount/Combine"),
        "{plan}"
    );
}

#[test]
fn global_combines_per_window_and_many_windows_across_workers() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = p
            .create("Numbers", (0..10_000i64).collect())
            .with_timestamps("Stamp", |x: &i64| ms(*x))
            .window_into("Seconds", FixedWindows::of_millis(1_000))
            .sum_globally("Sum")
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let expected: Vec<i64> = (0..10)
            .map(|s| (s * 1_000..(s + 1) * 1_000).sum())
            .collect();
        assert_eq!(
            sorted(out.values()),
            expected,
            "{workers} workers: one sum per window, none for empty windows"
        );
    }
}

#[test]
fn a_stateful_dofn_over_merging_windows_is_refused() {
    let p = pipeline(1);
    let e = events(&p, &[("a", 1)]).window_into("Sessions", Sessions::with_gap_millis(10));
    let _ = e.par_do_stateful("Stateful", NoState).collect("Out");
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("Stateful") && text.contains("merging windows"),
        "{text}"
    );
}

#[derive(Clone)]
struct NoState;

impl sluice::transforms::stateful::StatefulDoFn for NoState {
    type Key = String;
    type Value = i64;
    type Out = i64;
    fn process(
        &mut self,
        _: &String,
        v: i64,
        _: &mut sluice::transforms::stateful::State<'_>,
        ctx: &mut Context<'_, i64>,
    ) -> Result<(), BoxError> {
        ctx.emit(v);
        Ok(())
    }
}
