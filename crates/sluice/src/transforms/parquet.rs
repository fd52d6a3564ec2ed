//! Parquet files in and out, as serde types.
//!
//! A read splits by row group (the row groups of one file spread over workers) and
//! decodes only the columns the type has; every file's columns are checked against the
//! type when the pipeline is built. A write makes shards `PREFIX-SSSSS-of-NNNNN.parquet`
//! with the text sink's atomic commit, the schema traced from the type.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sluice::prelude::*;
//! use sluice::transforms::parquet::WriteParquet;
//!
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! struct Total {
//!     region: String,
//!     total: f64,
//! }
//! impl sluice::SerdeCoder for Total {}
//!
//! let dir = tempfile::tempdir().unwrap();
//! let prefix = dir.path().join("totals");
//! let p = Pipeline::for_test();
//! p.create("Totals", vec![Total { region: "east".into(), total: 2.5 }])
//!     .write_parquet_with("Write", WriteParquet::to(prefix.to_str().unwrap()).with_num_shards(1));
//! p.run().unwrap().wait_until_finish().unwrap();
//!
//! let p = Pipeline::for_test();
//! let read = p
//!     .read_parquet::<Total>("Read", &format!("{}-*.parquet", prefix.display()))
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(read.values(), [Total { region: "east".into(), total: 2.5 }]);
//! ```

use std::sync::Arc;

pub use arrow_schema::SchemaRef;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::Element;
use sluice_core::unit::SourceFactory;
pub use sluice_io::parquet::{ArrowBatch, ParquetFilter};
use sluice_io::parquet::{
    BatchShards, ParquetCompression, ParquetFormat, ParquetShards, ParquetSource,
};
use sluice_io::text::sink::ShardFormat;
use sluice_io::{IoError, TextSink};
use sluice_plan::Payload;
use sluice_plan::graph::PCollectionId;

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;
use crate::transforms::text::WriteText;

/// Where and how to write Parquet (`PCollection::write_parquet_with`).
#[derive(Clone, Debug)]
pub struct WriteParquet {
    text: WriteText,
    row_group_rows: usize,
    compression: String,
}

impl WriteParquet {
    /// Shards `prefix-SSSSS-of-NNNNN.parquet`, one per worker that wrote anything, row
    /// groups of up to 1,048,576 rows, Snappy-compressed pages.
    pub fn to(prefix: &str) -> WriteParquet {
        WriteParquet {
            text: WriteText::to(prefix).with_suffix(".parquet"),
            row_group_rows: 1 << 20,
            compression: "snappy".into(),
        }
    }

    /// Exactly `n` shards (rows redivided at commit when the workers wrote another
    /// number of files); 0 lets the runner choose.
    pub fn with_num_shards(mut self, n: usize) -> WriteParquet {
        self.text = self.text.with_num_shards(n);
        self
    }

    /// Row groups of at most `rows` rows (the unit a read splits by).
    pub fn with_row_group_rows(mut self, rows: usize) -> WriteParquet {
        self.row_group_rows = rows;
        self
    }

    /// Page compression: `snappy` (default), `zstd` or `none`.
    pub fn with_compression(mut self, compression: &str) -> WriteParquet {
        self.compression = compression.into();
        self
    }
}

impl Pipeline {
    /// The rows of every Parquet file matching `pattern`, as `T`s: `T`'s fields are
    /// matched to columns by name (other columns are not decoded). A pattern that matches
    /// nothing, a file that is not Parquet, or one whose columns do not fit `T` is
    /// reported by [`Pipeline::run`] before anything runs.
    pub fn read_parquet<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        pattern: &str,
    ) -> PCollection<T> {
        self.read_parquet_filtered(name, pattern, &[])
    }

    /// As [`Pipeline::read_parquet`], reading only the rows for which every filter
    /// holds (`ParquetFilter::gt("amount", 100.0)`, `::eq("region", "east")`, …; a NULL
    /// never matches): row groups whose statistics rule them out are not read, and in
    /// the others the filter columns are decoded first and only matching rows in full.
    /// A filter on a column a file lacks, or comparing it with a constant of another
    /// kind, is reported by [`Pipeline::run`] before anything runs.
    pub fn read_parquet_filtered<T: DeserializeOwned + Element>(
        &self,
        name: &str,
        pattern: &str,
        filters: &[ParquetFilter],
    ) -> PCollection<T> {
        let full = self.full_name(name);
        let source =
            ParquetSource::<T>::filtered(&full, pattern, &self.store_options(), filters.to_vec())
                .map(|source| {
                    let display = read_display("Parquet", filters, &source);
                    (Arc::new(source) as Arc<dyn SourceFactory>, display)
                });
        self.file_read(name, pattern, source)
    }
}

impl Pipeline {
    /// The record batches of every Parquet file matching `pattern`, as Arrow
    /// [`ArrowBatch`]es (up to 8,192 rows each; a split per row group), for code that
    /// works in Arrow. With `columns`, only those columns are read.
    pub fn read_parquet_batches(
        &self,
        name: &str,
        pattern: &str,
        columns: Option<&[&str]>,
    ) -> PCollection<ArrowBatch> {
        self.read_parquet_batches_filtered(name, pattern, columns, &[])
    }

    /// As [`Pipeline::read_parquet_batches`], with only the rows for which every filter
    /// holds (see [`Pipeline::read_parquet_filtered`]); a batch may hold fewer rows.
    pub fn read_parquet_batches_filtered(
        &self,
        name: &str,
        pattern: &str,
        columns: Option<&[&str]>,
        filters: &[ParquetFilter],
    ) -> PCollection<ArrowBatch> {
        let mut read = ReadParquetBatches::from(pattern).with_filters(filters);
        if let Some(columns) = columns {
            read = read.with_columns(columns);
        }
        self.read_parquet_batches_with(name, read)
    }

    /// The record batches of the Parquet files `read` names, read as it says.
    pub fn read_parquet_batches_with(
        &self,
        name: &str,
        read: ReadParquetBatches,
    ) -> PCollection<ArrowBatch> {
        let full = self.full_name(name);
        let source = ParquetSource::batches(
            &full,
            &read.pattern,
            read.columns,
            read.filters.clone(),
            &self.store_options(),
        )
        .map(|source| {
            let source = if read.dictionaries {
                source.with_string_dictionaries()
            } else {
                source
            };
            let display = read_display("Parquet (Arrow batches)", &read.filters, &source);
            (Arc::new(source) as Arc<dyn SourceFactory>, display)
        });
        self.file_read(name, &read.pattern, source)
    }
}

/// What to read as Arrow batches from Parquet, and how
/// (`Pipeline::read_parquet_batches_with`).
#[derive(Clone, Debug)]
pub struct ReadParquetBatches {
    pattern: String,
    columns: Option<Vec<String>>,
    filters: Vec<ParquetFilter>,
    dictionaries: bool,
}

impl ReadParquetBatches {
    /// Every column of every row of the files matching `pattern`.
    pub fn from(pattern: &str) -> ReadParquetBatches {
        ReadParquetBatches {
            pattern: pattern.into(),
            columns: None,
            filters: Vec::new(),
            dictionaries: false,
        }
    }

    /// Only these columns (each must be a column of every file).
    pub fn with_columns(mut self, columns: &[&str]) -> ReadParquetBatches {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }

    /// Only the rows for which every filter holds (see
    /// [`Pipeline::read_parquet_filtered`]).
    pub fn with_filters(mut self, filters: &[ParquetFilter]) -> ReadParquetBatches {
        self.filters = filters.to_vec();
        self
    }

    /// String columns as dictionary arrays (`Dictionary(Int32, Utf8)`): each column
    /// chunk's distinct strings once and an index per row, instead of every row's string
    /// copied out — faster for keys with repeats, and what
    /// [`PCollection::combine_column_per_key`] combines fastest.
    pub fn with_string_dictionaries(mut self) -> ReadParquetBatches {
        self.dictionaries = true;
        self
    }
}

impl<T: Element + Serialize + DeserializeOwned> PCollection<T> {
    /// Writes the elements as Parquet rows to shards `prefix-SSSSS-of-NNNNN.parquet`,
    /// which appear only when the whole job succeeds; the schema is traced from `T`.
    pub fn write_parquet(&self, name: &str, prefix: &str) {
        self.write_parquet_with(name, WriteParquet::to(prefix));
    }

    /// Writes the elements as Parquet rows, as `write` says.
    pub fn write_parquet_with(&self, name: &str, write: WriteParquet) {
        let format = ParquetCompression::parse(&write.compression)
            .and_then(|c| ParquetShards::<T>::new(write.row_group_rows, c))
            .map(|shards| Arc::new(ParquetFormat(Arc::new(shards))) as Arc<dyn ShardFormat>);
        add_parquet_sink(&self.pipeline, self.id, name, &write, format);
    }
}

impl PCollection<ArrowBatch> {
    /// Writes Arrow record batches as they are to Parquet shards, as `write` says (the
    /// shard count, row-group size and compression apply), for code that works in Arrow.
    /// Every batch must fit `schema` (column names, types and nullability, in order); a
    /// batch that does not fails the job naming the transform and the schema, and
    /// nothing is written.
    pub fn write_parquet_batches(&self, name: &str, write: WriteParquet, schema: SchemaRef) {
        let format = ParquetCompression::parse(&write.compression).map(|c| {
            Arc::new(BatchShards::new(schema, write.row_group_rows, c)) as Arc<dyn ShardFormat>
        });
        add_parquet_sink(&self.pipeline, self.id, name, &write, format);
    }
}

/// What the plan shows of a Parquet read: its format, row groups and filters.
fn read_display<O>(
    format: &str,
    filters: &[ParquetFilter],
    source: &ParquetSource<O>,
) -> Vec<(&'static str, String)> {
    let mut shown = vec![
        ("format", format.to_string()),
        ("rowGroups", source.row_groups().to_string()),
    ];
    if !filters.is_empty() {
        let each: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        shown.push(("filter", each.join(" AND ")));
        shown.push(("rowGroupsSkipped", source.row_groups_skipped().to_string()));
    }
    shown
}

/// Adds a Parquet sink of `input` writing shards of `format`, or reports why not.
fn add_parquet_sink(
    pipeline: &Pipeline,
    input: PCollectionId,
    name: &str,
    write: &WriteParquet,
    format: Result<Arc<dyn ShardFormat>, String>,
) {
    let full = pipeline.full_name(name);
    let problem = |reason: String| IoError::Unwritable {
        transform: full.clone(),
        prefix: write.text.prefix().into(),
        reason,
    };
    let sink = format.map_err(problem).and_then(|format| {
        let (prefix, options) = write.text.clone().into_parts();
        TextSink::in_store(&full, &prefix, options, &pipeline.store_options())
            .map(|s| s.with_format(format))
    });
    match sink {
        Ok(sink) => {
            let (id, _) = pipeline.add_transform(
                name,
                vec![input],
                Payload::Write(Arc::new(sink)),
                Vec::new(),
            );
            pipeline.display(id, "outputPrefix", write.text.prefix());
            pipeline.display(id, "format", "Parquet");
        }
        Err(error) => pipeline.io_problem(&error),
    }
}
