//! Metrics of a running job, read while it runs (by the job service's reporter): each
//! worker publishes a copy of its counts at most twice a second as it commits bundles,
//! and [`LiveMetrics::snapshot`] merges the latest copies into a [`JobMetrics`], with
//! each stage's watermark.
//!
//! Counts are those of committed bundles, as in the final metrics; a snapshot lags the
//! job by at most half a second per worker.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::job::JobShared;
use crate::metrics::{JobMetrics, WorkerReport};

/// How often a worker publishes its counts at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Where a running job's workers publish their counts; give one to
/// [`crate::RunnerConfig::live`] and read it from another thread.
#[derive(Default)]
pub struct LiveMetrics {
    inner: Mutex<Option<Inner>>,
}

struct Inner {
    job: Weak<JobShared>,
    reports: Vec<Option<WorkerReport>>,
    published: Vec<Option<Instant>>,
}

/// What a snapshot holds.
#[derive(Debug)]
pub struct LiveSnapshot {
    /// The counts so far.
    pub metrics: JobMetrics,
    /// Per stage: its watermark (event time, microseconds) — for a stage after a shuffle
    /// the input watermark the least advanced worker has acted on, for a source stage
    /// the watermark it holds its output at (the least of its splits') — or `None`
    /// before it has one.
    pub watermarks: Vec<Option<i64>>,
}

impl std::fmt::Debug for LiveMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveMetrics")
    }
}

impl LiveMetrics {
    /// An empty one to give to a job.
    pub fn new() -> Arc<LiveMetrics> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Inner>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The job starts: its workers will publish here.
    pub(crate) fn attach(&self, job: &Arc<JobShared>) {
        let workers = job.config.workers;
        *self.lock() = Some(Inner {
            job: Arc::downgrade(job),
            reports: (0..workers).map(|_| None).collect(),
            published: vec![None; workers],
        });
    }

    /// Worker `local` (its index in this process) has counted `report`; kept if the
    /// worker has not published in the last half second (or `force`).
    pub(crate) fn publish(&self, local: usize, report: &WorkerReport, force: bool) {
        let mut inner = self.lock();
        let Some(inner) = inner.as_mut() else {
            return;
        };
        let Some(last) = inner.published.get_mut(local) else {
            return;
        };
        if !force && last.is_some_and(|t| t.elapsed() < PUBLISH_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        inner.reports[local] = Some(report.clone());
    }

    /// The job's counts so far, `None` before it starts or after it ends.
    pub fn snapshot(&self) -> Option<LiveSnapshot> {
        let (job, reports) = {
            let inner = self.lock();
            let inner = inner.as_ref()?;
            (inner.job.upgrade()?, inner.reports.clone())
        };
        let mut merged = WorkerReport::default();
        for report in reports.into_iter().flatten() {
            merged.merge(report);
        }
        let metrics = JobMetrics::from_report(
            &job.pipeline,
            &job.graph,
            &merged,
            job.config.total_workers(),
            job.epoch.elapsed(),
        );
        let watermarks = job
            .acted
            .iter()
            .zip(&job.layouts)
            .map(|(workers, layout)| {
                let read = |a: &crate::job::Acted| {
                    let atomic = if layout.shuffle_input.is_some() {
                        &a.watermark
                    } else {
                        &a.output
                    };
                    atomic.load(std::sync::atomic::Ordering::Acquire)
                };
                let least = workers.iter().map(read).min()?;
                // Zero is the engine time of "nothing acted on yet".
                (least != 0).then(|| crate::watermark::watermark_of(least).0)
            })
            .collect();
        Some(LiveSnapshot {
            metrics,
            watermarks,
        })
    }
}
