//! `sluice`: the command-line companion of sluice pipelines.
//!
//! ```text
//! sluice describe plan.json       # the job a pipeline wrote with --plan_out (or --dry_run)
//! sluice corpus /tmp/c.txt --mb 50 --seed 42
//! ```
//!
//! `describe` is the monitoring view of a job: its state, each fused stage with the steps
//! fused into it, what it reads and writes (with measured sizes once the job has run),
//! the time it took, and elements and bytes per transform.

mod describe;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Inspect sluice jobs and generate benchmark input"
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
