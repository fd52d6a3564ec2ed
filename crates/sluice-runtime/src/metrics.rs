//! What a job measured: elements and bytes per transform, time and bundles per stage.
//!
//! Element counts are exact. Byte counts are exact where data is encoded anyway — reads,
//! shuffles, sinks — and estimated elsewhere from the encoded size of a sample of
//! elements (every element of a bundle's first 32, then one in 64), as Dataflow
//! estimates the size of PCollections it never encodes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::user_metrics::MetricValue;
use sluice_plan::{EdgeKind, ExecutionGraph, PipelineGraph, StepOp, TransformId, TransformKind};

/// Counts one worker collected.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerReport {
    /// The worker (set on the worker's own report).
    pub worker: usize,
    /// Per (stage, worker): processing time in nanoseconds, filled by merging.
    pub worker_stage_nanos: BTreeMap<(usize, usize), u64>,
    /// Per stage: bundle attempts, and attempts that failed.
    pub stage_attempts: BTreeMap<usize, u64>,
    pub stage_retries: BTreeMap<usize, u64>,
    pub stage_failed_attempts: BTreeMap<usize, u64>,
    /// Per step: attempts it failed, DoFn instances torn down, elements dead-lettered.
    pub step_failures: BTreeMap<usize, u64>,
    pub step_teardowns: BTreeMap<usize, u64>,
    pub step_dead_lettered: BTreeMap<usize, u64>,
    /// Per step: elements a grouping dropped as too late for their window.
    pub step_late_dropped: BTreeMap<usize, u64>,
    /// Per step: what its reader held against the memory budget and spilled.
    pub step_memory: BTreeMap<usize, StepMemory>,
    /// Per (step, name): user metrics of committed bundles.
    #[serde(with = "user_as_json")]
    pub user: BTreeMap<(usize, String), MetricValue>,
    /// Per edge: (elements, bytes).
    pub edges: BTreeMap<usize, (u64, u64)>,
    /// Per stage: processing time in nanoseconds, committed bundles.
    pub stage_nanos: BTreeMap<usize, u64>,
    pub stage_bundles: BTreeMap<usize, u64>,
    /// Per shuffle edge: records and bytes sent.
    pub shuffle: BTreeMap<usize, (u64, u64)>,
    /// Per source stage: bytes read.
    pub source_bytes: BTreeMap<usize, u64>,
    /// Per sink transform: records and bytes written.
    pub sink: BTreeMap<usize, (u64, u64)>,
    /// The process's memory budget and spills (set once per process, after its workers).
    pub memory: MemoryMetrics,
}

/// What a job's grouping readers held in memory and spilled to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryMetrics {
    /// The memory budget of each process (`--max_memory`), bytes.
    pub max_memory: u64,
    /// The most any one process held at once, bytes of encoded records.
    pub peak_bytes_held: u64,
    /// Bytes of records written to spill files (before compression), all processes.
    pub bytes_spilled: u64,
    /// Spill files written, all processes.
    pub spill_files: u64,
    /// Streaming groupings that went over the budget (their panes cannot spill; each
    /// also logged a warning naming its transform).
    pub over_budget: u64,
}

/// What one step (a grouping's or stateful DoFn's reader) held against the memory budget
/// and spilled to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepMemory {
    /// The most it held at once, bytes (summed over workers: each worker's peak).
    pub peak_bytes_held: u64,
    /// Bytes of records it wrote to spill files (before compression).
    pub bytes_spilled: u64,
    /// Spill files it wrote.
    pub spill_files: u64,
}

/// User metrics travel between processes as JSON text inside the binary report: their
/// tagged form, which compact binary formats cannot read back.
mod user_as_json {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sluice_core::user_metrics::MetricValue;

    pub fn serialize<S: Serializer>(
        user: &BTreeMap<(usize, String), MetricValue>,
        out: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, &str, String)> = user
            .iter()
            .map(|((step, name), value)| {
                (
                    *step,
                    name.as_str(),
                    serde_json::to_string(value).unwrap_or_default(),
                )
            })
            .collect();
        pairs.serialize(out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        input: D,
    ) -> Result<BTreeMap<(usize, String), MetricValue>, D::Error> {
        let pairs: Vec<(usize, String, String)> = Vec::deserialize(input)?;
        pairs
            .into_iter()
            .map(|(step, name, json)| {
                serde_json::from_str(&json)
                    .map(|value| ((step, name), value))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

impl WorkerReport {
    pub fn merge(&mut self, other: WorkerReport) {
        if other.worker_stage_nanos.is_empty() {
            // One worker's own report.
            for (stage, nanos) in &other.stage_nanos {
                *self
                    .worker_stage_nanos
                    .entry((*stage, other.worker))
                    .or_default() += nanos;
            }
        } else {
            // A process's merged report (a member of a cluster job): per worker already.
            for (key, nanos) in &other.worker_stage_nanos {
                *self.worker_stage_nanos.entry(*key).or_default() += nanos;
            }
        }
        fn add2(a: &mut BTreeMap<usize, (u64, u64)>, b: BTreeMap<usize, (u64, u64)>) {
            for (k, (x, y)) in b {
                let e = a.entry(k).or_default();
                e.0 += x;
                e.1 += y;
            }
        }
        fn add1(a: &mut BTreeMap<usize, u64>, b: BTreeMap<usize, u64>) {
            for (k, x) in b {
                *a.entry(k).or_default() += x;
            }
        }
        add2(&mut self.edges, other.edges);
        add1(&mut self.stage_nanos, other.stage_nanos);
        add1(&mut self.stage_bundles, other.stage_bundles);
        add2(&mut self.shuffle, other.shuffle);
        add1(&mut self.source_bytes, other.source_bytes);
        add2(&mut self.sink, other.sink);
        self.memory.max_memory = self.memory.max_memory.max(other.memory.max_memory);
        self.memory.peak_bytes_held = self
            .memory
            .peak_bytes_held
            .max(other.memory.peak_bytes_held);
        self.memory.bytes_spilled += other.memory.bytes_spilled;
        self.memory.spill_files += other.memory.spill_files;
        self.memory.over_budget += other.memory.over_budget;
        add1(&mut self.stage_attempts, other.stage_attempts);
        add1(&mut self.stage_retries, other.stage_retries);
        add1(&mut self.stage_failed_attempts, other.stage_failed_attempts);
        add1(&mut self.step_failures, other.step_failures);
        add1(&mut self.step_teardowns, other.step_teardowns);
        add1(&mut self.step_dead_lettered, other.step_dead_lettered);
        add1(&mut self.step_late_dropped, other.step_late_dropped);
        // Workers' peaks add up: each holds its own at once.
        for (step, memory) in other.step_memory {
            let e = self.step_memory.entry(step).or_default();
            e.peak_bytes_held += memory.peak_bytes_held;
            e.bytes_spilled += memory.bytes_spilled;
            e.spill_files += memory.spill_files;
        }
        for (key, value) in other.user {
            match self.user.entry(key) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                std::collections::btree_map::Entry::Occupied(mut cell) => {
                    cell.get_mut().merge(value)
                }
            }
        }
        for (k, v) in other.worker_stage_nanos {
            *self.worker_stage_nanos.entry(k).or_default() += v;
        }
    }
}

/// Elements and bytes in and out of one transform. `None` where nothing was measured:
/// a PCollection that the optimiser removed (the grouped values of a lifted combine)
/// is never materialised.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformMetrics {
    /// Full user name.
    pub name: String,
    /// Dataflow kind.
    pub kind: String,
    /// Elements read.
    pub elements_in: Option<u64>,
    /// Bytes read (from storage for a Read).
    pub bytes_in: Option<u64>,
    /// Elements produced (records written, for a Write).
    pub elements_out: Option<u64>,
    /// Bytes produced (to storage, for a Write).
    pub bytes_out: Option<u64>,
    /// Bundle attempts of the stages the transform runs in.
    pub bundle_attempts: u64,
    /// Of those, attempts that re-ran elements after a failure.
    pub retries: u64,
    /// Bundle attempts that failed in this transform.
    pub failed_attempts: u64,
    /// Elements routed to its dead-letter output.
    pub dead_lettered: u64,
    /// Elements a grouping dropped because their window had expired (Beam's
    /// `droppedDueToLateness`).
    pub dropped_due_to_lateness: u64,
    /// DoFn instances torn down (after their last bundle, or after a failure).
    pub teardowns: u64,
}

/// Time and work of one fused stage, summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageMetrics {
    /// Stage id (`S01`).
    pub id: String,
    /// Stage name (`F1`).
    pub name: String,
    /// Time workers spent executing the stage (its wall time, summed over workers).
    #[serde(serialize_with = "millis")]
    pub wall_time: Duration,
    /// Bundles committed.
    pub bundles: u64,
    /// Bundle attempts, successful or not.
    pub bundle_attempts: u64,
    /// Attempts that re-ran elements after a failure.
    pub retries: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Per worker: time spent in the stage, in milliseconds.
    pub worker_wall_time: Vec<f64>,
    /// Workers whose time in the stage was far above the others' (at least 1.5 times
    /// the median of the others, and 100 ms more).
    pub stragglers: Vec<usize>,
    /// Records the stage wrote to shuffles.
    pub shuffle_records_out: u64,
    /// Bytes the stage wrote to shuffles.
    pub shuffle_bytes_out: u64,
    /// Per shuffle the stage writes: its name and the bytes written.
    pub shuffle_outputs: Vec<(String, u64)>,
    /// Bytes the stage's source read from storage.
    pub bytes_read: u64,
    /// What the stage's grouping or stateful reader held against the memory budget (the
    /// sum of its workers' peaks) and spilled to disk.
    pub memory: StepMemory,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A metric a transform's user code reported, over the job's committed bundles.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMetric {
    /// The transform whose code reported it.
    pub transform: String,
    /// The metric's name.
    pub name: String,
    /// Its value.
    #[serde(flatten)]
    pub value: MetricValue,
}

/// Everything a job measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMetrics {
    /// Per transform, in construction order (composites included).
    pub transforms: Vec<TransformMetrics>,
    /// Metrics reported by user code, by transform and name.
    pub user: Vec<UserMetric>,
    /// Per fused stage.
    pub stages: Vec<StageMetrics>,
    /// From the start of execution to its end.
    #[serde(serialize_with = "millis")]
    pub wall_time: Duration,
    /// Advice found in the measurements (also logged): high fan-out that fusion kept from
    /// spreading, straggling workers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How many times the whole job ran: more than 1 when the cluster runner ran it again
    /// after losing a worker process.
    pub job_attempts: u32,
    /// Memory held and spilled by grouping readers.
    pub memory: MemoryMetrics,
}

impl JobMetrics {
    /// The metrics of the transform named `name`.
    pub fn transform(&self, name: &str) -> Option<&TransformMetrics> {
        self.transforms.iter().find(|t| t.name == name)
    }

    /// The user metric `name` reported by `transform`.
    pub fn user_metric(&self, transform: &str, name: &str) -> Option<MetricValue> {
        self.user
            .iter()
            .find(|m| m.transform == transform && m.name == name)
            .map(|m| m.value)
    }

    /// The value of the user counter `name` of `transform`.
    pub fn counter(&self, transform: &str, name: &str) -> Option<i64> {
        match self.user_metric(transform, name)? {
            MetricValue::Counter { value } => Some(value),
            _ => None,
        }
    }

    pub(crate) fn from_report(
        pipeline: &PipelineGraph,
        graph: &ExecutionGraph,
        report: &WorkerReport,
        workers: usize,
        wall_time: Duration,
    ) -> JobMetrics {
        let edge_of_pc = |pc: usize| report.edges.get(&pc).copied();
        let sum = |ids: &[sluice_plan::PCollectionId]| -> (Option<u64>, Option<u64>) {
            let mut seen = false;
            let (mut n, mut b) = (0, 0);
            for id in ids {
                if let Some((en, eb)) = edge_of_pc(id.0) {
                    seen = true;
                    n += en;
                    b += eb;
                }
            }
            if seen {
                (Some(n), Some(b))
            } else {
                (None, None)
            }
        };
        let transforms = pipeline
            .transforms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (elements_in, mut bytes_in) = sum(&t.inputs);
                let (mut elements_out, mut bytes_out) = sum(&t.outputs);
                match t.kind() {
                    TransformKind::Read => {
                        let stages = graph.stages.iter().enumerate().filter(|(_, s)| {
                            let root = graph.step(s.steps[0]);
                            root.original == TransformId(i) && root.op == StepOp::Read
                        });
                        let bytes: u64 = stages
                            .map(|(s, _)| report.source_bytes.get(&s).copied().unwrap_or(0))
                            .sum();
                        bytes_in = Some(bytes);
                    }
                    TransformKind::Write => {
                        let (records, bytes) = report.sink.get(&i).copied().unwrap_or_default();
                        elements_out = Some(records);
                        bytes_out = Some(bytes);
                    }
                    _ => {}
                }
                let of_steps = |per_step: &BTreeMap<usize, u64>| -> u64 {
                    per_step
                        .iter()
                        .filter(|(step, _)| {
                            graph
                                .steps
                                .get(**step)
                                .is_some_and(|s| s.original == TransformId(i))
                        })
                        .map(|(_, n)| n)
                        .sum()
                };
                let (mut bundle_attempts, mut retries) = (0, 0);
                for (s, stage) in graph.stages.iter().enumerate() {
                    if stage
                        .steps
                        .iter()
                        .any(|step| graph.step(*step).original == TransformId(i))
                    {
                        bundle_attempts += report.stage_attempts.get(&s).copied().unwrap_or(0);
                        retries += report.stage_retries.get(&s).copied().unwrap_or(0);
                    }
                }
                TransformMetrics {
                    name: t.name.clone(),
                    kind: t.kind().dataflow_kind().to_string(),
                    elements_in,
                    bytes_in,
                    elements_out,
                    bytes_out,
                    bundle_attempts,
                    retries,
                    failed_attempts: of_steps(&report.step_failures),
                    dead_lettered: of_steps(&report.step_dead_lettered),
                    dropped_due_to_lateness: of_steps(&report.step_late_dropped),
                    teardowns: of_steps(&report.step_teardowns),
                }
            })
            .collect();
        let stages = graph
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (mut records, mut bytes) = (0, 0);
                let mut shuffle_outputs = Vec::new();
                let mut memory = StepMemory::default();
                for step in &s.steps {
                    if let Some(m) = report.step_memory.get(&step.0) {
                        memory.peak_bytes_held += m.peak_bytes_held;
                        memory.bytes_spilled += m.bytes_spilled;
                        memory.spill_files += m.spill_files;
                    }
                    for e in &graph.step(*step).outputs {
                        if graph.edge(*e).kind == EdgeKind::Shuffle {
                            let (r, b) = report
                                .shuffle
                                .get(&shuffle_key(i, e.0))
                                .copied()
                                .unwrap_or_default();
                            records += r;
                            bytes += b;
                            shuffle_outputs.push((graph.edge(*e).name.clone(), b));
                        }
                    }
                }
                let bundles = report.stage_bundles.get(&i).copied().unwrap_or(0);
                let attempts = report.stage_attempts.get(&i).copied().unwrap_or(0);
                let worker_wall_time: Vec<f64> = (0..workers)
                    .map(|w| {
                        report.worker_stage_nanos.get(&(i, w)).copied().unwrap_or(0) as f64 / 1e6
                    })
                    .collect();
                StageMetrics {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    wall_time: Duration::from_nanos(
                        report.stage_nanos.get(&i).copied().unwrap_or(0),
                    ),
                    bundles,
                    bundle_attempts: attempts,
                    retries: report.stage_retries.get(&i).copied().unwrap_or(0),
                    failed_attempts: report.stage_failed_attempts.get(&i).copied().unwrap_or(0),
                    stragglers: stragglers(&worker_wall_time),
                    worker_wall_time,
                    shuffle_records_out: records,
                    shuffle_bytes_out: bytes,
                    shuffle_outputs,
                    bytes_read: report.source_bytes.get(&i).copied().unwrap_or(0),
                    memory,
                }
            })
            .collect();
        // Per transform and name: a transform may run as several steps (a Flatten's
        // consumers in several stages), whose values merge.
        let mut user: Vec<UserMetric> = Vec::new();
        for ((step, name), value) in &report.user {
            let Some(step) = graph.steps.get(*step) else {
                continue;
            };
            let transform = pipeline.transform(step.original).name.clone();
            match user
                .iter_mut()
                .find(|m| m.transform == transform && m.name == *name)
            {
                Some(m) => m.value.merge(*value),
                None => user.push(UserMetric {
                    transform,
                    name: name.clone(),
                    value: *value,
                }),
            }
        }
        JobMetrics {
            transforms,
            user,
            stages,
            wall_time,
            warnings: Vec::new(),
            job_attempts: 1,
            memory: report.memory,
        }
    }
}

impl JobMetrics {
    /// ParDos whose high fan-out stayed inside a stage that ran in too few bundles to
    /// spread over the workers: what follows them in the stage is bounded by their input's
    /// parallelism. Each warning names the transform and the fix (a Reshuffle after it).
    pub fn fan_out_warnings(
        &self,
        pipeline: &PipelineGraph,
        graph: &ExecutionGraph,
        workers: usize,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        if workers < 2 {
            return warnings;
        }
        for (stage, metrics) in graph.stages.iter().zip(&self.stages) {
            if metrics.bundles as usize >= 2 * workers {
                continue;
            }
            for step in &stage.steps {
                let step = graph.step(*step);
                let transform = pipeline.transform(step.original);
                if transform.kind() != TransformKind::ParDo {
                    continue;
                }
                // Only further DoFns fused after it suffer; output that goes straight to
                // a shuffle (a GroupByKey, a Reshuffle, a lifted combine) is spread by it.
                let fused_after = graph.steps.iter().any(|consumer| {
                    consumer.op == StepOp::ParDo
                        && consumer.inputs.iter().any(|e| step.outputs.contains(e))
                });
                let Some(m) = self.transform(&transform.name) else {
                    continue;
                };
                let (Some(inputs), Some(outputs)) = (m.elements_in, m.elements_out) else {
                    continue;
                };
                if fused_after
                    && outputs >= FAN_OUT_MIN_ELEMENTS
                    && outputs >= FAN_OUT_RATIO * inputs.max(1)
                {
                    warnings.push(format!(
                        "transform '{}' emitted {outputs} elements from {inputs} inside stage {} ({}), which ran as {} bundle(s) on {workers} workers: the work fused after it cannot spread over them; add a Reshuffle after '{}'",
                        transform.name, metrics.id, metrics.name, metrics.bundles, transform.name
                    ));
                }
            }
        }
        warnings
    }
}

/// A ParDo emitting at least this many elements, and this many per input, has a high
/// fan-out.
const FAN_OUT_MIN_ELEMENTS: u64 = 100_000;
const FAN_OUT_RATIO: u64 = 100;

/// Workers whose time is at least 1.5 times the median of the others' and 100 ms more.
fn stragglers(times_ms: &[f64]) -> Vec<usize> {
    if times_ms.len() < 2 {
        return Vec::new();
    }
    (0..times_ms.len())
        .filter(|&w| {
            let mut others: Vec<f64> = times_ms
                .iter()
                .enumerate()
                .filter(|(o, _)| *o != w)
                .map(|(_, t)| *t)
                .collect();
            others.sort_by(f64::total_cmp);
            let median = others[others.len() / 2];
            times_ms[w] >= 1.5 * median && times_ms[w] - median >= 100.0
        })
        .collect()
}

/// The report key of the shuffle volume a stage wrote to an edge.
pub(crate) fn shuffle_key(stage: usize, edge: usize) -> usize {
    (stage << 32) | edge
}

#[cfg(test)]
mod tests {
    use super::stragglers;

    #[test]
    fn a_worker_far_behind_the_others_is_a_straggler() {
        assert_eq!(stragglers(&[1000.0, 1050.0, 2500.0, 980.0]), [2]);
        assert_eq!(stragglers(&[300.0, 100.0]), [0]);
        // Within noise, or too small to matter: none.
        assert!(stragglers(&[1000.0, 1300.0]).is_empty());
        assert!(stragglers(&[10.0, 60.0]).is_empty());
        assert!(stragglers(&[500.0]).is_empty());
    }
}
