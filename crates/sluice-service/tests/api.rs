//! The REST API's contract, against a service running in this process on loopback:
//! shapes, errors, tokens, pagination, and how the supervisor treats a job's process.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_client::Client;
use sluice_service::store::{JobRecord, Message};
use sluice_service::{RunningService, ServiceConfig};

fn start(dir: &std::path::Path) -> RunningService {
    let mut config = ServiceConfig::local(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    sluice_service::spawn(config).unwrap()
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/wordcount-job.json")).unwrap()
}

/// A record put straight into the store (no process behind it).
fn record(id: &str, state: &str, kind: &str) -> JobRecord {
    let mut job = fixture();
    job["id"] = json!(id);
    job["currentState"] = json!(state);
    job["type"] = json!(kind);
    JobRecord {
        job,
        args: vec![],
        binary: "/bin/true".into(),
        binary_hash: String::new(),
        dir: "/".into(),
        pid: None,
    }
}

fn hash(path: &str) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(&std::fs::read(path).unwrap())
    )
}

fn wait_for_state(client: &Client, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = client.job(id, "summary").unwrap();
        if job["currentState"] == state {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached {state}: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn errors_are_json_with_the_right_status() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let client = Client::new(service.url(), Some(token.clone()));
    let anonymous = Client::new(service.url(), None);

    // Unknown job: 404, with a JSON error body.
    let e = client.job("2026-01-01_00_00_00-1", "summary").unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(
        e.to_string()
            .contains("no job with id 2026-01-01_00_00_00-1"),
        "{e}"
    );
    let raw = ureq::get(&format!("{}/api/v1/jobs/nope", service.url())).call();
    match raw {
        Err(ureq::Error::Status(404, response)) => {
            let body: Value = response.into_json().unwrap();
            assert_eq!(body["error"]["code"], 404);
            assert_eq!(body["error"]["status"], "NOT_FOUND");
        }
        other => panic!("expected 404, got {other:?}"),
    }
    // Malformed bodies and parameters: 400.
    let raw = ureq::post(&format!("{}/api/v1/jobs", service.url()))
        .set("Authorization", &format!("Bearer {token}"))
        .send_string("{not json");
    assert!(matches!(raw, Err(ureq::Error::Status(400, _))), "{raw:?}");
    let e = client.submit(&json!({"job": {"id": "x y"}})).unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    let e = client.list("sometimes", 10, None).unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    let e = client.job("x", "everything").unwrap_err();
    assert_eq!(
        e.status(),
        Some(404),
        "an unknown job is 404 before its view: {e}"
    );
    // Mutating calls need the token: 401.
    let e = anonymous.submit(&json!({"job": fixture()})).unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("SLUICE_TOKEN"), "{e}");
    let e = Client::new(service.url(), Some("wrong".into()))
        .request_state("x", "JOB_STATE_CANCELLED")
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");

    // A batch job cannot be drained (400); an ended job cannot be stopped (409); an
    // unknown requested state is 400.
    let store = &service.service().store;
    store
        .insert(&record("batch-1", "JOB_STATE_RUNNING", "JOB_TYPE_BATCH"))
        .unwrap();
    store
        .insert(&record("done-1", "JOB_STATE_DONE", "JOB_TYPE_BATCH"))
        .unwrap();
    let e = client
        .request_state("batch-1", "JOB_STATE_DRAINED")
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    let e = client
        .request_state("batch-1", "JOB_STATE_RUNNING")
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    let e = client
        .request_state("done-1", "JOB_STATE_CANCELLED")
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let cancelling = client
        .request_state("batch-1", "JOB_STATE_CANCELLED")
        .unwrap();
    assert_eq!(cancelling["currentState"], "JOB_STATE_CANCELLING");
    assert_eq!(cancelling["requestedState"], "JOB_STATE_CANCELLED");
}

#[test]
fn views_lists_and_messages_are_shaped_and_paginated() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let client = Client::new(service.url(), None);
    let store = &service.service().store;
    for i in 0..230 {
        let state = if i % 3 == 0 {
            "JOB_STATE_RUNNING"
        } else {
            "JOB_STATE_DONE"
        };
        store
            .insert(&record(&format!("job-{i:03}"), state, "JOB_TYPE_BATCH"))
            .unwrap();
    }
    // Newest first, a page at a time, every job once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list("all", 100, token.as_deref()).unwrap();
        for job in page["jobs"].as_array().unwrap() {
            assert!(
                job.get("pipelineDescription").is_none(),
                "lists show summaries"
            );
            seen.push(job["id"].as_str().unwrap().to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..230).rev().map(|i| format!("job-{i:03}")).collect();
    assert_eq!(seen, expected);
    let active = client.list("active", 1000, None).unwrap();
    assert_eq!(active["jobs"].as_array().unwrap().len(), 77);
    assert!(
        active["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["currentState"] == "JOB_STATE_RUNNING")
    );
    let terminated = client.list("terminated", 1000, None).unwrap();
    assert_eq!(terminated["jobs"].as_array().unwrap().len(), 153);

    // Views: summary without the plan, all with it and the metrics.
    let summary = client.job("job-005", "summary").unwrap();
    assert!(summary.get("pipelineDescription").is_none() && summary.get("metrics").is_none());
    assert_eq!(summary["name"], "wordcount-fixture");
    let all = client.job("job-005", "all").unwrap();
    assert!(all["pipelineDescription"]["executionPipelineStage"].is_array());
    assert!(all["metrics"]["transforms"].is_array());
    let metrics = client.metrics("job-005").unwrap();
    assert_eq!(metrics["jobId"], "job-005");
    assert_eq!(metrics["metrics"], all["metrics"]);

    // Messages: by importance, paginated, followable.
    let messages: Vec<Message> = (0..1200)
        .map(|i| Message {
            time: format!("2026-11-28T00:00:{:02}Z", i % 60),
            importance: if i % 10 == 0 {
                "JOB_MESSAGE_WARNING"
            } else {
                "JOB_MESSAGE_BASIC"
            }
            .into(),
            text: format!("message {i}"),
        })
        .collect();
    store.add_messages("job-005", &messages).unwrap();
    let mut texts = Vec::new();
    let mut token: Option<String> = None;
    let follow = loop {
        let page = client
            .messages("job-005", "JOB_MESSAGE_BASIC", token.as_deref())
            .unwrap();
        texts.extend(
            page["jobMessages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["messageText"].as_str().unwrap().to_string()),
        );
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break page["followToken"].as_str().unwrap().to_string(),
        }
    };
    assert_eq!(texts.len(), 1200);
    assert_eq!(texts[0], "message 0");
    assert_eq!(texts[1199], "message 1199");
    let warnings = client
        .messages("job-005", "JOB_MESSAGE_WARNING", None)
        .unwrap();
    assert_eq!(warnings["jobMessages"].as_array().unwrap().len(), 120);
    assert!(
        warnings["jobMessages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["messageImportance"] == "JOB_MESSAGE_WARNING")
    );
    let nothing_new = client
        .messages("job-005", "JOB_MESSAGE_BASIC", Some(&follow))
        .unwrap();
    assert!(nothing_new["jobMessages"].as_array().unwrap().is_empty());
}

#[test]
fn a_process_that_ends_without_reporting_fails_its_job_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let client = Client::new(service.url(), Some(token));
    let mut job = fixture();
    job["id"] = json!("2026-11-28_00_00_00-1");
    let submitted = client
        .submit(&json!({
            "job": job,
            "args": ["-c", "echo 'cannot open the input: boom' >&2; exit 3"],
            "binary": "/bin/sh",
            "binaryHash": hash("/bin/sh"),
            "dir": dir.path().to_str().unwrap(),
        }))
        .unwrap();
    assert_eq!(submitted["currentState"], "JOB_STATE_PENDING");
    let failed = wait_for_state(&client, "2026-11-28_00_00_00-1", "JOB_STATE_FAILED");
    let reason = failed["failureMessage"].as_str().unwrap();
    assert!(reason.contains("ended") && reason.contains('3'), "{reason}");
    let messages = client
        .messages("2026-11-28_00_00_00-1", "JOB_MESSAGE_DETAILED", None)
        .unwrap()
        .to_string();
    assert!(
        messages.contains("cannot open the input: boom"),
        "{messages}"
    );

    // A binary that is not the one submitted is not started.
    job["id"] = json!("2026-11-28_00_00_00-2");
    client
        .submit(&json!({
            "job": job,
            "args": [],
            "binary": "/bin/sh",
            "binaryHash": "0000000000000000",
            "dir": "/",
        }))
        .unwrap();
    let failed = wait_for_state(&client, "2026-11-28_00_00_00-2", "JOB_STATE_FAILED");
    assert!(
        failed["failureMessage"]
            .as_str()
            .unwrap()
            .contains("changed since the job was submitted"),
        "{failed}"
    );
    // The same id twice is a conflict.
    let e = client
        .submit(
            &json!({"job": job, "args": [], "binary": "/bin/sh", "binaryHash": "0", "dir": "/"}),
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
}

#[test]
fn a_restart_keeps_every_record_and_fails_jobs_whose_process_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let service = start(dir.path());
        let store = &service.service().store;
        store
            .insert(&record("done-1", "JOB_STATE_DONE", "JOB_TYPE_BATCH"))
            .unwrap();
        let mut orphan = record("running-1", "JOB_STATE_RUNNING", "JOB_TYPE_STREAMING");
        // A process id no process has.
        orphan.pid = Some(i32::MAX as u32 - 7);
        store.insert(&orphan).unwrap();
    }
    let service = start(dir.path());
    let client = Client::new(service.url(), None);
    assert_eq!(
        client.job("done-1", "all").unwrap()["currentState"],
        "JOB_STATE_DONE"
    );
    let failed = client.job("running-1", "summary").unwrap();
    assert_eq!(failed["currentState"], "JOB_STATE_FAILED");
    assert!(
        failed["failureMessage"]
            .as_str()
            .unwrap()
            .contains("the service restarted"),
        "{failed}"
    );
}

#[test]
fn a_non_loopback_address_needs_remote_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::local(dir.path().to_path_buf());
    config.bind = "0.0.0.0:0".parse().unwrap();
    let refused = sluice_service::spawn(config);
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("loopback")),
        "{:?}",
        refused.err()
    );
}

#[test]
fn in_remote_mode_reads_need_the_token_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServiceConfig::local(dir.path().to_path_buf());
    // Remote mode, tested on loopback.
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.remote = true;
    let service = sluice_service::spawn(config).unwrap();
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let e = Client::new(service.url(), None)
        .list("all", 10, None)
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let page = ureq::get(&format!("{}/", service.url())).call();
    assert!(matches!(page, Err(ureq::Error::Status(401, _))), "{page:?}");
    assert!(
        Client::new(service.url(), Some(token.clone()))
            .list("all", 10, None)
            .is_ok()
    );
    // The UI link with the token sets a cookie for the pages' own calls.
    let page = ureq::get(&format!("{}/?token={token}", service.url()))
        .call()
        .unwrap();
    let cookie = page.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("sluice_token={token}")),
        "{cookie}"
    );
    let with_cookie = ureq::get(&format!("{}/api/v1/jobs", service.url()))
        .set("Cookie", &format!("sluice_token={token}"))
        .call();
    assert!(with_cookie.is_ok(), "{with_cookie:?}");
}
