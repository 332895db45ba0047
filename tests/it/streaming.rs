//! Streaming relay: chunk by chunk, usage handling, cancellation on disconnect.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::support::*;

fn stream_body(include_usage: Option<bool>) -> Value {
    let mut b = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "count"}]});
    if let Some(u) = include_usage {
        b["stream_options"] = json!({"include_usage": u});
    }
    b
}

#[tokio::test]
async fn first_chunk_arrives_before_the_upstream_sends_the_last() {
    let frames = stream_frames(&["one", " two", " three"], true);
    let up = MockUpstream::openai().stream_gated(frames, 2).start().await;
    let gw = gateway_for(&up, "").await;

    let resp = open_stream(&gw, &stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-gateway-provider"], "up");
    let mut body = resp.into_body();
    // The upstream holds back everything after two frames until the gate opens: the client
    // must see them first, so nothing is buffered whole.
    let mut seen = String::new();
    while !seen.contains("one") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("first chunks arrive while the upstream still holds the rest")
            .unwrap()
            .unwrap();
        if let Ok(d) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    assert!(!seen.contains("three"));
    up.gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    seen.push_str(&String::from_utf8_lossy(&rest));
    let data = sse_data(&seen);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(sse_pieces(&seen).concat(), "one two three");
    // The client did not ask for usage: the usage-only chunk is not relayed...
    assert!(!seen.contains("\"completion_tokens\""), "{seen}");
    // ...but the gateway asked upstream for it, and counted it.
    assert_eq!(up.last().json()["stream_options"]["include_usage"], true);
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains(
            r#"gateway_tokens_total{kind="completion",model="gpt-4o-mini",project="alpha"} 3"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn include_usage_is_honoured() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["a", "b"], true), Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &stream_body(Some(true)),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.text());
    let usage: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{data:?}");
    assert_eq!(usage[0]["usage"]["total_tokens"], 8);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn stream_usage_request_can_be_turned_off_per_provider() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["a"], false), Duration::ZERO)
        .start()
        .await;
    let cfg = config_for(&up.base_url(), "").replace(
        "api_key_env = \"UPSTREAM_KEY\"",
        "api_key_env = \"UPSTREAM_KEY\"\nstream_include_usage = false",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &stream_body(None),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(up.last().json().get("stream_options").is_none());
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let up = MockUpstream::openai()
        .endless(Duration::from_millis(20))
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let resp = open_stream(&gw, &stream_body(None)).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    tokio::time::timeout(Duration::from_secs(5), up.hung_up.notified())
        .await
        .expect("the upstream saw the gateway hang up promptly");
    // Accounting ran once, as a client that went away.
    let metrics = metrics(&gw).await;
    assert!(metrics.contains(r#"status="499"} 1"#), "{metrics}");
    assert!(metrics.contains("gateway_inflight_requests 0"), "{metrics}");
}

#[tokio::test]
async fn upstream_breaking_off_ends_the_stream_with_an_error_event() {
    // Idle timeout: the upstream sends one frame and goes silent.
    let frames = stream_frames(&["partial"], false);
    let up = MockUpstream::openai().stream_gated(frames, 1).start().await;
    let cfg = config_for(&up.base_url(), "").replace(
        "request_timeout_secs = 5",
        "request_timeout_secs = 5\nstream_idle_timeout_secs = 1",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        post_json(
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &stream_body(None),
        ),
    )
    .await
    .expect("the stream ends");
    assert_eq!(r.status, 200);
    let data = sse_data(&r.text());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
}

#[tokio::test]
async fn upstream_error_before_the_stream_starts_is_a_plain_error() {
    let body = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let up = MockUpstream::openai()
        .reply_with_headers(429, body, &[("retry-after", "7")])
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &stream_body(None),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.error_code(), "rate_limit_exceeded");
}
