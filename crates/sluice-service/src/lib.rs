//! The sluice job service (`sluice serve`): pipelines submitted with
//! `--service_url` get a job id and a record in an embedded SQLite database; the
//! service starts and supervises each job's process (the same binary, which then
//! reports its progress back every second), serves a Dataflow-shaped REST API and a web
//! UI, and carries out cancel and drain requests.
//!
//! - [`store`]: job records and messages (write-ahead logged SQLite).
//! - [`api`]: the REST API and the workers' reports.
//! - [`supervisor`]: starting and watching jobs' processes; re-attaching after a
//!   restart.
//! - [`ui`]: the web pages.
//!
//! ```no_run
//! let service = sluice_service::spawn(sluice_service::ServiceConfig::local(std::path::PathBuf::from("/tmp/sluice-data"))).unwrap();
//! println!("serving at {}", service.url());
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod store;
pub mod supervisor;
pub mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run the service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Where the job records and the token live.
    pub data_dir: PathBuf,
    /// Served beyond this machine: every call, reads too, needs the token.
    pub remote: bool,
}

impl ServiceConfig {
    /// On 127.0.0.1:8130, keeping its data in `data_dir`.
    pub fn local(data_dir: PathBuf) -> ServiceConfig {
        ServiceConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8130)),
            data_dir,
            remote: false,
        }
    }
}

/// The service failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The data directory or token cannot be used.
    #[error("data directory {}: {reason}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {reason} (pass --port or --bind)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The bearer token of the service in `data_dir`: read, or made at first start (32
/// random bytes, hex, file mode 0600).
pub fn token(data_dir: &Path) -> Result<String, ServiceError> {
    let path = data_dir.join("token");
    let bad = |reason: String| ServiceError::DataDir {
        path: data_dir.to_path_buf(),
        reason,
    };
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| bad(format!("no randomness for a token: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| bad(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(token.as_bytes())
        .map_err(|e| bad(format!("cannot write {}: {e}", path.display())))?;
    Ok(token)
}

/// What every request handler shares.
pub struct Service {
    /// The job store.
    pub store: store::Store,
    /// The bearer token mutating calls need.
    pub token: String,
    /// The service's own URL, passed to the jobs it starts.
    pub url: String,
    /// The data directory (job logs live under it).
    pub data_dir: PathBuf,
    /// The processes of the jobs this service runs.
    pub supervisor: supervisor::Supervisor,
    /// Every call needs the token (the service is served beyond this machine).
    pub remote: bool,
}

/// A service running on a background thread; dropping it stops the server (not the
/// jobs it started, which it re-attaches to when it starts again).
pub struct RunningService {
    url: String,
    service: Arc<Service>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningService {
    /// The service's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The shared state (for tests and the command line).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Serves until SIGINT or SIGTERM, then stops the server (the jobs it started run
    /// on; the service re-attaches to them when it starts again).
    pub fn wait_for_signal(self) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let signalled = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            });
            let _ = tx.send(());
        });
        let _ = rx.recv();
        drop(signalled);
        log::info!(
            "the job service stops; running jobs go on and are re-attached at its next start"
        );
        drop(self);
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the store, binds the address, re-attaches the jobs a previous run left
/// running, and serves on a background thread.
pub fn spawn(config: ServiceConfig) -> Result<RunningService, ServiceError> {
    std::fs::create_dir_all(config.data_dir.join("logs")).map_err(|e| ServiceError::DataDir {
        path: config.data_dir.clone(),
        reason: e.to_string(),
    })?;
    if !config.bind.ip().is_loopback() && !config.remote {
        return Err(ServiceError::Bind {
            addr: config.bind,
            reason: "not a loopback address; serving beyond this machine needs remote mode, where every call needs the token".into(),
        });
    }
    let token = token(&config.data_dir)?;
    let store = store::Store::open(&config.data_dir.join("jobs.db"))?;
    let listener = std::net::TcpListener::bind(config.bind).map_err(|e| ServiceError::Bind {
        addr: config.bind,
        reason: e.to_string(),
    })?;
    let addr = listener.local_addr().map_err(|e| ServiceError::Bind {
        addr: config.bind,
        reason: e.to_string(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ServiceError::Bind {
            addr,
            reason: e.to_string(),
        })?;
    let url = format!("http://{addr}");
    let service = Arc::new(Service {
        store,
        token,
        url: url.clone(),
        data_dir: config.data_dir.clone(),
        supervisor: supervisor::Supervisor::default(),
        remote: config.remote,
    });
    supervisor::reattach(&service);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = service.clone();
    let thread = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                log::error!("cannot start the service's runtime: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    log::error!("cannot listen: {e}");
                    return;
                }
            };
            let app = api::router(shared.clone())
                .merge(ui::router(shared.clone()))
                .layer(axum::middleware::from_fn_with_state(
                    shared.clone(),
                    api::remote_guard,
                ));
            let watcher = tokio::spawn(supervisor::watch(shared));
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            watcher.abort();
            if let Err(e) = served {
                log::error!("the service stopped: {e}");
            }
        });
    });
    Ok(RunningService {
        url,
        service,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}
