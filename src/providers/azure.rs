//! Azure OpenAI (the dated API): OpenAI's request and response bodies, with the deployment in
//! the URL (`/deployments/{deployment}/chat/completions?api-version=...`) and the key in the
//! `api-key` header. `base_url` is the resource's `https://NAME.openai.azure.com/openai`.
//! Responses, streams and errors are OpenAI-shaped already (Azure adds content-filter fields,
//! which pass through).

use super::{openai::OpenAi, Adapter, UpstreamRequest};
use crate::api::openai::{ChatRequest, EmbeddingsRequest};
use crate::config::Provider;
use crate::error::Error;

pub struct Azure;

impl Adapter for Azure {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        provider: &Provider,
    ) -> Result<UpstreamRequest, Error> {
        let mut r = OpenAi.chat(req, upstream_model, provider)?;
        r.path = path(upstream_model, "chat/completions", provider)?;
        Ok(r)
    }

    fn embeddings(
        &self,
        req: &mut EmbeddingsRequest,
        upstream_model: &str,
        provider: &Provider,
    ) -> Result<UpstreamRequest, Error> {
        let mut r = OpenAi.embeddings(req, upstream_model, provider)?;
        r.path = path(upstream_model, "embeddings", provider)?;
        Ok(r)
    }

    fn auth_header(&self) -> http::HeaderName {
        http::HeaderName::from_static("api-key")
    }
}

/// `/deployments/{deployment}/{endpoint}?api-version=...`; the deployment name goes into the
/// path, so only URL-safe names are accepted.
pub(super) fn path(deployment: &str, endpoint: &str, provider: &Provider) -> Result<String, Error> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !safe(deployment) || !safe(&provider.api_version) {
        return Err(Error::invalid(
            format!(
                "'{deployment}' is not a valid Azure deployment name for provider '{}'",
                provider.name
            ),
            Some("model"),
        ));
    }
    Ok(format!(
        "/deployments/{deployment}/{endpoint}?api-version={}",
        provider.api_version
    ))
}
