//! Beam's Nexmark event generator, reproduced event for event.
//!
//! Every event is a pure function of its *event id*: the generator seeds a Java
//! [`JavaRandom`] with the id and draws the event's fields from it, exactly as Beam's Java
//! `Generator` does, so the same id gives the same person, auction or bid — same ids,
//! names, prices and extras — however the events are split across workers.
//!
//! Time is the other half. Like Beam's bounded and unbounded Nexmark sources, the event
//! space of `num_events` is split into `num_event_generators` (100 by default)
//! sub-generators that run on *parallel timelines*: generator `g` owns a contiguous run of
//! event ids, and its `k`-th event happens `k` inter-event delays after the base time
//! (2015-07-15T00:00:00Z). The overall rate (10,000 events/s by default) is shared by the
//! generators, so each advances time 100 times more slowly.
//!
//! ```
//! use sluice_nexmark::generator::NexmarkConfig;
//! use sluice_nexmark::model::Event;
//!
//! let config = NexmarkConfig::default();
//! let (event, millis) = config.event_at(0);
//! let Event::Person(person) = event else { unreachable!() };
//! assert_eq!((person.id, person.name.as_str(), person.city.as_str()), (1000, "Peter Jones", "Portland"));
//! assert_eq!(millis, 1_436_918_400_000);
//! ```

use crate::java_random::JavaRandom;
use crate::model::{Auction, Bid, Event, Person};

/// Ids start here, so that small runs still find matches.
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The first person id.
pub const FIRST_PERSON_ID: i64 = 1000;
/// The first category id.
pub const FIRST_CATEGORY_ID: i64 = 10;

const PERSON_PROPORTION: i64 = 1;
const AUCTION_PROPORTION: i64 = 3;
const BID_PROPORTION: i64 = 46;
const PROPORTION_DENOMINATOR: i64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

const NUM_CATEGORIES: i32 = 5;
const AUCTION_ID_LEAD: i64 = 10;
const PERSON_ID_LEAD: i64 = 10;
const HOT_SELLER_RATIO: i64 = 100;
const HOT_AUCTION_RATIO: i64 = 100;
const HOT_BIDDER_RATIO: i64 = 100;
const MIN_STRING_LENGTH: i32 = 3;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// 2015-07-15T00:00:00Z, in ms: the time of every generator's first event.
pub const BASE_TIME_MS: i64 = 1_436_918_400_000;

/// How the event rate varies over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateShape {
    /// Alternates between the first and the next rate.
    Square,
    /// Follows a cosine from the first rate to the next and back, in ten steps.
    Sine,
}

/// The configuration of a Nexmark run: Beam's `NexmarkConfiguration`, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NexmarkConfig {
    /// Events to generate; 0 for an unbounded stream.
    pub num_events: u64,
    /// Generators, each on its own timeline.
    pub num_event_generators: u32,
    /// Shape of the rate curve (only matters when the two rates differ).
    pub rate_shape: RateShape,
    /// Initial overall event rate, in events per `rate_unit_us`.
    pub first_event_rate: u32,
    /// Next overall event rate.
    pub next_event_rate: u32,
    /// Microseconds per rate unit (1,000,000: rates are per second).
    pub rate_unit_us: u64,
    /// Period of the rate shape, in seconds.
    pub rate_period_sec: u32,
    /// Average size of a person event, in bytes.
    pub avg_person_byte_size: i32,
    /// Average size of an auction event, in bytes.
    pub avg_auction_byte_size: i32,
    /// Average size of a bid event, in bytes.
    pub avg_bid_byte_size: i32,
    /// Ratio of bids on hot auctions to bids on others.
    pub hot_auction_ratio: i32,
    /// Ratio of auctions by hot sellers to auctions by others.
    pub hot_sellers_ratio: i32,
    /// Ratio of bids by hot bidders to bids by others.
    pub hot_bidders_ratio: i32,
    /// Auctions in flight at any time, per generator.
    pub num_in_flight_auctions: i32,
    /// People considered active for new auctions and bids.
    pub num_active_people: i32,
    /// Events per out-of-order group (1: in order).
    pub out_of_order_group_size: i64,
    /// Time of the first event, ms since the epoch.
    pub base_time_ms: i64,
    /// Window size, in seconds, for queries 3, 5, 7, 8, 11 and 12.
    pub window_size_sec: i64,
    /// Sliding period, in seconds, for queries 4 and 5.
    pub window_period_sec: i64,
    /// Query 2 selects bids on every `auction_skip`-th auction.
    pub auction_skip: i64,
    /// Fan-out of the global combines of queries 5 and 7.
    pub fanout: u32,
    /// Events per log file shard, for query 10.
    pub max_log_events: u64,
    /// How long query 3 keeps a person waiting for auctions, in seconds of event time.
    pub max_auctions_waiting_time_sec: i64,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            num_events: 100_000,
            num_event_generators: 100,
            rate_shape: RateShape::Sine,
            first_event_rate: 10_000,
            next_event_rate: 10_000,
            rate_unit_us: 1_000_000,
            rate_period_sec: 600,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            num_in_flight_auctions: 100,
            num_active_people: 1000,
            out_of_order_group_size: 1,
            base_time_ms: BASE_TIME_MS,
            window_size_sec: 10,
            window_period_sec: 5,
            auction_skip: 123,
            fanout: 5,
            max_log_events: 100_000,
            max_auctions_waiting_time_sec: 600,
        }
    }
}

/// One sub-generator's share of the event space: event ids `first_event_id..` on a timeline
/// that starts at event number `first_event_number`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorRange {
    /// The id of the generator's first event.
    pub first_event_id: u64,
    /// The event number (time position) of its first event.
    pub first_event_number: u64,
    /// How many events it generates.
    pub max_events: u64,
}

/// Times derived from a configuration's rates.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// Delay between a generator's events, in microseconds, per rate step.
    inter_event_delay_us: Vec<u64>,
    step_length_sec: u64,
    events_per_epoch: u64,
    epoch_period_ms: u64,
    base_time_ms: i64,
    out_of_order_group_size: u64,
}

fn rate_to_period_us(unit_us: u64, rate: u64) -> u64 {
    (unit_us + rate / 2) / rate
}

impl NexmarkConfig {
    /// The event-time layout of this configuration.
    pub fn timeline(&self) -> Timeline {
        let gens = u64::from(self.num_event_generators.max(1));
        let first = u64::from(self.first_event_rate.max(1));
        let next = u64::from(self.next_event_rate.max(1));
        let inter_event_delay_us = if first == next {
            vec![rate_to_period_us(self.rate_unit_us, first) * gens]
        } else {
            match self.rate_shape {
                RateShape::Square => vec![
                    rate_to_period_us(self.rate_unit_us, first) * gens,
                    rate_to_period_us(self.rate_unit_us, next) * gens,
                ],
                RateShape::Sine => {
                    let mid = (first + next) as f64 / 2.0;
                    let amp = (first as f64 - next as f64) / 2.0;
                    (0..10)
                        .map(|i| {
                            let r = 2.0 * std::f64::consts::PI * f64::from(i) / 10.0;
                            let rate = (mid + amp * r.cos()).round().max(1.0) as u64;
                            rate_to_period_us(self.rate_unit_us, rate) * gens
                        })
                        .collect()
                }
            }
        };
        let steps = match self.rate_shape {
            RateShape::Square => 2,
            RateShape::Sine => 10,
        };
        let step_length_sec = u64::from(self.rate_period_sec).div_ceil(steps);
        let (mut events_per_epoch, mut epoch_period_ms) = (0, 0);
        if inter_event_delay_us.len() > 1 {
            for d in &inter_event_delay_us {
                let n = step_length_sec * 1_000_000 / d;
                events_per_epoch += n;
                epoch_period_ms += n * d / 1000;
            }
        }
        Timeline {
            inter_event_delay_us,
            step_length_sec,
            events_per_epoch,
            epoch_period_ms,
            base_time_ms: self.base_time_ms,
            out_of_order_group_size: self.out_of_order_group_size.max(1) as u64,
        }
    }

    /// The generators' shares of the event space, as Beam splits it: `num_event_generators`
    /// contiguous runs of ids, each on a timeline of its own; the last takes the remainder.
    pub fn generator_ranges(&self) -> Vec<GeneratorRange> {
        let n = u64::from(self.num_event_generators.max(1));
        let total = self.max_events();
        let per = total / n;
        let mut first = 0;
        (0..n)
            .map(|i| {
                let max_events = if i == n - 1 {
                    total - per * (n - 1)
                } else {
                    per
                };
                let range = GeneratorRange {
                    first_event_id: first,
                    first_event_number: 0,
                    max_events,
                };
                first += max_events;
                range
            })
            .collect()
    }

    /// How many events the configuration generates (a very large number when unbounded).
    pub fn max_events(&self) -> u64 {
        if self.num_events > 0 {
            return self.num_events;
        }
        // Beam scales the unbounded maximum down so that size estimates cannot overflow.
        let largest = self
            .avg_person_byte_size
            .max(self.avg_auction_byte_size)
            .max(self.avg_bid_byte_size)
            .max(1) as u64;
        i64::MAX as u64 / (PROPORTION_DENOMINATOR as u64 * largest)
    }

    /// The event with id `id` and its time (ms since the epoch), as the generator owning
    /// that id produces it.
    pub fn event_at(&self, id: u64) -> (Event, i64) {
        let ranges = self.generator_ranges();
        let range = ranges
            .iter()
            .find(|r| id >= r.first_event_id && id < r.first_event_id + r.max_events)
            .copied()
            .unwrap_or(GeneratorRange {
                first_event_id: 0,
                first_event_number: 0,
                max_events: u64::MAX,
            });
        let timeline = self.timeline();
        let generator = Generator::new(self, &timeline);
        generator.event(&range, id - range.first_event_id)
    }
}

impl Timeline {
    /// The time (ms) of the event at `event_number` on a generator's timeline.
    pub fn timestamp_ms(&self, event_number: u64) -> i64 {
        if let [delay] = self.inter_event_delay_us[..] {
            return self.base_time_ms + (event_number.wrapping_mul(delay) / 1000) as i64;
        }
        let epoch = event_number / self.events_per_epoch;
        let mut n = event_number % self.events_per_epoch;
        let mut offset_in_epoch_ms = 0;
        for delay in &self.inter_event_delay_us {
            let in_cycle = self.step_length_sec * 1_000_000 / delay;
            if n < in_cycle {
                let offset_in_cycle_us = n * delay;
                return self.base_time_ms
                    + (epoch * self.epoch_period_ms
                        + offset_in_epoch_ms
                        + offset_in_cycle_us / 1000) as i64;
            }
            n -= in_cycle;
            offset_in_epoch_ms += in_cycle * delay / 1000;
        }
        unreachable!("events_per_epoch covers every step")
    }

    /// The longest delay (µs) between a generator's events: at the slowest rate.
    pub fn longest_inter_event_delay_us(&self) -> u64 {
        self.inter_event_delay_us.iter().copied().max().unwrap_or(0)
    }

    /// The delay (µs) between a generator's events around `event_number`.
    pub fn inter_event_delay_us(&self, event_number: u64) -> u64 {
        if let [delay] = self.inter_event_delay_us[..] {
            return delay;
        }
        let mut n = event_number % self.events_per_epoch;
        for delay in &self.inter_event_delay_us {
            let in_cycle = self.step_length_sec * 1_000_000 / delay;
            if n < in_cycle {
                return *delay;
            }
            n -= in_cycle;
        }
        self.inter_event_delay_us[0]
    }

    /// The event number of the `count`-th event of a generator whose timeline starts at
    /// `first`, after the out-of-order shuffle within groups.
    pub fn adjusted_event_number(&self, first: u64, count: u64) -> u64 {
        let n = self.out_of_order_group_size;
        let number = first + count;
        let base = (number / n) * n;
        let offset = (number.wrapping_mul(953)) % n;
        base + offset
    }

    /// The event time below which a generator that has emitted `count` events will emit
    /// nothing more: its watermark, in ms.
    pub fn watermark_ms(&self, first: u64, count: u64) -> i64 {
        let n = self.out_of_order_group_size;
        self.timestamp_ms(((first + count) / n) * n)
    }
}

/// Generates the events of a configuration.
#[derive(Clone, Debug)]
pub struct Generator {
    timeline: Timeline,
    avg_person_byte_size: i32,
    avg_auction_byte_size: i32,
    avg_bid_byte_size: i32,
    hot_auction_ratio: i32,
    hot_sellers_ratio: i32,
    hot_bidders_ratio: i32,
    num_in_flight_auctions: i64,
    num_active_people: i64,
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: &NexmarkConfig, timeline: &Timeline) -> Generator {
        Generator {
            timeline: timeline.clone(),
            avg_person_byte_size: config.avg_person_byte_size,
            avg_auction_byte_size: config.avg_auction_byte_size,
            avg_bid_byte_size: config.avg_bid_byte_size,
            hot_auction_ratio: config.hot_auction_ratio.max(1),
            hot_sellers_ratio: config.hot_sellers_ratio.max(1),
            hot_bidders_ratio: config.hot_bidders_ratio.max(1),
            num_in_flight_auctions: i64::from(config.num_in_flight_auctions),
            num_active_people: i64::from(config.num_active_people),
        }
    }

    /// The timeline the generator places events on.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The `count`-th event of the generator owning `range`, with its time in ms.
    pub fn event(&self, range: &GeneratorRange, count: u64) -> (Event, i64) {
        let number = self
            .timeline
            .adjusted_event_number(range.first_event_number, count);
        let timestamp = self.timeline.timestamp_ms(number);
        let id = (range.first_event_id + number) as i64;
        let mut random = JavaRandom::new(id);
        let rem = id % PROPORTION_DENOMINATOR;
        let event = if rem < PERSON_PROPORTION {
            Event::Person(Box::new(self.person(id, &mut random, timestamp)))
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(Box::new(self.auction(number, id, &mut random, timestamp)))
        } else {
            Event::Bid(self.bid(id, &mut random, timestamp))
        };
        (event, timestamp)
    }

    fn person(&self, id: i64, random: &mut JavaRandom, timestamp: i64) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[random.next_int_bounded(FIRST_NAMES.len() as i32) as usize],
            LAST_NAMES[random.next_int_bounded(LAST_NAMES.len() as i32) as usize]
        );
        let mut email_address = next_string(random, 7);
        email_address.push('@');
        email_address.push_str(&next_string(random, 5));
        email_address.push_str(".com");
        let mut credit_card = String::with_capacity(19);
        for i in 0..4 {
            if i > 0 {
                credit_card.push(' ');
            }
            let digits = random.next_int_bounded(10_000);
            credit_card.push_str(&format!("{digits:04}"));
        }
        let city = US_CITIES[random.next_int_bounded(US_CITIES.len() as i32) as usize];
        let state = US_STATES[random.next_int_bounded(US_STATES.len() as i32) as usize];
        let current =
            8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = next_extra(random, current as i32, self.avg_person_byte_size);
        Person {
            id: last_base0_person_id(id) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city: city.to_string(),
            state: state.to_string(),
            date_time: timestamp,
            extra,
        }
    }

    fn auction(&self, number: u64, id: i64, random: &mut JavaRandom, timestamp: i64) -> Auction {
        let auction_id = last_base0_auction_id(id) + FIRST_AUCTION_ID;
        let seller = if random.next_int_bounded(self.hot_sellers_ratio) > 0 {
            (last_base0_person_id(id) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            self.next_base0_person_id(id, random)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + i64::from(random.next_int_bounded(NUM_CATEGORIES));
        let initial_bid = next_price(random);
        // Auctions last on average as long as it takes to open `num_in_flight_auctions`
        // more.
        let events_for_auctions =
            self.num_in_flight_auctions * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
        let future = self
            .timeline
            .timestamp_ms(number + events_for_auctions.max(0) as u64);
        let horizon = future - timestamp;
        let expires = timestamp + 1 + next_long(random, (horizon * 2).max(1));
        let item_name = next_string(random, 20);
        let description = next_string(random, 100);
        let reserve = initial_bid + next_price(random);
        let current = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = next_extra(random, current as i32, self.avg_auction_byte_size);
        Auction {
            id: auction_id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: timestamp,
            expires,
            seller,
            category,
            extra,
        }
    }

    fn bid(&self, id: i64, random: &mut JavaRandom, timestamp: i64) -> Bid {
        let auction = if random.next_int_bounded(self.hot_auction_ratio) > 0 {
            (last_base0_auction_id(id) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            self.next_base0_auction_id(id, random)
        } + FIRST_AUCTION_ID;
        let bidder = if random.next_int_bounded(self.hot_bidders_ratio) > 0 {
            (last_base0_person_id(id) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            self.next_base0_person_id(id, random)
        } + FIRST_PERSON_ID;
        let price = next_price(random);
        let extra = next_extra(random, 8 + 8 + 8 + 8, self.avg_bid_byte_size);
        Bid {
            auction,
            bidder,
            price,
            date_time: timestamp,
            extra,
        }
    }

    /// A random person among the active ones, or slightly ahead of the last.
    fn next_base0_person_id(&self, id: i64, random: &mut JavaRandom) -> i64 {
        let people = last_base0_person_id(id) + 1;
        let active = people.min(self.num_active_people);
        let n = next_long(random, active + PERSON_ID_LEAD);
        people - active + n
    }

    /// A random auction among those likely still in flight, or slightly ahead.
    fn next_base0_auction_id(&self, id: i64, random: &mut JavaRandom) -> i64 {
        let max = last_base0_auction_id(id);
        let min = (max - self.num_in_flight_auctions).max(0);
        min + next_long(random, max - min + 1 + AUCTION_ID_LEAD)
    }
}

/// The last person id (from 0) generated up to event `id`.
pub fn last_base0_person_id(id: i64) -> i64 {
    let epoch = id / PROPORTION_DENOMINATOR;
    let offset = (id % PROPORTION_DENOMINATOR).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The last auction id (from 0) generated up to event `id`.
pub fn last_base0_auction_id(id: i64) -> i64 {
    let mut epoch = id / PROPORTION_DENOMINATOR;
    let mut offset = id % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // A person: the last auction was in the previous epoch.
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        // A bid: the epoch's last auction.
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A draw in `0..n`: Java's `nextInt` when `n` fits an int, else the (skewed) `nextLong`.
fn next_long(random: &mut JavaRandom, n: i64) -> i64 {
    if n < i64::from(i32::MAX) {
        i64::from(random.next_int_bounded(n as i32))
    } else {
        (random.next_long() % n).abs()
    }
}

/// Java's `Math.round` for the non-negative values used here.
fn java_round(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

fn next_price(random: &mut JavaRandom) -> i64 {
    java_round(10f64.powf(random.next_double() * 6.0) * 100.0)
}

/// Up to `max_length - 1` letters and spaces, trimmed.
fn next_string(random: &mut JavaRandom, max_length: i32) -> String {
    let len = MIN_STRING_LENGTH + random.next_int_bounded(max_length - MIN_STRING_LENGTH);
    let mut bytes = Vec::with_capacity(len as usize);
    for _ in 0..len {
        if random.next_int_bounded(13) == 0 {
            bytes.push(b' ');
        } else {
            bytes.push(b'a' + random.next_int_bounded(26) as u8);
        }
    }
    let start = bytes.iter().position(|b| *b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    bytes.truncate(end);
    bytes.drain(..start);
    ascii(bytes)
}

/// A string of ASCII bytes.
fn ascii(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// Exactly `length` characters, six from each random int (Java's remainder semantics give
/// the characters below `a` for negative ints: all still ASCII, from `H` to `z`).
fn next_exact_string(random: &mut JavaRandom, length: i32) -> String {
    let length = length.max(0) as usize;
    let mut bytes = vec![0u8; length];
    // Six characters per int: Java divides the int by 26 after each, and since dividing
    // twice (truncating) is dividing by the product, the six are independent.
    let char_of = |q: i32| (i32::from(b'a') + q % 26) as u8;
    for chunk in bytes.chunks_mut(6) {
        let rnd = random.next_int();
        let chars = [
            char_of(rnd),
            char_of(rnd / 26),
            char_of(rnd / 676),
            char_of(rnd / 17_576),
            char_of(rnd / 456_976),
            char_of(rnd / 11_881_376),
        ];
        for (b, c) in chunk.iter_mut().zip(chars) {
            *b = c;
        }
    }
    ascii(bytes)
}

/// Padding that brings an event of `current` bytes to `average` bytes on average.
fn next_extra(random: &mut JavaRandom, current: i32, average: i32) -> String {
    if current > average {
        return String::new();
    }
    let average = average - current;
    let delta = java_round(f64::from(average) * 0.2) as i32;
    let min = average - delta;
    let size = min
        + if delta == 0 {
            0
        } else {
            random.next_int_bounded(2 * delta)
        };
    next_exact_string(random, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_proportions() {
        // Event 0 is a person, 1..=3 auctions, 4..=49 bids.
        assert_eq!(last_base0_person_id(0), 0);
        assert_eq!(last_base0_person_id(49), 0);
        assert_eq!(last_base0_person_id(50), 1);
        assert_eq!(last_base0_auction_id(1), 0);
        assert_eq!(last_base0_auction_id(3), 2);
        assert_eq!(last_base0_auction_id(49), 2);
        assert_eq!(last_base0_auction_id(50), 2);
        assert_eq!(last_base0_auction_id(51), 3);
    }

    #[test]
    fn default_timeline_spaces_a_generators_events_by_ten_ms() {
        let config = NexmarkConfig::default();
        let timeline = config.timeline();
        assert_eq!(timeline.inter_event_delay_us, vec![10_000]);
        assert_eq!(timeline.timestamp_ms(0), BASE_TIME_MS);
        assert_eq!(timeline.timestamp_ms(7), BASE_TIME_MS + 70);
        let ranges = config.generator_ranges();
        assert_eq!(ranges.len(), 100);
        assert_eq!(ranges[1].first_event_id, 1000);
        assert_eq!(ranges.iter().map(|r| r.max_events).sum::<u64>(), 100_000);
    }

    #[test]
    fn a_sine_rate_cycles_through_ten_steps() {
        let config = NexmarkConfig {
            first_event_rate: 10_000,
            next_event_rate: 20_000,
            ..NexmarkConfig::default()
        };
        let timeline = config.timeline();
        assert_eq!(timeline.inter_event_delay_us.len(), 10);
        assert_eq!(timeline.inter_event_delay_us[0], 10_000);
        // Times never go backwards, across steps and epochs.
        let mut last = i64::MIN;
        for n in (0..2 * timeline.events_per_epoch).step_by(97) {
            let t = timeline.timestamp_ms(n);
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn out_of_order_groups_permute_event_numbers_within_each_group() {
        let config = NexmarkConfig {
            out_of_order_group_size: 10,
            ..NexmarkConfig::default()
        };
        let timeline = config.timeline();
        let mut numbers: Vec<u64> = (0..10)
            .map(|c| timeline.adjusted_event_number(0, c))
            .collect();
        assert_ne!(numbers, (0..10).collect::<Vec<_>>());
        numbers.sort_unstable();
        assert_eq!(numbers, (0..10).collect::<Vec<_>>());
        assert_eq!(timeline.watermark_ms(0, 15), timeline.timestamp_ms(10));
    }
}
