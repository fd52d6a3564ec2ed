//! Event time.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::coder::Coder;

/// A point in event time, in microseconds since the Unix epoch (as in Beam).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The smallest representable time; the timestamp of elements read from bounded sources.
    pub const MIN: Timestamp = Timestamp(-9_223_372_036_854_775);
    /// The largest representable time ("end of time"): a finished bounded input's watermark.
    pub const MAX: Timestamp = Timestamp(9_223_372_036_854_775);
    /// The last timestamp inside the global window (Beam: end of time minus one day).
    pub const END_OF_GLOBAL_WINDOW: Timestamp = Timestamp(Self::MAX.0 - 86_400_000_000);

    /// A timestamp from milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms.saturating_mul(1000))
    }

    /// This timestamp in whole milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Timestamp::MIN => f.write_str("Timestamp::MIN"),
            Timestamp::MAX => f.write_str("Timestamp::MAX"),
            Timestamp::END_OF_GLOBAL_WINDOW => f.write_str("Timestamp::END_OF_GLOBAL_WINDOW"),
            Timestamp(us) => write!(f, "Timestamp({us}us)"),
        }
    }
}

impl Coder for Timestamp {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), crate::coder::CoderError> {
        self.0.encode_to(out)
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, crate::coder::CoderError> {
        Ok(Timestamp(i64::decode_from(input)?))
    }
}

/// Processing time as a job sees it: the wall clock, or — for tests that script time,
/// like a `TestStream` — a clock moved by hand.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<std::sync::Arc<std::sync::atomic::AtomicI64>>,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `start_ms` until moved with [`Clock::advance`].
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
                start_ms,
            ))),
        }
    }

    /// Whether the clock only moves by hand.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// The time now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(std::sync::atomic::Ordering::Acquire),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    /// Moves a manual clock forward by `ms` (the wall clock cannot be moved).
    pub fn advance(&self, ms: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(ms.max(0), std::sync::atomic::Ordering::AcqRel);
        }
    }
}
