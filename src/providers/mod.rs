//! Provider adapters: translation between the gateway's OpenAI-shaped requests and a
//! provider's wire format, and nothing else (no I/O; `pipeline/forward.rs` sends). One file per
//! wire format. The long tail of OpenAI-compatible vendors is configuration of `openai`.
//!
//! `mock` is the exception that proves the rule: it speaks the OpenAI wire format but answers
//! in-process, so `forward` hands it the encoded request instead of a socket.

pub mod anthropic;
pub mod mock;
pub mod openai;

use bytes::Bytes;

use crate::api::openai::{ChatRequest, EmbeddingsRequest};
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
/// fields in place (the same request is encoded again for each retry or fallback).
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
}

/// The adapter for a provider kind.
pub fn adapter(kind: ProviderKind) -> &'static dyn Adapter {
    match kind {
        // The mock speaks the OpenAI wire format.
        ProviderKind::Openai | ProviderKind::Mock => &openai::OpenAi,
    }
}
