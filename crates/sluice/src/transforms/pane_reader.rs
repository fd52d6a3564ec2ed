//! The reading half of every grouping — GroupByKey, CoGroupByKey, the merging half of a
//! lifted Combine: received records are buffered per key and window in [`Panes`],
//! fired as triggers and the watermark allow, and emitted as `(key, output)` in bundles.
//! What differs between groupings — what a pane buffers and what it emits — is a
//! [`Grouping`].
//!
//! In batch, under the process's memory budget, a reader keeps the records it receives
//! encoded until its input ends ([`Spill`]). If the budget refuses more, it writes what
//! it holds to 64 partition files by key hash (so every record of a key lands in one
//! partition) and goes on writing there. At the end of input it takes one partition at a
//! time — reads it back, groups it in fresh panes, fires it — and hands the runtime its
//! groups a partition at a time, so that no more than a partition's groups are ever
//! held at once. A reader holding more than an eighth of the budget at the end spills
//! too, since grouping needs about twice the records' bytes again. A partition larger
//! than an eighth of the budget is divided again (by other hash bits, up to three
//! times); one that stays larger than the whole budget (the
//! values of very few keys) fails the job with an error naming the transform, rather
//! than the process running out of memory. The groups are those of the in-memory path;
//! only the order in which keys come out differs. A batch stateful DoFn holds its input
//! the same way ([`Spill`] is shared), processing a partition of keys at a time.
//!
//! A streaming reader cannot spill — a trigger may fire any pane at any moment, a timer
//! may read any key's state — so what it holds is only counted ([`Counted`]): over the
//! budget, the job says so and goes on.

use std::ops::Range;

use std::sync::Arc;

use sluice_core::panes::{Firing, Panes};
use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::shuffle::ShuffleRecord;
use sluice_core::spill::{MemoryBudget, Run, RunWriter, human_bytes};
use sluice_core::trigger::Windowing;
use sluice_core::unit::{ShuffleReader, UnitContext, attached};
use sluice_core::{
    Element, ExecError, Timestamp, UnitResult, Window, WindowedValue, key_hash, route,
};

use crate::transforms::group_by_key::count_dropped;

/// What a grouping buffers per key and window, and what it emits.
pub(crate) trait Grouping: 'static {
    /// What a pane buffers.
    type Contents: Clone + Default;
    /// What the grouping emits with each key.
    type Out: Element;
    /// Folds one received record's encoded value into a pane's contents.
    fn add(
        &self,
        ctx: &UnitContext,
        contents: &mut Option<Self::Contents>,
        value: &[u8],
    ) -> UnitResult;
    /// Folds the contents of a window into the window it merges with. Runs no user code.
    fn merge(into: &mut Self::Contents, other: Self::Contents);
    /// The output of a fired pane (`None`: an empty pane). The contents stay as they are,
    /// so that a failed bundle emits the same panes again.
    fn output(
        &self,
        ctx: &UnitContext,
        contents: Option<&Self::Contents>,
    ) -> Result<Self::Out, Box<ExecError>>;
}

/// A grouping's shuffle reader.
pub(crate) struct PaneReader<K, G: Grouping> {
    ctx: UnitContext,
    panes: Panes<G::Contents>,
    fired: Vec<Firing<G::Contents>>,
    output: Option<Port<(K, G::Out)>>,
    /// The key of a global combine's result, which exists even for an empty input; taken
    /// when it has been made sure of.
    default_key: Option<Vec<u8>>,
    grouping: G,
    windowing: Windowing,
    /// Batch under a memory budget: records held encoded, or spilled.
    spill: Option<Spill>,
    /// Batch under a memory budget: a record of the default key (a global combine's) was
    /// seen.
    default_seen: bool,
    /// The last input watermark and processing time (while records are held).
    last: (Timestamp, i64),
    /// Streaming under a memory budget: what the panes hold, counted.
    held: Option<Held>,
}

/// Bytes a streaming reader holds that cannot spill, counted against the budget a chunk
/// at a time. Over the budget, the reader says so once — a warning naming its transform
/// and what to change — counts in the `overBudget` metric, and goes on.
pub(crate) struct Counted {
    budget: Arc<MemoryBudget>,
    counters: std::rc::Rc<sluice_core::unit::UnitCounters>,
    bytes: u64,
    reserved: u64,
    chunk: u64,
    warned: bool,
}

impl Counted {
    pub(crate) fn new(ctx: &UnitContext, budget: Arc<MemoryBudget>) -> Self {
        Counted {
            counters: ctx.counters.clone(),
            chunk: (budget.limit() / 64).clamp(1024, 1 << 20),
            budget,
            bytes: 0,
            reserved: 0,
            warned: false,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The reader now holds `bytes`; `warning(bytes, limit)` is logged the first time the
    /// budget refuses them.
    pub(crate) fn set(&mut self, bytes: u64, warning: impl FnOnce(u64, u64) -> String) {
        self.bytes = bytes;
        self.counters.note_held(bytes);
        if bytes > self.reserved {
            let mut warning = Some(warning);
            while self.bytes > self.reserved {
                if !self.budget.try_reserve(self.chunk) {
                    self.budget.force_reserve(self.chunk);
                    if !self.warned {
                        self.warned = true;
                        self.budget.note_over_budget();
                        if let Some(warning) = warning.take() {
                            log::warn!("{}", warning(self.bytes, self.budget.limit()));
                        }
                    }
                }
                self.reserved += self.chunk;
            }
        } else {
            let keep = self.bytes.div_ceil(self.chunk) * self.chunk;
            if self.reserved > keep {
                self.budget.release(self.reserved - keep);
                self.reserved = keep;
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

/// What a streaming reader's panes hold, by window, counted against the budget. Panes
/// cannot spill (a trigger may fire any of them at any time).
struct Held {
    counted: Counted,
    by_window: std::collections::HashMap<Window, u64>,
}

impl Held {
    fn add(&mut self, ctx: &UnitContext, window: Window, n: u64) {
        *self.by_window.entry(window).or_default() += n;
        let bytes = self.counted.bytes() + n;
        self.counted.set(bytes, |bytes, limit| {
            format!(
                "transform '{}': its buffered panes hold {}, more than the memory budget of {} (--max_memory) allows, and panes of a streaming job cannot spill; the job goes on over budget. Raise --max_memory, shorten the windows or allowed lateness, or add an early trigger",
                ctx.transform,
                human_bytes(bytes),
                human_bytes(limit)
            )
        });
    }

    /// Panes of `windows` fired: discarded, what they held is freed.
    fn fired(&mut self, windows: impl Iterator<Item = Window>, empty: bool) {
        let mut bytes = self.counted.bytes();
        if empty {
            self.by_window.clear();
            bytes = 0;
        } else {
            for window in windows {
                if let Some(n) = self.by_window.remove(&window) {
                    bytes -= n;
                }
            }
        }
        self.counted.set(bytes, |_, _| String::new());
    }
}

/// Partitions a spill divides a reader's records into.
const PARTS: u64 = 64;

/// Times a partition too large for the budget is divided again.
const MAX_DEPTH: u32 = 3;

/// Times a spill file that cannot be read is read again before the job fails.
const READ_ATTEMPTS: u32 = 4;

/// A batch reader's records until its input ends, in memory or in partition files —
/// shared by the groupings and the stateful DoFn, which both see each key's input once
/// it is complete.
pub(crate) struct Spill {
    budget: Arc<MemoryBudget>,
    /// Records held, in the shuffle record format
    /// (in chunks of `chunk` bytes, each allocated once at its full size).
    arena: Vec<Vec<u8>>,
    /// Bytes reserved from the budget for the arena.
    reserved: u64,
    /// How much to reserve at a time.
    chunk: u64,
    /// The partition files being written, once the reader has spilled.
    writers: Option<Vec<RunWriter>>,
    /// Partitions still to group, with how often they were divided.
    todo: Vec<(Run, u32)>,
    /// Bytes reserved for the records last handed out.
    loaded: u64,
    /// The end of input was reached: records are being handed out.
    started: bool,
    /// Nothing is left.
    done: bool,
}

fn partition(hash: u64, depth: u32) -> usize {
    (hash.rotate_left(17 + 11 * depth) % PARTS) as usize
}

impl Spill {
    pub(crate) fn new(budget: Arc<MemoryBudget>) -> Self {
        Spill {
            chunk: (budget.limit() / 16).clamp(4096, 1 << 20),
            budget,
            arena: Vec::new(),
            reserved: 0,
            writers: None,
            todo: Vec::new(),
            loaded: 0,
            started: false,
            done: false,
        }
    }

    /// Still taking records: the end of input has not been reached.
    pub(crate) fn taking(&self) -> bool {
        !self.started
    }

    /// Records are still to be handed out (or were, and are being emitted).
    pub(crate) fn pending(&self) -> bool {
        !self.done
    }

    fn io_error(ctx: &UnitContext, what: &str, e: impl std::fmt::Display) -> Box<ExecError> {
        ExecError::permanent(
            ctx.transform.clone(),
            format!(
                "{what}: {e} (spill files go under --temp_location, now {})",
                ctx.memory
                    .as_ref()
                    .map(|m| m.dir().display().to_string())
                    .unwrap_or_default()
            ),
        )
    }

    /// Reads a partition file back, again after a failure (a transient I/O error passes);
    /// a file that stays unreadable (corrupt, truncated, missing) fails the job.
    fn read(ctx: &UnitContext, run: &Run) -> Result<Vec<u8>, Box<ExecError>> {
        let mut attempt = 1;
        loop {
            match sluice_core::spill::read_run(run) {
                Ok(records) => return Ok(records),
                Err(e) if attempt >= READ_ATTEMPTS => {
                    return Err(ctx.error(format!("{e} ({attempt} attempts)")));
                }
                Err(e) => {
                    log::warn!(
                        "transform '{}': {e}; reading it again (attempt {} of {READ_ATTEMPTS})",
                        ctx.transform,
                        attempt + 1
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
                    attempt += 1;
                }
            }
        }
    }

    /// Writes `records` to `writers` by partition.
    fn split(
        ctx: &UnitContext,
        records: &[u8],
        writers: &mut [RunWriter],
        depth: u32,
    ) -> UnitResult {
        let base = records.as_ptr() as usize;
        let mut start = 0;
        for record in sluice_core::shuffle::records(records) {
            let record = record.map_err(|e| ctx.error(e))?;
            let part = partition(key_hash(record.key), depth);
            // The record's bytes: from where it starts to the end of its value.
            let end = record.value.as_ptr() as usize + record.value.len() - base;
            writers[part]
                .write(&records[start..end])
                .map_err(|e| Spill::io_error(ctx, "cannot write a spill file", e))?;
            start = end;
        }
        Ok(())
    }

    fn new_writers(&self, ctx: &UnitContext, depth: u32) -> Result<Vec<RunWriter>, Box<ExecError>> {
        ctx.counters.note_spill_files(PARTS);
        (0..PARTS)
            .map(|p| {
                RunWriter::create(
                    &self.budget,
                    &format!("w{}-s{}-d{depth}-p{p}", ctx.worker, ctx.step),
                )
                .map_err(|e| Spill::io_error(ctx, "cannot create a spill file", e))
            })
            .collect()
    }

    /// Writes the records held to the partition files and gives their memory back.
    fn spill(&mut self, ctx: &UnitContext) -> UnitResult {
        if self.writers.is_none() {
            self.writers = Some(self.new_writers(ctx, 0)?);
        }
        let writers = self.writers.as_mut().expect("just made");
        for chunk in &self.arena {
            Spill::split(ctx, chunk, writers, 0)?;
        }
        self.arena = Vec::new();
        self.budget.release(self.reserved);
        self.reserved = 0;
        Ok(())
    }

    /// Finishes partition files, keeping those with records as work at `depth`.
    fn finish(&mut self, ctx: &UnitContext, writers: Vec<RunWriter>, depth: u32) -> UnitResult {
        for writer in writers {
            let run = writer
                .finish(&self.budget)
                .map_err(|e| Spill::io_error(ctx, "cannot write a spill file", e))?;
            ctx.counters.note_spilled(run.bytes);
            if run.bytes > 0 {
                self.todo.push((run, depth));
            } else {
                let _ = std::fs::remove_file(&run.path);
            }
        }
        Ok(())
    }

    /// Takes a received record: into memory while the budget allows, else (and from then
    /// on) into the partition files.
    pub(crate) fn hold(&mut self, ctx: &UnitContext, record: &ShuffleRecord<'_>) -> UnitResult {
        // Reserved and allocated a chunk at a time, so what the arena takes is what the
        // budget counts.
        let len = record.key.len() + record.value.len() + 40;
        let fits = self
            .arena
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            let size = (self.chunk as usize).max(len);
            if self.budget.try_reserve(size as u64) {
                self.reserved += size as u64;
            } else {
                self.spill(ctx)?;
                self.budget.force_reserve(size as u64);
                self.reserved = size as u64;
            }
            self.arena.push(Vec::with_capacity(size));
            ctx.counters.note_held(self.reserved);
        }
        let chunk = self.arena.last_mut().expect("a chunk with room");
        sluice_core::shuffle::append_record(chunk, record);
        Ok(())
    }

    /// Gives back what the records last handed out were counted for.
    pub(crate) fn release(&mut self) {
        self.budget.release(std::mem::take(&mut self.loaded));
    }

    /// At the end of input, the next records to process, in the order received within
    /// each key: all of them at once when they fit, else the next partition (every record
    /// of its keys), counted against the budget until the next call; `None` when none are
    /// left. `delivers` says, in the error for a partition too large for the whole
    /// budget, what the reader holds in memory at once.
    pub(crate) fn next(
        &mut self,
        ctx: &UnitContext,
        delivers: &str,
    ) -> Result<Option<Vec<Vec<u8>>>, Box<ExecError>> {
        self.release();
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            // Processing takes about twice the records' bytes again (the panes or states,
            // the groups fired): more than an eighth of the budget goes a partition at a
            // time.
            let held: usize = self.arena.iter().map(Vec::len).sum();
            if self.writers.is_none() && held as u64 > self.budget.limit() / 8 {
                self.spill(ctx)?;
            }
            if self.writers.is_none() {
                // Everything fits: all at once, as the in-memory path does.
                self.loaded = std::mem::take(&mut self.reserved);
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.arena)));
            }
            self.spill(ctx)?;
            let writers = self.writers.take().expect("spilled");
            self.finish(ctx, writers, 0)?;
        }
        loop {
            let Some((run, depth)) = self.todo.pop() else {
                self.done = true;
                return Ok(None);
            };
            let limit = self.budget.limit();
            if run.bytes > limit / 8 && depth < MAX_DEPTH {
                // Too large to process at once: divide it by other bits of the key hash.
                let records = Spill::read(ctx, &run)?;
                let _ = std::fs::remove_file(&run.path);
                let mut writers = self.new_writers(ctx, depth + 1)?;
                Spill::split(ctx, &records, &mut writers, depth + 1)?;
                drop(records);
                self.finish(ctx, writers, depth + 1)?;
                continue;
            }
            if run.bytes > limit {
                return Err(ExecError::permanent(
                    ctx.transform.clone(),
                    format!(
                        "the values of a few keys hold {}, more than the memory budget of {} allows ({delivers}); raise --max_memory, or key the data more finely",
                        human_bytes(run.bytes),
                        human_bytes(limit)
                    ),
                ));
            }
            let records = Spill::read(ctx, &run)?;
            let _ = std::fs::remove_file(&run.path);
            // The records, then what is made of them: about twice their bytes.
            self.loaded = 2 * records.len() as u64;
            self.budget.force_reserve(self.loaded);
            ctx.counters.note_held(self.loaded);
            return Ok(Some(vec![records]));
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.budget.release(self.reserved + self.loaded);
    }
}

impl<K, G: Grouping> PaneReader<K, G> {
    pub(crate) fn new(
        ctx: &UnitContext,
        windowing: &Windowing,
        default_key: Option<Vec<u8>>,
        grouping: G,
    ) -> Self {
        let spill = ctx
            .memory
            .clone()
            .filter(|_| !ctx.streaming)
            .map(Spill::new);
        PaneReader {
            ctx: ctx.clone(),
            panes: Panes::new(windowing.clone(), ctx.streaming),
            fired: Vec::new(),
            output: None,
            default_key,
            grouping,
            windowing: windowing.clone(),
            held: ctx
                .memory
                .clone()
                .filter(|_| ctx.streaming)
                .map(|budget| Held {
                    counted: Counted::new(ctx, budget),
                    by_window: std::collections::HashMap::new(),
                }),
            spill,
            default_seen: false,
            last: (Timestamp::MIN, 0),
        }
    }
}

impl<K: Element, G: Grouping> PaneReader<K, G> {
    /// Takes a record into the panes.
    fn accept_now(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        let (grouping, ctx) = (&self.grouping, &self.ctx);
        let taken = self.panes.accept::<Box<ExecError>>(
            record.key,
            key_hash(record.key),
            record.window,
            record.timestamp,
            |contents| grouping.add(ctx, contents, record.value),
            G::merge,
        )?;
        if !taken {
            count_dropped(&self.ctx, &mut self.panes);
        } else if let Some(held) = self.held.as_mut() {
            held.add(
                &self.ctx,
                record.window,
                (record.key.len() + record.value.len() + 24) as u64,
            );
        }
        Ok(())
    }

    fn fire_now(&mut self) -> Result<usize, Box<ExecError>> {
        if self.panes.watermark() == Timestamp::MAX
            && let Some(key) = self.default_key.take()
        {
            let hash = key_hash(&key);
            if route(hash, self.ctx.workers) == self.ctx.worker {
                // An empty pane: its output is made when it is emitted.
                self.panes
                    .ensure(&key, hash, Window::Global, G::Contents::default);
            }
        }
        self.fired = self.panes.fire(G::merge);
        if let Some(held) = self.held.as_mut() {
            // Discarding panes give up what they held once fired; accumulating ones keep
            // it until their window expires.
            let discarding =
                self.windowing.accumulation == sluice_core::trigger::AccumulationMode::Discarding;
            let windows: Vec<Window> = if discarding {
                self.fired.iter().map(|f| f.window).collect()
            } else {
                Vec::new()
            };
            held.fired(windows.into_iter(), self.panes.is_empty());
        }
        Ok(self.fired.len())
    }

    /// Batch under a budget: at the end of input, the groups of the records held (all at
    /// once) or of the next partition with any (a partition at a time); 0 when none are
    /// left.
    fn fire_spilled(&mut self) -> Result<usize, Box<ExecError>> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(0);
        };
        if !spill.pending() {
            spill.release();
            return Ok(0);
        }
        if self.last.0 != Timestamp::MAX {
            return Ok(0);
        }
        let now_ms = self.last.1;
        loop {
            let spill = self.spill.as_mut().expect("spilling");
            self.fired.clear();
            self.panes = Panes::new(self.windowing.clone(), false);
            let Some(chunks) = spill.next(
                &self.ctx,
                "a grouping delivers each group's values together in memory",
            )?
            else {
                // A global combine's result exists even when no value arrived.
                if !self.default_seen {
                    self.panes.advance(Timestamp::MAX, now_ms);
                    return self.fire_now();
                }
                self.default_key = None;
                return Ok(0);
            };
            // A chunk at a time, each freed once its records are in the panes.
            for chunk in chunks {
                for record in sluice_core::shuffle::records(&chunk) {
                    let record = record.map_err(|e| self.ctx.error(e))?;
                    if self.default_key.as_deref() == Some(record.key) {
                        self.default_seen = true;
                    }
                    self.accept_now(record)?;
                }
            }
            self.panes.advance(Timestamp::MAX, now_ms);
            // The default key is made only once every partition has been seen.
            let default_key = self.default_key.take();
            let fired = self.fire_now()?;
            self.default_key = default_key;
            if fired > 0 {
                return Ok(fired);
            }
        }
    }
}

impl<K: Element, G: Grouping> ShuffleReader for PaneReader<K, G> {
    fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        if self.spill.is_some() {
            // Held until the end of input: the panes see only the final watermark.
            self.last = (watermark, now_ms);
            return;
        }
        self.panes.advance(watermark, now_ms);
    }

    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        if let Some(spill) = self.spill.as_mut().filter(|s| s.taking()) {
            return spill.hold(&self.ctx, &record);
        }
        self.accept_now(record)
    }

    fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        if self.spill.is_some() {
            return self.fire_spilled();
        }
        self.fire_now()
    }

    fn hold(&self) -> Timestamp {
        match &self.spill {
            // Groups not yet fired hold the watermark back.
            Some(spill) if spill.pending() => Timestamp::MIN,
            _ => self.panes.hold(),
        }
    }

    fn next_wakeup_ms(&self) -> Option<i64> {
        self.panes.next_deadline()
    }

    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast()?);
        Ok(())
    }

    fn detach(&mut self) {
        self.output = None;
    }

    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }

    fn emit(&mut self, range: Range<usize>) -> UnitResult {
        let output = attached(&mut self.output, &self.ctx)?;
        for (i, firing) in self.fired[range.clone()].iter().enumerate() {
            self.ctx.position.store(
                (range.start + i) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let k = sluice_core::coder::decode_exact::<K>(&firing.key)
                .map_err(|e| self.ctx.error(e))?;
            let out = self.grouping.output(&self.ctx, firing.contents.as_ref())?;
            output.emit(WindowedValue {
                value: (k, out),
                timestamp: firing.timestamp,
                window: firing.window,
                pane: firing.pane,
            })?;
        }
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds 20,000 records of 100 keys in a spill under a 64 KB budget.
    fn spilled(ctx: &UnitContext, budget: &Arc<MemoryBudget>) -> Spill {
        let mut spill = Spill::new(budget.clone());
        for i in 0..20_000u64 {
            let key = format!("key-{}", i % 100);
            let value = i.to_le_bytes();
            let record = ShuffleRecord {
                key: key.as_bytes(),
                window: Window::Global,
                timestamp: Timestamp::MIN,
                value: &value,
            };
            spill.hold(ctx, &record).unwrap();
        }
        spill
    }

    #[test]
    fn every_record_comes_back_a_partition_at_a_time_in_the_order_received() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(MemoryBudget::new(64 << 10, dir.path().join("spill")));
        let ctx = UnitContext::standalone("Group");
        let mut spill = spilled(&ctx, &budget);
        let mut seen: std::collections::HashMap<Vec<u8>, Vec<u64>> = Default::default();
        let mut partitions = 0;
        while let Some(chunks) = spill.next(&ctx, "").unwrap() {
            partitions += 1;
            for chunk in chunks {
                for record in sluice_core::shuffle::records(&chunk) {
                    let record = record.unwrap();
                    let value = u64::from_le_bytes(record.value.try_into().unwrap());
                    seen.entry(record.key.to_vec()).or_default().push(value);
                }
            }
        }
        assert!(partitions > 1, "{partitions}");
        assert_eq!(seen.len(), 100);
        for (key, values) in seen {
            let k: u64 = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            let expected: Vec<u64> = (0..200).map(|j| j * 100 + k).collect();
            assert_eq!(values, expected, "key {k}");
        }
        assert!(ctx.counters.spilled_bytes.get() > 0);
        drop(spill);
        assert_eq!(budget.held(), 0, "everything given back");
    }

    #[test]
    fn a_corrupt_partition_file_is_read_again_then_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(MemoryBudget::new(64 << 10, dir.path().join("spill")));
        let ctx = UnitContext::standalone("Group");
        let mut spill = spilled(&ctx, &budget);
        assert!(spill.next(&ctx, "").unwrap().is_some());
        // One byte flipped in the middle of every partition file not read yet.
        assert!(!spill.todo.is_empty());
        for (run, _) in &spill.todo {
            let mut bytes = std::fs::read(&run.path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&run.path, bytes).unwrap();
        }
        let error = spill.next(&ctx, "").unwrap_err().to_string();
        assert!(
            error.contains("Group") && error.contains(".run") && error.contains("4 attempts"),
            "{error}"
        );
    }
}
