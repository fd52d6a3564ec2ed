//! The web UI, at the service's root: a jobs list rendered on the server (filtered by
//! state, newest first, a page at a time) and a job page whose graph, metrics and
//! messages a small script (`static/sluice.js`, served from the binary) draws from the
//! REST API and refreshes every second while the job runs.
//!
//! The UI reads without a token; its Cancel and Drain buttons send the token the page
//! was opened with (`?token=...`, as `sluice serve` prints the link), kept in the
//! browser's local storage.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::Service;
use crate::store::{JobRecord, StateFilter, is_terminal};

const SCRIPT: &str = include_str!("../static/sluice.js");
const STYLE: &str = include_str!("../static/sluice.css");

/// The assets' version, so that a browser never runs a script older than its page.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let hash = xxhash_rust::xxh3::xxh3_64(format!("{SCRIPT}{STYLE}").as_bytes());
        format!("{:08x}", hash >> 32)
    })
}

/// Jobs per page of the list.
const PAGE: usize = 50;

/// The UI's routes.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route(
            "/static/sluice.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .route(
            "/static/sluice.css",
            get(|| async { asset(STYLE, "text/css") }),
        )
        .with_state(service)
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · sluice</title><link rel=\"stylesheet\" href=\"/static/sluice.css?v={}\"></head>\
         <body><header><a class=\"brand\" href=\"/\">sluice</a><span>jobs</span></header>\
         <main>{body}</main></body></html>",
        escape(title),
        version()
    ))
}

/// `JOB_STATE_RUNNING` → `Running`.
fn state_label(state: &str) -> String {
    let word = state.trim_start_matches("JOB_STATE_").to_ascii_lowercase();
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn parse_time(value: &Value) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(
        value.as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
}

/// A duration as people read it: `45 s`, `3 min 5 s`, `2 h 4 min`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// How long a job has run: to now while it runs, to its last state change once ended.
pub fn job_duration(job: &Value) -> Option<String> {
    let start = parse_time(&job["startTime"]).or_else(|| parse_time(&job["createTime"]))?;
    let state = job["currentState"].as_str().unwrap_or_default();
    let end = if is_terminal(state) {
        parse_time(&job["currentStateTime"])?
    } else {
        time::OffsetDateTime::now_utc()
    };
    Some(duration_text((end - start).as_seconds_f64()))
}

fn display_time(value: &Value) -> String {
    parse_time(value)
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| "–".into())
}

async fn jobs_page(
    State(service): State<Arc<Service>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let status = query.get("status").map(String::as_str).unwrap_or("all");
    let filter = match status {
        "active" => StateFilter::Active,
        "terminated" => StateFilter::Terminated,
        _ => StateFilter::All,
    };
    let token = query.get("pageToken").and_then(|t| t.parse::<i64>().ok());
    let shared = service.clone();
    let listed = tokio::task::spawn_blocking(move || shared.store.list(filter, PAGE, token)).await;
    let (jobs, next) = match listed {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut body = String::new();
    body.push_str("<h1>Jobs</h1><nav class=\"filters\">");
    for (value, label) in [
        ("all", "All"),
        ("active", "Running"),
        ("terminated", "Ended"),
    ] {
        let class = if value == status { " class=\"on\"" } else { "" };
        let _ = write!(body, "<a{class} href=\"/?status={value}\">{label}</a>");
    }
    body.push_str("</nav>");
    if jobs.is_empty() {
        body.push_str(
            "<p class=\"empty\">No jobs yet. Run a pipeline binary with \
             <code>--service_url=URL</code> to submit one.</p>",
        );
    } else {
        body.push_str(
            "<table class=\"jobs\"><thead><tr><th>Name</th><th>Type</th><th>State</th>\
             <th>Start time</th><th>Duration</th><th>Job id</th></tr></thead><tbody>",
        );
        for job in &jobs {
            row(&mut body, job);
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = next {
        let _ = write!(
            body,
            "<p class=\"more\"><a href=\"/?status={status}&amp;pageToken={next}\">Older jobs →</a></p>"
        );
    }
    // The list refreshes itself while jobs run.
    let mut html = page("Jobs", &body).0;
    if jobs.iter().any(|j| !is_terminal(j.state())) {
        html = html.replace(
            "<meta charset=\"utf-8\">",
            "<meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">",
        );
    }
    Html(html).into_response()
}

fn row(body: &mut String, record: &JobRecord) {
    let job = &record.job;
    let id = escape(record.id());
    let name = escape(job["name"].as_str().unwrap_or(record.id()));
    let state = job["currentState"].as_str().unwrap_or_default();
    let kind = if job["type"] == "JOB_TYPE_STREAMING" {
        "Streaming"
    } else {
        "Batch"
    };
    let _ = write!(
        body,
        "<tr><td><a href=\"/jobs/{id}\">{name}</a></td><td>{kind}</td>\
         <td><span class=\"state {}\">{}</span></td><td>{}</td><td>{}</td><td class=\"id\">{id}</td></tr>",
        escape(&state.to_ascii_lowercase()),
        escape(&state_label(state)),
        display_time(if job["startTime"].is_null() {
            &job["createTime"]
        } else {
            &job["startTime"]
        }),
        job_duration(job).unwrap_or_else(|| "–".into()),
    );
}

async fn job_page(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    let shared = service.clone();
    let lookup = id.clone();
    let record = tokio::task::spawn_blocking(move || shared.store.get(&lookup)).await;
    let record = match record {
        Ok(Ok(Some(record))) => record,
        Ok(Ok(None)) => {
            let body = format!(
                "<h1>No such job</h1><p>There is no job with id <code>{}</code>. \
                 <a href=\"/\">All jobs</a></p>",
                escape(&id)
            );
            return (StatusCode::NOT_FOUND, page("No such job", &body)).into_response();
        }
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let job = &record.job;
    let name = job["name"].as_str().unwrap_or(record.id());
    let body = format!(
        "<div id=\"job\" data-job=\"{id}\">\
         <div class=\"title\"><h1>{name}</h1><span id=\"state\" class=\"state\"></span>\
         <span class=\"actions\"><button id=\"drain\" hidden>Drain</button>\
         <button id=\"cancel\" hidden>Cancel</button></span></div>\
         <dl class=\"facts\"><dt>Job id</dt><dd class=\"id\">{id}</dd>\
         <dt>Type</dt><dd id=\"type\"></dd><dt>Start time</dt><dd id=\"start\"></dd>\
         <dt>Duration</dt><dd id=\"duration\"></dd><dt>Elements/s</dt><dd id=\"rate\"></dd>\
         <dt>Memory</dt><dd id=\"memory\"></dd></dl>\
         <div id=\"failure\" class=\"failure\" hidden></div>\
         <div id=\"warnings\" class=\"warnings\" hidden></div>\
         <h2>Execution graph</h2><p class=\"hint\">Fused stages with their transforms; \
         arrows are shuffles and side inputs between stages.</p>\
         <div id=\"graph\" class=\"graph\"></div>\
         <h2>Stages</h2><table id=\"stages\" class=\"metrics\"></table>\
         <h2>Transforms</h2><table id=\"transforms\" class=\"metrics\"></table>\
         <div id=\"user-metrics\" hidden><h2>User metrics</h2><table id=\"user\" class=\"metrics\"></table></div>\
         <h2>Job messages</h2><div class=\"filters\" id=\"importance\"></div>\
         <table id=\"messages\" class=\"messages\"></table>\
         <p class=\"more\"><button id=\"more-messages\" hidden>More messages</button></p>\
         </div><script src=\"/static/sluice.js?v={version}\"></script>",
        id = escape(record.id()),
        version = version(),
        name = escape(name),
    );
    page(name, &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_durations_read_well() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(duration_text(4.4), "4 s");
        assert_eq!(duration_text(185.0), "3 min 5 s");
        assert_eq!(duration_text(7450.0), "2 h 4 min");
        assert_eq!(duration_text(-3.0), "0 s");
        assert_eq!(state_label("JOB_STATE_CANCELLING"), "Cancelling");
    }
}
