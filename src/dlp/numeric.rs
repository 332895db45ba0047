//! Digit clusters: runs of alphanumeric groups joined by single separators (space, `-`, `.`,
//! `/`, parentheses), such as `4111 1111 1111 1111`, `+44 20 7946 0958`, `DE89 3704 0044 0532
//! 0130 00`, `123-45-6789` or `AB 12 34 56 C`. The scan jumps from digit to digit (text without
//! digits costs one byte test per byte), gathers the cluster around it, and classifies the
//! cluster and its plausible sub-ranges by shape, then by checksum.
//!
//! Base confidences here are deliberately modest for formats that only context can tell apart
//! (nine plain digits could be an SSN, a routing number or a passport); `keywords.rs` raises
//! them when a keyword is near.

use super::checksum;
use super::{Entity, Finding};

const MAX_WORDS: usize = 12;
const MAX_LEN: usize = 72;

#[derive(Clone, Copy, Default)]
struct Word {
    start: usize,
    end: usize,
    digits: u8,
    letters: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sep {
    None,
    Space,
    Dash,
    Dot,
    Slash,
    Paren,
}

/// Appends every cluster candidate in `text` to `out`.
pub fn scan(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match next_digit(b, i) {
            None => return,
            Some(k) => i = k,
        }
        let mut ws = i;
        while ws > 0 && b[ws - 1].is_ascii_alphanumeric() {
            ws -= 1;
        }
        let end = cluster(text, ws, out);
        i = end.max(i + 1);
    }
}

/// The first ASCII digit at or after `from`. Prose has few digits: 32-byte blocks are tested
/// whole (the compiler vectorises the test) before a block is searched byte by byte.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(block) = b.get(i..i + 32) {
        if block.iter().fold(false, |a, c| a | c.is_ascii_digit()) {
            break;
        }
        i += 32;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|k| i + k)
}

fn read_word(b: &[u8], pos: usize) -> Word {
    let mut w = Word {
        start: pos,
        end: pos,
        ..Word::default()
    };
    while w.end < b.len() && b[w.end].is_ascii_alphanumeric() && w.end - pos < 64 {
        if b[w.end].is_ascii_digit() {
            w.digits = w.digits.saturating_add(1);
        } else {
            w.letters = w.letters.saturating_add(1);
        }
        w.end += 1;
    }
    w
}

/// Reads the cluster whose first word starts at `ws`, emits its candidates, returns its end.
fn cluster(text: &str, ws: usize, out: &mut Vec<Finding>) -> usize {
    let b = text.as_bytes();
    let mut words = [Word::default(); MAX_WORDS];
    let mut seps = [Sep::None; MAX_WORDS];
    let mut n = 0;
    let mut pos = ws;
    // Two capital letters and a space before the digits: a spaced NINO (`AB 12 34 56 C`).
    if ws >= 3
        && b[ws - 1] == b' '
        && b[ws - 2].is_ascii_uppercase()
        && b[ws - 3].is_ascii_uppercase()
        && (ws == 3 || !b[ws - 4].is_ascii_alphanumeric())
        && b[ws..].iter().take_while(|c| c.is_ascii_digit()).count() == 2
    {
        pos = ws - 3;
    }
    let first_start = pos;
    let iban_like = {
        let w = &b[first_start..];
        w.len() >= 4
            && w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
    };
    loop {
        let w = read_word(b, pos);
        if w.end == w.start {
            break;
        }
        if n > 0 {
            let len = w.end - w.start;
            let ok = w.digits > 0
                || (len == 1 && b[w.start].is_ascii_uppercase())
                || (len == 2
                    && b[w.start - 1] == b'-'
                    && b[w.start..w.end].iter().all(u8::is_ascii_hexdigit))
                || (iban_like && len <= 4 && b[w.start..w.end].iter().all(u8::is_ascii_uppercase));
            if !ok {
                break;
            }
        }
        words[n] = w;
        n += 1;
        let j = w.end;
        if n == MAX_WORDS || j >= b.len() || j - first_start > MAX_LEN {
            break;
        }
        let (sep, next) = match (b[j], b.get(j + 1).copied()) {
            (b' ', Some(b'(')) | (b')', Some(b' ' | b'-')) => (Sep::Paren, j + 2),
            (b')', _) => (Sep::Paren, j + 1),
            (b' ', _) => (Sep::Space, j + 1),
            (b'-', _) => (Sep::Dash, j + 1),
            (b'.', _) => (Sep::Dot, j + 1),
            (b'/', _) => (Sep::Slash, j + 1),
            _ => break,
        };
        if next >= b.len() || !b[next].is_ascii_alphanumeric() {
            break;
        }
        seps[n] = sep;
        pos = next;
    }
    if n == 0 {
        return ws + 1;
    }
    let lead = words[0].start;
    let plus = lead > 0 && b[lead - 1] == b'+';
    let paren = lead > 0 && b[lead - 1] == b'(';
    let end = words[n - 1].end;
    for i in 0..n {
        for j in (i..n).rev() {
            let whole = i == 0 && j == n - 1;
            if !whole && i != j {
                // A sub-range must be set apart by a separator unlike the ones inside it, so a
                // Luhn-failing card is not re-read as a shorter number of another type.
                let inner = &seps[i + 1..=j];
                let before = (i > 0).then(|| seps[i]);
                let after = (j + 1 < n).then(|| seps[j + 1]);
                if inner
                    .iter()
                    .any(|s| Some(*s) == before || Some(*s) == after)
                {
                    continue;
                }
            }
            let mut start = words[i].start;
            if i == 0 && (plus || paren) {
                start -= 1;
            }
            classify(
                text,
                &words[i..=j],
                &seps[i + 1..=j],
                start,
                i == 0 && plus,
                i == 0 && paren,
                out,
            );
        }
    }
    end
}

fn iin_ok(c: &[u8]) -> bool {
    let p = |k: usize| -> u32 { c[..k].iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')) };
    let n = c.len();
    match c[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => {
            (51..=55).contains(&p(2)) && n == 16
                || (p(2) == 50 || (56..=59).contains(&p(2))) && n >= 12
        }
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
                    && (14..=19).contains(&n)
        }
        b'6' => {
            (16..=19).contains(&n)
                && (p(4) == 6011
                    || p(2) == 65
                    || (644..=649).contains(&p(3))
                    || p(2) == 62
                    || p(2) == 67
                    || p(2) == 63)
        }
        _ => false,
    }
}

fn ssn_ok(c: &[u8]) -> bool {
    let area = &c[..3];
    area != b"000"
        && area != b"666"
        && c[0] != b'9'
        && &c[3..5] != b"00"
        && &c[5..] != b"0000"
        && c != b"123456789"
        && !c.iter().all(|&d| d == c[0])
}

fn itin_ok(c: &[u8]) -> bool {
    let g = u32::from(c[3] - b'0') * 10 + u32::from(c[4] - b'0');
    c[0] == b'9' && matches!(g, 50..=65 | 70..=88 | 90..=92 | 94..=99)
}

fn nino_ok(c: &[u8]) -> bool {
    c.len() == 9
        && c[0].is_ascii_uppercase()
        && c[1].is_ascii_uppercase()
        && c[2..8].iter().all(u8::is_ascii_digit)
        && matches!(c[8], b'A'..=b'D')
        && !b"DFIQUV".contains(&c[0])
        && !b"DFIOQUV".contains(&c[1])
        && !matches!(
            &c[..2],
            b"BG" | b"GB" | b"NK" | b"KN" | b"TN" | b"NT" | b"ZZ"
        )
}

#[allow(clippy::too_many_arguments)]
fn classify(
    text: &str,
    words: &[Word],
    seps: &[Sep],
    start: usize,
    plus: bool,
    paren: bool,
    out: &mut Vec<Finding>,
) {
    let b = text.as_bytes();
    let end = words[words.len() - 1].end;
    let mut buf = [0u8; 80];
    let mut n = 0;
    let mut digits = 0;
    let mut groups = [0u8; MAX_WORDS];
    for (k, w) in words.iter().enumerate() {
        for &c in &b[w.start..w.end] {
            if n < buf.len() {
                buf[n] = c.to_ascii_uppercase();
                n += 1;
            }
        }
        digits += usize::from(w.digits);
        groups[k] = (w.end - w.start).min(255) as u8;
    }
    let c = &buf[..n];
    let g = &groups[..words.len()];
    let single = words.len() == 1;
    let sep = match seps.first() {
        Some(&s) if seps.iter().all(|&x| x == s) => s,
        Some(_) => Sep::Paren,
        None => Sep::None,
    };
    let mut push = |e: Entity, conf: f32| out.push(Finding::new(e, start, end, conf));
    let letters = n - digits;
    if g.len() == 6
        && g.iter().all(|&l| l == 2)
        && sep == Sep::Dash
        && c.iter().all(u8::is_ascii_hexdigit)
    {
        push(Entity::MacAddress, 0.9);
        return;
    }

    if letters == 0 {
        // Phones first: `+` is the strongest signal there is.
        if plus && (8..=15).contains(&digits) {
            push(
                Entity::Phone,
                if g.len() > 1 || digits >= 10 {
                    0.9
                } else {
                    0.7
                },
            );
            return;
        }
        if g.len() == 4 && sep == Sep::Dot && g.iter().all(|&l| (1..=3).contains(&l)) {
            let ok = words.iter().all(|w| {
                let s = &b[w.start..w.end];
                let v: u32 = s.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0'));
                v <= 255 && (s.len() == 1 || s[0] != b'0')
            });
            if ok {
                push(Entity::Ipv4, 0.85);
            }
            return;
        }
        if sep == Sep::Slash || (sep == Sep::Dot && g.len() == 3 && g.iter().any(|&l| l <= 2)) {
            // Dates and version strings.
            return;
        }
        let groups_of = |lens: &[u8]| g == lens;
        if (13..=19).contains(&n)
            && checksum::luhn(c)
            && iin_ok(c)
            && (single
                || g.iter().take(g.len() - 1).all(|&l| l == 4)
                || groups_of(&[4, 6, 5])
                || groups_of(&[4, 6, 4]))
        {
            push(Entity::CreditCard, 0.95);
        }
        match n {
            9 => {
                if groups_of(&[3, 2, 4]) {
                    if itin_ok(c) {
                        push(Entity::UsItin, 0.85);
                    } else if ssn_ok(c) {
                        push(Entity::UsSsn, 0.85);
                    }
                }
                let tri = groups_of(&[3, 3, 3]) && sep != Sep::Dot;
                if single || tri {
                    if checksum::luhn(c) && c[0] != b'0' && c[0] != b'8' {
                        push(Entity::CaSin, if tri { 0.6 } else { 0.4 });
                    }
                    if checksum::au_tfn(c) {
                        push(Entity::AuTfn, if tri { 0.55 } else { 0.4 });
                    }
                }
                if single {
                    if ssn_ok(c) {
                        push(Entity::UsSsn, 0.35);
                    }
                    if itin_ok(c) {
                        push(Entity::UsItin, 0.35);
                    }
                    if checksum::aba(c) {
                        push(Entity::UsBankRouting, 0.5);
                    }
                    push(Entity::UsPassport, 0.25);
                    push(Entity::UsDriverLicense, 0.2);
                    push(Entity::MedicalRecordNumber, 0.2);
                } else if tri && matches!(c[0], b'6' | b'7' | b'9') {
                    push(Entity::Phone, 0.45);
                }
            }
            10 => {
                if checksum::nhs(c) && (single || groups_of(&[3, 3, 4])) {
                    // NHS numbers are written with spaces; dashes are the US phone habit.
                    push(Entity::UkNhs, if sep == Sep::Space { 0.7 } else { 0.45 });
                }
                if paren {
                    push(Entity::Phone, 0.8);
                } else if (!single && c[0] == b'0')
                    || (groups_of(&[3, 3, 4]) && (b'2'..=b'9').contains(&c[0]))
                {
                    push(Entity::Phone, 0.65);
                } else if !single {
                    push(Entity::Phone, 0.5);
                } else {
                    push(Entity::Phone, 0.35);
                    push(Entity::UsDriverLicense, 0.2);
                    push(Entity::MedicalRecordNumber, 0.2);
                }
            }
            11 => {
                if single && checksum::pesel(c) {
                    push(Entity::PlPesel, 0.7);
                }
                if paren || (groups_of(&[1, 3, 3, 4]) && c[0] == b'1') {
                    push(Entity::Phone, 0.75);
                } else if !single && c[0] == b'0' {
                    push(Entity::Phone, 0.65);
                } else {
                    push(Entity::Phone, if single { 0.3 } else { 0.5 });
                }
                if single {
                    push(Entity::MedicalRecordNumber, 0.2);
                }
            }
            12 => {
                if checksum::verhoeff(c) && c[0] >= b'2' && (single || groups_of(&[4, 4, 4])) {
                    push(Entity::InAadhaar, if single { 0.5 } else { 0.85 });
                }
                if !single && !groups_of(&[4, 4, 4]) {
                    push(Entity::Phone, 0.5);
                }
            }
            8 if single => {
                if checksum::au_tfn(c) {
                    push(Entity::AuTfn, 0.35);
                }
                push(Entity::UsDriverLicense, 0.2);
                push(Entity::MedicalRecordNumber, 0.2);
            }
            7 => {
                if !single && groups_of(&[3, 4]) && sep == Sep::Dash {
                    push(Entity::Phone, 0.4);
                } else if single {
                    push(Entity::UsDriverLicense, 0.2);
                    push(Entity::MedicalRecordNumber, 0.2);
                }
            }
            13..=15 if !single && c[0] == b'0' => push(Entity::Phone, 0.5),
            5 | 6 if single => push(Entity::MedicalRecordNumber, 0.15),
            _ => {}
        }
        return;
    }

    // Letters and digits.
    let raw = &b[start..end];
    if (15..=34).contains(&n)
        && c[0].is_ascii_alphabetic()
        && c[1].is_ascii_alphabetic()
        && checksum::iban(c)
        && (single
            || g.iter()
                .skip(1)
                .take(g.len().saturating_sub(2))
                .all(|&l| l == 4))
    {
        push(Entity::Iban, 0.98);
        return;
    }
    if nino_ok(c) && (single || g == [2, 2, 2, 2, 1] || g == [2, 6, 1]) {
        push(Entity::UkNino, 0.9);
    }
    if single {
        let upper_raw = raw.iter().all(|c| !c.is_ascii_lowercase());
        if n == 10
            && upper_raw
            && c[..5].iter().all(u8::is_ascii_uppercase)
            && c[5..9].iter().all(u8::is_ascii_digit)
            && c[9].is_ascii_uppercase()
        {
            push(
                Entity::InPan,
                if b"ABCFGHLJPTK".contains(&c[3]) {
                    0.85
                } else {
                    0.4
                },
            );
        }
        if n == 16 && checksum::it_fiscal_code(c) {
            push(Entity::ItFiscalCode, 0.95);
        }
        if n == 9 && checksum::sg_nric(c) {
            push(Entity::SgNric, 0.9);
        }
        if (26..=35).contains(&n) && matches!(raw[0], b'1' | b'3') && checksum::base58check(raw) {
            push(Entity::CryptoWallet, 0.95);
        }
        if n == 42 && raw[0] == b'0' && raw[1] == b'x' && raw[2..].iter().all(u8::is_ascii_hexdigit)
        {
            push(Entity::CryptoWallet, 0.9);
        }
        if n == 9 && c[0].is_ascii_alphabetic() && c[1..].iter().all(u8::is_ascii_digit) {
            push(Entity::UsPassport, 0.25);
        }
        let lead = c.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        if (1..=3).contains(&lead)
            && c[lead..].iter().all(u8::is_ascii_digit)
            && (4..=13).contains(&(n - lead))
        {
            push(Entity::UsDriverLicense, 0.2);
            push(Entity::MedicalRecordNumber, 0.2);
        }
    }
    if n == 9 && (single || g == [8, 1] || g == [1, 7, 1]) {
        if checksum::es_nif(c) {
            push(Entity::EsNif, 0.9);
        }
        if checksum::es_nie(c) {
            push(Entity::EsNie, 0.95);
        }
    }
    if (8..=14).contains(&n)
        && c[0].is_ascii_alphabetic()
        && c[1].is_ascii_alphabetic()
        && digits >= 6
    {
        match checksum::eu_vat(c) {
            Some(true) => push(Entity::EuVat, 0.9),
            Some(false) => push(Entity::EuVat, 0.5),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Entity, String, f32)> {
        let mut out = Vec::new();
        scan(text, &mut out);
        out.iter()
            .filter_map(|f| match f.kind {
                super::super::Kind::Builtin(e) => {
                    Some((e, text[f.start..f.end].to_string(), f.confidence))
                }
                _ => None,
            })
            .collect()
    }

    fn has(text: &str, e: Entity, value: &str, min: f32) -> bool {
        kinds(text)
            .iter()
            .any(|(k, v, c)| *k == e && v == value && *c >= min)
    }

    #[test]
    fn cards_and_near_misses() {
        assert!(has(
            "pay with 4111 1111 1111 1111 today",
            Entity::CreditCard,
            "4111 1111 1111 1111",
            0.9
        ));
        assert!(has(
            "amex 378282246310005.",
            Entity::CreditCard,
            "378282246310005",
            0.9
        ));
        assert!(!kinds("order 4111 1111 1111 1112")
            .iter()
            .any(|k| k.0 == Entity::CreditCard || k.2 >= 0.6));
    }

    #[test]
    fn phones() {
        assert!(has(
            "call +44 20 7946 0958 now",
            Entity::Phone,
            "+44 20 7946 0958",
            0.85
        ));
        assert!(has(
            "call (415) 555-2671",
            Entity::Phone,
            "(415) 555-2671",
            0.7
        ));
        assert!(has(
            "ring 06 12 34 56 78",
            Entity::Phone,
            "06 12 34 56 78",
            0.6
        ));
        assert!(!kinds("version 1.2.3 released 2024-01-15")
            .iter()
            .any(|k| k.0 == Entity::Phone));
    }

    #[test]
    fn ids() {
        assert!(has("ssn 123-45-6788", Entity::UsSsn, "123-45-6788", 0.8));
        assert!(!has("ssn 666-45-6788", Entity::UsSsn, "666-45-6788", 0.1));
        assert!(has("itin 912-70-1234", Entity::UsItin, "912-70-1234", 0.8));
        assert!(has(
            "IBAN DE89 3704 0044 0532 0130 00.",
            Entity::Iban,
            "DE89 3704 0044 0532 0130 00",
            0.9
        ));
        assert!(has(
            "GB82WEST12345698765432",
            Entity::Iban,
            "GB82WEST12345698765432",
            0.9
        ));
        assert!(has(
            "NINO AB 12 34 56 C",
            Entity::UkNino,
            "AB 12 34 56 C",
            0.8
        ));
        assert!(has("NHS 943 476 5919", Entity::UkNhs, "943 476 5919", 0.6));
        assert!(
            has(
                "id 2345 6789 0124",
                Entity::InAadhaar,
                "2345 6789 0124",
                0.1
            ) || !checksum::verhoeff(b"234567890124")
        );
        assert!(has("PAN ABCPE1234F", Entity::InPan, "ABCPE1234F", 0.8));
        assert!(has("DNI 12345678Z", Entity::EsNif, "12345678Z", 0.8));
        assert!(has("NIE X1234567L", Entity::EsNie, "X1234567L", 0.8));
        assert!(has(
            "CF RSSMRA85T10A562S",
            Entity::ItFiscalCode,
            "RSSMRA85T10A562S",
            0.9
        ));
        assert!(has(
            "PESEL 44051401359",
            Entity::PlPesel,
            "44051401359",
            0.6
        ));
        assert!(has("NRIC S1234567D", Entity::SgNric, "S1234567D", 0.8));
        assert!(has("VAT DE136695976", Entity::EuVat, "DE136695976", 0.8));
        assert!(has("host 192.168.1.20", Entity::Ipv4, "192.168.1.20", 0.8));
        assert!(!kinds("host 192.168.1.300")
            .iter()
            .any(|k| k.0 == Entity::Ipv4));
        assert!(has(
            "btc 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            Entity::CryptoWallet,
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            0.9
        ));
    }
}
