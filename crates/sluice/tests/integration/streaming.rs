//! Streaming: watermarks, triggers, lateness and panes, on hand-made timelines
//! (`TestStream`), each on one and two workers.

use std::time::Duration;

use sluice::prelude::*;
use sluice::transforms::stateful::{
    BagState, FiredTimer, State, StatefulDoFn, TimeDomain, Timer, ValueState,
};
use sluice::transforms::test_stream::TestStream;
use sluice::transforms::windowing::WindowInto;
use sluice::trigger::Trigger;
use sluice::windowing::{FixedWindows, GlobalWindows, Sessions, SlidingWindows};
use sluice::{PaneInfo, PaneTiming};

use crate::kit::{pipeline, pipeline_with};

const WORKERS: [usize; 2] = [1, 2];

fn ms(t: i64) -> Timestamp {
    Timestamp::from_millis(t)
}

/// One output with where it came from: (key, value, window start in ms, timing, pane
/// index, last pane).
type Pane<V> = (String, V, i64, PaneTiming, u32, bool);

/// Records each element's pane and window.
#[derive(Clone)]
struct WithPane;

impl DoFn for WithPane {
    type In = (String, u64);
    type Out = Pane<u64>;
    fn process(
        &mut self,
        (k, v): (String, u64),
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let PaneInfo {
            timing,
            index,
            is_last,
            ..
        } = ctx.pane();
        let start = ctx.window().start();
        let start = if start == Timestamp::MIN {
            i64::MIN
        } else {
            start.as_millis()
        };
        ctx.emit((k, v, start, timing, index, is_last));
        Ok(())
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn kv(k: &str, v: u64, t: i64) -> ((String, u64), Timestamp) {
    ((k.to_string(), v), ms(t))
}

fn dropped(result: &PipelineResult) -> u64 {
    result
        .metrics()
        .transforms
        .iter()
        .map(|t| t.dropped_due_to_lateness)
        .sum()
}

#[test]
fn the_default_trigger_fires_on_time_then_for_late_data_then_drops_it() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("a", 1, 1), kv("a", 2, 5), kv("b", 7, 12)])
            .advance_watermark_to(ms(10))
            // Late for [0, 10) but within its 10 ms of allowed lateness.
            .add_elements(vec![kv("a", 4, 3)])
            .advance_watermark_to(ms(25))
            // [0, 10) expired at 20: dropped and counted.
            .add_elements(vec![kv("a", 8, 7)])
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window(
                "Windows",
                WindowInto::new(FixedWindows::of_millis(10))
                    .with_allowed_lateness(Duration::from_millis(10)),
            )
            .sum_per_key("Sum")
            .par_do("Panes", WithPane)
            .collect("Out");
        let result = p.run().unwrap();
        let lost = dropped(&result);
        result.wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("a".into(), 3, 0, PaneTiming::OnTime, 0, false),
                ("a".into(), 4, 0, PaneTiming::Late, 1, false),
                ("b".into(), 7, 10, PaneTiming::OnTime, 0, false),
            ],
            "{workers} workers"
        );
        assert_eq!(lost, 1, "{workers} workers");
    }
}

#[test]
fn early_and_late_firings_accumulate_or_discard() {
    for accumulating in [false, true] {
        for workers in WORKERS {
            let stream = TestStream::new()
                .add_elements(vec![kv("k", 1, 1), kv("k", 2, 2)])
                .advance_watermark_to(ms(5))
                .add_elements(vec![kv("k", 3, 3)])
                .advance_watermark_to(ms(10))
                .add_elements(vec![kv("k", 4, 4)])
                .advance_watermark_to_infinity();
            let mut spec = WindowInto::new(FixedWindows::of_millis(10))
                .triggering(
                    Trigger::after_watermark()
                        .with_early_firings(Trigger::after_count(2))
                        .with_late_firings(Trigger::after_count(1)),
                )
                .with_allowed_lateness(Duration::from_millis(100));
            if accumulating {
                spec = spec.accumulating_fired_panes();
            }
            let p = pipeline(workers);
            let out = p
                .test_stream("Events", stream)
                .window("Windows", spec)
                .sum_per_key("Sum")
                .par_do("Panes", WithPane)
                .collect("Out");
            p.run().unwrap().wait_until_finish().unwrap();
            let (on_time, late) = if accumulating { (6, 10) } else { (3, 4) };
            assert_eq!(
                sorted(out.values()),
                [
                    ("k".into(), 3, 0, PaneTiming::Early, 0, false),
                    ("k".into(), on_time, 0, PaneTiming::OnTime, 1, false),
                    ("k".into(), late, 0, PaneTiming::Late, 2, false),
                ],
                "accumulating {accumulating}, {workers} workers"
            );
        }
    }
}

#[test]
fn sessions_merge_out_of_order_data_as_it_arrives() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("u", 1, 0), kv("v", 1, 100)])
            .add_elements(vec![kv("u", 1, 25)])
            .advance_watermark_to(ms(5))
            // Arrives last, bridges the two sessions of u: [0, 15) + [12, 27) + [25, 40).
            .add_elements(vec![kv("u", 1, 12)])
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window_into("Sessions", Sessions::with_gap_millis(15))
            .sum_per_key("Clicks")
            .par_do("Panes", WithPane)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("u".into(), 3, 0, PaneTiming::OnTime, 0, true),
                ("v".into(), 1, 100, PaneTiming::OnTime, 0, true),
            ],
            "{workers} workers"
        );
    }
}

/// Regression: when session windows merged, the merged window carried on the pane
/// count of the windows it replaced; in Beam a new merged window counts its panes afresh.
/// Checked against Beam Python's DirectRunner on the same script (seconds for ms):
/// `u 1 [0,15) EARLY 0`, `u 2 [0,25) EARLY 0`, `u 2 [0,25) ON_TIME 1 (not last)`.
#[test]
fn regression_a_merged_session_counts_its_panes_afresh() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("u", 1, 0)])
            // Bridges into [0, 25): a new window. (Each step is taken in and acted on
            // before the next, as in Beam: the early pane of the first fires first.)
            .add_elements(vec![kv("u", 1, 10)])
            .advance_watermark_to_infinity();
        let spec = WindowInto::new(Sessions::with_gap_millis(15))
            .triggering(
                Trigger::after_watermark()
                    .with_early_firings(Trigger::after_count(1))
                    .with_late_firings(Trigger::after_count(1)),
            )
            .with_allowed_lateness(Duration::from_millis(100))
            .accumulating_fired_panes();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window("Sessions", spec)
            .sum_per_key("Clicks")
            .par_do("Panes", WithPane)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("u".into(), 1, 0, PaneTiming::Early, 0, false),
                ("u".into(), 2, 0, PaneTiming::Early, 0, false),
                ("u".into(), 2, 0, PaneTiming::OnTime, 1, false),
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn sliding_windows_fire_as_the_watermark_passes_each() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("x", 1, 2), kv("x", 10, 7)])
            .advance_watermark_to(ms(10))
            .add_elements(vec![kv("x", 100, 12)])
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window_into("Sliding", SlidingWindows::of_millis(10, 5))
            .sum_per_key("Sum")
            .par_do("Panes", WithPane)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        // Windows [-5, 5), [0, 10), [5, 15), [10, 20); with no allowed lateness each
        // on-time pane is also the last.
        assert_eq!(
            sorted(out.values()),
            [
                ("x".into(), 1, -5, PaneTiming::OnTime, 0, true),
                ("x".into(), 11, 0, PaneTiming::OnTime, 0, true),
                ("x".into(), 100, 10, PaneTiming::OnTime, 0, true),
                ("x".into(), 110, 5, PaneTiming::OnTime, 0, true),
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn a_repeated_count_trigger_fires_in_the_global_window() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 0), kv("k", 2, 0)])
            .advance_watermark_to(ms(1))
            .add_elements(vec![kv("k", 3, 0)])
            .advance_watermark_to(ms(2))
            .add_elements(vec![kv("k", 4, 0)])
            .advance_watermark_to(ms(3))
            .add_elements(vec![kv("k", 5, 0)])
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window(
                "Every2",
                WindowInto::new(GlobalWindows)
                    .triggering(Trigger::repeatedly(Trigger::after_count(2))),
            )
            .sum_per_key("Sum")
            .par_do("Panes", WithPane)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        // The fifth element fires no count; the window's expiry emits it as the last pane.
        assert_eq!(
            sorted(out.values()),
            [
                ("k".into(), 3, i64::MIN, PaneTiming::Early, 0, false),
                ("k".into(), 5, i64::MIN, PaneTiming::OnTime, 2, true),
                ("k".into(), 7, i64::MIN, PaneTiming::Early, 1, false),
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn processing_time_triggers_follow_the_clock() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 0), kv("k", 1, 0)])
            .advance_processing_time(Duration::from_secs(5))
            .add_elements(vec![kv("k", 1, 0)])
            // 11 s after the pane's first element: it fires.
            .advance_processing_time(Duration::from_secs(6))
            .add_elements(vec![kv("k", 1, 0)])
            .advance_processing_time(Duration::from_secs(10))
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window(
                "Every10s",
                WindowInto::new(GlobalWindows).triggering(Trigger::repeatedly(
                    Trigger::after_processing_time(Duration::from_secs(10)),
                )),
            )
            .sum_per_key("Count")
            .par_do("Panes", WithPane)
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("k".into(), 1, i64::MIN, PaneTiming::Early, 1, false),
                ("k".into(), 3, i64::MIN, PaneTiming::Early, 0, false),
            ],
            "{workers} workers"
        );
    }
}

/// Sums with `trigger` in `window_fn`, on a pipeline that accepts unsafe triggers.
fn run_trigger(
    window_fn: impl sluice::windowing::WindowFn + Clone + 'static,
    trigger: Trigger,
    stream: TestStream<(String, u64)>,
    workers: usize,
) -> (Vec<Pane<u64>>, u64) {
    let p = pipeline_with(workers, &["--allow_unsafe_triggers"]);
    let out = p
        .test_stream("Events", stream)
        .window("Windows", WindowInto::new(window_fn).triggering(trigger))
        .sum_per_key("Sum")
        .par_do("Panes", WithPane)
        .collect("Out");
    let result = p.run().unwrap();
    let lost = dropped(&result);
    result.wait_until_finish().unwrap();
    (sorted(out.values()), lost)
}

#[test]
fn or_finally_closes_the_window_when_its_until_trigger_fires() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 1), kv("k", 2, 2)])
            .advance_watermark_to(ms(5))
            .add_elements(vec![kv("k", 3, 3)])
            .advance_watermark_to(ms(10))
            .add_elements(vec![kv("k", 4, 4)])
            .advance_watermark_to_infinity();
        let trigger =
            Trigger::repeatedly(Trigger::after_count(2)).or_finally(Trigger::after_watermark());
        let (out, lost) = run_trigger(FixedWindows::of_millis(10), trigger, stream, workers);
        assert_eq!(
            out,
            [
                ("k".into(), 3, 0, PaneTiming::Early, 0, false),
                ("k".into(), 3, 0, PaneTiming::OnTime, 1, true),
            ],
            "{workers} workers"
        );
        assert_eq!(lost, 1, "the element after the window closed");
    }
}

#[test]
fn after_each_runs_its_triggers_in_order_then_closes() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 0), kv("k", 2, 0)])
            .advance_watermark_to(ms(1))
            .add_elements(vec![kv("k", 3, 0)])
            .advance_watermark_to(ms(2))
            .add_elements(vec![kv("k", 4, 0)])
            .advance_watermark_to_infinity();
        let trigger = Trigger::after_each(vec![Trigger::after_count(2), Trigger::after_count(1)]);
        let (out, lost) = run_trigger(GlobalWindows, trigger, stream, workers);
        assert_eq!(
            out,
            [
                ("k".into(), 3, i64::MIN, PaneTiming::Early, 0, false),
                ("k".into(), 3, i64::MIN, PaneTiming::Early, 1, true),
            ],
            "{workers} workers"
        );
        assert_eq!(lost, 1);
    }
}

#[test]
fn after_all_waits_for_every_trigger_and_after_any_for_the_first() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 0)])
            .advance_processing_time(Duration::from_secs(2))
            .add_elements(vec![kv("k", 2, 0)])
            .advance_watermark_to_infinity();
        let all = Trigger::after_all(vec![
            Trigger::after_count(2),
            Trigger::after_processing_time(Duration::from_secs(1)),
        ]);
        let (out, _) = run_trigger(GlobalWindows, all, stream, workers);
        assert_eq!(
            out,
            [("k".into(), 3, i64::MIN, PaneTiming::Early, 0, true)],
            "{workers} workers"
        );

        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 1), kv("k", 2, 2)])
            .advance_watermark_to(ms(10))
            .advance_watermark_to_infinity();
        let any = Trigger::after_any(vec![Trigger::after_count(3), Trigger::after_watermark()]);
        let (out, _) = run_trigger(FixedWindows::of_millis(10), any, stream, workers);
        assert_eq!(
            out,
            [("k".into(), 3, 0, PaneTiming::OnTime, 0, true)],
            "{workers} workers"
        );
    }
}

#[test]
fn results_of_one_grouping_are_on_time_for_the_next() {
    // A watermark hold at work: the first grouping's results carry the end of their
    // window, and the second grouping must not treat them as late.
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("a", 1, 1), kv("b", 1, 2), kv("a", 1, 13)])
            .advance_watermark_to(ms(20))
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window_into("Windows", FixedWindows::of_millis(10))
            .sum_per_key("PerKey")
            .map("AllKeys", |(_, n): (String, u64)| ("all".to_string(), n))
            .sum_per_key("Total")
            .par_do("Panes", WithPane)
            .collect("Out");
        let result = p.run().unwrap();
        let lost = dropped(&result);
        result.wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                ("all".into(), 1, 10, PaneTiming::OnTime, 0, true),
                ("all".into(), 2, 0, PaneTiming::OnTime, 0, true),
            ],
            "{workers} workers"
        );
        assert_eq!(lost, 0);
    }
}

/// Sums each key's values per 10 ms of event time, with an event-time timer.
#[derive(Clone)]
struct Flush {
    values: BagState<u64>,
    armed: ValueState<bool>,
    flush: Timer,
}

impl StatefulDoFn for Flush {
    type Key = String;
    type Value = u64;
    type Out = (String, u64, i64);
    fn process(
        &mut self,
        _key: &String,
        v: u64,
        state: &mut State<'_>,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        state.add(&self.values, &v)?;
        if state.read(&self.armed)?.is_none() {
            state.write(&self.armed, &true)?;
            state.set_timer(&self.flush, Timestamp(ctx.timestamp().0 + 10_000));
        }
        Ok(())
    }
    fn on_timer(
        &mut self,
        key: &String,
        timer: &FiredTimer,
        state: &mut State<'_>,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let sum = state.read_bag(&self.values)?.into_iter().sum();
        state.clear(&self.values);
        state.clear(&self.armed);
        ctx.emit((key.clone(), sum, timer.timestamp.as_millis()));
        Ok(())
    }
}

#[test]
fn stateful_timers_fire_as_the_watermark_passes_them_and_state_persists() {
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 0), kv("k", 2, 3)])
            .advance_watermark_to(ms(5))
            .add_elements(vec![kv("k", 4, 6)])
            .advance_watermark_to(ms(11))
            .add_elements(vec![kv("k", 8, 20)])
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .par_do_stateful(
                "Flush",
                Flush {
                    values: BagState::new("values"),
                    armed: ValueState::new("armed"),
                    flush: Timer::new("flush", TimeDomain::EventTime),
                },
            )
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [("k".into(), 7, 10), ("k".into(), 8, 30)],
            "{workers} workers"
        );
    }
}

#[test]
fn unbounded_input_in_the_global_window_needs_a_trigger() {
    let stream = TestStream::new().add_elements(vec![kv("k", 1, 0)]);
    let p = pipeline(1);
    let _ = p
        .test_stream("Events", stream)
        .sum_per_key("Sum")
        .collect("Out");
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("Sum/") && text.contains("never emit") && text.contains("window_into"),
        "{text}"
    );
}

#[test]
fn triggers_that_may_finish_are_refused_unless_allowed() {
    let build = |p: &Pipeline| {
        let stream = TestStream::new().add_elements(vec![kv("k", 1, 0)]);
        let _ = p
            .test_stream("Events", stream)
            .window(
                "Once",
                WindowInto::new(FixedWindows::of_millis(10)).triggering(Trigger::after_count(5)),
            )
            .sum_per_key("Sum")
            .collect("Out");
    };
    let p = pipeline(1);
    build(&p);
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("AfterCount(5)")
            && text.contains("Trigger::repeatedly")
            && text.contains("--allow_unsafe_triggers"),
        "{text}"
    );
    let p = pipeline_with(1, &["--allow_unsafe_triggers"]);
    build(&p);
    p.run().unwrap().wait_until_finish().unwrap();
}

#[test]
fn a_side_input_of_an_unbounded_collection_is_refused() {
    #[derive(Clone)]
    struct Tag(sluice::transforms::side_input::SideInput<Vec<(String, u64)>>);
    impl DoFn for Tag {
        type In = u64;
        type Out = u64;
        fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
            let n = ctx.side_input(&self.0)?.len() as u64;
            ctx.emit(x + n);
            Ok(())
        }
    }
    let p = pipeline(1);
    let stream = TestStream::new().add_elements(vec![kv("k", 1, 0)]);
    let view = p.test_stream("Events", stream).as_iterable("EventsView");
    let _ = p
        .create("Numbers", vec![1u64, 2])
        .par_do_with_side_inputs("Tag", Tag(view.clone()), &[view.spec()])
        .collect("Out");
    let text = p.run().unwrap_err().to_string();
    assert!(
        text.contains("Tag") && text.contains("unbounded") && text.contains("CoGroupByKey"),
        "{text}"
    );
}

#[test]
fn streaming_retries_a_failing_element_past_the_batch_limit_with_backoff() {
    /// Fails on value 3 until it has failed `times` times.
    #[derive(Clone)]
    struct FailsAtFirst {
        failures: std::sync::Arc<std::sync::atomic::AtomicU32>,
        times: u32,
    }
    impl DoFn for FailsAtFirst {
        type In = (String, u64);
        type Out = (String, u64);
        fn process(
            &mut self,
            (k, v): (String, u64),
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            use std::sync::atomic::Ordering;
            if v == 3 && self.failures.load(Ordering::SeqCst) < self.times {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return Err("flaky downstream".into());
            }
            ctx.emit((k, v));
            Ok(())
        }
    }
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stream = TestStream::new()
        .add_elements((1..=5).map(|v| kv("k", v, v as i64)).collect())
        .advance_watermark_to_infinity();
    let p = pipeline(1);
    let sums = p
        .test_stream("Events", stream)
        .par_do(
            "Flaky",
            FailsAtFirst {
                failures: failures.clone(),
                times: 5,
            },
        )
        .window_into("Windows", FixedWindows::of_millis(100))
        .sum_per_key("Sum")
        .collect("Out");
    let started = std::time::Instant::now();
    let result = p.run().unwrap();
    let failed_attempts = result.metrics().transform("Flaky").unwrap().failed_attempts;
    result.wait_until_finish().unwrap();
    // Five failures, more than batch's four attempts, and then the element succeeds.
    assert_eq!(sums.values(), [("k".to_string(), 15)]);
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(failed_attempts, 5);
    // The retries waited 50, 100, 200, 400 and 800 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(1_550),
        "{:?}",
        started.elapsed()
    );
}

/// Records each result with its window's start (ms) and its timestamp (µs).
#[derive(Clone)]
struct WithTimestamp;

impl DoFn for WithTimestamp {
    type In = (String, u64);
    type Out = (String, u64, i64, i64);
    fn process(
        &mut self,
        (k, v): (String, u64),
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let start = ctx.window().start().as_millis();
        ctx.emit((k, v, start, ctx.timestamp().0));
        Ok(())
    }
}

/// Sums per key — lifted, or after a GroupByKey — and records each result's window
/// start and timestamp.
fn stamped_sums(
    workers: usize,
    stream: TestStream<(String, u64)>,
    spec: WindowInto,
    lifted: bool,
) -> Vec<(String, u64, i64, i64)> {
    let p = pipeline(workers);
    let windowed = p.test_stream("Events", stream).window("Windows", spec);
    let sums = if lifted {
        windowed.sum_per_key("Sum")
    } else {
        windowed
            .group_by_key("Group")
            .map("Sum", |(k, vs): (String, Vec<u64>)| {
                (k, vs.iter().sum::<u64>())
            })
    };
    let out = sums.par_do("Stamp", WithTimestamp).collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    sorted(out.values())
}

/// Timestamp combiners, checked against what Beam Python's DirectRunner gives for the
/// same timelines (`conformance/beam/timestamp_combiners.py`; Beam's seconds are
/// milliseconds here, so its 9.999999 s is 9,999 µs).
#[test]
fn timestamp_combiners_stamp_results_as_beam_does() {
    use sluice::trigger::TimestampCombiner::{Earliest, EndOfWindow, Latest};
    let s = |k: &str, v: u64, start: i64, ts: i64| (k.to_string(), v, start, ts);
    for workers in WORKERS {
        for (combiner, on_time, late_first, late_new, session, sliding) in [
            (
                EndOfWindow,
                9_999,
                9_999,
                29_999,
                9_999,
                [4_999, 9_999, 14_999],
            ),
            (Earliest, 3_000, 3_000, 25_000, 2_000, [2_000, 2_000, 7_000]),
            (Latest, 7_000, 3_000, 25_000, 5_000, [2_000, 7_000, 7_000]),
        ] {
            let fixed = || {
                WindowInto::new(FixedWindows::of_millis(10))
                    .with_allowed_lateness(Duration::from_millis(100))
                    .with_timestamp_combiner(combiner)
            };
            let label = format!("{combiner:?}, {workers} workers");
            for lifted in [true, false] {
                let on_time_stream = TestStream::new()
                    .add_elements(vec![kv("k", 1, 3), kv("k", 2, 7)])
                    .advance_watermark_to_infinity();
                assert_eq!(
                    stamped_sums(workers, on_time_stream, fixed(), lifted),
                    [s("k", 3, 0, on_time)],
                    "on time, lifted {lifted}, {label}"
                );
                // The window fires on time; then an element behind the watermark (its
                // pane is stamped at the window's end), and one on time in a later window.
                let late_stream = TestStream::new()
                    .add_elements(vec![kv("k", 1, 3)])
                    .advance_watermark_to(ms(20))
                    .add_elements(vec![kv("k", 4, 5), kv("k", 8, 25)])
                    .advance_watermark_to_infinity();
                assert_eq!(
                    stamped_sums(workers, late_stream, fixed(), lifted),
                    [
                        s("k", 1, 0, late_first),
                        s("k", 4, 0, 9_999),
                        s("k", 8, 20, late_new)
                    ],
                    "late, lifted {lifted}, {label}"
                );
            }
            let sessions = TestStream::new()
                .add_elements(vec![kv("u", 1, 2), kv("u", 1, 5)])
                .advance_watermark_to_infinity();
            let spec =
                WindowInto::new(Sessions::with_gap_millis(5)).with_timestamp_combiner(combiner);
            assert_eq!(
                stamped_sums(workers, sessions, spec, true),
                [s("u", 2, 2, session)],
                "sessions, {label}"
            );
            let sliding_stream = TestStream::new()
                .add_elements(vec![kv("x", 1, 2), kv("x", 10, 7)])
                .advance_watermark_to_infinity();
            let spec =
                WindowInto::new(SlidingWindows::of_millis(10, 5)).with_timestamp_combiner(combiner);
            assert_eq!(
                stamped_sums(workers, sliding_stream, spec, true),
                [
                    s("x", 1, -5, sliding[0]),
                    s("x", 10, 5, sliding[2]),
                    s("x", 11, 0, sliding[1]),
                ],
                "sliding, {label}"
            );
        }
    }
}

/// The grouping holds the watermark at the earliest timestamp until it fires, so that
/// its result — stamped there — is on time downstream.
#[test]
fn an_earliest_stamped_result_is_on_time_downstream() {
    use sluice::trigger::TimestampCombiner::Earliest;
    for workers in WORKERS {
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 3), kv("k", 2, 7)])
            // Past the earliest element, not the window's end: the grouping's output
            // watermark must stay at 3 ms, where its result will be stamped.
            .advance_watermark_to(ms(5))
            .advance_watermark_to(ms(50))
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window(
                "Windows",
                WindowInto::new(FixedWindows::of_millis(10)).with_timestamp_combiner(Earliest),
            )
            .sum_per_key("Sum")
            .window("Again", WindowInto::new(FixedWindows::of_millis(5)))
            .sum_per_key("Resum")
            .par_do("Stamp", WithTimestamp)
            .collect("Out");
        let result = p.run().unwrap();
        let lost = dropped(&result);
        result.wait_until_finish().unwrap();
        // The second windowing keeps the timestamp combiner (as in Beam).
        assert_eq!(
            out.values(),
            [("k".to_string(), 3, 0, 3_000)],
            "{workers} workers"
        );
        assert_eq!(lost, 0, "{workers} workers");
    }
}

/// Counts each key's elements per window and reports the count from a processing-time
/// timer five seconds after the key's first element.
#[derive(Clone)]
struct ReportLater {
    count: ValueState<u64>,
    report: Timer,
}

impl StatefulDoFn for ReportLater {
    type Key = String;
    type Value = u64;
    type Out = (String, u64);
    fn process(
        &mut self,
        _key: &String,
        _v: u64,
        state: &mut State<'_>,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let n = state.read(&self.count)?.unwrap_or(0);
        if n == 0 {
            state.set_timer_after(&self.report, Duration::from_secs(5));
        }
        state.write(&self.count, &(n + 1))?;
        Ok(())
    }
    fn on_timer(
        &mut self,
        key: &String,
        _timer: &FiredTimer,
        state: &mut State<'_>,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        ctx.emit((key.clone(), state.read(&self.count)?.unwrap_or(0)));
        Ok(())
    }
}

#[test]
fn processing_time_timers_hold_the_watermark_for_what_they_emit() {
    for workers in WORKERS {
        // The watermark passes the window's end before the timer is due; its output,
        // stamped at the window's end, must still be on time downstream.
        let stream = TestStream::new()
            .add_elements(vec![kv("k", 1, 1), kv("k", 1, 2)])
            .advance_watermark_to(ms(50))
            .advance_processing_time(Duration::from_secs(6))
            .advance_watermark_to_infinity();
        let p = pipeline(workers);
        let out = p
            .test_stream("Events", stream)
            .window(
                "Windows",
                WindowInto::new(FixedWindows::of_millis(10))
                    .with_allowed_lateness(Duration::from_secs(3600)),
            )
            .par_do_stateful(
                "Report",
                ReportLater {
                    count: ValueState::new("count"),
                    report: Timer::new("report", TimeDomain::ProcessingTime),
                },
            )
            .window("Strict", WindowInto::new(FixedWindows::of_millis(10)))
            .sum_per_key("Sum")
            .collect("Out");
        let result = p.run().unwrap();
        let lost = dropped(&result);
        result.wait_until_finish().unwrap();
        assert_eq!(out.values(), [("k".to_string(), 2)], "{workers} workers");
        assert_eq!(lost, 0, "{workers} workers");
    }
}
