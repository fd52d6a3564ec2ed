//! Collect: a sink that keeps a PCollection's elements in memory, for tests and small
//! results read back by the launching program.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_core::coder::CoderError;
use sluice_core::receiver::AnyReceiver;
use sluice_core::unit::{
    JobInfo, SinkBuffer, SinkBytes, SinkFactory, SinkJob, SinkWriter, UnitContext,
};
use sluice_core::{BoxError, Element, ExecError, Receiver, UnitResult, WindowedValue};
use sluice_plan::Payload;

use crate::pcollection::PCollection;

/// The elements a [`PCollection::collect`] sink received, available once the job has
/// succeeded (empty if it failed).
pub struct Collected<T> {
    committed: Arc<Mutex<Vec<u8>>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Element> Collected<T> {
    /// The elements, in no particular order.
    pub fn try_values(&self) -> Result<Vec<T>, CoderError> {
        let bytes = self.committed.lock().map(|b| b.clone()).unwrap_or_default();
        let mut input = &bytes[..];
        let mut out = Vec::new();
        while !input.is_empty() {
            out.push(T::decode_from(&mut input)?);
        }
        Ok(out)
    }

    /// The elements, in no particular order.
    ///
    /// # Panics
    /// If the element type's coder cannot read back what it wrote.
    pub fn values(&self) -> Vec<T> {
        match self.try_values() {
            Ok(v) => v,
            Err(e) => panic!("collected elements could not be decoded: {e}"),
        }
    }
}

impl<T: Element> PCollection<T> {
    /// Keeps the elements in memory for the launching program, which reads them from the
    /// returned handle after the run. Meant for tests and small results: every element is
    /// held in memory.
    pub fn collect(&self, name: &str) -> Collected<T> {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let sink = CollectSink::<T> {
            committed: committed.clone(),
            _type: PhantomData,
        };
        self.pipeline.add_transform(
            name,
            vec![self.id],
            Payload::Write(Arc::new(sink)),
            Vec::new(),
        );
        Collected {
            committed,
            _type: PhantomData,
        }
    }
}

struct CollectSink<T> {
    committed: Arc<Mutex<Vec<u8>>>,
    _type: PhantomData<fn(T)>,
}

struct EncodeUnit {
    ctx: UnitContext,
    buffer: SinkBuffer,
}

impl<T: Element> Receiver<T> for EncodeUnit {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, element: WindowedValue<T>) -> UnitResult {
        self.buffer
            .append(|out| element.value.encode_to(out))
            .map_err(|e| self.ctx.error(e))
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

impl<T: Element> SinkFactory for CollectSink<T> {
    fn unit(&self, ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<T>(Box::new(EncodeUnit {
            ctx: ctx.clone(),
            buffer,
        })))
    }

    fn begin(&self, _job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError> {
        Ok(Arc::new(CollectJob {
            committed: self.committed.clone(),
            pending: Arc::default(),
            before: Mutex::default(),
        }))
    }
}

struct CollectJob {
    committed: Arc<Mutex<Vec<u8>>>,
    /// Bytes of closed writers, visible only on commit.
    pending: Arc<Mutex<Vec<u8>>>,
    /// How many committed bytes there were before this job's commit (for an undo).
    before: Mutex<Option<usize>>,
}

impl SinkJob for CollectJob {
    fn open(&self, _worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(CollectWriter {
            bytes: Vec::new(),
            pending: self.pending.clone(),
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| "a collect writer panicked")?,
        );
        let n = pending.len();
        let mut committed = self
            .committed
            .lock()
            .map_err(|_| "a collect reader panicked")?;
        if let Ok(mut before) = self.before.lock() {
            *before = Some(committed.len());
        }
        committed.extend(pending);
        Ok(format!("{n} bytes collected in memory"))
    }

    fn undo(&self) -> Result<(), BoxError> {
        let mut before = self.before.lock().unwrap_or_else(PoisonError::into_inner);
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(len) = before.take() {
            committed.truncate(len);
        }
        Ok(())
    }

    fn handoff(&self) -> Result<Vec<u8>, BoxError> {
        Ok(std::mem::take(
            &mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    fn adopt(&self, handoff: &[u8]) -> Result<(), BoxError> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(handoff);
        Ok(())
    }

    fn abort(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }
}

struct CollectWriter {
    bytes: Vec<u8>,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl SinkWriter for CollectWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        self.bytes.extend_from_slice(&bundle.bytes);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<(), BoxError> {
        self.pending
            .lock()
            .map_err(|_| "a collect writer panicked")?
            .extend_from_slice(&self.bytes);
        Ok(())
    }
}
