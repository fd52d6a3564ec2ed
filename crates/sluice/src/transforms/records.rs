//! Typed records in files: CSV and JSON lines, read and written with serde.
//!
//! Reads split by byte ranges like text (a record is a line; compressed files — `.gz`,
//! `.zst`, `.bz2` — are read whole), so a CSV file whose quoted fields span lines must
//! be read unsplit: compressed, or small. A record that does not decode fails the job at
//! once, naming the file, line and column; read `..._with_dead_letter` to set such
//! records aside as [`BadRecord`]s (file, offset, line, column, raw line, error)
//! instead. Writes are text shards with the text sink's atomic commit; CSV shards each
//! start with a header row.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sluice::prelude::*;
//! use sluice::transforms::records::{ReadCsv, WriteCsv};
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct Sale {
//!     region: String,
//!     amount: f64,
//! }
//! impl sluice::SerdeCoder for Sale {}
//!
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("sales.csv");
//! std::fs::write(&input, "region,amount\neast,2.5\nwest,4\n").unwrap();
//! let output = dir.path().join("out");
//! let p = Pipeline::for_test();
//! let sales = p.read_csv::<Sale>("Read", input.to_str().unwrap());
//! sales.write_csv_with("Write", WriteCsv::to(output.to_str().unwrap()).with_num_shards(1));
//! p.run().unwrap().wait_until_finish().unwrap();
//! let text = std::fs::read_to_string(dir.path().join("out-00000-of-00001.csv")).unwrap();
//! assert_eq!(text.lines().next(), Some("region,amount"));
//! assert_eq!(text.lines().count(), 3);
//! ```

use std::sync::Arc;

pub use arrow_schema::SchemaRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::unit::SourceFactory;
use sluice_core::{BoxError, Element, Permanent};
use sluice_io::TextSource;
use sluice_io::csv_batches::CsvBatchSource;
pub use sluice_io::parquet::ArrowBatch;
use sluice_io::records::{CsvLines, CsvOptions, RecordFormat, RecordSource, csv_header};
use sluice_io::text::sink::ShardOptions;
use sluice_io::text::source::{BadRecord, Compression};

use crate::dofn::{Context, DoFn, TupleTag};
use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;
use crate::transforms::text::WriteText;

/// What to read as CSV, and how (`Pipeline::read_csv_with`).
#[derive(Clone, Debug)]
pub struct ReadCsv {
    pattern: String,
    options: CsvOptions,
    compression: Option<String>,
}

impl ReadCsv {
    /// The CSV records of every file matching `pattern` (a path or a glob), with a
    /// header row naming the columns, `,`-delimited, `"`-quoted.
    pub fn from(pattern: &str) -> ReadCsv {
        ReadCsv {
            pattern: pattern.into(),
            options: CsvOptions::default(),
            compression: None,
        }
    }

    /// The files have no header row: fields are matched to the type's fields by
    /// position.
    pub fn without_header(mut self) -> ReadCsv {
        self.options.header = false;
        self
    }

    /// Fields are separated by `delimiter` (e.g. `b';'`, `b'\t'`).
    pub fn with_delimiter(mut self, delimiter: u8) -> ReadCsv {
        self.options.delimiter = delimiter;
        self
    }

    /// Fields are quoted with `quote`.
    pub fn with_quote(mut self, quote: u8) -> ReadCsv {
        self.options.quote = quote;
        self
    }

    /// Every file is stored as `compression` says (`auto` — by extension, the default —
    /// `none`, `gzip`, `zstd`, `bzip2`).
    pub fn with_compression(mut self, compression: &str) -> ReadCsv {
        self.compression = Some(compression.into());
        self
    }
}

/// What to read as JSON lines, and how (`Pipeline::read_json_with`).
#[derive(Clone, Debug)]
pub struct ReadJson {
    pattern: String,
    compression: Option<String>,
}

impl ReadJson {
    /// One JSON value per line of every file matching `pattern`; blank lines are
    /// skipped.
    pub fn from(pattern: &str) -> ReadJson {
        ReadJson {
            pattern: pattern.into(),
            compression: None,
        }
    }

    /// Every file is stored as `compression` says (`auto`, `none`, `gzip`, `zstd`,
    /// `bzip2`).
    pub fn with_compression(mut self, compression: &str) -> ReadJson {
        self.compression = Some(compression.into());
        self
    }
}

/// Where and how to write CSV (`PCollection::write_csv_with`): text shards
/// `PREFIX-SSSSS-of-NNNNN.csv`, each starting with a header row.
#[derive(Clone, Debug)]
pub struct WriteCsv {
    text: WriteText,
    options: CsvOptions,
    columns: Option<Vec<String>>,
}

impl WriteCsv {
    /// Shards named `prefix-SSSSS-of-NNNNN.csv`, the header naming the type's fields.
    pub fn to(prefix: &str) -> WriteCsv {
        WriteCsv {
            text: WriteText::to(prefix).with_suffix(".csv"),
            options: CsvOptions::default(),
            columns: None,
        }
    }

    /// Exactly `n` shards (0: the runner chooses).
    pub fn with_num_shards(mut self, n: usize) -> WriteCsv {
        self.text = self.text.with_num_shards(n);
        self
    }

    /// Appends `suffix` to every file name instead of `.csv`.
    pub fn with_suffix(mut self, suffix: &str) -> WriteCsv {
        self.text = self.text.with_suffix(suffix);
        self
    }

    /// Compresses every shard (`auto` by the suffix — e.g. `.with_suffix(".csv.gz")` —,
    /// `none`, `gzip`, `zstd`, `bzip2`).
    pub fn with_compression(mut self, compression: &str) -> WriteCsv {
        self.text = self.text.with_compression(compression);
        self
    }

    /// Fields are separated by `delimiter`.
    pub fn with_delimiter(mut self, delimiter: u8) -> WriteCsv {
        self.options.delimiter = delimiter;
        self
    }

    /// The header row names these columns (for types whose field names serde does not
    /// declare, such as tuples), or — with `header: false` via [`WriteCsv::without_header`]
    /// — no header at all.
    pub fn with_header(mut self, columns: &[&str]) -> WriteCsv {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// No header row.
    pub fn without_header(mut self) -> WriteCsv {
        self.options.header = false;
        self
    }
}

/// Sends records on and bad records to their own output.
struct SplitBad<T> {
    bad: TupleTag<BadRecord>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for SplitBad<T> {
    fn clone(&self) -> Self {
        SplitBad {
            bad: self.bad.clone(),
            _records: std::marker::PhantomData,
        }
    }
}

impl<T: Element> DoFn for SplitBad<T> {
    type In = Result<T, BadRecord>;
    type Out = T;
    fn process(
        &mut self,
        element: Result<T, BadRecord>,
        ctx: &mut Context<'_, T>,
    ) -> Result<(), BoxError> {
        match element {
            Ok(record) => ctx.emit(record),
            Err(bad) => ctx.emit_to(&self.bad, bad),
        }
        Ok(())
    }
}

/// Serializes each element as a JSON line.
struct ToJson<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Clone for ToJson<T> {
    fn clone(&self) -> Self {
        ToJson(std::marker::PhantomData)
    }
}

impl<T: Element + Serialize> DoFn for ToJson<T> {
    type In = T;
    type Out = String;
    fn process(&mut self, element: T, ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
        let line = serde_json::to_string(&element)
            .map_err(|e| Permanent::new(format!("cannot write the element as JSON: {e}")))?;
        ctx.emit(line);
        Ok(())
    }
}

/// Serializes each element as a CSV line.
struct ToCsv<T> {
    options: CsvOptions,
    lines: Option<CsvLines>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for ToCsv<T> {
    fn clone(&self) -> Self {
        ToCsv {
            options: self.options.clone(),
            lines: None,
            _records: std::marker::PhantomData,
        }
    }
}

impl<T: Element + Serialize> DoFn for ToCsv<T> {
    type In = T;
    type Out = String;
    fn process(&mut self, element: T, ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
        let options = &self.options;
        let lines = self.lines.get_or_insert_with(|| CsvLines::new(options));
        let line = lines
            .line(&element)
            .map_err(|e| Permanent::new(format!("cannot write the element as CSV: {e}")))?;
        ctx.emit(line);
        Ok(())
    }
}

impl Pipeline {
    /// The records of every CSV file matching `pattern`, with a header row naming the
    /// columns, decoded into `T` (fields matched by name). A pattern that matches nothing
    /// is reported by [`Pipeline::run`] before anything runs; a record that does not
    /// decode fails the job naming its file, line and column.
    pub fn read_csv<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        pattern: &str,
    ) -> PCollection<T> {
        self.read_csv_with(name, ReadCsv::from(pattern))
    }

    /// The CSV records of the files `read` names, read as it says.
    pub fn read_csv_with<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        read: ReadCsv,
    ) -> PCollection<T> {
        let format = RecordFormat::Csv(read.options.clone());
        self.record_read::<T, T>(
            name,
            &read.pattern,
            read.compression.as_deref(),
            format,
            false,
        )
    }

    /// The CSV rows of the files `read` names as Arrow record batches ([`ArrowBatch`]es
    /// of up to 8,192 rows) of `schema`, for code that works in Arrow (for example
    /// [`PCollection::combine_column_per_key`]). With a header row (the default) each of
    /// the schema's fields is the column of that name, found in every file's header when
    /// the pipeline is built; without one, the schema's fields are the first columns in
    /// order. Other columns are skipped. Files split by byte ranges as `read_csv`'s do; a
    /// row that does not fit the schema fails the job naming its file, line and column
    /// (there is no dead-letter output for batches: read rows with
    /// [`Pipeline::read_csv_with_dead_letter`] to set bad ones aside).
    pub fn read_csv_batches(
        &self,
        name: &str,
        read: ReadCsv,
        schema: SchemaRef,
    ) -> PCollection<ArrowBatch> {
        let full = self.full_name(name);
        let source = self
            .record_text(&full, &read.pattern, read.compression.as_deref())
            .and_then(|text| {
                let files = text.files().len().to_string();
                let source = CsvBatchSource::new(&full, text, read.options.clone(), schema)?;
                let columns: Vec<String> = source
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect();
                let display = vec![
                    ("format", "CSV (Arrow batches)".to_string()),
                    ("files", files),
                    ("columns", columns.join(", ")),
                ];
                Ok((Arc::new(source) as Arc<dyn SourceFactory>, display))
            });
        self.file_read(name, &read.pattern, source)
    }

    /// The CSV records of the files `read` names, and — instead of failing the job — the
    /// records that do not decode, as [`BadRecord`]s with file, offset, line, column,
    /// raw line and error.
    pub fn read_csv_with_dead_letter<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        read: ReadCsv,
    ) -> (PCollection<T>, PCollection<BadRecord>) {
        let format = RecordFormat::Csv(read.options.clone());
        self.split_dead_letter(name, &read.pattern, read.compression.as_deref(), format)
    }

    /// The JSON value on each line of every file matching `pattern`, decoded into `T`.
    /// A line that does not decode fails the job naming its file, line and column.
    pub fn read_json<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        pattern: &str,
    ) -> PCollection<T> {
        self.read_json_with(name, ReadJson::from(pattern))
    }

    /// The JSON lines of the files `read` names, read as it says.
    pub fn read_json_with<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        read: ReadJson,
    ) -> PCollection<T> {
        self.record_read::<T, T>(
            name,
            &read.pattern,
            read.compression.as_deref(),
            RecordFormat::JsonLines,
            false,
        )
    }

    /// The JSON lines of the files `read` names, and — instead of failing the job — the
    /// lines that do not decode, as [`BadRecord`]s.
    pub fn read_json_with_dead_letter<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        read: ReadJson,
    ) -> (PCollection<T>, PCollection<BadRecord>) {
        self.split_dead_letter(
            name,
            &read.pattern,
            read.compression.as_deref(),
            RecordFormat::JsonLines,
        )
    }

    fn split_dead_letter<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        pattern: &str,
        compression: Option<&str>,
        format: RecordFormat,
    ) -> (PCollection<T>, PCollection<BadRecord>) {
        let bad = TupleTag::<BadRecord>::new("bad_records");
        self.composite(name, |p| {
            let checked = p.record_read::<T, Result<T, BadRecord>>(
                "Read",
                pattern,
                compression,
                format,
                true,
            );
            let (records, others) = checked.par_do_with_outputs(
                "SplitBadRecords",
                SplitBad::<T> {
                    bad: bad.clone(),
                    _records: std::marker::PhantomData,
                },
                &[bad.spec()],
            );
            (records, others.get(&bad))
        })
    }

    fn record_read<T: DeserializeOwned + Element, O: Element>(
        &self,
        name: &str,
        pattern: &str,
        compression: Option<&str>,
        format: RecordFormat,
        dead_letter: bool,
    ) -> PCollection<O> {
        let full = self.full_name(name);
        let kind = format.name();
        let source = self.record_text(&full, pattern, compression).map(|text| {
            let display = vec![
                ("format", kind.to_string()),
                ("files", text.files().len().to_string()),
            ];
            let source = RecordSource::<T>::new(text, format);
            let source: Arc<dyn SourceFactory> = if dead_letter {
                Arc::new(source.with_dead_letter())
            } else {
                Arc::new(source)
            };
            (source, display)
        });
        self.file_read(name, pattern, source)
    }

    /// The files `pattern` matches, stored as `compression` says (by extension if
    /// `None`).
    fn record_text(
        &self,
        transform: &str,
        pattern: &str,
        compression: Option<&str>,
    ) -> Result<TextSource, sluice_io::IoError> {
        let compression = match compression.map(Compression::parse) {
            None => None,
            Some(Ok(c)) => c,
            Some(Err(reason)) => {
                return Err(sluice_io::IoError::BadPattern {
                    transform: transform.into(),
                    pattern: pattern.into(),
                    reason,
                });
            }
        };
        TextSource::with_store(transform, pattern, &self.store_options())
            .map(|t| t.with_compression(compression))
    }
}

impl<T: Element + Serialize> PCollection<T> {
    /// Writes each element as a JSON line to shards `prefix-SSSSS-of-NNNNN.json`, which
    /// appear only when the whole job succeeds.
    pub fn write_json(&self, name: &str, prefix: &str) {
        self.write_json_with(name, WriteText::to(prefix).with_suffix(".json"));
    }

    /// Writes each element as a JSON line, named and sharded as `write` says.
    pub fn write_json_with(&self, name: &str, write: WriteText) {
        self.pipeline.composite(name, |_| {
            self.par_do("ToJson", ToJson::<T>(std::marker::PhantomData))
                .write_text_with("Write", write);
        });
    }
}

impl<T: Element + Serialize + DeserializeOwned> PCollection<T> {
    /// Writes each element as a CSV line to shards `prefix-SSSSS-of-NNNNN.csv`, each
    /// starting with a header row naming `T`'s fields; the shards appear only when the
    /// whole job succeeds.
    pub fn write_csv(&self, name: &str, prefix: &str) {
        self.write_csv_with(name, WriteCsv::to(prefix));
    }

    /// Writes each element as a CSV line, named, sharded and laid out as `write` says.
    /// A type whose field names serde does not declare (a tuple) needs
    /// [`WriteCsv::with_header`] or [`WriteCsv::without_header`]; otherwise the problem
    /// is reported by [`Pipeline::run`] before anything runs.
    pub fn write_csv_with(&self, name: &str, write: WriteCsv) {
        let columns: Option<Vec<String>> = write.columns.clone().or_else(|| {
            sluice_io::records::struct_fields::<T>()
                .map(|fields| fields.iter().map(|f| f.to_string()).collect())
        });
        let header = match (write.options.header, columns) {
            (false, _) => None,
            (true, Some(columns)) => {
                let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                Some(csv_header(&write.options, &columns))
            }
            (true, None) => {
                self.pipeline.io_problem(&sluice_io::IoError::Unwritable {
                    transform: self.pipeline.full_name(name),
                    prefix: write.text.prefix().into(),
                    reason: format!(
                        "{} has no field names for a CSV header; name the columns with WriteCsv::with_header, or write WriteCsv::without_header",
                        std::any::type_name::<T>()
                    ),
                });
                return;
            }
        };
        let text = write.text.with_options(|options: &mut ShardOptions| {
            options.header = header;
        });
        let options = write.options;
        self.pipeline.composite(name, |_| {
            self.par_do(
                "ToCsv",
                ToCsv::<T> {
                    options,
                    lines: None,
                    _records: std::marker::PhantomData,
                },
            )
            .write_text_with("Write", text);
        });
    }
}
