//! Kafka: a topic's records as an unbounded (or bounded) source, and a sink producing
//! records.
//!
//! `read_kafka` reads every partition of a topic, one split per partition spread over
//! the workers. Each element is a [`KafkaRecord`] (key, value, headers, partition,
//! offset, timestamp) whose event time is the record's timestamp (or what
//! [`ReadKafka::with_timestamp_fn`] says). A partition's watermark is the latest event
//! time it has read — records are taken to arrive in time order per partition, later
//! ones with an earlier time are late — and, once the partition is caught up and has
//! had no record for the idle timeout, the processing time less that timeout, so an
//! idle partition does not hold windows back. The source's watermark is the minimum
//! over its partitions.
//!
//! Positions live in the source's checkpoints: a failed bundle reads the same records
//! again. With a consumer group, reading starts at the group's committed offsets (else
//! at the earliest), and a partition's offset is committed to the group only once the
//! bundles that read up to it have committed — delivery into the pipeline is at least
//! once: after a crash or a drain, the records after the last commit are read again.
//! [`ReadKafka::bounded`] reads up to the offsets present when the job starts, then
//! ends (a bounded read in a batch-like streaming job whose watermark reaches the end).
//!
//! `write_kafka` produces each committed bundle's records with an idempotent producer
//! and waits until the brokers acknowledge them before the bundle is done. A retried
//! bundle writes nothing twice (only committed bundles reach the sink); a write that
//! fails fails the job, and records produced before it stay. With
//! [`WriteKafka::transactional`], a batch job's records are one transaction per worker,
//! committed when the job commits (aborted if it fails), and a streaming job's are one
//! transaction per bundle: consumers reading committed records see all or none of
//! them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::error::Permanent;
use sluice_core::{BoxError, Element, Timestamp};
use sluice_io::kafka::{KafkaSink, KafkaTopic, PartitionReader};
use sluice_plan::Payload;

pub use sluice_io::kafka::KafkaRecord;

use crate::dofn::{Context, DoFn, TupleTag};
use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;
use crate::transforms::source::{Emit, Progress, ReadContext, UnboundedSource, Unusable};

/// Gives a record its event time.
pub type TimestampFn = dyn Fn(&KafkaRecord) -> Timestamp + Send + Sync;

/// What to read from Kafka (`Pipeline::read_kafka`).
#[derive(Clone)]
pub struct ReadKafka {
    servers: String,
    topic: String,
    group: Option<String>,
    bounded: bool,
    idle_timeout: Duration,
    settings: Vec<(String, String)>,
    timestamps: Option<Arc<TimestampFn>>,
}

impl Debug for ReadKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadKafka")
            .field("servers", &self.servers)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("bounded", &self.bounded)
            .finish()
    }
}

impl ReadKafka {
    /// Every partition of `topic` on the brokers `servers` (`HOST:PORT,…`), from the
    /// earliest offset, without end.
    pub fn from(servers: &str, topic: &str) -> ReadKafka {
        ReadKafka {
            servers: servers.into(),
            topic: topic.into(),
            group: None,
            bounded: false,
            idle_timeout: Duration::from_secs(10),
            settings: Vec::new(),
            timestamps: None,
        }
    }

    /// Starts at `group`'s committed offsets and commits the offsets of committed
    /// bundles to it.
    pub fn with_consumer_group(mut self, group: &str) -> ReadKafka {
        self.group = Some(group.into());
        self
    }

    /// Reads up to the offsets present when the job starts, then ends.
    pub fn bounded(mut self) -> ReadKafka {
        self.bounded = true;
        self
    }

    /// A caught-up partition without records for `timeout` moves its watermark to the
    /// processing time less `timeout` (default 10 s).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> ReadKafka {
        self.idle_timeout = timeout;
        self
    }

    /// Event times from `f` instead of the records' timestamps.
    pub fn with_timestamp_fn(
        mut self,
        f: impl Fn(&KafkaRecord) -> Timestamp + Send + Sync + 'static,
    ) -> ReadKafka {
        self.timestamps = Some(Arc::new(f));
        self
    }

    /// A librdkafka setting for the source's clients (`security.protocol`, …).
    pub fn with_setting(mut self, key: &str, value: &str) -> ReadKafka {
        self.settings.push((key.into(), value.into()));
        self
    }
}

/// Where a partition's reading stands.
#[derive(Clone, Debug)]
pub struct KafkaPosition {
    partition: i32,
    /// The next offset to read.
    next: i64,
    /// Where a bounded read ends.
    end: Option<i64>,
    /// The offset last committed to the consumer group.
    committed: i64,
    watermark: Timestamp,
    /// When the partition last had a record (processing time, ms).
    last_record_ms: i64,
}

/// The records of a checked topic.
struct KafkaSource {
    read: ReadKafka,
    topic: KafkaTopic,
    /// A reader per partition, kept between reads.
    readers: Mutex<HashMap<i32, Arc<Mutex<PartitionReader>>>>,
}

impl KafkaSource {
    fn reader(&self, partition: i32) -> Result<Arc<Mutex<PartitionReader>>, BoxError> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = readers.get(&partition) {
            return Ok(r.clone());
        }
        let reader = Arc::new(Mutex::new(
            self.topic.reader(partition, self.read.group.as_deref())?,
        ));
        readers.insert(partition, reader.clone());
        Ok(reader)
    }
}

impl UnboundedSource for KafkaSource {
    type Output = KafkaRecord;
    type Checkpoint = KafkaPosition;

    fn split(&self, _workers: usize) -> Result<Vec<KafkaPosition>, BoxError> {
        let starts = self.topic.start_offsets(self.read.group.as_deref())?;
        let ends = if self.read.bounded {
            Some(self.topic.end_offsets()?)
        } else {
            None
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(self
            .topic
            .partitions
            .iter()
            .map(|p| KafkaPosition {
                partition: *p,
                next: starts[p],
                end: ends.as_ref().map(|e| e[p]),
                committed: starts[p],
                watermark: Timestamp::MIN,
                last_record_ms: now,
            })
            .collect())
    }

    fn read(
        &self,
        at: &KafkaPosition,
        max_elements: usize,
        job: &ReadContext<'_>,
        out: &mut Emit<'_, KafkaRecord>,
    ) -> Result<Progress<KafkaPosition>, BoxError> {
        let now = job.now_ms();
        let reader = self.reader(at.partition)?;
        let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = at.clone();
        // Reading from `at` means the bundles that read up to it have committed.
        if next.next > next.committed {
            let done = next.end.is_some_and(|end| next.next >= end);
            reader.commit(next.next, done)?;
            next.committed = next.next;
        }
        if next.end.is_some_and(|end| next.next >= end) {
            return Ok(Progress {
                next: None,
                watermark: Timestamp::MAX,
                not_before_ms: None,
            });
        }
        let max = match next.end {
            Some(end) => max_elements.min((end - next.next).max(0) as usize),
            None => max_elements,
        };
        let records = reader.read(next.next, max.max(1), Duration::from_millis(20))?;
        let had_records = !records.is_empty();
        for record in records {
            if next.end.is_some_and(|end| record.offset >= end) {
                next.next = next.end.unwrap_or(next.next);
                break;
            }
            let timestamp = match &self.read.timestamps {
                Some(f) => f(&record),
                None => Timestamp::from_millis(record.timestamp_ms.unwrap_or(now)),
            };
            next.next = record.offset + 1;
            next.watermark = next.watermark.max(timestamp);
            out.emit(record, timestamp)?;
        }
        if had_records {
            next.last_record_ms = now;
        } else {
            // A bounded read whose remaining offsets hold no records (transaction markers).
            if let (Some(end), Some(position)) = (next.end, reader.skipped_to())
                && position >= end
            {
                next.next = end;
            }
            let idle = self.read.idle_timeout.as_millis() as i64;
            if now - next.last_record_ms >= idle {
                next.watermark = next.watermark.max(Timestamp::from_millis(now - idle));
            }
        }
        Ok(Progress {
            watermark: next.watermark,
            not_before_ms: (!had_records).then_some(now + 50),
            next: Some(next),
        })
    }
}

/// A record that did not decode, with why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadKafkaRecord {
    /// The record as read.
    pub record: KafkaRecord,
    /// Why it did not decode.
    pub error: String,
}
impl sluice_core::SerdeCoder for BadKafkaRecord {}

/// Decodes record values as JSON `T`; bad ones fail the job or go to a tag.
struct DecodeJson<T> {
    bad: Option<TupleTag<BadKafkaRecord>>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for DecodeJson<T> {
    fn clone(&self) -> Self {
        DecodeJson {
            bad: self.bad.clone(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Element + serde::de::DeserializeOwned> DoFn for DecodeJson<T> {
    type In = KafkaRecord;
    type Out = T;
    fn process(&mut self, record: KafkaRecord, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        match serde_json::from_slice::<T>(record.value.as_deref().unwrap_or_default()) {
            Ok(value) => {
                ctx.emit(value);
                Ok(())
            }
            Err(e) => {
                let error = format!(
                    "the value at offset {} of partition {} of '{}' is not a JSON {}: {e}",
                    record.offset,
                    record.partition,
                    record.topic,
                    std::any::type_name::<T>()
                );
                match &self.bad {
                    Some(tag) => {
                        ctx.emit_to(tag, BadKafkaRecord { record, error });
                        Ok(())
                    }
                    None => Err(Permanent::new(error).into()),
                }
            }
        }
    }
}

impl Pipeline {
    /// The records of a topic, as `read` says (see the module documentation); the
    /// pipeline runs as a streaming job. The brokers and the topic are checked now; a
    /// problem is reported by `run`, naming the transform, before anything runs.
    pub fn read_kafka(&self, name: &str, read: ReadKafka) -> PCollection<KafkaRecord> {
        let full = self.full_name(name);
        let out = match KafkaTopic::check(&full, &read.servers, &read.topic, &read.settings) {
            Ok(topic) => self.read_unbounded(
                name,
                KafkaSource {
                    read: read.clone(),
                    topic,
                    readers: Mutex::default(),
                },
            ),
            Err(error) => {
                self.io_problem(&error);
                self.read_unbounded(name, Unusable::<KafkaRecord>::new())
            }
        };
        let id = self.inner.borrow().graph.pcollection(out.id).producer;
        self.display(id, "bootstrapServers", &read.servers);
        self.display(id, "topic", &read.topic);
        if let Some(group) = &read.group {
            self.display(id, "consumerGroup", group);
        }
        if read.bounded {
            self.display(id, "bounded", "to the offsets at start");
        }
        out
    }

    /// The record values of a topic decoded as JSON `T`; a value that does not decode
    /// fails the job, naming topic, partition and offset.
    pub fn read_kafka_json<T: Element + serde::de::DeserializeOwned>(
        &self,
        name: &str,
        read: ReadKafka,
    ) -> PCollection<T> {
        self.composite(name, |p: &Pipeline| {
            p.read_kafka("Read", read).par_do(
                "DecodeJson",
                DecodeJson::<T> {
                    bad: None,
                    _t: std::marker::PhantomData,
                },
            )
        })
    }

    /// The record values of a topic decoded as JSON `T`, and the records that do not
    /// decode, each with why.
    pub fn read_kafka_json_with_dead_letter<T: Element + serde::de::DeserializeOwned>(
        &self,
        name: &str,
        read: ReadKafka,
    ) -> (PCollection<T>, PCollection<BadKafkaRecord>) {
        let bad = TupleTag::<BadKafkaRecord>::new("bad");
        let (good, others) = self.composite(name, |p: &Pipeline| {
            let (good, others) = p.read_kafka("Read", read).par_do_with_outputs(
                "DecodeJson",
                DecodeJson::<T> {
                    bad: Some(bad.clone()),
                    _t: std::marker::PhantomData,
                },
                &[bad.spec()],
            );
            (good, others.get(&bad))
        });
        (good, others)
    }
}

/// Where and how to write to Kafka (`PCollection::write_kafka`).
#[derive(Clone, Debug)]
pub struct WriteKafka {
    servers: String,
    topic: String,
    transactional: bool,
    settings: Vec<(String, String)>,
}

impl WriteKafka {
    /// Records to `topic` on the brokers `servers`.
    pub fn to(servers: &str, topic: &str) -> WriteKafka {
        WriteKafka {
            servers: servers.into(),
            topic: topic.into(),
            transactional: false,
            settings: Vec::new(),
        }
    }

    /// Kafka transactions: a batch job's records commit with the job, a streaming job's
    /// with each bundle (see the module documentation).
    pub fn transactional(mut self) -> WriteKafka {
        self.transactional = true;
        self
    }

    /// A librdkafka setting for the sink's producers (`compression.type`, `linger.ms`, …).
    pub fn with_setting(mut self, key: &str, value: &str) -> WriteKafka {
        self.settings.push((key.into(), value.into()));
        self
    }
}

impl<T: Element> PCollection<T> {
    /// Produces a record per element — key and value from `record` — to the topic
    /// `write` names. The brokers and the topic are checked now; a problem is reported
    /// by `run`.
    pub fn write_kafka<F>(&self, name: &str, write: WriteKafka, record: F)
    where
        F: Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync + 'static,
    {
        let full = self.pipeline.full_name(name);
        match KafkaSink::<T>::new(
            &full,
            &write.servers,
            &write.topic,
            write.transactional,
            &write.settings,
            Arc::new(record),
        ) {
            Ok(sink) => {
                let (id, _) = self.pipeline.add_transform(
                    name,
                    vec![self.id],
                    Payload::Write(Arc::new(sink)),
                    Vec::new(),
                );
                self.pipeline
                    .display(id, "bootstrapServers", &write.servers);
                self.pipeline.display(id, "topic", &write.topic);
                if write.transactional {
                    self.pipeline.display(id, "transactional", "true");
                }
            }
            Err(error) => self.pipeline.io_problem(&error),
        }
    }
}
