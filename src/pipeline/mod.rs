//! The request path, in the fixed order of DESIGN.md:
//! `parse + auth -> guard + redact -> budget -> route -> forward -> settle -> audit/metrics`.
//! Present today: parse + auth (`auth.rs`, `parse` below), budget (`budget.rs`: after the plan
//! is known, so the worst case is priced at its candidates), route (`route.rs`), forward
//! (`forward.rs`, and `relay.rs` for streams), settle and metrics + the access log
//! (`Ctx::finish`); the guard and audit stages slot in between without changing the others.
//! Each stage is a plain function; `chat` and `embeddings` below call them in order, and `Ctx`
//! carries what accounting needs to the end (which, for a stream, is when the relay finishes,
//! not when the handler returns).

pub mod auth;
pub mod budget;
pub mod completions;
pub mod forward;
pub mod messages;
pub mod relay;
pub mod responses;
pub mod retry;
pub mod route;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::api::openai::{self, ChatRequest, EmbeddingsRequest, ModelList, ModelObject, Usage};
use crate::body::{self, full, Body};
use crate::cache;
use crate::config::validate::Caller;
use crate::config::{Cors, Runtime};
use crate::error::Error;
use crate::providers;
use crate::state::AppState;
use forward::Upstream;
use route::Target;

/// The most of a successful non-streaming upstream body the gateway holds.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

/// Per-request context: who asked, where it went, when things happened. Accounting (metrics
/// and the access log line) runs once, in `finish`.
pub struct Ctx {
    state: Arc<AppState>,
    pub request_id: HeaderValue,
    started: Instant,
    endpoint: &'static str,
    stream: bool,
    project: Option<String>,
    key_id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    deployment: Option<String>,
    upstream_sent: Option<Instant>,
    /// Upstream attempts made (retries and fallbacks included).
    attempts: u32,
    /// The deployment serving the response, counted in flight until the response ends.
    admission: Option<crate::health::Admission>,
    /// Response cache outcome (hit, miss, bypass) when the project uses the cache.
    cache: Option<&'static str>,
    /// The class of the last failed upstream attempt, for the access log and
    /// `x-gateway-error-class`.
    error_class: Option<&'static str>,
    /// The reservation made by the budget stage, settled in `finish`.
    spend: Option<budget::Admitted>,
    /// The settled cost in nano-dollars, once settled.
    cost: Option<u64>,
    /// Bytes relayed to the client of a stream (for estimating a cost without usage).
    streamed: u64,
    /// Bytes of generated text a stream relayed (content and tool arguments), for the output
    /// estimate of a stream that ends without usage.
    streamed_text: u64,
    /// What the data protection guard left for the response (pseudonyms, scanning).
    dlp: Option<crate::dlp::guard::Outcome>,
    /// What the audit record needs beyond the above (attempts, client, policy, DLP).
    pub audit: crate::audit::Facts,
    finished: bool,
}

impl Ctx {
    fn new(state: Arc<AppState>, request_id: HeaderValue, endpoint: &'static str) -> Self {
        state.metrics.inflight.inc();
        Self {
            state,
            request_id,
            started: Instant::now(),
            endpoint,
            stream: false,
            project: None,
            key_id: None,
            model: None,
            provider: None,
            deployment: None,
            upstream_sent: None,
            attempts: 0,
            admission: None,
            cache: None,
            error_class: None,
            spend: None,
            cost: None,
            streamed: 0,
            streamed_text: 0,
            dlp: None,
            audit: crate::audit::Facts::default(),
            finished: false,
        }
    }

    fn set_caller(&mut self, caller: &Caller) {
        self.project = Some(caller.project.name.clone());
        self.key_id = Some(caller.key_id.clone());
    }

    fn set_target(&mut self, model: &str, target: &Target) {
        if self.model.is_none() {
            self.model = Some(if target.group.is_some() {
                model.to_string()
            } else {
                self.state.metrics.passthrough_model_label(model)
            });
        }
        self.provider = Some(target.provider.name.clone());
        self.deployment = Some(target.deployment.clone());
        self.attempts += 1;
        self.audit.begin_attempt(&target.deployment);
    }

    pub fn provider_name(&self) -> String {
        self.provider.clone().unwrap_or_default()
    }

    pub fn record_ttfb(&mut self) {
        self.audit.ttfb = Some(self.started.elapsed());
        self.state
            .metrics
            .ttfb
            .with_label_values(&[
                self.provider.as_deref().unwrap_or("-"),
                bool_label(self.stream),
            ])
            .observe(self.started.elapsed().as_secs_f64());
    }

    /// Records the outcome once: counters, histograms, tokens and one access log line (metadata
    /// only: never prompt text, never a key).
    pub fn finish(&mut self, status: u16, usage: Option<Usage>, error: Option<&'static str>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if let Some(cost) = budget::settle(self, status, usage.as_ref()) {
            self.cost = Some(cost);
        }
        let m = &self.state.metrics;
        let project = self.project.as_deref().unwrap_or("-");
        let model = self.model.as_deref().unwrap_or("-");
        let provider = self.provider.as_deref().unwrap_or("-");
        let elapsed = self.started.elapsed();
        m.requests_total
            .with_label_values(&[project, model, provider, status_label(status)])
            .inc();
        m.request_duration
            .with_label_values(&[self.endpoint, bool_label(self.stream)])
            .observe(elapsed.as_secs_f64());
        if let Some(sent) = self.upstream_sent {
            m.upstream_duration
                .with_label_values(&[provider])
                .observe(sent.elapsed().as_secs_f64());
        }
        if let Some(u) = usage {
            for (kind, n) in [
                ("prompt", u.prompt_tokens),
                ("completion", u.completion_tokens),
                ("cached", u.cached_tokens()),
            ] {
                if n > 0 {
                    m.tokens_total
                        .with_label_values(&[project, model, kind])
                        .inc_by(n);
                }
            }
        }
        let upstream = self.audit.upstream_failed
            + self.upstream_sent.map(|s| s.elapsed()).unwrap_or_default()
                * u32::from(self.error_class.is_none());
        m.ops
            .overhead
            .with_label_values(&[self.endpoint])
            .observe(elapsed.saturating_sub(upstream).as_secs_f64());
        if self.state.audit.enabled() {
            let record = self.audit_record(status, usage.as_ref(), error, elapsed);
            self.state.audit.submit(record);
        }
        tracing::info!(
            target: "gateway::access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            endpoint = self.endpoint,
            project,
            key_id = self.key_id.as_deref().unwrap_or("-"),
            model,
            provider,
            stream = self.stream,
            status,
            attempts = self.attempts,
            upstream_error = self.error_class.unwrap_or("-"),
            error = error.unwrap_or("-"),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            prompt_tokens = usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens = usage.map_or(0, |u| u.completion_tokens),
            "request"
        );
    }
}

impl Ctx {
    /// The audit record of this request: metadata only, never text or keys.
    fn audit_record(
        &self,
        status: u16,
        usage: Option<&Usage>,
        error: Option<&'static str>,
        elapsed: Duration,
    ) -> crate::audit::Record {
        let usd = |nanos: u64| nanos as f64 / crate::pricing::NANOS_PER_USD;
        let a = &self.audit;
        crate::audit::Record {
            ts: crate::audit::now_ms() - elapsed.as_millis() as i64,
            request_id: self.request_id.to_str().unwrap_or("-").to_string(),
            project: self.project.clone(),
            key_id: self.key_id.clone(),
            client_ip: a.client_ip.clone(),
            endpoint: self.endpoint,
            model: self.model.clone(),
            provider: self.provider.clone(),
            deployment: self.deployment.clone(),
            stream: self.stream,
            attempts: a.attempts.clone(),
            status,
            error,
            error_class: self.error_class,
            latency_ms: ms(elapsed),
            ttfb_ms: a.ttfb.map(ms),
            prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens: usage.map_or(0, |u| u.completion_tokens),
            cached_tokens: usage.map_or(0, Usage::cached_tokens),
            cost_usd: self.cost.map(usd),
            cache: self.cache,
            cache_saved_usd: a.cache_saved_nanos.map(usd),
            dlp: a.dlp.clone(),
            dlp_actions: a.dlp_actions.clone(),
            injection: a.injection.clone(),
            policy: a.policy.clone(),
            policy_version: a.policy_version.clone(),
            config_hash: a.config_hash.clone(),
        }
    }
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // A handler future dropped mid-way (client gone before the response) still counts.
        self.finish(499, None, Some("client_closed"));
        self.state.metrics.inflight.dec();
    }
}

fn bool_label(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// What a stage chain produced: a buffered response, or an upstream stream to relay.
enum Reply {
    Full(Response<Body>, Option<Usage>),
    Stream {
        upstream: Upstream,
        wants_usage: bool,
        /// For providers whose stream events are not OpenAI chunks.
        translate: Option<Box<dyn providers::StreamTranslate>>,
        framing: providers::StreamFraming,
    },
}

/// Serves one request of the client-facing API.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Response<Body> {
    let rt = state.runtime();
    let request_id = request_id(req.headers());
    let origin = req.headers().get(header::ORIGIN).cloned();
    // The origin to echo in CORS headers, if CORS is on and this origin is allowed.
    let cors_origin = match (&rt.server.cors, origin) {
        (Some(c), Some(o)) if origin_allowed(c, &o) => Some(o),
        _ => None,
    };

    if req.method() == Method::OPTIONS {
        let mut resp = match (&rt.server.cors, &cors_origin) {
            (Some(c), Some(_)) => preflight(c),
            _ => Error::MethodNotAllowed {
                method: "OPTIONS".into(),
                path: req.uri().path().into(),
            }
            .into_response(),
        };
        finish_headers(&mut resp, &request_id, cors_origin.as_ref());
        return resp;
    }

    let path = req.uri().path().to_string();
    // Clients configured with a base URL without `/v1` are served too.
    let api_path = path.strip_prefix("/v1").unwrap_or(&path);
    let endpoint = match api_path {
        "/chat/completions" => "chat",
        "/completions" => "completions",
        "/embeddings" => "embeddings",
        "/messages" => "messages",
        "/messages/count_tokens" => "count_tokens",
        "/responses" => "responses",
        p if p == "/models" || p.starts_with("/models/") => "models",
        _ => "other",
    };
    let mut ctx = Ctx::new(state.clone(), request_id.clone(), endpoint);
    ctx.audit.config_hash = rt.ops.config_hash.clone();
    ctx.audit.client_ip = crate::audit::client_ip(rt.ops.audit.client_ip, peer, req.headers());
    let method = req.method().clone();
    let result = if method == Method::POST && endpoint == "chat" {
        chat(state.clone(), rt.clone(), req, &mut ctx).await
    } else if method == Method::POST && endpoint == "messages" {
        messages::messages(state.clone(), rt.clone(), req, &mut ctx).await
    } else if method == Method::POST && endpoint == "completions" {
        completions::completions(state.clone(), rt.clone(), req, &mut ctx).await
    } else if method == Method::POST && endpoint == "responses" {
        responses::responses(state.clone(), rt.clone(), req, &mut ctx).await
    } else if method == Method::POST && endpoint == "count_tokens" {
        messages::count_tokens(&state, &rt, req, &mut ctx)
            .await
            .map(|r| Reply::Full(r, None))
    } else if method == Method::POST && endpoint == "embeddings" {
        embeddings(state.clone(), rt.clone(), req, &mut ctx).await
    } else if method == Method::GET && endpoint == "models" {
        models(&rt, &req, &path, &mut ctx).map(|r| Reply::Full(r, None))
    } else if endpoint == "other" && (method == Method::GET || method == Method::POST) {
        Err(Error::NotFound { path })
    } else {
        Err(Error::MethodNotAllowed {
            method: method.to_string(),
            path,
        })
    };
    let provider = ctx.provider.clone();
    let deployment = ctx.deployment.clone();
    let attempts = ctx.attempts;
    let error_class = ctx.error_class;
    let cache_result = ctx.cache;
    let injection_flagged = ctx.dlp.as_ref().is_some_and(|o| o.injection_flagged);
    let succeeded = result.is_ok();
    let mut resp = match result {
        Ok(Reply::Full(resp, usage)) => {
            if ctx.provider.is_some() {
                ctx.record_ttfb();
            }
            ctx.finish(resp.status().as_u16(), usage, None);
            let mut resp = resp;
            budget::cost_header(&mut resp, ctx.cost);
            resp
        }
        Ok(Reply::Stream {
            upstream,
            wants_usage,
            translate,
            framing,
        }) => {
            let idle = rt.server.stream_idle_timeout;
            let dlp = crate::dlp::guard::stream_guard(ctx.dlp.as_mut(), &state.metrics);
            let body = Body::new(
                relay::Relay::new(upstream.body, ctx, wants_usage, translate, framing, idle)
                    .with_dlp(dlp),
            );
            let mut resp = Response::new(match endpoint {
                "messages" => messages::event_stream(body),
                "responses" => responses::event_stream(body),
                _ => body,
            });
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            resp
        }
        Err(e) => {
            ctx.finish(e.status().as_u16(), None, Some(e.kind()));
            let mut resp = e.into_response();
            if endpoint == "messages" || endpoint == "count_tokens" {
                resp = messages::error_response(resp).await;
            }
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                let allow = if endpoint == "models" { "GET" } else { "POST" };
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            resp
        }
    };
    if succeeded {
        let h = resp.headers_mut();
        for (name, value) in [
            ("x-gateway-provider", provider),
            ("x-gateway-deployment", deployment),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
                h.insert(name, v);
            }
        }
    }
    if attempts > 0 {
        resp.headers_mut()
            .insert("x-gateway-attempts", HeaderValue::from(attempts));
    }
    if let Some(result) = cache_result {
        resp.headers_mut()
            .insert("x-gateway-cache", HeaderValue::from_static(result));
    }
    if injection_flagged {
        resp.headers_mut()
            .insert("x-gateway-injection", HeaderValue::from_static("flagged"));
    }
    if let (false, Some(class)) = (succeeded, error_class) {
        resp.headers_mut()
            .insert("x-gateway-error-class", HeaderValue::from_static(class));
    }
    finish_headers(&mut resp, &request_id, cors_origin.as_ref());
    resp
}

async fn chat(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    let (caller, headers, chat) = parse::<ChatRequest>(&rt, req, ctx).await?;
    run_chat(state, rt, caller, headers, chat, ctx).await
}

/// Everything after parse + auth for a chat request, whichever API the client spoke.
async fn run_chat(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    caller: Caller,
    headers: http::HeaderMap,
    mut chat: ChatRequest,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    if chat.messages.is_empty() {
        return Err(Error::invalid(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    ctx.dlp = crate::dlp::guard::check_chat(
        &state.metrics,
        &caller.project,
        &mut chat,
        &ctx.request_id,
        &mut ctx.audit,
    )?;
    ctx.stream = chat.is_stream();
    let wants_usage = chat.wants_stream_usage();
    let model = chat.model.clone();
    let needs = route::Needs::of_chat(&chat);
    let plan = plan(&state, &rt, &caller, &model, &headers, &needs)?;

    let directives = cache::Directives::of(&headers);
    let cache_key = (caller.project.cache
        && ctx.dlp.as_ref().is_none_or(|o| !o.touches_response()))
    .then(|| {
        // A pinned provider is part of what was asked for.
        let pin = headers
            .get("x-gateway-provider")
            .and_then(|v| v.to_str().ok());
        cache::key(&caller.project.name, &model, pin.unwrap_or(""), &chat)
    })
    .flatten();
    if let Some(key) = &cache_key {
        if let Some(reply) = cached(&state, key, directives, wants_usage, &model, ctx) {
            return Ok(reply);
        }
    }

    let req = budget::Request {
        body: budget::Body::Chat(&mut chat),
        prompt_estimate: needs.prompt_tokens,
    };
    budget::admit(&state, &rt, &caller, &model, &plan, req, ctx).await?;
    let mut payload = Payload::Chat(chat);
    let (upstream, target) =
        retry::run(&state, &rt, plan, &mut payload, &headers, ctx, &model).await?;
    let adapter = providers::adapter(target.provider.kind);
    let framing = adapter.stream_framing();
    let is_stream = upstream
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(framing.content_type()));
    if ctx.stream && is_stream {
        return Ok(Reply::Stream {
            upstream,
            wants_usage,
            translate: adapter.stream(&model, wants_usage),
            framing,
        });
    }
    let (resp, usage, body) = buffered(
        upstream,
        &target,
        &model,
        rt.server.request_timeout,
        ctx.started,
    )
    .await?;
    let resp = crate::dlp::guard::respond(ctx.dlp.as_ref(), &state.metrics, resp, &body)?;
    if let Some(key) = cache_key.filter(|_| directives.store && resp.status() == StatusCode::OK) {
        state.cache.insert(
            key,
            cache::Entry {
                body,
                usage,
                provider: target.provider.name.clone(),
                deployment: target.deployment.clone(),
            },
        );
    }
    Ok(Reply::Full(resp, usage))
}

/// A cache hit as a reply (a plain completion, or replayed as a stream), or None on a miss.
/// Either way the outcome is counted and reported in `x-gateway-cache`.
fn cached(
    state: &AppState,
    key: &[u8; 32],
    directives: cache::Directives,
    wants_usage: bool,
    model: &str,
    ctx: &mut Ctx,
) -> Option<Reply> {
    let hit = directives.lookup.then(|| state.cache.get(key)).flatten();
    // A hit that cannot be replayed (as a stream) counts as a miss.
    let body = hit.as_ref().and_then(|h| {
        if ctx.stream {
            cache::replay_as_stream(&h.body, wants_usage).map(|b| (b, "text/event-stream"))
        } else {
            Some((h.body.clone(), "application/json"))
        }
    });
    let result = match (&body, directives.lookup) {
        (Some(_), _) => "hit",
        (None, true) => "miss",
        (None, false) => "bypass",
    };
    ctx.cache = Some(result);
    state
        .metrics
        .cache_requests
        .with_label_values(&[result])
        .inc();
    let ((body, content_type), hit) = body.zip(hit)?;
    ctx.model = Some(if model.contains('/') {
        state.metrics.passthrough_model_label(model)
    } else {
        model.to_string()
    });
    ctx.provider = Some(hit.provider.clone());
    ctx.deployment = Some(hit.deployment.clone());
    budget::cache_hit(ctx, &hit);
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A hit costs no provider tokens: no usage is recorded against the project.
    Some(Reply::Full(resp, None))
}

async fn embeddings(
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Reply, Error> {
    let (caller, headers, mut emb) = parse::<EmbeddingsRequest>(&rt, req, ctx).await?;
    ctx.dlp = crate::dlp::guard::check_embeddings(
        &state.metrics,
        &caller.project,
        &mut emb,
        &ctx.request_id,
        &mut ctx.audit,
    )?;
    let model = emb.model.clone();
    let plan = plan(
        &state,
        &rt,
        &caller,
        &model,
        &headers,
        &route::Needs::default(),
    )?;
    let req = budget::Request {
        prompt_estimate: emb.input.to_string().len().div_ceil(4) as u64,
        body: budget::Body::Embeddings(&emb),
    };
    budget::admit(&state, &rt, &caller, &model, &plan, req, ctx).await?;
    let mut payload = Payload::Embeddings(emb);
    let (upstream, target) =
        retry::run(&state, &rt, plan, &mut payload, &headers, ctx, &model).await?;
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

/// Stage 4: the candidates for this request, honouring an `x-gateway-provider` pin.
fn plan(
    state: &AppState,
    rt: &Runtime,
    caller: &Caller,
    model: &str,
    headers: &http::HeaderMap,
    needs: &route::Needs,
) -> Result<route::Plan, Error> {
    let pin = headers
        .get("x-gateway-provider")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty());
    route::plan(rt, &state.health, &caller.project, model, pin, needs)
}

/// The request body being sent, encoded afresh for each candidate's wire format.
pub enum Payload {
    Chat(ChatRequest),
    Embeddings(EmbeddingsRequest),
    Completions(completions::CompletionsRequest),
}

impl Payload {
    fn encode(&mut self, t: &Target) -> Result<providers::UpstreamRequest, Error> {
        let adapter = providers::adapter(t.provider.kind);
        match self {
            Self::Chat(c) => adapter.chat(c, &t.upstream_model, &t.provider),
            Self::Embeddings(e) => adapter.embeddings(e, &t.upstream_model, &t.provider),
            Self::Completions(c) => {
                providers::openai::completions(c, &t.upstream_model, &t.provider)
            }
        }
    }
}

/// Parse + auth for a JSON endpoint: the caller first (no body is read for a stranger), then
/// the size-capped body, read under the request deadline, parsed as `T`.
async fn parse<T: serde::de::DeserializeOwned>(
    rt: &Runtime,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<(Caller, http::HeaderMap, T), Error> {
    let caller = auth::authenticate(rt, req.headers())?;
    ctx.set_caller(&caller);
    let (parts, body) = req.into_parts();
    let read = body::read_request(
        body,
        content_length(&parts.headers),
        rt.server.max_body_bytes,
    );
    let bytes = tokio::time::timeout(rt.server.request_timeout, read)
        .await
        .map_err(|_| Error::RequestTimeout)??;
    Ok((caller, parts.headers, openai::parse_json(&bytes)?))
}

/// Reads a whole successful upstream body (within the deadline) and passes it on unchanged;
/// also returns its usage and (a cheap handle to) the body itself.
async fn buffered(
    upstream: Upstream,
    target: &Target,
    model: &str,
    timeout: Duration,
    started: Instant,
) -> Result<(Response<Body>, Option<Usage>, Bytes), Error> {
    let remaining = timeout.saturating_sub(started.elapsed());
    let collected = tokio::time::timeout(
        remaining,
        body::read_limited(upstream.body, None, MAX_RESPONSE_BODY),
    )
    .await;
    let collected = match collected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(Error::UpstreamProtocol {
                provider: target.provider.name.clone(),
                reason: match e {
                    body::ReadError::TooLarge => {
                        format!("response larger than {MAX_RESPONSE_BODY} bytes")
                    }
                    body::ReadError::Body(e) => e,
                },
            })
        }
        Err(_) => {
            return Err(Error::UpstreamTimeout {
                provider: target.provider.name.clone(),
                secs: timeout.as_secs_f64().ceil() as u64,
            })
        }
    };
    let collected = providers::adapter(target.provider.kind).decode_body(collected, model)?;
    let usage = usage_of(&collected);
    let content_type = upstream
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"));
    let mut resp = Response::new(full(collected.clone()));
    *resp.status_mut() = upstream.status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok((resp, usage, collected))
}

/// The `usage` object of a response body. It sits at the end, so it is found from the back and
/// only it is parsed: a large embeddings body is not walked twice.
fn usage_of(body: &[u8]) -> Option<Usage> {
    let key = b"\"usage\"";
    let i = body.windows(key.len()).rposition(|w| w == key)?;
    let rest = &body[i + key.len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    if !rest.starts_with(b"{") {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(rest);
    serde::Deserialize::deserialize(&mut de).ok()
}

fn models(
    rt: &Runtime,
    req: &Request<Incoming>,
    path: &str,
    ctx: &mut Ctx,
) -> Result<Response<Body>, Error> {
    let caller = auth::authenticate(rt, req.headers())?;
    ctx.set_caller(&caller);
    let owner = |m: &crate::config::Model| {
        m.deployments
            .first()
            .and_then(|d| rt.providers.get(d.provider))
            .map_or("gateway", |p| p.name.as_str())
            .to_string()
    };
    let id = path
        .strip_prefix("/v1")
        .unwrap_or(path)
        .strip_prefix("/models/");
    let body = match id {
        None | Some("") => {
            let owners: Vec<(String, String)> = rt
                .models
                .iter()
                .filter(|m| caller.project.allows(&m.name))
                .map(|m| (m.name.clone(), owner(m)))
                .collect();
            let data = owners
                .iter()
                .map(|(id, owned_by)| ModelObject {
                    id,
                    object: "model",
                    created: rt.loaded_at,
                    owned_by,
                })
                .collect();
            serde_json::to_vec(&ModelList {
                object: "list",
                data,
            })
        }
        Some(id) => {
            let not_found = || Error::UnknownModel {
                model: id.to_string(),
            };
            let owned_by = match rt.model(id) {
                Some(m) => owner(m),
                None => id
                    .split_once('/')
                    .and_then(|(p, rest)| rt.provider(p).filter(|_| !rest.is_empty()))
                    .map(|p| p.name.clone())
                    .ok_or_else(not_found)?,
            };
            if !caller.project.allows(id) {
                return Err(not_found());
            }
            serde_json::to_vec(&ModelObject {
                id,
                object: "model",
                created: rt.loaded_at,
                owned_by: &owned_by,
            })
        }
    }
    .map_err(|e| Error::Internal(e.to_string()))?;
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The client's `x-request-id` if it is a sane token, else a fresh one.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::try_from(format!("req_{:032x}", rand::random::<u128>()))
                .unwrap_or(HeaderValue::from_static("req_unknown"))
        })
}

fn origin_allowed(cors: &Cors, origin: &HeaderValue) -> bool {
    cors.any_origin || origin.to_str().is_ok_and(|o| cors.origins.contains(o))
}

fn preflight(cors: &Cors) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        cors.allowed_headers.clone(),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
    resp
}

/// Headers every response carries: the request id, and CORS ones for an allowed origin.
fn finish_headers(
    resp: &mut Response<Body>,
    request_id: &HeaderValue,
    origin: Option<&HeaderValue>,
) {
    let h = resp.headers_mut();
    h.insert("x-request-id", request_id.clone());
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "x-request-id, x-gateway-provider, x-gateway-deployment, x-gateway-upstream-status, x-gateway-attempts, x-gateway-error-class, x-gateway-cache, retry-after",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_from_the_back() {
        let body = br#"{"choices":[{"message":{"content":"the \"usage\" word"}}],"usage": {"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(usage_of(body).map(|u| u.total_tokens), Some(7));
        assert_eq!(usage_of(br#"{"usage":null}"#), None);
        assert_eq!(usage_of(b"not json"), None);
    }
}
