//! A deterministic English-like corpus, for examples and benchmarks.
//!
//! Like the benchmark generator this project measures with: a vocabulary of pseudo-words
//! built from syllables, shortest words most frequent, Zipf-distributed word frequencies,
//! 6–18 words a line, a few capitalised words and trailing punctuation. The same seed
//! always gives the same bytes.

use std::io::{self, BufWriter, Write};
use std::path::Path;

const ONSETS: &[&str] = &[
    "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y",
    "z", "br", "cr", "dr", "fr", "gr", "pr", "tr", "bl", "cl", "fl", "gl", "pl", "sl", "st", "sp",
    "sh", "ch", "th", "wh",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ea", "ou", "ai", "oo", "ie"];
const CODAS: &[&str] = &[
    "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "ll",
];

/// SplitMix64: tiny, and stable forever, which a reproducible corpus needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn vocabulary(rng: &mut Rng, size: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(size);
    while words.len() < size {
        let syllables = match rng.below(100) {
            0..30 => 1,
            30..70 => 2,
            70..92 => 3,
            _ => 4,
        };
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len())]);
            w.push_str(VOWELS[rng.below(VOWELS.len())]);
            w.push_str(CODAS[rng.below(CODAS.len())]);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words.sort_by_key(|w| w.len());
    words
}

/// Writes at least `bytes` bytes of text to `out`; returns how many were written.
pub fn generate(out: impl Write, bytes: u64, seed: u64) -> io::Result<u64> {
    let mut rng = Rng(seed);
    let vocab = vocabulary(&mut rng, 10_000);
    let mut cumulative = Vec::with_capacity(vocab.len());
    let mut total = 0.0;
    for rank in 1..=vocab.len() {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let mut out = BufWriter::new(out);
    let mut written = 0u64;
    let mut line = String::new();
    while written < bytes {
        line.clear();
        let n = 6 + rng.below(13);
        for i in 0..n {
            if i > 0 {
                line.push(' ');
            }
            let target = rng.unit() * total;
            let word = &vocab[cumulative
                .partition_point(|c| *c < target)
                .min(vocab.len() - 1)];
            let style = rng.unit();
            if style < 0.05 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    line.extend(first.to_uppercase());
                    line.push_str(chars.as_str());
                }
            } else {
                line.push_str(word);
                if style < 0.065 {
                    line.push(',');
                } else if style < 0.08 {
                    line.push('.');
                }
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

/// Writes a corpus of at least `bytes` bytes to `path`.
pub fn write_file(path: &Path, bytes: u64, seed: u64) -> io::Result<u64> {
    generate(std::fs::File::create(path)?, bytes, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text_and_frequent_words_are_short() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        generate(&mut a, 100_000, 7).unwrap();
        generate(&mut b, 100_000, 7).unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        generate(&mut c, 100_000, 8).unwrap();
        assert_ne!(a, c);
        let text = String::from_utf8(a).unwrap();
        assert!(text.len() >= 100_000);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mean = words.iter().map(|w| w.len()).sum::<usize>() as f64 / words.len() as f64;
        assert!((3.0..8.0).contains(&mean), "mean word length {mean}");
        for line in text.lines() {
            let n = line.split(' ').count();
            assert!((6..=18).contains(&n), "{line}");
        }
    }
}
