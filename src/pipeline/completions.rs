//! Legacy text completions (`POST /v1/completions`), passed through to OpenAI-format backends
//! (`openai` and every OpenAI-compatible vendor, `azure`) with the same stages as chat: auth,
//! budget, routing with retries and fallbacks, settlement from the provider's usage. The other
//! wire formats have no text-completion endpoint, so their deployments are left out of the plan,
//! and a model with none left gets a 400 that says so. No response cache: the cache keys chat
//! requests only.

use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{budget, buffered, parse, plan, retry, route, Ctx, Payload, Reply};
use crate::api::openai::{ChatRequest, Content, Message, StreamOptions};
use crate::config::{ProviderKind, Runtime};
use crate::error::Error;
use crate::providers;
use crate::state::AppState;

/// A legacy completions request: the fields the gateway reads; the rest passes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionsRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The output limit OpenAI applies to a completion that names none.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// Whether a provider kind serves `/completions`.
pub fn serves_completions(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Openai | ProviderKind::Azure)
}

pub(super) async fn completions(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    let (caller, headers, mut req) = parse::<CompletionsRequest>(&rt, req, ctx).await?;
    if req.prompt.is_null() {
        return Err(Error::invalid("'prompt' is required", Some("prompt")));
    }
    ctx.stream = req.stream == Some(true);
    let wants_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let model = req.model.clone();
    let prompt_text = match &req.prompt {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Routing and the budget stage read chat requests: they see the prompt as one user
    // message and the output limit the provider would apply; a clamp is copied back.
    let asked = req.extra.get("max_tokens").and_then(Value::as_u64);
    let limit = asked.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut priced = ChatRequest {
        model: model.clone(),
        messages: vec![Message {
            role: "user".into(),
            content: Some(Content::Text(prompt_text)),
            extra: Map::new(),
        }],
        stream: req.stream,
        stream_options: None,
        extra: Map::from_iter([("max_tokens".to_string(), Value::from(limit))]),
    };
    // Data protection sees the prompt as that one message; what it redacts goes back into
    // the prompt. A legacy completion has no message to restore pseudonyms into or scan the
    // way chat answers are, so a policy that needs either is refused here (fail closed).
    if caller.project.policy.is_some() {
        if !req.prompt.is_string() {
            return Err(Error::PolicyBlocked {
                message:
                    "the project's data protection policy scans a 'prompt' given as one string only"
                        .into(),
                code: "dlp_unscannable".into(),
            });
        }
        ctx.dlp = crate::dlp::guard::check_chat(
            &state.metrics,
            &caller.project,
            &mut priced,
            &ctx.request_id,
            &mut ctx.audit,
        )?;
        if ctx.dlp.as_ref().is_some_and(|o| o.touches_response()) {
            return Err(Error::PolicyBlocked {
                message: "the project's data protection policy pseudonymizes or scans answers, which /v1/completions cannot carry; use /v1/chat/completions".into(),
                code: "dlp_unsupported_endpoint".into(),
            });
        }
        if let Some(Content::Text(t)) = priced.messages.first().and_then(|m| m.content.clone()) {
            req.prompt = Value::String(t);
        }
    }
    let needs = route::Needs::of_chat(&priced);
    let mut plan = plan(&state, &rt, &caller, &model, &headers, &needs)?;
    for targets in [
        &mut plan.targets,
        &mut plan.on_context_length,
        &mut plan.on_policy,
    ] {
        targets.retain(|t| serves_completions(t.provider.kind));
    }
    if plan.targets.is_empty() {
        return Err(Error::InvalidRequest {
            message: format!(
                "model '{model}' has no OpenAI-format deployment; /v1/completions is served only by providers of kind \"openai\" or \"azure\" (use /v1/chat/completions)"
            ),
            param: Some("model".into()),
            code: "unsupported_endpoint",
        });
    }
    let budget_req = budget::Request {
        body: budget::Body::Chat(&mut priced),
        prompt_estimate: needs.prompt_tokens,
    };
    budget::admit(&state, &rt, &caller, &model, &plan, budget_req, ctx).await?;
    match priced.extra.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n != limit => {
            req.extra.insert("max_tokens".into(), n.into());
        }
        _ => {}
    }

    let mut payload = Payload::Completions(req);
    let (upstream, target) =
        retry::run(&state, &rt, plan, &mut payload, &headers, ctx, &model).await?;
    let is_stream = upstream
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if ctx.stream && is_stream {
        return Ok(Reply::Stream {
            upstream,
            wants_usage,
            translate: None,
            framing: providers::StreamFraming::Sse,
        });
    }
    let (resp, usage, _) = buffered(
        upstream,
        &target,
        &model,
        rt.server.request_timeout,
        ctx.started,
    )
    .await?;
    Ok(Reply::Full(resp, usage))
}
