//! Typed records in text files — CSV and JSON lines — decoded with serde.
//!
//! A record is a line, so record files split by byte ranges exactly as text does (a
//! split holds the records whose line starts in it; compressed files are read whole).
//! CSV fields quoted across lines would be cut by a split boundary: such files must be
//! read unsplit (compressed, or as one split). A record that does not decode fails the
//! job at once with its file, line and column — no retry can mend the input — or, with
//! a dead-letter output, becomes a [`BadRecord`] carrying that position and the raw
//! line.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sluice_core::error::FileError;
use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::unit::{
    SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, Element, ExecError, UnitResult, WindowedValue};

use crate::text::source::{BadRecord, Compression, TextSource, TextSplit, corrupt_rest};

const READ_BUFFER: usize = 1 << 20;

/// The bytes of the lines that start in `[first, end)` of a file's contents: past `end`,
/// only the rest of the line that started before it.
struct SplitInput<R> {
    inner: R,
    /// Offset of the next byte in the file's contents.
    offset: u64,
    /// Where the split's first line starts.
    first: u64,
    end: u64,
    /// The last byte handed out.
    last: u8,
}

impl<R: BufRead> BufRead for SplitInput<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let (offset, end, first, last) = (self.offset, self.end, self.first, self.last);
        let limit = {
            let available = self.inner.fill_buf()?;
            if offset < end {
                available.len().min((end - offset) as usize)
            } else if last == b'\n' || offset == first {
                // The split ends at a line boundary.
                0
            } else {
                memchr::memchr(b'\n', available).map_or(available.len(), |i| i + 1)
            }
        };
        Ok(&self.inner.fill_buf()?[..limit])
    }

    fn consume(&mut self, n: usize) {
        if n > 0
            && let Ok(available) = self.inner.fill_buf()
        {
            self.last = available[n - 1];
        }
        self.inner.consume(n);
        self.offset += n as u64;
    }
}

impl<R: BufRead> Read for SplitInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// A split's input, and where its first line starts in the file's contents.
pub(crate) fn open_split(split: &TextSplit) -> std::io::Result<(Box<dyn BufRead + Send>, u64)> {
    let file = split.store.open(&split.path)?;
    if split.compression != Compression::Uncompressed {
        let decoded = BufReader::with_capacity(READ_BUFFER, split.compression.decoder(file)?);
        let input = SplitInput {
            inner: decoded,
            offset: 0,
            first: 0,
            end: u64::MAX,
            last: b'\n',
        };
        return Ok((Box::new(input), 0));
    }
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut first = split.start;
    if split.start > 0 {
        // The line that contains byte start-1 belongs to the previous split.
        reader.seek(SeekFrom::Start(split.start - 1))?;
        let mut skipped = Vec::new();
        first = split.start - 1 + reader.read_until(b'\n', &mut skipped)? as u64;
    }
    let input = SplitInput {
        inner: reader,
        offset: first,
        first,
        end: split.end,
        last: b'\n',
    };
    Ok((Box::new(input), first))
}

/// The decompressed contents of `split`'s file from `offset` on.
pub(crate) fn contents_from(
    split: &TextSplit,
    offset: u64,
) -> std::io::Result<BufReader<Box<dyn Read + Send>>> {
    let compression = split.compression;
    let mut file = split.store.open(&split.path)?;
    if compression == Compression::Uncompressed {
        file.seek(SeekFrom::Start(offset))?;
        let file: Box<dyn Read + Send> = Box::new(file);
        return Ok(BufReader::new(file));
    }
    let mut decoded = BufReader::new(compression.decoder(file)?);
    std::io::copy(&mut (&mut decoded).take(offset), &mut std::io::sink())?;
    Ok(decoded)
}

/// The number of the line (from 1) that starts at `offset` of `split`'s file's contents.
pub(crate) fn line_number(split: &TextSplit, offset: u64) -> std::io::Result<u64> {
    let mut input = contents_from(split, 0)?.take(offset);
    let mut newlines = 0u64;
    loop {
        let buffered = input.fill_buf()?;
        if buffered.is_empty() {
            return Ok(newlines + 1);
        }
        newlines += memchr::memchr_iter(b'\n', buffered).count() as u64;
        let n = buffered.len();
        input.consume(n);
    }
}

/// The line that starts at `offset` of `split`'s file's contents, without its line
/// ending.
pub(crate) fn line_at(split: &TextSplit, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    contents_from(split, offset)?.read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// How CSV files are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// The first line of each file names the columns, and fields are matched to a
    /// struct's fields by those names (default); without it, by position.
    pub header: bool,
    /// The field delimiter (default `,`).
    pub delimiter: u8,
    /// The quote character (default `"`).
    pub quote: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: b',',
            quote: b'"',
        }
    }
}

/// The format of a record file.
#[derive(Clone, Debug)]
pub enum RecordFormat {
    /// Comma-separated values (RFC 4180 quoting), one record per line.
    Csv(CsvOptions),
    /// One JSON value per line; blank lines are skipped.
    JsonLines,
}

impl RecordFormat {
    /// The format's name, as errors and plans say it.
    pub fn name(&self) -> &'static str {
        match self {
            RecordFormat::Csv(_) => "CSV",
            RecordFormat::JsonLines => "JSON lines",
        }
    }
}

/// The records of every file matching a pattern, decoded into `T` with serde: `T`s, or
/// with a dead-letter output `Result<T, BadRecord>`.
pub struct RecordSource<T> {
    text: TextSource,
    format: RecordFormat,
    dead_letter: bool,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for RecordSource<T> {
    fn clone(&self) -> Self {
        RecordSource {
            text: self.text.clone(),
            format: self.format.clone(),
            dead_letter: self.dead_letter,
            _records: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RecordSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSource")
            .field("pattern", &self.text.pattern())
            .field("format", &self.format)
            .field("dead_letter", &self.dead_letter)
            .finish()
    }
}

impl<T: DeserializeOwned + Element> RecordSource<T> {
    /// Records in `format` of the files `text` matched.
    pub fn new(text: TextSource, format: RecordFormat) -> RecordSource<T> {
        RecordSource {
            text,
            format,
            dead_letter: false,
            _records: PhantomData,
        }
    }

    /// Emits `Result<T, BadRecord>`: records that do not decode (and the rest of a
    /// compressed file that turns out corrupt) become `Err` instead of failing the job.
    pub fn with_dead_letter(mut self) -> RecordSource<T> {
        self.dead_letter = true;
        self
    }
}

impl<T: DeserializeOwned + Element> SourceFactory for RecordSource<T> {
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        self.text.splits(hint)
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(if self.dead_letter {
            Box::new(RecordReader::<T, Result<T, BadRecord>> {
                ctx: ctx.clone(),
                format: self.format.clone(),
                output: None,
                bytes_read: 0,
                ok: Ok,
                bad: Some(Err),
                first_line: None,
            })
        } else {
            Box::new(RecordReader::<T, T> {
                ctx: ctx.clone(),
                format: self.format.clone(),
                output: None,
                bytes_read: 0,
                ok: |t| t,
                bad: None,
                first_line: None,
            })
        })
    }

    fn size_bytes(&self) -> Option<u64> {
        self.text.size_bytes()
    }
}

/// Where a record that did not decode is, and why.
struct Malformed {
    /// Where its line starts in the file's contents.
    offset: u64,
    /// Its line's number from the split's first line (from 1), when known.
    line_in_split: Option<u64>,
    /// The column (from 1): the field for CSV, the character for JSON.
    column: Option<u64>,
    /// The line's bytes, when the reader has them (else read again from the file).
    raw: Option<Vec<u8>>,
    error: String,
}

struct RecordReader<T, O> {
    ctx: UnitContext,
    format: RecordFormat,
    output: Option<Port<O>>,
    bytes_read: u64,
    ok: fn(T) -> O,
    bad: Option<fn(BadRecord) -> O>,
    /// The number of the split's first line in its file, once a malformed record needed
    /// it (counted once a split, not once a record).
    first_line: Option<u64>,
}

impl<T: DeserializeOwned + Element, O: Element> RecordReader<T, O> {
    fn emit(&mut self, offset: u64, record: T) -> UnitResult {
        self.ctx
            .position
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        let element = (self.ok)(record);
        attached(&mut self.output, &self.ctx)?.emit(WindowedValue::in_global_window(element))
    }

    /// A record that did not decode: to the dead-letter output, or the job fails.
    fn malformed(&mut self, split: &TextSplit, first: u64, what: Malformed) -> UnitResult {
        let path = &split.path;
        let read_error = |e| self.ctx.error(FileError::new("read", path, e));
        let line = match what.line_in_split {
            Some(n) => {
                let first_line = match self.first_line {
                    Some(l) => l,
                    None => line_number(split, first).map_err(read_error)?,
                };
                self.first_line = Some(first_line);
                first_line + n - 1
            }
            None => line_number(split, what.offset).map_err(read_error)?,
        };
        let raw = match what.raw {
            Some(raw) => raw,
            None => line_at(split, what.offset).map_err(read_error)?,
        };
        let at = match what.column {
            Some(column) => format!("line {line}, column {column}"),
            None => format!("line {line}"),
        };
        let record = BadRecord {
            file: path.display().to_string(),
            offset: what.offset,
            line,
            column: what.column.unwrap_or(0),
            raw,
            error: format!("{at}: {}", what.error),
        };
        match self.bad {
            Some(bad) => {
                self.ctx
                    .position
                    .store(what.offset, std::sync::atomic::Ordering::Relaxed);
                attached(&mut self.output, &self.ctx)?
                    .emit(WindowedValue::in_global_window(bad(record)))
            }
            None => Err(ExecError::permanent(
                self.ctx.transform.clone(),
                format!(
                    "{}, {at}: not a {} record: {}; no retry can mend the input. Fix the file, \
                     or read with a dead-letter output to set such records aside",
                    path.display(),
                    self.format.name(),
                    what.error
                ),
            )),
        }
    }

    /// An error reading the split at `offset` (see [`corrupt_rest`]).
    fn read_error(&mut self, path: &Path, offset: u64, e: std::io::Error) -> UnitResult {
        let record = corrupt_rest(&self.ctx, path, offset, e, self.bad.is_some())?;
        match self.bad {
            Some(bad) => attached(&mut self.output, &self.ctx)?
                .emit(WindowedValue::in_global_window(bad(record))),
            None => Ok(()),
        }
    }

    fn read_json(&mut self, split: &TextSplit) -> UnitResult {
        let (mut input, first) = open_split(split)
            .map_err(|e| self.ctx.error(FileError::new("open", &split.path, e)))?;
        let mut offset = first;
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let n = match input.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => return self.read_error(&split.path, offset, e),
            };
            if n == 0 {
                break;
            }
            number += 1;
            let start = offset;
            offset += n as u64;
            self.bytes_read += n as u64;
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<T>(text) {
                Ok(record) => self.emit(start, record)?,
                Err(e) => {
                    let message = e.to_string();
                    let message = message
                        .rsplit_once(" at line ")
                        .map_or(message.as_str(), |(m, _)| m)
                        .to_string();
                    let leading = (line.len() - line.trim_ascii_start().len()) as u64;
                    let raw = line.strip_suffix(b"\n").unwrap_or(&line);
                    let malformed = Malformed {
                        offset: start,
                        line_in_split: Some(number),
                        column: Some(e.column() as u64 + leading),
                        raw: Some(raw.strip_suffix(b"\r").unwrap_or(raw).to_vec()),
                        error: message,
                    };
                    self.malformed(split, first, malformed)?;
                }
            }
        }
        Ok(())
    }

    /// The header row of `split`'s file, read from its first line.
    fn header_of(
        &self,
        split: &TextSplit,
        csv: &CsvOptions,
    ) -> Result<Option<csv::ByteRecord>, Box<ExecError>> {
        first_record(split, csv).map_err(|e| {
            self.ctx.error(format!(
                "{}: cannot read the CSV header row: {e}",
                split.path.display()
            ))
        })
    }

    fn read_csv(&mut self, split: &TextSplit, csv: &CsvOptions) -> UnitResult {
        let (input, first) = open_split(split)
            .map_err(|e| self.ctx.error(FileError::new("open", &split.path, e)))?;
        let mut header = None;
        if csv.header && first > 0 {
            header = self.header_of(split, csv)?;
        }
        let mut reader = csv_reader(csv, input);
        let mut record = csv::ByteRecord::new();
        let mut at_start = first == 0;
        loop {
            let start = first + reader.position().byte();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    if let csv::ErrorKind::Io(io) = e.kind() {
                        let io = std::io::Error::new(io.kind(), io.to_string());
                        return self.read_error(&split.path, start, io);
                    }
                    let line = e.position().map(csv::Position::line);
                    let malformed = Malformed {
                        offset: e.position().map_or(start, |p| first + p.byte()),
                        line_in_split: line,
                        column: None,
                        raw: None,
                        error: e.to_string(),
                    };
                    self.malformed(split, first, malformed)?;
                    continue;
                }
            }
            let position = record
                .position()
                .cloned()
                .unwrap_or_else(csv::Position::new);
            let offset = first + position.byte();
            if std::mem::take(&mut at_start) && csv.header {
                header = Some(record.clone());
                continue;
            }
            match record.deserialize::<T>(header.as_ref()) {
                Ok(value) => self.emit(offset, value)?,
                Err(e) => {
                    let (column, error) = match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => {
                            let field = err.field();
                            let name = field
                                .zip(header.as_ref())
                                .and_then(|(f, h)| h.get(f as usize))
                                .map(|n| format!(" ('{}')", String::from_utf8_lossy(n)))
                                .unwrap_or_default();
                            (field.map(|f| f + 1), format!("{}{name}", err.kind()))
                        }
                        _ => (None, e.to_string()),
                    };
                    let malformed = Malformed {
                        offset,
                        line_in_split: Some(position.line()),
                        column,
                        raw: None,
                        error,
                    };
                    self.malformed(split, first, malformed)?;
                }
            }
        }
        self.bytes_read += reader.position().byte();
        Ok(())
    }
}

/// The first record of `split`'s file (its header row, if it has one); `None` if the
/// file is empty.
pub(crate) fn first_record(
    split: &TextSplit,
    options: &CsvOptions,
) -> std::io::Result<Option<csv::ByteRecord>> {
    let mut record = csv::ByteRecord::new();
    let read = csv_reader(options, contents_from(split, 0)?)
        .read_byte_record(&mut record)
        .map_err(std::io::Error::other)?;
    Ok(read.then_some(record))
}

pub(crate) fn csv_reader<R: Read>(options: &CsvOptions, input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .buffer_capacity(READ_BUFFER)
        .from_reader(input)
}

impl<T: DeserializeOwned + Element, O: Element> SourceReader for RecordReader<T, O> {
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
                .error("internal error: a record reader was given another source's split"));
        };
        self.first_line = None;
        match self.format.clone() {
            RecordFormat::JsonLines => self.read_json(split),
            RecordFormat::Csv(options) => self.read_csv(split, &options),
        }
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }
}

/// The names of `T`'s fields as its `Deserialize` implementation declares them (a
/// struct with named fields); `None` for any other type. CSV output takes its header
/// row from them.
pub fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    struct Fields(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("only the field names were wanted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// Writes records as CSV lines, fields in the order the type serializes them.
pub struct CsvLines {
    writer: csv::Writer<Written>,
    written: Written,
}

/// What a CSV writer has written, taken a line at a time.
#[derive(Clone, Default)]
struct Written(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for CsvLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsvLines")
    }
}

impl CsvLines {
    /// A writer of lines laid out as `options` say.
    pub fn new(options: &CsvOptions) -> CsvLines {
        let written = Written::default();
        CsvLines {
            writer: csv::WriterBuilder::new()
                .has_headers(false)
                .delimiter(options.delimiter)
                .quote(options.quote)
                .from_writer(written.clone()),
            written,
        }
    }

    /// `record` as one CSV line, without its newline.
    pub fn line<T: serde::Serialize>(&mut self, record: &T) -> Result<String, String> {
        self.writer.serialize(record).map_err(|e| e.to_string())?;
        self.writer.flush().map_err(|e| e.to_string())?;
        let mut bytes = std::mem::take(
            &mut *self
                .written
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }
}

/// A CSV header row (without its newline) naming `columns`.
pub fn csv_header(options: &CsvOptions, columns: &[&str]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(options.delimiter)
        .quote(options.quote)
        .from_writer(Vec::new());
    let _ = writer.write_record(columns);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

/// For tests: a split's input as text.
#[cfg(test)]
fn split_text(split: &TextSplit) -> String {
    let (mut input, _) = open_split(split).unwrap();
    let mut text = String::new();
    input.read_to_string(&mut text).unwrap();
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::any::Any;

    #[test]
    fn splits_hold_exactly_the_lines_that_start_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        let text = "alpha\nbeta gamma\r\n\ndelta\nlast";
        std::fs::write(&path, text).unwrap();
        for size in 1..=text.len() as u64 {
            let mut all = String::new();
            let mut start = 0;
            while start < text.len() as u64 {
                let end = (start + size).min(text.len() as u64);
                all.push_str(&split_text(&TextSplit {
                    path: path.clone(),
                    store: crate::storage::Store::Local,
                    start,
                    end,
                    compression: Compression::Uncompressed,
                }));
                start = end;
            }
            assert_eq!(all, text, "splits of {size} bytes");
        }
    }

    #[test]
    fn line_numbers_and_lines_are_found_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        std::fs::write(&path, "a\nbb\r\nccc\n").unwrap();
        let split = TextSplit {
            path: path.clone(),
            store: crate::storage::Store::Local,
            start: 0,
            end: 10,
            compression: Compression::Uncompressed,
        };
        assert_eq!(line_number(&split, 0).unwrap(), 1);
        assert_eq!(line_number(&split, 6).unwrap(), 3);
        assert_eq!(line_at(&split, 2).unwrap(), b"bb");
        assert_eq!(line_at(&split, 6).unwrap(), b"ccc");
    }

    #[test]
    fn any_type_other_than_a_text_split_is_refused() {
        #[derive(Debug)]
        struct Other;
        impl SourceSplit for Other {
            fn as_any(&self) -> &dyn Any {
                self
            }
            fn size_bytes(&self) -> Option<u64> {
                None
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "1\n").unwrap();
        let source = RecordSource::<u64>::new(
            TextSource::new("Read", path.to_str().unwrap()).unwrap(),
            RecordFormat::JsonLines,
        );
        let ctx = UnitContext::standalone("Read");
        let mut reader = source.reader(&ctx).unwrap();
        assert!(reader.read(&Other).is_err());
    }
}
