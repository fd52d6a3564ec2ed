//! What a run returns.

use sluice_runtime::job::{JobError, JobOutcome};
use sluice_runtime::{JobMetrics, JobState};

use crate::error::{Error, Result};

/// The outcome of [`crate::Pipeline::run`]: the job's id, final state and metrics.
#[derive(Debug)]
pub struct PipelineResult {
    job_id: String,
    job_name: String,
    state: JobState,
    error: Option<JobError>,
    metrics: JobMetrics,
    committed: Vec<String>,
    dry_run: bool,
}

impl PipelineResult {
    pub(crate) fn finished(job_id: String, job_name: String, outcome: JobOutcome) -> Self {
        PipelineResult {
            job_id,
            job_name,
            state: outcome.state,
            error: outcome.error,
            metrics: outcome.metrics,
            committed: outcome.committed,
            dry_run: false,
        }
    }

    pub(crate) fn dry_run(job_id: String, job_name: String) -> Self {
        PipelineResult {
            job_id,
            job_name,
            state: JobState::Pending,
            error: None,
            metrics: JobMetrics::default(),
            committed: Vec::new(),
            dry_run: true,
        }
    }

    /// The job's id (`2026-11-22_13_05_09-<n>`).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// `JOB_STATE_DONE` or `JOB_STATE_FAILED` (`JOB_STATE_PENDING` after `--dry_run`).
    pub fn state(&self) -> JobState {
        self.state
    }

    /// Why the job failed.
    pub fn error(&self) -> Option<&JobError> {
        self.error.as_ref()
    }

    /// Elements and bytes per transform, time per stage.
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// One line per sink describing what it committed.
    pub fn outputs(&self) -> &[String] {
        &self.committed
    }

    /// Whether the run only printed the plan (`--dry_run`).
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Waits for the job to end; `Ok` if it succeeded (or was a dry run), the job's error
    /// otherwise. The embedded runner has already finished when `run` returns.
    pub fn wait_until_finish(self) -> Result<()> {
        match (self.state, self.error) {
            (JobState::Failed, Some(error)) => Err(Error::JobFailed {
                job_id: self.job_id,
                error,
            }),
            (JobState::Failed, None) => Err(Error::JobFailed {
                job_id: self.job_id,
                error: JobError::Engine("failed without a recorded cause".into()),
            }),
            _ => Ok(()),
        }
    }
}
