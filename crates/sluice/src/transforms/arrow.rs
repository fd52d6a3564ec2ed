//! Combining the columns of Arrow record batches per key, without a row per element.
//!
//! [`PCollection::combine_column_per_key`] reads a string key column and a numeric value
//! column of each [`ArrowBatch`] and combines the values of each key with a
//! [`CombineFn`] over `f64`, as `combine_per_key` does for `(String, f64)` pairs — but
//! each bundle first combines its batches' values into one accumulator per key and
//! window, straight from the columns (a key string is allocated once per key and
//! bundle, not once per row), and only those accumulators are emitted, shuffled and
//! merged. With a dictionary-encoded key column, each dictionary entry is looked up
//! once (while batches share the dictionary, as a Parquet row group's do) and rows are
//! added by their entry's index.
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
use crate::transforms::combine::{CombineFn, MergeExtract};
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
            tables: HashMap::new(),
            dictionary: None,
        };
        self.composite(name, move |batches| {
            batches
                .par_do("CombineBatches", partial)
                .combine_per_key("MergeAccumulators", MergeExtract(combine_fn))
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
    /// This bundle's accumulators, per window.
    tables: HashMap<Window, Table<F::Accumulator>>,
    /// The slots of the entries of the last dictionary-encoded key column seen in this
    /// bundle: a Parquet column chunk's batches share one dictionary, so its entries are
    /// looked up once per row group, not once per row.
    dictionary: Option<DictionarySlots>,
}

/// One window's accumulators in a bundle, a slot per key.
#[derive(Clone)]
struct Table<A> {
    slots: HashMap<String, usize>,
    accumulators: Vec<A>,
}

impl<A> Table<A> {
    /// The slot of `key`, made with `create` if it has none.
    #[inline]
    fn slot(&mut self, key: &str, create: impl FnOnce() -> A) -> usize {
        match self.slots.get(key) {
            Some(&slot) => slot,
            None => {
                self.slots.insert(key.to_string(), self.accumulators.len());
                self.accumulators.push(create());
                self.accumulators.len() - 1
            }
        }
    }
}

/// A dictionary (its values array) and the slot of each entry in one window's table,
/// `NO_SLOT` until the entry is first used.
#[derive(Clone)]
struct DictionarySlots {
    values: ArrayRef,
    window: Window,
    slots: Vec<usize>,
}

const NO_SLOT: usize = usize::MAX;

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
        table: &mut Table<F::Accumulator>,
        keys: impl ArrayAccessor<Item = &'a str>,
        values: &[f64],
    ) {
        for (i, &value) in values.iter().enumerate() {
            let slot = table.slot(keys.value(i), || combine_fn.create_accumulator());
            combine_fn.add_input(&mut table.accumulators[slot], value);
        }
    }

    /// Dictionary keys: each entry's slot is looked up once (and kept while batches
    /// share the dictionary), each row's value added to its entry's slot.
    fn add_dictionary(
        combine_fn: &F,
        table: &mut Table<F::Accumulator>,
        cache: &mut Option<DictionarySlots>,
        window: Window,
        keys: &dyn arrow_array::AnyDictionaryArray,
        strings: &Strings<'_>,
        values: &[f64],
    ) {
        let entries = keys.values();
        let cached = cache
            .as_mut()
            .filter(|c| c.window == window && Arc::ptr_eq(&c.values, entries));
        let slots = match cached {
            Some(c) => &mut c.slots,
            None => {
                &mut cache
                    .insert(DictionarySlots {
                        values: entries.clone(),
                        window,
                        slots: vec![NO_SLOT; entries.len()],
                    })
                    .slots
            }
        };
        for (entry, &value) in keys.normalized_keys().into_iter().zip(values) {
            let mut slot = slots[entry];
            if slot == NO_SLOT {
                slot = table.slot(strings.value(entry), || combine_fn.create_accumulator());
                slots[entry] = slot;
            }
            combine_fn.add_input(&mut table.accumulators[slot], value);
        }
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

impl Strings<'_> {
    fn value(&self, i: usize) -> &str {
        match self {
            Strings::Utf8(a) => a.value(i),
            Strings::Large(a) => a.value(i),
            Strings::View(a) => a.value(i),
        }
    }
}

impl<F: CombineFn<Input = f64>> DoFn for ColumnCombine<F> {
    type In = ArrowBatch;
    type Out = (String, F::Accumulator);

    fn start_bundle(&mut self) -> Result<(), BoxError> {
        // A failed bundle's partial sums are not part of this one.
        self.tables.clear();
        self.dictionary = None;
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
        let window = ctx.window();
        let dictionary = keys.as_any_dictionary_opt();
        let strings = match dictionary {
            Some(d) => self.strings(d.values(), "dictionary of key column")?,
            None => self.strings(keys, "key column")?,
        };
        let table = self.tables.entry(window).or_insert_with(|| Table {
            slots: HashMap::new(),
            accumulators: Vec::new(),
        });
        let combine_fn = &self.combine_fn;
        match (dictionary, strings) {
            (Some(d), strings) => Self::add_dictionary(
                combine_fn,
                table,
                &mut self.dictionary,
                window,
                d,
                &strings,
                values,
            ),
            (None, Strings::Utf8(a)) => Self::add(combine_fn, table, a, values),
            (None, Strings::Large(a)) => Self::add(combine_fn, table, a, values),
            (None, Strings::View(a)) => Self::add(combine_fn, table, a, values),
        }
        Ok(())
    }

    fn finish_bundle(&mut self, ctx: &mut FinishContext<'_, Self::Out>) -> Result<(), BoxError> {
        // A single window's table (the global window's, in a batch job) keeps its
        // capacity for the next bundle.
        let keep = self.tables.len() == 1;
        self.dictionary = None;
        for (window, table) in self.tables.iter_mut() {
            let time = window.max_timestamp();
            // Slots are 0..n, one per key: the keys in slot order, beside their
            // accumulators.
            let mut keys = vec![String::new(); table.accumulators.len()];
            for (key, slot) in table.slots.drain() {
                keys[slot] = key;
            }
            for (key, accumulator) in keys.into_iter().zip(table.accumulators.drain(..)) {
                ctx.emit_windowed((key, accumulator), time, *window);
            }
        }
        if !keep {
            self.tables.clear();
        }
        Ok(())
    }
}
