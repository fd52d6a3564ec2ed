//! WordCount, as in Beam: counts the words of text files.
//!
//! ```text
//! cargo run --release --example wordcount                      # a generated 50 MB corpus
//! cargo run --release --example wordcount -- --input='books/*.txt' --output=out/counts
//! cargo run --release --example wordcount -- --dry_run         # print the plan, run nothing
//! ```
//!
//! Words are what Beam's example counts: runs of `[\w']+`. Each output line is
//! `word: count`. The program prints a short summary on stdout; logs go to stderr.

use std::path::PathBuf;

use regex::Regex;
use sluice::prelude::*;

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    p.describe_flag(
        "input",
        "text files to count: a path or a glob (default: a generated corpus)",
    );
    p.describe_flag(
        "corpus_mb",
        "size of the generated corpus in MB, without --input (default: 50)",
    );
    p.describe_flag(
        "output",
        "prefix of the output shards, PREFIX-SSSSS-of-NNNNN",
    );
    let input = match p.arg_parse::<String>("input")? {
        Some(pattern) => pattern,
        // `--help` lists the flags: nothing to generate.
        None if p.help_requested() => String::new(),
        None => generated_corpus(p.arg_parse::<u64>("corpus_mb")?.unwrap_or(50))?,
    };
    let default_output = std::env::temp_dir().join("sluice-wordcount").join("counts");
    let output = p.arg_or("output", &default_output.to_string_lossy());

    build(&p, &input, &output);

    let result = p.run()?;
    if result.is_submitted() {
        // The job service runs the job: follow it there (`sluice jobs metrics` has its counts).
        return result.wait_until_finish();
    }
    if let Some(error) = result.error() {
        // Counts of a failed job are partial: the failure is the result.
        println!("job {}: {}: {error}", result.job_id(), result.state());
    } else if !result.is_dry_run() {
        let metrics = result.metrics();
        let out = |name: &str| {
            metrics
                .transform(name)
                .and_then(|t| t.elements_out)
                .unwrap_or(0)
        };
        let read = metrics
            .transform("ReadLines")
            .and_then(|t| t.bytes_in)
            .unwrap_or(0);
        println!(
            "job {}: {} in {:.2}s",
            result.job_id(),
            result.state(),
            metrics.wall_time.as_secs_f64()
        );
        println!(
            "input: {input} ({:.1} MB, {} lines, {} words, {} distinct)",
            read as f64 / 1e6,
            out("ReadLines"),
            out("ExtractWords"),
            out("CountWords")
        );
        for committed in result.outputs() {
            println!("output: {committed}");
        }
    }
    result.wait_until_finish()
}

/// The pipeline: lines of `input`, their words, each word's count, `word: count` lines
/// written to `output`-SSSSS-of-NNNNN.
pub fn build(p: &Pipeline, input: &str, output: &str) {
    p.read_text("ReadLines", input)
        .par_do("ExtractWords", ExtractWords::new())
        .count_per_element("CountWords")
        .map("Format", |(word, count): (String, u64)| {
            format!("{word}: {count}")
        })
        .write_text("Write", output);
}

/// Emits every word of a line, as Beam's `WordExtractingDoFn` does.
#[derive(Clone)]
struct ExtractWords {
    word: Regex,
}

impl ExtractWords {
    fn new() -> Self {
        ExtractWords {
            word: Regex::new(r"[\w']+").expect("the word pattern is valid"),
        }
    }
}

impl DoFn for ExtractWords {
    type In = String;
    type Out = String;

    fn process(&mut self, line: String, ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
        for word in self.word.find_iter(&line) {
            ctx.emit(word.as_str().to_string());
        }
        Ok(())
    }
}

/// A deterministic corpus of `mb` megabytes in the temporary directory, generated once.
fn generated_corpus(mb: u64) -> sluice::Result<String> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("sluice-wordcount-corpus-{mb}mb-seed42.txt"));
    let bytes = mb * 1_000_000;
    let fresh = std::fs::metadata(&path)
        .map(|m| m.len() >= bytes)
        .unwrap_or(false);
    if !fresh {
        eprintln!(
            "generating a {mb} MB corpus at {} (pass --input to count your own files)",
            path.display()
        );
        sluice::io::corpus::write_file(&path, bytes, 42).map_err(|source| {
            sluice::io::IoError::Unreadable {
                transform: "ReadLines".into(),
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(path.to_string_lossy().into_owned())
}
