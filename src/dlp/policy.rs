//! `[policies.NAME]`: the raw config, its compiled form, and the text transformation.
//!
//! A policy is compiled once, when the config is loaded: custom regexes, the deny-list
//! automaton and the hash key are ready before the first request, so nothing is compiled on
//! the request path. Compile errors are reported with their TOML path, like the rest of the
//! config.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::injection::InjectionAction;
use super::{checksum, resolve, Engine, Entity, Finding, Kind, Sensitivity};

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Detected and counted, left in place.
    Allow,
    /// Replaced by `[TYPE]`.
    Redact,
    /// All but the last few characters replaced by `*`.
    Mask,
    /// Replaced by `[TYPE:<keyed hash>]`, stable across requests for the same key.
    Hash,
    /// Replaced by `<TYPE_n>` (stable within the request) and restored in the response.
    Pseudonymize,
    /// The request is rejected.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Redact => "redact",
            Self::Mask => "mask",
            Self::Hash => "hash",
            Self::Pseudonymize => "pseudonymize",
            Self::Block => "block",
        }
    }
}

fn one() -> u32 {
    1
}
fn redact() -> Action {
    Action::Redact
}
fn block() -> Action {
    Action::Block
}
fn four() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Bumped by the operator on every change; reported in audit metadata.
    #[serde(default = "one")]
    pub version: u32,
    /// The action for entity types not listed in `actions`.
    #[serde(default = "redact")]
    pub default_action: Action,
    /// Per-entity actions: `EMAIL = "pseudonymize"`, `US_SSN = "block"`.
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Scan completions (streams included) with this policy too.
    #[serde(default)]
    pub scan_responses: bool,
    /// Prompt-injection guard: `off`, `flag` (header, metric, audit) or `block`.
    #[serde(default)]
    pub injection: InjectionAction,
    /// Injection score at or above which the action applies; default by sensitivity.
    #[serde(default)]
    pub injection_threshold: Option<f32>,
    /// Environment variable holding the key for `hash`; without it the key is derived from
    /// the policy name (stable, but not secret).
    #[serde(default)]
    pub hash_key_env: Option<String>,
    /// Characters left visible by `mask`.
    #[serde(default = "four")]
    pub mask_keep: usize,
    #[serde(default)]
    pub custom: Vec<CustomConfig>,
    #[serde(default)]
    pub deny: Vec<DenyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomConfig {
    /// The type name findings carry (upper-case, not a built-in name).
    pub name: String,
    pub regex: String,
    /// `luhn`, `iban`, `verhoeff`, `nhs`, `aba`.
    #[serde(default)]
    pub validator: Option<String>,
    /// Words that must be near a match for full confidence.
    #[serde(default)]
    pub context: Vec<String>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub confidence: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConfig {
    #[serde(default = "deny_name")]
    pub name: String,
    /// Keywords or phrases, matched case-insensitively at word boundaries.
    pub terms: Vec<String>,
    #[serde(default = "block")]
    pub action: Action,
}

fn deny_name() -> String {
    "DENY_LIST".into()
}

struct Custom {
    regex: Regex,
    validator: Option<fn(&[u8]) -> bool>,
    context: Option<AhoCorasick>,
    confidence: f32,
}

/// A compiled policy.
pub struct Policy {
    pub name: String,
    pub version: u32,
    pub sensitivity: Sensitivity,
    pub scan_responses: bool,
    pub injection: InjectionAction,
    pub injection_threshold: f32,
    actions: Vec<Action>,
    custom: Vec<Custom>,
    /// Names of custom detectors, then of deny-lists (a `Kind::Custom` index).
    custom_names: Vec<String>,
    custom_actions: Vec<Action>,
    deny: Option<(AhoCorasick, Vec<u16>)>,
    hash_key: [u8; 32],
    mask_keep: usize,
    engine: &'static Engine,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn validator(name: &str) -> Option<fn(&[u8]) -> bool> {
    Some(match name {
        "luhn" => checksum::luhn,
        "iban" => checksum::iban,
        "verhoeff" => checksum::verhoeff,
        "nhs" => checksum::nhs,
        "aba" => checksum::aba,
        "pesel" => checksum::pesel,
        _ => return None,
    })
}

impl Policy {
    /// Compiles `cfg`; problems go to `errs` prefixed by `at` (`policies.NAME`).
    pub fn compile(
        name: &str,
        cfg: &PolicyConfig,
        at: &str,
        env: &dyn Fn(&str) -> Option<String>,
        errs: &mut Vec<String>,
    ) -> Option<Self> {
        let engine = match Engine::get() {
            Ok(e) => e,
            Err(e) => {
                errs.push(format!("{at}: {e}"));
                return None;
            }
        };
        let before = errs.len();
        let mut actions = vec![cfg.default_action; Entity::ALL.len()];
        for (k, a) in &cfg.actions {
            match Entity::parse(k) {
                Some(e) => actions[e.index()] = *a,
                None => errs.push(format!(
                    "{at}.actions.{k}: unknown entity type (see docs/dlp.md for the list)"
                )),
            }
        }
        if cfg.version == 0 {
            errs.push(format!("{at}.version: must be at least 1"));
        }
        let mut custom = Vec::new();
        let mut custom_names = Vec::new();
        let mut custom_actions = Vec::new();
        for (i, c) in cfg.custom.iter().enumerate() {
            let cat = format!("{at}.custom[{i}]");
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                errs.push(format!(
                    "{cat}.name: use upper-case letters, digits and '_'"
                ));
            }
            if Entity::parse(&c.name).is_some() || custom_names.contains(&c.name) {
                errs.push(format!(
                    "{cat}.name: {:?} is already a detector name",
                    c.name
                ));
            }
            let regex = match Regex::new(&c.regex) {
                Ok(r) => Some(r),
                Err(e) => {
                    errs.push(format!("{cat}.regex: {e}"));
                    None
                }
            };
            let v = match c.validator.as_deref() {
                None => None,
                Some(n) => match validator(n) {
                    Some(f) => Some(f),
                    None => {
                        errs.push(format!("{cat}.validator: unknown validator {n:?} (luhn, iban, verhoeff, nhs, aba, pesel)"));
                        None
                    }
                },
            };
            let context = if c.context.is_empty() {
                None
            } else {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .build(&c.context)
                    .ok()
            };
            if c.confidence.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
                errs.push(format!("{cat}.confidence: must be between 0.0 and 1.0"));
            }
            if let Some(regex) = regex {
                custom.push(Custom {
                    regex,
                    validator: v,
                    context,
                    confidence: c.confidence.unwrap_or(0.9),
                });
            }
            custom_names.push(c.name.clone());
            custom_actions.push(c.action.unwrap_or(cfg.default_action));
        }
        let mut terms = Vec::new();
        let mut term_kind = Vec::new();
        for (i, d) in cfg.deny.iter().enumerate() {
            if d.terms.iter().any(|t| t.trim().is_empty()) || d.terms.is_empty() {
                errs.push(format!(
                    "{at}.deny[{i}].terms: needs at least one non-empty term"
                ));
            }
            let idx = custom_names.len() as u16;
            custom_names.push(d.name.clone());
            custom_actions.push(d.action);
            for t in &d.terms {
                terms.push(t.trim().to_string());
                term_kind.push(idx);
            }
        }
        let deny = if terms.is_empty() {
            None
        } else {
            match AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&terms)
            {
                Ok(ac) => Some((ac, term_kind)),
                Err(e) => {
                    errs.push(format!("{at}.deny: {e}"));
                    None
                }
            }
        };
        if let Some(t) = cfg.injection_threshold {
            if !(0.0..=1.0).contains(&t) {
                errs.push(format!(
                    "{at}.injection_threshold: must be between 0.0 and 1.0"
                ));
            }
        }
        let hash_key: [u8; 32] = match &cfg.hash_key_env {
            Some(var) => match env(var) {
                Some(v) if !v.is_empty() => Sha256::digest(v.as_bytes()).into(),
                _ => {
                    errs.push(format!(
                        "{at}.hash_key_env: environment variable {var:?} is not set"
                    ));
                    [0; 32]
                }
            },
            None => Sha256::digest(format!("gateway-dlp-hash:{name}").as_bytes()).into(),
        };
        if errs.len() > before {
            return None;
        }
        Some(Self {
            name: name.to_string(),
            version: cfg.version,
            sensitivity: cfg.sensitivity,
            scan_responses: cfg.scan_responses,
            injection: cfg.injection,
            injection_threshold: cfg
                .injection_threshold
                .unwrap_or(super::injection::default_threshold(cfg.sensitivity)),
            actions,
            custom,
            custom_names,
            custom_actions,
            deny,
            hash_key,
            mask_keep: cfg.mask_keep,
            engine,
        })
    }

    /// The built-in policy of `gateway scan` without `--config`: every type detected and
    /// redacted, secrets blocked, injection flagged.
    pub fn builtin_default() -> Result<Self, String> {
        let mut actions = BTreeMap::new();
        for e in [
            Entity::AwsAccessKey,
            Entity::AwsSecretKey,
            Entity::OpenaiApiKey,
            Entity::AnthropicApiKey,
            Entity::GithubToken,
            Entity::SlackToken,
            Entity::StripeKey,
            Entity::GoogleApiKey,
            Entity::Jwt,
            Entity::PrivateKey,
            Entity::GenericSecret,
        ] {
            actions.insert(e.name().to_string(), Action::Block);
        }
        let cfg = PolicyConfig {
            version: 1,
            default_action: Action::Redact,
            actions,
            sensitivity: Sensitivity::Medium,
            scan_responses: true,
            injection: InjectionAction::Flag,
            injection_threshold: None,
            hash_key_env: None,
            mask_keep: 4,
            custom: Vec::new(),
            deny: Vec::new(),
        };
        let mut errs = Vec::new();
        Self::compile("default", &cfg, "policies.default", &|_| None, &mut errs)
            .ok_or_else(|| errs.join("; "))
    }

    pub fn kind_name(&self, k: Kind) -> &str {
        match k {
            Kind::Builtin(e) => e.name(),
            Kind::Custom(i) => self
                .custom_names
                .get(usize::from(i))
                .map_or("CUSTOM", String::as_str),
        }
    }

    pub fn action(&self, k: Kind) -> Action {
        match k {
            Kind::Builtin(e) => self
                .actions
                .get(e.index())
                .copied()
                .unwrap_or(Action::Redact),
            Kind::Custom(i) => self
                .custom_actions
                .get(usize::from(i))
                .copied()
                .unwrap_or(Action::Redact),
        }
    }

    /// The findings that act at `sensitivity`: scanned, thresholded, overlaps resolved.
    pub fn findings(&self, text: &str, sensitivity: Sensitivity) -> Vec<Finding> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        self.engine.scan(text, &mut out);
        for (i, c) in self.custom.iter().enumerate() {
            for m in c.regex.find_iter(text) {
                if m.is_empty() {
                    continue;
                }
                if let Some(v) = c.validator {
                    let compact: Vec<u8> = m
                        .as_str()
                        .bytes()
                        .filter(u8::is_ascii_alphanumeric)
                        .map(|b| b.to_ascii_uppercase())
                        .collect();
                    if !v(&compact) {
                        continue;
                    }
                }
                let mut conf = c.confidence;
                if let Some(ctx) = &c.context {
                    let lo = super::ceil_char(text, m.start().saturating_sub(48));
                    let hi = super::floor_char(text, (m.end() + 24).min(text.len()));
                    if !ctx.is_match(&text[lo..hi]) {
                        conf -= 0.3;
                    }
                }
                out.push(Finding {
                    kind: Kind::Custom(i as u16),
                    start: m.start(),
                    end: m.end(),
                    confidence: conf,
                });
            }
        }
        if let Some((ac, kinds)) = &self.deny {
            let b = text.as_bytes();
            for m in ac.find_iter(text) {
                let left = m.start() == 0 || !b[m.start() - 1].is_ascii_alphanumeric();
                let right = m.end() == b.len() || !b[m.end()].is_ascii_alphanumeric();
                if left && right {
                    if let Some(&k) = kinds.get(m.pattern().as_usize()) {
                        out.push(Finding {
                            kind: Kind::Custom(k),
                            start: m.start(),
                            end: m.end(),
                            confidence: 1.0,
                        });
                    }
                }
            }
        }
        let t = sensitivity.threshold();
        out.retain(|f| f.confidence >= t);
        resolve(&mut out);
        out
    }

    /// `text` with every finding replaced by its action's form (block and redact both give
    /// `[TYPE]`; allow leaves the value). Without `pseudo` (a response: the client could not
    /// map a new token back) `pseudonymize` redacts. None when nothing changes.
    pub fn transform(
        &self,
        text: &str,
        findings: &[Finding],
        mut pseudo: Option<&mut Pseudonyms>,
    ) -> Option<String> {
        if findings
            .iter()
            .all(|f| self.action(f.kind) == Action::Allow)
        {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        for f in findings {
            let (s, e) = (f.start.max(at), f.end);
            if s >= e || e > text.len() {
                continue;
            }
            out.push_str(&text[at..s]);
            let value = &text[s..e];
            let name = self.kind_name(f.kind);
            match self.action(f.kind) {
                Action::Allow => out.push_str(value),
                Action::Redact | Action::Block => {
                    let _ = write!(out, "[{name}]");
                }
                Action::Mask => mask_into(&mut out, value, self.mask_keep),
                Action::Hash => {
                    let _ = write!(out, "[{name}:{}]", self.keyed_hash(value));
                }
                Action::Pseudonymize => match pseudo.as_deref_mut() {
                    Some(p) => out.push_str(&p.token(name, value)),
                    None => {
                        let _ = write!(out, "[{name}]");
                    }
                },
            }
            at = e;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// HMAC-SHA256 of `value` under the policy key, first 12 hex digits.
    fn keyed_hash(&self, value: &str) -> String {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in self.hash_key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(value.as_bytes())
            .finalize();
        let mac = Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize();
        crate::config::validate::hex(&mac[..6])
    }
}

fn mask_into(out: &mut String, value: &str, keep: usize) {
    let total = value.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    for c in value.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            out.push(if seen + keep > total { c } else { '*' });
        } else {
            out.push(c);
        }
    }
}

/// Pseudonyms of one request: `<EMAIL_1>` for the first distinct email, and so on; the same
/// value always gets the same token within the request.
#[derive(Debug, Default, Clone)]
pub struct Pseudonyms {
    by_value: HashMap<(String, String), String>,
    counters: HashMap<String, usize>,
    /// token -> original value.
    pub(crate) by_token: HashMap<String, String>,
    /// Longest token, bounding the stream carry-over.
    pub(crate) max_len: usize,
}

impl Pseudonyms {
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    fn token(&mut self, kind: &str, value: &str) -> String {
        let key = (kind.to_string(), value.to_string());
        if let Some(t) = self.by_value.get(&key) {
            return t.clone();
        }
        let n = self.counters.entry(kind.to_string()).or_insert(0);
        *n += 1;
        let t = format!("<{kind}_{n}>");
        self.max_len = self.max_len.max(t.len());
        self.by_token.insert(t.clone(), value.to_string());
        self.by_value.insert(key, t.clone());
        t
    }

    /// `text` with every known token replaced by its value; None when there is none.
    pub fn restore(&self, text: &str) -> Option<String> {
        if self.by_token.is_empty() || !text.contains('<') {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut changed = false;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            match tail
                .find('>')
                .filter(|&j| j < self.max_len)
                .and_then(|j| self.by_token.get(&tail[..=j]).map(|v| (j, v)))
            {
                Some((j, v)) => {
                    out.push_str(v);
                    rest = &tail[j + 1..];
                    changed = true;
                }
                None => {
                    out.push('<');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        changed.then_some(out)
    }
}

/// Compiles every `[policies.NAME]`; problems go to `errs` with their TOML path.
pub fn compile_all(
    cfgs: &BTreeMap<String, PolicyConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> BTreeMap<String, std::sync::Arc<Policy>> {
    let mut out = BTreeMap::new();
    if cfgs.is_empty() {
        return out;
    }
    if let Err(e) = super::injection::ready() {
        errs.push(format!("policies: built-in injection patterns: {e}"));
    }
    for (name, cfg) in cfgs {
        if let Some(p) = Policy::compile(name, cfg, &format!("policies.{name}"), env, errs) {
            out.insert(name.clone(), std::sync::Arc::new(p));
        }
    }
    out
}
