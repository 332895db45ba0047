//! Vendor presets: `preset = "groq"` (etc.) supplies the base URL, the key variable and the
//! vendor's parameter quirks; what the upstream receives is adjusted, what the vendor cannot
//! serve is refused with a 400 before anything is sent.

use serde_json::json;

use crate::support::*;

/// One provider `v` with `preset` at the mock upstream, plus `extra` provider lines.
fn config(up: &MockHandle, preset: &str, extra: &str) -> String {
    format!(
        r#"
[[providers]]
name = "v"
kind = "openai"
preset = "{preset}"
base_url = "http://{}/v1"
{extra}

[[models]]
name = "chat"
deployments = [{{ provider = "v", model = "vendor-model" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

#[tokio::test]
async fn a_preset_supplies_the_key_variable_and_adjusts_parameters() {
    let up = MockUpstream::openai().start().await;
    let gw = spawn_gateway_env(
        &config(&up, "mistral", ""),
        &[("MISTRAL_API_KEY", UPSTREAM_KEY)],
    )
    .await;
    let body = json!({"model": "chat", "seed": 42, "max_completion_tokens": 50, "user": "u-1",
        "logit_bias": {"50256": -100}, "temperature": 0.3,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(
        got.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(
        got.json(),
        json!({"model": "vendor-model", "random_seed": 42, "max_tokens": 50, "temperature": 0.3,
               "messages": [{"role": "user", "content": "hi"}]})
    );
}

#[tokio::test]
async fn streams_to_a_vendor_without_stream_options_leave_them_out() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["a", "b"], true), std::time::Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(
        &config(&up, "mistral", ""),
        &[("MISTRAL_API_KEY", UPSTREAM_KEY)],
    )
    .await;
    let body = json!({"model": "chat", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(sse_pieces(&r.text()), ["a", "b"]);
    assert!(up.last().json().get("stream_options").is_none());
}

#[tokio::test]
async fn what_a_vendor_cannot_serve_is_refused_before_sending() {
    let up = MockUpstream::openai().start().await;
    let gw = spawn_gateway(&config(&up, "ollama", "")).await;
    let image = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &image).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "unsupported_parameter");
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &json!({"model": "chat", "n": 3, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(up.requests().is_empty(), "nothing was sent upstream");

    // Keyless local server: no Authorization header, and tool_choice (unsupported) dropped.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &json!({"model": "chat", "tool_choice": "auto", "tools": [{"type": "function", "function": {"name": "f"}}],
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(got.header("authorization"), None);
    assert!(got.json().get("tool_choice").is_none());
    assert!(got.json().get("tools").is_some());
}

#[tokio::test]
async fn declared_parameter_quirks_apply_to_any_vendor() {
    let up = MockUpstream::openai().start().await;
    let gw = spawn_gateway_env(
        &config(
            &up,
            "deepseek",
            "drop_params = [\"service_tier\"]\nrename_params = { max_completion_tokens = \"max_tokens\" }",
        ),
        &[("DEEPSEEK_API_KEY", UPSTREAM_KEY)],
    )
    .await;
    let body = json!({"model": "chat", "service_tier": "flex", "max_completion_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let sent = up.last().json();
    assert!(sent.get("service_tier").is_none());
    assert_eq!(sent["max_tokens"], 5);
}

#[test]
fn presets_are_validated() {
    let bad = r#"
[[providers]]
name = "v"
kind = "openai"
preset = "nonesuch"

[[providers]]
name = "w"
kind = "anthropic"
preset = "groq"
api_key_env = "K"

[[providers]]
name = "g"
kind = "openai"
preset = "groq"
"#;
    let errs = runtime_from(bad, &[("K", "x")]).err().unwrap_or_default();
    let all = errs.join("\n");
    assert!(
        all.contains("providers[0].preset: unknown preset \"nonesuch\""),
        "{all}"
    );
    assert!(all.contains("providers[1].preset"), "{all}");
    assert!(all.contains("GROQ_API_KEY"), "{all}");
}

/// A deployment whose vendor cannot take the request is passed over for one that can; the
/// refusal reaches the client only when no candidate can take it.
#[tokio::test]
async fn a_vendor_that_cannot_take_the_request_is_passed_over() {
    let local = MockUpstream::openai().start().await;
    let cloud = MockUpstream::openai().start().await;
    let toml = format!(
        r#"
[[providers]]
name = "local"
kind = "openai"
preset = "ollama"
base_url = "http://{}/v1"

[[providers]]
name = "cloud"
kind = "openai"
base_url = "http://{}/v1"

[[models]]
name = "chat"
strategy = "priority"
deployments = [
  {{ provider = "local", model = "llava" }},
  {{ provider = "cloud", model = "gpt-4o" }},
]

[[models]]
name = "local-only"
deployments = [{{ provider = "local", model = "llava" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        local.addr,
        cloud.addr,
        hashed(KEY)
    );
    let gw = spawn_gateway(&toml).await;
    let image = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    };
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &image("chat")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-provider"), Some("cloud"));
    assert!(local.requests().is_empty());
    assert_eq!(cloud.last().json()["model"], "gpt-4o");

    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &image("local-only"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    assert!(local.requests().is_empty());
}
