//! Input that no retry can mend: lines that are not UTF-8, corrupt compressed files.
//! They fail the job at once with one clear message — or, where the pipeline asked, go
//! to a dead-letter output — and can be read as bytes or lossily.

use std::io::Write;

use sluice::prelude::*;

use crate::kit::{WORKERS, pipeline};

/// A file of 2,000 good lines with two lines that are not UTF-8 among them.
fn mixed_file(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>, Vec<u64>) {
    let path = dir.join("mixed.txt");
    let mut bytes = Vec::new();
    let mut good = Vec::new();
    let mut bad_offsets = Vec::new();
    for i in 0..2_000 {
        if i == 500 || i == 1_500 {
            bad_offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(b"caf\xe9 latin-1 line\n");
        } else {
            let line = format!("line {i}");
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            good.push(line);
        }
    }
    std::fs::write(&path, bytes).unwrap();
    (path, good, bad_offsets)
}

/// A gzip file whose compressed stream is damaged after its first part.
fn corrupt_gzip(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("broken.txt.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..20_000 {
        writeln!(gz, "line {i} {}", i * 7919 % 1000).unwrap();
    }
    let mut bytes = gz.finish().unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Regression: a line that is not UTF-8 was retried four times (and logged each time)
/// before the job failed.
#[test]
fn regression_a_line_that_is_not_utf8_fails_the_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, offsets) = mixed_file(dir.path());
    let p = pipeline(2);
    let _ = p
        .read_text("ReadLines", path.to_str().unwrap())
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let error = result.error().unwrap().to_string();
    assert!(
        error.contains("after 1 attempt:")
            && error.contains("'ReadLines'")
            && error.contains("mixed.txt is not UTF-8")
            && error.contains(&format!("offset {}", offsets[0] + 3))
            && error.contains("dead-letter"),
        "{error}"
    );
    let read = result.metrics().transform("ReadLines").unwrap();
    assert_eq!(read.failed_attempts, 1, "not retried");
}

/// Regression: a corrupt gzip stream was retried like a transient failure.
#[test]
fn regression_a_corrupt_gzip_file_fails_the_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = corrupt_gzip(dir.path());
    let p = pipeline(2);
    let _ = p
        .read_text("ReadLines", path.to_str().unwrap())
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let error = result.error().unwrap().to_string();
    assert!(
        error.contains("after 1 attempt:") && error.contains("broken.txt.gz is corrupt"),
        "{error}"
    );
}

#[test]
fn bad_lines_and_corrupt_files_go_to_the_dead_letter_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good, offsets) = mixed_file(dir.path());
    corrupt_gzip(dir.path());
    for workers in WORKERS {
        let p = pipeline(workers);
        let (lines, bad) = p.read_text_with_dead_letter(
            "ReadLines",
            ReadText::from(&format!("{}/*", dir.path().display())),
        );
        let lines = lines.collect("Lines");
        let bad = bad.collect("Bad");
        p.run().unwrap().wait_until_finish().unwrap();
        let bad = bad.values();
        let mut in_mixed: Vec<&BadRecord> = bad
            .iter()
            .filter(|b| b.file.ends_with("mixed.txt"))
            .collect();
        in_mixed.sort_by_key(|b| b.offset);
        assert_eq!(
            in_mixed.iter().map(|b| b.offset).collect::<Vec<_>>(),
            offsets,
            "{workers} workers"
        );
        assert_eq!(in_mixed[0].raw, b"caf\xe9 latin-1 line");
        assert!(
            in_mixed[0].error.contains("invalid UTF-8 at byte 3"),
            "{:?}",
            in_mixed[0]
        );
        let in_gzip: Vec<&BadRecord> = bad.iter().filter(|b| b.file.ends_with(".gz")).collect();
        assert_eq!(in_gzip.len(), 1, "{workers} workers: {bad:?}");
        assert!(in_gzip[0].error.contains("corrupt"), "{:?}", in_gzip[0]);
        // Every good line of the mixed file, and the gzip file's lines before the damage
        // (a damaged stream may decode to some garbage before the damage is detected).
        let lines: std::collections::HashSet<String> = lines.values().into_iter().collect();
        for line in &good {
            assert!(lines.contains(line), "{workers} workers: {line} missing");
        }
        for i in 0..1_000 {
            let line = format!("line {i} {}", i * 7919 % 1000);
            assert!(lines.contains(&line), "{workers} workers: {line} missing");
        }
        assert!(lines.len() < good.len() + 20_000);
    }
}

#[test]
fn lines_that_are_not_utf8_can_be_read_as_bytes_or_lossily() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = mixed_file(dir.path());
    let p = pipeline(2);
    let bytes = p
        .read_text_bytes("ReadBytes", path.to_str().unwrap())
        .collect("Bytes");
    let lossy = p
        .read_text_with("ReadLossy", ReadText::from(path.to_str().unwrap()).lossy())
        .collect("Lossy");
    p.run().unwrap().wait_until_finish().unwrap();
    let bytes = bytes.values();
    assert_eq!(bytes.len(), 2_000);
    assert_eq!(
        bytes
            .iter()
            .filter(|b| b.as_slice() == b"caf\xe9 latin-1 line")
            .count(),
        2
    );
    let lossy = lossy.values();
    assert_eq!(lossy.len(), 2_000);
    assert_eq!(
        lossy
            .iter()
            .filter(|l| *l == "caf\u{fffd} latin-1 line")
            .count(),
        2
    );
}

/// Parses numbers; a line that is not one is a permanent failure.
fn parse(line: String) -> Result<u64, Permanent> {
    line.parse()
        .map_err(|e| Permanent::new(format!("not a number ({e}): {line}")))
}

#[test]
fn a_permanent_error_from_user_code_fails_at_once_or_is_dead_lettered() {
    let lines: Vec<String> = (0..1_000)
        .map(|i| if i == 600 { "x".into() } else { i.to_string() })
        .collect();
    let p = pipeline(2);
    let _ = p
        .create("Lines", lines.clone())
        .try_map("Parse", parse)
        .collect("Out");
    let result = p.run().unwrap();
    assert_eq!(result.state(), JobState::Failed);
    let error = result.error().unwrap().to_string();
    assert!(
        error.contains("after 1 attempt:") && error.contains("not a number"),
        "{error}"
    );
    // With a dead-letter output it is set aside (on the last attempt) instead.
    #[derive(Clone)]
    struct Parse;
    impl DoFn for Parse {
        type In = String;
        type Out = u64;
        fn process(&mut self, line: String, ctx: &mut Context<'_, u64>) -> Result<(), BoxError> {
            ctx.emit(parse(line)?);
            Ok(())
        }
    }
    let p = pipeline(2);
    let (numbers, dead) = p
        .create("Lines", lines)
        .par_do_with_dead_letter("Parse", Parse);
    let numbers = numbers.collect("Numbers");
    let dead = dead.collect("Dead");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(numbers.values().len(), 999);
    let dead = dead.values();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].element, "x");
}
