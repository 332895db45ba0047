//! The guard stage of the request path, and the way back.
//!
//! `check_chat` / `check_embeddings` walk every text-bearing part of a request (message
//! contents, string or multi-part; tool-call arguments; tool results; `name` fields;
//! embeddings input), apply the project's policy in place, run the injection guard on user
//! content and tool results, and either return what the response needs (pseudonyms to
//! restore, whether to scan it) or a 400 that names entity types, never values. Anything that
//! cannot be scanned (a part type with opaque text, token-array embeddings input) blocks the
//! request: the guard fails closed.
//!
//! `respond` restores pseudonyms in (and scans, if the policy says so) a buffered completion;
//! `stream.rs` does the same for streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response};
use serde_json::Value;

use super::injection::{self, InjectionAction};
use super::policy::{Action, Policy, Pseudonyms};
use super::stream::StreamGuard;
use crate::api::openai::{ChatRequest, Content, EmbeddingsRequest};
use crate::body::{full, Body};
use crate::config::Project;
use crate::error::Error;
use crate::metrics::Metrics;

/// What the rest of the request needs from the guard.
#[derive(Debug)]
pub struct Outcome {
    pub policy: Arc<Policy>,
    pub pseudonyms: Pseudonyms,
    pub injection_flagged: bool,
    project: String,
}

impl Outcome {
    /// Whether the response must be rewritten (pseudonyms to restore, or scanning on). Such
    /// requests bypass the response cache, whose entries are shared between requests.
    pub fn touches_response(&self) -> bool {
        !self.pseudonyms.is_empty() || self.policy.scan_responses
    }
}

/// Counts of one request, for metrics and the audit line (types and actions only).
#[derive(Default)]
struct Tally {
    counts: BTreeMap<(String, &'static str), u64>,
    blocked: Vec<String>,
    unscannable: usize,
    images: usize,
    injection: f32,
}

struct Walker<'a> {
    policy: &'a Policy,
    pseudo: Pseudonyms,
    tally: Tally,
}

impl Walker<'_> {
    /// Applies the policy to one text in place; `untrusted` texts also go through the
    /// injection guard.
    fn text(&mut self, s: &mut String, untrusted: bool) {
        if untrusted && self.policy.injection != InjectionAction::Off {
            self.tally.injection = self.tally.injection.max(injection::score(s));
        }
        let findings = self.policy.findings(s, self.policy.sensitivity);
        if findings.is_empty() {
            return;
        }
        for f in &findings {
            let name = self.policy.kind_name(f.kind).to_string();
            let action = self.policy.action(f.kind);
            if action == Action::Block && !self.tally.blocked.contains(&name) {
                self.tally.blocked.push(name.clone());
            }
            *self
                .tally
                .counts
                .entry((name, action.as_str()))
                .or_default() += 1;
        }
        if let Some(new) = self.policy.transform(s, &findings, Some(&mut self.pseudo)) {
            *s = new;
        }
    }

    fn value_string(&mut self, v: Option<&mut Value>, untrusted: bool) {
        if let Some(Value::String(s)) = v {
            self.text(s, untrusted);
        }
    }
}

/// The guard for a chat request. Ok(None): the project has no policy.
pub fn check_chat(
    metrics: &Metrics,
    project: &Project,
    chat: &mut ChatRequest,
    request_id: &HeaderValue,
    facts: &mut crate::audit::Facts,
) -> Result<Option<Outcome>, Error> {
    let Some(policy) = project.policy.clone() else {
        return Ok(None);
    };
    let mut w = Walker {
        policy: &policy,
        pseudo: Pseudonyms::default(),
        tally: Tally::default(),
    };
    for m in &mut chat.messages {
        // Users and tools (indirect injection) are untrusted; system prompts are the
        // operator's and assistant turns the model's own.
        let untrusted = matches!(m.role.as_str(), "user" | "tool" | "function");
        match &mut m.content {
            Some(Content::Text(s)) => w.text(s, untrusted),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p.kind.as_str() {
                        "text" | "input_text" | "output_text" => {
                            if let Some(t) = p.text.as_mut() {
                                w.text(t, untrusted);
                            }
                        }
                        "image_url" | "input_image" | "image" => w.tally.images += 1,
                        _ => w.tally.unscannable += 1,
                    }
                }
            }
            None => {}
        }
        w.value_string(m.extra.get_mut("name"), false);
        if let Some(Value::Array(calls)) = m.extra.get_mut("tool_calls") {
            for c in calls {
                let f = c.get_mut("function");
                if let Some(f) = f {
                    w.value_string(f.get_mut("arguments"), false);
                }
            }
        }
        if let Some(f) = m.extra.get_mut("function_call") {
            w.value_string(f.get_mut("arguments"), false);
        }
    }
    finish(metrics, &project.name, policy.clone(), w, request_id, facts)
}

/// The guard for an embeddings request.
pub fn check_embeddings(
    metrics: &Metrics,
    project: &Project,
    emb: &mut EmbeddingsRequest,
    request_id: &HeaderValue,
    facts: &mut crate::audit::Facts,
) -> Result<Option<Outcome>, Error> {
    let Some(policy) = project.policy.clone() else {
        return Ok(None);
    };
    let mut w = Walker {
        policy: &policy,
        pseudo: Pseudonyms::default(),
        tally: Tally::default(),
    };
    match &mut emb.input {
        Value::String(s) => w.text(s, true),
        Value::Array(items) => {
            for it in items {
                match it {
                    Value::String(s) => w.text(s, true),
                    // Token ids cannot be scanned without the model's tokenizer.
                    _ => w.tally.unscannable += 1,
                }
            }
        }
        _ => w.tally.unscannable += 1,
    }
    finish(metrics, &project.name, policy.clone(), w, request_id, facts)
}

fn finish(
    metrics: &Metrics,
    project: &str,
    policy: Arc<Policy>,
    w: Walker,
    request_id: &HeaderValue,
    facts: &mut crate::audit::Facts,
) -> Result<Option<Outcome>, Error> {
    let Walker { pseudo, tally, .. } = w;
    // The audit record gets counts per entity type and per action, never values; blocked
    // requests too.
    let mut findings = std::collections::BTreeMap::new();
    let mut actions = std::collections::BTreeMap::new();
    for ((entity, action), n) in &tally.counts {
        *findings.entry(entity.clone()).or_insert(0) += n;
        *actions.entry((*action).to_string()).or_insert(0) += n;
    }
    facts.dlp = Some(findings);
    facts.dlp_actions = Some(actions);
    facts.policy = Some(policy.name.clone());
    facts.policy_version = Some(policy.version.to_string());
    for ((entity, action), n) in &tally.counts {
        metrics
            .dlp_findings
            .with_label_values(&[project, entity, action])
            .inc_by(*n);
    }
    let flagged =
        policy.injection != InjectionAction::Off && tally.injection >= policy.injection_threshold;
    facts.injection = Some(
        match (flagged, policy.injection) {
            (false, _) => "none",
            (true, InjectionAction::Block) => "blocked",
            (true, _) => "flagged",
        }
        .into(),
    );
    if flagged {
        metrics
            .injection_flagged
            .with_label_values(&[project, policy.injection.as_str()])
            .inc();
    }
    let summary: Vec<String> = tally
        .counts
        .iter()
        .map(|((e, a), n)| format!("{e}:{a}:{n}"))
        .collect();
    tracing::info!(
        target: "gateway::dlp",
        request_id = request_id.to_str().unwrap_or("-"),
        project,
        policy = %policy.name,
        policy_version = policy.version,
        findings = %summary.join(","),
        images = tally.images,
        unscannable = tally.unscannable,
        injection_score = tally.injection,
        injection_flagged = flagged,
        "dlp"
    );
    let block = |reason: &str, code: String, message: String| {
        metrics
            .dlp_blocked
            .with_label_values(&[project, reason])
            .inc();
        Err(Error::PolicyBlocked { message, code })
    };
    if tally.unscannable > 0 {
        return block(
            "unscannable",
            "dlp_unscannable".into(),
            format!(
                "request blocked by data protection policy '{}': {} part(s) cannot be scanned (only text and images are accepted)",
                policy.name, tally.unscannable
            ),
        );
    }
    if !tally.blocked.is_empty() {
        let mut types = tally.blocked.clone();
        types.sort();
        return block(
            "entity",
            format!("dlp_blocked:{}", types.join(",")),
            format!(
                "request blocked by data protection policy '{}': it contains {}",
                policy.name,
                types.join(", ")
            ),
        );
    }
    if flagged && policy.injection == InjectionAction::Block {
        return block(
            "injection",
            "prompt_injection_blocked".into(),
            format!(
                "request blocked by policy '{}': likely prompt injection",
                policy.name
            ),
        );
    }
    Ok(Some(Outcome {
        policy,
        pseudonyms: pseudo,
        injection_flagged: flagged,
        project: project.to_string(),
    }))
}

/// One response text: scanned (if the policy says so), then pseudonyms restored.
pub(crate) fn response_text(
    o: &Outcome,
    text: &str,
    counter: Option<&prometheus::IntCounterVec>,
) -> Option<String> {
    let mut cur: Option<String> = None;
    if o.policy.scan_responses {
        let f = o.policy.findings(text, o.policy.sensitivity);
        if let Some(m) = counter {
            for x in &f {
                let action = match o.policy.action(x.kind) {
                    Action::Pseudonymize | Action::Block => Action::Redact,
                    a => a,
                };
                m.with_label_values(&[&o.project, o.policy.kind_name(x.kind), action.as_str()])
                    .inc();
            }
        }
        cur = o.policy.transform(text, &f, None);
    }
    let base = cur.as_deref().unwrap_or(text);
    match o.pseudonyms.restore(base) {
        Some(r) => Some(r),
        None => cur,
    }
}

/// Rewrites a buffered chat completion for the client. Non-2xx answers pass unchanged; a body
/// that cannot be read as a completion is refused (fail closed).
pub fn respond(
    o: Option<&Outcome>,
    metrics: &Metrics,
    resp: Response<Body>,
    body: &Bytes,
) -> Result<Response<Body>, Error> {
    let Some(o) = o.filter(|o| o.touches_response()) else {
        return Ok(resp);
    };
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let mut v: Value = serde_json::from_slice(body).map_err(|_| Error::PolicyBlocked {
        message: "the provider's response could not be checked by the data protection policy"
            .into(),
        code: "dlp_unscannable_response".into(),
    })?;
    let mut changed = false;
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            let Some(msg) = c.get_mut("message") else {
                continue;
            };
            if let Some(Value::String(s)) = msg.get_mut("content") {
                if let Some(new) = response_text(o, s, Some(&metrics.dlp_findings)) {
                    *s = new;
                    changed = true;
                }
            }
            if let Some(Value::Array(calls)) = msg.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(a)) = call
                        .get_mut("function")
                        .and_then(|f| f.get_mut("arguments"))
                    {
                        if let Some(new) = response_text(o, a, Some(&metrics.dlp_findings)) {
                            *a = new;
                            changed = true;
                        }
                    }
                }
            }
        }
    }
    if !changed {
        return Ok(resp);
    }
    let bytes = serde_json::to_vec(&v).map_err(|e| Error::Internal(e.to_string()))?;
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, full(Bytes::from(bytes))))
}

/// The stream filter for this request's response, when it needs one.
pub fn stream_guard(o: Option<&mut Outcome>, metrics: &Metrics) -> Option<StreamGuard> {
    let o = o.filter(|o| o.touches_response())?;
    Some(StreamGuard::new(
        Outcome {
            policy: o.policy.clone(),
            pseudonyms: std::mem::take(&mut o.pseudonyms),
            injection_flagged: o.injection_flagged,
            project: o.project.clone(),
        },
        metrics.dlp_findings.clone(),
    ))
}
