//! The web UI as a person sees it: pages rendered by headless Chromium (which runs the
//! page's script against the service's API), then read back as the browser's DOM.
//!
//! Needs `chromium` on PATH (`.ci/run` installs it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_service::store::{JobRecord, Message};
use sluice_service::{RunningService, ServiceConfig};

fn start(dir: &std::path::Path) -> RunningService {
    let mut config = ServiceConfig::local(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    sluice_service::spawn(config).unwrap()
}

fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return name.to_string();
        }
    }
    panic!("the UI tests need Chromium: apt-get install -y chromium (.ci/run installs it)");
}

/// The page's DOM after its scripts ran for `budget_ms` of virtual time.
fn rendered(url: &str, budget_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/wordcount-job.json")).unwrap()
}

fn insert(service: &RunningService, job: Value) {
    service
        .service()
        .store
        .insert(&JobRecord {
            job,
            args: vec![],
            binary: "/bin/true".into(),
            binary_hash: String::new(),
            dir: "/".into(),
            pid: None,
        })
        .unwrap();
}

#[test]
fn the_job_page_draws_the_fused_stages_with_their_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let mut job = fixture();
    job["id"] = json!("2026-11-28_10_00_00-1");
    job["startTime"] = job["createTime"].clone();
    job["failureMessage"] = Value::Null;
    insert(&service, job.clone());
    service
        .service()
        .store
        .add_messages(
            "2026-11-28_10_00_00-1",
            &[Message {
                time: "2026-11-28T10:00:05Z".into(),
                importance: "JOB_MESSAGE_WARNING".into(),
                text: "transform 'ExtractWords': a <b>warning</b>".into(),
            }],
        )
        .unwrap();
    let dom = rendered(
        &format!("{}/jobs/2026-11-28_10_00_00-1", service.url()),
        3000,
    );
    assert!(
        dom.contains("data-loaded=\"final\""),
        "the page's script did not finish: {dom}"
    );
    // One box per fused stage, with its component transforms.
    let stages = job["pipelineDescription"]["executionPipelineStage"]
        .as_array()
        .unwrap();
    for stage in stages {
        let id = stage["id"].as_str().unwrap();
        assert!(
            dom.contains(&format!("data-stage=\"{id}\"")),
            "no box for {id}: {dom}"
        );
        for step in stage["componentTransform"]
            .as_array()
            .unwrap()
            .iter()
            .take(6)
        {
            let name = step["userName"].as_str().unwrap();
            assert!(dom.contains(name), "stage {id} does not show {name}");
        }
    }
    // A shuffle between the two stages is drawn as an edge.
    assert!(dom.contains("class=\"edge\""), "{dom}");
    // Numbers from the metrics, never NaN.
    let words = job["metrics"]["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ExtractWords")
        .unwrap()["elementsOut"]
        .as_u64()
        .unwrap();
    assert!(
        dom.contains(&format!("<td>{words}</td>")),
        "ExtractWords' {words} elements are not shown"
    );
    assert!(!dom.contains("NaN") && !dom.contains("undefined"), "{dom}");
    assert!(dom.contains(">Done<"), "the state is not shown");
    // Messages are text, not markup.
    assert!(dom.contains("a &lt;b&gt;warning&lt;/b&gt;"), "{dom}");
    // An ended job has no Cancel or Drain.
    assert!(dom.contains("id=\"cancel\" hidden"), "{dom}");
}

#[test]
fn a_running_streaming_job_shows_watermarks_and_its_buttons() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let mut job = fixture();
    job["id"] = json!("2026-11-28_10_00_00-2");
    job["type"] = json!("JOB_TYPE_STREAMING");
    job["currentState"] = json!("JOB_STATE_RUNNING");
    job["metrics"]["stages"][1]["watermark"] = json!("2026-11-28T09:59:58Z");
    job["metrics"]["stages"][1]["dataFreshnessSecs"] = json!(3.0);
    job["metrics"]["warnings"] =
        json!(["stage S01 (F1): worker(s) [1] took much longer than the others"]);
    job["metrics"]["memory"] = json!({
        "maxMemory": 256u64 << 20,
        "peakBytesHeld": 200u64 << 20,
        "bytesSpilled": 1u64 << 30,
        "spillFiles": 128,
        "overBudget": 0
    });
    job["metrics"]["stages"][1]["memory"] = json!({
        "peakBytesHeld": 150u64 << 20,
        "bytesSpilled": 1u64 << 30,
        "spillFiles": 128
    });
    // The rate the job's process measured between its last two reports.
    for t in job["metrics"]["transforms"].as_array_mut().unwrap() {
        if t["name"] == "ReadLines" {
            t["elementsPerSec"] = json!(12345.6);
        }
    }
    insert(&service, job);
    let dom = rendered(
        &format!("{}/jobs/2026-11-28_10_00_00-2", service.url()),
        2500,
    );
    assert!(dom.contains("data-loaded=\"live\""), "{dom}");
    assert!(dom.contains("watermark 09:59:58 UTC"), "{dom}");
    assert!(dom.contains("freshness 3 s"), "{dom}");
    assert!(
        dom.contains("12.3 k/s"),
        "the read stage's rate is shown: {dom}"
    );
    assert!(
        dom.contains("peak 200.0 MiB of 256.0 MiB; spilled 1.0 GiB in 128 files"),
        "{dom}"
    );
    // The stage that spilled says so in its box and its row.
    assert!(
        dom.contains("held 150.0 MiB · spilled 1.0 GiB in 128 files"),
        "{dom}"
    );
    assert!(dom.contains("<td>150.0 MiB</td><td>1.0 GiB</td>"), "{dom}");
    assert!(dom.contains("took much longer than the others"), "{dom}");
    assert!(
        dom.contains("<button id=\"cancel\">Cancel</button>"),
        "{dom}"
    );
    assert!(dom.contains("<button id=\"drain\">Drain</button>"), "{dom}");
    assert!(!dom.contains("NaN"), "{dom}");
}

#[test]
fn the_jobs_list_filters_by_state_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    for i in 0..120 {
        let mut job = fixture();
        job["id"] = json!(format!("2026-11-28_10_00_00-{i}"));
        job["name"] = json!(format!("job-number-{i}"));
        job["currentState"] = json!(if i % 2 == 0 {
            "JOB_STATE_RUNNING"
        } else {
            "JOB_STATE_DONE"
        });
        insert(&service, job);
    }
    let dom = rendered(&format!("{}/?status=active", service.url()), 500);
    assert_eq!(dom.matches("<tr><td>").count(), 50, "a page is 50 jobs");
    assert!(
        dom.contains("job-number-118") && !dom.contains("job-number-119"),
        "newest first, active only"
    );
    assert!(dom.contains("Older jobs"), "{dom}");
    let dom = rendered(&format!("{}/?status=terminated", service.url()), 500);
    assert!(dom.contains("job-number-119") && !dom.contains("job-number-118"));
    assert!(dom.contains(">Done<"));
}

/// Headless Chromium driven over the DevTools protocol: a page opened, scripts run in
/// it, clicks made as a person would.
struct Browser {
    child: std::process::Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        use std::io::BufRead;
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not open its DevTools endpoint");
            }
        };
        let (socket, _) = tungstenite::connect(endpoint.as_str()).unwrap();
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.send(None, "Target.createTarget", json!({"url": url}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Sends a command and returns its result (events in between are skipped).
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let answer = self.socket.read().unwrap();
            let Ok(text) = answer.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Runs `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let result = self.send(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(expression) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "never true in the page: {expression}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_cancel_and_drain_buttons_stop_the_job_with_the_links_token() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path());
    let token = service.service().token.clone();
    for (id, kind) in [
        ("2026-11-28_10_00_00-3", "JOB_TYPE_STREAMING"),
        ("2026-11-28_10_00_00-4", "JOB_TYPE_BATCH"),
    ] {
        let mut job = fixture();
        job["id"] = json!(id);
        job["type"] = json!(kind);
        job["currentState"] = json!("JOB_STATE_RUNNING");
        insert(&service, job);
    }
    let client = sluice_client::Client::new(service.url(), None);

    // The link `sluice serve` prints carries the token; the page keeps it.
    let mut browser = Browser::open(&format!(
        "{}/jobs/2026-11-28_10_00_00-3?token={token}",
        service.url()
    ));
    browser.wait_for("document.getElementById('job')?.dataset.loaded === 'live'");
    browser.wait_for("!document.getElementById('drain').hidden");
    browser.eval("window.confirm = () => true; document.getElementById('drain').click(); true");
    browser.wait_for("document.getElementById('state').textContent === 'Draining'");
    let job = client.job("2026-11-28_10_00_00-3", "summary").unwrap();
    assert_eq!(job["currentState"], "JOB_STATE_DRAINING");
    assert_eq!(job["requestedState"], "JOB_STATE_DRAINED");
    assert_eq!(
        browser.eval("document.getElementById('drain').hidden"),
        json!(true)
    );

    // Another job's page, opened without the token: the page remembers it.
    let session = browser.session.clone();
    browser.send(
        Some(&session),
        "Page.navigate",
        json!({"url": format!("{}/jobs/2026-11-28_10_00_00-4", service.url())}),
    );
    browser.wait_for(
        "document.getElementById('job')?.dataset.job === '2026-11-28_10_00_00-4' && document.getElementById('job').dataset.loaded === 'live'",
    );
    // A batch job has no Drain.
    assert_eq!(
        browser.eval("document.getElementById('drain').hidden"),
        json!(true)
    );
    browser.eval("window.confirm = () => true; document.getElementById('cancel').click(); true");
    browser.wait_for("document.getElementById('state').textContent === 'Cancelling'");
    let job = client.job("2026-11-28_10_00_00-4", "summary").unwrap();
    assert_eq!(job["currentState"], "JOB_STATE_CANCELLING");
    assert_eq!(job["requestedState"], "JOB_STATE_CANCELLED");
}
