//! The pipeline: construction, validation, planning and running.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::json;
use sluice_core::unit::ElementType;
use sluice_plan::{OptimizeOptions, PCollectionId, Payload, PipelineGraph, TransformId};
use sluice_runtime::{JobState, RunnerConfig};

use crate::error::{Error, Result};
use crate::options::{OptionsError, PipelineOptions};
use crate::pcollection::{PCollection, PValue};
use crate::result::PipelineResult;

/// The runner's known names (after [`PipelineOptions::runner_name`]).
const RUNNERS: &[&str] = &["direct", "cluster"];

pub(crate) struct Inner {
    pub(crate) graph: PipelineGraph,
    /// Composites being expanded, innermost last.
    scope: Vec<TransformId>,
    pub(crate) options: PipelineOptions,
    /// User flags the pipeline has read, with what `--help` says of them.
    read_flags: BTreeMap<String, FlagDoc>,
    /// Made by `from_args`: `--help` ends the process after printing.
    exit_on_help: bool,
    ran: bool,
}

/// What `--help` says of a pipeline flag.
#[derive(Clone, Debug, Default)]
struct FlagDoc {
    required: bool,
    default: Option<String>,
    help: Option<String>,
}

/// A pipeline under construction. Cheap to clone: clones share the same graph.
///
/// ```
/// use sluice::prelude::*;
///
/// let p = Pipeline::for_test();
/// let squares = p.create("Numbers", vec![1u64, 2, 3]).map("Square", |x: u64| x * x).collect("Squares");
/// let result = p.run().unwrap();
/// assert_eq!(result.state(), JobState::Done);
/// let mut got = squares.values();
/// got.sort();
/// assert_eq!(got, [1, 4, 9]);
/// ```
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

impl Pipeline {
    /// A pipeline configured by this process's command line (see [`crate::options`]),
    /// logging to stderr (`RUST_LOG` overrides the default level, `info`).
    pub fn from_args() -> Result<Pipeline> {
        init_logging();
        let p = Pipeline::with_options(PipelineOptions::from_env()?);
        p.inner.borrow_mut().exit_on_help = true;
        Ok(p)
    }

    /// A pipeline configured by the given flags (without the program name).
    pub fn from_flags<I, S>(flags: I) -> Result<Pipeline>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        init_logging();
        Ok(Pipeline::with_options(PipelineOptions::parse(flags)?))
    }

    /// A pipeline with the given options.
    pub fn with_options(options: PipelineOptions) -> Pipeline {
        Pipeline {
            inner: Rc::new(RefCell::new(Inner {
                graph: PipelineGraph::default(),
                scope: Vec::new(),
                options,
                read_flags: BTreeMap::new(),
                exit_on_help: false,
                ran: false,
            })),
        }
    }

    /// A pipeline for tests and doctests: the embedded runner with two workers.
    pub fn for_test() -> Pipeline {
        let mut options = PipelineOptions::parse(Vec::<String>::new()).unwrap_or_default();
        options.direct_num_workers = 2;
        Pipeline::with_options(options)
    }

    /// The options the pipeline was built with.
    pub fn options(&self) -> PipelineOptions {
        self.inner.borrow().options.clone()
    }

    fn mark_read(&self, name: &str) {
        self.inner
            .borrow_mut()
            .read_flags
            .entry(name.to_string())
            .or_default();
    }

    /// Says what the pipeline flag `--name` is for; `--help` prints it.
    pub fn describe_flag(&self, name: &str, help: &str) {
        self.inner
            .borrow_mut()
            .read_flags
            .entry(name.to_string())
            .or_default()
            .help = Some(help.to_string());
    }

    /// Whether `--help` was given: the pipeline is being built only to list its flags,
    /// and [`Pipeline::run`] will print them instead of running. Code with side effects
    /// before `run` (generating input, say) can skip them.
    pub fn help_requested(&self) -> bool {
        self.inner.borrow().options.help
    }

    /// The value of a required pipeline flag `--name`. (Under `--help`, a missing flag
    /// reads as `<name>`, so that the pipeline can be built to list its flags.)
    pub fn arg(&self, name: &str) -> Result<String> {
        self.mark_read(name);
        let mut inner = self.inner.borrow_mut();
        if let Some(doc) = inner.read_flags.get_mut(name) {
            doc.required = true;
        }
        match inner.options.get(name) {
            Some(value) => Ok(value.to_string()),
            None if inner.options.help => Ok(format!("<{name}>")),
            None => Err(OptionsError::Missing {
                flag: name.into(),
                hint: format!("pass --{name}=VALUE"),
            }
            .into()),
        }
    }

    /// The value of `--name`, or `default`.
    pub fn arg_or(&self, name: &str, default: &str) -> String {
        self.mark_read(name);
        if let Some(doc) = self.inner.borrow_mut().read_flags.get_mut(name) {
            doc.default = Some(default.to_string());
        }
        self.inner
            .borrow()
            .options
            .get(name)
            .unwrap_or(default)
            .to_string()
    }

    /// The value of `--name` parsed as `T`, if given.
    pub fn arg_parse<T: FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.mark_read(name);
        Ok(self.inner.borrow().options.parse_flag(name)?)
    }

    /// Whether the boolean flag `--name` is set.
    pub fn flag(&self, name: &str) -> Result<bool> {
        self.mark_read(name);
        Ok(self.inner.borrow().options.is_set(name)?)
    }

    /// What `--help` prints: the pipeline's own flags (those it has read, with their
    /// descriptions and defaults), then the runner's.
    pub fn help_text(&self) -> String {
        let program = std::env::args()
            .next()
            .and_then(|p| {
                std::path::Path::new(&p)
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "pipeline".into());
        let mut out = format!("Usage: {program} [--flag=value ...]\n");
        let inner = self.inner.borrow();
        let width = inner
            .read_flags
            .keys()
            .map(String::len)
            .chain(crate::options::RUNNER_FLAGS.iter().map(|(n, _)| n.len()))
            .max()
            .unwrap_or(0)
            + 2;
        if !inner.read_flags.is_empty() {
            out.push_str("\nPipeline flags:\n");
            for (name, doc) in &inner.read_flags {
                let mut text = doc.help.clone().unwrap_or_default();
                if doc.required {
                    text.push_str(if text.is_empty() {
                        "required"
                    } else {
                        " (required)"
                    });
                }
                if let Some(default) = &doc.default {
                    text.push_str(&format!(" (default: {default})"));
                }
                out.push_str(&format!("  --{name:<width$}{}\n", text.trim_start()));
            }
        }
        out.push_str("\nRunner flags:\n");
        for (name, help) in crate::options::RUNNER_FLAGS {
            out.push_str(&format!("  --{name:<width$}{help}\n"));
        }
        out
    }

    /// How file sources and sinks reach object stores, from the options.
    pub(crate) fn store_options(&self) -> sluice_io::storage::StoreOptions {
        let inner = self.inner.borrow();
        sluice_io::storage::StoreOptions::s3(
            inner.options.s3_endpoint.clone(),
            inner.options.s3_allow_http,
        )
    }

    /// The full name of a transform named `name` in the current composite.
    pub(crate) fn full_name(&self, name: &str) -> String {
        let inner = self.inner.borrow();
        match inner.scope.last() {
            Some(parent) => format!("{}/{name}", inner.graph.transform(*parent).name),
            None => name.to_string(),
        }
    }

    /// Adds a leaf transform with typed outputs; returns its id and output ids.
    pub(crate) fn add_transform(
        &self,
        name: &str,
        inputs: Vec<PCollectionId>,
        payload: Payload,
        outputs: Vec<(String, Arc<dyn ElementType>)>,
    ) -> (TransformId, Vec<PCollectionId>) {
        let full = self.full_name(name);
        let mut inner = self.inner.borrow_mut();
        let parent = inner.scope.last().copied();
        let id = inner
            .graph
            .add_transform(full.clone(), parent, inputs, payload);
        let ids = outputs
            .into_iter()
            .map(|(suffix, element)| {
                inner
                    .graph
                    .add_output(id, format!("{full}.{suffix}"), element)
            })
            .collect();
        (id, ids)
    }

    /// Attaches display data to a transform (shown in the plan).
    pub(crate) fn display(&self, id: TransformId, key: &str, value: impl Into<String>) {
        self.inner.borrow_mut().graph.transforms[id.0]
            .display_data
            .push((key.into(), value.into()));
    }

    /// Records a construction problem, reported by `run` before any data moves.
    pub(crate) fn problem(
        &self,
        transform: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let full = self.full_name(transform);
        self.inner
            .borrow_mut()
            .graph
            .add_problem(full, problem, fix);
    }

    /// Runs `expand` inside a composite transform named `name`, reading `inputs`.
    pub(crate) fn in_composite<O: PValue>(
        &self,
        name: &str,
        inputs: Vec<PCollectionId>,
        expand: impl FnOnce() -> O,
    ) -> O {
        let full = self.full_name(name);
        let id = {
            let mut inner = self.inner.borrow_mut();
            let parent = inner.scope.last().copied();
            let id = inner
                .graph
                .add_transform(full, parent, inputs, Payload::Composite);
            inner.scope.push(id);
            id
        };
        let out = expand();
        let mut inner = self.inner.borrow_mut();
        inner.scope.pop();
        inner.graph.set_composite_outputs(id, out.pcollection_ids());
        out
    }

    /// Applies a composite with no input (for example one that reads several sources).
    pub fn composite<O: PValue>(&self, name: &str, expand: impl FnOnce(&Pipeline) -> O) -> O {
        self.in_composite(name, Vec::new(), || expand(self))
    }

    /// Merges PCollections of one type into one.
    pub fn flatten<T: sluice_core::Element>(
        &self,
        name: &str,
        inputs: &[PCollection<T>],
    ) -> PCollection<T> {
        crate::transforms::flatten::flatten(self, name, inputs)
    }

    /// The pipeline graph as constructed so far (for inspection and plan tests).
    pub fn graph(&self) -> PipelineGraph {
        self.inner.borrow().graph.clone()
    }

    /// The graph, validated.
    fn validated_graph(&self) -> Result<PipelineGraph> {
        let inner = self.inner.borrow();
        let mut graph = inner.graph.clone();
        graph.allow_unsafe_triggers = inner.options.allow_unsafe_triggers;
        sluice_plan::validate(&graph)?;
        Ok(graph)
    }

    /// Validates, optimises and runs the pipeline. With the embedded runner this returns
    /// when the job has finished; [`PipelineResult::wait_until_finish`] reports failure.
    ///
    /// Returns `Err` only when the job could not start: invalid options or pipeline, or a
    /// plan that cannot be written. Nothing is read or written in those cases.
    pub fn run(&self) -> Result<PipelineResult> {
        let options = self.options();
        let runner = options.runner_name();
        if !RUNNERS.contains(&runner.as_str()) {
            return Err(OptionsError::Invalid {
                flag: "runner".into(),
                value: options.runner.clone(),
                expected: "DirectRunner (the embedded runner) or ClusterRunner (several processes)"
                    .into(),
            }
            .into());
        }
        {
            let mut inner = self.inner.borrow_mut();
            if inner.ran {
                drop(inner);
                return Err(OptionsError::Invalid {
                    flag: "run".into(),
                    value: "a second call".into(),
                    expected: "one run per Pipeline; build a new Pipeline to run again".into(),
                }
                .into());
            }
            inner.ran = true;
        }
        if options.help {
            println!("{}", self.help_text());
            if self.inner.borrow().exit_on_help {
                std::process::exit(0);
            }
            return Ok(PipelineResult::dry_run(String::new(), String::new()));
        }
        {
            let inner = self.inner.borrow();
            #[cfg_attr(not(feature = "test-hooks"), allow(unused_mut))]
            let mut known: Vec<&str> = inner.read_flags.keys().map(String::as_str).collect();
            #[cfg(feature = "test-hooks")]
            known.push("test_engine_panic_on_worker");
            inner.options.check_unknown(known.iter().copied())?;
        }

        let graph = Arc::new(self.validated_graph()?);
        let plan = Arc::new(sluice_plan::optimize(&graph, &OptimizeOptions::default()));
        // Streaming when asked, or when a source never ends.
        let streaming = options.streaming || graph.pcollections.iter().any(|pc| !pc.bounded);
        let cluster = runner == "cluster";
        // Processes started one by one (`--worker_hosts`): process 0 leads, reporting and
        // committing as a launcher does.
        let hosted = cluster && options.worker_hosts.is_some();
        let member = options
            .worker
            .clone()
            .filter(|role| cluster && !(hosted && role.index == 0));
        // A job the service started keeps the id it was submitted with.
        let service_job = options.service_job.clone().filter(|_| member.is_none());
        let job_id = match (&member, &service_job) {
            (Some(role), _) => role.job_id.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => new_job_id(),
        };
        let job_name = options.job_name.clone().unwrap_or_else(default_job_name);
        let description = sluice_plan::json::pipeline_description(&graph, &plan);
        let mut job_json = json!({
            "id": job_id,
            "name": job_name,
            "type": if streaming { "JOB_TYPE_STREAMING" } else { "JOB_TYPE_BATCH" },
            "currentState": if options.dry_run { "JOB_STATE_PENDING" } else { "JOB_STATE_RUNNING" },
            "createTime": now_rfc3339(),
            "labels": options.labels,
            "pipelineDescription": description,
        });
        if let Some(path) = options.plan_out.as_ref().filter(|_| member.is_none()) {
            write_json(path, &job_json)?;
        }
        if options.dry_run {
            println!(
                "{}",
                serde_json::to_string_pretty(&job_json).unwrap_or_default()
            );
            return Ok(PipelineResult::dry_run(job_id, job_name));
        }
        // Submitted to the job service, which runs it in a process of its own.
        if options.service_url.is_some()
            && options.service_job.is_none()
            && options.worker.is_none()
        {
            job_json["currentState"] = json!("JOB_STATE_PENDING");
            let submitted = crate::service::submit(&options, &job_json)?;
            return Ok(PipelineResult::submitted(job_name, submitted));
        }

        let workers = if cluster {
            options.threads_per_worker()
        } else {
            options.workers()
        };
        if member.is_none() {
            log::info!(
                "running job {job_id} ({job_name}) on the {} runner with {}: {} transforms in {} fused stages",
                if cluster { "cluster" } else { "embedded" },
                if cluster {
                    format!("{} processes of {workers} thread(s)", options.num_workers)
                } else {
                    format!("{workers} worker{}", if workers == 1 { "" } else { "s" })
                },
                graph.transforms.len(),
                plan.stages.len()
            );
        }
        let mut config = RunnerConfig::new(job_id.clone(), workers);
        config.max_bundle_attempts = options.max_bundle_attempts;
        config.max_memory = options.max_memory;
        if let Some(temp) = &options.temp_location {
            config.temp_dir = std::path::PathBuf::from(temp);
        }
        if streaming {
            config.streaming = true;
            // A streaming job does not give up on a bundle unless told to.
            if !options.max_bundle_attempts_given {
                config.max_bundle_attempts = u32::MAX;
            }
            if let Some(clock) = graph.leaves().find_map(|(_, t)| match &t.payload {
                sluice_plan::Payload::Read(s) | sluice_plan::Payload::Create(s) => s.test_clock(),
                _ => None,
            }) {
                config.clock = clock;
            }
        }
        // Ctrl-C or SIGTERM drains a streaming job and cancels a batch one.
        let signals = crate::drain::OnSignals::install(&mut config);
        config.stuck_bundle_warning = std::time::Duration::from_secs_f64(options.stuck_bundle_secs);
        // Test hook (built only for sluice's own tests): a worker dies inside the engine.
        #[cfg(feature = "test-hooks")]
        {
            config.panic_worker_for_test = options
                .get("test_engine_panic_on_worker")
                .and_then(|w| w.parse().ok());
        }
        let cancel = config.cancel.clone();
        let drained = config.drain.clone();
        let reporter = match &service_job {
            Some(id) => match crate::service::Reporter::start(
                &options,
                id,
                &job_json["pipelineDescription"],
                &mut config,
            ) {
                Ok(reporter) => Some(reporter),
                Err(mismatch) => {
                    let (reporter, failure) = *mismatch;
                    log::error!("job {id}: {failure}");
                    reporter.finish("JOB_STATE_FAILED", None, Some(failure.clone()), &[]);
                    return Err(Error::Service(format!("job {id} failed: {failure}")));
                }
            },
            None => None,
        };
        let outcome = if hosted {
            let hash = crate::cluster::plan_hash(&job_json["pipelineDescription"]);
            crate::cluster::run_hosted(graph.clone(), plan.clone(), config, &options, &hash)?
        } else if cluster {
            let hash = crate::cluster::plan_hash(&job_json["pipelineDescription"]);
            match &member {
                Some(role) => crate::cluster::run_member(
                    graph.clone(),
                    plan.clone(),
                    config,
                    role,
                    &hash,
                    options.worker_timeout_secs,
                ),
                None => {
                    crate::cluster::launch(graph.clone(), plan.clone(), &config, &options, &hash)?
                }
            }
        } else {
            sluice_runtime::run(graph.clone(), plan.clone(), config)
        };
        drop(signals);
        let cancel_signal = match cancel.load(std::sync::atomic::Ordering::SeqCst) {
            0 | sluice_runtime::job::CANCEL_REQUESTED => None,
            n => i32::try_from(n).ok(),
        }
        .filter(|_| outcome.state == JobState::Cancelled);
        match (&outcome.state, &outcome.error) {
            (JobState::Done, _) => log::info!(
                "job {job_id} finished: {} in {:.2}s{}",
                outcome.state,
                outcome.metrics.wall_time.as_secs_f64(),
                outcome
                    .committed
                    .iter()
                    .map(|c| format!("; wrote {c}"))
                    .collect::<String>()
            ),
            (state, Some(error)) => log::error!("job {job_id} ended {state}: {error}"),
            (state, None) => log::error!("job {job_id} ended {state}"),
        }
        if let Some(reporter) = reporter {
            let metrics = crate::service::metrics_json(&outcome.metrics, &[]);
            // A streaming job that ended because it was drained ends DRAINED.
            let state = if outcome.state == JobState::Done
                && streaming
                && drained.load(std::sync::atomic::Ordering::SeqCst)
            {
                "JOB_STATE_DRAINED"
            } else {
                outcome.state.as_str()
            };
            let mut summary = vec![format!(
                "job ended {state} after {:.2} s",
                outcome.metrics.wall_time.as_secs_f64()
            )];
            summary.extend(outcome.committed.iter().map(|c| format!("wrote {c}")));
            reporter.finish(
                state,
                Some(metrics),
                outcome
                    .error
                    .as_ref()
                    .filter(|_| outcome.state == JobState::Failed)
                    .map(|e| e.to_string()),
                &summary,
            );
        }
        if let Some(path) = &options.plan_out {
            job_json["currentState"] = json!(outcome.state.as_str());
            job_json["currentStateTime"] = json!(now_rfc3339());
            job_json["metrics"] = serde_json::to_value(&outcome.metrics).unwrap_or_default();
            fill_measured_sizes(&mut job_json, &outcome.metrics);
            write_json(path, &job_json)?;
        }
        Ok(PipelineResult::finished(
            job_id,
            job_name,
            outcome,
            cancel_signal,
        ))
    }
}

/// Fills Dataflow's `sizeBytes` of stage inputs and outputs with what the job measured.
fn fill_measured_sizes(job: &mut serde_json::Value, metrics: &sluice_runtime::JobMetrics) {
    let Some(stages) = job["pipelineDescription"]["executionPipelineStage"].as_array_mut() else {
        return;
    };
    // A shuffle's size is what every stage writing it wrote.
    let mut shuffled: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (name, bytes) in metrics.stages.iter().flat_map(|s| &s.shuffle_outputs) {
        *shuffled.entry(name.as_str()).or_default() += bytes;
    }
    for (stage, measured) in stages.iter_mut().zip(&metrics.stages) {
        if let Some(inputs) = stage["inputSource"].as_array_mut() {
            for input in inputs {
                let name = input["userName"].as_str().unwrap_or_default();
                if let Some(bytes) = shuffled.get(name) {
                    input["sizeBytes"] = json!(bytes.to_string());
                }
            }
        }
        if let Some(outputs) = stage["outputSource"].as_array_mut() {
            for output in outputs {
                let name = output["userName"].as_str().unwrap_or_default().to_string();
                if let Some((_, bytes)) = measured.shuffle_outputs.iter().find(|(n, _)| *n == name)
                {
                    output["sizeBytes"] = json!(bytes.to_string());
                }
            }
        }
        if measured.bytes_read > 0
            && let Some(input) = stage["inputSource"]
                .as_array_mut()
                .and_then(|i| i.first_mut())
        {
            input["sizeBytes"] = json!(measured.bytes_read.to_string());
        }
    }
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| Error::PlanOut {
        path: path.to_path_buf(),
        source,
    })
}

/// Logs to stderr through env_logger; warnings and errors are also kept for the job
/// service when this process runs a job the service started.
struct Logger(env_logger::Logger);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata) || metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.0.matches(record) {
            self.0.log(record);
        }
        crate::service::capture(record);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn init_logging() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .target(env_logger::Target::Stderr)
            .format_target(false)
            .build();
    let level = logger.filter().max(log::LevelFilter::Warn);
    if log::set_boxed_logger(Box::new(Logger(logger))).is_ok() {
        log::set_max_level(level);
    }
}

/// A job id in Dataflow's form: `2026-11-22_13_05_09-<u64>`, UTC.
pub(crate) fn new_job_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]_[hour]_[minute]_[second]"
        ))
        .unwrap_or_default();
    format!("{stamp}-{}", fastrand::u64(..))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn default_job_name() -> String {
    let program = std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sluice".into());
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    let clean: String = program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{clean}-{stamp}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_ids_look_like_dataflows() {
        let id = super::new_job_id();
        let re = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}_\d{2}_\d{2}_\d{2}-\d+$").unwrap();
        assert!(re.is_match(&id), "{id}");
    }
}
