//! The Responses endpoint end to end: Responses-format requests in, an OpenAI-format and an
//! Anthropic-format mock upstream behind it, `response` objects and the Responses event
//! sequence out; what the upstream received is checked (canonical or Anthropic wire format).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const ANTHROPIC_TOOLS: &str = include_str!("../fixtures/anthropic/tools.response.json");
const ANTHROPIC_TOOLS_STREAM: &str = include_str!("../fixtures/anthropic/tools.stream.sse");

/// Event names and payloads of an SSE body with `event:` lines.
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

fn anthropic_config(up: &MockHandle) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

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
    )
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                          "required": ["location"]}})
}

#[tokio::test]
async fn a_response_is_served_by_an_openai_backend() {
    let up = MockUpstream::openai()
        .reply(200, &completion_json("Hello!"))
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "instructions": "Be terse.", "input": "Say hello",
                      "max_output_tokens": 64, "temperature": 0.3, "store": true});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-gateway-provider"), Some("up"));
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["id"], "resp_up1");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["store"], false);
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello!");
    assert_eq!(v["usage"]["input_tokens"], 11);
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 2);

    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(
        got.json(),
        json!({"model": "gpt-4o-mini-2024-07-18", "max_tokens": 64, "temperature": 0.3,
               "messages": [{"role": "system", "content": "Be terse."},
                            {"role": "user", "content": "Say hello"}]})
    );
}

#[tokio::test]
async fn a_stream_follows_the_responses_event_sequence() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["Hel", "lo"], true), Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "input": "Say hello", "stream": true});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let deltas: Vec<&str> = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(deltas, ["Hel", "lo"]);
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["input_tokens"], 5);
    assert_eq!(done["usage"]["output_tokens"], 3);
    // The gateway asked for usage so the completed event can carry it.
    let sent = up.last().json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_function_round_trip_through_an_anthropic_backend() {
    let up = MockUpstream::openai()
        .reply(200, ANTHROPIC_TOOLS)
        .start()
        .await;
    let gw = spawn_gateway_env(&anthropic_config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let first = json!({"model": "claude", "input": "Weather in Paris?", "tools": [weather_tool()],
                       "tool_choice": "required", "max_output_tokens": 200});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &first).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .cloned()
        .unwrap();
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["call_id"], "toolu_01A09q90qw90lq917835lq9X");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "Paris, France");
    let sent = up.last();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(UPSTREAM_KEY));
    let sent = sent.json();
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tool_choice"]["type"], "any");

    // The client sends the call and its output back; the backend sees tool_use/tool_result.
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    input.extend(v["output"].as_array().unwrap().iter().cloned());
    input.push(
        json!({"type": "function_call_output", "call_id": call["call_id"],
                      "output": "{\"temp_c\": 21}"}),
    );
    let second = json!({"model": "claude", "input": input, "tools": [weather_tool()],
                        "max_output_tokens": 200});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &second).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last().json();
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    let tool_use = msgs[1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .cloned()
        .unwrap();
    assert_eq!(tool_use["id"], "toolu_01A09q90qw90lq917835lq9X");
    assert_eq!(tool_use["input"]["location"], "Paris, France");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(
        msgs[2]["content"][0]["tool_use_id"],
        "toolu_01A09q90qw90lq917835lq9X"
    );
}

#[tokio::test]
async fn an_anthropic_tool_stream_becomes_function_call_events() {
    let frames: Vec<String> = ANTHROPIC_TOOLS_STREAM
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!("{f}\n\n"))
        .collect();
    let up = MockUpstream::openai()
        .stream(frames, Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&anthropic_config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let body = json!({"model": "claude", "input": "Weather in Paris?", "stream": true,
                      "tools": [weather_tool()]});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = events(&r.text());
    let args: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args["location"], "Paris, France");
    let (name, done) = ev.last().unwrap();
    assert_eq!(name, "response.completed");
    let output = done["response"]["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["name"], "get_weather");
    assert!(done["response"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn images_and_json_schema_reach_the_backend() {
    let up = MockUpstream::openai()
        .reply(200, &completion_json("{\"color\":\"red\"}"))
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini",
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What color?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}]}],
        "text": {"format": {"type": "json_schema", "name": "color", "strict": true,
                            "schema": {"type": "object", "properties": {"color": {"type": "string"}}}}}});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last().json();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}})
    );
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "color");
}

#[tokio::test]
async fn state_is_refused_with_a_clear_400_and_nothing_is_sent() {
    let up = MockUpstream::openai().start().await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "input": "more", "previous_response_id": "resp_123"});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    let v = r.json();
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keeps no conversation state"));
    let body = json!({"model": "gpt-4o-mini", "input": "x", "tools": [{"type": "web_search"}]});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn auth_and_upstream_errors_keep_the_openai_shape() {
    let up = MockUpstream::openai()
        .reply(
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        )
        .start()
        .await;
    let gw = gateway_for(&up, "[routing]\nmax_attempts = 1\n").await;
    let body = json!({"model": "gpt-4o-mini", "input": "hi"});
    let r = post_json(&gw.url("/v1/responses"), None, &body).await;
    assert_eq!(r.status, 401);
    r.error_code();
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
}

#[tokio::test]
async fn a_broken_stream_ends_with_error_and_response_failed() {
    let mut frames = stream_frames(&["Hel"], false);
    frames.truncate(2);
    let up = MockUpstream::openai()
        .stream(frames, Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, "").await;
    let body = json!({"model": "gpt-4o-mini", "input": "hi", "stream": true});
    let r = post_json(&gw.url("/v1/responses"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"error"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.failed"));
    assert!(!names.contains(&"response.completed"));
}
