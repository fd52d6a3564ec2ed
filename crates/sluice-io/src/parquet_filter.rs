//! Predicate pushdown for Parquet reads: comparisons of a column with a constant, ANDed.
//! Row groups whose statistics (minimum and maximum) show that no row can match are not
//! read at all; in the others, the filter columns are decoded first and only matching
//! rows are decoded in full (the `parquet` crate's row filter). A NULL never matches.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type,
};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, BooleanArray};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};

use crate::parquet::kind;

/// How a column is compared with the constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    /// `column = value`
    Eq,
    /// `column < value`
    Lt,
    /// `column <= value`
    Le,
    /// `column > value`
    Gt,
    /// `column >= value`
    Ge,
}

impl FilterOp {
    fn holds(self, column_vs_value: Ordering) -> bool {
        match self {
            FilterOp::Eq => column_vs_value == Ordering::Equal,
            FilterOp::Lt => column_vs_value == Ordering::Less,
            FilterOp::Le => column_vs_value != Ordering::Greater,
            FilterOp::Gt => column_vs_value == Ordering::Greater,
            FilterOp::Ge => column_vs_value != Ordering::Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
        }
    }
}

/// The constant a column is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterValue {
    /// An integer (compared exactly with integer columns).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (compared by bytes, i.e. by code point, with string columns).
    Str(String),
}

impl From<i64> for FilterValue {
    fn from(v: i64) -> Self {
        FilterValue::Int(v)
    }
}
impl From<i32> for FilterValue {
    fn from(v: i32) -> Self {
        FilterValue::Int(v.into())
    }
}
impl From<f64> for FilterValue {
    fn from(v: f64) -> Self {
        FilterValue::Float(v)
    }
}
impl From<&str> for FilterValue {
    fn from(v: &str) -> Self {
        FilterValue::Str(v.into())
    }
}
impl From<String> for FilterValue {
    fn from(v: String) -> Self {
        FilterValue::Str(v)
    }
}

/// `column OP value`: only rows for which it holds are read.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetFilter {
    /// A top-level column.
    pub column: String,
    /// The comparison.
    pub op: FilterOp,
    /// The constant.
    pub value: FilterValue,
}

impl std::fmt::Display for ParquetFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match &self.value {
            FilterValue::Int(v) => v.to_string(),
            FilterValue::Float(v) => v.to_string(),
            FilterValue::Str(v) => format!("'{v}'"),
        };
        write!(f, "{} {} {value}", self.column, self.op.symbol())
    }
}

impl ParquetFilter {
    fn new(column: &str, op: FilterOp, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter {
            column: column.into(),
            op,
            value: value.into(),
        }
    }
    /// `column = value`
    pub fn eq(column: &str, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter::new(column, FilterOp::Eq, value)
    }
    /// `column < value`
    pub fn lt(column: &str, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter::new(column, FilterOp::Lt, value)
    }
    /// `column <= value`
    pub fn le(column: &str, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter::new(column, FilterOp::Le, value)
    }
    /// `column > value`
    pub fn gt(column: &str, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter::new(column, FilterOp::Gt, value)
    }
    /// `column >= value`
    pub fn ge(column: &str, value: impl Into<FilterValue>) -> ParquetFilter {
        ParquetFilter::new(column, FilterOp::Ge, value)
    }

    /// Whether a file of `schema` can be filtered so: the column exists and holds
    /// numbers for a numeric constant, strings for a string.
    pub(crate) fn check(&self, schema: &SchemaRef) -> Result<(), String> {
        let Ok(field) = schema.field_with_name(&self.column) else {
            return Err(format!(
                "the filter {self} names no column of it; filter on one of its columns"
            ));
        };
        let fits = match (&self.value, field.data_type()) {
            (FilterValue::Str(_), t) => matches!(t, DataType::Utf8 | DataType::LargeUtf8),
            (_, t) => numeric(t),
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "the filter {self} compares column '{}' ({}) with a constant of another kind",
                self.column,
                field.data_type()
            ))
        }
    }

    /// Whether a row of `group` may match, by the column's statistics (true when they
    /// cannot tell).
    pub(crate) fn may_match(&self, group: &RowGroupMetaData, schema: &SchemaRef) -> bool {
        let Ok(field) = schema.field_with_name(&self.column) else {
            return true;
        };
        // Statistics of unsigned or otherwise reinterpreted columns order differently.
        if !matches!(
            field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Utf8
                | DataType::LargeUtf8
        ) {
            return true;
        }
        let Some(chunk) = group
            .columns()
            .iter()
            .find(|c| c.column_descr().path().parts() == [self.column.as_str()])
        else {
            return true;
        };
        let Some(stats) = chunk.statistics() else {
            return true;
        };
        fn bounds<V>(
            s: &ValueStatistics<V>,
            bound: impl Fn(&V) -> Bound,
        ) -> Option<(Bound, Bound)> {
            Some((bound(s.min_opt()?), bound(s.max_opt()?)))
        }
        let bounds = match stats {
            Statistics::Int32(s) => bounds(s, |v| Bound::Int(i64::from(*v))),
            Statistics::Int64(s) => bounds(s, |v| Bound::Int(*v)),
            Statistics::Float(s) => bounds(s, |v| Bound::Float(f64::from(*v))),
            Statistics::Double(s) => bounds(s, |v| Bound::Float(*v)),
            Statistics::ByteArray(s) => bounds(s, |v| Bound::Bytes(v.data().to_vec())),
            _ => None,
        };
        let Some((min, max)) = bounds else {
            return true;
        };
        let (Some(low), Some(high)) = (min.compare(&self.value), max.compare(&self.value)) else {
            return true;
        };
        match self.op {
            FilterOp::Eq => low != Ordering::Greater && high != Ordering::Less,
            FilterOp::Lt => low == Ordering::Less,
            FilterOp::Le => low != Ordering::Greater,
            FilterOp::Gt => high == Ordering::Greater,
            FilterOp::Ge => high != Ordering::Less,
        }
    }

    /// Which values of `column` (the filter's column, as read) match.
    pub(crate) fn evaluate(&self, column: &ArrayRef) -> Result<BooleanArray, ArrowError> {
        if let DataType::Dictionary(_, values) = column.data_type() {
            // Read as a dictionary: compared as the values it stands for.
            return self.evaluate(&arrow_cast::cast(column, values)?);
        }
        let op = self.op;
        let matches: BooleanArray = match (&self.value, column.data_type()) {
            (FilterValue::Str(s), DataType::Utf8) => column
                .as_string::<i32>()
                .iter()
                .map(|v| Some(v.is_some_and(|v| op.holds(v.cmp(s.as_str())))))
                .collect(),
            (FilterValue::Str(s), DataType::LargeUtf8) => column
                .as_string::<i64>()
                .iter()
                .map(|v| Some(v.is_some_and(|v| op.holds(v.cmp(s.as_str())))))
                .collect(),
            (value, t) if numeric(t) => {
                let holds = |v: Bound| v.compare(value).is_some_and(|o| op.holds(o));
                compare_numbers(column, holds)?
            }
            (_, t) => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "the filter {self} cannot compare a column of {t}"
                )));
            }
        };
        Ok(matches)
    }
}

/// The numeric columns a filter compares: integers and floats but 64-bit unsigned and
/// half-precision ones.
fn numeric(t: &DataType) -> bool {
    matches!(kind(t), "integer" | "float") && !matches!(t, DataType::UInt64 | DataType::Float16)
}

/// A column value or statistic, compared with a constant.
enum Bound {
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

impl Bound {
    /// How this compares with `value` (`None`: not comparable, or NaN).
    fn compare(&self, value: &FilterValue) -> Option<Ordering> {
        match (self, value) {
            (Bound::Int(a), FilterValue::Int(b)) => Some(a.cmp(b)),
            (Bound::Int(a), FilterValue::Float(b)) => (*a as f64).partial_cmp(b),
            (Bound::Float(a), FilterValue::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Bound::Float(a), FilterValue::Float(b)) => a.partial_cmp(b),
            (Bound::Bytes(a), FilterValue::Str(b)) => Some(a.as_slice().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// Whether `holds` for each value of a numeric column (a NULL never does).
fn compare_numbers(
    column: &ArrayRef,
    holds: impl Fn(Bound) -> bool,
) -> Result<BooleanArray, ArrowError> {
    fn each<T: ArrowPrimitiveType>(
        column: &ArrayRef,
        bound: impl Fn(T::Native) -> Bound,
        holds: impl Fn(Bound) -> bool,
    ) -> BooleanArray {
        column
            .as_primitive::<T>()
            .iter()
            .map(|v| Some(v.is_some_and(|v| holds(bound(v)))))
            .collect()
    }
    let int = Bound::Int;
    Ok(match column.data_type() {
        DataType::Int8 => each::<Int8Type>(column, |v| int(v.into()), holds),
        DataType::Int16 => each::<Int16Type>(column, |v| int(v.into()), holds),
        DataType::Int32 => each::<Int32Type>(column, |v| int(v.into()), holds),
        DataType::Int64 => each::<Int64Type>(column, int, holds),
        DataType::UInt8 => each::<UInt8Type>(column, |v| int(v.into()), holds),
        DataType::UInt16 => each::<UInt16Type>(column, |v| int(v.into()), holds),
        DataType::UInt32 => each::<UInt32Type>(column, |v| int(v.into()), holds),
        DataType::Float32 => each::<Float32Type>(column, |v| Bound::Float(v.into()), holds),
        DataType::Float64 => each::<Float64Type>(column, Bound::Float, holds),
        t => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a filter cannot compare a column of {t}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn comparisons_hold_as_written_and_nulls_never_match() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(5), Some(9)]));
        let got = |f: ParquetFilter, c: &ArrayRef| -> Vec<bool> {
            f.evaluate(c).unwrap().iter().map(|v| v.unwrap()).collect()
        };
        assert_eq!(
            got(ParquetFilter::gt("x", 4), &ints),
            [false, false, true, true]
        );
        assert_eq!(
            got(ParquetFilter::le("x", 5), &ints),
            [true, false, true, false]
        );
        assert_eq!(
            got(ParquetFilter::eq("x", 5.0), &ints),
            [false, false, true, false]
        );
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("b"), Some("a"), None]));
        assert_eq!(
            got(ParquetFilter::lt("s", "b"), &strings),
            [false, true, false]
        );
        assert_eq!(
            got(ParquetFilter::ge("s", "b"), &strings),
            [true, false, false]
        );
        assert!(ParquetFilter::eq("s", 1).evaluate(&strings).is_err());
    }
}
