//! Window functions: which windows an element belongs to, and how windows merge.
//!
//! A [`WindowFn`] assigns each element, by its timestamp, to one or more windows. Fixed
//! and sliding windows never change once assigned. Session windows *merge*: each element
//! starts a window of `gap` after it, and a key's overlapping windows merge into one
//! session when the key is grouped.
//!
//! ```
//! use sluice_core::windowing::{FixedWindows, Sessions, SlidingWindows, WindowFn};
//! use sluice_core::{Timestamp, Window};
//!
//! let t = Timestamp::from_millis(65_000);
//! let minute = FixedWindows::of_millis(60_000).assign(t);
//! assert_eq!(minute, [Window::Interval { start: Timestamp::from_millis(60_000), end: Timestamp::from_millis(120_000) }]);
//! assert_eq!(SlidingWindows::of_millis(60_000, 30_000).assign(t).len(), 2);
//!
//! let sessions = Sessions::with_gap_millis(10_000);
//! let windows = [sessions.assign(Timestamp::from_millis(0))[0], sessions.assign(Timestamp::from_millis(5_000))[0]];
//! let merged = sessions.merge(&windows);
//! assert_eq!(merged, [(Window::Interval { start: Timestamp::from_millis(0), end: Timestamp::from_millis(15_000) }, vec![0, 1])]);
//! ```

use std::fmt::Debug;

use crate::time::Timestamp;
use crate::window::Window;

/// Assigns elements to windows by their timestamps.
pub trait WindowFn: Send + Sync + Debug {
    /// The windows an element with `timestamp` belongs to.
    fn assign(&self, timestamp: Timestamp) -> Vec<Window>;

    /// Whether windows of this function merge when grouped (sessions do).
    fn is_merging(&self) -> bool {
        false
    }

    /// Whether every element is in the one global window.
    fn is_global(&self) -> bool {
        false
    }

    /// The output time of an element at `timestamp` in `window`, for the earliest and
    /// latest timestamp combiners (Beam's `getOutputTime`): by default the element's own
    /// timestamp. A window function may move it later — never earlier — for example so
    /// that an earlier window's output cannot hold back a later one's.
    fn get_transformed_output_time(&self, _window: Window, timestamp: Timestamp) -> Timestamp {
        timestamp
    }

    /// Merges windows (Beam's `mergeWindows`): returns each group of two or more of
    /// `windows` that become one, as the merged window and the indices of the windows it
    /// replaces. Windows in no group stay as they are. Only merging functions merge.
    fn merge(&self, _windows: &[Window]) -> Vec<(Window, Vec<usize>)> {
        Vec::new()
    }

    /// The window of a side input in this windowing that a main-input element in
    /// `main_window` reads (Beam's default window mapping): the window holding the end of
    /// the main window.
    fn side_input_window(&self, main_window: Window) -> Window {
        self.assign(main_window.max_timestamp())
            .into_iter()
            .max_by_key(|w| w.start())
            .unwrap_or(Window::Global)
    }

    /// A short description for plans and logs (`FixedWindows(60s)`).
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Everything in one window, the global window: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl WindowFn for GlobalWindows {
    fn assign(&self, _timestamp: Timestamp) -> Vec<Window> {
        vec![Window::Global]
    }

    fn is_global(&self) -> bool {
        true
    }
}

/// Consecutive windows of a fixed size: `[offset + k*size, offset + (k+1)*size)`.
#[derive(Clone, Copy, Debug)]
pub struct FixedWindows {
    /// Window length, in microseconds.
    pub size_us: i64,
    /// Where windows start, modulo `size_us`.
    pub offset_us: i64,
}

impl FixedWindows {
    /// Windows of `size_ms` milliseconds, starting at multiples of the size.
    pub fn of_millis(size_ms: i64) -> Self {
        FixedWindows {
            size_us: size_ms.max(1) * 1000,
            offset_us: 0,
        }
    }
}

impl WindowFn for FixedWindows {
    fn assign(&self, timestamp: Timestamp) -> Vec<Window> {
        let start = timestamp.0 - (timestamp.0 - self.offset_us).rem_euclid(self.size_us);
        vec![Window::Interval {
            start: Timestamp(start),
            end: Timestamp(start.saturating_add(self.size_us)),
        }]
    }

    fn describe(&self) -> String {
        format!("FixedWindows({}ms)", self.size_us / 1000)
    }
}

/// Overlapping windows of `size`, one starting every `period`: an element belongs to
/// `size / period` of them.
#[derive(Clone, Copy, Debug)]
pub struct SlidingWindows {
    /// Window length, in microseconds.
    pub size_us: i64,
    /// Time between window starts, in microseconds.
    pub period_us: i64,
    /// Where windows start, modulo `period_us`.
    pub offset_us: i64,
}

impl SlidingWindows {
    /// Windows of `size_ms` starting every `period_ms` milliseconds.
    pub fn of_millis(size_ms: i64, period_ms: i64) -> Self {
        SlidingWindows {
            size_us: size_ms.max(1) * 1000,
            period_us: period_ms.max(1) * 1000,
            offset_us: 0,
        }
    }
}

impl WindowFn for SlidingWindows {
    fn assign(&self, timestamp: Timestamp) -> Vec<Window> {
        let last_start = timestamp.0 - (timestamp.0 - self.offset_us).rem_euclid(self.period_us);
        let mut windows = Vec::new();
        let mut start = last_start;
        while start > timestamp.0 - self.size_us {
            windows.push(Window::Interval {
                start: Timestamp(start),
                end: Timestamp(start.saturating_add(self.size_us)),
            });
            start -= self.period_us;
        }
        windows
    }

    fn describe(&self) -> String {
        format!(
            "SlidingWindows({}ms every {}ms)",
            self.size_us / 1000,
            self.period_us / 1000
        )
    }
}

/// Sessions: an element opens a window of `gap` after it; a key's windows that overlap
/// merge into one session (windows that only touch do not, as in Beam).
#[derive(Clone, Copy, Debug)]
pub struct Sessions {
    /// The gap of inactivity that ends a session, in microseconds.
    pub gap_us: i64,
}

impl Sessions {
    /// Sessions ending after `gap_ms` milliseconds without an element.
    pub fn with_gap_millis(gap_ms: i64) -> Self {
        Sessions {
            gap_us: gap_ms.max(1) * 1000,
        }
    }
}

impl WindowFn for Sessions {
    fn assign(&self, timestamp: Timestamp) -> Vec<Window> {
        vec![Window::Interval {
            start: timestamp,
            end: Timestamp(timestamp.0.saturating_add(self.gap_us)),
        }]
    }

    fn is_merging(&self) -> bool {
        true
    }

    fn merge(&self, windows: &[Window]) -> Vec<(Window, Vec<usize>)> {
        merge_overlapping(windows)
    }

    fn describe(&self) -> String {
        format!("Sessions(gap {}ms)", self.gap_us / 1000)
    }
}

/// Merges intervals that overlap into their union (Beam's
/// `MergeOverlappingIntervalWindows`; windows that only touch stay apart): the groups of
/// two or more windows that merge.
pub fn merge_overlapping(windows: &[Window]) -> Vec<(Window, Vec<usize>)> {
    if let [a, b] = windows {
        // Two windows (a new one against a key's latest): no sorting.
        return match (a.bounds(), b.bounds()) {
            (Some((s1, e1)), Some((s2, e2))) if s1 < e2 && s2 < e1 => vec![(
                Window::Interval {
                    start: s1.min(s2),
                    end: e1.max(e2),
                },
                vec![0, 1],
            )],
            _ => Vec::new(),
        };
    }
    let mut order: Vec<usize> = (0..windows.len())
        .filter(|i| windows[*i].bounds().is_some())
        .collect();
    order.sort_by_key(|i| windows[*i].start());
    let mut groups: Vec<(Window, Vec<usize>)> = Vec::new();
    for i in order {
        let Some((start, end)) = windows[i].bounds() else {
            continue;
        };
        match groups.last_mut() {
            Some((Window::Interval { end: union_end, .. }, members)) if start < *union_end => {
                if end > *union_end {
                    *union_end = end;
                }
                members.push(i);
            }
            _ => groups.push((Window::Interval { start, end }, vec![i])),
        }
    }
    groups.retain(|(_, members)| members.len() > 1);
    groups
}

/// Whether `inner` lies within `outer`.
pub fn contains(outer: Window, inner: Window) -> bool {
    match (outer, inner) {
        (Window::Global, _) => true,
        (outer, inner) => match (outer.bounds(), inner.bounds()) {
            (Some((start, end)), Some((s, e))) => start <= s && e <= end,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(t: i64) -> Timestamp {
        Timestamp::from_millis(t)
    }

    proptest! {
        #[test]
        fn fixed_windows_contain_their_element(t in -1_000_000_000i64..1_000_000_000, size in 1i64..100_000) {
            let fixed = FixedWindows::of_millis(size);
            let w = fixed.assign(Timestamp(t));
            prop_assert_eq!(w.len(), 1);
            let Window::Interval { start, end } = w[0] else { panic!() };
            prop_assert!(start.0 <= t && t < end.0);
            prop_assert_eq!(start.0.rem_euclid(size * 1000), 0);
        }

        #[test]
        fn sliding_windows_are_size_over_period_and_contain_their_element(t in -1_000_000_000i64..1_000_000_000, period in 1i64..1000, k in 1i64..6) {
            let sliding = SlidingWindows::of_millis(period * k, period);
            let ws = sliding.assign(Timestamp(t));
            prop_assert_eq!(ws.len() as i64, k);
            for w in ws {
                let Window::Interval { start, end } = w else { panic!() };
                prop_assert!(start.0 <= t && t < end.0);
            }
        }

        #[test]
        fn merged_sessions_cover_every_window_and_are_disjoint(ts in proptest::collection::vec(0i64..100_000, 1..40), gap in 1i64..5_000) {
            let sessions = Sessions::with_gap_millis(gap);
            let windows: Vec<Window> = ts.iter().map(|t| sessions.assign(ms(*t))[0]).collect();
            let groups = sessions.merge(&windows);
            // Each window is in at most one group, and inside its group's window.
            let mut seen = vec![false; windows.len()];
            for (merged, members) in &groups {
                prop_assert!(members.len() > 1);
                for m in members {
                    prop_assert!(!seen[*m]);
                    seen[*m] = true;
                    prop_assert!(contains(*merged, windows[*m]));
                }
            }
            // What is left (merged windows and unmerged ones) no longer overlaps.
            let mut left: Vec<Window> = groups.iter().map(|(w, _)| *w).collect();
            left.extend(windows.iter().enumerate().filter(|(i, _)| !seen[*i]).map(|(_, w)| *w));
            left.sort_by_key(|w| w.start());
            left.dedup();
            for pair in left.windows(2) {
                prop_assert!(pair[0].bounds().unwrap().1 <= pair[1].start());
            }
        }
    }

    #[test]
    fn negative_times_fall_in_the_right_window() {
        let w = FixedWindows::of_millis(10).assign(ms(-1));
        assert_eq!(
            w,
            [Window::Interval {
                start: ms(-10),
                end: ms(0)
            }]
        );
    }
}
