//! Sales: CSV in, Parquet out — the total amount and the number of sales per region and
//! product.
//!
//! ```text
//! cargo run --release --example sales                      # a generated sample
//! cargo run --release --example sales -- --input='data/sales-*.csv.gz' --output=out/totals
//! cargo run --release --example sales -- --input='s3://sales/in/*.csv' \
//!     --output=s3://sales/out/totals --s3_endpoint=http://127.0.0.1:5000 --s3_allow_http
//! ```
//!
//! `--input=PATTERN` names CSV files with a header row `region,product,amount` (plain,
//! or compressed `.gz`, `.zst`, `.bz2`); without it, a sample of `--sample_rows` rows
//! (default 300,000) in three files is generated in the temporary directory first.
//! The totals go to Parquet shards `PREFIX-SSSSS-of-NNNNN.parquet` (`--output=PREFIX`,
//! default `<temporary directory>/sluice-sales/totals`) with columns `region`,
//! `product`, `total` (double) and `count` (int64), which appear only if the job
//! succeeds. With `--postgres_url=URL --table=T` the totals go instead to that
//! PostgreSQL table (created if missing, keyed by region and product: a rerun replaces
//! the rows). A malformed row fails the job naming its file, line and column. Input and
//! output may be local paths or object-store URLs (`s3://`, `gs://`, `az://`; for an
//! S3-compatible server, `--s3_endpoint=URL --s3_allow_http`, with credentials in
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).

use std::io::Write;

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::transforms::postgres::WritePostgres;

/// One row of the input.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sale {
    region: String,
    product: String,
    amount: f64,
}
impl sluice::SerdeCoder for Sale {}

/// One row of the output.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Total {
    region: String,
    product: String,
    total: f64,
    count: i64,
}
impl sluice::SerdeCoder for Total {}

/// Sums amounts and counts sales.
#[derive(Clone)]
struct SumAndCount;

impl CombineFn for SumAndCount {
    type Input = f64;
    type Accumulator = (f64, i64);
    type Output = (f64, i64);
    fn create_accumulator(&self) -> (f64, i64) {
        (0.0, 0)
    }
    fn add_input(&self, acc: &mut (f64, i64), amount: f64) {
        acc.0 += amount;
        acc.1 += 1;
    }
    fn merge_accumulators(&self, acc: &mut (f64, i64), other: (f64, i64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract_output(&self, acc: (f64, i64)) -> (f64, i64) {
        acc
    }
}

/// Writes `rows` generated sales as three CSV files under `dir`; returns their pattern.
fn sample(dir: &std::path::Path, rows: u64) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let regions = ["north", "south", "east", "west", "central"];
    let files = 3;
    for f in 0..files {
        let path = dir.join(format!("sales-{f}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "region,product,amount")?;
        for i in (f..rows).step_by(files as usize) {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 29;
            let region = regions[(x % 5) as usize];
            let product = format!("product-{:02}", (x >> 8) % 40);
            let cents = (x >> 16) % 100_000;
            writeln!(out, "{region},{product},{}.{:02}", cents / 100, cents % 100)?;
        }
        out.flush()?;
    }
    Ok(format!("{}/sales-*.csv", dir.display()))
}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    p.describe_flag(
        "input",
        "CSV files with a header row region,product,amount (default: a generated sample)",
    );
    p.describe_flag(
        "output",
        "prefix of the Parquet shards (default: <temp dir>/sluice-sales/totals)",
    );
    p.describe_flag(
        "sample_rows",
        "rows of the generated sample, without --input (default 300000)",
    );
    p.describe_flag(
        "postgres_url",
        "write the totals to a PostgreSQL table instead (postgres://user@host:port/db)",
    );
    p.describe_flag(
        "table",
        "the table for --postgres_url (default sales_totals)",
    );
    let temp = std::env::temp_dir().join("sluice-sales");
    let input = match p.arg_parse::<String>("input")? {
        Some(input) => input,
        None => {
            let rows = p.arg_parse::<u64>("sample_rows")?.unwrap_or(300_000);
            let dir = temp.join("sample");
            let pattern = sample(&dir, rows).map_err(|e| {
                sluice::Error::Service(format!(
                    "cannot write the sample input under {}: {e}",
                    dir.display()
                ))
            })?;
            eprintln!("no --input: generated {rows} sales in {pattern}");
            pattern
        }
    };
    let output = p
        .arg_parse::<String>("output")?
        .unwrap_or_else(|| temp.join("totals").display().to_string());

    let database = p.arg_parse::<String>("postgres_url")?;
    let table = p
        .arg_parse::<String>("table")?
        .unwrap_or_else(|| "sales_totals".into());

    let totals = p
        .read_csv::<Sale>("ReadSales", &input)
        .map("KeyByRegionAndProduct", |s: Sale| {
            ((s.region, s.product), s.amount)
        })
        .combine_per_key("SumAndCount", SumAndCount)
        .map("ToRows", |((region, product), (total, count))| Total {
            region,
            product,
            total,
            count,
        });
    let written = match &database {
        Some(url) => {
            totals.write_postgres(
                "WriteTotals",
                WritePostgres::to(url, &table)
                    .with_upsert_key(&["region", "product"])
                    .create_if_missing(
                        "region text, product text, total float8, count bigint, primary key (region, product)",
                    ),
            );
            format!("table {table}")
        }
        None => {
            totals.write_parquet("WriteTotals", &output);
            format!("{output}-*.parquet")
        }
    };
    let result = p.run()?;
    let metrics = result.metrics().clone();
    result.wait_until_finish()?;
    let read = metrics
        .transforms
        .iter()
        .find(|t| t.name == "ReadSales")
        .and_then(|t| t.elements_out)
        .unwrap_or(0);
    let groups = metrics
        .transforms
        .iter()
        .find(|t| t.name == "ToRows")
        .and_then(|t| t.elements_out)
        .unwrap_or(0);
    println!("read {read} sales; wrote {groups} totals to {written}");
    Ok(())
}
