//! Spend control in `gateway.toml`: `[pricing."provider/model"]` overrides, `[spend]`
//! (unknown prices, tiers, defaults), `[state]` (the journal directory and its fsync policy),
//! and the per-project `budget`, `limits`, `caps`, `tiers` and `key_budgets`; and their
//! validation into a [`Policy`] the budget stage reads from the `Runtime` snapshot.
//!
//! What a wallet has spent is not here: that is the ledger's, and survives reloads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{glob_match, Model, Provider};
use super::{Config, Secret};
use crate::ledger::{Calendar, Fsync, Period, RateLimits, WalletSpec};
use crate::pricing::{self, Price, NANOS_PER_USD};

/// `[spend]`: gateway-wide spend settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpendConfig {
    /// What happens to requests of a project with a budget (or a `max_request_usd` cap) on a
    /// deployment with no known price: `reject` them, or price them at `fallback_price`.
    pub unknown_price: UnknownPrice,
    pub fallback_price: Option<Price>,
    /// Completion tokens assumed for the worst case of a request that sets no `max_tokens`
    /// when the price table does not know the model's largest completion.
    pub default_max_output_tokens: u64,
    /// Named model tiers (globs) projects may be given with `tiers = [...]`.
    pub tiers: BTreeMap<String, Vec<String>>,
}

impl Default for SpendConfig {
    fn default() -> Self {
        Self {
            unknown_price: UnknownPrice::Reject,
            fallback_price: None,
            default_max_output_tokens: 4096,
            tiers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPrice {
    Reject,
    Fallback,
}

/// `[state]`: where spend is persisted, and whether it is shared between replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `local` (this process, with the journal in `dir`) or `redis` (shared by replicas).
    pub backend: Backend,
    /// Directory of the spend journal and snapshot; absent: spend lives in memory only.
    pub dir: Option<PathBuf>,
    /// `batched` (fsync at most `fsync_window_ms` after a settlement) or `always` (fsync
    /// before each settlement returns).
    pub fsync: FsyncConfig,
    pub fsync_window_ms: u64,
    /// How often the journal is compacted into the snapshot (also done at shutdown).
    pub snapshot_every_secs: u64,
    /// `[state.redis]`: the shared store when `backend = "redis"`.
    pub redis: super::shared::RedisConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Local,
    Redis,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            redis: super::shared::RedisConfig::default(),
            dir: None,
            fsync: FsyncConfig::Batched,
            fsync_window_ms: 100,
            snapshot_every_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncConfig {
    Batched,
    Always,
}

/// `budget = { usd = 100, period = "monthly" }` on a project or a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub usd: f64,
    #[serde(default = "monthly")]
    pub period: String,
    /// Day of the month a monthly budget resets (1-28).
    #[serde(default)]
    pub reset_day: Option<u8>,
    /// Day a weekly budget resets (`monday` ... `sunday`).
    #[serde(default)]
    pub reset_weekday: Option<String>,
    /// Fixed offset of the budget's calendar from UTC, like `"+02:00"`.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// Fractions of the budget at which an alert is logged and counted.
    #[serde(default = "default_alerts")]
    pub alerts: Vec<f64>,
    /// `reject` a request the wallet cannot cover, or `clamp` its `max_tokens` to what the
    /// remaining balance pays for.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

fn clamp() -> OnExceed {
    OnExceed::Clamp
}

fn monthly() -> String {
    "monthly".into()
}

fn default_alerts() -> Vec<f64> {
    vec![0.8, 1.0]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    #[default]
    Reject,
    Clamp,
}

/// `limits = { rpm = 60, tpm = 100000, concurrency = 8 }`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u32>,
}

/// `caps = { max_request_usd = 0.5, max_tokens = 4096, max_prompt_tokens = 32000 }`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsConfig {
    pub max_request_usd: Option<f64>,
    pub max_tokens: Option<u64>,
    /// `clamp` a larger `max_tokens` to the cap (the default), or `reject` the request.
    #[serde(default = "clamp")]
    pub max_tokens_action: OnExceed,
    pub max_prompt_tokens: Option<u64>,
}

/// A wallet and limits of one virtual key inside a project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBudgetConfig {
    /// The key's hash as listed in the project's `keys`.
    pub key: String,
    #[serde(default)]
    pub budget: Option<BudgetConfig>,
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
}

/// The validated spend policy.
#[derive(Debug, Default)]
pub struct Policy {
    pub projects: HashMap<String, Arc<ProjectSpend>>,
    /// Deployment id (`provider/model`) -> its price, for every configured deployment.
    pub prices: HashMap<String, Option<Price>>,
    overrides: Vec<(String, Price)>,
    fallback: Option<Price>,
    pub reject_unknown: bool,
    pub default_max_output: u64,
    pub state: Option<StateSettings>,
    /// `[state] backend = "redis"`: the shared store's settings.
    pub shared: Option<super::shared::SharedSettings>,
    /// Token for the admin listener's `/admin/usage`.
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub dir: PathBuf,
    pub fsync: Fsync,
    pub snapshot_every: Duration,
}

/// One project's spend rules.
#[derive(Debug)]
pub struct ProjectSpend {
    pub wallet: Arc<WalletSpec>,
    /// Key id (first 8 hex digits of its hash) -> the key's own wallet.
    pub keys: HashMap<String, Arc<WalletSpec>>,
    pub clamp: bool,
    pub caps: CapsConfig,
    /// Model globs of the project's tiers; empty: no tier restriction.
    pub tier_globs: Vec<String>,
    /// Whether money is at stake: a budget, a key budget or a per-request USD cap.
    pub enforced: bool,
}

impl ProjectSpend {
    /// An unrestricted project: spend recorded, nothing refused.
    pub fn open(name: &str) -> Self {
        Self {
            wallet: Arc::new(WalletSpec {
                id: name.to_string(),
                limit: None,
                calendar: Calendar::TOTAL,
                alerts: Vec::new(),
                rate: RateLimits::default(),
            }),
            keys: HashMap::new(),
            clamp: false,
            caps: CapsConfig::default(),
            tier_globs: Vec::new(),
            enforced: false,
        }
    }
}

impl Policy {
    /// The price of `model` at `provider`: a `[pricing]` override (exact, then glob), the
    /// built-in table, then the fallback if the operator chose one.
    pub fn price_of(&self, provider: &Provider, model: &str) -> Option<Price> {
        let id = format!("{}/{}", provider.name, model);
        if let Some(p) = self.prices.get(&id) {
            return *p;
        }
        self.resolve(provider, model)
    }

    fn resolve(&self, provider: &Provider, model: &str) -> Option<Price> {
        let id = format!("{}/{}", provider.name, model);
        let exact = self.overrides.iter().find(|(k, _)| *k == id);
        let glob = || self.overrides.iter().find(|(k, _)| glob_match(k, &id));
        if let Some((_, p)) = exact.or_else(glob) {
            return Some(*p);
        }
        pricing::builtin()
            .ok()
            .and_then(|t| {
                t.lookup(
                    pricing::sections_for(provider.kind, &provider.base_url),
                    model,
                )
            })
            .map(|(p, _)| p)
            .or(self.fallback)
    }
}

/// Validates the spend parts of `config`; fills in the price of every deployment that has none
/// of its own (so `least-cost` routing uses the table too). Problems go to `errs`, unknown
/// prices to `warnings`.
pub fn build(
    config: &Config,
    providers: &[Arc<Provider>],
    models: &mut [Arc<Model>],
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Policy {
    let mut policy = Policy {
        reject_unknown: config.spend.unknown_price == UnknownPrice::Reject,
        default_max_output: config.spend.default_max_output_tokens.max(1),
        ..Policy::default()
    };
    if let Err(e) = pricing::builtin() {
        errs.push(e);
    }
    for (k, p) in &config.pricing {
        if !k.contains('/') {
            errs.push(format!(
                "pricing.\"{k}\": the key must be \"<provider>/<model>\" (globs allowed)"
            ));
        }
        if !p.is_valid() {
            errs.push(format!("pricing.\"{k}\": prices must be numbers >= 0"));
        }
        policy.overrides.push((k.clone(), *p));
    }
    // Exact keys are tried before globs anyway; among globs, the more specific first.
    policy
        .overrides
        .sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    match (config.spend.unknown_price, config.spend.fallback_price) {
        (UnknownPrice::Fallback, None) => errs
            .push("spend.fallback_price: required when spend.unknown_price = \"fallback\"".into()),
        (UnknownPrice::Fallback, Some(p)) if !p.is_valid() => {
            errs.push("spend.fallback_price: prices must be numbers >= 0".into())
        }
        (UnknownPrice::Fallback, Some(p)) => policy.fallback = Some(p),
        (UnknownPrice::Reject, _) => {}
    }

    for (i, m) in models.iter_mut().enumerate() {
        let Some(m) = Arc::get_mut(m) else { continue };
        for (j, d) in m.deployments.iter_mut().enumerate() {
            let Some(provider) = providers.get(d.provider) else {
                continue;
            };
            let own = d.price.map(|(input, output)| Price {
                input,
                output,
                ..Price::default()
            });
            let price = own.or_else(|| policy.resolve(provider, &d.model));
            match price {
                Some(p) => d.price = d.price.or(Some((p.input, p.output))),
                None => warnings.push(format!(
                    "models[{i}].deployments[{j}]: no price known for \"{}\"; requests of projects with a budget are {} (add [pricing.\"{}\"])",
                    d.id,
                    if policy.reject_unknown { "rejected" } else { "priced at spend.fallback_price" },
                    d.id
                )),
            }
            policy.prices.insert(d.id.clone(), price);
        }
    }

    for (name, globs) in &config.spend.tiers {
        if globs.is_empty() {
            errs.push(format!("spend.tiers.{name}: an empty tier allows no model"));
        }
    }
    for (i, p) in config.projects.iter().enumerate() {
        let at = format!("projects[{i}]");
        let mut spend = ProjectSpend::open(&p.name);
        let mut enforced = false;
        let limits = p
            .limits
            .map(|l| rate_limits(&l, &format!("{at}.limits"), errs));
        let wallet = Arc::make_mut(&mut spend.wallet);
        wallet.rate = limits.unwrap_or_default();
        if let Some(b) = &p.budget {
            wallet_budget(wallet, b, &format!("{at}.budget"), errs);
            spend.clamp = b.on_exceed == OnExceed::Clamp;
            enforced = true;
        }
        if let Some(c) = p.caps {
            if c.max_request_usd
                .is_some_and(|v| !(v.is_finite() && v > 0.0))
            {
                errs.push(format!("{at}.caps.max_request_usd: must be greater than 0"));
            }
            if c.max_tokens == Some(0) || c.max_prompt_tokens == Some(0) {
                errs.push(format!("{at}.caps: token caps must be greater than 0"));
            }
            enforced |= c.max_request_usd.is_some();
            spend.caps = c;
        }
        for (j, t) in p.tiers.iter().enumerate() {
            match config.spend.tiers.get(t) {
                Some(globs) => spend.tier_globs.extend(globs.iter().cloned()),
                None => errs.push(format!(
                    "{at}.tiers[{j}]: unknown tier {t:?} (define it in [spend.tiers])"
                )),
            }
        }
        for (j, k) in p.key_budgets.iter().enumerate() {
            let at = format!("{at}.key_budgets[{j}]");
            if !p.keys.contains(&k.key) {
                errs.push(format!(
                    "{at}.key: not one of this project's keys (use the \"sha256:...\" form listed in keys)"
                ));
                continue;
            }
            // The same id authentication gives the key: 8 lower-case hex digits of its hash.
            let key_id: String = k
                .key
                .trim_start_matches("sha256:")
                .chars()
                .take(8)
                .collect::<String>()
                .to_ascii_lowercase();
            let mut w = WalletSpec {
                id: format!("{}/key:{key_id}", p.name),
                limit: None,
                calendar: Calendar::TOTAL,
                alerts: Vec::new(),
                rate: k
                    .limits
                    .map(|l| rate_limits(&l, &format!("{at}.limits"), errs))
                    .unwrap_or_default(),
            };
            if let Some(b) = &k.budget {
                wallet_budget(&mut w, b, &format!("{at}.budget"), errs);
                enforced = true;
                spend.clamp |= b.on_exceed == OnExceed::Clamp;
            }
            spend.keys.insert(key_id, Arc::new(w));
        }
        spend.enforced = enforced;
        policy.projects.insert(p.name.clone(), Arc::new(spend));
    }

    let s = &config.state;
    if let Some(dir) = &s.dir {
        if dir.as_os_str().is_empty() {
            errs.push("state.dir: must not be empty".into());
        }
        if s.fsync_window_ms == 0 || s.fsync_window_ms > 10_000 {
            errs.push("state.fsync_window_ms: must be between 1 and 10000".into());
        }
        if s.snapshot_every_secs == 0 {
            errs.push("state.snapshot_every_secs: must be greater than 0".into());
        }
        policy.state = Some(StateSettings {
            dir: dir.clone(),
            fsync: match s.fsync {
                FsyncConfig::Always => Fsync::Always,
                FsyncConfig::Batched => Fsync::Batched {
                    window_ms: s.fsync_window_ms.max(1),
                },
            },
            snapshot_every: Duration::from_secs(s.snapshot_every_secs.max(1)),
        });
    }
    if s.backend == Backend::Redis {
        policy.shared = super::shared::build(&s.redis, env, errs);
    }
    if let Some(var) = &config.server.admin_token_env {
        match env(var) {
            Some(v) if v.trim().len() >= 12 => policy.admin_token = Some(Secret::new(v.trim())),
            Some(_) => errs.push(format!(
                "server.admin_token_env: the token in {var:?} must be at least 12 characters"
            )),
            None => errs.push(format!(
                "server.admin_token_env: environment variable {var:?} is not set"
            )),
        }
    }
    policy
}

fn rate_limits(l: &LimitsConfig, at: &str, errs: &mut Vec<String>) -> RateLimits {
    if l.rpm == Some(0) || l.tpm == Some(0) || l.concurrency == Some(0) {
        errs.push(format!(
            "{at}: limits must be greater than 0 (leave one out for no limit)"
        ));
    }
    RateLimits {
        rpm: l.rpm,
        tpm: l.tpm,
        concurrency: l.concurrency,
    }
}

fn wallet_budget(w: &mut WalletSpec, b: &BudgetConfig, at: &str, errs: &mut Vec<String>) {
    if !(b.usd.is_finite() && b.usd >= 0.0) {
        errs.push(format!("{at}.usd: must be a number >= 0"));
    }
    w.limit = Some((b.usd.max(0.0) * NANOS_PER_USD).round() as u64);
    let reset_day = b.reset_day.unwrap_or(1);
    if !(1..=28).contains(&reset_day) {
        errs.push(format!(
            "{at}.reset_day: must be between 1 and 28 (every month has those)"
        ));
    }
    let weekday = match b.reset_weekday.as_deref().map(str::to_ascii_lowercase) {
        None => 0,
        Some(d) => [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ]
        .iter()
        .position(|n| *n == d)
        .unwrap_or_else(|| {
            errs.push(format!(
                "{at}.reset_weekday: expected a day name like \"monday\""
            ));
            0
        }) as u8,
    };
    let period = match b.period.as_str() {
        "daily" => Period::Daily,
        "weekly" => Period::Weekly { weekday },
        "monthly" => Period::Monthly {
            day: reset_day.clamp(1, 28),
        },
        "total" => Period::Total,
        other => {
            errs.push(format!(
                "{at}.period: {other:?} is not one of daily, weekly, monthly, total"
            ));
            Period::Total
        }
    };
    let offset_secs = match &b.utc_offset {
        None => 0,
        Some(o) => parse_offset(o).unwrap_or_else(|| {
            errs.push(format!(
                "{at}.utc_offset: expected \"+HH:MM\" or \"-HH:MM\""
            ));
            0
        }),
    };
    let mut alerts = b.alerts.clone();
    if alerts.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        errs.push(format!(
            "{at}.alerts: thresholds are fractions greater than 0, like 0.8"
        ));
    }
    alerts.sort_by(f64::total_cmp);
    w.calendar = Calendar {
        period,
        offset_secs,
    };
    w.alerts = alerts;
}

fn parse_offset(s: &str) -> Option<i64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+02:00"), Some(7200));
        assert_eq!(parse_offset("-05:30"), Some(-19_800));
        assert_eq!(parse_offset("02:00"), None);
        assert_eq!(parse_offset("+25:00"), None);
    }
}
