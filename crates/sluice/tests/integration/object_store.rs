//! Files on an object store: every format written to and read back from an
//! S3-compatible server (moto_server, started by each test on loopback and stopped by
//! its pid), glob matching, a missing bucket refused before anything runs, a failed job
//! leaving no objects, and a killed job's temporaries removed by the next run.
//!
//! Needs `moto_server` (`pip install 'moto[server]'`; `.ci/run` installs it into a
//! virtual environment and puts it on PATH), or its path in `MOTO_SERVER`. The Azure
//! test runs Azurite's blob service the same way (`npm install azurite`; `.ci/run`
//! installs it), found on PATH as `azurite-blob` or at `AZURITE_BLOB`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice::io::storage::{Store, StoreOptions, resolve};
use sluice::transforms::parquet::WriteParquet;
use sluice::transforms::records::WriteCsv;
use sluice::transforms::text::WriteText;

use crate::kit::{pipeline_with, sorted};

/// An S3-compatible server on a free loopback port, stopped (by its pid) when dropped.
pub struct S3 {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl S3 {
    pub fn start() -> S3 {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = crate::kit::free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the object-store tests need moto_server ({program}: {e}); \
                     pip install 'moto[server]' (.ci/run installs it), or set MOTO_SERVER"
                )
            });
        let server = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        crate::kit::wait_for_port(port, "moto_server");
        // SAFETY: set before any pipeline of this test reads them; every test sets the
        // same values.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        server
    }

    /// The pipeline flags that reach this server.
    fn flags(&self) -> [String; 2] {
        [
            format!("--s3_endpoint={}", self.endpoint),
            "--s3_allow_http".into(),
        ]
    }

    fn options(&self) -> StoreOptions {
        StoreOptions::s3(Some(self.endpoint.clone()), true)
    }

    /// Creates a bucket (a bare `PUT /bucket`, which the server accepts unsigned).
    pub fn bucket(&self, name: &str) {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "PUT /{name} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    /// Writes an object.
    fn put(&self, url: &str, bytes: &[u8]) {
        put(&self.options(), url, bytes)
    }

    /// Every object under `dir` (a URL), as URLs, sorted.
    fn objects(&self, dir: &str) -> Vec<String> {
        objects(&self.options(), dir)
    }

    /// The bytes of an object.
    fn read(&self, url: &str) -> Vec<u8> {
        let mut out = Vec::new();
        resolve(url, &self.options())
            .unwrap()
            .0
            .open(Path::new(url))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }
}

/// The bucket `url` is in, reached as `options` say.
fn bucket(options: &StoreOptions, url: &str) -> std::sync::Arc<sluice::io::storage::Bucket> {
    match resolve(url, options).unwrap().0 {
        Store::Object(bucket) => bucket,
        Store::Local => unreachable!("{url} is an object's URL"),
    }
}

/// Writes an object.
fn put(options: &StoreOptions, url: &str, bytes: &[u8]) {
    bucket(options, url)
        .put(Path::new(url), bytes.to_vec())
        .unwrap();
}

/// Every object under `dir` (a URL), as URLs, sorted.
fn objects(options: &StoreOptions, dir: &str) -> Vec<String> {
    let mut found: Vec<String> = bucket(options, dir)
        .objects_under(Path::new(dir))
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    found.sort();
    found
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flags(s3: &S3) -> Vec<String> {
    s3.flags().to_vec()
}

fn s3_pipeline(s3: &S3, workers: usize) -> sluice::Pipeline {
    let flags = flags(s3);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    pipeline_with(workers, &flags)
}

#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Sale {
    region: String,
    product: String,
    amount: f64,
}
impl sluice::SerdeCoder for Sale {}

fn sales(n: usize) -> Vec<Sale> {
    (0..n)
        .map(|i| Sale {
            region: ["east", "west, coast", "n\u{f6}rd"][i % 3].to_string(),
            product: format!("p{}", i % 17),
            amount: i as f64 * 0.25,
        })
        .collect()
}

fn by_amount(mut v: Vec<Sale>) -> Vec<Sale> {
    v.sort_by(|a, b| a.amount.total_cmp(&b.amount));
    v
}

#[test]
fn every_format_round_trips_through_the_object_store_on_one_and_two_workers() {
    let s3 = S3::start();
    s3.bucket("data");
    let input = sales(3_000);
    let lines: Vec<String> = (0..20_000).map(|i| format!("line {i}")).collect();
    for workers in [1, 2] {
        let root = format!("s3://data/w{workers}");
        let p = s3_pipeline(&s3, workers);
        let made = p.create("Sales", input.clone());
        made.write_csv_with(
            "WriteCsv",
            WriteCsv::to(&format!("{root}/csv/sales")).with_num_shards(3),
        );
        made.write_json("WriteJson", &format!("{root}/json/sales"));
        made.write_parquet_with(
            "WriteParquet",
            WriteParquet::to(&format!("{root}/parquet/sales")).with_row_group_rows(500),
        );
        p.create("Lines", lines.clone()).write_text_with(
            "WriteText",
            WriteText::to(&format!("{root}/text/lines"))
                .with_num_shards(2)
                .with_compression("gzip"),
        );
        p.run().unwrap().wait_until_finish().unwrap();

        // Only the shards are left: the temporary objects are gone.
        let csv = s3.objects(&format!("{root}/csv"));
        assert_eq!(
            csv,
            (0..3)
                .map(|i| format!("{root}/csv/sales-{i:05}-of-00003.csv"))
                .collect::<Vec<_>>()
        );
        let text = s3.objects(&format!("{root}/text"));
        assert_eq!(
            text,
            [
                format!("{root}/text/lines-00000-of-00002.gz"),
                format!("{root}/text/lines-00001-of-00002.gz")
            ]
        );
        for url in &csv {
            let shard = String::from_utf8(s3.read(url)).unwrap();
            assert_eq!(shard.lines().next(), Some("region,product,amount"));
        }

        let p = s3_pipeline(&s3, workers);
        let from_csv = p
            .read_csv::<Sale>("ReadCsv", &format!("{root}/csv/sales-*.csv"))
            .collect("Csv");
        let from_json = p
            .read_json::<Sale>("ReadJson", &format!("{root}/json/sales-*"))
            .collect("Json");
        let from_parquet = p
            .read_parquet::<Sale>("ReadParquet", &format!("{root}/parquet/sales-*.parquet"))
            .collect("Parquet");
        let from_text = p
            .read_text("ReadText", &format!("{root}/text/lines-*"))
            .collect("Text");
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
        assert_eq!(
            by_amount(from_parquet.values()),
            input,
            "Parquet, {workers} workers"
        );
        assert_eq!(
            sorted(from_text.values()),
            sorted(lines.clone()),
            "gzip text, {workers} workers"
        );
    }
}

#[test]
fn globs_match_file_names_splits_read_ranges_and_reruns_replace_the_output() {
    let s3 = S3::start();
    s3.bucket("logs");
    // A file larger than a split (several ranged reads), and files the glob must skip.
    let big: Vec<String> = (0..400_000).map(|i| format!("entry {i:07}")).collect();
    s3.put("s3://logs/in/a-1.txt", (big.join("\n") + "\n").as_bytes());
    s3.put("s3://logs/in/a-2.txt", b"x\ny\n");
    s3.put("s3://logs/in/sub/a-3.txt", b"not me\n");
    s3.put("s3://logs/in/b-1.txt", b"nor me\n");
    let p = s3_pipeline(&s3, 2);
    let read = p.read_text("Read", "s3://logs/in/a-*.txt");
    read.write_text_with(
        "Write",
        WriteText::to("s3://logs/out/all").with_num_shards(4),
    );
    let count = read.collect("Lines");
    p.run().unwrap().wait_until_finish().unwrap();
    let mut expected = big.clone();
    expected.extend(["x".to_string(), "y".to_string()]);
    assert_eq!(sorted(count.values()), sorted(expected.clone()));
    assert_eq!(s3.objects("s3://logs/out").len(), 4);

    // A second run with another shard count replaces the first run's shards.
    let p = s3_pipeline(&s3, 1);
    p.read_text("Read", "s3://logs/in/a-2.txt")
        .write_text("Write", "s3://logs/out/all");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        s3.objects("s3://logs/out"),
        ["s3://logs/out/all-00000-of-00001"]
    );
    assert_eq!(s3.read("s3://logs/out/all-00000-of-00001"), b"x\ny\n");
}

#[test]
fn a_missing_bucket_or_object_is_reported_before_anything_runs() {
    let s3 = S3::start();
    s3.bucket("present");
    let p = s3_pipeline(&s3, 1);
    let _ = p.read_text("ReadMissingBucket", "s3://absent/in/*.txt");
    let _ = p.read_csv::<Sale>("ReadNoMatch", "s3://present/in/*.csv");
    p.create("Lines", vec!["a".to_string()])
        .write_text("WriteMissingBucket", "s3://absent/out/x");
    let error = match p.run() {
        Ok(_) => panic!("the pipeline ran"),
        Err(e) => e.to_string(),
    };
    for expected in [
        "ReadMissingBucket",
        "ReadNoMatch",
        "s3://present/in/*.csv",
        "matches no file",
        "WriteMissingBucket",
        "s3://absent",
    ] {
        assert!(error.contains(expected), "{expected}: {error}");
    }
    assert!(s3.objects("s3://present").is_empty());
}

#[test]
fn a_failed_job_leaves_no_objects_and_the_earlier_output_as_it_was() {
    let s3 = S3::start();
    s3.bucket("out");
    let p = s3_pipeline(&s3, 1);
    p.create("Lines", vec!["old".to_string()])
        .write_text("Write", "s3://out/run/lines");
    p.run().unwrap().wait_until_finish().unwrap();

    let p = s3_pipeline(&s3, 2);
    p.create(
        "Lines",
        (0..1_000).map(|i| i.to_string()).collect::<Vec<_>>(),
    )
    .map("FailLate", |s: String| {
        assert!(s != "999", "the last element fails the job");
        s
    })
    .write_text("Write", "s3://out/run/lines");
    assert!(p.run().unwrap().wait_until_finish().is_err());
    assert_eq!(
        s3.objects("s3://out"),
        ["s3://out/run/lines-00000-of-00001"],
        "no temporary objects, no new shards"
    );
    assert_eq!(s3.read("s3://out/run/lines-00000-of-00001"), b"old\n");
}

/// The wordcount example, as built by `cargo test`.
fn wordcount() -> Command {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/wordcount");
    let mut cmd = Command::new(path);
    cmd.env("RUST_LOG", "info");
    cmd
}

#[test]
fn a_killed_job_leaves_no_visible_output_and_the_next_run_removes_its_temporaries() {
    let s3 = S3::start();
    s3.bucket("counts");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    sluice::io::corpus::write_file(&input, 30_000_000, 7).unwrap();
    let mut child = wordcount()
        .args([
            format!("--input={}", input.display()),
            "--output=s3://counts/out/counts".into(),
            "--direct_num_workers=1".into(),
        ])
        .args(s3.flags())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The job has begun once its lock object is under the temporary prefix.
    let started = Instant::now();
    while s3.objects("s3://counts/out").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job never began its output"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    let left = s3.objects("s3://counts/out");
    assert!(
        !left.is_empty() && left.iter().all(|o| o.contains("/.temp-sluice-counts-")),
        "only temporary objects, no shard under the output's names: {left:?}"
    );

    let small = dir.path().join("small.txt");
    std::fs::write(&small, "a b a\n").unwrap();
    let run = wordcount()
        .args([
            format!("--input={}", small.display()),
            "--output=s3://counts/out/counts".into(),
        ])
        .args(s3.flags())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed the") && stderr.contains("no longer running"),
        "{stderr}"
    );
    let left = s3.objects("s3://counts/out");
    assert!(
        !left.is_empty() && left.iter().all(|o| o.contains("/out/counts-")),
        "only the new output: {left:?}"
    );
    let mut words = Vec::new();
    for url in &left {
        words.extend(
            String::from_utf8(s3.read(url))
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    assert_eq!(sorted(words), ["a: 2", "b: 1"]);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Total {
    region: String,
    product: String,
    total: f64,
    count: i64,
}
impl sluice::SerdeCoder for Total {}

/// The `sales` example with its input and output on S3, on two worker processes (the
/// cluster runner): each process reads CSV splits by ranged requests and uploads its
/// shard; the launcher adopts them and commits.
#[test]
fn the_sales_example_reads_and_writes_s3_on_two_processes() {
    let s3 = S3::start();
    s3.bucket("sales");
    let mut expected: std::collections::BTreeMap<(String, String), (f64, i64)> = Default::default();
    for file in 0..2 {
        let mut text = String::from("region,product,amount\n");
        for i in 0..3_000 {
            let (region, product) = (["north", "south", "east"][i % 3], format!("p{}", i % 7));
            let amount = (i % 50) as f64 * 0.5 + file as f64;
            text.push_str(&format!("{region},{product},{amount}\n"));
            let e = expected.entry((region.into(), product)).or_default();
            e.0 += amount;
            e.1 += 1;
        }
        s3.put(&format!("s3://sales/in/part-{file}.csv"), text.as_bytes());
    }
    let exe = std::env::current_exe().unwrap();
    let sales = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/sales");
    let run = Command::new(sales)
        .args([
            "--input=s3://sales/in/*.csv",
            "--output=s3://sales/out/totals",
            "--runner=ClusterRunner",
            "--num_workers=2",
            "--worker_threads=1",
        ])
        .args(s3.flags())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shards = s3.objects("s3://sales/out");
    assert!(
        !shards.is_empty()
            && shards
                .iter()
                .all(|o| o.contains("/out/totals-") && o.ends_with(".parquet")),
        "{shards:?}"
    );
    let p = s3_pipeline(&s3, 1);
    let totals = p
        .read_parquet::<Total>("ReadTotals", "s3://sales/out/totals-*.parquet")
        .collect("Totals");
    p.run().unwrap().wait_until_finish().unwrap();
    let got: std::collections::BTreeMap<(String, String), (f64, i64)> = totals
        .values()
        .into_iter()
        .map(|t| ((t.region, t.product), (t.total, t.count)))
        .collect();
    assert_eq!(got, expected);
}

/// Azurite, the Azure Storage emulator (its blob service), on a free loopback port,
/// stopped (by its pid) when dropped. `az://` URLs reach it through the emulator
/// settings of the environment (`AZURE_STORAGE_USE_EMULATOR`,
/// `AZURITE_BLOB_STORAGE_URL`), as a user's job would.
struct Azurite {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

/// The emulator's well-known development account and key.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    fn start() -> Azurite {
        let program = std::env::var("AZURITE_BLOB").unwrap_or_else(|_| "azurite-blob".into());
        let port = crate::kit::free_port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(&program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--silent", "--skipApiVersionCheck", "--location"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Azure test needs Azurite's azurite-blob ({program}: {e}); \
                     npm install azurite (.ci/run installs it), or set AZURITE_BLOB"
                )
            });
        let server = Azurite {
            child,
            address: format!("127.0.0.1:{port}"),
            _data: data,
        };
        crate::kit::wait_for_port(port, "azurite-blob");
        // SAFETY: set before any pipeline of this test reads them; only this test
        // reaches `az://` URLs.
        unsafe {
            std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
            std::env::set_var(
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://{}", server.address),
            );
        }
        server
    }

    /// Creates a container: a `PUT` signed with the development account's shared key
    /// (the emulator, like Azure, refuses unsigned ones; the object-store client has no
    /// call for it).
    fn container(&self, name: &str) {
        use base64::Engine;
        use hmac::{KeyInit, Mac};
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
             /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        );
        let engine = base64::engine::general_purpose::STANDARD;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&engine.decode(AZURITE_KEY).unwrap())
                .unwrap();
        mac.update(to_sign.as_bytes());
        let signature = engine.encode(mac.finalize().into_bytes());
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "PUT /{AZURITE_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: {}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
             Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Azure Blob Storage (the emulator): CSV inputs matched by a glob in a container, a
/// CSV → Parquet/JSON job on two workers whose shards are the only objects left, the
/// Parquet read back equal to the input, a failed job leaving no objects, and a missing
/// container reported before anything runs.
#[test]
fn azure_blob_storage_reads_globs_and_commits_atomically() {
    let azure = Azurite::start();
    azure.container("sales");
    let options = StoreOptions::default();
    let input = sales(3_000);
    let (first, second) = input.split_at(1_000);
    for (name, part) in [("a-1.csv", first), ("a-2.csv", second)] {
        let mut text = String::from("region,product,amount\n");
        for s in part {
            text.push_str(&format!("\"{}\",{},{}\n", s.region, s.product, s.amount));
        }
        put(&options, &format!("az://sales/in/{name}"), text.as_bytes());
    }
    put(
        &options,
        "az://sales/in/b-1.csv",
        b"region,product,amount\nx,y,1\n",
    );

    let p = pipeline_with(2, &[]);
    let read = p.read_csv::<Sale>("ReadCsv", "az://sales/in/a-*.csv");
    read.write_parquet_with(
        "WriteParquet",
        WriteParquet::to("az://sales/out/sales")
            .with_num_shards(2)
            .with_row_group_rows(400),
    );
    read.write_json("WriteJson", "az://sales/json/sales");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        objects(&options, "az://sales/out"),
        [
            "az://sales/out/sales-00000-of-00002.parquet",
            "az://sales/out/sales-00001-of-00002.parquet"
        ],
        "the shards, and no temporary objects"
    );
    let p = pipeline_with(2, &[]);
    let back = p
        .read_parquet::<Sale>("ReadParquet", "az://sales/out/sales-*.parquet")
        .collect("Parquet");
    let json = p
        .read_json::<Sale>("ReadJson", "az://sales/json/sales-*")
        .collect("Json");
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(by_amount(back.values()), input);
    assert_eq!(by_amount(json.values()), input);

    let p = pipeline_with(2, &[]);
    p.read_csv::<Sale>("ReadCsv", "az://sales/in/a-*.csv")
        .map("FailLate", |s: Sale| {
            assert!(s.amount != 749.75, "one element fails the job");
            s
        })
        .write_json("Write", "az://sales/failed/sales");
    assert!(p.run().unwrap().wait_until_finish().is_err());
    assert!(
        objects(&options, "az://sales/failed").is_empty(),
        "a failed job leaves no objects"
    );

    let p = pipeline_with(1, &[]);
    let _ = p.read_text("ReadMissing", "az://absent/in/*.txt");
    let error = match p.run() {
        Ok(_) => panic!("the pipeline ran"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("ReadMissing")
            && error.contains("cannot list bucket or container az://absent")
            && error.contains("404"),
        "{error}"
    );
}
