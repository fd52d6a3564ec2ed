//! `sluice`: the command-line companion of sluice pipelines.
//!
//! ```text
//! sluice describe plan.json       # the job a pipeline wrote with --plan_out (or --dry_run)
//! sluice corpus /tmp/c.txt --mb 50 --seed 42
//! sluice serve                    # the job service and web UI on 127.0.0.1:8130
//! sluice jobs list                # jobs of the service; also describe, cancel, drain,
//!                                 # messages, metrics
//! ```
//!
//! `describe` is the monitoring view of a job: its state, each fused stage with the steps
//! fused into it, what it reads and writes (with measured sizes once the job has run),
//! the time it took, and elements and bytes per transform.

mod describe;
mod jobs;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Run the sluice job service, inspect and control its jobs, and generate benchmark input"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows a job description (from --plan_out or --dry_run): stages, steps, sizes, metrics.
    Describe {
        /// The job JSON file; `-` reads standard input.
        file: PathBuf,
    },
    /// Writes a deterministic English-like corpus for wordcount benchmarks.
    Corpus {
        /// Where to write it.
        out: PathBuf,
        /// Size in megabytes (10^6 bytes).
        #[arg(long, default_value_t = 50)]
        mb: u64,
        /// Seed; the same seed gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Runs the job service: the REST API, the web UI and the processes of submitted jobs.
    Serve {
        /// The address to listen on. Another address than loopback serves beyond this
        /// machine and needs --allow_remote: every call then needs the token.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// The port to listen on.
        #[arg(long, default_value_t = 8130)]
        port: u16,
        /// Where job records, logs and the token live (default: $XDG_DATA_HOME/sluice or
        /// ~/.local/share/sluice).
        #[arg(long = "data_dir", alias = "data-dir")]
        data_dir: Option<PathBuf>,
        /// Serve on a non-loopback --bind address (reads then need the token too).
        #[arg(long = "allow_remote", alias = "allow-remote")]
        allow_remote: bool,
    },
    /// Lists, describes, cancels and drains the job service's jobs.
    Jobs {
        /// The job service.
        #[arg(long = "service_url", alias = "service-url", default_value = sluice_client::DEFAULT_URL, global = true)]
        service_url: String,
        /// The service's token (default: $SLUICE_TOKEN, else the token file of --data_dir).
        #[arg(long, global = true)]
        token: Option<String>,
        /// The service's data directory, where its token file is.
        #[arg(long = "data_dir", alias = "data-dir", global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs, newest first.
    List {
        /// Which jobs: active, terminated or all.
        #[arg(long, default_value = "all", value_parser = ["active", "terminated", "all"])]
        status: String,
        /// table for people, json or yaml for scripts.
        #[arg(long, default_value = "table", value_parser = ["table", "json", "yaml"])]
        format: String,
        /// At most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// A job: its state, fused stages and metrics (`--full --format json`: the whole Job JSON).
    Describe {
        /// The job's id.
        job: String,
        /// The whole job, with its pipelineDescription and metrics (json and yaml).
        #[arg(long)]
        full: bool,
        /// text for people, json or yaml for scripts.
        #[arg(long, default_value = "text", value_parser = ["text", "json", "yaml"])]
        format: String,
    },
    /// Cancels a job: its workers stop, nothing is committed.
    Cancel {
        /// The job's id.
        job: String,
    },
    /// Drains a streaming job: its sources stop, every window fires, output is committed.
    Drain {
        /// The job's id.
        job: String,
    },
    /// A job's messages, oldest first.
    Messages {
        /// The job's id.
        job: String,
        /// Follow the job: print messages as they come until it ends.
        #[arg(long)]
        follow: bool,
        /// The least importance shown: debug, detailed, basic, warning or error.
        #[arg(long, default_value = "basic", value_parser = ["debug", "detailed", "basic", "warning", "error"])]
        importance: String,
    },
    /// A job's metrics: per stage, per transform, user metrics.
    Metrics {
        /// The job's id.
        job: String,
        /// table for people, json or yaml for scripts.
        #[arg(long, default_value = "table", value_parser = ["table", "json", "yaml"])]
        format: String,
    },
}

fn serve(
    bind: std::net::IpAddr,
    port: u16,
    data_dir: Option<PathBuf>,
    allow_remote: bool,
) -> anyhow::Result<()> {
    if !bind.is_loopback() && !allow_remote {
        anyhow::bail!(
            "--bind={bind} would serve the job service beyond this machine; pass --allow_remote as well (every call then needs the service's token), or bind to 127.0.0.1"
        );
    }
    let data_dir = data_dir.unwrap_or_else(sluice_client::default_data_dir);
    let config = sluice_service::ServiceConfig {
        bind: std::net::SocketAddr::new(bind, port),
        data_dir: data_dir.clone(),
        remote: !bind.is_loopback(),
    };
    let service = sluice_service::spawn(config)?;
    let token = &service.service().token;
    eprintln!("sluice job service at {}", service.url());
    eprintln!("data directory: {}", data_dir.display());
    eprintln!(
        "web UI (this link carries the token for Cancel and Drain): {}/?token={token}",
        service.url()
    );
    eprintln!(
        "submit a job: <pipeline binary> --service_url={}",
        service.url()
    );
    service.wait_for_signal();
    Ok(())
}

fn jobs(
    service_url: &str,
    token: Option<&str>,
    data_dir: Option<PathBuf>,
    command: JobsCommand,
) -> anyhow::Result<()> {
    let data_dir = data_dir.unwrap_or_else(sluice_client::default_data_dir);
    let client = jobs::client(service_url, token, &data_dir);
    let out = match command {
        JobsCommand::List {
            status,
            format,
            limit,
        } => jobs::list(&client, &status, &format, limit)?,
        JobsCommand::Describe { job, full, format } => {
            jobs::describe(&client, jobs::job_id(&job)?, full, &format)?
        }
        JobsCommand::Cancel { job } => {
            jobs::request(&client, jobs::job_id(&job)?, "JOB_STATE_CANCELLED")?
        }
        JobsCommand::Drain { job } => {
            jobs::request(&client, jobs::job_id(&job)?, "JOB_STATE_DRAINED")?
        }
        JobsCommand::Messages {
            job,
            follow,
            importance,
        } => {
            jobs::messages(&client, jobs::job_id(&job)?, &importance, follow)?;
            String::new()
        }
        JobsCommand::Metrics { job, format } => {
            jobs::metrics(&client, jobs::job_id(&job)?, &format)?
        }
    };
    use std::io::Write;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .try_init();
    let cli = Cli::parse();
    let jobs_command = matches!(cli.command, Command::Jobs { .. });
    if let Err(error) = run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(if jobs_command {
            jobs::exit_code(&error)
        } else {
            1
        });
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            bind,
            port,
            data_dir,
            allow_remote,
        } => serve(bind, port, data_dir, allow_remote)?,
        Command::Jobs {
            service_url,
            token,
            data_dir,
            command,
        } => jobs(&service_url, token.as_deref(), data_dir, command)?,
        Command::Describe { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let job: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON; pass a file written by --plan_out",
                    file.display()
                )
            })?;
            print!("{}", describe::render(&job)?);
        }
        Command::Corpus { out, mb, seed } => {
            let written = sluice_io::corpus::write_file(&out, mb * 1_000_000, seed)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {written} bytes to {}", out.display());
        }
    }
    Ok(())
}
