//! The shape of `gateway.toml`: plain serde structs with their defaults, and the loader that
//! merges the file with `GATEWAY_`-prefixed environment overrides (figment).
//!
//! Nothing here checks meaning (names that refer to each other, keys that must exist): that is
//! `validate.rs`, which turns a `Config` into the `Runtime` the server uses. Field names here are
//! the public contract of the config file: add fields, never rename them.

pub mod diff;
pub mod egress;
pub mod keys;
pub mod ops;
mod secret;
pub mod shared;
pub mod spend;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use secret::Secret;
pub use validate::{
    hash_key, AwsCredentials, Caller, Capabilities, Cors, Deployment, KeyHash, MockSettings, Model,
    Project, Provider, Routing, Runtime, ServerSettings,
};

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "gateway.toml";

/// The top-level sections an environment override may touch (`GATEWAY_SERVER__LISTEN=...`).
const ENV_SECTIONS: &[&str] = &[
    "server",
    "providers",
    "models",
    "projects",
    "routing",
    "cache",
    "spend",
    "state",
    "egress",
    "audit",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub projects: Vec<ProjectConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Price overrides and additions, keyed `"<provider>/<model>"`.
    #[serde(default)]
    pub pricing: BTreeMap<String, crate::pricing::Price>,
    #[serde(default)]
    pub spend: spend::SpendConfig,
    #[serde(default)]
    pub state: spend::StateConfig,
    /// Data protection policies by name; projects refer to one with `policy = "NAME"`.
    #[serde(default)]
    pub policies: BTreeMap<String, crate::dlp::policy::PolicyConfig>,
    /// How upstreams are reached: proxy, CAs, client certificate, TLS version.
    #[serde(default)]
    pub egress: egress::EgressConfig,
    #[serde(default)]
    pub audit: ops::AuditConfig,
}

/// The response cache's bounds; projects opt in with `cache = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory the cached responses may take, in bytes (shared by all projects).
    pub max_bytes: u64,
    /// How long a response may be served from the cache.
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            ttl_secs: 300,
        }
    }
}

/// Retries, backoff, cooldowns and the retry budget: how the gateway routes around failing
/// deployments. Per-model choices (strategy, fallbacks) live on `[[models]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Upstream attempts for one request, across all candidates (1: no retries).
    pub max_attempts: u32,
    /// Backoff before retrying a deployment already tried: full jitter over
    /// `min(backoff_max_ms, backoff_base_ms * 2^n)`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// The longest `Retry-After` the gateway waits out itself; longer ones go to the client.
    pub max_retry_after_secs: u64,
    /// Time to response headers for one attempt; absent: `server.request_timeout_secs` (which
    /// bounds the whole request in any case). A non-streaming answer only has headers once it
    /// is generated, so keep this above the longest generation you expect.
    pub attempt_timeout_secs: Option<u64>,
    /// A deployment (or key) failing this many times within `failure_window_secs` is skipped
    /// for `cooldown_secs`, then probed with a single request.
    pub cooldown_failures: u32,
    pub failure_window_secs: u64,
    pub cooldown_secs: u64,
    /// Retries allowed as a fraction of requests (plus `retry_budget_min` always), so a total
    /// outage cannot multiply the load on providers.
    pub retry_budget_ratio: f64,
    pub retry_budget_min: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
            max_retry_after_secs: 10,
            attempt_timeout_secs: None,
            cooldown_failures: 3,
            failure_window_secs: 30,
            cooldown_secs: 15,
            retry_budget_ratio: 0.2,
            retry_budget_min: 10,
        }
    }
}

/// How a model group orders its deployments for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// In the order listed; later ones are fallbacks.
    #[default]
    Priority,
    /// Random, in proportion to `weight`.
    Weighted,
    /// Each request starts at the next deployment.
    RoundRobin,
    /// Fewest requests in flight first.
    LeastBusy,
    /// Lowest moving average of time to first byte first, exploring now and then.
    LeastLatency,
    /// Cheapest estimated cost for this request first (deployments without a `price` last),
    /// ties broken by latency.
    LeastCost,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Client-facing listener (OpenAI-compatible API).
    pub listen: String,
    /// Operator listener: `/metrics`, `/healthz`, `/readyz`. Keep it off public networks.
    pub admin_listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Upper bound for a whole non-streaming request, and for the wait for response headers
    /// of a streaming one.
    pub request_timeout_secs: u64,
    /// A stream that stays silent this long is ended with an error event.
    pub stream_idle_timeout_secs: u64,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// How often provider key files (`api_key_file`) are checked for a new key.
    pub key_file_check_secs: u64,
    pub cors: CorsConfig,
    /// Environment variable holding the bearer token for `/admin/usage`.
    pub admin_token_env: Option<String>,
    /// Reload the config when its file changes (SIGHUP and `POST /admin/reload` always work).
    pub watch_config: bool,
    /// Serve the client API over TLS (rustls) with these PEM files.
    pub tls: Option<ops::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 600,
            stream_idle_timeout_secs: 300,
            shutdown_grace_secs: 30,
            key_file_check_secs: 30,
            cors: CorsConfig::default(),
            admin_token_env: None,
            watch_config: true,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the API from a browser; `["*"]` for any. Empty: CORS off.
    pub allowed_origins: Vec<String>,
    /// Request headers a browser may send.
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_headers: [
                "authorization",
                "content-type",
                "x-api-key",
                "x-request-id",
                "openai-beta",
                "x-stainless-arch",
                "x-stainless-lang",
                "x-stainless-os",
                "x-stainless-package-version",
                "x-stainless-retry-count",
                "x-stainless-runtime",
                "x-stainless-runtime-version",
                "x-stainless-timeout",
            ]
            .map(String::from)
            .to_vec(),
            max_age_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible server.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// Azure OpenAI: OpenAI's format, deployment in the URL, `api-version`, `api-key` header.
    Azure,
    /// The Google Gemini API (AI Studio `generateContent`), key in `x-goog-api-key`.
    Gemini,
    /// Cohere's Chat v2 API (`/v2/chat`), key as a bearer token.
    Cohere,
    /// AWS Bedrock Converse / ConverseStream (and InvokeModel for embeddings), signed with
    /// SigV4 or sent with a Bedrock API key as a bearer token.
    Bedrock,
    /// Built-in, in-process test provider (no network).
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Azure => "azure",
            Self::Gemini => "gemini",
            Self::Cohere => "cohere",
            Self::Bedrock => "bedrock",
            Self::Mock => "mock",
        }
    }
}

/// One name or a list of names (a key pool).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// A known OpenAI-compatible vendor (`kind = "openai"` only): its base URL, key variable
    /// and parameter quirks as defaults.
    pub preset: Option<String>,
    pub base_url: Option<String>,
    /// Request parameters this provider rejects; removed before sending.
    #[serde(default)]
    pub drop_params: Vec<String>,
    /// Request parameters this provider knows under another name.
    #[serde(default)]
    pub rename_params: BTreeMap<String, String>,
    /// Environment variable(s) holding the API key; several form a round-robin key pool.
    pub api_key_env: Option<OneOrMany>,
    /// File(s) holding the API key (trailing whitespace ignored).
    pub api_key_file: Option<OneOrMany>,
    /// Extra headers sent with every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How an Azure provider's keys are sent: `"api-key"` (the default) or `"entra"`
    /// (Microsoft Entra ID access tokens, as `Authorization: Bearer`).
    #[serde(default)]
    pub auth: Option<AzureAuth>,
    /// Azure OpenAI `api-version` query parameter (`"v1"`: Azure's version-less v1 API).
    #[serde(default = "azure_api_version")]
    pub api_version: String,
    /// `max_tokens` sent to providers that require it (Anthropic) when the request has none.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// Ask an OpenAI-compatible upstream for usage on streams (`stream_options.include_usage`)
    /// so tokens are counted; turn off for a vendor that rejects `stream_options`.
    #[serde(default = "yes")]
    pub stream_include_usage: bool,
    /// Behaviour of a `kind = "mock"` provider.
    #[serde(default)]
    pub mock: MockConfig,
    /// AWS region of a `kind = "bedrock"` provider (`us-east-1`): the SigV4 scope and the
    /// default endpoint `https://bedrock-runtime.{region}.amazonaws.com`.
    pub region: Option<String>,
    /// Bedrock SigV4 credentials, named like the keys: environment variables (defaults
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or files.
    pub access_key_id_env: Option<String>,
    pub access_key_id_file: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub session_token_env: Option<String>,
    pub session_token_file: Option<String>,
    /// This provider's own connection pool, HTTP/2, proxy and mTLS settings.
    #[serde(default)]
    pub connection: Option<egress::ConnectionConfig>,
}

impl ProviderConfig {
    /// The SigV4 credential settings given, as `(field, value)`.
    pub fn aws_fields(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("access_key_id_env", self.access_key_id_env.as_deref()),
            ("access_key_id_file", self.access_key_id_file.as_deref()),
            (
                "secret_access_key_env",
                self.secret_access_key_env.as_deref(),
            ),
            (
                "secret_access_key_file",
                self.secret_access_key_file.as_deref(),
            ),
            ("session_token_env", self.session_token_env.as_deref()),
            ("session_token_file", self.session_token_file.as_deref()),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureAuth {
    ApiKey,
    Entra,
}

fn yes() -> bool {
    true
}

fn azure_api_version() -> String {
    "2024-10-21".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    /// Fixed chat reply; when absent the mock echoes the last user message.
    pub reply: Option<String>,
    /// Characters per streamed chunk.
    pub chunk_chars: usize,
    /// Pause before each streamed chunk.
    pub chunk_delay_ms: u64,
    /// Pause before the response starts.
    pub latency_ms: u64,
    /// Embedding size when the request does not ask for `dimensions`.
    pub embedding_dimensions: usize,
    /// HTTP status of a simulated failure.
    pub fail_status: u16,
    /// Body of a simulated failure; an OpenAI-shaped error when absent.
    pub fail_body: Option<String>,
    /// Fail every Nth request (0: never).
    pub fail_every: u64,
    /// Fail each request with this probability (0.0..=1.0).
    pub fail_probability: f64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            reply: None,
            chunk_chars: 12,
            chunk_delay_ms: 0,
            latency_ms: 0,
            embedding_dimensions: 1536,
            fail_status: 500,
            fail_body: None,
            fail_every: 0,
            fail_probability: 0.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The public name clients send in `model`.
    pub name: String,
    pub deployments: Vec<DeploymentConfig>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Model groups tried, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Groups (with larger context windows) tried when a provider says the prompt is too long.
    #[serde(default)]
    pub context_window_fallbacks: Vec<String>,
    /// Groups tried when a provider refuses the request under its content policy.
    #[serde(default)]
    pub content_policy_fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub provider: String,
    /// The model name the provider knows.
    pub model: String,
    /// Share of traffic under `strategy = "weighted"`.
    #[serde(default = "one")]
    pub weight: u32,
    /// USD per million tokens, for `strategy = "least-cost"`.
    #[serde(default)]
    pub price: Option<PriceConfig>,
    /// What the deployment supports, of `vision`, `tools`, `json`, `streaming`; absent: from
    /// the built-in model table, else all.
    /// A request needing something a deployment lacks is never sent there.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// Prompt plus output tokens the model accepts; absent: from the built-in model table,
    /// else unlimited.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// The most output tokens one answer may have; absent: from the built-in model table.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Time to response headers for an attempt on this deployment; absent:
    /// `routing.attempt_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Where the deployment processes data (e.g. "eu"); projects with `regions` only use
    /// deployments in those regions.
    #[serde(default)]
    pub region: Option<String>,
    /// A key pool of this deployment's own instead of its provider's (same forms as on
    /// `[[providers]]`).
    #[serde(default)]
    pub api_key_env: Option<OneOrMany>,
    #[serde(default)]
    pub api_key_file: Option<OneOrMany>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub name: String,
    /// Virtual keys, stored hashed: `"sha256:<hex>"` as printed by `gateway hash-key`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Model globs this project may use (`gpt-4o*`, `openai/*`, `*`).
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// Whether requests may pin a provider with the `x-gateway-provider` header.
    #[serde(default)]
    pub allow_provider_pin: bool,
    /// Serve repeated identical chat requests from the response cache.
    #[serde(default)]
    pub cache: bool,
    /// Data residency: only deployments tagged with one of these regions serve this project.
    /// Empty: any deployment.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Spend control (`config/spend.rs`): the project's wallet, rate limits, per-request caps,
    /// model tiers and per-key wallets.
    #[serde(default)]
    pub budget: Option<spend::BudgetConfig>,
    #[serde(default)]
    pub limits: Option<spend::LimitsConfig>,
    #[serde(default)]
    pub caps: Option<spend::CapsConfig>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub key_budgets: Vec<spend::KeyBudgetConfig>,
    /// The `[policies.NAME]` applied to this project's requests and responses.
    #[serde(default)]
    pub policy: Option<String>,
}

fn all_models() -> Vec<String> {
    vec!["*".into()]
}

/// Reads the file and the environment overrides into a `Config`. Every problem is returned, each
/// prefixed by its TOML path.
pub fn load(path: &Path) -> Result<Config, Vec<String>> {
    figment(path)?.extract::<Config>().map_err(figment_errors)
}

/// The file merged with the environment overrides, as the loader sees it.
fn figment(path: &Path) -> Result<Figment, Vec<String>> {
    if !path.exists() {
        return Err(vec![format!("config file {} not found", path.display())]);
    }
    let env = Env::prefixed("GATEWAY_").split("__").filter(|key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        ENV_SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
    });
    Ok(Figment::new().merge(Toml::file_exact(path)).merge(env))
}

/// The effective config (file plus overrides) as a JSON tree, for hashing and diffing. Holds
/// no secret values: the config only names where secrets are.
pub fn effective(path: &Path) -> Result<serde_json::Value, Vec<String>> {
    figment(path)?
        .extract::<serde_json::Value>()
        .map_err(figment_errors)
}

/// A short hash of an effective config: the same settings give the same hash whatever the
/// file's formatting, comments or key order (the tree's maps are sorted).
pub fn hash_of(tree: &serde_json::Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(tree.to_string().as_bytes());
    validate::hex(&digest[..8])
}

fn figment_errors(errors: figment::Error) -> Vec<String> {
    errors
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let mut kind = e.kind.to_string();
            if let Some(meta) = &e.metadata {
                kind = format!("{kind} (from {})", meta.name);
            }
            if path.is_empty() {
                kind
            } else {
                format!("{path}: {kind}")
            }
        })
        .collect()
}

/// The config path: `--config`, else `GATEWAY_CONFIG`, else `./gateway.toml` (clap fills the
/// first two).
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}
