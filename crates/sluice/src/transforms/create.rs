//! Create: a PCollection of values given at construction.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::unit::{
    SourceFactory, SourceReader, SourceSplit, SplitHint, UnitContext, attached,
};
use sluice_core::{BoxError, Element, ExecError, UnitResult, WindowedValue};
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

impl Pipeline {
    /// The given values as a PCollection, in the global window at the minimum timestamp.
    ///
    /// The values are encoded now, like every element crossing a process boundary would
    /// be; a value that cannot be encoded is reported before the pipeline runs.
    pub fn create<T: Element>(&self, name: &str, values: Vec<T>) -> PCollection<T> {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(values.len());
        for v in &values {
            if let Err(e) = v.encode_to(&mut bytes) {
                self.problem(
                    name,
                    e.to_string(),
                    "make every value encodable, or fix the type's coder",
                );
                break;
            }
            ends.push(bytes.len());
        }
        let count = values.len();
        let source = CreateSource::<T> {
            bytes: Arc::new(bytes),
            ends: Arc::new(ends),
            _type: PhantomData,
        };
        let (id, outs) = self.add_transform(
            name,
            Vec::new(),
            Payload::Create(Arc::new(source)),
            vec![("out".into(), sluice_core::unit::TypeOf::<T>::arc())],
        );
        self.display(id, "elements", count.to_string());
        PCollection::new(self, outs[0])
    }
}

struct CreateSource<T> {
    bytes: Arc<Vec<u8>>,
    /// Where each encoded value ends in `bytes`.
    ends: Arc<Vec<usize>>,
    _type: PhantomData<fn() -> T>,
}

/// A run of values: indices `start..end`.
#[derive(Debug)]
struct CreateSplit {
    start: usize,
    end: usize,
    bytes: u64,
}

impl SourceSplit for CreateSplit {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn size_bytes(&self) -> Option<u64> {
        Some(self.bytes)
    }
    fn split_at(&self, position: u64) -> Option<(Arc<dyn SourceSplit>, Arc<dyn SourceSplit>)> {
        let at = usize::try_from(position).ok()?;
        if at <= self.start || at >= self.end {
            return None;
        }
        // Sizes are shared out in proportion; they only inform plans and logs.
        let share = (self.bytes as u128 * (at - self.start) as u128
            / (self.end - self.start) as u128) as u64;
        Some((
            Arc::new(CreateSplit {
                start: self.start,
                end: at,
                bytes: share,
            }),
            Arc::new(CreateSplit {
                start: at,
                end: self.end,
                bytes: self.bytes - share,
            }),
        ))
    }
}

impl<T: Element> SourceFactory for CreateSource<T> {
    fn splits(&self, hint: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, BoxError> {
        let n = self.ends.len();
        let per = n.div_ceil(hint.workers.max(1) * 4).clamp(1, 100_000);
        let offset = |i: usize| if i == 0 { 0 } else { self.ends[i - 1] };
        Ok((0..n)
            .step_by(per)
            .map(|start| {
                let end = (start + per).min(n);
                Arc::new(CreateSplit {
                    start,
                    end,
                    bytes: (offset(end) - offset(start)) as u64,
                }) as Arc<dyn SourceSplit>
            })
            .collect())
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        Ok(Box::new(CreateReader::<T> {
            ctx: ctx.clone(),
            bytes: self.bytes.clone(),
            ends: self.ends.clone(),
            output: None,
            read: 0,
        }))
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.bytes.len() as u64)
    }
}

struct CreateReader<T> {
    ctx: UnitContext,
    bytes: Arc<Vec<u8>>,
    ends: Arc<Vec<usize>>,
    output: Option<Port<T>>,
    read: u64,
}

impl<T: Element> SourceReader for CreateReader<T> {
    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast()?);
        Ok(())
    }

    fn detach(&mut self) {
        self.output = None;
    }

    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }

    fn read(&mut self, split: &dyn SourceSplit) -> UnitResult {
        let Some(split) = split.as_any().downcast_ref::<CreateSplit>() else {
            return Err(self
                .ctx
                .error("internal error: a Create reader was given another source's split"));
        };
        let output = attached(&mut self.output, &self.ctx)?;
        for i in split.start..split.end {
            self.ctx
                .position
                .store(i as u64, std::sync::atomic::Ordering::Relaxed);
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let value = sluice_core::coder::decode_exact::<T>(&self.bytes[start..self.ends[i]])
                .map_err(|e| self.ctx.error(e))?;
            output.emit(WindowedValue::in_global_window(value))?;
        }
        self.read += split.bytes;
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }

    fn take_bytes_read(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }
}
