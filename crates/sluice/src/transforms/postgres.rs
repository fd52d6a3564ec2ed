//! PostgreSQL: typed rows read from a query or a table, and written to a table.
//!
//! `read_postgres` runs a query (or reads a table) and decodes each row into a serde
//! type by column name. With a partition column — an integer, date or timestamp column
//! — the source computes the column's bounds and splits the read into ranges of it
//! (plus one for its NULLs), which workers read in parallel; without one, a single
//! worker reads the query. Elements carry the minimum timestamp, as other bounded
//! sources' do (give them event times with `with_timestamps`). `read_postgres_mapped`
//! hands each row, as the server sent it, to a function of yours instead (a row mapper:
//! `|row| Ok(Order { id: row.try_get("id")?, … })`), for rows that are not a serde
//! type's fields by name.
//!
//! `write_postgres` copies rows into a table with `COPY`. In a batch job each worker
//! spools its committed bundles' rows to a local temporary file and one transaction
//! copies them into the table when the job succeeds, so a failed job leaves the table
//! as it was (a cluster job's worker processes stage their rows in a table of the job,
//! moved in by the same transaction); in a streaming job each bundle's transaction
//! makes its rows visible as it commits.
//! A retried bundle writes nothing twice: only committed bundles are written. With an
//! upsert key, a row whose key is in the table replaces that row.
//!
//! Both check the server before anything runs — that it is reachable, that the query
//! runs or the table exists, and that every field of the type has a column of a type
//! that fits — and report a problem naming the transform, the column and the type.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sluice::prelude::*;
//! use sluice::transforms::postgres::{ReadPostgres, WritePostgres};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Order {
//!     id: i64,
//!     customer: String,
//!     amount: f64,
//! }
//! impl sluice::SerdeCoder for Order {}
//!
//! let url = "postgres://postgres@127.0.0.1:5432/shop";
//! let p = Pipeline::for_test();
//! let orders = p.read_postgres::<Order>(
//!     "ReadOrders",
//!     ReadPostgres::table(url, "orders").with_partition_column("id"),
//! );
//! orders.write_postgres(
//!     "WriteCopy",
//!     WritePostgres::to(url, "orders_copy")
//!         .create_if_missing("id bigint primary key, customer text, amount float8")
//!         .with_upsert_key(&["id"]),
//! );
//! p.run().unwrap().wait_until_finish().unwrap();
//! ```

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_core::{BoxError, Element, Timestamp};
use sluice_io::postgres::{PgRange, PgRead, PostgresSink, Row, redact};
use sluice_plan::Payload;

use crate::pcollection::PCollection;
use crate::pipeline::Pipeline;
use crate::transforms::source::{BoundedSource, Emit, Unusable};

/// What to read from PostgreSQL (`Pipeline::read_postgres`).
#[derive(Clone, Debug)]
pub struct ReadPostgres {
    url: String,
    query: String,
    partition_column: Option<String>,
}

impl ReadPostgres {
    /// Every row of `table` on the server `url`
    /// (`postgres://user[:password]@host[:port]/database`).
    pub fn table(url: &str, table: &str) -> ReadPostgres {
        ReadPostgres::query(url, &format!("SELECT * FROM {table}"))
    }

    /// The rows of the `SELECT` statement `sql`.
    pub fn query(url: &str, sql: &str) -> ReadPostgres {
        ReadPostgres {
            url: url.into(),
            query: sql.into(),
            partition_column: None,
        }
    }

    /// Splits the read by ranges of `column` (integer, date or timestamp), whose bounds
    /// the source computes before the job runs.
    pub fn with_partition_column(mut self, column: &str) -> ReadPostgres {
        self.partition_column = Some(column.into());
        self
    }
}

/// Where and how to write to PostgreSQL (`PCollection::write_postgres`).
#[derive(Clone, Debug)]
pub struct WritePostgres {
    url: String,
    table: String,
    upsert_key: Option<Vec<String>>,
    create: Option<String>,
}

impl WritePostgres {
    /// Rows into `table` on the server `url`; the table's columns named as the type's
    /// fields receive them.
    pub fn to(url: &str, table: &str) -> WritePostgres {
        WritePostgres {
            url: url.into(),
            table: table.into(),
            upsert_key: None,
            create: None,
        }
    }

    /// A row whose `key` columns equal a row's in the table replaces it (`INSERT … ON
    /// CONFLICT … DO UPDATE`); the table needs a unique index on those columns. Of rows
    /// with one key written together, the last one wins.
    pub fn with_upsert_key(mut self, key: &[&str]) -> WritePostgres {
        self.upsert_key = Some(key.iter().map(|k| k.to_string()).collect());
        self
    }

    /// Creates the table with these column definitions (`"id bigint primary key, …"`)
    /// if it does not exist, when the pipeline is built.
    pub fn create_if_missing(mut self, columns: &str) -> WritePostgres {
        self.create = Some(columns.into());
        self
    }
}

/// How a read's rows become elements: decoded by column name, or by a row mapper.
type RowReader<T> = Arc<
    dyn Fn(&PgRead, &PgRange, &mut dyn FnMut(T) -> Result<(), BoxError>) -> Result<(), BoxError>
        + Send
        + Sync,
>;

/// The rows of a checked read.
struct PostgresSource<T> {
    read: PgRead,
    rows: RowReader<T>,
}

impl<T: Element> BoundedSource for PostgresSource<T> {
    type Output = T;
    type Split = PgRange;

    fn split(&self, workers: usize) -> Result<Vec<PgRange>, BoxError> {
        Ok(self.read.ranges(workers * 4))
    }

    fn read(&self, split: &PgRange, out: &mut Emit<'_, T>) -> Result<(), BoxError> {
        (self.rows)(&self.read, split, &mut |t| out.emit(t, Timestamp::MIN))
    }
}

impl Pipeline {
    /// The rows `read` names, each turned into a `T` by `map` — a row mapper, for rows
    /// that are not a serde type's fields by name: `map` gets the row as the server
    /// sent it (`row.get::<_, i64>("id")`, `row.try_get(…)`; see the `postgres`
    /// crate's `Row`), and an error it returns fails the read naming the transform and
    /// the query. The server and the query are checked now (a problem is reported by
    /// `run`, naming the transform); which columns `map` reads is up to it.
    pub fn read_postgres_mapped<T: Element>(
        &self,
        name: &str,
        read: ReadPostgres,
        map: impl Fn(&Row) -> Result<T, BoxError> + Send + Sync + 'static,
    ) -> PCollection<T> {
        let checked = PgRead::mapped(
            &self.full_name(name),
            &read.url,
            &read.query,
            read.partition_column.as_deref(),
        );
        let rows: RowReader<T> = Arc::new(move |pg, range, each| pg.read_mapped(range, &map, each));
        self.postgres_source(name, &read, checked, rows)
    }

    /// The rows `read` names, decoded as `T` by column name. The server, the query and
    /// the fit of its columns to `T` are checked now; a problem is reported by `run`,
    /// naming the transform, before anything runs.
    pub fn read_postgres<T: Element + DeserializeOwned>(
        &self,
        name: &str,
        read: ReadPostgres,
    ) -> PCollection<T> {
        let checked = PgRead::new::<T>(
            &self.full_name(name),
            &read.url,
            &read.query,
            read.partition_column.as_deref(),
        );
        let rows: RowReader<T> = Arc::new(|pg, range, each| pg.read::<T>(range, each));
        self.postgres_source(name, &read, checked, rows)
    }

    /// The read transform of a checked (or refused) Postgres read.
    fn postgres_source<T: Element>(
        &self,
        name: &str,
        read: &ReadPostgres,
        checked: Result<PgRead, sluice_io::IoError>,
        rows: RowReader<T>,
    ) -> PCollection<T> {
        let out = match checked {
            Ok(checked) => self.read_source(
                name,
                PostgresSource {
                    read: checked,
                    rows,
                },
            ),
            Err(error) => {
                self.io_problem(&error);
                self.read_source(name, Unusable::<T>::new())
            }
        };
        let id = self.inner.borrow().graph.pcollection(out.id).producer;
        self.display(id, "database", redact(&read.url));
        self.display(id, "query", &read.query);
        if let Some(column) = &read.partition_column {
            self.display(id, "partitionColumn", column);
        }
        out
    }
}

impl<T: Element + Serialize + DeserializeOwned> PCollection<T> {
    /// Writes the elements as rows of a table, as `write` says (see the module
    /// documentation for when they become visible). The server, the table and the fit
    /// of its columns to `T` are checked now; a problem is reported by `run`.
    pub fn write_postgres(&self, name: &str, write: WritePostgres) {
        let full = self.pipeline.full_name(name);
        match PostgresSink::<T>::new(
            &full,
            &write.url,
            &write.table,
            write.upsert_key.clone(),
            write.create.as_deref(),
        ) {
            Ok(sink) => {
                let (id, _) = self.pipeline.add_transform(
                    name,
                    vec![self.id],
                    Payload::Write(Arc::new(sink)),
                    Vec::new(),
                );
                self.pipeline.display(id, "database", redact(&write.url));
                self.pipeline.display(id, "table", &write.table);
                if let Some(key) = &write.upsert_key {
                    self.pipeline.display(id, "upsertKey", key.join(","));
                }
            }
            Err(error) => self.pipeline.io_problem(&error),
        }
    }
}
