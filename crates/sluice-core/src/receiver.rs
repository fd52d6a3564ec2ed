//! The push interface between execution units of a fused stage.
//!
//! A fused stage is a small DAG of execution units. Each unit's input is a
//! [`Receiver`]; each of its outputs is a [`Port`], which counts what passes and hands
//! every element to the receivers of the consumers fused after it. Bundle boundaries
//! travel down the same edges (`start_bundle`, `finish_bundle`), so a unit always finishes
//! after every unit upstream of it has finished (and may have emitted in its own
//! `finish_bundle`).
//!
//! The runtime wires units without knowing their element types: it passes
//! [`AnyReceiver`]s and [`AnyPort`]s, which the typed code that built them downcasts once,
//! at build time — never per element.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::coder::Element;
use crate::error::UnitResult;
use crate::window::WindowedValue;

/// The input of an execution unit.
pub trait Receiver<T> {
    /// A bundle begins. Called once per bundle on each edge into the unit.
    fn start_bundle(&mut self) -> UnitResult;
    /// One element of the current bundle.
    fn receive(&mut self, element: WindowedValue<T>) -> UnitResult;
    /// The bundle ends. Called once per bundle on each edge into the unit, after every
    /// element of that edge.
    fn finish_bundle(&mut self) -> UnitResult;
}

/// Wiring two units whose element types differ: a bug in a factory, reported instead of
/// a panic.
#[derive(Debug, thiserror::Error)]
#[error("execution units wired with mismatched element types: expected {expected}, found {found}")]
pub struct TypeMismatch {
    /// The type the consumer asked for.
    pub expected: &'static str,
    /// The type that was built.
    pub found: &'static str,
}

/// A `Box<dyn Receiver<T>>` whose `T` is known only to the code that built it.
pub struct AnyReceiver {
    inner: Box<dyn Any>,
    type_name: &'static str,
}

impl AnyReceiver {
    /// Erases the element type of a receiver.
    pub fn new<T: 'static>(receiver: Box<dyn Receiver<T>>) -> Self {
        AnyReceiver {
            inner: Box::new(receiver),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Recovers the typed receiver.
    pub fn downcast<T: 'static>(self) -> Result<Box<dyn Receiver<T>>, TypeMismatch> {
        let found = self.type_name;
        self.inner
            .downcast::<Box<dyn Receiver<T>>>()
            .map(|b| *b)
            .map_err(|_| TypeMismatch {
                expected: std::any::type_name::<T>(),
                found,
            })
    }
}

/// What a port counted during the current bundle, published when the port finishes the
/// bundle. The runtime reads and resets it when the bundle commits, and discards it when
/// the bundle fails.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Elements emitted.
    pub elements: Cell<u64>,
    /// Elements whose encoded size was sampled.
    pub sampled: Cell<u64>,
    /// Total encoded size of the sampled elements.
    pub sampled_bytes: Cell<u64>,
}

impl PortCounters {
    /// Takes this bundle's counts, leaving zeros: `(elements, estimated bytes)`.
    pub fn take(&self) -> (u64, u64) {
        let elements = self.elements.replace(0);
        let sampled = self.sampled.replace(0);
        let sampled_bytes = self.sampled_bytes.replace(0);
        let bytes = if sampled == 0 {
            0
        } else {
            (sampled_bytes as u128 * elements as u128 / sampled as u128) as u64
        };
        (elements, bytes)
    }

    /// Forgets this bundle's counts.
    pub fn reset(&self) {
        self.take();
    }
}

/// Every element is sized while fewer than this many have passed in a bundle; after that,
/// one element in [`SAMPLE_EVERY`].
const SAMPLE_ALL_BELOW: u64 = 32;
const SAMPLE_EVERY: u64 = 64;

/// The typed output of an execution unit: counts elements, estimates their encoded size
/// by sampling, and pushes each element to every consumer.
///
/// Counts accumulate in plain fields and are published to the shared [`PortCounters`]
/// once per bundle, when the bundle finishes, so the per-element cost is an increment.
pub struct Port<T> {
    consumers: Vec<Box<dyn Receiver<T>>>,
    counters: Rc<PortCounters>,
    elements: u64,
    sampled: u64,
    sampled_bytes: u64,
    scratch: Vec<u8>,
}

impl<T: Element> Port<T> {
    /// A port feeding `consumers` and counting into `counters`.
    pub fn new(consumers: Vec<Box<dyn Receiver<T>>>, counters: Rc<PortCounters>) -> Self {
        Port {
            consumers,
            counters,
            elements: 0,
            sampled: 0,
            sampled_bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Sends one element to every consumer.
    #[inline(always)]
    pub fn emit(&mut self, element: WindowedValue<T>) -> UnitResult {
        let n = self.elements;
        self.elements = n + 1;
        if n < SAMPLE_ALL_BELOW || n.is_multiple_of(SAMPLE_EVERY) {
            self.sample(&element.value);
        }
        match self.consumers.split_last_mut() {
            None => Ok(()),
            Some((last, rest)) => {
                for consumer in rest {
                    consumer.receive(element.clone())?;
                }
                last.receive(element)
            }
        }
    }

    #[cold]
    fn sample(&mut self, value: &T) {
        self.scratch.clear();
        // A value that cannot be encoded is reported where it must be encoded (a shuffle or
        // a sink); for size estimates it simply counts as empty.
        if value.encode_to(&mut self.scratch).is_ok() {
            self.sampled += 1;
            self.sampled_bytes += self.scratch.len() as u64;
        }
    }

    /// Moves this bundle's counts to the shared counters.
    fn publish(&mut self) {
        let c = &self.counters;
        c.elements
            .set(c.elements.get() + std::mem::take(&mut self.elements));
        c.sampled
            .set(c.sampled.get() + std::mem::take(&mut self.sampled));
        c.sampled_bytes
            .set(c.sampled_bytes.get() + std::mem::take(&mut self.sampled_bytes));
    }

    /// Starts a bundle on every consumer (forgetting counts of a bundle that failed).
    pub fn start_bundle(&mut self) -> UnitResult {
        self.elements = 0;
        self.sampled = 0;
        self.sampled_bytes = 0;
        self.consumers.iter_mut().try_for_each(|c| c.start_bundle())
    }

    /// Finishes the bundle on every consumer, and publishes the bundle's counts.
    pub fn finish_bundle(&mut self) -> UnitResult {
        self.publish();
        self.consumers
            .iter_mut()
            .try_for_each(|c| c.finish_bundle())
    }
}

/// What the runtime and DoFns can do with a port without knowing its element type.
trait ErasedPort: Any {
    fn start_bundle(&mut self) -> UnitResult;
    fn finish_bundle(&mut self) -> UnitResult;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Element> ErasedPort for Port<T> {
    fn start_bundle(&mut self) -> UnitResult {
        Port::start_bundle(self)
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Port::finish_bundle(self)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A [`Port<T>`] whose `T` is known only to the code that built it. It still passes
/// bundle boundaries on, so a unit can hold outputs of types it never names.
pub struct AnyPort {
    inner: Box<dyn ErasedPort>,
    type_name: &'static str,
}

impl AnyPort {
    /// Erases the element type of a port.
    pub fn new<T: Element>(port: Port<T>) -> Self {
        AnyPort {
            inner: Box::new(port),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Recovers the typed port.
    pub fn downcast<T: Element>(self) -> Result<Port<T>, TypeMismatch> {
        let found = self.type_name;
        self.inner
            .into_any()
            .downcast::<Port<T>>()
            .map(|b| *b)
            .map_err(|_| TypeMismatch {
                expected: std::any::type_name::<T>(),
                found,
            })
    }

    /// The typed port, borrowed; `None` if its element type is not `T`.
    #[inline]
    pub fn downcast_mut<T: Element>(&mut self) -> Option<&mut Port<T>> {
        self.inner.as_any_mut().downcast_mut::<Port<T>>()
    }

    /// Starts a bundle on every consumer.
    pub fn start_bundle(&mut self) -> UnitResult {
        self.inner.start_bundle()
    }

    /// Finishes the bundle on every consumer.
    pub fn finish_bundle(&mut self) -> UnitResult {
        self.inner.finish_bundle()
    }

    /// The element type's name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

/// Builds the port of a PCollection of `T` from its consumers' erased receivers.
pub fn build_port<T: Element>(
    consumers: Vec<AnyReceiver>,
    counters: Rc<PortCounters>,
) -> Result<AnyPort, TypeMismatch> {
    let consumers = consumers
        .into_iter()
        .map(AnyReceiver::downcast::<T>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AnyPort::new(Port::new(consumers, counters)))
}

/// Merges several edges into one port: the execution unit of a Flatten whose inputs are
/// produced in the same fused stage. Bundle boundaries pass on once every edge has sent
/// them, so the consumers see one start and one finish per bundle.
pub fn flatten_receivers<T: Element>(inputs: usize, output: Port<T>) -> Vec<AnyReceiver> {
    struct Shared<T> {
        output: Port<T>,
        inputs: usize,
        started: usize,
        finished: usize,
    }
    struct Edge<T>(Rc<RefCell<Shared<T>>>);
    impl<T: Element> Receiver<T> for Edge<T> {
        fn start_bundle(&mut self) -> UnitResult {
            let mut s = self.0.borrow_mut();
            s.started += 1;
            if s.started == 1 {
                s.finished = 0;
                s.output.start_bundle()?;
            }
            if s.started == s.inputs {
                s.started = 0;
            }
            Ok(())
        }
        fn receive(&mut self, element: WindowedValue<T>) -> UnitResult {
            self.0.borrow_mut().output.emit(element)
        }
        fn finish_bundle(&mut self) -> UnitResult {
            let mut s = self.0.borrow_mut();
            s.finished += 1;
            if s.finished == s.inputs {
                s.finished = 0;
                s.output.finish_bundle()?;
            }
            Ok(())
        }
    }
    let shared = Rc::new(RefCell::new(Shared {
        output,
        inputs,
        started: 0,
        finished: 0,
    }));
    (0..inputs)
        .map(|_| AnyReceiver::new::<T>(Box::new(Edge(Rc::clone(&shared)))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is sent.
    struct Log(Rc<RefCell<Vec<String>>>);
    impl Receiver<u32> for Log {
        fn start_bundle(&mut self) -> UnitResult {
            self.0.borrow_mut().push("start".into());
            Ok(())
        }
        fn receive(&mut self, e: WindowedValue<u32>) -> UnitResult {
            self.0.borrow_mut().push(e.value.to_string());
            Ok(())
        }
        fn finish_bundle(&mut self) -> UnitResult {
            self.0.borrow_mut().push("finish".into());
            Ok(())
        }
    }

    #[test]
    fn port_fans_out_and_counts() {
        let a = Rc::new(RefCell::new(vec![]));
        let b = Rc::new(RefCell::new(vec![]));
        let counters = Rc::new(PortCounters::default());
        let any = build_port::<u32>(
            vec![
                AnyReceiver::new::<u32>(Box::new(Log(a.clone()))),
                AnyReceiver::new::<u32>(Box::new(Log(b.clone()))),
            ],
            counters.clone(),
        )
        .unwrap();
        let mut port = any.downcast::<u32>().unwrap();
        port.start_bundle().unwrap();
        for i in 0..3 {
            port.emit(WindowedValue::in_global_window(i)).unwrap();
        }
        port.finish_bundle().unwrap();
        assert_eq!(*a.borrow(), ["start", "0", "1", "2", "finish"]);
        assert_eq!(*a.borrow(), *b.borrow());
        // u32 values below 128 encode to one byte each.
        assert_eq!(counters.take(), (3, 3));
        assert_eq!(counters.take(), (0, 0));
    }

    #[test]
    fn mismatched_types_are_reported() {
        let log = AnyReceiver::new::<u32>(Box::new(Log(Rc::default())));
        let err = log.downcast::<String>().err().unwrap();
        assert!(
            err.to_string().contains("expected alloc::string::String"),
            "{err}"
        );
        assert!(err.to_string().contains("found u32"), "{err}");
    }

    #[test]
    fn flatten_passes_bundle_boundaries_once() {
        let log = Rc::new(RefCell::new(vec![]));
        let port = Port::new(
            vec![Box::new(Log(log.clone())) as Box<dyn Receiver<u32>>],
            Rc::default(),
        );
        let mut edges: Vec<_> = flatten_receivers(2, port)
            .into_iter()
            .map(|r| r.downcast::<u32>().unwrap())
            .collect();
        for _ in 0..2 {
            edges[0].start_bundle().unwrap();
            edges[1].start_bundle().unwrap();
            edges[0]
                .receive(WindowedValue::in_global_window(1))
                .unwrap();
            edges[1]
                .receive(WindowedValue::in_global_window(2))
                .unwrap();
            edges[0].finish_bundle().unwrap();
            edges[1].finish_bundle().unwrap();
        }
        assert_eq!(
            *log.borrow(),
            ["start", "1", "2", "finish", "start", "1", "2", "finish"]
        );
    }
}
