//! Connectors: where pipeline data comes from and goes to.
//!
//! - [`TextSource`]: lines of the files matching a pattern. Plain files split into byte
//!   ranges aligned to line starts, so workers read one file in parallel; compressed
//!   files (`.gz`, `.zst`, `.bz2`) cannot be split and are read whole by one worker.
//! - [`records::RecordSource`]: CSV and JSON-lines records of those files, decoded with
//!   serde, split the same way; a malformed record is reported with file, line and
//!   column, or set aside as a [`text::source::BadRecord`]; [`csv_batches`] reads CSV
//!   as Arrow record batches over the same splits.
//! - [`TextSink`]: one line per element, written to `PREFIX-SSSSS-of-NNNNN` shards. Shards
//!   are written under temporary names and renamed into place only when the job succeeds.
//! - [`corpus`]: a deterministic English-like text generator for examples and benchmarks.
//!
//! Both connectors check their resources when constructed — a pattern that matches no
//! file, an output directory that cannot be created — so a pipeline fails before any data
//! moves, with an error that names the transform and what to do.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("in.txt");
//! std::fs::write(&input, "a b\nc\n").unwrap();
//! let source = sluice_io::TextSource::new("ReadLines", input.to_str().unwrap()).unwrap();
//! assert_eq!(source.files().len(), 1);
//! assert!(sluice_io::TextSource::new("ReadLines", "/no/such/*.txt").is_err());
//! ```
#![deny(missing_docs)]

pub mod corpus;
pub mod csv_batches;
mod error;
pub mod kafka;
pub mod parquet;
pub mod parquet_filter;
pub mod postgres;
pub mod records;
pub mod storage;
pub mod text;

pub use error::IoError;
pub use text::sink::TextSink;
pub use text::source::TextSource;
