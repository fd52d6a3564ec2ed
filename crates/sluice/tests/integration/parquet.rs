//! Parquet: rows written in shards and read back by row group, narrower types reading
//! only their columns, files that do not fit the type refused before anything runs,
//! Arrow record batches read and written as they are.

use serde::{Deserialize, Serialize};
use sluice::transforms::parquet::WriteParquet;

use crate::kit::{pipeline, shards};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Row {
    region: String,
    product: String,
    total: f64,
    count: i64,
    note: Option<String>,
}
impl sluice::SerdeCoder for Row {}

/// Just two of the columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Narrow {
    count: i64,
    region: String,
}
impl sluice::SerdeCoder for Narrow {}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            region: ["east", "west", "n\u{f6}rd"][i % 3].into(),
            product: format!("p{}", i % 11),
            total: i as f64 * 1.5,
            count: i as i64,
            note: (i % 4 == 0).then(|| format!("note {i}")),
        })
        .collect()
}

/// A batch's column count, the sum of its first column (int64), and its row count.
fn shape(b: sluice::transforms::parquet::ArrowBatch) -> (usize, i64, usize) {
    use arrow_array::{Array, Int64Array};
    let column = b.0.column(0).clone();
    let counts = column.as_any().downcast_ref::<Int64Array>().unwrap();
    (
        b.0.num_columns(),
        counts.values().iter().sum::<i64>(),
        b.0.num_rows(),
    )
}

/// Writes `rows(n)` as Parquet under `dir` in `shards` shards of row groups of
/// `group_rows` rows, and returns the pattern matching the shards.
fn write_rows(dir: &std::path::Path, n: usize, shards: usize, group_rows: usize) -> String {
    let prefix = dir.join("rows");
    let p = pipeline(1);
    p.create("Rows", rows(n)).write_parquet_with(
        "Write",
        WriteParquet::to(prefix.to_str().unwrap())
            .with_num_shards(shards)
            .with_row_group_rows(group_rows),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    format!("{}-*.parquet", prefix.display())
}

fn by_count(mut v: Vec<Row>) -> Vec<Row> {
    v.sort_by_key(|r| r.count);
    v
}

#[test]
fn rows_round_trip_by_row_group_on_one_and_two_workers() {
    let input = rows(10_000);
    for (workers, shards_wanted) in [(1, 0), (2, 0), (2, 3)] {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("rows");
        let p = pipeline(workers);
        p.create("Rows", input.clone()).write_parquet_with(
            "Write",
            WriteParquet::to(prefix.to_str().unwrap())
                .with_num_shards(shards_wanted)
                .with_row_group_rows(1_000)
                .with_compression("zstd"),
        );
        p.run().unwrap().wait_until_finish().unwrap();
        let written = shards(&prefix);
        if shards_wanted > 0 {
            assert_eq!(written.len(), shards_wanted);
        }
        assert!(
            written
                .iter()
                .all(|f| f.to_str().unwrap().ends_with(".parquet"))
        );

        let pattern = format!("{}-*.parquet", prefix.display());
        let p = pipeline(2);
        let back = p.read_parquet::<Row>("Read", &pattern).collect("Rows");
        let narrow = p
            .read_parquet::<Narrow>("ReadNarrow", &pattern)
            .collect("Narrow");
        let result = p.run().unwrap();
        let metrics = result.metrics().clone();
        result.wait_until_finish().unwrap();
        assert_eq!(
            by_count(back.values()),
            input,
            "{workers} workers, {shards_wanted} shards"
        );
        let mut narrow = narrow.values();
        narrow.sort_by_key(|n| n.count);
        assert_eq!(narrow.len(), input.len());
        assert!(
            narrow
                .iter()
                .zip(&input)
                .all(|(n, r)| n.count == r.count && n.region == r.region)
        );
        // Ten row groups or more: the read was split by them.
        let read = metrics.stages.iter().map(|s| s.bundles).max().unwrap_or(0);
        assert!(read >= 10, "{metrics:?}");
    }
}

#[test]
fn files_that_do_not_fit_the_type_are_refused_before_anything_runs() {
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Missing {
        region: String,
        price: f64,
    }
    impl sluice::SerdeCoder for Missing {}
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct WrongType {
        region: f64,
    }
    impl sluice::SerdeCoder for WrongType {}

    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("rows");
    let p = pipeline(1);
    p.create("Rows", rows(10)).write_parquet_with(
        "Write",
        WriteParquet::to(prefix.to_str().unwrap()).with_num_shards(1),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    std::fs::write(
        dir.path().join("fake-00000-of-00001.parquet"),
        "not parquet",
    )
    .unwrap();

    let file = format!("{}-00000-of-00001.parquet", prefix.display());
    let p = pipeline(1);
    let _ = p.read_parquet::<Missing>("ReadMissing", &file);
    let _ = p.read_parquet::<WrongType>("ReadWrongType", &file);
    let _ = p.read_parquet::<Row>("ReadFake", &format!("{}/fake-*", dir.path().display()));
    let _ = p.read_parquet::<Row>("ReadNothing", &format!("{}/none-*", dir.path().display()));
    let error = p.run().unwrap_err().to_string();
    assert!(
        error.contains("ReadMissing") && error.contains("no column 'price'"),
        "{error}"
    );
    assert!(
        error.contains("ReadWrongType") && error.contains("column 'region' holds string"),
        "{error}"
    );
    assert!(
        error.contains("ReadFake") && error.contains("not a Parquet file"),
        "{error}"
    );
    assert!(error.contains("ReadNothing"), "{error}");

    let p = pipeline(1);
    p.create("Rows", rows(1)).write_parquet_with(
        "WriteOdd",
        WriteParquet::to(dir.path().join("odd").to_str().unwrap()).with_compression("lzo"),
    );
    let error = p.run().unwrap_err().to_string();
    assert!(
        error.contains("WriteOdd") && error.contains("lzo"),
        "{error}"
    );
}

#[test]
fn record_batches_are_read_as_arrow_with_the_columns_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = write_rows(dir.path(), 5_000, 1, 2_000);
    let p = pipeline(2);
    let _ = p.read_parquet_batches("ReadNoSuch", &pattern, Some(&["price"]));
    let error = p.run().unwrap_err().to_string();
    assert!(
        error.contains("ReadNoSuch") && error.contains("'price'"),
        "{error}"
    );

    let p = pipeline(2);
    // Batches cross a shuffle (their coder is Arrow IPC) before they are looked at.
    let shapes = p
        .read_parquet_batches("Read", &pattern, Some(&["count"]))
        .reshuffle("Spread")
        .map("Shape", shape)
        .collect("Shapes");
    p.run().unwrap().wait_until_finish().unwrap();
    let shapes = shapes.values();
    assert_eq!(
        shapes.len(),
        3,
        "three row groups, one batch each: {shapes:?}"
    );
    assert!(shapes.iter().all(|s| s.0 == 1));
    assert_eq!(shapes.iter().map(|s| s.2).sum::<usize>(), 5_000);
    assert_eq!(
        shapes.iter().map(|s| s.1).sum::<i64>(),
        (0..5_000).sum::<i64>()
    );
}

/// Arrow batches written as they are: read as batches, transformed in Arrow (a column
/// dropped), written with the schema given, read back as rows on 1 and 2 workers, with
/// a fixed shard count; a batch that does not fit the schema fails the job and leaves
/// no shard.
#[test]
fn record_batches_are_written_as_they_are() {
    use arrow_schema::{DataType, Field, Schema};
    use sluice::transforms::parquet::ArrowBatch;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("rows");
    let p = pipeline(1);
    p.create("Rows", rows(6_000)).write_parquet_with(
        "Write",
        WriteParquet::to(source.to_str().unwrap()).with_row_group_rows(1_000),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    let pattern = format!("{}-*.parquet", source.display());
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
    ]));
    for (workers, shards_wanted) in [(1, 0), (2, 2)] {
        let prefix = dir.path().join(format!("batches-{workers}"));
        let p = pipeline(workers);
        p.read_parquet_batches("Read", &pattern, Some(&["region", "count"]))
            .write_parquet_batches(
                "WriteBatches",
                WriteParquet::to(prefix.to_str().unwrap())
                    .with_num_shards(shards_wanted)
                    .with_compression("zstd"),
                schema.clone(),
            );
        p.run().unwrap().wait_until_finish().unwrap();
        if shards_wanted > 0 {
            assert_eq!(shards(&prefix).len(), shards_wanted);
        }
        let p = pipeline(2);
        let back = p
            .read_parquet::<Narrow>("ReadBack", &format!("{}-*.parquet", prefix.display()))
            .collect("Narrow");
        p.run().unwrap().wait_until_finish().unwrap();
        let mut back = back.values();
        back.sort_by_key(|n| n.count);
        let expected: Vec<Narrow> = rows(6_000)
            .into_iter()
            .map(|r| Narrow {
                count: r.count,
                region: r.region,
            })
            .collect();
        assert_eq!(back, expected, "{workers} workers");
    }

    // Batches with the `total` column where the schema says `count`: refused.
    let prefix = dir.path().join("misfit");
    let p = pipeline(2);
    p.read_parquet_batches("Read", &pattern, Some(&["region", "total"]))
        .map("Same", |b: ArrowBatch| b)
        .write_parquet_batches(
            "WriteMisfits",
            WriteParquet::to(prefix.to_str().unwrap()),
            schema,
        );
    let error = crate::kit::job_failure(&p);
    for expected in ["WriteMisfits", "does not fit the schema", "count: Int64"] {
        assert!(error.contains(expected), "{expected} in: {error}");
    }
    assert!(shards(&prefix).is_empty());
}

/// Filters pushed down to the read: row groups ruled out by their statistics are not
/// read, only matching rows come out (NULLs never match), and a filter that does not fit
/// the files is refused before anything runs.
#[test]
fn filters_skip_row_groups_and_rows() {
    use sluice::transforms::parquet::ParquetFilter;
    let dir = tempfile::tempdir().unwrap();
    // Ten row groups of 1,000 rows, in count order: group k holds counts 1000k..1000k+999.
    let pattern = write_rows(dir.path(), 10_000, 1, 1_000);

    let p = pipeline(2);
    let east = p
        .read_parquet_filtered::<Row>(
            "ReadEastLate",
            &pattern,
            &[
                ParquetFilter::gt("count", 7_499),
                ParquetFilter::eq("region", "east"),
            ],
        )
        .collect("East");
    let noted = p
        .read_parquet_filtered::<Row>(
            "ReadNoted",
            &pattern,
            &[ParquetFilter::lt("note", "note 2")],
        )
        .collect("Noted");
    let shown: Vec<(String, String)> = p
        .graph()
        .transforms
        .iter()
        .flat_map(|t| t.display_data.clone())
        .collect();
    p.run().unwrap().wait_until_finish().unwrap();
    let expected: Vec<Row> = rows(10_000)
        .into_iter()
        .filter(|r| r.count > 7_499 && r.region == "east")
        .collect();
    assert_eq!(by_count(east.values()), expected);
    let expected: Vec<Row> = rows(10_000)
        .into_iter()
        .filter(|r| r.note.as_deref().is_some_and(|n| n < "note 2"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(by_count(noted.values()), expected);
    // Seven of the ten row groups hold no count above 7,499: not read. Notes compare by
    // bytes: from count 2,000 on every note ("note 2000", …) is above "note 2", so only
    // the first two groups are read for the second filter.
    let shown = |key: &str| -> Vec<String> {
        shown
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(
        shown("filter"),
        ["count > 7499 AND region = 'east'", "note < 'note 2'"]
    );
    assert_eq!(shown("rowGroupsSkipped"), ["7", "8"]);

    // The same filters on Arrow batches.
    let p = pipeline(2);
    let counts = p
        .read_parquet_batches_filtered(
            "ReadBatches",
            &pattern,
            Some(&["count"]),
            &[ParquetFilter::ge("count", 7_500)],
        )
        .map("Shape", shape)
        .collect("Shapes");
    p.run().unwrap().wait_until_finish().unwrap();
    let counts = counts.values();
    assert_eq!(counts.iter().map(|c| c.2).sum::<usize>(), 2_500);
    assert_eq!(
        counts.iter().map(|c| c.1).sum::<i64>(),
        (7_500..10_000).sum::<i64>()
    );

    let p = pipeline(1);
    let _ =
        p.read_parquet_filtered::<Row>("FilterNoSuch", &pattern, &[ParquetFilter::eq("price", 1)]);
    let _ = p.read_parquet_filtered::<Row>(
        "FilterWrongKind",
        &pattern,
        &[ParquetFilter::eq("count", "seven")],
    );
    let error = p.run().unwrap_err().to_string();
    for expected in [
        "FilterNoSuch",
        "the filter price = 1 names no column",
        "FilterWrongKind",
        "compares column 'count' (Int64) with a constant of another kind",
    ] {
        assert!(error.contains(expected), "{expected} in: {error}");
    }
}

/// Columns combined per key straight from Arrow batches equal the row path's result:
/// the Parquet rows' `total` summed and `count` (int64) averaged per region, on 1 and 2
/// workers; dictionary-encoded keys give the same; a missing column, a key column of
/// numbers and a null key each fail the job naming the transform and the column.
#[test]
fn columns_are_combined_per_key_from_batches() {
    use std::sync::Arc;

    use arrow_array::types::Int16Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float32Array, RecordBatch, StringArray};
    use sluice::transforms::combiners::{MeanFn, SumFn};
    use sluice::transforms::parquet::{ArrowBatch, ReadParquetBatches};

    let dir = tempfile::tempdir().unwrap();
    let pattern = write_rows(dir.path(), 5_000, 2, 700);
    let sorted = |mut v: Vec<(String, f64)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };

    let p = pipeline(1);
    let want_sums = p
        .read_parquet::<Row>("Read", &pattern)
        .map("Pairs", |r: Row| (r.region, r.total))
        .combine_per_key("Sum", SumFn::<f64>::default())
        .collect("Sums");
    p.run().unwrap().wait_until_finish().unwrap();
    let want_sums = sorted(want_sums.values());
    assert_eq!(want_sums.len(), 3);
    let want_means: Vec<(String, f64)> = ["east", "n\u{f6}rd", "west"]
        .iter()
        .map(|region| {
            let counts: Vec<f64> = rows(5_000)
                .into_iter()
                .filter(|r| r.region == *region)
                .map(|r| r.count as f64)
                .collect();
            (
                region.to_string(),
                counts.iter().sum::<f64>() / counts.len() as f64,
            )
        })
        .collect();

    for workers in [1, 2] {
        let p = pipeline(workers);
        let batches = p.read_parquet_batches("Read", &pattern, Some(&["region", "total", "count"]));
        let sums = batches
            .combine_column_per_key("Sum", "region", "total", SumFn::<f64>::default())
            .collect("Sums");
        let means = batches
            .combine_column_per_key("Mean", "region", "count", MeanFn::<f64>::default())
            .collect("Means");
        p.run().unwrap().wait_until_finish().unwrap();
        assert_eq!(sorted(sums.values()), want_sums, "{workers} workers");
        let means = sorted(means.values());
        assert_eq!(means.len(), 3);
        for ((region, mean), (want_region, want)) in means.iter().zip(&want_means) {
            assert_eq!(region, want_region);
            assert!((mean - want).abs() < 1e-6, "{region}: {mean} vs {want}");
        }
    }

    // Strings read as dictionaries: the 13,333 rows of one row group that pass a string
    // filter (which still compares strings) are two batches sharing its dictionary.
    let big_dir = tempfile::tempdir().unwrap();
    let big = write_rows(big_dir.path(), 20_000, 1, 20_000);
    let mut want_big: Vec<(String, f64)> = Vec::new();
    for r in rows(20_000)
        .into_iter()
        .filter(|r| r.region.as_str() >= "n")
    {
        match want_big.iter_mut().find(|(region, _)| *region == r.region) {
            Some((_, total)) => *total += r.total,
            None => want_big.push((r.region, r.total)),
        }
    }
    let p = pipeline(2);
    let batches = p.read_parquet_batches_with(
        "ReadDictionaries",
        ReadParquetBatches::from(&big)
            .with_columns(&["region", "total"])
            .with_filters(&[sluice::transforms::parquet::ParquetFilter::ge(
                "region", "n",
            )])
            .with_string_dictionaries(),
    );
    let types = batches
        .map("KeyType", |b| b.0.column(0).data_type().to_string())
        .collect("Types");
    let sums = batches
        .combine_column_per_key("Sum", "region", "total", SumFn::<f64>::default())
        .collect("Sums");
    p.run().unwrap().wait_until_finish().unwrap();
    let types = types.values();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(
        types.iter().all(|t| t == "Dictionary(Int32, Utf8)"),
        "{types:?}"
    );
    assert_eq!(sorted(sums.values()), sorted(want_big));

    // Dictionary keys (int16 indexes, an entry no row uses) and float32 values.
    let keys = DictionaryArray::<Int16Type>::new(
        vec![0i16, 2, 0, 2, 2].into(),
        Arc::new(StringArray::from(vec!["a", "unused", "b"])),
    );
    let batch = |keys: ArrayRef, values: ArrayRef| {
        ArrowBatch(RecordBatch::try_from_iter([("k", keys), ("v", values)]).unwrap())
    };
    let p = pipeline(2);
    let sums = p
        .create(
            "Batches",
            vec![
                batch(
                    Arc::new(keys),
                    Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])),
                ),
                batch(
                    Arc::new(StringArray::from(vec!["b", "c"])),
                    Arc::new(Float32Array::from(vec![0.5, 7.0])),
                ),
            ],
        )
        .combine_column_per_key("Sum", "k", "v", SumFn::<f64>::default())
        .collect("Sums");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        sorted(sums.values()),
        [("a".into(), 4.0), ("b".into(), 11.5), ("c".into(), 7.0)]
    );

    let fails = |batches: Vec<ArrowBatch>, key: &str| {
        let p = pipeline(1);
        let _ = p.create("Batches", batches).combine_column_per_key(
            "SumBad",
            key,
            "v",
            SumFn::<f64>::default(),
        );
        crate::kit::job_failure(&p)
    };
    let good = || {
        batch(
            Arc::new(StringArray::from(vec!["a"])),
            Arc::new(Float32Array::from(vec![1.0])),
        )
    };
    let error = fails(vec![good()], "region");
    assert!(
        error.contains("SumBad") && error.contains("no column 'region'") && error.contains("k, v"),
        "{error}"
    );
    let numbers = batch(
        Arc::new(Float32Array::from(vec![1.0])),
        Arc::new(Float32Array::from(vec![1.0])),
    );
    let error = fails(vec![numbers], "k");
    assert!(
        error.contains("SumBad") && error.contains("key column 'k' holds Float32"),
        "{error}"
    );
    let null_key = batch(
        Arc::new(StringArray::from(vec![Some("a"), None])),
        Arc::new(Float32Array::from(vec![1.0, 2.0])),
    );
    let error = fails(vec![good(), null_key], "k");
    assert!(
        error.contains("SumBad") && error.contains("column 'k' is null in row 1"),
        "{error}"
    );
}
