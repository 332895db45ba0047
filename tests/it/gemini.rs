//! The Gemini provider end to end: OpenAI requests in, `generateContent` (and
//! `batchEmbedContents`) out, and the answers (plain, streamed, errors) translated back; a mock
//! upstream speaks Gemini's wire format.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const RESPONSE: &str = include_str!("../fixtures/gemini/generate.response.json");
const STREAM: &str = include_str!("../fixtures/gemini/generate.stream.sse");
const TOOLS: &str = include_str!("../fixtures/gemini/tools.response.json");
const EMBEDDINGS: &str = include_str!("../fixtures/gemini/embed.batch.response.json");
const TOO_LONG: &str = include_str!("../fixtures/gemini/error.400.invalid_argument.json");
const EXHAUSTED: &str = include_str!("../fixtures/gemini/error.429.resource_exhausted.json");

/// A provider `gem` of kind gemini at `up`, model `gem` on it, and `extra`.
fn config(up: &MockHandle, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[routing]
backoff_base_ms = 5
backoff_max_ms = 20

[[providers]]
name = "gem"
kind = "gemini"
base_url = "http://{}/v1beta"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "gem"
deployments = [{{ provider = "gem", model = "gemini-2.5-flash" }}]
{extra}

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

/// The SSE fixture (CRLF-framed, as Gemini sends it) split into the frames the upstream sends.
fn frames(sse: &str) -> Vec<String> {
    sse.split("\r\n\r\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!("{f}\r\n\r\n"))
        .collect()
}

fn request(stream: bool) -> Value {
    json!({"model": "gem", "stream": stream, "max_completion_tokens": 64, "temperature": 0.2,
        "messages": [
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
    assert_eq!(v["model"], "gem");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Red, yellow, and blue."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 40);

    let got = up.last();
    assert_eq!(got.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(got.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert!(
        got.header("authorization").is_none(),
        "Gemini takes the key in x-goog-api-key only"
    );
    let body = got.json();
    assert!(body.get("model").is_none(), "the model is in the path");
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You are a terse assistant."}]})
    );
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [{"text": "Name the three primary colors."}]}])
    );
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 64})
    );
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_tokens_total{kind="prompt",model="gem",project="alpha"} 12"#));
}

#[tokio::test]
async fn a_stream_is_translated_and_ends_with_done() {
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
    // Gemini sends no end marker; the gateway adds OpenAI's after the finishing chunk.
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
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
    assert_eq!(usage["usage"]["total_tokens"], 41);

    let got = up.last();
    assert_eq!(
        got.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(got.query, "alt=sse");
    assert!(got.json().get("stream").is_none());
}

#[tokio::test]
async fn tool_calls_come_back_with_minted_ids() {
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
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "call_0");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let sent = up.last().json();
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
}

#[tokio::test]
async fn embeddings_go_through_batch_embed_contents() {
    let up = MockUpstream::openai().reply(200, EMBEDDINGS).start().await;
    let gw = spawn_gateway_env(&config(&up, ""), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        &json!({"model": "gem", "input": ["The quick brown fox", "jumped over the lazy dog"],
            "dimensions": 4}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"][0], 0.0123);
    let got = up.last();
    assert_eq!(
        got.path,
        "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    );
    let sent = got.json();
    assert_eq!(sent["requests"][0]["model"], "models/gemini-2.5-flash");
    assert_eq!(sent["requests"][1]["outputDimensionality"], 4);
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
async fn an_exhausted_quota_falls_back_to_an_openai_deployment() {
    let gem = MockUpstream::openai().reply(429, EXHAUSTED).start().await;
    let openai = MockUpstream::openai().start().await;
    let extra = format!(
        "fallbacks = [\"gpt\"]\n\n[[providers]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"UPSTREAM_KEY\"\n\n[[models]]\nname = \"gpt\"\ndeployments = [{{ provider = \"oai\", model = \"gpt-4o-mini\" }}]",
        openai.base_url()
    );
    let gw = spawn_gateway_env(&config(&gem, &extra), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("oai/gpt-4o-mini"));
    assert_eq!(gem.last().json()["generationConfig"]["maxOutputTokens"], 64);
    assert_eq!(openai.last().json()["messages"][0]["role"], "system");
    assert!(metrics(&gw)
        .await
        .contains(r#"class="rate_limited",deployment="gem/gemini-2.5-flash""#));
}
