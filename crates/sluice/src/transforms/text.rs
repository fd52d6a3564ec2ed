//! Text files in and out.

use std::sync::Arc;

use sluice_io::{TextSink, TextSource};
use sluice_plan::Payload;

use crate::error::Result;
use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;

impl Pipeline {
    /// The lines of every file matching `pattern` (a path or a glob; `.gz` files are
    /// decompressed). The pattern is matched now: if it matches no file, this fails with an
    /// error naming the transform and the pattern, before anything runs.
    pub fn read_text(&self, name: &str, pattern: &str) -> Result<PCollection<String>> {
        let source = TextSource::new(&self.full_name(name), pattern)?;
        let files = source.files().len();
        let (id, outs) = self.add_transform(
            name,
            Vec::new(),
            Payload::Read(Arc::new(source)),
            vec![("out".into(), sluice_core::unit::TypeOf::<String>::arc())],
        );
        self.display(id, "filePattern", pattern);
        self.display(id, "files", files.to_string());
        Ok(PCollection::new(self, outs[0]))
    }
}

impl PCollection<String> {
    /// Writes each element as a line to files `prefix-00000-of-NNNNN`, one shard per worker
    /// that wrote anything. The files appear only when the whole job succeeds. Whether the
    /// output location is writable is checked now, before anything runs.
    pub fn write_text(&self, name: &str, prefix: &str) -> Result<()> {
        let sink = TextSink::new(&self.pipeline.full_name(name), prefix)?;
        let (id, _) = self.pipeline.add_transform(
            name,
            vec![self.id],
            Payload::Write(Arc::new(sink)),
            Vec::new(),
        );
        self.pipeline.display(id, "outputPrefix", prefix);
        Ok(())
    }
}
