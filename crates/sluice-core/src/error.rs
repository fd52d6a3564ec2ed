//! Errors raised while executing transforms.

use std::fmt::{self, Debug, Write};

/// Any error a user function may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of pushing work through an execution unit.
pub type UnitResult = Result<(), Box<ExecError>>;

/// An error raised while executing a transform: which transform, on what, and why.
#[derive(Debug)]
pub struct ExecError {
    /// The user name of the transform that failed (e.g. `CountWords/Init`).
    pub transform: String,
    /// A bounded debug rendering of the element being processed, when known.
    pub element: Option<String>,
    /// The underlying cause.
    pub source: BoxError,
    /// A retry cannot succeed (the input itself is malformed): the job fails at once.
    pub permanent: bool,
}

impl ExecError {
    /// An error of `transform` caused by `source` — permanent if `source` is a
    /// [`Permanent`] error.
    pub fn new(transform: impl Into<String>, source: impl Into<BoxError>) -> Box<ExecError> {
        let source = source.into();
        let permanent = source.is::<Permanent>();
        Box::new(ExecError {
            transform: transform.into(),
            element: None,
            source,
            permanent,
        })
    }

    /// An error that no retry can mend — malformed input data — which fails the job at
    /// once instead of after every attempt.
    pub fn permanent(transform: impl Into<String>, source: impl Into<BoxError>) -> Box<ExecError> {
        let mut error = ExecError::new(transform, source);
        error.permanent = true;
        error
    }

    /// The same error, noting the element that was being processed.
    pub fn with_element(mut self: Box<Self>, element: String) -> Box<Self> {
        self.element.get_or_insert(element);
        self
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transform '{}' failed", self.transform)?;
        if let Some(element) = &self.element {
            write!(f, " on element {element}")?;
        }
        write!(f, ": {}", display_safely(&*self.source))
    }
}

/// `value.to_string()`, or a note saying its `Display` panicked: a user error whose
/// formatting panics must not take down the code that reports it.
pub fn display_safely(value: &(dyn fmt::Display + '_)) -> String {
    let mut out = String::new();
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = write!(out, "{value}");
    }));
    match written {
        Ok(()) => out,
        Err(panic) => format!(
            "(the error's message could not be formatted: its Display panicked: {})",
            panic_message(&*panic)
        ),
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// A file-system operation failed: what was being done, on which path, and the
/// operating system's error — so that a caller can tell a full disk
/// (`source.kind() == StorageFull`) from a permission error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done: "create", "write", "rename ... to", "sync", ...
    pub action: String,
    /// The file or directory.
    pub path: std::path::PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// An error of `action` on `path`.
    pub fn new(
        action: impl Into<String>,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> FileError {
        FileError {
            action: action.into(),
            path: path.into(),
            source,
        }
    }
}

/// The first `std::io::Error` among `error` and its sources, if any: how a caller tells
/// what kind of I/O failure ended a job.
pub fn find_io_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        if let Some(file) = e.downcast_ref::<FileError>() {
            return Some(&file.source);
        }
        current = e.source();
    }
    None
}

/// An error that no retry can mend — the element itself is malformed — returned by user
/// code to fail the job at once instead of after every attempt of the bundle. (A ParDo
/// with a dead-letter output still retries it, and sets the element aside on the last
/// attempt.)
///
/// ```
/// use sluice_core::error::Permanent;
/// fn parse(line: &str) -> Result<u64, sluice_core::BoxError> {
///     line.parse().map_err(|e| Permanent::new(format!("not a number ({e}): {line}")).into())
/// }
/// assert!(parse("x").unwrap_err().is::<Permanent>());
/// ```
#[derive(Debug)]
pub struct Permanent(pub BoxError);

impl Permanent {
    /// `error`, marked permanent.
    pub fn new(error: impl Into<BoxError>) -> Permanent {
        Permanent(error.into())
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The message of a caught panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// The longest element rendering an error report carries.
pub const MAX_ELEMENT_RENDERING: usize = 256;

/// Renders a value with `Debug`, cut to [`MAX_ELEMENT_RENDERING`] characters.
pub fn render_element<T: Debug + ?Sized>(value: &T) -> String {
    struct Bounded(String);
    impl Write for Bounded {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room =
                MAX_ELEMENT_RENDERING + 1 - self.0.chars().count().min(MAX_ELEMENT_RENDERING + 1);
            self.0.extend(s.chars().take(room));
            if self.0.chars().count() > MAX_ELEMENT_RENDERING {
                Err(fmt::Error) // stop formatting a huge value early
            } else {
                Ok(())
            }
        }
    }
    let mut out = Bounded(String::new());
    let _ = write!(out, "{value:?}");
    let mut s = out.0;
    if s.chars().count() > MAX_ELEMENT_RENDERING {
        s = s.chars().take(MAX_ELEMENT_RENDERING).collect();
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_bounded() {
        let big = "x".repeat(10_000);
        let r = render_element(&big);
        assert_eq!(r.chars().count(), MAX_ELEMENT_RENDERING + 1);
        assert!(r.ends_with('…'));
        assert_eq!(render_element(&42), "42");
    }

    #[test]
    fn display_names_transform_and_element() {
        let e = ExecError::new("Parse", "bad digit").with_element("\"x1\"".into());
        assert_eq!(
            e.to_string(),
            "transform 'Parse' failed on element \"x1\": bad digit"
        );
    }
}

/// Which step's user code is running on this thread, so that a panic caught once per
/// bundle (not per element) can still be attributed to its transform, and a watchdog on
/// another thread can name the transform a stuck bundle is in.
///
/// A unit calls [`enter_step`](current_step::enter_step) before user code and
/// [`leave_step`](current_step::leave_step) with the returned value after it. A panic
/// skips `leave_step`, so the innermost step stays recorded until the bundle's guard reads
/// it with [`take_panicked_step`](current_step::take_panicked_step).
pub mod current_step {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    thread_local! {
        static CURRENT: Arc<AtomicU32> = Arc::new(AtomicU32::new(NONE));
    }

    /// The marker's value when no step's code is running.
    pub const NONE: u32 = u32::MAX;

    /// Marks `step` as running; returns what was running before.
    #[inline]
    pub fn enter_step(step: u32) -> u32 {
        // A load and a store rather than a swap: only this thread writes, and plain moves
        // cost nothing on the per-element path.
        CURRENT.with(|c| {
            let previous = c.load(Ordering::Relaxed);
            c.store(step, Ordering::Relaxed);
            previous
        })
    }

    /// Restores what was running before [`enter_step`].
    #[inline]
    pub fn leave_step(previous: u32) {
        CURRENT.with(|c| c.store(previous, Ordering::Relaxed));
    }

    /// Runs `f` as code of `step`.
    #[inline]
    pub fn in_step<R>(step: u32, f: impl FnOnce() -> R) -> R {
        let previous = enter_step(step);
        let result = f();
        leave_step(previous);
        result
    }

    /// The step whose code was running when a panic unwound, clearing the record.
    pub fn take_panicked_step() -> Option<u32> {
        let step = CURRENT.with(|c| {
            let step = c.load(Ordering::Relaxed);
            c.store(NONE, Ordering::Relaxed);
            step
        });
        (step != NONE).then_some(step)
    }

    /// This thread's marker, for another thread to read.
    pub fn handle() -> Arc<AtomicU32> {
        CURRENT.with(Arc::clone)
    }
}

/// Keeping the panics of user code that will be retried off stderr.
///
/// Rust's default panic hook prints every panic, with a backtrace under
/// `RUST_BACKTRACE=1`; a job retrying 1% transient failures over 100,000 elements would
/// print thousands of them. The runtime runs bundles [`quietly`](quiet_panics::quietly):
/// a panic there is caught, reported in the runtime's own (rate-limited) log, and
/// printed by the default hook only on a bundle's last attempt, when it can fail the
/// job. Panics anywhere else print as usual.
pub mod quiet_panics {
    use std::cell::Cell;
    use std::sync::Once;

    thread_local! {
        /// Inside a quiet region, and whether panics there still print.
        static QUIET: Cell<Option<bool>> = const { Cell::new(None) };
    }

    /// Installs the panic hook (once per process); it defers to the hook that was
    /// installed before it outside quiet regions.
    pub fn install() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if QUIET.with(Cell::get) == Some(false) {
                    return;
                }
                previous(info);
            }));
        });
    }

    /// Runs `f` in a quiet region: a panic in it is not printed unless `loud` (the
    /// bundle's last attempt). The caller catches the panic.
    pub fn quietly<R>(loud: bool, f: impl FnOnce() -> R) -> R {
        let before = QUIET.with(|q| q.replace(Some(loud)));
        let result = f();
        QUIET.with(|q| q.set(before));
        result
    }
}
