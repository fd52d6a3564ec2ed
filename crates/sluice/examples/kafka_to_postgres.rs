//! Kafka to PostgreSQL: records counted per key in 10-second event-time windows, the
//! counts written to a table.
//!
//! ```text
//! cargo run --release --example kafka_to_postgres -- --bootstrap_servers=127.0.0.1:9092 \
//!     --topic=events --postgres_url=postgres://postgres@127.0.0.1:5432/postgres \
//!     --table=event_counts --produce=100000
//! ```
//!
//! With `--produce=N` it first writes N generated records `key-K` → `value-I` to the
//! topic (created with `--partitions`, default 2, if missing). It then reads the topic —
//! up to the offsets present when it starts, or without end with `--streaming` (until
//! Ctrl-C, which drains it) —, counts records per key in 10-second windows of the
//! records' timestamps, and writes rows `(key, window_start, count)` to the table
//! (created if missing; a window counted again replaces its row). An unreachable broker
//! or database, or a missing topic, fails before any data moves, naming the transform.

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::transforms::kafka::{ReadKafka, WriteKafka};
use sluice::transforms::postgres::WritePostgres;
use sluice::windowing::FixedWindows;

/// One row of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WindowCount {
    key: String,
    /// RFC 3339; the column is a `timestamptz`.
    window_start: String,
    count: i64,
}
impl sluice::SerdeCoder for WindowCount {}

/// Turns a window's count into a row.
#[derive(Clone)]
struct ToRow;

impl DoFn for ToRow {
    type In = (String, u64);
    type Out = WindowCount;
    fn process(
        &mut self,
        (key, count): (String, u64),
        ctx: &mut Context<'_, WindowCount>,
    ) -> Result<(), BoxError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("counts are windowed".into());
        };
        let start =
            time::OffsetDateTime::from_unix_timestamp_nanos(start.as_millis() as i128 * 1_000_000)?;
        ctx.emit(WindowCount {
            key,
            window_start: start.format(&time::format_description::well_known::Rfc3339)?,
            count: count as i64,
        });
        Ok(())
    }
}

fn main() -> sluice::Result<()> {
    let p = Pipeline::from_args()?;
    p.describe_flag("bootstrap_servers", "the Kafka brokers, HOST:PORT[,...]");
    p.describe_flag("topic", "the topic to read (and, with --produce, write)");
    p.describe_flag(
        "postgres_url",
        "the database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
    );
    p.describe_flag("table", "the table the counts go to (created if missing)");
    p.describe_flag(
        "produce",
        "first write this many generated records to the topic",
    );
    p.describe_flag(
        "partitions",
        "partitions of the topic if --produce creates it (default 2)",
    );
    let required = |name: &str| -> sluice::Result<String> {
        p.arg_parse::<String>(name)?
            .ok_or_else(|| sluice::Error::Service(format!("--{name} is required (see --help)")))
    };
    let servers = required("bootstrap_servers")?;
    let topic = required("topic")?;
    let url = required("postgres_url")?;
    let table = required("table")?;
    let streaming = p.options().streaming;

    // Worker processes of the cluster runner run this program too: only the launcher
    // produces.
    let launcher = p.options().worker.is_none();
    if let Some(n) = p.arg_parse::<u64>("produce")?.filter(|_| launcher) {
        let partitions = p.arg_parse::<i32>("partitions")?.unwrap_or(2);
        if sluice::io::kafka::create_topic(&servers, &topic, partitions)
            .map_err(|e| sluice::Error::Service(format!("--produce: {e}")))?
        {
            eprintln!("created the topic {topic} with {partitions} partitions");
        }
        // Producing is a small job of its own, on this process's embedded runner.
        let mut options = p.options();
        options.runner = "direct".into();
        options.streaming = false;
        let produce = Pipeline::with_options(options);
        produce
            .create("Generate", (0..n).collect::<Vec<u64>>())
            .write_kafka("Produce", WriteKafka::to(&servers, &topic), |i: &u64| {
                (
                    Some(format!("key-{}", i % 10).into_bytes()),
                    format!("value-{i}").into_bytes(),
                )
            });
        produce.run()?.wait_until_finish()?;
        eprintln!("produced {n} records to {topic}");
    }

    let mut read = ReadKafka::from(&servers, &topic);
    if !streaming {
        read = read.bounded();
    }
    p.read_kafka("ReadRecords", read)
        .map("Key", |r: sluice::transforms::kafka::KafkaRecord| r.key_str())
        .window_into("Windows", FixedWindows::of_millis(10_000))
        .count_per_element("CountPerKey")
        .par_do("ToRow", ToRow)
        .write_postgres(
            "WriteCounts",
            WritePostgres::to(&url, &table)
                .create_if_missing(
                    "key text, window_start timestamptz, count bigint, PRIMARY KEY (key, window_start)",
                )
                .with_upsert_key(&["key", "window_start"]),
        );
    let result = p.run()?;
    let metrics = result.metrics().clone();
    result.wait_until_finish()?;
    let count = |name: &str| {
        metrics
            .transforms
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| t.elements_out)
            .unwrap_or(0)
    };
    println!(
        "read {} records; wrote {} window counts to {table}",
        count("ReadRecords"),
        count("ToRow")
    );
    Ok(())
}
