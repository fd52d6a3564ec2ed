//! Combining the columns of Arrow record batches per key, without a row per element.
//!
//! [`PCollection::combine_column_per_key`] reads a string key column and a numeric value
//! column of each [`ArrowBatch`] and combines the values of each key with a
//! [`CombineFn`] over `f64`, as `combine_per_key` does for `(String, f64)` pairs — but
//! each bundle first combines its batches' values into one accumulator per key and
//! window, straight from the columns (a key string is allocated once per key and
//! bundle, not once per row), and only those accumulators are emitted, shuffled and
//! merged. Dictionary-encoded key columns are combined per dictionary entry first.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Float64Array, RecordBatch, StringArray};
//! use sluice::prelude::*;
//! use sluice::transforms::combiners::SumFn;
//! use sluice::transforms::parquet::ArrowBatch;
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("key", Arc::new(StringArray::from(vec!["a", "b", "a"])) as _),
//!     ("value", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.5])) as _),
//! ])
//! .unwrap();
//! let p = Pipeline::for_test();
//! let sums = p
//!     .create("Batches", vec![ArrowBatch(batch)])
//!     .combine_column_per_key("Sum", "key", "value", SumFn::<f64>::default())
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! let mut sums = sums.values();
//! sums.sort_by(|a, b| a.0.cmp(&b.0));
//! assert_eq!(sums, [("a".to_string(), 4.5), ("b".to_string(), 2.0)]);
//! ```

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayAccessor, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use hashbrown::HashMap;
use sluice_core::{BoxError, Permanent, Window};

use crate::dofn::{Context, DoFn, FinishContext};
use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;
use crate::transforms::parquet::ArrowBatch;

impl PCollection<ArrowBatch> {
    /// Combines the `value_column` of every batch per `key_column` with `combine_fn`:
    /// one `(key, output)` per key (and window), as
    /// [`combine_per_key`](PCollection::combine_per_key) gives for `(String, f64)` pairs.
    ///
    /// The key column holds strings (`Utf8`, `LargeUtf8`, `Utf8View`, or a dictionary of
    /// them); the value column any numeric type (integers and decimals are converted to
    /// `f64`). A batch without either column, with another type there, or with a null
    /// key or value fails the job naming this transform, the column and the row (nulls
    /// are not skipped: filter them out first if they are to be ignored).
    pub fn combine_column_per_key<F: CombineFn<Input = f64>>(
        &self,
        name: &str,
        key_column: &str,
        value_column: &str,
        combine_fn: F,
    ) -> PCollection<(String, F::Output)> {
        let partial = ColumnCombine {
            combine_fn: combine_fn.clone(),
            key_column: Arc::from(key_column),
            value_column: Arc::from(value_column),
            transform: Arc::from(name),
            accumulators: HashMap::new(),
        };
        self.composite(name, move |batches| {
            batches
                .par_do("CombineBatches", partial)
                .combine_per_key("MergeAccumulators", MergeAccumulators(combine_fn))
        })
    }
}

/// Adds each batch's rows to one accumulator per key and window, emitted at the end of
/// the bundle.
#[derive(Clone)]
struct ColumnCombine<F: CombineFn> {
    combine_fn: F,
    key_column: Arc<str>,
    value_column: Arc<str>,
    transform: Arc<str>,
    accumulators: HashMap<Window, HashMap<String, F::Accumulator>>,
}

impl<F: CombineFn<Input = f64>> ColumnCombine<F> {
    fn column<'b>(&self, batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, BoxError> {
        batch.column_by_name(name).ok_or_else(|| {
            let names: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            self.refuse(format!(
                "a batch has no column '{name}' (its columns: {})",
                names.join(", ")
            ))
        })
    }

    /// A failure no retry mends: the batch is what it is.
    fn refuse(&self, reason: String) -> BoxError {
        Permanent::new(format!("{}: {reason}", self.transform)).into()
    }

    fn no_nulls(&self, column: &dyn Array, name: &str) -> Result<(), BoxError> {
        match column.logical_nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let row = (0..column.len()).find(|&i| nulls.is_null(i)).unwrap_or(0);
                Err(self.refuse(format!(
                    "column '{name}' is null in row {row} of a batch ({} nulls); \
                     filter out rows with null keys or values first",
                    nulls.null_count()
                )))
            }
            _ => Ok(()),
        }
    }

    fn values(&self, batch: &RecordBatch) -> Result<ArrayRef, BoxError> {
        let name = &*self.value_column;
        let column = self.column(batch, name)?;
        self.no_nulls(column.as_ref(), name)?;
        if column.data_type() == &DataType::Float64 {
            return Ok(column.clone());
        }
        if !column.data_type().is_numeric() {
            return Err(self.refuse(format!(
                "value column '{name}' holds {}, not numbers",
                column.data_type()
            )));
        }
        arrow_cast::cast(column, &DataType::Float64)
            .map_err(|e| self.refuse(format!("value column '{name}': {e}")))
    }

    /// Adds `values[i]` under `keys.value(i)` for every row.
    fn add<'a>(
        combine_fn: &F,
        table: &mut HashMap<String, F::Accumulator>,
        keys: impl ArrayAccessor<Item = &'a str>,
        values: &[f64],
    ) {
        for (i, &value) in values.iter().enumerate() {
            let key = keys.value(i);
            let accumulator = match table.get_mut(key) {
                Some(accumulator) => accumulator,
                None => table
                    .entry(key.to_string())
                    .or_insert_with(|| combine_fn.create_accumulator()),
            };
            combine_fn.add_input(accumulator, value);
        }
    }

    /// Dictionary keys: values combined per dictionary entry, then each entry's
    /// accumulator merged under its string.
    fn add_dictionary(
        &self,
        table: &mut HashMap<String, F::Accumulator>,
        keys: &dyn arrow_array::AnyDictionaryArray,
        values: &[f64],
    ) -> Result<(), BoxError> {
        let entries = keys.values();
        let mut per_entry: Vec<Option<F::Accumulator>> = vec![None; entries.len()];
        for (entry, &value) in keys.normalized_keys().into_iter().zip(values) {
            let accumulator =
                per_entry[entry].get_or_insert_with(|| self.combine_fn.create_accumulator());
            self.combine_fn.add_input(accumulator, value);
        }
        let strings = self.strings(entries, "dictionary of key column")?;
        for (entry, accumulator) in per_entry.into_iter().enumerate() {
            let Some(accumulator) = accumulator else {
                continue;
            };
            let key = match &strings {
                Strings::Utf8(a) => a.value(entry),
                Strings::Large(a) => a.value(entry),
                Strings::View(a) => a.value(entry),
            };
            match table.get_mut(key) {
                Some(existing) => self.combine_fn.merge_accumulators(existing, accumulator),
                None => {
                    table.insert(key.to_string(), accumulator);
                }
            }
        }
        Ok(())
    }

    fn strings<'b>(&self, column: &'b ArrayRef, what: &str) -> Result<Strings<'b>, BoxError> {
        Ok(match column.data_type() {
            DataType::Utf8 => Strings::Utf8(column.as_string::<i32>()),
            DataType::LargeUtf8 => Strings::Large(column.as_string::<i64>()),
            DataType::Utf8View => Strings::View(column.as_string_view()),
            other => {
                return Err(self.refuse(format!(
                    "{what} '{}' holds {other}, not strings",
                    self.key_column
                )));
            }
        })
    }
}

/// A string column of one of Arrow's three layouts.
enum Strings<'b> {
    Utf8(&'b arrow_array::StringArray),
    Large(&'b arrow_array::LargeStringArray),
    View(&'b arrow_array::StringViewArray),
}

impl<F: CombineFn<Input = f64>> DoFn for ColumnCombine<F> {
    type In = ArrowBatch;
    type Out = (String, F::Accumulator);

    fn start_bundle(&mut self) -> Result<(), BoxError> {
        // A failed bundle's partial sums are not part of this one.
        self.accumulators.clear();
        Ok(())
    }

    fn process(
        &mut self,
        batch: ArrowBatch,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        let batch = &batch.0;
        let values = self.values(batch)?;
        let values = values
            .as_primitive::<arrow_array::types::Float64Type>()
            .values();
        let keys = self.column(batch, &self.key_column)?;
        self.no_nulls(keys.as_ref(), &self.key_column)?;
        let mut table = self.accumulators.remove(&ctx.window()).unwrap_or_default();
        let added = match keys.data_type() {
            DataType::Dictionary(_, _) => {
                self.add_dictionary(&mut table, keys.as_any_dictionary(), values)
            }
            _ => self
                .strings(keys, "key column")
                .map(|strings| match strings {
                    Strings::Utf8(a) => Self::add(&self.combine_fn, &mut table, a, values),
                    Strings::Large(a) => Self::add(&self.combine_fn, &mut table, a, values),
                    Strings::View(a) => Self::add(&self.combine_fn, &mut table, a, values),
                }),
        };
        self.accumulators.insert(ctx.window(), table);
        added
    }

    fn finish_bundle(&mut self, ctx: &mut FinishContext<'_, Self::Out>) -> Result<(), BoxError> {
        for (window, table) in self.accumulators.drain() {
            let time = window.max_timestamp();
            for (key, accumulator) in table {
                ctx.emit_windowed((key, accumulator), time, window);
            }
        }
        Ok(())
    }
}

/// A combine of accumulators made by another combine's `add_input`s.
#[derive(Clone)]
struct MergeAccumulators<F>(F);

impl<F: CombineFn> CombineFn for MergeAccumulators<F> {
    type Input = F::Accumulator;
    type Accumulator = F::Accumulator;
    type Output = F::Output;

    fn create_accumulator(&self) -> F::Accumulator {
        self.0.create_accumulator()
    }
    fn add_input(&self, accumulator: &mut F::Accumulator, input: F::Accumulator) {
        self.0.merge_accumulators(accumulator, input);
    }
    fn merge_accumulators(&self, accumulator: &mut F::Accumulator, other: F::Accumulator) {
        self.0.merge_accumulators(accumulator, other);
    }
    fn extract_output(&self, accumulator: F::Accumulator) -> F::Output {
        self.0.extract_output(accumulator)
    }
}
