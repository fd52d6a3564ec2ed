//! Group large: a GroupByKey over generated records, as large as you ask — the
//! benchmark of grouping data larger than memory (`bench/spill.py`).
//!
//! ```text
//! cargo run --release --example group_large -- --records=20000000 --max_memory=512MB
//! cargo run --release --example group_large -- --records=1000000 --dump=records.tsv
//! ```
//!
//! `--records=N` records of `--value_bytes` bytes (default 100) over `--keys` keys
//! (default N / 20), generated deterministically from their index, are grouped by key;
//! each group is reduced to a checksum of its key, size and values, and the checksums
//! are summed. It prints the number of groups and the sum, which depend only on the
//! records, not on the memory budget or the worker count. `--dump=FILE` writes the same
//! records as `key<TAB>value` lines instead, for comparing with `sort | uniq -c`.

use std::io::Write;

use sluice::prelude::*;
use sluice::transforms::source::{BoundedSource, Emit};

/// The records `index` in `range`.
struct Records {
    records: u64,
    keys: u64,
    value_bytes: usize,
}

/// Record `i`: its key and its value (printable bytes).
fn record(i: u64, keys: u64, value_bytes: usize) -> (u64, Vec<u8>) {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let key = state % keys;
    let value = (0..value_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect();
    (key, value)
}

impl BoundedSource for Records {
    type Output = (u64, Vec<u8>);
    type Split = std::ops::Range<u64>;

    fn split(&self, _workers: usize) -> Result<Vec<Self::Split>, BoxError> {
        // About 4 MB of records a split, so that a bundle's output stays small.
        let per = (4_000_000 / (self.value_bytes as u64 + 16)).max(1);
        Ok((0..self.records)
            .step_by(per as usize)
            .map(|s| s..(s + per).min(self.records))
            .collect())
    }

    fn read(
        &self,
        split: &Self::Split,
        out: &mut Emit<'_, (u64, Vec<u8>)>,
    ) -> Result<(), BoxError> {
        for i in split.clone() {
            out.emit(record(i, self.keys, self.value_bytes), Timestamp::MIN)?;
        }
        Ok(())
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.records * (self.value_bytes as u64 + 16))
    }
}

/// A group's checksum: its key, its size and its values, in any order.
fn checksum(key: u64, values: &[Vec<u8>]) -> u64 {
    let mut sum = key.wrapping_mul(31).wrapping_add(values.len() as u64);
    for v in values {
        sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(v));
    }
    sum
}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    p.describe_flag("records", "records to generate (default 10000000)");
    p.describe_flag("keys", "distinct keys (default records / 20)");
    p.describe_flag("value_bytes", "bytes per value (default 100)");
    p.describe_flag(
        "dump",
        "write the records as key<TAB>value lines to this file and exit",
    );
    let records: u64 = p.arg_parse("records")?.unwrap_or(10_000_000);
    let keys: u64 = p.arg_parse::<u64>("keys")?.unwrap_or(records / 20).max(1);
    let value_bytes: usize = p.arg_parse("value_bytes")?.unwrap_or(100);
    if let Some(path) = p.arg_parse::<String>("dump")? {
        let file = std::fs::File::create(&path)
            .map_err(|e| sluice::Error::Service(format!("cannot write --dump={path}: {e}")))?;
        let mut out = std::io::BufWriter::new(file);
        for i in 0..records {
            let (key, value) = record(i, keys, value_bytes);
            let written = writeln!(out, "{key}\t{}", String::from_utf8_lossy(&value));
            written
                .map_err(|e| sluice::Error::Service(format!("cannot write --dump={path}: {e}")))?;
        }
        out.flush()
            .map_err(|e| sluice::Error::Service(format!("cannot write --dump={path}: {e}")))?;
        println!("wrote {records} records to {path}");
        return Ok(());
    }
    let sums = p
        .read_source(
            "Records",
            Records {
                records,
                keys,
                value_bytes,
            },
        )
        .group_by_key("Group")
        .map("Checksum", |(key, values): (u64, Vec<Vec<u8>>)| {
            (1u64, checksum(key, &values))
        })
        .combine_globally("Total", Totals)
        .collect("Out");
    let result = p.run()?;
    let memory = result.metrics().memory;
    result.wait_until_finish()?;
    let (groups, sum) = sums.values().first().copied().unwrap_or((0, 0));
    println!(
        "records={records} groups={groups} checksum={sum:016x} spilled_bytes={} spill_files={} peak_held={}",
        memory.bytes_spilled, memory.spill_files, memory.peak_bytes_held
    );
    Ok(())
}

/// Counts groups and sums their checksums (wrapping).
#[derive(Clone)]
struct Totals;

impl CombineFn for Totals {
    type Input = (u64, u64);
    type Accumulator = (u64, u64);
    type Output = (u64, u64);
    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add_input(&self, acc: &mut (u64, u64), (n, s): (u64, u64)) {
        acc.0 += n;
        acc.1 = acc.1.wrapping_add(s);
    }
    fn merge_accumulators(&self, acc: &mut (u64, u64), other: (u64, u64)) {
        acc.0 += other.0;
        acc.1 = acc.1.wrapping_add(other.1);
    }
    fn extract_output(&self, acc: (u64, u64)) -> (u64, u64) {
        acc
    }
}
