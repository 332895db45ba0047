//! Engine-level tests: one positive and one negative case for every entity type, overlap
//! resolution, actions, and pseudonym restoration.

use super::policy::{Action, Policy, Pseudonyms};
use super::*;

fn policy() -> Policy {
    Policy::builtin_default().unwrap_or_else(|e| panic!("{e}"))
}

fn found(text: &str) -> Vec<(String, String)> {
    let p = policy();
    p.findings(text, Sensitivity::Medium)
        .iter()
        .map(|f| {
            (
                p.kind_name(f.kind).to_string(),
                text[f.start..f.end].to_string(),
            )
        })
        .collect()
}

fn has(text: &str, ty: &str, value: &str) -> bool {
    found(text).iter().any(|(t, v)| t == ty && v == value)
}

fn none_of(text: &str, ty: &str) -> bool {
    !found(text).iter().any(|(t, _)| t == ty)
}

/// (type, positive text, the value, negative text).
const CASES: &[(&str, &str, &str, &str)] = &[
    ("EMAIL", "write to jane.doe+x@example.co.uk today", "jane.doe+x@example.co.uk", "the @mention and user@localhost"),
    ("PHONE", "call +1 415 555 2671 please", "+1 415 555 2671", "build 2024.10.15 shipped"),
    ("CREDIT_CARD", "card 5555 5555 5555 4444 exp 12/27", "5555 5555 5555 4444", "card 5555 5555 5555 4445"),
    ("IBAN", "IBAN GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", "IBAN GB82 WEST 1234 5698 7654 33"),
    ("US_SSN", "SSN: 536-22-1234", "536-22-1234", "SSN: 000-22-1234 or 666-12-1234"),
    ("US_ITIN", "ITIN 912-70-1234", "912-70-1234", "ITIN 912-40-1234"),
    ("US_BANK_ROUTING", "routing number 021000021", "021000021", "routing number 021000022"),
    ("US_PASSPORT", "passport number 561234987", "561234987", "the number 561234987"),
    ("US_DRIVER_LICENSE", "driver's license D1234567", "D1234567", "model D1234567"),
    ("UK_NINO", "NI number AB123456C", "AB123456C", "code QQ123456C and GB123456A"),
    ("UK_NHS", "NHS number 943 476 5919", "943 476 5919", "NHS number 943 476 5918"),
    ("CA_SIN", "SIN 130 692 544", "130 692 544", "SIN 130 692 545"),
    ("IN_AADHAAR", "Aadhaar 2345 6789 0127", "2345 6789 0127", "Aadhaar 2345 6789 0128"),
    ("IN_PAN", "PAN ABCPE1234F", "ABCPE1234F", "PAN abcpe1234f and ABCPE12345"),
    ("ES_NIF", "DNI 12345678Z", "12345678Z", "DNI 12345678A"),
    ("ES_NIE", "NIE X1234567L", "X1234567L", "NIE X1234567A"),
    ("IT_FISCAL_CODE", "codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S", "codice RSSMRA85T10A562T"),
    ("PL_PESEL", "PESEL 44051401359", "44051401359", "PESEL 44051401358"),
    ("AU_TFN", "TFN 123 456 782", "123 456 782", "TFN 123 456 789"),
    ("SG_NRIC", "NRIC S1234567D", "S1234567D", "NRIC S1234567A"),
    ("EU_VAT", "VAT number DE136695976", "DE136695976", "VAT number DE136695977"),
    ("IPV4", "server at 192.168.10.20 is down", "192.168.10.20", "version 1.2.3 and 999.1.1.1"),
    ("IPV6", "host 2001:db8:85a3::8a2e:370:7334 up", "2001:db8:85a3::8a2e:370:7334", "at 12:30:45 today"),
    ("MAC_ADDRESS", "mac 00:1a:2b:3c:4d:5e", "00:1a:2b:3c:4d:5e", "time 10:20:30:40"),
    ("URL", "see https://example.org/path?q=1.", "https://example.org/path?q=1", "see the http spec"),
    ("DATE_OF_BIRTH", "date of birth: 03/12/1985", "03/12/1985", "invoice date: 03/12/1985"),
    ("STREET_ADDRESS", "I live at 42 Elm Street, Springfield", "42 Elm Street, Springfield", "walk down the street with 42 friends"),
    ("PERSON", "Hello, my name is Sarah Connor.", "Sarah Connor", "Hello, my name is important to me."),
    ("MEDICAL_RECORD_NUMBER", "MRN: 00482913", "00482913", "PIN: 00482913"),
    ("CRYPTO_WALLET", "send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"),
    ("AWS_ACCESS_KEY", "id AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE", "id AKIA-not-a-key"),
    ("AWS_SECRET_KEY", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = ${AWS_SECRET}"),
    ("OPENAI_API_KEY", "key sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH", "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH", "use sk-learn and task-runner"),
    ("ANTHROPIC_API_KEY", "key sk-ant-api03-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH", "sk-ant-api03-Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH", "key sk-ant-xxx"),
    ("GITHUB_TOKEN", "token ghp_Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5", "ghp_Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5", "the ghp_ prefix"),
    ("SLACK_TOKEN", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "xoxb-short"),
    ("STRIPE_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "the sk_live_ prefix"),
    ("GOOGLE_API_KEY", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "AIza is a prefix"),
    ("JWT", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJ alone"),
    ("PRIVATE_KEY", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
    ("GENERIC_SECRET", "DB_PASSWORD=Xk9#mQ2$vL7p", "Xk9#mQ2$vL7p", "password: <your password here> and password=${DB_PASS}"),
];

#[test]
fn every_type_has_a_positive_and_a_negative_case() {
    let mut covered: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    covered.sort_unstable();
    covered.dedup();
    assert_eq!(covered.len(), Entity::ALL.len(), "a type lacks a case");
    for (ty, pos, value, neg) in CASES {
        assert!(
            has(pos, ty, value),
            "{ty}: missed {value:?} in {pos:?}: {:?}",
            found(pos)
        );
        assert!(
            none_of(neg, ty),
            "{ty}: false positive in {neg:?}: {:?}",
            found(neg)
        );
    }
}

#[test]
fn names_round_trip() {
    for e in Entity::ALL {
        assert_eq!(Entity::parse(e.name()), Some(*e));
    }
    assert!(Entity::ALL.len() >= 30);
}

#[test]
fn overlaps_resolve_deterministically() {
    let mk = |e, s, en, c| Finding::new(e, s, en, c);
    let a = vec![
        mk(Entity::Phone, 0, 10, 0.7),
        mk(Entity::UsSsn, 0, 11, 0.7),
        mk(Entity::CreditCard, 5, 20, 0.9),
        mk(Entity::Email, 30, 40, 0.5),
    ];
    let mut x = a.clone();
    let mut y: Vec<Finding> = a.into_iter().rev().collect();
    resolve(&mut x);
    resolve(&mut y);
    assert_eq!(x, y);
    assert_eq!(x.len(), 2);
    assert_eq!(x[0].kind, Kind::Builtin(Entity::CreditCard));
    let mut z = vec![mk(Entity::Phone, 0, 10, 0.7), mk(Entity::UsSsn, 0, 11, 0.7)];
    resolve(&mut z);
    assert_eq!(
        z[0].kind,
        Kind::Builtin(Entity::UsSsn),
        "longest wins a tie"
    );
}

#[test]
fn sensitivity_sets_what_acts() {
    let p = policy();
    let text = "the account 021000021 is here";
    let high = p.findings(text, Sensitivity::High);
    let low = p.findings(text, Sensitivity::Low);
    assert!(low.is_empty());
    assert!(!high.is_empty());
}

#[test]
fn actions_transform_text() {
    use super::policy::PolicyConfig;
    let cfg: PolicyConfig = toml_cfg(
        r#"
default_action = "redact"
[actions]
EMAIL = "pseudonymize"
PHONE = "mask"
CREDIT_CARD = "hash"
URL = "allow"
"#,
    );
    let mut errs = Vec::new();
    let p = Policy::compile("t", &cfg, "policies.t", &|_| None, &mut errs)
        .unwrap_or_else(|| panic!("{errs:?}"));
    let text = "a@example.com, b@example.com, a@example.com call +1 415 555 2671 card 4111111111111111 https://x.org";
    let f = p.findings(text, Sensitivity::Medium);
    let mut ps = Pseudonyms::default();
    let out = p.transform(text, &f, Some(&mut ps)).unwrap_or_default();
    assert!(out.starts_with("<EMAIL_1>, <EMAIL_2>, <EMAIL_1>"), "{out}");
    assert!(out.contains("+* *** *** 2671"), "{out}");
    assert!(
        out.contains("[CREDIT_CARD:") && !out.contains("4111111111111111"),
        "{out}"
    );
    assert!(out.contains("https://x.org"), "{out}");
    assert_eq!(
        ps.restore(&out).as_deref(),
        Some(
            text.replace("+1 415 555 2671", "+* *** *** 2671")
                .replace(
                    "4111111111111111",
                    &out[out.find("[CREDIT").unwrap_or(0)..out.find("] ").map_or(0, |i| i + 1)]
                )
                .as_str()
        )
    );
    let again = p
        .transform(text, &f, Some(&mut Pseudonyms::default()))
        .unwrap_or_default();
    assert_eq!(out, again, "hashes and pseudonyms are stable");
    assert_eq!(p.action(Kind::Builtin(Entity::UsSsn)), Action::Redact);
}

#[test]
fn custom_detectors_and_deny_lists() {
    let cfg = toml_cfg(
        r#"
[[custom]]
name = "EMPLOYEE_ID"
regex = "EMP-[0-9]{6}"
context = ["employee"]
action = "block"

[[custom]]
name = "CARD_LIKE"
regex = "[0-9]{16}"
validator = "luhn"

[[deny]]
name = "PROJECT_CODENAME"
terms = ["Project Nightingale"]
action = "redact"
"#,
    );
    let mut errs = Vec::new();
    let p = Policy::compile("t", &cfg, "policies.t", &|_| None, &mut errs)
        .unwrap_or_else(|| panic!("{errs:?}"));
    let text = "employee EMP-123456 on project nightingale; and in a completely different paragraph EMP-654321 4111111111111111 4111111111111112";
    let f = p.findings(text, Sensitivity::Medium);
    let names: Vec<&str> = f.iter().map(|x| p.kind_name(x.kind)).collect();
    assert!(
        names.contains(&"EMPLOYEE_ID") && names.contains(&"PROJECT_CODENAME"),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "EMPLOYEE_ID").count(),
        1,
        "context required for full confidence"
    );
    assert_eq!(p.action(f[0].kind), Action::Block);

    let bad = toml_cfg("[[custom]]\nname = \"bad name\"\nregex = \"(\"\nvalidator = \"nope\"\n");
    let mut errs = Vec::new();
    assert!(Policy::compile("b", &bad, "policies.b", &|_| None, &mut errs).is_none());
    let all = errs.join("\n");
    assert!(
        all.contains("policies.b.custom[0].name")
            && all.contains("policies.b.custom[0].regex")
            && all.contains("policies.b.custom[0].validator"),
        "{all}"
    );
}

fn toml_cfg(s: &str) -> super::policy::PolicyConfig {
    use figment::providers::{Format, Toml};
    figment::Figment::new()
        .merge(Toml::string(s))
        .extract()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn restores_only_known_tokens() {
    let p = policy();
    let cfg = toml_cfg("[actions]\nEMAIL = \"pseudonymize\"\n");
    let mut errs = Vec::new();
    let q = Policy::compile("q", &cfg, "policies.q", &|_| None, &mut errs)
        .unwrap_or_else(|| panic!("{errs:?}"));
    let _ = p;
    let text = "mail bob@example.com";
    let mut ps = Pseudonyms::default();
    let out = q
        .transform(text, &q.findings(text, Sensitivity::Medium), Some(&mut ps))
        .unwrap_or_default();
    assert_eq!(out, "mail <EMAIL_1>");
    assert_eq!(
        ps.restore("Sure, <EMAIL_1> and <EMAIL_2> and <b>")
            .as_deref(),
        Some("Sure, bob@example.com and <EMAIL_2> and <b>")
    );
}
