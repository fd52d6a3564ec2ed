//! Windows and windowed values.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The window an element belongs to.
///
/// An element that belongs to several windows (sliding windows) travels as one
/// [`WindowedValue`] per window, so a value always carries exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl Window {
    /// The largest timestamp that still belongs to this window.
    pub fn max_timestamp(&self) -> Timestamp {
        match self {
            Window::Global => Timestamp::END_OF_GLOBAL_WINDOW,
            Window::Interval { end, .. } => Timestamp(end.0 - 1),
        }
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
        }
    }
}

/// An element in flight: its value, its event timestamp and its window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedValue<T> {
    /// The element itself.
    pub value: T,
    /// When the event happened.
    pub timestamp: Timestamp,
    /// The window the element belongs to.
    pub window: Window,
}

impl<T> WindowedValue<T> {
    /// A value in the global window at the minimum timestamp: how bounded sources emit.
    pub fn in_global_window(value: T) -> Self {
        WindowedValue {
            value,
            timestamp: Timestamp::MIN,
            window: Window::Global,
        }
    }

    /// The same timestamp and window around another value.
    #[inline]
    pub fn with_value<U>(&self, value: U) -> WindowedValue<U> {
        WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn window_encoding_round_trips(start in any::<i64>(), len in 1i64..1_000_000, global in any::<bool>()) {
            let w = if global { Window::Global } else {
                Window::Interval { start: Timestamp(start), end: Timestamp(start.saturating_add(len)) }
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
