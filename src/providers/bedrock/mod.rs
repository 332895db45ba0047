//! AWS Bedrock (`https://bedrock-runtime.{region}.amazonaws.com`): translation between OpenAI
//! Chat Completions / Embeddings and Converse (`POST /model/{id}/converse`), ConverseStream
//! (`/converse-stream`, a binary event stream) and InvokeModel (`/invoke`, for the Titan and
//! Cohere embedding models). No I/O lives here: `pipeline/forward.rs` sends the request and
//! calls [`Bedrock`]'s `sign` hook, which signs it with SigV4 (`sigv4.rs`) unless the provider
//! has a Bedrock API key (sent as `Authorization: Bearer`, the default). The model id goes in
//! the URL path, percent-encoded.
//!
//! - `request.rs`: OpenAI requests as Converse and InvokeModel bodies.
//! - `response.rs`: answers, stream events and errors back as OpenAI's.
//! - `sigv4.rs`: request signing.
//!
//! The binary stream framing is decoded by `crate::eventstream` in the relay; the translator
//! here sees the same `(event, data)` pairs an SSE provider's does.

mod request;
mod response;
pub mod sigv4;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

pub use super::translate::TranslateError;
pub use request::{encode_chat, encode_embeddings, EmbedFamily};
pub use response::{decode_error, decode_response, StreamState};

use crate::api::openai::{ChatRequest, EmbeddingsRequest};
use crate::config::Provider;
use crate::error::Error;

/// The SigV4 signing name of the Bedrock runtime.
pub const SERVICE: &str = "bedrock";

/// The runtime endpoint of a region.
pub fn default_base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// `/model/{id}/{action}`, the id percent-encoded (`:` of versions, `/` of ARNs) as AWS's own
/// SDKs do.
pub fn model_path(model: &str, action: &str) -> String {
    format!("/model/{}/{action}", sigv4::encode(model))
}

/// Signs `parts` for AWS: sets `host`, `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (temporary credentials) and `authorization`. `unix_secs` is the
/// signing time.
pub fn sign_request(
    provider: &Provider,
    parts: &mut http::request::Parts,
    body: &[u8],
    unix_secs: u64,
) -> Result<(), Error> {
    let Some(creds) = provider.aws.as_deref() else {
        return Ok(());
    };
    let internal = || Error::Internal(format!("cannot sign for provider '{}'", provider.name));
    let host = parts
        .uri
        .authority()
        .ok_or_else(internal)?
        .as_str()
        .to_string();
    let amz_date = sigv4::amz_date(unix_secs);
    let payload = crate::config::validate::hex(&Sha256::digest(body));
    let mut signed: Vec<(&str, &str)> = vec![
        ("host", &host),
        ("x-amz-date", &amz_date),
        ("x-amz-content-sha256", &payload),
    ];
    if let Some(token) = &creds.session_token {
        signed.push(("x-amz-security-token", token.expose()));
    }
    let auth = sigv4::authorization(
        &sigv4::Signable {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or_default(),
            headers: &signed,
            payload_sha256: &payload,
        },
        &sigv4::Credentials {
            access_key_id: creds.access_key_id.expose(),
            secret_access_key: creds.secret_access_key.expose(),
        },
        &sigv4::Scope {
            region: &provider.region,
            service: SERVICE,
            amz_date: &amz_date,
        },
    );
    let value = |v: &str, sensitive: bool| {
        HeaderValue::try_from(v)
            .map(|mut h| {
                h.set_sensitive(sensitive);
                h
            })
            .map_err(|_| internal())
    };
    let h = &mut parts.headers;
    h.insert(http::header::HOST, value(&host, false)?);
    h.insert("x-amz-date", value(&amz_date, false)?);
    h.insert("x-amz-content-sha256", value(&payload, false)?);
    if let Some(token) = &creds.session_token {
        h.insert("x-amz-security-token", value(token.expose(), true)?);
    }
    h.insert(http::header::AUTHORIZATION, value(&auth, true)?);
    Ok(())
}

/// The Bedrock wire format as a gateway adapter.
pub struct Bedrock;

impl super::Adapter for Bedrock {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        _provider: &Provider,
    ) -> Result<super::UpstreamRequest, Error> {
        let body = encode_chat(req).map_err(TranslateError::into_error)?;
        let action = if req.is_stream() {
            "converse-stream"
        } else {
            "converse"
        };
        Ok(super::UpstreamRequest {
            path: model_path(upstream_model, action),
            body: Bytes::from(body.to_string()),
            stream: req.is_stream(),
        })
    }

    fn embeddings(
        &self,
        req: &mut EmbeddingsRequest,
        upstream_model: &str,
        _provider: &Provider,
    ) -> Result<super::UpstreamRequest, Error> {
        let body = encode_embeddings(req, upstream_model).map_err(TranslateError::into_error)?;
        Ok(super::UpstreamRequest {
            path: model_path(upstream_model, "invoke"),
            body: Bytes::from(body.to_string()),
            stream: false,
        })
    }

    fn decode_body(&self, body: Bytes, public_model: &str) -> Result<Bytes, Error> {
        super::translate::body_or_502(
            decode_response(&body, public_model, super::translate::unix_now()),
            "bedrock",
        )
    }

    fn decode_error(&self, status: StatusCode, body: Bytes) -> (StatusCode, Bytes) {
        super::translate::error_answer(status, decode_error(status.as_u16(), None, &body))
    }

    fn decode_error_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
    ) -> (StatusCode, Bytes) {
        let error_type = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        super::translate::error_answer(status, decode_error(status.as_u16(), error_type, &body))
    }

    fn stream_framing(&self) -> super::StreamFraming {
        super::StreamFraming::EventStream
    }

    fn stream(
        &self,
        public_model: &str,
        include_usage: bool,
    ) -> Option<Box<dyn super::StreamTranslate>> {
        Some(Box::new(StreamState::new(
            public_model,
            super::translate::unix_now(),
            include_usage,
        )))
    }

    fn sign(
        &self,
        provider: &Provider,
        parts: &mut http::request::Parts,
        body: &[u8],
    ) -> Result<(), Error> {
        sign_request(provider, parts, body, super::translate::unix_now())
    }
}

super::stream_translate!(StreamState);

#[cfg(test)]
mod tests;
