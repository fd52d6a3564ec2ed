//! CSV and JSON lines: typed reads and writes, split by byte ranges, compressed inputs,
//! and malformed records reported with their file, line and column.

use serde::{Deserialize, Serialize};
use sluice::transforms::records::{ReadCsv, ReadJson, WriteCsv};

use crate::kit::{pipeline, shards, sorted};

#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Sale {
    region: String,
    product: String,
    amount: f64,
}
impl sluice::SerdeCoder for Sale {}

/// Sales whose text needs quoting: commas, quotes, a non-ASCII name.
fn sales(n: usize) -> Vec<Sale> {
    (0..n)
        .map(|i| Sale {
            region: ["east", "west, coast", "n\u{f6}rd", "say \"hi\""][i % 4].to_string(),
            product: format!("p{}", i % 17),
            amount: i as f64 * 0.25,
        })
        .collect()
}

/// `sales` as CSV text with a header row, quoting regions that need it.
fn csv_text(sales: &[Sale]) -> String {
    let mut text = String::from("region,product,amount\n");
    for s in sales {
        let region = if s.region.contains([',', '"']) {
            format!("\"{}\"", s.region.replace('"', "\"\""))
        } else {
            s.region.clone()
        };
        text.push_str(&format!("{region},{},{}\n", s.product, s.amount));
    }
    text
}

fn by_amount(mut v: Vec<Sale>) -> Vec<Sale> {
    v.sort_by(|a, b| a.amount.total_cmp(&b.amount));
    v
}

#[test]
fn csv_and_json_lines_round_trip_on_one_and_two_workers() {
    let input = sales(5_000);
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("csv");
        let json = dir.path().join("json");
        let p = pipeline(workers);
        let made = p.create("Sales", input.clone());
        made.write_csv_with(
            "WriteCsv",
            WriteCsv::to(csv.to_str().unwrap()).with_num_shards(3),
        );
        made.write_json("WriteJson", json.to_str().unwrap());
        p.run().unwrap().wait_until_finish().unwrap();
        let written = shards(&csv);
        assert_eq!(written.len(), 3);
        for shard in &written {
            let text = std::fs::read_to_string(shard).unwrap();
            assert_eq!(text.lines().next(), Some("region,product,amount"));
        }

        let p = pipeline(workers);
        let from_csv = p
            .read_csv::<Sale>("ReadCsv", &format!("{}-*.csv", csv.display()))
            .collect("Csv");
        let from_json = p
            .read_json::<Sale>("ReadJson", &format!("{}-*.json", json.display()))
            .collect("Json");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(
            by_amount(from_csv.values()),
            input,
            "CSV, {workers} workers"
        );
        assert_eq!(
            by_amount(from_json.values()),
            input,
            "JSON, {workers} workers"
        );
    }
}

#[test]
fn files_larger_than_a_split_are_read_once_each_record_by_two_workers() {
    // About 3 MB: several byte-range splits, each starting mid-line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let input = sales(60_000);
    let text = csv_text(&input);
    std::fs::write(&path, &text).unwrap();
    let p = pipeline(2);
    let read = p
        .read_csv::<Sale>("Read", path.to_str().unwrap())
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(by_amount(read.values()), input);
}

#[test]
fn compressed_inputs_are_read_by_extension_or_by_option() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = sales(500);
    let lines: String = input
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).unwrap();
    std::fs::write(dir.path().join("a.json.gz"), gz.finish().unwrap()).unwrap();
    let zst = zstd::encode_all(lines.as_bytes(), 3).unwrap();
    std::fs::write(dir.path().join("b.json.zst"), &zst).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(lines.as_bytes()).unwrap();
    std::fs::write(dir.path().join("c.json.bz2"), bz.finish().unwrap()).unwrap();
    // No telling extension: the option says.
    std::fs::write(dir.path().join("d.data"), &zst).unwrap();

    let p = pipeline(2);
    let by_extension = p
        .read_json::<Sale>("ByExtension", &format!("{}/*.json.*", dir.path().display()))
        .collect("A");
    let by_option = p
        .read_json_with::<Sale>(
            "ByOption",
            ReadJson::from(dir.path().join("d.data").to_str().unwrap()).with_compression("zstd"),
        )
        .collect("B");
    p.run().unwrap().wait_until_finish().unwrap();
    let mut three: Vec<Sale> = [input.clone(), input.clone(), input.clone()].concat();
    three = by_amount(three);
    assert_eq!(by_amount(by_extension.values()), three);
    assert_eq!(by_amount(by_option.values()), input);
}

#[test]
fn csv_without_a_header_maps_fields_by_position_and_other_delimiters_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.tsv");
    std::fs::write(&path, "east\tp1\t2.5\n\"we\tst\"\tp2\t4\n").unwrap();
    let p = pipeline(1);
    let read = p
        .read_csv_with::<Sale>(
            "Read",
            ReadCsv::from(&format!("file://{}", path.display()))
                .without_header()
                .with_delimiter(b'\t'),
        )
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    let got = by_amount(read.values());
    assert_eq!(got[0].region, "east");
    assert_eq!(got[1].region, "we\tst");
    assert_eq!(got[1].amount, 4.0);
}

/// A file of `n` good sales with a bad amount on line `bad_line` (counting the header).
fn with_a_bad_row(path: &std::path::Path, n: usize, bad_line: usize) {
    let mut text = String::from("region,product,amount\n");
    for i in 0..n {
        if i + 2 == bad_line {
            text.push_str("west,p9,twelve\n");
        } else {
            text.push_str(&format!("east,p{},{}\n", i % 5, i));
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_malformed_csv_record_fails_the_job_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sales.csv");
    // Far into a file of several splits, so that the line is counted across them.
    with_a_bad_row(&path, 150_000, 120_000);
    let p = pipeline(2);
    let _ = p.read_csv::<Sale>("ReadSales", path.to_str().unwrap());
    let error = crate::kit::job_failure(&p);
    assert!(
        error.contains("ReadSales")
            && error.contains("sales.csv")
            && error.contains("line 120000, column 3")
            && error.contains("amount"),
        "{error}"
    );
    assert!(error.contains("after 1 attempt"), "not retried: {error}");
}

#[test]
fn malformed_records_go_to_the_dead_letter_output_with_their_position_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sales.csv");
    with_a_bad_row(&csv, 150_000, 120_000);
    let json = dir.path().join("sales.json");
    std::fs::write(
        &json,
        "{\"region\":\"east\",\"product\":\"p\",\"amount\":1}\n\n  {\"region\":\"west\",\"amount\":2}\n{\"region\":\"x\",\"product\":\"q\",\"amount\":3}\n",
    )
    .unwrap();
    for workers in [1, 2] {
        let p = pipeline(workers);
        let (good, bad) =
            p.read_csv_with_dead_letter::<Sale>("ReadCsv", ReadCsv::from(csv.to_str().unwrap()));
        let (good_json, bad_json) = p
            .read_json_with_dead_letter::<Sale>("ReadJson", ReadJson::from(json.to_str().unwrap()));
        let (good, bad) = (good.collect("Good"), bad.collect("Bad"));
        let (good_json, bad_json) = (good_json.collect("GoodJson"), bad_json.collect("BadJson"));
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(good.values().len(), 149_999);
        let bad = bad.values();
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line, bad[0].column), (120_000, 3));
        assert_eq!(bad[0].raw, b"west,p9,twelve");
        assert!(bad[0].file.ends_with("sales.csv"), "{:?}", bad[0]);
        assert!(bad[0].error.contains("amount"), "{:?}", bad[0]);

        assert_eq!(
            sorted(good_json.values().into_iter().map(|s| s.region).collect()),
            ["east", "x"]
        );
        let bad_json = bad_json.values();
        assert_eq!(bad_json.len(), 1);
        assert_eq!(bad_json[0].line, 3);
        assert!(bad_json[0].column > 0);
        assert_eq!(bad_json[0].raw, b"  {\"region\":\"west\",\"amount\":2}");
        assert!(bad_json[0].error.contains("product"), "{:?}", bad_json[0]);
    }
}

#[test]
fn unusable_inputs_and_outputs_are_reported_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(1);
    let _ = p.read_csv::<Sale>(
        "ReadNothing",
        &format!("{}/none-*.csv", dir.path().display()),
    );
    let _ = p.read_json_with::<Sale>(
        "ReadOdd",
        ReadJson::from(&format!("{}/x", dir.path().display())).with_compression("lzma"),
    );
    let pairs = p.create("Pairs", vec![(1u32, 2u32)]);
    pairs.write_csv("WritePairs", dir.path().join("pairs").to_str().unwrap());
    pairs.write_json_with(
        "WriteOdd",
        sluice::transforms::text::WriteText::to(dir.path().join("odd").to_str().unwrap())
            .with_compression("lzma"),
    );
    // A URL scheme that is not a file system or object store.
    let _ = p.read_csv::<Sale>("ReadFtp", "ftp://host/sales-*.csv");
    let error = p.run().unwrap_err().to_string();
    assert!(error.contains("ReadNothing"), "{error}");
    assert!(
        error.contains("ReadFtp") && error.contains("ftp:// URLs are not supported"),
        "{error}"
    );
    assert!(
        error.contains("ReadOdd") && error.contains("lzma"),
        "{error}"
    );
    assert!(
        error.contains("WritePairs") && error.contains("with_header"),
        "{error}"
    );
    assert!(error.contains("WriteOdd/Write"), "{error}");
    // A tuple with named columns is fine.
    let out = dir.path().join("named");
    let p = pipeline(1);
    p.create("Pairs", vec![(1u32, 2u32)]).write_csv_with(
        "Write",
        WriteCsv::to(out.to_str().unwrap())
            .with_header(&["a", "b"])
            .with_num_shards(1),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    let text = std::fs::read_to_string(format!("{}-00000-of-00001.csv", out.display())).unwrap();
    assert_eq!(text, "a,b\n1,2\n");
}

#[test]
fn compressed_outputs_are_written_and_read_back() {
    use sluice::transforms::text::WriteText;
    let input = sales(3_000);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("csv");
    let json = dir.path().join("json");
    let p = pipeline(2);
    let made = p.create("Sales", input.clone());
    made.write_csv_with(
        "WriteCsv",
        WriteCsv::to(csv.to_str().unwrap())
            .with_compression("zstd")
            .with_num_shards(3),
    );
    made.write_json_with(
        "WriteJson",
        // A file:// URL names the same local prefix.
        WriteText::to(&format!("file://{}", json.display())).with_suffix(".json.gz"),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    let csv_shards = shards(&csv);
    assert_eq!(csv_shards.len(), 3);
    for shard in &csv_shards {
        let name = shard.to_str().unwrap();
        assert!(name.ends_with(".csv.zst"), "{name}");
        // Really compressed: zstd's magic number.
        assert_eq!(
            &std::fs::read(shard).unwrap()[..4],
            &[0x28, 0xb5, 0x2f, 0xfd]
        );
    }
    for shard in shards(&json) {
        assert_eq!(
            &std::fs::read(&shard).unwrap()[..2],
            &[0x1f, 0x8b],
            "{shard:?}"
        );
    }
    let p = pipeline(2);
    let from_csv = p
        .read_csv::<Sale>("ReadCsv", &format!("{}-*", csv.display()))
        .collect("Csv");
    let from_json = p
        .read_json::<Sale>("ReadJson", &format!("{}-*", json.display()))
        .collect("Json");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(by_amount(from_csv.values()), input);
    assert_eq!(by_amount(from_json.values()), input);
}

/// CSV rows as Arrow batches: a header-mapped schema (columns asked for in another
/// order than the file's, one column skipped) over a file of byte-range splits, with
/// quoted fields, on 1 and 2 workers, gives every row once (the amounts per region equal
/// the serde read's); gzip-compressed and header-less files read too; a schema column
/// missing from the header is refused before anything runs; a value that does not parse
/// fails the job naming the file, line and column (also as a batch's last row).
#[test]
fn csv_rows_are_read_as_arrow_batches() {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};
    use sluice::transforms::combiners::SumFn;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let input = sales(60_000);
    let text = csv_text(&input);
    std::fs::write(&path, &text).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("amount", DataType::Float64, false),
        Field::new("region", DataType::Utf8, false),
    ]));
    let sorted_pairs = |mut v: Vec<(String, f64)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut want: Vec<(String, f64)> = Vec::new();
    for s in &input {
        match want.iter_mut().find(|(r, _)| *r == s.region) {
            Some((_, total)) => *total += s.amount,
            None => want.push((s.region.clone(), s.amount)),
        }
    }
    let want = sorted_pairs(want);

    for workers in [1, 2] {
        let p = pipeline(workers);
        let batches = p.read_csv_batches(
            "Read",
            ReadCsv::from(path.to_str().unwrap()),
            schema.clone(),
        );
        let shapes = batches
            .map("Shape", |b| {
                let names: Vec<String> =
                    b.0.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                (names.join(","), b.0.num_rows())
            })
            .collect("Shapes");
        let totals = batches
            .combine_column_per_key("Totals", "region", "amount", SumFn::<f64>::default())
            .collect("Out");
        p.run().unwrap().wait_until_finish().unwrap();
        let shapes = shapes.values();
        assert!(
            shapes
                .iter()
                .all(|(names, rows)| names == "amount,region" && *rows <= 8_192)
        );
        assert_eq!(
            shapes.iter().map(|s| s.1).sum::<usize>(),
            60_000,
            "{workers} workers"
        );
        assert!(
            shapes.len() >= 8,
            "60,000 rows are at least 8 batches: {}",
            shapes.len()
        );
        assert_eq!(sorted_pairs(totals.values()), want, "{workers} workers");
    }

    // The same rows gzip-compressed and without a header (fields by position).
    let headless = dir.path().join("headless.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.split_once('\n').unwrap().1.as_bytes()).unwrap();
    std::fs::write(&headless, gz.finish().unwrap()).unwrap();
    let positional = Arc::new(Schema::new(vec![Field::new(
        "region",
        DataType::Utf8,
        false,
    )]));
    let p = pipeline(2);
    let rows = p
        .read_csv_batches(
            "ReadHeadless",
            ReadCsv::from(headless.to_str().unwrap()).without_header(),
            positional,
        )
        .map("Rows", |b| b.0.num_rows())
        .collect("Out");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(rows.values().iter().sum::<usize>(), 60_000);

    let p = pipeline(1);
    let wrong = Arc::new(Schema::new(vec![Field::new(
        "price",
        DataType::Float64,
        false,
    )]));
    let _ = p.read_csv_batches("ReadPrices", ReadCsv::from(path.to_str().unwrap()), wrong);
    let error = p.run().unwrap_err().to_string();
    assert!(
        error.contains("ReadPrices")
            && error.contains("big.csv")
            && error.contains("no column 'price'")
            && error.contains("region, product, amount"),
        "{error}"
    );

    // The last row of the first batch (8,192 rows after the header).
    let last = dir.path().join("last.csv");
    with_a_bad_row(&last, 10_000, 8_193);
    let p = pipeline(1);
    let _ = p.read_csv_batches(
        "ReadLast",
        ReadCsv::from(last.to_str().unwrap()),
        schema.clone(),
    );
    let error = crate::kit::job_failure(&p);
    assert!(
        error.contains("ReadLast") && error.contains("line 8193, column 3 ('amount')"),
        "{error}"
    );

    let bad = dir.path().join("sales.csv");
    with_a_bad_row(&bad, 150_000, 120_000);
    let p = pipeline(2);
    let _ = p.read_csv_batches("ReadSales", ReadCsv::from(bad.to_str().unwrap()), schema);
    let error = crate::kit::job_failure(&p);
    assert!(
        error.contains("ReadSales")
            && error.contains("sales.csv")
            && error.contains("line 120000, column 3 ('amount')")
            && error.contains("twelve"),
        "{error}"
    );
    assert!(error.contains("after 1 attempt"), "not retried: {error}");
}
