//! Data protection: PII and secret detection, per-entity actions, pseudonyms restored in
//! responses, and a prompt-injection guard. Everything runs in-process and fails closed.
//!
//! - `Engine` (here): the built-in detectors, compiled once. `scan` returns raw candidates
//!   with a confidence each; `resolve` keeps the non-overlapping winners.
//! - `checksum`: check-digit validators. `numeric`: digit clusters (cards, IBANs, national
//!   ids, phones, IPv4). `anchors`: literal-prefixed formats (emails, URLs, keys, tokens,
//!   PEM blocks, wallets, MAC/IPv6) and `password=` style assignments. `keywords`: the keyword
//!   automaton (its table in `keyword_table`), the name lists' lookup and context boosts.
//!   `phrases`: the cue-driven detectors (person, street address, birth date). `names`: the
//!   word lists. `dfa`: the search loop the keyword, name and injection-trigger automata run in.
//! - `policy`: `[policies.NAME]` compiled into a `Policy` (actions, custom detectors,
//!   deny-lists) and the text transformation (redact/mask/hash/pseudonymize).
//! - `injection`: the prompt-injection scorer. `guard`: the request stage and response
//!   restoration. `stream`: the bounded carry-over for streamed responses. `cli`: `gateway scan`.
//!
//! Detected values never leave this module except in the transformed text: errors, metrics
//! and logs carry entity type names and counts only.

pub mod anchors;
pub mod checksum;
pub mod cli;
pub mod dfa;
pub mod guard;
pub mod injection;
pub mod keyword_table;
pub mod keywords;
pub mod names;
pub mod numeric;
pub mod phrases;
pub mod policy;
pub mod stream;

use std::sync::OnceLock;

pub use policy::{Action, Policy};

macro_rules! entities {
    ($($v:ident => $n:literal),* $(,)?) => {
        /// The built-in entity types, named as operators write them in policies.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Entity { $($v),* }
        impl Entity {
            pub const ALL: &'static [Entity] = &[$(Entity::$v),*];
            pub fn name(self) -> &'static str {
                match self { $(Entity::$v => $n),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($n => Some(Entity::$v),)* _ => None }
            }
        }
    };
}

entities! {
    Email => "EMAIL", Phone => "PHONE", CreditCard => "CREDIT_CARD", Iban => "IBAN",
    UsSsn => "US_SSN", UsItin => "US_ITIN", UsBankRouting => "US_BANK_ROUTING",
    UsPassport => "US_PASSPORT", UsDriverLicense => "US_DRIVER_LICENSE", UkNino => "UK_NINO",
    UkNhs => "UK_NHS", CaSin => "CA_SIN", InAadhaar => "IN_AADHAAR", InPan => "IN_PAN",
    EsNif => "ES_NIF", EsNie => "ES_NIE", ItFiscalCode => "IT_FISCAL_CODE",
    PlPesel => "PL_PESEL", AuTfn => "AU_TFN", SgNric => "SG_NRIC", EuVat => "EU_VAT",
    Ipv4 => "IPV4", Ipv6 => "IPV6", MacAddress => "MAC_ADDRESS", Url => "URL",
    DateOfBirth => "DATE_OF_BIRTH", StreetAddress => "STREET_ADDRESS", Person => "PERSON",
    MedicalRecordNumber => "MEDICAL_RECORD_NUMBER", CryptoWallet => "CRYPTO_WALLET",
    AwsAccessKey => "AWS_ACCESS_KEY", AwsSecretKey => "AWS_SECRET_KEY",
    OpenaiApiKey => "OPENAI_API_KEY", AnthropicApiKey => "ANTHROPIC_API_KEY",
    GithubToken => "GITHUB_TOKEN", SlackToken => "SLACK_TOKEN", StripeKey => "STRIPE_KEY",
    GoogleApiKey => "GOOGLE_API_KEY", Jwt => "JWT", PrivateKey => "PRIVATE_KEY",
    GenericSecret => "GENERIC_SECRET",
}

impl Entity {
    /// Position in `ALL` (dense, for per-entity tables).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a finding is: a built-in entity, or a policy's custom detector / deny-list (by index
/// into the policy's custom names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Builtin(Entity),
    Custom(u16),
}

/// One detected value: its type, byte span in the scanned text, and a confidence in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

impl Finding {
    pub fn new(e: Entity, start: usize, end: usize, confidence: f32) -> Self {
        Self {
            kind: Kind::Builtin(e),
            start,
            end,
            confidence,
        }
    }
}

/// Which confidences act: `low` only near-certain findings, `high` also weak ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Low,
    #[default]
    Medium,
    High,
}

impl Sensitivity {
    pub fn threshold(self) -> f32 {
        match self {
            Self::Low => 0.8,
            Self::Medium => 0.6,
            Self::High => 0.4,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// The built-in detectors, compiled once per process (the automata and regexes do not depend
/// on any policy).
pub struct Engine {
    pub(crate) keywords: keywords::Keywords,
    pub(crate) phrases: phrases::Phrases,
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

impl Engine {
    /// The shared engine; the error (a bug in a built-in pattern) is reported at config load.
    pub fn get() -> Result<&'static Engine, String> {
        ENGINE
            .get_or_init(|| {
                Ok(Engine {
                    keywords: keywords::Keywords::new()?,
                    phrases: phrases::Phrases::new()?,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every candidate in `text` (any confidence, overlaps included), appended to `out`.
    /// Nothing is allocated when nothing is found.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let hits = self.keywords.hits(text);
        let first = out.len();
        numeric::scan(text, out);
        anchors::scan(text, &hits, out);
        self.phrases.detect(text, &hits, out);
        self.keywords.boost(&hits, &mut out[first..]);
    }
}

/// Keeps the non-overlapping winners: highest confidence first, then the longest, then the
/// earliest, then the entity order; returned in text order. Deterministic for any input order.
/// Empty spans are dropped.
pub fn resolve(findings: &mut Vec<Finding>) {
    findings.retain(|f| f.end > f.start);
    if findings.len() < 2 {
        return;
    }
    findings.sort_unstable_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
    });
    let mut kept = 0;
    if findings.len() <= 32 {
        for i in 0..findings.len() {
            let f = findings[i];
            if !findings[..kept]
                .iter()
                .any(|k| k.start < f.end && f.start < k.end)
            {
                findings[kept] = f;
                kept += 1;
            }
        }
    } else {
        // Bytes already taken by a kept span, one bit each: a candidate is kept when none of
        // its bytes is.
        let end = findings.iter().map(|f| f.end).max().unwrap_or(0);
        let mut taken = vec![0u64; end / 64 + 1];
        for i in 0..findings.len() {
            let f = findings[i];
            if !bits_any(&taken, f.start, f.end) {
                bits_set(&mut taken, f.start, f.end);
                findings[kept] = f;
                kept += 1;
            }
        }
    }
    findings.truncate(kept);
    findings.sort_unstable_by_key(|f| f.start);
}

/// Each 64-bit word of `bits` that `s..e` touches, with the mask of its bits in the range.
fn bit_words(s: usize, e: usize) -> impl Iterator<Item = (usize, u64)> {
    (s / 64..=(e - 1) / 64).map(move |w| {
        let lo = if w == s / 64 { s % 64 } else { 0 };
        let hi = if w == (e - 1) / 64 { (e - 1) % 64 } else { 63 };
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        (w, mask)
    })
}

fn bits_any(bits: &[u64], s: usize, e: usize) -> bool {
    bit_words(s, e).any(|(w, m)| bits.get(w).is_some_and(|x| x & m != 0))
}

fn bits_set(bits: &mut [u64], s: usize, e: usize) {
    for (w, m) in bit_words(s, e) {
        if let Some(x) = bits.get_mut(w) {
            *x |= m;
        }
    }
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f32 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u16; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f32::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The largest char boundary at or below `i`.
pub(crate) fn floor_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary at or above `i`.
pub(crate) fn ceil_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
