//! Faults: bundle retries, coupled failure, dead letters and stuck-bundle warnings, from
//! the command line.
//!
//! ```text
//! cargo run --release --example faults -- --fail_rate=0.01                    # transient errors, retried
//! cargo run --release --example faults -- --fail_rate=0.01 --fail_mode=panic  # transient panics, retried
//! cargo run --release --example faults -- --fail_mode=permanent                # one poison element: the job fails
//! cargo run --release --example faults -- --fail_mode=permanent --dead_letter  # ... routed aside instead
//! cargo run --release --example faults -- --stall_ms=2000 --stuck_bundle_secs=0.5
//! ```
//!
//! The pipeline squares the numbers `0..--num` (`Square`), then checks them (`Check`),
//! which is where faults are injected; both run fused in one stage, so a failure in
//! `Check` re-runs `Square` for the whole bundle. Results go to `--output` (default: the
//! temporary directory), dead letters beside them. The program prints the final state and
//! the retry metrics.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::prelude::*;

/// How `Check` fails.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FailMode {
    /// Returns an error, on the first attempt only.
    Error,
    /// Panics, on the first attempt only.
    Panic,
    /// One element (the middle one) fails on every attempt.
    Permanent,
}

/// Squares numbers and counts how often it ran, across attempts.
#[derive(Clone)]
struct Square {
    processed: Arc<AtomicU64>,
}

impl DoFn for Square {
    type In = u64;
    type Out = u64;
    fn process(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        self.processed.fetch_add(1, Ordering::Relaxed);
        ctx.emit(x * x);
        Ok(())
    }
}

/// Passes squares through, failing as configured.
#[derive(Clone)]
struct Check {
    mode: FailMode,
    /// Elements failing on their first attempt: those whose hash falls under this.
    threshold: u64,
    poison: u64,
    stall: Option<(u64, Duration)>,
    /// Elements that have failed once (shared by every instance, across attempts).
    failed_once: Arc<Mutex<HashSet<u64>>>,
}

impl Check {
    fn fails_transiently(&self, x: u64) -> bool {
        let hash = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        hash < self.threshold
            && self
                .failed_once
                .lock()
                .map(|mut s| s.insert(x))
                .unwrap_or(false)
    }
}

impl DoFn for Check {
    type In = u64;
    type Out = u64;
    fn process(&mut self, square: u64, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
        if let Some((at, how_long)) = self.stall
            && square == at * at
            && self
                .failed_once
                .lock()
                .map(|mut s| s.insert(u64::MAX))
                .unwrap_or(false)
        {
            std::thread::sleep(how_long);
        }
        let failing = match self.mode {
            FailMode::Permanent => square == self.poison * self.poison,
            FailMode::Error | FailMode::Panic => self.fails_transiently(square),
        };
        if failing {
            if self.mode == FailMode::Panic {
                panic!("injected panic on {square}");
            }
            return Err(format!("injected failure on {square}").into());
        }
        ctx.emit(square);
        Ok(())
    }
}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    let num = p.arg_parse::<u64>("num")?.unwrap_or(100_000);
    let fail_rate = p
        .arg_parse::<f64>("fail_rate")?
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    let mode = match p.arg_or("fail_mode", "error").as_str() {
        "error" => FailMode::Error,
        "panic" => FailMode::Panic,
        "permanent" => FailMode::Permanent,
        other => {
            return Err(sluice::OptionsError::Invalid {
                flag: "fail_mode".into(),
                value: other.into(),
                expected: "error, panic or permanent".into(),
            }
            .into());
        }
    };
    let dead_letter = p.flag("dead_letter")?;
    let stall_ms = p.arg_parse::<u64>("stall_ms")?;
    let default_output = std::env::temp_dir().join("sluice-faults").join("squares");
    let output = p.arg_or("output", &default_output.to_string_lossy());

    let processed = Arc::new(AtomicU64::new(0));
    let check = Check {
        mode,
        threshold: (fail_rate * u64::MAX as f64) as u64,
        poison: num / 2,
        stall: stall_ms.map(|ms| (num / 3, Duration::from_millis(ms))),
        failed_once: Arc::default(),
    };
    let squares = p.create("Numbers", (0..num).collect()).par_do(
        "Square",
        Square {
            processed: processed.clone(),
        },
    );
    let checked = if dead_letter {
        let (checked, letters) = squares.par_do_with_dead_letter("Check", check);
        letters
            .map("FormatDeadLetters", |d: DeadLetter<u64>| {
                format!(
                    "{}\t{}\t{} attempts\t{}",
                    d.element, d.transform, d.attempts, d.error
                )
            })
            .write_text("WriteDeadLetters", &format!("{output}-dead-letters"));
        checked
    } else {
        squares.par_do("Check", check)
    };
    checked
        .map("Format", |x: u64| x.to_string())
        .write_text("Write", &output);

    let result = p.run()?;
    if result.is_submitted() {
        // The job service runs the job: follow it there (`sluice jobs metrics` has its counts).
        return result.wait_until_finish();
    }
    let m = result.metrics();
    let stage = m.stages.first();
    let check_metrics = m.transform("Check");
    println!("job {}: {}", result.job_id(), result.state());
    println!(
        "bundles: {} committed, {} attempts, {} retries; Check failed {} attempts, dead-lettered {}, {} DoFn instances torn down",
        stage.map(|s| s.bundles).unwrap_or(0),
        stage.map(|s| s.bundle_attempts).unwrap_or(0),
        stage.map(|s| s.retries).unwrap_or(0),
        check_metrics.map(|t| t.failed_attempts).unwrap_or(0),
        check_metrics.map(|t| t.dead_lettered).unwrap_or(0),
        m.transforms.iter().map(|t| t.teardowns).sum::<u64>(),
    );
    println!(
        "Square processed {} elements for {num} inputs (a failure in Check re-runs Square for its bundle)",
        processed.load(Ordering::Relaxed)
    );
    for committed in result.outputs() {
        println!("output: {committed}");
    }
    result.wait_until_finish()
}
