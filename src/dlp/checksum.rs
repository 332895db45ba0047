//! Check-digit validators for the identifier formats that have one: Luhn, IBAN mod-97 (with
//! per-country lengths), Verhoeff, NHS mod-11, ABA routing, PESEL, Spanish NIF/NIE letters,
//! the Italian fiscal code check character, Australian TFN, Singapore NRIC, EU VAT numbers of
//! the countries whose scheme is simple, and Bitcoin base58check / bech32.
//!
//! Every function takes the compact form (separators already removed) and never allocates on
//! the common path. Nothing here decides whether text *looks like* an identifier; that is the
//! detectors' job.

use sha2::{Digest, Sha256};

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

/// Luhn (mod 10) over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        let Some(mut d) = digit(b) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// IBAN length per country (ISO 13616 registry).
fn iban_length(cc: &[u8]) -> Option<usize> {
    Some(match cc {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NL" => 18,
        b"NO" => 15,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"SA" => 24,
        b"SC" => 31,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        _ => return None,
    })
}

/// IBAN: known country, its exact length, and the mod-97 check (== 1). Upper-case compact.
pub fn iban(s: &[u8]) -> bool {
    if s.len() < 15 || s.len() > 34 || !s.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    if iban_length(&s[..2]) != Some(s.len()) || !s[2].is_ascii_digit() || !s[3].is_ascii_digit() {
        return false;
    }
    let mut rem = 0u32;
    for &b in s[4..].iter().chain(&s[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 8, 7, 0, 6],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff check (Aadhaar).
pub fn verhoeff(digits: &[u8]) -> bool {
    let mut c = 0usize;
    for (i, &b) in digits.iter().rev().enumerate() {
        let Some(d) = digit(b) else {
            return false;
        };
        c = usize::from(VERHOEFF_D[c][usize::from(VERHOEFF_P[i % 8][d as usize])]);
    }
    !digits.is_empty() && c == 0
}

/// Weighted sum of the first `weights.len()` digits.
fn weighted(digits: &[u8], weights: &[u32]) -> Option<u32> {
    let mut s = 0;
    for (b, w) in digits.iter().zip(weights) {
        s += digit(*b)? * w;
    }
    Some(s)
}

/// NHS number: 10 digits, mod-11 check digit (a remainder giving 10 is invalid).
pub fn nhs(d: &[u8]) -> bool {
    if d.len() != 10 {
        return false;
    }
    let Some(sum) = weighted(d, &[10, 9, 8, 7, 6, 5, 4, 3, 2]) else {
        return false;
    };
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && digit(d[9]) == Some(check)
}

/// ABA routing number: 3-7-1 weighted checksum and a valid Federal Reserve prefix.
pub fn aba(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let Some(sum) = weighted(d, &[3, 7, 1, 3, 7, 1, 3, 7, 1]) else {
        return false;
    };
    let prefix = (u32::from(d[0] - b'0')) * 10 + u32::from(d[1] - b'0');
    sum % 10 == 0 && matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80) && sum > 0
}

/// PESEL: weights 1-3-7-9, and a real birth date (the month carries the century).
pub fn pesel(d: &[u8]) -> bool {
    if d.len() != 11 {
        return false;
    }
    let Some(sum) = weighted(d, &[1, 3, 7, 9, 1, 3, 7, 9, 1, 3]) else {
        return false;
    };
    if digit(d[10]) != Some((10 - sum % 10) % 10) {
        return false;
    }
    let n = |i: usize| u32::from(d[i] - b'0') * 10 + u32::from(d[i + 1] - b'0');
    let (month, day) = (n(2) % 20, n(4));
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

const NIF_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// Spanish DNI/NIF: 8 digits and the letter of their value mod 23.
pub fn es_nif(s: &[u8]) -> bool {
    if s.len() != 9 || !s[..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n: u32 = s[..8].iter().fold(0, |a, b| a * 10 + u32::from(b - b'0'));
    NIF_LETTERS.get((n % 23) as usize) == Some(&s[8].to_ascii_uppercase())
}

/// Spanish NIE: X/Y/Z (as 0/1/2), 7 digits, and the NIF letter.
pub fn es_nie(s: &[u8]) -> bool {
    if s.len() != 9 {
        return false;
    }
    let lead = match s[0].to_ascii_uppercase() {
        b'X' => b'0',
        b'Y' => b'1',
        b'Z' => b'2',
        _ => return false,
    };
    let mut buf = [0u8; 9];
    buf.copy_from_slice(s);
    buf[0] = lead;
    es_nif(&buf)
}

/// Italian codice fiscale: 16 characters in the fixed letter/digit layout (digits may be
/// replaced by letters, "omocodia"), and the check character.
pub fn it_fiscal_code(s: &[u8]) -> bool {
    if s.len() != 16 {
        return false;
    }
    const OMOCODE: &[u8] = b"LMNPQRSTUV";
    for (i, &b) in s.iter().enumerate() {
        let b = b.to_ascii_uppercase();
        let ok = match i {
            0..=5 | 8 | 11 | 15 => b.is_ascii_uppercase(),
            _ => b.is_ascii_digit() || OMOCODE.contains(&b),
        };
        if !ok {
            return false;
        }
    }
    if !b"ABCDEHLMPRST".contains(&s[8].to_ascii_uppercase()) {
        return false;
    }
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let mut sum = 0;
    for (i, &b) in s[..15].iter().enumerate() {
        let b = b.to_ascii_uppercase();
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A')
        };
        // Positions are 1-based in the standard: odd positions use the table.
        sum += if i % 2 == 0 { ODD[v as usize] } else { v };
    }
    u32::from(s[15].to_ascii_uppercase() - b'A') == sum % 26
}

/// Australian tax file number: 8 or 9 digits, weighted sum mod 11.
pub fn au_tfn(d: &[u8]) -> bool {
    let w: &[u32] = match d.len() {
        9 => &[1, 4, 3, 7, 5, 8, 6, 9, 10],
        8 => &[10, 7, 8, 4, 6, 3, 5, 1],
        _ => return false,
    };
    weighted(d, w).is_some_and(|s| s % 11 == 0 && s > 0)
}

/// Singapore NRIC/FIN: prefix letter, 7 digits, check letter.
pub fn sg_nric(s: &[u8]) -> bool {
    if s.len() != 9 || !s[1..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some(mut sum) = weighted(&s[1..8], &[2, 7, 6, 5, 4, 3, 2]) else {
        return false;
    };
    let (offset, table): (u32, &[u8; 11]) = match s[0].to_ascii_uppercase() {
        b'S' => (0, b"JZIHGFEDCBA"),
        b'T' => (4, b"JZIHGFEDCBA"),
        b'F' => (0, b"XWUTRQPNMLK"),
        b'G' => (4, b"XWUTRQPNMLK"),
        b'M' => (3, b"XWUTRQPNMLK"),
        _ => return false,
    };
    sum += offset;
    table.get((sum % 11) as usize) == Some(&s[8].to_ascii_uppercase())
}

/// EU VAT number (upper-case compact, with its country prefix). Countries with a simple
/// published check digit are verified; the others are checked for their layout only, and the
/// second value says which happened.
pub fn eu_vat(s: &[u8]) -> Option<bool> {
    if s.len() < 4 {
        return None;
    }
    let (cc, b) = s.split_at(2);
    let digits = |n: usize| b.len() == n && b.iter().all(u8::is_ascii_digit);
    match cc {
        b"DE" if digits(9) => {
            // ISO 7064 MOD 11,10.
            let mut p = 10u32;
            for &c in &b[..8] {
                let mut s = (u32::from(c - b'0') + p) % 10;
                if s == 0 {
                    s = 10;
                }
                p = (2 * s) % 11;
            }
            let check = (11 - p) % 10;
            Some(u32::from(b[8] - b'0') == check).filter(|&ok| ok)
        }
        b"IT" if digits(11) => luhn(b).then_some(true),
        b"PL" if digits(10) => {
            let s = weighted(b, &[6, 5, 7, 2, 3, 4, 5, 6, 7])?;
            (s % 11 != 10 && digit(b[9]) == Some(s % 11)).then_some(true)
        }
        b"BE" if digits(10) && (b[0] == b'0' || b[0] == b'1') => {
            let n: u64 = b[..8].iter().fold(0, |a, c| a * 10 + u64::from(c - b'0'));
            let check = u64::from(b[8] - b'0') * 10 + u64::from(b[9] - b'0');
            (97 - n % 97 == check).then_some(true)
        }
        b"FR" if b.len() == 11 && b[2..].iter().all(u8::is_ascii_digit) => {
            if b[..2].iter().all(u8::is_ascii_digit) {
                let siren: u64 = b[2..].iter().fold(0, |a, c| a * 10 + u64::from(c - b'0'));
                let key = u64::from(b[0] - b'0') * 10 + u64::from(b[1] - b'0');
                ((12 + 3 * (siren % 97)) % 97 == key).then_some(true)
            } else {
                Some(false)
            }
        }
        b"NL" if b.len() == 12 && b[9] == b'B' && b[..9].iter().all(u8::is_ascii_digit) => {
            Some(false)
        }
        b"AT" if b.len() == 9 && b[0] == b'U' && b[1..].iter().all(u8::is_ascii_digit) => {
            Some(false)
        }
        b"ES" if b.len() == 9 && b[1..8].iter().all(u8::is_ascii_digit) => Some(false),
        b"SE" if digits(12) && &b[10..] == b"01" => luhn(&b[..10]).then_some(true),
        b"DK" | b"FI" | b"LU" | b"MT" | b"SI" | b"HU" if digits(8) => Some(false),
        b"PT" | b"EL" | b"GR" | b"EE" | b"LT" if digits(9) => Some(false),
        b"IE" if b.len() >= 8 && b.len() <= 9 && b[..7].iter().all(u8::is_ascii_digit) => {
            Some(false)
        }
        b"CZ" | b"SK" | b"RO" | b"HR" | b"BG" | b"CY" | b"LV"
            if b.len() >= 8 && b.len() <= 12 && b.iter().all(u8::is_ascii_alphanumeric) =>
        {
            Some(false)
        }
        _ => None,
    }
}

const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin base58check address (P2PKH `1...` / P2SH `3...`): 25 decoded bytes whose last four
/// are the double SHA-256 of the rest.
pub fn base58check(s: &[u8]) -> bool {
    if s.len() < 25 || s.len() > 35 {
        return false;
    }
    let mut out = [0u8; 25];
    for &c in s {
        let Some(v) = B58.iter().position(|&x| x == c) else {
            return false;
        };
        let mut carry = v as u32;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        if carry != 0 {
            return false;
        }
    }
    if out[0] != 0x00 && out[0] != 0x05 {
        return false;
    }
    let hash = Sha256::digest(Sha256::digest(&out[..21]));
    hash[..4] == out[21..]
}

/// Bech32 / bech32m address with the `bc` prefix (segwit), checksum verified.
pub fn bech32(s: &[u8]) -> bool {
    const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    if s.len() < 14 || s.len() > 74 {
        return false;
    }
    let lower: bool = s.iter().all(|c| !c.is_ascii_uppercase());
    let upper: bool = s.iter().all(|c| !c.is_ascii_lowercase());
    if !lower && !upper {
        return false;
    }
    let Some(sep) = s.iter().rposition(|&c| c == b'1') else {
        return false;
    };
    if !s[..sep].eq_ignore_ascii_case(b"bc") || s.len() - sep < 7 {
        return false;
    }
    let polymod = |values: &mut dyn Iterator<Item = u32>| {
        let mut chk = 1u32;
        for v in values {
            let top = chk >> 25;
            chk = ((chk & 0x01ff_ffff) << 5) ^ v;
            for (i, g) in GEN.iter().enumerate() {
                if (top >> i) & 1 == 1 {
                    chk ^= g;
                }
            }
        }
        chk
    };
    let mut data = [0u32; 80];
    let mut n = 0;
    for &c in &s[sep + 1..] {
        let Some(v) = CHARSET.iter().position(|&x| x == c.to_ascii_lowercase()) else {
            return false;
        };
        data[n] = v as u32;
        n += 1;
    }
    // "bc" expanded for the checksum: high bits of each character, 0, low bits.
    let expanded = [3u32, 3, 0, 2, 3];
    let chk = polymod(&mut expanded.iter().copied().chain(data[..n].iter().copied()));
    chk == 1 || chk == 0x2bc8_30a3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_cases() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b""));
    }

    #[test]
    fn iban_cases() {
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(iban(b"FR1420041010050500013M02606"));
        assert!(!iban(b"DE89370400440532013001"));
        assert!(!iban(b"DE8937040044053201300")); // wrong length for DE
        assert!(!iban(b"XX89370400440532013000"));
    }

    #[test]
    fn verhoeff_nhs_aba_pesel() {
        assert!(verhoeff(b"2363"));
        assert!(!verhoeff(b"2364"));
        assert!(nhs(b"9434765919"));
        assert!(!nhs(b"9434765918"));
        assert!(aba(b"021000021"));
        assert!(aba(b"011000015"));
        assert!(!aba(b"021000022"));
        assert!(pesel(b"44051401359"));
        assert!(!pesel(b"44051401358"));
    }

    #[test]
    fn spanish_italian_sg_au() {
        assert!(es_nif(b"12345678Z"));
        assert!(!es_nif(b"12345678A"));
        assert!(es_nie(b"X1234567L"));
        assert!(!es_nie(b"X1234567A"));
        assert!(it_fiscal_code(b"RSSMRA85T10A562S"));
        assert!(!it_fiscal_code(b"RSSMRA85T10A562T"));
        assert!(sg_nric(b"S1234567D"));
        assert!(!sg_nric(b"S1234567A"));
        assert!(au_tfn(b"123456782"));
        assert!(!au_tfn(b"123456789"));
    }

    #[test]
    fn vat_cases() {
        assert_eq!(eu_vat(b"DE136695976"), Some(true));
        assert_eq!(eu_vat(b"DE136695977"), None);
        assert_eq!(eu_vat(b"IT00743110157"), Some(true));
        assert_eq!(eu_vat(b"FR40303265045"), Some(true));
        assert_eq!(eu_vat(b"NL123456789B01"), Some(false));
        assert_eq!(eu_vat(b"XX123456789"), None);
    }

    #[test]
    fn bitcoin_cases() {
        assert!(base58check(b"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"));
        assert!(base58check(b"3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!base58check(b"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"));
        assert!(bech32(b"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(!bech32(b"bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr"));
    }
}
