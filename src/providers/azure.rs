//! Azure OpenAI: OpenAI's request and response bodies. The dated API puts the deployment in the
//! URL (`/deployments/{deployment}/chat/completions?api-version=...`); with `api_version = "v1"`
//! requests go to `/v1/chat/completions` with the deployment as `model`. Keys go in the
//! `api-key` header, or Entra ID tokens as a bearer (`auth = "entra"`, chosen at config load).
//! `base_url` is the resource's `https://NAME.openai.azure.com/openai`.
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
    if provider.api_version == "v1" {
        // The v1 API takes the deployment name in the body's `model`, as OpenAI does.
        return Ok(format!("/v1/{endpoint}"));
    }
    Ok(format!(
        "/deployments/{deployment}/{endpoint}?api-version={}",
        provider.api_version
    ))
}
