use std::path::PathBuf;

/// A connector's resources are missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// An input pattern matched nothing.
    #[error(
        "transform '{transform}': the input pattern '{pattern}' matches no file; check the path (and quote patterns with * in the shell)"
    )]
    NoMatch {
        /// The Read transform.
        transform: String,
        /// The pattern.
        pattern: String,
    },
    /// An input pattern is not a valid glob.
    #[error("transform '{transform}': '{pattern}' is not a valid file pattern: {reason}")]
    BadPattern {
        /// The Read transform.
        transform: String,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// An input file cannot be read.
    #[error("transform '{transform}': cannot read '{}': {source}; check that it exists and is readable", path.display())]
    Unreadable {
        /// The Read transform.
        transform: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An output location cannot be written.
    #[error("transform '{transform}': cannot write output '{}': {reason}", prefix.display())]
    Unwritable {
        /// The Write transform.
        transform: String,
        /// The output prefix.
        prefix: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}
