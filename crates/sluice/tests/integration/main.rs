//! sluice's integration tests: one test binary, one file per kind of behaviour.
//!
//! - `kit.rs`: the shared test kit — pipelines over 1, 2 and 4 workers, shard readers,
//!   plain reference computations. Start here when writing a test.
//! - `wordcount.rs`: the wordcount example's pipeline against a plain `HashMap` count, on
//!   generated, empty, one-line and gzip input.
//! - `transforms.rs`: the semantics of each transform (ParDo and DoFn lifecycle, tagged
//!   outputs, GroupByKey, Combine and the built-in combiners, Flatten, Reshuffle,
//!   composites), each checked on several worker counts.
//! - `core_transforms.rs`: Keys/Values/KvSwap/WithKeys, Distinct, ToList, Top, Sample,
//!   Latest, Partition, hot-key fanout, CoGroupByKey and joins.
//! - `plan.rs`: the plan JSON (fused stages, lifted combiner), `--plan_out`, `--dry_run`.
//! - `validation.rs`: errors found before any data moves, and that nothing was read or
//!   written when they are.
//! - `failures.rs`: failed jobs — final state, error text, no output left behind.
//! - `bad_input.rs`: malformed input (not UTF-8, corrupt gzip): failing at once, dead
//!   letters, bytes and lossy reads.
//! - `retries.rs`: bundle retries, teardown, coupled failure, dead letters.
//! - `windowing.rs`: event time and windows (fixed, sliding, sessions) in batch.
//! - `streaming.rs`: watermarks, triggers, lateness and panes on hand-made timelines
//!   (`TestStream`), and the validation of unsafe windowing.
//! - `parquet.rs`: Parquet rows read by row group and written in shards; schema checks.
//! - `records.rs`: CSV and JSON lines read and written with serde (round trips on 1 and
//!   2 workers, compressed inputs, malformed records with file, line and column).
//! - `spill.rs`: groupings over the memory budget spill to disk with the same results;
//!   every other test again under a tiny budget.
//! - `object_store.rs`: every format written to and read from an S3-compatible server
//!   (moto_server on loopback): globs, ranged reads, atomic commit, a failed and a killed
//!   job leaving no visible output.
//! - `kafka.rs`: records produced and read back against a Kafka-protocol broker (tansu on
//!   loopback): round trips on 1 and 2 workers, consumer-group offsets, keys and headers,
//!   dead letters, validation, a transactional write to a broker without transactions,
//!   a broker restarted mid-job (its records kept on moto_server),
//!   a streaming Kafka-to-PostgreSQL job with failing bundles, the `kafka_to_postgres`
//!   example.
//! - `postgres.rs`: rows read by partition ranges and written by COPY against a real
//!   PostgreSQL server (a throwaway cluster on loopback): round trips on 1 and 2 workers,
//!   upserts, validation, retried bundles, a failed job, a restarted server, streaming.
//! - `example.rs`: the example binaries as a user runs them (exit codes, stdout, logs).
//!
//! A test named `regression_*` pins a bug that was fixed; its doc comment says which.

mod kit;

/// The wordcount example's own pipeline (its `build`), tested as shipped.
#[allow(dead_code)]
#[path = "../../examples/wordcount.rs"]
mod wordcount_example;

mod bad_input;
mod core_transforms;
mod example;
mod failures;
mod kafka;
pub mod object_store;
mod parquet;
mod plan;
mod postgres;
mod records;
mod retries;
mod spill;
mod streaming;
mod transforms;
mod validation;
mod windowing;
mod wordcount;
