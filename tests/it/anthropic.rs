//! The Anthropic provider end to end: OpenAI requests in, the Messages API out, and the answers
//! (plain, streamed, errors) translated back; a mock upstream speaks Anthropic's wire format.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const RESPONSE: &str = include_str!("../fixtures/anthropic/messages.response.json");
const STREAM: &str = include_str!("../fixtures/anthropic/messages.stream.sse");
const TOOLS_STREAM: &str = include_str!("../fixtures/anthropic/tools.stream.sse");
const TOO_LONG: &str = include_str!("../fixtures/anthropic/error.400.prompt_too_long.json");
const OVERLOADED: &str = include_str!("../fixtures/anthropic/error.529.overloaded.json");

/// A provider `claude` of kind anthropic at `up`, model `claude` on it, and `extra`.
fn config(up: &MockHandle, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[routing]
backoff_base_ms = 5
backoff_max_ms = 20

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{}"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "claude"
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]
{extra}

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

/// The SSE fixture split into the frames the upstream sends.
fn frames(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!("{f}\n\n"))
        .collect()
}

fn request(stream: bool) -> Value {
    json!({"model": "claude", "stream": stream, "max_completion_tokens": 64, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name the three primary colors."}]})
}

#[tokio::test]
async fn a_plain_completion_is_translated_both_ways() {
    let up = MockUpstream::openai().reply(200, RESPONSE).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Red, yellow, and blue."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 21);
    assert_eq!(v["usage"]["completion_tokens"], 10);

    let got = up.last();
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert!(
        got.header("authorization").is_none(),
        "Anthropic takes the key in x-api-key only"
    );
    let body = got.json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["system"], "You are a terse assistant.");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Name the three primary colors."}])
    );
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_tokens_total{kind="prompt",model="claude",project="alpha"} 21"#));
}

#[tokio::test]
async fn a_stream_is_translated_event_by_event() {
    let up = MockUpstream::openai()
        .stream(frames(STREAM), Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = request(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(sse_pieces(&text).concat(), "Red, yellow, and blue.");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "{text}"
    );
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(up.last().json()["stream"], true);
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_openai_tool_call_deltas() {
    let up = MockUpstream::openai()
        .stream(frames(TOOLS_STREAM), Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = request(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    let data = sse_data(&r.text());
    let deltas: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .collect();
    assert!(deltas.len() >= 2, "arguments stream in pieces: {data:?}");
    assert!(deltas[0]["function"]["name"].is_string());
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&args).is_ok(),
        "fragments join to JSON: {args}"
    );
    assert_eq!(up.last().json()["tools"][0]["name"], "get_weather");
}

#[tokio::test]
async fn errors_come_back_in_the_openai_shape() {
    let up = MockUpstream::openai().reply(400, TOO_LONG).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "context_length_exceeded");
    assert_eq!(r.header("x-gateway-error-class"), Some("context_length"));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn an_overloaded_anthropic_falls_back_to_an_openai_deployment() {
    let claude = MockUpstream::openai().reply(529, OVERLOADED).start().await;
    let openai = MockUpstream::openai().start().await;
    let extra = format!(
        "fallbacks = [\"gpt\"]\n\n[[providers]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"UPSTREAM_KEY\"\n\n[[models]]\nname = \"gpt\"\ndeployments = [{{ provider = \"oai\", model = \"gpt-4o-mini\" }}]",
        openai.base_url()
    );
    let gw = spawn_gateway_env(&config(&claude, &extra), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("oai/gpt-4o-mini"));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "hello from upstream"
    );
    // The same request, encoded for each wire format.
    assert_eq!(claude.last().json()["max_tokens"], 64);
    assert_eq!(openai.last().json()["messages"][0]["role"], "system");
    assert!(metrics(&gw)
        .await
        .contains(r#"class="overloaded",deployment="claude/claude-sonnet-4-5""#));
}

#[tokio::test]
async fn embeddings_are_refused_clearly() {
    let up = MockUpstream::openai().start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        &json!({"model": "claude", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("no embeddings"));
    assert!(up.requests().is_empty());
}
