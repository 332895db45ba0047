//! The audit log: one record per request of every class, with the right fields; the hash
//! chain and `gateway audit verify` catching an edited and a deleted record.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::*;

pub const BETA_KEY: &str = "sk-test-beta";

/// A mock-served config: models `gpt-4o-mini` (priced), `broken` (always fails),
/// `text-embedding-3-small`; projects alpha (`KEY`, cached) and beta (`BETA_KEY`, 1 rpm);
/// `[audit]` writing to `dir` plus `audit_extra`.
pub fn audit_config(dir: &Path, audit_extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 5

[routing]
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 2

[[providers]]
name = "mock"
kind = "mock"

[[providers]]
name = "down"
kind = "mock"
[providers.mock]
fail_probability = 1.0
fail_status = 503

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "broken"
deployments = [{{ provider = "down", model = "m" }}]

[[models]]
name = "text-embedding-3-small"
deployments = [{{ provider = "mock", model = "text-embedding-3-small" }}]

[[projects]]
name = "alpha"
keys = ["{alpha}"]
cache = true

[[projects]]
name = "beta"
keys = ["{beta}"]
limits = {{ rpm = 1 }}

[pricing."mock/gpt-4o-mini"]
input = 1000.0
output = 2000.0

[audit]
dir = "{dir}"
{audit_extra}
"#,
        alpha = hashed(KEY),
        beta = hashed(BETA_KEY),
        dir = dir.display()
    )
}

/// Every record in the audit files under `dir`, once there are at least `n` (bounded wait).
pub async fn wait_for_records(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = read_records(dir);
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} audit records, found {}: {records:#?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn read_records(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in gateway::audit::list_files(dir).unwrap_or_default() {
        let text = std::fs::read_to_string(&f.path).unwrap_or_default();
        out.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    out
}

async fn post_id(url: &str, key: Option<&str>, id: &str, body: impl Into<Bytes>) -> Reply {
    let mut b = http::Request::post(url)
        .header("content-type", "application/json")
        .header("x-request-id", id);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    send(b.body(Full::new(body.into())).unwrap()).await
}

fn by_id<'a>(records: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = records.iter().filter(|r| r["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "exactly one record for {id}: {records:#?}");
    found[0]
}

#[tokio::test]
async fn every_request_class_gets_exactly_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_gateway(&audit_config(dir.path(), "")).await;
    let chat = gw.url("/v1/chat/completions");
    let ok_body = chat_body("audit me").to_string();
    let mut stream_body = chat_body("stream me");
    stream_body["stream"] = json!(true);
    stream_body["stream_options"] = json!({"include_usage": true});

    let mut expect = vec![];
    let mut go = |id: &'static str, status: u16| expect.push((id, status));

    assert_eq!(
        post_id(&chat, Some(KEY), "r-ok", ok_body.clone())
            .await
            .status,
        200
    );
    go("r-ok", 200);
    let r = post_id(&chat, Some(KEY), "r-stream", stream_body.to_string()).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));
    go("r-stream", 200);
    let emb = json!({"model": "text-embedding-3-small", "input": "x"}).to_string();
    let r = post_id(&gw.url("/v1/embeddings"), Some(KEY), "r-emb", emb).await;
    assert_eq!(r.status, 200);
    go("r-emb", 200);
    let r = post_id(&chat, Some(KEY), "r-cached", ok_body.clone()).await;
    assert_eq!(r.header("x-gateway-cache"), Some("hit"));
    go("r-cached", 200);
    let r = post_id(&chat, Some("sk-wrong"), "r-auth", ok_body.clone()).await;
    assert_eq!(r.status, 401);
    go("r-auth", 401);
    let unknown = json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]});
    let r = post_id(&chat, Some(KEY), "r-model", unknown.to_string()).await;
    assert_eq!(r.status, 404);
    go("r-model", 404);
    let broken = json!({"model": "broken", "messages": [{"role": "user", "content": "x"}]});
    let r = post_id(&chat, Some(KEY), "r-failed", broken.to_string()).await;
    assert_eq!(r.status, 502);
    go("r-failed", 502);
    assert_eq!(
        post_id(&chat, Some(BETA_KEY), "r-beta", ok_body.clone())
            .await
            .status,
        200
    );
    go("r-beta", 200);
    let r = post_id(&chat, Some(BETA_KEY), "r-limited", ok_body.clone()).await;
    assert_eq!(r.status, 429);
    go("r-limited", 429);
    let r = post_id(&chat, Some(KEY), "r-badjson", "{not json").await;
    assert_eq!(r.status, 400);
    go("r-badjson", 400);
    let r = post_id(&gw.url("/v1/nowhere"), Some(KEY), "r-path", "{}").await;
    assert_eq!(r.status, 404);
    go("r-path", 404);

    let records = wait_for_records(dir.path(), expect.len()).await;
    assert_eq!(records.len(), expect.len(), "{records:#?}");
    let keys: Vec<String> = records[0].as_object().unwrap().keys().cloned().collect();
    for r in &records {
        let these: Vec<String> = r.as_object().unwrap().keys().cloned().collect();
        assert_eq!(these, keys, "every record has the same fields");
        assert_eq!(r["config_hash"].as_str().unwrap().len(), 16);
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r["client_ip"], "127.0.0.1");
        for field in [
            "dlp",
            "dlp_actions",
            "injection",
            "policy",
            "policy_version",
        ] {
            assert!(r[field].is_null(), "{field} is not filled yet");
        }
    }
    for (id, status) in &expect {
        assert_eq!(by_id(&records, id)["status"], *status, "{id}");
    }
    let key_id = &hashed(KEY)["sha256:".len().."sha256:".len() + 8];

    let ok = by_id(&records, "r-ok");
    assert_eq!(ok["project"], "alpha");
    assert_eq!(ok["key_id"], key_id);
    assert_eq!(ok["endpoint"], "chat");
    assert_eq!(ok["model"], "gpt-4o-mini");
    assert_eq!(ok["provider"], "mock");
    assert_eq!(ok["deployment"], "mock/gpt-4o-mini");
    assert_eq!(
        ok["attempts"],
        json!([{"deployment": "mock/gpt-4o-mini", "class": "ok"}])
    );
    assert_eq!(ok["cache"], "miss");
    assert!(ok["error"].is_null() && ok["error_class"].is_null());
    assert!(ok["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(ok["completion_tokens"].as_u64().unwrap() > 0);
    assert!(ok["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["ttfb_ms"].as_f64().unwrap() > 0.0);

    let stream = by_id(&records, "r-stream");
    assert_eq!(stream["stream"], true);
    assert!(stream["completion_tokens"].as_u64().unwrap() > 0);
    assert!(stream["ttfb_ms"].as_f64().unwrap() <= stream["latency_ms"].as_f64().unwrap());

    assert_eq!(by_id(&records, "r-emb")["endpoint"], "embeddings");

    let cached = by_id(&records, "r-cached");
    assert_eq!(cached["cache"], "hit");
    assert_eq!(cached["cost_usd"], 0.0);
    assert!(cached["cache_saved_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(cached["attempts"], json!([]));

    let auth = by_id(&records, "r-auth");
    assert!(auth["project"].is_null() && auth["key_id"].is_null());
    assert_eq!(auth["error"], "invalid_key");

    assert_eq!(by_id(&records, "r-model")["error"], "unknown_model");

    let failed = by_id(&records, "r-failed");
    assert_eq!(failed["error_class"], "overloaded");
    assert_eq!(
        failed["attempts"],
        json!([
            {"deployment": "down/m", "class": "overloaded"},
            {"deployment": "down/m", "class": "overloaded"}
        ])
    );

    let limited = by_id(&records, "r-limited");
    assert_eq!(limited["project"], "beta");
    assert_eq!(limited["error"], "rate_limit_rpm");
    assert_eq!(limited["attempts"], json!([]));

    assert_eq!(by_id(&records, "r-path")["endpoint"], "other");

    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!(
            "gateway_audit_records_total{{result=\"written\"}} {}",
            expect.len()
        )),
        "{m}"
    );
    assert!(m.contains("gateway_overhead_seconds_bucket{endpoint=\"chat\""));
}

#[tokio::test]
async fn a_disconnected_stream_is_recorded_once_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = audit_config(dir.path(), "").replace(
        "name = \"mock\"\nkind = \"mock\"\n",
        "name = \"mock\"\nkind = \"mock\"\n[providers.mock]\nchunk_chars = 1\nchunk_delay_ms = 20\n",
    );
    let gw = spawn_gateway(&cfg).await;
    let mut body = chat_body("a long enough prompt to stream for a while");
    body["stream"] = json!(true);
    let resp = open_stream(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    drop(resp);
    let records = wait_for_records(dir.path(), 1).await;
    assert_eq!(records[0]["status"], 499);
    assert_eq!(records[0]["error"], "client_closed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(read_records(dir.path()).len(), 1);
}

#[tokio::test]
async fn dropped_records_are_counted_when_the_queue_is_full() {
    // A sink that cannot be written (a file where the directory should be): records fail,
    // are counted as errors, and requests still succeed.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let gw = spawn_gateway(&audit_config(&blocker, "on_full = \"drop\"\nqueue = 1")).await;
    for _ in 0..5 {
        let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
        assert_eq!(r.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&gw).await;
        let count = |result: &str| -> u64 {
            let prefix = format!("gateway_audit_records_total{{result=\"{result}\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0, |v| v.parse().unwrap())
        };
        if count("error") + count("dropped") == 5 {
            assert_eq!(count("written"), 0);
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["audit", "verify", "--key-env", "GW_TEST_AUDIT_KEY", "--dir"])
        .arg(dir)
        .env("GW_TEST_AUDIT_KEY", "chain-key-0123456789")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_hash_chain_detects_an_edited_and_a_deleted_record() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AUDIT_KEY", "chain-key-0123456789")];
    let cfg = audit_config(dir.path(), "hmac_key_env = \"AUDIT_KEY\"");
    {
        let mut gw = spawn_gateway_env(&cfg, &env).await;
        for i in 0..4 {
            let body = chat_body(&format!("request {i}"));
            post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
        }
        wait_for_records(dir.path(), 4).await;
        gw.begin_shutdown().await.unwrap();
    }
    // A restart continues the chain instead of starting a new one.
    {
        let gw = spawn_gateway_env(&cfg, &env).await;
        post_json(
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &chat_body("again"),
        )
        .await;
        wait_for_records(dir.path(), 5).await;
    }
    let records = read_records(dir.path());
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
    assert!(
        out.contains("5 record(s) in 1 file(s), chain intact"),
        "{out}"
    );

    let file = gateway::audit::list_files(dir.path()).unwrap()[0]
        .path
        .clone();
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();

    // Edit: a cost lowered in the third record.
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replace("\"status\":200", "\"status\":201");
    assert_ne!(edited[2], lines[2]);
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains(":3: MAC mismatch"), "{out}");

    // Delete: the second record removed.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(1);
    std::fs::write(&file, deleted.join("\n") + "\n").unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains(":2: seq jumps from 0 to 2: 1 record(s) deleted"),
        "{out}"
    );

    // The wrong key fails every record.
    std::fs::write(&file, &original).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["audit", "verify", "--key-env", "GW_TEST_AUDIT_KEY", "--dir"])
        .arg(dir.path())
        .env("GW_TEST_AUDIT_KEY", "not-the-chain-key-000")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Data protection's part of the record: counts per entity type and per action, the
/// injection verdict and the policy with its version, for forwarded and blocked requests
/// alike; never the values found.
#[tokio::test]
async fn records_carry_data_protection_counts_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
policy = "p"

[policies.p]
version = 4
default_action = "redact"
[policies.p.actions]
US_SSN = "block"
EMAIL = "redact"

[audit]
dir = "{}"
"#,
        hashed(KEY),
        dir.path().display()
    );
    let gw = spawn_gateway(&toml).await;
    let chat = gw.url("/v1/chat/completions");
    let r = post_id(
        &chat,
        Some(KEY),
        "r-redacted",
        chat_body("write to jane.doe@example.com today").to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_id(
        &chat,
        Some(KEY),
        "r-blocked",
        chat_body("my ssn is 536-22-1234").to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
    let records = wait_for_records(dir.path(), 2).await;
    let redacted = by_id(&records, "r-redacted");
    assert_eq!(redacted["dlp"], json!({"EMAIL": 1}));
    assert_eq!(redacted["dlp_actions"], json!({"redact": 1}));
    assert_eq!(redacted["policy"], "p");
    assert_eq!(redacted["policy_version"], "4");
    assert_eq!(redacted["injection"], "none");
    let blocked = by_id(&records, "r-blocked");
    assert_eq!(blocked["status"], 400);
    assert_eq!(blocked["dlp"], json!({"US_SSN": 1}));
    assert_eq!(blocked["dlp_actions"], json!({"block": 1}));
    let all = records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !all.contains("jane.doe") && !all.contains("536-22-1234"),
        "{all}"
    );
    assert!(metrics(&gw).await.contains("policies=\"p@4\"} 1"));
}
