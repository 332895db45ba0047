//! The keyword automaton: every literal the engine cares about, found in one pass.
//!
//! Context words that raise a nearby finding's confidence ("ssn", "passport", "routing
//! number"), words that lower it ("order", "invoice", "version"), anchors that start a format
//! (`@`, `sk-ant-`, `-----BEGIN`), cues for names ("my name is", "Dear", "Dr."), birth-date cues
//! in several languages and street-type words sit in one Aho-Corasick DFA (ASCII
//! case-insensitive, leftmost-longest). The shipped given-name and surname lists are kept out of
//! it: a name only counts when capitalised, so a second, anchored automaton is tried at
//! capitalised word starts only, and common words that are also names ("He", "Ma", "Will")
//! cost nothing in lower-case prose. `boost` applies the context words to findings;
//! `phrases.rs` reads the cues.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, Input, MatchKind, StartKind};
use std::collections::HashMap;

use super::anchors::Anchor;
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

const SSN: &[Role] = &[Role::Ctx(Entity::UsSsn, 0.5)];

fn keywords() -> Vec<(&'static str, Vec<Role>)> {
    use Anchor as A;
    use Entity as E;
    use Role::{Anchor as An, Ctx};
    let mut k: Vec<(&str, Vec<Role>)> = Vec::new();
    let mut add = |words: &[&'static str], roles: &[Role]| {
        for w in words {
            k.push((w, roles.to_vec()));
        }
    };
    add(&["@"], &[An(A::Email)]);
    add(&["http://", "https://", "www.", "ftp://"], &[An(A::Url)]);
    add(
        &["AKIA", "ASIA", "ABIA", "ACCA"],
        &[An(A::AwsKey), Ctx(E::AwsSecretKey, 0.3)],
    );
    add(
        &[
            "aws_secret_access_key",
            "aws_secret_key",
            "secret access key",
            "secretaccesskey",
            "aws secret",
            "aws_secret",
        ],
        &[An(A::AwsSecret)],
    );
    add(&["sk-"], &[An(A::OpenAi)]);
    add(&["sk-ant-"], &[An(A::Anthropic)]);
    add(
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        &[An(A::Github)],
    );
    add(
        &[
            "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xapp-",
        ],
        &[An(A::Slack)],
    );
    add(
        &[
            "sk_live_", "sk_test_", "pk_live_", "pk_test_", "rk_live_", "rk_test_", "whsec_",
        ],
        &[An(A::Stripe)],
    );
    add(&["AIza"], &[An(A::Google)]);
    add(&["eyJ"], &[An(A::Jwt)]);
    add(&["-----BEGIN"], &[An(A::Pem)]);
    add(&["bc1"], &[An(A::Bech32)]);
    add(
        &[
            "password",
            "passwd",
            "pwd",
            "pass",
            "secret",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "access_key",
            "auth_token",
            "client_secret",
            "passphrase",
            "credentials",
            "contraseña",
            "passwort",
            "mot de passe",
            "hasło",
            "senha",
            "access token",
            "bearer",
        ],
        &[An(A::Secret)],
    );
    add(
        &[
            "ssn",
            "social security",
            "social security number",
            "ss#",
            "ss no",
        ],
        SSN,
    );
    add(
        &["itin", "taxpayer identification", "individual taxpayer"],
        &[Ctx(E::UsItin, 0.5)],
    );
    add(
        &[
            "routing",
            "routing number",
            "aba",
            "rtn",
            "routing no",
            "bank routing",
            "transit number",
        ],
        &[Ctx(E::UsBankRouting, 0.4)],
    );
    add(
        &[
            "passport",
            "passport number",
            "passport no",
            "pasaporte",
            "passeport",
            "reisepass",
            "passaporto",
            "paszport",
        ],
        &[Ctx(E::UsPassport, 0.6)],
    );
    add(
        &[
            "driver's license",
            "drivers license",
            "driver license",
            "driver's licence",
            "driving licence",
            "dl",
            "dl#",
            "dl no",
            "license number",
            "licence number",
            "dln",
            "license no",
            "driver's license number",
        ],
        &[Ctx(E::UsDriverLicense, 0.6)],
    );
    add(
        &["national insurance", "nino", "ni number", "ni no"],
        &[Ctx(E::UkNino, 0.1)],
    );
    add(&["nhs", "nhs number", "nhs no"], &[Ctx(E::UkNhs, 0.3)]);
    add(
        &["sin", "social insurance", "social insurance number", "nas"],
        &[Ctx(E::CaSin, 0.35)],
    );
    add(
        &["aadhaar", "aadhar", "uid", "uidai"],
        &[Ctx(E::InAadhaar, 0.4)],
    );
    add(&["pan", "permanent account number"], &[Ctx(E::InPan, 0.1)]);
    add(&["pesel"], &[Ctx(E::PlPesel, 0.25)]);
    add(
        &["tfn", "tax file number", "tax file"],
        &[Ctx(E::AuTfn, 0.45)],
    );
    add(&["nric", "fin"], &[Ctx(E::SgNric, 0.1)]);
    add(
        &[
            "vat",
            "vat number",
            "vat id",
            "vat no",
            "ust-idnr",
            "ust-id",
            "ust",
            "tva",
            "iva",
            "btw",
            "nip",
            "mwst",
            "partita iva",
            "numéro de tva",
            "n° tva",
        ],
        &[Ctx(E::EuVat, 0.4)],
    );
    add(
        &[
            "phone",
            "tel",
            "tel.",
            "telephone",
            "mobile",
            "cell",
            "call",
            "call me",
            "text me",
            "whatsapp",
            "fax",
            "contact",
            "reach me",
            "telefon",
            "telefono",
            "teléfono",
            "téléphone",
            "portable",
            "handy",
            "móvil",
            "movil",
            "cellulare",
            "numer telefonu",
            "telefoonnummer",
            "ph",
            "mob",
            "phone number",
            "number",
            "numéro",
            "número",
        ],
        &[Ctx(E::Phone, 0.3)],
    );
    add(
        &[
            "card",
            "visa",
            "mastercard",
            "amex",
            "credit card",
            "debit card",
            "cc",
            "tarjeta",
            "carte",
            "karte",
            "kreditkarte",
        ],
        &[Ctx(E::CreditCard, 0.05)],
    );
    add(
        &[
            "mrn",
            "medical record",
            "medical record number",
            "patient id",
            "patient number",
            "hospital number",
            "chart number",
            "record number",
            "mr#",
            "historia clínica",
            "dossier médical",
            "patientennummer",
            "cartella clinica",
            "numero di cartella",
            "health record",
            "ehr",
            "emr",
        ],
        &[Ctx(E::MedicalRecordNumber, 0.65)],
    );
    add(
        &["ip", "ip address", "server", "host", "ipv4"],
        &[Ctx(E::Ipv4, 0.1)],
    );
    add(
        &["bitcoin", "btc", "wallet", "ethereum", "eth"],
        &[Ctx(E::CryptoWallet, 0.1)],
    );
    add(
        &[
            "order",
            "order number",
            "order no",
            "invoice",
            "tracking",
            "tracking number",
            "ticket",
            "ref",
            "reference",
            "sku",
            "serial",
            "serial number",
            "isbn",
            "version",
            "build",
            "part number",
            "model",
            "confirmation",
            "booking",
            "item",
            "product",
            "transaction",
            "pedido",
            "factura",
            "commande",
            "rechnung",
            "bestellung",
            "ordine",
            "zamówienie",
            "case number",
            "release",
            "issue",
            "pr",
            "commit",
            "quote",
            "batch",
            "lot",
        ],
        &[Role::Neg],
    );
    add(
        &[
            "born",
            "born on",
            "birth",
            "date of birth",
            "birthday",
            "birthdate",
            "dob",
            "d.o.b",
            "d.o.b.",
            "geboren",
            "geb.",
            "geburtsdatum",
            "geburtstag",
            "né",
            "née",
            "né le",
            "née le",
            "date de naissance",
            "naissance",
            "nacido",
            "nacida",
            "nacimiento",
            "fecha de nacimiento",
            "nato",
            "nata",
            "nato il",
            "nata il",
            "data di nascita",
            "nascita",
            "urodzony",
            "urodzona",
            "urodzenia",
            "urodziłem",
            "urodziłam",
            "data urodzenia",
            "nascimento",
            "data de nascimento",
            "geboortedatum",
            "geboren op",
            "date naissance",
            "birth date",
            "f. nacimiento",
            "fecha nac",
            "f.n.",
        ],
        &[Role::Birth],
    );
    add(
        &[
            "street",
            "st",
            "avenue",
            "ave",
            "road",
            "rd",
            "boulevard",
            "blvd",
            "lane",
            "ln",
            "drive",
            "court",
            "ct",
            "way",
            "place",
            "pl",
            "terrace",
            "close",
            "crescent",
            "highway",
            "hwy",
            "parkway",
            "pkwy",
            "square",
            "circle",
            "trail",
            "row",
            "gardens",
            "mews",
            "grove",
            "hill",
            "walk",
            "green",
            "park",
            "parade",
            "plaza",
        ],
        &[Role::Street(Street::En)],
    );
    add(&["dr"], &[Role::Street(Street::En), Role::Cue(Cue::Title)]);
    add(
        &[
            "straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "ring", "damm", "ufer",
            "chaussee", "gracht", "laan", "plein", "straat", "steeg", "kade", "singel",
        ],
        &[Role::Street(Street::Suffix)],
    );
    add(
        &[
            "calle", "c/", "avenida", "avda", "av.", "plaza", "pza.", "paseo", "carrer", "camino",
            "ronda", "via", "viale", "piazza", "piazzale", "corso", "largo", "vicolo", "rua",
            "travessa", "praça", "alameda", "ul.", "ulica", "al.", "aleja", "os.", "pl.",
        ],
        &[Role::Street(Street::Prefix)],
    );
    add(
        &[
            "rue",
            "boulevard",
            "bd",
            "chemin",
            "allée",
            "impasse",
            "quai",
            "route",
            "cours",
            "avenue",
            "place",
        ],
        &[Role::Street(Street::Fr)],
    );
    add(
        &[
            "my name is",
            "my name's",
            "name is",
            "i am called",
            "call me",
            "je m'appelle",
            "me llamo",
            "mi nombre es",
            "mi chiamo",
            "ich heiße",
            "ich heisse",
            "mein name ist",
            "nazywam się",
            "mam na imię",
            "meu nome é",
            "o meu nome é",
            "mijn naam is",
            "ik heet",
            "je suis",
            "soy",
            "sono",
        ],
        &[Role::Cue(Cue::Intro)],
    );
    add(
        &[
            "name:",
            "full name:",
            "patient:",
            "patient name:",
            "customer:",
            "client:",
            "employee:",
            "contact:",
            "nombre:",
            "nom:",
            "name :",
            "cliente:",
            "imię i nazwisko:",
            "nazwisko:",
            "from:",
            "to:",
            "attn:",
            "signed:",
            "author:",
            "applicant:",
            "passenger:",
            "guest:",
            "tenant:",
            "insured:",
            "beneficiary:",
            "cardholder:",
            "account holder:",
            "nome:",
            "vorname:",
            "nachname:",
            "prénom:",
            "apellidos:",
            "cognome:",
            "name",
            "patient name",
            "full name",
            "customer name",
            "contact name",
            "employee name",
        ],
        &[Role::Cue(Cue::Field)],
    );
    add(
        &[
            "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "dr.", "prof", "prof.", "sir", "herr",
            "frau", "sr.", "sra.", "srta.", "don", "doña", "m.", "mme", "mme.", "mlle", "monsieur",
            "madame", "signor", "signora", "sig.", "sig.ra", "pan", "pani", "dott.", "dott.ssa",
            "ing.", "mx.",
        ],
        &[Role::Cue(Cue::Title)],
    );
    add(
        &[
            "dear",
            "hi",
            "hello",
            "hey",
            "good morning",
            "bonjour",
            "hola",
            "ciao",
            "hallo",
            "liebe",
            "lieber",
            "cher",
            "chère",
            "querido",
            "querida",
            "caro",
            "cara",
            "witam",
            "dzień dobry",
            "estimado",
            "estimada",
            "sehr geehrte",
            "sehr geehrter",
            "gentile",
            "olá",
            "beste",
        ],
        &[Role::Cue(Cue::Greeting)],
    );
    add(
        &[
            "regards",
            "best regards",
            "kind regards",
            "warm regards",
            "thanks",
            "thank you",
            "cheers",
            "sincerely",
            "best",
            "yours",
            "cordialement",
            "saludos",
            "un saludo",
            "atentamente",
            "grazie",
            "cordiali saluti",
            "mit freundlichen grüßen",
            "viele grüße",
            "gruß",
            "grüße",
            "pozdrawiam",
            "atenciosamente",
            "met vriendelijke groet",
            "sent by",
            "signed by",
            "bien à vous",
            "un abrazo",
            "distinti saluti",
        ],
        &[Role::Cue(Cue::Signoff)],
    );
    add(
        &["i'm", "i am", "this is", "it's", "ich bin", "sono io"],
        &[Role::Cue(Cue::Iam)],
    );
    add(
        &[
            "my colleague",
            "my wife",
            "my husband",
            "my friend",
            "my son",
            "my daughter",
            "my manager",
            "my boss",
            "my doctor",
            "my mother",
            "my father",
            "my mom",
            "my dad",
            "my brother",
            "my sister",
            "my partner",
            "my client",
            "my patient",
            "my neighbour",
            "my neighbor",
            "my landlord",
            "my tenant",
            "our client",
            "our customer",
            "the patient",
            "patient",
            "employee",
            "customer",
            "mi esposa",
            "mi marido",
            "ma femme",
            "mon mari",
            "meine frau",
            "mein mann",
            "mia moglie",
            "mio marito",
            "signed",
            "cc",
            "assigned to",
            "contact person",
            "spoke with",
            "spoke to",
            "talked to",
            "met with",
            "meeting with",
            "email from",
            "forwarded by",
        ],
        &[Role::Cue(Cue::Relation)],
    );
    k
}

/// The keyword automaton and the name lists.
pub struct Keywords {
    ac: AhoCorasick,
    roles: Vec<Vec<Role>>,
    /// Given names and surnames, searched anchored at capitalised word starts.
    names: AhoCorasick,
    /// Roles of each name (plus the keyword roles of a name that is also a keyword).
    name_roles: Vec<Vec<Role>>,
    /// Lower-case words a listed name may start with (`das`, `de Jong`): tried too.
    lower_starts: Vec<&'static str>,
}

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
        let ac = AhoCorasickBuilder::new()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&order)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        let names = AhoCorasickBuilder::new()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .start_kind(StartKind::Anchored)
            .build(&name_order)
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
        Ok(Self {
            ac,
            roles,
            names,
            name_roles,
            lower_starts,
        })
    }

    /// Every keyword occurrence at word boundaries (anchors excepted), in text order; listed
    /// names are reported where a capitalised word (or a lower-case name particle) starts.
    pub fn hits<'a>(&'a self, text: &str) -> Vec<Hit<'a>> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        for m in self.ac.find_iter(text) {
            let roles = match self.roles.get(m.pattern().as_usize()) {
                Some(r) => r.as_slice(),
                None => continue,
            };
            let anchor = roles
                .iter()
                .any(|r| matches!(r, Role::Anchor(_) | Role::Street(Street::Suffix)));
            if !anchor && !bounded(b, m.start(), m.end()) {
                continue;
            }
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                roles,
            });
        }
        self.add_names(text, &mut out);
        out
    }

    /// Merges the listed names into `hits` (text order). Where a name and a keyword overlap,
    /// the earlier, then the longer, wins, as in one leftmost-longest pass; a keyword on
    /// exactly the name's span is replaced by the name, whose roles include the keyword's.
    fn add_names<'a>(&'a self, text: &str, hits: &mut Vec<Hit<'a>>) {
        let b = text.as_bytes();
        let mut found: Vec<Hit<'a>> = Vec::new();
        let mut p = 0;
        while p < b.len() {
            let c = b[p];
            if !is_word_byte(c) {
                p += 1;
                continue;
            }
            let word_end = p + b[p..]
                .iter()
                .position(|&c| !is_word_byte(c))
                .unwrap_or(b.len() - p);
            let try_here = c.is_ascii_uppercase()
                || c >= 0x80
                || (c.is_ascii_lowercase()
                    && self
                        .lower_starts
                        .iter()
                        .any(|s| b[p..word_end].eq_ignore_ascii_case(s.as_bytes())));
            if try_here {
                let input = Input::new(text).range(p..).anchored(Anchored::Yes);
                if let Ok(Some(m)) = self.names.try_find(input) {
                    if bounded(b, m.start(), m.end()) {
                        if let Some(roles) = self.name_roles.get(m.pattern().as_usize()) {
                            found.push(Hit {
                                start: m.start(),
                                end: m.end(),
                                roles,
                            });
                        }
                    }
                }
            }
            p = word_end;
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
