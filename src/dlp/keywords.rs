//! The keyword automaton: every literal the engine cares about, found in one pass.
//!
//! Context words that raise a nearby finding's confidence ("ssn", "passport", "routing
//! number"), words that lower it ("order", "invoice", "version"), anchors that start a format
//! (`@`, `sk-ant-`, `-----BEGIN`), cues for names ("my name is", "Dear", "Dr."), birth-date cues
//! in several languages and street-type words (the table is in `keyword_table.rs`) sit in one
//! Aho-Corasick DFA (ASCII case-insensitive, leftmost-longest). The shipped given-name and surname lists are kept out of
//! it: a name only counts when capitalised, so a second, anchored automaton is tried at
//! capitalised word starts only, and common words that are also names ("He", "Ma", "Will")
//! cost nothing in lower-case prose. `boost` applies the context words to findings;
//! `phrases.rs` reads the cues.

use aho_corasick::{MatchKind, StartKind};
use std::collections::HashMap;

use super::anchors::Anchor;
use super::dfa::Dfa;
use super::keyword_table::keywords;
use super::names;
use super::{Entity, Finding, Kind};

/// Why a keyword is in the automaton.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Raises the confidence of this entity nearby by this much.
    Ctx(Entity, f32),
    /// Lowers the confidence of context-dependent numbers right after it.
    Neg,
    Anchor(Anchor),
    Birth,
    Street(Street),
    Cue(Cue),
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Street {
    /// House number, name, type: `221B Baker Street`.
    En,
    /// Type suffix glued to the name: `Hauptstraße 5`.
    Suffix,
    /// Type first, number after: `Calle Mayor 5`, `Via Roma 10`, `ul. Długa 5`.
    Prefix,
    /// Number, type, name: `12 rue de la Paix`.
    Fr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    Intro,
    Field,
    Title,
    Greeting,
    Signoff,
    Iam,
    Relation,
}

#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub start: usize,
    pub end: usize,
    pub roles: &'a [Role],
}

/// The keyword automaton and the name lists.
pub struct Keywords {
    ac: Dfa,
    roles: Vec<Vec<Role>>,
    /// Per keyword: reported wherever it occurs (format anchors, glued street suffixes), not
    /// only as a whole word.
    free: Vec<bool>,
    /// Given names and surnames, searched anchored at capitalised word starts.
    names: Dfa,
    /// Roles of each name (plus the keyword roles of a name that is also a keyword).
    name_roles: Vec<Vec<Role>>,
    /// Lower-case words a listed name may start with (`das`, `de Jong`): tried too.
    lower_starts: Vec<&'static str>,
    /// Per byte: `WORD`, plus `TRY` where a word starting with it is tried against the names
    /// (upper case, non-ASCII) and `LOWER` where a lower-case start may be.
    first_byte: [u8; 256],
}

const WORD: u8 = 1;
const TRY: u8 = 2;
const LOWER: u8 = 4;

impl Keywords {
    pub fn new() -> Result<Self, String> {
        let mut merged: HashMap<String, Vec<Role>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for (w, roles) in keywords() {
            let key = w.to_lowercase();
            let slot = merged.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                Vec::new()
            });
            for r in roles {
                if !slot.contains(&r) {
                    slot.push(r);
                }
            }
        }
        let mut name_merged: HashMap<String, Vec<Role>> = HashMap::new();
        let mut name_order: Vec<String> = Vec::new();
        let listed = names::FIRST
            .iter()
            .map(|n| (n, Role::First))
            .chain(names::LAST.iter().map(|n| (n, Role::Last)));
        for (n, role) in listed {
            let key = n.to_lowercase();
            let slot = name_merged.entry(key.clone()).or_insert_with(|| {
                name_order.push(key.clone());
                merged.get(&key).cloned().unwrap_or_default()
            });
            if !slot.contains(&role) {
                slot.push(role);
            }
        }
        let roles: Vec<Vec<Role>> = order
            .iter()
            .map(|k| merged.remove(k).unwrap_or_default())
            .collect();
        let name_roles: Vec<Vec<Role>> = name_order
            .iter()
            .map(|k| name_merged.remove(k).unwrap_or_default())
            .collect();
        let free = roles
            .iter()
            .map(|r| {
                r.iter()
                    .any(|r| matches!(r, Role::Anchor(_) | Role::Street(Street::Suffix)))
            })
            .collect();
        let ac = Dfa::new(
            &order,
            MatchKind::LeftmostLongest,
            true,
            StartKind::Unanchored,
        )
        .map_err(|e| format!("keyword automaton: {e}"))?;
        let names = Dfa::new(
            &name_order,
            MatchKind::LeftmostLongest,
            true,
            StartKind::Anchored,
        )
        .map_err(|e| format!("name automaton: {e}"))?;
        let mut lower_starts: Vec<&'static str> = names::FIRST
            .iter()
            .chain(names::LAST)
            .filter(|n| n.starts_with(|c: char| c.is_lowercase()))
            .map(|n| n.split(' ').next().unwrap_or(n))
            .chain(
                names::PARTICLES
                    .iter()
                    .copied()
                    .filter(|p| name_order.iter().any(|k| k == p)),
            )
            .collect();
        lower_starts.sort_unstable();
        lower_starts.dedup();
        let mut first_byte = [0u8; 256];
        for (c, k) in (0u8..=255).zip(first_byte.iter_mut()) {
            if is_word_byte(c) {
                *k |= WORD;
            }
            if c.is_ascii_uppercase() || c >= 0x80 {
                *k |= TRY;
            }
            if c.is_ascii_lowercase()
                && lower_starts
                    .iter()
                    .any(|s| s.as_bytes().first() == Some(&c))
            {
                *k |= LOWER;
            }
        }
        Ok(Self {
            ac,
            roles,
            free,
            names,
            name_roles,
            lower_starts,
            first_byte,
        })
    }

    /// Every keyword occurrence at word boundaries (anchors excepted), in text order; listed
    /// names are reported where a capitalised word (or a lower-case name particle) starts.
    pub fn hits<'a>(&'a self, text: &str) -> Vec<Hit<'a>> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        self.ac.for_each(b, |pid, start, end| {
            let (Some(roles), Some(&free)) = (self.roles.get(pid), self.free.get(pid)) else {
                return;
            };
            if free || bounded(b, start, end) {
                out.push(Hit { start, end, roles });
            }
        });
        self.add_names(text, &mut out);
        out
    }

    /// Merges the listed names into `hits` (text order). Where a name and a keyword overlap,
    /// the earlier, then the longer, wins, as in one leftmost-longest pass; a keyword on
    /// exactly the name's span is replaced by the name, whose roles include the keyword's.
    fn add_names<'a>(&'a self, text: &str, hits: &mut Vec<Hit<'a>>) {
        let b = text.as_bytes();
        let mut found: Vec<Hit<'a>> = Vec::new();
        // One table lookup per byte; the rare word starts that can begin a listed name take
        // the slow path.
        let mut prev_word = false;
        for (p, &c) in b.iter().enumerate() {
            let k = self.first_byte[usize::from(c)];
            if k & (TRY | LOWER) != 0 && !prev_word {
                self.name_at(b, p, k, &mut found);
            }
            prev_word = k & WORD != 0;
        }
        if found.is_empty() {
            return;
        }
        let keys = std::mem::take(hits);
        hits.reserve(keys.len() + found.len());
        let (mut i, mut j) = (0, 0);
        while i < keys.len() || j < found.len() {
            let next = match (keys.get(i), found.get(j)) {
                (Some(k), Some(n))
                    if (n.start, std::cmp::Reverse(n.end))
                        <= (k.start, std::cmp::Reverse(k.end)) =>
                {
                    j += 1;
                    *n
                }
                (Some(k), _) => {
                    i += 1;
                    *k
                }
                (None, Some(n)) => {
                    j += 1;
                    *n
                }
                (None, None) => break,
            };
            match hits.last() {
                Some(last) if next.start < last.end => {
                    // Overlap: the kept one started earlier or is at least as long.
                }
                _ => hits.push(next),
            }
        }
    }

    /// The listed name starting at the word start `p` (first byte class `k`), if any.
    #[cold]
    fn name_at<'a>(&'a self, b: &[u8], p: usize, k: u8, found: &mut Vec<Hit<'a>>) {
        if k & TRY == 0 {
            // A lower-case word: only the listed lower-case starts are tried.
            let word_end = b[p..]
                .iter()
                .position(|&c| !is_word_byte(c))
                .map_or(b.len(), |e| p + e);
            let word = &b[p..word_end];
            if !self
                .lower_starts
                .iter()
                .any(|s| word.eq_ignore_ascii_case(s.as_bytes()))
            {
                return;
            }
        }
        if let Some((pid, end)) = self.names.find_at(b, p) {
            if bounded(b, p, end) {
                if let Some(roles) = self.name_roles.get(pid) {
                    found.push(Hit {
                        start: p,
                        end,
                        roles,
                    });
                }
            }
        }
    }

    /// Raises or lowers the confidence of `findings` by the context words around them.
    pub fn boost(&self, hits: &[Hit], findings: &mut [Finding]) {
        if hits.is_empty() {
            return;
        }
        for f in findings.iter_mut() {
            let Kind::Builtin(e) = f.kind else { continue };
            let lo = f.start.saturating_sub(48);
            let hi = f.end + 12;
            let first = hits.partition_point(|h| h.end < lo);
            let mut up = 0f32;
            let mut neg = false;
            for h in &hits[first..] {
                if h.start > hi {
                    break;
                }
                if h.start >= f.start && h.end <= f.end {
                    continue;
                }
                for r in h.roles {
                    match r {
                        Role::Ctx(ce, w) if *ce == e => up = up.max(*w),
                        Role::Neg if h.end <= f.start && f.start - h.end <= 24 => neg = true,
                        _ => {}
                    }
                }
            }
            let weak = !matches!(
                e,
                Entity::Email
                    | Entity::Url
                    | Entity::Iban
                    | Entity::ItFiscalCode
                    | Entity::EsNie
                    | Entity::AwsAccessKey
                    | Entity::AwsSecretKey
                    | Entity::OpenaiApiKey
                    | Entity::AnthropicApiKey
                    | Entity::GithubToken
                    | Entity::SlackToken
                    | Entity::StripeKey
                    | Entity::GoogleApiKey
                    | Entity::Jwt
                    | Entity::PrivateKey
                    | Entity::GenericSecret
                    | Entity::CryptoWallet
                    | Entity::MacAddress
                    | Entity::Ipv6
                    | Entity::UkNino
                    | Entity::DateOfBirth
                    | Entity::StreetAddress
                    | Entity::Person
            );
            let mut c = f.confidence + up;
            if neg && weak && up < 0.3 {
                c -= 0.4;
            }
            f.confidence = c.clamp(0.0, 1.0);
        }
    }
}

/// Whether `b[s..e]` stands as a word: no word byte just before it or just after it (a
/// keyword ending in punctuation, `tel.`, may touch the next word).
fn bounded(b: &[u8], s: usize, e: usize) -> bool {
    let left = s == 0 || !is_word_byte(b[s - 1]);
    let right = e >= b.len() || !is_word_byte(b[e]) || !is_word_byte(b[e - 1]);
    left && right
}

pub(crate) fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80
}
