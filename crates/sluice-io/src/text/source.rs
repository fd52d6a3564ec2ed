//! Reading lines of text files, split across workers.

use std::any::Any;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::unit::{
    SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, ExecError, UnitResult, WindowedValue};

use crate::error::IoError;

/// How a file is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes: splittable.
    Uncompressed,
    /// gzip (by the `.gz` extension): read whole, by one worker.
    Gzip,
}

/// One input file.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size on disk.
    pub size: u64,
    /// How it is stored.
    pub compression: Compression,
}

/// The lines of every file matching a pattern, as `String`s without their line ending
/// (`\n` or `\r\n`), in the global window at the minimum timestamp.
#[derive(Clone, Debug)]
pub struct TextSource {
    transform: String,
    pattern: String,
    files: Vec<InputFile>,
}

/// Smallest byte range worth a bundle of its own.
const MIN_SPLIT_BYTES: u64 = 1 << 20;

impl TextSource {
    /// Matches `pattern` (a path, or a glob with `*`, `?`, `[...]`) now, so that a pattern
    /// matching nothing fails the pipeline at construction. `transform` names the Read in
    /// errors and warnings.
    pub fn new(transform: &str, pattern: &str) -> Result<TextSource, IoError> {
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
                let compression = if path.extension().is_some_and(|e| e == "gz") {
                    Compression::Gzip
                } else {
                    Compression::Uncompressed
                };
                Ok(InputFile {
                    path,
                    size: meta.len(),
                    compression,
                })
            })
            .collect::<Result<Vec<_>, IoError>>()?;
        Ok(TextSource {
            transform: transform.into(),
            pattern: pattern.into(),
            files,
        })
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
                Compression::Gzip => {
                    if hint.workers > 1 {
                        log::warn!(
                            "'{}': {} is gzip-compressed and cannot be split, so one worker reads it all; \
                             add a Reshuffle after '{}' to spread the work that follows over all workers",
                            self.transform,
                            file.path.display(),
                            self.transform
                        );
                    }
                    splits.push(Arc::new(TextSplit {
                        path: file.path.clone(),
                        start: 0,
                        end: file.size,
                        compression: Compression::Gzip,
                    }));
                }
                Compression::Uncompressed => {
                    let mut start = 0;
                    while start < file.size {
                        let end = (start + per_split).min(file.size);
                        splits.push(Arc::new(TextSplit {
                            path: file.path.clone(),
                            start,
                            end,
                            compression: Compression::Uncompressed,
                        }));
                        start = end;
                    }
                }
            }
        }
        Ok(splits)
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(Box::new(TextReader {
            ctx: ctx.clone(),
            output: None,
            bytes_read: 0,
            line: Vec::new(),
        }))
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.files.iter().map(|f| f.size).sum())
    }
}

struct TextReader {
    ctx: UnitContext,
    output: Option<Port<String>>,
    bytes_read: u64,
    line: Vec<u8>,
}

const READ_BUFFER: usize = 1 << 20;

impl TextReader {
    fn io_error(&self, path: &Path, e: std::io::Error) -> Box<ExecError> {
        self.ctx
            .error(format!("cannot read {}: {e}", path.display()))
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
            let buffered = reader.fill_buf().map_err(|e| self.io_error(path, e))?;
            let (n, whole) = match memchr::memchr(b'\n', buffered) {
                Some(i) => (i + 1, true),
                None => {
                    self.line.clear();
                    let n = reader
                        .read_until(b'\n', &mut self.line)
                        .map_err(|e| self.io_error(path, e))?;
                    (n, false)
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
            let line = match std::str::from_utf8(text) {
                Ok(s) => s.to_owned(),
                Err(e) => {
                    return Err(self.ctx.error(format!(
                        "{} is not UTF-8 text: invalid byte at offset {}; read it as bytes or convert it to UTF-8",
                        path.display(),
                        line_start + e.valid_up_to() as u64
                    )));
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

impl SourceReader for TextReader {
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast::<String>()?);
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
        let file = File::open(&path).map_err(|e| self.io_error(&path, e))?;
        match split.compression {
            Compression::Gzip => {
                let decoder =
                    flate2::read::MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, file));
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
