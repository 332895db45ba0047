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
