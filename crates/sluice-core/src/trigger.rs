//! Triggers: when a window's grouped results are emitted, and how often.
//!
//! A grouping (GroupByKey, a per-key Combine) buffers each key's elements per window and
//! emits them as *panes*. The trigger decides when a pane fires: by default once, when
//! the watermark passes the end of the window, and again for late data; or early, on
//! element counts or after processing time; or in sequences and combinations of those.
//! After each firing the pane's contents are discarded or kept for the next
//! ([`AccumulationMode`]). When the watermark passes the end of the window plus the
//! allowed lateness, the window expires: what is still buffered is emitted as its last
//! pane, and later data for it is dropped and counted.
//!
//! Batch jobs evaluate triggers once, when their bounded input is complete: every window
//! emits one pane. Streaming jobs evaluate them as elements, the watermark and processing
//! time advance.
//!
//! ```
//! use sluice_core::trigger::{AccumulationMode, Trigger};
//!
//! // Speculative results every 100 elements, the on-time result, then one per late element.
//! let trigger = Trigger::after_watermark()
//!     .with_early_firings(Trigger::after_count(100))
//!     .with_late_firings(Trigger::after_count(1));
//! assert!(!trigger.may_finish());
//! assert!(Trigger::after_count(10).may_finish());
//! assert!(!Trigger::repeatedly(Trigger::after_count(10)).may_finish());
//! ```

use std::fmt;
use std::sync::Arc;

use crate::time::Timestamp;
use crate::window::Window;
use crate::windowing::{GlobalWindows, WindowFn};

/// When a window's panes fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Fires when the watermark passes the end of the window, then for each late element;
    /// never finishes (Beam's `DefaultTrigger`).
    Default,
    /// Fires when the watermark passes the end of the window; before that whenever the
    /// early trigger fires, after it whenever the late trigger fires (both repeat). Without
    /// late firings it finishes with its on-time pane.
    AfterWatermark {
        /// Speculative firings before the end of the window.
        early: Option<Box<Trigger>>,
        /// Firings for late data.
        late: Option<Box<Trigger>>,
    },
    /// Fires once the pane holds at least this many elements, then finishes.
    AfterCount(u64),
    /// Fires this long (ms of processing time) after the pane's first element, then
    /// finishes.
    AfterProcessingTime {
        /// Milliseconds after the first element of the pane.
        delay_ms: i64,
    },
    /// Fires as soon as the pane has an element, at the next processing-time step: what a
    /// processing-time trigger becomes after a first grouping.
    AfterSynchronizedProcessingTime,
    /// Fires whenever its sub-trigger fires, which is reset each time; never finishes.
    Repeatedly(Box<Trigger>),
    /// Runs its sub-triggers one after another, each until it finishes.
    AfterEach(Vec<Trigger>),
    /// Fires when any sub-trigger fires, then finishes (Beam's `AfterFirst`).
    AfterAny(Vec<Trigger>),
    /// Fires when every sub-trigger has fired, then finishes.
    AfterAll(Vec<Trigger>),
    /// Fires as the first trigger does, until the second fires: then it fires a last time
    /// and finishes.
    OrFinally(Box<Trigger>, Box<Trigger>),
    /// Never fires; the window's contents are emitted when it expires.
    Never,
}

impl Trigger {
    /// `AfterWatermark.pastEndOfWindow()`.
    pub fn after_watermark() -> Trigger {
        Trigger::AfterWatermark {
            early: None,
            late: None,
        }
    }

    /// Adds early firings to an [`Trigger::AfterWatermark`] (other triggers are returned
    /// unchanged).
    pub fn with_early_firings(self, early: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { late, .. } => Trigger::AfterWatermark {
                early: Some(Box::new(early)),
                late,
            },
            other => other,
        }
    }

    /// Adds late firings to an [`Trigger::AfterWatermark`] (other triggers are returned
    /// unchanged).
    pub fn with_late_firings(self, late: Trigger) -> Trigger {
        match self {
            Trigger::AfterWatermark { early, .. } => Trigger::AfterWatermark {
                early,
                late: Some(Box::new(late)),
            },
            other => other,
        }
    }

    /// `AfterPane.elementCountAtLeast(n)`.
    pub fn after_count(n: u64) -> Trigger {
        Trigger::AfterCount(n.max(1))
    }

    /// `AfterProcessingTime.pastFirstElementInPane().plusDelayOf(delay)`.
    pub fn after_processing_time(delay: std::time::Duration) -> Trigger {
        Trigger::AfterProcessingTime {
            delay_ms: delay.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    /// `Repeatedly.forever(trigger)`.
    pub fn repeatedly(trigger: Trigger) -> Trigger {
        Trigger::Repeatedly(Box::new(trigger))
    }

    /// `AfterEach.inOrder(triggers)`.
    pub fn after_each(triggers: Vec<Trigger>) -> Trigger {
        Trigger::AfterEach(triggers)
    }

    /// `AfterFirst.of(triggers)`.
    pub fn after_any(triggers: Vec<Trigger>) -> Trigger {
        Trigger::AfterAny(triggers)
    }

    /// `AfterAll.of(triggers)`.
    pub fn after_all(triggers: Vec<Trigger>) -> Trigger {
        Trigger::AfterAll(triggers)
    }

    /// `trigger.orFinally(until)`.
    pub fn or_finally(self, until: Trigger) -> Trigger {
        Trigger::OrFinally(Box::new(self), Box::new(until))
    }

    /// `Never.ever()`.
    pub fn never() -> Trigger {
        Trigger::Never
    }

    /// Whether the trigger can finish before its window expires. Data that arrives for a
    /// window after its trigger finished is dropped, so a grouping refuses such triggers
    /// unless the pipeline allows unsafe triggers.
    pub fn may_finish(&self) -> bool {
        match self {
            Trigger::Default | Trigger::Never | Trigger::Repeatedly(_) => false,
            Trigger::AfterWatermark { late, .. } => late.is_none(),
            Trigger::AfterCount(_)
            | Trigger::AfterProcessingTime { .. }
            | Trigger::AfterSynchronizedProcessingTime
            | Trigger::AfterAny(_)
            | Trigger::AfterAll(_)
            | Trigger::OrFinally(..) => true,
            Trigger::AfterEach(ts) => ts.last().is_none_or(Trigger::may_finish),
        }
    }

    /// The trigger of a grouping's output, for groupings further down (Beam's continuation
    /// trigger): counts become counts of one, processing-time delays fire at the next step,
    /// sequences repeat any of their parts.
    pub fn continuation(&self) -> Trigger {
        match self {
            Trigger::Default => Trigger::Default,
            Trigger::Never => Trigger::Never,
            Trigger::AfterWatermark { early, late } => Trigger::AfterWatermark {
                early: early.as_ref().map(|t| Box::new(t.continuation())),
                late: late.as_ref().map(|t| Box::new(t.continuation())),
            },
            Trigger::AfterCount(_) => Trigger::AfterCount(1),
            Trigger::AfterProcessingTime { .. } | Trigger::AfterSynchronizedProcessingTime => {
                Trigger::AfterSynchronizedProcessingTime
            }
            Trigger::Repeatedly(t) => Trigger::Repeatedly(Box::new(t.continuation())),
            Trigger::AfterEach(ts) => Trigger::Repeatedly(Box::new(Trigger::AfterAny(
                ts.iter().map(Trigger::continuation).collect(),
            ))),
            Trigger::AfterAny(ts) => {
                Trigger::AfterAny(ts.iter().map(Trigger::continuation).collect())
            }
            Trigger::AfterAll(ts) => {
                Trigger::AfterAll(ts.iter().map(Trigger::continuation).collect())
            }
            Trigger::OrFinally(a, b) => {
                Trigger::OrFinally(Box::new(a.continuation()), Box::new(b.continuation()))
            }
        }
    }

    /// Whether the trigger reads processing time.
    pub fn uses_processing_time(&self) -> bool {
        match self {
            Trigger::AfterProcessingTime { .. } | Trigger::AfterSynchronizedProcessingTime => true,
            Trigger::Default | Trigger::Never | Trigger::AfterCount(_) => false,
            Trigger::AfterWatermark { early, late } => {
                early.as_ref().is_some_and(|t| t.uses_processing_time())
                    || late.as_ref().is_some_and(|t| t.uses_processing_time())
            }
            Trigger::Repeatedly(t) => t.uses_processing_time(),
            Trigger::OrFinally(a, b) => a.uses_processing_time() || b.uses_processing_time(),
            Trigger::AfterEach(ts) | Trigger::AfterAny(ts) | Trigger::AfterAll(ts) => {
                ts.iter().any(Trigger::uses_processing_time)
            }
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, ts: &[Trigger]| {
            write!(f, "{name}(")?;
            for (i, t) in ts.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{t}")?;
            }
            f.write_str(")")
        };
        match self {
            Trigger::Default => f.write_str("Default"),
            Trigger::Never => f.write_str("Never"),
            Trigger::AfterWatermark { early, late } => {
                f.write_str("AfterWatermark")?;
                if let Some(e) = early {
                    write!(f, ".withEarlyFirings({e})")?;
                }
                if let Some(l) = late {
                    write!(f, ".withLateFirings({l})")?;
                }
                Ok(())
            }
            Trigger::AfterCount(n) => write!(f, "AfterCount({n})"),
            Trigger::AfterProcessingTime { delay_ms } => {
                write!(f, "AfterProcessingTime({delay_ms}ms)")
            }
            Trigger::AfterSynchronizedProcessingTime => {
                f.write_str("AfterSynchronizedProcessingTime")
            }
            Trigger::Repeatedly(t) => write!(f, "Repeatedly({t})"),
            Trigger::AfterEach(ts) => list(f, "AfterEach", ts),
            Trigger::AfterAny(ts) => list(f, "AfterAny", ts),
            Trigger::AfterAll(ts) => list(f, "AfterAll", ts),
            Trigger::OrFinally(a, b) => write!(f, "{a}.orFinally({b})"),
        }
    }
}

/// What happens to a pane's contents after it fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccumulationMode {
    /// Each pane holds only what arrived since the previous firing.
    #[default]
    Discarding,
    /// Each pane holds everything of its window so far.
    Accumulating,
}

/// How a grouping's output timestamp follows from its inputs' (Beam's
/// `TimestampCombiner`). A pane is held back — its grouping holds the watermark — at the
/// timestamp it will carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampCombiner {
    /// The end of the window (its last timestamp): the default.
    #[default]
    EndOfWindow,
    /// The earliest output time of the pane's elements.
    Earliest,
    /// The latest output time of the pane's elements.
    Latest,
}

impl TimestampCombiner {
    /// The combination of two output times.
    pub fn combine(self, a: Timestamp, b: Timestamp) -> Timestamp {
        match self {
            TimestampCombiner::Earliest => a.min(b),
            TimestampCombiner::Latest | TimestampCombiner::EndOfWindow => a.max(b),
        }
    }
}

/// How a PCollection is windowed and when its groupings emit: window function, trigger,
/// accumulation mode, allowed lateness and timestamp combiner (Beam's
/// `WindowingStrategy`).
#[derive(Clone, Debug)]
pub struct Windowing {
    /// Assigns and merges windows.
    pub window_fn: Arc<dyn WindowFn>,
    /// When panes fire.
    pub trigger: Trigger,
    /// Whether panes keep what earlier panes emitted.
    pub accumulation: AccumulationMode,
    /// How long after the end of a window (µs of event time) late data is still accepted.
    pub allowed_lateness_us: i64,
    /// The windows were merged by an earlier grouping: they are taken as they are.
    pub already_merged: bool,
    /// How a grouping's output timestamp is chosen.
    pub timestamp_combiner: TimestampCombiner,
}

impl Default for Windowing {
    fn default() -> Self {
        Windowing::new(Arc::new(GlobalWindows))
    }
}

impl Windowing {
    /// `window_fn` with the default trigger, discarding, and no allowed lateness.
    pub fn new(window_fn: Arc<dyn WindowFn>) -> Windowing {
        Windowing {
            window_fn,
            trigger: Trigger::Default,
            accumulation: AccumulationMode::Discarding,
            allowed_lateness_us: 0,
            already_merged: false,
            timestamp_combiner: TimestampCombiner::EndOfWindow,
        }
    }

    /// Whether groupings track their elements' output times (every combiner but the
    /// default end of window).
    pub fn tracks_output_time(&self) -> bool {
        self.timestamp_combiner != TimestampCombiner::EndOfWindow
    }

    /// The output time of an element at `timestamp` in `window`: the window function's
    /// [`get_transformed_output_time`](crate::windowing::WindowFn::get_transformed_output_time)
    /// (with the default combiner, the end of the window).
    pub fn output_time(&self, window: Window, timestamp: Timestamp) -> Timestamp {
        if self.tracks_output_time() {
            self.window_fn
                .get_transformed_output_time(window, timestamp)
        } else {
            window.max_timestamp()
        }
    }

    /// Whether windows still merge at the next grouping.
    pub fn is_merging(&self) -> bool {
        self.window_fn.is_merging() && !self.already_merged
    }

    /// The windowing of a grouping's output: the same windows (already merged), the
    /// continuation of the trigger.
    pub fn after_grouping(&self) -> Windowing {
        Windowing {
            window_fn: self.window_fn.clone(),
            trigger: self.trigger.continuation(),
            accumulation: self.accumulation,
            allowed_lateness_us: self.allowed_lateness_us,
            already_merged: self.already_merged || self.window_fn.is_merging(),
            timestamp_combiner: self.timestamp_combiner,
        }
    }

    /// The last moment (event time) a window accepts data: its end plus the allowed
    /// lateness. Past it, the window is expired.
    pub fn gc_time(&self, window: Window) -> Timestamp {
        let max = window.max_timestamp();
        if max >= Timestamp::END_OF_GLOBAL_WINDOW {
            return max;
        }
        Timestamp(
            max.0
                .saturating_add(self.allowed_lateness_us)
                .min(Timestamp::END_OF_GLOBAL_WINDOW.0),
        )
    }

    /// A one-line description for plans (`FixedWindows(10000ms), AfterCount(5), accumulating`).
    pub fn describe(&self) -> String {
        let mut s = self.window_fn.describe();
        if self.trigger != Trigger::Default {
            s.push_str(&format!(", trigger {}", self.trigger));
        }
        if self.accumulation == AccumulationMode::Accumulating {
            s.push_str(", accumulating");
        }
        if self.allowed_lateness_us > 0 {
            s.push_str(&format!(
                ", allowed lateness {}ms",
                self.allowed_lateness_us / 1000
            ));
        }
        s
    }
}

/// The state of one node of a trigger, per pane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    finished: bool,
    /// Elements counted (AfterCount).
    count: u64,
    /// When a processing-time trigger fires (ms since the epoch).
    deadline_ms: Option<i64>,
    /// AfterWatermark: the on-time pane has fired.
    past_end: bool,
    /// AfterEach: the sub-trigger currently running.
    current: usize,
}

/// A trigger laid out for evaluation: the nodes of its tree, depth first.
#[derive(Clone, Debug)]
pub struct TriggerMachine {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    children: Vec<usize>,
    /// One past the last node of this node's subtree.
    end: usize,
}

#[derive(Clone, Debug)]
enum Kind {
    Default,
    AfterWatermark { early: bool, late: bool },
    AfterCount(u64),
    AfterProcessingTime(i64),
    Synchronized,
    Repeatedly,
    AfterEach,
    AfterAny,
    AfterAll,
    OrFinally,
    Never,
}

/// What a trigger evaluation sees: the window, the input watermark and processing time.
#[derive(Clone, Copy, Debug)]
pub struct TriggerContext {
    /// The window of the pane.
    pub window: Window,
    /// The grouping's input watermark.
    pub watermark: Timestamp,
    /// Processing time, ms since the epoch.
    pub now_ms: i64,
}

impl TriggerContext {
    fn past_end(&self) -> bool {
        self.watermark > self.window.max_timestamp()
    }
}

impl TriggerMachine {
    /// Lays out `trigger`.
    pub fn new(trigger: &Trigger) -> TriggerMachine {
        let mut machine = TriggerMachine { nodes: Vec::new() };
        machine.add(trigger);
        machine
    }

    fn add(&mut self, trigger: &Trigger) -> usize {
        let index = self.nodes.len();
        let (kind, children): (Kind, Vec<&Trigger>) = match trigger {
            Trigger::Default => (Kind::Default, vec![]),
            Trigger::Never => (Kind::Never, vec![]),
            Trigger::AfterWatermark { early, late } => {
                let mut children = Vec::new();
                // Early first, then late: child 0 is early when present.
                if let Some(e) = early {
                    children.push(&**e);
                }
                if let Some(l) = late {
                    children.push(&**l);
                }
                (
                    Kind::AfterWatermark {
                        early: early.is_some(),
                        late: late.is_some(),
                    },
                    children,
                )
            }
            Trigger::AfterCount(n) => (Kind::AfterCount(*n), vec![]),
            Trigger::AfterProcessingTime { delay_ms } => {
                (Kind::AfterProcessingTime(*delay_ms), vec![])
            }
            Trigger::AfterSynchronizedProcessingTime => (Kind::Synchronized, vec![]),
            Trigger::Repeatedly(t) => (Kind::Repeatedly, vec![&**t]),
            Trigger::AfterEach(ts) => (Kind::AfterEach, ts.iter().collect()),
            Trigger::AfterAny(ts) => (Kind::AfterAny, ts.iter().collect()),
            Trigger::AfterAll(ts) => (Kind::AfterAll, ts.iter().collect()),
            Trigger::OrFinally(a, b) => (Kind::OrFinally, vec![&**a, &**b]),
        };
        self.nodes.push(Node {
            kind,
            children: Vec::new(),
            end: index + 1,
        });
        let ids: Vec<usize> = children.into_iter().map(|c| self.add(c)).collect();
        self.nodes[index].children = ids;
        self.nodes[index].end = self.nodes.len();
        index
    }

    /// Fresh state for a new pane.
    pub fn initial_state(&self) -> Vec<NodeState> {
        vec![NodeState::default(); self.nodes.len()]
    }

    /// Whether the whole trigger has finished (the window is closed).
    pub fn is_finished(&self, state: &[NodeState]) -> bool {
        state[0].finished
    }

    /// An element arrived in the pane.
    pub fn on_element(&self, state: &mut [NodeState], ctx: &TriggerContext) {
        self.element(0, state, ctx);
    }

    fn element(&self, i: usize, state: &mut [NodeState], ctx: &TriggerContext) {
        if state[i].finished {
            return;
        }
        let node = &self.nodes[i];
        match node.kind {
            Kind::Default | Kind::Never => {}
            Kind::AfterCount(_) => state[i].count += 1,
            Kind::AfterProcessingTime(delay) => {
                if state[i].deadline_ms.is_none() {
                    state[i].deadline_ms = Some(ctx.now_ms.saturating_add(delay));
                }
            }
            Kind::Synchronized => {
                if state[i].deadline_ms.is_none() {
                    state[i].deadline_ms = Some(ctx.now_ms);
                }
            }
            Kind::AfterWatermark { early, late } => {
                if !state[i].past_end {
                    if early {
                        self.element(node.children[0], state, ctx);
                    }
                } else if late {
                    self.element(*node.children.last().unwrap_or(&i), state, ctx);
                }
            }
            Kind::Repeatedly => self.element(node.children[0], state, ctx),
            Kind::AfterEach => {
                if let Some(&c) = node.children.get(state[i].current) {
                    self.element(c, state, ctx);
                }
            }
            Kind::AfterAny | Kind::AfterAll | Kind::OrFinally => {
                for &c in &node.children {
                    self.element(c, state, ctx);
                }
            }
        }
    }

    /// Whether the pane should fire now.
    pub fn should_fire(&self, state: &[NodeState], ctx: &TriggerContext) -> bool {
        self.fires(0, state, ctx)
    }

    fn fires(&self, i: usize, state: &[NodeState], ctx: &TriggerContext) -> bool {
        if state[i].finished {
            return false;
        }
        let node = &self.nodes[i];
        match node.kind {
            Kind::Default => ctx.past_end(),
            Kind::Never => false,
            Kind::AfterCount(n) => state[i].count >= n,
            Kind::AfterProcessingTime(_) | Kind::Synchronized => {
                state[i].deadline_ms.is_some_and(|d| ctx.now_ms >= d)
            }
            Kind::AfterWatermark { early, late } => {
                if !state[i].past_end {
                    ctx.past_end() || (early && self.fires(node.children[0], state, ctx))
                } else {
                    late && self.fires(*node.children.last().unwrap_or(&i), state, ctx)
                }
            }
            Kind::Repeatedly => self.fires(node.children[0], state, ctx),
            Kind::AfterEach => node
                .children
                .get(state[i].current)
                .is_some_and(|&c| self.fires(c, state, ctx)),
            Kind::AfterAny => node.children.iter().any(|&c| self.fires(c, state, ctx)),
            Kind::AfterAll => {
                let open: Vec<usize> = node
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| !state[c].finished)
                    .collect();
                !open.is_empty() && open.iter().all(|&c| self.fires(c, state, ctx))
            }
            Kind::OrFinally => node.children.iter().any(|&c| self.fires(c, state, ctx)),
        }
    }

    /// The pane fired: advances the trigger's state (finishing or resetting nodes).
    pub fn on_fire(&self, state: &mut [NodeState], ctx: &TriggerContext) {
        self.fire(0, state, ctx);
    }

    fn fire(&self, i: usize, state: &mut [NodeState], ctx: &TriggerContext) {
        let node = &self.nodes[i];
        match node.kind {
            Kind::Default | Kind::Never => {}
            Kind::AfterCount(_) | Kind::AfterProcessingTime(_) | Kind::Synchronized => {
                state[i].finished = true;
            }
            Kind::AfterWatermark { early, late } => {
                if !state[i].past_end {
                    if ctx.past_end() {
                        state[i].past_end = true;
                        if early {
                            self.reset(node.children[0], state);
                        }
                        if !late {
                            state[i].finished = true;
                        }
                    } else if early {
                        let c = node.children[0];
                        self.fire(c, state, ctx);
                        if state[c].finished {
                            self.reset(c, state);
                        }
                    }
                } else if late {
                    let c = *node.children.last().unwrap_or(&i);
                    self.fire(c, state, ctx);
                    if state[c].finished {
                        self.reset(c, state);
                    }
                }
            }
            Kind::Repeatedly => {
                let c = node.children[0];
                self.fire(c, state, ctx);
                if state[c].finished {
                    self.reset(c, state);
                }
            }
            Kind::AfterEach => {
                if let Some(&c) = node.children.get(state[i].current) {
                    self.fire(c, state, ctx);
                    if state[c].finished {
                        state[i].current += 1;
                        if state[i].current >= node.children.len() {
                            state[i].finished = true;
                        }
                    }
                } else {
                    state[i].finished = true;
                }
            }
            Kind::AfterAny | Kind::AfterAll => {
                for &c in &node.children {
                    if self.fires(c, state, ctx) {
                        self.fire(c, state, ctx);
                    }
                }
                state[i].finished = true;
            }
            Kind::OrFinally => {
                let (main, until) = (node.children[0], node.children[1]);
                if self.fires(until, state, ctx) {
                    self.fire(until, state, ctx);
                    state[i].finished = true;
                } else {
                    self.fire(main, state, ctx);
                    if state[main].finished {
                        state[i].finished = true;
                    }
                }
            }
        }
    }

    fn reset(&self, i: usize, state: &mut [NodeState]) {
        for s in &mut state[i..self.nodes[i].end] {
            *s = NodeState::default();
        }
    }

    /// The panes of `others` merged into `state` (merging windows): counts add up, the
    /// earliest deadline wins, a node is finished only if it was in every pane.
    pub fn merge(&self, state: &mut [NodeState], others: &[&[NodeState]]) {
        for (i, s) in state.iter_mut().enumerate() {
            for o in others {
                let o = &o[i];
                s.count += o.count;
                s.deadline_ms = match (s.deadline_ms, o.deadline_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                s.finished &= o.finished;
                s.past_end |= o.past_end;
                s.current = s.current.min(o.current);
            }
        }
    }

    /// The earliest processing time (ms) at which the pane may fire, if a processing-time
    /// trigger is waiting.
    pub fn next_deadline(&self, state: &[NodeState]) -> Option<i64> {
        state
            .iter()
            .filter(|s| !s.finished)
            .filter_map(|s| s.deadline_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window::Interval {
            start: Timestamp::from_millis(0),
            end: Timestamp::from_millis(10),
        }
    }

    fn at(watermark_ms: i64, now_ms: i64) -> TriggerContext {
        TriggerContext {
            window: window(),
            watermark: Timestamp::from_millis(watermark_ms),
            now_ms,
        }
    }

    /// Feeds `elements` elements at `ctx` and reports whether the trigger fires, firing it.
    fn step(m: &TriggerMachine, s: &mut [NodeState], elements: u64, ctx: TriggerContext) -> bool {
        for _ in 0..elements {
            m.on_element(s, &ctx);
        }
        let fires = m.should_fire(s, &ctx);
        if fires {
            m.on_fire(s, &ctx);
        }
        fires
    }

    #[test]
    fn after_count_fires_once_and_finishes() {
        let m = TriggerMachine::new(&Trigger::after_count(3));
        let mut s = m.initial_state();
        assert!(!step(&m, &mut s, 2, at(0, 0)));
        assert!(step(&m, &mut s, 1, at(0, 0)));
        assert!(m.is_finished(&s));
        assert!(!step(&m, &mut s, 5, at(0, 0)));
    }

    #[test]
    fn repeatedly_resets_its_subtrigger() {
        let m = TriggerMachine::new(&Trigger::repeatedly(Trigger::after_count(2)));
        let mut s = m.initial_state();
        let fired: Vec<bool> = (0..6).map(|_| step(&m, &mut s, 1, at(0, 0))).collect();
        assert_eq!(fired, [false, true, false, true, false, true]);
        assert!(!m.is_finished(&s));
    }

    #[test]
    fn after_watermark_fires_early_on_time_and_late() {
        let m = TriggerMachine::new(
            &Trigger::after_watermark()
                .with_early_firings(Trigger::after_count(2))
                .with_late_firings(Trigger::after_count(1)),
        );
        let mut s = m.initial_state();
        assert!(!step(&m, &mut s, 1, at(0, 0)));
        assert!(
            step(&m, &mut s, 1, at(0, 0)),
            "early, on the second element"
        );
        assert!(!step(&m, &mut s, 1, at(5, 0)));
        assert!(
            step(&m, &mut s, 0, at(10, 0)),
            "on time, at the end of the window"
        );
        assert!(!step(&m, &mut s, 0, at(11, 0)));
        assert!(step(&m, &mut s, 1, at(11, 0)), "late, per late element");
        assert!(step(&m, &mut s, 1, at(12, 0)));
        assert!(!m.is_finished(&s));
    }

    #[test]
    fn after_watermark_alone_finishes_on_time() {
        let m = TriggerMachine::new(&Trigger::after_watermark());
        let mut s = m.initial_state();
        assert!(!step(&m, &mut s, 3, at(9, 0)));
        assert!(step(&m, &mut s, 0, at(10, 0)));
        assert!(m.is_finished(&s));
    }

    #[test]
    fn processing_time_counts_from_the_first_element() {
        let m = TriggerMachine::new(&Trigger::repeatedly(Trigger::after_processing_time(
            std::time::Duration::from_millis(100),
        )));
        let mut s = m.initial_state();
        assert!(!step(&m, &mut s, 1, at(0, 1_000)));
        assert_eq!(m.next_deadline(&s), Some(1_100));
        assert!(!step(&m, &mut s, 1, at(0, 1_050)));
        assert!(step(&m, &mut s, 0, at(0, 1_100)));
        assert_eq!(
            m.next_deadline(&s),
            None,
            "the next pane's clock starts with its element"
        );
        assert!(!step(&m, &mut s, 1, at(0, 1_500)));
        assert!(step(&m, &mut s, 0, at(0, 1_600)));
    }

    #[test]
    fn after_each_runs_its_parts_in_order() {
        let m = TriggerMachine::new(&Trigger::after_each(vec![
            Trigger::after_count(2),
            Trigger::after_count(1),
        ]));
        let mut s = m.initial_state();
        assert!(!step(&m, &mut s, 1, at(0, 0)));
        assert!(step(&m, &mut s, 1, at(0, 0)));
        assert!(step(&m, &mut s, 1, at(0, 0)));
        assert!(m.is_finished(&s));
    }

    #[test]
    fn after_any_and_after_all() {
        let any = TriggerMachine::new(&Trigger::after_any(vec![
            Trigger::after_count(5),
            Trigger::after_watermark(),
        ]));
        let mut s = any.initial_state();
        assert!(step(&any, &mut s, 1, at(10, 0)), "the watermark part");
        assert!(any.is_finished(&s));
        let all = TriggerMachine::new(&Trigger::after_all(vec![
            Trigger::after_count(2),
            Trigger::after_watermark(),
        ]));
        let mut s = all.initial_state();
        assert!(
            !step(&all, &mut s, 2, at(0, 0)),
            "count alone is not enough"
        );
        assert!(step(&all, &mut s, 0, at(10, 0)));
    }

    #[test]
    fn or_finally_stops_at_its_until_trigger() {
        let m = TriggerMachine::new(
            &Trigger::repeatedly(Trigger::after_count(2)).or_finally(Trigger::after_watermark()),
        );
        let mut s = m.initial_state();
        assert!(step(&m, &mut s, 2, at(0, 0)));
        assert!(!step(&m, &mut s, 1, at(0, 0)));
        assert!(step(&m, &mut s, 0, at(10, 0)));
        assert!(m.is_finished(&s));
    }

    #[test]
    fn merged_panes_add_counts() {
        let m = TriggerMachine::new(&Trigger::after_count(3));
        let (mut a, mut b) = (m.initial_state(), m.initial_state());
        step(&m, &mut a, 2, at(0, 0));
        step(&m, &mut b, 1, at(0, 0));
        m.merge(&mut a, &[&b]);
        assert!(m.should_fire(&a, &at(0, 0)));
    }

    #[test]
    fn continuations_and_safety() {
        let t = Trigger::after_each(vec![Trigger::after_count(5), Trigger::after_watermark()]);
        assert_eq!(
            t.continuation(),
            Trigger::repeatedly(Trigger::after_any(vec![
                Trigger::after_count(1),
                Trigger::after_watermark()
            ]))
        );
        assert!(t.may_finish());
        assert!(!Trigger::Default.may_finish());
        assert!(Trigger::after_watermark().may_finish());
        assert!(
            !Trigger::after_watermark()
                .with_late_firings(Trigger::after_count(1))
                .may_finish()
        );
        assert_eq!(
            Trigger::repeatedly(Trigger::after_count(3)).to_string(),
            "Repeatedly(AfterCount(3))"
        );
    }
}
