//! The keyword automaton and the phrase-driven detectors.
//!
//! One Aho-Corasick automaton (ASCII case-insensitive, leftmost-longest) holds every literal
//! the engine cares about: context words that raise a nearby finding's confidence ("ssn",
//! "passport", "routing number"), words that lower it ("order", "invoice", "version"),
//! anchors that start a format (`@`, `sk-ant-`, `-----BEGIN`), cues for names ("my name is",
//! "Dear", "Dr."), birth-date cues in several languages, street-type words, and the shipped
//! given-name and surname lists. The text is walked once; each detector reads the hits.
//!
//! Regexes are compiled here once and only run on small windows next to a cue.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use std::collections::HashMap;

use super::anchors::Anchor;
use super::names;
use super::{ceil_char, floor_char, Entity, Finding, Kind};

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

pub struct Context {
    ac: AhoCorasick,
    roles: Vec<Vec<Role>>,
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

impl Context {
    pub fn new() -> Result<Self, String> {
        let mut merged: HashMap<String, Vec<Role>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut add = |w: &str, roles: &[Role]| {
            let key = w.to_lowercase();
            let slot = merged.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                Vec::new()
            });
            for r in roles {
                if !slot.contains(r) {
                    slot.push(*r);
                }
            }
        };
        for (w, roles) in keywords() {
            add(w, &roles);
        }
        for n in names::FIRST {
            add(n, &[Role::First]);
        }
        for n in names::LAST {
            add(n, &[Role::Last]);
        }
        let roles: Vec<Vec<Role>> = order
            .iter()
            .map(|k| merged.remove(k).unwrap_or_default())
            .collect();
        let ac = AhoCorasickBuilder::new()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&order)
            .map_err(|e| format!("keyword automaton: {e}"))?;
        let cap = r"\p{Lu}(?:\p{Ll}|['’])[\p{L}'’.\-]*";
        let en_types = "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Close|Crescent|Highway|Hwy|Parkway|Pkwy|Square|Sq|Circle|Cir|Trail|Row|Gardens|Mews|Grove|Hill|Walk|Green|Park|Parade|Plaza";
        let tail_city = format!(
            r"(?:,\s*{cap}(?: {cap}){{0,2}})?(?:,? (?:[A-Z]{{1,2}}\d[A-Z\d]? ?\d[A-Z]{{2}}|[A-Z]\d[A-Z] ?\d[A-Z]\d|[A-Z]{{2}} \d{{5}}(?:-\d{{4}})?|\d{{5}}(?:-\d{{4}})?|[A-Z]{{2}}\b))?"
        );
        Ok(Self {
            ac,
            roles,
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

    /// Every keyword occurrence at word boundaries (anchors excepted), in text order.
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
            if !anchor {
                let left = m.start() == 0 || !is_word_byte(b[m.start() - 1]);
                let right = m.end() >= b.len()
                    || !is_word_byte(b[m.end()])
                    || !is_word_byte(b[m.end() - 1]);
                if !left || !right {
                    continue;
                }
            }
            out.push(Hit {
                start: m.start(),
                end: m.end(),
                roles,
            });
        }
        out
    }

    /// Raises or lowers the confidence of `findings` by the context words around them.
    pub fn boost(&self, text: &str, hits: &[Hit], findings: &mut [Finding]) {
        let _ = text;
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
                    listed = hits
                        .iter()
                        .any(|h| h.start == p && h.end == p + wl && h.roles.contains(&Role::First));
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

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80
}
