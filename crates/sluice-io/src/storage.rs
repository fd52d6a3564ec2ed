//! Where files live: the local file system or an object store (`s3://`, `gs://`,
//! `az://`), behind one small interface the file sources and sinks use — match a
//! pattern, read a byte range, write, copy, delete.
//!
//! Object stores are reached with the `object_store` crate, whose calls are async: they
//! run on a small runtime of this module's own, and callers (worker threads) block on
//! them. Credentials come from the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, …) and, for S3-compatible servers, the pipeline flags
//! `--s3_endpoint` and `--s3_allow_http` ([`StoreOptions`]). Requests that fail for a
//! passing reason are retried with backoff by the client before an error reaches the
//! bundle (which is then retried as any other).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// How object stores are reached, beyond what the environment says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StoreOptions {
    /// An S3-compatible server's URL (`--s3_endpoint`), instead of AWS's.
    pub s3_endpoint: Option<String>,
    /// Allow plain HTTP to the S3 endpoint (`--s3_allow_http`).
    pub s3_allow_http: bool,
}

impl StoreOptions {
    /// Options with an S3 endpoint and whether plain HTTP is allowed.
    pub fn s3(endpoint: Option<String>, allow_http: bool) -> StoreOptions {
        StoreOptions {
            s3_endpoint: endpoint,
            s3_allow_http: allow_http,
        }
    }
}

/// One bucket (or container) of an object store.
pub struct Bucket {
    /// `scheme://bucket`, which every object's URL starts with.
    root: String,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.root)
    }
}

/// Where a file is: on the local file system, or in a bucket. A file's name is its local
/// path, or its whole URL (`s3://bucket/key`) for an object.
#[derive(Clone, Debug, Default)]
pub enum Store {
    /// The local file system.
    #[default]
    Local,
    /// A bucket of an object store.
    Object(Arc<Bucket>),
}

/// The runtime object-store calls run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-object-store")
            .enable_all()
            .build()
            .expect("cannot start the object-store runtime")
    })
}

/// Runs an object-store call to completion.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// An object-store error as an I/O error: a missing object is `NotFound`, a refused one
/// `PermissionDenied`, anything else (already retried by the client) `Other`.
fn io_error(e: object_store::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

/// Whether `url` names an object (`scheme://…` other than `file://`), not a local file.
pub fn is_object_url(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => {
            scheme != "file"
                && !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        }
        None => false,
    }
}

/// The store `url` is in and the file's name there: a local path (`file://` stripped),
/// or the URL itself for an object. Unknown schemes are refused with what to use.
pub fn resolve(url: &str, options: &StoreOptions) -> Result<(Store, String), String> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok((Store::Local, path.to_string()));
    }
    if !is_object_url(url) {
        return Ok((Store::Local, url.to_string()));
    }
    let (scheme, rest) = url.split_once("://").unwrap_or_default();
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        return Err(format!(
            "'{url}' names no bucket; write {scheme}://BUCKET/PATH"
        ));
    }
    let root = format!("{scheme}://{bucket}");
    type Buckets = Mutex<HashMap<(String, StoreOptions), Arc<Bucket>>>;
    static BUCKETS: OnceLock<Buckets> = OnceLock::new();
    let buckets = BUCKETS.get_or_init(Mutex::default);
    let key = (root.clone(), options.clone());
    if let Some(found) = buckets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok((Store::Object(Arc::clone(found)), url.to_string()));
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(options.s3_allow_http);
            if let Some(endpoint) = &options.s3_endpoint {
                // Without credentials the client would ask a cloud instance's metadata
                // service, which an S3-compatible server does not have.
                if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                    return Err(format!(
                        "no credentials for the S3 endpoint {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    ));
                }
                builder = builder.with_endpoint(endpoint);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
            Arc::new(builder.build().map_err(|e| {
                format!("cannot reach S3 bucket '{bucket}': {e}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and --s3_endpoint for an S3-compatible server)")
            })?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| {
                    format!("cannot reach GCS bucket '{bucket}': {e}; set GOOGLE_APPLICATION_CREDENTIALS")
                })?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()
                .map_err(|e| {
                    format!("cannot reach Azure container '{bucket}': {e}; set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY")
                })?,
        ),
        other => {
            return Err(format!(
                "{other}:// URLs are not supported: use a local path, file://, s3://, gs:// or az://"
            ));
        }
    };
    let bucket = Arc::new(Bucket { root, store });
    buckets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, Arc::clone(&bucket));
    Ok((Store::Object(bucket), url.to_string()))
}

/// A file found by [`Store::matching`]: its name and size.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its local path or URL.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

impl Bucket {
    /// The object key of a URL in this bucket.
    fn key(&self, url: &Path) -> std::io::Result<ObjectPath> {
        let url = url.to_str().unwrap_or_default();
        let key = url
            .strip_prefix(self.root.as_str())
            .filter(|k| k.is_empty() || k.starts_with('/'))
            .map(|k| k.trim_start_matches('/'))
            .ok_or_else(|| {
                std::io::Error::other(format!("'{url}' is not in the bucket {}", self.root))
            })?;
        ObjectPath::parse(key).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The URL of a key of this bucket.
    fn url(&self, key: &ObjectPath) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.root))
    }

    /// Every object under `prefix` (a key directory, without a trailing slash; empty
    /// for the whole bucket).
    fn list(&self, prefix: &str) -> std::io::Result<Vec<object_store::ObjectMeta>> {
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        block_on(self.store.list(prefix.as_ref()).try_collect::<Vec<_>>()).map_err(|e| {
            let e = io_error(e);
            // The server's XML error document adds nothing the status line does not say.
            let message = e.to_string();
            let message = message.split(": <?xml").next().unwrap_or_default();
            std::io::Error::new(
                e.kind(),
                format!("cannot list bucket or container {} ({message})", self.root),
            )
        })
    }
}

impl Store {
    /// The files `pattern` (a path or URL, possibly with `*`, `?`, `[...]` in its file
    /// names) matches, sorted by name. On an object store, listing the bucket also
    /// checks that it exists and can be read. `Err` says why the pattern cannot be
    /// matched; no match is an empty list.
    pub fn matching(&self, pattern: &str) -> std::io::Result<Vec<Found>> {
        let Store::Object(bucket) = self else {
            unreachable!("local patterns are matched by the text source")
        };
        let key_pattern = pattern
            .strip_prefix(bucket.root.as_str())
            .map(|k| k.trim_start_matches('/'))
            .unwrap_or_default();
        let glob_at = key_pattern.find(['*', '?', '[']);
        // List the directory the pattern's literal part ends in.
        let literal = &key_pattern[..glob_at.unwrap_or(key_pattern.len())];
        let dir = literal.rfind('/').map_or("", |i| &literal[..i]);
        let objects = bucket.list(dir)?;
        let mut found = Vec::new();
        match glob_at {
            Some(_) => {
                let matcher = glob::Pattern::new(key_pattern)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let options = glob::MatchOptions {
                    require_literal_separator: true,
                    ..glob::MatchOptions::new()
                };
                for object in objects {
                    if matcher.matches_with(object.location.as_ref(), options) {
                        found.push(Found {
                            path: bucket.url(&object.location),
                            size: object.size,
                        });
                    }
                }
            }
            None => {
                for object in objects {
                    if object.location.as_ref() == key_pattern {
                        found.push(Found {
                            path: bucket.url(&object.location),
                            size: object.size,
                        });
                    }
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// Opens a file for reading from any byte.
    pub fn open(&self, path: &Path) -> std::io::Result<Box<dyn ReadSeek>> {
        match self {
            Store::Local => Ok(Box::new(std::fs::File::open(path)?)),
            Store::Object(bucket) => Ok(Box::new(ObjectFile::open(bucket, path)?.reader(0))),
        }
    }

    /// A file for Parquet's reader, which reads byte ranges of it.
    pub fn chunks(&self, path: &Path) -> std::io::Result<Chunks> {
        match self {
            Store::Local => Ok(Chunks::Local(std::fs::File::open(path)?)),
            Store::Object(bucket) => Ok(Chunks::Object(ObjectFile::open(bucket, path)?)),
        }
    }
}

/// Read and Seek, for a file of any store.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An object being read: its bucket, key and size.
#[derive(Clone)]
pub struct ObjectFile {
    bucket: Arc<Bucket>,
    key: ObjectPath,
    size: u64,
}

/// Bytes fetched by one ranged request when reading an object in order.
const OBJECT_CHUNK: u64 = 8 << 20;

impl ObjectFile {
    fn open(bucket: &Arc<Bucket>, path: &Path) -> std::io::Result<ObjectFile> {
        let key = bucket.key(path)?;
        let meta = block_on(bucket.store.head(&key)).map_err(io_error)?;
        Ok(ObjectFile {
            bucket: Arc::clone(bucket),
            key,
            size: meta.size,
        })
    }

    fn range(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        if start >= end {
            return Ok(Bytes::new());
        }
        block_on(self.bucket.store.get_range(&self.key, start..end)).map_err(io_error)
    }

    fn reader(&self, position: u64) -> ObjectReader {
        ObjectReader {
            file: self.clone(),
            position,
            buffer: Bytes::new(),
            buffer_start: 0,
        }
    }
}

/// Reads an object in order by ranged requests of [`OBJECT_CHUNK`] bytes.
pub struct ObjectReader {
    file: ObjectFile,
    position: u64,
    buffer: Bytes,
    buffer_start: u64,
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.file.size || out.is_empty() {
            return Ok(0);
        }
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if self.position < self.buffer_start || self.position >= buffer_end {
            let end = (self.position + OBJECT_CHUNK).min(self.file.size);
            self.buffer = self.file.range(self.position, end)?;
            self.buffer_start = self.position;
            if self.buffer.is_empty() {
                return Ok(0);
            }
        }
        let from = (self.position - self.buffer_start) as usize;
        let n = out.len().min(self.buffer.len() - from);
        out[..n].copy_from_slice(&self.buffer[from..from + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.file.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the object",
            )
        })?;
        Ok(self.position)
    }
}

/// A file Parquet's reader reads byte ranges of.
pub enum Chunks {
    /// A local file.
    Local(std::fs::File),
    /// An object.
    Object(ObjectFile),
}

impl parquet::file::reader::Length for Chunks {
    fn len(&self) -> u64 {
        match self {
            Chunks::Local(file) => file.len(),
            Chunks::Object(object) => object.size,
        }
    }
}

impl parquet::file::reader::ChunkReader for Chunks {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            Chunks::Local(file) => Box::new(file.get_read(start)?),
            Chunks::Object(object) => Box::new(object.reader(start)),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Chunks::Local(file) => file.get_bytes(start, length),
            Chunks::Object(object) => object
                .range(start, (start + length as u64).min(object.size))
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
        }
    }
}

/// Object-store operations of the sinks: whole objects by URL.
impl Bucket {
    /// Uploads a local file to the object `url` (in parts, for large files).
    pub fn upload(&self, from: &Path, url: &Path) -> std::io::Result<()> {
        let key = self.key(url)?;
        let mut file = std::fs::File::open(from)?;
        let size = file.metadata()?.len();
        if size <= OBJECT_CHUNK {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)?;
            block_on(self.store.put(&key, PutPayload::from(bytes))).map_err(io_error)?;
            return Ok(());
        }
        let upload = block_on(self.store.put_multipart(&key)).map_err(io_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, OBJECT_CHUNK as usize);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            block_on(writer.wait_for_capacity(4)).map_err(io_error)?;
            writer.write(&buffer[..n]);
        }
        block_on(writer.finish()).map_err(io_error)?;
        Ok(())
    }

    /// Downloads the object `url` to a local file.
    pub fn download(self: &Arc<Self>, url: &Path, to: &Path) -> std::io::Result<()> {
        let object = ObjectFile::open(self, url)?;
        let mut out = std::fs::File::create(to)?;
        std::io::copy(&mut object.reader(0), &mut out)?;
        out.sync_all()
    }

    /// Writes `bytes` as the object `url`.
    pub fn put(&self, url: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
        let key = self.key(url)?;
        block_on(self.store.put(&key, PutPayload::from(bytes))).map_err(io_error)?;
        Ok(())
    }

    /// The bytes of the object `url`; `None` if there is none.
    pub fn get(&self, url: &Path) -> std::io::Result<Option<Vec<u8>>> {
        let key = self.key(url)?;
        match block_on(async { self.store.get(&key).await?.bytes().await }) {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Copies the object `from` to `to`, replacing what is there.
    pub fn copy(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let (from, to) = (self.key(from)?, self.key(to)?);
        block_on(self.store.copy(&from, &to)).map_err(io_error)
    }

    /// Deletes the object `url` (nothing there is not an error).
    pub fn delete(&self, url: &Path) -> std::io::Result<()> {
        let key = self.key(url)?;
        match block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    /// Every object under the directory `url` (recursively), with when it last
    /// changed (seconds since the Unix epoch).
    pub fn objects_under(&self, url: &Path) -> std::io::Result<Vec<(PathBuf, i64)>> {
        let dir = self.key(url)?;
        Ok(self
            .list(dir.as_ref())?
            .into_iter()
            .map(|o| (self.url(&o.location), o.last_modified.timestamp()))
            .collect())
    }

    /// The names of the objects and "directories" directly under the directory `url`.
    pub fn entries(&self, url: &Path) -> std::io::Result<Vec<String>> {
        let dir = self.key(url)?;
        let prefix = (!dir.as_ref().is_empty()).then_some(&dir);
        let listed = block_on(self.store.list_with_delimiter(prefix)).map_err(io_error)?;
        let name = |p: &ObjectPath| p.filename().unwrap_or_default().to_string();
        Ok(listed
            .objects
            .iter()
            .map(|o| name(&o.location))
            .chain(listed.common_prefixes.iter().map(name))
            .collect())
    }

    /// `scheme://bucket`.
    pub fn root(&self) -> &str {
        &self.root
    }
}
