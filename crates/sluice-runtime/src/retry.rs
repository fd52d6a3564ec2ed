//! What happens after a bundle fails: how it is retried, when it waits, when the job
//! gives up, and how the failures are logged — the engine-independent rules, tested
//! here without timely.
//!
//! A failed bundle is divided before the element that failed (the runtime knows its
//! position): the elements before it run again as a bundle of their own, on a first
//! attempt, and the rest runs with the failing element first, on its next attempt. So
//! each transient failure costs one retry, and only an element that fails on every
//! attempt can fail the job. In streaming, retries wait longer each time; in batch they
//! run at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to do with a bundle that failed at `position` on attempt `attempt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Retry<P> {
    /// Run `before` again (attempt 1), then `rest`, starting at the failing element, on
    /// attempt 2.
    Divide {
        /// The elements before the failing one.
        before: P,
        /// The failing element and those after it.
        rest: P,
    },
    /// Run the same input again, its first element on attempt `attempt`.
    Again {
        /// The next attempt's number.
        attempt: u32,
    },
    /// The failing element has had its last attempt: the job fails.
    GiveUp,
}

/// Decides how a bundle that failed on `attempt` (of at most `max`) is retried;
/// `divided` is its input divided before the failing element, if that element was not
/// its first.
pub(crate) fn after_failure<P>(divided: Option<(P, P)>, attempt: u32, max: u32) -> Retry<P> {
    match divided {
        Some((before, rest)) => Retry::Divide { before, rest },
        None if attempt >= max => Retry::GiveUp,
        None => Retry::Again {
            attempt: attempt + 1,
        },
    }
}

/// How long a streaming retry of an element on `attempt` waits: 50 ms before the
/// second attempt, doubling, at most a minute. Batch retries do not wait.
pub(crate) fn backoff(streaming: bool, attempt: u32) -> Option<Duration> {
    streaming.then(|| {
        let ms = 50u64.saturating_mul(1 << attempt.saturating_sub(2).min(20));
        Duration::from_millis(ms.min(60_000))
    })
}

/// How often the same kind of failure of the same transform is logged.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Logs retried failures without flooding: the first failure of a kind (a transform and
/// its message with numbers left out) at once, then at most one per
/// [`LOG_INTERVAL`], saying how many like it were not logged in between.
#[derive(Debug, Default)]
pub(crate) struct RetryLog {
    kinds: Mutex<HashMap<(String, String), Kind>>,
}

#[derive(Debug)]
struct Kind {
    logged_at: Instant,
    unlogged: u64,
}

/// A message with its digits left out, cut short: failures that differ only in the
/// element they name are one kind.
fn kind_of(message: &str) -> String {
    let mut kind = String::new();
    let mut in_number = false;
    for c in message.chars().take(160) {
        if c.is_ascii_digit() {
            if !in_number {
                kind.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            kind.push(c);
        }
    }
    kind
}

impl RetryLog {
    /// Whether to log this failure now; `Some(n)`: log it, noting `n` like it that were
    /// not.
    pub(crate) fn admit(&self, transform: &str, message: &str, now: Instant) -> Option<u64> {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (transform.to_string(), kind_of(message));
        match kinds.get_mut(&key) {
            None => {
                kinds.insert(
                    key,
                    Kind {
                        logged_at: now,
                        unlogged: 0,
                    },
                );
                Some(0)
            }
            Some(kind) if now.duration_since(kind.logged_at) >= LOG_INTERVAL => {
                kind.logged_at = now;
                Some(std::mem::take(&mut kind.unlogged))
            }
            Some(kind) => {
                kind.unlogged += 1;
                None
            }
        }
    }

    /// The failures not yet logged, by transform and kind, for a summary at the end.
    pub(crate) fn unlogged(&self) -> Vec<(String, String, u64)> {
        let kinds = self
            .kinds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = kinds
            .iter()
            .filter(|(_, k)| k.unlogged > 0)
            .map(|((t, m), k)| (t.clone(), m.clone(), k.unlogged))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_inside_a_bundle_divides_it_and_a_first_element_is_retried_until_the_last_attempt()
    {
        assert_eq!(
            after_failure(Some((0..5, 5..9)), 1, 4),
            Retry::Divide {
                before: 0..5,
                rest: 5..9
            }
        );
        assert_eq!(
            after_failure::<std::ops::Range<u32>>(None, 1, 4),
            Retry::Again { attempt: 2 }
        );
        assert_eq!(
            after_failure::<std::ops::Range<u32>>(None, 3, 4),
            Retry::Again { attempt: 4 }
        );
        assert_eq!(
            after_failure::<std::ops::Range<u32>>(None, 4, 4),
            Retry::GiveUp
        );
        // Unlimited (streaming): never gives up.
        assert_eq!(
            after_failure::<std::ops::Range<u32>>(None, 1_000_000, u32::MAX),
            Retry::Again { attempt: 1_000_001 }
        );
    }

    #[test]
    fn streaming_backoff_doubles_from_50_ms_to_a_minute_and_batch_does_not_wait() {
        assert_eq!(backoff(false, 2), None);
        let ms = |a| backoff(true, a).unwrap().as_millis();
        assert_eq!(ms(2), 50);
        assert_eq!(ms(3), 100);
        assert_eq!(ms(4), 200);
        assert_eq!(ms(12), 51_200);
        assert_eq!(ms(13), 60_000);
        assert_eq!(ms(u32::MAX), 60_000);
    }

    #[test]
    fn retried_failures_are_logged_once_per_kind_per_interval_with_a_count() {
        let log = RetryLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit("Check", "panicked: bad 17", t0), Some(0));
        // The same kind (another element), soon after: counted, not logged.
        for i in 0..99 {
            let at = t0 + Duration::from_millis(10 * i);
            assert_eq!(log.admit("Check", &format!("panicked: bad {i}"), at), None);
        }
        // Another kind, or another transform: logged at once.
        assert_eq!(log.admit("Check", "timed out", t0), Some(0));
        assert_eq!(log.admit("Parse", "panicked: bad 1", t0), Some(0));
        assert_eq!(
            log.unlogged(),
            [("Check".to_string(), "panicked: bad #".to_string(), 99)]
        );
        // After the interval: logged, with how many were not.
        assert_eq!(
            log.admit("Check", "panicked: bad 5", t0 + LOG_INTERVAL),
            Some(99)
        );
        assert!(log.unlogged().is_empty());
    }
}
