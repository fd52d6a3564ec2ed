//! CoGroupByKey: the values of every input for each key, together; and joins built on it.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::transforms::cogroup::CoGroupByKey;
//!
//! let p = Pipeline::for_test();
//! let emails = p.create("Emails", vec![("amy".to_string(), "amy@example.com".to_string())]);
//! let phones = p.create("Phones", vec![("amy".to_string(), 5550100u64), ("bob".to_string(), 5550199)]);
//! let email_tag = TupleTag::<String>::new("emails");
//! let phone_tag = TupleTag::<u64>::new("phones");
//! let joined = CoGroupByKey::new()
//!     .and(&email_tag, &emails)
//!     .and(&phone_tag, &phones)
//!     .apply("Join")
//!     .map("Format", move |(name, r): (String, sluice::transforms::cogroup::CoGbkResult)| {
//!         format!("{name}: {:?} {:?}", r.get(&email_tag), r.get(&phone_tag))
//!     })
//!     .collect("Out");
//! p.run().unwrap().wait_until_finish().unwrap();
//! let mut got = joined.values();
//! got.sort();
//! assert_eq!(got, ["amy: [\"amy@example.com\"] [5550100]", "bob: [] [5550199]"]);
//! ```

use std::sync::Arc;

use sluice_core::coder::CoderError;
use sluice_core::receiver::AnyReceiver;
use sluice_core::shuffle::ShuffleWriter;
use sluice_core::trigger::Windowing;
use sluice_core::unit::{GroupByKeyFactory, ShuffleReader, UnitContext};
use sluice_core::{Coder, Element, ExecError};
use sluice_plan::{PCollectionId, Payload};

use crate::transforms::group_by_key::{
    GroupOf, GroupRead, GroupValues, KeyedWrite, Pairs, check_key_coder,
};

use crate::dofn::TupleTag;
use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

/// The values every input of a [`CoGroupByKey`] has for one key (and window).
#[derive(Clone, Debug, PartialEq)]
pub struct CoGbkResult {
    /// Per input, in the order the inputs were added: its tag, its values encoded back to
    /// back, and how many there are.
    parts: Vec<(String, Vec<u8>, u32)>,
}

impl CoGbkResult {
    /// The values of the input tagged `tag`, in no particular order.
    pub fn try_get<V: Element>(&self, tag: &TupleTag<V>) -> Result<Vec<V>, CoderError> {
        let Some((_, bytes, count)) = self.parts.iter().find(|(id, _, _)| id == tag.id()) else {
            return Err(CoderError::decode(
                std::any::type_name::<V>(),
                format!("'{}' is not a tag of this CoGroupByKey", tag.id()),
            ));
        };
        let mut input = &bytes[..];
        (0..*count).map(|_| V::decode_from(&mut input)).collect()
    }

    /// The values of the input tagged `tag`, in no particular order.
    ///
    /// # Panics
    /// If `tag` is not one of the CoGroupByKey's inputs (a construction bug).
    pub fn get<V: Element>(&self, tag: &TupleTag<V>) -> Vec<V> {
        match self.try_get(tag) {
            Ok(values) => values,
            Err(e) => panic!("{e}"),
        }
    }

    /// Whether no input has a value for the key.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|(_, _, n)| *n == 0)
    }
}

impl Coder for CoGbkResult {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.parts.encode_to(out)
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(CoGbkResult {
            parts: Vec::decode_from(input)?,
        })
    }
}

/// Each key with its values from two inputs, as [`PCollection::co_group_with`] gives them.
pub type CoGrouped<K, V1, V2> = (K, (Vec<V1>, Vec<V2>));

/// Applies the tagging of one input, inside the CoGroupByKey's composite.
type Tagger<K> = Box<dyn FnOnce(u32) -> PCollection<(K, (u32, Encoded))>>;

/// A value already encoded: its length, then its bytes, copied whole.
#[derive(Clone, Debug)]
struct Encoded(Vec<u8>);

impl Coder for Encoded {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        (self.0.len() as u64).encode_to(out)?;
        out.extend_from_slice(&self.0);
        Ok(())
    }
    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let len = u64::decode_from(input)? as usize;
        if input.len() < len {
            return Err(CoderError::truncated("Encoded"));
        }
        let (bytes, rest) = input.split_at(len);
        *input = rest;
        Ok(Encoded(bytes.to_vec()))
    }
}

/// Groups several keyed PCollections by key (Beam's `CoGroupByKey`). Each input is added
/// with a [`TupleTag`] naming it and its value type; each result's values are read back
/// by tag.
pub struct CoGroupByKey<K> {
    pipeline: Option<Pipeline>,
    inputs: Vec<PCollectionId>,
    tags: Vec<String>,
    taggers: Vec<Tagger<K>>,
}

impl<K: Element> Default for CoGroupByKey<K> {
    fn default() -> Self {
        CoGroupByKey {
            pipeline: None,
            inputs: Vec::new(),
            tags: Vec::new(),
            taggers: Vec::new(),
        }
    }
}

impl<K: Element> CoGroupByKey<K> {
    /// A CoGroupByKey with no inputs yet.
    pub fn new() -> Self {
        CoGroupByKey::default()
    }

    /// Adds an input, tagged `tag`.
    pub fn and<V: Element>(mut self, tag: &TupleTag<V>, input: &PCollection<(K, V)>) -> Self {
        self.pipeline
            .get_or_insert_with(|| input.pipeline().clone());
        self.inputs.push(input.id);
        self.tags.push(tag.id().to_string());
        let input = input.clone();
        let name = format!("Tag[{}]", tag.id());
        self.taggers.push(Box::new(move |index| {
            input.try_map(&name, move |(k, v): (K, V)| -> Result<_, CoderError> {
                let mut bytes = Vec::new();
                v.encode_to(&mut bytes)?;
                Ok((k, (index, Encoded(bytes))))
            })
        }));
        self
    }

    /// Applies the CoGroupByKey, named `name`.
    ///
    /// # Panics
    /// If no input was added.
    pub fn apply(self, name: &str) -> PCollection<(K, CoGbkResult)> {
        let Some(pipeline) = self.pipeline else {
            panic!("CoGroupByKey '{name}' has no inputs; add them with .and(&tag, &pcollection)");
        };
        let tags = Arc::new(self.tags);
        let taggers = self.taggers;
        pipeline.clone().in_composite(name, self.inputs, move || {
            let tagged: Vec<_> = taggers
                .into_iter()
                .enumerate()
                .map(|(i, t)| t(i as u32))
                .collect();
            let all = pipeline.flatten("Flatten", &tagged);
            check_key_coder::<K>(&all, "GroupByKey");
            // A GroupByKey whose reader sorts each group's tagged values straight into the
            // result's parts, without decoding them one by one.
            let payload = CoGroupPayload::<K> {
                tags,
                windowing: all.windowing(),
                _key: std::marker::PhantomData,
            };
            all.apply_leaf("GroupByKey", Payload::GroupByKey(Arc::new(payload)))
        })
    }
}

/// The GroupByKey of a CoGroupByKey.
struct CoGroupPayload<K> {
    tags: Arc<Vec<String>>,
    windowing: Arc<Windowing>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K: Element> GroupByKeyFactory for CoGroupPayload<K> {
    fn writer(
        &self,
        ctx: &UnitContext,
        shuffle: ShuffleWriter,
    ) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<(K, (u32, Encoded))>(Box::new(
            KeyedWrite::<Pairs<K, (u32, Encoded)>>::new(ctx, shuffle),
        )))
    }

    fn reader(&self, ctx: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        Ok(Box::new(GroupRead::<K, Parts>::new(
            ctx,
            &self.windowing,
            None,
            GroupOf(Parts(self.tags.clone())),
        )))
    }
}

/// Sorts a group of tagged values into the parts of a [`CoGbkResult`].
struct Parts(Arc<Vec<String>>);

impl GroupValues for Parts {
    type Out = CoGbkResult;
    fn decode(
        &self,
        ctx: &UnitContext,
        values: &[u8],
        count: usize,
    ) -> Result<CoGbkResult, Box<ExecError>> {
        let mut parts: Vec<(String, Vec<u8>, u32)> =
            self.0.iter().map(|t| (t.clone(), Vec::new(), 0)).collect();
        let mut input = values;
        for _ in 0..count {
            // Each value is a tagged union, (index, encoded value), as the tuple coder
            // writes it: the index, then the length and the bytes (`Encoded`).
            let index = u32::decode_from(&mut input).map_err(|e| ctx.error(e))?;
            let len = u64::decode_from(&mut input).map_err(|e| ctx.error(e))? as usize;
            if input.len() < len {
                return Err(ctx.error("a CoGroupByKey value is truncated"));
            }
            let (bytes, rest) = input.split_at(len);
            input = rest;
            if let Some(part) = parts.get_mut(index as usize) {
                part.1.extend_from_slice(bytes);
                part.2 += 1;
            }
        }
        Ok(CoGbkResult { parts })
    }
}

impl<K: Element, V1: Element> PCollection<(K, V1)> {
    /// This collection and `other` grouped by key: each key's values from both sides.
    pub fn co_group_with<V2: Element>(
        &self,
        name: &str,
        other: &PCollection<(K, V2)>,
    ) -> PCollection<CoGrouped<K, V1, V2>> {
        let left = TupleTag::<V1>::new("left");
        let right = TupleTag::<V2>::new("right");
        self.pipeline()
            .clone()
            .in_composite(name, vec![self.id, other.id], || {
                CoGroupByKey::new()
                    .and(&left, self)
                    .and(&right, other)
                    .apply("CoGroupByKey")
                    .map("Split", move |(k, r): (K, CoGbkResult)| {
                        (k, (r.get(&left), r.get(&right)))
                    })
            })
    }

    /// Pairs every value of this collection with every value of `other` that has the same
    /// key; keys missing on either side give nothing.
    pub fn inner_join<V2: Element>(
        &self,
        name: &str,
        other: &PCollection<(K, V2)>,
    ) -> PCollection<(K, (V1, V2))> {
        self.pipeline()
            .clone()
            .in_composite(name, vec![self.id, other.id], || {
                self.co_group_with("CoGroup", other).flat_map(
                    "Pairs",
                    |(k, (lefts, rights)): (K, (Vec<V1>, Vec<V2>))| {
                        let mut out = Vec::with_capacity(lefts.len() * rights.len());
                        for l in &lefts {
                            for r in &rights {
                                out.push((k.clone(), (l.clone(), r.clone())));
                            }
                        }
                        out
                    },
                )
            })
    }

    /// Every value of this collection, paired with each value of `other` that has the same
    /// key, or with `None` when `other` has none.
    pub fn left_outer_join<V2: Element>(
        &self,
        name: &str,
        other: &PCollection<(K, V2)>,
    ) -> PCollection<(K, (V1, Option<V2>))> {
        self.pipeline()
            .clone()
            .in_composite(name, vec![self.id, other.id], || {
                self.co_group_with("CoGroup", other).flat_map(
                    "Pairs",
                    |(k, (lefts, rights)): (K, (Vec<V1>, Vec<V2>))| {
                        let mut out = Vec::new();
                        for l in &lefts {
                            if rights.is_empty() {
                                out.push((k.clone(), (l.clone(), None)));
                            }
                            for r in &rights {
                                out.push((k.clone(), (l.clone(), Some(r.clone()))));
                            }
                        }
                        out
                    },
                )
            })
    }
}
