//! PostgreSQL: typed rows read from a query or a table, split over workers by ranges of a
//! column; typed rows written to a table by `COPY`, one transaction per bundle.
//!
//! Rows travel as JSON on the way in (`row_to_json` in the server, serde on this side),
//! and as CSV on the way out (`COPY … FROM STDIN (FORMAT csv)`), so every column type
//! the server can print or parse works, and the mapping between a Rust type's fields
//! and a table's columns is by name. Both directions check that mapping before any data
//! moves: a field without a column, or a column whose type cannot hold the field,
//! fails the pipeline naming both.
//!
//! How a sink's rows become visible depends on its input:
//! - bounded (a batch job): each worker appends its committed bundles' rows to a local
//!   spool file (anonymous, removed by the OS when the process ends); when the job
//!   succeeds one transaction copies every spooled row into the table. A failed job
//!   leaves the table as it was. The worker processes of a cluster job copy their
//!   committed bundles into a staging table of the job (`sluice_stage_…`, unlogged, so
//!   written once rather than also to the write-ahead log) and hand their row counts to
//!   the launcher, whose commit moves the staged rows in the same transaction after
//!   counting them (a server crash empties an unlogged table: the job fails rather than
//!   publish fewer rows). A staging table left by a killed job is dropped by the next job
//!   that writes with a sink (its owner holds an advisory lock while it runs).
//! - unbounded (a streaming job): each committed bundle's rows are written in one
//!   transaction of their own, visible at once.
//!
//! A connection error (the server restarting, a dropped connection) is retried with
//! backoff — about 16 seconds in all — before the write fails the job.

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_schema::{DataType, FieldRef};
/// A row as the server sent it, for row mappers (`row.get::<_, i64>("id")`,
/// `row.try_get(…)`).
pub use postgres::Row;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Kind, ToSql, Type};
use postgres::{Client, NoTls};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::error::Permanent;
use sluice_core::receiver::AnyReceiver;
use sluice_core::unit::{
    JobInfo, SinkBuffer, SinkBytes, SinkFactory, SinkJob, SinkWriter, UnitContext,
};
use sluice_core::{BoxError, Element, ExecError, Receiver, UnitResult, WindowedValue};

use crate::error::IoError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts of a write that failed on its connection.
const RETRY_WAITS_MS: [u64; 8] = [100, 200, 400, 800, 1600, 3200, 5000, 5000];

/// `url` with its password, if any, replaced by `***` (for messages and logs).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((user_info, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = user_info.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_string();
    }
    // key=value form
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens a connection (without TLS) to the server `url` names: a
/// `postgres://user[:password]@host[:port]/database` URL or `key=value` pairs.
pub fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.connect(NoTls)
}

/// A client error as a person reads it: the server's message, its SQLSTATE, detail and
/// hint; or the connection's failure with its cause.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            let _ = write!(text, "; {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(text, "; hint: {hint}");
        }
        return text;
    }
    with_causes(e)
}

/// `e` followed by each cause it names that its text does not already say.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            let _ = write!(text, ": {more}");
        }
        cause = c.source();
    }
    text
}

/// Whether `e` is the connection's failure (worth another attempt on a new connection)
/// rather than the statement's.
pub fn transient(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
                )
        }
        None => true,
    }
}

/// `name` quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn problem(transform: &str, problem: String) -> IoError {
    IoError::Connector {
        transform: transform.to_string(),
        problem,
    }
}

fn cannot_connect(transform: &str, url: &str, e: &postgres::Error) -> IoError {
    problem(
        transform,
        format!(
            "cannot connect to PostgreSQL at '{}': {}; check that the server runs and the URL (user, host, port, database) is right",
            redact(url),
            describe(e)
        ),
    )
}

/// Whether a column of type `column` holds values of a field of Arrow type `field`, in
/// the direction rows move (`reading`: column to field).
fn fits(field: &DataType, column: &Type, reading: bool) -> bool {
    let int = matches!(*column, Type::INT2 | Type::INT4 | Type::INT8 | Type::OID);
    let float = matches!(*column, Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC);
    let json = matches!(*column, Type::JSON | Type::JSONB);
    let text_like = matches!(
        *column,
        Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UUID
            | Type::DATE
            | Type::TIME
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::INTERVAL
    );
    match crate::parquet::kind(field) {
        "null" => true,
        "integer" => int || (!reading && float),
        "float" => float || (reading && int) || (!reading && *column == Type::NUMERIC),
        "string" => text_like || (!reading && (json || *column == Type::NUMERIC)),
        "boolean" => *column == Type::BOOL,
        _ if matches!(field, DataType::List(_) | DataType::LargeList(_)) => {
            json || (reading && matches!(column.kind(), Kind::Array(_)))
        }
        _ => json,
    }
}

/// The fields of `T`, each checked to have a column of `columns` (the query's or
/// table's, `what`) that fits it in the direction rows move; problems name `transform`.
fn checked_fields<T: DeserializeOwned>(
    transform: &str,
    columns: &[(String, Type)],
    reading: bool,
    what: &str,
) -> Result<Vec<FieldRef>, IoError> {
    let type_name = std::any::type_name::<T>();
    let fields = crate::parquet::fields_of::<T>().map_err(|e| problem(transform, e))?;
    check_fields(&fields, columns, reading, what, type_name).map_err(|e| problem(transform, e))?;
    Ok(fields)
}

/// Checks that every field of the row type has a column that fits it.
fn check_fields(
    fields: &[FieldRef],
    columns: &[(String, Type)],
    reading: bool,
    what: &str,
    type_name: &str,
) -> Result<(), String> {
    for field in fields {
        let Some((_, column)) = columns.iter().find(|(name, _)| name == field.name()) else {
            let have: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "{what} has no column '{}' for the field of {type_name} (its columns: {}); rename the field (serde's rename) or the column",
                field.name(),
                have.join(", ")
            ));
        };
        if !fits(field.data_type(), column, reading) {
            return Err(format!(
                "column '{}' of {what} is {}, which {} field '{}' of {type_name} ({}); change the field's type or cast the column",
                field.name(),
                column.name(),
                if reading {
                    "cannot be read into"
                } else {
                    "cannot hold"
                },
                field.name(),
                field.data_type()
            ));
        }
    }
    Ok(())
}

fn columns_of(client: &mut Client, sql: &str) -> Result<Vec<(String, Type)>, postgres::Error> {
    let statement = client.prepare(sql)?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect())
}

/// How a partition column's values are compared: as integers, or as microseconds since
/// the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnKind {
    Integer,
    Time,
}

/// A range of the partition column one split reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgRange {
    /// Every row (the read is not partitioned).
    All,
    /// Rows whose partition value is at least `from` (if given) and below `to` (if given).
    Between {
        /// Inclusive lower bound.
        from: Option<i64>,
        /// Exclusive upper bound.
        to: Option<i64>,
    },
    /// Rows whose partition value is NULL.
    Null,
}

/// A checked read of a query's rows as `T`: the query's columns fit `T`'s fields, and
/// the partition column's bounds are known.
#[derive(Debug)]
pub struct PgRead {
    transform: String,
    url: String,
    query: String,
    partition: Option<(String, ColumnKind, i64, i64)>,
}

impl PgRead {
    /// Checks the query `query` (a `SELECT`) against `T` on the server `url`, and computes
    /// the bounds of `partition_column`, if given: every problem names `transform`.
    pub fn new<T: DeserializeOwned>(
        transform: &str,
        url: &str,
        query: &str,
        partition_column: Option<&str>,
    ) -> Result<PgRead, IoError> {
        PgRead::open(transform, url, query, partition_column, |columns, query| {
            checked_fields::<T>(transform, columns, true, &format!("the query '{query}'"))
                .map(|_| ())
        })
    }

    /// Checks that the query `query` runs on the server `url` and computes the bounds of
    /// `partition_column`, if given, for rows that a function of the caller maps (no
    /// check of columns against a type): every problem names `transform`.
    pub fn mapped(
        transform: &str,
        url: &str,
        query: &str,
        partition_column: Option<&str>,
    ) -> Result<PgRead, IoError> {
        PgRead::open(transform, url, query, partition_column, |_, _| Ok(()))
    }

    fn open(
        transform: &str,
        url: &str,
        query: &str,
        partition_column: Option<&str>,
        check: impl FnOnce(&[(String, Type)], &str) -> Result<(), IoError>,
    ) -> Result<PgRead, IoError> {
        let mut client = connect(url).map_err(|e| cannot_connect(transform, url, &e))?;
        let query = query.trim().trim_end_matches(';').to_string();
        let columns = columns_of(&mut client, &format!("SELECT * FROM ({query}) AS q"))
            .map_err(|e| {
                problem(
                    transform,
                    format!(
                        "the query '{query}' cannot be run: {}; check the table's name and the query's SQL",
                        describe(&e)
                    ),
                )
            })?;
        check(&columns, &query)?;
        let partition = match partition_column {
            None => None,
            Some(column) => {
                let Some((_, ty)) = columns.iter().find(|(name, _)| name == column) else {
                    return Err(problem(
                        transform,
                        format!(
                            "the partition column '{column}' is not a column of the query '{query}'; name one of its columns"
                        ),
                    ));
                };
                let kind = match *ty {
                    Type::INT2 | Type::INT4 | Type::INT8 => ColumnKind::Integer,
                    Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => ColumnKind::Time,
                    _ => {
                        return Err(problem(
                            transform,
                            format!(
                                "the partition column '{column}' is {}; partition by an integer, date or timestamp column",
                                ty.name()
                            ),
                        ));
                    }
                };
                let value = partition_value(column, kind);
                let bounds = client
                    .query_one(
                        &format!("SELECT min({value}), max({value}) FROM ({query}) AS q"),
                        &[],
                    )
                    .map_err(|e| {
                        problem(
                            transform,
                            format!(
                                "cannot compute the bounds of the partition column '{column}': {}",
                                describe(&e)
                            ),
                        )
                    })?;
                let min: Option<i64> = bounds.get(0);
                let max: Option<i64> = bounds.get(1);
                Some((column.to_string(), kind, min.unwrap_or(0), max.unwrap_or(0)))
            }
        };
        Ok(PgRead {
            transform: transform.to_string(),
            url: url.to_string(),
            query,
            partition,
        })
    }

    /// The query read.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Divides the read into about `parts` ranges of the partition column (at least one
    /// value each), plus one for its NULLs; one range without a partition column.
    pub fn ranges(&self, parts: usize) -> Vec<PgRange> {
        let Some((_, _, min, max)) = &self.partition else {
            return vec![PgRange::All];
        };
        let span = (*max as i128 - *min as i128 + 1).max(1);
        let parts = (parts.max(1) as i128).min(span);
        let mut ranges = Vec::with_capacity(parts as usize + 1);
        let mut from = None;
        for i in 1..parts {
            let bound = (*min as i128 + span * i / parts) as i64;
            ranges.push(PgRange::Between {
                from,
                to: Some(bound),
            });
            from = Some(bound);
        }
        ranges.push(PgRange::Between { from, to: None });
        ranges.push(PgRange::Null);
        ranges
    }

    /// The SQL that reads `range`, selecting `columns` of the query's rows `q`.
    fn sql(&self, range: &PgRange, columns: &str) -> String {
        let select = format!("SELECT {columns} FROM ({}) AS q", self.query);
        let Some((column, kind, _, _)) = &self.partition else {
            return select;
        };
        let value = partition_value(column, *kind);
        match range {
            PgRange::All => select,
            PgRange::Null => format!("{select} WHERE {value} IS NULL"),
            PgRange::Between { from, to } => {
                let mut conditions = Vec::new();
                if let Some(from) = from {
                    conditions.push(format!("{value} >= {from}"));
                }
                if let Some(to) = to {
                    conditions.push(format!("{value} < {to}"));
                }
                if conditions.is_empty() {
                    conditions.push(format!("{value} IS NOT NULL"));
                }
                format!("{select} WHERE {}", conditions.join(" AND "))
            }
        }
    }

    /// Reads the rows of `range` as `T`, in the order the server sends them, handing each
    /// to `each`. A row that does not decode is an error naming the row's JSON.
    pub fn read<T: DeserializeOwned>(
        &self,
        range: &PgRange,
        mut each: impl FnMut(T) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let sql = self.sql(range, "row_to_json(q)::text");
        self.rows(&sql, |row| {
            let json: &str = row.get(0);
            // The same row would be refused again: no retry can mend it.
            let value = serde_json::from_str::<T>(json).map_err(|e| {
                Permanent::new(format!(
                    "transform '{}': a row of '{}' does not decode as {}: {e}: {json}",
                    self.transform,
                    self.query,
                    std::any::type_name::<T>()
                ))
            })?;
            each(value)
        })
    }

    /// Reads the rows of `range` as the server sends them (every column of the query, in
    /// the binary format), handing each to `map` and what it returns to `each`. A row
    /// `map` refuses is an error naming the transform and the query.
    pub fn read_mapped<T>(
        &self,
        range: &PgRange,
        map: impl Fn(&Row) -> Result<T, BoxError>,
        mut each: impl FnMut(T) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let sql = self.sql(range, "q.*");
        self.rows(&sql, |row| {
            let value = map(row).map_err(|e| {
                // The client's errors keep their cause (a column's type) as a source.
                // The mapper is given the same row on a retry: the job fails at once.
                Permanent::new(format!(
                    "transform '{}': the row mapper refused a row of '{}': {}",
                    self.transform,
                    self.query,
                    with_causes(e.as_ref())
                ))
            })?;
            each(value)
        })
    }

    fn rows(
        &self,
        sql: &str,
        mut each: impl FnMut(&Row) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut client = connect(&self.url).map_err(|e| {
            format!(
                "cannot connect to PostgreSQL at '{}': {}",
                redact(&self.url),
                describe(&e)
            )
        })?;
        let no_params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut rows = client
            .query_raw(sql, no_params)
            .map_err(|e| format!("reading '{sql}' failed: {}", describe(&e)))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| format!("reading '{sql}' failed: {}", describe(&e)))?
        {
            each(&row)?;
        }
        Ok(())
    }
}

/// The SQL expression a partition column is compared by.
fn partition_value(column: &str, kind: ColumnKind) -> String {
    let column = format!("q.{}", quote_ident(column));
    match kind {
        ColumnKind::Integer => format!("{column}::int8"),
        ColumnKind::Time => format!("(extract(epoch from {column}) * 1000000)::int8"),
    }
}

/// What a Postgres sink writes, and where.
#[derive(Debug)]
struct SinkSpec {
    transform: String,
    url: String,
    table: String,
    columns: Vec<String>,
    upsert_key: Option<Vec<String>>,
}

impl SinkSpec {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statement that moves the rows of `from` into the table (an upsert if keyed;
    /// the last row written for a key wins).
    fn insert_from(&self, from: &str) -> String {
        let columns = self.column_list();
        match &self.upsert_key {
            None => format!(
                "INSERT INTO {} ({columns}) SELECT {columns} FROM {from}",
                self.table
            ),
            Some(key) => {
                let key_list = key.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
                let key_list = key_list.join(", ");
                let updates: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                    .collect();
                let action = if updates.is_empty() {
                    "NOTHING".to_string()
                } else {
                    format!("UPDATE SET {}", updates.join(", "))
                };
                format!(
                    "INSERT INTO {table} ({columns}) SELECT DISTINCT ON ({key_list}) {columns} FROM {from} ORDER BY {key_list}, ctid DESC ON CONFLICT ({key_list}) DO {action}",
                    table = self.table
                )
            }
        }
    }

    fn copy_into(&self, table: &str) -> String {
        format!(
            "COPY {table} ({}) FROM STDIN (FORMAT csv)",
            self.column_list()
        )
    }

    /// The staging table of `job` for this sink.
    fn staging(&self, job: &str) -> String {
        let mut hasher = DefaultHasher::new();
        (job, &self.transform, &self.table).hash(&mut hasher);
        format!("sluice_stage_{:016x}", hasher.finish())
    }
}

/// Runs `f` on a connection, again on a new connection after a connection error (with
/// backoff, logged); a statement's own error is returned at once.
fn with_retries<R>(
    spec: &SinkSpec,
    client: &mut Option<Client>,
    what: &str,
    mut f: impl FnMut(&mut Client) -> Result<R, postgres::Error>,
) -> Result<R, BoxError> {
    let mut attempt = 0;
    loop {
        let result = match client {
            Some(c) => f(c),
            None => connect(&spec.url).and_then(|mut c| {
                let r = f(&mut c);
                *client = Some(c);
                r
            }),
        };
        match result {
            Ok(r) => return Ok(r),
            Err(e) if transient(&e) && attempt < RETRY_WAITS_MS.len() => {
                let wait = RETRY_WAITS_MS[attempt];
                attempt += 1;
                log::warn!(
                    "transform '{}': {what} failed on its connection to '{}' (attempt {attempt}), retrying in {wait} ms: {}",
                    spec.transform,
                    redact(&spec.url),
                    describe(&e)
                );
                *client = None;
                std::thread::sleep(Duration::from_millis(wait));
            }
            Err(e) => {
                return Err(format!(
                    "{what} in '{}' failed{}: {}",
                    spec.table,
                    if attempt > 0 {
                        format!(" after {} attempts", attempt + 1)
                    } else {
                        String::new()
                    },
                    describe(&e)
                )
                .into());
            }
        }
    }
}

/// A sink of `T` rows into a PostgreSQL table (see the module documentation).
pub struct PostgresSink<T> {
    spec: Arc<SinkSpec>,
    _rows: PhantomData<fn(T)>,
}

impl<T: Serialize + DeserializeOwned> PostgresSink<T> {
    /// Checks that `table` exists on the server `url` (creating it with the column
    /// definitions `create`, if given and it does not) and that its columns fit `T`'s
    /// fields, and — with `upsert_key` — that those columns have a unique index; every
    /// problem names `transform`.
    pub fn new(
        transform: &str,
        url: &str,
        table: &str,
        upsert_key: Option<Vec<String>>,
        create: Option<&str>,
    ) -> Result<PostgresSink<T>, IoError> {
        let mut client = connect(url).map_err(|e| cannot_connect(transform, url, &e))?;
        let exists = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .is_ok_and(|r| r.get::<_, bool>(0));
        if let Some(definition) = create.filter(|_| !exists) {
            client
                .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {table} ({definition})"))
                .map_err(|e| {
                    problem(
                        transform,
                        format!(
                            "cannot create the table {table} ({definition}): {}; check the column definitions",
                            describe(&e)
                        ),
                    )
                })?;
        }
        let columns = columns_of(&mut client, &format!("SELECT * FROM {table}")).map_err(|e| {
            problem(
                transform,
                format!(
                    "the table {table} cannot be written: {}; create it first (or give its columns to create it)",
                    describe(&e)
                ),
            )
        })?;
        let fields =
            checked_fields::<T>(transform, &columns, false, &format!("the table {table}"))?;
        let spec = SinkSpec {
            transform: transform.to_string(),
            url: url.to_string(),
            table: table.to_string(),
            columns: fields.iter().map(|f| f.name().to_string()).collect(),
            upsert_key,
        };
        if let Some(key) = &spec.upsert_key {
            if let Some(missing) = key.iter().find(|k| !spec.columns.contains(k)) {
                return Err(problem(
                    transform,
                    format!(
                        "the upsert key column '{missing}' is not a field of {}; key on fields the rows carry",
                        std::any::type_name::<T>()
                    ),
                ));
            }
            // The planner checks that a unique index matches the conflict target:
            // explaining the upsert from an empty table of the same columns asks it.
            let check = format!(
                "CREATE TEMP TABLE sluice_check AS SELECT {} FROM {table} WITH NO DATA; EXPLAIN {}",
                spec.column_list(),
                spec.insert_from("sluice_check")
            );
            let plan = client.batch_execute(&check);
            plan.map_err(|e| {
                problem(
                    transform,
                    format!(
                        "cannot upsert into {table} on ({}): {}; create a unique index on those columns",
                        key.join(", "),
                        describe(&e)
                    ),
                )
            })?;
        }
        Ok(PostgresSink {
            spec: Arc::new(spec),
            _rows: PhantomData,
        })
    }
}

/// Encodes elements as CSV rows for `COPY`, fields in the table's column order.
struct RowUnit<T> {
    buffer: SinkBuffer,
    columns: Arc<SinkSpec>,
    _rows: PhantomData<fn(T)>,
}

/// Appends `value` as one CSV field: NULL unquoted and empty, strings quoted, nested
/// values as JSON text.
fn csv_field(out: &mut Vec<u8>, value: &serde_json::Value) {
    match value {
        serde_json::Value::Null => {}
        serde_json::Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        serde_json::Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        serde_json::Value::String(s) => quoted(out, s),
        nested => quoted(out, &nested.to_string()),
    }
}

/// Not a row of scalar fields in the table's column order (the caller takes the slow path).
#[derive(Debug)]
struct NotScalar;

impl std::fmt::Display for NotScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a row of scalar fields")
    }
}

impl std::error::Error for NotScalar {}

impl serde::ser::Error for NotScalar {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotScalar
    }
}

/// Serializes a struct of scalar fields as one CSV line's fields, in column order.
struct CsvRow<'a> {
    out: &'a mut Vec<u8>,
    columns: &'a [String],
    written: usize,
}

/// Serializes one scalar field: NULL unquoted and empty, strings quoted.
struct CsvScalar<'a> {
    out: &'a mut Vec<u8>,
}

fn quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

macro_rules! display_scalar {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<(), NotScalar> {
            let _ = write!(self.out, "{v}");
            Ok(())
        })*
    };
}

macro_rules! not_scalar {
    ($($method:ident($($arg:ty),*) -> $ret:ty),*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ret, NotScalar> {
            Err(NotScalar)
        })*
    };
}

impl serde::Serializer for CsvScalar<'_> {
    type Ok = ();
    type Error = NotScalar;
    type SerializeSeq = serde::ser::Impossible<(), NotScalar>;
    type SerializeTuple = serde::ser::Impossible<(), NotScalar>;
    type SerializeTupleStruct = serde::ser::Impossible<(), NotScalar>;
    type SerializeTupleVariant = serde::ser::Impossible<(), NotScalar>;
    type SerializeMap = serde::ser::Impossible<(), NotScalar>;
    type SerializeStruct = serde::ser::Impossible<(), NotScalar>;
    type SerializeStructVariant = serde::ser::Impossible<(), NotScalar>;

    display_scalar!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_i128: i128, serialize_u8: u8,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64);

    fn serialize_char(self, v: char) -> Result<(), NotScalar> {
        quoted(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), NotScalar> {
        quoted(self.out, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), NotScalar> {
        Ok(())
    }
    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Result<(), NotScalar> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), NotScalar> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotScalar> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), NotScalar> {
        quoted(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<(), NotScalar> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotScalar> {
        Err(NotScalar)
    }
    not_scalar!(
        serialize_bytes(&[u8]) -> (),
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant
    );
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotScalar> {
        Err(NotScalar)
    }
}

impl serde::ser::SerializeStruct for &mut CsvRow<'_> {
    type Ok = ();
    type Error = NotScalar;
    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), NotScalar> {
        if self.columns.get(self.written).map(String::as_str) != Some(key) {
            return Err(NotScalar);
        }
        if self.written > 0 {
            self.out.push(b',');
        }
        value.serialize(CsvScalar { out: self.out })?;
        self.written += 1;
        Ok(())
    }
    fn end(self) -> Result<(), NotScalar> {
        Ok(())
    }
}

impl<'a, 'b> serde::Serializer for &'b mut CsvRow<'a> {
    type Ok = ();
    type Error = NotScalar;
    type SerializeSeq = serde::ser::Impossible<(), NotScalar>;
    type SerializeTuple = serde::ser::Impossible<(), NotScalar>;
    type SerializeTupleStruct = serde::ser::Impossible<(), NotScalar>;
    type SerializeTupleVariant = serde::ser::Impossible<(), NotScalar>;
    type SerializeMap = serde::ser::Impossible<(), NotScalar>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), NotScalar>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, NotScalar> {
        Ok(self)
    }
    not_scalar!(
        serialize_bool(bool) -> (), serialize_i8(i8) -> (), serialize_i16(i16) -> (),
        serialize_i32(i32) -> (), serialize_i64(i64) -> (), serialize_u8(u8) -> (),
        serialize_u16(u16) -> (), serialize_u32(u32) -> (), serialize_u64(u64) -> (),
        serialize_f32(f32) -> (), serialize_f64(f64) -> (), serialize_char(char) -> (),
        serialize_str(&str) -> (), serialize_bytes(&[u8]) -> (), serialize_none() -> (),
        serialize_unit() -> (), serialize_unit_struct(&'static str) -> (),
        serialize_unit_variant(&'static str, u32, &'static str) -> (),
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant
    );
    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), NotScalar> {
        Err(NotScalar)
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotScalar> {
        Err(NotScalar)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotScalar> {
        Err(NotScalar)
    }
}

impl<T: Serialize> Receiver<T> for RowUnit<T> {
    fn start_bundle(&mut self) -> UnitResult {
        Ok(())
    }
    fn receive(&mut self, element: WindowedValue<T>) -> UnitResult {
        let spec = &self.columns;
        // Rows of scalar fields are written straight from serde; others (nested fields,
        // skipped or flattened fields) through a JSON value.
        let direct = self.buffer.append::<()>(|out| {
            let mut row = CsvRow {
                out,
                columns: &spec.columns,
                written: 0,
            };
            element.value.serialize(&mut row).map_err(|_| ())?;
            if row.written != spec.columns.len() {
                return Err(());
            }
            out.push(b'\n');
            Ok(())
        });
        if direct.is_ok() {
            return Ok(());
        }
        let value = serde_json::to_value(&element.value).map_err(|e| {
            ExecError::new(
                spec.transform.clone(),
                format!("a row cannot be encoded: {e}"),
            )
        })?;
        let serde_json::Value::Object(fields) = value else {
            return Err(ExecError::new(
                spec.transform.clone(),
                format!(
                    "{} is not a struct with named fields; a table row needs one",
                    std::any::type_name::<T>()
                ),
            ));
        };
        self.buffer.append::<ExecError>(|out| {
            for (i, column) in spec.columns.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(out, fields.get(column).unwrap_or(&serde_json::Value::Null));
            }
            out.push(b'\n');
            Ok(())
        })?;
        Ok(())
    }
    fn finish_bundle(&mut self) -> UnitResult {
        Ok(())
    }
}

impl<T: Element + Serialize> SinkFactory for PostgresSink<T> {
    fn unit(&self, _ctx: &UnitContext, buffer: SinkBuffer) -> Result<AnyReceiver, Box<ExecError>> {
        Ok(AnyReceiver::new::<T>(Box::new(RowUnit::<T> {
            buffer,
            columns: self.spec.clone(),
            _rows: PhantomData,
        })))
    }

    fn begin(&self, job: &JobInfo) -> Result<Arc<dyn SinkJob>, BoxError> {
        let spec = self.spec.clone();
        if job.unbounded {
            return Ok(Arc::new(PgSinkJob {
                spec,
                staging: None,
                spool: None,
                lock: Mutex::new(None),
                rows: Arc::default(),
                adopted: AtomicU64::new(0),
            }));
        }
        let staging = spec.staging(&job.job_id);
        let mut client = None;
        let lock = if job.member {
            None
        } else {
            with_retries(&spec, &mut client, "cleaning up staging tables", |c| {
                drop_stale_staging(c)
            })?;
            // Held for as long as this job runs: the next job's clean-up sees it is alive.
            let mut lock = connect(&spec.url).map_err(|e| {
                format!(
                    "cannot connect to '{}': {}",
                    redact(&spec.url),
                    describe(&e)
                )
            })?;
            lock.execute("SELECT pg_advisory_lock($1)", &[&lock_key(&staging)])
                .map_err(|e| describe(&e))?;
            Some(lock)
        };
        // Members stage their rows in the database; the launcher spools its own locally.
        let spool = if job.member {
            create_staging(&spec, &mut client, &staging)?;
            None
        } else {
            Some(Arc::default())
        };
        Ok(Arc::new(PgSinkJob {
            spec,
            staging: Some(staging),
            spool,
            lock: Mutex::new(lock),
            rows: Arc::default(),
            adopted: AtomicU64::new(0),
        }))
    }
}

/// The advisory lock a job holds on its staging table.
fn lock_key(staging: &str) -> i64 {
    let hex = staging.trim_start_matches("sluice_stage_");
    u64::from_str_radix(hex, 16).unwrap_or(0) as i64
}

/// Creates the staging table (if another process of the job has not).
fn create_staging(
    spec: &SinkSpec,
    client: &mut Option<Client>,
    staging: &str,
) -> Result<(), BoxError> {
    let sql = format!(
        "CREATE UNLOGGED TABLE IF NOT EXISTS {staging} AS SELECT {} FROM {} WITH NO DATA",
        spec.column_list(),
        spec.table
    );
    match with_retries(spec, client, "creating the staging table", |c| {
        c.batch_execute(&sql)
    }) {
        Ok(()) => Ok(()),
        // Two processes of one job creating it at once: one wins, which is all we need.
        Err(_)
            if with_retries(spec, client, "checking the staging table", |c| {
                c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&staging])
                    .map(|r| r.get::<_, bool>(0))
            })? =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Drops the staging tables whose jobs are gone: no session holds their advisory lock.
fn drop_stale_staging(client: &mut Client) -> Result<(), postgres::Error> {
    let rows = client.query(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'sluice\\_stage\\_%' AND schemaname = current_schema()",
        &[],
    )?;
    for row in rows {
        let table: String = row.get(0);
        let key = lock_key(&table);
        let free: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
            .get(0);
        if free {
            client.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
            client.execute("SELECT pg_advisory_unlock($1)", &[&key])?;
            log::info!("dropped the staging table {table} of a job that is no longer running");
        }
    }
    Ok(())
}

/// One job's use of a Postgres sink.
struct PgSinkJob {
    spec: Arc<SinkSpec>,
    /// The staging table (a bounded input); `None`: bundles go straight to the table.
    staging: Option<String>,
    /// The spool files of this process's closed writers (a bounded input, outside
    /// cluster members): copied into the table at commit.
    spool: Option<Arc<Mutex<Vec<std::fs::File>>>>,
    /// The connection that holds the staging table's advisory lock (the committing
    /// process).
    lock: Mutex<Option<Client>>,
    /// Rows written by this process's writers.
    rows: Arc<AtomicU64>,
    /// Rows members of a cluster job wrote (their handoffs).
    adopted: AtomicU64,
}

impl PgSinkJob {
    fn release(&self) {
        // Closing the session releases its advisory lock.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl SinkJob for PgSinkJob {
    fn open(&self, _worker: usize) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(PgWriter {
            spec: self.spec.clone(),
            staging: self.staging.clone(),
            spool: self
                .spool
                .clone()
                .map(|closed| Spool { file: None, closed }),
            client: None,
            rows: self.rows.clone(),
        }))
    }

    fn commit(&self) -> Result<String, BoxError> {
        let Some(staging) = &self.staging else {
            return Ok(format!(
                "{} rows written to table {} as bundles committed",
                self.rows.load(Ordering::Relaxed) + self.adopted.load(Ordering::Relaxed),
                self.spec.table
            ));
        };
        let spooled = self.rows.load(Ordering::Relaxed);
        let adopted = self.adopted.load(Ordering::Relaxed);
        let mut files = match &self.spool {
            Some(spool) => std::mem::take(&mut *spool.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        };
        let spec = &self.spec;
        let mut client = None;
        let moved = with_retries(spec, &mut client, "publishing the job's rows", |c| {
            let mut tx = c.transaction()?;
            // Upserts collect every row first: the last one written for a key wins.
            let upsert = spec.upsert_key.is_some();
            let target = if upsert {
                tx.batch_execute(&format!(
                    "CREATE TEMP TABLE sluice_publish ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
                    spec.column_list(),
                    spec.table
                ))?;
                "sluice_publish"
            } else {
                spec.table.as_str()
            };
            let mut moved = 0;
            if self.spool.is_some() {
                let mut writer = tx.copy_in(&spec.copy_into(target))?;
                for file in &mut files {
                    match copy_file(file, &mut writer) {
                        Ok(()) => {}
                        Err(SpoolCopy::Read(e)) => {
                            return Ok(Err(format!("reading a spooled bundle failed: {e}")));
                        }
                        Err(SpoolCopy::Write) => break,
                    }
                }
                let copied = writer.finish()?;
                if copied != spooled {
                    return Ok(Err(format!(
                        "{copied} rows were copied, but {spooled} were spooled"
                    )));
                }
                moved += copied;
            }
            if adopted > 0 {
                // The staging table is unlogged (written once, cheaply): a server crash
                // empties it, which this count notices instead of publishing fewer rows.
                let staged: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {staging}"), &[])?
                    .get(0);
                if staged as u64 != adopted {
                    return Ok(Err(format!(
                        "the staging table {staging} holds {staged} rows, but {adopted} were written to it (did the server restart after a crash?)"
                    )));
                }
                if upsert {
                    tx.execute(
                        &format!(
                            "INSERT INTO {target} SELECT {} FROM {staging}",
                            spec.column_list()
                        ),
                        &[],
                    )?;
                } else {
                    moved += tx.execute(&spec.insert_from(staging), &[])?;
                }
            }
            if upsert {
                moved = tx.execute(&spec.insert_from(target), &[])?;
            }
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {staging}"))?;
            tx.commit()?;
            Ok(Ok(moved))
        })?;
        let moved =
            moved.map_err(|problem| format!("{problem}; table {} is unchanged", spec.table))?;
        Ok(format!("{moved} rows into table {}", spec.table))
    }

    fn handoff(&self) -> Result<Vec<u8>, BoxError> {
        Ok(self.rows.load(Ordering::Relaxed).to_le_bytes().to_vec())
    }

    fn adopt(&self, handoff: &[u8]) -> Result<(), BoxError> {
        let rows: [u8; 8] = handoff
            .try_into()
            .map_err(|_| "a member's handoff for a Postgres sink is not a row count")?;
        self.adopted
            .fetch_add(u64::from_le_bytes(rows), Ordering::Relaxed);
        Ok(())
    }

    fn undo(&self) -> Result<(), BoxError> {
        match &self.staging {
            Some(_) => Err(format!(
                "the rows committed to table {} cannot be taken back (a database commit is final)",
                self.spec.table
            )
            .into()),
            None => Ok(()),
        }
    }

    fn finalize(&self) {
        self.release();
    }

    fn abort(&self) {
        if let Some(staging) = &self.staging {
            let mut client = None;
            if let Err(e) =
                with_retries(&self.spec, &mut client, "dropping the staging table", |c| {
                    c.batch_execute(&format!("DROP TABLE IF EXISTS {staging}"))
                })
            {
                log::warn!(
                    "transform '{}': the staging table {staging} is left behind ({e}); the next job writing with a Postgres sink drops it",
                    self.spec.transform
                );
            }
        }
        self.release();
    }
}

/// Writes one worker's committed bundles.
struct PgWriter {
    spec: Arc<SinkSpec>,
    staging: Option<String>,
    /// Where bundles go in a batch job's launching process.
    spool: Option<Spool>,
    client: Option<Client>,
    rows: Arc<AtomicU64>,
}

/// A writer's spool file, handed to the job when the writer closes.
struct Spool {
    file: Option<std::fs::File>,
    closed: Arc<Mutex<Vec<std::fs::File>>>,
}

impl Spool {
    fn append(&mut self, rows: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(tempfile::tempfile()?),
        };
        let before = file.metadata()?.len();
        file.write_all(rows).inspect_err(|_| {
            // A bundle is spooled whole or not at all.
            let _ = file.set_len(before);
            let _ = std::io::Seek::seek(file, std::io::SeekFrom::Start(before));
        })
    }
}

/// Why a spool file did not reach a `COPY`.
enum SpoolCopy {
    /// Reading the file failed.
    Read(std::io::Error),
    /// Writing to the connection failed (the `COPY`'s `finish` reports why).
    Write,
}

/// Appends `file` (from its start) to a `COPY`.
fn copy_file(file: &mut std::fs::File, to: &mut impl std::io::Write) -> Result<(), SpoolCopy> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(SpoolCopy::Read)?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(SpoolCopy::Read)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n]).map_err(|_| SpoolCopy::Write)?;
    }
}

impl SinkWriter for PgWriter {
    fn write_bundle(&mut self, bundle: SinkBytes) -> Result<(), BoxError> {
        if let Some(spool) = &mut self.spool {
            spool.append(&bundle.bytes).map_err(|e| {
                format!(
                    "spooling a bundle's rows for table {} failed: {e}",
                    self.spec.table
                )
            })?;
            self.rows.fetch_add(bundle.records, Ordering::Relaxed);
            return Ok(());
        }
        let spec = self.spec.clone();
        let staging = self.staging.clone();
        with_retries(&spec, &mut self.client, "writing a bundle's rows", |c| {
            let mut tx = c.transaction()?;
            match (&staging, &spec.upsert_key) {
                (Some(staging), _) => copy(&mut tx, &spec.copy_into(staging), &bundle.bytes)?,
                (None, None) => copy(&mut tx, &spec.copy_into(&spec.table), &bundle.bytes)?,
                (None, Some(_)) => {
                    tx.batch_execute(&format!(
                        "CREATE TEMP TABLE IF NOT EXISTS sluice_bundle ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA",
                        spec.column_list(),
                        spec.table
                    ))?;
                    copy(&mut tx, &spec.copy_into("sluice_bundle"), &bundle.bytes)?;
                    tx.execute(&spec.insert_from("sluice_bundle"), &[])?;
                }
            }
            tx.commit()
        })?;
        self.rows.fetch_add(bundle.records, Ordering::Relaxed);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<(), BoxError> {
        if let Some(Spool {
            file: Some(file),
            closed,
        }) = self.spool
        {
            closed.lock().unwrap_or_else(|e| e.into_inner()).push(file);
        }
        Ok(())
    }
}

fn copy(tx: &mut postgres::Transaction<'_>, sql: &str, rows: &[u8]) -> Result<(), postgres::Error> {
    let mut writer = tx.copy_in(sql)?;
    // A write error is the connection's; `finish` reports it (or the server's).
    let _ = writer.write_all(rows);
    writer.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://me:secret@127.0.0.1:5432/db"),
            "postgres://me:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("postgres://me@h/db"), "postgres://me@h/db");
        assert_eq!(
            redact("host=h password=secret user=me"),
            "host=h password=*** user=me"
        );
    }

    #[test]
    fn csv_fields_keep_null_apart_from_empty() {
        let mut out = Vec::new();
        for v in [
            serde_json::Value::Null,
            serde_json::json!(""),
            serde_json::json!("a \"b\",\nc"),
            serde_json::json!(2.5),
            serde_json::json!({"k": [1]}),
        ] {
            csv_field(&mut out, &v);
            out.push(b',');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ",\"\",\"a \"\"b\"\",\nc\",2.5,\"{\"\"k\"\":[1]}\","
        );
    }

    #[test]
    fn scalar_rows_are_written_straight_and_others_refused() {
        #[derive(Serialize)]
        struct Flat {
            id: i64,
            name: Option<String>,
            note: Option<String>,
            x: f64,
            ok: bool,
        }
        let columns: Vec<String> = ["id", "name", "note", "x", "ok"].map(String::from).into();
        let mut out = Vec::new();
        let mut row = CsvRow {
            out: &mut out,
            columns: &columns,
            written: 0,
        };
        Flat {
            id: -3,
            name: None,
            note: Some("a \"b\"".into()),
            x: f64::NAN,
            ok: true,
        }
        .serialize(&mut row)
        .unwrap();
        assert_eq!(row.written, 5);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-3,,\"a \"\"b\"\"\",NaN,true"
        );
        #[derive(Serialize)]
        struct Nested {
            id: i64,
            tags: Vec<String>,
        }
        let columns: Vec<String> = ["id", "tags"].map(String::from).into();
        let mut out = Vec::new();
        let mut row = CsvRow {
            out: &mut out,
            columns: &columns,
            written: 0,
        };
        assert!(
            Nested {
                id: 1,
                tags: vec![]
            }
            .serialize(&mut row)
            .is_err()
        );
    }

    #[test]
    fn types_fit_in_the_direction_rows_move() {
        assert!(fits(&DataType::Int64, &Type::INT4, true));
        assert!(!fits(&DataType::Int64, &Type::TEXT, true));
        assert!(fits(&DataType::Float64, &Type::INT8, true));
        assert!(!fits(&DataType::Int32, &Type::FLOAT8, true));
        assert!(fits(&DataType::Int32, &Type::FLOAT8, false));
        assert!(fits(&DataType::Utf8, &Type::TIMESTAMPTZ, false));
        assert!(!fits(&DataType::Utf8, &Type::NUMERIC, true));
        assert!(!fits(&DataType::Boolean, &Type::INT4, false));
    }

    #[test]
    fn ranges_cover_every_value_and_nulls() {
        let read = PgRead {
            transform: "R".into(),
            url: String::new(),
            query: "SELECT 1".into(),
            partition: Some(("id".into(), ColumnKind::Integer, 1, 10)),
        };
        let ranges = read.ranges(3);
        assert_eq!(
            ranges,
            vec![
                PgRange::Between {
                    from: None,
                    to: Some(4)
                },
                PgRange::Between {
                    from: Some(4),
                    to: Some(7)
                },
                PgRange::Between {
                    from: Some(7),
                    to: None
                },
                PgRange::Null,
            ]
        );
        // Fewer values than parts: one range per value.
        let read = PgRead {
            partition: Some(("id".into(), ColumnKind::Integer, 5, 6)),
            ..read
        };
        assert_eq!(read.ranges(8).len(), 3);
    }
}
