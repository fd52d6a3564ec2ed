//! Running a job through the job service (`sluice serve`).
//!
//! With `--service_url=URL`, [`crate::Pipeline::run`] validates the pipeline as always,
//! then registers the job with the service — its Job JSON, its arguments, this binary's
//! path and hash, the working directory — logs `Submitted job: <id>` and the job's page,
//! and returns at once. The service starts the same binary with the same arguments
//! plus `--sluice_service_job=<id>`: that process runs the job (on the runner its flags
//! name) and reports to the service every second — its state, its metrics so far, its
//! warnings and errors — and acts on a cancel or drain the service passes back.
//! [`crate::PipelineResult::wait_until_finish`] follows the job through the service.
//!
//! The token for the service's mutating calls comes from `--service_token`, else
//! `SLUICE_TOKEN`, else the token file of the default data directory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_client::{Client, ClientError};
use sluice_runtime::{JobMetrics, LiveMetrics, RunnerConfig};

use crate::error::{Error, Result};
use crate::options::PipelineOptions;

/// How often a job's process reports.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long a job's process keeps trying to deliver its final report.
const FINAL_REPORT_PATIENCE: Duration = Duration::from_secs(60);

/// A client of the service named by the options.
pub(crate) fn client(options: &PipelineOptions) -> Option<Client> {
    let url = options.service_url.as_deref()?;
    Some(Client::new(
        url,
        sluice_client::find_token(options.service_token.as_deref()),
    ))
}

fn service_error(e: ClientError) -> Error {
    Error::Service(e.to_string())
}

/// The arguments the job's process gets: those given, without the service flags (the
/// service adds its own) and with the job's name fixed.
fn job_args(options: &PipelineOptions, job_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in &options.args {
        if std::mem::take(&mut skip_value) && !arg.starts_with("--") {
            continue;
        }
        let body = arg.trim_start_matches('-');
        let (name, has_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        let name = crate::options::snake_case(name);
        if arg.starts_with('-') && (name == "service_url" || name == "service_token") {
            skip_value = !has_value;
            continue;
        }
        out.push(arg.clone());
    }
    if options.job_name.is_none() {
        out.push(format!("--job_name={job_name}"));
    }
    out
}

/// A job submitted to the service.
#[derive(Debug)]
pub(crate) struct Submitted {
    client: Client,
    id: String,
}

/// Registers the job with the service; logs `Submitted job: <id>` and its page.
pub(crate) fn submit(options: &PipelineOptions, job: &Value) -> Result<Submitted> {
    let Some(client) = client(options) else {
        return Err(Error::Service("--service_url is not set".into()));
    };
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let name = job["name"].as_str().unwrap_or_default();
    let binary = std::env::current_exe()
        .map_err(|e| Error::Service(format!("cannot find this program's binary to submit: {e}")))?;
    let hash = sluice_client::binary_hash(&binary).map_err(|e| {
        Error::Service(format!(
            "cannot read this program's binary {}: {e}",
            binary.display()
        ))
    })?;
    let dir = std::env::current_dir()
        .map_err(|e| Error::Service(format!("cannot read the working directory: {e}")))?;
    let body = json!({
        "job": job,
        "args": job_args(options, name),
        "binary": binary.to_string_lossy(),
        "binaryHash": hash,
        "dir": dir.to_string_lossy(),
    });
    client.submit(&body).map_err(service_error)?;
    // Orchestrators scrape this line: stderr, whatever the log level.
    eprintln!("Submitted job: {id}");
    eprintln!("Follow it at {}", client.job_page(&id));
    Ok(Submitted { client, id })
}

impl Submitted {
    /// Follows the job until it ends, printing its warnings and errors to stderr;
    /// returns its final state and failure.
    pub(crate) fn wait(&self) -> Result<(String, Option<String>)> {
        let mut follow: Option<String> = None;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            match self.client.job(&self.id, "summary") {
                Ok(job) => {
                    unreachable_since = None;
                    follow = self.print_messages(follow);
                    let state = job["currentState"].as_str().unwrap_or_default().to_string();
                    if sluice_client::is_terminal(&state) {
                        self.print_messages(follow);
                        let failure = job["failureMessage"].as_str().map(str::to_string);
                        return Ok((state, failure));
                    }
                }
                Err(e @ ClientError::Unreachable { .. }) => {
                    // The service may be restarting.
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > FINAL_REPORT_PATIENCE {
                        return Err(service_error(e));
                    }
                }
                Err(e) => return Err(service_error(e)),
            }
            std::thread::sleep(REPORT_EVERY);
        }
    }

    fn print_messages(&self, mut follow: Option<String>) -> Option<String> {
        loop {
            let Ok(page) = self
                .client
                .messages(&self.id, "JOB_MESSAGE_WARNING", follow.as_deref())
            else {
                return follow;
            };
            for message in page["jobMessages"].as_array().into_iter().flatten() {
                eprintln!(
                    "job {}: {}: {}",
                    self.id,
                    message["messageImportance"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("JOB_MESSAGE_")
                        .to_ascii_lowercase(),
                    message["messageText"].as_str().unwrap_or_default()
                );
            }
            match page["nextPageToken"].as_str() {
                Some(next) => follow = Some(next.to_string()),
                None => return page["followToken"].as_str().map(str::to_string).or(follow),
            }
        }
    }

    /// The job's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// Warnings and errors logged by this process, kept for the service while a reporter
/// runs (`None`: not kept).
static CAPTURED: Mutex<Option<Vec<Value>>> = Mutex::new(None);

/// Keeps a log record for the service if a reporter runs and it is a warning or worse.
pub(crate) fn capture(record: &log::Record<'_>) {
    if record.level() > log::Level::Warn {
        return;
    }
    let mut captured = CAPTURED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(list) = captured.as_mut() {
        // A flood of warnings is cut, not grown without bound between reports.
        if list.len() < 1000 {
            list.push(json!({
                "time": now(),
                "messageImportance": if record.level() == log::Level::Error { "JOB_MESSAGE_ERROR" } else { "JOB_MESSAGE_WARNING" },
                "messageText": record.args().to_string(),
            }));
        }
    }
}

fn take_captured() -> Vec<Value> {
    CAPTURED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default()
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Metrics as the service shows them: the job's metrics, each stage with its watermark
/// and data freshness when it has one.
pub(crate) fn metrics_json(metrics: &JobMetrics, watermarks: &[Option<i64>]) -> Value {
    let mut value = serde_json::to_value(metrics).unwrap_or_default();
    let now_micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    if let Some(stages) = value["stages"].as_array_mut() {
        for (stage, watermark) in stages.iter_mut().zip(watermarks) {
            // Only watermarks of real times: not the start or end of time.
            let Some(micros) = watermark.filter(|w| (0..4_102_444_800_000_000).contains(w)) else {
                continue;
            };
            if let Ok(t) =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                && let Ok(text) = t.format(&time::format_description::well_known::Rfc3339)
            {
                stage["watermark"] = json!(text);
                stage["dataFreshnessSecs"] =
                    json!(((now_micros - i128::from(micros)) as f64 / 1e6).max(0.0));
            }
        }
    }
    value
}

/// Elements per second of each transform, from the change between two reports.
#[derive(Default)]
struct Rates {
    previous: Option<(Instant, std::collections::HashMap<String, u64>)>,
}

impl Rates {
    /// Sets `elementsPerSec` on each transform of `metrics` (after the first call).
    fn fill(&mut self, metrics: &mut Value) {
        let now = Instant::now();
        let mut counts = std::collections::HashMap::new();
        for t in metrics["transforms"].as_array_mut().into_iter().flatten() {
            let Some(n) = t["elementsOut"]
                .as_u64()
                .or_else(|| t["elementsIn"].as_u64())
            else {
                continue;
            };
            let name = t["name"].as_str().unwrap_or_default().to_string();
            if let Some((then, before)) = &self.previous {
                let seconds = now.duration_since(*then).as_secs_f64();
                if seconds > 0.0 {
                    let before = before.get(&name).copied().unwrap_or(0);
                    t["elementsPerSec"] = json!(n.saturating_sub(before) as f64 / seconds);
                }
            }
            counts.insert(name, n);
        }
        self.previous = Some((now, counts));
    }
}

/// The reporting side of a job the service started: a thread that reports every
/// second and passes on what the service asks.
pub(crate) struct Reporter {
    client: Client,
    id: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// Checks that this process built the pipeline that was submitted, then starts
    /// reporting; wires the service's cancel and drain requests to `config`.
    pub(crate) fn start(
        options: &PipelineOptions,
        id: &str,
        description: &Value,
        config: &mut RunnerConfig,
    ) -> std::result::Result<Reporter, Box<(Reporter, String)>> {
        let client =
            client(options).unwrap_or_else(|| Client::new(sluice_client::DEFAULT_URL, None));
        *CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Vec::new());
        let live = LiveMetrics::new();
        config.live = Some(live.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let mut reporter = Reporter {
            client: client.clone(),
            id: id.to_string(),
            stop: stop.clone(),
            thread: None,
        };
        // The job's process must build the pipeline that was submitted.
        match client.job(id, "all") {
            Ok(job) if job["pipelineDescription"] != *description => {
                return Err(Box::new((
                    reporter,
                    "this process built a different pipeline than the one submitted: the program must build the same pipeline from the same flags (was the binary or an input it reads at construction changed?)"
                        .into(),
                )));
            }
            Ok(_) => {}
            Err(e) => log::warn!("job {id}: cannot read the submitted job from the service: {e}"),
        }
        let (drain, cancel) = (config.drain.clone(), config.cancel.clone());
        let id = id.to_string();
        reporter.thread = Some(std::thread::spawn(move || {
            let mut warned = false;
            let mut rates = Rates::default();
            while !stop.load(Ordering::Acquire) {
                let metrics = live.snapshot().map(|s| {
                    let mut metrics = metrics_json(&s.metrics, &s.watermarks);
                    rates.fill(&mut metrics);
                    metrics
                });
                let mut body =
                    json!({"currentState": "JOB_STATE_RUNNING", "messages": take_captured()});
                if let Some(metrics) = metrics {
                    body["metrics"] = metrics;
                }
                match client.report(&id, &body) {
                    Ok(answer) => {
                        warned = false;
                        match answer["requestedState"].as_str() {
                            Some("JOB_STATE_CANCELLED") => {
                                let _ = cancel.compare_exchange(
                                    0,
                                    sluice_runtime::job::CANCEL_REQUESTED,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                );
                            }
                            Some("JOB_STATE_DRAINED") => drain.store(true, Ordering::SeqCst),
                            _ => {}
                        }
                    }
                    Err(e) => {
                        if !warned {
                            // Not captured for the service: it cannot be reached.
                            eprintln!("job {id}: cannot report to the job service: {e}");
                            warned = true;
                        }
                    }
                }
                let until = Instant::now() + REPORT_EVERY;
                while Instant::now() < until && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }));
        Ok(reporter)
    }

    /// Stops reporting and sends the job's end: its state, final metrics and failure.
    pub(crate) fn finish(
        mut self,
        state: &str,
        metrics: Option<Value>,
        failure: Option<String>,
        summary: &[String],
    ) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut body = json!({"currentState": state, "messages": take_captured()});
        if let Some(metrics) = metrics {
            body["metrics"] = metrics;
        }
        for line in summary {
            body["messages"]
                .as_array_mut()
                .expect("messages is a list")
                .push(json!({"time": now(), "messageImportance": "JOB_MESSAGE_BASIC", "messageText": line}));
        }
        if let Some(failure) = failure {
            body["failure"] = json!(failure);
            body["messages"]
                .as_array_mut()
                .expect("messages is a list")
                .push(json!({"time": now(), "messageImportance": "JOB_MESSAGE_ERROR", "messageText": failure}));
        }
        let started = Instant::now();
        loop {
            match self.client.report(&self.id, &body) {
                Ok(_) => return,
                Err(e @ ClientError::Unreachable { .. })
                    if started.elapsed() < FINAL_REPORT_PATIENCE =>
                {
                    log::debug!("job {}: final report: {e}; retrying", self.id);
                    std::thread::sleep(REPORT_EVERY);
                }
                Err(e) => {
                    eprintln!(
                        "job {}: cannot report the job's end to the service: {e}",
                        self.id
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jobs_arguments_lose_the_service_flags_and_keep_the_rest() {
        let options = PipelineOptions::parse([
            "--input=a.txt",
            "--service_url",
            "http://127.0.0.1:1",
            "--serviceToken=abc",
            "--output",
            "out",
        ])
        .unwrap();
        assert_eq!(
            job_args(&options, "wc-1"),
            ["--input=a.txt", "--output", "out", "--job_name=wc-1"]
        );
    }

    #[test]
    fn rates_come_from_the_change_between_reports() {
        let mut rates = Rates::default();
        let mut first = json!({"transforms": [{"name": "Read", "elementsOut": 100}]});
        rates.fill(&mut first);
        assert!(first["transforms"][0].get("elementsPerSec").is_none());
        std::thread::sleep(Duration::from_millis(100));
        let mut second = json!({"transforms": [{"name": "Read", "elementsOut": 150}, {"name": "Sink", "elementsIn": 7}]});
        rates.fill(&mut second);
        let rate = second["transforms"][0]["elementsPerSec"].as_f64().unwrap();
        assert!(rate > 50.0 && rate <= 500.0, "{rate}");
        assert!(second["transforms"][1]["elementsPerSec"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn watermarks_of_real_times_get_a_freshness() {
        let metrics = JobMetrics {
            stages: vec![Default::default(), Default::default(), Default::default()],
            ..Default::default()
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
        let value = metrics_json(&metrics, &[Some(now - 5_000_000), None, Some(i64::MAX / 2)]);
        let stages = value["stages"].as_array().unwrap();
        let freshness = stages[0]["dataFreshnessSecs"].as_f64().unwrap();
        assert!((4.0..60.0).contains(&freshness), "{freshness}");
        assert!(stages[0]["watermark"].as_str().unwrap().ends_with('Z'));
        assert!(stages[1].get("watermark").is_none());
        assert!(stages[2].get("watermark").is_none());
    }
}
