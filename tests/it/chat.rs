//! Non-streaming chat and embeddings relay.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn non_stream_chat_is_relayed_with_usage() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;

    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("hi there"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from upstream");
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(r.header("x-gateway-provider"), Some("up"));
    assert_eq!(
        r.header("x-gateway-deployment"),
        Some("up/gpt-4o-mini-2024-07-18")
    );
    assert!(r
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("req_")));

    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    let body = got.json();
    assert_eq!(
        body["model"], "gpt-4o-mini-2024-07-18",
        "deployment model sent upstream"
    );
    assert_eq!(body["messages"][0]["content"], "hi there");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );

    let metrics = metrics(&gw).await;
    assert!(metrics.contains(r#"gateway_requests_total{model="gpt-4o-mini",project="alpha",provider="up",status="200"} 1"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"gateway_tokens_total{kind="prompt",model="gpt-4o-mini",project="alpha"} 11"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"gateway_tokens_total{kind="cached",model="gpt-4o-mini",project="alpha"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_request_fields_pass_through_untouched() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]}],
        "temperature": 0.2, "seed": 42, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"}, "some_vendor_field": {"nested": [1, 2]}
    });
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let sent = up.last().json();
    for field in [
        "temperature",
        "seed",
        "tools",
        "response_format",
        "some_vendor_field",
    ] {
        assert_eq!(sent[field], body[field], "{field}");
    }
    assert_eq!(sent["messages"], body["messages"]);
    assert!(
        sent.get("stream_options").is_none(),
        "no stream options on a non-stream request"
    );
}

#[tokio::test]
async fn embeddings_are_relayed() {
    let emb = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
        "model": "text-embedding-3-small", "usage": {"prompt_tokens": 3, "total_tokens": 3}});
    let up = MockUpstream::openai()
        .reply(200, &emb.to_string())
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        &json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), emb);
    let got = up.last();
    assert_eq!(got.path, "/v1/embeddings");
    assert_eq!(got.json()["input"], json!(["a", "b"]));
    assert_eq!(got.json()["encoding_format"], "float");
}

#[tokio::test]
async fn provider_slash_model_strings_route_without_a_models_entry() {
    let up = MockUpstream::openai().start().await;
    let extra = format!(
        r#"
[[projects]]
name = "narrow"
keys = ["{}"]
models = ["up/gpt-4.1*"]
"#,
        hashed("sk-narrow")
    );
    let gw = gateway_for(&up, &extra).await;
    let body = json!({"model": "up/gpt-4.1-nano", "messages": [{"role": "user", "content": "x"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some("sk-narrow"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().json()["model"], "gpt-4.1-nano");
    assert_eq!(r.header("x-gateway-deployment"), Some("up/gpt-4.1-nano"));

    // The allow-list applies to the full string.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some("sk-narrow"),
        &json!({"model": "up/o3", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "model_not_allowed");
    // An unknown provider prefix is an unknown model.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &json!({"model": "nope/gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let client: TestClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body("h2").to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}
