//! The optional exact-match response cache (per project, in memory, bounded by size and age).
//! A key is the SHA-256 of the project, the public model and the request as the gateway would
//! send it (canonical JSON, without the stream flags), so a streamed request can be answered
//! from a cached plain one: the completion is replayed as a stream.
//!
//! Only successful non-streaming completions are stored. `Cache-Control: no-cache` skips the
//! lookup, `no-store` skips both lookup and store.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::openai::{ChatRequest, Usage};
use crate::sse;

/// What the client's `Cache-Control` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub lookup: bool,
    pub store: bool,
}

impl Directives {
    pub fn of(headers: &HeaderMap) -> Self {
        let mut d = Self {
            lookup: true,
            store: true,
        };
        for v in headers.get_all(http::header::CACHE_CONTROL) {
            for token in v.to_str().unwrap_or_default().split(',') {
                match token.trim().to_ascii_lowercase().as_str() {
                    "no-cache" => d.lookup = false,
                    "no-store" => {
                        d.lookup = false;
                        d.store = false;
                    }
                    _ => {}
                }
            }
        }
        d
    }
}

#[derive(Debug)]
pub struct Entry {
    /// The completion as the provider returned it (OpenAI `chat.completion`).
    pub body: Bytes,
    pub usage: Option<Usage>,
    pub provider: String,
    pub deployment: String,
}

pub struct Cache {
    inner: moka::sync::Cache<[u8; 32], std::sync::Arc<Entry>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl Cache {
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, e: &std::sync::Arc<Entry>| {
                    u32::try_from(e.body.len() + 256).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<std::sync::Arc<Entry>> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: [u8; 32], entry: Entry) {
        self.inner.insert(key, std::sync::Arc::new(entry));
    }
}

/// The cache key of a chat request for `project`, public `model` and pinned provider (or "").
pub fn key(project: &str, model: &str, pin: &str, req: &ChatRequest) -> Option<[u8; 32]> {
    // The stream flags only change the framing of the same answer.
    let mut canonical = serde_json::to_value(req).ok()?;
    if let Some(obj) = canonical.as_object_mut() {
        obj.remove("stream");
        obj.remove("stream_options");
    }
    let mut h = Sha256::new();
    for part in [
        project.as_bytes(),
        b"\0",
        model.as_bytes(),
        b"\0",
        pin.as_bytes(),
        b"\0",
    ] {
        h.update(part);
    }
    h.update(serde_json::to_vec(&canonical).ok()?);
    Some(h.finalize().into())
}

/// A cached completion told again as an SSE stream: the role, the content (and tool calls) in
/// one delta, the finish reason, the usage chunk if asked for, then `[DONE]`.
pub fn replay_as_stream(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let base = |choices: Value| {
        json!({
            "id": v["id"], "object": "chat.completion.chunk", "created": v["created"],
            "model": v["model"], "choices": choices
        })
    };
    let mut out = BytesMut::new();
    let mut push = |chunk: Value| sse::encode_into(&mut out, None, &chunk.to_string());
    let choices = v["choices"].as_array()?;
    for c in choices {
        let i = &c["index"];
        push(base(
            json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        ));
        let msg = &c["message"];
        let mut delta = json!({});
        if let Some(text) = msg["content"].as_str() {
            delta["content"] = json!(text);
        }
        if let Some(calls) = msg["tool_calls"].as_array() {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(n, call)| {
                    let mut call = call.clone();
                    call["index"] = json!(n);
                    call
                })
                .collect();
            delta["tool_calls"] = json!(calls);
        }
        push(base(
            json!([{"index": i, "delta": delta, "finish_reason": null}]),
        ));
        push(base(
            json!([{"index": i, "delta": {}, "finish_reason": c["finish_reason"]}]),
        ));
    }
    if include_usage {
        let mut last = base(json!([]));
        last["usage"] = v["usage"].clone();
        push(last);
    }
    sse::encode_into(&mut out, None, "[DONE]");
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        let mut h = HeaderMap::new();
        assert_eq!(
            Directives::of(&h),
            Directives {
                lookup: true,
                store: true
            }
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("max-age=0, No-Cache"),
        );
        assert_eq!(
            Directives::of(&h),
            Directives {
                lookup: false,
                store: true
            }
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        assert_eq!(
            Directives::of(&h),
            Directives {
                lookup: false,
                store: false
            }
        );
    }

    #[test]
    fn stream_flags_do_not_change_the_key() {
        let parse = |s: &str| {
            crate::api::openai::parse_json::<ChatRequest>(s.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let a =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = parse(
            r#"{"temperature":0,"stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"hi","role":"user"}],"model":"m"}"#,
        );
        assert_eq!(key("p", "m", "", &a), key("p", "m", "", &b));
        assert_ne!(
            key("p", "m", "", &a),
            key("q", "m", "", &a),
            "projects never share entries"
        );
        assert_ne!(
            key("p", "m", "", &a),
            key("p", "m", "x", &a),
            "a pin is part of the key"
        );
    }
}
