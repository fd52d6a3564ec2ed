//! Lowering onto timely dataflow. This is the only module that uses timely.
//!
//! Each fused stage becomes one timely operator per worker. Its inputs are the streams
//! of the shuffle its root reads (one per writing stage), exchanged so that each batch
//! reaches the worker that owns its keys; its outputs are one stream per shuffle it
//! writes.
//!
//! Timely's timestamps are *watermarks*: an operator holds its output capabilities at
//! its output watermark — a source at its own watermark, a shuffle-rooted stage at the
//! lesser of its input frontier and the hold of what it buffers (panes not yet fired,
//! timers not yet due) — and sends each bundle's batches at the time it holds. So an
//! operator's input frontier is exactly its input watermark, and it becomes empty when
//! every upstream worker has finished: the watermark has reached the end of time.
//! Capabilities only move at bundle boundaries, so times stay coarse; element event
//! times travel as data. A bounded source holds the minimum watermark until it is
//! exhausted, so in a batch job every window fires at the end.
//!
//! Timely gives exchange and progress tracking. What sluice adds on top is here and in
//! [`crate::stage`]: bundles that commit or vanish as a whole, a job-wide failure flag
//! that makes every operator stop and release its capabilities (so a failed job still
//! terminates), and one bundle per activation, so that downstream operators run between
//! bundles and memory stays bounded by a bundle's output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_core::Timestamp;
use sluice_core::error::panic_message;
use sluice_plan::EdgeId;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::{Scope, Stream};

use std::net::{TcpListener, TcpStream};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};

use crate::job::{ClusterConfig, JobError, JobShared};
use crate::metrics::WorkerReport;
use crate::stage::StageLayout;
use crate::stage_run::{Batch, Batches, RootKind, StageRun, WorkerState};
use crate::watermark::{engine_time, watermark_of};
use sluice_core::error::current_step;

/// Runs the job's dataflow on `config.workers` threads; returns the merged reports.
pub(crate) fn execute(job: Arc<JobShared>) -> Result<WorkerReport, String> {
    let workers = job.config.workers;
    let (allocators, others) = match &job.config.cluster {
        None => timely::CommunicationConfig::Process(workers).try_build()?,
        Some(cluster) => {
            let made = cluster
                .connected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let sockets = match made {
                Some(sockets) => sockets,
                None => connect(cluster)?,
            };
            let hooks = timely::communication::Hooks::default();
            let local = ProcessBuilder::new_typed_vector(
                workers,
                hooks.refill.clone(),
                hooks.spill.clone(),
            );
            let (builders, guard) =
                initialize_networking_from_sockets(local, sockets, cluster.process, workers, hooks)
                    .map_err(|e| format!("cannot start the connections between processes: {e}"))?;
            let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
            (builders, Box::new(guard) as Box<dyn std::any::Any + Send>)
        }
    };
    let guards = timely::execute::execute_from(
        allocators,
        others,
        timely::WorkerConfig::default(),
        move |worker| {
            let index = worker.index();
            let peers = worker.peers();
            let state = Rc::new(RefCell::new(WorkerState::default()));
            state.borrow_mut().report.worker = index;
            job.progress[job.local(index)].attach_thread(job.epoch, current_step::handle());
            // User code cannot panic past its stage (bundles are guarded); a panic here is a
            // bug in the runner. Catch it to report its message and drop the dataflow so that
            // timely does not keep stepping it; the other workers, which would wait for the
            // dead one's progress forever, see the job abandoned and drop theirs too (they
            // park for at most a moment at a time, so they notice).
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker.dataflow::<u64, _, _>(|scope| {
                    let mut shuffles: HashMap<EdgeId, Vec<Stream<'_, u64, Batches>>> =
                        HashMap::new();
                    for layout in &job.layouts {
                        build_stage(scope, &job, layout, index, peers, &state, &mut shuffles);
                    }
                });
                #[cfg(feature = "test-hooks")]
                let mut steps = 0u64;
                while worker.has_dataflows() && !job.is_abandoned() {
                    // A cancelled job fails everywhere: operators stop at their next
                    // activation and release their capabilities.
                    job.check_cancelled();
                    job.config.steps.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "test-hooks")]
                    if job.config.panic_worker_for_test == Some(index) && steps == 2 {
                        panic!("injected engine failure (test hook)");
                    }
                    worker.step_or_park(Some(Duration::from_millis(50)));
                    #[cfg(feature = "test-hooks")]
                    {
                        steps += 1;
                    }
                }
            }));
            if let Err(panic) = ran {
                job.abandon(JobError::Engine(format!(
                    "worker {index} panicked: {}",
                    panic_message(&*panic)
                )));
            }
            if job.is_abandoned() {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
            let mut state = state.borrow_mut();
            let mut writers: Vec<_> = state.writers.drain().collect();
            writers.sort_by_key(|(t, _)| *t);
            for (transform, writer) in writers {
                if let Err(source) = writer.close() {
                    let transform = job.pipeline.transform(transform).name.clone();
                    job.fail(JobError::SinkWrite { transform, source });
                }
            }
            std::mem::take(&mut state.report)
        },
    )?;
    let mut total = WorkerReport::default();
    for report in guards.join() {
        total.merge(report?);
    }
    Ok(total)
}

/// Connects this process to every other process of a cluster job: it listens on its own
/// address for the processes after it and connects to those before it (each side then
/// says its index), retrying every few milliseconds — not every second, as timely's own
/// set-up does — until the cluster's connect deadline. Returns one stream per process, `None` for
/// this one, as timely's networking takes them.
pub(crate) fn connect(cluster: &ClusterConfig) -> Result<Vec<Option<TcpStream>>, String> {
    use std::io::{Read, Write};
    let me = cluster.process;
    let n = cluster.addresses.len();
    let own = &cluster.addresses[me];
    let listener = TcpListener::bind(own).map_err(|e| {
        format!("process {me} cannot listen on {own}: {e} (is the port in use by another program?)")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("process {me}: {e}"))?;
    let started = Instant::now();
    let deadline = cluster.connect_deadline;
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let expired = |what: String| {
        format!(
            "process {me} {what} within {} s; check that every process runs and can reach the others",
            deadline.as_secs_f64()
        )
    };
    for (peer, address) in cluster.addresses.iter().enumerate().take(me) {
        loop {
            match TcpStream::connect(address) {
                Ok(mut stream) => {
                    stream
                        .set_nodelay(true)
                        .and_then(|()| stream.write_all(&(me as u64).to_le_bytes()))
                        .map_err(|e| format!("process {me} -> process {peer} at {address}: {e}"))?;
                    sockets[peer] = Some(stream);
                    break;
                }
                Err(_) if started.elapsed() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(expired(format!(
                        "could not reach process {peer} at {address} ({e})"
                    )));
                }
            }
        }
    }
    let mut awaited = n - me - 1;
    while awaited > 0 {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("process {me}: {e}"))?;
                stream
                    .set_nodelay(true)
                    .map_err(|e| format!("process {me}: {e}"))?;
                let mut index = [0u8; 8];
                stream
                    .read_exact(&mut index)
                    .map_err(|e| format!("process {me}: a peer did not say its index: {e}"))?;
                let peer = u64::from_le_bytes(index) as usize;
                if peer <= me || peer >= n || sockets[peer].is_some() {
                    return Err(format!(
                        "process {me}: a connection claimed to be process {peer}; is another job using the same ports?"
                    ));
                }
                sockets[peer] = Some(stream);
                awaited -= 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > deadline {
                    let missing: Vec<usize> =
                        (me + 1..n).filter(|p| sockets[*p].is_none()).collect();
                    return Err(expired(format!(
                        "was never reached by process(es) {missing:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("process {me} cannot accept connections: {e}")),
        }
    }
    Ok(sockets)
}

/// Connects to every process (see [`connect`]), then agrees on the job: every process
/// sends its plan hash and job id to every other; a hash that differs from this
/// process's fails it, naming both; process 0's job id is returned.
pub(crate) fn connect_and_agree(
    cluster: &ClusterConfig,
    plan_hash: &str,
    job_id: &str,
) -> Result<(Vec<Option<TcpStream>>, String), String> {
    use std::io::{Read, Write};
    let me = cluster.process;
    let mut sockets = connect(cluster)?;
    let message = format!("{plan_hash}\n{job_id}\n");
    for (peer, socket) in sockets.iter_mut().enumerate() {
        if let Some(stream) = socket {
            let bytes = message.as_bytes();
            stream
                .write_all(&(bytes.len() as u32).to_le_bytes())
                .and_then(|()| stream.write_all(bytes))
                .map_err(|e| format!("process {me} -> process {peer}: {e}"))?;
        }
    }
    let mut agreed = job_id.to_string();
    for (peer, socket) in sockets.iter_mut().enumerate() {
        if let Some(stream) = socket {
            let mut len = [0u8; 4];
            stream
                .read_exact(&mut len)
                .map_err(|e| format!("process {me}: process {peer} did not send its plan: {e}"))?;
            let mut text = vec![0u8; u32::from_le_bytes(len) as usize];
            stream
                .read_exact(&mut text)
                .map_err(|e| format!("process {me}: process {peer} did not send its plan: {e}"))?;
            let text = String::from_utf8_lossy(&text);
            let mut lines = text.lines();
            let (hash, id) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            if hash != plan_hash {
                return Err(format!(
                    "process {peer} built a different plan or runs a different binary: its plan hash is {hash}, process {me}'s {plan_hash}; \
                     start every worker with the same binary and the same flags"
                ));
            }
            if peer == 0 {
                agreed = id.to_string();
            }
        }
    }
    Ok((sockets, agreed))
}

fn build_stage<'s>(
    scope: Scope<'s, u64>,
    job: &Arc<JobShared>,
    layout: &StageLayout,
    worker: usize,
    peers: usize,
    state: &Rc<RefCell<WorkerState>>,
    shuffles: &mut HashMap<EdgeId, Vec<Stream<'s, u64, Batches>>>,
) {
    let stage = &job.graph.stages[layout.index];
    let mut builder = OperatorBuilder::new(format!("{} {}", stage.id, stage.name), scope);
    let info = builder.operator_info();
    let mut inputs = Vec::new();
    if let Some(edge) = layout.shuffle_input {
        for stream in shuffles.get(&edge).cloned().unwrap_or_default() {
            inputs.push(builder.new_input(stream, Exchange::new(|b: &Batch| b.dest as u64)));
        }
    }
    // Side inputs come after the main inputs, each edge's streams in turn; every worker
    // receives every record (the writers address a copy to each).
    let main_inputs = inputs.len();
    let mut side_of_input = Vec::new();
    for (i, edge) in layout.side_inputs.iter().enumerate() {
        for stream in shuffles.get(edge).cloned().unwrap_or_default() {
            inputs.push(builder.new_input(stream, Exchange::new(|b: &Batch| b.dest as u64)));
            side_of_input.push(i);
        }
    }
    let mut outputs = Vec::new();
    for edge in &layout.shuffle_outputs {
        let (output, stream) = builder.new_output::<Batches>();
        outputs.push(OutputBuilder::<u64, CapacityContainerBuilder<Batches>>::from(output));
        shuffles.entry(*edge).or_default().push(stream);
    }
    let activator = scope.activator_for(info.address.clone());
    activator.activate();
    let kind = if layout.shuffle_input.is_some() {
        RootKind::Shuffle
    } else if job.unbounded[layout.index] {
        RootKind::UnboundedSource
    } else {
        RootKind::BoundedSource
    };
    let mut run = StageRun::new(job.clone(), layout, kind, worker, peers, state.clone());
    let job = job.clone();
    // `build_reschedule`: a stage with no shuffle output holds no capability, so timely
    // would retire it as soon as its inputs are complete; it reports itself incomplete
    // until it has emitted everything.
    builder.build_reschedule(move |capabilities| {
        let mut capabilities = capabilities;
        move |frontiers| {
            let started = Instant::now();
            let now_ms = job.config.clock.now_ms();
            // The input watermark: the least time any main input may still deliver.
            let watermark = frontiers[..main_inputs]
                .iter()
                .filter_map(|f| f.frontier().first().copied())
                .min()
                .map_or(Timestamp::MAX, watermark_of);
            run.advance(watermark, now_ms);
            let mut accepted = 0;
            for (i, input) in inputs.iter_mut().enumerate() {
                input.for_each(|_cap, data| {
                    for batch in data.drain(..) {
                        accepted += 1;
                        match i.checked_sub(main_inputs) {
                            None => run.accept(batch),
                            Some(side) => run.accept_side(side_of_input[side], batch),
                        }
                    }
                });
            }
            let sides_complete = frontiers[main_inputs..].iter().all(|f| f.is_empty());
            let inputs_done = frontiers[..main_inputs].iter().all(|f| f.is_empty());
            let work = run.work(watermark, inputs_done, sides_complete, now_ms);
            let mut sent = 0;
            if !capabilities.is_empty() {
                // One capability per output: each output's batches go out under its own.
                for ((output, capability), batches) in
                    outputs.iter_mut().zip(&capabilities).zip(work.emitted)
                {
                    if !batches.is_empty() {
                        let mut handle = output.activate();
                        let mut session = handle.session(capability);
                        for batch in batches {
                            sent += 1;
                            session.give(batch);
                        }
                    }
                }
            }
            if sent > 0 {
                job.sent.fetch_add(sent, Ordering::AcqRel);
            }
            if accepted > 0 {
                job.accepted.fetch_add(accepted, Ordering::AcqRel);
            }
            if work.finished {
                capabilities.clear();
                run.publish_output(u64::MAX);
            } else {
                if let Some(hold) = work.hold {
                    let time = engine_time(hold);
                    for capability in capabilities.iter_mut() {
                        if *capability.time() < time {
                            capability.downgrade(&time);
                        }
                    }
                }
                if let Some(held) = capabilities.iter().map(|c| *c.time()).min() {
                    run.publish_output(held);
                } else if let Some(hold) = work.hold {
                    // A stage writing no shuffle holds no capability: its hold is what it
                    // would hold.
                    run.publish_output(engine_time(hold));
                }
                if let Some(delay) = work.retry_after {
                    activator.activate_after(delay.max(Duration::from_millis(1)));
                }
                if work.more {
                    activator.activate();
                } else if let Some(at) = work.wakeup_ms {
                    // A hand-moved clock is polled; the wall clock is waited for.
                    let delay = if job.config.clock.is_manual() {
                        Duration::from_millis(1)
                    } else {
                        Duration::from_millis(at.saturating_sub(now_ms).clamp(1, 100) as u64)
                    };
                    activator.activate_after(delay);
                }
            }
            run.publish_acted();
            let finished = work.finished;
            run.add_time(started);
            !finished
        }
    });
}
