//! Stateful DoFns: state per key and window, and timers.
//!
//! A stateful DoFn reads `(K, V)` pairs. Its input is shuffled by key, so all of a key's
//! elements reach the worker that owns the key, where its state lives. State is declared
//! with typed cells — [`ValueState`], [`BagState`], [`CombiningState`], [`MapState`] — and
//! [`Timer`]s call the DoFn back at an event time or a processing time.
//!
//! State lives across bundles, per key and window, until the window expires (its end plus
//! the allowed lateness has passed the input watermark): then its remaining timers fire
//! and the state is dropped. Each firing processes the elements that arrived since the
//! last one in arrival order (which is arbitrary), then the key's due timers in time
//! order — event-time timers once the input watermark passes them, processing-time ones
//! once the wall clock does — and a timer callback may set further timers. An unfired
//! event-time timer holds the output watermark at its time.
//!
//! In a batch job every key's input is complete before any of it is processed (the
//! watermark is already at the end of time, so every event-time timer is due). In a
//! streaming job keys are processed as their elements arrive and timers fire as time
//! passes. What a bundle does to state is applied only when the bundle commits: a failed
//! attempt's changes are forgotten and its retry starts from the committed state with a
//! fresh DoFn instance.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::stateful::{BagState, FiredTimer, State, StatefulDoFn, TimeDomain, Timer};
//!
//! /// Emits each key's values sorted by event time, whatever order they arrived in.
//! #[derive(Clone)]
//! struct SortByTime {
//!     buffer: BagState<(Timestamp, u32)>,
//!     flush: Timer,
//! }
//!
//! impl StatefulDoFn for SortByTime {
//!     type Key = String;
//!     type Value = u32;
//!     type Out = (String, Vec<u32>);
//!     fn process(&mut self, _key: &String, v: u32, state: &mut State<'_>, ctx: &mut Context<'_, Self::Out>) -> Result<(), BoxError> {
//!         state.add(&self.buffer, &(ctx.timestamp(), v))?;
//!         state.set_timer(&self.flush, Timestamp::END_OF_GLOBAL_WINDOW);
//!         Ok(())
//!     }
//!     fn on_timer(&mut self, key: &String, _t: &FiredTimer, state: &mut State<'_>, ctx: &mut Context<'_, Self::Out>) -> Result<(), BoxError> {
//!         let mut events = state.read_bag(&self.buffer)?;
//!         events.sort();
//!         ctx.emit((key.clone(), events.into_iter().map(|(_, v)| v).collect()));
//!         Ok(())
//!     }
//! }
//!
//! let p = Pipeline::for_test();
//! let dofn = SortByTime { buffer: BagState::new("buffer"), flush: Timer::new("flush", TimeDomain::EventTime) };
//! let out = p.create("Pairs", vec![("k".to_string(), 3u32), ("k".to_string(), 1)])
//!     .par_do_stateful("Sort", dofn)
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! assert_eq!(out.values().len(), 1);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use sluice_core::coder::{CoderError, decode_exact};
use sluice_core::receiver::{AnyPort, AnyReceiver, Port, TypeMismatch};
use sluice_core::shuffle::{GroupingKey, KeyedTable, ShuffleRecord, ShuffleWriter};
use sluice_core::trigger::Windowing;
use sluice_core::unit::{ShuffleReader, StatefulFactory, UnitContext, attached};
use sluice_core::{BoxError, Coder, Element, ExecError, Timestamp, UnitResult, Window, key_hash};
use sluice_plan::Payload;

use crate::dofn::Context;
use crate::pcollection::PCollection;
use crate::transforms::combine::CombineFn;
use crate::transforms::group_by_key::{KeyedWrite, Pairs, check_key_coder};
use crate::transforms::pane_reader::{Counted, Spill};

/// A DoFn over `(Key, Value)` pairs with state per key and window, and timers.
pub trait StatefulDoFn: Clone + Send + 'static {
    /// The key type (its coder must be deterministic).
    type Key: Element;
    /// The value type.
    type Value: Element;
    /// The output type.
    type Out: Element;

    /// Called once per instance, before any element.
    fn setup(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called for each element, with its key's state.
    fn process(
        &mut self,
        key: &Self::Key,
        value: Self::Value,
        state: &mut State<'_>,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError>;

    /// Called when a timer of `key` fires. Outputs take the timer's time (event-time
    /// timers) or the window's end (processing-time timers).
    fn on_timer(
        &mut self,
        _key: &Self::Key,
        _timer: &FiredTimer,
        _state: &mut State<'_>,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once when the instance is discarded.
    fn teardown(&mut self) {}
}

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Event time: fires when the input watermark passes the timer's time.
    EventTime,
    /// Processing time: fires when the wall clock passes the timer's time.
    ProcessingTime,
}

/// A timer of a stateful DoFn, by name.
#[derive(Clone, Debug)]
pub struct Timer {
    name: Arc<str>,
    domain: TimeDomain,
}

impl Timer {
    /// A timer named `name` in `domain`.
    pub fn new(name: &str, domain: TimeDomain) -> Self {
        Timer {
            name: name.into(),
            domain,
        }
    }
}

/// A timer that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct FiredTimer {
    /// The timer's name.
    pub name: String,
    /// Its clock.
    pub domain: TimeDomain,
    /// The time it was set for.
    pub timestamp: Timestamp,
}

macro_rules! cell {
    ($(#[$doc:meta])* $name:ident<$($t:ident),+>) => {
        $(#[$doc])*
        pub struct $name<$($t),+> {
            name: Arc<str>,
            _type: PhantomData<fn($($t),+)>,
        }

        impl<$($t),+> $name<$($t),+> {
            /// The cell named `name` (unique among the DoFn's cells).
            pub fn new(name: &str) -> Self {
                $name { name: name.into(), _type: PhantomData }
            }
        }

        impl<$($t),+> Clone for $name<$($t),+> {
            fn clone(&self) -> Self {
                $name { name: self.name.clone(), _type: PhantomData }
            }
        }

        impl<$($t),+> StateCell for $name<$($t),+> {
            fn cell_name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// A state cell, whatever its kind.
pub trait StateCell {
    /// The cell's name.
    fn cell_name(&self) -> &str;
}

cell!(
    /// One value per key and window.
    ValueState<T>
);
cell!(
    /// A growing collection per key and window; adding does not read it.
    BagState<T>
);
cell!(
    /// A map per key and window.
    MapState<K, V>
);

/// A value per key and window kept combined by a [`CombineFn`].
pub struct CombiningState<F> {
    name: Arc<str>,
    combine_fn: F,
}

impl<F: CombineFn> CombiningState<F> {
    /// The cell named `name`, combining with `combine_fn`.
    pub fn new(name: &str, combine_fn: F) -> Self {
        CombiningState {
            name: name.into(),
            combine_fn,
        }
    }
}

impl<F: Clone> Clone for CombiningState<F> {
    fn clone(&self) -> Self {
        CombiningState {
            name: self.name.clone(),
            combine_fn: self.combine_fn.clone(),
        }
    }
}

impl<F> StateCell for CombiningState<F> {
    fn cell_name(&self) -> &str {
        &self.name
    }
}

/// A cell's contents, encoded.
#[derive(Clone)]
enum Cell {
    Value(Vec<u8>),
    Bag { bytes: Vec<u8>, count: usize },
    Map(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// The state and timers of one key in one window.
#[derive(Clone, Default)]
struct KeyState {
    cells: HashMap<String, Cell>,
    timers: BTreeMap<String, (TimeDomain, Timestamp)>,
}

impl KeyState {
    /// About how many bytes it holds.
    fn size(&self) -> u64 {
        let cells: usize = self
            .cells
            .iter()
            .map(|(name, cell)| {
                name.len()
                    + 32
                    + match cell {
                        Cell::Value(bytes) => bytes.len(),
                        Cell::Bag { bytes, .. } => bytes.len(),
                        Cell::Map(map) => map.iter().map(|(k, v)| k.len() + v.len() + 48).sum(),
                    }
            })
            .sum();
        let timers: usize = self.timers.keys().map(|name| name.len() + 48).sum();
        (cells + timers) as u64
    }
}

/// The state of the key (and window) being processed.
pub struct State<'a> {
    key: &'a mut KeyState,
    /// Processing time now, in microseconds since the epoch (the job's clock).
    now_us: i64,
}

fn kind_error(name: &str, kind: &str) -> CoderError {
    CoderError::decode(
        "state",
        format!("state cell '{name}' is used as a {kind} but holds another kind"),
    )
}

impl State<'_> {
    /// The value of `cell`, if set.
    pub fn read<T: Element>(&self, cell: &ValueState<T>) -> Result<Option<T>, CoderError> {
        match self.key.cells.get(&*cell.name) {
            None => Ok(None),
            Some(Cell::Value(bytes)) => decode_exact(bytes).map(Some),
            Some(_) => Err(kind_error(&cell.name, "value")),
        }
    }

    /// Sets the value of `cell`.
    pub fn write<T: Element>(&mut self, cell: &ValueState<T>, value: &T) -> Result<(), CoderError> {
        let mut bytes = Vec::new();
        value.encode_to(&mut bytes)?;
        self.key
            .cells
            .insert(cell.name.to_string(), Cell::Value(bytes));
        Ok(())
    }

    /// Adds `value` to `bag`.
    pub fn add<T: Element>(&mut self, bag: &BagState<T>, value: &T) -> Result<(), CoderError> {
        let cell = self
            .key
            .cells
            .entry(bag.name.to_string())
            .or_insert_with(|| Cell::Bag {
                bytes: Vec::new(),
                count: 0,
            });
        let Cell::Bag { bytes, count } = cell else {
            return Err(kind_error(&bag.name, "bag"));
        };
        value.encode_to(bytes)?;
        *count += 1;
        Ok(())
    }

    /// Everything added to `bag`, in the order added.
    pub fn read_bag<T: Element>(&self, bag: &BagState<T>) -> Result<Vec<T>, CoderError> {
        match self.key.cells.get(&*bag.name) {
            None => Ok(Vec::new()),
            Some(Cell::Bag { bytes, count }) => {
                let mut input = &bytes[..];
                (0..*count).map(|_| T::decode_from(&mut input)).collect()
            }
            Some(_) => Err(kind_error(&bag.name, "bag")),
        }
    }

    /// Combines `input` into `cell`.
    pub fn combine<F: CombineFn>(
        &mut self,
        cell: &CombiningState<F>,
        input: F::Input,
    ) -> Result<(), CoderError> {
        let mut acc = match self.key.cells.get(&*cell.name) {
            None => cell.combine_fn.create_accumulator(),
            Some(Cell::Value(bytes)) => decode_exact(bytes)?,
            Some(_) => return Err(kind_error(&cell.name, "combining cell")),
        };
        cell.combine_fn.add_input(&mut acc, input);
        let mut bytes = Vec::new();
        acc.encode_to(&mut bytes)?;
        self.key
            .cells
            .insert(cell.name.to_string(), Cell::Value(bytes));
        Ok(())
    }

    /// The combined value of `cell` (of nothing, if nothing was combined).
    pub fn read_combined<F: CombineFn>(
        &self,
        cell: &CombiningState<F>,
    ) -> Result<F::Output, CoderError> {
        let acc = match self.key.cells.get(&*cell.name) {
            None => cell.combine_fn.create_accumulator(),
            Some(Cell::Value(bytes)) => decode_exact(bytes)?,
            Some(_) => return Err(kind_error(&cell.name, "combining cell")),
        };
        Ok(cell.combine_fn.extract_output(acc))
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, CoderError> {
        let cell = self
            .key
            .cells
            .entry(name.to_string())
            .or_insert_with(|| Cell::Map(BTreeMap::new()));
        match cell {
            Cell::Map(map) => Ok(map),
            _ => Err(kind_error(name, "map")),
        }
    }

    /// Maps `key` to `value` in `map`.
    pub fn put<K: Element, V: Element>(
        &mut self,
        map: &MapState<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), CoderError> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        key.encode_to(&mut k)?;
        value.encode_to(&mut v)?;
        self.map_mut(&map.name)?.insert(k, v);
        Ok(())
    }

    /// The value `map` has for `key`.
    pub fn get<K: Element, V: Element>(
        &self,
        map: &MapState<K, V>,
        key: &K,
    ) -> Result<Option<V>, CoderError> {
        let mut k = Vec::new();
        key.encode_to(&mut k)?;
        match self.key.cells.get(&*map.name) {
            None => Ok(None),
            Some(Cell::Map(m)) => m.get(&k).map(|v| decode_exact(v)).transpose(),
            Some(_) => Err(kind_error(&map.name, "map")),
        }
    }

    /// Removes `key` from `map`.
    pub fn remove<K: Element, V: Element>(
        &mut self,
        map: &MapState<K, V>,
        key: &K,
    ) -> Result<(), CoderError> {
        let mut k = Vec::new();
        key.encode_to(&mut k)?;
        self.map_mut(&map.name)?.remove(&k);
        Ok(())
    }

    /// Every entry of `map`, in the order of the keys' encodings.
    pub fn entries<K: Element, V: Element>(
        &self,
        map: &MapState<K, V>,
    ) -> Result<Vec<(K, V)>, CoderError> {
        match self.key.cells.get(&*map.name) {
            None => Ok(Vec::new()),
            Some(Cell::Map(m)) => m
                .iter()
                .map(|(k, v)| Ok((decode_exact(k)?, decode_exact(v)?)))
                .collect(),
            Some(_) => Err(kind_error(&map.name, "map")),
        }
    }

    /// Empties a cell.
    pub fn clear(&mut self, cell: &impl StateCell) {
        self.key.cells.remove(cell.cell_name());
    }

    /// Sets `timer` to fire at `at` (replacing an earlier setting).
    pub fn set_timer(&mut self, timer: &Timer, at: Timestamp) {
        self.key
            .timers
            .insert(timer.name.to_string(), (timer.domain, at));
    }

    /// The job's processing time now (the wall clock, or a test stream's scripted one).
    pub fn processing_time(&self) -> Timestamp {
        Timestamp(self.now_us)
    }

    /// Sets the processing-time `timer` to fire `after` from now (Beam's
    /// `offset(..).setRelative()`).
    pub fn set_timer_after(&mut self, timer: &Timer, after: std::time::Duration) {
        let after_us = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
        self.set_timer(timer, Timestamp(self.now_us.saturating_add(after_us)));
    }

    /// Cancels `timer`.
    pub fn clear_timer(&mut self, timer: &Timer) {
        self.key.timers.remove(&*timer.name);
    }
}

/// Timer firings one key may cause before it is considered to loop forever.
const MAX_FIRINGS_PER_KEY: usize = 100_000;

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Runs a [`StatefulDoFn`]: the input is shuffled by key, and each key's elements are
    /// processed on the worker that owns the key, with that key's state and timers.
    pub fn par_do_stateful<D: StatefulDoFn<Key = K, Value = V>>(
        &self,
        name: &str,
        dofn: D,
    ) -> PCollection<D::Out> {
        check_key_coder::<K>(self, name);
        if self.windowing().is_merging() {
            self.pipeline().problem(
                name,
                format!(
                    "a stateful DoFn cannot read merging windows ({})",
                    self.windowing().describe()
                ),
                "window the input with fixed or sliding windows, or group it first",
            );
        }
        let payload = StatefulPayload {
            prototype: Arc::new(Mutex::new(dofn)),
            windowing: self.windowing(),
        };
        self.apply_leaf(name, Payload::StatefulParDo(Arc::new(payload)))
    }
}

struct StatefulPayload<D> {
    prototype: Arc<Mutex<D>>,
    windowing: Arc<Windowing>,
}

fn instantiate<D: StatefulDoFn>(
    prototype: &Mutex<D>,
    ctx: &UnitContext,
) -> Result<D, Box<ExecError>> {
    let mut dofn = prototype
        .lock()
        .map_err(|_| ctx.error("a previous instance of this DoFn panicked while being cloned"))?
        .clone();
    dofn.setup()
        .map_err(|e| ctx.error(format!("setup failed: {e}")))?;
    Ok(dofn)
}

impl<D: StatefulDoFn> StatefulFactory for StatefulPayload<D> {
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<(D::Key, D::Value)>(Box::new(
            KeyedWrite::<Pairs<D::Key, D::Value>>::new(ctx, shuffle),
        )))
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        Ok(Box::new(StatefulRead::<D> {
            ctx: ctx.clone(),
            prototype: self.prototype.clone(),
            dofn: Some(instantiate(&self.prototype, ctx)?),
            windowing: (*self.windowing).clone(),
            watermark: Timestamp::MIN,
            now_ms: i64::MIN,
            group: GroupingKey::default(),
            pending: KeyedTable::default(),
            pending_bytes: 0,
            spill: ctx
                .memory
                .clone()
                .filter(|_| !ctx.streaming)
                .map(Spill::new),
            counted: ctx
                .memory
                .clone()
                .filter(|_| ctx.streaming)
                .map(|budget| Counted::new(ctx, budget)),
            state_bytes: 0,
            states: HashMap::new(),
            fired: Vec::new(),
            changes: Vec::new(),
            event_timers: BTreeSet::new(),
            processing_timers: BTreeSet::new(),
            processing_holds: BTreeSet::new(),
            expiries: BTreeSet::new(),
            output: None,
        }))
    }
}

/// A key's elements: encoded values back to back, with their timestamps.
#[derive(Clone, Default)]
struct Elements {
    values: Vec<u8>,
    timestamps: Vec<Timestamp>,
}

/// One key in one window with something to do: elements to process, timers due, or its
/// window expiring.
struct KeyWork {
    /// The window's encoding followed by the key's: the key of its state.
    id: Box<[u8]>,
    key: Box<[u8]>,
    window: Window,
    elements: Elements,
    /// The window has expired: every timer fires, then the state is dropped.
    expiring: bool,
}

/// Runs the DoFn over each key's elements as they arrive, and its timers as the
/// watermark and the clock pass them; keeps each key's state between bundles.
struct StatefulRead<D: StatefulDoFn> {
    ctx: UnitContext,
    prototype: Arc<Mutex<D>>,
    dofn: Option<D>,
    windowing: Windowing,
    watermark: Timestamp,
    now_ms: i64,
    group: GroupingKey,
    /// Received since the last firing.
    pending: KeyedTable<Elements>,
    /// Bytes of `pending`.
    pending_bytes: u64,
    /// Batch under a memory budget: the input until it ends, in memory or spilled.
    spill: Option<Spill>,
    /// Streaming under a memory budget: the bytes of `pending` and `states`, counted.
    counted: Option<Counted>,
    /// Bytes of `states`.
    state_bytes: u64,
    /// Committed state per key and window, by id.
    states: HashMap<Box<[u8]>, KeyState>,
    /// What the current firing has to do.
    fired: Vec<KeyWork>,
    /// The state each key of the current bundle ends with (`None`: dropped), applied when
    /// the bundle commits.
    changes: Vec<(Box<[u8]>, Window, Option<KeyState>)>,
    /// Event-time timers by time (entries may be stale: they only prompt a look).
    event_timers: BTreeSet<(Timestamp, Box<[u8]>)>,
    /// Processing-time timers by time in ms (possibly stale).
    processing_timers: BTreeSet<(i64, Box<[u8]>)>,
    /// States with processing-time timers set, by the end of their window: what those
    /// timers emit is stamped there, so the output watermark waits for them.
    processing_holds: BTreeSet<(Timestamp, Box<[u8]>)>,
    /// States by the time their window expires.
    expiries: BTreeSet<(Timestamp, Box<[u8]>)>,
    output: Option<Port<D::Out>>,
}

/// Splits a state id into its window and encoded key.
fn split_id(id: &[u8]) -> (Window, Box<[u8]>) {
    let mut rest = id;
    let window = Window::decode_from(&mut rest).unwrap_or(Window::Global);
    (window, Box::from(rest))
}

impl<D: StatefulDoFn> StatefulRead<D> {
    fn run_key(&mut self, index: usize) -> UnitResult {
        let now_us = self.now_ms.saturating_mul(1000);
        let ctx = &self.ctx;
        let work = &self.fired[index];
        let window = work.window;
        let key = decode_exact::<D::Key>(&work.key).map_err(|e| ctx.error(e))?;
        let dofn = self
            .dofn
            .as_mut()
            .ok_or_else(|| ctx.error("internal error: no DoFn instance"))?;
        let output = attached(&mut self.output, ctx)?;
        let mut key_state = self.states.get(&work.id).cloned().unwrap_or_default();
        let mut input = &work.elements.values[..];
        let run = |result: Result<(), BoxError>, out: &mut Context<'_, D::Out>| -> UnitResult {
            if let Some(e) = out.take_downstream() {
                return Err(e);
            }
            result.map_err(|e| ctx.error(e).with_element(sluice_core::render_element(&key)))
        };
        for timestamp in &work.elements.timestamps {
            let value = D::Value::decode_from(&mut input).map_err(|e| ctx.error(e))?;
            let mut out = Context::for_output(
                output,
                *timestamp,
                window,
                &ctx.transform,
                &ctx.counters.user,
                &ctx.side_inputs,
            );
            let mut state = State {
                key: &mut key_state,
                now_us,
            };
            let result = sluice_core::error::current_step::in_step(ctx.step, || {
                dofn.process(&key, value, &mut state, &mut out)
            });
            run(result, &mut out)?;
        }
        // Timers that are due, in time order, event time first; all of them when the
        // window expires.
        let watermark = self.watermark;
        let expiring = work.expiring;
        let due = |domain: TimeDomain, at: Timestamp| {
            expiring
                || match domain {
                    TimeDomain::EventTime => at < watermark,
                    TimeDomain::ProcessingTime => at.0 <= now_us,
                }
        };
        let mut fired = 0;
        while let Some((name, (domain, at))) = key_state
            .timers
            .iter()
            .filter(|(_, (domain, at))| due(*domain, *at))
            .min_by_key(|(_, (domain, at))| (*domain, *at))
            .map(|(n, t)| (n.clone(), *t))
        {
            key_state.timers.remove(&name);
            fired += 1;
            if fired > MAX_FIRINGS_PER_KEY {
                return Err(ctx.error(format!(
                    "timer '{name}' of key {} keeps being set again: {MAX_FIRINGS_PER_KEY} firings",
                    sluice_core::render_element(&key)
                )));
            }
            let at_output = match domain {
                TimeDomain::EventTime => at,
                TimeDomain::ProcessingTime => window.max_timestamp(),
            };
            let timer = FiredTimer {
                name,
                domain,
                timestamp: at,
            };
            let mut out = Context::for_output(
                output,
                at_output,
                window,
                &ctx.transform,
                &ctx.counters.user,
                &ctx.side_inputs,
            );
            let mut state = State {
                key: &mut key_state,
                now_us,
            };
            let result = sluice_core::error::current_step::in_step(ctx.step, || {
                dofn.on_timer(&key, &timer, &mut state, &mut out)
            });
            run(result, &mut out)?;
        }
        // An expired window's state is dropped.
        let after = (!expiring).then_some(key_state);
        self.changes.push((work.id.clone(), window, after));
        Ok(())
    }

    /// Takes a record into `pending`.
    fn add_pending(&mut self, record: &ShuffleRecord<'_>) {
        self.group.set_encoded(record.window, record.key);
        let elements =
            self.pending
                .get_or_insert_with(&self.group, key_hash(record.key), Elements::default);
        elements.values.extend_from_slice(record.value);
        elements.timestamps.push(record.timestamp);
        self.pending_bytes += (record.key.len() + record.value.len() + 16) as u64;
    }

    /// Streaming under a budget: counts what is held — input waiting for the next firing
    /// and the keys' committed state, which cannot spill.
    fn count(&mut self) {
        if let Some(counted) = self.counted.as_mut() {
            let transform = &self.ctx.transform;
            counted.set(self.pending_bytes + self.state_bytes, |bytes, limit| {
                format!(
                    "transform '{transform}': this stateful DoFn's state and waiting input hold {}, more than the memory budget of {} (--max_memory) allows, and the state of a streaming job cannot spill; the job goes on over budget. Raise --max_memory, keep less state per key, or clear it sooner (shorter windows or allowed lateness, or a timer that clears it)",
                    sluice_core::spill::human_bytes(bytes),
                    sluice_core::spill::human_bytes(limit)
                )
            });
        }
    }

    /// What is ready of the input received since the last firing, the timers due and the
    /// windows expiring: work for `emit`, by key; its count.
    fn fire_pending(&mut self) -> usize {
        let mut work: Vec<KeyWork> = Vec::new();
        let mut index: HashMap<Box<[u8]>, usize> = HashMap::new();
        self.pending_bytes = 0;
        for (key, window, elements) in self.pending.drain() {
            let mut id = Vec::with_capacity(key.len() + 17);
            window.encode_to(&mut id);
            id.extend_from_slice(&key);
            let id: Box<[u8]> = id.into();
            index.insert(id.clone(), work.len());
            work.push(KeyWork {
                id,
                key,
                window,
                elements,
                expiring: false,
            });
        }
        let mut prompt =
            |id: Box<[u8]>, expiring: bool, work: &mut Vec<KeyWork>| match index.get(&id) {
                Some(&i) => work[i].expiring |= expiring,
                None => {
                    let (window, key) = split_id(&id);
                    index.insert(id.clone(), work.len());
                    work.push(KeyWork {
                        id,
                        key,
                        window,
                        elements: Elements::default(),
                        expiring,
                    });
                }
            };
        while self
            .event_timers
            .first()
            .is_some_and(|(at, _)| *at < self.watermark)
        {
            if let Some((_, id)) = self.event_timers.pop_first()
                && self.states.contains_key(&id)
            {
                prompt(id, false, &mut work);
            }
        }
        while self
            .processing_timers
            .first()
            .is_some_and(|(at, _)| *at <= self.now_ms)
        {
            if let Some((_, id)) = self.processing_timers.pop_first()
                && self.states.contains_key(&id)
            {
                prompt(id, false, &mut work);
            }
        }
        while self
            .expiries
            .first()
            .is_some_and(|(at, _)| *at < self.watermark)
        {
            if let Some((_, id)) = self.expiries.pop_first()
                && self.states.contains_key(&id)
            {
                prompt(id, true, &mut work);
            }
        }
        // Elements of a window that expires with them are processed, then the window's
        // timers fire, then its state goes.
        for w in &mut work {
            if self.windowing.gc_time(w.window) < self.watermark {
                w.expiring = true;
            }
        }
        self.fired = work;
        self.count();
        self.fired.len()
    }
}

impl<D: StatefulDoFn> ShuffleReader for StatefulRead<D> {
    fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        self.watermark = self.watermark.max(watermark);
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        if self.windowing.gc_time(record.window) < self.watermark {
            // Too late: the window's state is gone.
            self.ctx
                .counters
                .late_dropped
                .set(self.ctx.counters.late_dropped.get() + 1);
            return Ok(());
        }
        if let Some(spill) = self.spill.as_mut().filter(|s| s.taking()) {
            // A batch stateful DoFn sees each key's input once it is complete: until then
            // it is held under the budget, or spilled.
            return spill.hold(&self.ctx, &record);
        }
        self.add_pending(&record);
        self.count();
        Ok(())
    }

    fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        self.fired.clear();
        if !self.ctx.streaming && self.watermark < Timestamp::MAX {
            // A batch job processes each key's input once it is complete.
            return Ok(0);
        }
        if self.spill.is_none() {
            return Ok(self.fire_pending());
        }
        // Batch under a budget: all the input at once when it fits, else a partition of
        // keys at a time, each key's state dropped with its window before the next.
        loop {
            let spill = self.spill.as_mut().expect("spilling");
            let Some(chunks) = spill.next(
                &self.ctx,
                "a stateful DoFn processes each key's input together in memory",
            )?
            else {
                return Ok(self.fire_pending());
            };
            for chunk in chunks {
                for record in sluice_core::shuffle::records(&chunk) {
                    let record = record.map_err(|e| self.ctx.error(e))?;
                    self.add_pending(&record);
                }
            }
            let fired = self.fire_pending();
            if fired > 0 {
                return Ok(fired);
            }
        }
    }

    fn hold(&self) -> Timestamp {
        if self.spill.as_ref().is_some_and(Spill::pending) {
            // Keys not yet processed hold the watermark back.
            return Timestamp::MIN;
        }
        let event = self
            .event_timers
            .first()
            .map_or(Timestamp::MAX, |(at, _)| *at);
        let processing = self
            .processing_holds
            .first()
            .map_or(Timestamp::MAX, |(at, _)| *at);
        event.min(processing)
    }

    fn next_wakeup_ms(&self) -> Option<i64> {
        self.processing_timers.first().map(|(at, _)| *at)
    }

    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast()?);
        Ok(())
    }

    fn detach(&mut self) {
        self.output = None;
    }

    fn start_bundle(&mut self) -> UnitResult {
        self.changes.clear();
        if self.dofn.is_none() {
            self.dofn = Some(instantiate(&self.prototype, &self.ctx)?);
        }
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }

    fn emit(&mut self, range: Range<usize>) -> UnitResult {
        for index in range {
            self.ctx
                .position
                .store(index as u64, std::sync::atomic::Ordering::Relaxed);
            self.run_key(index)?;
        }
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }

    fn commit(&mut self) {
        let counting = self.counted.is_some();
        for (id, window, after) in std::mem::take(&mut self.changes) {
            if counting {
                let before = self
                    .states
                    .get(&id)
                    .map_or(0, |state| id.len() as u64 + state.size());
                let now = after
                    .as_ref()
                    .map_or(0, |state| id.len() as u64 + state.size());
                self.state_bytes = self.state_bytes - before.min(self.state_bytes) + now;
            }
            let hold = (window.max_timestamp(), id.clone());
            let processing = after.as_ref().is_some_and(|state| {
                state
                    .timers
                    .values()
                    .any(|(domain, _)| *domain == TimeDomain::ProcessingTime)
            });
            if processing {
                self.processing_holds.insert(hold);
            } else {
                self.processing_holds.remove(&hold);
            }
            match after {
                Some(state) => {
                    for (domain, at) in state.timers.values() {
                        match domain {
                            TimeDomain::EventTime => {
                                self.event_timers.insert((*at, id.clone()));
                            }
                            TimeDomain::ProcessingTime => {
                                self.processing_timers
                                    .insert((at.0.div_euclid(1000), id.clone()));
                            }
                        }
                    }
                    if !self.states.contains_key(&id) {
                        self.expiries
                            .insert((self.windowing.gc_time(window), id.clone()));
                    }
                    self.states.insert(id, state);
                }
                None => {
                    self.states.remove(&id);
                }
            }
        }
        self.count();
    }

    fn abort(&mut self) {
        // What the failed bundle did to state is forgotten; the retry starts from the
        // committed state with a fresh instance.
        self.changes.clear();
        if let Some(mut dofn) = self.dofn.take() {
            crate::dofn::teardown_guarded(&self.ctx.transform, || dofn.teardown());
            self.ctx
                .counters
                .teardowns
                .set(self.ctx.counters.teardowns.get() + 1);
        }
    }
}

impl<D: StatefulDoFn> Drop for StatefulRead<D> {
    fn drop(&mut self) {
        if let Some(mut dofn) = self.dofn.take() {
            crate::dofn::teardown_guarded(&self.ctx.transform, || dofn.teardown());
            self.ctx
                .counters
                .teardowns
                .set(self.ctx.counters.teardowns.get() + 1);
        }
    }
}
