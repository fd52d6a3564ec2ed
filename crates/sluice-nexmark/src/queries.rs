//! The thirteen Nexmark queries, written with sluice's public API.
//!
//! Each follows Beam Java's definition of the query (`sdks/java/testing/nexmark`): the
//! same filters, keys, windows, triggers and result types. Two differ in how, not what:
//! query 7 finds each window's highest bids with a combiner instead of a side input (the
//! more efficient way Beam's own comment recommends, and one that also runs in streaming
//! mode), and query 10 describes its log files instead of writing them to cloud storage
//! (Beam's writer is disabled; see [`query10`]).
//!
//! ```
//! use sluice::prelude::*;
//! use sluice_nexmark::generator::NexmarkConfig;
//! use sluice_nexmark::queries::{Output, query};
//! use sluice_nexmark::source::NexmarkRead;
//!
//! let config = NexmarkConfig { num_events: 2_000, ..NexmarkConfig::default() };
//! let p = Pipeline::for_test();
//! let events = p.nexmark_events("Events", &config);
//! let results = query(2, &events, &config, &Output::Collect).unwrap().unwrap();
//! p.run().unwrap().wait_until_finish().unwrap();
//! // Bids on auctions whose id is a multiple of 123.
//! assert!(results.values().iter().all(|r| r.starts_with(r#"{"auction":1107,"#) || r.starts_with(r#"{"auction":1230,"#)));
//! ```

use std::time::Duration;

use serde::Serialize;
use sluice::prelude::*;
use sluice::transforms::cogroup::{CoGbkResult, CoGroupByKey};
use sluice::transforms::stateful::{
    BagState, FiredTimer, State, StatefulDoFn, TimeDomain, Timer, ValueState,
};
use sluice::transforms::text::WriteText;
use sluice::transforms::windowing::WindowInto;
use sluice::trigger::Trigger;
use sluice::windowing::{FixedWindows, GlobalWindows, Sessions, SlidingWindows, WindowFn};
use sluice::{PaneTiming, Window};

use crate::generator::NexmarkConfig;
use crate::model::{Auction, Bid, Event, Person};
use crate::results::{
    AuctionBid, AuctionCount, AuctionPrice, BidsPerSession, CategoryPrice, Done, IdNameReserve,
    NameCityStateId, SellerPrice, to_json,
};

/// Where a query's results go.
#[derive(Clone, Debug)]
pub enum Output {
    /// Counted (the `results` counter of the `Results` transform), not kept.
    Count,
    /// Counted, and for each result how long after its window's end was due in wall time
    /// it arrived (a paced stream's latency).
    Latency(LatencyProbe),
    /// Kept in memory, as JSON lines, for the caller to read after the run.
    Collect,
    /// Written as JSON lines to text shards `PREFIX-SSSSS-of-NNNNN`.
    Text(String),
}

/// Counts results in a user metric.
#[derive(Clone)]
struct CountResults<T>(std::marker::PhantomData<fn(T)>);

impl<T: Element> DoFn for CountResults<T> {
    type In = T;
    type Out = ();
    fn process(&mut self, _: T, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        ctx.metrics().inc_counter("results", 1);
        Ok(())
    }
}

/// Measures, for each result, the wall time from when its window's end was due to when
/// the result arrived; the stream is paced so that event time `base_time_ms` is due at
/// wall time `wall_base_ms`. Results of windows flushed early because a finite stream
/// ended are counted (metric `results_flushed_at_end`), not sampled.
#[derive(Clone, Debug)]
pub struct LatencyProbe {
    /// Wall time (ms) at which the base time was due.
    pub wall_base_ms: i64,
    /// The generator's base time (ms).
    pub base_time_ms: i64,
    /// Latencies in ms, one per result fired once its window's end was due.
    pub samples: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
}

impl LatencyProbe {
    /// The `p`-th percentile (0-100) of the samples, if any.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        let mut samples = self.samples.lock().ok()?.clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
        samples.get(rank.min(samples.len() - 1)).copied()
    }
}

/// Records each result's latency.
#[derive(Clone)]
struct MeasureLatency<T> {
    probe: LatencyProbe,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Element> DoFn for MeasureLatency<T> {
    type In = T;
    type Out = ();
    fn process(&mut self, _: T, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        ctx.metrics().inc_counter("results", 1);
        let end_ms = ctx.window().max_timestamp().as_millis() + 1;
        let due = self.probe.wall_base_ms + (end_ms - self.probe.base_time_ms);
        let latency = crate::source::wall_ms() - due;
        if latency < 0 {
            // Fired before its end was due: the stream ended (its watermark went to the
            // end of time) and the window was flushed; that is not a latency.
            ctx.metrics().inc_counter("results_flushed_at_end", 1);
        } else if let Ok(mut samples) = self.probe.samples.lock() {
            samples.push(latency);
        }
        Ok(())
    }
}

/// Sends `results` to `output`; returns them when collected.
fn finish<T: Element + Serialize>(
    results: &PCollection<T>,
    output: &Output,
) -> sluice::Result<Option<Collected<String>>> {
    Ok(match output {
        Output::Count => {
            let _ = results.par_do("Results", CountResults(std::marker::PhantomData));
            None
        }
        Output::Latency(probe) => {
            let _ = results.par_do(
                "Results",
                MeasureLatency {
                    probe: probe.clone(),
                    _type: std::marker::PhantomData,
                },
            );
            None
        }
        Output::Collect => Some(results.map("Format", |r: T| to_json(&r)).collect("Results")),
        Output::Text(path) => {
            results
                .map("Format", |r: T| to_json(&r))
                .write_text_with("Results", WriteText::to(path).without_sharding());
            None
        }
    })
}

/// Runs query `n` (0 to 12) over `events`; the results go to `output`.
pub fn query(
    n: u32,
    events: &PCollection<Event>,
    config: &NexmarkConfig,
    output: &Output,
) -> sluice::Result<Option<Collected<String>>> {
    match n {
        0 => finish(&query0(events), output),
        1 => finish(&query1(events), output),
        2 => finish(&query2(events, config), output),
        3 => finish(&query3(events, config), output),
        4 => finish(&query4(events, config), output),
        5 => finish(&query5(events, config), output),
        6 => finish(&query6(events, config), output),
        7 => finish(&query7(events, config), output),
        8 => finish(&query8(events, config), output),
        9 => finish(&query9(events, config), output),
        10 => finish(&query10(events, config), output),
        11 => finish(&query11(events, config), output),
        12 => finish(&query12(events, config), output),
        _ => Err(sluice::OptionsError::Invalid {
            flag: "query".into(),
            value: n.to_string(),
            expected: "a Nexmark query from 0 to 12".into(),
        }
        .into()),
    }
}

/// The bids among the events.
fn bids(events: &PCollection<Event>) -> PCollection<Bid> {
    events.flat_map("JustBids", |e: Event| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

/// The new auctions among the events.
fn auctions(events: &PCollection<Event>) -> PCollection<Auction> {
    events.flat_map("JustAuctions", |e: Event| match e {
        Event::Auction(a) => Some(*a),
        _ => None,
    })
}

/// The new people among the events.
fn people(events: &PCollection<Event>) -> PCollection<Person> {
    events.flat_map("JustPeople", |e: Event| match e {
        Event::Person(p) => Some(*p),
        _ => None,
    })
}

fn seconds(s: i64) -> i64 {
    s.max(0) * 1000
}

/// Query 0, passthrough: every event, through a coder round trip.
pub fn query0(events: &PCollection<Event>) -> PCollection<Event> {
    events.par_do("Query0", RoundTrip { buffer: Vec::new() })
}

/// Encodes each event with its coder and decodes it again (the buffer is reused).
#[derive(Clone)]
struct RoundTrip {
    buffer: Vec<u8>,
}

impl DoFn for RoundTrip {
    type In = Event;
    type Out = Event;
    fn process(&mut self, e: Event, ctx: &mut Context<'_, Event>) -> Result<(), BoxError> {
        self.buffer.clear();
        e.encode_to(&mut self.buffer)?;
        ctx.emit(Event::decode_from(&mut &self.buffer[..])?);
        Ok(())
    }
}

/// Query 1, currency conversion: every bid with its price in euros (× 89 / 100).
pub fn query1(events: &PCollection<Event>) -> PCollection<Bid> {
    events.composite("Query1", |events| {
        bids(&events).map("ToEuros", |b: Bid| Bid {
            price: b.price * 89 / 100,
            ..b
        })
    })
}

/// Query 2, selection: the auction and price of bids on every `auction_skip`-th auction.
pub fn query2(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<AuctionPrice> {
    let skip = config.auction_skip.max(1);
    events.composite("Query2", |events| {
        bids(&events).flat_map("Select", move |b: Bid| {
            (b.auction % skip == 0).then_some(AuctionPrice {
                auction: b.auction,
                price: b.price,
            })
        })
    })
}

/// Joins each seller with their auctions, keeping the seller until their auctions arrive
/// and the auctions until their seller does; state is dropped after a quiet period.
#[derive(Clone)]
struct JoinSellers {
    person: ValueState<Person>,
    auctions: BagState<Auction>,
    expiry: Timer,
    max_wait_ms: i64,
}

impl StatefulDoFn for JoinSellers {
    type Key = i64;
    type Value = Event;
    type Out = NameCityStateId;

    fn process(
        &mut self,
        _id: &i64,
        event: Event,
        state: &mut State<'_>,
        ctx: &mut Context<'_, NameCityStateId>,
    ) -> Result<(), BoxError> {
        let existing = state.read(&self.person)?;
        let time = match event {
            Event::Person(person) => {
                let time = person.date_time;
                if existing.is_none() {
                    for auction in state.read_bag(&self.auctions)? {
                        ctx.emit(seller_of(&person, &auction));
                    }
                    state.clear(&self.auctions);
                    state.write(&self.person, &person)?;
                } else {
                    ctx.metrics().inc_counter("duplicatePerson", 1);
                }
                time
            }
            Event::Auction(auction) => {
                let time = auction.date_time;
                match existing {
                    Some(person) => ctx.emit(seller_of(&person, &auction)),
                    None => state.add(&self.auctions, &auction)?,
                }
                time
            }
            Event::Bid(_) => return Ok(()),
        };
        state.set_timer(
            &self.expiry,
            Timestamp::from_millis(time + self.max_wait_ms),
        );
        Ok(())
    }

    fn on_timer(
        &mut self,
        _id: &i64,
        _timer: &FiredTimer,
        state: &mut State<'_>,
        _ctx: &mut Context<'_, NameCityStateId>,
    ) -> Result<(), BoxError> {
        state.clear(&self.person);
        state.clear(&self.auctions);
        Ok(())
    }
}

fn seller_of(person: &Person, auction: &Auction) -> NameCityStateId {
    NameCityStateId {
        name: person.name.clone(),
        city: person.city.clone(),
        state: person.state.clone(),
        id: auction.id,
    }
}

/// Query 3, local item suggestion: who sells in OR, ID or CA in category 10, and which
/// auctions — a join of people and auctions kept in per-seller state.
pub fn query3(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<NameCityStateId> {
    let max_wait_ms = seconds(config.max_auctions_waiting_time_sec);
    events.composite("Query3", |events| {
        let auctions = auctions(&events)
            .filter("InCategory", |a: &Auction| a.category == 10)
            .map("BySeller", |a: Auction| {
                (a.seller, Event::Auction(Box::new(a)))
            });
        let people = people(&events)
            .filter("InState", |p: &Person| {
                matches!(p.state.as_str(), "OR" | "ID" | "CA")
            })
            .map("ById", |p: Person| (p.id, Event::Person(Box::new(p))));
        auctions
            .flatten_with("AuctionsAndPeople", &[people])
            .par_do_stateful(
                "Join",
                JoinSellers {
                    person: ValueState::new("person"),
                    auctions: BagState::new("auctions"),
                    expiry: Timer::new("stateExpiring", TimeDomain::EventTime),
                    max_wait_ms,
                },
            )
    })
}

/// Windows for WinningBids: an auction's window lasts from its opening until it
/// expires; a bid's window is provisional and merges into its auction's window if the
/// bid came before the auction expired.
#[derive(Clone, Copy, Debug)]
pub struct AuctionOrBidWindows {
    /// How long, at most, auctions are expected to last (ms).
    pub expected_auction_duration_ms: i64,
}

/// A window's tag: auction windows are odd.
const AUCTION_TAG: u64 = 1;
const BID_TAG: u64 = 0;

impl AuctionOrBidWindows {
    /// Beam's estimate: the slowest inter-event delay, over the share of auctions among
    /// events, times the auctions in flight.
    pub fn for_config(config: &NexmarkConfig) -> AuctionOrBidWindows {
        let longest_delay_us = config.timeline().longest_inter_event_delay_us() as i64;
        let us = longest_delay_us * 50 / 3 * i64::from(config.num_in_flight_auctions);
        AuctionOrBidWindows {
            expected_auction_duration_ms: (us + 999) / 1000,
        }
    }

    /// The window of an auction or a bid event.
    pub fn assign(&self, event: &Event) -> Vec<Window> {
        match event {
            Event::Auction(a) => vec![Window::Tagged {
                start: Timestamp::from_millis(a.date_time),
                end: Timestamp::from_millis(a.expires),
                tag: AUCTION_TAG,
            }],
            Event::Bid(b) => vec![Window::Tagged {
                start: Timestamp::from_millis(b.date_time),
                end: Timestamp::from_millis(b.date_time + 2 * self.expected_auction_duration_ms),
                tag: BID_TAG,
            }],
            Event::Person(_) => Vec::new(),
        }
    }
}

impl WindowFn for AuctionOrBidWindows {
    fn assign(&self, _timestamp: Timestamp) -> Vec<Window> {
        // Assignment needs the event: see `AuctionOrBidWindows::assign`.
        Vec::new()
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn merge(&self, windows: &[Window]) -> Vec<(Window, Vec<usize>)> {
        // A key is one auction: its auction window takes every bid window that starts
        // before the auction expires.
        let Some((auction_index, auction_window)) = windows.iter().enumerate().find(|(_, w)| {
            matches!(
                w,
                Window::Tagged {
                    tag: AUCTION_TAG,
                    ..
                }
            )
        }) else {
            return Vec::new();
        };
        let Window::Tagged { end, .. } = *auction_window else {
            return Vec::new();
        };
        let bids: Vec<usize> = windows
            .iter()
            .enumerate()
            .filter(
                |(_, w)| matches!(w, Window::Tagged { tag: BID_TAG, start, .. } if *start < end),
            )
            .map(|(i, _)| i)
            .collect();
        if bids.is_empty() {
            return Vec::new();
        }
        let mut members = bids;
        members.push(auction_index);
        vec![(*auction_window, members)]
    }

    fn describe(&self) -> String {
        format!(
            "AuctionOrBidWindows(expected auction duration {}ms)",
            self.expected_auction_duration_ms
        )
    }
}

/// Whether `bid` beats `best`: a higher price, or the same price earlier (then the lower
/// bidder, so that ties have one answer).
pub fn better_bid(bid: &Bid, best: &Bid) -> bool {
    (bid.price, -bid.date_time, -bid.bidder) > (best.price, -best.date_time, -best.bidder)
}

/// WinningBids: each closed auction with its winning bid — the highest bid at or above
/// the reserve placed before the auction expired.
pub fn winning_bids(
    events: &PCollection<Event>,
    config: &NexmarkConfig,
) -> PCollection<AuctionBid> {
    let windows = AuctionOrBidWindows::for_config(config);
    events.composite("WinningBids", |events| {
        let windowed = events
            .filter("AuctionOrBid", |e: &Event| !matches!(e, Event::Person(_)))
            .window_into_by("Window", windows, move |e: &Event, _| windows.assign(e));
        let auction_tag = TupleTag::<Auction>::new("auction");
        let bid_tag = TupleTag::<Bid>::new("bid");
        let auctions = auctions(&windowed).map("ById", |a: Auction| (a.id, a));
        let bids = bids(&windowed).map("ByAuction", |b: Bid| (b.auction, b));
        let (a_tag, b_tag) = (auction_tag.clone(), bid_tag.clone());
        CoGroupByKey::new()
            .and(&auction_tag, &auctions)
            .and(&bid_tag, &bids)
            .apply("CoGroup")
            .par_do(
                "Join",
                PickWinner {
                    auction: a_tag,
                    bid: b_tag,
                },
            )
    })
}

/// Picks each auction's winning bid.
#[derive(Clone)]
struct PickWinner {
    auction: TupleTag<Auction>,
    bid: TupleTag<Bid>,
}

impl DoFn for PickWinner {
    type In = (i64, CoGbkResult);
    type Out = AuctionBid;

    fn process(
        &mut self,
        (_, grouped): (i64, CoGbkResult),
        ctx: &mut Context<'_, AuctionBid>,
    ) -> Result<(), BoxError> {
        let Some(auction) = grouped.try_get(&self.auction)?.pop() else {
            ctx.metrics().inc_counter("noAuction", 1);
            return Ok(());
        };
        let mut best: Option<Bid> = None;
        for bid in grouped.try_get(&self.bid)? {
            if bid.date_time >= auction.expires {
                return Err(format!(
                    "bid at {} merged into auction {} expiring at {}",
                    bid.date_time, auction.id, auction.expires
                )
                .into());
            }
            if bid.price < auction.reserve {
                ctx.metrics().inc_counter("underReserve", 1);
                continue;
            }
            if best.as_ref().is_none_or(|b| better_bid(&bid, b)) {
                best = Some(bid);
            }
        }
        match best {
            Some(bid) => ctx.emit(AuctionBid { auction, bid }),
            None => ctx.metrics().inc_counter("noValidBids", 1),
        }
        Ok(())
    }
}

/// The mean of prices, as Beam's `Mean` of longs.
#[derive(Clone)]
struct MeanPrice;

impl CombineFn for MeanPrice {
    type Input = i64;
    type Accumulator = (i64, u64);
    type Output = f64;
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add_input(&self, acc: &mut (i64, u64), price: i64) {
        acc.0 += price;
        acc.1 += 1;
    }
    fn merge_accumulators(&self, acc: &mut (i64, u64), other: (i64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract_output(&self, (sum, n): (i64, u64)) -> f64 {
        if n == 0 {
            f64::NAN
        } else {
            sum as f64 / n as f64
        }
    }
}

/// Java's `Math.round`.
fn round(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

/// Query 4, average price for a category: the mean winning price per category, over
/// sliding windows of `window_size_sec` every `window_period_sec`.
pub fn query4(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<CategoryPrice> {
    let size = seconds(config.window_size_sec);
    let period = seconds(config.window_period_sec);
    let fanout = config.fanout;
    let winners = winning_bids(events, config);
    winners.composite("Query4", move |winners| {
        winners
            .map("Rekey", |w: AuctionBid| (w.auction.category, w.bid.price))
            .window_into("Sliding", SlidingWindows::of_millis(size, period))
            .combine_per_key_with_fanout("Mean", fanout, MeanPrice)
            .par_do("Project", ProjectCategoryPrice)
    })
}

/// Rounds a category's mean and notes whether its pane is the last.
#[derive(Clone)]
struct ProjectCategoryPrice;

impl DoFn for ProjectCategoryPrice {
    type In = (i64, f64);
    type Out = CategoryPrice;
    fn process(
        &mut self,
        (category, mean): (i64, f64),
        ctx: &mut Context<'_, CategoryPrice>,
    ) -> Result<(), BoxError> {
        let is_last = ctx.pane().is_last;
        ctx.emit(CategoryPrice {
            category,
            price: round(mean),
            is_last,
        });
        Ok(())
    }
}

/// Keeps the auctions with the most bids.
#[derive(Clone)]
struct TopAuctions;

impl CombineFn for TopAuctions {
    type Input = (i64, u64);
    /// (count, auctions with it)
    type Accumulator = (u64, Vec<i64>);
    type Output = (u64, Vec<i64>);
    fn create_accumulator(&self) -> (u64, Vec<i64>) {
        (0, Vec::new())
    }
    fn add_input(&self, acc: &mut (u64, Vec<i64>), (auction, count): (i64, u64)) {
        if count > acc.0 {
            *acc = (count, vec![auction]);
        } else if count == acc.0 {
            acc.1.push(auction);
        }
    }
    fn merge_accumulators(&self, acc: &mut (u64, Vec<i64>), other: (u64, Vec<i64>)) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn extract_output(&self, acc: (u64, Vec<i64>)) -> (u64, Vec<i64>) {
        acc
    }
}

/// Query 5, hot items: per sliding window, the auctions with the most bids.
pub fn query5(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<AuctionCount> {
    let size = seconds(config.window_size_sec);
    let period = seconds(config.window_period_sec);
    let fanout = config.fanout;
    events.composite("Query5", move |events| {
        bids(&events)
            .window_into("Sliding", SlidingWindows::of_millis(size, period))
            .map("BidToAuction", |b: Bid| b.auction)
            .count_per_element("CountPerAuction")
            .map("AllInWindow", |(auction, n): (i64, u64)| ((), (auction, n)))
            .combine_per_key_with_fanout("Top", fanout, TopAuctions)
            .flat_map(
                "Select",
                |((), (count, auctions)): ((), (u64, Vec<i64>))| {
                    auctions.into_iter().map(move |auction| AuctionCount {
                        auction,
                        num: count as i64,
                    })
                },
            )
    })
}

/// The average price of a seller's ten most recent winning bids.
#[derive(Clone)]
struct MovingMeanSellingPrice {
    max_bids: usize,
}

impl MovingMeanSellingPrice {
    fn keep_latest(&self, bids: &mut Vec<Bid>) {
        bids.sort_by_key(|b| (b.date_time, b.price, b.bidder, b.auction));
        if bids.len() > self.max_bids {
            bids.drain(..bids.len() - self.max_bids);
        }
    }
}

impl CombineFn for MovingMeanSellingPrice {
    type Input = Bid;
    type Accumulator = Vec<Bid>;
    type Output = i64;
    fn create_accumulator(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<Bid>, bid: Bid) {
        acc.push(bid);
        self.keep_latest(acc);
    }
    fn merge_accumulators(&self, acc: &mut Vec<Bid>, other: Vec<Bid>) {
        acc.extend(other);
        self.keep_latest(acc);
    }
    fn extract_output(&self, acc: Vec<Bid>) -> i64 {
        if acc.is_empty() {
            return 0;
        }
        let sum: i64 = acc.iter().map(|b| b.price).sum();
        round(sum as f64 / acc.len() as f64)
    }
}

/// Query 6, average selling price by seller: after each winning bid, the average price
/// of the seller's last ten winning bids (accumulating panes in the global window).
pub fn query6(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<SellerPrice> {
    let winners = winning_bids(events, config);
    winners.composite("Query6", |winners| {
        winners
            .map("Rekey", |w: AuctionBid| (w.auction.seller, w.bid))
            .window(
                "EveryWinner",
                WindowInto::new(GlobalWindows)
                    .triggering(Trigger::repeatedly(Trigger::after_count(1)))
                    .accumulating_fired_panes(),
            )
            .combine_per_key("MovingMean", MovingMeanSellingPrice { max_bids: 10 })
            .map("Select", |(seller, price): (i64, i64)| SellerPrice {
                seller,
                price,
            })
    })
}

/// Keeps the bids with the highest price.
#[derive(Clone)]
struct HighestBids;

impl CombineFn for HighestBids {
    type Input = Bid;
    type Accumulator = Vec<Bid>;
    type Output = Vec<Bid>;
    fn create_accumulator(&self) -> Vec<Bid> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<Bid>, bid: Bid) {
        match acc.first().map(|b| b.price) {
            Some(max) if bid.price < max => {}
            Some(max) if bid.price == max => acc.push(bid),
            _ => *acc = vec![bid],
        }
    }
    fn merge_accumulators(&self, acc: &mut Vec<Bid>, other: Vec<Bid>) {
        for bid in other {
            self.add_input(acc, bid);
        }
    }
    fn extract_output(&self, acc: Vec<Bid>) -> Vec<Bid> {
        acc
    }
}

/// Query 7, highest bid: per fixed window, the bids with the highest price.
pub fn query7(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<Bid> {
    let size = seconds(config.window_size_sec);
    let fanout = config.fanout;
    events.composite("Query7", move |events| {
        bids(&events)
            .window_into("Fixed", FixedWindows::of_millis(size))
            .map("AllInWindow", |b: Bid| ((), b))
            .combine_per_key_with_fanout("Highest", fanout, HighestBids)
            .flat_map("Select", |((), bids): ((), Vec<Bid>)| bids)
    })
}

/// Lists the auctions of each person who registered in the same window.
#[derive(Clone)]
struct NewSellers {
    person: TupleTag<Person>,
    auction: TupleTag<Auction>,
}

impl DoFn for NewSellers {
    type In = (i64, CoGbkResult);
    type Out = IdNameReserve;
    fn process(
        &mut self,
        (_, grouped): (i64, CoGbkResult),
        ctx: &mut Context<'_, IdNameReserve>,
    ) -> Result<(), BoxError> {
        let Some(person) = grouped.try_get(&self.person)?.pop() else {
            return Ok(());
        };
        for auction in grouped.try_get(&self.auction)? {
            ctx.emit(IdNameReserve {
                id: person.id,
                name: person.name.clone(),
                reserve: auction.reserve,
            });
        }
        Ok(())
    }
}

/// Query 8, monitor new users: people who opened an auction in the same fixed window as
/// they registered.
pub fn query8(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<IdNameReserve> {
    let size = seconds(config.window_size_sec);
    events.composite("Query8", move |events| {
        let people = people(&events)
            .window_into("WindowPeople", FixedWindows::of_millis(size))
            .map("ById", |p: Person| (p.id, p));
        let auctions = auctions(&events)
            .window_into("WindowAuctions", FixedWindows::of_millis(size))
            .map("BySeller", |a: Auction| (a.seller, a));
        let person = TupleTag::<Person>::new("person");
        let auction = TupleTag::<Auction>::new("auction");
        CoGroupByKey::new()
            .and(&person, &people)
            .and(&auction, &auctions)
            .apply("Join")
            .par_do("Select", NewSellers { person, auction })
    })
}

/// Query 9, winning bids.
pub fn query9(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<AuctionBid> {
    winning_bids(events, config)
}

/// The index of one log file: window, shard, pane.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OutputFile {
    max_timestamp: i64,
    shard: String,
    index: u32,
    timing: String,
}

sluice::serde_coder!(OutputFile);

/// Shards per worker of query 10's logs.
const SHARDS_PER_WORKER: u64 = 5;

/// Describes the log file one shard's pane of events goes to.
#[derive(Clone)]
struct DescribeLogFile;

impl DoFn for DescribeLogFile {
    type In = (String, Vec<Event>);
    type Out = ((), OutputFile);
    fn process(
        &mut self,
        (shard, events): (String, Vec<Event>),
        ctx: &mut Context<'_, ((), OutputFile)>,
    ) -> Result<(), BoxError> {
        let pane = ctx.pane();
        let timing = match pane.timing {
            PaneTiming::Early => "E",
            PaneTiming::OnTime => "O",
            PaneTiming::Late => "L",
            PaneTiming::Unknown => "U",
        };
        ctx.metrics()
            .inc_counter("writtenRecords", events.len() as i64);
        ctx.emit((
            (),
            OutputFile {
                max_timestamp: ctx.window().max_timestamp().as_millis(),
                shard,
                index: pane.index,
                timing: timing.into(),
            },
        ));
        Ok(())
    }
}

/// Completes a window once its log files are indexed.
#[derive(Clone)]
struct IndexWindow;

impl DoFn for IndexWindow {
    type In = ((), Vec<OutputFile>);
    type Out = Done;
    fn process(
        &mut self,
        ((), files): ((), Vec<OutputFile>),
        ctx: &mut Context<'_, Done>,
    ) -> Result<(), BoxError> {
        let pane = ctx.pane();
        match pane.timing {
            PaneTiming::Late => ctx.metrics().inc_counter("ERROR_unexpectedLate", 1),
            PaneTiming::Early => ctx.metrics().inc_counter("ERROR_unexpectedEarly", 1),
            PaneTiming::OnTime if pane.index != 0 => {
                ctx.metrics().inc_counter("ERROR_unexpectedIndex", 1)
            }
            _ => {
                ctx.metrics()
                    .inc_counter("indexedFiles", files.len() as i64);
                ctx.emit(Done {
                    message: format!(
                        "written for timestamp {}",
                        iso8601(ctx.window().max_timestamp().as_millis())
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A time as Java's `Instant.toString()` writes it (`2015-07-15T00:00:09.999Z`).
pub fn iso8601(millis: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| millis.to_string())
}

/// Query 10, log to sharded files: every event goes to one of `workers × 5` shards per
/// fixed window, in panes of at most `max_log_events` (early), then on time, then in late
/// batches; each pane is one log file, and each window's files are indexed once the
/// window is complete.
///
/// Beam's version uploads each pane to cloud storage from inside a DoFn; its uploader is
/// disabled, so it runs without writing files, producing the same descriptions and
/// completions as this one. The `Done` results, one per window, are the query's output.
pub fn query10(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<Done> {
    let size = seconds(config.window_size_sec);
    let max_log_events = config.max_log_events;
    let shards = SHARDS_PER_WORKER * events.pipeline().options().workers().max(1) as u64;
    events.composite("Query10", move |events| {
        let day = Duration::from_secs(24 * 3600);
        events
            .map("ShardEvents", move |e: Event| {
                let mut bytes = Vec::new();
                let _ = e.encode_to(&mut bytes);
                let shard = shard_hash(&bytes) % shards;
                (format!("shard-{shard:05}-of-{shards:05}"), e)
            })
            .window(
                "WindowEvents",
                WindowInto::new(FixedWindows::of_millis(size))
                    .triggering(Trigger::after_each(vec![
                        Trigger::repeatedly(Trigger::after_count(max_log_events))
                            .or_finally(Trigger::after_watermark()),
                        Trigger::repeatedly(Trigger::after_any(vec![
                            Trigger::after_count(max_log_events),
                            Trigger::after_processing_time(Duration::from_secs(10)),
                        ])),
                    ]))
                    .discarding_fired_panes()
                    .with_allowed_lateness(day),
            )
            .group_by_key("GroupByKey")
            .par_do("UploadEvents", DescribeLogFile)
            .window(
                "WindowLogFiles",
                WindowInto::new(FixedWindows::of_millis(size))
                    .triggering(Trigger::Default)
                    .with_allowed_lateness(day)
                    .discarding_fired_panes(),
            )
            .group_by_key("GroupByKey2")
            .par_do("Index", IndexWindow)
    })
}

/// A stable hash of an event's encoding (FNV-1a), to pick its shard.
fn shard_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Query 11, user sessions: bids per bidder per session (gap `window_size_sec`), in
/// panes of at most `max_log_events`.
pub fn query11(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<BidsPerSession> {
    let gap = seconds(config.window_size_sec);
    let max_log_events = config.max_log_events;
    // Beam's allowed lateness: half the occasional delay, in whole seconds (3 / 2 = 1).
    let lateness = Duration::from_secs(OCCASIONAL_DELAY_SEC / 2);
    events.composite("Query11", move |events| {
        bids(&events)
            .map("Rekey", |b: Bid| b.bidder)
            .window(
                "Sessions",
                WindowInto::new(Sessions::with_gap_millis(gap))
                    .triggering(Trigger::repeatedly(Trigger::after_count(max_log_events)))
                    .discarding_fired_panes()
                    .with_allowed_lateness(lateness),
            )
            .count_per_element("BidsPerSession")
            .map("ToResult", |(person_id, n): (i64, u64)| BidsPerSession {
                person_id,
                bids_per_session: n as i64,
            })
    })
}

/// Beam's default occasional delay, in seconds.
const OCCASIONAL_DELAY_SEC: u64 = 3;

/// Query 12, processing-time windows: bids per bidder, in panes every `window_size_sec`
/// of processing time after a bidder's first bid in the pane.
pub fn query12(events: &PCollection<Event>, config: &NexmarkConfig) -> PCollection<BidsPerSession> {
    let delay = Duration::from_millis(seconds(config.window_size_sec) as u64);
    events.composite("Query12", move |events| {
        bids(&events)
            .map("Rekey", |b: Bid| b.bidder)
            .window(
                "ProcessingTime",
                WindowInto::new(GlobalWindows)
                    .triggering(Trigger::repeatedly(Trigger::after_processing_time(delay)))
                    .discarding_fired_panes(),
            )
            .count_per_element("BidsPerWindow")
            .map("ToResult", |(person_id, n): (i64, u64)| BidsPerSession {
                person_id,
                bids_per_session: n as i64,
            })
    })
}

/// The plain description of each query, for help texts.
pub const DESCRIPTIONS: [&str; 13] = [
    "passthrough",
    "currency conversion",
    "selection",
    "local item suggestion",
    "average price for a category",
    "hot items",
    "average selling price by seller",
    "highest bid",
    "monitor new users",
    "winning bids",
    "log to sharded files",
    "user sessions",
    "processing-time windows",
];
