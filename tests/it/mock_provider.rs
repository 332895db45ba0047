//! The built-in `mock` provider, end to end through the gateway.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn chat_echoes_with_usage_and_streams_in_chunks() {
    let gw = spawn_gateway(&mock_config("", "chunk_chars = 4\nchunk_delay_ms = 30")).await;
    let url = gw.url("/v1/chat/completions");
    let r = post_json(&url, Some(KEY), &chat_body("echo this back")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo this back");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        v["usage"]["total_tokens"],
        v["usage"]["prompt_tokens"].as_u64().unwrap()
            + v["usage"]["completion_tokens"].as_u64().unwrap()
    );

    let started = Instant::now();
    let mut body = chat_body("abcdefghij");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post_json(&url, Some(KEY), &body).await;
    let data = sse_data(&r.text());
    assert_eq!(sse_pieces(&r.text()), ["abcd", "efgh", "ij"]);
    assert!(
        started.elapsed() >= Duration::from_millis(30 * 5),
        "chunks are paced"
    );
    assert!(data.iter().any(|d| d.contains("\"usage\":{")));
}

#[tokio::test]
async fn fixed_reply_and_failures_every_nth_request() {
    // Every third upstream request fails with 503; the gateway retries it, so the client sees
    // only successes, the retried ones after two attempts.
    let gw = spawn_gateway(&mock_config(
        "",
        "reply = \"canned\"\nfail_every = 3\nfail_status = 503",
    ))
    .await;
    let url = gw.url("/v1/chat/completions");
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let r = post_json(&url, Some(KEY), &chat_body("x")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["choices"][0]["message"]["content"], "canned");
        attempts.push(r.header("x-gateway-attempts").unwrap().to_string());
    }
    // Upstream requests: 1 ok, 2 ok, 3 fails -> 4 ok, 5 ok, 6 fails -> 7 ok.
    assert_eq!(attempts, ["1", "1", "2", "1", "2"]);
    let text = metrics(&gw).await;
    assert!(text.contains(r#"gateway_upstream_requests_total{class="overloaded",deployment="mock/gpt-4o-mini",provider="mock"} 2"#), "{text}");
    assert!(
        text.contains(r#"gateway_retries_total{reason="overloaded"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let gw = spawn_gateway(&mock_config("", "")).await;
    let mut body = chat_body(&"word ".repeat(50));
    body["max_tokens"] = json!(2);
    let v = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body)
        .await
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn embeddings_are_deterministic_in_float_and_base64() {
    let gw = spawn_gateway(&mock_config("", "embedding_dimensions = 8")).await;
    let url = gw.url("/v1/embeddings");
    let a = post_json(
        &url,
        Some(KEY),
        &json!({"model": "text-embedding-3-small", "input": ["same", "other"]}),
    )
    .await
    .json();
    let b = post_json(
        &url,
        Some(KEY),
        &json!({"model": "text-embedding-3-small", "input": "same"}),
    )
    .await
    .json();
    let va = a["data"][0]["embedding"].as_array().unwrap().clone();
    assert_eq!(va.len(), 8);
    assert_eq!(va, *b["data"][0]["embedding"].as_array().unwrap());
    assert_ne!(va, *a["data"][1]["embedding"].as_array().unwrap());
    let norm: f64 = va.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-3);
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let c = post_json(&url, Some(KEY), &json!({"model": "text-embedding-3-small", "input": "same", "encoding_format": "base64", "dimensions": 8})).await.json();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(c["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = raw
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for (x, y) in floats.iter().zip(&va) {
        assert!((f64::from(*x) - y.as_f64().unwrap()).abs() < 1e-6);
    }
}
