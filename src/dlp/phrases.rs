//! The phrase-driven detectors: birth dates, street addresses and person names, each started
//! by a cue the keyword automaton (`keywords.rs`) reported. Regexes are compiled once and only
//! run on small windows next to a cue.

use regex::Regex;

use super::keywords::{Cue, Hit, Role, Street};
use super::names;
use super::{ceil_char, floor_char, Entity, Finding};

pub struct Phrases {
    date: Regex,
    addr_en: Regex,
    addr_suffix: Regex,
    addr_prefix: Regex,
    addr_fr: Regex,
    stop: std::collections::HashSet<&'static str>,
    ambiguous: std::collections::HashSet<&'static str>,
    particles: std::collections::HashSet<&'static str>,
}

const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|januar|februar|märz|maerz|mai|juni|juli|oktober|dezember|janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|września|wrzesnia|października|pazdziernika|listopada|grudnia|janeiro|fevereiro|março|maio|junho|julho|setembro|outubro|novembro|dezembro|januari|februari|maart|mei|augustus";

fn re(p: &str) -> Result<Regex, String> {
    Regex::new(p).map_err(|e| format!("built-in pattern: {e}"))
}

impl Phrases {
    pub fn new() -> Result<Self, String> {
        let cap = r"\p{Lu}(?:\p{Ll}|['’])[\p{L}'’.\-]*";
        let en_types = "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Close|Crescent|Highway|Hwy|Parkway|Pkwy|Square|Sq|Circle|Cir|Trail|Row|Gardens|Mews|Grove|Hill|Walk|Green|Park|Parade|Plaza";
        let tail_city = format!(
            r"(?:,\s*{cap}(?: {cap}){{0,2}})?(?:,? (?:[A-Z]{{1,2}}\d[A-Z\d]? ?\d[A-Z]{{2}}|[A-Z]\d[A-Z] ?\d[A-Z]\d|[A-Z]{{2}} \d{{5}}(?:-\d{{4}})?|\d{{5}}(?:-\d{{4}})?|[A-Z]{{2}}\b))?"
        );
        Ok(Self {
            date: re(&format!(
                r"(?i)\b(?:\d{{1,2}}[./-]\d{{1,2}}[./-](?:19|20)?\d{{2}}|(?:19|20)\d{{2}}[./-]\d{{1,2}}[./-]\d{{1,2}}|\d{{1,2}}(?:st|nd|rd|th|er|º|\.)?\s*(?:de\s+)?(?:{MONTHS})\.?,?\s+(?:de\s+)?(?:19|20)\d{{2}}|(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}})\b"
            ))?,
            addr_en: re(&format!(
                r"\b\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})?,?\s+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?(?:(?:{cap}|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,4}}(?:{en_types})\b\.?(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|#)\.?\s*#?[0-9A-Za-z]{{1,6}})?{tail_city}"
            ))?,
            addr_suffix: re(&format!(
                r"(?:\b\p{{Lu}}[\p{{L}}\-]*(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|gracht|laan|plein|straat|steeg|kade|singel)|\b{cap}\s+(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm))\s+\d{{1,4}}\s?[a-zA-Z]?\b(?:,?\s+(?:D-|A-|CH-)?\d{{4}}(?:\d|\s?[A-Z]{{2}})?\s+{cap}(?: {cap})?)?"
            ))?,
            addr_prefix: re(&format!(
                r"(?:\b(?i:calle|avenida|avda\.?|av\.|plaza|pza\.|paseo|carrer|camino|ronda|via|viale|piazza|piazzale|corso|largo|vicolo|rua|travessa|praça|alameda|ul\.|ulica|al\.|aleja|os\.|pl\.)|\b(?i:c/))\s*(?:(?i:de|del|la|las|los|di|della|dei|delle|da|do|dos|das|degli|san|santa)\s+)*{cap}(?:\s+(?:(?i:de|del|la|di|della|da|do|dos)\s+)?{cap}){{0,3}},?\s*(?:n[º°o.]\s*)?\d{{1,4}}[A-Za-z]?\b(?:(?:,\s*|\s+)\d{{1,2}}º?\s?[A-Za-z]?\b)?(?:,?\s+(?:\d{{2}}-?\d{{3}}|\d{{4}}-\d{{3}})\s+{cap}(?: {cap})?)?"
            ))?,
            addr_fr: re(&format!(
                r"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|boulevard|bd|place|chemin|allée|allee|impasse|quai|route|cours)\s+(?:(?i:de la|de|du|des|la|le)\s+|(?i:l'|d'|l’|d’))*{cap}(?:\s+(?:(?i:de|du|des|la|le)\s+)?{cap}){{0,3}}(?:,?\s+\d{{5}}\s+{cap}(?:[ \-]{cap})?)?"
            ))?,
            stop: names::STOPWORDS.iter().copied().collect(),
            ambiguous: names::AMBIGUOUS.iter().copied().collect(),
            particles: names::PARTICLES.iter().copied().collect(),
        })
    }

    /// The phrase-driven detectors: birth dates, street addresses, person names.
    pub fn detect(&self, text: &str, hits: &[Hit], out: &mut Vec<Finding>) {
        for (i, h) in hits.iter().enumerate() {
            for r in h.roles {
                match r {
                    Role::Birth => self.birth(text, h, out),
                    Role::Street(s) => self.street(text, h, *s, out),
                    Role::Cue(c) => self.cue(text, hits, h, *c, out),
                    Role::First => self.first_name(text, hits, i, h, out),
                    _ => {}
                }
            }
        }
    }

    fn birth(&self, text: &str, h: &Hit, out: &mut Vec<Finding>) {
        let hi = floor_char(text, (h.end + 48).min(text.len()));
        if let Some(m) = self.date.find(&text[h.end..hi]) {
            if m.start() <= 24 {
                out.push(Finding::new(
                    Entity::DateOfBirth,
                    h.end + m.start(),
                    h.end + m.end(),
                    0.9,
                ));
                return;
            }
        }
        let lo = ceil_char(text, h.start.saturating_sub(32));
        if let Some(m) = self.date.find_iter(&text[lo..h.start]).last() {
            if h.start - (lo + m.end()) <= 8 {
                out.push(Finding::new(
                    Entity::DateOfBirth,
                    lo + m.start(),
                    lo + m.end(),
                    0.8,
                ));
            }
        }
    }

    fn street(&self, text: &str, h: &Hit, s: Street, out: &mut Vec<Finding>) {
        let (back, fwd, rx) = match s {
            Street::En => (72, 64, &self.addr_en),
            Street::Suffix => (40, 64, &self.addr_suffix),
            Street::Prefix => (4, 110, &self.addr_prefix),
            Street::Fr => (16, 96, &self.addr_fr),
        };
        let lo = ceil_char(text, h.start.saturating_sub(back));
        let hi = floor_char(text, (h.end + fwd).min(text.len()));
        let w = &text[lo..hi];
        // Every convention has a house number; no digit near the cue, no regex.
        if !w.bytes().any(|c| c.is_ascii_digit()) {
            return;
        }
        for m in rx.find_iter(w) {
            let (ms, me) = (lo + m.start(), lo + m.end());
            if ms <= h.start && me >= h.end {
                out.push(Finding::new(Entity::StreetAddress, ms, me, 0.85));
                return;
            }
        }
    }

    /// Reads up to three capitalised name words from `p` (name particles allowed between).
    /// Returns (start, end, words, first word is a listed given name).
    fn name_at(
        &self,
        text: &str,
        hits: &[Hit],
        mut p: usize,
        allow_caps: bool,
    ) -> Option<(usize, usize, usize, bool)> {
        let mut words = 0;
        let mut start = None;
        let mut end = p;
        let mut listed = false;
        let mut pending_particle: Option<usize> = None;
        while words < 3 && p < text.len() {
            let rest = &text[p..];
            let wl = rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphabetic() || *c == '\'' || *c == '’' || *c == '-'))
                .map_or(rest.len(), |(i, _)| i);
            let w = &rest[..wl];
            let mut chars = w.chars();
            let Some(first) = chars.next() else {
                break;
            };
            let is_cap = first.is_uppercase()
                && w.chars().count() >= 2
                && (chars.clone().all(|c| !c.is_uppercase() || c == '\'')
                    || (allow_caps && w.chars().all(|c| c.is_uppercase()))
                    || w.starts_with("Mc")
                    || w.starts_with("Mac")
                    || w.starts_with("O'"));
            if is_cap && !self.stop.contains(w) {
                if start.is_none() {
                    start = Some(p);
                    let from = hits.partition_point(|h| h.start < p);
                    listed = hits[from..]
                        .iter()
                        .take_while(|h| h.start == p)
                        .any(|h| h.end == p + wl && h.roles.contains(&Role::First));
                }
                words += 1;
                end = p + wl;
                pending_particle = None;
            } else if start.is_some() && self.particles.contains(w) && pending_particle.is_none() {
                pending_particle = Some(p);
            } else {
                break;
            }
            p += wl;
            // One space (or a hyphen already inside the word) between parts of a name.
            if text[p..].starts_with(' ') {
                p += 1;
            } else {
                break;
            }
        }
        start.map(|s| (s, end, words, listed))
    }

    fn cue(&self, text: &str, hits: &[Hit], h: &Hit, c: Cue, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut p = h.end;
        let mut saw_break = false;
        let limit = (p + 6).min(b.len());
        while p < limit
            && matches!(
                b[p],
                b' ' | b',' | b'.' | b'!' | b'\n' | b'\r' | b'\t' | b'-' | b':'
            )
        {
            if matches!(b[p], b',' | b'\n' | b'!') {
                saw_break = true;
            }
            p += 1;
        }
        if p >= b.len() || !text.is_char_boundary(p) {
            return;
        }
        if c == Cue::Title
            && !(h.end - h.start <= 4 || b[h.end - 1] == b'.')
            && !text[h.start..h.end]
                .chars()
                .next()
                .is_some_and(char::is_uppercase)
        {
            return;
        }
        // Cue words written lower-case mid-sentence ("mr", "dr") are rarely titles.
        if c == Cue::Title && !text[h.start..].starts_with(|ch: char| ch.is_uppercase()) {
            return;
        }
        let Some((s, e, words, listed)) = self.name_at(text, hits, p, c == Cue::Field) else {
            return;
        };
        if s != p {
            return;
        }
        let conf = match c {
            Cue::Intro | Cue::Field => 0.9,
            Cue::Title => 0.9,
            Cue::Greeting if listed || words >= 2 => 0.85,
            Cue::Greeting => 0.65,
            Cue::Signoff if !saw_break => return,
            Cue::Signoff if listed || words >= 2 => 0.85,
            Cue::Signoff => 0.6,
            Cue::Iam if listed => 0.85,
            Cue::Iam => return,
            Cue::Relation if listed => 0.85,
            Cue::Relation if words >= 2 => 0.7,
            Cue::Relation => return,
        };
        let ambiguous_alone = words == 1 && self.ambiguous.contains(&text[s..e]);
        let conf = if ambiguous_alone && !matches!(c, Cue::Intro | Cue::Field | Cue::Title) {
            conf - 0.2
        } else {
            conf
        };
        out.push(Finding::new(Entity::Person, s, e, conf));
    }

    fn first_name(&self, text: &str, hits: &[Hit], i: usize, h: &Hit, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        if !text[h.start..].starts_with(|c: char| c.is_uppercase())
            || b.get(h.start + 1).is_some_and(u8::is_ascii_uppercase)
        {
            return;
        }
        let Some((s, e, words, _)) = self.name_at(text, hits, h.start, false) else {
            return;
        };
        if s != h.start {
            return;
        }
        let name = &text[h.start..h.end];
        let ambiguous = self.ambiguous.contains(name);
        let surname_known = hits[i + 1..]
            .iter()
            .take(4)
            .any(|n| n.start > h.end && n.end <= e && n.roles.contains(&Role::Last));
        let conf = match (words, surname_known, ambiguous) {
            (2.., true, _) => 0.9,
            (2.., false, false) => 0.8,
            (2.., false, true) => 0.45,
            (_, _, false) => 0.45,
            _ => 0.2,
        };
        out.push(Finding::new(Entity::Person, s, e, conf));
    }
}
