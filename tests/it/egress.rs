//! Egress end to end: the gateway reaches an HTTPS upstream (a TLS front with a certificate
//! from a test CA, made per test) through a local HTTP CONNECT proxy; trust comes from
//! `ca_file`, the proxy wants credentials from a named variable, a provider may bypass the
//! proxy, use mTLS, or turn HTTP/2 off; failures say what went wrong.

use crate::support::tls::{connect_proxy, tls_front, Pki, ProxyMode};
use crate::support::*;

/// A config with one openai provider at `base_url`, `egress` as the `[egress]` body and
/// `connection` as the provider's `[providers.connection]` body.
fn config(base_url: &str, egress: &str, connection: &str) -> String {
    let connection = if connection.is_empty() {
        String::new()
    } else {
        format!("[providers.connection]\n{connection}\n")
    };
    format!(
        r#"
[server]
request_timeout_secs = 10

[routing]
max_attempts = 1

[egress]
{egress}

[[providers]]
name = "up"
kind = "openai"
base_url = "{base_url}"
api_key_env = "UPSTREAM_KEY"
{connection}

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "up", model = "gpt-4o-mini-2024-07-18" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        hashed(KEY)
    )
}

const ENV: &[(&str, &str)] = &[
    ("UPSTREAM_KEY", UPSTREAM_KEY),
    ("EGRESS_PROXY_AUTH", "gw:s3cret"),
];

#[tokio::test]
async fn requests_tunnel_through_the_proxy_to_an_upstream_signed_by_the_custom_ca() {
    let pki = Pki::new();
    let up = MockUpstream::openai()
        .reply(200, &completion_json("via proxy"))
        .start()
        .await;
    let (front, log) = tls_front(&pki, up.addr, false).await;
    let proxy = connect_proxy(ProxyMode::Auth("gw:s3cret")).await;
    let egress = format!(
        "proxy = \"{}\"\nproxy_auth_env = \"EGRESS_PROXY_AUTH\"\nca_file = \"{}\"\npublic_roots = false\nmin_tls_version = \"1.3\"",
        proxy.url(),
        pki.path("ca.pem")
    );
    let base = format!("https://localhost:{}/v1", front.port());
    let gw = spawn_gateway_env(&config(&base, &egress, ""), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "via proxy");
    assert_eq!(
        *proxy.tunnels.lock().unwrap(),
        [format!("localhost:{}", front.port())]
    );
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    // The proxy's credentials are for the proxy only.
    assert_eq!(got.header("proxy-authorization"), None);
    assert_eq!(log.alpn.lock().unwrap().as_slice(), ["h2"]);
}

#[tokio::test]
async fn an_unknown_ca_is_a_502_that_says_so() {
    let pki = Pki::new();
    let up = MockUpstream::openai().start().await;
    let (front, _) = tls_front(&pki, up.addr, false).await;
    let base = format!("https://localhost:{}/v1", front.port());
    // Public roots only: the test CA is unknown.
    let gw = spawn_gateway_env(&config(&base, "", ""), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("certificate"), "{msg}");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_or_blocks_is_reported() {
    let pki = Pki::new();
    let up = MockUpstream::openai().start().await;
    let (front, _) = tls_front(&pki, up.addr, false).await;
    let base = format!("https://localhost:{}/v1", front.port());
    let ca = format!("ca_file = \"{}\"", pki.path("ca.pem"));

    let proxy = connect_proxy(ProxyMode::Auth("gw:s3cret")).await;
    let egress = format!("proxy = \"{}\"\n{ca}", proxy.url());
    let gw = spawn_gateway_env(&config(&base, &egress, ""), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("requires authentication"), "{}", r.text());

    let proxy = connect_proxy(ProxyMode::Deny).await;
    let egress = format!("proxy = \"{}\"\n{ca}", proxy.url());
    let gw = spawn_gateway_env(&config(&base, &egress, ""), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("refused the tunnel"), "{}", r.text());
    assert_eq!(proxy.refused.lock().unwrap().len(), 1);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_provider_can_bypass_the_proxy_use_mtls_and_http1() {
    let pki = Pki::new();
    let up = MockUpstream::openai().start().await;
    let (front, log) = tls_front(&pki, up.addr, true).await;
    let proxy = connect_proxy(ProxyMode::Open).await;
    let base = format!("https://127.0.0.1:{}/v1", front.port());
    let egress = format!(
        "proxy = \"{}\"\nca_file = [\"{}\"]",
        proxy.url(),
        pki.path("ca.pem")
    );
    let connection = format!(
        "proxy = false\nhttp2 = false\npool_max_idle = 4\npool_idle_timeout_secs = 5\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let gw = spawn_gateway_env(&config(&base, &egress, &connection), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(proxy.tunnels.lock().unwrap().is_empty());
    // No ALPN offered: HTTP/1.1.
    assert_eq!(log.alpn.lock().unwrap().as_slice(), [""]);

    // Without the client certificate the front refuses the handshake.
    let gw = spawn_gateway_env(&config(&base, &egress, "proxy = false"), ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn the_environment_proxy_is_used_unless_the_config_says_otherwise() {
    let pki = Pki::new();
    let up = MockUpstream::openai().start().await;
    let (front, _) = tls_front(&pki, up.addr, false).await;
    let proxy = connect_proxy(ProxyMode::Open).await;
    // A proxy from the environment leaves loopback alone; a name only the proxy resolves
    // (as in a VPC without outside DNS) goes through it.
    let base = format!("https://upstream.test:{}/v1", front.port());
    let ca = format!("ca_file = \"{}\"", pki.path("ca.pem"));
    let env = [
        ("UPSTREAM_KEY", UPSTREAM_KEY),
        ("HTTPS_PROXY", &proxy.url()),
    ];
    let gw = spawn_gateway_env(&config(&base, &ca, ""), &env).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(proxy.tunnels.lock().unwrap().len(), 1);

    // Told to ignore the environment, the gateway goes direct, where the name does not
    // resolve.
    let off = format!("{ca}\nproxy_from_env = false");
    let gw = spawn_gateway_env(&config(&base, &off, ""), &env).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("dns error"), "{}", r.text());
    assert_eq!(proxy.tunnels.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn broken_egress_settings_are_config_errors() {
    let errs = runtime_from(
        &config(
            "https://api.openai.com/v1",
            "ca_file = \"/nonexistent/ca.pem\"\nproxy = \"http://proxy:3128\"\nproxy_auth_env = \"UNSET_PROXY_AUTH\"",
            "client_cert_file = \"/nonexistent/c.pem\"",
        ),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .err()
    .unwrap()
    .join("\n");
    assert!(errs.contains("egress.ca_file"), "{errs}");
    assert!(errs.contains("egress.proxy_auth_env"), "{errs}");
    assert!(
        errs.contains("providers[0].connection: client_cert_file and client_key_file go together"),
        "{errs}"
    );
}
