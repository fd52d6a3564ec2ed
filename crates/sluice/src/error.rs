//! The errors a pipeline author sees.

use std::fmt;
use std::path::PathBuf;

use sluice_plan::ValidationErrors;
use sluice_runtime::job::JobError;

use crate::options::OptionsError;

/// Everything that can go wrong building or running a pipeline.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line flag is missing or malformed.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The pipeline is invalid; nothing was read or written.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// A source or sink is unusable; nothing was read or written.
    #[error(transparent)]
    Io(#[from] sluice_io::IoError),
    /// The job ran and failed; no output was committed.
    #[error("job {job_id} failed (JOB_STATE_FAILED): {error}")]
    JobFailed {
        /// The job's id.
        job_id: String,
        /// What failed.
        error: JobError,
    },
    /// The job was cancelled before it finished; no output was committed.
    #[error("job {job_id} was cancelled (JOB_STATE_CANCELLED); no output was committed")]
    Cancelled {
        /// The job's id.
        job_id: String,
    },
    /// The job service (`--service_url`) could not be used, or a job it ran did not
    /// succeed.
    #[error("{0}")]
    Service(String),
    /// The plan could not be written where `--plan_out` asked.
    #[error("cannot write the plan to {} (--plan_out): {source}", path.display())]
    PlanOut {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// `Debug` prints the message and its causes, so that `main` returning `Err` shows
/// people what happened rather than a struct dump.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        let mut last = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !last.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            last = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// The result type of sluice's API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
