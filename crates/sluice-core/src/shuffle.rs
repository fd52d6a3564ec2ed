//! Records that cross a shuffle, and the tables that group them.
//!
//! A shuffle moves records between workers by the hash of their encoded key. A record is
//! laid out as
//!
//! ```text
//! varint key_len | key bytes | window | timestamp (i64 LE) | u32 LE value_len | value bytes
//! ```
//!
//! The writer buffers records per destination worker until the bundle that produced them
//! commits; the runtime then sends each destination its batch. On the receiving side a
//! [`KeyedTable`] groups records by (encoded key, window).

use std::cell::RefCell;
use std::rc::Rc;

use hashbrown::HashTable;

use crate::coder::CoderError;
use crate::key::route;
use crate::time::Timestamp;
use crate::window::Window;

/// One record read from a shuffle batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShuffleRecord<'a> {
    /// The encoded key (empty for an unkeyed reshuffle).
    pub key: &'a [u8],
    /// The element's window.
    pub window: Window,
    /// The element's event timestamp.
    pub timestamp: Timestamp,
    /// The encoded value.
    pub value: &'a [u8],
}

/// A batch of records bound for one worker.
#[derive(Debug, Default)]
pub struct RecordBatch {
    /// The worker that owns every key in the batch.
    pub dest: usize,
    /// How many records the batch holds.
    pub records: u64,
    /// The records, back to back.
    pub bytes: Vec<u8>,
}

/// A destination's buffer is sealed into a batch of its own once it holds this many
/// bytes, so a large bundle's output travels as several moderate batches: buffers of
/// this size are recycled by the allocator, where ever-larger ones would be fresh
/// memory, zeroed by the kernel, for every bundle.
const SEAL_BYTES: usize = 256 << 10;

/// What one writer's open buffers may hold in all: with many workers each destination's
/// buffer is sealed smaller, so a writer's memory does not grow with the worker count
/// (and a job's with its square).
const OPEN_BYTES: usize = 8 << 20;

/// The smallest size a destination's buffer is sealed at.
const MIN_SEAL_BYTES: usize = 16 << 10;

/// The sealing size for a writer with `workers` destinations.
fn seal_bytes(workers: usize) -> usize {
    (OPEN_BYTES / workers.max(1)).clamp(MIN_SEAL_BYTES, SEAL_BYTES)
}

#[derive(Debug)]
struct Buffers {
    per_dest: Vec<RecordBatch>,
    /// Full batches of the current bundle, in the order they filled.
    sealed: Vec<RecordBatch>,
    next_spread: usize,
    /// Size at which a destination's buffer is sealed.
    seal_at: usize,
}

impl Buffers {
    fn seal_if_full(&mut self, dest: usize) {
        let seal_at = self.seal_at;
        let batch = &mut self.per_dest[dest];
        if batch.bytes.len() >= seal_at {
            let full = RecordBatch {
                dest,
                records: std::mem::take(&mut batch.records),
                bytes: std::mem::replace(&mut batch.bytes, Vec::with_capacity(seal_at * 5 / 4)),
            };
            self.sealed.push(full);
        }
    }
}

/// Where the execution units of a stage write records bound for a shuffle. Cloning the
/// writer shares its buffers.
#[derive(Clone, Debug)]
pub struct ShuffleWriter(Rc<RefCell<Buffers>>);

impl ShuffleWriter {
    /// A writer routing among `workers` workers.
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        ShuffleWriter(Rc::new(RefCell::new(Buffers {
            per_dest: (0..workers)
                .map(|dest| RecordBatch {
                    dest,
                    ..RecordBatch::default()
                })
                .collect(),
            sealed: Vec::new(),
            next_spread: fastrand::usize(..workers),
            seal_at: seal_bytes(workers),
        })))
    }

    /// Writes a record to the worker that owns `key` (whose routing hash is `hash`); the
    /// value is encoded in place by `encode_value`.
    #[inline]
    pub fn write_keyed(
        &self,
        key: &[u8],
        hash: u64,
        window: Window,
        timestamp: Timestamp,
        encode_value: impl FnOnce(&mut Vec<u8>) -> Result<(), CoderError>,
    ) -> Result<(), CoderError> {
        let mut buffers = self.0.borrow_mut();
        let dest = route(hash, buffers.per_dest.len());
        write_record(
            &mut buffers.per_dest[dest],
            key,
            window,
            timestamp,
            encode_value,
        )?;
        buffers.seal_if_full(dest);
        Ok(())
    }

    /// Writes an unkeyed record to the next worker in turn (a reshuffle).
    pub fn write_spread(
        &self,
        window: Window,
        timestamp: Timestamp,
        encode_value: impl FnOnce(&mut Vec<u8>) -> Result<(), CoderError>,
    ) -> Result<(), CoderError> {
        let mut buffers = self.0.borrow_mut();
        let dest = buffers.next_spread;
        buffers.next_spread = (dest + 1) % buffers.per_dest.len();
        write_record(
            &mut buffers.per_dest[dest],
            &[],
            window,
            timestamp,
            encode_value,
        )?;
        buffers.seal_if_full(dest);
        Ok(())
    }

    /// Writes a record to every worker (a side input, which each worker reads whole).
    pub fn write_broadcast(
        &self,
        window: Window,
        timestamp: Timestamp,
        encode_value: impl FnOnce(&mut Vec<u8>) -> Result<(), CoderError>,
    ) -> Result<(), CoderError> {
        let mut buffers = self.0.borrow_mut();
        let (first, rest) = buffers
            .per_dest
            .split_first_mut()
            .expect("a shuffle writer has at least one destination");
        let start = first.bytes.len();
        write_record(first, &[], window, timestamp, encode_value)?;
        for other in rest {
            other.bytes.extend_from_slice(&first.bytes[start..]);
            other.records += 1;
        }
        for dest in 0..buffers.per_dest.len() {
            buffers.seal_if_full(dest);
        }
        Ok(())
    }

    /// Takes the non-empty batches written since the last call.
    pub fn take_batches(&self) -> Vec<RecordBatch> {
        let mut buffers = self.0.borrow_mut();
        let buffers = &mut *buffers;
        let mut batches = std::mem::take(&mut buffers.sealed);
        batches.extend(
            buffers
                .per_dest
                .iter_mut()
                .filter(|b| b.records > 0)
                .map(|b| RecordBatch {
                    dest: b.dest,
                    records: std::mem::take(&mut b.records),
                    bytes: std::mem::take(&mut b.bytes),
                }),
        );
        batches
    }

    /// Drops everything written since the last [`ShuffleWriter::take_batches`] (a failed bundle).
    pub fn discard(&self) {
        let mut buffers = self.0.borrow_mut();
        buffers.sealed.clear();
        for b in buffers.per_dest.iter_mut() {
            b.records = 0;
            b.bytes.clear();
        }
    }
}

fn write_record(
    batch: &mut RecordBatch,
    key: &[u8],
    window: Window,
    timestamp: Timestamp,
    encode_value: impl FnOnce(&mut Vec<u8>) -> Result<(), CoderError>,
) -> Result<(), CoderError> {
    let start = batch.bytes.len();
    let out = &mut batch.bytes;
    write_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    window.encode_to(out);
    out.extend_from_slice(&timestamp.0.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = encode_value(out) {
        out.truncate(start);
        return Err(e);
    }
    let value_len = out.len() - len_at - 4;
    let Ok(value_len) = u32::try_from(value_len) else {
        out.truncate(start);
        return Err(CoderError {
            action: "encode",
            type_name: "shuffle record",
            reason: format!("a value of {value_len} bytes exceeds the 4 GiB record limit"),
        });
    };
    out[len_at..len_at + 4].copy_from_slice(&value_len.to_le_bytes());
    batch.records += 1;
    Ok(())
}

/// Appends `record` in the shuffle record format (what [`records`] reads back).
pub fn append_record(out: &mut Vec<u8>, record: &ShuffleRecord<'_>) {
    write_varint(out, record.key.len() as u64);
    out.extend_from_slice(record.key);
    record.window.encode_to(out);
    out.extend_from_slice(&record.timestamp.0.to_le_bytes());
    out.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
    out.extend_from_slice(record.value);
}

/// A batch's bytes were not a sequence of well-formed records.
#[derive(Debug, thiserror::Error)]
#[error("malformed shuffle record at byte {offset}")]
pub struct MalformedRecord {
    /// Where the bad record starts.
    pub offset: usize,
}

/// Iterates over the records of a batch.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = Result<ShuffleRecord<'_>, MalformedRecord>> {
    let mut input = bytes;
    let total = bytes.len();
    let mut failed = false;
    std::iter::from_fn(move || {
        if input.is_empty() || failed {
            return None;
        }
        let offset = total - input.len();
        let record = read_record(&mut input);
        if record.is_none() {
            failed = true;
        }
        Some(record.ok_or(MalformedRecord { offset }))
    })
}

fn read_record<'a>(input: &mut &'a [u8]) -> Option<ShuffleRecord<'a>> {
    let key_len = usize::try_from(read_varint(input)?).ok()?;
    let (key, rest) = input.split_at_checked(key_len)?;
    *input = rest;
    let window = Window::decode_from(input)?;
    let (ts, rest) = input.split_at_checked(8)?;
    let timestamp = Timestamp(i64::from_le_bytes(ts.try_into().ok()?));
    let (len, rest) = rest.split_at_checked(4)?;
    let value_len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let (value, rest) = rest.split_at_checked(value_len)?;
    *input = rest;
    Some(ShuffleRecord {
        key,
        window,
        timestamp,
        value,
    })
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint from the front of `input`.
pub fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in input.iter().enumerate().take(10) {
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b < 0x80 {
            *input = &input[i + 1..];
            return Some(v);
        }
    }
    None
}

/// A byte string stored inline when short, so comparing it needs no pointer chase.
#[derive(Clone, Debug)]
enum SmallBytes {
    Inline { len: u8, data: [u8; 22] },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    fn new(bytes: &[u8]) -> SmallBytes {
        if bytes.len() <= 22 {
            let mut data = [0u8; 22];
            data[..bytes.len()].copy_from_slice(bytes);
            SmallBytes::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            SmallBytes::Heap(bytes.into())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, data } => &data[..*len as usize],
            SmallBytes::Heap(b) => b,
        }
    }
}

/// A key and the window it is grouped in, encoded as one byte string: the window, then
/// the key. Build it once per element and look it up in a [`KeyedTable`].
#[derive(Clone, Debug, Default)]
pub struct GroupingKey {
    bytes: Vec<u8>,
    key_start: usize,
    window: Option<Window>,
}

impl GroupingKey {
    /// Sets the key, encoded by `encode_key`, in `window`.
    #[inline]
    pub fn set<E>(
        &mut self,
        window: Window,
        encode_key: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.bytes.clear();
        window.encode_to(&mut self.bytes);
        self.key_start = self.bytes.len();
        self.window = Some(window);
        encode_key(&mut self.bytes)
    }

    /// Sets an already encoded key in `window`.
    #[inline]
    pub fn set_encoded(&mut self, window: Window, key: &[u8]) {
        let _ = self.set::<()>(window, |out| {
            out.extend_from_slice(key);
            Ok(())
        });
    }

    /// The encoded key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.bytes[self.key_start..]
    }

    /// The window.
    #[inline]
    pub fn window(&self) -> Window {
        self.window.unwrap_or(Window::Global)
    }
}

/// Splits a table entry's bytes into its window and encoded key.
fn split_entry(bytes: &[u8]) -> (Window, &[u8]) {
    let mut rest = bytes;
    match Window::decode_from(&mut rest) {
        Some(window) => (window, rest),
        // Entries are written by `GroupingKey::set`, which always encodes a window first.
        None => (Window::Global, bytes),
    }
}

/// The hash a table files an entry under: the key's routing hash mixed with its window.
#[inline]
fn table_hash(route_hash: u64, window: Window) -> u64 {
    // The routing hash's high bits choose the worker, so within one worker they are
    // nearly constant; rotate them down, where the table spreads buckets.
    (route_hash ^ window.hash_bits()).rotate_left(29)
}

struct Slot<V> {
    /// Window and key, as in [`GroupingKey`].
    bytes: SmallBytes,
    value: V,
}

/// A hash table keyed by (encoded key, window), as grouping per key and window needs.
/// An entry is the key's bytes (inline when short) and the value, so a lookup touches
/// one cache line.
pub struct KeyedTable<V> {
    table: HashTable<Slot<V>>,
}

impl<V> Default for KeyedTable<V> {
    fn default() -> Self {
        KeyedTable {
            table: HashTable::new(),
        }
    }
}

impl<V> KeyedTable<V> {
    /// The value stored for `group`, inserting `init()` if there is none. `route_hash` is
    /// [`crate::key_hash`] of `group.key()`.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        group: &GroupingKey,
        route_hash: u64,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        let hash = table_hash(route_hash, group.window());
        let bytes = &group.bytes[..];
        let entry = self.table.entry(
            hash,
            |s| s.bytes.as_slice() == bytes,
            |s| {
                let (window, key) = split_entry(s.bytes.as_slice());
                table_hash(crate::key_hash(key), window)
            },
        );
        &mut entry
            .or_insert_with(|| Slot {
                bytes: SmallBytes::new(bytes),
                value: init(),
            })
            .into_mut()
            .value
    }

    /// How many (key, window) pairs the table holds.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Visits every entry as (encoded key, window, value); entries for which `keep`
    /// returns false are removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], Window, &mut V) -> bool) {
        self.table.retain(|s| {
            let (window, key) = split_entry(s.bytes.as_slice());
            keep(key, window, &mut s.value)
        });
    }

    /// Empties the table, yielding (encoded key, window, value) in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = (Box<[u8]>, Window, V)> + '_ {
        self.table.drain().map(|s| {
            let (window, key) = split_entry(s.bytes.as_slice());
            (Box::from(key), window, s.value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coder::Coder;
    use crate::key::key_hash;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>()) {
            let mut out = vec![];
            write_varint(&mut out, v);
            let mut input = &out[..];
            prop_assert_eq!(read_varint(&mut input), Some(v));
            prop_assert!(input.is_empty());
        }

        #[test]
        fn records_round_trip(items in proptest::collection::vec((".{0,12}", any::<i64>(), any::<i64>()), 0..40), workers in 1usize..5) {
            let writer = ShuffleWriter::new(workers);
            for (k, ts, v) in &items {
                let mut key = vec![];
                k.encode_to(&mut key).unwrap();
                writer.write_keyed(&key, key_hash(&key), Window::Global, Timestamp(*ts), |out| v.encode_to(out)).unwrap();
            }
            let mut seen = vec![];
            for batch in writer.take_batches() {
                let mut n = 0;
                for r in records(&batch.bytes) {
                    let r = r.unwrap();
                    prop_assert_eq!(route(key_hash(r.key), workers), batch.dest);
                    let k = String::decode_from(&mut &r.key[..]).unwrap();
                    let v = i64::decode_from(&mut &r.value[..]).unwrap();
                    seen.push((k, r.timestamp.0, v));
                    n += 1;
                }
                prop_assert_eq!(n, batch.records);
            }
            let mut expected = items.clone();
            expected.sort();
            seen.sort();
            prop_assert_eq!(seen, expected);
        }
    }

    #[test]
    fn table_entries_are_small_and_long_keys_work() {
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 32);
        let mut t = KeyedTable::<usize>::default();
        let mut g = GroupingKey::default();
        let keys: Vec<Vec<u8>> = (0..2000usize).map(|i| vec![b'k'; i % 60]).collect();
        for (i, k) in keys.iter().enumerate() {
            g.set_encoded(Window::Global, k);
            *t.get_or_insert_with(&g, key_hash(k), || 0) += i;
        }
        assert_eq!(t.len(), 60);
        let total: usize = t.drain().map(|(_, _, v)| v).sum();
        assert_eq!(total, (0..2000).sum::<usize>());
    }

    #[test]
    fn a_large_bundle_leaves_in_moderate_batches_and_a_discard_drops_them_all() {
        let writer = ShuffleWriter::new(2);
        let value = vec![7u8; 1000];
        let write = |n: u64| {
            for i in 0..n {
                let key = i.to_le_bytes();
                writer
                    .write_keyed(&key, key_hash(&key), Window::Global, Timestamp(0), |o| {
                        o.extend_from_slice(&value);
                        Ok(())
                    })
                    .unwrap();
            }
        };
        write(2_000);
        writer.discard();
        assert!(
            writer.take_batches().is_empty(),
            "a discarded bundle leaves nothing"
        );
        write(2_000);
        let batches = writer.take_batches();
        assert!(batches.len() > 4, "{} batches", batches.len());
        assert!(batches.iter().all(|b| b.bytes.len() < SEAL_BYTES + 2_000));
        let mut per_dest = [0u64; 2];
        for b in &batches {
            let mut n = 0u64;
            for r in records(&b.bytes) {
                assert_eq!(r.unwrap().value, &value[..]);
                n += 1;
            }
            assert_eq!(n, b.records);
            per_dest[b.dest] += n;
        }
        assert_eq!(per_dest[0] + per_dest[1], 2_000);
        assert!(writer.take_batches().is_empty());
    }

    #[test]
    fn open_buffers_do_not_grow_with_the_worker_count() {
        assert_eq!(seal_bytes(1), SEAL_BYTES);
        assert_eq!(seal_bytes(2), SEAL_BYTES);
        assert_eq!(seal_bytes(512), MIN_SEAL_BYTES);
        for workers in [1, 2, 8, 64, 512] {
            // Every destination's buffer nearly full: what the writer holds open.
            let writer = ShuffleWriter::new(workers);
            let value = vec![1u8; 100];
            for i in 0..200_000u64 {
                let key = i.to_le_bytes();
                writer
                    .write_keyed(&key, key_hash(&key), Window::Global, Timestamp(0), |o| {
                        o.extend_from_slice(&value);
                        Ok(())
                    })
                    .unwrap();
            }
            let open: usize = writer
                .0
                .borrow()
                .per_dest
                .iter()
                .map(|b| b.bytes.capacity())
                .sum();
            assert!(
                open <= (OPEN_BYTES * 5 / 4).max(workers * MIN_SEAL_BYTES * 5 / 4) + workers * 256,
                "{workers} workers: {open} bytes open"
            );
        }
    }

    #[test]
    fn a_truncated_batch_is_reported_not_misread() {
        let writer = ShuffleWriter::new(1);
        writer
            .write_keyed(b"k", key_hash(b"k"), Window::Global, Timestamp(0), |o| {
                7u32.encode_to(o)
            })
            .unwrap();
        let batch = writer.take_batches().pop().unwrap();
        let cut = &batch.bytes[..batch.bytes.len() - 1];
        let results: Vec<_> = records(cut).collect();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap_err().offset, 0);
    }

    #[test]
    fn discard_forgets_a_failed_bundle() {
        let writer = ShuffleWriter::new(2);
        writer
            .write_spread(Window::Global, Timestamp(0), |o| 1u8.encode_to(o))
            .unwrap();
        writer.discard();
        assert!(writer.take_batches().is_empty());
    }

    #[test]
    fn table_groups_by_key_and_window() {
        let mut t = KeyedTable::<u32>::default();
        let w2 = Window::Interval {
            start: Timestamp(0),
            end: Timestamp(10),
        };
        for (k, w) in [
            (b"a", Window::Global),
            (b"b", Window::Global),
            (b"a", Window::Global),
            (b"a", w2),
        ] {
            let mut g = GroupingKey::default();
            g.set_encoded(w, k);
            *t.get_or_insert_with(&g, key_hash(k), || 0) += 1;
        }
        let mut groups: Vec<_> = t
            .drain()
            .map(|(k, w, n)| (k.to_vec(), w == Window::Global, n))
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![
                (b"a".to_vec(), false, 1),
                (b"a".to_vec(), true, 2),
                (b"b".to_vec(), true, 1)
            ]
        );
    }
}
