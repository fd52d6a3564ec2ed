//! The generator as a sluice source: bounded (a batch of `num_events`) or unbounded (a
//! stream, optionally paced in real time at the configured event rate).
//!
//! Each of the configuration's sub-generators is a split, so the events a worker reads
//! depend only on which generators it reads, and each event is the same whoever reads it.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice_nexmark::generator::NexmarkConfig;
//! use sluice_nexmark::source::NexmarkRead;
//!
//! let p = Pipeline::for_test();
//! let config = NexmarkConfig { num_events: 1_000, ..NexmarkConfig::default() };
//! let n = p.nexmark_events("Events", &config).count_globally("Count").collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(n.values(), [1_000]);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use sluice::prelude::*;
use sluice::transforms::source::{BoundedSource, Emit, Progress, ReadContext, UnboundedSource};

use crate::generator::{Generator, GeneratorRange, NexmarkConfig};
use crate::model::Event;

/// Events generated in bundles of at most this many, per split.
const BATCH_SPLIT_EVENTS: u64 = 50_000;

/// A run of one sub-generator's events: counts `from..to` of `range`.
#[derive(Clone, Debug)]
pub struct GeneratorSplit {
    range: GeneratorRange,
    from: u64,
    to: u64,
}

/// The bounded generator source.
struct Batch {
    config: NexmarkConfig,
    generator: Generator,
}

impl BoundedSource for Batch {
    type Output = Event;
    type Split = GeneratorSplit;

    fn split(&self, _workers: usize) -> Result<Vec<GeneratorSplit>, BoxError> {
        let mut splits = Vec::new();
        for range in self.config.generator_ranges() {
            let mut from = 0;
            while from < range.max_events {
                let to = (from + BATCH_SPLIT_EVENTS).min(range.max_events);
                splits.push(GeneratorSplit { range, from, to });
                from = to;
            }
        }
        Ok(splits)
    }

    fn read(&self, split: &GeneratorSplit, out: &mut Emit<'_, Event>) -> Result<(), BoxError> {
        for count in split.from..split.to {
            let (event, millis) = self.generator.event(&split.range, count);
            out.emit(event, Timestamp::from_millis(millis))?;
        }
        Ok(())
    }

    fn size_bytes(&self) -> Option<u64> {
        let n = self.config.max_events();
        Some(
            n / 50
                * (self.config.avg_person_byte_size as u64
                    + 3 * self.config.avg_auction_byte_size as u64
                    + 46 * self.config.avg_bid_byte_size as u64),
        )
    }
}

/// Where one sub-generator of the stream stands.
#[derive(Clone, Debug)]
pub struct StreamPosition {
    range: GeneratorRange,
    count: u64,
    /// Wall-clock time (ms) at which the generators' base time is due, when paced.
    wallclock_base_ms: Option<i64>,
}

/// The unbounded generator source.
struct Stream {
    config: NexmarkConfig,
    generator: Generator,
    /// Wall-clock time (ms) at which the base time is due, when paced.
    pacing: Option<i64>,
}

/// The wall clock, in ms since the epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl UnboundedSource for Stream {
    type Output = Event;
    type Checkpoint = StreamPosition;

    fn split(&self, _workers: usize) -> Result<Vec<StreamPosition>, BoxError> {
        let wallclock_base_ms = self.pacing;
        Ok(self
            .config
            .generator_ranges()
            .into_iter()
            .map(|range| StreamPosition {
                range,
                count: 0,
                wallclock_base_ms,
            })
            .collect())
    }

    fn read(
        &self,
        at: &StreamPosition,
        max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, Event>,
    ) -> Result<Progress<StreamPosition>, BoxError> {
        let timeline = self.generator.timeline();
        let base_time = self.config.base_time_ms;
        let mut next = at.clone();
        let now = job.now_ms();
        let mut not_before_ms = None;
        while next.count < next.range.max_events && (out.count() as usize) < max_elements {
            if let Some(wall_base) = next.wallclock_base_ms {
                // Beam's pacing: an event is due when as much wall time has passed since
                // the start as event time since the base time.
                let number =
                    timeline.adjusted_event_number(next.range.first_event_number, next.count);
                let due = wall_base + (timeline.timestamp_ms(number) - base_time);
                if due > now {
                    not_before_ms = Some(due);
                    break;
                }
            }
            let (event, millis) = self.generator.event(&next.range, next.count);
            out.emit(event, Timestamp::from_millis(millis))?;
            next.count += 1;
        }
        let watermark = if next.count >= next.range.max_events {
            Timestamp::MAX
        } else {
            Timestamp::from_millis(timeline.watermark_ms(next.range.first_event_number, next.count))
        };
        Ok(Progress {
            next: (next.count < next.range.max_events).then_some(next),
            watermark,
            not_before_ms,
        })
    }
}

/// Reading Nexmark events into a pipeline.
pub trait NexmarkRead {
    /// The events of `config` as a bounded collection (`num_events` of them), stamped
    /// with their event times.
    fn nexmark_events(&self, name: &str, config: &NexmarkConfig) -> PCollection<Event>;
    /// The events of `config` as a stream: all `num_events` of them (0: without end).
    /// With `pacing`, the wall-clock time (ms) at which the base time is due, each event
    /// is emitted when its time comes, at the configured event rate (Beam's rate-limited
    /// generator); without, as fast as they are read.
    fn nexmark_stream(
        &self,
        name: &str,
        config: &NexmarkConfig,
        pacing: Option<i64>,
    ) -> PCollection<Event>;
}

impl NexmarkRead for Pipeline {
    fn nexmark_events(&self, name: &str, config: &NexmarkConfig) -> PCollection<Event> {
        let timeline = config.timeline();
        self.read_source(
            name,
            Batch {
                config: config.clone(),
                generator: Generator::new(config, &timeline),
            },
        )
    }

    fn nexmark_stream(
        &self,
        name: &str,
        config: &NexmarkConfig,
        pacing: Option<i64>,
    ) -> PCollection<Event> {
        let timeline = config.timeline();
        self.read_unbounded(
            name,
            Stream {
                config: config.clone(),
                generator: Generator::new(config, &timeline),
                pacing,
            },
        )
    }
}
