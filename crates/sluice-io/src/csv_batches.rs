//! CSV files read as Arrow record batches (`arrow-csv`'s decoder), for code that works
//! in Arrow.
//!
//! The columns and their types come from an Arrow schema the user gives. With a header
//! row, each field is found by name in every file's header when the pipeline is built
//! (a missing column fails it then, naming the file); without one, the schema's fields
//! are the files' first columns, in order. Other columns are skipped, not converted.
//! Files split by byte ranges as text does (a split decodes the records whose line
//! starts in it), so the same rule holds: quoted fields spanning lines need an unsplit
//! file. A row that does not fit the schema fails the job at once with its file, line
//! and column — no retry can mend the input.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_csv::reader::Decoder;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use sluice_core::error::FileError;
use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::unit::{
    SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, ExecError, UnitResult, WindowedValue};

use crate::error::IoError;
use crate::parquet::ArrowBatch;
use crate::records::{CsvOptions, contents_from, first_record, line_at, line_number, open_split};
use crate::text::source::{TextSource, TextSplit};

/// Rows decoded per record batch.
const BATCH_ROWS: usize = 8192;

/// How one file's rows are decoded: every column of the file (the wanted ones with their
/// types, the others as strings, never converted) and which of them are kept, in the
/// order of the schema asked for.
#[derive(Debug)]
struct Layout {
    decode: SchemaRef,
    projection: Vec<usize>,
}

/// The CSV rows of every file a pattern matched, as [`ArrowBatch`]es of a given schema.
#[derive(Clone, Debug)]
pub struct CsvBatchSource {
    text: TextSource,
    options: CsvOptions,
    schema: SchemaRef,
    layouts: Arc<HashMap<PathBuf, Layout>>,
}

impl CsvBatchSource {
    /// Reads the first line of every file `text` matched: with a header, each of
    /// `schema`'s fields must be a column named there; without, the first line must
    /// have at least as many fields as `schema`. A file that does not fit is an error
    /// naming the transform, the file and the column.
    pub fn new(
        transform: &str,
        text: TextSource,
        options: CsvOptions,
        schema: SchemaRef,
    ) -> Result<CsvBatchSource, IoError> {
        let mut layouts = HashMap::new();
        for file in text.files() {
            let first = first_record(&file.range(0, file.size), &options)
                .map_err(|source| IoError::Unreadable {
                    transform: transform.into(),
                    path: file.path.clone(),
                    source,
                })?
                .unwrap_or_default();
            let layout = layout(&options, &schema, &first).map_err(|reason| IoError::Schema {
                transform: transform.into(),
                path: file.path.clone(),
                reason,
            })?;
            layouts.insert(file.path.clone(), layout);
        }
        Ok(CsvBatchSource {
            text,
            options,
            schema,
            layouts: Arc::new(layouts),
        })
    }

    /// The schema of the batches read.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// How a file whose first record is `first` is decoded.
fn layout(
    options: &CsvOptions,
    schema: &Schema,
    first: &csv::ByteRecord,
) -> Result<Layout, String> {
    let string = |name: String| Field::new(name, DataType::Utf8, true);
    if !options.header {
        if first.len() < schema.fields().len() {
            return Err(format!(
                "its first line has {} fields, the schema {} columns",
                first.len(),
                schema.fields().len()
            ));
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend((fields.len()..first.len()).map(|i| string(format!("column {}", i + 1))));
        return Ok(Layout {
            decode: Arc::new(Schema::new(fields)),
            projection: (0..schema.fields().len()).collect(),
        });
    }
    let names: Vec<String> = first
        .iter()
        .map(|n| String::from_utf8_lossy(n).trim().to_string())
        .collect();
    let mut fields: Vec<Field> = names.iter().map(|n| string(n.clone())).collect();
    let mut projection = Vec::new();
    for field in schema.fields() {
        let Some(i) = names.iter().position(|n| n == field.name()) else {
            return Err(format!(
                "its header has no column '{}' (its columns: {})",
                field.name(),
                names.join(", ")
            ));
        };
        fields[i] = field.as_ref().clone();
        projection.push(i);
    }
    Ok(Layout {
        decode: Arc::new(Schema::new(fields)),
        projection,
    })
}

impl SourceFactory for CsvBatchSource {
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        self.text.splits(hint)
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(Box::new(CsvBatchReader {
            ctx: ctx.clone(),
            options: self.options.clone(),
            layouts: self.layouts.clone(),
            output: None,
            bytes_read: 0,
        }))
    }

    fn size_bytes(&self) -> Option<u64> {
        self.text.size_bytes()
    }
}

struct CsvBatchReader {
    ctx: UnitContext,
    options: CsvOptions,
    layouts: Arc<HashMap<PathBuf, Layout>>,
    output: Option<Port<ArrowBatch>>,
    bytes_read: u64,
}

impl CsvBatchReader {
    fn decoder(&self, layout: &Layout, rows: usize) -> Decoder {
        arrow_csv::ReaderBuilder::new(layout.decode.clone())
            .with_header(false)
            .with_delimiter(self.options.delimiter)
            .with_quote(self.options.quote)
            .with_projection(layout.projection.clone())
            .with_batch_size(rows)
            .build_decoder()
    }

    fn emit(&mut self, batch: Option<RecordBatch>, start: u64) -> UnitResult {
        let Some(batch) = batch else {
            return Ok(());
        };
        // Where the batch's first record starts: a line start, where the split can be
        // divided if the bundle fails.
        self.ctx
            .position
            .store(start, std::sync::atomic::Ordering::Relaxed);
        attached(&mut self.output, &self.ctx)?
            .emit(WindowedValue::in_global_window(ArrowBatch(batch)))
    }

    /// The records from `start` (a line start) held a row that does not fit: find it,
    /// decoding one row at a time, and fail the job naming its line and column.
    fn malformed(
        &self,
        split: &TextSplit,
        layout: &Layout,
        start: u64,
        error: ArrowError,
    ) -> Box<ExecError> {
        let path = &split.path;
        let read_error = |e| self.ctx.error(FileError::new("read", path, e));
        let (offset, error) = match self.locate(split, layout, start) {
            Ok(Some(found)) => found,
            Ok(None) => (start, error),
            Err(e) => return read_error(e),
        };
        let line = match line_number(split, offset) {
            Ok(line) => line,
            Err(e) => return read_error(e),
        };
        let raw = line_at(split, offset).unwrap_or_default();
        let message = error.to_string();
        // arrow-csv names the column by its index among the file's columns.
        let column = message
            .split_once("for column ")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok())
            .map(|i| {
                let name = layout
                    .decode
                    .fields()
                    .get(i)
                    .map(|f| f.name().as_str())
                    .unwrap_or("");
                format!(", column {} ('{name}')", i + 1)
            })
            .unwrap_or_default();
        ExecError::permanent(
            self.ctx.transform.clone(),
            format!(
                "{}, line {line}{column}: not a CSV record of the schema read: {message} \
                 (the line: {:?}); no retry can mend the input. Fix the file, or read it \
                 with read_csv_with_dead_letter to set such records aside",
                path.display(),
                String::from_utf8_lossy(&raw)
            ),
        )
    }

    /// The offset of the first row of the batch from `start` that does not decode, and
    /// why (`None` if every row of that batch does, one at a time).
    fn locate(
        &self,
        split: &TextSplit,
        layout: &Layout,
        start: u64,
    ) -> std::io::Result<Option<(u64, ArrowError)>> {
        let mut input = contents_from(split, start)?;
        let mut decoder = self.decoder(layout, 1);
        let (mut offset, mut row_start) = (start, start);
        let mut rows = 0;
        while rows <= BATCH_ROWS {
            let buffered = input.fill_buf()?;
            let end = buffered.is_empty();
            let n = match decoder.decode(buffered) {
                Ok(n) => n,
                Err(e) => return Ok(Some((row_start, e))),
            };
            input.consume(n);
            offset += n as u64;
            if decoder.capacity() == 0 || end {
                if let Err(e) = decoder.flush() {
                    return Ok(Some((row_start, e)));
                }
                row_start = offset;
                rows += 1;
            }
            if end {
                break;
            }
        }
        Ok(None)
    }
}

impl SourceReader for CsvBatchReader {
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast::<ArrowBatch>()?);
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
                .error("internal error: a CSV batch reader was given another source's split"));
        };
        let layouts = self.layouts.clone();
        let Some(layout) = layouts.get(&split.path) else {
            return Err(self.ctx.error(format!(
                "internal error: {} was not matched when the pipeline was built",
                split.path.display()
            )));
        };
        let path = &split.path;
        let (mut input, first) =
            open_split(split).map_err(|e| self.ctx.error(FileError::new("open", path, e)))?;
        let mut offset = first;
        if self.options.header && first == 0 {
            let mut header = Vec::new();
            offset += input
                .read_until(b'\n', &mut header)
                .map_err(|e| self.ctx.error(FileError::new("read", path, e)))?
                as u64;
        }
        let mut decoder = self.decoder(layout, BATCH_ROWS);
        let mut batch_start = offset;
        loop {
            let buffered = input
                .fill_buf()
                .map_err(|e| self.ctx.error(FileError::new("read", path, e)))?;
            // An empty buffer is the end: the decoder completes a last line without a
            // line ending.
            let end = buffered.is_empty();
            let n = decoder
                .decode(buffered)
                .map_err(|e| self.malformed(split, layout, batch_start, e))?;
            input.consume(n);
            offset += n as u64;
            self.bytes_read += n as u64;
            if decoder.capacity() == 0 || end || n == 0 {
                let batch = decoder
                    .flush()
                    .map_err(|e| self.malformed(split, layout, batch_start, e))?;
                self.emit(batch, batch_start)?;
                batch_start = offset;
            }
            if end {
                return Ok(());
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

    /// The first record of `input`.
    fn record(options: &CsvOptions, input: &[u8]) -> csv::ByteRecord {
        let mut record = csv::ByteRecord::new();
        crate::records::csv_reader(options, input)
            .read_byte_record(&mut record)
            .unwrap();
        record
    }

    #[test]
    fn a_header_maps_the_schema_to_columns_by_name() {
        let schema = Schema::new(vec![
            Field::new("value", DataType::Float64, false),
            Field::new("key", DataType::Utf8, false),
        ]);
        let options = CsvOptions::default();
        let named = layout(&options, &schema, &record(&options, b"id,key,note,value\n")).unwrap();
        assert_eq!(named.projection, [3, 1]);
        let types: Vec<&DataType> = named
            .decode
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect();
        assert_eq!(
            types,
            [
                &DataType::Utf8,
                &DataType::Utf8,
                &DataType::Utf8,
                &DataType::Float64
            ]
        );
        let missing = layout(&options, &schema, &record(&options, b"id,key\n")).unwrap_err();
        assert!(
            missing.contains("no column 'value'") && missing.contains("id, key"),
            "{missing}"
        );

        let options = CsvOptions {
            header: false,
            ..CsvOptions::default()
        };
        let positional = layout(&options, &schema, &record(&options, b"1.5,a,x\n")).unwrap();
        assert_eq!(positional.projection, [0, 1]);
        assert_eq!(positional.decode.fields().len(), 3);
        let short = layout(&options, &schema, &record(&options, b"1.5\n")).unwrap_err();
        assert!(short.contains("1 fields"), "{short}");
    }
}
