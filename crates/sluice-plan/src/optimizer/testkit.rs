//! Pipeline graphs for optimiser tests, with payloads that are never executed.

use std::sync::Arc;

use sluice_core::ExecError;
use sluice_core::receiver::{AnyPort, AnyReceiver};
use sluice_core::shuffle::ShuffleWriter;
use sluice_core::unit::{
    CombineFactory, GroupByKeyFactory, JobInfo, ParDoFactory, ShuffleReader, SinkBuffer,
    SinkFactory, SinkJob, SourceFactory, SourceReader, SourceSplit, SplitHint, TypeOf, UnitContext,
};
use sluice_core::unit::{SideInputValue, ViewFactory};

use crate::graph::{PCollectionId, Payload, PipelineGraph, TransformId};

/// A payload for plan-shape tests: building it is a test bug.
pub struct Inert;

fn never<T>() -> T {
    panic!("plan tests never build execution units")
}

impl ParDoFactory for Inert {
    fn build(&self, _: &UnitContext, _: Vec<AnyPort>) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
}
impl SourceFactory for Inert {
    fn splits(&self, _: &SplitHint) -> Result<Vec<Arc<dyn SourceSplit>>, sluice_core::BoxError> {
        never()
    }
    fn reader(&self, _: &UnitContext) -> Result<Box<dyn SourceReader>, Box<ExecError>> {
        never()
    }
}
impl GroupByKeyFactory for Inert {
    fn writer(&self, _: &UnitContext, _: ShuffleWriter) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
    fn reader(&self, _: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        never()
    }
}
impl CombineFactory for Inert {
    fn partial(&self, _: &UnitContext, _: ShuffleWriter) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
    fn merge_reader(&self, _: &UnitContext) -> Result<Box<dyn ShuffleReader>, Box<ExecError>> {
        never()
    }
    fn grouped(&self, _: &UnitContext, _: AnyPort) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
}
impl ViewFactory for Inert {
    fn writer(&self, _: &UnitContext, _: ShuffleWriter) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
    fn materialize(
        &self,
        _: &UnitContext,
        _: &[Vec<u8>],
    ) -> Result<SideInputValue, Box<ExecError>> {
        never()
    }
}
impl SinkFactory for Inert {
    fn unit(&self, _: &UnitContext, _: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        never()
    }
    fn begin(&self, _: &JobInfo) -> Result<Arc<dyn SinkJob>, sluice_core::BoxError> {
        never()
    }
}

/// Builds graphs tersely.
#[derive(Default)]
pub struct G {
    pub g: PipelineGraph,
    parents: Vec<TransformId>,
}

impl G {
    fn add(&mut self, name: &str, inputs: &[PCollectionId], payload: Payload) -> PCollectionId {
        let full = self.full(name);
        let t = self.g.add_transform(
            full.clone(),
            self.parents.last().copied(),
            inputs.to_vec(),
            payload,
        );
        self.g
            .add_output(t, format!("{full}.out"), TypeOf::<u32>::arc())
    }
    fn full(&self, name: &str) -> String {
        match self.parents.last() {
            Some(p) => format!("{}/{name}", self.g.transform(*p).name),
            None => name.to_string(),
        }
    }
    pub fn read(&mut self, name: &str) -> PCollectionId {
        self.add(name, &[], Payload::Read(Arc::new(Inert)))
    }
    pub fn create(&mut self, name: &str) -> PCollectionId {
        self.add(name, &[], Payload::Create(Arc::new(Inert)))
    }
    pub fn pardo(&mut self, name: &str, input: PCollectionId) -> PCollectionId {
        self.add(name, &[input], Payload::ParDo(Arc::new(Inert)))
    }
    pub fn gbk(&mut self, name: &str, input: PCollectionId) -> PCollectionId {
        self.add(name, &[input], Payload::GroupByKey(Arc::new(Inert)))
    }
    pub fn reshuffle(&mut self, name: &str, input: PCollectionId) -> PCollectionId {
        self.add(name, &[input], Payload::Reshuffle)
    }
    pub fn flatten(&mut self, name: &str, inputs: &[PCollectionId]) -> PCollectionId {
        self.add(name, inputs, Payload::Flatten)
    }
    pub fn view(&mut self, name: &str, input: PCollectionId) -> PCollectionId {
        self.add(name, &[input], Payload::View(Arc::new(Inert)))
    }
    pub fn pardo_with_side(
        &mut self,
        name: &str,
        input: PCollectionId,
        side: PCollectionId,
    ) -> PCollectionId {
        let out = self.pardo(name, input);
        let producer = self.g.pcollection(out).producer;
        self.g.set_side_inputs(producer, vec![side]);
        out
    }
    pub fn write(&mut self, name: &str, input: PCollectionId) {
        let full = self.full(name);
        self.g.add_transform(
            full,
            self.parents.last().copied(),
            vec![input],
            Payload::Write(Arc::new(Inert)),
        );
    }
    /// A CombinePerKey composite: `name/GroupByKey` then `name/Combine`.
    pub fn combine_per_key(&mut self, name: &str, input: PCollectionId) -> PCollectionId {
        let full = self.full(name);
        let c = self.g.add_transform(
            full,
            self.parents.last().copied(),
            vec![input],
            Payload::Composite,
        );
        self.parents.push(c);
        let grouped = self.gbk("GroupByKey", input);
        let out = self.add(
            "Combine",
            &[grouped],
            Payload::CombineValues(Arc::new(Inert)),
        );
        self.parents.pop();
        self.g.set_composite_outputs(c, vec![out]);
        out
    }
    /// Applies `f` inside a composite named `name`.
    pub fn composite(
        &mut self,
        name: &str,
        input: PCollectionId,
        f: impl FnOnce(&mut G) -> PCollectionId,
    ) -> PCollectionId {
        let full = self.full(name);
        let c = self.g.add_transform(
            full,
            self.parents.last().copied(),
            vec![input],
            Payload::Composite,
        );
        self.parents.push(c);
        let out = f(self);
        self.parents.pop();
        self.g.set_composite_outputs(c, vec![out]);
        out
    }
}

/// The wordcount pipeline's shape.
pub fn wordcount() -> PipelineGraph {
    let mut g = G::default();
    let lines = g.read("ReadLines");
    let words = g.pardo("ExtractWords", lines);
    let counts = g.composite("CountWords", words, |g| {
        let pairs = g.pardo("Init", words);
        g.combine_per_key("Count", pairs)
    });
    let formatted = g.pardo("Format", counts);
    g.write("Write", formatted);
    g.g
}
