//! Every query's results on a small generated run, against a plain computation of Beam
//! Java's definition of the query over the same events, on one and two workers.
//!
//! The plain computations below share nothing with the pipelines but the generator and
//! the result types: they loop over the events with maps and sorts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sluice::{Pipeline, PipelineOptions};
use sluice_nexmark::generator::{Generator, NexmarkConfig};
use sluice_nexmark::model::{Auction, Bid, Event, Person};
use sluice_nexmark::queries::{Output, iso8601, query};
use sluice_nexmark::results::{
    AuctionBid, AuctionCount, AuctionPrice, BidsPerSession, CategoryPrice, Done, IdNameReserve,
    NameCityStateId, SellerPrice, to_json,
};
use sluice_nexmark::source::NexmarkRead;

const EVENTS: u64 = 30_000;

fn config() -> NexmarkConfig {
    NexmarkConfig {
        num_events: EVENTS,
        ..NexmarkConfig::default()
    }
}

/// Every event with its time (ms), as the generators produce them.
fn events(config: &NexmarkConfig) -> Vec<(Event, i64)> {
    let timeline = config.timeline();
    let generator = Generator::new(config, &timeline);
    config
        .generator_ranges()
        .into_iter()
        .flat_map(|range| (0..range.max_events).map(move |c| (range, c)))
        .map(|(range, c)| generator.event(&range, c))
        .collect()
}

fn bids(events: &[(Event, i64)]) -> Vec<Bid> {
    events
        .iter()
        .filter_map(|(e, _)| e.as_bid().cloned())
        .collect()
}

fn auctions(events: &[(Event, i64)]) -> Vec<Auction> {
    events
        .iter()
        .filter_map(|(e, _)| e.as_auction().cloned())
        .collect()
}

fn people(events: &[(Event, i64)]) -> Vec<Person> {
    events
        .iter()
        .filter_map(|(e, _)| e.as_person().cloned())
        .collect()
}

fn lines<T: serde::Serialize>(results: impl IntoIterator<Item = T>) -> Vec<String> {
    let mut v: Vec<String> = results.into_iter().map(|r| to_json(&r)).collect();
    v.sort();
    v
}

/// The pipeline's results for `q`, sorted.
fn run(q: u32, workers: usize) -> Vec<String> {
    run_with(q, workers, &[]).0
}

/// The pipeline's results for `q` with more `flags`, sorted, and the bytes it spilled.
fn run_with(q: u32, workers: usize, flags: &[&str]) -> (Vec<String>, u64) {
    let config = config();
    let mut args = vec![format!("--direct_num_workers={workers}")];
    args.extend(flags.iter().map(|f| f.to_string()));
    let p = Pipeline::with_options(PipelineOptions::parse(args).unwrap());
    let events = p.nexmark_events("Events", &config);
    let collected = query(q, &events, &config, &Output::Collect)
        .unwrap()
        .unwrap();
    let result = p.run().unwrap();
    let spilled = result.metrics().memory.bytes_spilled;
    result.wait_until_finish().unwrap();
    let mut got = collected.values();
    got.sort();
    (got, spilled)
}

#[test]
fn queries_4_6_and_9_spilled_under_a_tiny_budget_give_the_same_results() {
    for q in [4, 6, 9] {
        let (roomy, _) = run_with(q, 2, &[]);
        let (tight, spilled) = run_with(q, 2, &["--max_memory=256KB"]);
        assert!(spilled > 0, "query {q}: nothing spilled under 256 KB");
        assert!(!roomy.is_empty(), "query {q}: no results");
        assert!(tight == roomy, "query {q}: results differ when spilled");
    }
}

fn check(q: u32, expected: Vec<String>) {
    assert!(
        !expected.is_empty(),
        "query {q}: the model has no results to compare"
    );
    for workers in [1, 2] {
        let got = run(q, workers);
        assert_eq!(got.len(), expected.len(), "query {q}, {workers} workers");
        assert!(
            got == expected,
            "query {q}, {workers} workers: results differ"
        );
    }
}

/// The fixed window of size `size_ms` holding `t_ms` (its start).
fn fixed(t_ms: i64, size_ms: i64) -> i64 {
    t_ms.div_euclid(size_ms) * size_ms
}

/// The starts of the sliding windows (size, period) holding `t_ms`.
fn sliding(t_ms: i64, size_ms: i64, period_ms: i64) -> Vec<i64> {
    let last = t_ms.div_euclid(period_ms) * period_ms;
    (0..)
        .map(|k| last - k * period_ms)
        .take_while(|s| *s > t_ms - size_ms)
        .collect()
}

#[test]
fn query0_passes_every_event_through() {
    let config = config();
    check(0, lines(events(&config).into_iter().map(|(e, _)| e)));
}

#[test]
fn query1_converts_prices_to_euros() {
    let config = config();
    check(
        1,
        lines(bids(&events(&config)).into_iter().map(|b| Bid {
            price: b.price * 89 / 100,
            ..b
        })),
    );
}

#[test]
fn query2_selects_bids_on_every_123rd_auction() {
    let config = config();
    check(
        2,
        lines(
            bids(&events(&config))
                .into_iter()
                .filter(|b| b.auction % 123 == 0)
                .map(|b| AuctionPrice {
                    auction: b.auction,
                    price: b.price,
                }),
        ),
    );
}

#[test]
fn query3_joins_sellers_in_three_states_with_their_category_10_auctions() {
    let config = config();
    let events = events(&config);
    // State is dropped after 600 s of quiet; the run spans far less.
    let span = events.iter().map(|(_, t)| *t).max().unwrap() - config.base_time_ms;
    assert!(span < 600_000);
    let sellers: HashMap<i64, Person> = people(&events)
        .into_iter()
        .filter(|p| ["OR", "ID", "CA"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    check(
        3,
        lines(
            auctions(&events)
                .into_iter()
                .filter(|a| a.category == 10)
                .filter_map(|a| {
                    sellers.get(&a.seller).map(|p| NameCityStateId {
                        name: p.name.clone(),
                        city: p.city.clone(),
                        state: p.state.clone(),
                        id: a.id,
                    })
                }),
        ),
    );
}

/// Each auction's winning bid: the highest at or above the reserve among bids placed
/// before the auction expired; ties go to the earlier bid, then the lower bidder.
fn winning_bids(events: &[(Event, i64)]) -> Vec<AuctionBid> {
    let mut by_auction: HashMap<i64, Vec<Bid>> = HashMap::new();
    for b in bids(events) {
        by_auction.entry(b.auction).or_default().push(b);
    }
    auctions(events)
        .into_iter()
        .filter_map(|a| {
            let best = by_auction
                .get(&a.id)?
                .iter()
                .filter(|b| b.date_time < a.expires && b.price >= a.reserve)
                .max_by_key(|b| (b.price, -b.date_time, -b.bidder))?
                .clone();
            Some(AuctionBid {
                auction: a,
                bid: best,
            })
        })
        .collect()
}

#[test]
fn query4_averages_winning_prices_per_category_over_sliding_windows() {
    let config = config();
    let mut sums: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for w in winning_bids(&events(&config)) {
        // A winning bid is timestamped at the end of its auction.
        for start in sliding(w.auction.expires - 1, 10_000, 5_000) {
            let s = sums.entry((start, w.auction.category)).or_default();
            s.0 += w.bid.price;
            s.1 += 1;
        }
    }
    check(
        4,
        lines(
            sums.into_iter()
                .map(|((_, category), (sum, n))| CategoryPrice {
                    category,
                    price: (sum as f64 / n as f64 + 0.5).floor() as i64,
                    is_last: true,
                }),
        ),
    );
}

#[test]
fn query5_finds_the_auctions_with_most_bids_per_sliding_window() {
    let config = config();
    let mut counts: BTreeMap<i64, HashMap<i64, i64>> = BTreeMap::new();
    for b in bids(&events(&config)) {
        for start in sliding(b.date_time, 10_000, 5_000) {
            *counts
                .entry(start)
                .or_default()
                .entry(b.auction)
                .or_default() += 1;
        }
    }
    let mut expected = Vec::new();
    for per_auction in counts.values() {
        let max = per_auction.values().copied().max().unwrap_or(0);
        for (auction, n) in per_auction {
            if *n == max {
                expected.push(AuctionCount {
                    auction: *auction,
                    num: *n,
                });
            }
        }
    }
    check(5, lines(expected));
}

#[test]
fn query6_averages_each_sellers_last_ten_winning_prices() {
    let config = config();
    let mut by_seller: HashMap<i64, Vec<Bid>> = HashMap::new();
    for w in winning_bids(&events(&config)) {
        by_seller.entry(w.auction.seller).or_default().push(w.bid);
    }
    check(
        6,
        lines(by_seller.into_iter().map(|(seller, mut bids)| {
            bids.sort_by_key(|b| (b.date_time, b.price, b.bidder, b.auction));
            let last: Vec<&Bid> = bids.iter().rev().take(10).collect();
            let sum: i64 = last.iter().map(|b| b.price).sum();
            SellerPrice {
                seller,
                price: (sum as f64 / last.len() as f64 + 0.5).floor() as i64,
            }
        })),
    );
}

#[test]
fn query7_keeps_the_highest_bids_of_each_fixed_window() {
    let config = config();
    let mut windows: BTreeMap<i64, Vec<Bid>> = BTreeMap::new();
    for b in bids(&events(&config)) {
        windows
            .entry(fixed(b.date_time, 10_000))
            .or_default()
            .push(b);
    }
    let mut expected = Vec::new();
    for bids in windows.into_values() {
        let max = bids.iter().map(|b| b.price).max().unwrap();
        expected.extend(bids.into_iter().filter(|b| b.price == max));
    }
    check(7, lines(expected));
}

#[test]
fn query8_lists_new_people_with_auctions_in_the_same_window() {
    let config = config();
    let events = events(&config);
    let people: HashMap<(i64, i64), Person> = people(&events)
        .into_iter()
        .map(|p| ((fixed(p.date_time, 10_000), p.id), p))
        .collect();
    check(
        8,
        lines(auctions(&events).into_iter().filter_map(|a| {
            people
                .get(&(fixed(a.date_time, 10_000), a.seller))
                .map(|p| IdNameReserve {
                    id: p.id,
                    name: p.name.clone(),
                    reserve: a.reserve,
                })
        })),
    );
}

#[test]
fn query9_finds_each_closed_auctions_winning_bid() {
    let config = config();
    check(9, lines(winning_bids(&events(&config))));
}

#[test]
fn query10_completes_every_window_of_events() {
    let config = config();
    let windows: BTreeSet<i64> = events(&config)
        .iter()
        .map(|(_, t)| fixed(*t, 10_000))
        .collect();
    check(
        10,
        lines(windows.into_iter().map(|start| Done {
            message: format!("written for timestamp {}", iso8601(start + 10_000 - 1)),
        })),
    );
}

#[test]
fn query11_counts_each_bidders_bids_per_session() {
    let config = config();
    let mut times: HashMap<i64, Vec<i64>> = HashMap::new();
    for b in bids(&events(&config)) {
        times.entry(b.bidder).or_default().push(b.date_time);
    }
    let mut expected = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        // Sessions: a bid at or after the end of the session's window (its last bid plus
        // the gap) starts another.
        let mut n = 0;
        let mut end = i64::MIN;
        for t in ts {
            if n > 0 && t >= end {
                expected.push(BidsPerSession {
                    person_id: bidder,
                    bids_per_session: n,
                });
                n = 0;
            }
            n += 1;
            end = end.max(t + 10_000);
        }
        expected.push(BidsPerSession {
            person_id: bidder,
            bids_per_session: n,
        });
    }
    check(11, lines(expected));
}

#[test]
fn query12_counts_each_bidders_bids() {
    let config = config();
    let mut counts: HashMap<i64, i64> = HashMap::new();
    for b in bids(&events(&config)) {
        *counts.entry(b.bidder).or_default() += 1;
    }
    // A batch run has one processing-time pane per bidder: all of its bids.
    check(
        12,
        lines(counts.into_iter().map(|(person_id, n)| BidsPerSession {
            person_id,
            bids_per_session: n,
        })),
    );
}

/// The results of `q` over the unpaced stream of the same events, sorted.
fn run_streaming(q: u32, workers: usize) -> Vec<String> {
    let config = config();
    let p = Pipeline::with_options(
        PipelineOptions::parse([
            format!("--direct_num_workers={workers}"),
            "--streaming".to_string(),
        ])
        .unwrap(),
    );
    let events = p.nexmark_stream("Events", &config, None);
    let collected = query(q, &events, &config, &Output::Collect)
        .unwrap()
        .unwrap();
    p.run().unwrap().wait_until_finish().unwrap();
    let mut got = collected.values();
    got.sort();
    got
}

#[test]
fn streamed_events_give_the_batch_results() {
    // Windows fire as the generators' watermark passes them, state and timers persist
    // between bundles, auction windows merge as bids arrive: the same results.
    for q in [3, 5, 8, 9] {
        let batch = run(q, 1);
        for workers in [1, 2] {
            assert!(
                run_streaming(q, workers) == batch,
                "query {q}, {workers} workers: streaming results differ from batch"
            );
        }
    }
}
