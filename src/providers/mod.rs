//! Provider adapters: translation between the gateway's OpenAI-shaped requests and a
//! provider's wire format, and nothing else (no I/O; `pipeline/forward.rs` sends). One file per
//! wire format. The long tail of OpenAI-compatible vendors is configuration of `openai`.
//!
//! `mock` is the exception that proves the rule: it speaks the OpenAI wire format but answers
//! in-process, so `forward` hands it the encoded request instead of a socket.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod gemini;
pub mod mock;
pub mod models;
pub mod openai;
pub mod presets;
pub mod translate;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::api::openai::{ChatRequest, EmbeddingsRequest, Usage};
use crate::config::{Provider, ProviderKind};
use crate::error::Error;

/// An encoded request for one provider, ready to send.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Appended to the provider's `base_url`.
    pub path: String,
    pub body: Bytes,
    pub stream: bool,
}

/// Translation for one wire format. Requests are lent mutably so an adapter can adjust
/// fields in place (the same request is encoded again for each retry or fallback). The
/// defaults are the OpenAI format's: nothing to translate on the way back.
pub trait Adapter: Send + Sync {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        provider: &Provider,
    ) -> Result<UpstreamRequest, Error>;

    fn embeddings(
        &self,
        req: &mut EmbeddingsRequest,
        upstream_model: &str,
        provider: &Provider,
    ) -> Result<UpstreamRequest, Error>;

    /// The header that carries the provider key (its value is built at config load).
    fn auth_header(&self) -> HeaderName {
        http::header::AUTHORIZATION
    }

    /// Headers every request to this wire format needs.
    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// A successful non-streaming body as an OpenAI response.
    fn decode_body(&self, body: Bytes, _public_model: &str) -> Result<Bytes, Error> {
        Ok(body)
    }

    /// An error answer as the status and OpenAI-shaped body to give the client.
    fn decode_error(&self, status: StatusCode, body: Bytes) -> (StatusCode, Bytes) {
        (status, body)
    }

    /// The same, for wire formats that name the error in a response header (Bedrock's
    /// `x-amzn-ErrorType`); the others need only the body.
    fn decode_error_response(
        &self,
        status: StatusCode,
        _headers: &HeaderMap,
        body: Bytes,
    ) -> (StatusCode, Bytes) {
        self.decode_error(status, body)
    }

    /// How a streamed answer is framed on the wire.
    fn stream_framing(&self) -> StreamFraming {
        StreamFraming::Sse
    }

    /// Authenticates a request that carries no key from the provider's pool, once its URL,
    /// headers and body are final (AWS SigV4 signs all three). Called for every attempt; the
    /// default sends the request as it is (keyless upstreams).
    fn sign(
        &self,
        _provider: &Provider,
        _parts: &mut http::request::Parts,
        _body: &[u8],
    ) -> Result<(), Error> {
        Ok(())
    }

    /// A translator for stream events that are not OpenAI chunks already.
    fn stream(
        &self,
        _public_model: &str,
        _include_usage: bool,
    ) -> Option<Box<dyn StreamTranslate>> {
        None
    }
}

/// The framing of a provider's streamed answer; either way the relay hands the translator
/// `(event, data)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFraming {
    /// `text/event-stream`.
    Sse,
    /// AWS `application/vnd.amazon.eventstream` (binary, CRC-checked messages).
    EventStream,
}

impl StreamFraming {
    /// The content type the provider answers a stream with (and that is asked for).
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Sse => "text/event-stream",
            Self::EventStream => "application/vnd.amazon.eventstream",
        }
    }
}

/// Implements [`StreamTranslate`] for an adapter's `StreamState` by its inherent `on_event`,
/// `usage` and `is_done` (which the adapter's unit tests call directly).
macro_rules! stream_translate {
    ($state:ty) => {
        impl $crate::providers::StreamTranslate for $state {
            fn on_event(
                &mut self,
                event: Option<&str>,
                data: &str,
            ) -> Result<Vec<String>, $crate::providers::translate::TranslateError> {
                <$state>::on_event(self, event, data)
            }

            fn usage(&self) -> $crate::api::openai::Usage {
                <$state>::usage(self)
            }

            fn is_done(&self) -> bool {
                <$state>::is_done(self)
            }
        }
    };
}
pub(crate) use stream_translate;

/// Turns a provider's stream events into OpenAI chunk payloads, incrementally.
pub trait StreamTranslate: Send {
    /// One event in, the `data:` payloads to send out; an `Err` is the provider's error, which
    /// ends the stream.
    fn on_event(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, translate::TranslateError>;
    /// Usage so far (final once the stream is done).
    fn usage(&self) -> Usage;
    /// Whether the provider's end-of-stream event arrived.
    fn is_done(&self) -> bool;
}

/// The adapter for a provider kind.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        // The mock speaks the OpenAI wire format.
        ProviderKind::Openai | ProviderKind::Mock => &openai::OpenAi,
        ProviderKind::Anthropic => &anthropic::Anthropic,
        ProviderKind::Azure => &azure::Azure,
        ProviderKind::Gemini => &gemini::Gemini,
        ProviderKind::Cohere => &cohere::Cohere,
        ProviderKind::Bedrock => &bedrock::Bedrock,
    }
}
