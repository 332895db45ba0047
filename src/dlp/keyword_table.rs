//! The keyword table: every word or literal the keyword automaton (`keywords.rs`) finds, with
//! its roles: context words per entity type and their weight, words that lower a number's
//! confidence, format anchors, birth cues, street types by convention, and name cues.

use super::anchors::Anchor;
use super::keywords::{Cue, Role, Street};
use super::Entity;

const SSN: &[Role] = &[Role::Ctx(Entity::UsSsn, 0.5)];

pub(crate) fn keywords() -> Vec<(&'static str, Vec<Role>)> {
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
