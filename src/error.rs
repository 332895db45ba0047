//! The one error type of the request path. Variants are grouped by where the fault lies
//! (client, policy, upstream, internal); `status()` picks the HTTP status, `kind()` the metric
//! label, and `into_response()` renders the OpenAI envelope
//! `{"error":{"message","type","param","code"}}`. Constructors never log: the handler logs once.
//!
//! Messages never carry prompt text or keys: they name fields, models and providers only.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{full, Body};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- client ---
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: &'static str,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within the request timeout")]
    RequestTimeout,
    #[error("missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    #[error("unknown path {path}")]
    NotFound { path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },

    // --- policy ---
    #[error("the model '{model}' does not exist or is not served by this gateway")]
    UnknownModel { model: String },
    #[error("this project is not allowed to use the model '{model}'")]
    ModelNotAllowed { model: String },
    #[error("this project may not pin a provider with x-gateway-provider")]
    PinNotAllowed,
    /// Refused by spend control: a budget, a rate limit, a per-request cap or a tier.
    #[error("{}", .0.message)]
    Spend(Box<SpendRefusal>),
    /// Refused by the data protection policy; the message and code name entity types only.
    #[error("{message}")]
    PolicyBlocked { message: String, code: String },

    // --- upstream ---
    /// The provider answered with an error status; 4xx bodies are passed to the client.
    #[error("provider '{}' returned HTTP {}", .0.provider, .0.status)]
    UpstreamStatus(Box<UpstreamFailure>),
    #[error("provider '{provider}' did not answer within {secs}s")]
    UpstreamTimeout { provider: String, secs: u64 },
    #[error("cannot reach provider '{provider}': {reason}")]
    UpstreamUnreachable { provider: String, reason: String },
    #[error("provider '{provider}' sent an unreadable response: {reason}")]
    UpstreamProtocol { provider: String, reason: String },

    // --- internal ---
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why spend control refused a request (`pipeline/budget.rs` builds these).
#[derive(Debug)]
pub struct SpendRefusal {
    pub status: StatusCode,
    /// The envelope's `type`.
    pub kind: &'static str,
    /// The envelope's `code`, also the metric label.
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

/// A provider's error answer, kept whole so a 4xx can be passed through.
#[derive(Debug)]
pub struct UpstreamFailure {
    pub provider: String,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub retry_after_ms: Option<HeaderValue>,
    pub body: Bytes,
}

impl Error {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
            code: "invalid_request",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::PolicyBlocked { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MissingKey | Self::InvalidKey => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } | Self::UnknownModel { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::ModelNotAllowed { .. } | Self::PinNotAllowed => StatusCode::FORBIDDEN,
            Self::Spend(r) => r.status,
            Self::UpstreamStatus(f) if f.status.is_client_error() => f.status,
            Self::UpstreamStatus(_)
            | Self::UpstreamUnreachable { .. }
            | Self::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UnknownModel { .. } => "unknown_model",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::PinNotAllowed => "pin_not_allowed",
            Self::Spend(r) => r.code,
            Self::PolicyBlocked { .. } => "dlp_blocked",
            Self::UpstreamStatus(f) if f.status.is_client_error() => "upstream_4xx",
            Self::UpstreamStatus(_) => "upstream_5xx",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamProtocol { .. } => "upstream_protocol",
            Self::Internal(_) => "internal",
        }
    }

    fn envelope(&self) -> (&'static str, Option<&str>, &str) {
        match self {
            Self::InvalidRequest { param, code, .. } => {
                ("invalid_request_error", param.as_deref(), code)
            }
            Self::BodyTooLarge { .. } => ("invalid_request_error", None, "request_too_large"),
            Self::RequestTimeout => ("invalid_request_error", None, "request_timeout"),
            Self::MissingKey => ("invalid_request_error", None, "missing_api_key"),
            Self::InvalidKey => ("invalid_request_error", None, "invalid_api_key"),
            Self::NotFound { .. } => ("invalid_request_error", None, "not_found"),
            Self::MethodNotAllowed { .. } => ("invalid_request_error", None, "method_not_allowed"),
            Self::UnknownModel { .. } => {
                ("invalid_request_error", Some("model"), "model_not_found")
            }
            Self::ModelNotAllowed { .. } => {
                ("permission_error", Some("model"), "model_not_allowed")
            }
            Self::PinNotAllowed => ("permission_error", None, "pin_not_allowed"),
            Self::Spend(r) => (r.kind, r.param, r.code),
            Self::PolicyBlocked { code, .. } => ("invalid_request_error", None, code),
            Self::UpstreamStatus(_) => ("upstream_error", None, "upstream_error"),
            Self::UpstreamTimeout { .. } => ("upstream_error", None, "upstream_timeout"),
            Self::UpstreamUnreachable { .. } => ("upstream_error", None, "upstream_unreachable"),
            Self::UpstreamProtocol { .. } => ("upstream_error", None, "upstream_bad_response"),
            Self::Internal(_) => ("server_error", None, "internal_error"),
        }
    }

    /// The JSON error body as bytes (also used as an SSE error event).
    pub fn body(&self) -> Bytes {
        let (kind, param, code) = self.envelope();
        Bytes::from(
            json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
                .to_string(),
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut builder = Response::builder().status(status);
        let body = match self {
            Self::UpstreamStatus(f) if f.status.is_client_error() => {
                let f = *f;
                builder = builder.header(
                    header::CONTENT_TYPE,
                    f.content_type
                        .unwrap_or(HeaderValue::from_static("application/json")),
                );
                if let Some(ra) = f.retry_after {
                    builder = builder.header(header::RETRY_AFTER, ra);
                }
                builder = builder.header("x-gateway-upstream-status", f.status.as_u16());
                f.body
            }
            other => {
                if let Self::UpstreamStatus(f) = &other {
                    builder = builder.header("x-gateway-upstream-status", f.status.as_u16());
                    if let Some(ra) = &f.retry_after {
                        builder = builder.header(header::RETRY_AFTER, ra);
                    }
                }
                if let Self::Spend(r) = &other {
                    if let Some(secs) = r.retry_after {
                        builder = builder.header(header::RETRY_AFTER, secs);
                    }
                }
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                other.body()
            }
        };
        builder
            .body(full(body))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
