//! Literal-anchored formats. The keyword automaton (`keywords.rs`) reports where an anchor
//! occurs (`@`, `https://`, `AKIA`, `sk-ant-`, `ghp_`, `-----BEGIN`, `password`, ...); each is
//! then read and validated in place. Colon-separated MAC and IPv6 addresses are found from
//! their colons.

use super::keywords::{Hit, Role};
use super::{checksum, entropy, Entity, Finding};

/// What an anchor keyword starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Email,
    Url,
    AwsKey,
    OpenAi,
    Anthropic,
    Github,
    Slack,
    Stripe,
    Google,
    Jwt,
    Pem,
    Bech32,
    /// `password`, `secret`, `token`, ... followed by an assignment.
    Secret,
    /// `aws_secret_access_key` and friends, followed by a 40-character key.
    AwsSecret,
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn run(b: &[u8], from: usize, ok: impl Fn(u8) -> bool, max: usize) -> usize {
    let mut e = from;
    while e < b.len() && e - from < max && ok(b[e]) {
        e += 1;
    }
    e
}

pub fn scan(text: &str, hits: &[Hit], out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    for h in hits {
        for role in h.roles {
            if let Role::Anchor(a) = role {
                anchor(text, b, *a, h, out);
            }
        }
    }
    colons(text, out);
}

fn anchor(text: &str, b: &[u8], a: Anchor, h: &Hit, out: &mut Vec<Finding>) {
    let (s, e) = (h.start, h.end);
    let left_ok = s == 0 || !b[s - 1].is_ascii_alphanumeric();
    let mut push = |ent: Entity, start: usize, end: usize, conf: f32| {
        out.push(Finding::new(ent, start, end, conf));
    };
    match a {
        Anchor::Email => {
            let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
            let mut ls = s;
            while ls > 0 && s - ls < 64 && local(b[ls - 1]) {
                ls -= 1;
            }
            while ls < s && !b[ls].is_ascii_alphanumeric() {
                ls += 1;
            }
            let mut de = run(
                b,
                e,
                |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-',
                253,
            );
            while de > e && matches!(b[de - 1], b'.' | b'-') {
                de -= 1;
            }
            let domain = &b[e..de];
            let tld = domain.rsplit(|&c| c == b'.').next().unwrap_or_default();
            if ls < s
                && domain.contains(&b'.')
                && tld.len() >= 2
                && tld.iter().all(u8::is_ascii_alphabetic)
                && domain.first().is_some_and(u8::is_ascii_alphanumeric)
            {
                push(Entity::Email, ls, de, 0.95);
            }
        }
        Anchor::Url => {
            if !left_ok {
                return;
            }
            let mut ue = run(
                b,
                e,
                |c| c > b' ' && !b"\"'<>`".contains(&c) && c < 0x80,
                2048,
            );
            while ue > e && b".,;:!?)]}".contains(&b[ue - 1]) {
                ue -= 1;
            }
            let host_end = run(
                b,
                e,
                |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-',
                253,
            );
            let host = &b[e..host_end.min(ue)];
            if host.len() >= 3 && (host.contains(&b'.') || host.starts_with(b"localhost")) {
                push(Entity::Url, s, ue, 0.9);
            }
        }
        Anchor::AwsKey => {
            let ke = run(b, s, |c| c.is_ascii_uppercase() || c.is_ascii_digit(), 40);
            if left_ok
                && ke - s == 20
                && b[s..s + 4].iter().all(u8::is_ascii_uppercase)
                && !b.get(ke).is_some_and(u8::is_ascii_alphanumeric)
            {
                push(Entity::AwsAccessKey, s, ke, 0.95);
                // A secret key usually follows its access key in credential files.
                let window = &text[ke..super::floor_char(text, (ke + 200).min(text.len()))];
                if let Some((ks, kl)) = base64_40(window.as_bytes()) {
                    push(Entity::AwsSecretKey, ke + ks, ke + ks + kl, 0.85);
                }
            }
        }
        Anchor::AwsSecret => {
            let window = &text[e..super::floor_char(text, (e + 80).min(text.len()))];
            if let Some((ks, kl)) = base64_40(window.as_bytes()) {
                push(Entity::AwsSecretKey, e + ks, e + ks + kl, 0.97);
            }
        }
        Anchor::OpenAi | Anchor::Anthropic => {
            let ke = run(b, e, is_key_char, 256);
            let body = &b[e..ke];
            let needs = 20;
            if left_ok
                && body.len() >= needs
                && body.iter().any(u8::is_ascii_digit)
                && body.iter().any(u8::is_ascii_alphabetic)
                && entropy(body) >= 3.2
                && b[s..s + 3] == *b"sk-"
            {
                let ent = if a == Anchor::Anthropic {
                    Entity::AnthropicApiKey
                } else {
                    Entity::OpenaiApiKey
                };
                push(ent, s, ke, 0.96);
            }
        }
        Anchor::Github => {
            let ke = run(b, e, |c| c.is_ascii_alphanumeric() || c == b'_', 255);
            let min = if h.end - h.start > 4 { 22 } else { 30 };
            if left_ok && ke - e >= min && b[s..e].iter().all(|c| !c.is_ascii_uppercase()) {
                push(Entity::GithubToken, s, ke, 0.97);
            }
        }
        Anchor::Slack => {
            let ke = run(b, e, |c| c.is_ascii_alphanumeric() || c == b'-', 255);
            if left_ok
                && ke - e >= 15
                && b[e..ke].iter().filter(|c| c.is_ascii_digit()).count() >= 4
            {
                push(Entity::SlackToken, s, ke, 0.95);
            }
        }
        Anchor::Stripe => {
            let ke = run(b, e, |c| c.is_ascii_alphanumeric(), 255);
            if left_ok && ke - e >= 16 && b[s..e].iter().all(|c| !c.is_ascii_uppercase()) {
                let conf = if b[s] == b'p' { 0.8 } else { 0.96 };
                push(Entity::StripeKey, s, ke, conf);
            }
        }
        Anchor::Google => {
            let ke = run(b, e, is_key_char, 64);
            if left_ok && ke - e == 35 && &b[s..e] == b"AIza" {
                push(Entity::GoogleApiKey, s, ke, 0.96);
            }
        }
        Anchor::Jwt => {
            if !left_ok || &b[s..e] != b"eyJ" {
                return;
            }
            let seg = |from: usize| {
                run(
                    b,
                    from,
                    |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
                    8192,
                )
            };
            let e1 = seg(s);
            if e1 - s < 10 || b.get(e1) != Some(&b'.') {
                return;
            }
            let e2 = seg(e1 + 1);
            if e2 - e1 < 11 || !b[e1 + 1..].starts_with(b"ey") || b.get(e2) != Some(&b'.') {
                return;
            }
            let e3 = seg(e2 + 1);
            push(Entity::Jwt, s, e3, if e3 - e2 > 10 { 0.97 } else { 0.85 });
        }
        Anchor::Pem => {
            let line_end = text[e..].find('\n').map_or(text.len(), |i| e + i);
            let header = &text[s..line_end];
            if !header.contains("PRIVATE KEY") {
                return;
            }
            // Without its END line the rest of the text is taken: better too much than a
            // key body left behind.
            let end = match text[line_end..].find("-----END") {
                Some(i) => {
                    let at = line_end + i + 8;
                    text[at..].find("-----").map_or(text.len(), |j| at + j + 5)
                }
                None => text.len(),
            };
            push(Entity::PrivateKey, s, end, 0.99);
        }
        Anchor::Bech32 => {
            let ke = run(b, s, |c| c.is_ascii_alphanumeric(), 90);
            if left_ok && checksum::bech32(&b[s..ke]) {
                push(Entity::CryptoWallet, s, ke, 0.95);
            }
        }
        Anchor::Secret => secret_assignment(text, b, s, e, out),
    }
}

/// The first run of exactly 40 base64 characters (with mixed classes) in `w`: (offset, len).
fn base64_40(w: &[u8]) -> Option<(usize, usize)> {
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut i = 0;
    while i < w.len() {
        if ok(w[i]) {
            let e = run(w, i, ok, 64);
            let s = &w[i..e];
            if e - i == 40
                && s.iter().any(u8::is_ascii_uppercase)
                && s.iter().any(u8::is_ascii_lowercase)
                && s.iter().any(u8::is_ascii_digit)
            {
                return Some((i, 40));
            }
            i = e;
        } else {
            i += 1;
        }
    }
    None
}

const PLACEHOLDERS: &[&str] = &[
    "none",
    "null",
    "nil",
    "true",
    "false",
    "required",
    "optional",
    "redacted",
    "hidden",
    "password",
    "secret",
    "token",
    "example",
    "string",
    "undefined",
    "empty",
    "changeit",
    "placeholder",
    "your_password",
    "yourpassword",
    "mypassword",
    "sample",
    "dummy",
];

/// `password = "..."`, `secret: ...`, `token is ...`: the value after the assignment.
fn secret_assignment(text: &str, b: &[u8], s: usize, e: usize, out: &mut Vec<Finding>) {
    if s > 0 && b[s - 1].is_ascii_alphabetic() && !b[s - 1].is_ascii_uppercase() {
        // `mypassword` is a word, `DB_PASSWORD`/`dbPassword` an identifier: both fine, but a
        // lower-case letter right before means the keyword is inside another word.
        if !b[..s].ends_with(b"_") {
            return;
        }
    }
    let mut i = run(
        b,
        e,
        |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
        24,
    );
    i = run(b, i, |c| c == b'"' || c == b'\'' || c == b']', 2);
    i = run(b, i, |c| c == b' ' || c == b'\t', 4);
    let rest = &b[i..];
    let step = if rest.starts_with(b":=") || rest.starts_with(b"=>") {
        2
    } else if rest.starts_with(b"=") || rest.starts_with(b":") {
        1
    } else if rest.starts_with(b"is ")
        || rest.starts_with(b"ist ")
        || rest.starts_with(b"est ")
        || rest.starts_with(b"es ")
    {
        rest.iter().position(|&c| c == b' ').map_or(0, |p| p + 1)
    } else {
        0
    };
    if step == 0 {
        return;
    }
    i += step;
    i = run(b, i, |c| c == b' ' || c == b'\t', 4);
    let quote = b
        .get(i)
        .copied()
        .filter(|c| matches!(c, b'"' | b'\'' | b'`'));
    if quote.is_some() {
        i += 1;
    }
    let vs = i;
    let mut ve = run(
        b,
        vs,
        |c| c > b' ' && c != b'"' && c != b'\'' && c != b'`' && c != 0x7f,
        512,
    );
    if quote.is_none() {
        while ve > vs && b",;.)]}".contains(&b[ve - 1]) {
            ve -= 1;
        }
    }
    let v = &b[vs..ve];
    if v.len() < 6 || v.len() > 512 {
        return;
    }
    let lower = text[vs..ve].to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str())
        || v.contains(&b'<')
        || v.contains(&b'{')
        || v.starts_with(b"$")
        || v.starts_with(b"%")
        || lower.contains("xxx")
        || lower.contains("***")
        || lower.contains("...")
        || lower.starts_with("os.")
        || lower.starts_with("process.")
        || lower.starts_with("env")
        || lower.starts_with("getenv")
        || lower.starts_with("http")
        || v.iter().all(|&c| c == v[0])
    {
        return;
    }
    let classes = [
        v.iter().any(u8::is_ascii_lowercase),
        v.iter().any(u8::is_ascii_uppercase),
        v.iter().any(u8::is_ascii_digit),
        v.iter().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|&&x| x)
    .count();
    let conf = if v.len() >= 8 && entropy(v) >= 3.0 && classes >= 2 {
        0.9
    } else if classes >= 2 {
        0.8
    } else {
        0.45
    };
    out.push(Finding::new(Entity::GenericSecret, vs, ve, conf));
}

/// MAC (`00:1a:2b:3c:4d:5e`) and IPv6 addresses, found from their colons.
fn colons(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let hexc = |c: u8| c.is_ascii_hexdigit() || c == b':';
    let mut next = 0;
    for (p, _) in text.match_indices(':') {
        if p < next {
            continue;
        }
        let before = p > 0 && hexc(b[p - 1]);
        let after = b.get(p + 1).is_some_and(|&c| hexc(c));
        if !before || !after {
            continue;
        }
        let mut s = p;
        while s > 0 && hexc(b[s - 1]) && p - s < 40 {
            s -= 1;
        }
        let mut e = run(b, p, |c| hexc(c) || c == b'.', 45);
        while e > p && b[e - 1] == b'.' {
            e -= 1;
        }
        next = e;
        if (s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_'))
            || b.get(e)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            continue;
        }
        let tok = &text[s..e];
        let groups: Vec<&str> = tok.split(':').collect();
        if groups.len() == 6 && groups.iter().all(|g| g.len() == 2) {
            out.push(Finding::new(Entity::MacAddress, s, e, 0.9));
            continue;
        }
        if groups.len() >= 3 && tok.parse::<std::net::Ipv6Addr>().is_ok() {
            let hexy = groups
                .iter()
                .any(|g| g.bytes().any(|c| c.is_ascii_alphabetic()) || g.len() == 4);
            let conf = if tok.len() >= 7 && (hexy || tok.contains("::")) {
                0.85
            } else {
                0.5
            };
            out.push(Finding::new(Entity::Ipv6, s, e, conf));
        }
    }
}
