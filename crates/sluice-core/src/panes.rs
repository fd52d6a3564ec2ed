//! The buffered state of a grouping: what each key holds in each window, and when it
//! fires as a pane.
//!
//! [`Panes`] is shared by every grouping reader (GroupByKey, the merging half of a lifted
//! Combine). It keeps a *slot* per key and window with the contents buffered since the
//! last firing, the trigger's state and the pane bookkeeping; it merges windows for
//! merging window functions (sessions), drops and counts data for expired windows, and —
//! when the reader asks — returns the panes ready to fire.
//!
//! In a batch job ([`Panes::new`] with `eager` false) triggers are not evaluated as data
//! arrives: every window fires once, when the watermark reaches the end of time. In a
//! streaming job triggers are evaluated on each element, when the watermark passes a
//! window's end, and when a processing-time deadline passes.
//!
//! ```
//! use std::sync::Arc;
//! use sluice_core::panes::Panes;
//! use sluice_core::trigger::{Trigger, Windowing};
//! use sluice_core::windowing::FixedWindows;
//! use sluice_core::{PaneTiming, Timestamp, key_hash};
//!
//! let mut windowing = Windowing::new(Arc::new(FixedWindows::of_millis(10)));
//! windowing.trigger = Trigger::after_watermark().with_early_firings(Trigger::after_count(2));
//! let mut panes: Panes<u64> = Panes::new(windowing.clone(), true);
//! let window = windowing.window_fn.assign(Timestamp::from_millis(3))[0];
//! let mut count_one = |panes: &mut Panes<u64>| {
//!     panes.accept(b"k", key_hash(b"k"), window, Timestamp::from_millis(3), |n: &mut Option<u64>| -> Result<(), ()> {
//!         *n.get_or_insert(0) += 1;
//!         Ok(())
//!     }, |a, b| *a += b).unwrap();
//! };
//! count_one(&mut panes);
//! count_one(&mut panes);
//! let early = panes.fire(|a, b| *a += b);
//! count_one(&mut panes);
//! assert_eq!(early.len(), 1);
//! assert_eq!((early[0].contents, early[0].pane.timing), (Some(2), PaneTiming::Early));
//! panes.advance(Timestamp::from_millis(10), 0);
//! let on_time = panes.fire(|a, b| *a += b);
//! assert_eq!((on_time[0].contents, on_time[0].pane.timing), (Some(1), PaneTiming::OnTime));
//! ```

use std::collections::BTreeSet;

use hashbrown::HashMap;

use crate::shuffle::{GroupingKey, KeyedTable};
use crate::time::Timestamp;
use crate::trigger::{AccumulationMode, NodeState, TriggerContext, TriggerMachine, Windowing};
use crate::window::{PaneInfo, PaneTiming, Window};

/// A pane ready to emit.
#[derive(Debug)]
pub struct Firing<C> {
    /// The encoded key.
    pub key: Box<[u8]>,
    /// The window.
    pub window: Window,
    /// Which firing of the window this is.
    pub pane: PaneInfo,
    /// What the pane holds; `None` for an empty pane (an on-time pane after early panes
    /// took everything).
    pub contents: Option<C>,
    /// The pane's output timestamp: the end of its window, or — with the earliest or
    /// latest timestamp combiner — the combined output time of the elements since the
    /// previous firing that were not already behind the watermark.
    pub timestamp: Timestamp,
}

/// One key in one window.
#[derive(Debug)]
struct Slot<C> {
    window: Window,
    /// Buffered since the last firing (or since the start, when accumulating).
    contents: Option<C>,
    /// Elements since the last firing.
    elements: u64,
    pane_index: u32,
    non_speculative: u32,
    on_time_done: bool,
    /// The trigger finished: the window takes no more data.
    closed: bool,
    trigger: Vec<NodeState>,
    /// The combined output time of the elements since the last firing, where the
    /// windowing tracks it: the watermark is held there.
    held: Option<Timestamp>,
}

impl<C> Slot<C> {
    fn new(window: Window, trigger: Vec<NodeState>) -> Slot<C> {
        Slot {
            window,
            contents: None,
            elements: 0,
            pane_index: 0,
            non_speculative: 0,
            on_time_done: false,
            closed: false,
            trigger,
            held: None,
        }
    }
}

/// Every key and window a grouping reader holds; see the module documentation.
pub struct Panes<C> {
    windowing: Windowing,
    machine: TriggerMachine,
    merging: bool,
    eager: bool,
    watermark: Timestamp,
    now_ms: i64,
    dropped: u64,
    group: GroupingKey,
    // Windows that do not merge: a table of keys per window.
    windows: HashMap<Window, KeyedTable<Slot<C>>>,
    /// Windows whose end the watermark has not passed, by their last timestamp.
    eow: BTreeSet<(Timestamp, Window)>,
    /// Windows by expiry time.
    gc: BTreeSet<(Timestamp, Window)>,
    /// Windows with a slot whose trigger may fire.
    dirty: BTreeSet<Window>,
    /// Windows with a processing-time deadline (possibly stale).
    deadlines: BTreeSet<(i64, Window)>,
    // Merging windows: each key's windows.
    keys: HashMap<Box<[u8]>, Vec<Slot<C>>>,
    key_eow: BTreeSet<(Timestamp, Box<[u8]>)>,
    key_gc: BTreeSet<(Timestamp, Box<[u8]>)>,
    key_dirty: BTreeSet<Box<[u8]>>,
    key_deadlines: BTreeSet<(i64, Box<[u8]>)>,
    // Output-time holds (earliest and latest timestamp combiners): per window, or per
    // key for merging windows, the least time a slot holds; indexed by time.
    window_held: HashMap<Window, Timestamp>,
    held_windows: BTreeSet<(Timestamp, Window)>,
    key_held: HashMap<Box<[u8]>, Timestamp>,
    held_keys: BTreeSet<(Timestamp, Box<[u8]>)>,
}

impl<C: Clone> Panes<C> {
    /// Panes grouped by `windowing`; `eager` evaluates triggers as data arrives
    /// (streaming), otherwise every window fires once when it expires (batch).
    pub fn new(windowing: Windowing, eager: bool) -> Panes<C> {
        Panes {
            machine: TriggerMachine::new(&windowing.trigger),
            merging: windowing.is_merging(),
            windowing,
            eager,
            watermark: Timestamp::MIN,
            now_ms: 0,
            dropped: 0,
            group: GroupingKey::default(),
            windows: HashMap::new(),
            eow: BTreeSet::new(),
            gc: BTreeSet::new(),
            dirty: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            keys: HashMap::new(),
            key_eow: BTreeSet::new(),
            key_gc: BTreeSet::new(),
            key_dirty: BTreeSet::new(),
            key_deadlines: BTreeSet::new(),
            window_held: HashMap::new(),
            held_windows: BTreeSet::new(),
            key_held: HashMap::new(),
            held_keys: BTreeSet::new(),
        }
    }

    /// Sets the hold of `window` (non-merging windows) to `held`, or removes it.
    fn set_window_hold(&mut self, window: Window, held: Option<Timestamp>) {
        if let Some(old) = self.window_held.remove(&window) {
            self.held_windows.remove(&(old, window));
        }
        if let Some(t) = held {
            self.window_held.insert(window, t);
            self.held_windows.insert((t, window));
        }
    }

    /// Sets the hold of `key` (merging windows) to the least its slots hold.
    fn update_key_hold(&mut self, key: &[u8]) {
        let held = self
            .keys
            .get(key)
            .and_then(|slots| slots.iter().filter_map(|s| s.held).min());
        if let Some(old) = self.key_held.remove(key) {
            self.held_keys.remove(&(old, Box::from(key)));
        }
        if let Some(t) = held {
            self.key_held.insert(Box::from(key), t);
            self.held_keys.insert((t, Box::from(key)));
        }
    }

    /// The output time an element adds to its slot's hold: none when the windowing does
    /// not track output times, or when the element is already behind the output
    /// watermark or its window's end is behind the input watermark (it cannot be held
    /// back any more; its pane is stamped at the end of the window if nothing else
    /// holds it), as in Beam.
    fn hold_for(&self, window: Window, timestamp: Timestamp) -> Option<Timestamp> {
        if !self.windowing.tracks_output_time() {
            return None;
        }
        let output_time = self.windowing.output_time(window, timestamp);
        let output_watermark = self.watermark.min(self.hold());
        let too_late = output_time < output_watermark || window.max_timestamp() < self.watermark;
        (!too_late).then_some(output_time)
    }

    /// The input watermark and the processing time (ms) moved.
    pub fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        self.watermark = self.watermark.max(watermark);
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// The input watermark the panes last saw.
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Elements dropped since the last call: their window had expired or its trigger had
    /// finished.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    fn expired(&self, window: Window) -> bool {
        self.windowing.gc_time(window) < self.watermark
    }

    fn ctx(&self, window: Window) -> TriggerContext {
        TriggerContext {
            window,
            watermark: self.watermark,
            now_ms: self.now_ms,
        }
    }

    fn new_slot(&self, window: Window) -> Slot<C> {
        let trigger = if self.eager {
            self.machine.initial_state()
        } else {
            Vec::new()
        };
        Slot::new(window, trigger)
    }

    /// Adds one element of `key` (encoded; `hash` is its [`crate::key_hash`]) in `window`,
    /// at event time `timestamp`: `add` folds it into the slot's contents. For merging windows, `merge` folds the
    /// contents of windows that merge. Returns whether the element was taken (false: its
    /// window had expired or closed, and it was counted as dropped).
    #[allow(clippy::too_many_arguments)]
    pub fn accept<E>(
        &mut self,
        key: &[u8],
        hash: u64,
        window: Window,
        timestamp: Timestamp,
        add: impl FnOnce(&mut Option<C>) -> Result<(), E>,
        merge: impl FnMut(&mut C, C),
    ) -> Result<bool, E> {
        if self.expired(window) {
            self.dropped += 1;
            return Ok(false);
        }
        let held = self.hold_for(window, timestamp);
        self.accept_unchecked(key, hash, window, held, add, merge)
    }

    #[allow(clippy::too_many_arguments)]
    fn accept_unchecked<E>(
        &mut self,
        key: &[u8],
        hash: u64,
        window: Window,
        held: Option<Timestamp>,
        add: impl FnOnce(&mut Option<C>) -> Result<(), E>,
        merge: impl FnMut(&mut C, C),
    ) -> Result<bool, E> {
        if self.merging {
            return self.accept_merging(key, window, held, add, merge);
        }
        let ctx = self.ctx(window);
        let table = match self.windows.get_mut(&window) {
            Some(table) => table,
            None => {
                self.eow.insert((window.max_timestamp(), window));
                self.gc.insert((self.windowing.gc_time(window), window));
                self.windows.entry(window).or_default()
            }
        };
        self.group.set_encoded(window, key);
        let (machine, eager) = (&self.machine, self.eager);
        let slot = table.get_or_insert_with(&self.group, hash, || {
            Slot::new(
                window,
                if eager {
                    machine.initial_state()
                } else {
                    Vec::new()
                },
            )
        });
        if slot.closed {
            self.dropped += 1;
            return Ok(false);
        }
        add(&mut slot.contents)?;
        slot.elements += 1;
        let slot_held = held.map(|t| {
            let combined = slot
                .held
                .map_or(t, |h| self.windowing.timestamp_combiner.combine(h, t));
            slot.held = Some(combined);
            combined
        });
        if self.eager {
            self.machine.on_element(&mut slot.trigger, &ctx);
            if self.machine.should_fire(&slot.trigger, &ctx) {
                self.dirty.insert(window);
            }
            // A deadline already passed needs no wakeup: the element's evaluation above
            // saw it.
            if let Some(deadline) = self.machine.next_deadline(&slot.trigger)
                && deadline > self.now_ms
            {
                self.deadlines.insert((deadline, window));
            }
        }
        if let Some(slot_held) = slot_held {
            // A window's hold is the least its slots hold (kept low until it fires).
            let window_held = self
                .window_held
                .get(&window)
                .map_or(slot_held, |w| (*w).min(slot_held));
            self.set_window_hold(window, Some(window_held));
        }
        Ok(true)
    }

    fn accept_merging<E>(
        &mut self,
        key: &[u8],
        window: Window,
        held: Option<Timestamp>,
        add: impl FnOnce(&mut Option<C>) -> Result<(), E>,
        merge: impl FnMut(&mut C, C),
    ) -> Result<bool, E> {
        let taken = self.accept_merging_inner(key, window, held, add, merge)?;
        if taken && held.is_some() {
            self.update_key_hold(key);
        }
        Ok(taken)
    }

    fn accept_merging_inner<E>(
        &mut self,
        key: &[u8],
        window: Window,
        held: Option<Timestamp>,
        add: impl FnOnce(&mut Option<C>) -> Result<(), E>,
        merge: impl FnMut(&mut C, C),
    ) -> Result<bool, E> {
        let combiner = self.windowing.timestamp_combiner;
        let hold = |slot: &mut Slot<C>| {
            if let Some(t) = held {
                slot.held = Some(slot.held.map_or(t, |h| combiner.combine(h, t)));
            }
        };
        if !self.eager {
            // Batch: windows merge when they fire. Until then each key keeps its windows
            // as they came, except that a window merging with the key's latest one joins
            // it at once (as windows merge bundle by bundle in Beam), which keeps keys
            // whose data arrives in order to one window.
            let slots = self.keys.entry(Box::from(key)).or_default();
            if let Some(last) = slots.last_mut() {
                let joined = if last.window == window {
                    Some(window)
                } else {
                    self.windowing
                        .window_fn
                        .merge(&[last.window, window])
                        .into_iter()
                        .find(|(_, members)| members.len() == 2)
                        .map(|(merged, _)| merged)
                };
                if let Some(merged) = joined {
                    last.window = merged;
                    add(&mut last.contents)?;
                    last.elements += 1;
                    hold(last);
                    return Ok(true);
                }
            }
            let mut slot = Slot::new(window, Vec::new());
            add(&mut slot.contents)?;
            slot.elements = 1;
            hold(&mut slot);
            slots.push(slot);
            return Ok(true);
        }
        let fresh = self.new_slot(window);
        let slots = self.keys.entry(Box::from(key)).or_default();
        let target = match slots.iter().position(|s| s.window == window) {
            Some(i) => i,
            None => {
                slots.push(fresh);
                slots.len() - 1
            }
        };
        // Merge the key's windows, the new one among them.
        let Some(target) = merge_slots(
            &self.machine,
            self.eager,
            &self.windowing,
            merge,
            slots,
            Some(target),
        ) else {
            return Ok(false);
        };
        let Some(slot) = slots.get_mut(target) else {
            return Ok(false);
        };
        let slot_window = slot.window;
        if slot.closed {
            self.dropped += 1;
            return Ok(false);
        }
        add(&mut slot.contents)?;
        slot.elements += 1;
        hold(slot);
        let ctx = TriggerContext {
            window: slot_window,
            watermark: self.watermark,
            now_ms: self.now_ms,
        };
        let boxed: Box<[u8]> = Box::from(key);
        self.machine.on_element(&mut slot.trigger, &ctx);
        if self.machine.should_fire(&slot.trigger, &ctx) {
            self.key_dirty.insert(boxed.clone());
        }
        if let Some(deadline) = self.machine.next_deadline(&slot.trigger)
            && deadline > self.now_ms
        {
            self.key_deadlines.insert((deadline, boxed.clone()));
        }
        for s in slots.iter() {
            self.key_eow
                .insert((s.window.max_timestamp(), boxed.clone()));
            self.key_gc
                .insert((self.windowing.gc_time(s.window), boxed.clone()));
        }
        Ok(true)
    }

    /// Makes sure `key` has a pane in `window` that fires even if no element arrives (the
    /// result of a global combine over an empty input), with contents `init()`.
    pub fn ensure(&mut self, key: &[u8], hash: u64, window: Window, init: impl FnOnce() -> C) {
        let mut init = Some(init);
        // Even at the end of time, when the window has just expired: it fires now.
        let _ = self.accept_unchecked::<()>(
            key,
            hash,
            window,
            None,
            |contents| {
                if contents.is_none()
                    && let Some(init) = init.take()
                {
                    *contents = Some(init());
                }
                Ok(())
            },
            |_, _| {},
        );
    }

    /// The panes ready to fire, given the watermark and processing time last passed to
    /// [`Panes::advance`]; expired windows fire their last pane and are dropped. `merge`
    /// folds the contents of windows that merge (as in [`Panes::accept`]).
    pub fn fire(&mut self, merge: impl FnMut(&mut C, C)) -> Vec<Firing<C>> {
        let mut out = Vec::new();
        if self.merging {
            self.fire_merging(&mut out, merge);
        } else {
            self.fire_windows(&mut out);
        }
        out
    }

    fn fire_windows(&mut self, out: &mut Vec<Firing<C>>) {
        let wm = self.watermark;
        let mut due: BTreeSet<(Timestamp, Window)> = BTreeSet::new();
        while let Some(&(t, w)) = self.eow.first() {
            if t >= wm {
                break;
            }
            self.eow.pop_first();
            due.insert((t, w));
        }
        while let Some(&(t, w)) = self.gc.first() {
            if t >= wm {
                break;
            }
            self.gc.pop_first();
            due.insert((w.max_timestamp(), w));
        }
        for w in std::mem::take(&mut self.dirty) {
            due.insert((w.max_timestamp(), w));
        }
        while let Some(&(d, w)) = self.deadlines.first() {
            if d > self.now_ms {
                break;
            }
            self.deadlines.pop_first();
            due.insert((w.max_timestamp(), w));
        }
        for (_, window) in due {
            let expired = self.expired(window);
            let ctx = self.ctx(window);
            let Some(table) = self.windows.get_mut(&window) else {
                continue;
            };
            let mut deadlines = Vec::new();
            if !self.eager {
                // Batch: every key of the window fires now.
                out.reserve(table.len());
            }
            let mut still_held: Option<Timestamp> = None;
            table.retain(|key, _, slot| {
                evaluate(
                    &self.machine,
                    self.eager,
                    &self.windowing,
                    &ctx,
                    expired,
                    key,
                    slot,
                    out,
                );
                // Deadlines already passed did not fire the trigger (another part of it
                // holds it back); the next element re-evaluates it.
                if let Some(d) = (self.eager && !slot.closed)
                    .then(|| self.machine.next_deadline(&slot.trigger))
                    .flatten()
                    .filter(|d| *d > self.now_ms)
                {
                    deadlines.push(d);
                }
                if !expired && let Some(t) = slot.held {
                    still_held = Some(still_held.map_or(t, |h| h.min(t)));
                }
                !expired
            });
            for d in deadlines {
                self.deadlines.insert((d, window));
            }
            if self.window_held.contains_key(&window) {
                self.set_window_hold(window, still_held);
            }
            if expired {
                self.windows.remove(&window);
            }
        }
    }

    fn fire_merging(&mut self, out: &mut Vec<Firing<C>>, merge: impl FnMut(&mut C, C)) {
        let wm = self.watermark;
        if !self.eager {
            self.fire_merging_batch(out, merge);
            return;
        }
        let mut due: BTreeSet<Box<[u8]>> = std::mem::take(&mut self.key_dirty);
        while let Some((t, _)) = self.key_eow.first() {
            if *t >= wm {
                break;
            }
            if let Some((_, k)) = self.key_eow.pop_first() {
                due.insert(k);
            }
        }
        while let Some((t, _)) = self.key_gc.first() {
            if *t >= wm {
                break;
            }
            if let Some((_, k)) = self.key_gc.pop_first() {
                due.insert(k);
            }
        }
        while let Some((d, _)) = self.key_deadlines.first() {
            if *d > self.now_ms {
                break;
            }
            if let Some((_, k)) = self.key_deadlines.pop_first() {
                due.insert(k);
            }
        }
        for key in due {
            let Some(slots) = self.keys.get_mut(&key) else {
                continue;
            };
            let mut kept = Vec::with_capacity(slots.len());
            for mut slot in slots.drain(..) {
                let window = slot.window;
                let expired = self.windowing.gc_time(window) < wm;
                let ctx = TriggerContext {
                    window,
                    watermark: wm,
                    now_ms: self.now_ms,
                };
                evaluate(
                    &self.machine,
                    self.eager,
                    &self.windowing,
                    &ctx,
                    expired,
                    &key,
                    &mut slot,
                    out,
                );
                if self.eager
                    && !slot.closed
                    && let Some(d) = self.machine.next_deadline(&slot.trigger)
                    && d > self.now_ms
                {
                    self.key_deadlines.insert((d, key.clone()));
                }
                if !expired {
                    kept.push(slot);
                }
            }
            if kept.is_empty() {
                self.keys.remove(&key);
            } else {
                *slots = kept;
            }
            if self.key_held.contains_key(&key) {
                self.update_key_hold(&key);
            }
        }
    }

    /// Batch: once the watermark reaches the end of time, each key's windows merge and
    /// fire together.
    fn fire_merging_batch(&mut self, out: &mut Vec<Firing<C>>, mut merge: impl FnMut(&mut C, C)) {
        if self.watermark < Timestamp::MAX {
            return;
        }
        self.key_held.clear();
        self.held_keys.clear();
        // About one firing per key: reserved at once rather than grown by doubling.
        out.reserve(self.keys.len());
        for (key, mut slots) in std::mem::take(&mut self.keys) {
            // The same window more than once: one slot.
            slots.sort_by_key(|s| s.window);
            let mut folded: Vec<Slot<C>> = Vec::with_capacity(slots.len());
            for slot in slots {
                match folded.last_mut() {
                    Some(last) if last.window == slot.window => {
                        last.contents = match (last.contents.take(), slot.contents) {
                            (Some(mut a), Some(b)) => {
                                merge(&mut a, b);
                                Some(a)
                            }
                            (a, b) => a.or(b),
                        };
                        last.elements += slot.elements;
                        last.held = match (last.held, slot.held) {
                            (Some(a), Some(b)) => {
                                Some(self.windowing.timestamp_combiner.combine(a, b))
                            }
                            (a, b) => a.or(b),
                        };
                    }
                    _ => folded.push(slot),
                }
            }
            merge_slots(
                &self.machine,
                false,
                &self.windowing,
                &mut merge,
                &mut folded,
                None,
            );
            for mut slot in folded {
                let ctx = TriggerContext {
                    window: slot.window,
                    watermark: self.watermark,
                    now_ms: self.now_ms,
                };
                evaluate(
                    &self.machine,
                    false,
                    &self.windowing,
                    &ctx,
                    true,
                    &key,
                    &mut slot,
                    out,
                );
            }
        }
    }

    /// The earliest timestamp the panes may still emit a pane at: the watermark hold of
    /// the buffered data ([`Timestamp::MAX`] when nothing is buffered).
    pub fn hold(&self) -> Timestamp {
        let windows = self.eow.first().map_or(Timestamp::MAX, |(t, _)| *t);
        let keys = self.key_eow.first().map_or(Timestamp::MAX, |(t, _)| *t);
        let held_windows = self
            .held_windows
            .first()
            .map_or(Timestamp::MAX, |(t, _)| *t);
        let held_keys = self.held_keys.first().map_or(Timestamp::MAX, |(t, _)| *t);
        windows.min(keys).min(held_windows).min(held_keys)
    }

    /// The next processing time (ms) at which a pane may fire, if any waits for one.
    pub fn next_deadline(&self) -> Option<i64> {
        let windows = self.deadlines.first().map(|(d, _)| *d);
        let keys = self.key_deadlines.first().map(|(d, _)| *d);
        match (windows, keys) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.keys.is_empty()
    }
}

/// Merges a key's slots as the window function merges their windows; returns where the
/// slot at `target` ended up.
fn merge_slots<C>(
    machine: &TriggerMachine,
    eager: bool,
    windowing: &Windowing,
    mut merge: impl FnMut(&mut C, C),
    slots: &mut Vec<Slot<C>>,
    target: Option<usize>,
) -> Option<usize> {
    let windows: Vec<Window> = slots.iter().map(|s| s.window).collect();
    let groups = windowing.window_fn.merge(&windows);
    if groups.is_empty() {
        return target;
    }
    let mut taken: Vec<Option<Slot<C>>> = slots.drain(..).map(Some).collect();
    let mut merged = Vec::new();
    let mut merged_target = None;
    for (merged_window, members) in groups {
        let mut parts: Vec<Slot<C>> = members
            .iter()
            .filter_map(|i| taken.get_mut(*i)?.take())
            .collect();
        if parts.is_empty() {
            continue;
        }
        if target.is_some_and(|t| members.contains(&t)) {
            merged_target = Some(merged.len());
        }
        // As in Beam, the merged window's panes are counted afresh — unless it is one of
        // the windows that merged (one held all the others), which keeps its own count.
        let kept = parts
            .iter()
            .find(|p| p.window == merged_window)
            .map(|p| (p.pane_index, p.non_speculative, p.on_time_done));
        let mut result = parts.remove(0);
        result.window = merged_window;
        (
            result.pane_index,
            result.non_speculative,
            result.on_time_done,
        ) = kept.unwrap_or((0, 0, false));
        for part in parts {
            result.contents = match (result.contents.take(), part.contents) {
                (Some(mut a), Some(b)) => {
                    merge(&mut a, b);
                    Some(a)
                }
                (a, b) => a.or(b),
            };
            result.elements += part.elements;
            result.closed &= part.closed;
            result.held = match (result.held, part.held) {
                (Some(a), Some(b)) => Some(windowing.timestamp_combiner.combine(a, b)),
                (a, b) => a.or(b),
            };
            if eager {
                machine.merge(&mut result.trigger, &[&part.trigger]);
            }
        }
        merged.push(result);
    }
    let mut rest_target = None;
    let mut rest = Vec::new();
    for (i, s) in taken.into_iter().enumerate() {
        if let Some(s) = s {
            if target == Some(i) {
                rest_target = Some(rest.len());
            }
            rest.push(s);
        }
    }
    let new_target = match (merged_target, rest_target) {
        (Some(m), _) => Some(m),
        (None, Some(r)) => Some(merged.len() + r),
        (None, None) => None,
    };
    merged.extend(rest);
    *slots = merged;
    new_target
}

/// Fires `slot` if its trigger says so or its window expired, appending the pane to `out`.
#[allow(clippy::too_many_arguments)]
fn evaluate<C: Clone>(
    machine: &TriggerMachine,
    eager: bool,
    windowing: &Windowing,
    ctx: &TriggerContext,
    expired: bool,
    key: &[u8],
    slot: &mut Slot<C>,
    out: &mut Vec<Firing<C>>,
) {
    if slot.closed {
        return;
    }
    let should = eager && machine.should_fire(&slot.trigger, ctx);
    if !should && !expired {
        return;
    }
    let past_end = ctx.watermark > ctx.window.max_timestamp();
    let timing = if !past_end {
        PaneTiming::Early
    } else if !slot.on_time_done {
        PaneTiming::OnTime
    } else {
        PaneTiming::Late
    };
    if should {
        machine.on_fire(&mut slot.trigger, ctx);
        slot.closed = machine.is_finished(&slot.trigger);
    }
    // An on-time pane fires even when empty (Beam's default on-time behaviour); other
    // panes only with data.
    let emit = slot.elements > 0 || (timing == PaneTiming::OnTime && should);
    if !emit {
        return;
    }
    let lateness = windowing.allowed_lateness_us > 0;
    let contents = match windowing.accumulation {
        AccumulationMode::Discarding => slot.contents.take(),
        AccumulationMode::Accumulating => slot.contents.clone(),
    };
    // The pane is stamped where its elements held it; what it held is released.
    let timestamp = match slot.held.take() {
        Some(t) if windowing.tracks_output_time() => t,
        _ => ctx.window.max_timestamp(),
    };
    out.push(Firing {
        key: Box::from(key),
        window: ctx.window,
        pane: PaneInfo {
            timing,
            index: slot.pane_index,
            non_speculative_index: if timing == PaneTiming::Early {
                -1
            } else {
                slot.non_speculative as i32
            },
            is_first: slot.pane_index == 0,
            // As in Beam: in streaming, the on-time pane of a window that allows late
            // data is not its last even when the watermark passes both at once (the
            // end-of-window firing comes first; the expiry finds nothing new to emit).
            is_last: slot.closed
                || (expired && !(eager && lateness && timing == PaneTiming::OnTime)),
        },
        contents,
        timestamp,
    });
    slot.pane_index += 1;
    if timing != PaneTiming::Early {
        slot.non_speculative += 1;
    }
    if timing == PaneTiming::OnTime {
        slot.on_time_done = true;
    }
    slot.elements = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::key_hash;
    use crate::trigger::{TimestampCombiner, Trigger};
    use crate::windowing::{FixedWindows, GlobalWindows, Sessions, WindowFn};
    use std::sync::Arc;

    fn ms(t: i64) -> Timestamp {
        Timestamp::from_millis(t)
    }

    fn add(panes: &mut Panes<Vec<i64>>, key: &str, window: Window, v: i64) -> bool {
        panes
            .accept::<()>(
                key.as_bytes(),
                key_hash(key.as_bytes()),
                window,
                window.max_timestamp(),
                |c| {
                    c.get_or_insert_with(Vec::new).push(v);
                    Ok(())
                },
                |a, b| a.extend(b),
            )
            .unwrap()
    }

    fn summary(firings: &[Firing<Vec<i64>>]) -> Vec<(String, Vec<i64>, PaneTiming, u32, bool)> {
        let mut s: Vec<_> = firings
            .iter()
            .map(|f| {
                let mut c = f.contents.clone().unwrap_or_default();
                c.sort();
                (
                    String::from_utf8(f.key.to_vec()).unwrap(),
                    c,
                    f.pane.timing,
                    f.pane.index,
                    f.pane.is_last,
                )
            })
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    #[test]
    fn batch_fires_each_window_once_at_the_end() {
        let fixed = FixedWindows::of_millis(10);
        let mut panes = Panes::new(Windowing::new(Arc::new(fixed)), false);
        add(&mut panes, "a", fixed.assign(ms(1))[0], 1);
        add(&mut panes, "a", fixed.assign(ms(2))[0], 2);
        add(&mut panes, "b", fixed.assign(ms(15))[0], 3);
        assert!(panes.fire(|a: &mut Vec<i64>, b| a.extend(b)).is_empty());
        assert_eq!(panes.hold(), ms(10).min(Timestamp(ms(10).0 - 1)));
        panes.advance(Timestamp::MAX, 0);
        let fired = panes.fire(|a: &mut Vec<i64>, b| a.extend(b));
        assert_eq!(
            summary(&fired),
            [
                ("a".into(), vec![1, 2], PaneTiming::OnTime, 0, true),
                ("b".into(), vec![3], PaneTiming::OnTime, 0, true)
            ]
        );
        assert!(panes.is_empty());
        assert_eq!(panes.hold(), Timestamp::MAX);
    }

    #[test]
    fn late_data_fires_late_panes_then_is_dropped_after_the_allowed_lateness() {
        let fixed = FixedWindows::of_millis(10);
        let mut windowing = Windowing::new(Arc::new(fixed));
        windowing.allowed_lateness_us = 5_000;
        let w = fixed.assign(ms(1))[0];
        let mut panes = Panes::new(windowing, true);
        add(&mut panes, "a", w, 1);
        panes.advance(ms(10), 0);
        assert_eq!(
            summary(&panes.fire(|a: &mut Vec<i64>, b| a.extend(b))),
            [("a".into(), vec![1], PaneTiming::OnTime, 0, false)]
        );
        assert!(
            add(&mut panes, "a", w, 2),
            "late but within the allowed lateness"
        );
        assert_eq!(
            summary(&panes.fire(|a: &mut Vec<i64>, b| a.extend(b))),
            [("a".into(), vec![2], PaneTiming::Late, 1, false)]
        );
        panes.advance(ms(16), 0);
        assert!(panes.fire(|a: &mut Vec<i64>, b| a.extend(b)).is_empty());
        assert!(!add(&mut panes, "a", w, 3), "expired");
        assert_eq!(panes.take_dropped(), 1);
    }

    #[test]
    fn accumulating_panes_keep_what_fired() {
        let mut windowing = Windowing::new(Arc::new(GlobalWindows));
        windowing.trigger = Trigger::repeatedly(Trigger::after_count(2));
        windowing.accumulation = AccumulationMode::Accumulating;
        let mut panes = Panes::new(windowing, true);
        for v in 1..=4 {
            add(&mut panes, "a", Window::Global, v);
        }
        // Both firings are due by the time the reader asks: one pane with all four.
        assert_eq!(
            summary(&panes.fire(|a: &mut Vec<i64>, b| a.extend(b))),
            [("a".into(), vec![1, 2, 3, 4], PaneTiming::Early, 0, false)]
        );
        add(&mut panes, "a", Window::Global, 5);
        add(&mut panes, "a", Window::Global, 6);
        assert_eq!(
            summary(&panes.fire(|a: &mut Vec<i64>, b| a.extend(b))),
            [(
                "a".into(),
                vec![1, 2, 3, 4, 5, 6],
                PaneTiming::Early,
                1,
                false
            )]
        );
        add(&mut panes, "a", Window::Global, 7);
        panes.advance(Timestamp::MAX, 0);
        let last = panes.fire(|a: &mut Vec<i64>, b| a.extend(b));
        assert_eq!(
            summary(&last),
            [(
                "a".into(),
                vec![1, 2, 3, 4, 5, 6, 7],
                PaneTiming::OnTime,
                2,
                true
            )]
        );
    }

    #[test]
    fn sessions_merge_per_key() {
        let sessions = Sessions::with_gap_millis(10);
        let mut panes = Panes::new(Windowing::new(Arc::new(sessions)), false);
        for (key, t) in [("a", 0), ("a", 5), ("a", 30), ("b", 8), ("a", 12)] {
            add(&mut panes, key, sessions.assign(ms(t))[0], t);
        }
        panes.advance(Timestamp::MAX, 0);
        let fired = panes.fire(|a: &mut Vec<i64>, b| a.extend(b));
        let mut got: Vec<(String, Window, Vec<i64>)> = fired
            .into_iter()
            .map(|f| {
                let mut c = f.contents.unwrap();
                c.sort();
                (String::from_utf8(f.key.to_vec()).unwrap(), f.window, c)
            })
            .collect();
        got.sort_by_key(|(k, w, _)| (k.clone(), *w));
        let iv = |s: i64, e: i64| Window::Interval {
            start: ms(s),
            end: ms(e),
        };
        assert_eq!(
            got,
            [
                ("a".into(), iv(0, 22), vec![0, 5, 12]),
                ("a".into(), iv(30, 40), vec![30]),
                ("b".into(), iv(8, 18), vec![8]),
            ]
        );
    }

    #[test]
    fn a_closed_window_drops_its_data() {
        let mut windowing = Windowing::new(Arc::new(GlobalWindows));
        windowing.trigger = Trigger::after_count(2);
        let mut panes = Panes::new(windowing, true);
        add(&mut panes, "a", Window::Global, 1);
        add(&mut panes, "a", Window::Global, 2);
        let fired = panes.fire(|a: &mut Vec<i64>, b| a.extend(b));
        assert!(fired[0].pane.is_last);
        assert!(!add(&mut panes, "a", Window::Global, 3));
        assert_eq!(panes.take_dropped(), 1);
    }

    #[test]
    fn processing_time_deadlines_wake_the_panes() {
        let mut windowing = Windowing::new(Arc::new(GlobalWindows));
        windowing.trigger = Trigger::repeatedly(Trigger::after_processing_time(
            std::time::Duration::from_millis(100),
        ));
        let mut panes = Panes::new(windowing, true);
        panes.advance(Timestamp::MIN, 1_000);
        add(&mut panes, "a", Window::Global, 1);
        assert_eq!(panes.next_deadline(), Some(1_100));
        assert!(panes.fire(|a: &mut Vec<i64>, b| a.extend(b)).is_empty());
        panes.advance(Timestamp::MIN, 1_100);
        assert_eq!(
            summary(&panes.fire(|a: &mut Vec<i64>, b| a.extend(b))),
            [("a".into(), vec![1], PaneTiming::Early, 0, false)]
        );
        assert_eq!(panes.next_deadline(), None);
    }

    /// (value, timestamp) of each firing, sorted.
    fn stamped(firings: &[Firing<Vec<i64>>]) -> Vec<(Vec<i64>, i64)> {
        let mut s: Vec<_> = firings
            .iter()
            .map(|f| {
                let mut c = f.contents.clone().unwrap_or_default();
                c.sort();
                (c, f.timestamp.as_millis())
            })
            .collect();
        s.sort();
        s
    }

    fn add_at(panes: &mut Panes<Vec<i64>>, window: Window, t: i64) {
        panes
            .accept::<()>(
                b"k",
                key_hash(b"k"),
                window,
                ms(t),
                |c| {
                    c.get_or_insert_with(Vec::new).push(t);
                    Ok(())
                },
                |a, b| a.extend(b),
            )
            .unwrap();
    }

    #[test]
    fn timestamp_combiners_stamp_panes_and_hold_the_watermark_there() {
        for (combiner, stamp, hold) in [
            (TimestampCombiner::EndOfWindow, 9, 9),
            (TimestampCombiner::Earliest, 3, 3),
            (TimestampCombiner::Latest, 7, 3),
        ] {
            let mut windowing = Windowing::new(Arc::new(FixedWindows::of_millis(10)));
            windowing.timestamp_combiner = combiner;
            windowing.allowed_lateness_us = 100_000;
            let mut panes: Panes<Vec<i64>> = Panes::new(windowing, true);
            let window = FixedWindows::of_millis(10).assign(ms(3))[0];
            add_at(&mut panes, window, 3);
            add_at(&mut panes, window, 7);
            // LATEST holds at the least output time seen until the pane fires; the pane
            // carries the latest.
            assert_eq!(panes.hold().as_millis(), hold, "{combiner:?}");
            panes.advance(ms(20), 0);
            assert_eq!(
                stamped(&panes.fire(|a, b| a.extend(b))),
                [(vec![3, 7], stamp)],
                "{combiner:?}"
            );
            assert_eq!(panes.hold(), Timestamp::MAX, "{combiner:?}: released");
            // Late data cannot hold the watermark: its pane is stamped at the window's end.
            add_at(&mut panes, window, 5);
            assert_eq!(panes.hold(), Timestamp::MAX, "{combiner:?}");
            assert_eq!(
                stamped(&panes.fire(|a, b| a.extend(b))),
                [(vec![5], 9)],
                "{combiner:?}"
            );
        }
    }

    #[test]
    fn merged_sessions_combine_their_output_times() {
        let mut windowing = Windowing::new(Arc::new(Sessions::with_gap_millis(5)));
        windowing.timestamp_combiner = TimestampCombiner::Earliest;
        for eager in [false, true] {
            let mut panes: Panes<Vec<i64>> = Panes::new(windowing.clone(), eager);
            let sessions = Sessions::with_gap_millis(5);
            add_at(&mut panes, sessions.assign(ms(4))[0], 4);
            add_at(&mut panes, sessions.assign(ms(2))[0], 2);
            if eager {
                assert_eq!(panes.hold().as_millis(), 2);
            }
            panes.advance(Timestamp::MAX, 0);
            assert_eq!(
                stamped(&panes.fire(|a, b| a.extend(b))),
                [(vec![2, 4], 2)],
                "eager {eager}"
            );
        }
    }
}
