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
    /// The signal that cancelled the job, if one did.
    cancel_signal: Option<i32>,
    /// The job runs in the job service (`--service_url`).
    submitted: Option<crate::service::Submitted>,
}

impl PipelineResult {
    pub(crate) fn finished(
        job_id: String,
        job_name: String,
        outcome: JobOutcome,
        cancel_signal: Option<i32>,
    ) -> Self {
        PipelineResult {
            job_id,
            job_name,
            state: outcome.state,
            error: outcome.error,
            metrics: outcome.metrics,
            committed: outcome.committed,
            dry_run: false,
            cancel_signal,
            submitted: None,
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
            cancel_signal: None,
            submitted: None,
        }
    }

    pub(crate) fn submitted(job_name: String, submitted: crate::service::Submitted) -> Self {
        PipelineResult {
            job_id: submitted.id().to_string(),
            job_name,
            state: JobState::Pending,
            error: None,
            metrics: JobMetrics::default(),
            committed: Vec::new(),
            dry_run: false,
            cancel_signal: None,
            submitted: Some(submitted),
        }
    }

    /// Whether the job was submitted to the job service (`--service_url`) and runs there;
    /// its state and metrics are the service's ([`PipelineResult::wait_until_finish`]
    /// follows it).
    pub fn is_submitted(&self) -> bool {
        self.submitted.is_some()
    }

    /// The job's id (`2026-11-22_13_05_09-<n>`).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// `JOB_STATE_DONE`, `JOB_STATE_FAILED` or `JOB_STATE_CANCELLED`
    /// (`JOB_STATE_PENDING` after `--dry_run`).
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

    /// The signal (2 for SIGINT, 15 for SIGTERM) that cancelled the job, if one did.
    pub fn cancel_signal(&self) -> Option<i32> {
        self.cancel_signal
    }

    /// Waits for the job to end; `Ok` if it succeeded (or was a dry run), the job's error
    /// otherwise. The embedded runner has already finished when `run` returns.
    ///
    /// A job cancelled by SIGINT or SIGTERM ends the process here, once its temporary
    /// output is removed, with the exit code the signal stands for (130 or 143), as the
    /// signal would have.
    pub fn wait_until_finish(self) -> Result<()> {
        if let Some(submitted) = &self.submitted {
            let (state, failure) = submitted.wait()?;
            return match state.as_str() {
                "JOB_STATE_DONE" | "JOB_STATE_DRAINED" => Ok(()),
                "JOB_STATE_CANCELLED" => Err(Error::Cancelled {
                    job_id: self.job_id,
                }),
                _ => Err(Error::Service(format!(
                    "job {} failed ({state}): {}",
                    self.job_id,
                    failure
                        .as_deref()
                        .unwrap_or("see `sluice jobs messages` for why")
                ))),
            };
        }
        if let Some(signal) = self.cancel_signal {
            eprintln!(
                "job {} was cancelled ({}): no output was committed",
                self.job_id,
                if signal == 2 {
                    "SIGINT"
                } else if signal == 15 {
                    "SIGTERM"
                } else {
                    "a signal"
                }
            );
            std::process::exit(128 + signal);
        }
        match (self.state, self.error) {
            (JobState::Cancelled, _) => Err(Error::Cancelled {
                job_id: self.job_id,
            }),
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
