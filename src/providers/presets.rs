//! OpenAI-compatible vendors as data: each preset is a base URL, the environment variable its
//! key is usually kept in, and the request parameters the vendor really does not accept
//! (dropped, renamed or refused). `kind = "openai"` + `preset = "groq"` is all a config needs;
//! `drop_params` / `rename_params` in the config declare the same for any other vendor.
//!
//! The quirks are the documented or observed ones from the vendors' API references (see
//! docs/configuration.md); a parameter a vendor merely ignores is left alone.

use serde_json::Value;

use crate::api::openai::{ChatRequest, Content};
use crate::error::Error;

#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub base_url: &'static str,
    /// Where the key is read from when the config names none; `None` for local servers that
    /// need no key.
    pub key_env: Option<&'static str>,
    /// Whether the vendor accepts `stream_options.include_usage`.
    pub stream_usage: bool,
    /// Parameters removed before sending (the vendor rejects them).
    pub drop: &'static [&'static str],
    /// Parameters sent under the vendor's own name.
    pub rename: &'static [(&'static str, &'static str)],
    /// The most choices (`n`) the vendor returns; a request for more is refused.
    pub max_n: Option<u64>,
    /// Whether the vendor fetches `https://` image URLs (else only `data:` URLs work).
    pub image_urls: bool,
}

const fn preset(name: &'static str, base_url: &'static str, key_env: &'static str) -> Preset {
    Preset {
        name,
        base_url,
        key_env: Some(key_env),
        stream_usage: true,
        drop: &[],
        rename: &[],
        max_n: None,
        image_urls: true,
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        // 422 extra_forbidden on fields it does not know; `max_completion_tokens` is rejected
        // and `seed` is called `random_seed`. Usage comes on the final chunk unasked.
        stream_usage: false,
        drop: &[
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "user",
            "store",
            "metadata",
            "service_tier",
            "modalities",
            "audio",
            "safety_identifier",
            "prompt_cache_key",
            "stream_options",
        ],
        rename: &[
            ("max_completion_tokens", "max_tokens"),
            ("seed", "random_seed"),
        ],
        ..preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY")
    },
    Preset {
        // Documented as unsupported (400): logprobs, logit_bias, top_logprobs; n must be 1.
        drop: &["logprobs", "top_logprobs", "logit_bias"],
        max_n: Some(1),
        ..preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY")
    },
    preset("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    preset("together", "https://api.together.ai/v1", "TOGETHER_API_KEY"),
    preset(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    ),
    preset(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    preset("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    Preset {
        // Its OpenAI layer rejects image URLs (only base64 `data:` URLs) and does not support
        // tool_choice, logit_bias, user, logprobs or n.
        key_env: None,
        drop: &[
            "tool_choice",
            "logit_bias",
            "user",
            "logprobs",
            "top_logprobs",
        ],
        max_n: Some(1),
        image_urls: false,
        ..preset("ollama", "http://localhost:11434/v1", "")
    },
    Preset {
        // A key only when the server was started with --api-key: name it in the config.
        key_env: None,
        ..preset("vllm", "http://localhost:8000/v1", "")
    },
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The parameter table of one provider: its preset's quirks plus the config's own.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub drop: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub max_n: Option<u64>,
    pub image_urls: bool,
    /// The provider's name, for error messages.
    pub provider: String,
}

impl Params {
    pub fn new(provider: &str) -> Self {
        Self {
            image_urls: true,
            provider: provider.into(),
            ..Self::default()
        }
    }

    /// Nothing to change: requests go out as they are (no copy is made).
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.rename.is_empty() && self.max_n.is_none() && self.image_urls
    }

    pub fn with_preset(mut self, p: &Preset) -> Self {
        self.drop.extend(p.drop.iter().map(|s| s.to_string()));
        self.rename
            .extend(p.rename.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        self.max_n = p.max_n;
        self.image_urls = p.image_urls;
        self
    }

    /// Adjusts `req` for the vendor, or refuses what it cannot serve (never silently: an image
    /// it cannot fetch or more choices than it returns are a 400 naming the provider).
    pub fn apply(&self, req: &mut ChatRequest) -> Result<(), Error> {
        if let (Some(max), Some(n)) = (self.max_n, req.extra.get("n").and_then(Value::as_u64)) {
            if n > max {
                return Err(Error::InvalidRequest {
                    message: format!(
                        "provider '{}' returns at most {max} choice(s); 'n' was {n}",
                        self.provider
                    ),
                    param: Some("n".into()),
                    code: "unsupported_parameter",
                });
            }
        }
        if !self.image_urls && has_remote_image(req) {
            return Err(Error::InvalidRequest {
                message: format!(
                    "provider '{}' accepts images only as base64 data: URLs, not remote URLs",
                    self.provider
                ),
                param: Some("messages".into()),
                code: "unsupported_parameter",
            });
        }
        for key in &self.drop {
            if key == "stream_options" {
                req.stream_options = None;
            }
            req.extra.remove(key);
        }
        for (from, to) in &self.rename {
            if let Some(v) = req.extra.remove(from) {
                // A value the client set under the vendor's own name wins.
                req.extra.entry(to.clone()).or_insert(v);
            }
        }
        Ok(())
    }
}

fn has_remote_image(req: &ChatRequest) -> bool {
    req.messages.iter().any(|m| match &m.content {
        Some(Content::Parts(parts)) => parts.iter().any(|p| {
            p.kind == "image_url"
                && p.extra
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .is_some_and(|u| !u.starts_with("data:"))
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_preset_is_an_https_or_local_url() {
        for p in PRESETS {
            assert!(
                p.base_url.starts_with("https://") || p.base_url.starts_with("http://localhost"),
                "{}",
                p.name
            );
            assert!(find(p.name).is_some());
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn mistral_renames_and_drops() {
        let params = Params::new("mistral").with_preset(find("mistral").unwrap());
        let mut r = req(
            json!({"model": "m", "messages": [], "seed": 7, "max_completion_tokens": 9,
                               "logit_bias": {}, "temperature": 0.1, "stream": true,
                               "stream_options": {"include_usage": true}}),
        );
        params.apply(&mut r).unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"model": "m", "messages": [], "random_seed": 7, "max_tokens": 9,
                   "temperature": 0.1, "stream": true})
        );
    }

    #[test]
    fn limits_are_refused_not_dropped() {
        let groq = Params::new("groq").with_preset(find("groq").unwrap());
        let mut r = req(json!({"model": "m", "messages": [], "n": 2}));
        assert!(groq.apply(&mut r).is_err());
        let ollama = Params::new("local").with_preset(find("ollama").unwrap());
        let mut r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
        );
        let e = ollama.apply(&mut r).err().unwrap().to_string();
        assert!(e.contains("data: URLs") && e.contains("local"), "{e}");
        let mut r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}],
            "tool_choice": "auto"}),
        );
        ollama.apply(&mut r).unwrap();
        assert!(!r.extra.contains_key("tool_choice"));
    }

    #[test]
    fn empty_tables_change_nothing() {
        assert!(Params::new("x").is_empty());
        assert!(Params::new("x")
            .with_preset(find("deepseek").unwrap())
            .is_empty());
        assert!(!Params::new("x")
            .with_preset(find("groq").unwrap())
            .is_empty());
    }
}
