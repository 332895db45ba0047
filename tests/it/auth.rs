//! Virtual keys and per-project model access.

use serde_json::json;

use crate::support::*;

async fn setup() -> (MockHandle, Gateway) {
    let up = MockUpstream::openai().start().await;
    let extra = format!(
        r#"
[[models]]
name = "claude-sonnet"
deployments = [{{ provider = "up", model = "claude-sonnet-4" }}]

[[projects]]
name = "beta"
keys = ["{}", "{}"]
models = ["gpt-4o*", "text-embedding-*"]
"#,
        hashed("sk-beta-1"),
        hashed("sk-beta-2")
    );
    let gw = gateway_for(&up, &extra).await;
    (up, gw)
}

#[tokio::test]
async fn missing_and_unknown_keys_are_refused() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let r = post_json(&url, None, &chat_body("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "missing_api_key");
    let r = post_json(&url, Some("sk-wrong"), &chat_body("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "invalid_api_key");
    assert!(
        !r.text().contains("sk-wrong"),
        "the presented key is not echoed"
    );
    // Malformed authorization schemes are not keys.
    let req = http::Request::post(&url)
        .header("authorization", format!("Basic {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body("x").to_string(),
        )))
        .unwrap();
    assert_eq!(send(req).await.status, 401);
    assert!(
        up.requests().is_empty(),
        "nothing reaches the upstream without a valid key"
    );
}

#[tokio::test]
async fn x_api_key_and_every_key_of_a_project_work() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    for key in ["sk-beta-1", "sk-beta-2"] {
        let req = http::Request::post(&url)
            .header("x-api-key", key)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                chat_body("x").to_string(),
            )))
            .unwrap();
        let r = send(req).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for got in up.requests() {
        assert!(
            got.header("x-api-key").is_none(),
            "the client's key is never forwarded"
        );
        assert_eq!(
            got.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn models_outside_the_allow_list_are_forbidden() {
    let (up, gw) = setup().await;
    let url = gw.url("/v1/chat/completions");
    let r = post_json(
        &url,
        Some("sk-beta-1"),
        &json!({"model": "claude-sonnet", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "model_not_allowed");
    assert_eq!(r.json()["error"]["param"], "model");
    let r = post_json(
        &url,
        Some("sk-beta-1"),
        &json!({"model": "gpt-5-turbo-max", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "model_not_found");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn model_list_is_filtered_per_project() {
    let (_up, gw) = setup().await;
    let ids = |v: serde_json::Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = get(&gw.url("/v1/models"), Some(KEY)).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.json()["object"], "list");
    assert_eq!(
        ids(all.json()),
        ["gpt-4o-mini", "text-embedding-3-small", "claude-sonnet"]
    );
    let beta = get(&gw.url("/v1/models"), Some("sk-beta-1")).await;
    assert_eq!(ids(beta.json()), ["gpt-4o-mini", "text-embedding-3-small"]);
    let one = get(&gw.url("/v1/models/gpt-4o-mini"), Some("sk-beta-1")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], "gpt-4o-mini");
    assert_eq!(one.json()["object"], "model");
    let hidden = get(&gw.url("/v1/models/claude-sonnet"), Some("sk-beta-1")).await;
    assert_eq!(hidden.status, 404);
    let passthrough = get(&gw.url("/v1/models/up/some-model"), Some(KEY)).await;
    assert_eq!(passthrough.status, 200);
    assert_eq!(passthrough.json()["id"], "up/some-model");
    assert_eq!(get(&gw.url("/v1/models"), None).await.status, 401);
}
