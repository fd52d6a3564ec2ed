//! Kafka: records of a topic's partitions read by position, and records written by a
//! producer per worker — through librdkafka (the `rdkafka` crate).
//!
//! The reading side is positional: a [`PartitionReader`] reads one partition from a
//! given offset, so a failed bundle reads the same records again; the SDK's unbounded
//! source (`sluice::transforms::kafka`) keeps positions in its checkpoints and commits
//! them to the consumer group once the bundles that read them have committed.
//!
//! The writing side ([`KafkaSink`]) produces the records of each committed bundle and
//! flushes them before the next one; in transactional mode the records of a batch job
//! form one transaction per worker, committed with the job, and those of a streaming
//! job one transaction per bundle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sluice_core::receiver::AnyReceiver;
use sluice_core::unit::{
    JobInfo, SinkBuffer, SinkBytes, SinkFactory, SinkJob, SinkWriter, UnitContext,
};
use sluice_core::{BoxError, Element, ExecError, Receiver, SerdeCoder, UnitResult, WindowedValue};

use crate::error::IoError;

/// How long metadata and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for its records to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a partition may stay unreachable (the client reconnecting on its own)
/// before reading or committing it fails.
const OUTAGE_LIMIT: Duration = Duration::from_secs(60);

/// Whether `e` is one the client recovers from by itself (a broker down, restarting or
/// moving a partition): the read waits for it instead of failing.
fn transient(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
        )
    )
}

/// One Kafka record, as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (ms since the epoch; create or log-append time), if any.
    pub timestamp_ms: Option<i64>,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value, if any (a tombstone has none).
    pub value: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl SerdeCoder for KafkaRecord {}

impl KafkaRecord {
    /// The key as UTF-8 text (lossy), or "" without one.
    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }

    /// The value as UTF-8 text (lossy), or "" without one.
    pub fn value_str(&self) -> String {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
}

fn problem(transform: &str, problem: String) -> IoError {
    IoError::Connector {
        transform: transform.to_string(),
        problem,
    }
}

/// A client configuration for `servers`, with `extra` settings on top.
fn config(servers: &str, extra: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", servers)
        .set("socket.timeout.ms", "10000")
        .set("allow.auto.create.topics", "false");
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// A topic checked to exist on reachable brokers, with its partitions.
#[derive(Clone, Debug)]
pub struct KafkaTopic {
    /// The bootstrap servers (`HOST:PORT,…`).
    pub servers: String,
    /// The topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: Vec<i32>,
    /// Extra librdkafka settings for every client.
    pub settings: Vec<(String, String)>,
}

impl KafkaTopic {
    /// Asks the brokers at `servers` for `topic`'s partitions; an unreachable broker or a
    /// missing topic is a problem naming `transform`.
    pub fn check(
        transform: &str,
        servers: &str,
        topic: &str,
        settings: &[(String, String)],
    ) -> Result<KafkaTopic, IoError> {
        let consumer: BaseConsumer = config(servers, settings).create().map_err(|e| {
            problem(
                transform,
                format!("cannot make a Kafka client for '{servers}': {e}; check the bootstrap servers (HOST:PORT,…) and settings"),
            )
        })?;
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| {
                problem(
                    transform,
                    format!(
                        "cannot reach the Kafka brokers at '{servers}': {e}; check that they run and --bootstrap_servers"
                    ),
                )
            })?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions: Vec<i32> = found
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(problem(
                transform,
                format!(
                    "the topic '{topic}' does not exist on the brokers at '{servers}'; create it, or check its name"
                ),
            ));
        }
        Ok(KafkaTopic {
            servers: servers.to_string(),
            topic: topic.to_string(),
            partitions,
            settings: settings.to_vec(),
        })
    }

    /// The offsets to start each partition at: the consumer group's committed offset, or
    /// the earliest one.
    pub fn start_offsets(&self, group: Option<&str>) -> Result<HashMap<i32, i64>, BoxError> {
        let consumer = self.consumer(group)?;
        let mut starts = HashMap::new();
        let committed = match group {
            Some(_) => {
                let mut tpl = TopicPartitionList::new();
                for p in &self.partitions {
                    tpl.add_partition(&self.topic, *p);
                }
                Some(consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?)
            }
            None => None,
        };
        for p in &self.partitions {
            let (low, _) = consumer.fetch_watermarks(&self.topic, *p, REQUEST_TIMEOUT)?;
            let from_group = committed
                .as_ref()
                .and_then(|c| c.find_partition(&self.topic, *p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            starts.insert(*p, from_group.unwrap_or(low).max(low));
        }
        Ok(starts)
    }

    /// Each partition's end: the offset after its last record now. The brokers'
    /// high watermark is confirmed by reading on from just before it until nothing more
    /// comes (some Kafka-protocol brokers report the start of the last batch instead).
    pub fn end_offsets(&self) -> Result<HashMap<i32, i64>, BoxError> {
        // One partition per thread: each confirmation ends with a short wait.
        std::thread::scope(|scope| {
            let probes: Vec<_> = self
                .partitions
                .iter()
                .map(|p| scope.spawn(move || self.end_offset(*p).map(|end| (*p, end))))
                .collect();
            probes
                .into_iter()
                .map(|probe| {
                    probe
                        .join()
                        .unwrap_or_else(|_| Err("reading a partition's end panicked".into()))
                })
                .collect()
        })
    }

    fn end_offset(&self, partition: i32) -> Result<i64, BoxError> {
        let mut reader = self.reader(partition, None)?;
        let (low, high) =
            reader
                .consumer
                .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)?;
        let mut end = high.max(low);
        let mut from = (high - 1).max(low);
        let mut wait = Duration::from_millis(1000);
        loop {
            let records = reader.read(from, 10_000, wait)?;
            let Some(last) = records.last() else {
                if reader.down_since.is_some() {
                    // Unreachable for now (the read gives up after the outage limit).
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                break;
            };
            from = last.offset + 1;
            end = end.max(from);
            wait = Duration::from_millis(200);
        }
        Ok(end)
    }

    fn consumer(&self, group: Option<&str>) -> Result<BaseConsumer, KafkaError> {
        let mut config = config(&self.servers, &self.settings);
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", group.unwrap_or("sluice"));
        config.create()
    }

    /// A reader of `partition`.
    pub fn reader(&self, partition: i32, group: Option<&str>) -> Result<PartitionReader, BoxError> {
        Ok(PartitionReader {
            consumer: self.consumer(group)?,
            topic: self.topic.clone(),
            partition,
            position: None,
            has_group: group.is_some(),
            down_since: None,
        })
    }
}

/// Creates `topic` with `partitions` partitions (replication factor 1) on the brokers at
/// `servers`, unless it exists; returns whether it was created.
pub fn create_topic(servers: &str, topic: &str, partitions: i32) -> Result<bool, BoxError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        config(servers, &[]).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(format!("creating the topic '{topic}' failed: {code}").into()),
        None => Err(format!("creating the topic '{topic}': no answer").into()),
    }
}

/// Reads one partition by position.
pub struct PartitionReader {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    /// The offset the consumer will deliver next, if assigned.
    position: Option<i64>,
    has_group: bool,
    /// While the partition is unreachable: when that began, and the latest error.
    down_since: Option<(Instant, Instant)>,
}

impl PartitionReader {
    /// Reads at most `max` records from offset `from`, waiting at most `wait` for the
    /// first one.
    pub fn read(
        &mut self,
        from: i64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<KafkaRecord>, BoxError> {
        if self.position != Some(from) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(from))?;
            self.consumer.assign(&tpl)?;
            self.position = Some(from);
        }
        let mut records = Vec::new();
        let mut timeout = wait;
        while records.len() < max {
            let Some(message) = self.consumer.poll(timeout) else {
                break;
            };
            let message = match message {
                Ok(message) => message,
                Err(e) if transient(&e) => {
                    // The client reconnects by itself; read again later.
                    self.outage(&e)?;
                    break;
                }
                Err(e) => {
                    self.position = None;
                    return Err(format!(
                        "reading partition {} of '{}' failed: {e}",
                        self.partition, self.topic
                    )
                    .into());
                }
            };
            self.down_since = None;
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                        .collect()
                })
                .unwrap_or_default();
            records.push(KafkaRecord {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(|k| k.to_vec()),
                value: message.payload().map(|v| v.to_vec()),
                headers,
            });
            self.position = Some(message.offset() + 1);
            timeout = Duration::ZERO;
        }
        Ok(records)
    }

    /// Where the consumer stands in the partition after skipping records that are not
    /// data (transaction markers), if it has fetched.
    pub fn skipped_to(&self) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        match positions
            .find_partition(&self.topic, self.partition)?
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Commits `offset` (the next to read) to the consumer group.
    pub fn commit(&mut self, offset: i64, sync: bool) -> Result<(), BoxError> {
        if !self.has_group {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))?;
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        loop {
            match self.consumer.commit(&tpl, mode) {
                Ok(()) => {
                    self.down_since = None;
                    return Ok(());
                }
                Err(e) if transient(&e) => {
                    self.outage(&e)?;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Notes that the partition is unreachable (`e`); fails once it has been for
    /// longer than [`OUTAGE_LIMIT`].
    fn outage(&mut self, e: &KafkaError) -> Result<(), BoxError> {
        let now = Instant::now();
        let (since, last) = self.down_since.get_or_insert((now, now));
        // Errors far apart are separate outages (a recovery need not deliver a record).
        if now.duration_since(*last) > Duration::from_secs(10) {
            *since = now;
        }
        *last = now;
        if since.elapsed() > OUTAGE_LIMIT {
            return Err(format!(
                "partition {} of '{}' has been unreachable for {} s: {e}",
                self.partition,
                self.topic,
                OUTAGE_LIMIT.as_secs()
            )
            .into());
        }
        Ok(())
    }
}

/// A producer's delivery failures.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
    delivered: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

type KafkaProducer = BaseProducer<Deliveries>;

/// What a Kafka sink writes, and where.
#[derive(Debug)]
struct SinkSpec {
    transform: String,
    servers: String,
    topic: String,
    transactional: bool,
    settings: Vec<(String, String)>,
}

/// Turns an element into a record's key and value.
pub type RecordOf<T> = dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync;

/// A sink of records into a Kafka topic (see the module documentation).
pub struct KafkaSink<T> {
    spec: Arc<SinkSpec>,
    record: Arc<RecordOf<T>>,
}

impl<T> KafkaSink<T> {
    /// Checks that `topic` exists on the brokers at `servers`; `record` makes each
    /// element's key and value. Problems name `transform`.
    pub fn new(
        transform: &str,
        servers: &str,
        topic: &str,
        transactional: bool,
        settings: &[(String, String)],
        record: Arc<RecordOf<T>>,
    ) -> Result<KafkaSink<T>, IoError> {
        KafkaTopic::check(transform, servers, topic, settings)?;
        Ok(KafkaSink {
            spec: Arc::new(SinkSpec {
                transform: transform.to_string(),
                servers: servers.to_string(),
                topic: topic.to_string(),
                transactional,
                settings: settings.to_vec(),
            }),
            record,
        })
    }
}

/// Encodes elements as length-prefixed key and value (a key length of `u32::MAX`: none).
struct RecordUnit<T> {
    buffer: SinkBuffer,
    record: Arc<RecordOf<T>>,
}

impl<T> Receiver<T> for RecordUnit<T> {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, element: WindowedValue<T>) -> UnitResult {
        let (key, value) = (self.record)(&element.value);
        self.buffer.append::<ExecError>(|out| {
            match &key {
                Some(k) => {
                    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    out.extend_from_slice(k);
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(&value);
            Ok(())
        })?;
        Ok(())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

/// The records of a bundle's bytes.
fn records(bytes: &[u8]) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let key_len = u32::from_le_bytes(take(4).try_into().unwrap());
        let key = (key_len != u32::MAX).then(|| take(key_len as usize));
        let value_len = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
        Some((key, take(value_len)))
    })
}

impl<T: Element> SinkFactory for KafkaSink<T> {
    fn unit(&self, _ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<T>(Box::new(RecordUnit::<T> {
            buffer,
            record: self.record.clone(),
        })))
    }

    fn begin(&self, job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError> {
        Ok(Arc::new(KafkaSinkJob {
            spec: self.spec.clone(),
            job_id: job.job_id.clone(),
            // A batch job's transaction spans the job, committed with it — in this process;
            // a member of a cluster job, whose commit happens elsewhere, and a streaming
            // job commit one per bundle.
            per_bundle: job.unbounded || job.member,
            open: Arc::default(),
            written: Arc::default(),
        }))
    }
}

/// One job's use of a Kafka sink.
struct KafkaSinkJob {
    spec: Arc<SinkSpec>,
    job_id: String,
    per_bundle: bool,
    /// Closed writers' producers whose transaction commits with the job.
    open: Arc<Mutex<Vec<KafkaProducer>>>,
    written: Arc<AtomicU64>,
}

impl KafkaSinkJob {
    fn producer(&self, worker: usize) -> Result<KafkaProducer, BoxError> {
        let mut config = config(&self.spec.servers, &self.spec.settings);
        config
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        if self.spec.transactional {
            config.set(
                "transactional.id",
                format!(
                    "sluice-{}-{}-{worker}-{}",
                    self.job_id,
                    self.spec.transform,
                    std::process::id()
                ),
            );
        }
        let producer: KafkaProducer = config.create_with_context(Deliveries::default())?;
        if self.spec.transactional {
            producer
                .init_transactions(FLUSH_TIMEOUT)
                .map_err(|e| format!("the brokers refused a transactional producer: {e}"))?;
        }
        Ok(producer)
    }
}

impl SinkJob for KafkaSinkJob {
    fn open(&self, worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(KafkaWriter {
            spec: self.spec.clone(),
            producer: Some(self.producer(worker)?),
            per_bundle: self.per_bundle,
            in_transaction: false,
            handed: (!self.per_bundle).then(|| self.open.clone()),
            written: self.written.clone(),
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let producers = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        for producer in &producers {
            producer.commit_transaction(FLUSH_TIMEOUT).map_err(|e| {
                format!(
                    "committing the transaction on topic '{}' failed: {e}",
                    self.spec.topic
                )
            })?;
        }
        Ok(format!(
            "{} records to topic {}{}",
            self.written.load(Ordering::Relaxed),
            self.spec.topic,
            if self.spec.transactional {
                " (transactional)"
            } else {
                ""
            }
        ))
    }

    fn undo(&self) -> Result<(), BoxError> {
        Err(format!(
            "records produced to topic '{}' cannot be taken back",
            self.spec.topic
        )
        .into())
    }

    fn abort(&self) {
        for producer in std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner())) {
            abort_transaction(&self.spec, &producer);
        }
    }
}

/// Produces one worker's committed bundles.
struct KafkaWriter {
    spec: Arc<SinkSpec>,
    producer: Option<KafkaProducer>,
    per_bundle: bool,
    in_transaction: bool,
    /// Where a job-long transaction's producer goes when the writer closes.
    handed: Option<Arc<Mutex<Vec<KafkaProducer>>>>,
    written: Arc<AtomicU64>,
}

impl SinkWriter for KafkaWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        let producer = self.producer.as_ref().expect("open until closed");
        let spec = &self.spec;
        if spec.transactional && !self.in_transaction {
            producer.begin_transaction()?;
            self.in_transaction = true;
        }
        for (key, value) in records(&bundle.bytes) {
            let mut record = BaseRecord::<[u8], [u8]>::to(&spec.topic).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        return Err(
                            format!("producing to topic '{}' failed: {e}", spec.topic).into()
                        );
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| format!("flushing records to topic '{}' failed: {e}", spec.topic))?;
        if let Some(failed) = producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(format!(
                "a record for topic '{}' was not delivered: {failed}",
                spec.topic
            )
            .into());
        }
        if spec.transactional && self.per_bundle {
            producer.commit_transaction(FLUSH_TIMEOUT)?;
            self.in_transaction = false;
        }
        self.written.fetch_add(bundle.records, Ordering::Relaxed);
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<(), BoxError> {
        if self.in_transaction
            && let Some(handed) = &self.handed
            && let Some(producer) = self.producer.take()
        {
            handed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(producer);
        }
        Ok(())
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        // A writer dropped inside a transaction (its job failed): the transaction is
        // aborted rather than left to time out on the brokers.
        if self.in_transaction
            && let Some(producer) = self.producer.take()
        {
            abort_transaction(&self.spec, &producer);
        }
    }
}

/// Aborts `producer`'s open transaction; a failure is logged (the brokers time it out).
fn abort_transaction(spec: &SinkSpec, producer: &KafkaProducer) {
    if let Err(e) = producer.abort_transaction(FLUSH_TIMEOUT) {
        log::warn!(
            "transform '{}': aborting the transaction on topic '{}' failed: {e}",
            spec.transform,
            spec.topic
        );
    }
}
