//! The reading half of every grouping — GroupByKey, CoGroupByKey, the merging half of a
//! lifted Combine: received records are buffered per key and window in [`Panes`],
//! fired as triggers and the watermark allow, and emitted as `(key, output)` in bundles.
//! What differs between groupings — what a pane buffers and what it emits — is a
//! [`Grouping`].

use std::ops::Range;

use sluice_core::panes::{Firing, Panes};
use sluice_core::receiver::{AnyPort, Port, TypeMismatch};
use sluice_core::shuffle::ShuffleRecord;
use sluice_core::trigger::Windowing;
use sluice_core::unit::{ShuffleReader, UnitContext, attached};
use sluice_core::{
    Element, ExecError, Timestamp, UnitResult, Window, WindowedValue, key_hash, route,
};

use crate::transforms::group_by_key::count_dropped;

/// What a grouping buffers per key and window, and what it emits.
pub(crate) trait Grouping: 'static {
    /// What a pane buffers.
    type Contents: Clone + Default;
    /// What the grouping emits with each key.
    type Out: Element;
    /// Folds one received record's encoded value into a pane's contents.
    fn add(
        &self,
        ctx: &UnitContext,
        contents: &mut Option<Self::Contents>,
        value: &[u8],
    ) -> UnitResult;
    /// Folds the contents of a window into the window it merges with. Runs no user code.
    fn merge(into: &mut Self::Contents, other: Self::Contents);
    /// The output of a fired pane (`None`: an empty pane). The contents stay as they are,
    /// so that a failed bundle emits the same panes again.
    fn output(
        &self,
        ctx: &UnitContext,
        contents: Option<&Self::Contents>,
    ) -> Result<Self::Out, Box<ExecError>>;
}

/// A grouping's shuffle reader.
pub(crate) struct PaneReader<K, G: Grouping> {
    ctx: UnitContext,
    panes: Panes<G::Contents>,
    fired: Vec<Firing<G::Contents>>,
    output: Option<Port<(K, G::Out)>>,
    /// The key of a global combine's result, which exists even for an empty input; taken
    /// when it has been made sure of.
    default_key: Option<Vec<u8>>,
    grouping: G,
}

impl<K, G: Grouping> PaneReader<K, G> {
    pub(crate) fn new(
        ctx: &UnitContext,
        windowing: &Windowing,
        default_key: Option<Vec<u8>>,
        grouping: G,
    ) -> Self {
        PaneReader {
            ctx: ctx.clone(),
            panes: Panes::new(windowing.clone(), ctx.streaming),
            fired: Vec::new(),
            output: None,
            default_key,
            grouping,
        }
    }
}

impl<K: Element, G: Grouping> ShuffleReader for PaneReader<K, G> {
    fn advance(&mut self, watermark: Timestamp, now_ms: i64) {
        self.panes.advance(watermark, now_ms);
    }

    fn accept(&mut self, record: ShuffleRecord<'_>) -> UnitResult {
        let (grouping, ctx) = (&self.grouping, &self.ctx);
        let taken = self.panes.accept::<Box<ExecError>>(
            record.key,
            key_hash(record.key),
            record.window,
            record.timestamp,
            |contents| grouping.add(ctx, contents, record.value),
            G::merge,
        )?;
        if !taken {
            count_dropped(&self.ctx, &mut self.panes);
        }
        Ok(())
    }

    fn fire(&mut self) -> Result<usize, Box<ExecError>> {
        if self.panes.watermark() == Timestamp::MAX
            && let Some(key) = self.default_key.take()
        {
            let hash = key_hash(&key);
            if route(hash, self.ctx.workers) == self.ctx.worker {
                // An empty pane: its output is made when it is emitted.
                self.panes
                    .ensure(&key, hash, Window::Global, G::Contents::default);
            }
        }
        self.fired = self.panes.fire(G::merge);
        Ok(self.fired.len())
    }

    fn hold(&self) -> Timestamp {
        self.panes.hold()
    }

    fn next_wakeup_ms(&self) -> Option<i64> {
        self.panes.next_deadline()
    }

    fn attach(&mut self, output: AnyPort) -> Result<(), TypeMismatch> {
        self.output = Some(output.downcast()?);
        Ok(())
    }

    fn detach(&mut self) {
        self.output = None;
    }

    fn start_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.start_bundle()
    }

    fn emit(&mut self, range: Range<usize>) -> UnitResult {
        let output = attached(&mut self.output, &self.ctx)?;
        for (i, firing) in self.fired[range.clone()].iter().enumerate() {
            self.ctx.position.store(
                (range.start + i) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let k = sluice_core::coder::decode_exact::<K>(&firing.key)
                .map_err(|e| self.ctx.error(e))?;
            let out = self.grouping.output(&self.ctx, firing.contents.as_ref())?;
            output.emit(WindowedValue {
                value: (k, out),
                timestamp: firing.timestamp,
                window: firing.window,
                pane: firing.pane,
            })?;
        }
        Ok(())
    }

    fn finish_bundle(&mut self) -> UnitResult {
        attached(&mut self.output, &self.ctx)?.finish_bundle()
    }
}
