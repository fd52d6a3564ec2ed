//! Watermarks as the engine sees them, and where a stage's output watermark may go —
//! kept apart from timely so that the rules are tested on their own.
//!
//! A stage's output watermark is the time its engine capability is held at: the least
//! event time it may still emit. Timely times are unsigned; [`engine_time`] maps event
//! times onto them keeping their order.

use sluice_core::Timestamp;

/// The engine time of a watermark: timestamps, order kept, as unsigned integers.
pub(crate) fn engine_time(t: Timestamp) -> u64 {
    (t.0 as u64) ^ (1 << 63)
}

/// The watermark of an engine time.
pub(crate) fn watermark_of(t: u64) -> Timestamp {
    Timestamp((t ^ (1 << 63)) as i64)
}

/// What holds a stage's output watermark, by the kind of its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// A bounded source: at the minimum until it is read to the end.
    BoundedSource,
    /// An unbounded source: the least watermark of its splits still being read (`None`
    /// before it has claimed its splits).
    UnboundedSource(Option<Timestamp>),
    /// A shuffle reader: the least of its input watermark and what it buffers (panes
    /// not yet fired, timers not yet due), once every group it fired has been emitted.
    Shuffle {
        /// Groups fired but not yet emitted.
        emitting: bool,
        /// The reader's hold.
        hold: Timestamp,
    },
}

/// Where a stage's output watermark may move given its input watermark; `None`: it may
/// not move now.
pub(crate) fn output_watermark(held: Held, input: Timestamp) -> Option<Timestamp> {
    match held {
        Held::BoundedSource => None,
        Held::UnboundedSource(splits) => splits,
        Held::Shuffle { emitting: true, .. } => None,
        Held::Shuffle {
            emitting: false,
            hold,
        } => Some(input.min(hold)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn engine_times_keep_the_order_of_timestamps(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), engine_time(Timestamp(a)).cmp(&engine_time(Timestamp(b))));
            prop_assert_eq!(watermark_of(engine_time(Timestamp(a))), Timestamp(a));
        }
    }

    #[test]
    fn the_ends_of_time_map_inside_the_engine_range() {
        assert_eq!(engine_time(Timestamp(i64::MIN)), 0);
        assert_eq!(engine_time(Timestamp(i64::MAX)), u64::MAX);
        assert!(
            engine_time(Timestamp::MIN) > 0,
            "an unpublished output (0) is below MIN"
        );
        assert!(engine_time(Timestamp::MIN) < engine_time(Timestamp::MAX));
    }

    #[test]
    fn each_root_holds_its_output_watermark_where_its_data_may_still_be() {
        let t = Timestamp::from_millis;
        // A bounded source never moves it before it is done.
        assert_eq!(output_watermark(Held::BoundedSource, t(50)), None);
        // An unbounded source: its splits' least watermark, whatever comes in.
        assert_eq!(
            output_watermark(Held::UnboundedSource(Some(t(7))), t(50)),
            Some(t(7))
        );
        assert_eq!(output_watermark(Held::UnboundedSource(None), t(50)), None);
        // A shuffle: the input watermark, held back by what it buffers...
        let shuffle = |emitting, hold| Held::Shuffle { emitting, hold };
        assert_eq!(output_watermark(shuffle(false, t(9)), t(50)), Some(t(9)));
        assert_eq!(
            output_watermark(shuffle(false, Timestamp::MAX), t(50)),
            Some(t(50))
        );
        // ...and not moved while fired groups are still being emitted.
        assert_eq!(output_watermark(shuffle(true, t(9)), t(50)), None);
    }
}
