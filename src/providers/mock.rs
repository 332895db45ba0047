//! The built-in `mock` provider: an in-process OpenAI-shaped upstream with no network. Chat
//! echoes the last user message (or a configured reply), streams it in chunks with an optional
//! pause per chunk, and reports realistic usage; embeddings are deterministic unit vectors
//! derived from the input. It can be told to fail every Nth request or with a probability.
//!
//! `serve_http` exposes the same behaviour on a socket (`gateway mock-server`), which is what
//! the end-to-end benchmark and users' own CI point an `openai` provider at.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::time::Sleep;

use super::UpstreamRequest;
use crate::api::openai::{ChatRequest, Content, EmbeddingsRequest};
use crate::body::{full, Body, BoxError};
use crate::config::MockSettings;
use crate::sse;

/// What the mock answers: the same parts a real upstream response has.
pub struct MockResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

pub async fn respond(settings: &MockSettings, req: &UpstreamRequest) -> MockResponse {
    let n = settings.counter.fetch_add(1, Ordering::Relaxed) + 1;
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    let fail = (settings.fail_every > 0 && n % settings.fail_every == 0)
        || (settings.fail_probability > 0.0 && rand::random::<f64>() < settings.fail_probability);
    if fail {
        let body = settings.fail_body.clone().unwrap_or_else(|| {
            json!({"error": {"message": "simulated failure from the mock provider", "type": "server_error", "param": null, "code": "mock_failure"}}).to_string()
        });
        return json_response(settings.fail_status, body);
    }
    if req.path.ends_with("/embeddings") {
        embeddings(settings, &req.body)
    } else if req.path.ends_with("/chat/completions") {
        chat(settings, &req.body)
    } else {
        error(
            StatusCode::NOT_FOUND,
            "the mock provider has no such endpoint",
        )
    }
}

fn chat(settings: &MockSettings, body: &[u8]) -> MockResponse {
    let req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the mock provider could not parse the request",
            )
        }
    };
    let prompt_text: usize = req
        .messages
        .iter()
        .map(|m| m.content.as_ref().map_or(0, |c| c.text().len()))
        .sum();
    let mut reply = settings.reply.clone().unwrap_or_else(|| {
        req.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| m.content.as_ref().map(Content::text))
            .unwrap_or_default()
    });
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.extra.get(*k).and_then(Value::as_u64));
    let mut finish = "stop";
    if let Some(max) = max_tokens {
        if estimate_tokens(reply.len()) > max {
            reply = truncate_chars(&reply, (max as usize).saturating_mul(4)).to_string();
            finish = "length";
        }
    }
    let prompt_tokens = estimate_tokens(prompt_text) + 3 * req.messages.len() as u64;
    let completion_tokens = estimate_tokens(reply.len());
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    let id = format!("chatcmpl-mock{:016x}", rand::random::<u64>());
    let created = super::translate::unix_now();
    let model = req.model.as_str();

    if !req.is_stream() {
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": finish}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_mock"
        });
        return json_response(StatusCode::OK, body.to_string());
    }

    let with_usage = req.wants_stream_usage();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        sse::encode(None, &c.to_string())
    };
    let mut events = VecDeque::new();
    events.push_back(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for piece in char_chunks(&reply, settings.chunk_chars) {
        events.push_back(chunk(json!({"content": piece}), Value::Null));
    }
    events.push_back(chunk(json!({}), json!(finish)));
    if with_usage {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_mock", "choices": [], "usage": usage
        });
        events.push_back(sse::encode(None, &c.to_string()));
    }
    events.push_back(sse::encode(None, "[DONE]"));
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    MockResponse {
        status: StatusCode::OK,
        headers,
        body: BodyExt::boxed_unsync(ChunkedBody {
            chunks: events,
            delay: settings.chunk_delay,
            sleep: None,
        }),
    }
}

fn embeddings(settings: &MockSettings, body: &[u8]) -> MockResponse {
    let req: EmbeddingsRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the mock provider could not parse the request",
            )
        }
    };
    let inputs: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_number) => vec![req.input.to_string()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "'input' must be a string or an array",
            )
        }
    };
    if inputs.is_empty() {
        return error(StatusCode::BAD_REQUEST, "'input' must not be empty");
    }
    let dims = req
        .extra
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(settings.embedding_dimensions, |d| {
            d.clamp(1, 65_536) as usize
        });
    let base64 = req.extra.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += estimate_tokens(text.len());
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    });
    json_response(StatusCode::OK, body.to_string())
}

/// A unit vector seeded by the text (FNV-1a, then xorshift): same text, same vector.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Roughly four characters per token, at least one.
fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

fn truncate_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

fn char_chunks(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn json_response(status: StatusCode, body: String) -> MockResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    MockResponse {
        status,
        headers,
        body: full(body),
    }
}

fn error(status: StatusCode, message: &str) -> MockResponse {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    json_response(status, body.to_string())
}

/// Pre-rendered chunks released one at a time, each after `delay`.
struct ChunkedBody {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if !self.delay.is_zero() {
            let delay = self.delay;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Serves the mock over HTTP/1.1 on `listener` until `shutdown` resolves: POST
/// `/v1/chat/completions` and `/v1/embeddings` (also without the `/v1` prefix).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    settings: Arc<MockSettings>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tasks = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let settings = settings.clone();
            async move {
                let path = req.uri().path().trim_start_matches("/v1").to_string();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let up = UpstreamRequest {
                    path,
                    body,
                    stream: false,
                };
                let r = respond(&settings, &up).await;
                let mut resp = Response::new(r.body);
                *resp.status_mut() = r.status;
                *resp.headers_mut() = r.headers;
                Ok::<_, Infallible>(resp)
            }
        });
        tasks.spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}
