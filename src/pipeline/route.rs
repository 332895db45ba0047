//! Stage 4, route: a public model name becomes a target deployment. A `[[models]]` name wins;
//! otherwise `<provider>/<upstream-model>` goes straight to that configured provider
//! (OpenRouter-style strings), as long as the project's allow-list permits the string.
//! Strategies across several deployments come later; the first deployment is used.

use std::sync::Arc;

use crate::config::{Project, Provider, Runtime};
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    /// True when the model came from `[[models]]`, false for a `provider/model` string.
    pub configured: bool,
}

impl Target {
    /// `provider/upstream-model`, as reported in `x-gateway-deployment`.
    pub fn deployment(&self) -> String {
        format!("{}/{}", self.provider.name, self.upstream_model)
    }
}

pub fn resolve(rt: &Runtime, project: &Project, model: &str) -> Result<Target, Error> {
    if model.is_empty() {
        return Err(Error::invalid("'model' must not be empty", Some("model")));
    }
    if let Some(m) = rt.model(model) {
        if !project.allows(model) {
            return Err(Error::ModelNotAllowed {
                model: model.into(),
            });
        }
        let d = m
            .deployments
            .first()
            .ok_or_else(|| Error::Internal(format!("model '{model}' has no deployment")))?;
        let provider = rt
            .providers
            .get(d.provider)
            .ok_or_else(|| Error::Internal(format!("model '{model}' names a missing provider")))?;
        return Ok(Target {
            provider: provider.clone(),
            upstream_model: d.model.clone(),
            configured: true,
        });
    }
    if let Some((provider, upstream)) = model.split_once('/') {
        if let Some(p) = rt.provider(provider).filter(|_| !upstream.is_empty()) {
            if !project.allows(model) {
                return Err(Error::ModelNotAllowed {
                    model: model.into(),
                });
            }
            return Ok(Target {
                provider: p.clone(),
                upstream_model: upstream.to_string(),
                configured: false,
            });
        }
    }
    Err(Error::UnknownModel {
        model: model.into(),
    })
}
