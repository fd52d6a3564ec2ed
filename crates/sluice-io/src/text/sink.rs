//! Writing lines to sharded text files, committed atomically when the job succeeds.
//!
//! Every worker appends its committed bundles to its own temporary file in a hidden
//! directory next to the output (`.temp-sluice-<prefix>-<job id>`). Only when the whole
//! job has succeeded are the temporary files renamed to their final names,
//! `PREFIX-00000-of-00002` and so on — one shard per worker that wrote anything (one
//! empty shard if none did), exactly `num_shards` shards if the user chose a count, or
//! exactly `PREFIX` without sharding. A failed job removes the temporary directory (and
//! any output directory it created), so it leaves no output at all. Shards of an earlier
//! run with the same prefix, whatever their count, are replaced at commit, so the output
//! never mixes two runs.
//!
//! # What holds across a crash
//!
//! Temporary files are synced to disk when their writer closes. A commit first writes
//! a journal of the renames it will make (synced), moves the earlier run's shards aside
//! into the temporary directory, renames the new shards into place and syncs the output
//! directory; the job then finalises by deleting the journal and the temporary
//! directory. The temporary directory holds a lock file that its job keeps locked while
//! it runs, so a later job can tell a dead job's leftovers from a running job's. When a
//! job at the same prefix starts, it recovers what a dead job left:
//!
//! | the process died | it left | the next run at this prefix |
//! |---|---|---|
//! | before the commit | the earlier output, untouched; a temporary directory | removes the temporary directory |
//! | during the commit | a journal, some earlier shards moved aside, some new shards in place | undoes the renames by the journal — the earlier output is back — and removes the temporary directory |
//! | after the commit, before finalising | the new output in place; the journal | undoes the commit (the job never reported success) |
//! | while finalising | the new output | removes what is left of the temporary directory |
//!
//! Across several sinks of one job the commit is two-phase (every sink commits, then
//! every sink finalises): a failure before all have committed undoes them all. A crash
//! while the sinks finalise — a window of a few file deletions — can leave the sinks
//! that finalised with the new output and the others, once recovered, with the earlier.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::error::FileError;
use sluice_core::receiver::AnyReceiver;
use sluice_core::unit::{
    JobInfo, SinkBuffer, SinkBytes, SinkFactory, SinkJob, SinkWriter, UnitContext,
};
use sluice_core::{BoxError, ExecError, Receiver, UnitResult, WindowedValue};

use crate::error::IoError;
use crate::storage::{Store, StoreOptions};
use crate::text::source::Compression;

mod object;

/// The name of a job's temporary directory begins with this, then the file prefix.
const TEMP_MARK: &str = ".temp-sluice-";
/// The lock file in a temporary directory: locked by its job while it runs.
const LOCK_FILE: &str = "lock";
/// The journal of a commit's renames, present from before the first rename until the
/// job is final.
const JOURNAL: &str = "commit-journal";
/// Where a commit moves the earlier run's shards until the job is final.
const REPLACED: &str = "replaced";

/// How a text sink names and counts its files.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ShardOptions {
    /// Appended to every file name (e.g. `.txt`).
    pub suffix: String,
    /// Exactly this many shards; `None` (or 0): one per worker that wrote anything.
    pub num_shards: Option<usize>,
    /// One file named exactly `PREFIX` + suffix (Beam's `withoutSharding`).
    pub unsharded: bool,
    /// A line written first in every shard (a CSV header row), without its newline.
    pub header: Option<String>,
    /// How shards are compressed; `None`: by the suffix's extension (`.gz`, `.zst`,
    /// `.bz2`), else uncompressed.
    pub compression: Option<Compression>,
}

/// What a sharded sink writes other than lines of text (Parquet, say): how elements
/// become bundle bytes, how a worker's temporary file is written, and how the workers'
/// files are redivided into a fixed number of shards at commit. Naming, the temporary
/// directory, the journalled commit and crash recovery are the sink's.
pub trait ShardFormat: Send + Sync + std::fmt::Debug {
    /// The unit that turns elements into bundle bytes.
    fn unit(&self, ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>>;
    /// A writer of one worker's temporary file, which `file` is (created, empty).
    fn writer(&self, path: &Path, file: File) -> std::io::Result<Box<dyn ShardWriter>>;
    /// Writes the records of `files` into `count` new files `shard-SSSSS` under `dir`, of
    /// about equal size; returns their paths. (The sink removes `files`.)
    fn redivide(
        &self,
        files: &[PathBuf],
        count: usize,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, FileError>;
}

/// One temporary shard file being written.
pub trait ShardWriter: Send {
    /// Writes one committed bundle's bytes.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Ends the file; returns it, to be synced.
    fn finish(self: Box<Self>) -> std::io::Result<File>;
}

impl ShardWriter for Encoder {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }
    fn finish(self: Box<Self>) -> std::io::Result<File> {
        Encoder::finish(*self)
    }
}

/// A file being written, compressed as its sink says.
enum Encoder {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Bzip2(bzip2::write::BzEncoder<BufWriter<File>>),
}

impl Encoder {
    fn new(file: File, compression: Compression) -> std::io::Result<Encoder> {
        let out = BufWriter::with_capacity(1 << 20, file);
        Ok(match compression {
            Compression::Uncompressed => Encoder::Plain(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::default(),
            )),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(out) => out.write_all(bytes),
            Encoder::Gzip(out) => out.write_all(bytes),
            Encoder::Zstd(out) => out.write_all(bytes),
            Encoder::Bzip2(out) => out.write_all(bytes),
        }
    }

    /// Ends the stream and flushes it; the file, to be synced.
    fn finish(self) -> std::io::Result<File> {
        let out = match self {
            Encoder::Plain(out) => out,
            Encoder::Gzip(out) => out.finish()?,
            Encoder::Zstd(out) => out.finish()?,
            Encoder::Bzip2(out) => out.finish()?,
        };
        out.into_inner().map_err(|e| e.into_error())
    }
}

/// Writes each `String` element as one line — or, with a [`ShardFormat`], elements as
/// that format says.
#[derive(Clone, Debug)]
pub struct TextSink {
    transform: String,
    dir: PathBuf,
    file_prefix: String,
    options: ShardOptions,
    format: Option<Arc<dyn ShardFormat>>,
    /// Where the output goes: local files, or objects of a bucket.
    store: Store,
}

impl TextSink {
    /// Checks now that files named `prefix-SSSSS-of-NNNNN` can be created: the directory
    /// must exist and be writable, or be creatable under a writable ancestor. Nothing is
    /// created until the job runs.
    pub fn new(transform: &str, prefix: &str) -> Result<TextSink, IoError> {
        TextSink::with_options(transform, prefix, ShardOptions::default())
    }

    /// As [`TextSink::new`], naming and counting files as `options` say.
    pub fn with_options(
        transform: &str,
        prefix: &str,
        options: ShardOptions,
    ) -> Result<TextSink, IoError> {
        TextSink::in_store(transform, prefix, options, &StoreOptions::default())
    }

    /// As [`TextSink::with_options`], for a prefix that may be an object-store URL
    /// (`s3://bucket/out/part`), reached as `store` says. On an object store, listing
    /// the output's "directory" checks now that the bucket exists and can be read;
    /// that it can be written is checked when the job starts, before any data moves.
    pub fn in_store(
        transform: &str,
        prefix: &str,
        options: ShardOptions,
        store: &StoreOptions,
    ) -> Result<TextSink, IoError> {
        let unwritable = |reason: String| IoError::Unwritable {
            transform: transform.into(),
            prefix: PathBuf::from(prefix),
            reason,
        };
        let (store, prefix) = crate::storage::resolve(prefix, store).map_err(&unwritable)?;
        let prefix = prefix.as_str();
        if prefix.is_empty() || prefix.ends_with('/') {
            return Err(unwritable(
                "an output prefix names files, not a directory; add a file name, e.g. 'out/part'"
                    .into(),
            ));
        }
        let path = Path::new(prefix);
        let file_prefix = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| unwritable("the prefix has no file name".into()))?
            .to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut ancestor = dir.as_path();
        if let Store::Object(bucket) = &store {
            if prefix.len() <= bucket.root().len() + 1 {
                return Err(unwritable(
                    "the URL names a bucket, not files in it; add a name, e.g. 's3://bucket/out/part'"
                        .into(),
                ));
            }
            bucket.entries(&dir).map_err(|e| {
                unwritable(format!(
                    "cannot list {}: {e}; check that the bucket exists and the credentials (and --s3_endpoint for an S3-compatible server)",
                    dir.display()
                ))
            })?;
        }
        if matches!(store, Store::Local) {
            loop {
                if ancestor.exists() {
                    if !ancestor.is_dir() {
                        return Err(unwritable(format!(
                            "{} is a file, not a directory; choose another output location",
                            ancestor.display()
                        )));
                    }
                    if rustix::fs::access(
                        ancestor,
                        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                    )
                    .is_err()
                    {
                        return Err(unwritable(format!(
                            "the directory {} is not writable; choose another output location or fix its permissions",
                            ancestor.display()
                        )));
                    }
                    break;
                }
                match ancestor.parent() {
                    Some(p) if !p.as_os_str().is_empty() => ancestor = p,
                    _ => break,
                }
            }
        }
        let mut options = options;
        if options.num_shards == Some(0) {
            options.num_shards = None;
        }
        // Compressed shards are named so: the extension is added (as Beam does).
        if let Some(compression) = options.compression
            && !options.suffix.ends_with(compression.extension())
        {
            options.suffix.push_str(compression.extension());
        }

        if options.unsharded {
            options.num_shards = Some(1);
            let target = dir.join(format!("{file_prefix}{}", options.suffix));
            if matches!(store, Store::Local) && target.is_dir() {
                return Err(unwritable(format!(
                    "{} is a directory; an unsharded output is one file — choose a file name",
                    target.display()
                )));
            }
        }
        Ok(TextSink {
            transform: transform.into(),
            dir,
            file_prefix,
            options,
            format: None,
            store,
        })
    }

    /// Writes elements as `format` says instead of as lines (header and compression
    /// options do not apply).
    pub fn with_format(mut self, format: Arc<dyn ShardFormat>) -> TextSink {
        self.format = Some(format);
        self
    }

    /// Appends `suffix` (e.g. `.txt`) to every shard's name.
    pub fn with_suffix(mut self, suffix: &str) -> TextSink {
        self.options.suffix = suffix.into();
        self
    }

    /// How shards are compressed: as the options say, else by the suffix.
    fn compression(&self) -> Compression {
        self.options.compression.unwrap_or_else(|| {
            Compression::from_path(Path::new(&format!("shard{}", self.options.suffix)))
        })
    }

    /// The final name of shard `index` of `count`.
    pub fn shard_path(&self, index: usize, count: usize) -> PathBuf {
        let suffix = &self.options.suffix;
        if self.options.unsharded {
            return self.dir.join(format!("{}{suffix}", self.file_prefix));
        }
        self.dir.join(format!(
            "{}-{index:05}-of-{count:05}{suffix}",
            self.file_prefix
        ))
    }

    /// How the committed files are described: `PREFIX-*-of-00004` or the single file.
    fn pattern(&self, count: usize) -> PathBuf {
        if self.options.unsharded {
            return self.shard_path(0, 1);
        }
        self.dir.join(format!(
            "{}-*-of-{count:05}{}",
            self.file_prefix, self.options.suffix
        ))
    }

    /// Writes the records of the workers' `files` into `wanted` new files
    /// `shard-SSSSS` under `dir`, of about equal size; returns their paths. (The caller
    /// removes `files`.)
    fn redivide(
        &self,
        files: &[PathBuf],
        wanted: usize,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, FileError> {
        if let Some(format) = &self.format {
            return format.redivide(files, wanted, dir);
        }
        let compression = self.compression();
        let open = |path: &PathBuf| -> Result<BufReader<Box<dyn Read + Send>>, FileError> {
            let f = File::open(path).map_err(|e| FileError::new("open", path, e))?;
            let decoded = compression
                .decoder(f)
                .map_err(|e| FileError::new("read", path, e))?;
            Ok(BufReader::with_capacity(1 << 20, decoded))
        };
        // Bytes of lines to divide: the files' sizes, or their decompressed sizes.
        let mut total = 0u64;
        for f in files {
            total += if compression == Compression::Uncompressed {
                std::fs::metadata(f)
                    .map_err(|e| FileError::new("read the size of", f, e))?
                    .len()
            } else {
                std::io::copy(&mut open(f)?, &mut std::io::sink())
                    .map_err(|e| FileError::new("read", f, e))?
            };
        }
        let mut inputs = files.iter();
        let mut current: Option<(BufReader<Box<dyn Read + Send>>, &PathBuf)> = None;
        let mut written = 0u64;
        let mut shards = Vec::with_capacity(wanted);
        for shard in 0..wanted {
            let path = dir.join(format!("shard-{shard:05}"));
            let file = File::create(&path).map_err(|e| FileError::new("create", &path, e))?;
            let mut out =
                Encoder::new(file, compression).map_err(|e| FileError::new("write", &path, e))?;
            if let Some(header) = &self.options.header {
                out.write_all(header.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| FileError::new("write", &path, e))?;
            }
            // Shard i ends at the first line end at or after i+1 n-ths of the bytes.
            let target = total * (shard as u64 + 1) / wanted as u64;
            let mut line = Vec::new();
            while written < target {
                if current.is_none() {
                    let Some(next) = inputs.next() else { break };
                    let mut reader = open(next)?;
                    if self.options.header.is_some() {
                        // Each worker's file starts with the header; each shard has its own.
                        line.clear();
                        written += reader
                            .read_until(b'\n', &mut line)
                            .map_err(|e| FileError::new("read", next, e))?
                            as u64;
                    }
                    current = Some((reader, next));
                }
                let Some((reader, from)) = current.as_mut() else {
                    break;
                };
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| FileError::new("read", from.as_path(), e))?;
                if n == 0 {
                    current = None;
                    continue;
                }
                out.write_all(&line)
                    .map_err(|e| FileError::new("write", &path, e))?;
                written += n as u64;
            }
            let file = out
                .finish()
                .map_err(|e| FileError::new("write", &path, e))?;
            file.sync_all()
                .map_err(|e| FileError::new("sync", &path, e))?;
            shards.push(path);
        }
        // Anything after the last target (nothing, unless a file grew) goes on the last.
        if let Some((mut reader, from)) = current.take() {
            let mut rest = Vec::new();
            reader
                .read_to_end(&mut rest)
                .map_err(|e| FileError::new("read", from.as_path(), e))?;
            if !rest.is_empty()
                && let Some(last) = shards.last()
            {
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(last)
                    .map_err(|e| FileError::new("open", last, e))?;
                // A compressed shard gets another stream, which readers take in turn.
                let mut out =
                    Encoder::new(f, compression).map_err(|e| FileError::new("write", last, e))?;
                out.write_all(&rest)
                    .and_then(|()| out.finish())
                    .and_then(|f| f.sync_all())
                    .map_err(|e| FileError::new("write", last, e))?;
            }
        }
        Ok(shards)
    }

    /// A writer of one worker's file at `path` (created now), as the format says, with
    /// the header first.
    fn shard_writer(&self, path: &Path) -> Result<Box<dyn ShardWriter>, FileError> {
        let file = File::create(path).map_err(|e| FileError::new("create", path, e))?;
        Ok(match &self.format {
            Some(format) => format
                .writer(path, file)
                .map_err(|e| FileError::new("write", path, e))?,
            None => {
                let mut out = Encoder::new(file, self.compression())
                    .map_err(|e| FileError::new("write", path, e))?;
                if let Some(header) = &self.options.header {
                    out.write_all(header.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(|e| FileError::new("write", path, e))?;
                }
                Box::new(out)
            }
        })
    }

    /// What a commit of `count` shards wrote, for the job's summary.
    fn committed(&self, count: usize) -> String {
        format!(
            "{}: {} shard{} at {}",
            self.transform,
            count,
            if count == 1 { "" } else { "s" },
            self.pattern(count).display()
        )
    }

    /// Whether `name` is a file of this sink's output (of any run, any shard count).
    fn is_output(&self, name: &str) -> bool {
        let suffix = self.options.suffix.as_str();
        if self.options.unsharded {
            return name.strip_suffix(suffix) == Some(self.file_prefix.as_str());
        }
        let Some(rest) = name
            .strip_prefix(self.file_prefix.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(suffix))
        else {
            return false;
        };
        rest.len() == 14
            && rest.as_bytes()[5..9] == *b"-of-"
            && rest[..5].bytes().all(|b| b.is_ascii_digit())
            && rest[9..].bytes().all(|b| b.is_ascii_digit())
    }
}

struct LineUnit {
    buffer: SinkBuffer,
}

impl Receiver<String> for LineUnit {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    #[inline]
    fn receive(&mut self, element: WindowedValue<String>) -> UnitResult {
        self.buffer.append::<ExecError>(|out| {
            out.extend_from_slice(element.value.as_bytes());
            out.push(b'\n');
            Ok(())
        })?;
        Ok(())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

/// Syncs a directory, so that the renames and creations in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("sync the directory", dir, e))
}

fn rename(from: &Path, to: &Path) -> Result<(), FileError> {
    std::fs::rename(from, to)
        .map_err(|e| FileError::new(format!("rename {} to", from.display()), to.to_path_buf(), e))
}

/// A member's closed shards as handoff bytes: a `worker\tpath` line each, sorted.
pub(crate) fn encode_handoff(mut closed: Vec<(usize, PathBuf)>) -> Result<Vec<u8>, BoxError> {
    closed.sort();
    let mut out = String::new();
    for (worker, path) in closed {
        let path = path.to_str().ok_or_else(|| {
            FileError::new(
                "hand over",
                &path,
                std::io::Error::other("the path is not valid UTF-8"),
            )
        })?;
        out.push_str(&format!("{worker}\t{path}\n"));
    }
    Ok(out.into_bytes())
}

/// The shards of a member's handoff, each checked to lie directly in `dir` (the job's
/// `place`: its temporary directory or prefix).
pub(crate) fn decode_handoff(
    handoff: &[u8],
    dir: &Path,
    place: &str,
) -> Result<Vec<(usize, PathBuf)>, BoxError> {
    let text = std::str::from_utf8(handoff)
        .map_err(|_| "internal error: a member's handoff is not text")?;
    let mut closed = Vec::new();
    for line in text.lines() {
        let (worker, path) = line
            .split_once('\t')
            .ok_or("internal error: a malformed handoff line")?;
        let worker: usize = worker
            .parse()
            .map_err(|_| "internal error: a malformed handoff worker")?;
        let path = PathBuf::from(path);
        if path.parent() != Some(dir) {
            return Err(format!(
                "a member handed over {}, which is not in the job's {place} {}",
                path.display(),
                dir.display()
            )
            .into());
        }
        closed.push((worker, path));
    }
    Ok(closed)
}

impl SinkFactory for TextSink {
    fn unit(&self, ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        if let Some(format) = &self.format {
            return format.unit(ctx, buffer);
        }
        Ok(AnyReceiver::new::<String>(Box::new(LineUnit { buffer })))
    }

    fn begin(&self, job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError> {
        if let Store::Object(bucket) = &self.store {
            return Ok(Arc::new(object::ObjectSinkJob::begin(self, bucket, job)?));
        }
        let temp_dir = self
            .dir
            .join(format!("{TEMP_MARK}{}-{}", self.file_prefix, job.job_id));
        if job.member {
            // The process that commits makes (and locks) the temporary directory; this
            // one only writes its files there and hands them over. (It may get there
            // first: a directory without a lock file is left alone by clean-ups for a
            // minute.)
            std::fs::create_dir_all(&temp_dir)
                .map_err(|e| FileError::new("create the temporary directory", &temp_dir, e))?;
            return Ok(Arc::new(TextSinkJob {
                sink: self.clone(),
                temp_dir,
                created: Vec::new(),
                lock: Mutex::new(None),
                next_file: AtomicUsize::new(0),
                closed: Arc::default(),
                renamed: Mutex::default(),
                undo_failed: AtomicBool::new(false),
                member: true,
            }));
        }
        // The directories this job creates, outermost first: a failed job removes them
        // again if they are empty, so it leaves no trace.
        let mut created = Vec::new();
        let mut missing = self.dir.as_path();
        while !missing.exists() {
            created.push(missing.to_path_buf());
            match missing.parent() {
                Some(p) if !p.as_os_str().is_empty() => missing = p,
                _ => break,
            }
        }
        created.reverse();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| FileError::new("create the output directory", &self.dir, e))?;
        clean_stale(&self.dir, &self.file_prefix);
        std::fs::create_dir_all(&temp_dir)
            .map_err(|e| FileError::new("create the temporary directory", &temp_dir, e))?;
        let lock = lock_temp_dir(&temp_dir, &self.file_prefix, &job.job_id)?;
        Ok(Arc::new(TextSinkJob {
            sink: self.clone(),
            temp_dir,
            created,
            lock: Mutex::new(Some(lock)),
            next_file: AtomicUsize::new(0),
            closed: Arc::default(),
            renamed: Mutex::default(),
            undo_failed: AtomicBool::new(false),
            member: false,
        }))
    }
}

/// Creates and locks the lock file of a job's temporary directory. The lock lasts as long
/// as the returned file is open — until the job ends or its process dies, however.
fn lock_temp_dir(temp_dir: &Path, file_prefix: &str, job_id: &str) -> Result<File, FileError> {
    let path = temp_dir.join(LOCK_FILE);
    let mut file = File::create(&path).map_err(|e| FileError::new("create", &path, e))?;
    file.try_lock()
        .map_err(|e| FileError::new("lock", &path, std::io::Error::other(e.to_string())))?;
    writeln!(
        file,
        "sluice temporary output\nprefix={file_prefix}\njob={job_id}\npid={}",
        std::process::id()
    )
    .map_err(|e| FileError::new("write", &path, e))?;
    Ok(file)
}

/// Removes what jobs that are no longer running left under this prefix in `dir`:
/// their temporary directories, after undoing any commit they had begun.
fn clean_stale(dir: &Path, file_prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mark = format!("{TEMP_MARK}{file_prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&mark) || !entry.path().is_dir() {
            continue;
        }
        let temp_dir = entry.path();
        let lock_path = temp_dir.join(LOCK_FILE);
        let Ok(text) = std::fs::read_to_string(&lock_path) else {
            // No lock file yet: a job may be creating it this moment. A directory left
            // without one for a minute is a job that died starting.
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < 60);
            if young {
                continue;
            }
            remove_stale(&temp_dir, "a job that died starting");
            continue;
        };
        // `.temp-sluice-out-...` also begins `.temp-sluice-out-2-...`'s name: only this
        // prefix's own directories are touched.
        if !text.lines().any(|l| l == format!("prefix={file_prefix}")) {
            continue;
        }
        let Ok(lock) = File::open(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // its job is running
        }
        let job = text
            .lines()
            .find_map(|l| l.strip_prefix("job="))
            .unwrap_or("unknown")
            .to_string();
        let journal = temp_dir.join(JOURNAL);
        if journal.exists() {
            match roll_back(&temp_dir) {
                Ok(0) => {}
                Ok(n) => log::warn!(
                    "job {job} died while committing its output under {}: undid its {n} rename(s), so the earlier output is back",
                    dir.join(file_prefix).display()
                ),
                Err(e) => {
                    log::error!(
                        "job {job} died while committing its output under {}, and undoing its commit failed: {e}; its temporary directory {} is kept",
                        dir.join(file_prefix).display(),
                        temp_dir.display()
                    );
                    continue;
                }
            }
        }
        drop(lock);
        remove_stale(&temp_dir, &format!("job {job}, which is no longer running"));
    }
}

fn remove_stale(temp_dir: &Path, whose: &str) {
    match std::fs::remove_dir_all(temp_dir) {
        Ok(()) => log::info!(
            "removed the temporary output {} of {whose}",
            temp_dir.display()
        ),
        Err(e) => log::warn!(
            "could not remove the temporary output {} of {whose}: {e}",
            temp_dir.display()
        ),
    }
}

/// One line of a commit journal: a rename to make, `from` and `to` as file names in the
/// directories the journal's header names.
fn journal_line(from: &Path, to: &Path) -> Result<String, FileError> {
    let text = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| {
            FileError::new(
                "journal a rename of",
                p,
                std::io::Error::other("the path is not valid UTF-8"),
            )
        })
    };
    let (from, to) = (text(from)?, text(to)?);
    if from.contains(['\t', '\n']) || to.contains(['\t', '\n']) {
        return Err(FileError::new(
            "journal a rename of",
            from,
            std::io::Error::other("the path contains a tab or a newline"),
        ));
    }
    Ok(format!("{from}\t{to}\n"))
}

/// Undoes the renames a commit journal in `temp_dir` lists, last first: each one that
/// happened (its target exists, its source does not) is reversed. Returns how many were.
fn roll_back(temp_dir: &Path) -> Result<usize, FileError> {
    let journal = temp_dir.join(JOURNAL);
    let text =
        std::fs::read_to_string(&journal).map_err(|e| FileError::new("read", &journal, e))?;
    let mut undone = 0;
    let mut dirs = Vec::new();
    for line in text.lines().rev() {
        let Some((from, to)) = line.split_once('\t') else {
            continue;
        };
        let (from, to) = (Path::new(from), Path::new(to));
        if to.exists() && !from.exists() {
            rename(to, from)?;
            undone += 1;
            for d in [from.parent(), to.parent()].into_iter().flatten() {
                if !dirs.contains(&d.to_path_buf()) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    std::fs::remove_file(&journal).map_err(|e| FileError::new("remove", &journal, e))?;
    Ok(undone)
}

struct TextSinkJob {
    sink: TextSink,
    temp_dir: PathBuf,
    /// Output directories this job created, outermost first.
    created: Vec<PathBuf>,
    /// The temporary directory's lock, held until the job is final.
    lock: Mutex<Option<File>>,
    next_file: AtomicUsize,
    /// Temporary files of closed writers, with their worker.
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    /// The renames a commit made, in order, so that it can be undone until finalised.
    renamed: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// An undo could not restore everything: what it could not is kept.
    undo_failed: AtomicBool,
    /// A member of a cluster job: it writes and hands over; the launcher commits or
    /// aborts.
    member: bool,
}

impl TextSinkJob {
    fn closed(&self) -> Vec<(usize, PathBuf)> {
        let mut files = self
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        files.sort();
        files
    }

    /// Files of earlier runs under this prefix (any shard count).
    fn existing_outputs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.sink.dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| self.sink.is_output(n))
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    /// The files the commit will rename into place, one per shard: the workers' files,
    /// or — when the shard count is fixed and differs — those files' lines redivided
    /// into that many files of about equal size.
    fn shard_files(&self) -> Result<Vec<PathBuf>, FileError> {
        let files: Vec<PathBuf> = self.closed().into_iter().map(|(_, p)| p).collect();
        let wanted = match self.sink.options.num_shards {
            Some(n) => n,
            None => files.len().max(1),
        };
        if files.len() == wanted {
            return Ok(files);
        }
        let shards = self.sink.redivide(&files, wanted, &self.temp_dir)?;
        for f in &files {
            std::fs::remove_file(f).map_err(|e| FileError::new("remove", f, e))?;
        }
        sync_dir(&self.temp_dir)?;
        Ok(shards)
    }

    /// Renames `from` to `to`, noting it for [`SinkJob::undo`].
    fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        rename(from, to)?;
        self.renamed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    /// Journals, then makes, the renames of the commit: the earlier output aside, the
    /// new shards into place.
    fn publish(&self, shards: &[PathBuf]) -> Result<(), FileError> {
        let count = shards.len();
        let aside = self.temp_dir.join(REPLACED);
        let mut plan = Vec::new();
        for old in self.existing_outputs() {
            if let Some(name) = old.file_name() {
                plan.push((old.clone(), aside.join(name)));
            }
        }
        let replacing = !plan.is_empty();
        for (i, temp) in shards.iter().enumerate() {
            plan.push((temp.clone(), self.sink.shard_path(i, count)));
        }
        let mut journal = String::new();
        for (from, to) in &plan {
            journal.push_str(&journal_line(from, to)?);
        }
        let journal_path = self.temp_dir.join(JOURNAL);
        let mut file =
            File::create(&journal_path).map_err(|e| FileError::new("create", &journal_path, e))?;
        file.write_all(journal.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| FileError::new("write", &journal_path, e))?;
        if replacing {
            std::fs::create_dir_all(&aside).map_err(|e| FileError::new("create", &aside, e))?;
        }
        sync_dir(&self.temp_dir)?;
        for (from, to) in &plan {
            if to.starts_with(&aside) {
                log::info!("replacing {} from an earlier run", from.display());
            }
            self.rename(from, to)?;
        }
        sync_dir(&self.sink.dir)?;
        if replacing {
            sync_dir(&aside)?;
        }
        sync_dir(&self.temp_dir)
    }

    fn release_lock(&self) {
        self.lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl SinkJob for TextSinkJob {
    fn open(&self, worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.temp_dir.join(format!("worker-{worker:05}-{n:05}"));
        let out = self.sink.shard_writer(&path)?;
        Ok(Box::new(TextWriter {
            closed: Arc::clone(&self.closed),
            worker,
            path,
            out,
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let shards = self.shard_files()?;
        let count = shards.len();
        if let Err(e) = self.publish(&shards) {
            // Nothing half done: the renames made so far are reversed.
            if let Err(undo) = self.undo() {
                return Err(
                    format!("{e}; undoing the renames made so far failed too: {undo}").into(),
                );
            }
            return Err(e.into());
        }
        Ok(self.sink.committed(count))
    }

    fn undo(&self) -> Result<(), BoxError> {
        let renamed =
            std::mem::take(&mut *self.renamed.lock().unwrap_or_else(PoisonError::into_inner));
        let mut failures = Vec::new();
        for (from, to) in renamed.into_iter().rev() {
            if let Err(e) = rename(&to, &from) {
                failures.push(e.to_string());
            }
        }
        let synced = sync_dir(&self.sink.dir);
        if failures.is_empty() {
            // Undone: the journal no longer describes anything to recover.
            let journal = self.temp_dir.join(JOURNAL);
            if journal.exists() {
                std::fs::remove_file(&journal)
                    .map_err(|e| FileError::new("remove", &journal, e))?;
            }
            synced?;
            return Ok(());
        }
        self.undo_failed.store(true, Ordering::Release);
        Err(format!(
            "could not undo the commit of '{}': {}; the earlier output that could not be put back is kept in {}",
            self.sink.transform,
            failures.join("; "),
            self.temp_dir.join(REPLACED).display()
        )
        .into())
    }

    fn finalize(&self) {
        self.renamed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Deleting the journal makes the commit final; the rest is cleaning up.
        let journal = self.temp_dir.join(JOURNAL);
        if let Err(e) = std::fs::remove_file(&journal)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("could not remove {}: {e}", journal.display());
        }
        let _ = sync_dir(&self.temp_dir);
        self.release_lock();
        if let Err(e) = std::fs::remove_dir_all(&self.temp_dir) {
            log::warn!(
                "could not remove the temporary directory {}: {e}",
                self.temp_dir.display()
            );
        }
    }

    fn handoff(&self) -> Result<Vec<u8>, BoxError> {
        // Taken, not copied: handed over (and adopted back, when the committing process
        // is a member too) exactly once.
        let closed =
            std::mem::take(&mut *self.closed.lock().unwrap_or_else(PoisonError::into_inner));
        encode_handoff(closed)
    }

    fn adopt(&self, handoff: &[u8]) -> Result<(), BoxError> {
        let adopted = decode_handoff(handoff, &self.temp_dir, "temporary directory")?;
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(adopted);
        Ok(())
    }

    fn abort(&self) {
        if self.member {
            // The launcher removes the job's temporary output.
            return;
        }
        if self.undo_failed.load(Ordering::Acquire) {
            // Keep the earlier output that could not be restored, and the journal, so
            // that the next run at this prefix can try again; drop only the new files.
            if let Ok(entries) = std::fs::read_dir(&self.temp_dir) {
                for e in entries.flatten() {
                    let name = e.file_name();
                    if name != REPLACED && name != JOURNAL && name != LOCK_FILE {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            log::error!(
                "the earlier output of '{}' that could not be put back is in {}",
                self.sink.transform,
                self.temp_dir.join(REPLACED).display()
            );
            self.release_lock();
            return;
        }
        self.release_lock();
        if let Err(e) = std::fs::remove_dir_all(&self.temp_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!(
                "could not remove temporary output {}: {e}",
                self.temp_dir.display()
            );
        }
        // Output directories this job created go too, if nothing else is in them.
        for dir in self.created.iter().rev() {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

struct TextWriter {
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    worker: usize,
    path: PathBuf,
    out: Box<dyn ShardWriter>,
}

impl SinkWriter for TextWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        self.out
            .write(&bundle.bytes)
            .map_err(|e| FileError::new("write", &self.path, e).into())
    }

    fn close(self: Box<Self>) -> Result<(), BoxError> {
        let TextWriter {
            closed,
            worker,
            path,
            out,
        } = *self;
        let file = out
            .finish()
            .map_err(|e| FileError::new("write", &path, e))?;
        // On disk before the job may commit it.
        file.sync_all()
            .map_err(|e| FileError::new("sync", &path, e))?;
        closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((worker, path));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sink: &TextSink, id: &str) -> Arc<dyn SinkJob> {
        sink.begin(&JobInfo {
            job_id: id.into(),
            member: false,
            unbounded: false,
        })
        .unwrap()
    }

    fn write(job: &Arc<dyn SinkJob>, worker: usize, text: &str) {
        let mut w = job.open(worker).unwrap();
        w.write_bundle(SinkBytes {
            bytes: text.as_bytes().to_vec(),
            records: 1,
        })
        .unwrap();
        w.close().unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn shards_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/counts");
        let sink = TextSink::new("Write", prefix.to_str().unwrap()).unwrap();
        assert!(
            !dir.path().join("out").exists(),
            "validation must not create anything"
        );
        let job = job(&sink, "j1");
        write(&job, 1, "b\n");
        write(&job, 0, "a\n");
        assert!(
            listing(&dir.path().join("out"))
                .iter()
                .all(|n| n.starts_with(".temp-sluice"))
        );
        job.commit().unwrap();
        job.finalize();
        assert_eq!(
            listing(&dir.path().join("out")),
            ["counts-00000-of-00002", "counts-00001-of-00002"]
        );
        assert_eq!(
            std::fs::read_to_string(sink.shard_path(0, 2)).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn abort_leaves_nothing_not_even_the_directories_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        let job1 = job(&sink, "j2");
        write(&job1, 0, "a\n");
        job1.abort();
        assert!(listing(dir.path()).is_empty());
        let nested = TextSink::new("Write", dir.path().join("a/b/x").to_str().unwrap()).unwrap();
        let job2 = job(&nested, "j3");
        write(&job2, 0, "a\n");
        job2.abort();
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }

    #[test]
    fn an_empty_job_writes_one_empty_shard_and_replaces_older_shards() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        let first = job(&sink, "j3");
        write(&first, 0, "a\n");
        write(&first, 1, "b\n");
        first.commit().unwrap();
        first.finalize();
        let second = job(&sink, "j4");
        second.commit().unwrap();
        second.finalize();
        assert_eq!(listing(dir.path()), ["x-00000-of-00001"]);
        assert_eq!(std::fs::read_to_string(sink.shard_path(0, 1)).unwrap(), "");
    }

    #[test]
    fn a_header_starts_every_shard_once_whatever_the_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        for n in [None, Some(1), Some(2), Some(5)] {
            let name = format!("h{n:?}");
            let sink = sink_with(
                dir.path(),
                &name,
                ShardOptions {
                    num_shards: n,
                    header: Some("region,amount".into()),
                    ..ShardOptions::default()
                },
            );
            let run = job(&sink, &name);
            let lines: Vec<String> = (0..40).map(|i| format!("r{i},{i}\n")).collect();
            write(&run, 0, &lines[..25].concat());
            write(&run, 1, &lines[25..].concat());
            run.commit().unwrap();
            run.finalize();
            let count = n.unwrap_or(2);
            let mut rows = Vec::new();
            for i in 0..count {
                let text = std::fs::read_to_string(sink.shard_path(i, count)).unwrap();
                let mut shard = text.lines();
                assert_eq!(shard.next(), Some("region,amount"), "{n:?} shard {i}");
                rows.extend(shard.map(str::to_string));
            }
            rows.sort();
            let mut expected: Vec<String> =
                lines.iter().map(|l| l.trim_end().to_string()).collect();
            expected.sort();
            assert_eq!(rows, expected, "{n:?}");
        }
        // An empty job's one shard holds just the header.
        let sink = sink_with(
            dir.path(),
            "empty",
            ShardOptions {
                header: Some("a,b".into()),
                ..ShardOptions::default()
            },
        );
        let run = job(&sink, "empty");
        run.commit().unwrap();
        run.finalize();
        assert_eq!(
            std::fs::read_to_string(sink.shard_path(0, 1)).unwrap(),
            "a,b\n"
        );
    }

    #[test]
    fn compressed_shards_hold_every_line_whatever_the_shard_count() {
        let dir = tempfile::tempdir().unwrap();
        for (suffix, compression) in [
            (".csv.gz", Compression::Gzip),
            (".csv.zst", Compression::Zstd),
            (".csv.bz2", Compression::Bzip2),
        ] {
            for n in [None, Some(1), Some(3)] {
                let name = format!("c{n:?}{suffix}");
                let sink = sink_with(
                    dir.path(),
                    &name,
                    ShardOptions {
                        num_shards: n,
                        suffix: suffix.into(),
                        header: Some("h".into()),
                        ..ShardOptions::default()
                    },
                );
                let run = job(&sink, &name);
                let lines: Vec<String> = (0..300).map(|i| format!("line {i}\n")).collect();
                write(&run, 0, &lines[..100].concat());
                write(&run, 1, &lines[100..].concat());
                run.commit().unwrap();
                run.finalize();
                let count = n.unwrap_or(2);
                let mut all = Vec::new();
                for i in 0..count {
                    let path = sink.shard_path(i, count);
                    assert!(path.to_str().unwrap().ends_with(suffix));
                    let mut text = String::new();
                    compression
                        .decoder(File::open(&path).unwrap())
                        .unwrap()
                        .read_to_string(&mut text)
                        .unwrap();
                    let mut shard = text.lines();
                    assert_eq!(shard.next(), Some("h"), "{name} shard {i}");
                    all.extend(shard.map(str::to_string));
                }
                all.sort();
                let mut expected: Vec<String> =
                    lines.iter().map(|l| l.trim_end().to_string()).collect();
                expected.sort();
                assert_eq!(all, expected, "{name}");
            }
        }
    }

    fn sink_with(dir: &Path, name: &str, options: ShardOptions) -> TextSink {
        TextSink::with_options("Write", dir.join(name).to_str().unwrap(), options).unwrap()
    }

    #[test]
    fn a_fixed_shard_count_redivides_the_lines_evenly() {
        let dir = tempfile::tempdir().unwrap();
        for n in [1, 2, 3, 7] {
            let sink = sink_with(
                dir.path(),
                &format!("n{n}"),
                ShardOptions {
                    num_shards: Some(n),
                    ..ShardOptions::default()
                },
            );
            let run = job(&sink, &format!("j{n}"));
            let lines: Vec<String> = (0..100).map(|i| format!("line {i}\n")).collect();
            write(&run, 0, &lines[..30].concat());
            write(&run, 1, &lines[30..95].concat());
            write(&run, 2, &lines[95..].concat());
            run.commit().unwrap();
            run.finalize();
            let mut all = String::new();
            for i in 0..n {
                let text = std::fs::read_to_string(sink.shard_path(i, n)).unwrap();
                assert!(text.is_empty() || text.ends_with('\n'));
                let count = text.lines().count();
                if n != 3 {
                    assert!(count >= 100 / n - 2 && count <= 100 / n + 2, "{n}: {count}");
                }
                all.push_str(&text);
            }
            if n != 3 {
                assert_eq!(all, lines.concat(), "{n} shards");
            } else {
                // Three workers' files, three shards: each file is a shard as it is.
                assert_eq!(all.lines().count(), 100);
            }
        }
    }

    #[test]
    fn without_sharding_the_output_is_exactly_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let options = ShardOptions {
            unsharded: true,
            suffix: ".json".into(),
            ..ShardOptions::default()
        };
        let sink = sink_with(dir.path(), "results", options.clone());
        let run = job(&sink, "j1");
        write(&run, 0, "a\n");
        write(&run, 1, "b\n");
        let described = run.commit().unwrap();
        run.finalize();
        assert!(described.ends_with("results.json"), "{described}");
        assert_eq!(listing(dir.path()), ["results.json"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
            "a\nb\n"
        );
        std::fs::create_dir(dir.path().join("taken.json")).unwrap();
        let err =
            TextSink::with_options("Write", dir.path().join("taken").to_str().unwrap(), options)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("'Write'") && err.contains("is a directory"),
            "{err}"
        );
    }

    /// A committed run of `lines` (one shard per line), made final.
    fn committed_run(sink: &TextSink, id: &str, lines: &[&str]) {
        let run = job(sink, id);
        for (worker, line) in lines.iter().enumerate() {
            write(&run, worker, line);
        }
        run.commit().unwrap();
        run.finalize();
    }

    fn contents(dir: &Path) -> Vec<(String, String)> {
        listing(dir)
            .into_iter()
            .filter(|name| !dir.join(name).is_dir())
            .map(|name| {
                let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
                (name, text)
            })
            .collect()
    }

    #[test]
    fn a_commit_that_fails_leaves_the_earlier_output_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n", "b\n"]);
        let before = contents(dir.path());
        assert_eq!(before.len(), 2);
        let failing = job(&sink, "new");
        write(&failing, 0, "c\n");
        write(&failing, 1, "d\n");
        // The second of the new files vanishes before the commit renames it.
        let temp = dir.path().join(".temp-sluice-x-new");
        let temps: Vec<String> = listing(&temp)
            .into_iter()
            .filter(|n| n.starts_with("worker-"))
            .collect();
        std::fs::remove_file(temp.join(&temps[1])).unwrap();
        let err = failing.commit().unwrap_err();
        assert!(err.to_string().contains("cannot rename"), "{err}");
        let file_error = err.downcast_ref::<FileError>().expect("a typed file error");
        assert_eq!(file_error.source.kind(), std::io::ErrorKind::NotFound);
        failing.abort();
        assert_eq!(contents(dir.path()), before);
        assert_eq!(listing(dir.path()).len(), 2, "no temporary directory left");
    }

    #[test]
    fn a_commit_undone_for_another_sink_restores_the_earlier_output() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n"]);
        let before = contents(dir.path());
        let run = job(&sink, "new");
        write(&run, 0, "c\n");
        write(&run, 1, "d\n");
        run.commit().unwrap();
        assert!(listing(dir.path()).contains(&"x-00001-of-00002".to_string()));
        run.undo().unwrap();
        run.abort();
        assert_eq!(contents(dir.path()), before);
    }

    #[test]
    fn an_undo_that_cannot_restore_keeps_the_earlier_output_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n"]);
        let run = job(&sink, "new");
        write(&run, 0, "c\n");
        write(&run, 1, "d\n");
        run.commit().unwrap();
        // Something takes the name a new shard would be renamed back to: that rename
        // fails, the others go through.
        let temp = dir.path().join(".temp-sluice-x-new");
        std::fs::create_dir(temp.join("worker-00000-00000")).unwrap();
        std::fs::write(temp.join("worker-00000-00000").join("blocker"), "").unwrap();
        let err = run.undo().unwrap_err().to_string();
        assert!(
            err.contains("could not undo") && err.contains("replaced"),
            "{err}"
        );
        run.abort();
        // The earlier shard is still somewhere: back in place, or kept aside.
        let kept = temp.join(REPLACED).join("x-00000-of-00001");
        let restored = dir.path().join("x-00000-of-00001");
        assert!(
            kept.exists() || std::fs::read_to_string(&restored).unwrap_or_default() == "a\n",
            "{:?}",
            listing(dir.path())
        );
    }

    #[test]
    fn a_dead_jobs_temporary_output_is_removed_by_the_next_run_but_a_live_ones_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        // A job that died mid-write: its directory and lock file, unlocked.
        let dead = dir.path().join(".temp-sluice-x-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("worker-00000-00000"), "partial").unwrap();
        std::fs::write(
            dead.join(LOCK_FILE),
            "sluice temporary output\nprefix=x\njob=dead\n",
        )
        .unwrap();
        // Another prefix's dead job, whose name begins the same way, is not ours.
        let other = dir.path().join(".temp-sluice-x-2-dead");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(
            other.join(LOCK_FILE),
            "sluice temporary output\nprefix=x-2\njob=dead\n",
        )
        .unwrap();
        let live = job(&sink, "live");
        let second = job(&sink, "second");
        assert!(!dead.exists(), "the dead job's leftovers are removed");
        assert!(other.exists(), "another prefix's leftovers are not touched");
        assert!(
            dir.path().join(".temp-sluice-x-live").exists(),
            "a running job's directory is kept"
        );
        second.abort();
        live.abort();
    }

    #[test]
    fn a_commit_interrupted_by_a_crash_is_undone_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n", "b\n"]);
        let before = contents(dir.path());
        // Simulate a crash after the commit renamed everything but before finalising:
        // commit, then forget the job without finalising or aborting (its lock goes
        // with it, as a dead process's would).
        let crashed = job(&sink, "crashed");
        write(&crashed, 0, "c\n");
        crashed.commit().unwrap();
        assert_ne!(contents(dir.path()), before);
        std::mem::forget(crashed);
        // Forgetting keeps the lock file open and locked: a fresh lock file (a new,
        // unlocked inode) stands for the lock a dead process no longer holds.
        let temp = dir.path().join(".temp-sluice-x-crashed");
        let lock_path = temp.join(LOCK_FILE);
        let text = std::fs::read_to_string(&lock_path).unwrap();
        std::fs::remove_file(&lock_path).unwrap();
        std::fs::write(&lock_path, text).unwrap();
        let next = job(&sink, "next");
        assert!(!temp.exists());
        assert_eq!(contents(dir.path()), before, "the earlier output is back");
        next.abort();
    }

    #[test]
    fn unwritable_locations_fail_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "").unwrap();
        let err = TextSink::new("Write", file.join("out").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'Write'") && err.contains("is a file, not a directory"),
            "{err}"
        );
        let err = TextSink::new("Write", "some/dir/").unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
