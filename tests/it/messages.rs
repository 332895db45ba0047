//! The Anthropic Messages endpoint end to end: Anthropic-format requests in (as the Anthropic
//! SDK sends them, `x-api-key` included), any backend behind it (an OpenAI-format and a
//! Gemini-format mock upstream here), and Anthropic-format answers, streams and errors out.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::*;

const GEMINI_RESPONSE: &str = include_str!("../fixtures/gemini/generate.response.json");
const GEMINI_STREAM: &str = include_str!("../fixtures/gemini/generate.stream.sse");

/// Posts to `path` the way the Anthropic SDK does (`x-api-key`, `anthropic-version`).
async fn post_anthropic(gw: &Gateway, path: &str, key: Option<&str>, body: &Value) -> Reply {
    let mut b = Request::post(gw.url(path))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    if let Some(k) = key {
        b = b.header("x-api-key", k);
    }
    send(
        b.body(Full::new(Bytes::from(body.to_string())))
            .expect("request"),
    )
    .await
}

fn hello(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 256, "stream": stream,
           "system": "You are terse.",
           "messages": [{"role": "user", "content": "Say hello"}]})
}

/// Event names and payloads of an Anthropic SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

#[tokio::test]
async fn a_message_is_served_by_an_openai_backend() {
    let up = MockUpstream::openai()
        .reply(200, &completion_json("Hello!"))
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &hello(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"id": "msg_up1", "type": "message", "role": "assistant",
               "model": "gpt-4o-mini-2024-07-18",
               "content": [{"type": "text", "text": "Hello!"}],
               "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": 9, "output_tokens": 7,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2}})
    );
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(
        got.header("x-api-key"),
        None,
        "the client's key is never forwarded"
    );
    assert_eq!(
        got.json(),
        json!({"model": "gpt-4o-mini-2024-07-18", "max_tokens": 256,
               "messages": [{"role": "system", "content": "You are terse."},
                            {"role": "user", "content": "Say hello"}]})
    );
}

#[tokio::test]
async fn a_streamed_message_follows_anthropics_event_sequence() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["Hel", "lo"], true), Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &hello(true)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[0].1["message"]["role"], "assistant");
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "text_delta", "text": "Hel"})
    );
    assert_eq!(ev[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(ev[6].1["usage"]["output_tokens"], 3);
    // Usage is asked of the upstream so the final `message_delta` can carry it.
    assert_eq!(
        up.last().json()["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn tools_round_trip_through_an_openai_backend() {
    let answer = json!({"id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "call_9", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}});
    let up = MockUpstream::openai()
        .reply(200, &answer.to_string())
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100,
        "tools": [{"name": "get_weather", "description": "Weather now",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lyon"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                                         {"type": "text", "text": "And Paris?"}]}]});
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Paris"}}])
    );
    let sent = up.last().json();
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(sent["tools"][0]["function"]["parameters"]["type"], "object");
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Lyon\"}"
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "rain"})
    );
    assert_eq!(sent["messages"][3]["content"][0]["text"], "And Paris?");
}

fn gemini_config(up: &MockHandle) -> String {
    format!(
        r#"
[[providers]]
name = "gem"
kind = "gemini"
base_url = "http://{}/v1beta"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "claude-on-gemini"
deployments = [{{ provider = "gem", model = "gemini-2.5-flash" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

#[tokio::test]
async fn a_gemini_backend_serves_anthropic_clients() {
    let up = MockUpstream::openai()
        .reply(200, GEMINI_RESPONSE)
        .start()
        .await;
    let gw = spawn_gateway_env(&gemini_config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = hello(false);
    body["model"] = json!("claude-on-gemini");
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Red, yellow, and blue.");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert_eq!(v["usage"]["output_tokens"], 40);
    let got = up.last();
    assert_eq!(got.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    let sent = got.json();
    assert_eq!(
        sent["systemInstruction"]["parts"][0]["text"],
        "You are terse."
    );
    assert_eq!(sent["contents"][0]["parts"][0]["text"], "Say hello");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 256);
}

#[tokio::test]
async fn a_gemini_stream_becomes_anthropic_events() {
    let frames: Vec<String> = GEMINI_STREAM
        .split("\r\n\r\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!("{f}\r\n\r\n"))
        .collect();
    let up = MockUpstream::openai()
        .stream(frames, Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&gemini_config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let mut body = hello(true);
    body["model"] = json!("claude-on-gemini");
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = events(&r.text());
    assert_eq!(ev.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(ev.last().map(|e| e.0.as_str()), Some("message_stop"));
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert!(!text.is_empty());
    let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
    assert!(delta.1["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0);
    assert!(up.last().path.ends_with(":streamGenerateContent"));
}

#[tokio::test]
async fn errors_take_anthropics_shape() {
    let up = MockUpstream::openai()
        .reply(
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        )
        .start()
        .await;
    let gw = gateway_for(&up, "").await;

    let r = post_anthropic(&gw, "/v1/messages", Some("sk-wrong"), &hello(false)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");

    let mut no_max = hello(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &no_max).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));

    let mut unknown = hello(false);
    unknown["model"] = json!("no-such-model");
    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &unknown).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");

    let r = post_anthropic(&gw, "/v1/messages", Some(KEY), &hello(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
    );
    // Nothing was sent upstream for the requests refused at the gateway.
    assert!(!up.requests().is_empty());
    assert!(up
        .requests()
        .iter()
        .all(|r| r.json()["messages"][1]["content"] == "Say hello"));
}

#[tokio::test]
async fn count_tokens_estimates_for_any_backend() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x".repeat(400)}]});
    let r = post_anthropic(&gw, "/v1/messages/count_tokens", Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let n = r.json()["input_tokens"].as_u64().unwrap();
    assert!((100..=120).contains(&n), "{n}");
    let mut unknown = body.clone();
    unknown["model"] = json!("nope");
    let r = post_anthropic(&gw, "/v1/messages/count_tokens", Some(KEY), &unknown).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert!(
        up.requests().is_empty(),
        "counting never calls the upstream"
    );
}
