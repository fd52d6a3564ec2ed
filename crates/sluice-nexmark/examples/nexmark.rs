//! Nexmark: runs one of the thirteen Nexmark queries over generated or recorded events.
//!
//! ```text
//! cargo run --release --example nexmark -- --query=5 --num_events=1000000
//! cargo run --release --example nexmark -- --query=3 --input=events.json --output=q3.json
//! cargo run --release --example nexmark -- --generate_only=events.json --num_events=1000000
//! cargo run --release --example nexmark -- --query=5 --streaming --event_rate=10000 --num_events=0
//! ```
//!
//! | flag | meaning | default |
//! |---|---|---|
//! | `--query=N` | the query, 0 to 12 | 0 |
//! | `--num_events=N` | events to generate (0 in streaming: without end, until Ctrl-C) | 100000 |
//! | `--input=FILE` | read JSON-lines events (Beam's Nexmark format) instead of generating | none |
//! | `--generate_only=FILE` | write the generated events as JSON lines and exit | none |
//! | `--output=FILE` | write the results, one JSON line each | results are counted |
//! | `--streaming` | generate an unbounded stream; results are emitted as triggers fire | off |
//! | `--event_rate=N` | events per second: sets the generator's rate (and so event times), and in streaming paces the stream in real time | 10000 (unpaced) |
//! | `--collect` | gather the results in this process; print their number and a checksum | off |
//! | `--direct_num_workers=N` | worker threads | one per core |
//!
//! It ends with a line `events=<n> results=<n> seconds=<s> events_per_sec=<r>`; a paced
//! stream adds `latency_p50_ms=<ms> latency_p99_ms=<ms>`: how long after the end of a
//! result's window was due in wall time the result arrived, over the `latency_samples`
//! results whose window closed while the stream ran (windows flushed early when a finite
//! stream ends are not sampled).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

// Nexmark allocates a few strings per event; mimalloc serves that faster than the
// system allocator. Any program using sluice may choose its allocator this way. It is
// built without transparent huge pages (feature `no_thp`): memory it returns and takes
// back would otherwise be zeroed by the kernel 2 MiB at a time, which cost up to a third
// of the time of the shuffle-heavy queries on one worker.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sluice::prelude::*;
use sluice_nexmark::generator::NexmarkConfig;
use sluice_nexmark::json::{read_events, write_events};
use sluice_nexmark::queries::{LatencyProbe, Output, query};
use sluice_nexmark::source::{NexmarkRead, wall_ms};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexmark: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    for (flag, help) in [
        ("query", "the query, 0 to 12 (default: 0)"),
        (
            "num_events",
            "events to generate; 0 in streaming: without end (default: 100000)",
        ),
        (
            "input",
            "read JSON-lines events (Beam's Nexmark format) instead of generating",
        ),
        (
            "generate_only",
            "write the generated events to this file as JSON lines and exit",
        ),
        (
            "output",
            "write the results to this file, one JSON line each",
        ),
        (
            "event_rate",
            "events per second; in streaming, paces the stream in real time",
        ),
        (
            "collect",
            "gather the results in this process and print their number and checksum",
        ),
    ] {
        p.describe_flag(flag, help);
    }
    let options = p.options();
    let query_number: u32 = p.arg_parse("query")?.unwrap_or(0);
    let streaming = options.streaming;
    let num_events: u64 = p.arg_parse("num_events")?.unwrap_or(100_000);
    let event_rate: Option<u32> = p.arg_parse("event_rate")?;
    if event_rate == Some(0) {
        return Err(sluice::OptionsError::Invalid {
            flag: "event_rate".into(),
            value: "0".into(),
            expected: "events per second, at least 1".into(),
        }
        .into());
    }
    if num_events == 0 && !streaming {
        return Err(sluice::OptionsError::Invalid {
            flag: "num_events".into(),
            value: "0".into(),
            expected: "a number of events; 0 (without end) needs --streaming".into(),
        }
        .into());
    }
    let mut config = NexmarkConfig {
        num_events,
        ..NexmarkConfig::default()
    };
    if let Some(rate) = event_rate {
        config.first_event_rate = rate;
        config.next_event_rate = rate;
    }
    let input: Option<String> = p.arg_parse("input")?;
    let output: Option<PathBuf> = p.arg_parse::<String>("output")?.map(PathBuf::from);
    let started = Instant::now();

    if let Some(path) = p.arg_parse::<String>("generate_only")?
        && !p.help_requested()
    {
        let written = write_events(&config, Path::new(&path)).map_err(|e| {
            sluice::Error::from(sluice::OptionsError::Invalid {
                flag: "generate_only".into(),
                value: path.clone(),
                expected: format!("a writable file path ({e})"),
            })
        })?;
        let seconds = started.elapsed().as_secs_f64();
        println!("wrote {written} events to {path}");
        println!(
            "events={written} results=0 seconds={seconds:.3} events_per_sec={:.0}",
            written as f64 / seconds
        );
        return Ok(());
    }

    if query_number > 12 {
        return Err(sluice::OptionsError::Invalid {
            flag: "query".into(),
            value: query_number.to_string(),
            expected: "a Nexmark query from 0 to 12".into(),
        }
        .into());
    }
    // A paced stream starts a moment from now, so that setting up is not late.
    let pacing = match (&input, streaming, event_rate) {
        (None, true, Some(_)) => Some(wall_ms() + 200),
        _ => None,
    };
    let events = match &input {
        Some(pattern) => read_events(&p, "Events", pattern)?,
        None if streaming => p.nexmark_stream("Events", &config, pacing),
        None => p.nexmark_events("Events", &config),
    };
    // One file, written under a temporary name and renamed into place only if the job
    // succeeds; whether it can be written is checked before anything runs.
    let sink = match (&output, pacing) {
        (Some(path), _) => Output::Text(path.to_string_lossy().into_owned()),
        (None, Some(wall_base_ms)) => Output::Latency(LatencyProbe {
            wall_base_ms,
            base_time_ms: config.base_time_ms,
            samples: Arc::new(Mutex::new(Vec::new())),
        }),
        (None, None) if p.flag("collect")? => Output::Collect,
        (None, None) => Output::Count,
    };
    let collected = query(query_number, &events, &config, &sink)?;

    let result = p.run()?;
    let metrics = result.metrics().clone();
    if result.is_submitted() {
        // The job service runs it; its metrics are the service's (`sluice jobs metrics`).
        return result.wait_until_finish();
    }
    result.wait_until_finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let n_events = metrics
        .transform("Events")
        .and_then(|t| t.elements_out)
        .unwrap_or(0);
    let n_results = match &sink {
        Output::Text(_) => metrics
            .transform("Format")
            .and_then(|t| t.elements_out)
            .unwrap_or(0),
        _ => metrics.counter("Results", "results").unwrap_or(0) as u64,
    };
    if let Some(path) = &output {
        println!("wrote {n_results} results to {}", path.display());
    }
    if let Some(collected) = collected {
        // Gathered here, whichever processes computed them.
        let mut results = collected.values();
        results.sort();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&results, &mut hasher);
        println!(
            "collected={} checksum={:016x}",
            results.len(),
            std::hash::Hasher::finish(&hasher)
        );
    }
    let mut summary = format!(
        "events={n_events} results={n_results} seconds={seconds:.3} events_per_sec={:.0}",
        n_events as f64 / seconds
    );
    if let Output::Latency(probe) = &sink
        && let (Some(p50), Some(p99)) = (probe.percentile(50.0), probe.percentile(99.0))
    {
        let measured = probe.samples.lock().map_or(0, |s| s.len());
        summary.push_str(&format!(
            " latency_p50_ms={p50} latency_p99_ms={p99} latency_samples={measured}"
        ));
    }
    println!("{summary}");
    Ok(())
}
