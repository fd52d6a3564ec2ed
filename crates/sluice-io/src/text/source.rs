//! Reading lines of text files, split across workers.

use std::any::Any;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::error::FileError;
use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::unit::{
    SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, Coder, CoderError, Element, ExecError, UnitResult, WindowedValue};

use crate::error::IoError;
use crate::storage::{Store, StoreOptions};

/// How a file is stored. Compressed files are read whole, each by one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes: splittable by byte ranges.
    Uncompressed,
    /// gzip (`.gz`); concatenated members are read one after another.
    Gzip,
    /// Zstandard (`.zst`, `.zstd`).
    Zstd,
    /// bzip2 (`.bz2`).
    Bzip2,
}

impl Compression {
    /// The compression a file name's extension says: `.gz`, `.zst`/`.zstd`, `.bz2`;
    /// anything else is uncompressed.
    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst" | "zstd") => Compression::Zstd,
            Some("bz2") => Compression::Bzip2,
            _ => Compression::Uncompressed,
        }
    }

    /// A compression by name, as a `compression=` option gives it: `auto` (`None`: by
    /// extension), `none`/`uncompressed`, `gzip`/`gz`, `zstd`/`zst`, `bzip2`/`bz2`.
    pub fn parse(name: &str) -> Result<Option<Compression>, String> {
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "auto" => return Ok(None),
            "none" | "uncompressed" => Compression::Uncompressed,
            "gzip" | "gz" => Compression::Gzip,
            "zstd" | "zst" => Compression::Zstd,
            "bzip2" | "bz2" => Compression::Bzip2,
            other => {
                return Err(format!(
                    "unknown compression '{other}': use auto, none, gzip, zstd or bzip2"
                ));
            }
        }))
    }

    /// The file-name extension of the compression (`.gz`, `.zst`, `.bz2`; none for
    /// uncompressed).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::Bzip2 => ".bz2",
        }
    }

    /// The decompressed contents of `file`.
    pub fn decoder(
        self,
        file: impl Read + Send + 'static,
    ) -> std::io::Result<Box<dyn Read + Send>> {
        let input = BufReader::with_capacity(READ_BUFFER, file);
        Ok(match self {
            Compression::Uncompressed => Box::new(input),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        })
    }
}

/// One input file.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Where it is: a local path, or an object's URL.
    pub path: PathBuf,
    /// The store it is in.
    pub store: Store,
    /// Its size on disk.
    pub size: u64,
    /// How it is stored.
    pub compression: Compression,
}

impl InputFile {
    /// The lines that start in bytes `[start, end)` of the file's contents.
    pub fn range(&self, start: u64, end: u64) -> TextSplit {
        TextSplit {
            path: self.path.clone(),
            store: self.store.clone(),
            start,
            end,
            compression: self.compression,
        }
    }
}

/// What a text source makes of each line's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineFormat {
    /// UTF-8 text. A line that is not fails the job at once — no retry can mend it —
    /// unless the Read has a dead-letter output, where it goes instead.
    #[default]
    Utf8,
    /// UTF-8 text, with bytes that are not replaced by U+FFFD.
    Lossy,
    /// The line's bytes, whatever they are (`Vec<u8>` elements).
    Bytes,
}

/// A line (or the rest of a file) a text source could not read, with where it is and
/// why: the dead-letter output of a Read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// The file.
    pub file: String,
    /// Where the line starts: a byte offset in the file (in the decompressed stream for
    /// a compressed file).
    pub offset: u64,
    /// The line's number in the file, from 1 (0 where not known: text reads, which do
    /// not count lines, and a corrupt file's rest).
    pub line: u64,
    /// The column (from 1) where a record failed to decode: the field of a CSV record,
    /// the character of a JSON line; 0 where there is none.
    pub column: u64,
    /// The line's bytes, without its line ending (empty when the file itself is corrupt).
    pub raw: Vec<u8>,
    /// What is wrong.
    pub error: String,
}

impl Coder for BadRecord {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.file.encode_to(out)?;
        self.offset.encode_to(out)?;
        self.line.encode_to(out)?;
        self.column.encode_to(out)?;
        self.raw.encode_to(out)?;
        self.error.encode_to(out)
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(BadRecord {
            file: String::decode_from(input)?,
            offset: u64::decode_from(input)?,
            line: u64::decode_from(input)?,
            column: u64::decode_from(input)?,
            raw: Vec::decode_from(input)?,
            error: String::decode_from(input)?,
        })
    }
}

/// The lines of every file matching a pattern, without their line ending (`\n` or
/// `\r\n`), in the global window at the minimum timestamp: `String`s, or `Vec<u8>` with
/// [`LineFormat::Bytes`]; with a dead-letter output, `Result<String, BadRecord>`.
#[derive(Clone, Debug)]
pub struct TextSource {
    transform: String,
    pattern: String,
    files: Vec<InputFile>,
    format: LineFormat,
    dead_letter: bool,
}

/// Smallest byte range worth a bundle of its own.
const MIN_SPLIT_BYTES: u64 = 1 << 20;

impl TextSource {
    /// Matches `pattern` (a path, or a glob with `*`, `?`, `[...]`) now, so that a pattern
    /// matching nothing fails the pipeline at construction. `transform` names the Read in
    /// errors and warnings.
    pub fn new(transform: &str, pattern: &str) -> Result<TextSource, IoError> {
        TextSource::with_store(transform, pattern, &StoreOptions::default())
    }

    /// As [`TextSource::new`], for patterns that may be object-store URLs (`s3://…`,
    /// `gs://…`, `az://…`), reached as `options` say.
    pub fn with_store(
        transform: &str,
        pattern: &str,
        options: &StoreOptions,
    ) -> Result<TextSource, IoError> {
        let (store, pattern) =
            crate::storage::resolve(pattern, options).map_err(|reason| IoError::BadPattern {
                transform: transform.into(),
                pattern: pattern.into(),
                reason,
            })?;
        if let Store::Object(_) = &store {
            let found = store
                .matching(&pattern)
                .map_err(|source| IoError::Unreadable {
                    transform: transform.into(),
                    path: PathBuf::from(&pattern),
                    source,
                })?;
            if found.is_empty() {
                return Err(IoError::NoMatch {
                    transform: transform.into(),
                    pattern,
                });
            }
            let files = found
                .into_iter()
                .map(|f| InputFile {
                    compression: Compression::from_path(&f.path),
                    path: f.path,
                    size: f.size,
                    store: store.clone(),
                })
                .collect();
            return Ok(TextSource {
                transform: transform.into(),
                pattern,
                files,
                format: LineFormat::Utf8,
                dead_letter: false,
            });
        }
        let pattern = pattern.as_str();
        let is_glob = pattern.contains(['*', '?', '[']);
        let mut paths = Vec::new();
        if is_glob {
            let matches = glob::glob(pattern).map_err(|e| IoError::BadPattern {
                transform: transform.into(),
                pattern: pattern.into(),
                reason: e.to_string(),
            })?;
            for entry in matches {
                match entry {
                    Ok(path) if path.is_file() => paths.push(path),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(IoError::Unreadable {
                            transform: transform.into(),
                            path: e.path().to_path_buf(),
                            source: e.into(),
                        });
                    }
                }
            }
        } else if Path::new(pattern).is_file() {
            paths.push(PathBuf::from(pattern));
        } else if Path::new(pattern).exists() {
            return Err(IoError::BadPattern {
                transform: transform.into(),
                pattern: pattern.into(),
                reason: "it is a directory; name files, e.g. 'dir/*'".into(),
            });
        }
        if paths.is_empty() {
            return Err(IoError::NoMatch {
                transform: transform.into(),
                pattern: pattern.into(),
            });
        }
        paths.sort();
        let files = paths
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).map_err(|source| IoError::Unreadable {
                    transform: transform.into(),
                    path: path.clone(),
                    source,
                })?;
                // Open once now: an unreadable file fails the pipeline before data moves.
                File::open(&path).map_err(|source| IoError::Unreadable {
                    transform: transform.into(),
                    path: path.clone(),
                    source,
                })?;
                let compression = Compression::from_path(&path);
                Ok(InputFile {
                    path,
                    store: Store::Local,
                    size: meta.len(),
                    compression,
                })
            })
            .collect::<Result<Vec<_>, IoError>>()?;
        Ok(TextSource {
            transform: transform.into(),
            pattern: pattern.into(),
            files,
            format: LineFormat::Utf8,
            dead_letter: false,
        })
    }

    /// Reads every file as stored with `compression`, whatever its extension (`None`:
    /// by extension, the default).
    pub fn with_compression(mut self, compression: Option<Compression>) -> TextSource {
        for file in &mut self.files {
            file.compression = compression.unwrap_or_else(|| Compression::from_path(&file.path));
        }
        self
    }

    /// Reads lines as `format` says.
    pub fn with_format(mut self, format: LineFormat) -> TextSource {
        self.format = format;
        self
    }

    /// Emits `Result<String, BadRecord>`: lines that are not UTF-8, and the rest of a
    /// compressed file that turns out corrupt, become `Err` records instead of failing
    /// the job. (With [`LineFormat::Utf8`] only.)
    pub fn with_dead_letter(mut self) -> TextSource {
        self.dead_letter = true;
        self
    }

    /// How lines are read.
    pub fn format(&self) -> LineFormat {
        self.format
    }

    /// The files the pattern matched, sorted by path.
    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// A byte range of one file: the lines that *start* in `[start, end)`.
#[derive(Clone, Debug)]
pub struct TextSplit {
    /// The file.
    pub path: PathBuf,
    /// The store it is in.
    pub store: Store,
    /// First byte of the range.
    pub start: u64,
    /// First byte after the range.
    pub end: u64,
    /// How the file is stored.
    pub compression: Compression,
}

impl SourceSplit for TextSplit {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn size_bytes(&self) -> Option<u64> {
        Some(self.end - self.start)
    }
    fn split_at(&self, position: u64) -> Option<(Arc<dyn SourceSplit>, Arc<dyn SourceSplit>)> {
        // `position` is where a line starts (the reader publishes line starts), so both
        // halves keep the rule "the lines that start in [start, end)".
        if self.compression != Compression::Uncompressed
            || position <= self.start
            || position >= self.end
        {
            return None;
        }
        let part = |start, end| {
            Arc::new(TextSplit {
                path: self.path.clone(),
                store: self.store.clone(),
                start,
                end,
                compression: self.compression,
            })
        };
        Some((part(self.start, position), part(position, self.end)))
    }
}

impl SourceFactory for TextSource {
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        let splittable: u64 = self
            .files
            .iter()
            .filter(|f| f.compression == Compression::Uncompressed)
            .map(|f| f.size)
            .sum();
        // Several splits per worker, so that a fast worker can take over a slow one's share.
        let per_split = (splittable / (hint.workers as u64 * 4)).clamp(
            MIN_SPLIT_BYTES,
            hint.desired_bundle_bytes.max(MIN_SPLIT_BYTES),
        );
        let mut splits: Vec<Arc<dyn SourceSplit>> = Vec::new();
        for file in &self.files {
            match file.compression {
                compressed @ (Compression::Gzip | Compression::Zstd | Compression::Bzip2) => {
                    if hint.workers > 1 {
                        log::warn!(
                            "'{}': {} is compressed ({compressed:?}) and cannot be split, so one worker reads it all; \
                             add a Reshuffle after '{}' to spread the work that follows over all workers",
                            self.transform,
                            file.path.display(),
                            self.transform
                        );
                    }
                    splits.push(Arc::new(file.range(0, file.size)));
                }
                Compression::Uncompressed => {
                    let mut start = 0;
                    while start < file.size {
                        let end = (start + per_split).min(file.size);
                        splits.push(Arc::new(file.range(start, end)));
                        start = end;
                    }
                }
            }
        }
        Ok(splits)
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        fn boxed<O: LineOutput>(ctx: &UnitContext, format: LineFormat) -> Box<dyn SourceReader> {
            Box::new(TextReader::<O> {
                ctx: ctx.clone(),
                format,
                output: None,
                bytes_read: 0,
                line: Vec::new(),
            })
        }
        Ok(match (self.format, self.dead_letter) {
            (LineFormat::Bytes, _) => boxed::<Vec<u8>>(ctx, self.format),
            (_, true) => boxed::<Result<String, BadRecord>>(ctx, self.format),
            (_, false) => boxed::<String>(ctx, self.format),
        })
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.files.iter().map(|f| f.size).sum())
    }
}

/// The element a text reader emits for a line.
trait LineOutput: Element {
    /// Whether the output has a place for records that cannot be read.
    const DEAD_LETTER: bool;
    /// The element for a line's bytes, or why it has none.
    fn from_line(
        bytes: &[u8],
        format: LineFormat,
        bad: impl FnOnce(String) -> BadRecord,
    ) -> Result<Self, String>;
    /// The element for a record that could not be read, if the output has a place for
    /// it.
    fn from_bad(record: BadRecord) -> Option<Self>;
}

/// A line as text, as `format` says; why not, if it is not UTF-8 (and not lossy).
#[inline]
fn line_text(bytes: &[u8], format: LineFormat) -> Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) if format == LineFormat::Lossy => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Err(e) => Err(format!(
            "invalid UTF-8 at byte {} of the line",
            e.valid_up_to()
        )),
    }
}

impl LineOutput for String {
    const DEAD_LETTER: bool = false;
    #[inline]
    fn from_line(
        bytes: &[u8],
        format: LineFormat,
        _bad: impl FnOnce(String) -> BadRecord,
    ) -> Result<Self, String> {
        line_text(bytes, format)
    }
    fn from_bad(_record: BadRecord) -> Option<Self> {
        None
    }
}

impl LineOutput for Vec<u8> {
    const DEAD_LETTER: bool = false;
    #[inline]
    fn from_line(
        bytes: &[u8],
        _format: LineFormat,
        _bad: impl FnOnce(String) -> BadRecord,
    ) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
    fn from_bad(_record: BadRecord) -> Option<Self> {
        None
    }
}

impl LineOutput for Result<String, BadRecord> {
    const DEAD_LETTER: bool = true;
    #[inline]
    fn from_line(
        bytes: &[u8],
        format: LineFormat,
        bad: impl FnOnce(String) -> BadRecord,
    ) -> Result<Self, String> {
        Ok(line_text(bytes, format).map_err(bad))
    }
    fn from_bad(record: BadRecord) -> Option<Self> {
        Some(Err(record))
    }
}

struct TextReader<O> {
    ctx: UnitContext,
    format: LineFormat,
    output: Option<Port<O>>,
    bytes_read: u64,
    line: Vec<u8>,
}

const READ_BUFFER: usize = 1 << 20;

/// An error reading `path` at `offset` of its contents: a disk failing fails the bundle
/// (retried); a corrupt or truncated compressed stream, which no retry can read, is the
/// record that sets the rest of the file aside (`dead_letter`), or fails the job at once.
pub(crate) fn corrupt_rest(
    ctx: &UnitContext,
    path: &Path,
    offset: u64,
    e: std::io::Error,
    dead_letter: bool,
) -> Result<BadRecord, Box<ExecError>> {
    if !is_malformed(&e) {
        return Err(ctx.error(FileError::new("read", path, e)));
    }
    if !dead_letter {
        return Err(ExecError::permanent(
            ctx.transform.clone(),
            format!(
                "{} is corrupt at byte {offset} of its contents ({e}); no retry can read it. \
                 Fix or remove the file, or read with a dead-letter output to set it aside",
                path.display()
            ),
        ));
    }
    Ok(BadRecord {
        file: path.display().to_string(),
        offset,
        line: 0,
        column: 0,
        raw: Vec::new(),
        error: format!("the file is corrupt from here on: {e}"),
    })
}

/// Whether an error reading a file means its contents are malformed — a corrupt or
/// truncated compressed stream — so that reading it again cannot succeed.
fn is_malformed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::UnexpectedEof
    )
}

impl<O: LineOutput> TextReader<O> {
    fn io_error(&self, path: &Path, e: std::io::Error) -> Box<ExecError> {
        self.ctx.error(FileError::new("read", path, e))
    }

    /// A read error in the middle of `path`, at `offset`: malformed contents go to the
    /// dead-letter output if there is one (and the rest of the file is skipped: `Ok`),
    /// or fail the job at once; other errors (a disk failing) fail the bundle, which is
    /// retried.
    fn read_error(&mut self, path: &Path, offset: u64, e: std::io::Error) -> UnitResult {
        let record = corrupt_rest(&self.ctx, path, offset, e, O::DEAD_LETTER)?;
        match O::from_bad(record) {
            Some(element) => attached(&mut self.output, &self.ctx)?
                .emit(WindowedValue::in_global_window(element)),
            None => Ok(()),
        }
    }

    /// Emits every line of `reader`, whose first byte is at `offset` of the file, that starts
    /// before `end`.
    fn emit_lines(
        &mut self,
        mut reader: BufReader<impl Read>,
        path: &Path,
        mut offset: u64,
        end: u64,
    ) -> UnitResult {
        while offset < end {
            // A line wholly inside the read buffer is taken from there; one that runs
            // past it is gathered into `self.line` first.
            let buffered = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) => return self.read_error(path, offset, e),
            };
            let (n, whole) = match memchr::memchr(b'\n', buffered) {
                Some(i) => (i + 1, true),
                None => {
                    self.line.clear();
                    match reader.read_until(b'\n', &mut self.line) {
                        Ok(n) => (n, false),
                        Err(e) => return self.read_error(path, offset, e),
                    }
                }
            };
            if n == 0 {
                break;
            }
            let line_start = offset;
            self.ctx
                .position
                .store(line_start, std::sync::atomic::Ordering::Relaxed);
            offset += n as u64;
            self.bytes_read += n as u64;
            let mut text = if whole {
                &reader.buffer()[..n]
            } else {
                &self.line[..]
            };
            if let Some(rest) = text.strip_suffix(b"\n") {
                text = rest.strip_suffix(b"\r").unwrap_or(rest);
            }
            let line = O::from_line(text, self.format, |why| BadRecord {
                file: path.display().to_string(),
                offset: line_start,
                line: 0,
                column: 0,
                raw: text.to_vec(),
                error: why,
            });
            let line = match line {
                Ok(element) => element,
                Err(_) => {
                    let at = std::str::from_utf8(text)
                        .err()
                        .map_or(0, |e| e.valid_up_to() as u64);
                    return Err(ExecError::permanent(
                        self.ctx.transform.clone(),
                        format!(
                            "{} is not UTF-8 text: invalid byte at offset {}; no retry can read it. \
                             Read it lossily (ReadText::lossy) or as bytes (read_text_bytes), \
                             or with a dead-letter output to set such lines aside",
                            path.display(),
                            line_start + at
                        ),
                    ));
                }
            };
            if whole {
                reader.consume(n);
            }
            attached(&mut self.output, &self.ctx)?.emit(WindowedValue::in_global_window(line))?;
        }
        Ok(())
    }
}

impl<O: LineOutput> SourceReader for TextReader<O> {
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast::<O>()?);
        Ok(())
    }

    fn detach(&mut self) {
        self.output = None;
    }

    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }

    fn read(&mut self, split: &dyn SourceSplit) -> UnitResult {
        let Some(split) = split.as_any().downcast_ref::<TextSplit>() else {
            return Err(self
                .ctx
                .error("internal error: a text reader was given another source's split"));
        };
        let path = split.path.clone();
        let file = split
            .store
            .open(&path)
            .map_err(|e| self.io_error(&path, e))?;
        match split.compression {
            compressed @ (Compression::Gzip | Compression::Zstd | Compression::Bzip2) => {
                let decoder = match compressed.decoder(file) {
                    Ok(decoder) => decoder,
                    Err(e) => return self.read_error(&path, 0, e),
                };
                self.emit_lines(
                    BufReader::with_capacity(READ_BUFFER, decoder),
                    &path,
                    0,
                    u64::MAX,
                )
            }
            Compression::Uncompressed => {
                let mut reader = BufReader::with_capacity(READ_BUFFER, file);
                let mut offset = split.start;
                if split.start > 0 {
                    // The line that contains byte start-1 belongs to the previous split:
                    // skip to just past its newline.
                    reader
                        .seek(SeekFrom::Start(split.start - 1))
                        .map_err(|e| self.io_error(&path, e))?;
                    let mut skipped = Vec::new();
                    let n = reader
                        .read_until(b'\n', &mut skipped)
                        .map_err(|e| self.io_error(&path, e))?;
                    offset = split.start - 1 + n as u64;
                }
                self.emit_lines(reader, &path, offset, split.end)
            }
        }
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::Write;
    use std::rc::Rc;

    use sluice_core::Receiver;

    struct Collect(Rc<RefCell<Vec<String>>>);
    impl Receiver<String> for Collect {
        fn start_bundle(&mut self) -> UnitResult {
            Ok(())
        }
        fn receive(&mut self, e: WindowedValue<String>) -> UnitResult {
            self.0.borrow_mut().push(e.value);
            Ok(())
        }
        fn finish_bundle(&mut self) -> UnitResult {
            Ok(())
        }
    }

    fn read_all(source: &TextSource, split_bytes: u64) -> Vec<String> {
        let ctx = UnitContext::standalone("Read");
        let out = Rc::new(RefCell::new(vec![]));
        let mut reader = source.reader(&ctx).unwrap();
        let port = Port::new(
            vec![Box::new(Collect(out.clone())) as Box<dyn Receiver<String>>],
            Rc::default(),
        );
        reader.attach(AnyPort::new(port)).unwrap();
        let mut splits = vec![];
        for f in source.files() {
            let mut start = 0;
            while start < f.size {
                let end = (start + split_bytes).min(f.size);
                splits.push(TextSplit {
                    path: f.path.clone(),
                    store: Store::Local,
                    start,
                    end,
                    compression: f.compression,
                });
                start = end;
            }
        }
        for s in &splits {
            reader.start_bundle().unwrap();
            reader.read(s).unwrap();
            reader.finish_bundle().unwrap();
        }
        out.take()
    }

    #[test]
    fn every_line_is_read_exactly_once_whatever_the_split_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        let text = "alpha\nbeta gamma\r\n\ndelta\nlast line without newline";
        std::fs::write(&path, text).unwrap();
        let source = TextSource::new("Read", path.to_str().unwrap()).unwrap();
        let expected = vec![
            "alpha",
            "beta gamma",
            "",
            "delta",
            "last line without newline",
        ];
        for split in 1..=text.len() as u64 + 1 {
            assert_eq!(read_all(&source, split), expected, "split size {split}");
        }
    }

    #[test]
    fn lines_longer_than_the_read_buffer_or_across_its_end_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.txt");
        // Short lines up to just before the buffer's end, one line across it, one line
        // longer than the buffer, then short lines again.
        let mut expected: Vec<String> = (0..READ_BUFFER / 10 - 1)
            .map(|i| format!("{i:09}"))
            .collect();
        expected.push("x".repeat(25));
        expected.push("y".repeat(READ_BUFFER * 2 + 7));
        expected.extend((0..1000).map(|i| format!("tail {i}")));
        std::fs::write(&path, expected.join("\n")).unwrap();
        let source = TextSource::new("Read", path.to_str().unwrap()).unwrap();
        for split in [u64::MAX, READ_BUFFER as u64 - 3, 4096] {
            assert!(read_all(&source, split) == expected, "split size {split}");
        }
    }

    #[test]
    fn gzip_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(b"one\ntwo\n").unwrap();
        gz.finish().unwrap();
        let source = TextSource::new("Read", path.to_str().unwrap()).unwrap();
        assert_eq!(source.files()[0].compression, Compression::Gzip);
        let splits = source
            .splits(&SplitHint {
                workers: 4,
                desired_bundle_bytes: 1,
            })
            .unwrap();
        assert_eq!(splits.len(), 1);
        assert_eq!(read_all(&source, u64::MAX), ["one", "two"]);
    }

    #[test]
    fn a_pattern_matching_nothing_names_the_transform_and_pattern() {
        let err = TextSource::new("ReadLines", "/definitely/not/here-*.txt")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ReadLines")
                && err.contains("/definitely/not/here-*.txt")
                && err.contains("matches no file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = TextSource::new("ReadLines", dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory"), "{err}");
    }

    #[test]
    fn invalid_utf8_names_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"ok\nbad \xff here\n").unwrap();
        let source = TextSource::new("Read", path.to_str().unwrap()).unwrap();
        let ctx = UnitContext::standalone("Read");
        let mut reader = source.reader(&ctx).unwrap();
        reader
            .attach(AnyPort::new(Port::<String>::new(vec![], Rc::default())))
            .unwrap();
        let split = TextSplit {
            path: path.clone(),
            store: Store::Local,
            start: 0,
            end: 20,
            compression: Compression::Uncompressed,
        };
        let err = reader.read(&split).unwrap_err().to_string();
        assert!(
            err.contains("bad.txt is not UTF-8") && err.contains("offset 7"),
            "{err}"
        );
    }

    #[test]
    fn splits_cover_files_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        for (name, size) in [("a.txt", 3_500_000usize), ("b.txt", 10), ("c.txt", 0)] {
            std::fs::write(dir.path().join(name), "x\n".repeat(size / 2)).unwrap();
        }
        let pattern = format!("{}/*.txt", dir.path().display());
        let source = TextSource::new("Read", &pattern).unwrap();
        let splits = source
            .splits(&SplitHint {
                workers: 2,
                desired_bundle_bytes: 8 << 20,
            })
            .unwrap();
        let mut covered = 0;
        for s in &splits {
            covered += s.size_bytes().unwrap();
        }
        assert_eq!(covered, 3_500_000 + 10);
        // 3.5 MB at the 1 MiB minimum split size is four splits; the small file is one.
        assert_eq!(splits.len(), 5, "{splits:?}");
    }
}
