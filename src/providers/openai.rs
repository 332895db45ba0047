//! OpenAI and every OpenAI-compatible server: the request goes out in the client's own format
//! with the model replaced by the deployment's, and (for streams) usage requested so the
//! gateway can count tokens. Responses come back unchanged.

use bytes::Bytes;

use super::{Adapter, UpstreamRequest};
use crate::api::openai::{ChatRequest, EmbeddingsRequest, StreamOptions};
use crate::config::Provider;
use crate::error::Error;

pub struct OpenAi;

impl Adapter for OpenAi {
    fn chat(
        &self,
        req: &mut ChatRequest,
        upstream_model: &str,
        provider: &Provider,
    ) -> Result<UpstreamRequest, Error> {
        upstream_model.clone_into(&mut req.model);
        let stream = req.is_stream();
        // Asking for usage changes only what is sent: the request is encoded again for the
        // next candidate, which may not want `stream_options` at all.
        let client_options = req.stream_options.clone();
        if stream && provider.stream_include_usage {
            req.stream_options
                .get_or_insert_with(StreamOptions::default)
                .include_usage = Some(true);
        }
        let body = if provider.params.is_empty() {
            to_bytes(req)
        } else {
            // The vendor's quirks apply to what is sent only, not to the request that may go
            // to the next candidate.
            let mut adjusted = req.clone();
            provider.params.apply(&mut adjusted)?;
            to_bytes(&adjusted)
        };
        req.stream_options = client_options;
        Ok(UpstreamRequest {
            path: "/chat/completions".into(),
            body: body?,
            stream,
        })
    }

    fn embeddings(
        &self,
        req: &mut EmbeddingsRequest,
        upstream_model: &str,
        _provider: &Provider,
    ) -> Result<UpstreamRequest, Error> {
        upstream_model.clone_into(&mut req.model);
        Ok(UpstreamRequest {
            path: "/embeddings".into(),
            body: to_bytes(req)?,
            stream: false,
        })
    }
}

/// A legacy text completion (`/completions`) for an OpenAI-format upstream: the client's body
/// with the deployment's model, and usage asked for on streams as for chat. Only `openai` and
/// `azure` providers serve it (the plan keeps no other), so other kinds get a 400.
pub fn completions(
    req: &mut crate::pipeline::completions::CompletionsRequest,
    upstream_model: &str,
    provider: &Provider,
) -> Result<UpstreamRequest, Error> {
    let path = match provider.kind {
        crate::config::ProviderKind::Openai => "/completions".to_string(),
        crate::config::ProviderKind::Azure => {
            super::azure::path(upstream_model, "completions", provider)?
        }
        other => {
            return Err(Error::invalid(
                format!(
                    "provider '{}' (kind \"{}\") has no legacy completions endpoint",
                    provider.name,
                    other.as_str()
                ),
                Some("model"),
            ))
        }
    };
    let stream = req.stream == Some(true);
    let mut sent = req.clone();
    upstream_model.clone_into(&mut sent.model);
    if stream && provider.stream_include_usage {
        sent.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    Ok(UpstreamRequest {
        path,
        body: to_bytes(&sent)?,
        stream,
    })
}

fn to_bytes<T: serde::Serialize>(v: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encoding upstream request: {e}")))
}
