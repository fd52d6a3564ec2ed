use std::fmt;
use std::path::PathBuf;

/// A connector's resources are missing or unusable.
#[derive(Debug)]
#[non_exhaustive]
pub enum IoError {
    /// An input pattern matched nothing.
    NoMatch {
        /// The Read transform.
        transform: String,
        /// The pattern.
        pattern: String,
    },
    /// An input pattern is not a valid glob.
    BadPattern {
        /// The Read transform.
        transform: String,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// An input file cannot be read.
    Unreadable {
        /// The Read transform.
        transform: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An output location cannot be written.
    Unwritable {
        /// The Write transform.
        transform: String,
        /// The output prefix.
        prefix: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// An input file's columns do not fit the type read from it.
    Schema {
        /// The Read transform.
        transform: String,
        /// The file.
        path: PathBuf,
        /// Which column, and how it differs.
        reason: String,
    },
    /// A database or broker is unreachable, or its table, query or topic does not fit.
    Connector {
        /// The Read or Write transform.
        transform: String,
        /// What is wrong, then `; ` and what to do.
        problem: String,
    },
}

impl IoError {
    /// The transform whose resource is unusable.
    pub fn transform(&self) -> &str {
        match self {
            IoError::NoMatch { transform, .. }
            | IoError::BadPattern { transform, .. }
            | IoError::Unreadable { transform, .. }
            | IoError::Unwritable { transform, .. }
            | IoError::Schema { transform, .. }
            | IoError::Connector { transform, .. } => transform,
        }
    }

    /// What is wrong, without the transform's name.
    pub fn problem(&self) -> String {
        match self {
            IoError::NoMatch { pattern, .. } => {
                format!("the input pattern '{pattern}' matches no file")
            }
            IoError::BadPattern {
                pattern, reason, ..
            } => format!("'{pattern}' is not a valid file pattern: {reason}"),
            IoError::Unreadable { path, source, .. } => {
                format!("cannot read '{}': {source}", path.display())
            }
            IoError::Unwritable { prefix, reason, .. } => {
                format!("cannot write output '{}': {reason}", prefix.display())
            }
            IoError::Schema { path, reason, .. } => {
                format!("'{}' does not fit the type read: {reason}", path.display())
            }
            IoError::Connector { problem, .. } => problem.clone(),
        }
    }

    /// What to do about it, where the problem does not already say.
    pub fn fix(&self) -> Option<&'static str> {
        match self {
            IoError::NoMatch { .. } => {
                Some("check the path, and quote patterns with * in the shell")
            }
            IoError::BadPattern { .. } => Some("use *, ? and [...] as in a shell glob"),
            IoError::Unreadable { .. } => Some("check that it exists and is readable"),
            IoError::Unwritable { .. } | IoError::Connector { .. } => None,
            IoError::Schema { .. } => {
                Some("read a type whose fields match the file's columns (names and types)")
            }
        }
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transform '{}': {}", self.transform(), self.problem())?;
        match self.fix() {
            Some(fix) => write!(f, "; {fix}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IoError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}
