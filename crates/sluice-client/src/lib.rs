//! A client of the sluice job service (`sluice serve`): the REST calls the SDK makes to
//! submit and follow a job, and the `sluice jobs` command makes to list, describe,
//! cancel and drain jobs. Blocking, small, and without the server's dependencies.
//!
//! ```no_run
//! let client = sluice_client::Client::new("http://127.0.0.1:8130", None);
//! let jobs = client.list("active", 50, None).unwrap();
//! println!("{}", jobs["jobs"]);
//! ```
#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The states a job does not leave.
pub const TERMINAL_STATES: &[&str] = &[
    "JOB_STATE_DONE",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_DRAINED",
];

/// Whether a job in `state` has ended.
pub fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// A binary's hash as the service records and checks it: XXH3 of its bytes, in hex.
pub fn binary_hash(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

/// The service's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8130";

/// A call to the service failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the URL.
    #[error(
        "no sluice service answers at {url} ({reason}); start one with `sluice serve` (or pass --service_url)"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// What the connection said.
        reason: String,
    },
    /// The service answered with an error.
    #[error("the sluice service at {url} answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("the sluice service at {url} sent an unreadable answer: {reason}")]
    Malformed {
        /// The URL called.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an error the service answered with.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where the service keeps its data by default: `$XDG_DATA_HOME/sluice`, else
/// `~/.local/share/sluice`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("sluice");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/sluice")
}

/// The token for mutating calls: `explicit` (a `--token` flag), else `SLUICE_TOKEN`,
/// else the `token` file of the default data directory.
pub fn find_token(explicit: Option<&str>) -> Option<String> {
    find_token_in(explicit, &default_data_dir())
}

/// As [`find_token`], reading the token file of `data_dir` last.
pub fn find_token_in(explicit: Option<&str>, data_dir: &std::path::Path) -> Option<String> {
    if let Some(token) = explicit.filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    if let Some(token) = std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Some(token);
    }
    std::fs::read_to_string(data_dir.join("token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A client of one service.
#[derive(Clone, Debug)]
pub struct Client {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the service at `url`, with `token` for mutating calls.
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client {
            url: url.trim_end_matches('/').to_string(),
            token,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build(),
        }
    }

    /// The service's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The web page of job `id`.
    pub fn job_page(&self, id: &str) -> String {
        format!("{}/jobs/{id}", self.url)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.url);
        let mut request = self.agent.request(method, &url);
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = match body {
            Some(body) => request.send_json(body.clone()),
            None => request.call(),
        };
        let response = match response {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                return Err(ClientError::Status {
                    url,
                    status,
                    message,
                });
            }
            Err(e) => {
                return Err(ClientError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let text = response.into_string().map_err(|e| ClientError::Malformed {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ClientError::Malformed {
            url,
            reason: e.to_string(),
        })
    }

    /// Registers a job: its Job JSON, arguments, binary and hash, working directory.
    pub fn submit(&self, body: &Value) -> Result<Value, ClientError> {
        self.call("POST", "/api/v1/jobs", Some(body))
    }

    /// Jobs newest first: `status` is `active`, `terminated` or `all`.
    pub fn list(
        &self,
        status: &str,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut path = format!("/api/v1/jobs?status={status}&pageSize={page_size}");
        if let Some(token) = page_token {
            path.push_str(&format!("&pageToken={token}"));
        }
        self.call("GET", &path, None)
    }

    /// A job: `view` is `summary` or `all`.
    pub fn job(&self, id: &str, view: &str) -> Result<Value, ClientError> {
        self.call("GET", &format!("/api/v1/jobs/{id}?view={view}"), None)
    }

    /// Asks for a job to end: `requested` is `JOB_STATE_CANCELLED` or `JOB_STATE_DRAINED`.
    pub fn request_state(&self, id: &str, requested: &str) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "requestedState": requested });
        self.call("PUT", &format!("/api/v1/jobs/{id}"), Some(&body))
    }

    /// A page of a job's messages at `minimum` importance or above.
    pub fn messages(
        &self,
        id: &str,
        minimum: &str,
        page_token: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut path =
            format!("/api/v1/jobs/{id}/messages?minimumImportance={minimum}&pageSize=500");
        if let Some(token) = page_token {
            path.push_str(&format!("&pageToken={token}"));
        }
        self.call("GET", &path, None)
    }

    /// A job's metrics.
    pub fn metrics(&self, id: &str) -> Result<Value, ClientError> {
        self.call("GET", &format!("/api/v1/jobs/{id}/metrics"), None)
    }

    /// A worker's progress report; the answer says what the service asks of the job.
    pub fn report(&self, id: &str, body: &Value) -> Result<Value, ClientError> {
        self.call("POST", &format!("/api/v1/jobs/{id}/reports"), Some(body))
    }
}
