//! Stuck and slow work: a thread that watches every worker's current bundle.
//!
//! A worker running user code cannot report on itself, so each worker publishes what it
//! is doing in a [`WorkerProgress`]: the stage and bundle, when the bundle started, the
//! step whose code is running (the `current_step` marker of its thread) and the root's
//! position in the split (a byte offset, an element or group index). The watchdog reads
//! them and logs a warning, once per bundle, when one has run longer than the threshold.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_plan::ExecutionGraph;

/// What one worker is doing, readable from another thread.
#[derive(Debug, Default)]
pub struct WorkerProgress {
    /// Milliseconds since the job started at which the current bundle began, plus one;
    /// 0 when the worker is between bundles.
    started: AtomicU64,
    /// The stage of the current bundle.
    stage: AtomicUsize,
    /// The current bundle's split or group range.
    bundle: Mutex<String>,
    /// The root's position in the current bundle.
    pub position: Arc<AtomicU64>,
    /// The worker thread's current-step marker.
    step: Mutex<Option<Arc<AtomicU32>>>,
    /// The current bundle has been reported as stuck.
    warned: AtomicBool,
    epoch: Mutex<Option<Instant>>,
}

impl WorkerProgress {
    /// Called on the worker's thread before its first bundle.
    pub fn attach_thread(&self, epoch: Instant, step: Arc<AtomicU32>) {
        if let Ok(mut s) = self.step.lock() {
            *s = Some(step);
        }
        if let Ok(mut e) = self.epoch.lock() {
            *e = Some(epoch);
        }
    }

    /// A bundle of `stage` begins.
    pub fn begin(&self, stage: usize, bundle: &str) {
        let epoch = self.epoch.lock().ok().and_then(|e| *e);
        let now = epoch.map(|e| e.elapsed().as_millis() as u64).unwrap_or(0);
        if let Ok(mut b) = self.bundle.lock() {
            b.clear();
            b.push_str(bundle);
        }
        self.stage.store(stage, Ordering::Relaxed);
        self.warned.store(false, Ordering::Relaxed);
        self.position.store(0, Ordering::Relaxed);
        self.started.store(now + 1, Ordering::Release);
    }

    /// The bundle ended.
    pub fn end(&self) {
        self.started.store(0, Ordering::Release);
    }
}

/// Watches the workers of a job until dropped.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching: a bundle running longer than `threshold` is reported once.
    pub fn start(
        workers: Vec<Arc<WorkerProgress>>,
        graph: Arc<ExecutionGraph>,
        epoch: Instant,
        threshold: Duration,
    ) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let tick = (threshold / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let thread = std::thread::Builder::new()
            .name("sluice-watchdog".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    std::thread::park_timeout(tick);
                    let now = epoch.elapsed().as_millis() as u64;
                    for (worker, p) in workers.iter().enumerate() {
                        let started = p.started.load(Ordering::Acquire);
                        if started == 0 || p.warned.load(Ordering::Relaxed) {
                            continue;
                        }
                        let running = Duration::from_millis(now.saturating_sub(started - 1));
                        if running < threshold {
                            continue;
                        }
                        p.warned.store(true, Ordering::Relaxed);
                        warn_stuck(&graph, worker, p, running);
                    }
                }
            })
            .ok();
        Watchdog { stop, thread }
    }
}

fn warn_stuck(graph: &ExecutionGraph, worker: usize, p: &WorkerProgress, running: Duration) {
    let stage = graph.stages.get(p.stage.load(Ordering::Relaxed));
    let step = p
        .step
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|a| a.load(Ordering::Relaxed)))
        .and_then(|s| graph.steps.get(s as usize))
        .map(|s| s.name.clone())
        .unwrap_or_else(|| "the runner".into());
    let bundle = p.bundle.lock().map(|b| b.clone()).unwrap_or_default();
    log::warn!(
        "worker {worker} has been running one bundle of stage {} for {:.1}s: in transform '{step}', at position {} of {bundle}; \
         a bundle this slow may be stuck (an external call without a timeout, an endless loop) or may need a Reshuffle before it",
        stage
            .map(|s| format!("{} ({})", s.id, s.name))
            .unwrap_or_default(),
        running.as_secs_f64(),
        p.position.load(Ordering::Relaxed),
    );
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
