//! PostgreSQL: rows read by partition ranges and written by COPY against a real server —
//! a throwaway cluster (`initdb` in a temporary directory, a free loopback port) started
//! by each test and stopped by its pid.
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`: on PATH, in `PG_BIN`, or in
//! `/usr/lib/postgresql/*/bin`, as Debian's `postgresql` package puts them; `.ci/run`
//! installs it) and, when run as root, the `postgres` user to run them as.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice::io::postgres::connect;
use sluice::transforms::postgres::{ReadPostgres, WritePostgres};

use crate::kit::{free_port, pipeline};

/// A PostgreSQL server of its own, on a free loopback port.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
}

/// Where `initdb` and `pg_ctl` are.
fn server_binaries() -> PathBuf {
    if let Ok(bin) = std::env::var("PG_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.map(|e| e.unwrap().path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|d| d.join("initdb").exists())
        .expect("the PostgreSQL tests need initdb and pg_ctl: install the postgresql package (.ci/run does), or set PG_BIN")
}

fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program args` from `bin`, as the `postgres` user when this is root (the server
/// refuses to run as root).
fn server_command(bin: &std::path::Path, program: &str, args: &[&str]) -> Command {
    let program = bin.join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_binaries();
        let dir = tempfile::tempdir().unwrap();
        if as_root() {
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres failed");
        }
        let data = dir.path().join("data");
        let out = server_command(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let server = Postgres {
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            dir,
        };
        server.run_server();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let status = server_command(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.dir.path().join("log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "pg_ctl start failed");
        let started = Instant::now();
        while connect(&self.url).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's pid, from its pid file.
    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server (a fast shutdown: SIGINT to its pid) and waits until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let started = Instant::now();
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts the server on the same port.
    pub fn restart(&self) {
        self.stop();
        self.run_server();
    }

    /// Runs statements.
    pub fn execute(&self, sql: &str) {
        connect(&self.url).unwrap().batch_execute(sql).unwrap();
    }

    /// The rows of `sql`, each as its JSON text.
    pub fn rows(&self, sql: &str) -> Vec<String> {
        connect(&self.url)
            .unwrap()
            .query(
                &format!("SELECT row_to_json(q)::text FROM ({sql}) AS q"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }

    /// How many tables are named like a staging table.
    pub fn staging_tables(&self) -> usize {
        self.rows("SELECT tablename FROM pg_tables WHERE tablename LIKE 'sluice_stage_%'")
            .len()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Order {
    id: i64,
    customer: String,
    amount: f64,
    note: Option<String>,
    placed: String,
}
impl sluice::SerdeCoder for Order {}

/// 1,000 orders, with NULL notes, empty notes, and notes with quotes, commas and
/// newlines.
fn orders_table(pg: &Postgres) {
    pg.execute(
        "CREATE TABLE orders (id bigint primary key, customer text not null, amount float8 not null,
                              note text, placed timestamptz not null);
         INSERT INTO orders
           SELECT i, 'c' || (i % 7), i * 0.5,
                  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'say \"hi\", then
leave' ELSE 'n' || i END,
                  timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
           FROM generate_series(1, 1000) AS i;",
    );
}

fn sorted_orders(pg: &Postgres, table: &str) -> Vec<String> {
    pg.rows(&format!(
        "SELECT id, customer, amount, note, placed::text AS placed FROM {table} ORDER BY id"
    ))
}

#[test]
fn rows_round_trip_on_one_and_two_workers() {
    let pg = Postgres::start();
    orders_table(&pg);
    let expected = sorted_orders(&pg, "orders");
    for workers in [1, 2] {
        let table = format!("orders_copy_{workers}");
        let p = pipeline(workers);
        let orders = p.read_postgres::<Order>(
            "ReadOrders",
            ReadPostgres::table(&pg.url, "orders").with_partition_column("id"),
        );
        let collected = orders.collect("Collected");
        orders.write_postgres(
            "WriteOrders",
            WritePostgres::to(&pg.url, &table).create_if_missing(
                "id bigint primary key, customer text, amount float8, note text, placed timestamptz",
            ),
        );
        p.run().unwrap().wait_until_finish().unwrap();
        let mut read = collected.values();
        read.sort_by_key(|o| o.id);
        assert_eq!(read.len(), 1000);
        assert_eq!(read[0].note.as_deref(), Some(""));
        assert_eq!(read[1].note.as_deref(), Some("say \"hi\", then\nleave"));
        assert_eq!(read[3].note, None);
        // Everything read was written back, NULLs and empty strings kept apart.
        assert_eq!(sorted_orders(&pg, &table), expected, "{workers} workers");
        assert_eq!(pg.staging_tables(), 0);
    }
}

#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Total {
    customer: String,
    total: f64,
    orders: i64,
}
impl sluice::SerdeCoder for Total {}

#[test]
fn a_query_split_by_a_timestamp_column_and_an_upsert_replace_rows() {
    let pg = Postgres::start();
    orders_table(&pg);
    pg.execute(
        "CREATE TABLE totals (customer text primary key, total float8, orders bigint);
         INSERT INTO totals VALUES ('c1', -1, -1), ('zz', 5, 5);",
    );
    let p = pipeline(2);
    let orders = p.read_postgres::<Order>(
        "ReadOrders",
        ReadPostgres::query(
            &pg.url,
            "SELECT id, customer, amount, note, placed::text AS placed, placed AS at FROM orders WHERE id <= 700",
        )
        .with_partition_column("at"),
    );
    let totals = orders
        .map("KeyByCustomer", |o: Order| (o.customer, o.amount))
        .sum_per_key("Sum")
        .map("Total", |(customer, total): (String, f64)| Total {
            customer,
            total,
            orders: 0,
        });
    totals.write_postgres(
        "WriteTotals",
        WritePostgres::to(&pg.url, "totals").with_upsert_key(&["customer"]),
    );
    p.run().unwrap().wait_until_finish().unwrap();
    let expected: Vec<String> = pg.rows(
        "SELECT customer, total, orders FROM (
           SELECT 'c' || (i % 7) AS customer, sum(i * 0.5)::float8 AS total, 0::bigint AS orders
           FROM generate_series(1, 700) AS i GROUP BY 1
           UNION ALL SELECT 'zz', 5, 5) AS t ORDER BY customer",
    );
    assert_eq!(
        pg.rows("SELECT customer, total, orders FROM totals ORDER BY customer"),
        expected
    );
}

/// A row mapper reads columns by name and type from the rows as the server sends them
/// (here into a type whose fields are not the columns), split over two workers; a row
/// it refuses fails the job naming the transform and the mapper's reason.
#[test]
fn a_row_mapper_turns_rows_into_any_type() {
    let pg = Postgres::start();
    orders_table(&pg);
    let p = pipeline(2);
    let pairs = p.read_postgres_mapped(
        "ReadPairs",
        ReadPostgres::table(&pg.url, "orders").with_partition_column("id"),
        |row| {
            let id: i64 = row.try_get("id")?;
            let note: Option<String> = row.try_get("note")?;
            let amount: f64 = row.try_get("amount")?;
            Ok((
                id,
                note.map_or(-1, |n| n.len() as i64),
                (amount * 2.0) as i64,
            ))
        },
    );
    let pairs = pairs.collect("Pairs");
    p.run().unwrap().wait_until_finish().unwrap();
    let mut pairs = pairs.values();
    pairs.sort();
    assert_eq!(pairs.len(), 1000);
    // id 1: '' (0 bytes); id 2: the quoted multi-line note (20 bytes); id 4: NULL.
    assert_eq!(pairs[0], (1, 0, 1));
    assert_eq!(pairs[1], (2, 20, 2));
    assert_eq!(pairs[3], (4, -1, 4));
    assert!(
        pairs
            .iter()
            .enumerate()
            .all(|(i, p)| p.0 == i as i64 + 1 && p.2 == p.0)
    );

    // A mapper asking for a type the column is not: the job fails, saying why.
    let p = pipeline(1);
    p.read_postgres_mapped(
        "ReadWrongly",
        ReadPostgres::table(&pg.url, "orders"),
        |row| Ok(row.try_get::<_, i32>("customer")?),
    );
    let error = crate::kit::job_failure(&p);
    for expected in [
        "ReadWrongly",
        "the row mapper refused a row",
        "the Rust type `i32` and the Postgres type `text`",
        // The same row would be refused again: not retried.
        "after 1 attempt",
    ] {
        assert!(error.contains(expected), "{expected} in: {error}");
    }
}

#[test]
fn unusable_servers_tables_and_types_are_reported_before_anything_runs() {
    let pg = Postgres::start();
    orders_table(&pg);
    pg.execute("CREATE TABLE plain (customer text, total float8, orders bigint)");
    let closed = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let p = pipeline(1);
    let _ = p.read_postgres::<Order>("ReadNowhere", ReadPostgres::table(&closed, "orders"));
    let _ = p.read_postgres::<Order>("ReadMissing", ReadPostgres::table(&pg.url, "no_such"));
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Wrong {
        id: i64,
        customer: i64,
    }
    impl sluice::SerdeCoder for Wrong {}
    let _ = p.read_postgres::<Wrong>("ReadWrong", ReadPostgres::table(&pg.url, "orders"));
    let _ = p.read_postgres_mapped(
        "ReadMappedMissing",
        ReadPostgres::query(&pg.url, "SELECT nope FROM orders"),
        |row| Ok(row.try_get::<_, i64>(0)?),
    );
    let _ = p.read_postgres::<Order>(
        "ReadBadPartition",
        ReadPostgres::table(&pg.url, "orders").with_partition_column("customer"),
    );
    let totals = p.create(
        "Totals",
        vec![Total {
            customer: "a".into(),
            total: 1.0,
            orders: 1,
        }],
    );
    totals.write_postgres(
        "WriteNoKey",
        WritePostgres::to(&pg.url, "plain").with_upsert_key(&["customer"]),
    );
    totals.write_postgres("WriteMissing", WritePostgres::to(&pg.url, "no_such"));
    let Err(error) = p.run() else {
        panic!("the pipeline is invalid")
    };
    let error = error.to_string();
    for expected in [
        "ReadNowhere",
        "cannot connect to PostgreSQL",
        "ReadMissing",
        "no_such",
        "ReadWrong",
        "column 'customer'",
        "is text",
        "ReadMappedMissing",
        "nope",
        "ReadBadPartition",
        "partition by an integer, date or timestamp column",
        "WriteNoKey",
        "unique index",
        "WriteMissing",
    ] {
        assert!(error.contains(expected), "{expected} in: {error}");
    }
    assert!(pg.rows("SELECT * FROM plain").is_empty());
}

/// Fails the first `n` elements it sees (shared by every clone): their bundles fail and
/// are retried.
fn flaky(n: usize) -> impl Fn(Total) -> Result<Total, String> + Clone + Send + 'static {
    let seen = Arc::new(AtomicUsize::new(0));
    move |t: Total| {
        if seen.fetch_add(1, Ordering::SeqCst) < n {
            Err("injected failure".to_string())
        } else {
            Ok(t)
        }
    }
}

fn totals(n: i64) -> Vec<Total> {
    (0..n)
        .map(|i| Total {
            customer: format!("k{i}"),
            total: i as f64,
            orders: i,
        })
        .collect()
}

#[test]
fn retried_bundles_write_once_and_a_failed_job_writes_nothing() {
    let pg = Postgres::start();
    pg.execute("CREATE TABLE t (customer text, total float8, orders bigint)");
    let p = pipeline(2);
    p.create("Totals", totals(2000))
        .try_map("Flaky", flaky(3))
        .write_postgres("Write", WritePostgres::to(&pg.url, "t"));
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        pg.rows("SELECT count(*) AS n, count(DISTINCT customer) AS d, sum(orders) AS s FROM t"),
        [r#"{"n":2000,"d":2000,"s":1999000}"#]
    );
    // A job that fails for good leaves the table as it was, and no staging table.
    let p = pipeline(2);
    p.create("Totals", totals(2000))
        .try_map("AlwaysFails", |t: Total| {
            if t.orders == 1500 {
                Err("a poison element")
            } else {
                Ok(t)
            }
        })
        .write_postgres("Write", WritePostgres::to(&pg.url, "t"));
    assert!(p.run().unwrap().wait_until_finish().is_err());
    assert_eq!(pg.rows("SELECT count(*) AS n FROM t"), [r#"{"n":2000}"#]);
    assert_eq!(pg.staging_tables(), 0);
}

#[test]
fn a_server_restarted_mid_job_is_survived() {
    let pg = Postgres::start();
    pg.execute("CREATE TABLE t (customer text, total float8, orders bigint)");
    let started = Instant::now();
    let processed = Arc::new(AtomicUsize::new(0));
    let count = processed.clone();
    let url = pg.url.clone();
    // The embedded runner returns when the job ends: it runs on a thread of its own.
    let job = std::thread::spawn(move || {
        let p = pipeline(2);
        p.create("Totals", totals(600))
            .map("Slow", move |t: Total| {
                std::thread::sleep(Duration::from_millis(10));
                count.fetch_add(1, Ordering::SeqCst);
                t
            })
            .write_postgres("Write", WritePostgres::to(&url, "t"));
        p.run()
            .map_err(|e| e.to_string())?
            .wait_until_finish()
            .map_err(|e| e.to_string())
    });
    // Three quarters of the rows are through (the rest take another ~0.75 s)...
    while processed.load(Ordering::SeqCst) < 450 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job does not progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...when the server goes away for a while: the job's commit (one transaction that
    // copies every spooled row in) meets the outage and is retried until it is back.
    pg.stop();
    std::thread::sleep(Duration::from_millis(2000));
    // The rows were through long before: only the commit, retrying, keeps the job up.
    assert!(
        !job.is_finished(),
        "the job ended while the server was down"
    );
    pg.restart();
    job.join().unwrap().unwrap();
    assert_eq!(
        pg.rows("SELECT count(*) AS n, count(DISTINCT customer) AS d FROM t"),
        [r#"{"n":600,"d":600}"#]
    );
    assert_eq!(pg.staging_tables(), 0);
}

/// A batch job on two worker processes of the cluster runner (the sales example with
/// `--postgres_url`): the processes that run bundles stage their rows in a table of the
/// job, the launcher's commit publishes everything once — the totals equal the embedded
/// runner's, a rerun replaces rather than adds (upsert), and no staging table is left.
#[test]
fn a_batch_job_on_the_cluster_runner_publishes_every_row_once() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("region,product,amount\n");
    for i in 0..6_000 {
        text.push_str(&format!(
            "r{},p{},{}\n",
            i % 5,
            i % 11,
            (i % 100) as f64 * 0.25
        ));
    }
    std::fs::write(dir.path().join("sales.csv"), text).unwrap();
    let run = |table: &str, runner: &[&str]| {
        let out = crate::example::example("sales")
            .arg(format!("--input={}/sales.csv", dir.path().display()))
            .arg(format!("--postgres_url={}", pg.url))
            .arg(format!("--table={table}"))
            .args(runner)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{runner:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            stdout.contains("read 6000 sales; wrote 55 totals"),
            "{stdout}"
        );
    };
    let cluster = [
        "--runner=ClusterRunner",
        "--num_workers=2",
        "--worker_threads=1",
    ];
    run("embedded", &["--direct_num_workers=2"]);
    run("on_cluster", &cluster);
    let rows = |table: &str| {
        pg.rows(&format!(
            "SELECT region, product, total, count FROM {table} ORDER BY region, product"
        ))
    };
    let expected = rows("embedded");
    assert_eq!(expected.len(), 55);
    assert_eq!(
        pg.rows("SELECT sum(count)::bigint AS n FROM embedded"),
        [r#"{"n":6000}"#]
    );
    assert_eq!(rows("on_cluster"), expected);
    run("on_cluster", &cluster);
    assert_eq!(rows("on_cluster"), expected);
    assert_eq!(pg.staging_tables(), 0);
}

/// A count of a key in a window, as a table row (also used by `kafka.rs`).
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct WindowCount {
    key: String,
    window_start: i64,
    count: i64,
}
impl sluice::SerdeCoder for WindowCount {}

/// Counts per key and window as table rows.
#[derive(Clone)]
pub struct ToRow;

impl sluice::DoFn for ToRow {
    type In = (String, u64);
    type Out = WindowCount;
    fn process(
        &mut self,
        (key, count): (String, u64),
        ctx: &mut sluice::Context<'_, WindowCount>,
    ) -> Result<(), sluice::BoxError> {
        let sluice::Window::Interval { start, .. } = ctx.window() else {
            return Err("not windowed".into());
        };
        ctx.emit(WindowCount {
            key,
            window_start: start.as_millis(),
            count: count as i64,
        });
        Ok(())
    }
}

#[test]
fn a_streaming_job_writes_each_bundle_as_it_commits() {
    use sluice::Timestamp;
    use sluice::transforms::test_stream::TestStream;
    use sluice::windowing::FixedWindows;
    let pg = Postgres::start();
    pg.execute(
        "CREATE TABLE counts (key text, window_start bigint, count bigint, PRIMARY KEY (key, window_start))",
    );
    let ms = Timestamp::from_millis;
    let event = |k: &str, t: i64| (k.to_string(), ms(t));
    let stream = TestStream::new()
        .add_elements(vec![event("a", 1), event("a", 2), event("b", 12)])
        .advance_watermark_to(ms(20))
        .add_elements(vec![event("a", 25)])
        .advance_watermark_to_infinity();
    let p = pipeline(2);
    p.test_stream("Events", stream)
        .window_into("Windows", FixedWindows::of_millis(10))
        .count_per_element("Count")
        .par_do("ToRow", ToRow)
        .write_postgres(
            "WriteCounts",
            WritePostgres::to(&pg.url, "counts").with_upsert_key(&["key", "window_start"]),
        );
    p.run().unwrap().wait_until_finish().unwrap();
    assert_eq!(
        pg.rows("SELECT key, window_start, count FROM counts ORDER BY key, window_start"),
        [
            r#"{"key":"a","window_start":0,"count":2}"#,
            r#"{"key":"a","window_start":20,"count":1}"#,
            r#"{"key":"b","window_start":10,"count":1}"#,
        ]
    );
    // Bundles were written as they committed: no staging table was used.
    assert_eq!(pg.staging_tables(), 0);
}
