//! The admin listener, CORS, and graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let gw = spawn_gateway(&mock_config("", "chunk_chars = 2\nchunk_delay_ms = 50")).await;
    let r = get(&gw.admin_url("/healthz"), None).await;
    assert_eq!(r.status, 200);
    let r = get(&gw.admin_url("/readyz"), None).await;
    assert_eq!(r.status, 200);
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    let r = get(&gw.admin_url("/metrics"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    for name in [
        "gateway_build_info{version=",
        "gateway_requests_total{",
        "gateway_request_duration_seconds_bucket{",
        "gateway_upstream_duration_seconds_bucket{",
        "gateway_time_to_first_byte_seconds_bucket{",
        "gateway_tokens_total{",
        "gateway_inflight_requests 0",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    // The admin endpoints are not on the client listener, and vice versa.
    assert_eq!(get(&gw.url("/metrics"), None).await.status, 404);
    assert_eq!(
        get(&gw.admin_url("/v1/models"), Some(KEY)).await.status,
        404
    );
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let gw = spawn_gateway(&mock_config("", "chunk_chars = 2\nchunk_delay_ms = 50")).await;
    let req = http::Request::builder()
        .method("OPTIONS")
        .uri(gw.url("/v1/chat/completions"))
        .header("origin", "https://chat.example.com")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert!(r.header("access-control-allow-origin").is_none());
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("origin", "https://chat.example.com")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(chat_body("x").to_string())))
        .unwrap();
    assert!(send(req)
        .await
        .header("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn cors_preflight_and_responses_for_allowed_origins() {
    let gw = spawn_gateway(&mock_config(
        "[server.cors]\nallowed_origins = [\"https://chat.example.com\"]",
        "",
    ))
    .await;
    let preflight = |origin: &'static str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri(gw.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = send(preflight("https://chat.example.com")).await;
    assert_eq!(r.status, 204, "preflight needs no key");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example.com")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let r = send(preflight("https://evil.example.com")).await;
    assert!(r.header("access-control-allow-origin").is_none());

    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("origin", "https://chat.example.com")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(chat_body("x").to_string())))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://chat.example.com")
    );
    assert!(r
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-request-id"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_streams_and_refuses_new_connections() {
    let mut gw = spawn_gateway(&mock_config(
        "shutdown_grace_secs = 10",
        "chunk_chars = 2\nchunk_delay_ms = 50",
    ))
    .await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "abcdefghijkl"}]});
    let resp = open_stream(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body();
    let _first = stream.frame().await.unwrap().unwrap();

    let done = gw.begin_shutdown();
    // Readiness flips while the drain runs.
    let mut saw_not_ready = false;
    for _ in 0..50 {
        if get(&gw.admin_url("/readyz"), None).await.status == 503 {
            saw_not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_not_ready);
    // The in-flight stream still completes.
    let rest = stream.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("drained")
        .unwrap();
    // And nothing new is accepted.
    let fresh = tokio::net::TcpStream::connect(gw.addr).await;
    assert!(fresh.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn the_grace_period_is_a_hard_limit() {
    let mut gw = spawn_gateway(&mock_config(
        "shutdown_grace_secs = 1",
        "chunk_chars = 1\nchunk_delay_ms = 200",
    ))
    .await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "a long, slow answer that outlasts the grace period"}]});
    let resp = open_stream(&gw, &body).await;
    let mut stream = resp.into_body();
    let _first = stream.frame().await.unwrap().unwrap();
    let done = gw.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .expect("serve returns once the grace period is over")
        .unwrap();
    // The stream was cut: it ends (with an error or early) instead of running to completion.
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.collect())
        .await
        .expect("cut");
    let complete = rest
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).contains("[DONE]"))
        .unwrap_or(false);
    assert!(!complete, "the stream should have been cut off");
}
