//! Stage 4, route: a public model name becomes an ordered list of candidate deployments. A
//! `[[models]]` name wins and yields its group's deployments in the order its strategy picks,
//! then those of its `fallbacks` groups; otherwise `<provider>/<upstream-model>` goes straight
//! to that configured provider (OpenRouter-style strings). The project's allow-list is checked
//! on the requested name and on each fallback group. A request may pin one provider with
//! `x-gateway-provider` when its project allows it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::api::openai::{ChatRequest, Content};
use crate::config::{Capabilities, Deployment, Model, Project, Provider, Runtime, Strategy};
use crate::error::Error;
use crate::health::Registry;

/// How often `least-latency` tries a deployment other than the fastest, so a recovered one
/// is noticed.
const EXPLORE_PROBABILITY: f64 = 0.05;

/// Tokens an image is assumed to cost when estimating a prompt's size.
const IMAGE_TOKENS: u64 = 800;
/// Output tokens assumed for a cost estimate when the request sets no maximum.
const EXPECTED_OUTPUT_TOKENS: u64 = 256;

/// What a request needs from a deployment: capabilities, and room in its context window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub caps: Capabilities,
    /// Estimated prompt tokens (about four characters per token).
    pub prompt_tokens: u64,
    /// The request's output limit, if it set one.
    pub max_tokens: Option<u64>,
}

/// Whether `d` may serve `project` under its data-residency rule.
fn in_region(project: &Project, d: &Deployment) -> bool {
    project.regions.is_empty()
        || d.region
            .as_ref()
            .is_some_and(|r| project.regions.iter().any(|p| p == r))
}

impl Needs {
    pub fn of_chat(req: &ChatRequest) -> Self {
        let mut caps = Capabilities {
            streaming: req.is_stream(),
            ..Capabilities::default()
        };
        let mut chars = 0u64;
        let mut images = 0u64;
        for m in &req.messages {
            chars += 16;
            match &m.content {
                Some(Content::Text(t)) => chars += t.len() as u64,
                Some(Content::Parts(parts)) => {
                    for p in parts {
                        chars += p.text.as_ref().map_or(0, |t| t.len() as u64);
                        if p.kind == "image_url" || p.kind == "input_image" {
                            images += 1;
                        }
                    }
                }
                None => {}
            }
            if let Some(calls) = m.extra.get("tool_calls") {
                chars += calls.to_string().len() as u64;
            }
        }
        caps.vision = images > 0;
        caps.tools = req
            .extra
            .get("tools")
            .and_then(|t| t.as_array())
            .is_some_and(|t| !t.is_empty());
        caps.json = req
            .extra
            .get("response_format")
            .and_then(|f| f.get("type"))
            .and_then(|t| t.as_str())
            .is_some_and(|t| t == "json_object" || t == "json_schema");
        let max_tokens = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| req.extra.get(*k).and_then(|v| v.as_u64()));
        Self {
            caps,
            prompt_tokens: chars.div_ceil(4) + images * IMAGE_TOKENS,
            max_tokens,
        }
    }

    /// Why `d` cannot serve this request, if it cannot.
    fn unmet_by(&self, d: &Deployment) -> Option<String> {
        if let Some(cap) = d.capabilities.missing(&self.caps) {
            return Some(format!(
                "'{cap}', which no deployment of this model supports"
            ));
        }
        if let (Some(asked), Some(most)) = (self.max_tokens, d.max_output_tokens) {
            if asked > most {
                return Some(format!(
                    "up to {asked} output tokens (max_tokens), more than any deployment returns in one answer"
                ));
            }
        }
        let needed = self.prompt_tokens + self.max_tokens.unwrap_or(0);
        match d.context_window {
            Some(w) if needed > w => Some(format!(
                "about {needed} tokens (prompt plus max_tokens), more than any deployment's context window"
            )),
            _ => None,
        }
    }

    /// Estimated USD for this request on `d`; deployments without a price sort last.
    fn cost(&self, d: &Deployment) -> f64 {
        match d.price {
            Some((input, output)) => {
                let out = self.max_tokens.unwrap_or(EXPECTED_OUTPUT_TOKENS);
                (self.prompt_tokens as f64 * input + out as f64 * output) / 1e6
            }
            None => f64::INFINITY,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    /// `provider/upstream-model`, as reported in `x-gateway-deployment`.
    pub deployment: String,
    /// The `[[models]]` group this candidate came from; None for a `provider/model` string.
    pub group: Option<String>,
    /// The deployment's own attempt timeout, if it has one.
    pub timeout: Option<Duration>,
}

/// The candidates for a request, best first, and the groups to switch to when a provider
/// says the prompt is too long or refuses it under its content policy.
#[derive(Debug, Default)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub on_context_length: Vec<Target>,
    pub on_policy: Vec<Target>,
}

pub fn plan(
    rt: &Runtime,
    health: &Registry,
    project: &Project,
    model: &str,
    pin: Option<&str>,
    needs: &Needs,
) -> Result<Plan, Error> {
    if model.is_empty() {
        return Err(Error::invalid("'model' must not be empty", Some("model")));
    }
    let mut plan = if let Some(m) = rt.model(model) {
        if !project.allows(model) {
            return Err(Error::ModelNotAllowed {
                model: model.into(),
            });
        }
        let mut unmet = None;
        let mut targets = group(rt, health, project, m, needs, &mut unmet);
        extend(
            &mut targets,
            rt,
            health,
            project,
            &m.fallbacks,
            needs,
            &mut unmet,
        );
        let mut on_context_length = Vec::new();
        let groups = &m.context_window_fallbacks;
        extend(
            &mut on_context_length,
            rt,
            health,
            project,
            groups,
            needs,
            &mut unmet,
        );
        if targets.is_empty() {
            // Too big for every regular deployment by our own estimate: go straight to the
            // groups kept for long prompts.
            targets = std::mem::take(&mut on_context_length);
        }
        if targets.is_empty() {
            let why = unmet.unwrap_or_else(|| "something no deployment offers".into());
            return Err(Error::InvalidRequest {
                message: format!("the model '{model}' cannot serve this request: it needs {why}"),
                param: Some("model".into()),
                code: "unsupported_by_model",
            });
        }
        let mut on_policy = Vec::new();
        let groups = &m.content_policy_fallbacks;
        extend(
            &mut on_policy,
            rt,
            health,
            project,
            groups,
            needs,
            &mut unmet,
        );
        Plan {
            targets,
            on_context_length,
            on_policy,
        }
    } else {
        let Some((p, upstream)) = model
            .split_once('/')
            .and_then(|(p, u)| rt.provider(p).filter(|_| !u.is_empty()).map(|p| (p, u)))
        else {
            return Err(Error::UnknownModel {
                model: model.into(),
            });
        };
        if !project.allows(model) {
            return Err(Error::ModelNotAllowed {
                model: model.into(),
            });
        }
        if !project.regions.is_empty() {
            // A bare `provider/model` string says nothing about where the data goes.
            return Err(Error::InvalidRequest {
                message: format!(
                    "this project may only use deployments in its regions ({}); use a model from [[models]]",
                    project.regions.join(", ")
                ),
                param: Some("model".into()),
                code: "unsupported_by_model",
            });
        }
        Plan {
            targets: vec![Target {
                provider: p.clone(),
                upstream_model: upstream.to_string(),
                deployment: model.to_string(),
                group: None,
                timeout: None,
            }],
            ..Plan::default()
        }
    };
    if let Some(pin) = pin {
        if !project.allow_provider_pin {
            return Err(Error::PinNotAllowed);
        }
        for list in [
            &mut plan.targets,
            &mut plan.on_context_length,
            &mut plan.on_policy,
        ] {
            list.retain(|t| t.provider.name == pin);
        }
        if plan.targets.is_empty() {
            return Err(Error::invalid(
                format!("no deployment of '{model}' is on provider '{pin}' (x-gateway-provider)"),
                Some("model"),
            ));
        }
    }
    Ok(plan)
}

/// Appends the deployments of the model groups `groups` the project may use, skipping any
/// deployment already listed.
fn extend(
    targets: &mut Vec<Target>,
    rt: &Runtime,
    health: &Registry,
    project: &Project,
    groups: &[usize],
    needs: &Needs,
    unmet: &mut Option<String>,
) {
    for &g in groups {
        let Some(m) = rt.models.get(g) else { continue };
        if project.allows(&m.name) {
            for t in group(rt, health, project, m, needs, unmet) {
                if !targets.iter().any(|x| x.deployment == t.deployment) {
                    targets.push(t);
                }
            }
        }
    }
}

/// A group's deployments that can serve the request, in the order its strategy picks. The
/// first reason a deployment was passed over is kept in `unmet` for the error message.
fn group(
    rt: &Runtime,
    health: &Registry,
    project: &Project,
    m: &Model,
    needs: &Needs,
    unmet: &mut Option<String>,
) -> Vec<Target> {
    // Only deployments that may serve this project and can serve this request; the first
    // reason one was passed over explains an empty result.
    let mut order: Vec<usize> = Vec::with_capacity(m.deployments.len());
    for (i, d) in m.deployments.iter().enumerate() {
        let why = if in_region(project, d) {
            needs.unmet_by(d)
        } else {
            Some(format!(
                "a deployment in the project's regions ({})",
                project.regions.join(", ")
            ))
        };
        match why {
            Some(why) => {
                unmet.get_or_insert(why);
            }
            None => order.push(i),
        }
    }
    let n = order.len();
    if n == 0 {
        return Vec::new();
    }
    match m.strategy {
        Strategy::Priority => {}
        Strategy::RoundRobin => {
            let start = m.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
            order.rotate_left(start);
        }
        Strategy::Weighted => {
            // Sampling without replacement in proportion to weight: the first is the pick,
            // the rest are the fallbacks in the same spirit.
            let mut left: Vec<usize> = order.clone();
            order.clear();
            while !left.is_empty() {
                let total: u64 = left
                    .iter()
                    .map(|&i| u64::from(m.deployments[i].weight))
                    .sum();
                let mut r = (rand::random::<f64>() * total as f64) as u64;
                let pos = left
                    .iter()
                    .position(|&i| {
                        let w = u64::from(m.deployments[i].weight);
                        if r < w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(left.len() - 1);
                order.push(left.remove(pos));
            }
        }
        Strategy::LeastBusy => {
            order.sort_by_key(|&i| health.get(&m.deployments[i].id).inflight());
        }
        Strategy::LeastCost => {
            let latency = |i: usize| {
                health
                    .get(&m.deployments[i].id)
                    .ewma_ttfb()
                    .unwrap_or_default()
            };
            order.sort_by(|&a, &b| {
                let (da, db) = (&m.deployments[a], &m.deployments[b]);
                needs
                    .cost(da)
                    .total_cmp(&needs.cost(db))
                    .then_with(|| latency(a).cmp(&latency(b)))
            });
        }
        Strategy::LeastLatency => {
            // Never measured sorts first, so every deployment gets measured.
            order.sort_by_key(|&i| {
                health
                    .get(&m.deployments[i].id)
                    .ewma_ttfb()
                    .unwrap_or_default()
            });
            if n > 1 && rand::random::<f64>() < EXPLORE_PROBABILITY {
                let pick = 1 + (rand::random::<u64>() as usize) % (n - 1);
                order.swap(0, pick);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|i| {
            let d = &m.deployments[i];
            Some(Target {
                provider: rt.providers.get(d.provider)?.clone(),
                upstream_model: d.model.clone(),
                deployment: d.id.clone(),
                group: Some(m.name.clone()),
                timeout: d.timeout,
            })
        })
        .collect()
}
