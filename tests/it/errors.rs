//! Bad input and upstream failures: OpenAI-shaped errors with the right status, never a hang.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn malformed_json_says_where() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let url = gw.url("/v1/chat/completions");
    let r = post_raw(
        &url,
        Some(KEY),
        "{\"model\": \"gpt-4o-mini\",\n \"messages\": [}",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_json");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("line 2"), "{msg}");

    let r = post_raw(&url, Some(KEY), "").await;
    assert_eq!(r.status, 400);

    let r = post_json(
        &url,
        Some(KEY),
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "model");

    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "gpt-4o-mini", "messages": "my secret prompt text"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        !r.text().contains("secret prompt"),
        "values are not echoed: {}",
        r.text()
    );

    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "gpt-4o-mini", "messages": []}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let up = MockUpstream::openai().start().await;
    let cfg = config_for(&up.base_url(), "").replace(
        "request_timeout_secs = 5",
        "request_timeout_secs = 5\nmax_body_bytes = 1024",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let url = gw.url("/v1/chat/completions");
    let big = chat_body(&"x".repeat(4096)).to_string();
    let r = post_raw(&url, Some(KEY), big.clone()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "request_too_large");

    // Without a content-length (chunked), the limit still holds.
    let chunks = big
        .as_bytes()
        .chunks(256)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = http::Request::post(&url)
        .header("authorization", format!("Bearer {KEY}"))
        .body(TestBody::chunks(chunks))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.headers().get("content-length").is_some());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("request_too_large"));
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn upstream_4xx_is_passed_through_with_its_status() {
    let body = r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let up = MockUpstream::openai().reply(400, body).start().await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-gateway-upstream-status"), Some("400"));
    assert_eq!(r.error_code(), "context_length_exceeded");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn upstream_auth_errors_never_echo_the_provider_key() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: sk-upstr*****cdef. You can find your API key at https://platform.openai.com/account/api-keys. Raw: {UPSTREAM_KEY}","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    );
    let up = MockUpstream::openai().reply(401, &body).start().await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-gateway-upstream-status"), Some("401"));
    let text = r.text();
    assert!(!text.contains(UPSTREAM_KEY), "{text}");
    assert!(!text.contains("sk-upstr"), "{text}");
    assert_eq!(r.error_code(), "invalid_api_key");
}

#[tokio::test]
async fn upstream_5xx_becomes_502() {
    let up = MockUpstream::openai()
        .reply_with_headers(
            503,
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
            &[("retry-after", "3")],
        )
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-gateway-upstream-status"), Some("503"));
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.error_code(), "upstream_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'up'"));
}

#[tokio::test]
async fn upstream_timeout_becomes_504() {
    let up = MockUpstream::openai().hang().start().await;
    let gw = spawn_gateway_env(
        &config_for(&up.base_url(), "")
            .replace("request_timeout_secs = 5", "request_timeout_secs = 1"),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")),
    )
    .await
    .expect("no hang");
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "upstream_timeout");
}

#[tokio::test]
async fn unreachable_upstream_becomes_502() {
    let port = closed_port().await;
    let gw = spawn_gateway_env(
        &config_for(&format!("http://{port}/v1"), ""),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error_code(), "upstream_unreachable");
    assert!(!r.text().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let r = get(&gw.url("/v1/nope"), Some(KEY)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = get(&gw.url("/v1/chat/completions"), Some(KEY)).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let req = http::Request::delete(gw.url("/v1/models"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 405);
}

#[tokio::test]
async fn a_trickling_request_body_times_out_with_408() {
    let up = MockUpstream::openai().start().await;
    let cfg = config_for(&up.base_url(), "")
        .replace("request_timeout_secs = 5", "request_timeout_secs = 1");
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let (body, _hold) = TestBody::trickle(Bytes::from_static(b"{\"model\": \"gpt-4o-mini\","));
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(body)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn paths_without_the_v1_prefix_are_served() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(&gw.url("/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().path, "/v1/chat/completions");
    assert_eq!(
        get(&gw.url("/models/gpt-4o-mini"), Some(KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn the_in_process_mock_is_bound_by_the_request_timeout_too() {
    let gw = spawn_gateway(&mock_config(
        "request_timeout_secs = 1",
        "latency_ms = 5000",
    ))
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")),
    )
    .await
    .expect("no hang");
    assert_eq!(r.status, 504);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("within 1s"));
}
