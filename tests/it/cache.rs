//! The response cache: per project, exact match, replayed as a stream, Cache-Control honoured.

use serde_json::json;

use crate::support::*;

async fn setup() -> (MockHandle, Gateway) {
    let up = MockUpstream::openai().start().await;
    let extra = format!(
        "cache = true\n\n[[projects]]\nname = \"nocache\"\nkeys = [\"{}\"]\n",
        hashed("sk-nocache")
    );
    // `extra` lands right after the "alpha" project, so `cache = true` is alpha's.
    let gw = gateway_for(&up, &extra).await;
    (up, gw)
}

fn with_header(
    gw: &Gateway,
    key: &str,
    name: &str,
    value: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header(name, value)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body("cache me").to_string(),
        )))
        .unwrap()
}

#[tokio::test]
async fn a_repeated_request_is_served_from_the_cache() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let first = post_json(&url, Some(KEY), &chat_body("cache me")).await;
    assert_eq!(first.header("x-gateway-cache"), Some("miss"));
    let second = post_json(&url, Some(KEY), &chat_body("cache me")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-gateway-cache"), Some("hit"));
    assert_eq!(second.json(), first.json());
    assert_eq!(
        second.header("x-gateway-deployment"),
        Some("up/gpt-4o-mini-2024-07-18")
    );
    assert_eq!(up.requests().len(), 1, "the hit never reached the upstream");

    // A different prompt is a different entry.
    let other = post_json(&url, Some(KEY), &chat_body("something else")).await;
    assert_eq!(other.header("x-gateway-cache"), Some("miss"));
    assert_eq!(up.requests().len(), 2);

    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"gateway_cache_requests_total{result="hit"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"gateway_cache_requests_total{result="miss"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_streamed_request_is_answered_by_replaying_the_cached_completion() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    post_json(&url, Some(KEY), &chat_body("cache me")).await;
    let mut body = chat_body("cache me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post_json(&url, Some(KEY), &body).await;
    assert_eq!(r.header("x-gateway-cache"), Some("hit"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert_eq!(sse_pieces(&text).concat(), "hello from upstream");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(
        data.iter().any(|d| d.contains("\"total_tokens\":18")),
        "{data:?}"
    );
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn cache_control_no_cache_and_no_store_are_honoured() {
    let (up, gw) = setup().await;
    let r = send(with_header(&gw, KEY, "cache-control", "no-store")).await;
    assert_eq!(r.header("x-gateway-cache"), Some("bypass"));
    // Not stored: the next plain request misses.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("cache me"),
    )
    .await;
    assert_eq!(r.header("x-gateway-cache"), Some("miss"));
    // no-cache skips the lookup (so the upstream is asked again) but stores the answer.
    let r = send(with_header(&gw, KEY, "cache-control", "no-cache")).await;
    assert_eq!(r.header("x-gateway-cache"), Some("bypass"));
    assert_eq!(up.requests().len(), 3);
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("cache me"),
    )
    .await;
    assert_eq!(r.header("x-gateway-cache"), Some("hit"));
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test]
async fn projects_without_the_cache_and_other_projects_never_see_entries() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    post_json(&url, Some(KEY), &chat_body("cache me")).await;
    for _ in 0..2 {
        let r = post_json(&url, Some("sk-nocache"), &chat_body("cache me")).await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-gateway-cache").is_none());
    }
    assert_eq!(up.requests().len(), 3);
}
