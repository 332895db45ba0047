//! `gateway report` and `GET /admin/report` over a seeded audit log, against totals computed
//! by hand.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

#[allow(clippy::too_many_arguments)]
fn rec(
    ts: &str,
    project: &str,
    key: &str,
    model: &str,
    status: u16,
    latency: f64,
    tokens: (u64, u64),
    cost: Option<f64>,
    cache: (&str, Option<f64>),
    dlp: Value,
) -> String {
    let provider = if model == "gpt-4o" { "openai" } else { "mock" };
    json!({
        "ts": ts, "request_id": "r", "project": project, "key_id": key, "client_ip": null,
        "endpoint": "chat", "model": model, "provider": provider, "deployment": null,
        "stream": false, "attempts": [], "status": status, "error": null, "error_class": null,
        "latency_ms": latency, "ttfb_ms": null, "prompt_tokens": tokens.0,
        "completion_tokens": tokens.1, "cached_tokens": 0, "cost_usd": cost,
        "cache": cache.0, "cache_saved_usd": cache.1, "dlp": dlp, "dlp_actions": null,
        "injection": null, "policy": null, "policy_version": null, "config_hash": "h"
    })
    .to_string()
}

/// Two days, two projects: see the expectations in the tests.
pub fn seed(dir: &Path) {
    let day1 = [
        rec(
            "2025-09-01T10:00:00.000Z",
            "alpha",
            "k1",
            "gpt-4o-mini",
            200,
            100.0,
            (10, 5),
            Some(0.001),
            ("miss", None),
            Value::Null,
        ),
        rec(
            "2025-09-01T10:01:00.000Z",
            "alpha",
            "k1",
            "gpt-4o-mini",
            200,
            300.0,
            (0, 0),
            Some(0.0),
            ("hit", Some(0.002)),
            Value::Null,
        ),
        rec(
            "2025-09-01T11:00:00.000Z",
            "alpha",
            "k2",
            "gpt-4o",
            502,
            50.0,
            (0, 0),
            None,
            ("miss", None),
            Value::Null,
        ),
        rec(
            "2025-09-01T12:00:00.000Z",
            "beta",
            "k3",
            "gpt-4o",
            200,
            200.0,
            (100, 50),
            Some(0.0105),
            ("miss", None),
            json!({"email": 2, "phone": 1}),
        ),
        "this line is damaged".to_string(),
    ];
    let day2 = [
        rec(
            "2025-09-02T09:00:00.000Z",
            "alpha",
            "k1",
            "gpt-4o-mini",
            429,
            1.0,
            (20, 10),
            None,
            ("miss", None),
            Value::Null,
        ),
        rec(
            "2025-09-02T09:30:00.000Z",
            "beta",
            "k3",
            "gpt-4o",
            200,
            400.0,
            (30, 20),
            Some(0.003),
            ("miss", None),
            json!({"email": 1}),
        ),
    ];
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("audit-2025-09-01.jsonl"), day1.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("audit-2025-09-02.jsonl"), day2.join("\n") + "\n").unwrap();
}

fn report_cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("report")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[test]
fn report_aggregates_match_hand_computed_totals() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let v: Value = serde_json::from_str(&report_cli(dir.path(), &["--format", "json"])).unwrap();
    assert_eq!(v["skipped"], 1);
    let rows = v["rows"].as_array().unwrap();
    // Most expensive first.
    assert_eq!(rows[0]["key"], "beta");
    assert_eq!(rows[1]["key"], "alpha");
    let beta = &rows[0];
    assert_eq!(beta["requests"], 2);
    assert_eq!(beta["errors"], 0);
    assert_eq!(beta["prompt_tokens"], 130);
    assert_eq!(beta["completion_tokens"], 70);
    assert!(close(&beta["cost_usd"], 0.0135));
    assert_eq!(beta["p50_ms"], 200.0);
    assert_eq!(beta["p95_ms"], 400.0);
    assert_eq!(beta["dlp"], json!({"email": 3, "phone": 1}));
    let alpha = &rows[1];
    assert_eq!(alpha["requests"], 4);
    assert_eq!(alpha["errors"], 2);
    assert_eq!(alpha["prompt_tokens"], 30);
    assert_eq!(alpha["completion_tokens"], 15);
    assert!(close(&alpha["cost_usd"], 0.001));
    assert_eq!(alpha["cache_hits"], 1);
    assert!(close(&alpha["cache_saved_usd"], 0.002));
    assert_eq!(alpha["p50_ms"], 50.0);
    assert_eq!(alpha["p95_ms"], 300.0);
    let t = &v["total"];
    assert_eq!(t["requests"], 6);
    assert_eq!(t["errors"], 2);
    assert_eq!(t["prompt_tokens"], 160);
    assert!(close(&t["cost_usd"], 0.0145));
    assert_eq!(t["p50_ms"], 100.0);
    assert_eq!(t["p95_ms"], 400.0);

    // A range, and other groupings.
    let v: Value = serde_json::from_str(&report_cli(
        dir.path(),
        &["--since", "2025-09-02", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(v["total"]["requests"], 2);
    assert!(close(&v["total"]["cost_usd"], 0.003));
    let v: Value = serde_json::from_str(&report_cli(
        dir.path(),
        &["--by", "day", "--format", "json"],
    ))
    .unwrap();
    let days: Vec<(String, u64)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().into(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, [("2025-09-01".into(), 4), ("2025-09-02".into(), 2)]);
    let v: Value = serde_json::from_str(&report_cli(
        dir.path(),
        &["--by", "key", "--until", "2025-09-01", "--format", "json"],
    ))
    .unwrap();
    let keys: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k3", "k1", "k2"]);

    let csv = report_cli(dir.path(), &["--by", "model", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "model,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd,cache_hits,cache_saved_usd,p50_ms,p95_ms,dlp"
    );
    assert_eq!(
        lines[1],
        "gpt-4o,3,1,130,70,0,0.013500,0,0.000000,200.0,400.0,email=3 phone=1"
    );
    assert!(lines.last().unwrap().starts_with("TOTAL,6,2,160,85,"));

    let table = report_cli(dir.path(), &[]);
    assert!(
        table.lines().next().unwrap().starts_with("project"),
        "{table}"
    );
    assert!(table.contains("TOTAL"), "{table}");
    assert!(table.contains("1 damaged line(s) skipped"), "{table}");
}

#[tokio::test]
async fn the_admin_report_matches_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let cfg = mock_config("admin_token_env = \"ADMIN\"", "")
        + &format!("\n[audit]\ndir = \"{}\"\n", dir.path().display());
    let gw = spawn_gateway_env(&cfg, &[("ADMIN", ADMIN_TOKEN)]).await;
    assert_eq!(get(&gw.admin_url("/admin/report"), None).await.status, 401);
    let r = get(
        &gw.admin_url("/admin/report?by=model&since=2025-09-01"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let cli: Value = serde_json::from_str(&report_cli(
        dir.path(),
        &["--by", "model", "--since", "2025-09-01", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(v["rows"], cli["rows"]);
    assert_eq!(v["total"], cli["total"]);
    assert_eq!(v["deployments"][0]["deployment"], "mock/gpt-4o-mini");
    assert_eq!(v["deployments"][0]["cooling"], false);
    let r = get(
        &gw.admin_url("/admin/report?project=beta"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(r.json()["total"]["requests"], 2);
    let r = get(&gw.admin_url("/admin/report?by=colour"), Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_query");
}
