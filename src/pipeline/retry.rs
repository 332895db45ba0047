//! How a failed attempt is judged and what happens next: the error classes (rate-limited,
//! overloaded, server error, timeout, connection failure, auth/permission, not found, context
//! length, content policy, bad request), which of them move on to another candidate, the
//! backoff before trying a deployment again, and the global retry budget that keeps a total
//! outage from multiplying the load on providers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::forward::{self, Upstream};
use super::route::{Plan, Target};
use super::{Ctx, Payload};
use crate::config::{Routing, Runtime};
use crate::error::Error;
use crate::health::Admission;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    RateLimited,
    Overloaded,
    ServerError,
    Timeout,
    Connect,
    /// 401/403 about the provider key or its tier (not the client's fault).
    Auth,
    /// The provider does not know the model (a deployment misconfigured).
    NotFound,
    ContextLength,
    Policy,
    BadRequest,
    Other,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::ContextLength => "context_length",
            Self::Policy => "policy",
            Self::BadRequest => "bad_request",
            Self::Other => "other",
        }
    }

    /// Whether another candidate (or the same one after a backoff) may succeed where this
    /// attempt failed. The request itself is at fault otherwise, and goes back at once.
    pub fn moves_on(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Overloaded
                | Self::ServerError
                | Self::Timeout
                | Self::Connect
                | Self::Auth
                | Self::NotFound
        )
    }

    /// Whether the key that was used should rest (another key of the pool may still work).
    pub fn blames_key(self) -> bool {
        matches!(self, Self::RateLimited | Self::Auth)
    }
}

/// The class of a failed attempt, and how long the provider asked to wait, if it did.
pub fn classify(err: &Error) -> (Class, Option<Duration>) {
    match err {
        Error::UpstreamStatus(f) => {
            let body = String::from_utf8_lossy(&f.body).to_ascii_lowercase();
            let has = |words: &[&str]| words.iter().any(|w| body.contains(w));
            let class = match f.status.as_u16() {
                429 => Class::RateLimited,
                // 402: the provider account is out of credit; another provider may not be.
                401 | 402 => Class::Auth,
                403 if has(&["quota", "rate limit", "rate_limit", "too many requests"]) => {
                    Class::RateLimited
                }
                403 | 400
                    if has(&[
                        "content_filter",
                        "content_policy",
                        "content management policy",
                        "moderation",
                        "safety",
                    ]) =>
                {
                    Class::Policy
                }
                403 => Class::Auth,
                404 => Class::NotFound,
                408 => Class::Timeout,
                400 | 413
                    if has(&[
                        "context_length",
                        "context length",
                        "maximum context",
                        "prompt is too long",
                        "too many tokens",
                        "input is too long",
                    ]) =>
                {
                    Class::ContextLength
                }
                400 | 409 | 413 | 422 => Class::BadRequest,
                503 | 529 => Class::Overloaded,
                s if s >= 500 => Class::ServerError,
                _ => Class::Other,
            };
            let retry_after = retry_after(f.retry_after.as_ref(), f.retry_after_ms.as_ref());
            (class, retry_after)
        }
        Error::UpstreamTimeout { .. } => (Class::Timeout, None),
        Error::UpstreamUnreachable { .. } => (Class::Connect, None),
        Error::UpstreamProtocol { .. } => (Class::ServerError, None),
        _ => (Class::Other, None),
    }
}

/// `retry-after-ms` (milliseconds) wins over `retry-after` (seconds); HTTP dates are not used.
fn retry_after(
    secs: Option<&http::HeaderValue>,
    ms: Option<&http::HeaderValue>,
) -> Option<Duration> {
    let parse = |v: Option<&http::HeaderValue>| {
        v?.to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    parse(ms)
        .map(|n| Duration::from_secs_f64(n / 1000.0))
        .or_else(|| parse(secs).map(Duration::from_secs_f64))
}

/// Exponential backoff with full jitter before the `n`th retry (n >= 1) of a deployment.
pub fn backoff(routing: &Routing, n: u32) -> Duration {
    let exp = routing.backoff_base.saturating_mul(
        1u32.checked_shl(n.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(routing.backoff_max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// A token bucket of retries: every request adds `ratio` of a token (up to a cap), every retry
/// takes one. `min` tokens are always there, so a quiet gateway can still retry.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            tokens: Mutex::new(0.0),
        }
    }
}

impl RetryBudget {
    pub fn deposit(&self, routing: &Routing) {
        if let Ok(mut t) = self.tokens.lock() {
            let cap = f64::from(routing.retry_budget_min).max(100.0);
            *t = (*t + routing.retry_budget_ratio).min(cap);
        }
    }

    /// Whether a retry would be granted now (without taking it).
    pub fn has_token(&self, routing: &Routing) -> bool {
        self.tokens
            .lock()
            .is_ok_and(|t| *t + f64::from(routing.retry_budget_min) >= 1.0)
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_spend(&self, routing: &Routing) -> bool {
        let Ok(mut t) = self.tokens.lock() else {
            return false;
        };
        if *t + f64::from(routing.retry_budget_min) >= 1.0 {
            *t -= 1.0;
            // Borrowing against `min` is allowed down to -min, no further.
            *t = t.max(-f64::from(routing.retry_budget_min));
            true
        } else {
            false
        }
    }
}

/// Stage 5 with its retries: tries the candidates in order until one answers with a success
/// status, moving on after failures that another candidate may not have, backing off before a
/// deployment is tried again, and giving up when attempts, the retry budget or the request
/// deadline run out. Only response headers are awaited here, so nothing is retried once a
/// byte has gone to the client. Returns the response and the candidate that produced it.
pub(super) async fn run(
    state: &AppState,
    rt: &Runtime,
    plan: Plan,
    payload: &mut Payload,
    headers: &HeaderMap,
    ctx: &mut Ctx,
    model: &str,
) -> Result<(Upstream, Target), Error> {
    let routing = &rt.routing;
    let deadline = ctx.started + rt.server.request_timeout;
    state.retry_budget.deposit(routing);
    let mut targets = plan.targets;
    let mut on_context_length = plan.on_context_length;
    let mut on_policy = plan.on_policy;
    let mut tried = vec![0u32; targets.len()];
    // Candidates that cannot succeed for this request whatever the wait (unknown model,
    // refused credentials with no other key).
    let mut dead = vec![false; targets.len()];
    let mut last: Option<(Error, Class, Option<Duration>)> = None;
    // Why the first candidate that could not take the request refused it.
    let mut refused: Option<Error> = None;
    let mut previous_group: Option<String> = None;
    for attempt in 0..routing.max_attempts {
        let mut chosen = choose(state, &targets, &tried, &dead, attempt == 0);
        let mut waited = false;
        if chosen.is_none() {
            // Everything left is resting. If the provider asked for a short pause, wait for
            // the first to come back rather than give up.
            let soonest = targets
                .iter()
                .enumerate()
                .filter(|(i, _)| !dead[*i])
                .filter_map(|(_, t)| state.health.get(&t.deployment).cooling_for())
                .min();
            let asked = last.as_ref().and_then(|l| l.2);
            if let (Some(wait), Some(_)) = (soonest, asked) {
                if wait <= routing.max_retry_after
                    && Instant::now() + wait < deadline
                    && state.retry_budget.has_token(routing)
                {
                    tokio::time::sleep(wait).await;
                    waited = true;
                    chosen = choose(state, &targets, &tried, &dead, false);
                }
            }
        }
        let Some((i, mut admission)) = chosen else {
            break;
        };
        let target = &targets[i];
        // Encoded before anything else: a wire format that cannot carry this request (an
        // image URL a vendor cannot fetch, more choices than it returns) rules out this
        // deployment only, not the others.
        let req = match payload.encode(target) {
            Ok(req) => req,
            Err(e) => {
                dead[i] = true;
                refused.get_or_insert(e);
                continue;
            }
        };
        if let Some((_, class, retry_after)) = &last {
            let mut wait = Duration::ZERO;
            if tried[i] > 0 && !waited {
                // The same deployment again: wait as asked, or back off; a fresh key of its
                // pool after a key-specific failure needs no wait.
                let fresh_key = class.blames_key() && has_rested_key(state, target);
                wait = match retry_after {
                    _ if fresh_key => Duration::ZERO,
                    Some(ra) if *ra > routing.max_retry_after => break,
                    Some(ra) => *ra,
                    None => backoff(routing, tried[i]),
                };
                if Instant::now() + wait >= deadline {
                    break;
                }
            }
            // The budget is only charged for a retry that goes ahead.
            if !state.retry_budget.try_spend(routing) {
                state
                    .metrics
                    .retries
                    .with_label_values(&["budget_exhausted"])
                    .inc();
                break;
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            state
                .metrics
                .retries
                .with_label_values(&[class.as_str()])
                .inc();
            if let (Some(from), Some(to)) = (previous_group.as_deref(), target.group.as_deref()) {
                if from != to {
                    state.metrics.fallbacks.with_label_values(&[from, to]).inc();
                }
            }
        }
        tried[i] += 1;
        previous_group.clone_from(&target.group);
        ctx.set_target(model, target);
        let timeout = target
            .timeout
            .unwrap_or(routing.attempt_timeout)
            .min(deadline.saturating_duration_since(Instant::now()));
        ctx.upstream_sent = Some(Instant::now());
        let (key, sent) = forward::send(
            state,
            &target.provider,
            req,
            headers,
            &ctx.request_id,
            timeout,
        );
        let result = sent.await;
        let metrics = &state.metrics;
        // A `provider/model` string is the client's choice: its label is capped.
        let deployment_label = match target.group {
            Some(_) => target.deployment.clone(),
            None => metrics.passthrough_model_label(&target.deployment),
        };
        match result {
            Ok(up) => {
                admission.succeeded(Some(up.sent_at.elapsed()));
                metrics
                    .upstream_requests
                    .with_label_values(&[&target.provider.name, &deployment_label, "ok"])
                    .inc();
                if target.group.is_some() {
                    metrics
                        .cooldown
                        .with_label_values(&[&target.deployment])
                        .set(0);
                }
                ctx.error_class = None;
                ctx.audit.end_attempt("ok", None);
                // Held until the response is finished, so a stream counts as busy.
                ctx.admission = Some(admission);
                return Ok((up, target.clone()));
            }
            Err(e) => {
                let (class, retry_after) = classify(&e);
                metrics
                    .upstream_requests
                    .with_label_values(&[&target.provider.name, &deployment_label, class.as_str()])
                    .inc();
                ctx.error_class = Some(class.as_str());
                let waited = ctx.upstream_sent.map(|t| t.elapsed());
                ctx.audit.end_attempt(class.as_str(), waited);
                if !class.moves_on() {
                    // The request is at fault, not the deployment: no retry, no penalty; but a
                    // prompt too long or refused by policy may suit the groups set aside for it.
                    let switch = match class {
                        Class::ContextLength => std::mem::take(&mut on_context_length),
                        Class::Policy => std::mem::take(&mut on_policy),
                        _ => Vec::new(),
                    };
                    if switch.is_empty() {
                        return Err(e);
                    }
                    tried = vec![0; switch.len()];
                    dead = vec![false; switch.len()];
                    targets = switch;
                    last = Some((e, class, None));
                    continue;
                }
                let pool = target.provider.keys.len();
                if class == Class::NotFound || (class == Class::Auth && pool <= 1) {
                    dead[i] = true;
                }
                if class.blames_key() {
                    if let Some(k) = key {
                        let rest = retry_after.unwrap_or(routing.cooldown).min(MAX_COOLDOWN);
                        state.health.key(&target.provider.pool, k).cool_down(rest);
                        if let Some(shared) = &state.shared {
                            shared.publish_cooldown(&format!("{}#{k}", target.provider.pool), rest);
                        }
                    }
                }
                // With other keys in the pool, a key's rate limit is not the deployment's.
                let deployment_wait = if class.blames_key() && pool > 1 {
                    None
                } else {
                    retry_after.map(|d| d.min(MAX_COOLDOWN))
                };
                let tripped = admission.failed(routing, deployment_wait);
                if let (true, Some(shared)) = (tripped, &state.shared) {
                    // Every replica benches the deployment, not only the one that saw it fail.
                    if let Some(d) = state.health.get(&target.deployment).cooling_for() {
                        shared.publish_cooldown(&target.deployment, d);
                    }
                }
                if tripped && target.group.is_some() {
                    metrics
                        .cooldown
                        .with_label_values(&[&target.deployment])
                        .set(1);
                }
                last = Some((e, class, retry_after));
            }
        }
    }
    Err(match (last, refused) {
        (Some((e, _, _)), _) => e,
        (None, Some(e)) => e,
        (None, None) => Error::Internal("no upstream attempt could be made".into()),
    })
}

/// The longest a deployment or key is benched, whatever a provider's Retry-After says.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// The next candidate: the first not yet tried that is not cooling down, else the first tried
/// one that is not; on the first attempt, if every candidate is cooling down, the one that
/// recovers soonest (so an outage reports the provider's own error and a recovery is seen).
fn choose(
    state: &AppState,
    targets: &[Target],
    tried: &[u32],
    dead: &[bool],
    first: bool,
) -> Option<(usize, Admission)> {
    for retry in [false, true] {
        for (i, t) in targets.iter().enumerate() {
            if (tried[i] > 0) != retry || dead[i] {
                continue;
            }
            if let Ok(a) = state.health.get(&t.deployment).admit() {
                return Some((i, a));
            }
        }
    }
    if !first {
        return None;
    }
    let (i, t) = targets.iter().enumerate().min_by_key(|(_, t)| {
        state
            .health
            .get(&t.deployment)
            .cooling_for()
            .unwrap_or_default()
    })?;
    Some((i, state.health.get(&t.deployment).force()))
}

fn has_rested_key(state: &AppState, target: &Target) -> bool {
    (0..target.provider.keys.len()).any(|k| {
        state
            .health
            .key(&target.provider.name, k)
            .cooling_for()
            .is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamFailure;
    use http::{HeaderValue, StatusCode};

    fn status(code: u16, body: &str, ra: Option<&'static str>) -> Error {
        Error::UpstreamStatus(Box::new(UpstreamFailure {
            provider: "p".into(),
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            content_type: None,
            retry_after: ra.map(HeaderValue::from_static),
            retry_after_ms: None,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }))
    }

    #[test]
    fn classes() {
        assert_eq!(
            classify(&status(429, "", Some("3"))),
            (Class::RateLimited, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify(&status(
                403,
                r#"{"error":{"code":"insufficient_quota"}}"#,
                None
            ))
            .0,
            Class::RateLimited
        );
        assert_eq!(
            classify(&status(
                403,
                r#"{"error":{"message":"Project does not have access to model"}}"#,
                None
            ))
            .0,
            Class::Auth
        );
        assert_eq!(
            classify(&status(
                400,
                r#"{"error":{"code":"context_length_exceeded"}}"#,
                None
            ))
            .0,
            Class::ContextLength
        );
        assert_eq!(
            classify(&status(400, r#"{"error":{"code":"content_filter"}}"#, None)).0,
            Class::Policy
        );
        assert_eq!(classify(&status(400, "bad", None)).0, Class::BadRequest);
        assert_eq!(classify(&status(529, "", None)).0, Class::Overloaded);
        assert_eq!(classify(&status(500, "", None)).0, Class::ServerError);
        assert!(
            Class::Auth.moves_on()
                && !Class::BadRequest.moves_on()
                && !Class::ContextLength.moves_on()
        );
    }

    #[test]
    fn budget_caps_retries() {
        let routing = crate::config::Runtime::build(&toml_config(), &|_| None)
            .map(|r| r.routing)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let b = RetryBudget::default();
        let mut granted = 0;
        for _ in 0..100 {
            if b.try_spend(&routing) {
                granted += 1;
            }
        }
        assert_eq!(granted, routing.retry_budget_min as usize);
        for _ in 0..50 {
            b.deposit(&routing);
        }
        assert!(b.try_spend(&routing), "deposits refill the budget");
    }

    fn toml_config() -> crate::config::Config {
        figment::Figment::new()
            .extract()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let routing = crate::config::Runtime::build(&toml_config(), &|_| None)
            .map(|r| r.routing)
            .unwrap_or_else(|e| panic!("{e:?}"));
        for n in 1..20 {
            assert!(backoff(&routing, n) <= routing.backoff_max);
        }
    }
}
