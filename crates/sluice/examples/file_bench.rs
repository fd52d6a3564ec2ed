//! The file-format benchmark's pipeline (`bench/files.py`): sums a float column per
//! string key of a Parquet or CSV file and prints the number of keys, the sum of the
//! sums and the pipeline's time.
//!
//! ```text
//! cargo run --release --example file_bench -- --parquet=data.parquet --direct_num_workers=1
//! cargo run --release --example file_bench -- --csv=data.csv
//! cargo run --release --example file_bench -- --parquet=data.parquet --arrow=true
//! cargo run --release --example file_bench -- --csv=data.csv --arrow=true
//! ```

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::transforms::parquet::ReadParquetBatches;
use sluice::transforms::records::ReadCsv;

// Both pipelines allocate per batch (Arrow buffers) and the rows pipeline per row (a
// key string); mimalloc serves that faster than the system allocator. Any program using
// sluice may choose its allocator this way (the Nexmark example does too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The two columns read (a file may have more: they are not decoded from Parquet).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    key: String,
    value: f64,
}
impl sluice::SerdeCoder for Row {}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    p.describe_flag(
        "parquet",
        "a Parquet file (pattern) with columns key, value",
    );
    p.describe_flag(
        "csv",
        "a CSV file (pattern) with a header naming key and value",
    );
    p.describe_flag(
        "arrow",
        "read Arrow record batches and combine their columns (combine_column_per_key) \
         instead of serde rows",
    );
    let arrow = p.arg_parse::<bool>("arrow")?.unwrap_or(false);
    let sum = sluice::transforms::combiners::SumFn::<f64>::default();
    let sums = match (
        p.arg_parse::<String>("parquet")?,
        p.arg_parse::<String>("csv")?,
    ) {
        (Some(file), _) if arrow => p
            .read_parquet_batches_with(
                "Read",
                ReadParquetBatches::from(&file)
                    .with_columns(&["key", "value"])
                    .with_string_dictionaries(),
            )
            .combine_column_per_key("Sum", "key", "value", sum),
        (Some(file), _) => rows(p.read_parquet::<Row>("Read", &file), sum),
        (None, Some(file)) if arrow => {
            let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
                arrow_schema::Field::new("key", arrow_schema::DataType::Utf8, false),
                arrow_schema::Field::new("value", arrow_schema::DataType::Float64, false),
            ]));
            p.read_csv_batches("Read", ReadCsv::from(&file), schema)
                .combine_column_per_key("Sum", "key", "value", sum)
        }
        (None, Some(file)) => rows(p.read_csv::<Row>("Read", &file), sum),
        (None, None) => {
            return Err(sluice::Error::Service(
                "give --parquet=FILE or --csv=FILE".into(),
            ));
        }
    }
    .collect("Sums");
    let start = std::time::Instant::now();
    p.run()?.wait_until_finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let sums = sums.values();
    let total: f64 = sums.iter().map(|(_, s)| s).sum();
    println!("keys={} total={total:.3} seconds={seconds:.3}", sums.len());
    Ok(())
}

/// Serde rows: each row's key and value, summed per key.
fn rows(
    rows: PCollection<Row>,
    sum: sluice::transforms::combiners::SumFn<f64>,
) -> PCollection<(String, f64)> {
    rows.map("KeyValue", |r: Row| (r.key, r.value))
        .combine_per_key("Sum", sum)
}
