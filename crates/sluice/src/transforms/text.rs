//! Text files in and out.
//!
//! Both ends check their files when the pipeline is built — an input pattern that
//! matches nothing, an output location that cannot be written — and record what is wrong;
//! [`Pipeline::run`] then reports every such problem together, before anything runs.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::text::WriteText;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let p = Pipeline::for_test();
//! p.create("Lines", vec!["a".to_string(), "b".to_string()])
//!     .write_text_with("Write", WriteText::to(dir.path().join("out").to_str().unwrap()).with_num_shards(1).with_suffix(".txt"));
//! p.run().unwrap().wait_until_finish().unwrap();
//! let text = std::fs::read_to_string(dir.path().join("out-00000-of-00001.txt")).unwrap();
//! assert_eq!(text.lines().count(), 2);
//! ```

use std::sync::Arc;

use sluice_core::BoxError;
use sluice_core::ExecError;
use sluice_core::unit::{SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext};
use sluice_io::text::sink::ShardOptions;
use sluice_io::text::source::{BadRecord, LineFormat};
use sluice_io::{IoError, TextSink, TextSource};
use sluice_plan::Payload;

use crate::dofn::{Context, DoFn, TupleTag};
use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

/// What [`Pipeline::read_text_with`] reads, and how (Beam's `TextIO.read()`).
#[derive(Clone, Debug)]
pub struct ReadText {
    pattern: String,
    format: LineFormat,
}

impl ReadText {
    /// The lines of every file matching `pattern` (a path or a glob; `.gz` files are
    /// decompressed), as UTF-8 text.
    pub fn from(pattern: &str) -> ReadText {
        ReadText {
            pattern: pattern.into(),
            format: LineFormat::Utf8,
        }
    }

    /// Bytes that are not UTF-8 become U+FFFD instead of failing the job.
    pub fn lossy(mut self) -> ReadText {
        self.format = LineFormat::Lossy;
        self
    }
}

/// Where and how [`PCollection::write_text_with`] writes (Beam's `TextIO.write()`).
#[derive(Clone, Debug)]
pub struct WriteText {
    prefix: String,
    options: ShardOptions,
    /// What is wrong with an option, reported when the write is added.
    problem: Option<String>,
}

impl WriteText {
    /// Files named `prefix-SSSSS-of-NNNNN`, one shard per worker that wrote anything.
    pub fn to(prefix: &str) -> WriteText {
        WriteText {
            prefix: prefix.into(),
            options: ShardOptions::default(),
            problem: None,
        }
    }

    /// Exactly `n` shards, whatever the number of workers (Beam's `withNumShards`); 0
    /// lets the runner choose. Lines are redivided at commit into `n` files of about
    /// equal size.
    pub fn with_num_shards(mut self, n: usize) -> WriteText {
        self.options.num_shards = Some(n);
        self
    }

    /// Appends `suffix` (e.g. `.txt`) to every file name (Beam's `withSuffix`).
    pub fn with_suffix(mut self, suffix: &str) -> WriteText {
        self.options.suffix = suffix.into();
        self
    }

    /// One file named exactly the prefix (plus any suffix), not `-00000-of-00001`
    /// (Beam's `withoutSharding`).
    pub fn without_sharding(mut self) -> WriteText {
        self.options.unsharded = true;
        self
    }

    /// Compresses every shard as `compression` says: `auto` (by the suffix's extension
    /// — `.gz`, `.zst`, `.bz2` — the default), `none`, `gzip`, `zstd`, `bzip2`. Each
    /// worker compresses what it writes; redividing into a fixed shard count
    /// decompresses and compresses again at commit.
    pub fn with_compression(mut self, compression: &str) -> WriteText {
        match sluice_io::text::source::Compression::parse(compression) {
            Ok(c) => self.options.compression = c,
            Err(e) => self.problem = Some(e),
        }
        self
    }

    /// The output prefix and shard options (a problem with an option is reported as
    /// the prefix being unwritable by whoever adds the write).
    pub(crate) fn into_parts(self) -> (String, ShardOptions) {
        (self.prefix, self.options)
    }

    /// The output prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Changes the shard options.
    pub(crate) fn with_options(mut self, change: impl FnOnce(&mut ShardOptions)) -> WriteText {
        change(&mut self.options);
        self
    }
}

/// Sends lines on and bad records to their own output.
#[derive(Clone)]
struct SplitBadRecords {
    bad: TupleTag<BadRecord>,
}

impl DoFn for SplitBadRecords {
    type In = Result<String, BadRecord>;
    type Out = String;
    fn process(
        &mut self,
        element: Result<String, BadRecord>,
        ctx: &mut Context<'_, String>,
    ) -> Result<(), BoxError> {
        match element {
            Ok(line) => ctx.emit(line),
            Err(bad) => ctx.emit_to(&self.bad, bad),
        }
        Ok(())
    }
}

/// A file Read's source, and what the plan shows of it (key, value).
pub(crate) type FileRead = (Arc<dyn SourceFactory>, Vec<(&'static str, String)>);

/// The source of a Read whose files were unusable: the pipeline is invalid and never
/// runs, so this is never read.
struct Unusable;

impl SourceFactory for Unusable {
    fn splits(&self, _hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        Err("internal error: an invalid Read ran".into())
    }
    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Err(ctx.error("internal error: an invalid Read ran"))
    }
}

impl Pipeline {
    /// Records a connector's problem, reported by `run` with every other.
    pub(crate) fn io_problem(&self, error: &IoError) {
        let mut problem = error.problem();
        let fix = match error.fix() {
            Some(fix) => fix.to_string(),
            None => match problem.split_once("; ") {
                // The problem's own advice is the fix.
                Some((what, advice)) => {
                    let advice = advice.to_string();
                    problem = what.to_string();
                    advice
                }
                None => "see the problem".to_string(),
            },
        };
        self.inner
            .borrow_mut()
            .graph
            .add_problem(error.transform(), problem, fix);
    }

    /// The lines of every file matching `pattern` (a path or a glob; `.gz` files are
    /// decompressed). The pattern is matched now: if it matches no file, the problem —
    /// naming the transform and the pattern — is reported by [`Pipeline::run`] together
    /// with any other, before anything runs.
    ///
    /// A line that is not UTF-8 — or a compressed file that is corrupt — fails the job at
    /// once, naming the file and the offset: no retry can mend the input. To read such
    /// files, use [`ReadText::lossy`], [`Pipeline::read_text_bytes`], or
    /// [`Pipeline::read_text_with_dead_letter`].
    pub fn read_text(&self, name: &str, pattern: &str) -> PCollection<String> {
        self.read_text_with(name, ReadText::from(pattern))
    }

    /// The lines of the files `read` names, read as it says.
    pub fn read_text_with(&self, name: &str, read: ReadText) -> PCollection<String> {
        self.text_read::<String>(name, &read.pattern, read.format, false)
    }

    /// The lines of every file matching `pattern` as bytes, whatever their encoding
    /// (without their line ending).
    pub fn read_text_bytes(&self, name: &str, pattern: &str) -> PCollection<Vec<u8>> {
        self.text_read::<Vec<u8>>(name, pattern, LineFormat::Bytes, false)
    }

    /// The lines of the files `read` names, and — instead of failing the job — the lines
    /// that are not UTF-8 and the rest of any compressed file that is corrupt, as
    /// [`BadRecord`]s with their file, offset, bytes and error.
    ///
    /// ```
    /// use sluice::prelude::*;
    /// use sluice::transforms::text::ReadText;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let input = dir.path().join("in.txt");
    /// std::fs::write(&input, b"good\nbad \xff\nfine\n").unwrap();
    /// let p = Pipeline::for_test();
    /// let (lines, bad) = p.read_text_with_dead_letter("Read", ReadText::from(input.to_str().unwrap()));
    /// let lines = lines.collect("Lines");
    /// let bad = bad.collect("Bad");
    /// p.run().unwrap().wait_until_finish().unwrap();
    /// assert_eq!(lines.values().len(), 2);
    /// assert_eq!((bad.values()[0].offset, &bad.values()[0].raw[..]), (5, &b"bad \xff"[..]));
    /// ```
    pub fn read_text_with_dead_letter(
        &self,
        name: &str,
        read: ReadText,
    ) -> (PCollection<String>, PCollection<BadRecord>) {
        let bad_tag = TupleTag::<BadRecord>::new("bad_records");
        self.composite(name, |p| {
            let checked =
                p.text_read::<Result<String, BadRecord>>("Read", &read.pattern, read.format, true);
            let (lines, others) = checked.par_do_with_outputs(
                "SplitBadRecords",
                SplitBadRecords {
                    bad: bad_tag.clone(),
                },
                &[bad_tag.spec()],
            );
            (lines, others.get(&bad_tag))
        })
    }

    fn text_read<O: sluice_core::Element>(
        &self,
        name: &str,
        pattern: &str,
        format: LineFormat,
        dead_letter: bool,
    ) -> PCollection<O> {
        let full = self.full_name(name);
        let source = TextSource::with_store(&full, pattern, &self.store_options()).map(|source| {
            let mut display = vec![("files", source.files().len().to_string())];
            if format != LineFormat::Utf8 {
                display.push(("format", format!("{format:?}")));
            }
            let mut source = source.with_format(format);
            if dead_letter {
                source = source.with_dead_letter();
            }
            (Arc::new(source) as Arc<dyn SourceFactory>, display)
        });
        self.file_read(name, pattern, source)
    }

    /// Adds a Read of files matching `pattern` from `source` — its factory and what the
    /// plan shows of it — or records why it cannot be, for [`Pipeline::run`] to report.
    pub(crate) fn file_read<O: sluice_core::Element>(
        &self,
        name: &str,
        pattern: &str,
        source: Result<FileRead, IoError>,
    ) -> PCollection<O> {
        let (payload, display) = match source {
            Ok(source) => source,
            Err(error) => {
                self.io_problem(&error);
                (Arc::new(Unusable) as Arc<dyn SourceFactory>, Vec::new())
            }
        };
        let (id, outs) = self.add_transform(
            name,
            Vec::new(),
            Payload::Read(payload),
            vec![("out".into(), sluice_core::unit::TypeOf::<O>::arc())],
        );
        self.display(id, "filePattern", pattern);
        for (key, value) in display {
            self.display(id, key, value);
        }
        PCollection::new(self, outs[0])
    }
}

impl PCollection<String> {
    /// Writes each element as a line to files `prefix-00000-of-NNNNN`, one shard per worker
    /// that wrote anything. The files appear only when the whole job succeeds. Whether the
    /// output location is writable is checked now; a problem is reported by
    /// [`Pipeline::run`] before anything runs.
    pub fn write_text(&self, name: &str, prefix: &str) {
        self.write_text_with(name, WriteText::to(prefix));
    }

    /// Writes each element as a line, named and sharded as `write` says.
    pub fn write_text_with(&self, name: &str, write: WriteText) {
        let full = self.pipeline.full_name(name);
        let shards = match (write.options.unsharded, write.options.num_shards) {
            (true, _) => "unsharded".to_string(),
            (false, Some(n)) if n > 0 => n.to_string(),
            _ => "one per worker".to_string(),
        };
        if let Some(problem) = write.problem {
            self.pipeline.io_problem(&IoError::Unwritable {
                transform: full,
                prefix: write.prefix.into(),
                reason: problem,
            });
            return;
        }
        match TextSink::in_store(
            &full,
            &write.prefix,
            write.options,
            &self.pipeline.store_options(),
        ) {
            Ok(sink) => {
                let (id, _) = self.pipeline.add_transform(
                    name,
                    vec![self.id],
                    Payload::Write(Arc::new(sink)),
                    Vec::new(),
                );
                self.pipeline.display(id, "outputPrefix", &write.prefix);
                self.pipeline.display(id, "numShards", shards);
            }
            Err(error) => self.pipeline.io_problem(&error),
        }
    }
}
