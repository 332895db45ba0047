//! Hot reload: on file change (in process), on SIGHUP and `POST /admin/reload` (the real
//! binary), with valid and invalid configs while a load runs; an in-flight request finishing
//! on its old snapshot; `gateway check --diff`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// A mock-served config replying `reply`, with the extra model names listed.
fn config(reply: &str, latency_ms: u64, models: &[&str], server: &str) -> String {
    let mut s = format!(
        "[server]\nrequest_timeout_secs = 10\n{server}\n\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n[providers.mock]\nreply = \"{reply}\"\nlatency_ms = {latency_ms}\n\n[[models]]\nname = \"gpt-4o-mini\"\ndeployments = [{{ provider = \"mock\", model = \"gpt-4o-mini\" }}]\n\n"
    );
    for m in models {
        s.push_str(&format!(
            "[[models]]\nname = \"{m}\"\ndeployments = [{{ provider = \"mock\", model = \"{m}\" }}]\n\n"
        ));
    }
    s.push_str(&format!(
        "[[projects]]\nname = \"alpha\"\nkeys = [\"{}\"]\n",
        hashed(KEY)
    ));
    s
}

/// Replaces the file the way editors and config managers do: write aside, then rename.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn reply_text(r: &Reply) -> String {
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sends chat requests in a loop until stopped; counts the ones that did not succeed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failed, url) =
                    (stop.clone(), ok.clone(), failed.clone(), url.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = post_json(&url, Some(KEY), &chat_body("load")).await;
                        if r.status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_an_invalid_one_keeps_the_old_config_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config("one", 0, &[], "")).unwrap();
    let gw = spawn_gateway_file(&path).await;
    let url = gw.url("/v1/chat/completions");
    let first_hash = gw.state.runtime().ops.config_hash.to_string();
    assert!(metrics(&gw).await.contains(&format!(
        "gateway_config_info{{hash=\"{first_hash}\",policies=\"\"}} 1"
    )));
    let load = Load::start(url.clone(), 4);

    replace(&path, &config("two", 0, &["extra"], ""));
    eventually("the new reply", || async {
        reply_text(&post_json(&url, Some(KEY), &chat_body("x")).await) == "two"
    })
    .await;
    let models = get(&gw.url("/v1/models"), Some(KEY)).await.text();
    assert!(models.contains("\"extra\""), "{models}");
    let second_hash = gw.state.runtime().ops.config_hash.to_string();
    assert_ne!(first_hash, second_hash);

    // Invalid: a deployment naming a provider that does not exist.
    replace(
        &path,
        &config("three", 0, &[], "").replace("provider = \"mock\"", "provider = \"ghost\""),
    );
    eventually("the failed reload to be counted", || async {
        metric(
            &metrics(&gw).await,
            "gateway_config_reloads_total{result=\"failed\"} ",
        ) >= 1
    })
    .await;
    assert_eq!(
        reply_text(&post_json(&url, Some(KEY), &chat_body("x")).await),
        "two"
    );
    assert_eq!(get(&gw.admin_url("/readyz"), None).await.status, 200);

    let (ok, failed) = load.finish().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during reloads");
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!(
            "gateway_config_info{{hash=\"{second_hash}\",policies=\"\"}} 1"
        )),
        "{m}"
    );
    assert!(!m.contains(&format!("gateway_config_info{{hash=\"{first_hash}\"")));
    assert!(metric(&m, "gateway_config_reloads_total{result=\"ok\"} ") >= 1);
}

#[tokio::test]
async fn an_in_flight_request_finishes_on_the_snapshot_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config("old", 1500, &[], "watch_config = false")).unwrap();
    let gw = spawn_gateway_file(&path).await;
    let url = gw.url("/v1/chat/completions");
    let slow = tokio::spawn({
        let url = url.clone();
        async move { post_json(&url, Some(KEY), &chat_body("x")).await }
    });
    eventually("the slow request to be in flight", || async {
        metrics(&gw).await.contains("gateway_inflight_requests 1")
    })
    .await;
    std::fs::write(&path, config("new", 0, &[], "watch_config = false")).unwrap();
    let r = gateway::reload::reload(&gw.state, "test").unwrap();
    assert!(r.changed);
    assert_eq!(
        r.changes,
        [
            "~ providers[mock].mock.latency_ms: 1500 -> 0",
            "~ providers[mock].mock.reply: \"old\" -> \"new\""
        ]
    );
    let fresh = post_json(&url, Some(KEY), &chat_body("x")).await;
    assert_eq!(reply_text(&fresh), "new");
    assert!(
        !slow.is_finished(),
        "the new config served while the old request waits"
    );
    let old = slow.await.unwrap();
    assert_eq!(old.status, 200);
    assert_eq!(reply_text(&old), "old");
    // Reloading an unchanged file swaps nothing.
    assert!(!gateway::reload::reload(&gw.state, "test").unwrap().changed);
}

#[tokio::test]
async fn spend_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let priced = |reply: &str| {
        config(reply, 0, &[], "watch_config = false").replace(
            "[[projects]]\nname = \"alpha\"",
            "[pricing.\"mock/gpt-4o-mini\"]\ninput = 1000.0\noutput = 1000.0\n\n[[projects]]\nname = \"alpha\"\nbudget = { usd = 10.0 }",
        )
    };
    std::fs::write(&path, priced("a")).unwrap();
    let gw = spawn_gateway_file(&path).await;
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    let remaining = |m: String| {
        m.lines()
            .find_map(|l| l.strip_prefix("gateway_budget_remaining_usd{project=\"alpha\"} "))
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap()
    };
    let before = remaining(metrics(&gw).await);
    assert!(before < 10.0);
    std::fs::write(&path, priced("b")).unwrap();
    assert!(gateway::reload::reload(&gw.state, "test").unwrap().changed);
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    let after = remaining(metrics(&gw).await);
    assert!(
        after < before,
        "spend kept across the reload: {before} -> {after}"
    );
}

fn gateway_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env_remove("GATEWAY_CONFIG").env_remove("RUST_LOG");
    c
}

#[tokio::test]
async fn sighup_and_the_reload_endpoint_under_load() {
    const TOKEN: &str = "admin-token-for-reload-tests";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let server = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nwatch_config = false\nadmin_token_env = \"GW_TEST_ADMIN_TOKEN\"";
    std::fs::write(&path, config("one", 0, &[], server)).unwrap();
    let mut child = gateway_cmd()
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("GW_TEST_ADMIN_TOKEN", TOKEN)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (addr, admin) = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("startup")
            .expect("running");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let (Some(l), Some(a)) = (v["listen"].as_str(), v["admin"].as_str()) {
            break (l.to_string(), a.to_string());
        }
    };
    // SIGHUP is handled from the moment the server says it is ready.
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("ready")
            .expect("running");
        if line.contains("gateway ready") {
            break;
        }
    }
    let url = format!("http://{addr}/v1/chat/completions");
    let load = Load::start(url.clone(), 4);
    let models = format!("http://{addr}/v1/models");

    // SIGHUP with a valid change.
    std::fs::write(&path, config("two", 0, &["extra"], server)).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    eventually("the SIGHUP reload", || async {
        get(&models, Some(KEY)).await.text().contains("\"extra\"")
    })
    .await;

    // SIGHUP with an invalid file: the old config stays, the process keeps serving.
    std::fs::write(&path, "[[models]]\nname = 1\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let metrics_url = format!("http://{admin}/metrics");
    eventually("the failed SIGHUP reload", || async {
        metric(
            &get(&metrics_url, None).await.text(),
            "gateway_config_reloads_total{result=\"failed\"} ",
        ) == 1
    })
    .await;

    // The endpoint: token required; an invalid config is refused with its problems.
    let reload = format!("http://{admin}/admin/reload");
    assert_eq!(post_raw(&reload, None, "").await.status, 401);
    assert_eq!(
        post_raw(&reload, Some("wrong-token-xxxxxxxx"), "")
            .await
            .status,
        401
    );
    let r = post_raw(&reload, Some(TOKEN), "").await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.error_code(), "config_invalid");
    assert!(r.json()["error"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("models"));
    assert_eq!(
        get(&format!("http://{admin}/readyz"), None).await.status,
        200
    );

    std::fs::write(&path, config("three", 0, &["extra", "extra2"], server)).unwrap();
    let r = post_raw(&reload, Some(TOKEN), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"], "reloaded");
    let changes: Vec<String> = serde_json::from_value(v["changes"].clone()).unwrap();
    assert!(
        changes.contains(&"+ models[extra2]".to_string()),
        "{changes:?}"
    );
    assert_eq!(
        reply_text(&post_json(&url, Some(KEY), &chat_body("x")).await),
        "three"
    );

    let (ok, failed) = load.finish().await;
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during reloads");
    let m = get(&metrics_url, None).await.text();
    assert_eq!(
        metric(&m, "gateway_config_reloads_total{result=\"ok\"} "),
        2,
        "{m}"
    );
    assert!(m.contains(&format!(
        "gateway_config_info{{hash=\"{}\",policies=\"\"}} 1",
        v["hash"].as_str().unwrap()
    )));

    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
}

#[test]
fn check_diff_says_what_a_change_does() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.toml");
    let new = dir.path().join("new.toml");
    std::fs::write(&old, config("a", 0, &["gone"], "")).unwrap();
    let changed = config("a", 0, &["added"], "").replace(
        "[[projects]]\nname = \"alpha\"\nkeys = [",
        &format!(
            "[[projects]]\nname = \"alpha\"\nlimits = {{ rpm = 5 }}\nkeys = [\"{}\", ",
            hashed("sk-another")
        ),
    );
    std::fs::write(&new, &changed).unwrap();
    let out = gateway_cmd()
        .args(["check", "--diff"])
        .args([&old, &new])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let another = &hashed("sk-another")[7..15];
    for line in [
        "- models[gone]",
        "+ models[added]",
        &format!("+ projects[alpha].keys: key {another}"),
        "+ projects[alpha].limits",
        "new.toml: valid",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    std::fs::write(
        &new,
        changed.replace("provider = \"mock\"", "provider = \"ghost\""),
    )
    .unwrap();
    let out = gateway_cmd()
        .args(["check", "--diff"])
        .args([&old, &new])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
