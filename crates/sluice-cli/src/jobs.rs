//! `sluice jobs ...`: the job service's jobs from the command line — tables for people,
//! JSON (or YAML) for scripts.
//!
//! Exit codes: 0 success; 1 any other failure; 2 a usage error; 3 no service answers;
//! 4 no such job; 5 the job's state forbids the request (it has ended, or a batch job
//! was asked to drain); 6 the token is missing or wrong.

use std::fmt::Write;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use sluice_client::{Client, ClientError};

/// The exit code for a failed call to the service.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Unreachable { .. }) => 3,
        Some(e) => match e.status() {
            Some(404) => 4,
            Some(409) => 5,
            Some(400) if e.to_string().contains("drain") => 5,
            Some(401) => 6,
            _ => 1,
        },
        None => 1,
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces.
fn render_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, head.to_vec());
    for row in rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

fn short_state(state: &Value) -> String {
    cell(state).trim_start_matches("JOB_STATE_").to_string()
}

/// `sluice jobs list`.
pub fn list(client: &Client, status: &str, format: &str, limit: usize) -> Result<String> {
    let mut jobs = Vec::new();
    let mut token: Option<String> = None;
    while jobs.len() < limit {
        let page = client.list(status, (limit - jobs.len()).min(1000), token.as_deref())?;
        jobs.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    match format {
        "json" => Ok(serde_json::to_string_pretty(&jobs)? + "\n"),
        "yaml" => Ok(yaml(&Value::Array(jobs))),
        _ => {
            if jobs.is_empty() {
                return Ok(
                    format!("no {status} jobs at {}\n", client.url()).replace("no all", "no")
                );
            }
            let rows: Vec<Vec<String>> = jobs
                .iter()
                .map(|j| {
                    vec![
                        cell(&j["id"]),
                        cell(&j["name"]),
                        cell(&j["type"]).trim_start_matches("JOB_TYPE_").to_string(),
                        short_state(&j["currentState"]),
                        cell(if j["startTime"].is_null() {
                            &j["createTime"]
                        } else {
                            &j["startTime"]
                        }),
                        sluice_service::ui::job_duration(j).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            Ok(render_table(
                &["JOB_ID", "NAME", "TYPE", "STATE", "START_TIME", "DURATION"],
                &rows,
            ))
        }
    }
}

/// `sluice jobs describe`.
pub fn describe(client: &Client, id: &str, full: bool, format: &str) -> Result<String> {
    let job = client.job(
        id,
        if full || format == "text" {
            "all"
        } else {
            "summary"
        },
    )?;
    match format {
        "json" => Ok(serde_json::to_string_pretty(&job)? + "\n"),
        "yaml" => Ok(yaml(&job)),
        _ => {
            let mut out = String::new();
            let _ = writeln!(out, "page: {}", client.job_page(id));
            if let Some(failure) = job["failureMessage"].as_str() {
                let _ = writeln!(out, "failure: {failure}");
            }
            out.push_str(&crate::describe::render(&job)?);
            Ok(out)
        }
    }
}

/// `sluice jobs cancel` / `drain`.
pub fn request(client: &Client, id: &str, requested: &str) -> Result<String> {
    let job = client.request_state(id, requested)?;
    Ok(format!(
        "job {id}: {} requested; now {}\n",
        requested,
        cell(&job["currentState"])
    ))
}

/// `sluice jobs messages`: prints pages as they come; with `follow`, until the job ends.
pub fn messages(client: &Client, id: &str, importance: &str, follow: bool) -> Result<()> {
    use std::io::Write as _;
    let minimum = format!(
        "JOB_MESSAGE_{}",
        importance
            .trim_start_matches("JOB_MESSAGE_")
            .to_ascii_uppercase()
    );
    let mut token: Option<String> = None;
    let stdout = std::io::stdout();
    loop {
        // Read the state first: messages added before it ended are then all seen.
        let ended = if follow {
            let job = client.job(id, "summary")?;
            sluice_client::is_terminal(job["currentState"].as_str().unwrap_or_default())
        } else {
            true
        };
        loop {
            let page = client.messages(id, &minimum, token.as_deref())?;
            let mut out = stdout.lock();
            for m in page["jobMessages"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{}  {:<8}  {}",
                    cell(&m["time"]),
                    cell(&m["messageImportance"]).trim_start_matches("JOB_MESSAGE_"),
                    cell(&m["messageText"])
                )?;
            }
            match page["nextPageToken"].as_str() {
                Some(next) => token = Some(next.to_string()),
                None => {
                    token = page["followToken"].as_str().map(str::to_string).or(token);
                    break;
                }
            }
        }
        if ended {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `sluice jobs metrics`.
pub fn metrics(client: &Client, id: &str, format: &str) -> Result<String> {
    let answer = client.metrics(id)?;
    match format {
        "json" => return Ok(serde_json::to_string_pretty(&answer)? + "\n"),
        "yaml" => return Ok(yaml(&answer)),
        _ => {}
    }
    let metrics = &answer["metrics"];
    if metrics.is_null() {
        return Ok(format!("job {id} has reported no metrics yet\n"));
    }
    let mut out = String::new();
    let stages: Vec<Vec<String>> = metrics["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["name"]),
                cell(&s["bundles"]),
                cell(&s["bundleAttempts"]),
                cell(&s["retries"]),
                cell(&s["bytesRead"]),
                cell(&s["shuffleBytesOut"]),
                cell(&s["memory"]["peakBytesHeld"]),
                cell(&s["memory"]["bytesSpilled"]),
                cell(&s["wallTime"]),
                s["watermark"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &[
            "STAGE",
            "NAME",
            "BUNDLES",
            "ATTEMPTS",
            "RETRIES",
            "BYTES_READ",
            "SHUFFLE_BYTES_OUT",
            "PEAK_HELD",
            "SPILLED",
            "WALL_MS",
            "WATERMARK",
        ],
        &stages,
    ));
    out.push('\n');
    let transforms: Vec<Vec<String>> = metrics["transforms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                cell(&t["name"]),
                cell(&t["elementsIn"]),
                cell(&t["elementsOut"]),
                t["elementsPerSec"]
                    .as_f64()
                    .map_or("-".into(), |r| format!("{r:.0}")),
                cell(&t["bytesOut"]),
                cell(&t["retries"]),
                cell(&t["deadLettered"]),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &[
            "TRANSFORM",
            "ELEMENTS_IN",
            "ELEMENTS_OUT",
            "ELEMENTS/S",
            "BYTES_OUT",
            "RETRIES",
            "DEAD_LETTERS",
        ],
        &transforms,
    ));
    let user: Vec<Vec<String>> = metrics["user"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let mut rest = u.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("transform");
                o.remove("name");
            }
            let value = if rest["value"].is_null() {
                rest.to_string()
            } else {
                cell(&rest["value"])
            };
            vec![cell(&u["transform"]), cell(&u["name"]), value]
        })
        .collect();
    if !user.is_empty() {
        out.push('\n');
        out.push_str(&render_table(&["TRANSFORM", "METRIC", "VALUE"], &user));
    }
    let memory = &metrics["memory"];
    if memory["maxMemory"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(
            out,
            "\nmemory: peak {} of {} bytes held; {} bytes spilled in {} files; over budget in {} grouping(s)",
            cell(&memory["peakBytesHeld"]),
            cell(&memory["maxMemory"]),
            cell(&memory["bytesSpilled"]),
            cell(&memory["spillFiles"]),
            cell(&memory["overBudget"])
        );
    }
    for warning in metrics["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "\nwarning: {}", cell(warning));
    }
    Ok(out)
}

/// A JSON value as YAML (block style; strings double-quoted, which YAML reads as JSON
/// strings).
pub fn yaml(value: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
            other => other.to_string(),
        }
    }
    fn emit(out: &mut String, v: &Value, indent: usize) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, item) in map {
                    let key = serde_json::to_string(k).unwrap_or_default();
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            let _ = writeln!(out, "{pad}{key}:");
                            emit(out, item, indent + 2);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            let _ = writeln!(out, "{pad}{key}:");
                            emit(out, item, indent);
                        }
                        _ => {
                            let _ = writeln!(out, "{pad}{key}: {}", empty_or_scalar(item));
                        }
                    }
                }
            }
            Value::Array(list) if !list.is_empty() => {
                for item in list {
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            let mut inner = String::new();
                            emit(&mut inner, item, indent + 2);
                            let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            let _ = writeln!(out, "{pad}-");
                            emit(out, item, indent + 2);
                        }
                        _ => {
                            let _ = writeln!(out, "{pad}- {}", empty_or_scalar(item));
                        }
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", empty_or_scalar(other));
            }
        }
    }
    fn empty_or_scalar(v: &Value) -> String {
        match v {
            Value::Object(_) => "{}".into(),
            Value::Array(_) => "[]".into(),
            other => scalar(other),
        }
    }
    let mut out = String::new();
    emit(&mut out, value, 0);
    out
}

/// A client of the service at `url`, with the token from `--token`, `SLUICE_TOKEN` or
/// the data directory.
pub fn client(url: &str, token: Option<&str>, data_dir: &std::path::Path) -> Client {
    Client::new(url, sluice_client::find_token_in(token, data_dir))
}

/// Reads a job id argument.
pub fn job_id(id: &str) -> Result<&str> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        anyhow::bail!(
            "{id:?} is not a job id (such as 2026-11-22_13_05_09-123); see `sluice jobs list`"
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_nests_maps_and_lists() {
        let v = json!({"id": "j1", "labels": {}, "stages": [{"id": "S01", "steps": ["a", "b"]}, 3], "n": null});
        assert_eq!(
            yaml(&v),
            "\"id\": \"j1\"\n\"labels\": {}\n\"n\": null\n\"stages\":\n- \"id\": \"S01\"\n  \"steps\":\n  - \"a\"\n  - \"b\"\n- 3\n"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let t = render_table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
