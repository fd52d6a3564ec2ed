//! User metrics: counters, distributions and gauges that DoFns update by name.
//!
//! Each execution unit has its own [`UserMetrics`] store. The runtime takes a bundle's
//! updates when the bundle commits and drops them when it fails, so reported values count
//! successful attempts only, whatever the retries.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The value of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MetricValue {
    /// A sum of increments.
    Counter {
        /// The sum.
        value: i64,
    },
    /// Statistics of reported values.
    Distribution {
        /// How many values.
        count: u64,
        /// Their sum.
        sum: i64,
        /// The smallest.
        min: i64,
        /// The largest.
        max: i64,
    },
    /// The latest reported value.
    Gauge {
        /// The value.
        value: i64,
        /// When it was set, in milliseconds since the Unix epoch.
        #[serde(rename = "timestampMs")]
        timestamp_ms: u64,
    },
}

impl MetricValue {
    /// Combines two values of the same metric (from two bundles or two workers).
    /// Mismatched kinds keep `self`.
    pub fn merge(&mut self, other: MetricValue) {
        match (self, other) {
            (MetricValue::Counter { value }, MetricValue::Counter { value: o }) => *value += o,
            (
                MetricValue::Distribution {
                    count,
                    sum,
                    min,
                    max,
                },
                MetricValue::Distribution {
                    count: c,
                    sum: s,
                    min: lo,
                    max: hi,
                },
            ) => {
                *count += c;
                *sum += s;
                *min = (*min).min(lo);
                *max = (*max).max(hi);
            }
            (
                MetricValue::Gauge {
                    value,
                    timestamp_ms,
                },
                MetricValue::Gauge {
                    value: v,
                    timestamp_ms: t,
                },
            ) if t >= *timestamp_ms => {
                *value = v;
                *timestamp_ms = t;
            }
            _ => {}
        }
    }
}

/// The metrics one unit updated during its current bundle.
#[derive(Debug, Default)]
pub struct UserMetrics {
    cells: RefCell<Vec<(String, MetricValue)>>,
}

impl UserMetrics {
    fn update(&self, name: &str, value: MetricValue) {
        let mut cells = self.cells.borrow_mut();
        match cells.iter_mut().find(|(n, _)| n == name) {
            Some((_, cell)) => cell.merge(value),
            None => cells.push((name.to_string(), value)),
        }
    }

    /// Adds `by` to the counter `name`.
    pub fn inc_counter(&self, name: &str, by: i64) {
        self.update(name, MetricValue::Counter { value: by });
    }

    /// Reports `value` to the distribution `name`.
    pub fn update_distribution(&self, name: &str, value: i64) {
        self.update(
            name,
            MetricValue::Distribution {
                count: 1,
                sum: value,
                min: value,
                max: value,
            },
        );
    }

    /// Sets the gauge `name` to `value`.
    pub fn set_gauge(&self, name: &str, value: i64) {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.update(
            name,
            MetricValue::Gauge {
                value,
                timestamp_ms,
            },
        );
    }

    /// Takes the bundle's updates.
    pub fn take(&self) -> Vec<(String, MetricValue)> {
        std::mem::take(&mut *self.cells.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_aggregate_by_kind() {
        let m = UserMetrics::default();
        m.inc_counter("n", 2);
        m.inc_counter("n", 3);
        m.update_distribution("d", 5);
        m.update_distribution("d", -1);
        m.set_gauge("g", 7);
        let mut taken = m.take();
        taken.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            taken[0],
            (
                "d".into(),
                MetricValue::Distribution {
                    count: 2,
                    sum: 4,
                    min: -1,
                    max: 5
                }
            )
        );
        assert!(matches!(taken[1].1, MetricValue::Gauge { value: 7, .. }));
        assert_eq!(taken[2], ("n".into(), MetricValue::Counter { value: 5 }));
        assert!(m.take().is_empty());
    }

    #[test]
    fn a_later_gauge_wins() {
        let mut a = MetricValue::Gauge {
            value: 1,
            timestamp_ms: 10,
        };
        a.merge(MetricValue::Gauge {
            value: 2,
            timestamp_ms: 5,
        });
        assert_eq!(
            a,
            MetricValue::Gauge {
                value: 1,
                timestamp_ms: 10
            }
        );
        a.merge(MetricValue::Gauge {
            value: 3,
            timestamp_ms: 11,
        });
        assert_eq!(
            a,
            MetricValue::Gauge {
                value: 3,
                timestamp_ms: 11
            }
        );
    }
}
