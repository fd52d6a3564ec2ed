//! The built-in transforms, one file each.

pub mod collect;
pub mod combine;
pub mod combiners;
pub mod create;
pub mod flatten;
pub mod group_by_key;
pub mod reshuffle;
pub mod text;

use sluice_core::unit::UnitContext;
use sluice_core::{BoxError, ExecError};

/// Runs user code `f`, turning a panic into an error of the unit's transform.
pub(crate) fn guard<R>(ctx: &UnitContext, f: impl FnOnce() -> R) -> Result<R, Box<ExecError>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let text = if let Some(s) = panic.downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = panic.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic with a non-string payload".into()
        };
        ctx.error(BoxError::from(format!("panicked: {text}")))
    })
}
