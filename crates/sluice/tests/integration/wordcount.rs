//! The wordcount example's pipeline, end to end.

use std::io::Write;

use crate::kit::{WORKERS, count_words, parse_counts, pipeline, read_lines, shards};

use crate::wordcount_example as example;

fn run_wordcount(workers: usize, input: &str, output: &std::path::Path) -> sluice::PipelineResult {
    let p = pipeline(workers);
    example::build(&p, input, output.to_str().unwrap());
    p.run().unwrap()
}

#[test]
fn wordcount_equals_a_plain_hashmap_count_on_every_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.txt");
    sluice::io::corpus::write_file(&input, 3_000_000, 7).unwrap();
    let expected = count_words(&std::fs::read_to_string(&input).unwrap());
    for workers in WORKERS {
        let output = dir.path().join(format!("w{workers}/counts"));
        let result = run_wordcount(workers, input.to_str().unwrap(), &output);
        assert_eq!(result.state(), sluice::JobState::Done);
        assert_eq!(
            parse_counts(&read_lines(&output)),
            expected,
            "{workers} workers"
        );
        let total: u64 = expected.values().sum();
        let m = result.metrics();
        assert_eq!(
            m.transform("ExtractWords").unwrap().elements_out,
            Some(total)
        );
        assert_eq!(
            m.transform("CountWords").unwrap().elements_out,
            Some(expected.len() as u64)
        );
        assert_eq!(
            m.transform("Write").unwrap().elements_in,
            Some(expected.len() as u64)
        );
        assert_eq!(
            m.transform("ReadLines").unwrap().bytes_in,
            Some(std::fs::metadata(&input).unwrap().len())
        );
    }
}

#[test]
fn several_input_files_by_pattern() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.txt"), "apple banana\napple\n").unwrap();
    std::fs::write(dir.path().join("in/b.txt"), "banana cherry's").unwrap();
    let output = dir.path().join("out/counts");
    run_wordcount(2, &format!("{}/in/*.txt", dir.path().display()), &output)
        .wait_until_finish()
        .unwrap();
    let counts = parse_counts(&read_lines(&output));
    assert_eq!(counts.len(), 3);
    assert_eq!(
        (counts["apple"], counts["banana"], counts["cherry's"]),
        (2, 2, 1)
    );
}

#[test]
fn empty_input_writes_one_empty_shard() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.txt");
    std::fs::write(&input, "").unwrap();
    let output = dir.path().join("counts");
    run_wordcount(2, input.to_str().unwrap(), &output)
        .wait_until_finish()
        .unwrap();
    let files = shards(&output);
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("counts-00000-of-00001"));
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "");
}

#[test]
fn one_line_input_without_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one.txt");
    std::fs::write(&input, "to be or not to be").unwrap();
    let output = dir.path().join("counts");
    for workers in WORKERS {
        run_wordcount(workers, input.to_str().unwrap(), &output)
            .wait_until_finish()
            .unwrap();
        let counts = parse_counts(&read_lines(&output));
        assert_eq!(
            counts,
            count_words("to be or not to be"),
            "{workers} workers"
        );
    }
}

#[test]
fn gzip_input_is_read_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("corpus.txt");
    sluice::io::corpus::write_file(&plain, 200_000, 3).unwrap();
    let text = std::fs::read_to_string(&plain).unwrap();
    let gz = dir.path().join("corpus.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let output = dir.path().join("counts");
    let result = run_wordcount(2, gz.to_str().unwrap(), &output);
    result.wait_until_finish().unwrap();
    assert_eq!(parse_counts(&read_lines(&output)), count_words(&text));
}

#[test]
fn a_fixed_shard_count_holds_on_every_worker_count() {
    use sluice::transforms::text::WriteText;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5_000).map(|i| format!("line {i}")).collect();
    for workers in WORKERS {
        for n in [1, 3] {
            let prefix = dir.path().join(format!("w{workers}-n{n}/out"));
            let p = pipeline(workers);
            p.create("Lines", lines.clone()).write_text_with(
                "Write",
                WriteText::to(prefix.to_str().unwrap()).with_num_shards(n),
            );
            p.run().unwrap().wait_until_finish().unwrap();
            let found = shards(&prefix);
            assert_eq!(found.len(), n, "{workers} workers, {n} shards");
            assert!(found[0].to_string_lossy().ends_with(&format!("-of-{n:05}")));
            let mut got = read_lines(&prefix);
            got.sort();
            let mut want = lines.clone();
            want.sort();
            assert_eq!(got, want, "{workers} workers, {n} shards");
        }
    }
}
