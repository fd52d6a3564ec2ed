//! Data larger than memory: a process-wide memory budget for buffering operators, and
//! the run files they spill to when their share is spent.
//!
//! A [`MemoryBudget`] counts the bytes (of encoded records) that grouping readers hold;
//! a reader reserves in chunks as it buffers and, when the budget refuses, writes what it
//! holds to disk. Spill files are written in blocks of up to 64 KiB, each compressed
//! with LZ4 and checked by an XXH3 checksum of its compressed bytes: a corrupt or
//! truncated file is detected when read back, naming the file and the block. Files live
//! in the job's spill directory (`<temp>/sluice-spill-<job id>-<process>`), which holds a
//! lock file while the job runs; it is removed when the job ends, whatever the outcome,
//! and a killed job's directory is removed by the next job that starts with the same
//! temporary directory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of raw records per compressed block.
const BLOCK: usize = 64 << 10;

/// What a job's buffering operators may hold in memory, and what they spilled.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    held: AtomicU64,
    peak: AtomicU64,
    spilled_bytes: AtomicU64,
    spill_files: AtomicU64,
    over_budget: AtomicU64,
    next_file: AtomicU64,
    dir: PathBuf,
    /// The lock file, created with the directory on the first spill.
    lock: Mutex<Option<File>>,
}

/// What a budget measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// The budget, bytes.
    pub limit: u64,
    /// The most held at once.
    pub peak: u64,
    /// Bytes written to spill files (before compression).
    pub spilled_bytes: u64,
    /// Spill files written.
    pub spill_files: u64,
    /// Groupings that went over the budget without being able to spill (streaming).
    pub over_budget: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes whose spill files go under `dir` (made on first use).
    pub fn new(limit: u64, dir: PathBuf) -> MemoryBudget {
        MemoryBudget {
            limit: limit.max(1),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            spilled_bytes: AtomicU64::new(0),
            spill_files: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            next_file: AtomicU64::new(0),
            dir,
            lock: Mutex::new(None),
        }
    }

    /// The budget, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes `n` bytes if they fit.
    pub fn try_reserve(&self, n: u64) -> bool {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            if held + n > self.limit {
                return false;
            }
            match self.held.compare_exchange_weak(
                held,
                held + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(held + n, Ordering::Relaxed);
                    return true;
                }
                Err(now) => held = now,
            }
        }
    }

    /// Takes `n` bytes whether or not they fit (data that must be in memory to be
    /// processed at all).
    pub fn force_reserve(&self, n: u64) {
        let held = self.held.fetch_add(n, Ordering::AcqRel) + n;
        self.peak.fetch_max(held, Ordering::Relaxed);
    }

    /// Notes a grouping that holds more than the budget and cannot spill.
    pub fn note_over_budget(&self) {
        self.over_budget.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives `n` reserved bytes back.
    pub fn release(&self, n: u64) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// What it measured.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            limit: self.limit,
            peak: self.peak.load(Ordering::Relaxed),
            spilled_bytes: self.spilled_bytes.load(Ordering::Relaxed),
            spill_files: self.spill_files.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
        }
    }

    /// The job's spill directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new spill file's path, making the directory (and its lock) first.
    fn new_path(&self, label: &str) -> std::io::Result<PathBuf> {
        let mut lock = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lock.is_none() {
            // Made under another name with its lock taken, then renamed: no other job
            // ever sees the directory without its lock held.
            let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
            let making = self
                .dir
                .with_file_name(format!(".{name}.{}", std::process::id()));
            std::fs::create_dir_all(&making)?;
            let file = File::create(making.join("lock"))?;
            // Held while the job lives: the next job knows a dead job's directory by
            // a lock it can take.
            let _ = file.try_lock();
            std::fs::rename(&making, &self.dir)?;
            *lock = Some(file);
        }
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        Ok(self.dir.join(format!("{label}-{n}.run")))
    }

    /// Removes the spill directory and everything in it.
    pub fn remove_dir(&self) {
        let mut lock = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lock.take().is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes spill directories under `temp` left by jobs that are no longer running (their
/// lock can be taken); returns how many.
pub fn remove_stale(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `.sluice-spill-…`: a directory being made (killed before it was renamed).
        let making = name.starts_with(".sluice-spill-");
        if !making && !name.starts_with("sluice-spill-") {
            continue;
        }
        let dir = entry.path();
        let old = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() >= 60)
        };
        // One being made carries its maker's pid (`.NAME.PID`): while that process
        // lives (this one included: another job of it), its lock may be made but not
        // yet taken, so only age makes it stale.
        if making && maker_alive(&name) && !old() {
            continue;
        }
        let stale = match File::open(dir.join("lock")) {
            Ok(lock) => lock.try_lock().is_ok(),
            // Killed before its lock was made — or, for one being made, about to make
            // it: that one only once it is a minute old.
            Err(_) => !making || old(),
        };
        if stale && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether the process that is making the directory `.NAME.PID` runs (this process,
/// or, where `/proc` shows processes, any other).
fn maker_alive(name: &str) -> bool {
    let Some(pid) = name.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// A spill file being written: records appended in the shuffle record format.
#[derive(Debug)]
pub struct RunWriter {
    path: PathBuf,
    out: BufWriter<File>,
    block: Vec<u8>,
    bytes: u64,
}

/// A finished spill file.
#[derive(Clone, Debug)]
pub struct Run {
    /// Where it is.
    pub path: PathBuf,
    /// Bytes of records it holds (before compression).
    pub bytes: u64,
}

impl RunWriter {
    /// A new file in `budget`'s directory, named after `label`.
    pub fn create(budget: &MemoryBudget, label: &str) -> std::io::Result<RunWriter> {
        let path = budget.new_path(label)?;
        let out = BufWriter::new(File::create(&path)?);
        budget.spill_files.fetch_add(1, Ordering::Relaxed);
        Ok(RunWriter {
            path,
            out,
            block: Vec::with_capacity(BLOCK),
            bytes: 0,
        })
    }

    /// Appends records (already in the shuffle record format).
    pub fn write(&mut self, mut records: &[u8]) -> std::io::Result<()> {
        self.bytes += records.len() as u64;
        // Blocks are cut at BLOCK bytes; a record may span two.
        while !records.is_empty() {
            let room = BLOCK - self.block.len();
            let (now, rest) = records.split_at(room.min(records.len()));
            self.block.extend_from_slice(now);
            records = rest;
            if self.block.len() >= BLOCK {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let compressed = lz4_flex::block::compress(&self.block);
        let sum = xxhash_rust::xxh3::xxh3_64(&compressed);
        self.out
            .write_all(&(self.block.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&(compressed.len() as u32).to_le_bytes())?;
        self.out.write_all(&sum.to_le_bytes())?;
        self.out.write_all(&compressed)?;
        self.block.clear();
        Ok(())
    }

    /// Finishes the file; counts its bytes as spilled.
    pub fn finish(mut self, budget: &MemoryBudget) -> std::io::Result<Run> {
        self.flush_block()?;
        self.out.flush()?;
        budget
            .spilled_bytes
            .fetch_add(self.bytes, Ordering::Relaxed);
        Ok(Run {
            path: self.path,
            bytes: self.bytes,
        })
    }
}

/// A size as people read it: `850 KB`, `12 MB`.
pub fn human_bytes(n: u64) -> String {
    if n < 1 << 20 {
        format!("{} KB", n.div_ceil(1 << 10))
    } else {
        format!("{} MB", n >> 20)
    }
}

/// Reads a whole spill file back: its records, in the shuffle record format.
pub fn read_run(run: &Run) -> Result<Vec<u8>, String> {
    let what = |e: &dyn std::fmt::Display| format!("spill file {}: {e}", run.path.display());
    let file = File::open(&run.path).map_err(|e| what(&e))?;
    let mut input = BufReader::new(file);
    let mut out = Vec::with_capacity(run.bytes as usize);
    let mut block = 0usize;
    loop {
        let mut header = [0u8; 16];
        match input.read_exact(&mut header[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(what(&e)),
        }
        input
            .read_exact(&mut header[1..])
            .map_err(|_| what(&format!("block {block} is truncated")))?;
        let raw = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        if raw > BLOCK || len > lz4_flex::block::get_maximum_output_size(BLOCK) {
            return Err(what(&format!("block {block} has a corrupt header")));
        }
        let mut compressed = vec![0u8; len];
        input
            .read_exact(&mut compressed)
            .map_err(|_| what(&format!("block {block} is truncated")))?;
        if xxhash_rust::xxh3::xxh3_64(&compressed) != sum {
            return Err(what(&format!(
                "block {block} fails its checksum (the file is corrupt)"
            )));
        }
        let records = lz4_flex::block::decompress(&compressed, raw)
            .map_err(|e| what(&format!("block {block}: {e}")))?;
        out.extend_from_slice(&records);
        block += 1;
    }
    if out.len() as u64 != run.bytes {
        return Err(what(&format!(
            "holds {} bytes of records, {} were written (the file is truncated)",
            out.len(),
            run.bytes
        )));
    }
    Ok(out)
}

/// The default budget: half of this machine's physical memory (4 GiB if it cannot be
/// read).
pub fn default_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    total.map_or(4 << 30, |t| t / 2)
}

/// Parses a size such as `256MB`, `4GB`, `1.5GiB`, `512k` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("256MB"), Some(256 << 20));
        assert_eq!(parse_size("4GB"), Some(4 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn runs_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::new(1 << 20, dir.path().join("sluice-spill-j-0"));
        let mut writer = RunWriter::create(&budget, "t").unwrap();
        let mut expected = Vec::new();
        // One large write as well as many small ones.
        let mut large = Vec::new();
        for i in 0..100_000u32 {
            let mut rec = Vec::new();
            crate::shuffle::append_record(
                &mut rec,
                &crate::shuffle::ShuffleRecord {
                    key: format!("key{}", i % 977).as_bytes(),
                    window: crate::Window::Global,
                    timestamp: crate::Timestamp(i as i64),
                    value: &i.to_le_bytes(),
                },
            );
            if i < 50_000 {
                writer.write(&rec).unwrap();
            } else {
                large.extend_from_slice(&rec);
            }
            expected.extend_from_slice(&rec);
        }
        writer.write(&large).unwrap();
        let run = writer.finish(&budget).unwrap();
        assert_eq!(read_run(&run).unwrap(), expected);
        assert_eq!(budget.stats().spill_files, 1);
        assert_eq!(budget.stats().spilled_bytes, expected.len() as u64);

        // One flipped byte in the middle: the checksum names the block.
        let mut bytes = std::fs::read(&run.path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&run.path, &bytes).unwrap();
        let error = read_run(&run).unwrap_err();
        assert!(
            error.contains("checksum") && error.contains(".run"),
            "{error}"
        );
        // Cut short.
        std::fs::write(&run.path, &bytes[..bytes.len() / 3]).unwrap();
        assert!(read_run(&run).unwrap_err().contains("truncated"));
        // Gone.
        std::fs::remove_file(&run.path).unwrap();
        assert!(read_run(&run).unwrap_err().contains("spill file"));

        // A live job's directory stays; a dead one's goes.
        assert_eq!(remove_stale(dir.path()), 0);
        budget.remove_dir();
        assert!(!budget.dir().exists());
        std::fs::create_dir_all(dir.path().join("sluice-spill-dead-0")).unwrap();
        std::fs::write(dir.path().join("sluice-spill-dead-0/lock"), b"").unwrap();
        assert_eq!(remove_stale(dir.path()), 1);
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_keeps_its_peak() {
        let budget = MemoryBudget::new(100, PathBuf::from("/nonexistent"));
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(50));
        budget.release(20);
        assert!(budget.try_reserve(50));
        budget.force_reserve(100);
        assert_eq!(budget.stats().peak, 190);
    }
}
