//! Beam-style pipeline options from the command line.
//!
//! Flags look like Beam's: `--key=value` or `--key value`, bare `--flag` for booleans,
//! repeated flags for lists, snake_case names (camelCase is accepted and converted, so
//! `--jobName` is `--job_name`). The runner's own flags are parsed here; every other flag
//! is kept for the pipeline to read by name ([`crate::Pipeline::arg`]). A flag nobody
//! reads is reported with a warning, so that launchers which pass extra flags (Airflow
//! passes `--labels` and `--worker_binary`) work unchanged — unless its name is within
//! a typo of a known flag (`--direct_num_worker`), which fails the run with "did you
//! mean" (pass `--allow_unknown_flags` to only warn). `--help` (or `-h`) prints every
//! flag, the runner's and the pipeline's, and runs nothing. A boolean flag takes
//! `--flag`, `--flag=false` or `--flag false`; any other argument that is not a flag is
//! an error.
//!
//! | flag | meaning | default |
//! |---|---|---|
//! | `--runner` | `DirectRunner` (any case, "Runner" suffix optional): the embedded runner | `DirectRunner` |
//! | `--direct_num_workers` | worker threads; 0 means one per core; at most 16 per core | 0 |
//! | `--job_name` | the job's name | `<program>-<timestamp>` |
//! | `--labels` | a JSON object of strings, or repeated `key=value` | none |
//! | `--streaming` | run as a streaming job: triggers fire as data arrives, unbounded sources run until drained (Ctrl-C or SIGTERM), failed bundles are retried without limit | off (on if a source is unbounded) |
//! | `--allow_unsafe_triggers` | accept triggers that may finish before their window expires, dropping later data | off |
//! | `--temp_location` | where temporary files go (sinks use the output's directory) | none |
//! | `--plan_out` | write the job description (both plan views) to this file | none |
//! | `--dry_run` | print the job description to stdout and exit without running | off |
//! | `--worker_binary` | accepted for launcher compatibility; the launcher is the worker | none |
//! | `--max_bundle_attempts` | attempts a bundle gets before the job fails | 4 in batch, unlimited in streaming |
//! | `--stuck_bundle_secs` | a bundle running longer than this is logged as possibly stuck | 300 |
//! | `--allow_unknown_flags` | only warn about a flag close to a known one, instead of failing | off |
//! | `--s3_endpoint` | an S3-compatible server's URL for `s3://` paths (credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, region from `AWS_REGION`) | AWS |
//! | `--s3_allow_http` | allow plain HTTP to `--s3_endpoint` | off |
//! | `--help`, `-h` | print the flags and exit without running | |

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

/// A flag is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// A required flag was not given.
    #[error("missing required flag --{flag}: {hint}")]
    Missing {
        /// The flag.
        flag: String,
        /// What to pass.
        hint: String,
    },
    /// A flag's value is malformed.
    #[error("invalid value {value:?} for --{flag}: expected {expected}")]
    Invalid {
        /// The flag.
        flag: String,
        /// The value given.
        value: String,
        /// What it should look like.
        expected: String,
    },
    /// An argument is not a flag (and no flag before it takes a value).
    #[error(
        "unexpected argument {argument:?}: pipeline options are flags like --name=value{}",
        after.as_ref().map(|f| format!(" (--{f} takes no value; write --{f}=false to turn it off)")).unwrap_or_default()
    )]
    Stray {
        /// The argument.
        argument: String,
        /// The boolean flag it follows, if it does.
        after: Option<String>,
    },
    /// A flag nobody knows whose name is close to one that is known: a typo.
    #[error(
        "unknown flag --{flag}: did you mean --{suggestion}? (pass --allow_unknown_flags to run anyway)"
    )]
    Unknown {
        /// The flag given.
        flag: String,
        /// The known flag it is closest to.
        suggestion: String,
    },
}

/// What a worker process of a cluster job was told by its launcher (flags the launcher
/// adds; not for users).
#[derive(Clone, Debug, Default)]
pub struct WorkerRole {
    /// `--sluice_worker_index`: this process's index.
    pub index: usize,
    /// `--sluice_peers`: every process's `host:port`, comma-separated.
    pub peers: Vec<String>,
    /// `--sluice_job_id`.
    pub job_id: String,
    /// `--sluice_report`: where to write the report for the launcher.
    pub report: Option<PathBuf>,
    /// `--sluice_plan_hash`: the launcher's plan hash, to compare with this process's.
    pub plan_hash: Option<String>,
    /// `--sluice_heartbeat`: the file to touch while this process makes progress.
    pub heartbeat: Option<PathBuf>,
    /// `--sluice_attempt`: which attempt of the job this is, from 1.
    pub attempt: u32,
}

/// Flags the cluster runner's launcher adds for its worker processes.
const WORKER_FLAGS: &[&str] = &[
    "sluice_worker_index",
    "sluice_peers",
    "sluice_job_id",
    "sluice_report",
    "sluice_plan_hash",
    "sluice_heartbeat",
    "sluice_attempt",
];

/// The runner's own flags, with what each means (for `--help` and typo checks).
pub const RUNNER_FLAGS: &[(&str, &str)] = &[
    (
        "runner",
        "DirectRunner (default; any case, \"Runner\" optional): the embedded runner",
    ),
    (
        "direct_num_workers",
        "worker threads; 0 or absent = one per core; at most 16 per core",
    ),
    ("job_name", "the job's name (default: <program>-<time>)"),
    ("labels", "a JSON object of strings, or repeated key=value"),
    (
        "streaming",
        "run as a streaming job (also implied by an unbounded source)",
    ),
    (
        "allow_unsafe_triggers",
        "accept triggers that may finish before their window expires",
    ),
    ("temp_location", "where temporary files go"),
    (
        "plan_out",
        "write the job description (plan, state, metrics) to this JSON file",
    ),
    (
        "dry_run",
        "print the job description and exit without running",
    ),
    (
        "worker_binary",
        "accepted for launcher compatibility; the launcher is the worker",
    ),
    (
        "max_bundle_attempts",
        "attempts a bundle gets before the job fails (4 in batch, unlimited in streaming)",
    ),
    (
        "stuck_bundle_secs",
        "log a bundle running longer than this as possibly stuck (300)",
    ),
    (
        "allow_unknown_flags",
        "only warn about an unknown flag close to a known one",
    ),
    ("num_workers", "ClusterRunner: worker processes (default 2)"),
    (
        "worker_hosts",
        "ClusterRunner: a file of host:port lines, one per worker process started by hand (with --sluice_worker_index=i)",
    ),
    (
        "max_job_attempts",
        "ClusterRunner: runs of a job that loses a worker process (default 3)",
    ),
    (
        "worker_timeout_secs",
        "ClusterRunner: a worker making no progress this long is lost (default 60)",
    ),
    (
        "worker_threads",
        "ClusterRunner: threads per worker process (default: cores / processes, at least 1)",
    ),
    (
        "max_memory",
        "bytes of records grouping steps may hold per process before spilling to disk, e.g. 256MB or 4GB (default: half the machine's memory)",
    ),
    (
        "service_url",
        "submit the job to the job service at this URL (sluice serve) instead of running it here",
    ),
    (
        "service_token",
        "the job service's token (default: $SLUICE_TOKEN, else the token file of the default data directory)",
    ),
    (
        "s3_endpoint",
        "s3:// paths: the URL of an S3-compatible server (default: AWS; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    ),
    (
        "s3_allow_http",
        "s3:// paths: allow plain HTTP to --s3_endpoint",
    ),
    ("help", "print the flags and exit without running"),
];

/// The flags a pipeline was started with.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PipelineOptions {
    /// `--runner` as given.
    pub runner: String,
    /// `--job_name`.
    pub job_name: Option<String>,
    /// `--direct_num_workers` (0 = one per core).
    pub direct_num_workers: usize,
    /// `--streaming`.
    pub streaming: bool,
    /// `--temp_location`.
    pub temp_location: Option<String>,
    /// `--labels`.
    pub labels: BTreeMap<String, String>,
    /// `--plan_out`.
    pub plan_out: Option<PathBuf>,
    /// `--dry_run`.
    pub dry_run: bool,
    /// `--worker_binary`.
    pub worker_binary: Option<String>,
    /// `--max_bundle_attempts`.
    pub max_bundle_attempts: u32,
    /// Whether `--max_bundle_attempts` was given (streaming jobs otherwise retry without
    /// limit).
    pub max_bundle_attempts_given: bool,
    /// `--allow_unsafe_triggers`.
    pub allow_unsafe_triggers: bool,
    /// `--stuck_bundle_secs`.
    pub stuck_bundle_secs: f64,
    /// `--allow_unknown_flags`.
    pub allow_unknown_flags: bool,
    /// `--help` or `-h`.
    pub help: bool,
    /// `--num_workers`: worker processes of the cluster runner.
    pub num_workers: usize,
    /// `--worker_threads`: threads per worker process (0: cores / processes).
    pub worker_threads: usize,
    /// `--max_job_attempts`: how often the cluster runner runs a job that loses a worker.
    pub max_job_attempts: u32,
    /// `--worker_timeout_secs`: a worker process making no progress this long is lost.
    pub worker_timeout_secs: f64,
    /// `--worker_hosts`: a file of `host:port` lines, one per worker process, for a job
    /// whose processes are started one by one (on several machines).
    pub worker_hosts: Option<PathBuf>,
    /// Set in a worker process started by the cluster runner's launcher (internal).
    pub worker: Option<WorkerRole>,
    /// `--max_memory`: bytes grouping readers may hold per process before they spill.
    pub max_memory: Option<u64>,
    /// `--s3_endpoint`: an S3-compatible server for `s3://` paths.
    pub s3_endpoint: Option<String>,
    /// `--s3_allow_http`: plain HTTP to the S3 endpoint is allowed.
    pub s3_allow_http: bool,
    /// `--service_url`: the job service to submit to (or, in a job the service started,
    /// to report to).
    pub service_url: Option<String>,
    /// `--service_token`: the job service's token.
    pub service_token: Option<String>,
    /// `--sluice_service_job`: set by the job service in the process it starts for a
    /// submitted job: the job's id (internal).
    pub service_job: Option<String>,
    /// The arguments as given (without the program name), for the launcher to pass on.
    pub args: Vec<String>,
    /// Every other flag, by name, in the order given.
    user: BTreeMap<String, Vec<String>>,
}

/// Flags with no value of their own: `--flag` followed by another argument does not
/// consume it, unless that argument is `true` or `false`.
const BOOLEAN_FLAGS: &[&str] = &[
    "streaming",
    "dry_run",
    "allow_unsafe_triggers",
    "allow_unknown_flags",
    "s3_allow_http",
    "help",
];

/// Whether `value` spells a boolean.
fn is_bool_literal(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "1" | "0"
    )
}

/// Most worker threads per core `--direct_num_workers` accepts.
pub const MAX_WORKERS_PER_CORE: usize = 16;

/// The most worker threads this machine accepts, and its cores.
fn max_workers() -> (usize, usize) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores * MAX_WORKERS_PER_CORE, cores)
}

/// Converts `jobName` to `job_name`; leaves snake_case alone.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// The known flag `flag` is most likely a typo of, if any: at most one edit (two for
/// longer names) away, or the same words in another order or spelling of separators.
fn closest<'a>(flag: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let allowed = if flag.len() >= 8 { 2 } else { 1 };
    known
        .into_iter()
        .filter(|k| *k != flag)
        .map(|k| (strsim::damerau_levenshtein(flag, k), k))
        .filter(|(distance, k)| *distance <= allowed && k.len() > 2)
        .min()
        .map(|(_, k)| k)
}

fn parse_bool(flag: &str, value: &str) -> Result<bool, OptionsError> {
    match value.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(OptionsError::Invalid {
            flag: flag.into(),
            value: value.into(),
            expected: "true or false".into(),
        }),
    }
}

impl PipelineOptions {
    /// The options of this process (`std::env::args`, without the program name).
    pub fn from_env() -> Result<PipelineOptions, OptionsError> {
        PipelineOptions::parse(std::env::args().skip(1))
    }

    /// Parses arguments (without the program name).
    pub fn parse<I, S>(args: I) -> Result<PipelineOptions, OptionsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let given = args.clone();
        let mut raw: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        let mut last_boolean: Option<String> = None;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "-h" {
                raw.push(("help".into(), String::new()));
                continue;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(OptionsError::Stray {
                    argument: arg.clone(),
                    after: last_boolean,
                });
            };
            last_boolean = None;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (snake_case(n), v.to_string()),
                None => {
                    let name = snake_case(body);
                    let boolean = BOOLEAN_FLAGS.contains(&name.as_str());
                    let next = args.get(i).filter(|next| !next.starts_with("--"));
                    let takes_next = match next {
                        // `--streaming false` turns streaming off, not on.
                        Some(v) if boolean => is_bool_literal(v),
                        Some(_) => true,
                        None => false,
                    };
                    if boolean && !takes_next {
                        last_boolean = Some(name.clone());
                    }
                    if takes_next {
                        i += 1;
                        (name, args[i - 1].clone())
                    } else {
                        (name, String::new())
                    }
                }
            };
            raw.push((name, value));
        }

        let mut options = PipelineOptions {
            runner: "DirectRunner".into(),
            max_bundle_attempts: 4,
            stuck_bundle_secs: 300.0,
            num_workers: 2,
            max_job_attempts: 3,
            worker_timeout_secs: 60.0,
            args: given,
            ..PipelineOptions::default()
        };
        let number = |name: &str, value: &str, what: &str| -> Result<usize, OptionsError> {
            value.parse().map_err(|_| OptionsError::Invalid {
                flag: name.into(),
                value: value.into(),
                expected: what.into(),
            })
        };
        let seconds = |name: &str, value: &str| -> Result<f64, OptionsError> {
            value
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0)
                .ok_or_else(|| OptionsError::Invalid {
                    flag: name.into(),
                    value: value.into(),
                    expected: "a number of seconds greater than 0".into(),
                })
        };
        for (name, value) in raw {
            match name.as_str() {
                "runner" => options.runner = value,
                "job_name" => options.job_name = Some(value),
                "direct_num_workers" => {
                    let n: usize = value.parse().map_err(|_| OptionsError::Invalid {
                        flag: name.clone(),
                        value: value.clone(),
                        expected: "a number of worker threads (0 = one per core)".into(),
                    })?;
                    let (max, cores) = max_workers();
                    if n > max {
                        return Err(OptionsError::Invalid {
                            flag: name.clone(),
                            value: value.clone(),
                            expected: format!(
                                "at most {max} worker threads ({MAX_WORKERS_PER_CORE} per core; this machine has {cores} cores): \
                                 threads beyond the cores only add overhead, and every worker exchanges data with every other. \
                                 Use 0 for one thread per core"
                            ),
                        });
                    }
                    options.direct_num_workers = n;
                }
                "streaming" => options.streaming = parse_bool(&name, &value)?,
                "allow_unsafe_triggers" => {
                    options.allow_unsafe_triggers = parse_bool(&name, &value)?
                }
                "dry_run" => options.dry_run = parse_bool(&name, &value)?,
                "allow_unknown_flags" => options.allow_unknown_flags = parse_bool(&name, &value)?,
                "help" => options.help = parse_bool(&name, &value)?,
                "temp_location" => options.temp_location = Some(value),
                "s3_endpoint" => options.s3_endpoint = Some(value),
                "s3_allow_http" => options.s3_allow_http = parse_bool(&name, &value)?,
                "plan_out" => options.plan_out = Some(PathBuf::from(value)),
                "worker_binary" => options.worker_binary = Some(value),
                "max_bundle_attempts" => {
                    options.max_bundle_attempts_given = true;
                    options.max_bundle_attempts =
                        value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            OptionsError::Invalid {
                                flag: name.clone(),
                                value: value.clone(),
                                expected: "a number of attempts, at least 1".into(),
                            }
                        })?
                }
                "stuck_bundle_secs" => options.stuck_bundle_secs = seconds(&name, &value)?,
                "labels" => options.add_labels(&value)?,
                "num_workers" => {
                    options.num_workers =
                        number(&name, &value, "a number of worker processes, at least 1")?.max(1)
                }
                "worker_hosts" => options.worker_hosts = Some(PathBuf::from(value)),
                "service_url" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(OptionsError::Invalid {
                            flag: name.clone(),
                            value: value.clone(),
                            expected: "the job service's URL, such as http://127.0.0.1:8130".into(),
                        });
                    }
                    options.service_url = Some(value.trim_end_matches('/').to_string())
                }
                "service_token" => options.service_token = Some(value),
                "max_memory" => {
                    options.max_memory =
                        Some(sluice_core::spill::parse_size(&value).ok_or_else(|| {
                            OptionsError::Invalid {
                                flag: name.clone(),
                                value: value.clone(),
                                expected: "a size such as 256MB, 4GB or a number of bytes".into(),
                            }
                        })?)
                }
                "sluice_service_job" => options.service_job = Some(value),
                "max_job_attempts" => {
                    options.max_job_attempts =
                        number(&name, &value, "a number of attempts, at least 1")?.max(1) as u32
                }
                "worker_timeout_secs" => options.worker_timeout_secs = seconds(&name, &value)?,
                "worker_threads" => {
                    options.worker_threads =
                        number(&name, &value, "a number of threads per worker process")?
                }
                flag if WORKER_FLAGS.contains(&flag) => {
                    let role = options.worker.get_or_insert_with(WorkerRole::default);
                    match flag {
                        "sluice_worker_index" => {
                            role.index = number(&name, &value, "a worker process index")?
                        }
                        "sluice_peers" => {
                            role.peers = value.split(',').map(str::to_string).collect()
                        }
                        "sluice_job_id" => role.job_id = value,
                        "sluice_report" => role.report = Some(PathBuf::from(value)),
                        "sluice_heartbeat" => role.heartbeat = Some(PathBuf::from(value)),
                        "sluice_attempt" => {
                            role.attempt = number(&name, &value, "an attempt number")? as u32
                        }
                        _ => role.plan_hash = Some(value),
                    }
                }
                _ => options.user.entry(name).or_default().push(value),
            }
        }
        // A process started by Kubernetes as part of an Indexed Job knows its index from
        // the environment.
        if options.worker_hosts.is_some()
            && options.worker.is_none()
            && let Some(index) = std::env::var("JOB_COMPLETION_INDEX")
                .ok()
                .and_then(|v| v.parse().ok())
        {
            options.worker = Some(WorkerRole {
                index,
                ..WorkerRole::default()
            });
        }
        Ok(options)
    }

    fn add_labels(&mut self, value: &str) -> Result<(), OptionsError> {
        let invalid = |expected: &str| OptionsError::Invalid {
            flag: "labels".into(),
            value: value.into(),
            expected: expected.into(),
        };
        if value.trim_start().starts_with('{') {
            let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(value)
                .map_err(|_| invalid("a JSON object such as {\"team\": \"data\"}"))?;
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                self.labels.insert(k, v);
            }
        } else if let Some((k, v)) = value.split_once('=') {
            self.labels.insert(k.into(), v.into());
        } else if !value.is_empty() {
            return Err(invalid("a JSON object or key=value"));
        }
        Ok(())
    }

    /// The last value of a pipeline flag, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.user
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeated pipeline flag.
    pub fn get_all(&self, name: &str) -> &[String] {
        self.user.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Parses the last value of a pipeline flag.
    pub fn parse_flag<T: FromStr>(&self, name: &str) -> Result<Option<T>, OptionsError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| OptionsError::Invalid {
                    flag: name.into(),
                    value: v.into(),
                    expected: format!("a value of type {}", std::any::type_name::<T>()),
                })
            })
            .transpose()
    }

    /// Whether a boolean pipeline flag is set (`--flag`, `--flag=true`).
    pub fn is_set(&self, name: &str) -> Result<bool, OptionsError> {
        self.get(name)
            .map(|v| parse_bool(name, v))
            .transpose()
            .map(|b| b.unwrap_or(false))
    }

    /// Names of the pipeline flags given.
    pub fn user_flags(&self) -> BTreeSet<&str> {
        self.user.keys().map(String::as_str).collect()
    }

    /// Checks the pipeline flags given against those the pipeline reads (`known`): a
    /// flag nobody reads is an error if its name is a likely typo of a known one (unless
    /// `--allow_unknown_flags`), a warning otherwise.
    pub fn check_unknown<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), OptionsError> {
        for flag in self.user_flags() {
            if known.clone().into_iter().any(|k| k == flag) {
                continue;
            }
            let candidates = known
                .clone()
                .into_iter()
                .chain(RUNNER_FLAGS.iter().map(|(name, _)| *name));
            match closest(flag, candidates) {
                Some(suggestion) if !self.allow_unknown_flags => {
                    return Err(OptionsError::Unknown {
                        flag: flag.to_string(),
                        suggestion: suggestion.to_string(),
                    });
                }
                Some(suggestion) => log::warn!(
                    "flag --{flag} was given but this pipeline does not use it (did you mean --{suggestion}?)"
                ),
                None => log::warn!("flag --{flag} was given but this pipeline does not use it"),
            }
        }
        Ok(())
    }

    /// The runner named by `--runner`, normalised: lower case, without a "runner" suffix.
    pub fn runner_name(&self) -> String {
        let lower = self.runner.to_ascii_lowercase();
        lower.strip_suffix("runner").unwrap_or(&lower).to_string()
    }

    /// Threads per process of the cluster runner: `--worker_threads`, or the cores shared
    /// out among the processes (at least 1).
    pub fn threads_per_worker(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        (cores / self.num_workers.max(1)).max(1)
    }

    /// Worker threads: `--direct_num_workers`, or one per core.
    pub fn workers(&self) -> usize {
        if self.direct_num_workers > 0 {
            self.direct_num_workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beam_style_flags_parse() {
        let o = PipelineOptions::parse([
            "--runner=directrunner",
            "--jobName",
            "wc",
            "--direct_num_workers=3",
            "--streaming",
            "--input",
            "a.txt",
            "--input=b.txt",
            "--labels={\"team\":\"data\",\"n\":3}",
            "--labels",
            "env=prod",
            "--verbose",
        ])
        .unwrap();
        assert_eq!(o.runner_name(), "direct");
        assert_eq!(o.job_name.as_deref(), Some("wc"));
        assert_eq!(o.workers(), 3);
        assert!(o.streaming);
        assert_eq!(o.get_all("input"), ["a.txt", "b.txt"]);
        assert_eq!(o.get("input"), Some("b.txt"));
        assert_eq!(o.labels["team"], "data");
        assert_eq!(o.labels["n"], "3");
        assert_eq!(o.labels["env"], "prod");
        assert!(o.is_set("verbose").unwrap());
        assert!(!o.is_set("absent").unwrap());
    }

    #[test]
    fn runner_names_are_case_insensitive_with_optional_suffix() {
        for r in ["DirectRunner", "direct", "DIRECT", "directRunner"] {
            let o = PipelineOptions::parse([format!("--runner={r}")]).unwrap();
            assert_eq!(o.runner_name(), "direct", "{r}");
        }
        assert_eq!(
            PipelineOptions::parse(Vec::<String>::new())
                .unwrap()
                .runner_name(),
            "direct"
        );
    }

    #[test]
    fn malformed_values_name_the_flag() {
        let err = PipelineOptions::parse(["--direct_num_workers=many"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--direct_num_workers") && err.contains("\"many\""),
            "{err}"
        );
        let err = PipelineOptions::parse(["--labels={not json"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--labels") && err.contains("JSON object"),
            "{err}"
        );
        let o = PipelineOptions::parse(["--n=x"]).unwrap();
        assert!(
            o.parse_flag::<u32>("n")
                .unwrap_err()
                .to_string()
                .contains("--n")
        );
    }

    /// Regression: `--direct_num_workers=10000` ran until the kernel killed it for
    /// memory.
    #[test]
    fn regression_a_worker_count_far_beyond_the_cores_is_refused() {
        let err = PipelineOptions::parse(["--direct_num_workers=10000"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--direct_num_workers") && err.contains("per core"),
            "{err}"
        );
        let (max, _) = max_workers();
        assert_eq!(
            PipelineOptions::parse([format!("--direct_num_workers={max}")])
                .unwrap()
                .workers(),
            max
        );
    }

    /// Regression: `--streaming false` turned streaming on (and warned about a stray
    /// "false").
    #[test]
    fn regression_a_boolean_flag_followed_by_false_is_off() {
        for args in [
            vec!["--streaming", "false"],
            vec!["--streaming=false"],
            vec!["--streaming", "no", "--input=x"],
        ] {
            let o = PipelineOptions::parse(args.clone()).unwrap();
            assert!(!o.streaming, "{args:?}");
        }
        let o = PipelineOptions::parse(["--streaming", "true"]).unwrap();
        assert!(o.streaming);
        let err = PipelineOptions::parse(["--streaming", "fast"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"fast\"") && err.contains("--streaming=false"),
            "{err}"
        );
        let err = PipelineOptions::parse(["stray"]).unwrap_err().to_string();
        assert!(err.contains("unexpected argument \"stray\""), "{err}");
    }

    #[test]
    fn help_is_a_flag_short_or_long() {
        assert!(PipelineOptions::parse(["-h"]).unwrap().help);
        assert!(PipelineOptions::parse(["--help"]).unwrap().help);
        assert!(!PipelineOptions::parse(["--input=x"]).unwrap().help);
    }

    #[test]
    fn typos_of_known_flags_fail_and_other_unknown_flags_warn() {
        let o = PipelineOptions::parse(["--inptu=x", "--verbose", "--labls={}"]).unwrap();
        let err = o
            .check_unknown(["input", "output"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown flag --inptu") && err.contains("did you mean --input?"),
            "{err}"
        );
        let o = PipelineOptions::parse(["--direct_num_worker=2"]).unwrap();
        let err = o.check_unknown(["input"]).unwrap_err().to_string();
        assert!(err.contains("did you mean --direct_num_workers?"), "{err}");
        let o = PipelineOptions::parse(["--verbose", "--something_else=1"]).unwrap();
        o.check_unknown(["input"]).unwrap();
        let o = PipelineOptions::parse(["--inptu=x", "--allow_unknown_flags"]).unwrap();
        o.check_unknown(["input"]).unwrap();
    }

    #[test]
    fn a_bare_boolean_flag_does_not_swallow_the_next_argument() {
        let o = PipelineOptions::parse(["--dry_run", "--output", "out"]).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.get("output"), Some("out"));
        assert!(PipelineOptions::parse(["--dry_run", "stray"]).is_err());
    }
}
