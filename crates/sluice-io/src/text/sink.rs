//! Writing lines to sharded text files, committed atomically when the job succeeds.
//!
//! Every worker appends its committed bundles to its own temporary file in a hidden
//! directory next to the output (`.temp-sluice-<job id>`). Only when the whole job has
//! succeeded are the temporary files renamed to their final names,
//! `PREFIX-00000-of-00002` and so on — one shard per worker that wrote anything, and one
//! empty shard if none did. A failed job removes the temporary directory, so it leaves no
//! output at all. Shards of an earlier run with the same prefix but another shard count
//! are removed at commit, so the output never mixes two runs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sluice_core::receiver::AnyReceiver;
use sluice_core::unit::{
    JobInfo, SinkBuffer, SinkBytes, SinkFactory, SinkJob, SinkWriter, UnitContext,
};
use sluice_core::{BoxError, ExecError, Receiver, UnitResult, WindowedValue};

use crate::error::IoError;

/// Writes each `String` element as one line.
#[derive(Clone, Debug)]
pub struct TextSink {
    transform: String,
    dir: PathBuf,
    file_prefix: String,
    suffix: String,
}

impl TextSink {
    /// Checks now that files named `prefix-SSSSS-of-NNNNN` can be created: the directory
    /// must exist and be writable, or be creatable under a writable ancestor. Nothing is
    /// created until the job runs.
    pub fn new(transform: &str, prefix: &str) -> Result<TextSink, IoError> {
        let unwritable = |reason: String| IoError::Unwritable {
            transform: transform.into(),
            prefix: PathBuf::from(prefix),
            reason,
        };
        if prefix.is_empty() || prefix.ends_with('/') {
            return Err(unwritable(
                "an output prefix names files, not a directory; add a file name, e.g. 'out/part'"
                    .into(),
            ));
        }
        let path = Path::new(prefix);
        let file_prefix = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| unwritable("the prefix has no file name".into()))?
            .to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut ancestor = dir.as_path();
        loop {
            if ancestor.exists() {
                if !ancestor.is_dir() {
                    return Err(unwritable(format!(
                        "{} is a file, not a directory; choose another output location",
                        ancestor.display()
                    )));
                }
                if rustix::fs::access(
                    ancestor,
                    rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                )
                .is_err()
                {
                    return Err(unwritable(format!(
                        "the directory {} is not writable; choose another output location or fix its permissions",
                        ancestor.display()
                    )));
                }
                break;
            }
            match ancestor.parent() {
                Some(p) if !p.as_os_str().is_empty() => ancestor = p,
                _ => break,
            }
        }
        Ok(TextSink {
            transform: transform.into(),
            dir,
            file_prefix,
            suffix: String::new(),
        })
    }

    /// Appends `suffix` (e.g. `.txt`) to every shard's name.
    pub fn with_suffix(mut self, suffix: &str) -> TextSink {
        self.suffix = suffix.into();
        self
    }

    /// The final name of shard `index` of `count`.
    pub fn shard_path(&self, index: usize, count: usize) -> PathBuf {
        self.dir.join(format!(
            "{}-{index:05}-of-{count:05}{}",
            self.file_prefix, self.suffix
        ))
    }
}

struct LineUnit {
    buffer: SinkBuffer,
}

impl Receiver<String> for LineUnit {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    #[inline]
    fn receive(&mut self, element: WindowedValue<String>) -> UnitResult {
        self.buffer.append::<ExecError>(|out| {
            out.extend_from_slice(element.value.as_bytes());
            out.push(b'\n');
            Ok(())
        })?;
        Ok(())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

impl SinkFactory for TextSink {
    fn unit(&self, _ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<String>(Box::new(LineUnit { buffer })))
    }

    fn begin(&self, job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            format!(
                "cannot create the output directory {}: {e}",
                self.dir.display()
            )
        })?;
        let temp_dir = self
            .dir
            .join(format!(".temp-sluice-{}-{}", self.file_prefix, job.job_id));
        std::fs::create_dir_all(&temp_dir).map_err(|e| {
            format!(
                "cannot create the temporary directory {}: {e}",
                temp_dir.display()
            )
        })?;
        Ok(Arc::new(TextSinkJob {
            sink: self.clone(),
            temp_dir,
            next_file: AtomicUsize::new(0),
            closed: Arc::default(),
            renamed: Mutex::default(),
        }))
    }
}

struct TextSinkJob {
    sink: TextSink,
    temp_dir: PathBuf,
    next_file: AtomicUsize,
    /// Temporary files of closed writers, with their worker.
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    /// The renames a commit made, in order, so that it can be undone until finalised.
    renamed: Mutex<Vec<(PathBuf, PathBuf)>>,
}

impl TextSinkJob {
    fn closed(&self) -> Vec<(usize, PathBuf)> {
        let mut files = self.closed.lock().map(|c| c.clone()).unwrap_or_default();
        files.sort();
        files
    }

    /// Shards of earlier runs under this prefix (any shard count).
    fn existing_shards(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.sink.dir) else {
            return Vec::new();
        };
        let prefix = format!("{}-", self.sink.file_prefix);
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(self.sink.suffix.as_str()))
            else {
                continue;
            };
            let is_shard = rest.len() == 14
                && rest.as_bytes()[5..9] == *b"-of-"
                && rest[..5].bytes().all(|b| b.is_ascii_digit())
                && rest[9..].bytes().all(|b| b.is_ascii_digit());
            if is_shard {
                found.push(entry.path());
            }
        }
        found.sort();
        found
    }

    /// Renames `from` to `to`, noting it for [`SinkJob::undo`].
    fn rename(&self, from: &Path, to: &Path) -> Result<(), BoxError> {
        std::fs::rename(from, to)
            .map_err(|e| format!("cannot rename {} to {}: {e}", from.display(), to.display()))?;
        if let Ok(mut renamed) = self.renamed.lock() {
            renamed.push((from.to_path_buf(), to.to_path_buf()));
        }
        Ok(())
    }

    /// Moves the earlier shards aside and the new ones into place.
    fn publish(&self, files: &[(usize, PathBuf)]) -> Result<(), BoxError> {
        let count = files.len();
        let existing = self.existing_shards();
        if !existing.is_empty() {
            // Kept until the job is final, so that a failed commit can put them back.
            let aside = self.temp_dir.join("replaced");
            std::fs::create_dir_all(&aside)
                .map_err(|e| format!("cannot create {}: {e}", aside.display()))?;
            for old in existing {
                if let Some(name) = old.file_name() {
                    log::info!("replacing {} from an earlier run", old.display());
                    self.rename(&old, &aside.join(name))?;
                }
            }
        }
        for (i, (_, temp)) in files.iter().enumerate() {
            self.rename(temp, &self.sink.shard_path(i, count))?;
        }
        Ok(())
    }
}

impl SinkJob for TextSinkJob {
    fn open(&self, worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.temp_dir.join(format!("worker-{worker:05}-{n:05}"));
        let file =
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Box::new(TextWriter {
            closed: Arc::clone(&self.closed),
            worker,
            path,
            out: BufWriter::with_capacity(1 << 20, file),
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let mut files = self.closed();
        if files.is_empty() {
            // A job that wrote nothing still produces one (empty) shard, as Beam does.
            let path = self.temp_dir.join("empty");
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            files.push((0, path));
        }
        let count = files.len();
        if let Err(e) = self.publish(&files) {
            // Nothing half done: the renames made so far are reversed.
            self.undo();
            return Err(e);
        }
        Ok(format!(
            "{}: {} shard{} at {}",
            self.sink.transform,
            count,
            if count == 1 { "" } else { "s" },
            self.sink
                .shard_path(0, count)
                .with_file_name(format!(
                    "{}-*-of-{count:05}{}",
                    self.sink.file_prefix, self.sink.suffix
                ))
                .display()
        ))
    }

    fn undo(&self) {
        let renamed = self
            .renamed
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for (from, to) in renamed.into_iter().rev() {
            if let Err(e) = std::fs::rename(&to, &from) {
                log::error!(
                    "could not undo the commit of {}: renaming {} back to {} failed: {e}",
                    self.sink.transform,
                    to.display(),
                    from.display()
                );
            }
        }
    }

    fn finalize(&self) {
        if let Ok(mut renamed) = self.renamed.lock() {
            renamed.clear();
        }
        let _ = std::fs::remove_dir_all(&self.temp_dir);
    }

    fn abort(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.temp_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!(
                "could not remove temporary output {}: {e}",
                self.temp_dir.display()
            );
        }
    }
}

struct TextWriter {
    closed: Arc<Mutex<Vec<(usize, PathBuf)>>>,
    worker: usize,
    path: PathBuf,
    out: BufWriter<File>,
}

impl SinkWriter for TextWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        self.out
            .write_all(&bundle.bytes)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()).into())
    }

    fn close(mut self: Box<Self>) -> Result<(), BoxError> {
        self.out
            .flush()
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.closed
            .lock()
            .map_err(|_| "a writer of this sink panicked")?
            .push((self.worker, self.path.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sink: &TextSink, id: &str) -> Arc<dyn SinkJob> {
        sink.begin(&JobInfo { job_id: id.into() }).unwrap()
    }

    fn write(job: &Arc<dyn SinkJob>, worker: usize, text: &str) {
        let mut w = job.open(worker).unwrap();
        w.write_bundle(SinkBytes {
            bytes: text.as_bytes().to_vec(),
            records: 1,
        })
        .unwrap();
        w.close().unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn shards_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/counts");
        let sink = TextSink::new("Write", prefix.to_str().unwrap()).unwrap();
        assert!(
            !dir.path().join("out").exists(),
            "validation must not create anything"
        );
        let job = job(&sink, "j1");
        write(&job, 1, "b\n");
        write(&job, 0, "a\n");
        assert!(
            listing(&dir.path().join("out"))
                .iter()
                .all(|n| n.starts_with(".temp-sluice"))
        );
        job.commit().unwrap();
        job.finalize();
        assert_eq!(
            listing(&dir.path().join("out")),
            ["counts-00000-of-00002", "counts-00001-of-00002"]
        );
        assert_eq!(
            std::fs::read_to_string(sink.shard_path(0, 2)).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        let job = job(&sink, "j2");
        write(&job, 0, "a\n");
        job.abort();
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn an_empty_job_writes_one_empty_shard_and_replaces_older_shards() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        let first = job(&sink, "j3");
        write(&first, 0, "a\n");
        write(&first, 1, "b\n");
        first.commit().unwrap();
        first.finalize();
        let second = job(&sink, "j4");
        second.commit().unwrap();
        second.finalize();
        assert_eq!(listing(dir.path()), ["x-00000-of-00001"]);
        assert_eq!(std::fs::read_to_string(sink.shard_path(0, 1)).unwrap(), "");
    }

    /// A committed run of `lines` (one shard per line), made final.
    fn committed_run(sink: &TextSink, id: &str, lines: &[&str]) {
        let run = job(sink, id);
        for (worker, line) in lines.iter().enumerate() {
            write(&run, worker, line);
        }
        run.commit().unwrap();
        run.finalize();
    }

    fn contents(dir: &Path) -> Vec<(String, String)> {
        listing(dir)
            .into_iter()
            .map(|name| {
                let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
                (name, text)
            })
            .collect()
    }

    #[test]
    fn a_commit_that_fails_leaves_the_earlier_output_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n", "b\n"]);
        let before = contents(dir.path());
        assert_eq!(before.len(), 2);
        let failing = job(&sink, "new");
        write(&failing, 0, "c\n");
        write(&failing, 1, "d\n");
        // The second of the new files vanishes before the commit renames it.
        let temp = dir.path().join(".temp-sluice-x-new");
        let mut temps = listing(&temp);
        temps.sort();
        std::fs::remove_file(temp.join(&temps[1])).unwrap();
        let err = failing.commit().unwrap_err().to_string();
        assert!(err.contains("cannot rename"), "{err}");
        failing.abort();
        assert_eq!(contents(dir.path()), before);
    }

    #[test]
    fn a_commit_undone_for_another_sink_restores_the_earlier_output() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextSink::new("Write", dir.path().join("x").to_str().unwrap()).unwrap();
        committed_run(&sink, "old", &["a\n"]);
        let before = contents(dir.path());
        let run = job(&sink, "new");
        write(&run, 0, "c\n");
        write(&run, 1, "d\n");
        run.commit().unwrap();
        assert!(listing(dir.path()).contains(&"x-00001-of-00002".to_string()));
        run.undo();
        run.abort();
        assert_eq!(contents(dir.path()), before);
    }

    #[test]
    fn unwritable_locations_fail_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "").unwrap();
        let err = TextSink::new("Write", file.join("out").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'Write'") && err.contains("is a file, not a directory"),
            "{err}"
        );
        let err = TextSink::new("Write", "some/dir/").unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
