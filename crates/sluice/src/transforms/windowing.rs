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

use sluice_core::windowing::WindowFn;
use sluice_core::{BoxError, Element, Timestamp};

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

/// Assigns each element to the windows of its timestamp.
#[derive(Clone)]
struct AssignWindows {
    window_fn: Arc<dyn WindowFn>,
}

impl AssignWindows {
    fn assign<T: Element>(&self, element: T, ctx: &mut Context<'_, T>) {
        let timestamp = ctx.timestamp();
        let mut windows = self.window_fn.assign(timestamp).into_iter().peekable();
        while let Some(window) = windows.next() {
            if windows.peek().is_some() {
                ctx.emit_in(element.clone(), timestamp, window);
            } else {
                ctx.emit_in(element, timestamp, window);
                break;
            }
        }
    }
}

/// [`AssignWindows`] for elements of type `T`.
struct AssignWindowsOf<T> {
    assign: AssignWindows,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for AssignWindowsOf<T> {
    fn clone(&self) -> Self {
        AssignWindowsOf {
            assign: self.assign.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: Element> DoFn for AssignWindowsOf<T> {
    type In = T;
    type Out = T;
    fn process(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), BoxError> {
        self.assign.assign(element, ctx);
        Ok(())
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
        let window_fn: Arc<dyn WindowFn> = Arc::new(window_fn);
        let assign = AssignWindowsOf {
            assign: AssignWindows {
                window_fn: window_fn.clone(),
            },
            _type: std::marker::PhantomData,
        };
        let out = self.par_do(name, assign);
        let mut inner = self.pipeline.inner.borrow_mut();
        inner.graph.set_windowing(out.id, window_fn.clone());
        let producer = inner.graph.pcollection(out.id).producer;
        inner.graph.transforms[producer.0]
            .display_data
            .push(("windowFn".into(), window_fn.describe()));
        drop(inner);
        out
    }
}
