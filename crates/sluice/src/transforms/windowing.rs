//! Event time and windows: `with_timestamps` and `window_into`.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::windowing::FixedWindows;
//!
//! let p = Pipeline::for_test();
//! // (user, time in ms)
//! let clicks = p.create("Clicks", vec![("amy".to_string(), 1_000i64), ("amy".to_string(), 59_000), ("amy".to_string(), 61_000)]);
//! let per_minute = clicks
//!     .with_timestamps("EventTime", |(_, ms): &(String, i64)| Timestamp::from_millis(*ms))
//!     .window_into("Minutes", FixedWindows::of_millis(60_000))
//!     .map("User", |(user, _): (String, i64)| (user, 1u64))
//!     .sum_per_key("ClicksPerUser")
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! let mut counts: Vec<u64> = per_minute.values().into_iter().map(|(_, n)| n).collect();
//! counts.sort();
//! assert_eq!(counts, [1, 2]); // two clicks in the first minute, one in the second
//! ```

use std::sync::Arc;
use std::time::Duration;

use sluice_core::trigger::{AccumulationMode, TimestampCombiner, Trigger, Windowing};
use sluice_core::windowing::WindowFn;
use sluice_core::{BoxError, Element, Timestamp, Window};

use crate::dofn::{Context, DoFn};
use crate::pcollection::PCollection;

/// Re-stamps elements with an event time computed from them.
struct WithTimestamps<T, F> {
    f: F,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T, F: Clone> Clone for WithTimestamps<T, F> {
    fn clone(&self) -> Self {
        WithTimestamps {
            f: self.f.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T, F> DoFn for WithTimestamps<T, F>
where
    T: Element,
    F: Fn(&T) -> Timestamp + Clone + Send + 'static,
{
    type In = T;
    type Out = T;
    fn process(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        let timestamp = (self.f)(&element);
        ctx.emit_with_timestamp(element, timestamp);
        Ok(())
    }
}

/// The windows of an element, from the element and its timestamp.
type AssignFn<T> = Arc<dyn Fn(&T, Timestamp) -> Vec<Window> + Send + Sync>;

/// Assigns each element to windows: by its timestamp, or by a function of the element.
struct AssignWindowsOf<T> {
    assign: AssignFn<T>,
}

impl<T> Clone for AssignWindowsOf<T> {
    fn clone(&self) -> Self {
        AssignWindowsOf {
            assign: self.assign.clone(),
        }
    }
}

impl<T: Element> DoFn for AssignWindowsOf<T> {
    type In = T;
    type Out = T;
    fn process(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        let timestamp = ctx.timestamp();
        let mut windows = (self.assign)(&element, timestamp).into_iter().peekable();
        while let Some(window) = windows.next() {
            if windows.peek().is_some() {
                ctx.emit_in(element.clone(), timestamp, window);
            } else {
                ctx.emit_in(element, timestamp, window);
                break;
            }
        }
        Ok(())
    }
}

/// How to window a PCollection, and when its groupings emit (Beam's `Window.into(..)`
/// with `.triggering(..)`, `.accumulatingFiredPanes()` and `.withAllowedLateness(..)`).
///
/// ```
/// use std::time::Duration;
/// use sluice::prelude::*;
/// use sluice::transforms::windowing::WindowInto;
/// use sluice::trigger::Trigger;
/// use sluice::windowing::FixedWindows;
///
/// let p = Pipeline::for_test();
/// let scores = p.create("Scores", vec![("amy".to_string(), 3u64), ("amy".to_string(), 4)]);
/// let totals = scores
///     .with_timestamps("EventTime", |_| Timestamp::from_millis(1_000))
///     .window(
///         "Minutes",
///         WindowInto::new(FixedWindows::of_millis(60_000))
///             .triggering(
///                 Trigger::after_watermark()
///                     .with_early_firings(Trigger::after_count(100))
///                     .with_late_firings(Trigger::after_count(1)),
///             )
///             .accumulating_fired_panes()
///             .with_allowed_lateness(Duration::from_secs(600)),
///     )
///     .sum_per_key("Total")
///     .collect("Out");
/// p.run().unwrap().wait_until_finish().unwrap();
/// assert_eq!(totals.values(), [("amy".to_string(), 7)]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct WindowInto {
    window_fn: Option<Arc<dyn WindowFn>>,
    trigger: Option<Trigger>,
    accumulation: Option<AccumulationMode>,
    allowed_lateness: Option<Duration>,
    timestamp_combiner: Option<TimestampCombiner>,
}

impl WindowInto {
    /// Windows by `window_fn`, with the default trigger, discarding fired panes and no
    /// allowed lateness unless set.
    pub fn new(window_fn: impl WindowFn + 'static) -> WindowInto {
        WindowInto {
            window_fn: Some(Arc::new(window_fn)),
            ..WindowInto::default()
        }
    }

    /// Keeps the windows and changes only what is set (Beam's `Window.configure()`).
    pub fn configure() -> WindowInto {
        WindowInto::default()
    }

    /// When panes fire.
    pub fn triggering(mut self, trigger: Trigger) -> WindowInto {
        self.trigger = Some(trigger);
        self
    }

    /// Each pane holds everything of its window so far.
    pub fn accumulating_fired_panes(mut self) -> WindowInto {
        self.accumulation = Some(AccumulationMode::Accumulating);
        self
    }

    /// Each pane holds only what arrived since the previous one (the default).
    pub fn discarding_fired_panes(mut self) -> WindowInto {
        self.accumulation = Some(AccumulationMode::Discarding);
        self
    }

    /// How long after the end of a window late data is still accepted (default none).
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> WindowInto {
        self.allowed_lateness = Some(lateness);
        self
    }

    /// How grouped results are stamped (Beam's `withTimestampCombiner`): at the end of
    /// their window (the default), or at the earliest or latest of their elements' output
    /// times ([`WindowFn::get_transformed_output_time`], the element's timestamp unless
    /// the window function moves it). The grouping holds the watermark at that time until
    /// the pane fires; elements already behind the watermark when they arrive cannot be
    /// held back, and a pane of only such elements is stamped at the end of its window,
    /// as in Beam.
    pub fn with_timestamp_combiner(mut self, combiner: TimestampCombiner) -> WindowInto {
        self.timestamp_combiner = Some(combiner);
        self
    }

    /// The windowing this gives a PCollection windowed as `current`.
    fn apply_to(&self, current: &Windowing) -> Windowing {
        let mut w = match &self.window_fn {
            Some(window_fn) => Windowing::new(window_fn.clone()),
            None => current.clone(),
        };
        if let Some(t) = &self.trigger {
            w.trigger = t.clone();
        } else if self.window_fn.is_some() {
            // A new window function keeps the trigger set before (as in Beam).
            w.trigger = current.trigger.clone();
            w.accumulation = current.accumulation;
            w.allowed_lateness_us = current.allowed_lateness_us;
        }
        if let Some(a) = self.accumulation {
            w.accumulation = a;
        }
        if let Some(l) = self.allowed_lateness {
            w.allowed_lateness_us = l.as_micros().min(i64::MAX as u128) as i64;
        }
        if self.window_fn.is_some() && self.timestamp_combiner.is_none() {
            w.timestamp_combiner = current.timestamp_combiner;
        }
        if let Some(c) = self.timestamp_combiner {
            w.timestamp_combiner = c;
        }
        w
    }
}

impl<T: Element> PCollection<T> {
    /// Gives each element the event timestamp `f` computes from it (Beam's
    /// `WithTimestamps`). Sources stamp elements with the minimum timestamp.
    pub fn with_timestamps<F>(&self, name: &str, f: F) -> PCollection<T>
    where
        F: Fn(&T) -> Timestamp + Clone + Send + 'static,
    {
        self.par_do(
            name,
            WithTimestamps {
                f,
                _type: std::marker::PhantomData,
            },
        )
    }

    /// Assigns each element to windows by its timestamp (Beam's `Window.into`): fixed,
    /// sliding, session or any [`WindowFn`]. Grouping and combining downstream then
    /// happen per key and window; results carry the end of their window as timestamp.
    pub fn window_into(&self, name: &str, window_fn: impl WindowFn + 'static) -> PCollection<T> {
        self.window(name, WindowInto::new(window_fn))
    }

    /// Windows the collection and sets when its groupings emit: see [`WindowInto`].
    pub fn window(&self, name: &str, spec: WindowInto) -> PCollection<T> {
        let windowing = spec.apply_to(&self.windowing());
        let assign: AssignFn<T> = match &spec.window_fn {
            Some(window_fn) => {
                let window_fn = window_fn.clone();
                Arc::new(move |_: &T, t| window_fn.assign(t))
            }
            // Same windows: each element stays in its own.
            None => Arc::new(|_: &T, _| Vec::new()),
        };
        let out = if spec.window_fn.is_some() {
            self.par_do(name, AssignWindowsOf { assign })
        } else {
            self.map(name, |t: T| t)
        };
        self.set_windowing_of(&out, windowing);
        out
    }

    /// Assigns each element to the windows `assign` computes from it and its timestamp,
    /// with `window_fn` for merging and descriptions: windows that depend on the element,
    /// like an auction's window ending when the auction does.
    pub fn window_into_by<F>(
        &self,
        name: &str,
        window_fn: impl WindowFn + 'static,
        assign: F,
    ) -> PCollection<T>
    where
        F: Fn(&T, Timestamp) -> Vec<Window> + Send + Sync + 'static,
    {
        let spec = WindowInto::new(window_fn);
        let windowing = spec.apply_to(&self.windowing());
        let out = self.par_do(
            name,
            AssignWindowsOf {
                assign: Arc::new(assign),
            },
        );
        self.set_windowing_of(&out, windowing);
        out
    }

    fn set_windowing_of(&self, out: &PCollection<T>, windowing: Windowing) {
        let mut inner = self.pipeline.inner.borrow_mut();
        let description = windowing.describe();
        inner.graph.set_windowing(out.id, Arc::new(windowing));
        let producer = inner.graph.pcollection(out.id).producer;
        inner.graph.transforms[producer.0]
            .display_data
            .push(("windowing".into(), description));
    }
}
