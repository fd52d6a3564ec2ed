//! A hand-written single-threaded word count, the baseline of `bench/wordcount.py`.
//!
//! What a competent Rust programmer writes without a framework: read lines, find words
//! with the same `[\w']+` pattern as sluice's example, count them in a std `HashMap`
//! (allocating a key only for a new word), write `word: count` lines.
//!
//! Usage: handwritten-wordcount INPUT OUTPUT

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: handwritten-wordcount INPUT OUTPUT");
        std::process::exit(2);
    };
    let word = regex::Regex::new(r"[\w']+").expect("valid pattern");
    let mut counts: HashMap<String, u64> = HashMap::new();
    for line in BufReader::with_capacity(1 << 20, File::open(input)?).lines() {
        let line = line?;
        for m in word.find_iter(&line) {
            match counts.get_mut(m.as_str()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(m.as_str().to_string(), 1);
                }
            }
        }
    }
    let mut out = BufWriter::new(File::create(output)?);
    for (w, n) in &counts {
        writeln!(out, "{w}: {n}")?;
    }
    out.flush()
}
