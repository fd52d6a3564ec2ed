//! Draining a streaming job on Ctrl-C or SIGTERM.
//!
//! The first signal sets the job's drain flag: unbounded sources stop reading, their
//! watermark goes to the end of time, every open window fires, in-flight bundles finish
//! and sinks commit. A second signal while draining ends the process at once (exit code
//! 130), as an impatient user expects.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Sets `drain` on the first SIGINT or SIGTERM; exits on the second.
pub(crate) fn on_signals(drain: &Arc<AtomicBool>) {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so that it sees the flag before the first signal sets it.
        let exit = signal_hook::flag::register_conditional_shutdown(signal, 130, drain.clone());
        let set = signal_hook::flag::register(signal, drain.clone());
        if let Err(e) = exit.and(set) {
            log::warn!("cannot drain on signal {signal}: {e}; stopping the job will kill it");
        }
    }
}
