//! AWS Signature Version 4 for the requests the gateway sends to Bedrock: a canonical request
//! (method, path, query, the signed headers, the payload hash), the string to sign, the
//! derived signing key, and the `Authorization` header. Pure functions of their inputs (the
//! time is passed in), so they are checked byte for byte against AWS's published test suite.
//!
//! Kept here rather than taken from `aws-sigv4`: that crate brings ~70 crates (a second
//! `sha2`/`digest` generation, `time`, the smithy runtime types) for the hundred lines below.
//! Secrets go into the HMAC and nowhere else; only the access key id appears in the output.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::validate::hex;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The SHA-256 of an empty payload.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The credentials a request is signed with.
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// What is signed. `path` is the request path as sent (already percent-encoded), `query` the
/// raw query string without `?`, `headers` the headers to sign (any case, any order; values
/// trimmed here), `payload_sha256` the lower-case hex SHA-256 of the body.
pub struct Signable<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
}

/// Where and when: `amz_date` is `YYYYMMDDTHHMMSSZ` (the request's `x-amz-date`).
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub amz_date: &'a str,
}

/// The `Authorization` header value for `req`.
pub fn authorization(req: &Signable<'_>, creds: &Credentials<'_>, scope: &Scope<'_>) -> String {
    let date = scope.amz_date.get(..8).unwrap_or_default();
    let (canonical, signed_headers) = canonical_request(req);
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let secret = format!("AWS4{}", creds.secret_access_key);
    let key = [date, scope.region, scope.service, "aws4_request"]
        .iter()
        .fold(secret.into_bytes(), |key, part| hmac(&key, part.as_bytes()));
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

/// The canonical request and its `SignedHeaders` list.
fn canonical_request(req: &Signable<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    headers.sort();
    let mut canonical_headers = String::new();
    for (n, v) in &headers {
        canonical_headers.push_str(n);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method,
        canonical_path(req.path),
        canonical_query(req.query),
        req.payload_sha256
    );
    (canonical, signed)
}

/// Every service but S3 signs the path encoded once more on top of how it is sent (so the
/// `%3A` of a model id is signed as `%253A`).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b == b'/' {
            out.push('/');
        } else {
            encode_byte(b, &mut out);
        }
    }
    out
}

/// Parameters sorted by encoded name, then value; each name and value encoded exactly once.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// RFC 3986 encoding with AWS's unreserved set.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        encode_byte(b, &mut out);
    }
    out
}

fn encode_byte(b: u8, out: &mut String) {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
        out.push(char::from(b));
    } else {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// Percent-decoding of a query component (`+` is not a space in SigV4).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexpair = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hexpair) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Header values are trimmed and inner runs of spaces collapsed to one.
fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch (UTC, proleptic Gregorian).
pub fn amz_date(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or_default();
    let rem = unix_secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials and time of AWS's SigV4 test suite (aws-sig-v4-test-suite).
    const CREDS: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
        amz_date: "20150830T123600Z",
    };
    const HEADERS: &[(&str, &str)] = &[
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", "20150830T123600Z"),
    ];

    fn sign(method: &str, query: &str) -> String {
        let req = Signable {
            method,
            path: "/",
            query,
            headers: HEADERS,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        authorization(&req, &CREDS, &SCOPE)
    }

    #[test]
    fn get_vanilla() {
        assert_eq!(
            sign("GET", ""),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla() {
        assert!(sign("POST", "").ends_with(
            "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        ));
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert!(sign("GET", "Param2=value2&Param1=value1").ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ));
    }

    #[test]
    fn the_path_is_encoded_once_more_for_signing() {
        assert_eq!(
            canonical_path("/model/anthropic.claude-v2%3A1/converse"),
            "/model/anthropic.claude-v2%253A1/converse"
        );
        assert_eq!(canonical_path(""), "/");
        assert_eq!(encode("a b/c:d~"), "a%20b%2Fc%3Ad~");
        assert_eq!(canonical_query("b=2&a=x%20y"), "a=x%20y&b=2");
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn the_secret_never_appears_in_the_header() {
        let h = sign("POST", "");
        assert!(!h.contains(CREDS.secret_access_key));
        assert!(h.contains("Credential=AKIDEXAMPLE/"));
    }
}
