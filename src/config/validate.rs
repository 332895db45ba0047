//! Turns a parsed `Config` into the `Runtime` the server uses: names resolved to indexes, keys
//! read from the environment or files, virtual-key hashes decoded into a lookup index, headers
//! and URLs parsed. Every problem is collected with its TOML path; nothing stops at the first.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::{KeyRing, Style};
use super::{
    Config, MockConfig, OneOrMany, ProviderConfig, ProviderKind, RoutingConfig, Secret, Strategy,
};

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The validated, ready-to-serve form of the config. A request takes one snapshot of it and
/// never re-reads it.
#[derive(Debug)]
pub struct Runtime {
    pub server: ServerSettings,
    pub providers: Vec<Arc<Provider>>,
    /// Public model names in config order (for `/v1/models`).
    pub models: Vec<Arc<Model>>,
    pub projects: Vec<Arc<Project>>,
    provider_index: HashMap<String, usize>,
    model_index: HashMap<String, usize>,
    keys: KeyIndex,
    pub routing: Routing,
    /// Response cache bounds: (bytes, time to live).
    pub cache: (u64, Duration),
    /// Unix time the config was loaded; the `created` of listed models.
    pub loaded_at: u64,
    /// Prices, wallets, limits and caps (`config/spend.rs`).
    pub spend: super::spend::Policy,
    /// Problems that do not stop the gateway (printed by `check`, logged by `serve`).
    pub warnings: Vec<String>,
    /// Compiled `[policies.NAME]`.
    pub policies: std::collections::BTreeMap<String, Arc<crate::dlp::Policy>>,
    /// How upstreams are reached: proxy, CAs, client certificates, pools (`egress.rs`).
    pub egress: Arc<crate::egress::Settings>,
    /// Audit sinks and the config hash (`config/ops.rs`).
    pub ops: super::ops::Ops,
}

/// `[routing]`, validated.
#[derive(Debug, Clone)]
pub struct Routing {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
    pub attempt_timeout: Duration,
    pub cooldown_failures: u32,
    pub failure_window: Duration,
    pub cooldown: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min: u32,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub key_file_check: Duration,
    pub cors: Option<Cors>,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub any_origin: bool,
    pub origins: HashSet<String>,
    pub allowed_headers: HeaderValue,
    pub max_age: HeaderValue,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    /// Names the key pool in the health registry: the provider's name, or the deployment's
    /// id for a deployment with keys of its own.
    pub pool: String,
    pub kind: ProviderKind,
    /// Without a trailing slash; endpoint paths (`/chat/completions`) are appended.
    pub base_url: String,
    pub keys: KeyRing,
    /// The header the pool's keys go in.
    pub auth_header: HeaderName,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub stream_include_usage: bool,
    /// `max_tokens` for a provider that requires one, when the request sets none; absent:
    /// the model's own maximum output (built-in table), else 4096.
    pub default_max_tokens: Option<u32>,
    pub api_version: String,
    pub mock: MockSettings,
    /// Parameters this vendor drops, renames or refuses (OpenAI wire format only).
    pub params: crate::providers::presets::Params,
    /// AWS region (Bedrock; empty for other kinds).
    pub region: String,
    /// SigV4 credentials (Bedrock without an API key); used when no pool key is picked.
    pub aws: Option<Arc<AwsCredentials>>,
}

/// The AWS credentials a Bedrock provider signs its requests with (SigV4).
#[derive(Debug)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// The secrets, for scrubbing echoes of them out of upstream error bodies.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.secret_access_key).chain(self.session_token.as_ref())
    }
}

impl Provider {
    /// This provider with another key pool (a deployment's own keys).
    fn with_keys(&self, pool: String, keys: KeyRing) -> Self {
        let mut unused = Vec::new();
        Self {
            name: self.name.clone(),
            pool,
            kind: self.kind,
            base_url: self.base_url.clone(),
            keys,
            auth_header: self.auth_header.clone(),
            headers: self.headers.clone(),
            stream_include_usage: self.stream_include_usage,
            default_max_tokens: self.default_max_tokens,
            api_version: self.api_version.clone(),
            params: self.params.clone(),
            // A mock answers without keys; a copy never needs the original's counters.
            mock: mock_settings(&MockConfig::default(), "", &mut unused),
            region: self.region.clone(),
            // The deployment's own key (a Bedrock API key) replaces request signing.
            aws: None,
        }
    }

    /// The next key of the pool (round-robin) that `usable` accepts, as its index and its
    /// header value; when none is usable, the next one anyway. None: keyless upstream.
    pub fn pick_key(&self, usable: impl Fn(usize) -> bool) -> Option<(usize, HeaderValue)> {
        self.keys.pick(usable)
    }
}

#[derive(Debug)]
pub struct MockSettings {
    pub reply: Option<String>,
    pub chunk_chars: usize,
    pub chunk_delay: Duration,
    pub latency: Duration,
    pub embedding_dimensions: usize,
    pub fail_status: http::StatusCode,
    pub fail_body: Option<String>,
    pub fail_every: u64,
    pub fail_probability: f64,
    /// Requests seen, for `fail_every`.
    pub counter: AtomicU64,
}

#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub deployments: Vec<Deployment>,
    pub strategy: Strategy,
    /// Indexes into `Runtime::models`.
    pub fallbacks: Vec<usize>,
    pub context_window_fallbacks: Vec<usize>,
    pub content_policy_fallbacks: Vec<usize>,
    /// Where the next round-robin request starts.
    pub next: AtomicUsize,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    pub provider: usize,
    pub model: String,
    pub weight: u32,
    /// `provider/model`: the name in headers, metrics and the health registry.
    pub id: String,
    /// USD per million (input, output) tokens.
    pub price: Option<(f64, f64)>,
    pub capabilities: Capabilities,
    pub context_window: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub timeout: Option<Duration>,
    pub region: Option<String>,
}

/// What a deployment can do (or a request needs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub vision: bool,
    pub tools: bool,
    pub json: bool,
    pub streaming: bool,
}

impl Capabilities {
    pub const ALL: Self = Self {
        vision: true,
        tools: true,
        json: true,
        streaming: true,
    };

    /// The first capability `need` has and `self` lacks.
    pub fn missing(&self, need: &Self) -> Option<&'static str> {
        [
            (need.vision && !self.vision, "vision"),
            (need.tools && !self.tools, "tools"),
            (need.json && !self.json, "json"),
            (need.streaming && !self.streaming, "streaming"),
        ]
        .into_iter()
        .find_map(|(lacking, name)| lacking.then_some(name))
    }
}

#[derive(Debug)]
pub struct Project {
    pub name: String,
    pub models: Vec<String>,
    pub allow_provider_pin: bool,
    pub cache: bool,
    pub regions: Vec<String>,
    /// The data protection policy, compiled.
    pub policy: Option<Arc<crate::dlp::Policy>>,
}

impl Project {
    /// Whether `model` matches one of the project's globs.
    pub fn allows(&self, model: &str) -> bool {
        self.models.iter().any(|g| glob_match(g, model))
    }
}

/// SHA-256 of a virtual key.
pub type KeyHash = [u8; 32];

/// Hashes a virtual key the way the config stores it.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// Virtual-key lookup: bucketed by the first 8 bytes of the hash, then compared in full in
/// constant time, so a lookup neither scans every key nor leaks timing on the full hash.
#[derive(Debug, Default)]
struct KeyIndex {
    buckets: HashMap<u64, Vec<(KeyHash, usize)>>,
}

impl KeyIndex {
    fn insert(&mut self, hash: KeyHash, project: usize) {
        self.buckets
            .entry(prefix(&hash))
            .or_default()
            .push((hash, project));
    }

    fn find(&self, hash: &KeyHash) -> Option<usize> {
        let bucket = self.buckets.get(&prefix(hash))?;
        let mut found = None;
        for (h, project) in bucket {
            if bool::from(h.ct_eq(hash)) {
                found = Some(*project);
            }
        }
        found
    }
}

fn prefix(hash: &KeyHash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(b)
}

/// What an authenticated virtual key resolves to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub project: Arc<Project>,
    /// Short non-secret id of the key (first 8 hex digits of its hash), for logs and audit.
    pub key_id: String,
}

impl Runtime {
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.provider_index
            .get(name)
            .and_then(|&i| self.providers.get(i))
    }

    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.model_index.get(name).and_then(|&i| self.models.get(i))
    }

    /// Resolves a presented virtual key to its project.
    pub fn authenticate(&self, key: &str) -> Option<Caller> {
        let hash = hash_key(key);
        let project = self.keys.find(&hash)?;
        Some(Caller {
            project: self.projects.get(project)?.clone(),
            key_id: hex(&hash[..4]),
        })
    }

    pub fn key_count(&self) -> usize {
        self.keys.buckets.values().map(Vec::len).sum()
    }

    /// Validates `config`, reading provider keys with `env` (injected so tests need not touch
    /// the process environment).
    pub fn build(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<String>> {
        let mut errs = Vec::new();
        let server = server_settings(config, &mut errs);
        let egress = crate::egress::settings(&config.egress, &config.providers, env, &mut errs);

        let mut providers = Vec::new();
        let mut provider_index = HashMap::new();
        for (i, p) in config.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if p.name.is_empty() || p.name.contains('/') {
                errs.push(format!("{at}.name: must be non-empty and contain no '/'"));
            }
            if provider_index.insert(p.name.clone(), i).is_some() {
                errs.push(format!("{at}.name: duplicate provider name {:?}", p.name));
            }
            let preset = p.preset.as_deref().and_then(|name| {
                let found = crate::providers::presets::find(name);
                if found.is_none() {
                    let known: Vec<&str> = crate::providers::presets::PRESETS
                        .iter()
                        .map(|p| p.name)
                        .collect();
                    errs.push(format!(
                        "{at}.preset: unknown preset {name:?}; known: {}",
                        known.join(", ")
                    ));
                } else if p.kind != ProviderKind::Openai {
                    errs.push(format!(
                        "{at}.preset: presets are OpenAI-compatible vendors; set kind = \"openai\""
                    ));
                }
                found
            });
            let mut params = crate::providers::presets::Params::new(&p.name);
            if let Some(preset) = preset {
                params = params.with_preset(preset);
            }
            params.drop.extend(p.drop_params.iter().cloned());
            params
                .rename
                .extend(p.rename_params.iter().map(|(a, b)| (a.clone(), b.clone())));
            let region = bedrock_region(p, &at, &mut errs);
            let base_url = match (&p.base_url, p.kind) {
                (Some(u), _) => u.trim_end_matches('/').to_string(),
                (None, _) if preset.is_some() => {
                    preset.map(|p| p.base_url.to_string()).unwrap_or_default()
                }
                (None, ProviderKind::Openai) => OPENAI_BASE_URL.to_string(),
                (None, ProviderKind::Anthropic) => {
                    crate::providers::anthropic::DEFAULT_BASE_URL.to_string()
                }
                (None, ProviderKind::Gemini) => {
                    crate::providers::gemini::DEFAULT_BASE_URL.to_string()
                }
                (None, ProviderKind::Cohere) => {
                    crate::providers::cohere::DEFAULT_BASE_URL.to_string()
                }
                // Without a region there is no endpoint; the region error says so.
                (None, ProviderKind::Bedrock) if region.is_empty() => String::new(),
                (None, ProviderKind::Bedrock) => {
                    crate::providers::bedrock::default_base_url(&region)
                }
                (None, ProviderKind::Azure) => {
                    errs.push(format!(
                        "{at}.base_url: an azure provider needs its resource URL, like \"https://NAME.openai.azure.com/openai\""
                    ));
                    String::new()
                }
                (None, ProviderKind::Mock) => "mock://".to_string(),
            };
            if p.kind != ProviderKind::Mock && !base_url.is_empty() {
                match base_url.parse::<Uri>() {
                    Ok(u)
                        if matches!(u.scheme_str(), Some("http" | "https"))
                            && u.host().is_some() => {}
                    _ => errs.push(format!("{at}.base_url: {base_url:?} is not an http(s) URL")),
                }
            }
            // A preset's usual key variable, when the config names no key at all.
            let preset_env = preset
                .and_then(|pr| pr.key_env)
                .filter(|_| p.api_key_env.is_none() && p.api_key_file.is_none())
                .map(|v| OneOrMany::One(v.to_string()));
            let entra = p.auth == Some(super::AzureAuth::Entra);
            if p.auth.is_some() && p.kind != ProviderKind::Azure {
                errs.push(format!(
                    "{at}.auth: only azure providers choose how keys are sent"
                ));
            }
            let keys = read_keys(
                key_style(p.kind, entra),
                p.api_key_env.as_ref().or(preset_env.as_ref()),
                p.api_key_file.as_ref(),
                &at,
                &format!("provider {:?}", p.name),
                env,
                &mut errs,
            );
            let aws = aws_credentials(p, &at, env, &mut errs).map(Arc::new);
            let mut headers = Vec::new();
            for (k, v) in &p.headers {
                match (
                    HeaderName::try_from(k.as_str()),
                    HeaderValue::try_from(v.as_str()),
                ) {
                    (Ok(k), Ok(v)) => headers.push((k, v)),
                    _ => errs.push(format!("{at}.headers.{k}: not a valid HTTP header")),
                }
            }
            // Only a mock provider's `[providers.mock]` table means anything.
            let mut mock_errs = Vec::new();
            let mock = mock_settings(&p.mock, &format!("{at}.mock"), &mut mock_errs);
            if p.kind == ProviderKind::Mock {
                errs.extend(mock_errs);
            }
            if matches!(
                p.kind,
                ProviderKind::Openai
                    | ProviderKind::Anthropic
                    | ProviderKind::Gemini
                    | ProviderKind::Cohere
            ) && p.base_url.is_none()
                && preset.is_none()
                && p.api_key_env.is_none()
                && p.api_key_file.is_none()
            {
                errs.push(format!(
                    "{at}: provider {:?} goes to {base_url} (no base_url) but has no key: set api_key_env or api_key_file",
                    p.name
                ));
            }
            providers.push(Arc::new(Provider {
                name: p.name.clone(),
                pool: p.name.clone(),
                kind: p.kind,
                base_url,
                keys,
                auth_header: if entra {
                    http::header::AUTHORIZATION
                } else {
                    crate::providers::adapter(p.kind).auth_header()
                },
                headers,
                stream_include_usage: p.stream_include_usage
                    && preset.is_none_or(|pr| pr.stream_usage),
                default_max_tokens: p.default_max_tokens,
                api_version: p.api_version.clone(),
                mock,
                params,
                region,
                aws,
            }));
        }

        let mut models = Vec::new();
        let mut model_index = HashMap::new();
        for (i, m) in config.models.iter().enumerate() {
            let at = format!("models[{i}]");
            if m.name.is_empty() {
                errs.push(format!("{at}.name: must not be empty"));
            }
            if model_index.insert(m.name.clone(), i).is_some() {
                errs.push(format!("{at}.name: duplicate model name {:?}", m.name));
            }
            if m.deployments.is_empty() {
                errs.push(format!(
                    "{at}.deployments: at least one deployment is needed"
                ));
            }
            let mut deployments = Vec::new();
            for (j, d) in m.deployments.iter().enumerate() {
                let own_keys = d.api_key_env.is_some() || d.api_key_file.is_some();
                let index = match provider_index.get(&d.provider) {
                    Some(&p) if own_keys => {
                        // Same provider, its own key pool: a copy of the provider with it.
                        let base = providers.get(p).cloned();
                        // A deployment's keys go the way its provider's do.
                        let style = providers.get(p).map_or(Style::Bearer, |b| {
                            if b.auth_header == http::header::AUTHORIZATION {
                                Style::Bearer
                            } else {
                                Style::Bare
                            }
                        });
                        let keys = read_keys(
                            style,
                            d.api_key_env.as_ref(),
                            d.api_key_file.as_ref(),
                            &format!("{at}.deployments[{j}]"),
                            &format!("deployment {}/{}", d.provider, d.model),
                            env,
                            &mut errs,
                        );
                        base.map(|b| {
                            providers.push(Arc::new(
                                b.with_keys(format!("{}/{}", d.provider, d.model), keys),
                            ));
                            providers.len() - 1
                        })
                    }
                    other => other.copied(),
                };
                // What the deployment does not declare comes from the built-in table.
                let known = crate::providers::models::lookup(&d.model);
                match index {
                    Some(p) => deployments.push(Deployment {
                        provider: p,
                        model: d.model.clone(),
                        weight: d.weight,
                        id: format!("{}/{}", d.provider, d.model),
                        price: d.price.map(|p| (p.input, p.output)),
                        capabilities: match (&d.capabilities, known) {
                            (None, Some(k)) => k.caps,
                            _ => capabilities(
                                d.capabilities.as_deref(),
                                &format!("{at}.deployments[{j}].capabilities"),
                                &mut errs,
                            ),
                        },
                        context_window: d.context_window.or(known.map(|k| k.context_window)),
                        max_output_tokens: d.max_output_tokens.or(known.map(|k| k.max_output)),
                        timeout: d.timeout_secs.map(Duration::from_secs),
                        region: d.region.clone(),
                    }),
                    None => errs.push(format!(
                        "{at}.deployments[{j}].provider: unknown provider {:?}",
                        d.provider
                    )),
                }
                if d.model.is_empty() {
                    errs.push(format!("{at}.deployments[{j}].model: must not be empty"));
                }
                if d.price
                    .is_some_and(|p| !(p.input >= 0.0 && p.output >= 0.0))
                {
                    errs.push(format!("{at}.deployments[{j}].price: prices must be >= 0"));
                }
                if d.timeout_secs == Some(0) {
                    errs.push(format!(
                        "{at}.deployments[{j}].timeout_secs: must be greater than 0"
                    ));
                }
                if d.context_window == Some(0) {
                    errs.push(format!(
                        "{at}.deployments[{j}].context_window: must be greater than 0"
                    ));
                }
                if d.max_output_tokens == Some(0) {
                    errs.push(format!(
                        "{at}.deployments[{j}].max_output_tokens: must be greater than 0"
                    ));
                }
                if d.weight == 0 {
                    errs.push(format!("{at}.deployments[{j}].weight: must be at least 1"));
                }
            }
            models.push(Arc::new(Model {
                name: m.name.clone(),
                deployments,
                strategy: m.strategy,
                fallbacks: Vec::new(),
                context_window_fallbacks: Vec::new(),
                content_policy_fallbacks: Vec::new(),
                next: AtomicUsize::new(0),
            }));
        }
        // Fallbacks name other groups, so they resolve once every group is known.
        for (i, m) in config.models.iter().enumerate() {
            let mut resolve = |field: &str, names: &[String]| -> Vec<usize> {
                let mut out = Vec::new();
                for (j, name) in names.iter().enumerate() {
                    match model_index.get(name) {
                        Some(&k) if k != i => out.push(k),
                        Some(_) => errs.push(format!(
                            "models[{i}].{field}[{j}]: a model cannot fall back to itself"
                        )),
                        None => {
                            errs.push(format!("models[{i}].{field}[{j}]: unknown model {name:?}"))
                        }
                    }
                }
                out
            };
            let fallbacks = resolve("fallbacks", &m.fallbacks);
            let context = resolve("context_window_fallbacks", &m.context_window_fallbacks);
            let policy = resolve("content_policy_fallbacks", &m.content_policy_fallbacks);
            if let Some(model) = models.get_mut(i).and_then(Arc::get_mut) {
                model.fallbacks = fallbacks;
                model.context_window_fallbacks = context;
                model.content_policy_fallbacks = policy;
            }
        }
        let policies = crate::dlp::policy::compile_all(&config.policies, env, &mut errs);
        let mut projects = Vec::new();
        let mut names = HashSet::new();
        let mut keys = KeyIndex::default();
        let mut seen_keys = HashSet::new();
        for (i, p) in config.projects.iter().enumerate() {
            let at = format!("projects[{i}]");
            if p.name.is_empty() {
                errs.push(format!("{at}.name: must not be empty"));
            }
            if !names.insert(p.name.clone()) {
                errs.push(format!("{at}.name: duplicate project name {:?}", p.name));
            }
            for (j, k) in p.keys.iter().enumerate() {
                match parse_key_hash(k) {
                    Some(h) if seen_keys.insert(h) => keys.insert(h, i),
                    Some(_) => errs.push(format!(
                        "{at}.keys[{j}]: this key is already used (each key belongs to one project)"
                    )),
                    None => errs.push(format!(
                        "{at}.keys[{j}]: expected \"sha256:<64 hex digits>\" as printed by `gateway hash-key`"
                    )),
                }
            }
            if p.models.is_empty() {
                errs.push(format!(
                    "{at}.models: empty list allows no model; use [\"*\"] for all"
                ));
            }
            let policy = p.policy.as_ref().and_then(|name| {
                let found = policies.get(name).cloned();
                if found.is_none() && !config.policies.contains_key(name) {
                    errs.push(format!("{at}.policy: unknown policy {name:?}"));
                }
                found
            });
            projects.push(Arc::new(Project {
                name: p.name.clone(),
                models: p.models.clone(),
                allow_provider_pin: p.allow_provider_pin,
                cache: p.cache,
                regions: p.regions.clone(),
                policy,
            }));
        }

        let mut warnings = Vec::new();
        let spend = super::spend::build(
            config,
            &providers,
            &mut models,
            env,
            &mut errs,
            &mut warnings,
        );
        let routing = routing_settings(&config.routing, &mut errs);
        let ops = super::ops::build(config, env, &mut errs);
        if config.cache.max_bytes == 0 || config.cache.ttl_secs == 0 {
            errs.push("cache: max_bytes and ttl_secs must be greater than 0".into());
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let loaded_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Ok(Self {
            server: server.ok_or_else(|| vec!["server: invalid".to_string()])?,
            providers,
            models,
            projects,
            provider_index,
            model_index,
            keys,
            routing,
            cache: (
                config.cache.max_bytes,
                Duration::from_secs(config.cache.ttl_secs),
            ),
            loaded_at,
            spend,
            warnings,
            policies,
            egress: Arc::new(egress.ok_or_else(|| vec!["egress: invalid".to_string()])?),
            ops,
        })
    }
}

/// The region of a Bedrock provider (required there, refused elsewhere); empty when absent.
fn bedrock_region(p: &ProviderConfig, at: &str, errs: &mut Vec<String>) -> String {
    let region = p.region.clone().unwrap_or_default();
    if p.kind != ProviderKind::Bedrock {
        if p.region.is_some() {
            errs.push(format!("{at}.region: only for kind = \"bedrock\""));
        }
        return String::new();
    }
    if region.is_empty() {
        errs.push(format!(
            "{at}.region: a bedrock provider needs its AWS region, like \"us-east-1\""
        ));
    } else if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(format!(
            "{at}.region: {region:?} is not an AWS region name like \"us-east-1\""
        ));
    }
    region
}

/// The SigV4 credentials of a Bedrock provider that has no API key: each of the access key id,
/// secret and session token from its `_env` variable or `_file`, by default from the standard
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` variables. Problems name
/// the setting and the variable, never a value.
fn aws_credentials(
    p: &ProviderConfig,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<AwsCredentials> {
    let explicit = p.aws_fields().iter().any(|(_, v)| v.is_some());
    if p.kind != ProviderKind::Bedrock {
        for (field, v) in p.aws_fields() {
            if v.is_some() {
                errs.push(format!("{at}.{field}: only for kind = \"bedrock\""));
            }
        }
        return None;
    }
    if p.api_key_env.is_some() || p.api_key_file.is_some() {
        if explicit {
            errs.push(format!(
                "{at}: provider {:?} has a Bedrock API key (api_key_env/api_key_file) and AWS credentials; set one of them",
                p.name
            ));
        }
        return None;
    }
    let owner = format!("provider {:?}", p.name);
    let mut read = |field: &str, var: Option<&str>, file: Option<&str>, default: Option<&str>| {
        if var.is_some() && file.is_some() {
            errs.push(format!(
                "{at}.{field}_env: set {field}_env or {field}_file, not both ({owner})"
            ));
            return None;
        }
        if let Some(file) = file {
            return match std::fs::read_to_string(file) {
                Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                Ok(_) => {
                    errs.push(format!("{at}.{field}_file: {file:?} is empty ({owner})"));
                    None
                }
                Err(e) => {
                    errs.push(format!(
                        "{at}.{field}_file: cannot read {file:?}: {} ({owner})",
                        e.kind()
                    ));
                    None
                }
            };
        }
        let name = var.or(default)?;
        match env(name) {
            Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
            _ => {
                errs.push(format!(
                    "{at}.{field}_env: environment variable {name:?} is not set ({owner}; or set api_key_env for a Bedrock API key)"
                ));
                None
            }
        }
    };
    let access_key_id = read(
        "access_key_id",
        p.access_key_id_env.as_deref(),
        p.access_key_id_file.as_deref(),
        Some("AWS_ACCESS_KEY_ID"),
    );
    let secret_access_key = read(
        "secret_access_key",
        p.secret_access_key_env.as_deref(),
        p.secret_access_key_file.as_deref(),
        Some("AWS_SECRET_ACCESS_KEY"),
    );
    // The ambient session token only goes with the ambient key id: a token beside a
    // long-term key named in the config would make AWS reject every request.
    let ambient = p.access_key_id_env.is_none() && p.access_key_id_file.is_none();
    let named_token = p.session_token_env.is_some() || p.session_token_file.is_some();
    let session_token = if named_token {
        read(
            "session_token",
            p.session_token_env.as_deref(),
            p.session_token_file.as_deref(),
            None,
        )
    } else if ambient {
        env("AWS_SESSION_TOKEN")
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
    } else {
        None
    };
    let (access_key_id, secret_access_key) = (access_key_id?, secret_access_key?);
    // Both go into request headers; a value that cannot is a broken setting, said at load.
    // The key id sits in `Credential=<id>/<scope>, ...`, so a separator in it breaks that too.
    if !access_key_id
        .expose()
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b',')
    {
        errs.push(format!(
            "{at}.access_key_id_env: the access key id of {owner} has characters an AWS key id cannot have"
        ));
    }
    if session_token
        .as_ref()
        .is_some_and(|t| HeaderValue::try_from(t.expose()).is_err())
    {
        errs.push(format!(
            "{at}.session_token_env: the session token of {owner} has characters not allowed in an HTTP header"
        ));
    }
    Some(AwsCredentials {
        access_key_id,
        secret_access_key,
        session_token,
    })
}

/// How a provider kind takes its keys: Anthropic (`x-api-key`), Azure (`api-key`, unless
/// Entra ID tokens) and Gemini (`x-goog-api-key`) the bare key, the rest a bearer token.
fn key_style(kind: ProviderKind, entra: bool) -> Style {
    match kind {
        ProviderKind::Azure if entra => Style::Bearer,
        ProviderKind::Anthropic | ProviderKind::Azure | ProviderKind::Gemini => Style::Bare,
        _ => Style::Bearer,
    }
}

/// Reads a key pool from environment variables and files. Problems name `owner`, never a key.
fn read_keys(
    style: Style,
    vars: Option<&OneOrMany>,
    files: Option<&OneOrMany>,
    at: &str,
    owner: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> KeyRing {
    KeyRing::load(
        &vars.map(OneOrMany::to_vec).unwrap_or_default(),
        files.map(OneOrMany::to_vec).unwrap_or_default(),
        style,
        env,
        at,
        owner,
        errs,
    )
}

fn capabilities(names: Option<&[String]>, at: &str, errs: &mut Vec<String>) -> Capabilities {
    let Some(names) = names else {
        return Capabilities::ALL;
    };
    let mut c = Capabilities::default();
    for (i, n) in names.iter().enumerate() {
        match n.as_str() {
            "vision" => c.vision = true,
            "tools" => c.tools = true,
            "json" => c.json = true,
            "streaming" => c.streaming = true,
            other => errs.push(format!(
                "{at}[{i}]: unknown capability {other:?} (known: vision, tools, json, streaming)"
            )),
        }
    }
    c
}

fn routing_settings(r: &RoutingConfig, errs: &mut Vec<String>) -> Routing {
    if r.max_attempts == 0 {
        errs.push("routing.max_attempts: must be at least 1".into());
    }
    if r.attempt_timeout_secs == Some(0) {
        errs.push("routing.attempt_timeout_secs: must be greater than 0".into());
    }
    if r.backoff_base_ms > r.backoff_max_ms {
        errs.push("routing.backoff_base_ms: must not exceed routing.backoff_max_ms".into());
    }
    if !(0.0..=1.0).contains(&r.retry_budget_ratio) {
        errs.push("routing.retry_budget_ratio: must be between 0.0 and 1.0".into());
    }
    if r.cooldown_failures == 0 {
        errs.push("routing.cooldown_failures: must be at least 1".into());
    }
    Routing {
        max_attempts: r.max_attempts.max(1),
        backoff_base: Duration::from_millis(r.backoff_base_ms),
        backoff_max: Duration::from_millis(r.backoff_max_ms),
        max_retry_after: Duration::from_secs(r.max_retry_after_secs),
        attempt_timeout: r
            .attempt_timeout_secs
            .map_or(Duration::MAX, |s| Duration::from_secs(s.max(1))),
        cooldown_failures: r.cooldown_failures.max(1),
        failure_window: Duration::from_secs(r.failure_window_secs),
        cooldown: Duration::from_secs(r.cooldown_secs),
        retry_budget_ratio: r.retry_budget_ratio,
        retry_budget_min: r.retry_budget_min,
    }
}

fn server_settings(config: &Config, errs: &mut Vec<String>) -> Option<ServerSettings> {
    let s = &config.server;
    let listen = s.listen.parse::<SocketAddr>().map_err(|_| {
        errs.push(format!(
            "server.listen: {:?} is not an address like 127.0.0.1:8080",
            s.listen
        ))
    });
    let admin = s.admin_listen.parse::<SocketAddr>().map_err(|_| {
        errs.push(format!(
            "server.admin_listen: {:?} is not an address like 127.0.0.1:9090",
            s.admin_listen
        ))
    });
    for (name, v) in [
        ("max_body_bytes", s.max_body_bytes),
        ("request_timeout_secs", s.request_timeout_secs),
        ("stream_idle_timeout_secs", s.stream_idle_timeout_secs),
        ("key_file_check_secs", s.key_file_check_secs),
    ] {
        if v == 0 {
            errs.push(format!("server.{name}: must be greater than 0"));
        }
    }
    let cors = if s.cors.allowed_origins.is_empty() {
        None
    } else {
        let headers = s.cors.allowed_headers.join(", ");
        let allowed_headers = HeaderValue::try_from(headers).map_err(|_| {
            errs.push("server.cors.allowed_headers: not valid header names".to_string())
        });
        Some(Cors {
            any_origin: s.cors.allowed_origins.iter().any(|o| o == "*"),
            origins: s
                .cors
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            allowed_headers: allowed_headers.ok()?,
            max_age: HeaderValue::from(s.cors.max_age_secs),
        })
    };
    Some(ServerSettings {
        listen: listen.ok()?,
        admin_listen: admin.ok()?,
        max_body_bytes: usize::try_from(s.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(s.request_timeout_secs),
        stream_idle_timeout: Duration::from_secs(s.stream_idle_timeout_secs),
        shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
        key_file_check: Duration::from_secs(s.key_file_check_secs),
        cors,
    })
}

pub fn mock_settings(m: &MockConfig, at: &str, errs: &mut Vec<String>) -> MockSettings {
    let fail_status = http::StatusCode::from_u16(m.fail_status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or_else(|| {
            errs.push(format!(
                "{at}.fail_status: {} is not an HTTP error status (400-599)",
                m.fail_status
            ));
            http::StatusCode::INTERNAL_SERVER_ERROR
        });
    if !(0.0..=1.0).contains(&m.fail_probability) {
        errs.push(format!(
            "{at}.fail_probability: must be between 0.0 and 1.0"
        ));
    }
    if m.chunk_chars == 0 {
        errs.push(format!("{at}.chunk_chars: must be greater than 0"));
    }
    if m.embedding_dimensions == 0 {
        errs.push(format!("{at}.embedding_dimensions: must be greater than 0"));
    }
    MockSettings {
        reply: m.reply.clone(),
        chunk_chars: m.chunk_chars.max(1),
        chunk_delay: Duration::from_millis(m.chunk_delay_ms),
        latency: Duration::from_millis(m.latency_ms),
        embedding_dimensions: m.embedding_dimensions.max(1),
        fail_status,
        fail_body: m.fail_body.clone(),
        fail_every: m.fail_every,
        fail_probability: m.fail_probability,
        counter: AtomicU64::new(0),
    }
}

fn parse_key_hash(s: &str) -> Option<KeyHash> {
    let hex_part = s.strip_prefix("sha256:")?;
    if hex_part.len() != 64 {
        return None;
    }
    if !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex_part.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything/at-all"));
        assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
        assert!(glob_match("gpt-4o*", "gpt-4o"));
        assert!(!glob_match("gpt-4o*", "gpt-4"));
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("*-mini", "gpt-4o-mini"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn key_hash_round_trip() {
        let h = hash_key("sk-gateway-demo");
        let text = format!("sha256:{}", hex(&h));
        assert_eq!(parse_key_hash(&text), Some(h));
        assert_eq!(parse_key_hash("sha256:zz"), None);
        assert_eq!(parse_key_hash(&text.replace("sha256:", "md5:")), None);
    }
}
