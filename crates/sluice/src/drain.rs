//! Stopping a job on Ctrl-C or SIGTERM: a streaming job drains, a batch job is
//! cancelled.
//!
//! Streaming: the first signal drains the job: unbounded sources stop reading, their
//! watermark goes to the end of time, every open window fires, in-flight bundles finish
//! and sinks commit.
//!
//! Batch: the first signal cancels the job: every worker stops at its next bundle, no
//! output is committed, temporary output is removed, and the job ends
//! `JOB_STATE_CANCELLED`; [`crate::PipelineResult::wait_until_finish`] then ends the
//! process with the signal's conventional exit code (130 for SIGINT, 143 for SIGTERM).
//!
//! In both, a second signal ends the process at once (exit code 130), as an impatient
//! user expects. SIGUSR1 cancels a job whatever its mode (the cluster runner's launcher
//! sends it to its workers when the job is cancelled, so a streaming job's workers stop
//! at once rather than drain first). While no job runs, the signals do what they would have done without
//! sluice: they end the process.
//!
//! The handlers are installed once per process and only touch atomics (all a signal
//! handler may safely do); each job points its runner's flags at them while it runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// What the process's signal handlers share with the jobs it runs.
struct Signals {
    /// Jobs running in this process.
    running: AtomicUsize,
    /// The first signal received while jobs ran (0: none): batch jobs cancel on it.
    stop: Arc<AtomicUsize>,
    /// Set by the first signal: streaming jobs drain on it.
    drain: Arc<AtomicBool>,
    /// Set by SIGUSR1: streaming jobs cancel on it.
    cancel: Arc<AtomicUsize>,
}

fn signals() -> &'static Signals {
    static SIGNALS: OnceLock<&'static Signals> = OnceLock::new();
    SIGNALS.get_or_init(|| {
        let shared: &'static Signals = Box::leak(Box::new(Signals {
            running: AtomicUsize::new(0),
            stop: Arc::default(),
            drain: Arc::default(),
            cancel: Arc::default(),
        }));
        for signal in [SIGINT, SIGTERM] {
            let action = move || {
                if shared.running.load(Ordering::SeqCst) == 0 {
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    return;
                }
                if shared.stop.swap(signal as usize, Ordering::SeqCst) != 0 {
                    signal_hook::low_level::exit(130);
                }
                shared.drain.store(true, Ordering::SeqCst);
            };
            // SAFETY: the action only loads and stores atomics, and ends the process
            // with the async-signal-safe `emulate_default_handler` and `exit`.
            if let Err(e) = unsafe { signal_hook::low_level::register(signal, action) } {
                log::warn!(
                    "cannot stop jobs cleanly on signal {signal}: {e}; a signal will kill them"
                );
            }
        }
        let cancel = move || {
            if shared.running.load(Ordering::SeqCst) == 0 {
                let _ = signal_hook::low_level::emulate_default_handler(SIGUSR1);
                return;
            }
            let requested = sluice_runtime::job::CANCEL_REQUESTED;
            let _ = shared
                .stop
                .compare_exchange(0, requested, Ordering::SeqCst, Ordering::SeqCst);
            shared.cancel.store(requested, Ordering::SeqCst);
        };
        // SAFETY: as above: atomics, and the async-signal-safe default handler.
        if let Err(e) = unsafe { signal_hook::low_level::register(SIGUSR1, cancel) } {
            log::warn!("cannot cancel jobs on SIGUSR1: {e}");
        }
        shared
    })
}

/// A job's hold on the process's signal handlers, from its start to its end.
pub(crate) struct OnSignals(());

impl OnSignals {
    /// Points the job's `drain` flag (streaming) or `cancel` flag (batch) at the signal
    /// handlers' for as long as the returned value lives.
    pub(crate) fn install(config: &mut sluice_runtime::RunnerConfig) -> Self {
        let s = signals();
        if s.running.fetch_add(1, Ordering::SeqCst) == 0 {
            // No job was running: a signal that came before this one belongs to nobody.
            s.stop.store(0, Ordering::SeqCst);
            s.drain.store(false, Ordering::SeqCst);
            s.cancel.store(0, Ordering::SeqCst);
        }
        if config.streaming {
            config.drain = s.drain.clone();
            config.cancel = s.cancel.clone();
        } else {
            config.cancel = s.stop.clone();
        }
        OnSignals(())
    }
}

impl Drop for OnSignals {
    fn drop(&mut self) {
        signals().running.fetch_sub(1, Ordering::SeqCst);
    }
}
