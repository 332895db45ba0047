//! Stage 3, budget: before anything goes upstream, the project's tiers, the per-request caps,
//! the rate limits and a reservation of the worst-case cost against the project's (and the
//! key's) wallet; after the response, settlement of the actual cost at the price of the
//! deployment that served it (`settle`, called once from `Ctx::finish`, so client
//! disconnects, broken streams and upstream errors settle too).
//!
//! The worst case is priced at the most expensive candidate of the plan (fallbacks included),
//! so a fallback never needs a second reservation. Prompt tokens are over-estimated for the
//! reservation (a token per 3 bytes of text, 1,600 per image); output is the request's
//! `max_tokens`, else the model's largest completion from the price table, else
//! `spend.default_max_output_tokens`.
//!
//! When the provider reports no usage, the charge is estimated: prompt at 4 characters per
//! token, output at 4 bytes of generated text per token (the `content` and tool `arguments`
//! strings the relay passed on, capped at the reservation) for streams, and the reserved
//! output for buffered responses; an upstream error that produced nothing costs nothing.
//!
//! Also here: the spend metrics, the ledger's background flusher and compactor (and, with
//! `[state] backend = "redis"`, the shared store's monitor and cooldown listener), and the
//! usage report behind `/admin/usage` and `gateway budget`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts, Registry};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::route::{Plan, Target};
use super::Ctx;
use crate::api::openai::{ChatRequest, Content, EmbeddingsRequest, Usage};
use crate::body::full;
use crate::config::spend::{Policy, ProjectSpend};
use crate::config::validate::{glob_match, Caller};
use crate::config::Runtime;
use crate::error::{Error, SpendRefusal};
use crate::ledger::shared::{Refused, Shared, SharedMetrics, SpendHold};
use crate::ledger::{self, Clock, Denial, Ledger, Standing, WalletSpec};
use crate::pricing::{Price, Tokens, NANOS_PER_USD};
use crate::state::AppState;

/// Tokens an image is assumed to cost in a reservation (OpenAI high detail and Anthropic's
/// largest images stay below this).
const IMAGE_TOKENS: u64 = 1600;
/// Clamping below this many output tokens would only produce truncated answers: refuse.
const MIN_CLAMPED_OUTPUT: u64 = 16;

/// What a request reserved, kept in the request context until it settles.
#[derive(Debug)]
pub struct Admitted {
    hold: SpendHold,
    project: Arc<ProjectSpend>,
    /// Deployment id -> price, for every candidate of the plan.
    prices: Vec<(String, Price)>,
    /// The expected prompt size (4 characters per token), for estimates.
    prompt_estimate: u64,
    images: u64,
    output_reserved: u64,
}

/// The request as the budget stage sees it.
pub struct Request<'a> {
    pub body: Body<'a>,
    /// The expected prompt size (4 characters per token), for estimates.
    pub prompt_estimate: u64,
}

pub enum Body<'a> {
    Chat(&'a mut ChatRequest),
    Embeddings(&'a EmbeddingsRequest),
}

/// Stage 3. On success the reservation is in `ctx` (settled by `Ctx::finish`).
pub(super) async fn admit(
    state: &Arc<AppState>,
    rt: &Runtime,
    caller: &Caller,
    model: &str,
    plan: &Plan,
    req: Request<'_>,
    ctx: &mut Ctx,
) -> Result<(), Error> {
    let prompt_estimate = req.prompt_estimate;
    let mut req = req.body;
    let policy = &rt.spend;
    let project = policy
        .projects
        .get(&caller.project.name)
        .cloned()
        .unwrap_or_else(|| Arc::new(ProjectSpend::open(&caller.project.name)));
    let name = caller.project.name.as_str();
    let refuse = |reason: &'static str, e: SpendRefusal| {
        state
            .metrics
            .spend
            .rejections
            .with_label_values(&[name, reason])
            .inc();
        Error::Spend(Box::new(e))
    };

    if !project.tier_globs.is_empty() && !project.tier_globs.iter().any(|g| glob_match(g, model)) {
        return Err(refuse(
            "tier",
            SpendRefusal {
                status: StatusCode::FORBIDDEN,
                kind: "permission_error",
                code: "model_not_allowed",
                message: format!("this project's tiers do not include the model '{model}'"),
                param: Some("model"),
                retry_after: None,
            },
        ));
    }

    let mut prices = Vec::new();
    for t in plan
        .targets
        .iter()
        .chain(&plan.on_context_length)
        .chain(&plan.on_policy)
    {
        match price_of(policy, t) {
            Some(p) => prices.push((t.deployment.clone(), p)),
            None if project.enforced => {
                return Err(refuse(
                    "unknown_price",
                    SpendRefusal {
                        status: StatusCode::FORBIDDEN,
                        kind: "permission_error",
                        code: "model_price_unknown",
                        message: format!(
                            "the gateway has no price for '{}', and this project has a budget; the operator can add one under [pricing]",
                            t.deployment
                        ),
                        param: Some("model"),
                        retry_after: None,
                    },
                ));
            }
            // Nothing to protect: recorded at zero (the config load warned about it).
            None => prices.push((t.deployment.clone(), Price::default())),
        }
    }

    let (prompt_reserved, images) = match &req {
        Body::Chat(c) => reserve_prompt_tokens(c),
        Body::Embeddings(e) => (e.input.to_string().len().div_ceil(3) as u64, 0),
    };
    let caps = project.caps;
    if let Some(cap) = caps.max_prompt_tokens {
        if prompt_estimate > cap {
            return Err(refuse(
                "max_prompt_tokens",
                invalid(
                    "max_prompt_tokens_exceeded",
                    "messages",
                    format!("the prompt is about {prompt_estimate} tokens, more than this project's cap of {cap}"),
                ),
            ));
        }
    }
    let mut requested = match &req {
        Body::Chat(c) => requested_max(c),
        Body::Embeddings(_) => Some(0),
    };
    if let (Some(cap), Body::Chat(c)) = (caps.max_tokens, &mut req) {
        match requested {
            Some(n)
                if n > cap && caps.max_tokens_action == crate::config::spend::OnExceed::Reject =>
            {
                return Err(refuse(
                    "max_tokens",
                    invalid(
                        "max_tokens_exceeded",
                        "max_tokens",
                        format!("max_tokens {n} is more than this project's cap of {cap}"),
                    ),
                ));
            }
            Some(n) if n <= cap => {}
            _ => {
                set_max(c, cap);
                requested = Some(cap);
            }
        }
    }
    let output = requested.unwrap_or_else(|| {
        prices
            .iter()
            .map(|(_, p)| p.max_output.unwrap_or(policy.default_max_output))
            .max()
            .unwrap_or(policy.default_max_output)
    });
    let worst = |out: u64| {
        prices
            .iter()
            .map(|(_, p)| p.worst_case_nanos(prompt_reserved, out, images))
            .max()
            .unwrap_or(0)
    };
    let affordable = |nanos: u64| {
        prices
            .iter()
            .map(|(_, p)| p.affordable_output(nanos, prompt_reserved, images))
            .min()
            .unwrap_or(u64::MAX)
    };
    let mut output = output;
    if let Some(usd) = caps.max_request_usd {
        let cap = (usd * NANOS_PER_USD) as u64;
        if worst(output) > cap {
            let fits = affordable(cap).min(output);
            match &mut req {
                Body::Chat(c) if project.clamp && fits >= MIN_CLAMPED_OUTPUT => {
                    set_max(c, fits);
                    output = fits;
                }
                _ => {
                    return Err(refuse(
                        "max_request_usd",
                        invalid(
                            "max_request_usd_exceeded",
                            "max_tokens",
                            format!(
                                "this request could cost up to ${} (prompt plus max_tokens), more than this project's cap of ${usd} per request; lower max_tokens",
                                usd_str(worst(output))
                            ),
                        ),
                    ));
                }
            }
        }
    }

    let mut wallets = vec![project.wallet.clone()];
    if let Some(k) = project.keys.get(&caller.key_id) {
        wallets.push(k.clone());
    }
    let mut result = reserve(state, &wallets, worst(output), prompt_reserved + output).await;
    if let (Err(Refused::Denied(Denial::Budget { .. })), Body::Chat(c), true) =
        (&result, &mut req, project.clamp)
    {
        let available = match &state.shared {
            Some(s) => s.available(&wallets).await,
            None => state.ledger.available(&wallets),
        };
        let fits = available.map_or(output, affordable).min(output);
        if fits >= MIN_CLAMPED_OUTPUT {
            set_max(c, fits);
            output = fits;
            result = reserve(state, &wallets, worst(output), prompt_reserved + output).await;
        }
    }
    let hold = match result {
        Ok(h) => h,
        Err(Refused::Denied(d)) => return Err(denied(state, name, d)),
        Err(Refused::Unavailable) => return Err(refuse("shared_state_unavailable", unavailable())),
    };
    ctx.spend = Some(Admitted {
        hold,
        project,
        prices,
        prompt_estimate,
        images,
        output_reserved: output,
    });
    Ok(())
}

/// Reserves in the shared store if there is one, else in this replica's ledger.
async fn reserve(
    state: &AppState,
    wallets: &[Arc<WalletSpec>],
    cost: u64,
    tokens: u64,
) -> Result<SpendHold, Refused> {
    match &state.shared {
        Some(s) => s.reserve(wallets, cost, tokens).await,
        None => state
            .ledger
            .reserve(wallets, cost, tokens)
            .map(SpendHold::Local)
            .map_err(Refused::Denied),
    }
}

/// The shared store is unreachable and the operator chose to fail closed.
fn unavailable() -> SpendRefusal {
    SpendRefusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "server_error",
        code: "shared_state_unavailable",
        message: "spend limits cannot be checked: the shared state store is unreachable and this gateway is set to fail closed; retry shortly".into(),
        param: None,
        retry_after: Some(1),
    }
}

fn invalid(code: &'static str, param: &'static str, message: String) -> SpendRefusal {
    SpendRefusal {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        code,
        message,
        param: Some(param),
        retry_after: None,
    }
}

fn denied(state: &AppState, project: &str, d: Denial) -> Error {
    let m = &state.metrics.spend;
    let e = match d {
        Denial::Budget {
            wallet,
            limit,
            available,
            needed,
            period,
            reset,
        } => {
            m.rejections
                .with_label_values(&[project, "budget_exceeded"])
                .inc();
            let whose = match wallet.split_once("/key:") {
                Some((_, key)) => format!("the budget of key {key} in project '{project}'"),
                None => format!("the budget of project '{project}'"),
            };
            let now = state.ledger.clock.now_secs();
            let reset_text = match reset {
                Some(r) => format!("; it resets at {}", ledger::period::rfc3339(r)),
                None => " (a total budget: it does not reset)".to_string(),
            };
            SpendRefusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "insufficient_quota",
                code: "budget_exceeded",
                message: format!(
                    "{whose} cannot cover this request: ${} remaining of ${} ({period}), up to ${} needed{reset_text}",
                    usd_str(available),
                    usd_str(limit),
                    usd_str(needed),
                ),
                param: None,
                retry_after: reset.map(|r| (r - now).max(1) as u64),
            }
        }
        Denial::Rate {
            wallet,
            limit,
            retry_after_secs,
        } => {
            m.ratelimit
                .with_label_values(&[project, limit.as_str()])
                .inc();
            let whose = match wallet.split_once("/key:") {
                Some((_, key)) => format!("key {key} of project '{project}'"),
                None => format!("project '{project}'"),
            };
            let (code, what) = match limit {
                ledger::Limit::Rpm => ("rate_limit_rpm", "requests per minute"),
                ledger::Limit::Tpm => ("rate_limit_tpm", "tokens per minute"),
                ledger::Limit::Concurrency => ("rate_limit_concurrency", "concurrent requests"),
            };
            SpendRefusal {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "rate_limit_error",
                code,
                message: format!(
                    "{whose} is over its limit of {what}; retry after {retry_after_secs}s"
                ),
                param: None,
                retry_after: Some(retry_after_secs),
            }
        }
    };
    Error::Spend(Box::new(e))
}

fn price_of(policy: &Policy, t: &Target) -> Option<Price> {
    match policy.prices.get(&t.deployment) {
        Some(p) => *p,
        None => policy.price_of(&t.provider, &t.upstream_model),
    }
}

/// Prompt tokens to reserve (an over-estimate) and the number of images.
fn reserve_prompt_tokens(req: &ChatRequest) -> (u64, u64) {
    let mut bytes = 0usize;
    let mut images = 0u64;
    for m in &req.messages {
        match &m.content {
            Some(Content::Text(s)) => bytes += s.len(),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    bytes += p.text.as_ref().map_or(0, String::len);
                    if p.kind.contains("image") {
                        images += 1;
                    }
                }
            }
            None => {}
        }
        if !m.extra.is_empty() {
            bytes += Value::Object(m.extra.clone()).to_string().len();
        }
    }
    if let Some(tools) = req.extra.get("tools") {
        bytes += tools.to_string().len();
    }
    let tokens = bytes.div_ceil(3) as u64 + 4 * req.messages.len() as u64 + 3;
    (tokens + images * IMAGE_TOKENS, images)
}

fn requested_max(req: &ChatRequest) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.extra.get(*k).and_then(Value::as_u64))
}

/// Sets the request's output limit, in the field the client used (`max_tokens` if none).
fn set_max(req: &mut ChatRequest, n: u64) {
    let field = if req.extra.contains_key("max_completion_tokens") {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    req.extra.insert(field.into(), json!(n));
}

/// Settles the request's reservation (once; `Ctx::finish` calls it) and returns the cost.
pub(super) fn settle(ctx: &mut Ctx, status: u16, usage: Option<&Usage>) -> Option<u64> {
    let a = ctx.spend.take()?;
    let price = ctx
        .deployment
        .as_deref()
        .and_then(|d| a.prices.iter().find(|(id, _)| id == d))
        .map(|(_, p)| *p)
        .unwrap_or_default();
    let sent = ctx.upstream_sent.is_some();
    let (tokens, total) = match usage {
        Some(u) => {
            let mut t = Tokens::from_usage(u);
            t.images = a.images;
            (t, u.prompt_tokens + u.completion_tokens)
        }
        // Never reached the provider, or the provider failed without producing anything.
        None if !sent || (status >= 400 && status != 499 && ctx.streamed == 0) => {
            (Tokens::default(), 0)
        }
        None => {
            let output = if ctx.stream {
                ctx.streamed_text.div_ceil(4).min(a.output_reserved)
            } else {
                a.output_reserved
            };
            let t = Tokens {
                input: a.prompt_estimate,
                output,
                images: a.images,
                ..Tokens::default()
            };
            (t, a.prompt_estimate + output)
        }
    };
    let cost = if total == 0 && tokens.images == 0 {
        0
    } else {
        price.cost_nanos(&tokens)
    };
    let project = a.project;
    let m = &ctx.state.metrics.spend;
    let pname = project.wallet.id.as_str();
    if cost > 0 {
        m.cost_usd
            .with_label_values(&[
                pname,
                ctx.model.as_deref().unwrap_or("-"),
                ctx.provider.as_deref().unwrap_or("-"),
            ])
            .inc_by(cost as f64 / NANOS_PER_USD);
    }
    let state = ctx.state.clone();
    a.hold
        .settle(cost, total, move |s| after_settlement(&state, &project, s));
    Some(cost)
}

/// The remaining-budget gauge and the alerts of a settlement (for a shared wallet, once the
/// store answered).
fn after_settlement(state: &AppState, project: &ProjectSpend, settled: ledger::Settled) {
    let m = &state.metrics.spend;
    let pname = project.wallet.id.as_str();
    if let (Some(limit), Some(spent)) = (project.wallet.limit, settled.spent) {
        m.remaining
            .with_label_values(&[pname])
            .set(limit.saturating_sub(spent) as f64 / NANOS_PER_USD);
    }
    for alert in settled.alerts {
        let threshold = format!("{}", alert.threshold);
        m.alerts.with_label_values(&[pname, &threshold]).inc();
        tracing::warn!(
            target: "gateway::budget",
            wallet = alert.wallet,
            threshold = alert.threshold,
            spent_usd = alert.spent as f64 / NANOS_PER_USD,
            limit_usd = alert.limit as f64 / NANOS_PER_USD,
            "budget alert threshold crossed"
        );
    }
}

/// Adds `x-gateway-cost-usd` to a non-streaming response.
pub(super) fn cost_header(resp: &mut Response<crate::body::Body>, cost: Option<u64>) {
    if let Some(v) = cost.and_then(|c| HeaderValue::try_from(usd_str(c)).ok()) {
        resp.headers_mut().insert("x-gateway-cost-usd", v);
    }
}

/// A cache hit costs nothing; counts what it would have cost at the deployment that produced
/// it.
pub(super) fn cache_hit(ctx: &mut Ctx, hit: &crate::cache::Entry) {
    ctx.cost = Some(0);
    let state = &ctx.state;
    let project = ctx.project.as_deref().unwrap_or("-");
    let Some(usage) = hit.usage else { return };
    let rt = state.runtime();
    let price = match rt.spend.prices.get(&hit.deployment) {
        Some(p) => *p,
        None => hit
            .deployment
            .split_once('/')
            .and_then(|(p, m)| rt.spend.price_of(rt.provider(p)?, m)),
    };
    if let Some(p) = price {
        let nanos = p.cost_nanos(&Tokens::from_usage(&usage));
        ctx.audit.cache_saved_nanos = Some(nanos);
        state
            .metrics
            .spend
            .cache_saved
            .with_label_values(&[project])
            .inc_by(nanos as f64 / NANOS_PER_USD);
    }
}

/// Nano-dollars as a decimal USD string (`0.000123450`).
pub fn usd_str(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

// ---------------------------------------------------------------------------------------------
// Metrics

pub struct SpendMetrics {
    pub cost_usd: CounterVec,
    pub remaining: GaugeVec,
    pub rejections: IntCounterVec,
    pub ratelimit: IntCounterVec,
    pub cache_saved: CounterVec,
    pub alerts: IntCounterVec,
    pub shared: SharedMetrics,
}

impl SpendMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            cost_usd: CounterVec::new(
                Opts::new(
                    "gateway_cost_usd_total",
                    "Settled cost of requests in USD, at the price of the deployment that served them.",
                ),
                &["project", "model", "provider"],
            )?,
            remaining: GaugeVec::new(
                Opts::new(
                    "gateway_budget_remaining_usd",
                    "What is left of the project's budget in the current period (settled spend only).",
                ),
                &["project"],
            )?,
            rejections: IntCounterVec::new(
                Opts::new(
                    "gateway_budget_rejections_total",
                    "Requests refused by spend control, by reason (budget_exceeded, max_request_usd, max_tokens, max_prompt_tokens, tier, unknown_price).",
                ),
                &["project", "reason"],
            )?,
            ratelimit: IntCounterVec::new(
                Opts::new(
                    "gateway_ratelimit_rejections_total",
                    "Requests refused by a project or key rate limit (rpm, tpm, concurrency).",
                ),
                &["project", "limit"],
            )?,
            cache_saved: CounterVec::new(
                Opts::new(
                    "gateway_cache_saved_usd_total",
                    "What responses served from the cache would have cost.",
                ),
                &["project"],
            )?,
            alerts: IntCounterVec::new(
                Opts::new(
                    "gateway_budget_alerts_total",
                    "Budget alert thresholds crossed, by wallet's project and threshold.",
                ),
                &["project", "threshold"],
            )?,
            shared: SharedMetrics::register(registry)?,
        };
        registry.register(Box::new(m.cost_usd.clone()))?;
        registry.register(Box::new(m.remaining.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.ratelimit.clone()))?;
        registry.register(Box::new(m.cache_saved.clone()))?;
        registry.register(Box::new(m.alerts.clone()))?;
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger lifecycle

/// The ledger for `rt`: persisted in `[state] dir` (rebuilt from it), else in memory.
pub fn open_ledger(rt: &Runtime) -> Result<Arc<Ledger>, String> {
    let Some(s) = &rt.spend.state else {
        return Ok(Arc::new(Ledger::in_memory(Clock::system())));
    };
    let (ledger, folded) = Ledger::open(&s.dir, s.fsync, Clock::system())
        .map_err(|e| format!("state.dir {}: {e}", s.dir.display()))?;
    if folded.torn > 0 {
        tracing::warn!(
            torn = folded.torn,
            "the spend journal ended in an incomplete record (a crash mid-write); it was skipped"
        );
    }
    tracing::info!(
        wallets = folded.wallets.len(),
        records = folded.records,
        "spend ledger loaded"
    );
    Ok(Arc::new(ledger))
}

/// The shared store for `rt` when `[state] backend = "redis"` (connected on first use).
pub fn open_shared(
    rt: &Runtime,
    ledger: &Arc<Ledger>,
    tasks: &tokio_util::task::TaskTracker,
    metrics: &SpendMetrics,
) -> Option<Arc<Shared>> {
    let settings = rt.spend.shared.clone()?;
    let spool = rt
        .spend
        .state
        .as_ref()
        .map(|s| s.dir.join("shared-pending.json"));
    Some(Shared::new(
        settings,
        ledger.clone(),
        tasks.clone(),
        metrics.shared.clone(),
        spool,
    ))
}

/// The ledger's background work (batched fsync, periodic compaction; with a shared store, its
/// monitor and the cooldown listener); `stop` flushes and compacts once more.
pub struct Background {
    stop: CancellationToken,
    state: Arc<AppState>,
}

pub fn start_background(state: &Arc<AppState>) -> Background {
    let stop = CancellationToken::new();
    let rt = state.runtime();
    if let (Some(s), Some(_)) = (&rt.spend.state, state.ledger.journal()) {
        let window = match s.fsync {
            ledger::Fsync::Batched { window_ms } => Duration::from_millis(window_ms),
            ledger::Fsync::Always => s.snapshot_every,
        };
        let every = s.snapshot_every;
        let (st, cancel) = (state.clone(), stop.clone());
        state.tasks.spawn(async move {
            let mut last_compaction = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(window) => {}
                    () = cancel.cancelled() => return,
                }
                let Some(j) = st.ledger.journal() else { return };
                if let Err(e) = j.sync() {
                    tracing::error!(error = %e, "spend journal fsync failed");
                }
                if last_compaction.elapsed() >= every {
                    last_compaction = tokio::time::Instant::now();
                    let st = st.clone();
                    let _ = tokio::task::spawn_blocking(move || compact(&st)).await;
                }
            }
        });
    }
    if let Some(shared) = &state.shared {
        state
            .tasks
            .spawn(shared.clone().monitor(stop.child_token()));
        state
            .tasks
            .spawn(shared.clone().sync_allowances(stop.child_token()));
        let st = state.clone();
        state.tasks.spawn(
            shared
                .clone()
                .listen_cooldowns(stop.child_token(), move |name, d| {
                    st.health.get(name).cool_down(d)
                }),
        );
    }
    Background {
        stop,
        state: state.clone(),
    }
}

impl Background {
    /// Stops the background task, then forces the journal to disk and compacts it.
    pub fn stop(self) {
        self.stop.cancel();
        if let Some(j) = self.state.ledger.journal() {
            if let Err(e) = j.sync() {
                tracing::error!(error = %e, "spend journal fsync failed");
            }
            compact(&self.state);
        }
    }
}

fn compact(state: &AppState) {
    if let Some(j) = state.ledger.journal() {
        if let Err(e) = j.compact() {
            tracing::error!(error = %e, "spend journal compaction failed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reports

/// One wallet in a usage report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WalletReport {
    pub wallet: String,
    pub project: String,
    pub key_id: Option<String>,
    pub period: &'static str,
    pub spent_usd: f64,
    pub limit_usd: Option<f64>,
    pub remaining_usd: Option<f64>,
    pub reserved_usd: f64,
    pub lifetime_usd: f64,
    pub inflight: u32,
    pub period_start: Option<String>,
    pub resets_at: Option<String>,
}

/// Every configured wallet with its standing, as `standing` reports it.
pub fn report(
    rt: &Runtime,
    now: i64,
    standing: &dyn Fn(&WalletSpec) -> Standing,
) -> Vec<WalletReport> {
    let mut names: Vec<&String> = rt.spend.projects.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Some(p) = rt.spend.projects.get(name) else {
            continue;
        };
        let mut keys: Vec<(&String, &Arc<WalletSpec>)> = p.keys.iter().collect();
        keys.sort_by_key(|(k, _)| *k);
        let wallets = std::iter::once((None, &p.wallet))
            .chain(keys.into_iter().map(|(k, w)| (Some(k.clone()), w)));
        for (key_id, w) in wallets {
            let s = standing(w);
            let usd = |n: u64| n as f64 / NANOS_PER_USD;
            out.push(WalletReport {
                wallet: w.id.clone(),
                project: name.clone(),
                key_id,
                period: w.calendar.label(),
                spent_usd: usd(s.spent),
                limit_usd: w.limit.map(usd),
                remaining_usd: w.limit.map(|l| usd(l.saturating_sub(s.spent))),
                reserved_usd: usd(s.reserved),
                lifetime_usd: usd(s.lifetime),
                inflight: s.inflight,
                period_start: (w.calendar.label() != "total")
                    .then(|| ledger::period::rfc3339(w.calendar.start(now))),
                resets_at: w.calendar.next_reset(now).map(ledger::period::rfc3339),
            });
        }
    }
    out
}

/// `GET /admin/usage` on the admin listener: the live report (from the shared store when there
/// is one), behind the admin token.
pub async fn admin_usage(state: &AppState, headers: &HeaderMap) -> Response<crate::body::Body> {
    let rt = state.runtime();
    let Some(token) = &rt.spend.admin_token else {
        return json_response(
            StatusCode::FORBIDDEN,
            &error_body(
                "set server.admin_token_env to enable /admin/usage",
                "admin_token_not_configured",
            ),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &error_body(
                "missing or wrong admin token (Authorization: Bearer <token>)",
                "invalid_admin_token",
            ),
        );
    }
    let now = state.ledger.clock.now_secs();
    let wallets = match &state.shared {
        None => report(&rt, now, &|w| state.ledger.standing(w)),
        Some(shared) => {
            let specs = wallet_specs(&rt);
            match shared.standings(&specs).await {
                Ok(found) => {
                    let by_id: std::collections::HashMap<&str, Standing> =
                        specs.iter().map(|w| w.id.as_str()).zip(found).collect();
                    report(&rt, now, &|w| {
                        by_id.get(w.id.as_str()).cloned().unwrap_or_default()
                    })
                }
                Err(_) => {
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"error": {"message": "the shared state store is unreachable", "type": "server_error", "param": null, "code": "shared_state_unavailable"}}),
                    )
                }
            }
        }
    };
    let body = json!({
        "generated_at": ledger::period::rfc3339(now),
        "price_table_date": crate::pricing::TABLE_DATE,
        "wallets": wallets,
    });
    json_response(StatusCode::OK, &body)
}

/// Every configured wallet (projects and their keys).
fn wallet_specs(rt: &Runtime) -> Vec<&WalletSpec> {
    rt.spend
        .projects
        .values()
        .flat_map(|p| std::iter::once(&*p.wallet).chain(p.keys.values().map(|k| &**k)))
        .collect()
}

fn error_body(message: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
}

fn json_response(status: StatusCode, v: &Value) -> Response<crate::body::Body> {
    let mut resp = Response::new(full(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The standing of a wallet from what is on disk (for `gateway budget`, which runs beside
/// the server and never opens the journal for writing).
pub fn standing_on_disk(folded: &ledger::Folded, w: &WalletSpec, now: i64) -> Standing {
    let t = folded.wallets.get(&w.id).copied().unwrap_or_default();
    let start = w.calendar.start(now);
    Standing {
        spent: if start > t.period_start { 0 } else { t.spent },
        reserved: 0,
        lifetime: t.lifetime,
        inflight: 0,
        period_start: start,
    }
}

/// The `gateway budget` table, from the shared store with `backend = "redis"`, else from the
/// state directory (read without locking the server).
pub fn print_report(rt: &Runtime, out: &mut impl std::io::Write) -> std::io::Result<bool> {
    if let Some(settings) = &rt.spend.shared {
        let now = Clock::system().now_secs();
        let specs = wallet_specs(rt);
        let store = ledger::redis::Store::new(settings.clone());
        let found = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(std::io::Error::other)?
            .block_on(store.standings(&specs, now));
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                writeln!(out, "cannot read the shared state store: {e}")?;
                return Ok(false);
            }
        };
        let by_id: std::collections::HashMap<&str, Standing> =
            specs.iter().map(|w| w.id.as_str()).zip(found).collect();
        let rows = report(rt, now, &|w| {
            by_id.get(w.id.as_str()).cloned().unwrap_or_default()
        });
        print_rows(out, &rows)?;
        return Ok(true);
    }
    let folded = match &rt.spend.state {
        Some(s) => match ledger::journal::read_state(&s.dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ledger::Folded::default(),
            Err(e) => {
                writeln!(out, "cannot read {}: {e}", s.dir.display())?;
                return Ok(false);
            }
        },
        None => {
            writeln!(
                out,
                "no [state] dir in this config: spend is kept in memory only (see /admin/usage)"
            )?;
            return Ok(false);
        }
    };
    let now = Clock::system().now_secs();
    let rows = report(rt, now, &|w| standing_on_disk(&folded, w, now));
    print_rows(out, &rows)?;
    let known: std::collections::HashSet<&str> = rows.iter().map(|r| r.wallet.as_str()).collect();
    for (id, t) in &folded.wallets {
        if !known.contains(id.as_str()) {
            writeln!(
                out,
                "{id:<32} (not in this config: ${:.4} lifetime)",
                t.lifetime as f64 / NANOS_PER_USD
            )?;
        }
    }
    if folded.torn > 0 {
        writeln!(
            out,
            "note: {} incomplete journal record(s) skipped",
            folded.torn
        )?;
    }
    Ok(true)
}

fn print_rows(out: &mut impl std::io::Write, rows: &[WalletReport]) -> std::io::Result<()> {
    let money = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("${v:.4}"));
    writeln!(
        out,
        "{:<32} {:<8} {:>12} {:>12} {:>12} {:<21}",
        "WALLET", "PERIOD", "SPENT", "LIMIT", "REMAINING", "RESETS"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<32} {:<8} {:>12} {:>12} {:>12} {:<21}",
            r.wallet,
            r.period,
            money(Some(r.spent_usd)),
            money(r.limit_usd),
            money(r.remaining_usd),
            r.resets_at.as_deref().unwrap_or("never"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_strings() {
        assert_eq!(usd_str(0), "0.000000000");
        assert_eq!(usd_str(1_234_567_891), "1.234567891");
        assert_eq!(usd_str(7_000_000), "0.007000000");
    }

    #[test]
    fn prompt_reservation_over_estimates() {
        let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": "abcdefghijkl"},
            {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {"url": "x"}}]}
        ]}))
        .unwrap();
        let (tokens, images) = reserve_prompt_tokens(&req);
        assert_eq!(images, 1);
        assert_eq!(tokens, 5 + 8 + 3 + IMAGE_TOKENS);
    }
}
