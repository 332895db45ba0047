//! Stage 4, route: a public model name becomes an ordered list of candidate deployments. A
//! `[[models]]` name wins and yields its group's deployments in the order its strategy picks,
//! then those of its `fallbacks` groups; otherwise `<provider>/<upstream-model>` goes straight
//! to that configured provider (OpenRouter-style strings). The project's allow-list is checked
//! on the requested name and on each fallback group. A request may pin one provider with
//! `x-gateway-provider` when its project allows it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::{Model, Project, Provider, Runtime, Strategy};
use crate::error::Error;
use crate::health::Registry;

/// How often `least-latency` tries a deployment other than the fastest, so a recovered one
/// is noticed.
const EXPLORE_PROBABILITY: f64 = 0.05;

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    /// `provider/upstream-model`, as reported in `x-gateway-deployment`.
    pub deployment: String,
    /// The `[[models]]` group this candidate came from; None for a `provider/model` string.
    pub group: Option<String>,
}

/// The candidates for `model`, best first.
pub fn plan(
    rt: &Runtime,
    health: &Registry,
    project: &Project,
    model: &str,
    pin: Option<&str>,
) -> Result<Vec<Target>, Error> {
    if model.is_empty() {
        return Err(Error::invalid("'model' must not be empty", Some("model")));
    }
    let mut targets = if let Some(m) = rt.model(model) {
        if !project.allows(model) {
            return Err(Error::ModelNotAllowed {
                model: model.into(),
            });
        }
        let mut targets = group(rt, health, m);
        for &f in &m.fallbacks {
            let Some(fb) = rt.models.get(f) else { continue };
            if project.allows(&fb.name) {
                for t in group(rt, health, fb) {
                    if !targets.iter().any(|x| x.deployment == t.deployment) {
                        targets.push(t);
                    }
                }
            }
        }
        targets
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
        vec![Target {
            provider: p.clone(),
            upstream_model: upstream.to_string(),
            deployment: model.to_string(),
            group: None,
        }]
    };
    if let Some(pin) = pin {
        if !project.allow_provider_pin {
            return Err(Error::PinNotAllowed);
        }
        targets.retain(|t| t.provider.name == pin);
        if targets.is_empty() {
            return Err(Error::invalid(
                format!("no deployment of '{model}' is on provider '{pin}' (x-gateway-provider)"),
                Some("model"),
            ));
        }
    }
    Ok(targets)
}

/// A group's deployments in the order its strategy picks for this request.
fn group(rt: &Runtime, health: &Registry, m: &Model) -> Vec<Target> {
    let n = m.deployments.len();
    let mut order: Vec<usize> = (0..n).collect();
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
            })
        })
        .collect()
}
