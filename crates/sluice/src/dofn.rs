//! DoFns: per-element user code, and the execution unit that runs it.
//!
//! A [`DoFn`] goes through Beam's lifecycle on each worker: `setup` once, then for each
//! bundle `start_bundle`, `process` for every element, `finish_bundle`, and finally
//! `teardown`. Every method may fail by returning an error; a panic counts as a failure
//! too. Either way the bundle fails as a whole: nothing it produced leaves its stage.
//!
//! ```
//! use sluice::prelude::*;
//!
//! /// Splits "key,value" lines; malformed lines go to a second output.
//! #[derive(Clone)]
//! struct ParseCsv {
//!     bad: TupleTag<String>,
//! }
//!
//! impl DoFn for ParseCsv {
//!     type In = String;
//!     type Out = (String, i64);
//!     fn process(&mut self, line: String, ctx: &mut Context<'_, Self::Out>) -> Result<(), BoxError> {
//!         match line.split_once(',').map(|(k, v)| (k, v.trim().parse::<i64>())) {
//!             Some((k, Ok(v))) => ctx.emit((k.to_string(), v)),
//!             _ => ctx.emit_to(&self.bad, line),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let p = Pipeline::for_test();
//! let bad = TupleTag::<String>::new("bad");
//! let lines = p.create("Lines", vec!["a,1".to_string(), "oops".to_string()]);
//! let (parsed, tagged) = lines.par_do_with_outputs("Parse", ParseCsv { bad: bad.clone() }, &[bad.spec()]);
//! let good = parsed.collect("Good");
//! let errors = tagged.get(&bad).collect("Bad");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(good.values(), [("a".to_string(), 1)]);
//! assert_eq!(errors.values(), ["oops"]);
//! ```

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sluice_core::error::{current_step, panic_message};
use sluice_core::receiver::{AnyPort, AnyReceiver, Port};
use sluice_core::unit::{
    Attempt, ElementType, ParDoFactory, SideInputs, TypeOf, UnitContext, UnitCounters,
};
use sluice_core::user_metrics::UserMetrics;

use crate::transforms::side_input::SideInput;
use sluice_core::{
    BoxError, Element, ExecError, PaneInfo, Receiver, Timestamp, UnitResult, Window, WindowedValue,
    render_element,
};

/// Per-element user code with Beam's lifecycle.
///
/// Each worker gets its own clone of the DoFn given at construction, and a fresh clone
/// after a failure, so a DoFn may keep per-instance state in `self`.
pub trait DoFn: Clone + Send + 'static {
    /// The input element type.
    type In: Element;
    /// The main output element type.
    type Out: Element;

    /// Called once per instance, before any bundle.
    fn setup(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called at the start of each bundle.
    fn start_bundle(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called for each element of the bundle. Outputs inherit the element's timestamp
    /// and window.
    fn process(
        &mut self,
        element: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError>;

    /// Called at the end of each bundle; may emit (for example buffered results).
    fn finish_bundle(&mut self, _ctx: &mut FinishContext<'_, Self::Out>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once when the instance is discarded, after its last bundle or after a failure.
    fn teardown(&mut self) {}
}

/// Names an additional output of a ParDo, and its element type.
pub struct TupleTag<T> {
    id: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for TupleTag<T> {
    fn clone(&self) -> Self {
        TupleTag {
            id: self.id.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TupleTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TupleTag({})", self.id)
    }
}

impl<T: Element> TupleTag<T> {
    /// A tag named `id`; the name appears in PCollection names (`Parse.errors`).
    pub fn new(id: &str) -> Self {
        TupleTag {
            id: id.into(),
            _type: PhantomData,
        }
    }

    /// The tag's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tag as an output declaration for [`crate::PCollection::par_do_with_outputs`].
    pub fn spec(&self) -> TagSpec {
        TagSpec {
            id: self.id.clone(),
            element: TypeOf::<T>::arc(),
        }
    }
}

/// An additional output declared for a ParDo.
#[derive(Clone)]
pub struct TagSpec {
    pub(crate) id: Arc<str>,
    pub(crate) element: Arc<dyn ElementType>,
}

struct Tagged {
    id: Arc<str>,
    port: AnyPort,
}

/// Where `process` sends its outputs.
pub struct Context<'a, Out> {
    main: &'a mut Port<Out>,
    tagged: &'a mut [Tagged],
    /// On a ParDo's last attempt with a dead-letter output, the main outputs of the
    /// current element, released only if it succeeds.
    held: Option<&'a mut Vec<WindowedValue<Out>>>,
    timestamp: Timestamp,
    window: Window,
    pane: PaneInfo,
    transform: &'a str,
    metrics: &'a UserMetrics,
    side_inputs: &'a SideInputs,
    /// The first failure of a unit downstream; reported after `process` returns, so the
    /// bundle fails even if the DoFn ignores it.
    downstream: Option<Box<ExecError>>,
}

impl<'a, Out: Element> Context<'a, Out> {
    /// A context emitting to `main`, for units outside this module (stateful DoFns).
    pub(crate) fn for_output(
        main: &'a mut Port<Out>,
        timestamp: Timestamp,
        window: Window,
        transform: &'a str,
        metrics: &'a UserMetrics,
        side_inputs: &'a SideInputs,
    ) -> Self {
        Context {
            main,
            tagged: &mut [],
            held: None,
            timestamp,
            window,
            pane: PaneInfo::NO_FIRING,
            transform,
            metrics,
            side_inputs,
            downstream: None,
        }
    }

    /// The first failure downstream, if any (taken).
    pub(crate) fn take_downstream(&mut self) -> Option<Box<ExecError>> {
        self.downstream.take()
    }
}

impl<Out: Element> Context<'_, Out> {
    /// Emits to the main output, with the input's timestamp and window.
    #[inline(always)]
    pub fn emit(&mut self, value: Out) {
        if self.downstream.is_none() {
            let element = WindowedValue {
                value,
                timestamp: self.timestamp,
                window: self.window,
                pane: self.pane,
            };
            if let Some(held) = self.held.as_deref_mut() {
                held.push(element);
            } else if let Err(e) = self.main.emit(element) {
                self.downstream = Some(e);
            }
        }
    }

    /// Emits to the main output with an explicit timestamp and window (window assignment).
    pub(crate) fn emit_in(&mut self, value: Out, timestamp: Timestamp, window: Window) {
        let (t, w) = (self.timestamp, self.window);
        self.timestamp = timestamp;
        self.window = window;
        self.emit(value);
        self.timestamp = t;
        self.window = w;
    }

    /// Emits to the main output with another event timestamp (in the input's window).
    pub fn emit_with_timestamp(&mut self, value: Out, timestamp: Timestamp) {
        let original = std::mem::replace(&mut self.timestamp, timestamp);
        self.emit(value);
        self.timestamp = original;
    }

    /// Emits to the additional output named by `tag`.
    ///
    /// If the ParDo was not declared with this tag (a construction bug), the element fails
    /// with an error saying so.
    pub fn emit_to<T: Element>(&mut self, tag: &TupleTag<T>, value: T) {
        if self.downstream.is_some() {
            return;
        }
        let element = WindowedValue {
            value,
            timestamp: self.timestamp,
            window: self.window,
            pane: self.pane,
        };
        let result = match self.tagged.iter_mut().find(|t| t.id == tag.id) {
            Some(t) => match t.port.downcast_mut::<T>() {
                Some(port) => port.emit(element),
                None => Err(ExecError::new(
                    self.transform,
                    format!("output tag '{}' has another element type", tag.id),
                )),
            },
            None => Err(ExecError::new(
                self.transform,
                format!(
                    "output tag '{}' was not declared; pass tag.spec() to par_do_with_outputs",
                    tag.id
                ),
            )),
        };
        if let Err(e) = result {
            self.downstream = Some(e);
        }
    }

    /// The event timestamp of the element being processed.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The value of a side input the ParDo was declared with (see
    /// [`crate::PCollection::par_do_with_side_inputs`]).
    pub fn side_input<V: 'static>(&self, view: &SideInput<V>) -> Result<&V, BoxError> {
        self.side_inputs
            .get(view.id())
            .and_then(|v| v.downcast_ref::<V>())
            .ok_or_else(|| {
                format!(
                    "{view:?} is not a side input of '{}'; declare it with par_do_with_side_inputs(.., &[view.spec()])",
                    self.transform
                )
                .into()
            })
    }

    /// This transform's user metrics: counters, distributions and gauges, by name. They
    /// count in the job's results only for bundles that commit.
    ///
    /// ```
    /// # use sluice::prelude::*;
    /// #[derive(Clone)]
    /// struct Parse;
    /// impl DoFn for Parse {
    ///     type In = String;
    ///     type Out = i64;
    ///     fn process(&mut self, s: String, ctx: &mut Context<'_, i64>) -> Result<(), BoxError> {
    ///         match s.parse() {
    ///             Ok(n) => ctx.emit(n),
    ///             Err(_) => ctx.metrics().inc_counter("unparsable", 1),
    ///         }
    ///         ctx.metrics().update_distribution("length", s.len() as i64);
    ///         Ok(())
    ///     }
    /// }
    /// let p = Pipeline::for_test();
    /// let _ = p.create("Text", vec!["1".to_string(), "x".to_string()]).par_do("Parse", Parse).collect("Out");
    /// let result = p.run().unwrap();
    /// assert_eq!(result.metrics().counter("Parse", "unparsable"), Some(1));
    /// ```
    pub fn metrics(&self) -> &UserMetrics {
        self.metrics
    }

    /// The window of the element being processed.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Which firing of its window produced the element being processed (Beam's
    /// `PaneInfo`): after a grouping, whether the pane is early, on time or late, its index,
    /// and whether it is the window's last. Ungrouped elements have
    /// [`PaneInfo::NO_FIRING`].
    pub fn pane(&self) -> PaneInfo {
        self.pane
    }
}

/// Where `finish_bundle` sends its outputs. There is no current element, so outputs go
/// to the global window unless a timestamp and window are given.
pub struct FinishContext<'a, Out> {
    inner: Context<'a, Out>,
}

impl<Out: Element> FinishContext<'_, Out> {
    /// Emits to the main output, in the global window at the minimum timestamp.
    pub fn emit(&mut self, value: Out) {
        self.inner.emit(value)
    }

    /// Emits to the main output with an explicit timestamp and window.
    pub fn emit_windowed(&mut self, value: Out, timestamp: Timestamp, window: Window) {
        self.inner.timestamp = timestamp;
        self.inner.window = window;
        self.inner.emit(value);
    }

    /// Emits to an additional output, in the global window at the minimum timestamp.
    pub fn emit_to<T: Element>(&mut self, tag: &TupleTag<T>, value: T) {
        self.inner.emit_to(tag, value)
    }

    /// This transform's user metrics (see [`Context::metrics`]).
    pub fn metrics(&self) -> &UserMetrics {
        self.inner.metrics
    }
}

/// An element a ParDo could not process on any attempt, routed to its dead-letter output
/// (see [`crate::PCollection::par_do_with_dead_letter`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter<T> {
    /// The element, as the ParDo received it.
    pub element: T,
    /// Why it failed (the DoFn's error, or its panic message).
    pub error: String,
    /// The transform that failed on it.
    pub transform: String,
    /// How many attempts its bundle had, this one included.
    pub attempts: u32,
}

impl<T: sluice_core::Coder> sluice_core::Coder for DeadLetter<T> {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), sluice_core::CoderError> {
        self.element.encode_to(out)?;
        self.error.encode_to(out)?;
        self.transform.encode_to(out)?;
        self.attempts.encode_to(out)
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, sluice_core::CoderError> {
        Ok(DeadLetter {
            element: T::decode_from(input)?,
            error: String::decode_from(input)?,
            transform: String::decode_from(input)?,
            attempts: u32::decode_from(input)?,
        })
    }
    fn is_deterministic() -> bool {
        T::is_deterministic()
    }
}

/// Runs a lifecycle method (not the per-element path), turning an error or a panic into
/// an [`ExecError`] of `transform`.
fn call<R>(transform: &str, f: impl FnOnce() -> Result<R, BoxError>) -> Result<R, Box<ExecError>> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(ExecError::new(transform, e)),
        Err(panic) => Err(ExecError::new(
            transform,
            format!("panicked: {}", panic_message(&*panic)),
        )),
    }
}

/// Runs a DoFn's `teardown`: a failure there is logged, never fatal (as in Beam,
/// teardown is best effort), and it never unwinds into the runner.
pub(crate) fn teardown_guarded(transform: &str, teardown: impl FnOnce()) {
    if let Err(e) = call(transform, || {
        teardown();
        Ok(())
    }) {
        log::warn!("{e} (in teardown)");
    }
}

/// A fresh, set-up instance of the DoFn given at construction.
fn instantiate<D: DoFn>(prototype: &Mutex<D>, transform: &str) -> Result<D, Box<ExecError>> {
    let mut dofn = prototype
        .lock()
        .map_err(|_| {
            ExecError::new(
                transform,
                "a previous instance of this DoFn panicked while being cloned",
            )
        })?
        .clone();
    call(transform, || dofn.setup())
        .map_err(|e| ExecError::new(transform, format!("setup failed: {}", e.source)))?;
    Ok(dofn)
}

/// The execution unit of a ParDo: one DoFn instance and its output ports.
struct ParDoUnit<D: DoFn> {
    dofn: D,
    prototype: Arc<Mutex<D>>,
    transform: String,
    step: u32,
    main: Port<D::Out>,
    tagged: Vec<Tagged>,
    dead_letter: Option<Port<DeadLetter<D::In>>>,
    attempt: Rc<Attempt>,
    counters: Rc<UnitCounters>,
    /// The position of the root element being processed (see `Attempt::suspect`).
    position: Arc<AtomicU64>,
    side_inputs: Rc<SideInputs>,
    /// This bundle retries a failed element: render it before processing it, so that a
    /// second failure can name it.
    retrying: bool,
    /// This bundle is the failed element's last attempt and the ParDo has a dead-letter
    /// output: if it fails again it goes there instead of failing the bundle.
    routing: bool,
    held: Vec<WindowedValue<D::Out>>,
}

impl<D: DoFn> ParDoUnit<D> {
    /// Processes one element on the last attempt: its outputs are held until it succeeds;
    /// if it fails (error or panic) it goes to the dead-letter output with the reason.
    #[cold]
    fn receive_routing(&mut self, element: WindowedValue<D::In>) -> UnitResult {
        let copy = element.value.clone();
        let mut held = std::mem::take(&mut self.held);
        let (outcome, downstream) = {
            let ParDoUnit {
                dofn,
                transform,
                step,
                main,
                tagged,
                counters,
                side_inputs,
                ..
            } = self;
            let mut ctx = Context {
                main,
                tagged,
                held: Some(&mut held),
                timestamp: element.timestamp,
                window: element.window,
                pane: element.pane,
                transform,
                metrics: &counters.user,
                side_inputs,
                downstream: None,
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                current_step::in_step(*step, || dofn.process(element.value, &mut ctx))
            }));
            (outcome, ctx.downstream.take())
        };
        let failure = match (outcome, downstream) {
            (Ok(Ok(())), None) => None,
            (Ok(Ok(())), Some(e)) => Some(e.source.to_string()),
            (Ok(Err(e)), _) => Some(e.to_string()),
            (Err(panic), _) => {
                // The instance may be half-way through an update: replace it.
                current_step::take_panicked_step();
                let fresh = instantiate(&self.prototype, &self.transform)?;
                let mut old = std::mem::replace(&mut self.dofn, fresh);
                self.counters
                    .teardowns
                    .set(self.counters.teardowns.get() + 1);
                teardown_guarded(&self.transform, || old.teardown());
                Some(format!("panicked: {}", panic_message(&*panic)))
            }
        };
        let result = match failure {
            None => held.drain(..).try_for_each(|e| self.main.emit(e)),
            Some(error) => {
                held.clear();
                self.counters
                    .dead_lettered
                    .set(self.counters.dead_lettered.get() + 1);
                let letter = DeadLetter {
                    element: copy,
                    error,
                    transform: self.transform.clone(),
                    attempts: self.attempt.number.get(),
                };
                match &mut self.dead_letter {
                    Some(port) => port.emit(WindowedValue {
                        value: letter,
                        timestamp: element.timestamp,
                        window: element.window,
                        pane: element.pane,
                    }),
                    None => Ok(()),
                }
            }
        };
        self.held = held;
        result
    }
}

impl<D: DoFn> Receiver<D::In> for ParDoUnit<D> {
    fn start_bundle(&mut self) -> UnitResult {
        self.retrying = self.attempt.is_retry();
        self.routing = self.retrying && self.dead_letter.is_some() && self.attempt.is_last();
        // Consumers start before this DoFn can emit anything.
        self.main.start_bundle()?;
        for t in &mut self.tagged {
            t.port.start_bundle()?;
        }
        if let Some(port) = &mut self.dead_letter {
            port.start_bundle()?;
        }
        let dofn = &mut self.dofn;
        call(&self.transform, || dofn.start_bundle())
    }

    #[inline]
    fn receive(&mut self, element: WindowedValue<D::In>) -> UnitResult {
        // Only a retry pays for finding the element that failed before.
        let suspect = self.retrying
            && self
                .attempt
                .is_suspect(self.position.load(Ordering::Relaxed));
        if suspect && self.routing {
            return self.receive_routing(element);
        }
        let rendered = suspect.then(|| render_element(&element.value));
        let ParDoUnit {
            dofn,
            transform,
            step,
            main,
            tagged,
            counters,
            side_inputs,
            dead_letter,
            ..
        } = self;
        let mut ctx = Context {
            main,
            tagged,
            held: None,
            timestamp: element.timestamp,
            window: element.window,
            pane: element.pane,
            transform,
            metrics: &counters.user,
            side_inputs,
            downstream: None,
        };
        // No catch per element: a panic unwinds to the bundle's guard, which names this
        // step because it is marked as running.
        let result = current_step::in_step(*step, || dofn.process(element.value, &mut ctx));
        // A failure downstream is the root cause; it fails this bundle even if the DoFn
        // went on as if nothing happened.
        match ctx.downstream.take() {
            Some(e) => Err(e),
            None => result.map_err(|e| {
                let mut error = ExecError::new(transform.as_str(), e);
                // With a dead-letter output even a permanent failure is retried, so that
                // the last attempt sets the element aside.
                if dead_letter.is_some() {
                    error.permanent = false;
                }
                match rendered {
                    Some(r) => error.with_element(r),
                    None => error,
                }
            }),
        }
    }

    fn finish_bundle(&mut self) -> UnitResult {
        let ParDoUnit {
            dofn,
            transform,
            main,
            tagged,
            counters,
            side_inputs,
            ..
        } = self;
        let mut ctx = FinishContext {
            inner: Context {
                main,
                tagged,
                held: None,
                timestamp: Timestamp::MIN,
                window: Window::Global,
                pane: PaneInfo::NO_FIRING,
                transform,
                metrics: &counters.user,
                side_inputs,
                downstream: None,
            },
        };
        let result = call(transform, || dofn.finish_bundle(&mut ctx));
        if let Some(e) = ctx.inner.downstream.take() {
            return Err(e);
        }
        result?;
        self.main.finish_bundle()?;
        for t in &mut self.tagged {
            t.port.finish_bundle()?;
        }
        if let Some(port) = &mut self.dead_letter {
            port.finish_bundle()?;
        }
        Ok(())
    }
}

impl<D: DoFn> Drop for ParDoUnit<D> {
    fn drop(&mut self) {
        let dofn = &mut self.dofn;
        self.counters
            .teardowns
            .set(self.counters.teardowns.get() + 1);
        teardown_guarded(&self.transform, || dofn.teardown());
    }
}

/// Builds [`ParDoUnit`]s from the DoFn given at construction.
pub(crate) struct ParDoPayload<D> {
    /// The DoFn as constructed; each unit gets a clone. A mutex, so the DoFn itself need
    /// not be `Sync`.
    prototype: Arc<Mutex<D>>,
    /// Names of the additional outputs, in output order (after the main output).
    tags: Vec<Arc<str>>,
    /// Whether the second output is a dead-letter output.
    dead_letter: bool,
}

impl<D: DoFn> ParDoPayload<D> {
    pub(crate) fn new(dofn: D, tags: Vec<Arc<str>>) -> Self {
        ParDoPayload {
            prototype: Arc::new(Mutex::new(dofn)),
            tags,
            dead_letter: false,
        }
    }

    pub(crate) fn with_dead_letter(dofn: D) -> Self {
        ParDoPayload {
            prototype: Arc::new(Mutex::new(dofn)),
            tags: Vec::new(),
            dead_letter: true,
        }
    }
}

impl<D: DoFn> ParDoFactory for ParDoPayload<D> {
    fn build(
        &self,
        ctx: &UnitContext,
        outputs: Vec<AnyPort>,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        let mut outputs = outputs.into_iter();
        let main = outputs
            .next()
            .ok_or_else(|| {
                ctx.error("internal error: a ParDo unit was built without its main output")
            })?
            .downcast::<D::Out>()
            .map_err(|e| ctx.error(e))?;
        let dead_letter = match self.dead_letter {
            true => Some(
                outputs
                    .next()
                    .ok_or_else(|| ctx.error("internal error: no dead-letter output"))?
                    .downcast::<DeadLetter<D::In>>()
                    .map_err(|e| ctx.error(e))?,
            ),
            false => None,
        };
        let tagged = self
            .tags
            .iter()
            .zip(outputs)
            .map(|(id, port)| Tagged {
                id: id.clone(),
                port,
            })
            .collect();
        let dofn = instantiate(&self.prototype, &ctx.transform)?;
        Ok(AnyReceiver::new::<D::In>(Box::new(ParDoUnit {
            dofn,
            prototype: self.prototype.clone(),
            transform: ctx.transform.clone(),
            step: ctx.step,
            main,
            tagged,
            dead_letter,
            attempt: ctx.attempt.clone(),
            counters: ctx.counters.clone(),
            position: ctx.position.clone(),
            side_inputs: ctx.side_inputs.clone(),
            retrying: false,
            routing: false,
            held: Vec::new(),
        })))
    }
}

/// `map`: one output per input.
#[derive(Clone)]
pub(crate) struct MapFn<F, I, O> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(I) -> O>,
}

impl<F, I, O> DoFn for MapFn<F, I, O>
where
    F: Fn(I) -> O + Clone + Send + 'static,
    I: Element,
    O: Element,
{
    type In = I;
    type Out = O;
    #[inline]
    fn process(&mut self, element: I, ctx: &mut Context<'_, O>) -> Result<(), BoxError> {
        ctx.emit((self.f)(element));
        Ok(())
    }
}

/// `try_map`: one output per input, or an error that fails the bundle.
#[derive(Clone)]
pub(crate) struct TryMapFn<F, I, O> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(I) -> O>,
}

impl<F, I, O, E> DoFn for TryMapFn<F, I, O>
where
    F: Fn(I) -> Result<O, E> + Clone + Send + 'static,
    E: Into<BoxError>,
    I: Element,
    O: Element,
{
    type In = I;
    type Out = O;
    #[inline]
    fn process(&mut self, element: I, ctx: &mut Context<'_, O>) -> Result<(), BoxError> {
        ctx.emit((self.f)(element).map_err(Into::into)?);
        Ok(())
    }
}

/// `flat_map`: any number of outputs per input.
#[derive(Clone)]
pub(crate) struct FlatMapFn<F, I, O> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(I) -> O>,
}

impl<F, I, O, It> DoFn for FlatMapFn<F, I, O>
where
    F: Fn(I) -> It + Clone + Send + 'static,
    It: IntoIterator<Item = O>,
    I: Element,
    O: Element,
{
    type In = I;
    type Out = O;
    #[inline]
    fn process(&mut self, element: I, ctx: &mut Context<'_, O>) -> Result<(), BoxError> {
        for out in (self.f)(element) {
            ctx.emit(out);
        }
        Ok(())
    }
}

/// `filter`: keeps the inputs the predicate accepts.
#[derive(Clone)]
pub(crate) struct FilterFn<F, T> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(T)>,
}

impl<F, T> DoFn for FilterFn<F, T>
where
    F: Fn(&T) -> bool + Clone + Send + 'static,
    T: Element,
{
    type In = T;
    type Out = T;
    #[inline]
    fn process(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        if (self.f)(&element) {
            ctx.emit(element);
        }
        Ok(())
    }
}
