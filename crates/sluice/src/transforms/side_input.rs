//! Side inputs: a PCollection read whole by every worker, as a singleton, a list, a map
//! or a multimap, alongside a ParDo's main input.
//!
//! A view is materialised before the ParDo that reads it runs: the stage computing it
//! finishes first, every worker receives all of it, and the ParDo's stage starts after.
//! In the plan, the view's write ends its stage (a fusion barrier) and the reading stage
//! lists it among its inputs.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::side_input::SideInput;
//!
//! /// Each word's share of all words.
//! #[derive(Clone)]
//! struct Share {
//!     total: SideInput<u64>,
//! }
//!
//! impl DoFn for Share {
//!     type In = (String, u64);
//!     type Out = String;
//!     fn process(&mut self, (word, n): (String, u64), ctx: &mut Context<'_, String>) -> Result<(), BoxError> {
//!         let total = *ctx.side_input(&self.total)?;
//!         ctx.emit(format!("{word}: {}%", 100 * n / total));
//!         Ok(())
//!     }
//! }
//!
//! let p = Pipeline::for_test();
//! let words = p.create("Words", vec!["a".to_string(), "a".to_string(), "a".to_string(), "b".to_string()]);
//! let total = words.count_globally("Total").as_singleton("TotalView");
//! let shares = words
//!     .count_per_element("Counts")
//!     .par_do_with_side_inputs("Share", Share { total: total.clone() }, &[total.spec()])
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! let mut got = shares.values();
//! got.sort();
//! assert_eq!(got, ["a: 75%", "b: 25%"]);
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use sluice_core::receiver::AnyReceiver;
use sluice_core::shuffle::ShuffleWriter;
use sluice_core::unit::{SideInputValue, TypeOf, UnitContext, ViewFactory};
use sluice_core::{Element, ExecError, Receiver, UnitResult, WindowedValue};
use sluice_plan::{PCollectionId, Payload};

use crate::dofn::{DoFn, ParDoPayload};
use crate::pcollection::PCollection;

/// A PCollection viewed as a value of type `V`, for a ParDo to read as a side input.
pub struct SideInput<V> {
    id: PCollectionId,
    _type: PhantomData<fn() -> V>,
}

impl<V> Clone for SideInput<V> {
    fn clone(&self) -> Self {
        SideInput {
            id: self.id,
            _type: PhantomData,
        }
    }
}

impl<V> std::fmt::Debug for SideInput<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SideInput(#{})", self.id.0)
    }
}

/// A side input declared for [`PCollection::par_do_with_side_inputs`].
#[derive(Clone, Copy, Debug)]
pub struct SideInputSpec(PCollectionId);

impl<V> SideInput<V> {
    /// The view as a declaration for [`PCollection::par_do_with_side_inputs`].
    pub fn spec(&self) -> SideInputSpec {
        SideInputSpec(self.id)
    }

    /// The id under which the runner hands out the view's value.
    pub(crate) fn id(&self) -> usize {
        self.id.0
    }
}

/// Sends elements of type `T` to every worker and builds the view's value with `build`.
struct ViewPayload<T, B> {
    build: B,
    _type: PhantomData<fn(T)>,
}

struct BroadcastWrite {
    ctx: UnitContext,
    shuffle: ShuffleWriter,
}

impl<T: Element> Receiver<T> for BroadcastWrite {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, e: WindowedValue<T>) -> UnitResult {
        self.shuffle
            .write_broadcast(e.window, e.timestamp, |out| e.value.encode_to(out))
            .map_err(|err| self.ctx.error(err))
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

impl<T, B> ViewFactory for ViewPayload<T, B>
where
    T: Element,
    B: Fn(&UnitContext, Vec<T>) -> Result<SideInputValue, Box<ExecError>> + Send + Sync,
{
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<T>(Box::new(BroadcastWrite {
            ctx: ctx.clone(),
            shuffle,
        })))
    }

    fn materialize(
        &self,
        ctx: &UnitContext,
        records: &[Vec<u8>],
    ) -> Result<SideInputValue, Box<ExecError>> {
        let elements = records
            .iter()
            .map(|r| sluice_core::coder::decode_exact::<T>(r))
            .collect::<Result<Vec<T>, _>>()
            .map_err(|e| ctx.error(e))?;
        (self.build)(ctx, elements)
    }
}

impl<T: Element> PCollection<T> {
    fn view<V: 'static>(
        &self,
        name: &str,
        build: impl Fn(&UnitContext, Vec<T>) -> Result<SideInputValue, Box<ExecError>>
        + Send
        + Sync
        + 'static,
    ) -> SideInput<V> {
        let payload = ViewPayload::<T, _> {
            build,
            _type: PhantomData,
        };
        let (_, outs) = self.pipeline.add_transform(
            name,
            vec![self.id],
            Payload::View(Arc::new(payload)),
            vec![("view".into(), TypeOf::<()>::arc())],
        );
        SideInput {
            id: outs[0],
            _type: PhantomData,
        }
    }

    /// A view of a PCollection that has exactly one element (Beam's `View.asSingleton`);
    /// reading it fails the reading bundle if the PCollection is empty or has several.
    pub fn as_singleton(&self, name: &str) -> SideInput<T> {
        self.view(name, |ctx, mut elements: Vec<T>| {
            match elements.len() {
                1 => Ok(Rc::new(elements.remove(0)) as Rc<dyn Any>),
                n => Err(ctx.error(format!(
                    "a singleton view needs exactly one element, and its PCollection has {n}; use as_iterable for several"
                ))),
            }
        })
    }

    /// A view of every element, in no particular order (Beam's `View.asIterable`/`asList`).
    pub fn as_iterable(&self, name: &str) -> SideInput<Vec<T>> {
        self.view(name, |_, elements: Vec<T>| {
            Ok(Rc::new(elements) as Rc<dyn Any>)
        })
    }
}

impl<K: Element + Eq + Hash, V: Element> PCollection<(K, V)> {
    /// A view as a map from key to value (Beam's `View.asMap`); a key present twice fails
    /// the reading bundle.
    pub fn as_map(&self, name: &str) -> SideInput<HashMap<K, V>> {
        self.view(name, |ctx, elements: Vec<(K, V)>| {
            let mut map = HashMap::with_capacity(elements.len());
            for (k, v) in elements {
                if map.contains_key(&k) {
                    return Err(ctx.error(format!(
                        "a map view has key {} more than once; use as_multimap",
                        sluice_core::render_element(&k)
                    )));
                }
                map.insert(k, v);
            }
            Ok(Rc::new(map) as Rc<dyn Any>)
        })
    }

    /// A view as a map from key to all its values (Beam's `View.asMultimap`).
    pub fn as_multimap(&self, name: &str) -> SideInput<HashMap<K, Vec<V>>> {
        self.view(name, |_, elements: Vec<(K, V)>| {
            let mut map: HashMap<K, Vec<V>> = HashMap::new();
            for (k, v) in elements {
                map.entry(k).or_default().push(v);
            }
            Ok(Rc::new(map) as Rc<dyn Any>)
        })
    }
}

impl<T: Element> PCollection<T> {
    /// Runs a [`DoFn`] that reads side inputs through [`crate::Context::side_input`]. The
    /// ParDo runs only once every view in `side_inputs` is complete.
    pub fn par_do_with_side_inputs<D: DoFn<In = T>>(
        &self,
        name: &str,
        dofn: D,
        side_inputs: &[SideInputSpec],
    ) -> PCollection<D::Out> {
        let out: PCollection<D::Out> = self.apply_leaf(
            name,
            Payload::ParDo(Arc::new(ParDoPayload::new(dofn, Vec::new()))),
        );
        let producer = self
            .pipeline
            .inner
            .borrow()
            .graph
            .pcollection(out.id)
            .producer;
        self.pipeline
            .inner
            .borrow_mut()
            .graph
            .set_side_inputs(producer, side_inputs.iter().map(|s| s.0).collect());
        out
    }
}
