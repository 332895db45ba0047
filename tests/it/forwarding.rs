//! What goes upstream: headers, keys, request ids.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

#[tokio::test]
async fn hop_by_hop_and_client_credentials_are_not_forwarded() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-api-key", KEY)
        .header("cookie", "session=abc")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("openai-organization", "org-client")
        .header("x-custom-trace", "keep-me")
        .header("x-request-id", "client-req-42")
        .header("user-agent", "OpenAI/Python 1.99.0")
        .body(Full::new(Bytes::from(chat_body("x").to_string())))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-request-id"),
        Some("client-req-42"),
        "a client request id is propagated"
    );

    let got = up.last();
    for h in [
        "x-api-key",
        "cookie",
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-authorization",
        "openai-organization",
    ] {
        assert!(got.header(h).is_none(), "{h} was forwarded");
    }
    let auth = got.header("authorization").unwrap();
    assert_eq!(
        auth,
        format!("Bearer {UPSTREAM_KEY}"),
        "the provider key replaces the client's"
    );
    assert!(
        !format!("{:?}", got.headers).contains(KEY),
        "the virtual key never goes upstream"
    );
    assert_eq!(got.header("x-custom-trace"), Some("keep-me"));
    assert_eq!(got.header("x-request-id"), Some("client-req-42"));
    assert_eq!(got.header("user-agent"), Some("OpenAI/Python 1.99.0"));
}

#[tokio::test]
async fn key_pools_rotate_and_provider_headers_are_added() {
    let up = MockUpstream::openai().start().await;
    let cfg = config_for(&up.base_url(), "").replace(
        "api_key_env = \"UPSTREAM_KEY\"",
        "api_key_env = [\"KEY_A\", \"KEY_B\"]\nheaders = { \"x-tenant\" = \"acme\", \"openai-project\" = \"proj_1\" }",
    );
    let gw = spawn_gateway_env(&cfg, &[("KEY_A", "sk-a"), ("KEY_B", "sk-b")]).await;
    for _ in 0..4 {
        assert_eq!(
            post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x"))
                .await
                .status,
            200
        );
    }
    let keys: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["Bearer sk-a", "Bearer sk-b", "Bearer sk-a", "Bearer sk-b"]
    );
    let last = up.last();
    assert_eq!(last.header("x-tenant"), Some("acme"));
    assert_eq!(last.header("openai-project"), Some("proj_1"));
}

#[tokio::test]
async fn key_files_work_and_keyless_upstreams_get_no_authorization() {
    let up = MockUpstream::openai().start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sk-from-file\n").unwrap();
    let cfg = config_for(&up.base_url(), "").replace(
        "api_key_env = \"UPSTREAM_KEY\"",
        &format!("api_key_file = {:?}", key_file.display().to_string()),
    );
    let gw = spawn_gateway(&cfg).await;
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(
        up.last().header("authorization"),
        Some("Bearer sk-from-file")
    );

    let up2 = MockUpstream::openai().start().await;
    let cfg = config_for(&up2.base_url(), "").replace("api_key_env = \"UPSTREAM_KEY\"", "");
    let gw = spawn_gateway(&cfg).await;
    assert_eq!(
        post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x"))
            .await
            .status,
        200
    );
    assert!(up2.last().header("authorization").is_none());
}
