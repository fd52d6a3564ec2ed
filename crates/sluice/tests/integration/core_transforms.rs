//! The rest of Beam's core transforms: reshaping pairs, Distinct, ToList, Top, Sample,
//! Latest, Partition, hot-key fanout, CoGroupByKey and joins.

use std::collections::{BTreeMap, BTreeSet};

use sluice::prelude::*;
use sluice::transforms::cogroup::{CoGbkResult, CoGroupByKey};

use crate::kit::{WORKERS, pipeline, sorted};

#[test]
fn keys_values_swap_and_with_keys() {
    let p = pipeline(2);
    let pairs = p.create("Pairs", vec![("a".to_string(), 1u8), ("b".to_string(), 2)]);
    let keys = pairs.keys("Keys").collect("K");
    let values = pairs.values("Values").collect("V");
    let swapped = pairs.kv_swap("Swap").collect("S");
    let keyed = p
        .create("Words", vec!["xx".to_string(), "y".to_string()])
        .with_keys("Len", |w: &String| w.len())
        .collect("W");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(sorted(keys.values()), ["a", "b"]);
    assert_eq!(sorted(values.values()), [1, 2]);
    assert_eq!(
        sorted(swapped.values()),
        [(1, "a".to_string()), (2, "b".to_string())]
    );
    assert_eq!(
        sorted(keyed.values()),
        [(1, "y".to_string()), (2, "xx".to_string())]
    );
}

#[test]
fn distinct_keeps_each_element_once() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let out = p
            .create(
                "Words",
                (0..10_000u32).map(|i| format!("w{}", i % 123)).collect(),
            )
            .distinct("Distinct")
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            sorted((0..123).map(|i| format!("w{i}")).collect()),
            "{workers} workers"
        );
    }
}

#[test]
fn top_by_comparator_ranks_floats_and_records() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let prices = p.create(
            "Prices",
            (0..1_000u32)
                .map(|i| (format!("k{}", i % 2), f64::from((i * 7919) % 1000) / 10.0))
                .collect(),
        );
        let best = prices
            .top_per_key_by("Best", 2, |a: &f64, b: &f64| a.total_cmp(b))
            .collect("BestOut");
        let cheapest = prices
            .values("Values")
            .top_by("Cheapest", 3, |a: &f64, b: &f64| b.total_cmp(a))
            .collect("CheapestOut");
        let longest = p
            .create("Words", vec!["a".to_string(), "ccc".into(), "bb".into()])
            .top_by_key("Longest", 1, |w: &String| w.len())
            .collect("LongestOut");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted_by_key(best.values()),
            [
                ("k0".to_string(), vec![99.8, 99.6]),
                ("k1".to_string(), vec![99.9, 99.7])
            ],
            "{workers} workers"
        );
        assert_eq!(cheapest.values(), [vec![0.0, 0.1, 0.2]]);
        assert_eq!(longest.values(), [vec!["ccc".to_string()]]);
    }
}

fn sorted_by_key<V>(mut v: Vec<(String, V)>) -> Vec<(String, V)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn to_list_and_top() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let numbers = p.create(
            "Numbers",
            (0..1_000i64).map(|i| (i * 7919) % 1000).collect(),
        );
        let all = numbers.to_list("ToList").collect("All");
        let top = numbers.top_largest("Top", 3).collect("Top3");
        let bottom = numbers.top_smallest("Bottom", 2).collect("Bottom2");
        let pairs = numbers.map("Pairs", |x: i64| (x % 2, x));
        let per_key = pairs.top_largest_per_key("TopPerKey", 2).collect("TPK");
        let lists = pairs.to_list_per_key("ListPerKey").collect("LPK");
        let empty = p
            .create("Empty", Vec::<u8>::new())
            .to_list("EmptyList")
            .collect("E");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(all.values()[0].clone()),
            (0..1000).collect::<Vec<_>>(),
            "{workers} workers"
        );
        assert_eq!(top.values(), [vec![999, 998, 997]]);
        assert_eq!(bottom.values(), [vec![0, 1]]);
        assert_eq!(
            sorted(per_key.values()),
            [(0, vec![998, 996]), (1, vec![999, 997])]
        );
        let lists: BTreeMap<i64, Vec<i64>> = lists
            .values()
            .into_iter()
            .map(|(k, v)| (k, sorted(v)))
            .collect();
        assert_eq!(lists[&0].len(), 500);
        assert_eq!(empty.values(), [Vec::<u8>::new()]);
    }
}

#[test]
fn sample_is_of_the_asked_size_and_drawn_from_the_input() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let numbers = p.create("Numbers", (0..1_000u32).collect());
        let half = numbers.sample("Half", 500).collect("H");
        let more = numbers.sample("More", 5_000).collect("M");
        let per_key = numbers
            .map("Pairs", |x: u32| (x % 3, x))
            .sample_per_key("PerKey", 10)
            .collect("P");
        p.run().unwrap().wait_until_finish().unwrap();
        let half = half.values().remove(0);
        assert_eq!(half.len(), 500);
        assert_eq!(
            half.iter().collect::<BTreeSet<_>>().len(),
            500,
            "no element twice"
        );
        // A uniform sample's mean is near the population's (499.5); 60 is over 6 sigma.
        let mean = half.iter().map(|x| *x as f64).sum::<f64>() / 500.0;
        assert!((mean - 499.5).abs() < 60.0, "mean {mean}");
        assert_eq!(
            sorted(more.values().remove(0)),
            (0..1_000).collect::<Vec<_>>()
        );
        for (k, values) in per_key.values() {
            assert_eq!(values.len(), 10);
            assert!(values.iter().all(|v| v % 3 == k));
        }
    }
}

/// Stamps each number with itself as its event time, in milliseconds.
#[derive(Clone)]
struct StampWithValue;

impl DoFn for StampWithValue {
    type In = (String, i64);
    type Out = (String, i64);
    fn process(
        &mut self,
        (k, v): (String, i64),
        ctx: &mut Context<'_, (String, i64)>,
    ) -> Result<(), BoxError> {
        ctx.emit_with_timestamp((k, v), Timestamp::from_millis(v));
        Ok(())
    }
}

#[test]
fn latest_picks_the_latest_event_time() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let stamped = p
            .create(
                "Events",
                (0..500i64)
                    .map(|i| (format!("k{}", i % 4), (i * 37) % 500))
                    .collect(),
            )
            .par_do("Stamp", StampWithValue);
        let latest = stamped.values("Values").latest("Latest").collect("L");
        let per_key = stamped.latest_per_key("LatestPerKey").collect("LPK");
        let none = p
            .create("Empty", Vec::<u8>::new())
            .latest("LatestOfNothing")
            .collect("N");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(latest.values(), [Some(499)], "{workers} workers");
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for i in 0..500i64 {
            let e = expected.entry(format!("k{}", i % 4)).or_insert(i64::MIN);
            *e = (*e).max((i * 37) % 500);
        }
        assert_eq!(
            sorted(per_key.values()),
            expected.into_iter().collect::<Vec<_>>()
        );
        assert_eq!(none.values(), [None]);
    }
}

#[test]
fn partition_splits_by_the_function() {
    let p = pipeline(2);
    let parts =
        p.create("Numbers", (0..300u32).collect())
            .partition("ByRemainder", 3, |x: &u32, n| *x as usize % n);
    let collected: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| part.collect(&format!("Part{i}")))
        .collect();
    p.run().unwrap().wait_until_finish().unwrap();
    for (i, part) in collected.iter().enumerate() {
        assert_eq!(
            sorted(part.values()),
            (0..300u32)
                .filter(|x| *x as usize % 3 == i)
                .collect::<Vec<_>>()
        );
    }

    let p = pipeline(1);
    let parts = p
        .create("Numbers", vec![1u32])
        .partition("Bad", 2, |_: &u32, _| 7);
    let _ = parts[0].collect("Out");
    let text = p.run().unwrap().error().unwrap().to_string();
    assert!(
        text.contains("'Bad'") && text.contains("partition 7 of 2"),
        "{text}"
    );
}

#[test]
fn hot_key_fanout_gives_the_same_result() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let pairs = p.create(
            "Pairs",
            (0..20_000u64)
                .map(|i| (if i % 10 == 0 { i % 7 } else { 99 }, i))
                .collect(),
        );
        let fanned = pairs
            .combine_per_key_with_fanout("Fanned", 8, SumFn::<u64>::default())
            .collect("F");
        let plain = pairs.sum_per_key("Plain").collect("P");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(fanned.values()),
            sorted(plain.values()),
            "{workers} workers"
        );
    }
}

#[test]
fn co_group_by_key_of_three_inputs_with_missing_sides() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let a = p.create(
            "A",
            vec![
                (1u32, "a1".to_string()),
                (1, "a2".to_string()),
                (2, "a3".to_string()),
            ],
        );
        let b = p.create("B", vec![(2u32, 20i64), (3, 30)]);
        let c = p.create("C", Vec::<(u32, bool)>::new());
        let (ta, tb, tc) = (
            TupleTag::<String>::new("a"),
            TupleTag::<i64>::new("b"),
            TupleTag::<bool>::new("c"),
        );
        let (ta2, tb2, tc2) = (ta.clone(), tb.clone(), tc.clone());
        let out = CoGroupByKey::new()
            .and(&ta, &a)
            .and(&tb, &b)
            .and(&tc, &c)
            .apply("Join")
            .map("Read", move |(k, r): (u32, CoGbkResult)| {
                (k, sorted(r.get(&ta2)), r.get(&tb2), r.get(&tc2).len())
            })
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            sorted(out.values()),
            [
                (1, vec!["a1".to_string(), "a2".to_string()], vec![], 0),
                (2, vec!["a3".to_string()], vec![20], 0),
                (3, vec![], vec![30], 0)
            ],
            "{workers} workers"
        );
    }
}

#[test]
fn inner_and_left_outer_joins() {
    for workers in WORKERS {
        let p = pipeline(workers);
        let orders = p.create(
            "Orders",
            vec![
                (1u32, "book".to_string()),
                (1, "pen".to_string()),
                (2, "ink".to_string()),
                (9, "cup".to_string()),
            ],
        );
        let customers = p.create(
            "Customers",
            vec![
                (1u32, "amy".to_string()),
                (2, "bob".to_string()),
                (3, "cyd".to_string()),
            ],
        );
        let inner = orders.inner_join("Inner", &customers).collect("I");
        let left = orders.left_outer_join("Left", &customers).collect("L");
        p.run().unwrap().wait_until_finish().unwrap();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            sorted(inner.values()),
            [
                (1, s("book", "amy")),
                (1, s("pen", "amy")),
                (2, s("ink", "bob"))
            ],
            "{workers} workers"
        );
        assert_eq!(
            sorted(left.values()),
            [
                (1, ("book".to_string(), Some("amy".to_string()))),
                (1, ("pen".to_string(), Some("amy".to_string()))),
                (2, ("ink".to_string(), Some("bob".to_string()))),
                (9, ("cup".to_string(), None))
            ]
        );
    }
}

mod side_inputs {
    use std::collections::HashMap;

    use sluice::prelude::*;
    use sluice::transforms::side_input::SideInput;

    use crate::kit::{WORKERS, pipeline, sorted};

    /// Divides each number by the total of all numbers, read as a singleton side input.
    #[derive(Clone)]
    struct Normalize {
        total: SideInput<u64>,
    }

    impl DoFn for Normalize {
        type In = u64;
        type Out = (u64, u64);
        fn process(&mut self, x: u64, ctx: &mut Context<'_, (u64, u64)>) -> Result<(), BoxError> {
            let total = *ctx.side_input(&self.total)?;
            ctx.emit((x, total));
            Ok(())
        }
    }

    #[test]
    fn a_singleton_computed_from_the_main_input_itself() {
        for workers in WORKERS {
            let p = pipeline(workers);
            let numbers = p.create("Numbers", (1..=1_000u64).collect());
            let total = numbers.sum_globally("Total").as_singleton("TotalView");
            let out = numbers
                .par_do_with_side_inputs(
                    "Normalize",
                    Normalize {
                        total: total.clone(),
                    },
                    &[total.spec()],
                )
                .collect("Out");
            p.run().unwrap().wait_until_finish().unwrap();
            assert_eq!(
                sorted(out.values()),
                (1..=1_000u64).map(|x| (x, 500_500)).collect::<Vec<_>>(),
                "{workers} workers"
            );
        }
    }

    /// Keeps numbers that are in the list, and tags them with the map's name for them.
    #[derive(Clone)]
    struct Lookup {
        allowed: SideInput<Vec<u64>>,
        names: SideInput<HashMap<u64, String>>,
        aliases: SideInput<HashMap<u64, Vec<String>>>,
    }

    impl DoFn for Lookup {
        type In = u64;
        type Out = String;
        fn process(&mut self, x: u64, ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
            let allowed = ctx.side_input(&self.allowed)?;
            if allowed.len() != 50_000 || !x.is_multiple_of(1_000) {
                return Ok(());
            }
            let name = ctx
                .side_input(&self.names)?
                .get(&x)
                .cloned()
                .unwrap_or_default();
            let mut aliases = ctx
                .side_input(&self.aliases)?
                .get(&x)
                .cloned()
                .unwrap_or_default();
            aliases.sort();
            ctx.emit(format!("{x}={name}/{}", aliases.join(",")));
            Ok(())
        }
    }

    #[test]
    fn iterable_map_and_multimap_views_larger_than_a_bundle() {
        for workers in WORKERS {
            let p = pipeline(workers);
            // 50,000 elements: many bundles of the producing stage.
            let allowed = p
                .create("Allowed", (0..50_000u64).collect())
                .as_iterable("AllowedView");
            let names = p
                .create(
                    "Names",
                    (0..50_000u64).map(|i| (i, format!("n{i}"))).collect(),
                )
                .as_map("NameView");
            let aliases = p
                .create(
                    "Aliases",
                    (0..50_000u64)
                        .flat_map(|i| [(i, format!("a{i}")), (i, format!("b{i}"))])
                        .collect(),
                )
                .as_multimap("AliasView");
            let dofn = Lookup {
                allowed: allowed.clone(),
                names: names.clone(),
                aliases: aliases.clone(),
            };
            let out = p
                .create("Numbers", (0..5_000u64).collect())
                .par_do_with_side_inputs(
                    "Lookup",
                    dofn,
                    &[allowed.spec(), names.spec(), aliases.spec()],
                )
                .collect("Out");
            p.run().unwrap().wait_until_finish().unwrap();
            let expected: Vec<String> = (0..5u64)
                .map(|k| k * 1_000)
                .map(|x| format!("{x}=n{x}/a{x},b{x}"))
                .collect();
            assert_eq!(sorted(out.values()), expected, "{workers} workers");
        }
    }

    #[test]
    fn the_plan_shows_the_view_as_a_barrier() {
        let p = pipeline(1);
        let numbers = p.create("Numbers", (1..=10u64).collect());
        let total = numbers.sum_globally("Total").as_singleton("TotalView");
        let _ = numbers
            .par_do_with_side_inputs(
                "Normalize",
                Normalize {
                    total: total.clone(),
                },
                &[total.spec()],
            )
            .collect("Out");
        let plan = sluice::plan::optimize(&p.graph(), &sluice::plan::OptimizeOptions::default());
        let stages: Vec<String> = plan
            .to_text()
            .lines()
            .filter(|l| l.starts_with('S'))
            .map(str::to_string)
            .collect();
        assert_eq!(stages.len(), 3, "{stages:?}");
        assert!(stages[1].contains("TotalView"), "{stages:?}");
        assert!(
            stages[2].contains("(after S01, S02)")
                && stages[2].contains("Normalize/Materialize/Read | Normalize"),
            "{stages:?}"
        );
        p.run().unwrap().wait_until_finish().unwrap();
    }

    #[test]
    fn a_singleton_of_several_elements_fails_naming_the_view() {
        let p = pipeline(2);
        let view = p.create("Several", vec![1u64, 2]).as_singleton("OneView");
        let _ = p
            .create("Numbers", vec![5u64])
            .par_do_with_side_inputs(
                "Normalize",
                Normalize {
                    total: view.clone(),
                },
                &[view.spec()],
            )
            .collect("Out");
        let result = p.run().unwrap();
        let text = result.error().unwrap().to_string();
        assert!(
            text.contains("'OneView'")
                && text.contains("exactly one element")
                && text.contains("has 2"),
            "{text}"
        );
    }

    #[test]
    fn an_undeclared_side_input_is_an_error_saying_how_to_declare_it() {
        let p = pipeline(1);
        let view = p.create("One", vec![1u64]).as_singleton("OneView");
        let _ = p
            .create("Numbers", vec![5u64])
            .par_do("Normalize", Normalize { total: view })
            .collect("Out");
        let text = p.run().unwrap().error().unwrap().to_string();
        assert!(
            text.contains("not a side input of 'Normalize'")
                && text.contains("par_do_with_side_inputs"),
            "{text}"
        );
    }
}

mod state_and_timers {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};

    use sluice::prelude::*;
    use sluice::transforms::stateful::{
        BagState, CombiningState, FiredTimer, MapState, State, StatefulDoFn, TimeDomain, Timer,
        ValueState,
    };

    use crate::kit::{WORKERS, pipeline, sorted};

    /// Emits each element with how many elements its key has seen so far.
    #[derive(Clone)]
    struct RunningCount {
        seen: ValueState<u64>,
        /// Keys whose first attempt fails after updating state (to check it is discarded).
        fail_once: Arc<Mutex<HashSet<String>>>,
    }

    impl StatefulDoFn for RunningCount {
        type Key = String;
        type Value = u32;
        type Out = (String, u64);
        fn process(
            &mut self,
            key: &String,
            _v: u32,
            state: &mut State<'_>,
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            let n = state.read(&self.seen)?.unwrap_or(0) + 1;
            state.write(&self.seen, &n)?;
            if n == 3 && key.ends_with('7') && self.fail_once.lock().unwrap().insert(key.clone()) {
                return Err("transient failure after a state update".into());
            }
            ctx.emit((key.clone(), n));
            Ok(())
        }
    }

    /// Counts per key like [`RunningCount`], and panics in every teardown.
    #[derive(Clone)]
    struct PanickyTeardown(RunningCount);

    impl StatefulDoFn for PanickyTeardown {
        type Key = String;
        type Value = u32;
        type Out = (String, u64);
        fn process(
            &mut self,
            key: &String,
            v: u32,
            state: &mut State<'_>,
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            self.0.process(key, v, state, ctx)
        }
        fn teardown(&mut self) {
            panic!("teardown fails");
        }
    }

    /// Regression: a panic in a stateful DoFn's teardown (after a failed bundle, and at
    /// the end of the stage) was taken for a crash of the runner and abandoned the job.
    #[test]
    fn regression_a_panicking_stateful_teardown_is_logged_not_fatal() {
        for workers in [1, 2] {
            let p = pipeline(workers);
            let dofn = PanickyTeardown(RunningCount {
                seen: ValueState::new("seen"),
                fail_once: Arc::default(),
            });
            let out = p
                .create(
                    "Pairs",
                    (0..600u32).map(|i| (format!("k{}", i % 60), i)).collect(),
                )
                .par_do_stateful("Count", dofn)
                .collect("Out");
            let result = p.run().unwrap();
            assert_eq!(
                result.state(),
                JobState::Done,
                "{:?}",
                result.error().map(|e| e.to_string())
            );
            assert_eq!(
                result.metrics().transform("Count").unwrap().teardowns,
                6 + workers as u64,
                "{workers} workers"
            );
            assert_eq!(out.values().len(), 600, "{workers} workers");
        }
    }

    #[test]
    fn value_state_counts_per_key_and_failed_attempts_leave_no_state() {
        for workers in WORKERS {
            let p = pipeline(workers);
            let dofn = RunningCount {
                seen: ValueState::new("seen"),
                fail_once: Arc::default(),
            };
            let out = p
                .create(
                    "Pairs",
                    (0..6_000u32).map(|i| (format!("k{}", i % 60), i)).collect(),
                )
                .par_do_stateful("Count", dofn)
                .collect("Out");
            let result = p.run().unwrap();
            assert_eq!(
                result.state(),
                JobState::Done,
                "{:?}",
                result.error().map(|e| e.to_string())
            );
            assert!(result.metrics().stages.iter().any(|s| s.retries > 0));
            // The instance each of the six failures discarded, then each worker's at
            // the end (every worker owns some of the 60 keys).
            assert_eq!(
                result.metrics().transform("Count").unwrap().teardowns,
                6 + workers as u64,
                "{workers} workers"
            );
            let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for (k, n) in out.values() {
                per_key.entry(k).or_default().push(n);
            }
            assert_eq!(per_key.len(), 60, "{workers} workers");
            for (k, counts) in per_key {
                assert_eq!(sorted(counts), (1..=100).collect::<Vec<_>>(), "{k}");
            }
        }
    }

    /// Buffers values and emits them sorted by event time when its key is complete.
    #[derive(Clone)]
    struct SortByTime {
        buffer: BagState<(Timestamp, u32)>,
        flush: Timer,
    }

    /// Stamps values with themselves as event time, in milliseconds.
    #[derive(Clone)]
    struct Stamp;

    impl DoFn for Stamp {
        type In = (String, u32);
        type Out = (String, u32);
        fn process(
            &mut self,
            (k, v): (String, u32),
            ctx: &mut Context<'_, (String, u32)>,
        ) -> Result<(), BoxError> {
            ctx.emit_with_timestamp((k, v), Timestamp::from_millis(v as i64));
            Ok(())
        }
    }

    impl StatefulDoFn for SortByTime {
        type Key = String;
        type Value = u32;
        type Out = (String, Vec<u32>);
        fn process(
            &mut self,
            _key: &String,
            v: u32,
            state: &mut State<'_>,
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            state.add(&self.buffer, &(ctx.timestamp(), v))?;
            // One timer, at the latest event time seen: it fires once the key is complete.
            state.set_timer(&self.flush, ctx.timestamp().max(Timestamp::from_millis(0)));
            Ok(())
        }
        fn on_timer(
            &mut self,
            key: &String,
            timer: &FiredTimer,
            state: &mut State<'_>,
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            assert_eq!(timer.domain, TimeDomain::EventTime);
            let mut events = state.read_bag(&self.buffer)?;
            events.sort();
            state.clear(&self.buffer);
            ctx.emit((key.clone(), events.into_iter().map(|(_, v)| v).collect()));
            Ok(())
        }
    }

    #[test]
    fn bag_state_and_an_event_time_timer_sort_out_of_order_input() {
        // Values arrive in a scrambled order.
        let input: Vec<(String, u32)> = (0..3_000u32)
            .map(|i| (format!("k{}", i % 3), (i * 7_919) % 3_000))
            .collect();
        for workers in WORKERS {
            let p = pipeline(workers);
            let dofn = SortByTime {
                buffer: BagState::new("buffer"),
                flush: Timer::new("flush", TimeDomain::EventTime),
            };
            let out = p
                .create("Events", input.clone())
                .par_do("Stamp", Stamp)
                .par_do_stateful("Sort", dofn)
                .collect("Out");
            p.run().unwrap().wait_until_finish().unwrap();
            let got = sorted(out.values());
            assert_eq!(
                got.len(),
                3,
                "one output per key, when its timer fires ({workers} workers)"
            );
            for (k, values) in got {
                let mut expected: Vec<u32> = input
                    .iter()
                    .filter(|(key, _)| *key == k)
                    .map(|(_, v)| *v)
                    .collect();
                expected.sort();
                assert_eq!(values, expected, "{k}");
            }
        }
    }

    /// Sums values, remembers the distinct ones, and reports when a processing-time timer fires.
    #[derive(Clone)]
    struct Summary {
        sum: CombiningState<SumFn<u64>>,
        distinct: MapState<u64, ()>,
        report: Timer,
    }

    impl StatefulDoFn for Summary {
        type Key = u8;
        type Value = u64;
        type Out = (u8, u64, usize);
        fn process(
            &mut self,
            _key: &u8,
            v: u64,
            state: &mut State<'_>,
            _ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            state.combine(&self.sum, v)?;
            state.put(&self.distinct, &v, &())?;
            state.set_timer(&self.report, Timestamp::from_millis(1));
            Ok(())
        }
        fn on_timer(
            &mut self,
            key: &u8,
            timer: &FiredTimer,
            state: &mut State<'_>,
            ctx: &mut Context<'_, Self::Out>,
        ) -> Result<(), BoxError> {
            assert_eq!(timer.domain, TimeDomain::ProcessingTime);
            let distinct = state.entries(&self.distinct)?.len();
            assert_eq!(
                state.get(&self.distinct, &0)?,
                if *key == 0 { Some(()) } else { None }
            );
            ctx.emit((*key, state.read_combined(&self.sum)?, distinct));
            Ok(())
        }
    }

    #[test]
    fn combining_and_map_state_with_a_processing_time_timer() {
        for workers in WORKERS {
            let p = pipeline(workers);
            let dofn = Summary {
                sum: CombiningState::new("sum", SumFn::default()),
                distinct: MapState::new("distinct"),
                report: Timer::new("report", TimeDomain::ProcessingTime),
            };
            let out = p
                .create(
                    "Pairs",
                    (0..1_000u64).map(|i| ((i % 2) as u8, i % 10)).collect(),
                )
                .par_do_stateful("Summarize", dofn)
                .collect("Out");
            p.run().unwrap().wait_until_finish().unwrap();
            assert_eq!(
                sorted(out.values()),
                [(0, 2_000, 5), (1, 2_500, 5)],
                "{workers} workers"
            );
        }
    }

    /// Sets its timer again every time it fires.
    #[derive(Clone)]
    struct Forever {
        tick: Timer,
    }

    impl StatefulDoFn for Forever {
        type Key = u8;
        type Value = u8;
        type Out = u8;
        fn process(
            &mut self,
            _: &u8,
            _: u8,
            state: &mut State<'_>,
            _: &mut Context<'_, u8>,
        ) -> Result<(), BoxError> {
            state.set_timer(&self.tick, Timestamp::from_millis(0));
            Ok(())
        }
        fn on_timer(
            &mut self,
            _: &u8,
            t: &FiredTimer,
            state: &mut State<'_>,
            _: &mut Context<'_, u8>,
        ) -> Result<(), BoxError> {
            state.set_timer(&self.tick, t.timestamp);
            Ok(())
        }
    }

    #[test]
    fn a_timer_that_always_rearms_fails_with_a_clear_error() {
        let p = pipeline_with_attempts();
        let _ = p
            .create("One", vec![(1u8, 1u8)])
            .par_do_stateful(
                "Loop",
                Forever {
                    tick: Timer::new("tick", TimeDomain::EventTime),
                },
            )
            .collect("Out");
        let text = p.run().unwrap().error().unwrap().to_string();
        assert!(
            text.contains("'Loop'") && text.contains("timer 'tick' of key 1 keeps being set again"),
            "{text}"
        );
    }

    fn pipeline_with_attempts() -> Pipeline {
        crate::kit::pipeline_with(1, &["--max_bundle_attempts=1"])
    }
}
