//! Parquet files: typed rows in and out, through Arrow (`parquet`'s Arrow reader and
//! writer; rows converted to and from record batches by `serde_arrow`).
//!
//! A read splits by row group, so the row groups of one file spread over workers; only
//! the columns the type has are decoded. The type's fields are checked against every
//! file's columns when the pipeline is built (missing columns, incompatible types). A
//! write is a sharded sink ([`crate::TextSink`] with [`ParquetShards`]): each worker
//! writes its own file, row groups of a set number of rows, and a fixed shard count is
//! reached at commit by rewriting rows into that many files. Filters
//! ([`ParquetFilter`]) prune row groups by their statistics and rows by a row filter;
//! Arrow batches are written as they are by [`BatchShards`].

use std::any::Any;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, FieldRef, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions,
    ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use sluice_core::error::FileError;
use sluice_core::receiver::{AnyPort, AnyReceiver, Port, TypeMismatch};
use sluice_core::unit::{
    SinkBuffer, SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, Element, ExecError, Receiver, UnitResult, WindowedValue};

use crate::error::IoError;
pub use crate::parquet_filter::{FilterOp, FilterValue, ParquetFilter};
use crate::storage::{Store, StoreOptions};
use crate::text::sink::{ShardFormat, ShardWriter};
use crate::text::source::TextSource;
use parquet::errors::ParquetError;

/// Rows decoded per record batch.
const BATCH_ROWS: usize = 8192;

/// The Arrow fields of `T`, traced from its serde implementation (strings as `Utf8`).
pub fn fields_of<T: DeserializeOwned>() -> Result<Vec<FieldRef>, String> {
    Vec::<FieldRef>::from_type::<T>(
        TracingOptions::default()
            .strings_as_large_utf8(false)
            .allow_null_fields(true),
    )
    .map_err(|e| {
        format!(
            "{} cannot be a Parquet row: {e}",
            std::any::type_name::<T>()
        )
    })
}

/// Which kind of value a column holds, for checking a type against a file (or a
/// database column).
pub(crate) fn kind(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Boolean => "boolean",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "integer",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary",
        DataType::Null => "null",
        _ => "other",
    }
}

/// Compression of written Parquet files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParquetCompression {
    /// Uncompressed pages.
    None,
    /// Snappy (the default, as most writers do).
    #[default]
    Snappy,
    /// Zstandard.
    Zstd,
}

impl ParquetCompression {
    /// By name: `none`, `snappy`, `zstd`.
    pub fn parse(name: &str) -> Result<ParquetCompression, String> {
        match name.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(ParquetCompression::None),
            "snappy" => Ok(ParquetCompression::Snappy),
            "zstd" => Ok(ParquetCompression::Zstd),
            other => Err(format!(
                "unknown Parquet compression '{other}': use none, snappy or zstd"
            )),
        }
    }

    /// Writer properties: pages compressed so, row groups of at most `row_group_rows`
    /// rows (at least one).
    fn properties(self, row_group_rows: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.codec())
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build()
    }

    fn codec(self) -> parquet::basic::Compression {
        match self {
            ParquetCompression::None => parquet::basic::Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => parquet::basic::Compression::SNAPPY,
            ParquetCompression::Zstd => {
                parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::default())
            }
        }
    }
}

/// One row group of one file.
#[derive(Clone, Debug)]
pub struct ParquetSplit {
    /// The file.
    pub path: PathBuf,
    /// The store it is in.
    pub store: Store,
    /// The row group's index in the file.
    pub row_group: usize,
    /// Its compressed size.
    pub bytes: u64,
}

impl SourceSplit for ParquetSplit {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn size_bytes(&self) -> Option<u64> {
        Some(self.bytes)
    }
}

/// The rows of every Parquet file matching a pattern: as serde types
/// ([`ParquetSource::new`]) or as Arrow record batches ([`ParquetSource::batches`]).
pub struct ParquetSource<O> {
    splits: Vec<ParquetSplit>,
    /// The columns read (`None`: all).
    columns: Option<Vec<String>>,
    /// What a record batch becomes.
    decode: fn(RecordBatch) -> Result<Vec<O>, String>,
    /// Only rows for which every one holds are read.
    filters: Arc<Vec<ParquetFilter>>,
    /// Row groups their statistics ruled out.
    skipped: usize,
    /// String columns are read as dictionary arrays.
    dictionaries: bool,
}

impl<O> std::fmt::Debug for ParquetSource<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("row_groups", &self.splits.len())
            .field("columns", &self.columns)
            .finish()
    }
}

impl<T: DeserializeOwned + Element> ParquetSource<T> {
    /// Matches `pattern` now and reads every file's footer: a file that is not Parquet,
    /// or whose columns do not fit `T`, fails the pipeline at construction. Only `T`'s
    /// columns are read.
    /// `pattern` may be an object-store URL, reached as `store` says.
    pub fn new(
        transform: &str,
        pattern: &str,
        store: &StoreOptions,
    ) -> Result<ParquetSource<T>, IoError> {
        ParquetSource::filtered(transform, pattern, store, Vec::new())
    }

    /// As [`ParquetSource::new`], reading only the rows for which every filter holds
    /// (each filter is checked against every file's columns now).
    pub fn filtered(
        transform: &str,
        pattern: &str,
        store: &StoreOptions,
        filters: Vec<ParquetFilter>,
    ) -> Result<ParquetSource<T>, IoError> {
        let text = TextSource::with_store(transform, pattern, store)?;
        let fields = fields_of::<T>().map_err(|reason| IoError::Schema {
            transform: transform.into(),
            path: PathBuf::from(pattern),
            reason,
        })?;
        let (splits, skipped) = row_groups(transform, &text, &filters, |schema| {
            check_schema(schema, &fields)
        })?;
        Ok(ParquetSource {
            splits,
            columns: Some(fields.iter().map(|f| f.name().clone()).collect()),
            decode: |batch| serde_arrow::from_record_batch(&batch).map_err(|e| e.to_string()),
            filters: Arc::new(filters),
            skipped,
            dictionaries: false,
        })
    }
}

impl ParquetSource<ArrowBatch> {
    /// The record batches of the files `pattern` matches, as [`ArrowBatch`]es; with
    /// `columns`, only those are read (each must be a column of every file).
    /// Only rows for which every one of `filters` holds are read.
    pub fn batches(
        transform: &str,
        pattern: &str,
        columns: Option<Vec<String>>,
        filters: Vec<ParquetFilter>,
        store: &StoreOptions,
    ) -> Result<ParquetSource<ArrowBatch>, IoError> {
        let text = TextSource::with_store(transform, pattern, store)?;
        let (splits, skipped) = row_groups(transform, &text, &filters, |schema| {
            match columns
                .iter()
                .flatten()
                .find(|c| schema.field_with_name(c).is_err())
            {
                Some(missing) => Err(format!("it has no column '{missing}'")),
                None => Ok(()),
            }
        })?;
        Ok(ParquetSource {
            splits,
            columns,
            decode: |batch| Ok(vec![ArrowBatch(batch)]),
            filters: Arc::new(filters),
            skipped,
            dictionaries: false,
        })
    }

    /// String columns come as dictionary arrays (`Dictionary(Int32, Utf8)`): the
    /// values of a Parquet column chunk's dictionary once, and an index per row, instead
    /// of every row's string copied out.
    pub fn with_string_dictionaries(mut self) -> ParquetSource<ArrowBatch> {
        self.dictionaries = true;
        self
    }
}

impl<O> ParquetSource<O> {
    /// The row groups found, one split each.
    pub fn row_groups(&self) -> usize {
        self.splits.len()
    }

    /// The row groups not read because their statistics show no row can match.
    pub fn row_groups_skipped(&self) -> usize {
        self.skipped
    }
}

/// Every field of the type is a column of the file, of a compatible kind.
fn check_schema(file: &SchemaRef, fields: &[FieldRef]) -> Result<(), String> {
    for field in fields {
        let Ok(column) = file.field_with_name(field.name()) else {
            let names: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(format!(
                "it has no column '{}' (its columns: {})",
                field.name(),
                names.join(", ")
            ));
        };
        let (want, have) = (kind(field.data_type()), kind(column.data_type()));
        if want != have && want != "null" && !(want == "float" && have == "integer") {
            return Err(format!(
                "column '{}' holds {} ({}), the type's field is {} ({})",
                field.name(),
                have,
                column.data_type(),
                want,
                field.data_type()
            ));
        }
    }
    Ok(())
}

/// Reads the footer of every file `text` matched: a split per row group that `filters`
/// do not rule out by its statistics (and how many they did). A file that is not
/// Parquet, or whose schema `check` or a filter refuses, is an error naming it.
fn row_groups(
    transform: &str,
    text: &TextSource,
    filters: &[ParquetFilter],
    check: impl Fn(&SchemaRef) -> Result<(), String>,
) -> Result<(Vec<ParquetSplit>, usize), IoError> {
    let mut splits = Vec::new();
    let mut skipped = 0;
    for file in text.files() {
        let path = &file.path;
        let schema_error = |reason: String| IoError::Schema {
            transform: transform.into(),
            path: path.clone(),
            reason,
        };
        let opened = file
            .store
            .chunks(path)
            .map_err(|source| IoError::Unreadable {
                transform: transform.into(),
                path: path.clone(),
                source,
            })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(opened)
            .map_err(|e| schema_error(format!("not a Parquet file: {e}")))?;
        check(builder.schema()).map_err(&schema_error)?;
        for filter in filters {
            filter.check(builder.schema()).map_err(&schema_error)?;
        }
        for (i, group) in builder.metadata().row_groups().iter().enumerate() {
            if !filters.iter().all(|f| f.may_match(group, builder.schema())) {
                skipped += 1;
                continue;
            }
            splits.push(ParquetSplit {
                path: path.clone(),
                store: file.store.clone(),
                row_group: i,
                bytes: group.compressed_size().max(0) as u64,
            });
        }
    }
    Ok((splits, skipped))
}

/// The record batches of `split`'s row group, with only `columns` if given. A file that
/// cannot be read as Parquet fails the job at once, naming it.
fn row_group_batches(
    ctx: &UnitContext,
    split: &dyn SourceSplit,
    columns: Option<&[String]>,
    filters: &[ParquetFilter],
    dictionaries: bool,
) -> Result<
    (
        ParquetSplit,
        parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    ),
    Box<ExecError>,
> {
    let Some(split) = split.as_any().downcast_ref::<ParquetSplit>() else {
        return Err(ctx.error("internal error: a Parquet reader was given another source's split"));
    };
    let path = &split.path;
    let file = split
        .store
        .chunks(path)
        .map_err(|e| ctx.error(FileError::new("open", path, e)))?;
    let unreadable =
        |e: ParquetError| corrupt(ctx, split, &e, matches!(e, ParquetError::External(_)));
    let mut builder = if dictionaries {
        let options = ArrowReaderOptions::new();
        let metadata = ArrowReaderMetadata::load(&file, options.clone()).map_err(unreadable)?;
        let fields: Vec<arrow_schema::Field> = metadata
            .schema()
            .fields()
            .iter()
            .map(|f| match kind(f.data_type()) {
                "string" => f.as_ref().clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                )),
                _ => f.as_ref().clone(),
            })
            .collect();
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        let metadata =
            ArrowReaderMetadata::try_new(metadata.metadata().clone(), options.with_schema(schema))
                .map_err(unreadable)?;
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
    } else {
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?
    };
    if let Some(columns) = columns {
        let mask =
            ProjectionMask::columns(builder.parquet_schema(), columns.iter().map(String::as_str));
        builder = builder.with_projection(mask);
    }
    if !filters.is_empty() {
        let predicates = filters
            .iter()
            .map(|filter| {
                let mask =
                    ProjectionMask::columns(builder.parquet_schema(), [filter.column.as_str()]);
                let filter = filter.clone();
                Box::new(ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                    filter.evaluate(batch.column(0))
                })) as Box<dyn ArrowPredicate>
            })
            .collect();
        builder = builder.with_row_filter(RowFilter::new(predicates));
    }
    let batches = builder
        .with_row_groups(vec![split.row_group])
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(unreadable)?;
    Ok((split.clone(), batches))
}

/// A row group that cannot be read: no retry can mend the file — unless the store
/// failed to hand over its bytes (a network error), which fails the bundle (retried).
fn corrupt(
    ctx: &UnitContext,
    split: &ParquetSplit,
    e: &dyn std::fmt::Display,
    transient: bool,
) -> Box<ExecError> {
    if transient {
        return ctx.error(format!(
            "{}, row group {}: {e}",
            split.path.display(),
            split.row_group
        ));
    }
    ExecError::permanent(
        ctx.transform.clone(),
        format!(
            "{}, row group {}: {e}; no retry can read it. Fix or remove the file",
            split.path.display(),
            split.row_group
        ),
    )
}

impl<O: Element> SourceFactory for ParquetSource<O> {
    fn splits(&self, _hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        Ok(self
            .splits
            .iter()
            .map(|s| Arc::new(s.clone()) as Arc<dyn SourceSplit>)
            .collect())
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(Box::new(ParquetReader::<O> {
            ctx: ctx.clone(),
            columns: self.columns.clone(),
            filters: self.filters.clone(),
            dictionaries: self.dictionaries,
            decode: self.decode,
            output: None,
            bytes_read: 0,
        }))
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.splits.iter().map(|s| s.bytes).sum())
    }
}

struct ParquetReader<O> {
    ctx: UnitContext,
    columns: Option<Vec<String>>,
    filters: Arc<Vec<ParquetFilter>>,
    dictionaries: bool,
    decode: fn(RecordBatch) -> Result<Vec<O>, String>,
    output: Option<Port<O>>,
    bytes_read: u64,
}

impl<O: Element> SourceReader for ParquetReader<O> {
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
        let (split, batches) = row_group_batches(
            &self.ctx,
            split,
            self.columns.as_deref(),
            &self.filters,
            self.dictionaries,
        )?;
        let path = &split.path;
        let mut row = 0u64;
        for batch in batches {
            let batch = batch.map_err(|e| {
                corrupt(
                    &self.ctx,
                    &split,
                    &e,
                    matches!(e, arrow_schema::ArrowError::ExternalError(_)),
                )
            })?;
            let rows = batch.num_rows() as u64;
            let values = (self.decode)(batch).map_err(|e| {
                ExecError::permanent(
                    self.ctx.transform.clone(),
                    format!(
                        "{}, row group {}, rows {row}..{}: the rows do not decode as {}: {e}",
                        path.display(),
                        split.row_group,
                        row + rows,
                        std::any::type_name::<O>()
                    ),
                )
            })?;
            let output = attached(&mut self.output, &self.ctx)?;
            // A row's index in the row group (a batch's first, for Arrow batches).
            for (i, value) in values.into_iter().enumerate() {
                self.ctx
                    .position
                    .store(row + i as u64, std::sync::atomic::Ordering::Relaxed);
                output.emit(WindowedValue::in_global_window(value))?;
            }
            row += rows;
        }
        self.bytes_read += split.bytes;
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_read)
    }
}

/// An Arrow record batch as a pipeline element, for users who work in Arrow. Its coder
/// is the Arrow IPC stream format (schema and batch), length-prefixed.
#[derive(Clone, Debug)]
pub struct ArrowBatch(pub RecordBatch);

impl sluice_core::Coder for ArrowBatch {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), sluice_core::CoderError> {
        let encode_error = |e: &dyn std::fmt::Display| sluice_core::CoderError {
            action: "encode",
            type_name: "ArrowBatch",
            reason: e.to_string(),
        };
        let mut ipc = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut ipc, &self.0.schema())
            .map_err(|e| encode_error(&e))?;
        writer.write(&self.0).map_err(|e| encode_error(&e))?;
        writer.finish().map_err(|e| encode_error(&e))?;
        drop(writer);
        (ipc.len() as u64).encode_to(out)?;
        out.extend_from_slice(&ipc);
        Ok(())
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, sluice_core::CoderError> {
        let len = u64::decode_from(input)? as usize;
        if input.len() < len {
            return Err(sluice_core::CoderError::truncated("ArrowBatch"));
        }
        let (ipc, rest) = input.split_at(len);
        *input = rest;
        let decode_error = |e: &dyn std::fmt::Display| {
            sluice_core::CoderError::decode("ArrowBatch", e.to_string())
        };
        let mut reader =
            arrow_ipc::reader::StreamReader::try_new(ipc, None).map_err(|e| decode_error(&e))?;
        match reader.next() {
            Some(Ok(batch)) => Ok(ArrowBatch(batch)),
            Some(Err(e)) => Err(decode_error(&e)),
            None => Err(decode_error(&"the stream holds no batch")),
        }
    }

    fn is_deterministic() -> bool {
        false
    }
}

/// Writes elements as Parquet rows: the shard format of a Parquet sink.
pub struct ParquetShards<T> {
    fields: Vec<FieldRef>,
    properties: WriterProperties,
    row_group_rows: usize,
    _rows: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ParquetShards<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetShards")
            .field("columns", &self.fields.len())
            .field("row_group_rows", &self.row_group_rows)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Element> ParquetShards<T> {
    /// Rows of `T` (its schema traced from its serde implementation), in row groups of
    /// `row_group_rows` rows, pages compressed with `compression`.
    pub fn new(row_group_rows: usize, compression: ParquetCompression) -> Result<Self, String> {
        let row_group_rows = row_group_rows.max(1);
        Ok(ParquetShards {
            fields: fields_of::<T>()?,
            properties: compression.properties(row_group_rows),
            row_group_rows,
            _rows: PhantomData,
        })
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(arrow_schema::Schema::new(self.fields.clone()))
    }

    fn batch(&self, rows: &[T]) -> std::io::Result<RecordBatch> {
        serde_arrow::to_record_batch(&self.fields, &rows).map_err(std::io::Error::other)
    }
}

/// Encodes each element with its coder into the bundle's bytes.
struct RowUnit<T> {
    buffer: SinkBuffer,
    _rows: PhantomData<fn() -> T>,
}

impl<T: Element> Receiver<T> for RowUnit<T> {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, element: WindowedValue<T>) -> UnitResult {
        self.buffer
            .append::<ExecError>(|out| {
                element
                    .value
                    .encode_to(out)
                    .map_err(|e| *ExecError::new("Parquet write", e))
            })
            .map_err(Box::new)
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

struct RowWriter<T: Serialize + DeserializeOwned + Element> {
    shards: Arc<ParquetShards<T>>,
    writer: ArrowWriter<File>,
    rows: Vec<T>,
}

impl<T: Serialize + DeserializeOwned + Element> RowWriter<T> {
    fn flush_rows(&mut self) -> std::io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = self.shards.batch(&self.rows)?;
        self.rows.clear();
        self.writer.write(&batch).map_err(std::io::Error::other)
    }
}

impl<T: Serialize + DeserializeOwned + Element> ShardWriter for RowWriter<T> {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let row = T::decode_from(&mut bytes).map_err(std::io::Error::other)?;
            self.rows.push(row);
            if self.rows.len() >= self.shards.row_group_rows.min(BATCH_ROWS * 8) {
                self.flush_rows()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> std::io::Result<File> {
        self.flush_rows()?;
        self.writer.into_inner().map_err(std::io::Error::other)
    }
}

/// A shareable handle on a shard format (the sink keeps it in an `Arc`).
pub struct ParquetFormat<T: Serialize + DeserializeOwned + Element>(pub Arc<ParquetShards<T>>);

impl<T: Serialize + DeserializeOwned + Element> std::fmt::Debug for ParquetFormat<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize + DeserializeOwned + Element> ShardFormat for ParquetFormat<T> {
    fn unit(&self, _ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<T>(Box::new(RowUnit::<T> {
            buffer,
            _rows: PhantomData,
        })))
    }

    fn writer(&self, _path: &Path, file: File) -> std::io::Result<Box<dyn ShardWriter>> {
        let writer = ArrowWriter::try_new(file, self.0.schema(), Some(self.0.properties.clone()))
            .map_err(std::io::Error::other)?;
        Ok(Box::new(RowWriter {
            shards: Arc::clone(&self.0),
            writer,
            rows: Vec::new(),
        }))
    }

    fn redivide(
        &self,
        files: &[PathBuf],
        count: usize,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, FileError> {
        redivide(files, count, dir, &self.0.schema(), &self.0.properties)
    }
}

/// Rewrites the rows of the Parquet `files` into `count` shards under `dir` (`schema`,
/// written with `properties`), in order, about the same number of rows each.
fn redivide(
    files: &[PathBuf],
    count: usize,
    dir: &Path,
    schema: &SchemaRef,
    properties: &WriterProperties,
) -> Result<Vec<PathBuf>, FileError> {
    let mut total = 0u64;
    for f in files {
        let opened = File::open(f).map_err(|e| FileError::new("open", f, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(opened)
            .map_err(|e| FileError::new("read", f, std::io::Error::other(e)))?;
        total += builder.metadata().file_metadata().num_rows().max(0) as u64;
    }
    let mut shards = Vec::with_capacity(count);
    let mut writers = Vec::with_capacity(count);
    for i in 0..count {
        let path = dir.join(format!("shard-{i:05}"));
        let file = File::create(&path).map_err(|e| FileError::new("create", &path, e))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties.clone()))
            .map_err(|e| FileError::new("write", &path, std::io::Error::other(e)))?;
        writers.push(writer);
        shards.push(path);
    }
    // Shard i takes rows [i * total / count, (i + 1) * total / count).
    let mut row = 0u64;
    for f in files {
        let opened = File::open(f).map_err(|e| FileError::new("open", f, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(opened)
            .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
            .map_err(|e| FileError::new("read", f, std::io::Error::other(e)))?;
        for batch in reader {
            let batch = batch.map_err(|e| FileError::new("read", f, std::io::Error::other(e)))?;
            let mut at = 0usize;
            while at < batch.num_rows() {
                let shard = ((row * count as u64) / total.max(1)).min(count as u64 - 1) as usize;
                let shard_end = (shard as u64 + 1) * total / count as u64;
                let take = ((shard_end - row) as usize)
                    .min(batch.num_rows() - at)
                    .max(1);
                writers[shard].write(&batch.slice(at, take)).map_err(|e| {
                    FileError::new("write", &shards[shard], std::io::Error::other(e))
                })?;
                at += take;
                row += take as u64;
            }
        }
    }
    for (writer, path) in writers.into_iter().zip(&shards) {
        let file = writer
            .into_inner()
            .map_err(|e| FileError::new("write", path, std::io::Error::other(e)))?;
        file.sync_all()
            .map_err(|e| FileError::new("sync", path, e))?;
    }
    Ok(shards)
}

/// Writes Arrow record batches as they are: the shard format of a Parquet sink of
/// [`ArrowBatch`]es, with the schema the user gives (every batch must fit it).
#[derive(Debug)]
pub struct BatchShards {
    schema: SchemaRef,
    properties: WriterProperties,
}

impl BatchShards {
    /// Batches of `schema`, in row groups of at most `row_group_rows` rows, pages
    /// compressed with `compression`.
    pub fn new(schema: SchemaRef, row_group_rows: usize, compression: ParquetCompression) -> Self {
        BatchShards {
            schema,
            properties: compression.properties(row_group_rows),
        }
    }
}

struct BatchWriter {
    schema: SchemaRef,
    writer: ArrowWriter<File>,
}

impl ShardWriter for BatchWriter {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let ArrowBatch(batch) = <ArrowBatch as sluice_core::Coder>::decode_from(&mut bytes)
                .map_err(std::io::Error::other)?;
            // The declared schema checks the batch's column types, lengths and nulls.
            let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "a record batch does not fit the schema given to the sink ({}): {e}",
                        describe_schema(&self.schema)
                    ))
                })?;
            self.writer.write(&batch).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> std::io::Result<File> {
        self.writer.into_inner().map_err(std::io::Error::other)
    }
}

/// `name: type` of each field, for messages.
fn describe_schema(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ShardFormat for BatchShards {
    fn unit(&self, _ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<ArrowBatch>(Box::new(RowUnit::<
            ArrowBatch,
        > {
            buffer,
            _rows: PhantomData,
        })))
    }

    fn writer(&self, _path: &Path, file: File) -> std::io::Result<Box<dyn ShardWriter>> {
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
            .map_err(std::io::Error::other)?;
        Ok(Box::new(BatchWriter {
            schema: self.schema.clone(),
            writer,
        }))
    }

    fn redivide(
        &self,
        files: &[PathBuf],
        count: usize,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, FileError> {
        redivide(files, count, dir, &self.schema, &self.properties)
    }
}
