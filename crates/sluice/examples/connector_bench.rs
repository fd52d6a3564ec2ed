//! The programs `bench/connectors.py` runs side by side: sluice's Kafka source and
//! PostgreSQL sink, and what each is measured against — the Kafka client's own consumer
//! loop, and one plain `COPY`.
//!
//! ```text
//! connector_bench kafka-produce SERVERS TOPIC N   # N records of about 100 bytes
//! connector_bench kafka-sluice SERVERS TOPIC      # a bounded read into a count
//! connector_bench kafka-loop SERVERS TOPIC        # librdkafka's consumer, polled to the end
//! connector_bench pg-sluice URL TABLE N           # N rows through write_postgres
//! connector_bench pg-copy URL TABLE N             # the same rows in one COPY
//! ```
//!
//! Each prints `records=N seconds=S`, S measured around the work itself (for sluice, the
//! whole job: planning, reading, committing).

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::transforms::kafka::{ReadKafka, WriteKafka};
use sluice::transforms::postgres::WritePostgres;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    id: i64,
    name: String,
    amount: f64,
}
impl sluice::SerdeCoder for Row {}

fn row(i: i64) -> Row {
    Row {
        id: i,
        name: format!("customer-{}", i % 1000),
        amount: (i % 10_000) as f64 / 100.0,
    }
}

fn pipeline() -> Pipeline {
    Pipeline::with_options(sluice::PipelineOptions::parse(Vec::<String>::new()).expect("no flags"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("missing argument (see the doc comment)")
    };
    let (records, seconds) = match arg(0)?.as_str() {
        "kafka-produce" => {
            let (servers, topic, n) = (arg(1)?, arg(2)?, arg(3)?.parse::<u64>()?);
            let started = Instant::now();
            let p = pipeline();
            p.create("Numbers", (0..n).collect::<Vec<u64>>())
                .write_kafka(
                    "Produce",
                    WriteKafka::to(&servers, &topic).with_setting("linger.ms", "20"),
                    |i: &u64| {
                        let value = format!("{{\"id\":{i},\"payload\":\"{:0>70}\"}}", i);
                        (
                            Some(format!("key-{}", i % 100).into_bytes()),
                            value.into_bytes(),
                        )
                    },
                );
            p.run()?.wait_until_finish()?;
            (n, started.elapsed())
        }
        "kafka-sluice" => {
            let (servers, topic) = (arg(1)?, arg(2)?);
            let started = Instant::now();
            let p = pipeline();
            // A no-op after the read: every record is dropped; the read's metric counts.
            let _ = p
                .read_kafka("Read", ReadKafka::from(&servers, &topic).bounded())
                .filter("Drop", |_r: &sluice::transforms::kafka::KafkaRecord| false)
                .collect("Out");
            let result = p.run()?;
            let read = result
                .metrics()
                .transforms
                .iter()
                .find(|t| t.name == "Read")
                .and_then(|t| t.elements_out)
                .unwrap_or(0);
            result.wait_until_finish()?;
            (read, started.elapsed())
        }
        "kafka-loop" => {
            let (servers, topic) = (arg(1)?, arg(2)?);
            let started = Instant::now();
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", "bench-loop")
                .set("enable.auto.commit", "false")
                .create()?;
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let partitions: Vec<i32> = metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect();
            // The same ends the source reads to (tansu reports the start of the last
            // batch as the high watermark; both sides read until the records stop).
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
            }
            consumer.assign(&tpl)?;
            let mut n = 0u64;
            let mut idle = Instant::now();
            let mut bytes = 0usize;
            while idle.elapsed() < Duration::from_millis(500) {
                if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                    let m = m?;
                    bytes += m.payload().map_or(0, |p| p.len()) + m.key().map_or(0, |k| k.len());
                    n += 1;
                    idle = Instant::now();
                }
            }
            std::hint::black_box(bytes);
            // The idle wait at the end is not reading.
            (n, started.elapsed() - Duration::from_millis(500))
        }
        "pg-sluice" => {
            let (url, table, n) = (arg(1)?, arg(2)?, arg(3)?.parse::<i64>()?);
            let rows: Vec<Row> = (0..n).map(row).collect();
            let started = Instant::now();
            let p = pipeline();
            p.create("Rows", rows)
                .write_postgres("Write", WritePostgres::to(&url, &table));
            p.run()?.wait_until_finish()?;
            (n as u64, started.elapsed())
        }
        "pg-copy" => {
            let (url, table, n) = (arg(1)?, arg(2)?, arg(3)?.parse::<i64>()?);
            let rows: Vec<Row> = (0..n).map(row).collect();
            let started = Instant::now();
            let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
            let mut copy = client.copy_in(&format!(
                "COPY {table} (id, name, amount) FROM STDIN (FORMAT csv)"
            ))?;
            let mut buffer = Vec::with_capacity(1 << 20);
            for r in &rows {
                writeln!(buffer, "{},\"{}\",{}", r.id, r.name, r.amount)?;
                if buffer.len() > 1 << 20 {
                    copy.write_all(&buffer)?;
                    buffer.clear();
                }
            }
            copy.write_all(&buffer)?;
            copy.finish()?;
            (n as u64, started.elapsed())
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    println!("records={records} seconds={:.3}", seconds.as_secs_f64());
    Ok(())
}
