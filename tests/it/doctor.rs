//! `gateway doctor` against mock providers: a healthy HTTPS one reached through the CONNECT
//! proxy with the test CA, one that rejects the key, one that is not listening, one whose CA is
//! unknown, one the proxy blocks. The table says which step failed and what to do, and never
//! shows a key.

use std::process::Command;

use crate::support::tls::{connect_proxy, tls_front, Pki, ProxyMode};
use crate::support::*;

fn provider(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\napi_key_env = \"UPSTREAM_KEY\"\n{extra}\n"
    )
}

async fn doctor(toml: &str) -> (bool, String) {
    let rt = runtime_from(toml, &[("UPSTREAM_KEY", UPSTREAM_KEY)])
        .unwrap_or_else(|e| panic!("config rejected: {e:#?}"));
    let mut out = Vec::new();
    let ok = gateway::doctor::run(&rt, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains(UPSTREAM_KEY), "{out}");
    (ok, out)
}

fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name} in\n{out}"))
}

#[tokio::test]
async fn a_healthy_provider_behind_the_proxy_passes() {
    let pki = Pki::new();
    let up = MockUpstream::openai()
        .reply(200, r#"{"object":"list","data":[]}"#)
        .start()
        .await;
    let (front, _) = tls_front(&pki, up.addr, false).await;
    let proxy = connect_proxy(ProxyMode::Open).await;
    let toml = format!(
        "[egress]\nproxy = \"{}\"\nca_file = \"{}\"\n\n{}",
        proxy.url(),
        pki.path("ca.pem"),
        provider(
            "healthy",
            &format!("https://localhost:{}/v1", front.port()),
            ""
        )
    );
    let (ok, out) = doctor(&toml).await;
    assert!(ok, "{out}");
    let r = row(&out, "healthy");
    assert!(r.contains("proxy 127.0.0.1"), "{out}");
    assert_eq!(r.matches(" ok").count(), 3, "{out}");
    assert!(out.contains("all 1 provider(s) OK"), "{out}");
    let got = up.last();
    assert_eq!(got.path, "/v1/models");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(proxy.tunnels.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn wrong_key_unreachable_unknown_ca_and_blocked_are_told_apart() {
    let pki = Pki::new();
    let rejecting = MockUpstream::openai()
        .reply(
            401,
            &format!(r#"{{"error":{{"message":"Incorrect API key provided: {UPSTREAM_KEY}","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#),
        )
        .start()
        .await;
    let closed = closed_port().await;
    let up = MockUpstream::openai().start().await;
    let (front, _) = tls_front(&pki, up.addr, false).await;
    let blocked_proxy = connect_proxy(ProxyMode::Deny).await;
    // Only "blocked" goes through the denying proxy: the others bypass it.
    let direct = "[providers.connection]\nproxy = false";
    let toml = format!(
        "[egress]\nproxy = \"{}\"\n\n{}{}{}{}",
        blocked_proxy.url(),
        provider("wrongkey", &rejecting.base_url(), direct),
        provider("down", &format!("http://{closed}/v1"), direct),
        provider(
            "strangeca",
            &format!("https://localhost:{}/v1", front.port()),
            direct
        ),
        provider("blocked", &format!("http://{}/v1", up.addr), ""),
    );
    let (ok, out) = doctor(&toml).await;
    assert!(!ok, "{out}");
    assert!(row(&out, "wrongkey").contains("FAIL"), "{out}");
    assert!(out.contains("wrongkey: key rejected (HTTP 401)"), "{out}");
    assert!(row(&out, "down").contains("FAIL"), "{out}");
    assert!(out.contains("down: cannot connect to"), "{out}");
    assert!(out.contains("strangeca: unknown CA"), "{out}");
    assert!(
        out.contains("blocked: blocked by the egress proxy"),
        "{out}"
    );
    assert!(out.contains("4 of 4 provider(s) failing"), "{out}");
}

#[tokio::test]
async fn the_binary_exits_non_zero_when_a_provider_fails() {
    let closed = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, provider("down", &format!("http://{closed}/v1"), "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["doctor", "--config"])
        .arg(&path)
        .env("UPSTREAM_KEY", UPSTREAM_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("down: cannot connect to"), "{text}");
    assert!(!text.contains(UPSTREAM_KEY));
}
