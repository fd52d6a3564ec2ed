//! The file-format benchmark's pipeline (`bench/files.py`): sums a float column per
//! string key of a Parquet or CSV file and prints the number of keys, the sum of the
//! sums and the pipeline's time.
//!
//! ```text
//! cargo run --release --example file_bench -- --parquet=data.parquet --direct_num_workers=1
//! cargo run --release --example file_bench -- --csv=data.csv
//! ```

use serde::{Deserialize, Serialize};
use sluice::prelude::*;

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
    let rows = match (
        p.arg_parse::<String>("parquet")?,
        p.arg_parse::<String>("csv")?,
    ) {
        (Some(file), _) => p.read_parquet::<Row>("Read", &file),
        (None, Some(file)) => p.read_csv::<Row>("Read", &file),
        (None, None) => {
            return Err(sluice::Error::Service(
                "give --parquet=FILE or --csv=FILE".into(),
            ));
        }
    };
    let sums = rows
        .map("KeyValue", |r: Row| (r.key, r.value))
        .combine_per_key(
            "Sum",
            sluice::transforms::combiners::SumFn::<f64>::default(),
        )
        .collect("Sums");
    let start = std::time::Instant::now();
    p.run()?.wait_until_finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let sums = sums.values();
    let total: f64 = sums.iter().map(|(_, s)| s).sum();
    println!("keys={} total={total:.3} seconds={seconds:.3}", sums.len());
    Ok(())
}
