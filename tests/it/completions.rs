//! Legacy text completions end to end: passed through to an OpenAI-format upstream with the
//! deployment's model, streams relayed with usage counted, Azure's deployment path, and a 400
//! for a model served only by other wire formats.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn completion(text: &str) -> String {
    json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-3.5-turbo-instruct",
           "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}})
    .to_string()
}

fn completion_frames() -> Vec<String> {
    let chunk = |text: &str, finish: Value| {
        json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
               "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
    };
    let usage = json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                       "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
    [chunk("Hel", Value::Null), chunk("lo", json!("stop")), usage]
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(["data: [DONE]\n\n".to_string()])
        .collect()
}

#[tokio::test]
async fn a_completion_passes_through_with_the_deployment_model() {
    let up = MockUpstream::openai()
        .reply(200, &completion("Hello"))
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body =
        json!({"model": "gpt-4o-mini", "prompt": "Say hello", "max_tokens": 5, "echo": false});
    let r = post_json(&gw.url("/v1/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["text"], "Hello");
    let got = up.last();
    assert_eq!(got.path, "/v1/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(
        got.json(),
        json!({"model": "gpt-4o-mini-2024-07-18", "prompt": "Say hello", "max_tokens": 5, "echo": false})
    );
    let m = metrics(&gw).await;
    assert!(
        m.lines().any(|l| l.starts_with("gateway_tokens_total")
            && l.contains("kind=\"completion\"")
            && l.ends_with(" 2")),
        "{m}"
    );
}

#[tokio::test]
async fn a_completion_stream_is_relayed_and_usage_requested() {
    let up = MockUpstream::openai()
        .stream(completion_frames(), Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "prompt": "Say hello", "stream": true});
    let r = post_json(&gw.url("/v1/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&r.text());
    let texts: Vec<String> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(texts, ["Hel", "lo"]);
    // The client did not ask for usage: the chunk the gateway asked for is not passed on.
    assert!(data.iter().all(|d| !d.contains("\"usage\"")), "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(up.last().json()["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn azure_completions_go_to_the_deployment_path() {
    let up = MockUpstream::openai()
        .reply(200, &completion("Hi"))
        .start()
        .await;
    let config = format!(
        r#"
[[providers]]
name = "az"
kind = "azure"
base_url = "http://{}/openai"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "instruct"
deployments = [{{ provider = "az", model = "my-instruct" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    );
    let gw = spawn_gateway_env(&config, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let body = json!({"model": "instruct", "prompt": "x"});
    let r = post_json(&gw.url("/v1/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(got.path, "/openai/deployments/my-instruct/completions");
    assert!(got.query.starts_with("api-version="), "{}", got.query);
    assert_eq!(got.header("api-key"), Some(UPSTREAM_KEY));
}

#[tokio::test]
async fn a_model_without_openai_format_deployments_gets_a_clear_400() {
    let up = MockUpstream::openai().start().await;
    let config = format!(
        r#"
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{}"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    );
    let gw = spawn_gateway_env(&config, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/completions"),
        Some(KEY),
        &json!({"model": "claude", "prompt": "x"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_endpoint");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/chat/completions"));
    assert!(up.requests().is_empty());
    let r = post_json(
        &gw.url("/v1/completions"),
        Some(KEY),
        &json!({"model": "claude"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "prompt");
}

/// A project's data protection policy applies to legacy completions too: blocked values are
/// never sent, redacted ones are redacted in the prompt the upstream gets, and a policy that
/// would need the answer rewritten (pseudonyms) is refused rather than skipped.
#[tokio::test]
async fn data_protection_covers_the_prompt() {
    let up = MockUpstream::openai()
        .reply(200, &completion("ok"))
        .start()
        .await;
    let gw = gateway_for(
        &up,
        r#"
policy = "p"

[policies.p]
version = 1
default_action = "redact"
[policies.p.actions]
US_SSN = "block"
EMAIL = "redact"
"#,
    )
    .await;
    let url = gw.url("/v1/completions");
    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "gpt-4o-mini", "prompt": "mail jane.doe@example.com please"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last().json();
    let prompt = sent["prompt"].as_str().unwrap();
    assert!(!prompt.contains("jane.doe@example.com"), "{prompt}");
    assert!(prompt.contains("[EMAIL]"), "{prompt}");

    let before = up.requests().len();
    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "gpt-4o-mini", "prompt": "my ssn is 536-22-1234"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("536-22-1234"));
    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "gpt-4o-mini", "prompt": ["a", "b"]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(up.requests().len(), before, "nothing refused was sent");
}
