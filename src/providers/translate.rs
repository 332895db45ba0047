//! The error every translating adapter (Anthropic, Gemini, ...) reports: already in the terms
//! the gateway answers the client with (status, OpenAI `type`, `code`, `param`). Messages name
//! fields and indexes, never prompt text.

use std::fmt;

use serde_json::{json, Value};

/// Why a translation failed, already in the terms the gateway answers the client with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// HTTP status for the client.
    pub status: u16,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`.
    pub code: &'static str,
    pub message: String,
    /// The OpenAI request field at fault, e.g. `messages[2].tool_calls[0].function.arguments`.
    pub param: Option<String>,
}

impl TranslateError {
    /// A request field that is malformed; `what` completes the sentence that names it.
    pub(crate) fn invalid(param: impl Into<String>, what: &str) -> Self {
        let param = param.into();
        Self {
            status: 400,
            kind: "invalid_request_error",
            code: "invalid_request",
            message: format!("{param} {what}"),
            param: Some(param),
        }
    }

    /// A request field that is well-formed but has no equivalent in the provider's API.
    pub(crate) fn unsupported(param: impl Into<String>, what: &str) -> Self {
        Self {
            code: "unsupported_parameter",
            ..Self::invalid(param, what)
        }
    }

    /// The provider answered with something that is not what its API promises.
    pub(crate) fn upstream(message: String) -> Self {
        Self {
            status: 502,
            kind: "upstream_error",
            code: "upstream_bad_response",
            message,
            param: None,
        }
    }

    /// The OpenAI error envelope `{"error":{"message","type","param","code"}}`.
    pub fn to_openai(&self) -> Value {
        json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }})
    }
}

impl TranslateError {
    /// As the gateway's request error (what a failed request encoding is).
    pub(crate) fn into_error(self) -> crate::error::Error {
        crate::error::Error::InvalidRequest {
            message: self.message,
            param: self.param,
            code: self.code,
        }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

/// Seconds since the Unix epoch, for the `created` of translated responses.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A translated response body, or the provider's malformed answer as a 502.
pub(crate) fn body_or_502(
    decoded: Result<Value, TranslateError>,
    provider: &str,
) -> Result<bytes::Bytes, crate::error::Error> {
    decoded
        .map(|v| bytes::Bytes::from(v.to_string()))
        .map_err(|e| crate::error::Error::UpstreamProtocol {
            provider: provider.into(),
            reason: e.message,
        })
}

/// A translated error answer (status and OpenAI envelope) as the adapter hook returns it.
pub(crate) fn error_answer(
    status: http::StatusCode,
    (code, body): (u16, Value),
) -> (http::StatusCode, bytes::Bytes) {
    (
        http::StatusCode::from_u16(code).unwrap_or(status),
        bytes::Bytes::from(body.to_string()),
    )
}

/// The envelope of the OpenAI `chat.completion.chunk`s a translated stream sends, written
/// straight to text: a stream translates one chunk per provider event, and building a `Value`
/// tree for each cost more than the rest of the translation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkHead<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub created: u64,
    /// With `include_usage` OpenAI puts `"usage": null` on every chunk but the last.
    pub include_usage: bool,
}

impl ChunkHead<'_> {
    fn open(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity + self.id.len() + self.model.len() + 160);
        out.extend_from_slice(b"{\"id\":");
        write_json(&mut out, self.id);
        out.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        write_u64(&mut out, self.created);
        out.extend_from_slice(b",\"model\":");
        write_json(&mut out, self.model);
        out.extend_from_slice(b",\"choices\":");
        out
    }

    fn close(&self, mut out: Vec<u8>) -> String {
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }

    fn choice_with(
        &self,
        index: u64,
        finish: Option<&str>,
        delta: impl FnOnce(&mut Vec<u8>),
    ) -> String {
        let mut out = self.open(64);
        out.extend_from_slice(b"[{\"index\":");
        write_u64(&mut out, index);
        out.extend_from_slice(b",\"delta\":");
        delta(&mut out);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => write_json(&mut out, f),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]");
        self.close(out)
    }

    /// A chunk with one choice: `delta`, and the finish reason if it ends here.
    pub fn choice(&self, index: u64, delta: &Value, finish: Option<&str>) -> String {
        self.choice_with(index, finish, |out| write_json(out, delta))
    }

    /// A chunk with one choice whose delta is `{"content": text}` (most of a stream).
    pub fn text(&self, index: u64, text: &str) -> String {
        self.choice_with(index, None, |out| {
            out.extend_from_slice(b"{\"content\":");
            write_json(out, text);
            out.push(b'}');
        })
    }

    /// The usage-only chunk that ends a stream (`choices: []`).
    pub fn usage(&self, usage: &impl serde::Serialize) -> String {
        let mut out = self.open(128);
        out.extend_from_slice(b"[],\"usage\":");
        write_json(&mut out, usage);
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A text fragment in a provider's stream event, borrowed from the event when it has no escapes.
pub(crate) type Text<'a> = std::borrow::Cow<'a, str>;

/// `{"delta": {"type": ..., "text": ...}}` and the like: the few fields of a stream's
/// text-delta events the fast path reads (everything else in the event is skipped unparsed).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TextDelta<'a> {
    #[serde(rename = "type", default)]
    pub kind: Option<&'a str>,
    #[serde(borrow, default)]
    pub text: Option<Text<'a>>,
}

/// Decimal digits without a heap allocation (one per chunk adds up over a stream).
fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    // Serializing strings and `Value`s into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_openai_chunks() {
        let head = ChunkHead {
            id: "c\"1",
            model: "m",
            created: 7,
            include_usage: true,
        };
        let v: Value = serde_json::from_str(&head.text(0, "a\nb")).unwrap_or_default();
        assert_eq!(
            v,
            json!({"id": "c\"1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": "a\nb"}, "logprobs": null,
                                "finish_reason": null}], "usage": null})
        );
        let v: Value =
            serde_json::from_str(&head.choice(1, &json!({}), Some("stop"))).unwrap_or_default();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["index"], 1);
        let mut out = Vec::new();
        for n in [0, 7, 10, 1_733_000_000, u64::MAX] {
            out.clear();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let v: Value =
            serde_json::from_str(&head.usage(&json!({"prompt_tokens": 1}))).unwrap_or_default();
        assert_eq!(v["choices"], json!([]));
        assert_eq!(v["usage"]["prompt_tokens"], 1);
    }
}
