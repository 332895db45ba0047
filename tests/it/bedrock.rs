//! The Bedrock provider end to end: OpenAI requests in, Converse / ConverseStream / InvokeModel
//! out, signed with SigV4 (or sent with a Bedrock API key), and the answers (plain, binary
//! event streams, exceptions, errors, embeddings) translated back; a mock upstream speaks
//! Bedrock's wire format.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use gateway::providers::bedrock::sigv4;

use crate::support::*;

const RESPONSE: &str = include_str!("../fixtures/bedrock/converse.response.json");
const TOOLS: &str = include_str!("../fixtures/bedrock/tools.response.json");
const STREAM: &[u8] = include_bytes!("../fixtures/bedrock/converse-stream.bin");
const TOOL_STREAM: &[u8] = include_bytes!("../fixtures/bedrock/converse-stream.tools.bin");
const ERROR_STREAM: &[u8] = include_bytes!("../fixtures/bedrock/converse-stream.error.bin");
const THROTTLED: &str = include_str!("../fixtures/bedrock/error.429.throttling.json");
const TOO_LONG: &str = include_str!("../fixtures/bedrock/error.400.validation.json");
const EVENTSTREAM: &str = "application/vnd.amazon.eventstream";

const AKID: &str = "AKIDTESTBEDROCK";
const SECRET: &str = "bedrock/SECRET+access+key/0123456789abcdef";
const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const MODEL_PATH: &str = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0";

/// A provider `br` of kind bedrock at `up` (credentials from the standard AWS variables),
/// models `claude` and the embedding models on it, and `extra`.
fn config(up: &MockHandle, provider_extra: &str, extra: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[routing]
backoff_base_ms = 5
backoff_max_ms = 20

[[providers]]
name = "br"
kind = "bedrock"
region = "eu-west-1"
base_url = "http://{}"
{provider_extra}

[[models]]
name = "claude"
deployments = [{{ provider = "br", model = "{MODEL}" }}]
{extra}

[[models]]
name = "titan"
deployments = [{{ provider = "br", model = "amazon.titan-embed-text-v2:0" }}]

[[models]]
name = "cohere-embed"
deployments = [{{ provider = "br", model = "cohere.embed-english-v3" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", AKID),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("UPSTREAM_KEY", UPSTREAM_KEY),
];

async fn gateway(up: &MockHandle, provider_extra: &str, extra: &str) -> Gateway {
    spawn_gateway_env(&config(up, provider_extra, extra), ENV).await
}

fn request(stream: bool) -> Value {
    json!({"model": "claude", "stream": stream, "max_tokens": 256, "temperature": 0.2,
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

/// Recomputes the signature of what the upstream received and compares it with the one sent,
/// and checks that no secret went over the wire.
fn assert_signed(got: &Received) {
    let auth = got.header("authorization").expect("authorization");
    let date = got.header("x-amz-date").expect("x-amz-date");
    let scope = format!(
        "Credential={AKID}/{}/eu-west-1/bedrock/aws4_request, ",
        &date[..8]
    );
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 {scope}")),
        "{auth}"
    );
    let payload = got.header("x-amz-content-sha256").expect("payload hash");
    let hash: String = Sha256::digest(&got.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(payload, hash);
    let host = got.header("host").expect("host");
    let mut signed = vec![
        ("host", host),
        ("x-amz-content-sha256", payload),
        ("x-amz-date", date),
    ];
    if let Some(t) = got.header("x-amz-security-token") {
        signed.push(("x-amz-security-token", t));
    }
    let want = sigv4::authorization(
        &sigv4::Signable {
            method: "POST",
            path: &got.path,
            query: &got.query,
            headers: &signed,
            payload_sha256: payload,
        },
        &sigv4::Credentials {
            access_key_id: AKID,
            secret_access_key: SECRET,
        },
        &sigv4::Scope {
            region: "eu-west-1",
            service: "bedrock",
            amz_date: date,
        },
    );
    assert_eq!(auth, want);
    for (_, v) in &got.headers {
        assert!(!v.to_str().unwrap_or_default().contains(SECRET));
    }
}

#[tokio::test]
async fn a_plain_completion_is_signed_and_translated_both_ways() {
    let up = MockUpstream::openai().reply(200, RESPONSE).start().await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Red, yellow, and blue."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 21);
    assert_eq!(v["usage"]["completion_tokens"], 10);

    let got = up.last();
    assert_eq!(got.path, format!("{MODEL_PATH}/converse"));
    assert_eq!(
        got.json(),
        json!({"messages": [{"role": "user", "content": [{"text": "Name the three primary colors."}]}],
            "system": [{"text": "You are a terse assistant."}],
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.2}})
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_signed(&got);
    // The client's own key never goes upstream.
    assert!(!format!("{:?}", got.headers).contains(KEY));
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_tokens_total{kind="prompt",model="claude",project="alpha"} 21"#));
}

#[tokio::test]
async fn temporary_credentials_send_and_sign_the_session_token() {
    let up = MockUpstream::openai().reply(200, RESPONSE).start().await;
    let provider = "access_key_id_env = \"BR_AKID\"\nsecret_access_key_env = \"BR_SECRET\"\nsession_token_env = \"BR_TOKEN\"";
    let env = [
        ("BR_AKID", AKID),
        ("BR_SECRET", SECRET),
        ("BR_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"),
    ];
    let gw = spawn_gateway_env(&config(&up, provider, ""), &env).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(
        got.header("x-amz-security-token"),
        Some("FwoGZXIvYXdzEXAMPLETOKEN")
    );
    assert!(got
        .header("authorization")
        .unwrap()
        .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    assert_signed(&got);
}

#[tokio::test]
async fn a_bedrock_api_key_goes_as_a_bearer_token_unsigned() {
    let up = MockUpstream::openai().reply(200, RESPONSE).start().await;
    let gw = gateway(&up, "api_key_env = \"UPSTREAM_KEY\"", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    let bearer = format!("Bearer {UPSTREAM_KEY}");
    assert_eq!(got.header("authorization"), Some(bearer.as_str()));
    assert!(got.header("x-amz-date").is_none());
}

#[tokio::test]
async fn an_event_stream_cut_into_small_pieces_is_relayed_as_sse() {
    let up = MockUpstream::openai()
        .raw(EVENTSTREAM, STREAM, 7)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let mut body = request(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert_eq!(sse_pieces(&text).concat(), "Red, yellow, and blue.");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    let chunks = chunks(&text);
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["total_tokens"].as_u64()
        ),
        (Some(15), Some(25))
    );

    let got = up.last();
    assert_eq!(got.path, format!("{MODEL_PATH}/converse-stream"));
    assert_eq!(got.header("accept"), Some(EVENTSTREAM));
    assert!(got.json().get("stream").is_none());
    assert_signed(&got);
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_tokens_total{kind="completion",model="claude",project="alpha"} 10"#));
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_openai_deltas() {
    let up = MockUpstream::openai()
        .raw(EVENTSTREAM, TOOL_STREAM, 64)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let body = json!({"model": "claude", "stream": true,
        "messages": [{"role": "user", "content": "What's the weather in Paris right now?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let chunks = chunks(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    let sent = up.last().json();
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn an_exception_frame_mid_stream_ends_it_with_an_error_event() {
    let up = MockUpstream::openai()
        .raw(EVENTSTREAM, ERROR_STREAM, 50)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(true)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(sse_pieces(&text), ["Red"]);
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "rate_limit_exceeded");
    assert_eq!(last["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_corrupt_frame_ends_the_stream_with_an_error() {
    let mut corrupt = STREAM.to_vec();
    // Inside the second message's payload: the first message still goes out.
    corrupt[200] ^= 0x20;
    let up = MockUpstream::openai()
        .raw(EVENTSTREAM, &corrupt, 1024)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(true)).await;
    let text = r.text();
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_bad_response", "{text}");
    assert!(last["error"]["message"].as_str().unwrap().contains("CRC"));
}

#[tokio::test]
async fn throttling_is_retried_like_other_providers() {
    let throttled = [(
        "x-amzn-ErrorType",
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    )];
    let up = MockUpstream::openai()
        .reply(200, RESPONSE)
        .fail_n_with(1, 429, THROTTLED, &throttled)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-attempts"), Some("2"));
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    // Each attempt is signed afresh.
    assert_signed(&reqs[0]);
    assert_signed(&reqs[1]);
    assert!(metrics(&gw).await.contains(
        r#"class="rate_limited",deployment="br/anthropic.claude-3-5-haiku-20241022-v1:0""#
    ));
}

#[tokio::test]
async fn persistent_throttling_falls_back_or_comes_back_as_429() {
    let throttled = [(
        "x-amzn-ErrorType",
        "ThrottlingException:http://internal.amazon.com/",
    )];
    let br = MockUpstream::openai()
        .fail_n_with(100, 429, THROTTLED, &throttled)
        .start()
        .await;
    // Alone: the client gets Bedrock's 429 in the OpenAI shape.
    let gw = gateway(&br, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.header("x-gateway-error-class"), Some("rate_limited"));
    // With a fallback group: served there.
    let openai = MockUpstream::openai().start().await;
    let extra = format!(
        "fallbacks = [\"gpt\"]\n\n[[providers]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"UPSTREAM_KEY\"\n\n[[models]]\nname = \"gpt\"\ndeployments = [{{ provider = \"oai\", model = \"gpt-4o-mini\" }}]",
        openai.base_url()
    );
    let gw = gateway(&br, "", &extra).await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("oai/gpt-4o-mini"));
}

#[tokio::test]
async fn a_prompt_too_long_is_a_context_length_error() {
    let header = [(
        "x-amzn-ErrorType",
        "ValidationException:http://internal.amazon.com/",
    )];
    let up = MockUpstream::openai()
        .reply_with_headers(400, TOO_LONG, &header)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "context_length_exceeded");
    assert_eq!(r.header("x-gateway-error-class"), Some("context_length"));
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn tool_calls_come_back_and_image_urls_are_refused_before_sending() {
    let up = MockUpstream::openai().reply(200, TOOLS).start().await;
    let gw = gateway(&up, "", "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &request(false)).await;
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let image = json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &image).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_parameter");
    assert_eq!(
        r.json()["error"]["param"],
        "messages[0].content[1].image_url.url"
    );
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn titan_embeddings_go_through_invoke_model() {
    let up = MockUpstream::openai()
        .reply(200, r#"{"embedding":[0.5,-0.25],"inputTextTokenCount":4}"#)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let url = gw.url("/v1/embeddings");
    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "titan", "input": "hello", "dimensions": 256}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"][0]["embedding"], json!([0.5, -0.25]));
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    let got = up.last();
    assert_eq!(got.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(got.json(), json!({"inputText": "hello", "dimensions": 256}));
    assert_signed(&got);
    // Titan embeds one input per call: a batch is refused, not sent.
    let r = post_json(
        &url,
        Some(KEY),
        &json!({"model": "titan", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "input");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn cohere_embeddings_on_bedrock_take_batches() {
    let up = MockUpstream::openai()
        .reply(200, r#"{"id":"e1","embeddings":[[1.0],[2.0]],"texts":["a","b"],"response_type":"embeddings_floats"}"#)
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let body = json!({"model": "cohere-embed", "input": ["a", "b"]});
    let r = post_json(&gw.url("/v1/embeddings"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][1]["embedding"], json!([2.0]));
    let got = up.last();
    assert_eq!(got.path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        got.json(),
        json!({"texts": ["a", "b"], "input_type": "search_document"})
    );
}

#[test]
fn config_problems_are_reported_by_path() {
    let toml = |provider: &str| {
        format!("[[providers]]\nname = \"br\"\nkind = \"bedrock\"\n{provider}\n\n[[providers]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"K\"\nregion = \"us-east-1\"\n")
    };
    let env = [("K", "k")];
    let errs = runtime_from(&toml(""), &env).unwrap_err().join("\n");
    assert!(
        errs.contains("providers[0].region: a bedrock provider needs its AWS region"),
        "{errs}"
    );
    assert!(
        errs.contains(
            "providers[0].access_key_id_env: environment variable \"AWS_ACCESS_KEY_ID\" is not set"
        ),
        "{errs}"
    );
    assert!(
        errs.contains("providers[1].region: only for kind = \"bedrock\""),
        "{errs}"
    );
    let errs = runtime_from(
        &toml("region = \"us-east-1\"\napi_key_env = \"K\"\nsecret_access_key_env = \"S\""),
        &env,
    )
    .unwrap_err()
    .join("\n");
    assert!(
        errs.contains("providers[0]: provider \"br\" has a Bedrock API key"),
        "{errs}"
    );
    assert!(!errs.contains("providers[0].region"), "{errs}");
    // With the standard variables set, the default endpoint follows the region.
    let rt = runtime_from(
        "[[providers]]\nname = \"br\"\nkind = \"bedrock\"\nregion = \"ap-northeast-1\"\n",
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    )
    .unwrap();
    assert_eq!(
        rt.providers[0].base_url,
        "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
    );
    assert!(!format!("{:?}", rt.providers[0]).contains(SECRET));
}
