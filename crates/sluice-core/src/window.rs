//! Windows and windowed values.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The window an element belongs to.
///
/// An element that belongs to several windows (sliding windows) travels as one
/// [`WindowedValue`] per window, so a value always carries exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Window {
    /// The single window spanning all of time: the default.
    Global,
    /// The half-open event-time interval `[start, end)`.
    Interval {
        /// First timestamp inside the window.
        start: Timestamp,
        /// First timestamp after the window.
        end: Timestamp,
    },
    /// An interval with an identity of its own beyond its bounds, for custom window
    /// functions whose windows can share bounds and still differ (an auction's window and
    /// a bid's). It behaves as the interval `[start, end)` in every other respect.
    Tagged {
        /// First timestamp inside the window.
        start: Timestamp,
        /// First timestamp after the window.
        end: Timestamp,
        /// What the window function makes of it.
        tag: u64,
    },
}

impl Window {
    /// The largest timestamp that still belongs to this window.
    pub fn max_timestamp(&self) -> Timestamp {
        match self {
            Window::Global => Timestamp::END_OF_GLOBAL_WINDOW,
            Window::Interval { end, .. } | Window::Tagged { end, .. } => Timestamp(end.0 - 1),
        }
    }

    /// The window's bounds, `None` for the global window.
    pub fn bounds(&self) -> Option<(Timestamp, Timestamp)> {
        match *self {
            Window::Global => None,
            Window::Interval { start, end } | Window::Tagged { start, end, .. } => {
                Some((start, end))
            }
        }
    }

    /// The first timestamp inside the window.
    pub fn start(&self) -> Timestamp {
        self.bounds().map_or(Timestamp::MIN, |(start, _)| start)
    }

    /// Appends this window's encoding to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Window::Global => out.push(0),
            Window::Interval { start, end } => {
                out.push(1);
                out.extend_from_slice(&start.0.to_be_bytes());
                out.extend_from_slice(&end.0.to_be_bytes());
            }
            Window::Tagged { start, end, tag } => {
                out.push(2);
                out.extend_from_slice(&start.0.to_be_bytes());
                out.extend_from_slice(&end.0.to_be_bytes());
                out.extend_from_slice(&tag.to_be_bytes());
            }
        }
    }

    /// Reads a window encoded by [`Window::encode_to`] from the front of `input`.
    pub fn decode_from(input: &mut &[u8]) -> Option<Window> {
        let (&tag, rest) = input.split_first()?;
        match tag {
            0 => {
                *input = rest;
                Some(Window::Global)
            }
            1 if rest.len() >= 16 => {
                let start = i64::from_be_bytes(rest[..8].try_into().ok()?);
                let end = i64::from_be_bytes(rest[8..16].try_into().ok()?);
                *input = &rest[16..];
                Some(Window::Interval {
                    start: Timestamp(start),
                    end: Timestamp(end),
                })
            }
            2 if rest.len() >= 24 => {
                let start = i64::from_be_bytes(rest[..8].try_into().ok()?);
                let end = i64::from_be_bytes(rest[8..16].try_into().ok()?);
                let tag = u64::from_be_bytes(rest[16..24].try_into().ok()?);
                *input = &rest[24..];
                Some(Window::Tagged {
                    start: Timestamp(start),
                    end: Timestamp(end),
                    tag,
                })
            }
            _ => None,
        }
    }

    /// A hash of the window, mixed into the hash of a key when grouping per key and window.
    pub fn hash_bits(&self) -> u64 {
        match self {
            Window::Global => 0,
            Window::Interval { start, end } => {
                (start.0 as u64).rotate_left(17)
                    ^ (end.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            }
            Window::Tagged { start, end, tag } => {
                (start.0 as u64).rotate_left(17)
                    ^ (end.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ tag.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(29)
            }
        }
    }
}

/// When a pane fired, relative to the watermark passing the end of its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PaneTiming {
    /// Before the watermark passed the end of the window: a speculative result.
    Early,
    /// The first pane after the watermark passed the end of the window.
    OnTime,
    /// After the on-time pane: late data arrived.
    Late,
    /// Not produced by a trigger firing (elements that were never grouped).
    Unknown,
}

/// Which firing of its window's trigger produced a grouped element (Beam's `PaneInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PaneInfo {
    /// Early, on time or late.
    pub timing: PaneTiming,
    /// 0 for the window's first pane, then 1, 2, ... for each firing.
    pub index: u32,
    /// Among non-early panes, 0 for the first; -1 for early panes.
    pub non_speculative_index: i32,
    /// The window's first pane.
    pub is_first: bool,
    /// The window's last pane: nothing more will be emitted for it.
    pub is_last: bool,
}

impl PaneInfo {
    /// The pane of elements that were never grouped: one pane, the only and last one.
    pub const NO_FIRING: PaneInfo = PaneInfo {
        timing: PaneTiming::Unknown,
        index: 0,
        non_speculative_index: 0,
        is_first: true,
        is_last: true,
    };
}

impl crate::coder::Coder for PaneTiming {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), crate::coder::CoderError> {
        out.push(match self {
            PaneTiming::Early => 0,
            PaneTiming::OnTime => 1,
            PaneTiming::Late => 2,
            PaneTiming::Unknown => 3,
        });
        Ok(())
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, crate::coder::CoderError> {
        let (&tag, rest) = input
            .split_first()
            .ok_or_else(|| crate::coder::CoderError::truncated("PaneTiming"))?;
        *input = rest;
        match tag {
            0 => Ok(PaneTiming::Early),
            1 => Ok(PaneTiming::OnTime),
            2 => Ok(PaneTiming::Late),
            3 => Ok(PaneTiming::Unknown),
            t => Err(crate::coder::CoderError::decode(
                "PaneTiming",
                format!("unknown tag {t}"),
            )),
        }
    }
}

impl Default for PaneInfo {
    fn default() -> Self {
        PaneInfo::NO_FIRING
    }
}

/// An element in flight: its value, its event timestamp and its window, and — after a
/// grouping — the pane of its window that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedValue<T> {
    /// The element itself.
    pub value: T,
    /// When the event happened.
    pub timestamp: Timestamp,
    /// The window the element belongs to.
    pub window: Window,
    /// Which firing of the window produced the element ([`PaneInfo::NO_FIRING`] before any
    /// grouping). It does not cross shuffles: each grouping assigns its own.
    pub pane: PaneInfo,
}

impl<T> WindowedValue<T> {
    /// A value in the global window at the minimum timestamp: how bounded sources emit.
    pub fn in_global_window(value: T) -> Self {
        WindowedValue {
            value,
            timestamp: Timestamp::MIN,
            window: Window::Global,
            pane: PaneInfo::NO_FIRING,
        }
    }

    /// The same timestamp and window around another value.
    #[inline]
    pub fn with_value<U>(&self, value: U) -> WindowedValue<U> {
        WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn window_encoding_round_trips(start in any::<i64>(), len in 1i64..1_000_000, kind in 0..3u8, tag in any::<u64>()) {
            let end = Timestamp(start.saturating_add(len));
            let w = match kind {
                0 => Window::Global,
                1 => Window::Interval { start: Timestamp(start), end },
                _ => Window::Tagged { start: Timestamp(start), end, tag },
            };
            let mut bytes = vec![];
            w.encode_to(&mut bytes);
            bytes.push(42);
            let mut input = &bytes[..];
            prop_assert_eq!(Window::decode_from(&mut input), Some(w));
            prop_assert_eq!(input, &[42u8][..]);
        }
    }

    #[test]
    fn truncated_window_is_rejected() {
        assert_eq!(Window::decode_from(&mut &[1u8, 0, 0][..]), None);
        assert_eq!(Window::decode_from(&mut &[7u8][..]), None);
    }
}
