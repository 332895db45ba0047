//! The real `gateway` binary: CLI subcommands, and a served process whose every log line is
//! checked for secrets and prompt text, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.env_remove("GATEWAY_CONFIG").env_remove("RUST_LOG");
    c
}

#[test]
fn version_hash_key_and_gen_key() {
    let out = gateway().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    let out = gateway()
        .args(["hash-key", "sk-gateway-demo"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().last(),
        Some(hashed("sk-gateway-demo").as_str())
    );

    let mut child = gateway()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-gateway-demo\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        hashed("sk-gateway-demo")
    );

    let out = gateway().arg("gen-key").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("sk-gw-") && lines[0].len() > 40);
    assert_eq!(lines[1], hashed(lines[0]));
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"GW_TEST_UNSET_VAR\"\n\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"ghost\", model = \"x\" }]\n\n[[projects]]\nname = \"p\"\nkeys = [\"nope\"]\n",
    )
    .unwrap();
    let out = gateway()
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("GW_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 problem(s)"), "{text}");
    assert!(
        text.contains("GW_TEST_UNSET_VAR") && text.contains("\"openai\""),
        "{text}"
    );
    assert!(text.contains("models[0].deployments[0].provider"), "{text}");
    assert!(text.contains("projects[0].keys[0]"), "{text}");

    let root = env!("CARGO_MANIFEST_DIR");
    let out = gateway()
        .args(["check", "--config", &format!("{root}/gateway.toml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Environment overrides use figment's convention.
    let out = gateway()
        .args(["check", "--config", &format!("{root}/gateway.toml")])
        .env("GATEWAY_SERVER__LISTEN", "127.0.0.1:18081")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:18081"));
    let out = gateway()
        .args(["check", "--config", &format!("{root}/gateway.toml")])
        .env("GATEWAY_SERVER__LISTEN", "bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Runs `gateway serve` on ephemeral ports, sends requests that exercise success and failure
/// paths with a sentinel prompt and a provider key the upstream echoes back, then SIGTERMs it
/// and checks every log line it ever printed.
#[tokio::test]
async fn served_binary_never_logs_keys_or_prompts_and_stops_on_sigterm() {
    const SENTINEL: &str = "SENTINEL-PROMPT-7f3a9c";
    let echo = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {UPSTREAM_KEY}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    let up = MockUpstream::openai().fail_n(1, 400, &echo).start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let audit_dir = dir.path().join("audit");
    let cfg = config_for(
        &up.base_url(),
        &format!(
            "[audit]\nstdout = true\ndir = \"{}\"\n",
            audit_dir.display()
        ),
    )
    .replace(
        "[server]\n",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n",
    );
    std::fs::write(&path, cfg).unwrap();

    let mut child = gateway()
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("UPSTREAM_KEY", UPSTREAM_KEY)
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let audit_stdout = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut logs = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("startup")
            .expect("running");
        logs.push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let (Some(listen), Some(admin)) = (v["listen"].as_str(), v["admin"].as_str()) {
            break (listen.to_string(), admin.to_string());
        }
    };
    let (addr, admin) = addr;
    let mut replies = Vec::new();
    let url = format!("http://{addr}/v1/chat/completions");
    let mut body = chat_body(SENTINEL);
    let r = post_json(&url, Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains(UPSTREAM_KEY));
    replies.push(r.text());
    let r = post_json(&url, Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    body["stream"] = json!(true);
    post_json(&url, Some(KEY), &body).await;
    replies.push(post_json(&url, Some("sk-not-a-key"), &body).await.text());
    replies.push(
        post_raw(
            &url,
            Some(KEY),
            format!("{{\"model\": \"{SENTINEL}\", \"messages\": \"{SENTINEL}\""),
        )
        .await
        .text(),
    );
    let metrics_text = get(&format!("http://{admin}/metrics"), None).await.text();
    assert!(metrics_text.contains("gateway_audit_records_total"));

    // SIGTERM: the process drains and exits 0.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    while let Some(line) = rx.recv().await {
        logs.push(line);
    }
    let all = logs.join("\n");
    assert!(
        all.contains("\"status\":200"),
        "access log lines are written:\n{all}"
    );
    assert!(all.contains("stopped"), "{all}");
    // Audit records went to stdout and to the file, one per request, and flushed on exit.
    let stdout_lines = audit_stdout.join().unwrap();
    assert_eq!(stdout_lines.len(), 5, "{stdout_lines:#?}");
    let audit_file: String = gateway::audit::list_files(&audit_dir)
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(&f.path).unwrap())
        .collect();
    assert_eq!(audit_file.lines().collect::<Vec<_>>(), stdout_lines);
    let audit = stdout_lines.join("\n");
    let errors = replies.join("\n");
    for secret in [
        UPSTREAM_KEY,
        KEY,
        "sk-not-a-key",
        SENTINEL,
        "hello from upstream",
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the logs:\n{all}"
        );
        assert!(
            !audit.contains(secret),
            "{secret} leaked into audit:\n{audit}"
        );
        assert!(
            !metrics_text.contains(secret),
            "{secret} leaked into metrics"
        );
    }
    for secret in [
        UPSTREAM_KEY,
        KEY,
        "sk-not-a-key",
        SENTINEL,
        "hello from upstream",
    ] {
        assert!(
            !errors.contains(secret),
            "{secret} leaked into an error:\n{errors}"
        );
    }
}
