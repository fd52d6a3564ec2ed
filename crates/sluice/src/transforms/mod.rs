//! The built-in transforms, one file each.

pub mod arrow;
pub mod cogroup;
pub mod collect;
pub mod combine;
pub mod combiners;
pub mod create;
pub mod distinct;
pub mod flatten;
pub mod group_by_key;
pub mod kafka;
pub mod kv;
pub mod latest;
pub(crate) mod pane_reader;
pub mod parquet;
pub mod partition;
pub mod postgres;
pub mod records;
pub mod reshuffle;
pub mod sample;
pub mod side_input;
pub mod source;
pub mod stateful;
pub mod test_stream;
pub mod text;
pub mod to_list;
pub mod top;
pub mod windowing;

use sluice_core::error::current_step;
use sluice_core::unit::UnitContext;

/// Runs user code `f` (a CombineFn's method) as the unit's step: a panic unwinds to the
/// bundle's guard, which then names this transform.
#[inline]
pub(crate) fn guard<R>(ctx: &UnitContext, f: impl FnOnce() -> R) -> R {
    current_step::in_step(ctx.step, f)
}
