//! The vocabulary every other sluice crate shares.
//!
//! `sluice-core` defines what flows through a pipeline and the interfaces that let typed
//! user code run inside an untyped execution plan:
//!
//! - [`WindowedValue`]: an element with its event [`Timestamp`] and [`Window`].
//! - [`Coder`] and [`Element`]: how element types become bytes. Every serde type has a
//!   compact binary coder; other types implement [`Coder`] themselves.
//! - [`key_hash`]: the fixed-seed hash of an encoded key that decides which worker owns a
//!   key, so that threads and processes agree.
//! - [`Receiver`] and [`Port`]: the push interface between the execution units of a fused
//!   stage, and the typed output of a unit that counts what passes through it.
//! - [`unit`]: the factory traits through which the runtime builds execution units for a
//!   transform without knowing its element types.
//! - [`shuffle`]: the byte format of records that cross a shuffle.
//!
//! ```
//! use sluice_core::{Coder, key_hash};
//!
//! let mut bytes = Vec::new();
//! "hello".to_string().encode_to(&mut bytes).unwrap();
//! let decoded = String::decode_from(&mut &bytes[..]).unwrap();
//! assert_eq!(decoded, "hello");
//! // The same key always routes to the same worker, in every process.
//! assert_eq!(key_hash(&bytes), key_hash(&bytes));
//! ```
#![deny(missing_docs)]

pub mod coder;
pub mod error;
pub mod key;
pub mod panes;
pub mod receiver;
pub mod shuffle;
pub mod spill;
pub mod time;
pub mod trigger;
pub mod unit;
pub mod user_metrics;
pub mod window;
pub mod windowing;

pub use coder::{Coder, CoderError, Element, SerdeCoder};
pub use error::{BoxError, ExecError, FileError, Permanent, UnitResult, render_element};
pub use key::{KEY_HASH_SEED, key_hash, route};
pub use receiver::{AnyPort, AnyReceiver, Port, PortCounters, Receiver, TypeMismatch};
pub use time::Timestamp;
pub use window::{PaneInfo, PaneTiming, Window, WindowedValue};
