//! Translation cost per adapter, so it never shows up in the overhead budget: encoding a 1 KB
//! chat request into each provider's format, decoding a provider's answer, and translating a
//! 100-chunk stream; plus the Anthropic Messages ingress (request in, 100 chunks out). The
//! baseline, measured in the same run, is a plain serde_json parse + serialize of the same
//! 1 KB request: the least any JSON-handling proxy does per request.
//! Run: `cargo bench --bench translate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};

use gateway::api::anthropic::{self as ingress, EventStream};
use gateway::api::openai::ChatRequest;
use gateway::config::{self, Runtime};
use gateway::providers;

const CHUNKS: usize = 100;

/// One provider of each translating kind (and OpenAI), with placeholder keys.
fn runtime() -> Runtime {
    let toml = r#"
[[providers]]
name = "openai"
kind = "openai"
api_key_env = "K"
[[providers]]
name = "anthropic"
kind = "anthropic"
api_key_env = "K"
[[providers]]
name = "gemini"
kind = "gemini"
api_key_env = "K"
[[providers]]
name = "cohere"
kind = "cohere"
api_key_env = "K"
[[providers]]
name = "bedrock"
kind = "bedrock"
region = "us-east-1"
api_key_env = "K"
[[providers]]
name = "azure"
kind = "azure"
base_url = "https://example.openai.azure.com/openai"
api_key_env = "K"
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = config::load(&path).unwrap();
    Runtime::build(&cfg, &|_| Some("placeholder".into())).unwrap()
}

/// About 1 KB of JSON: a system prompt, two turns, sampling settings and one tool.
fn request() -> Value {
    json!({
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a careful assistant for a logistics company. Answer briefly and cite the order number when there is one."},
            {"role": "user", "content": "Order 88231 left the Rotterdam warehouse on Monday but the tracking page still shows it as pending. The customer needs it in Lyon by Friday for a trade fair. What are the options, and which carrier should we ask about an expedited transfer? Please keep the answer under five bullet points."},
            {"role": "assistant", "content": "Let me look up the shipment first."},
            {"role": "user", "content": "Yes, check the shipment and the carrier's cut-off times for Friday delivery in Lyon."}
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "tools": [{"type": "function", "function": {"name": "get_shipment", "description": "Look up a shipment by order number",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}}}]
    })
}

fn fixture(path: &str) -> Bytes {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    Bytes::from(std::fs::read(dir.join(path)).unwrap())
}

/// A 100-chunk text stream in each provider's own events, as (event name, data) pairs.
fn transcript(kind: &str) -> Vec<(Option<&'static str>, String)> {
    let word = "token ";
    let mut ev: Vec<(Option<&'static str>, String)> = Vec::new();
    match kind {
        "anthropic" => {
            ev.push((Some("message_start"), json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":15,"output_tokens":1}}}).to_string()));
            ev.push((Some("content_block_start"), json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}).to_string()));
            for _ in 0..CHUNKS {
                ev.push((Some("content_block_delta"), json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":word}}).to_string()));
            }
            ev.push((
                Some("content_block_stop"),
                json!({"type":"content_block_stop","index":0}).to_string(),
            ));
            ev.push((Some("message_delta"), json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":100}}).to_string()));
            ev.push((
                Some("message_stop"),
                json!({"type":"message_stop"}).to_string(),
            ));
        }
        "gemini" => {
            for i in 0..CHUNKS {
                let mut c = json!({"candidates":[{"content":{"parts":[{"text":word}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash","responseId":"r1"});
                if i == CHUNKS - 1 {
                    c["candidates"][0]["finishReason"] = json!("STOP");
                    c["usageMetadata"] = json!({"promptTokenCount":8,"candidatesTokenCount":100,"totalTokenCount":108});
                }
                ev.push((None, c.to_string()));
            }
        }
        "cohere" => {
            ev.push((
                Some("message-start"),
                json!({"type":"message-start","id":"c1","delta":{"message":{"role":"assistant"}}})
                    .to_string(),
            ));
            ev.push((Some("content-start"), json!({"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}).to_string()));
            for _ in 0..CHUNKS {
                ev.push((Some("content-delta"), json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"text":word}}}}).to_string()));
            }
            ev.push((
                Some("content-end"),
                json!({"type":"content-end","index":0}).to_string(),
            ));
            ev.push((Some("message-end"), json!({"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":8,"output_tokens":100},"tokens":{"input_tokens":8,"output_tokens":100}}}}).to_string()));
        }
        "bedrock" => {
            ev.push((
                Some("messageStart"),
                json!({"role":"assistant"}).to_string(),
            ));
            for _ in 0..CHUNKS {
                ev.push((
                    Some("contentBlockDelta"),
                    json!({"contentBlockIndex":0,"delta":{"text":word}}).to_string(),
                ));
            }
            ev.push((
                Some("contentBlockStop"),
                json!({"contentBlockIndex":0}).to_string(),
            ));
            ev.push((
                Some("messageStop"),
                json!({"stopReason":"end_turn"}).to_string(),
            ));
            ev.push((Some("metadata"), json!({"usage":{"inputTokens":8,"outputTokens":100,"totalTokens":108},"metrics":{"latencyMs":100}}).to_string()));
        }
        _ => unreachable!(),
    }
    ev
}

/// 100 canonical chunks (plus the usage chunk and `[DONE]`), for the Anthropic ingress.
fn openai_chunks() -> Vec<String> {
    let mut out = vec![json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}).to_string()];
    for _ in 0..CHUNKS {
        out.push(json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"token "}}]}).to_string());
    }
    out.push(json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}).to_string());
    out.push(json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":100,"total_tokens":108}}).to_string());
    out.push("[DONE]".into());
    out
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let raw = serde_json::to_vec(&request()).unwrap();
    assert!((900..1300).contains(&raw.len()), "{} bytes", raw.len());

    let mut g = c.benchmark_group("encode_1kb");
    g.bench_function("baseline_json_roundtrip", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&raw)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap())
        })
    });
    for p in &rt.providers {
        let adapter = providers::adapter(p.kind);
        g.bench_function(p.name.as_str(), |b| {
            b.iter_batched(
                || serde_json::from_slice::<ChatRequest>(&raw).unwrap(),
                |mut req| black_box(adapter.chat(&mut req, "upstream-model", p).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode_response");
    for (name, path) in [
        ("anthropic", "anthropic/messages.response.json"),
        ("gemini", "gemini/generate.response.json"),
        ("cohere", "cohere/chat.response.json"),
        ("bedrock", "bedrock/converse.response.json"),
    ] {
        let p = rt.providers.iter().find(|p| p.name == name).unwrap();
        let adapter = providers::adapter(p.kind);
        let body = fixture(path);
        g.bench_function(name, |b| {
            b.iter(|| black_box(adapter.decode_body(body.clone(), "m").unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("stream_100_chunks");
    for name in ["anthropic", "gemini", "cohere", "bedrock"] {
        let p = rt.providers.iter().find(|p| p.name == name).unwrap();
        let adapter = providers::adapter(p.kind);
        let events = transcript(name);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut t = adapter.stream("m", true).unwrap();
                let mut n = 0;
                for (event, data) in &events {
                    n += t.on_event(*event, data).unwrap().len();
                }
                assert!(t.is_done(), "{name} stream did not finish");
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("anthropic_ingress");
    let messages = serde_json::to_vec(&json!({
        "model": "m", "max_tokens": 512, "system": request()["messages"][0]["content"],
        "messages": request()["messages"].as_array().unwrap()[1..].to_vec(),
        "tools": [{"name": "get_shipment", "description": "Look up a shipment by order number",
                   "input_schema": {"type": "object", "properties": {"order": {"type": "string"}}}}]
    }))
    .unwrap();
    g.bench_function("request_1kb", |b| {
        b.iter(|| {
            let req: ingress::MessagesRequest =
                serde_json::from_slice(black_box(&messages)).unwrap();
            black_box(ingress::to_chat(req, true).unwrap())
        })
    });
    let chunks = openai_chunks();
    g.bench_function("stream_100_chunks", |b| {
        b.iter(|| {
            let mut s = EventStream::new();
            let mut out = BytesMut::new();
            for c in &chunks {
                s.on_data(c, &mut out);
            }
            assert!(s.is_ended());
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(translate, benches);
criterion_main!(translate);
