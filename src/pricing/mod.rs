//! Prices and the cost of a request. The built-in table (`prices.toml`, shipped in the binary,
//! dated, one source per provider section) is looked up by provider and model id, with dated
//! ids, Bedrock ids and `vendor/model` strings normalised; `[pricing."provider/model"]` in the
//! config overrides or adds prices (resolution of those lives in `config/spend.rs`).
//!
//! Costs are whole nano-dollars (1e-9 USD) so that sums over millions of requests do not drift;
//! a cost is rounded up, never down.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::openai::Usage;
use crate::config::ProviderKind;

/// Nano-dollars per USD.
pub const NANOS_PER_USD: f64 = 1e9;

/// USD per one million tokens (and per request / per image where a provider bills those).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens served from the provider's prompt cache; absent: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache; absent: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// USD per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request: Option<f64>,
    /// USD per input image, where it is billed apart from tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_image: Option<f64>,
    /// The model's largest completion, for the worst case of a request without `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
}

/// Billable token counts of one request, split the way prices are: `input` excludes the cache
/// reads and writes, `output` includes reasoning tokens (every provider bills them as output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub images: u64,
}

impl Price {
    /// A price is usable when every figure is a finite, non-negative number.
    pub fn is_valid(&self) -> bool {
        [
            Some(self.input),
            Some(self.output),
            self.cache_read,
            self.cache_write,
            self.per_request,
            self.per_image,
        ]
        .into_iter()
        .flatten()
        .all(|v| v.is_finite() && v >= 0.0)
    }

    /// The cost of `t` in nano-dollars, rounded up.
    pub fn cost_nanos(&self, t: &Tokens) -> u64 {
        let per_token = |usd_per_m: f64, n: u64| n as f64 * usd_per_m * (NANOS_PER_USD / 1e6);
        let usd_nanos = per_token(self.input, t.input)
            + per_token(self.cache_read.unwrap_or(self.input), t.cache_read)
            + per_token(self.cache_write.unwrap_or(self.input), t.cache_write)
            + per_token(self.output, t.output)
            + self.per_image.unwrap_or(0.0) * t.images as f64 * NANOS_PER_USD
            + self.per_request.unwrap_or(0.0) * NANOS_PER_USD;
        // Float noise must not round an exact cost up by a whole nano-dollar.
        (usd_nanos - 1e-6).ceil().max(0.0) as u64
    }

    /// Worst-case cost of a request of `prompt` tokens and at most `output` completion tokens
    /// (every prompt token at the full input price).
    pub fn worst_case_nanos(&self, prompt: u64, output: u64, images: u64) -> u64 {
        self.cost_nanos(&Tokens {
            input: prompt,
            output,
            images,
            ..Tokens::default()
        })
    }

    /// How many output tokens `nanos` pays for after a prompt of `prompt` tokens.
    pub fn affordable_output(&self, nanos: u64, prompt: u64, images: u64) -> u64 {
        let fixed = self.worst_case_nanos(prompt, 0, images);
        let left = nanos.saturating_sub(fixed) as f64;
        let per_token = self.output * (NANOS_PER_USD / 1e6);
        if per_token <= 0.0 {
            return u64::MAX;
        }
        (left / per_token).floor() as u64
    }
}

impl Tokens {
    /// From the OpenAI-shaped usage the gateway sees (every adapter translates into it):
    /// `prompt_tokens` includes cached ones; reasoning is inside `completion_tokens`.
    pub fn from_usage(u: &Usage) -> Self {
        let cached = u.cached_tokens().min(u.prompt_tokens);
        let written = u.cache_creation_input_tokens.min(u.prompt_tokens - cached);
        Self {
            input: u.prompt_tokens - cached - written,
            cache_read: cached,
            cache_write: written,
            output: u.completion_tokens,
            ..Self::default()
        }
    }

    /// OpenAI (and the OpenAI-compatible vendors: Mistral, Groq, DeepSeek) raw `usage`.
    /// DeepSeek reports `prompt_cache_hit_tokens` instead of `prompt_tokens_details`.
    pub fn from_openai(u: &Value) -> Self {
        let prompt = num(u, &["prompt_tokens"]);
        let cached = num(u, &["prompt_tokens_details", "cached_tokens"])
            .max(num(u, &["prompt_cache_hit_tokens"]))
            .min(prompt);
        Self {
            input: prompt - cached,
            cache_read: cached,
            output: num(u, &["completion_tokens"]),
            ..Self::default()
        }
    }

    /// Anthropic `usage`: `input_tokens` excludes the cache reads and writes.
    pub fn from_anthropic(u: &Value) -> Self {
        Self {
            input: num(u, &["input_tokens"]),
            cache_read: num(u, &["cache_read_input_tokens"]),
            cache_write: num(u, &["cache_creation_input_tokens"]),
            output: num(u, &["output_tokens"]),
            images: 0,
        }
    }

    /// Gemini `usageMetadata`: `promptTokenCount` includes `cachedContentTokenCount`; thinking
    /// (`thoughtsTokenCount`) is billed as output but not counted in `candidatesTokenCount`.
    pub fn from_gemini(u: &Value) -> Self {
        let prompt = num(u, &["promptTokenCount"]);
        let cached = num(u, &["cachedContentTokenCount"]).min(prompt);
        Self {
            input: prompt - cached,
            cache_read: cached,
            output: num(u, &["candidatesTokenCount"]) + num(u, &["thoughtsTokenCount"]),
            ..Self::default()
        }
    }

    /// Bedrock Converse `usage`: `inputTokens` excludes the cache reads and writes.
    pub fn from_bedrock(u: &Value) -> Self {
        Self {
            input: num(u, &["inputTokens"]),
            cache_read: num(u, &["cacheReadInputTokens"]),
            cache_write: num(u, &["cacheWriteInputTokens"]),
            output: num(u, &["outputTokens"]),
            images: 0,
        }
    }

    /// Cohere v2 `usage`: `billed_units` is what is charged (`tokens` counts more).
    pub fn from_cohere(u: &Value) -> Self {
        Self {
            input: num(u, &["billed_units", "input_tokens"]),
            output: num(u, &["billed_units", "output_tokens"]),
            ..Self::default()
        }
    }
}

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The built-in table: section (vendor) -> model key -> price.
#[derive(Debug, Default)]
pub struct Table {
    sections: HashMap<String, HashMap<String, Price>>,
}

const DATA: &str = include_str!("prices.toml");

/// The date of the built-in table (also in its header).
pub const TABLE_DATE: &str = "2025-08-15";

/// Vendors in the order they are searched when the provider does not say which it is.
const ALL_SECTIONS: &[&str] = &[
    "openai",
    "anthropic",
    "google",
    "mistral",
    "groq",
    "deepseek",
    "cohere",
    "bedrock",
];

/// The built-in table, parsed once.
pub fn builtin() -> Result<&'static Table, String> {
    static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            use figment::providers::{Format, Toml};
            figment::Figment::from(Toml::string(DATA))
                .extract::<HashMap<String, HashMap<String, Price>>>()
                .map(|sections| Table { sections })
                .map_err(|e| format!("built-in price table: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The vendor sections to search first for a provider of `kind` at `base_url`: the
/// OpenAI-compatible vendors are told apart by their host.
pub fn sections_for(kind: ProviderKind, base_url: &str) -> &'static [&'static str] {
    let host = base_url.to_ascii_lowercase();
    // By name, so a provider kind added later falls through to "any vendor" until listed.
    match kind.as_str() {
        "anthropic" => &["anthropic"],
        "gemini" => &["google"],
        "cohere" => &["cohere"],
        "azure" => &["openai"],
        "bedrock" => &["bedrock", "anthropic"],
        "openai" if host.contains("groq.com") => &["groq"],
        "openai" if host.contains("mistral.ai") => &["mistral"],
        "openai" if host.contains("deepseek.com") => &["deepseek"],
        "openai" if host.contains("cohere.") => &["cohere"],
        "openai" if host.contains("bedrock") => &["bedrock", "anthropic"],
        "openai" if host.contains("googleapis.com") => &["google"],
        "openai" if host.contains("api.openai.com") => &["openai"],
        // Self-hosted or unknown OpenAI-compatible servers and the mock: any vendor's name.
        _ => &[],
    }
}

impl Table {
    pub fn len(&self) -> usize {
        self.sections.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The price of `model` at a provider whose vendor sections are `preferred` (searched
    /// first; then every section), with the table key that matched.
    pub fn lookup(&self, preferred: &[&str], model: &str) -> Option<(Price, String)> {
        let ids = candidate_ids(model);
        let sections = preferred
            .iter()
            .chain(ALL_SECTIONS.iter().filter(|s| !preferred.contains(s)));
        for section in sections {
            let Some(prices) = self.sections.get(*section) else {
                continue;
            };
            for id in &ids {
                if let Some(p) = prices.get(id.as_str()) {
                    return Some((*p, format!("{section}/{id}")));
                }
                // A dated or suffixed id: the longest key it starts with, at a boundary.
                let best = prices
                    .iter()
                    .filter(|(k, _)| {
                        id.len() > k.len()
                            && id.starts_with(k.as_str())
                            && matches!(id.as_bytes()[k.len()], b'-' | b'@' | b':')
                    })
                    .max_by_key(|(k, _)| k.len());
                if let Some((k, p)) = best {
                    return Some((*p, format!("{section}/{k}")));
                }
            }
        }
        None
    }
}

/// The forms of a model id worth looking up, most specific first: as given (lower-cased),
/// without a `models/` prefix, a Bedrock region/vendor prefix and version suffix, a `-latest`
/// suffix, or an OpenRouter-style `vendor/` prefix; Claude ids with dots (`claude-3.5-sonnet`)
/// also with dashes.
fn candidate_ids(model: &str) -> Vec<String> {
    let mut m = model.trim().to_ascii_lowercase();
    if let Some(rest) = m.strip_prefix("models/") {
        m = rest.to_string();
    }
    let mut out = vec![m.clone()];
    let push = |s: String, out: &mut Vec<String>| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    // Bedrock: `us.anthropic.claude-3-5-sonnet-20241022-v2:0`.
    let mut b = m.as_str();
    for region in ["us-gov.", "us.", "eu.", "apac.", "global.", "jp.", "au."] {
        if let Some(rest) = b.strip_prefix(region) {
            b = rest;
            break;
        }
    }
    for vendor in [
        "anthropic.",
        "meta.",
        "amazon.",
        "mistral.",
        "cohere.",
        "deepseek.",
        "ai21.",
        "writer.",
        "openai.",
    ] {
        if let Some(rest) = b.strip_prefix(vendor) {
            let rest = rest.split(':').next().unwrap_or(rest);
            let rest = match rest.rfind("-v") {
                Some(i) if rest[i + 2..].bytes().all(|c| c.is_ascii_digit()) => &rest[..i],
                _ => rest,
            };
            push(rest.to_string(), &mut out);
            break;
        }
    }
    for id in out.clone() {
        if let Some(s) = id.strip_suffix("-latest") {
            push(s.to_string(), &mut out);
        }
        if let Some((_, s)) = id.rsplit_once('/') {
            push(s.to_string(), &mut out);
        }
    }
    for id in out.clone() {
        if id.starts_with("claude") && id.contains('.') {
            push(id.replace('.', "-"), &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn price(model: &str, preferred: &[&str]) -> (Price, String) {
        builtin()
            .unwrap()
            .lookup(preferred, model)
            .unwrap_or_else(|| panic!("no price for {model}"))
    }

    #[test]
    fn table_parses_and_covers_every_vendor() {
        let t = builtin().unwrap();
        assert!(t.len() > 60, "{}", t.len());
        for s in ALL_SECTIONS {
            assert!(t.sections.get(*s).is_some_and(|m| !m.is_empty()), "{s}");
        }
        for section in t.sections.values() {
            for (k, p) in section {
                assert!(p.is_valid(), "{k}");
            }
        }
        assert!(DATA.contains(TABLE_DATE));
    }

    #[test]
    fn lookups_normalise_ids() {
        assert_eq!(
            price("gpt-4o-mini-2024-07-18", &["openai"]).1,
            "openai/gpt-4o-mini"
        );
        assert_eq!(price("gpt-4o-2024-08-06", &["openai"]).1, "openai/gpt-4o");
        assert_eq!(price("o3-mini-2025-01-31", &[]).1, "openai/o3-mini");
        assert_eq!(
            price("claude-3-5-sonnet-20241022", &["anthropic"]).1,
            "anthropic/claude-3-5-sonnet"
        );
        assert_eq!(
            price("claude-sonnet-4-20250514", &["anthropic"]).1,
            "anthropic/claude-sonnet-4"
        );
        assert_eq!(
            price("us.anthropic.claude-3-5-haiku-20241022-v1:0", &["bedrock"]).1,
            "anthropic/claude-3-5-haiku"
        );
        assert_eq!(
            price("amazon.nova-pro-v1:0", &["bedrock"]).1,
            "bedrock/nova-pro"
        );
        assert_eq!(
            price("meta.llama3-1-70b-instruct-v1:0", &["bedrock"]).1,
            "bedrock/llama3-1-70b-instruct"
        );
        assert_eq!(
            price("models/gemini-2.5-flash", &["google"]).1,
            "google/gemini-2.5-flash"
        );
        assert_eq!(
            price("gemini-2.5-flash-lite-preview-06-17", &["google"]).1,
            "google/gemini-2.5-flash-lite"
        );
        assert_eq!(
            price("mistral-large-latest", &["mistral"]).1,
            "mistral/mistral-large"
        );
        assert_eq!(
            price("anthropic/claude-3.5-sonnet", &[]).1,
            "anthropic/claude-3-5-sonnet"
        );
        assert_eq!(
            price("openai/gpt-oss-120b", &["groq"]).1,
            "groq/openai/gpt-oss-120b"
        );
        assert_eq!(price("deepseek-chat", &["deepseek"]).0.input, 0.27);
        assert_eq!(price("command-r-08-2024", &["cohere"]).0.output, 0.60);
        // A vendor's own section wins over a same-named model elsewhere.
        assert_eq!(price("command-r", &["bedrock"]).0.input, 0.50);
        assert_eq!(price("command-r", &["cohere"]).0.input, 0.15);
        assert!(builtin().unwrap().lookup(&[], "my-finetune").is_none());
        assert!(builtin().unwrap().lookup(&[], "gpt-4oxyz").is_none());
    }

    #[test]
    fn sections_follow_the_host() {
        assert_eq!(
            sections_for(ProviderKind::Openai, "https://api.groq.com/openai/v1"),
            &["groq"]
        );
        assert_eq!(
            sections_for(ProviderKind::Openai, "https://api.mistral.ai/v1"),
            &["mistral"]
        );
        assert!(sections_for(ProviderKind::Openai, "http://localhost:8000/v1").is_empty());
    }

    // Hand-computed examples, one per usage shape. Nano-dollars: tokens x $/M x 1000.

    #[test]
    fn openai_cost_with_cached_and_reasoning_tokens() {
        // gpt-4o: $2.50 in, $10 out, $1.25 cached.
        let p = price("gpt-4o", &["openai"]).0;
        let u = json!({"prompt_tokens": 1000, "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 200}});
        let t = Tokens::from_openai(&u);
        assert_eq!(
            t,
            Tokens {
                input: 600,
                cache_read: 400,
                output: 500,
                ..Tokens::default()
            }
        );
        // 600*2.5 + 400*1.25 + 500*10 = 1500 + 500 + 5000 = 7000 (x1000 nanos) = $0.007
        assert_eq!(p.cost_nanos(&t), 7_000_000);
        let usage: Usage = serde_json::from_value(u).unwrap();
        assert_eq!(Tokens::from_usage(&usage), t);
    }

    #[test]
    fn deepseek_cache_hits() {
        // deepseek-chat: $0.27 miss, $0.07 hit, $1.10 out.
        let p = price("deepseek-chat", &["deepseek"]).0;
        let t = Tokens::from_openai(&json!({"prompt_tokens": 10_000, "completion_tokens": 1000,
            "prompt_cache_hit_tokens": 8000, "prompt_cache_miss_tokens": 2000}));
        // 2000*0.27 + 8000*0.07 + 1000*1.10 = 540 + 560 + 1100 = 2200 -> 2,200,000 nanos
        assert_eq!(p.cost_nanos(&t), 2_200_000);
    }

    #[test]
    fn anthropic_cost_with_cache_read_and_write() {
        // claude-sonnet-4: $3 in, $15 out, $0.30 read, $3.75 write.
        let p = price("claude-sonnet-4-20250514", &["anthropic"]).0;
        let t = Tokens::from_anthropic(&json!({"input_tokens": 100, "output_tokens": 200,
            "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000}));
        // 100*3 + 2000*0.3 + 1000*3.75 + 200*15 = 300 + 600 + 3750 + 3000 = 7650
        assert_eq!(p.cost_nanos(&t), 7_650_000);
    }

    #[test]
    fn cache_writes_survive_translation_to_the_canonical_usage() {
        // What the pipeline sees of the same Anthropic answer after the adapter translated it:
        // the canonical usage, cache writes carried beside the cached reads.
        let p = price("claude-sonnet-4-20250514", &["anthropic"]).0;
        let u: Usage = serde_json::from_value(json!({"prompt_tokens": 3100,
            "completion_tokens": 200, "total_tokens": 3300,
            "prompt_tokens_details": {"cached_tokens": 2000},
            "cache_creation_input_tokens": 1000}))
        .unwrap();
        let t = Tokens::from_usage(&u);
        assert_eq!((t.input, t.cache_read, t.cache_write), (100, 2000, 1000));
        assert_eq!(p.cost_nanos(&t), 7_650_000);
    }

    #[test]
    fn gemini_thinking_is_output() {
        // gemini-2.5-flash: $0.30 in, $2.50 out, $0.075 cached.
        let p = price("gemini-2.5-flash", &["google"]).0;
        let t = Tokens::from_gemini(
            &json!({"promptTokenCount": 4000, "candidatesTokenCount": 100,
            "thoughtsTokenCount": 300, "cachedContentTokenCount": 2000, "totalTokenCount": 4400}),
        );
        // 2000*0.3 + 2000*0.075 + 400*2.5 = 600 + 150 + 1000 = 1750
        assert_eq!(p.cost_nanos(&t), 1_750_000);
    }

    #[test]
    fn bedrock_converse_usage() {
        // nova-pro: $0.80 in, $3.20 out, $0.20 cache read.
        let p = price("amazon.nova-pro-v1:0", &["bedrock"]).0;
        let t = Tokens::from_bedrock(&json!({"inputTokens": 1000, "outputTokens": 250,
            "totalTokens": 1250, "cacheReadInputTokens": 500}));
        // 1000*0.8 + 500*0.2 + 250*3.2 = 800 + 100 + 800 = 1700
        assert_eq!(p.cost_nanos(&t), 1_700_000);
    }

    #[test]
    fn cohere_billed_units() {
        // command-r-08-2024: $0.15 in, $0.60 out.
        let p = price("command-r-08-2024", &["cohere"]).0;
        let t = Tokens::from_cohere(
            &json!({"billed_units": {"input_tokens": 2000, "output_tokens": 1000},
            "tokens": {"input_tokens": 2100, "output_tokens": 1000}}),
        );
        // 2000*0.15 + 1000*0.6 = 300 + 600 = 900
        assert_eq!(p.cost_nanos(&t), 900_000);
    }

    #[test]
    fn per_request_and_image_prices_and_rounding() {
        let p = Price {
            input: 1.0,
            output: 2.0,
            per_request: Some(0.001),
            per_image: Some(0.01),
            ..Price::default()
        };
        let t = Tokens {
            input: 1,
            output: 1,
            images: 2,
            ..Tokens::default()
        };
        // 1000 + 2000 + 0.02e9 + 0.001e9 = 21,003,000
        assert_eq!(p.cost_nanos(&t), 21_003_000);
        let tiny = Price {
            input: 0.0001,
            output: 0.0,
            ..Price::default()
        };
        // 0.1 nano-dollars rounds up to 1.
        assert_eq!(
            tiny.cost_nanos(&Tokens {
                input: 1,
                ..Tokens::default()
            }),
            1
        );
        assert_eq!(Price::default().cost_nanos(&t), 0);
    }

    #[test]
    fn affordable_output_inverts_the_worst_case() {
        let p = Price {
            input: 2.0,
            output: 8.0,
            ..Price::default()
        };
        let budget = p.worst_case_nanos(1000, 250, 0);
        assert_eq!(p.affordable_output(budget, 1000, 0), 250);
        assert_eq!(p.affordable_output(100, 1000, 0), 0);
    }
}
