//! Kafka: records produced and read back against a real Kafka-protocol broker (tansu,
//! started by each test on a free loopback port with in-memory storage — or, to outlive
//! a restart, storage on an S3-compatible server — and stopped by its pid): round trips
//! on 1 and 2 workers, consumer-group offsets, transactions, a broker restarted mid-job,
//! bad records to a dead-letter output, and problems reported before anything runs.
//!
//! Needs the `tansu` broker (`cargo install tansu --features dynostore`; `.ci/run`
//! installs it): on PATH, or its path in `TANSU`; the restart test also needs `moto_server`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice::transforms::kafka::{KafkaRecord, ReadKafka, WriteKafka};

use crate::kit::{free_port, pipeline, sorted};
use crate::object_store::S3;

/// A Kafka-protocol broker of its own, on a free loopback port.
pub struct Broker {
    child: Child,
    port: u16,
    /// `127.0.0.1:PORT`
    pub servers: String,
    storage: String,
    env: Vec<(String, String)>,
}

fn program() -> String {
    std::env::var("TANSU").unwrap_or_else(|_| "tansu".into())
}

impl Broker {
    /// A broker keeping its records in memory (lost when it stops).
    pub fn start() -> Broker {
        Broker::spawn(free_port(), "memory://tansu/", &[])
    }

    /// A broker keeping its records in the bucket `tansu` of the S3-compatible `s3`, so
    /// that they outlive a restart.
    fn start_on(s3: &S3) -> Broker {
        s3.bucket("tansu");
        let env = [
            ("AWS_ENDPOINT", s3.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ];
        Broker::spawn(free_port(), "s3://tansu/", &env)
    }

    fn spawn(port: u16, storage: &str, env: &[(&str, String)]) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(program())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Kafka tests need the tansu broker ({}: {e}); cargo install tansu --features dynostore (.ci/run does), or set TANSU",
                    program()
                )
            });
        let broker = Broker {
            child,
            port,
            servers: format!("127.0.0.1:{port}"),
            storage: storage.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        crate::kit::wait_for_port(port, "the broker");
        broker
    }

    /// Stops the broker (by its pid), waits `down`, and starts it again on the same port
    /// and storage.
    fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let env: Vec<(&str, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        // The old child has exited and been waited for: dropping it is a no-op.
        *self = Broker::spawn(self.port, &self.storage, &env);
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(program())
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating {topic} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Event {
    user: String,
    n: u64,
}
impl sluice::SerdeCoder for Event {}

fn events(from: u64, to: u64) -> Vec<Event> {
    (from..to)
        .map(|n| Event {
            user: format!("u{}", n % 7),
            n,
        })
        .collect()
}

/// Writes `events` as JSON values keyed by user, as `write` says.
fn produce(events: Vec<Event>, workers: usize, write: WriteKafka) {
    let p = pipeline(workers);
    p.create("Events", events)
        .write_kafka("Produce", write, |e: &Event| {
            (
                Some(e.user.clone().into_bytes()),
                serde_json::to_vec(e).unwrap(),
            )
        });
    p.run().unwrap().wait_until_finish().unwrap();
}

/// Reads the topic up to its end as JSON events.
fn consume(broker: &Broker, topic: &str, workers: usize, group: Option<&str>) -> Vec<Event> {
    let p = pipeline(workers);
    let mut read = ReadKafka::from(&broker.servers, topic).bounded();
    if let Some(group) = group {
        read = read.with_consumer_group(group);
    }
    let events = p
        .read_kafka_json::<Event>("Consume", read)
        .collect("Events");
    p.run().unwrap().wait_until_finish().unwrap();
    sorted(events.values())
}

/// Asserts that `read` holds exactly `expected` (in any order), saying what differs.
fn assert_same(read: Vec<Event>, expected: Vec<Event>) {
    let expected = sorted(expected);
    let missing: Vec<u64> = expected
        .iter()
        .filter(|e| !read.contains(e))
        .map(|e| e.n)
        .collect();
    let extra: Vec<u64> = read
        .iter()
        .filter(|e| !expected.contains(e))
        .map(|e| e.n)
        .collect();
    assert!(
        read == expected,
        "read {} events, expected {}; missing {missing:?}; not expected {extra:?}",
        read.len(),
        expected.len()
    );
}

#[test]
fn records_round_trip_on_one_and_two_workers() {
    let broker = Broker::start();
    for workers in [1, 2] {
        let topic = format!("events-{workers}");
        broker.topic(&topic, 2);
        produce(
            events(0, 1000),
            workers,
            WriteKafka::to(&broker.servers, &topic),
        );
        assert_same(consume(&broker, &topic, workers, None), events(0, 1000));
    }
}

#[test]
fn a_consumer_group_resumes_after_committed_offsets() {
    let broker = Broker::start();
    broker.topic("clicks", 2);
    let write = WriteKafka::to(&broker.servers, "clicks");
    produce(events(0, 300), 2, write.clone());
    assert_same(consume(&broker, "clicks", 2, Some("g1")), events(0, 300));
    produce(events(300, 500), 2, write);
    // The group committed what it read: only the new records now.
    assert_same(consume(&broker, "clicks", 2, Some("g1")), events(300, 500));
    // Another group starts at the beginning.
    assert_same(consume(&broker, "clicks", 1, Some("g2")), events(0, 500));
}

#[test]
fn keys_headers_and_offsets_are_exposed() {
    let broker = Broker::start();
    broker.topic("raw", 1);
    produce(events(0, 5), 1, WriteKafka::to(&broker.servers, "raw"));
    let p = pipeline(1);
    let records = p
        .read_kafka("Read", ReadKafka::from(&broker.servers, "raw").bounded())
        .collect("Records");
    p.run().unwrap().wait_until_finish().unwrap();
    let mut records: Vec<KafkaRecord> = records.values();
    records.sort_by_key(|r| r.offset);
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(records[3].key_str(), "u3");
    assert_eq!(records[3].value_str(), r#"{"user":"u3","n":3}"#);
    assert!(records.iter().all(|r| r.partition == 0 && r.topic == "raw"));
    assert!(records.iter().all(|r| r.timestamp_ms.is_some()));
}

/// Transactions need a broker that implements them (EndTxn); the broker these tests run
/// (tansu 0.6) does not, so what is checked here is that a transactional write against
/// it fails the job at its commit with an error that names the topic and the cause,
/// rather than hanging or reporting success.
#[test]
fn a_transactional_write_to_a_broker_without_transactions_fails_clearly() {
    let broker = Broker::start();
    broker.topic("orders", 2);
    let p = pipeline(2);
    p.create("Events", events(0, 100)).write_kafka(
        "Produce",
        WriteKafka::to(&broker.servers, "orders").transactional(),
        |e: &Event| (None, serde_json::to_vec(e).unwrap()),
    );
    let error = crate::kit::job_failure(&p);
    assert!(error.contains("Produce"), "{error}");
    assert!(error.contains("transaction on topic 'orders'"), "{error}");
    assert!(error.contains("not supported by broker"), "{error}");
}

#[test]
fn bad_records_go_to_the_dead_letter_output() {
    let broker = Broker::start();
    broker.topic("mixed", 1);
    let p = pipeline(1);
    p.create(
        "Values",
        vec![
            r#"{"user":"a","n":1}"#.to_string(),
            "not json".to_string(),
            r#"{"user":"b","n":2}"#.to_string(),
            r#"{"user":"c"}"#.to_string(),
        ],
    )
    .write_kafka(
        "Produce",
        WriteKafka::to(&broker.servers, "mixed"),
        |v: &String| (None, v.clone().into_bytes()),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    let p = pipeline(2);
    let (good, bad) = p.read_kafka_json_with_dead_letter::<Event>(
        "Read",
        ReadKafka::from(&broker.servers, "mixed").bounded(),
    );
    let good = good.collect("Good");
    let bad = bad.collect("Bad");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_same(
        sorted(good.values()),
        vec![
            Event {
                user: "a".into(),
                n: 1,
            },
            Event {
                user: "b".into(),
                n: 2,
            },
        ],
    );
    let mut bad = bad.values();
    bad.sort_by_key(|b| b.record.offset);
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].record.offset, 1);
    assert_eq!(bad[0].record.value_str(), "not json");
    assert!(
        bad[0].error.contains("offset 1 of partition 0 of 'mixed'"),
        "{}",
        bad[0].error
    );
    assert!(
        bad[1].error.contains("missing field `n`"),
        "{}",
        bad[1].error
    );
    // Without a dead-letter output, the first bad record fails the job, naming it.
    let p = pipeline(1);
    let _ = p
        .read_kafka_json::<Event>("Read", ReadKafka::from(&broker.servers, "mixed").bounded())
        .collect("Good");
    let error = crate::kit::job_failure(&p);
    assert!(
        error.contains("offset 1 of partition 0 of 'mixed'"),
        "{error}"
    );
}

#[test]
fn unreachable_brokers_and_missing_topics_are_reported_before_anything_runs() {
    let broker = Broker::start();
    broker.topic("present", 1);
    let closed = format!("127.0.0.1:{}", free_port());
    let p = pipeline(1);
    let _ = p.read_kafka("ReadNowhere", ReadKafka::from(&closed, "present"));
    let _ = p.read_kafka("ReadMissing", ReadKafka::from(&broker.servers, "absent"));
    p.create("Values", vec![1u64]).write_kafka(
        "WriteMissing",
        WriteKafka::to(&broker.servers, "absent2"),
        |n: &u64| (None, n.to_string().into_bytes()),
    );
    let Err(error) = p.run() else {
        panic!("the pipeline is invalid")
    };
    let error = error.to_string();
    for expected in [
        "ReadNowhere",
        "cannot reach the Kafka brokers",
        "ReadMissing",
        "the topic 'absent' does not exist",
        "WriteMissing",
        "the topic 'absent2' does not exist",
    ] {
        assert!(error.contains(expected), "{expected} in: {error}");
    }
}

/// The broker goes away for two seconds while a job reads one topic (committing its
/// offsets to a consumer group) and writes another: the job rides through (the clients
/// reconnect, failed reads and writes are retried) and every record arrives. The broker
/// keeps its records in an S3-compatible server so that they outlive the restart.
#[test]
fn a_job_survives_a_broker_restarted_mid_job() {
    let s3 = S3::start();
    let mut broker = Broker::start_on(&s3);
    broker.topic("in", 2);
    broker.topic("out", 2);
    produce(events(0, 3000), 2, WriteKafka::to(&broker.servers, "in"));
    let servers = broker.servers.clone();
    let processed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = processed.clone();
    let job = std::thread::spawn(move || {
        let p = pipeline(2);
        let read = ReadKafka::from(&servers, "in")
            .bounded()
            .with_consumer_group("restart");
        p.read_kafka_json::<Event>("Read", read)
            .map("Slow", move |e: Event| {
                // About 3 s in all over 2 workers, so the restart lands mid-job.
                std::thread::sleep(Duration::from_millis(2));
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                e
            })
            .write_kafka("Write", WriteKafka::to(&servers, "out"), |e: &Event| {
                (None, serde_json::to_vec(e).unwrap())
            });
        p.run()?.wait_until_finish()
    });
    let started = Instant::now();
    while processed.load(std::sync::atomic::Ordering::Relaxed) < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!job.is_finished(), "the job ended before the restart");
    broker.restart(Duration::from_secs(2));
    job.join().unwrap().unwrap();
    // At-least-once without transactions: nothing lost; a retried bundle could repeat
    // records, so duplicates are allowed but counted.
    let out = consume(&broker, "out", 2, None);
    let mut unique = out.clone();
    unique.dedup();
    assert_same(unique, events(0, 3000));
    eprintln!("{} records written for 3000 read", out.len());
    // The group's offsets reached the end: nothing left to read for it.
    assert_same(consume(&broker, "in", 1, Some("restart")), vec![]);
}

#[test]
fn a_streaming_job_from_kafka_to_postgres_with_failing_bundles_writes_exact_counts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let broker = Broker::start();
    let pg = crate::postgres::Postgres::start();
    pg.execute(
        "CREATE TABLE counts (key text, window_start bigint, count bigint, PRIMARY KEY (key, window_start))",
    );
    broker.topic("events", 2);
    produce(events(0, 600), 2, WriteKafka::to(&broker.servers, "events"));
    let p = pipeline(2);
    let failures = Arc::new(AtomicUsize::new(0));
    // Event time from the value: event n happens at n × 100 ms.
    let read = ReadKafka::from(&broker.servers, "events")
        .bounded()
        .with_timestamp_fn(|r: &KafkaRecord| {
            let e: Event = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            sluice::Timestamp::from_millis(e.n as i64 * 100)
        });
    p.read_kafka_json::<Event>("Read", read)
        .try_map("Flaky", move |e: Event| {
            // The first five elements fail their bundles, which are retried.
            if failures.fetch_add(1, Ordering::SeqCst) < 5 {
                Err("injected failure")
            } else {
                Ok(e.user)
            }
        })
        .window_into(
            "Windows",
            sluice::windowing::FixedWindows::of_millis(10_000),
        )
        .count_per_element("Count")
        .par_do("ToRow", crate::postgres::ToRow)
        .write_postgres(
            "Write",
            sluice::transforms::postgres::WritePostgres::to(&pg.url, "counts")
                .with_upsert_key(&["key", "window_start"]),
        );
    p.run().unwrap().wait_until_finish().unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..600i64 {
        *expected
            .entry((format!("u{}", n % 7), n * 100 / 10_000 * 10_000))
            .or_insert(0i64) += 1;
    }
    let expected: Vec<String> = expected
        .into_iter()
        .map(|((user, window_start), count)| {
            format!(r#"{{"key":"{user}","window_start":{window_start},"count":{count}}}"#)
        })
        .collect();
    assert_eq!(
        pg.rows("SELECT key, window_start, count FROM counts ORDER BY 1, 2"),
        expected
    );
}

#[test]
fn the_kafka_to_postgres_example_counts_records_per_key_and_window() {
    let broker = Broker::start();
    let pg = crate::postgres::Postgres::start();
    let run = |extra: &[&str]| {
        crate::example::example("kafka_to_postgres")
            .arg(format!("--bootstrap_servers={}", broker.servers))
            .arg("--topic=events")
            .arg(format!("--postgres_url={}", pg.url))
            .arg("--table=event_counts")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--produce=1000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("created the topic events"), "{stderr}");
    assert!(stdout.contains("read 1000 records; wrote"), "{stdout}");
    let per_key = "SELECT key, sum(count)::bigint AS n FROM event_counts GROUP BY key ORDER BY key";
    let expected: Vec<String> = (0..10)
        .map(|k| format!(r#"{{"key":"key-{k}","n":100}}"#))
        .collect();
    assert_eq!(pg.rows(per_key), expected);
    // Run again over the same records, on two worker processes of the cluster runner:
    // each window's row is replaced, not added to.
    let out = run(&["--runner=ClusterRunner", "--num_workers=2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.rows(per_key), expected);
    // An unreachable database: a clear error naming the transform, before anything runs.
    let out = crate::example::example("kafka_to_postgres")
        .arg(format!("--bootstrap_servers={}", broker.servers))
        .arg("--topic=events")
        .arg("--postgres_url=postgres://postgres@127.0.0.1:1/postgres")
        .arg("--table=event_counts")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("WriteCounts"), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
}
