//! The REST API, JSON and shaped after Dataflow's (`projects.jobs`):
//!
//! | call | what |
//! |---|---|
//! | `GET /api/v1/jobs?status=active\|terminated\|all&pageSize=N&pageToken=T` | jobs, newest first |
//! | `POST /api/v1/jobs` | submit a job (token) |
//! | `GET /api/v1/jobs/{id}?view=summary\|all` | a job; `all` is the whole Job JSON with `pipelineDescription` and metrics |
//! | `PUT /api/v1/jobs/{id}` `{"requestedState": "JOB_STATE_CANCELLED" \| "JOB_STATE_DRAINED"}` | cancel or drain (token) |
//! | `GET /api/v1/jobs/{id}/messages?minimumImportance=JOB_MESSAGE_WARNING&pageSize=N&pageToken=T` | job messages, oldest first |
//! | `GET /api/v1/jobs/{id}/metrics` | the job's metrics |
//! | `POST /api/v1/jobs/{id}/reports` | a worker's progress report (token); the answer carries the requested state |
//!
//! Errors are `{"error": {"code": 404, "status": "NOT_FOUND", "message": "..."}}` with the
//! HTTP status: an unknown job is 404, a malformed body or parameter 400, a missing or
//! wrong token 401, a request the job's state forbids 409. Mutating calls need
//! `Authorization: Bearer <token>` (the `token` file of the data directory).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Service;
use crate::store::{JobRecord, Message, StateFilter, is_terminal, message_json};

/// An API error: its HTTP status and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id}"))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status_name = match self.status {
            StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
            StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "FAILED_PRECONDITION",
            _ => "INTERNAL",
        };
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "status": status_name,
            "message": self.message,
        }});
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The API's routes.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs).post(submit_job))
        .route("/api/v1/jobs/{id}", get(get_job).put(update_job))
        .route("/api/v1/jobs/{id}/messages", get(job_messages))
        .route("/api/v1/jobs/{id}/metrics", get(job_metrics))
        .route("/api/v1/jobs/{id}/reports", post(report))
        .with_state(service)
}

fn authorize(service: &Service, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(service.token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the service's token, the `token` file in its data directory: a pipeline takes it from --service_token or SLUICE_TOKEN, `sluice jobs` from --token, SLUICE_TOKEN or --data_dir (the HTTP header is Authorization: Bearer <token>)",
        ))
    }
}

/// In remote mode every call needs the token: as a bearer token, or the `sluice_token`
/// cookie a page opened with `?token=...` sets.
pub async fn remote_guard(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !service.remote || request.uri().path().starts_with("/static/") {
        return next.run(request).await;
    }
    let token = service.token.as_str();
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(token);
    let cookie = request
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim().strip_prefix("sluice_token=") == Some(token));
    let query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.strip_prefix("token=") == Some(token));
    if !(bearer || cookie || query) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this service is served beyond its machine: every call needs its token (Authorization: Bearer <token>, or open the UI link sluice serve printed)",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    if query
        && !cookie
        && let Ok(value) = axum::http::HeaderValue::from_str(&format!(
            "sluice_token={token}; Path=/; HttpOnly; SameSite=Strict"
        ))
    {
        response.headers_mut().append("set-cookie", value);
    }
    response
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad("the body must be a JSON object"))
    }
}

fn page_size(query: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    match query.get("pageSize") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::bad(format!("pageSize {v:?} must be a number from 1 to 1000"))
            }),
    }
}

fn page_token(query: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    query
        .get("pageToken")
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad(format!("pageToken {t:?} is not one this service gave")))
        })
        .transpose()
}

/// The summary view of a job: everything but its plan and metrics.
pub fn summary(record: &JobRecord) -> Value {
    let mut job = record.job.clone();
    if let Some(object) = job.as_object_mut() {
        object.remove("pipelineDescription");
        object.remove("metrics");
    }
    job
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn list_jobs(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let filter = match query.get("status").map(String::as_str).unwrap_or("all") {
        "active" => StateFilter::Active,
        "terminated" => StateFilter::Terminated,
        "all" => StateFilter::All,
        other => {
            return Err(ApiError::bad(format!(
                "status {other:?} must be active, terminated or all"
            )));
        }
    };
    let (jobs, next) = service
        .store
        .list(filter, page_size(&query, 50)?, page_token(&query)?)?;
    let mut body = json!({"jobs": jobs.iter().map(summary).collect::<Vec<_>>()});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next.to_string());
    }
    Ok(Json(body).into_response())
}

async fn submit_job(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&service, &headers)?;
    let body = body_json(&body)?;
    let mut job = body["job"].clone();
    let id = job["id"]
        .as_str()
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        })
        .ok_or_else(|| ApiError::bad("job.id must be a job id such as 2026-11-22_13_05_09-123"))?
        .to_string();
    if !job["pipelineDescription"].is_object() {
        return Err(ApiError::bad(
            "job.pipelineDescription must be the job's plan",
        ));
    }
    let strings = |key: &str| -> Result<Vec<String>, ApiError> {
        body[key]
            .as_array()
            .ok_or_else(|| ApiError::bad(format!("{key} must be a list of strings")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad(format!("{key} must be a list of strings")))
            })
            .collect()
    };
    let args = strings("args")?;
    let text = |key: &str| -> Result<String, ApiError> {
        body[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad(format!("{key} must be a string")))
    };
    let binary = text("binary")?;
    let binary_hash = text("binaryHash")?;
    let dir = text("dir")?;
    if service.store.get(&id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a job with id {id} exists"),
        ));
    }
    let now = now();
    job["currentState"] = json!("JOB_STATE_PENDING");
    job["currentStateTime"] = json!(now);
    if job["createTime"].is_null() {
        job["createTime"] = json!(now);
    }
    let record = JobRecord {
        job,
        args,
        binary,
        binary_hash,
        dir,
        pid: None,
    };
    service.store.insert(&record)?;
    service.store.add_messages(
        &id,
        &[Message {
            time: now,
            importance: "JOB_MESSAGE_BASIC".into(),
            text: format!("job {id} submitted; starting {}", record.binary),
        }],
    )?;
    let record = crate::supervisor::start(&service, &id)?;
    Ok((StatusCode::CREATED, Json(summary(&record))).into_response())
}

fn find(service: &Service, id: &str) -> Result<JobRecord, ApiError> {
    service
        .store
        .get(id)?
        .ok_or_else(|| ApiError::not_found(id))
}

async fn get_job(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let record = find(&service, &id)?;
    match query.get("view").map(String::as_str).unwrap_or("summary") {
        "summary" => Ok(Json(summary(&record)).into_response()),
        "all" => Ok(Json(record.job).into_response()),
        other => Err(ApiError::bad(format!(
            "view {other:?} must be summary or all"
        ))),
    }
}

async fn update_job(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&service, &headers)?;
    let body = body_json(&body)?;
    let record = find(&service, &id)?;
    let requested = body["requestedState"].as_str().unwrap_or_default();
    let next = match requested {
        "JOB_STATE_CANCELLED" => "JOB_STATE_CANCELLING",
        "JOB_STATE_DRAINED" => {
            if record.job["type"] != "JOB_TYPE_STREAMING" {
                return Err(ApiError::bad(
                    "only a streaming job can be drained; cancel a batch job instead",
                ));
            }
            "JOB_STATE_DRAINING"
        }
        other => {
            return Err(ApiError::bad(format!(
                "requestedState {other:?} must be JOB_STATE_CANCELLED or JOB_STATE_DRAINED"
            )));
        }
    };
    if is_terminal(record.state()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} has ended ({}); there is nothing to stop",
                record.state()
            ),
        ));
    }
    let record = service
        .store
        .update(&id, |r| {
            r.job["requestedState"] = json!(requested);
            r.job["currentState"] = json!(next);
            r.job["currentStateTime"] = json!(now());
        })?
        .ok_or_else(|| ApiError::not_found(&id))?;
    service.store.add_messages(
        &id,
        &[Message {
            time: now(),
            importance: "JOB_MESSAGE_BASIC".into(),
            text: format!("{requested} requested"),
        }],
    )?;
    Ok(Json(summary(&record)).into_response())
}

async fn job_messages(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    find(&service, &id)?;
    let minimum = query
        .get("minimumImportance")
        .map(String::as_str)
        .unwrap_or("JOB_MESSAGE_BASIC");
    if !minimum.starts_with("JOB_MESSAGE_") {
        return Err(ApiError::bad(format!(
            "minimumImportance {minimum:?} must be JOB_MESSAGE_DEBUG, DETAILED, BASIC, WARNING or ERROR"
        )));
    }
    let page =
        service
            .store
            .messages(&id, minimum, page_size(&query, 100)?, page_token(&query)?)?;
    let mut body = json!({
        "jobMessages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
        "followToken": page.last.to_string(),
    });
    if let Some(next) = page.next {
        body["nextPageToken"] = json!(next.to_string());
    }
    Ok(Json(body).into_response())
}

async fn job_metrics(State(service): State<Arc<Service>>, Path(id): Path<String>) -> ApiResult {
    let record = find(&service, &id)?;
    Ok(Json(json!({
        "jobId": id,
        "metricTime": record.job["currentStateTime"],
        "metrics": record.job["metrics"],
    }))
    .into_response())
}

/// What a worker's report does to the job's state: a cancelled or drained job ends as
/// requested; otherwise the reported state stands.
fn next_state(record: &JobRecord, reported: &str) -> String {
    let requested = record.job["requestedState"].as_str().unwrap_or_default();
    match (requested, reported) {
        ("JOB_STATE_DRAINED", "JOB_STATE_DONE") => "JOB_STATE_DRAINED".into(),
        ("JOB_STATE_CANCELLED", "JOB_STATE_RUNNING") => "JOB_STATE_CANCELLING".into(),
        ("JOB_STATE_DRAINED", "JOB_STATE_RUNNING") => "JOB_STATE_DRAINING".into(),
        _ => reported.to_string(),
    }
}

async fn report(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&service, &headers)?;
    let body = body_json(&body)?;
    let record = find(&service, &id)?;
    let messages: Vec<Message> = body["messages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| Message {
                    time: m["time"].as_str().map(str::to_string).unwrap_or_else(now),
                    importance: m["messageImportance"]
                        .as_str()
                        .unwrap_or("JOB_MESSAGE_BASIC")
                        .to_string(),
                    text: m["messageText"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if !messages.is_empty() {
        service.store.add_messages(&id, &messages)?;
    }
    if !is_terminal(record.state()) {
        let reported = body["currentState"].as_str().unwrap_or("JOB_STATE_RUNNING");
        let state = next_state(&record, reported);
        service.store.update(&id, |r| {
            let now = now();
            if r.job["currentState"] != json!(state) {
                r.job["currentState"] = json!(state);
                r.job["currentStateTime"] = json!(now);
            }
            if r.job["startTime"].is_null() {
                r.job["startTime"] = json!(now);
            }
            if !body["metrics"].is_null() {
                r.job["metrics"] = body["metrics"].clone();
            }
            if let Some(failure) = body["failure"].as_str() {
                r.job["failureMessage"] = json!(failure);
            }
            r.job["lastReportTime"] = json!(now);
        })?;
    }
    let record = find(&service, &id)?;
    Ok(Json(json!({"requestedState": record.job["requestedState"]})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(requested: Option<&str>) -> JobRecord {
        let mut job = json!({"id": "j", "currentState": "JOB_STATE_RUNNING"});
        if let Some(r) = requested {
            job["requestedState"] = json!(r);
        }
        JobRecord {
            job,
            args: vec![],
            binary: String::new(),
            binary_hash: String::new(),
            dir: String::new(),
            pid: None,
        }
    }

    #[test]
    fn reports_end_a_job_as_requested() {
        assert_eq!(
            next_state(&record(None), "JOB_STATE_DONE"),
            "JOB_STATE_DONE"
        );
        assert_eq!(
            next_state(&record(Some("JOB_STATE_DRAINED")), "JOB_STATE_DONE"),
            "JOB_STATE_DRAINED"
        );
        assert_eq!(
            next_state(&record(Some("JOB_STATE_CANCELLED")), "JOB_STATE_RUNNING"),
            "JOB_STATE_CANCELLING"
        );
        assert_eq!(
            next_state(&record(Some("JOB_STATE_CANCELLED")), "JOB_STATE_CANCELLED"),
            "JOB_STATE_CANCELLED"
        );
    }
}
