//! The Cohere provider end to end: OpenAI requests in, `/v2/chat` (and `/v2/embed`) out with a
//! bearer key, and the answers (plain, streamed, errors) translated back; a mock upstream
//! speaks Cohere's wire format.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const RESPONSE: &str = include_str!("../fixtures/cohere/chat.response.json");
const STREAM: &str = include_str!("../fixtures/cohere/chat.stream.sse");
const TOOL_STREAM: &str = include_str!("../fixtures/cohere/tools.stream.sse");
const TOOLS: &str = include_str!("../fixtures/cohere/tools.response.json");
const BAD_REQUEST: &str = include_str!("../fixtures/cohere/error.400.json");
const RATE_LIMITED: &str = include_str!("../fixtures/cohere/error.429.json");

/// A provider `co` of kind cohere at `up`, model `co` on it, and `extra`.
fn config(up: &MockHandle, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[routing]
backoff_base_ms = 5
backoff_max_ms = 20

[[providers]]
name = "co"
kind = "cohere"
base_url = "http://{}"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "co"
deployments = [{{ provider = "co", model = "command-a-03-2025" }}]
{extra}

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

/// An SSE fixture split into the frames the upstream sends, Cohere's `data: [DONE]` included.
fn frames(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!("{f}\n\n"))
        .collect()
}

fn request(stream: bool) -> Value {
    json!({"model": "co", "stream": stream, "max_completion_tokens": 64, "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name the three primary colors."}]})
}

fn chunks(text: &str) -> Vec<Value> {
    sse_data(text)
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[tokio::test]
async fn a_plain_completion_is_translated_both_ways() {
    let up = MockUpstream::openai().reply(200, RESPONSE).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "co");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Red, yellow, and blue."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 498);
    assert_eq!(v["usage"]["completion_tokens"], 9);

    let got = up.last();
    assert_eq!(got.path, "/v2/chat");
    let bearer = format!("Bearer {UPSTREAM_KEY}");
    assert_eq!(got.header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        got.json(),
        json!({"model": "command-a-03-2025", "stream": false, "temperature": 0.2,
            "max_tokens": 64, "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "Name the three primary colors."}]})
    );
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_tokens_total{kind="prompt",model="co",project="alpha"} 498"#));
}

#[tokio::test]
async fn a_stream_is_translated_and_ends_with_one_done() {
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
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1, "{text}");
    let chunks = chunks(&text);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(sse_pieces(&text).concat(), "Red, yellow, and blue.");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("usage chunk");
    assert_eq!(usage["usage"]["total_tokens"], 503);

    let got = up.last();
    assert_eq!(got.path, "/v2/chat");
    assert_eq!(got.json()["stream"], true);
    assert!(got.json().get("stream_options").is_none());
}

#[tokio::test]
async fn streamed_tool_calls_arrive_in_pieces() {
    let up = MockUpstream::openai()
        .stream(frames(TOOL_STREAM), Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = request(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls.len(), 3, "{text}");
    assert_eq!(calls[0]["id"], "get_weather_k9x2m4q7r1t3");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn tool_calls_come_back_with_cohere_ids() {
    let up = MockUpstream::openai().reply(200, TOOLS).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = request(false);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    body["tool_choice"] = json!("required");
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let choice = &r.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "get_weather_k9x2m4q7r1t3");
    assert_eq!(call["function"]["name"], "get_weather");
    let sent = up.last().json();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "REQUIRED");
}

#[tokio::test]
async fn embeddings_go_through_v2_embed() {
    let reply = json!({"id": "e1", "response_type": "embeddings_by_type",
        "texts": ["The quick brown fox", "jumped over the lazy dog"],
        "embeddings": {"float": [[0.0123, -0.4471], [-0.221, 0.1093]]},
        "meta": {"billed_units": {"input_tokens": 10}}});
    let up = MockUpstream::openai()
        .reply(200, &reply.to_string())
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        &json!({"model": "co", "input": ["The quick brown fox", "jumped over the lazy dog"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"][0], 0.0123);
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    let got = up.last();
    assert_eq!(got.path, "/v2/embed");
    let sent = got.json();
    assert_eq!(sent["model"], "command-a-03-2025");
    assert_eq!(sent["input_type"], "search_document");
    assert_eq!(sent["embedding_types"], json!(["float"]));
    assert_eq!(sent["texts"][1], "jumped over the lazy dog");
}

#[tokio::test]
async fn errors_come_back_in_the_openai_shape() {
    let up = MockUpstream::openai().reply(400, BAD_REQUEST).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_request");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_rate_limit_falls_back_to_an_openai_deployment() {
    let co = MockUpstream::openai()
        .reply(429, RATE_LIMITED)
        .start()
        .await;
    let openai = MockUpstream::openai().start().await;
    let extra = format!(
        "fallbacks = [\"gpt\"]\n\n[[providers]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"UPSTREAM_KEY\"\n\n[[models]]\nname = \"gpt\"\ndeployments = [{{ provider = \"oai\", model = \"gpt-4o-mini\" }}]",
        openai.base_url()
    );
    let gw = spawn_gateway_env(&config(&co, &extra), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("oai/gpt-4o-mini"));
    assert!(metrics(&gw)
        .await
        .contains(r#"class="rate_limited",deployment="co/command-a-03-2025""#));
}

#[tokio::test]
async fn a_rate_limit_without_fallback_is_mapped() {
    let up = MockUpstream::openai()
        .reply(429, RATE_LIMITED)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
}
