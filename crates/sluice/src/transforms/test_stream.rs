//! TestStream: a scripted unbounded source for testing event time, triggers and lateness.
//!
//! A [`TestStream`] is a timeline: elements with event times, watermark advances and
//! processing-time advances, in order. The pipeline runs in streaming mode on a clock the
//! stream moves by hand, and before each scripted step the stream waits until the
//! pipeline has acted on the previous one — every grouping has seen the watermark and
//! fired what it allows — so results are the same on every run (as with Beam's
//! `TestStream`): an element added after the watermark passed its window is late,
//! deterministically.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::test_stream::TestStream;
//! use sluice::windowing::FixedWindows;
//!
//! let ms = Timestamp::from_millis;
//! let stream = TestStream::new()
//!     .add_elements(vec![("a".to_string(), ms(1)), ("a".to_string(), ms(2))])
//!     .advance_watermark_to(ms(20))
//!     // Late: its window [0, 10) ended before the watermark reached 20.
//!     .add_elements(vec![("a".to_string(), ms(3))])
//!     .advance_watermark_to_infinity();
//! let p = Pipeline::for_test();
//! let counts = p
//!     .test_stream("Events", stream)
//!     .window_into("Windows", FixedWindows::of_millis(10))
//!     .count_per_element("Count")
//!     .collect("Out");
//! let result = p.run().unwrap();
//! let dropped: u64 = result.metrics().transforms.iter().map(|t| t.dropped_due_to_lateness).sum();
//! result.wait_until_finish().unwrap();
//! assert_eq!(counts.values(), [("a".to_string(), 2)]);
//! assert_eq!(dropped, 1);
//! ```

use std::sync::Arc;
use std::time::Duration;

use sluice_core::time::Clock;
use sluice_core::{BoxError, Element, Timestamp};

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;
use crate::transforms::source::{Emit, Progress, ReadContext, UnboundedSource};

/// One scripted step.
#[derive(Clone, Debug)]
enum Step<T> {
    Elements(Vec<(T, Timestamp)>),
    Watermark(Timestamp),
    ProcessingTime(Duration),
}

/// A scripted timeline of elements, watermark and processing time (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct TestStream<T> {
    steps: Vec<Step<T>>,
}

impl<T> Default for TestStream<T> {
    fn default() -> Self {
        TestStream { steps: Vec::new() }
    }
}

impl<T: Element> TestStream<T> {
    /// An empty timeline: the watermark starts at the minimum, processing time at 0.
    pub fn new() -> TestStream<T> {
        TestStream::default()
    }

    /// Emits `elements`, each with its event time.
    pub fn add_elements(mut self, elements: Vec<(T, Timestamp)>) -> TestStream<T> {
        self.steps.push(Step::Elements(elements));
        self
    }

    /// Advances the watermark to `watermark`.
    pub fn advance_watermark_to(mut self, watermark: Timestamp) -> TestStream<T> {
        self.steps.push(Step::Watermark(watermark));
        self
    }

    /// Advances processing time by `by`.
    pub fn advance_processing_time(mut self, by: Duration) -> TestStream<T> {
        self.steps.push(Step::ProcessingTime(by));
        self
    }

    /// Advances the watermark to the end of time: every window fires, the stream ends.
    pub fn advance_watermark_to_infinity(mut self) -> TestStream<T> {
        self.steps.push(Step::Watermark(Timestamp::MAX));
        self
    }
}

/// Where the stream stands.
#[derive(Clone, Debug)]
pub struct Position {
    /// The next step.
    step: usize,
    /// The watermark so far.
    watermark: Timestamp,
    /// The pipeline must have acted on this watermark and processing time before the
    /// next step.
    wait_for: Option<(Timestamp, i64)>,
}

struct Source<T> {
    steps: Arc<Vec<Step<T>>>,
    clock: Clock,
}

impl<T: Element + Sync> UnboundedSource for Source<T> {
    type Output = T;
    type Checkpoint = Position;

    fn split(&self, _workers: usize) -> Result<Vec<Position>, BoxError> {
        Ok(vec![Position {
            step: 0,
            watermark: Timestamp::MIN,
            wait_for: None,
        }])
    }

    fn read(
        &self,
        at: &Position,
        _max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, T>,
    ) -> Result<Progress<Position>, BoxError> {
        let mut next = at.clone();
        if let Some((watermark, now)) = next.wait_for {
            if !job.settled(watermark, now) {
                return Ok(Progress {
                    next: Some(next),
                    watermark: at.watermark,
                    not_before_ms: Some(job.now_ms() + 1),
                });
            }
            next.wait_for = None;
        }
        let Some(step) = self.steps.get(next.step) else {
            return Ok(Progress {
                next: None,
                watermark: Timestamp::MAX,
                not_before_ms: None,
            });
        };
        next.step += 1;
        match step {
            Step::Elements(elements) => {
                for (value, timestamp) in elements {
                    out.emit(value.clone(), *timestamp)?;
                }
                // As in Beam, the next step waits until these have been taken in and
                // acted on (triggers evaluated on them) everywhere.
                next.wait_for = Some((next.watermark, job.now_ms()));
            }
            Step::Watermark(watermark) => {
                next.watermark = next.watermark.max(*watermark);
                next.wait_for = Some((next.watermark, job.now_ms()));
            }
            Step::ProcessingTime(by) => {
                // Moved once: a retried read finds the clock already moved and the step
                // done (the position is only committed with the bundle, so the retry moves
                // it again — by design a test stream's bundles do not fail).
                job.clock().advance(by.as_millis() as i64);
                next.wait_for = Some((next.watermark, job.now_ms()));
            }
        }
        let done = next.step >= self.steps.len() && next.wait_for.is_none();
        Ok(Progress {
            watermark: next.watermark,
            next: (!done).then_some(next),
            not_before_ms: None,
        })
    }

    fn test_clock(&self) -> Option<Clock> {
        Some(self.clock.clone())
    }
}

impl Pipeline {
    /// The elements of a [`TestStream`], in streaming mode on the stream's clock.
    pub fn test_stream<T: Element + Sync>(
        &self,
        name: &str,
        stream: TestStream<T>,
    ) -> PCollection<T> {
        self.read_unbounded(
            name,
            Source {
                steps: Arc::new(stream.steps),
                clock: Clock::manual(0),
            },
        )
    }
}
