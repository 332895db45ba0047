//! `[state.redis]`: the Redis (or Valkey) server that replicas share wallets, rate limits and
//! cooldowns through when `[state] backend = "redis"`, and its validation into
//! [`SharedSettings`]. What is stored there, and how, lives in `ledger/redis.rs`.
//!
//! The URL names a server, never a password: a password comes from `password_env` (or the
//! whole URL from `url_env`), like every other secret in this file.
//!
//! With `rediss://`, `ca_file` and a client certificate are read here, at every load, so a
//! reload brings rotated files to the store's next connections.

use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::{OneOrMany, Secret};

/// `[state.redis]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://...` for TLS (rustls; Mozilla's roots unless
    /// `ca_file`).
    pub url: Option<String>,
    /// Environment variable holding the whole URL (when it carries credentials).
    pub url_env: Option<String>,
    /// Environment variable holding the password (used with `url`).
    pub password_env: Option<String>,
    /// Prepended to every key and channel, so several gateways can share one server.
    pub key_prefix: String,
    /// Multiplexed connections requests are spread over.
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// Longest wait for one command; past it the store counts as unreachable.
    pub command_timeout_ms: u64,
    /// What requests get while the store is unreachable.
    pub on_failure: OnFailure,
    /// How long a reservation is held in the store if its replica dies before settling it.
    pub lease_secs: u64,
    /// How often an unreachable store is probed (and pending spend written back once it is up).
    pub probe_interval_ms: u64,
    /// Share of each limit a replica may take from the store at once and admit requests from
    /// without a round trip (0: off, every admission asks the store).
    pub local_allowance: f64,
    /// How often a replica writes the spend served from its allowances to the store and tops
    /// them up (or gives back the allowances nobody used).
    pub allowance_sync_ms: u64,
    /// PEM file(s) of the CA certificates the server's certificate is checked against, instead
    /// of the public roots (a private CA). Only with `rediss://`.
    pub ca_file: Option<OneOrMany>,
    /// PEM client certificate (chain) and private key presented to the server (mTLS). Only
    /// with `rediss://`.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: None,
            password_env: None,
            key_prefix: "gateway:".into(),
            pool_size: 4,
            connect_timeout_ms: 1000,
            command_timeout_ms: 250,
            on_failure: OnFailure::FailClosed,
            lease_secs: 900,
            probe_interval_ms: 500,
            local_allowance: 0.0,
            allowance_sync_ms: 200,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

/// The operator's choice for when the shared store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse requests with 503 until the store is back: limits are never exceeded.
    FailClosed,
    /// Serve on this replica's own limits meanwhile; the spend is written back later.
    FailOpenLocal,
}

/// The validated `[state.redis]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSettings {
    /// The URL with credentials filled in; never printed.
    pub url: Secret,
    pub prefix: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub on_failure: OnFailure,
    pub lease: Duration,
    pub probe_interval: Duration,
    /// Share of each limit taken at once (0: off).
    pub local_allowance: f64,
    pub allowance_sync: Duration,
    /// With `ca_file` or a client certificate: the files' contents, as read at load.
    pub tls: Option<RedisTls>,
}

impl SharedSettings {
    /// Whether `other` talks to the same store the same way, TLS files aside (those a running
    /// store takes over; see `ledger::redis::Store::use_tls`).
    pub fn same_but_tls(&self, other: &Self) -> bool {
        let mut other = other.clone();
        other.tls.clone_from(&self.tls);
        *self == other
    }
}

/// The TLS material for `rediss://`: PEM, checked at load.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// The CAs trusted for the server's certificate; None: the public (Mozilla) roots.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and private key (mTLS).
    pub identity: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl RedisTls {
    /// The form the redis crate takes.
    pub fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .identity
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.expose().as_bytes().to_vec(),
                }),
            root_cert: self.ca.clone(),
        }
    }
}

/// Validates `[state.redis]`; problems go to `errs` with their TOML path.
pub fn build(
    c: &RedisConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<SharedSettings> {
    let at = "state.redis";
    let url = match (&c.url, &c.url_env) {
        (Some(_), Some(_)) => {
            errs.push(format!("{at}: set url or url_env, not both"));
            return None;
        }
        (None, None) => {
            errs.push(format!(
                "{at}.url: required with state.backend = \"redis\" (or url_env)"
            ));
            return None;
        }
        (Some(u), None) => {
            if has_password(u) {
                errs.push(format!(
                    "{at}.url: must not contain a password; use password_env (or url_env)"
                ));
                return None;
            }
            match &c.password_env {
                None => u.clone(),
                Some(var) => match env(var) {
                    Some(pw) if !pw.is_empty() => with_password(u, &pw)?,
                    _ => {
                        errs.push(format!(
                            "{at}.password_env: environment variable {var:?} is not set"
                        ));
                        return None;
                    }
                },
            }
        }
        (None, Some(var)) => match env(var) {
            Some(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => {
                errs.push(format!(
                    "{at}.url_env: environment variable {var:?} is not set"
                ));
                return None;
            }
        },
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        errs.push(format!(
            "{at}.url: must start with redis:// (or rediss:// for TLS)"
        ));
    }
    if redis::Client::open(url.as_str()).is_err() {
        // The parser's message may quote the URL; only say where the problem is.
        errs.push(format!("{at}.url: not a valid Redis URL"));
    }
    let tls = tls(c, at, errs);
    if tls.is_some() && !url.starts_with("rediss://") {
        errs.push(format!(
            "{at}: ca_file and client_cert_file/client_key_file need a rediss:// (TLS) url"
        ));
    }
    if c.pool_size == 0 || c.pool_size > 64 {
        errs.push(format!("{at}.pool_size: must be between 1 and 64"));
    }
    for (name, v) in [
        ("connect_timeout_ms", c.connect_timeout_ms),
        ("command_timeout_ms", c.command_timeout_ms),
        ("probe_interval_ms", c.probe_interval_ms),
    ] {
        if v == 0 || v > 60_000 {
            errs.push(format!("{at}.{name}: must be between 1 and 60000"));
        }
    }
    if c.lease_secs < 10 {
        errs.push(format!("{at}.lease_secs: must be at least 10"));
    }
    if !(0.0..=0.5).contains(&c.local_allowance) {
        errs.push(format!(
            "{at}.local_allowance: must be between 0 (off) and 0.5 (a share of each limit)"
        ));
    }
    if c.allowance_sync_ms < 10 || c.allowance_sync_ms > 10_000 {
        errs.push(format!(
            "{at}.allowance_sync_ms: must be between 10 and 10000"
        ));
    }
    if c.key_prefix.chars().any(|ch| ch.is_whitespace()) {
        errs.push(format!("{at}.key_prefix: must not contain whitespace"));
    }
    Some(SharedSettings {
        url: Secret::new(url),
        prefix: c.key_prefix.clone(),
        pool_size: c.pool_size.clamp(1, 64),
        connect_timeout: Duration::from_millis(c.connect_timeout_ms.max(1)),
        command_timeout: Duration::from_millis(c.command_timeout_ms.max(1)),
        on_failure: c.on_failure,
        lease: Duration::from_secs(c.lease_secs.max(10)),
        probe_interval: Duration::from_millis(c.probe_interval_ms.max(1)),
        local_allowance: c.local_allowance.clamp(0.0, 0.5),
        allowance_sync: Duration::from_millis(c.allowance_sync_ms.clamp(10, 10_000)),
        tls,
    })
}

/// Reads and checks `ca_file` and the client certificate pair (None when neither is set).
fn tls(c: &RedisConfig, at: &str, errs: &mut Vec<String>) -> Option<RedisTls> {
    let ca_files = c
        .ca_file
        .as_ref()
        .map(OneOrMany::to_vec)
        .unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    let mut ca = Vec::new();
    for (i, path) in ca_files.iter().enumerate() {
        let field = if ca_files.len() == 1 {
            format!("{at}.ca_file")
        } else {
            format!("{at}.ca_file[{i}]")
        };
        let Some((pem, certs)) = read_certs(path, &field, errs) else {
            continue;
        };
        for cert in certs {
            if let Err(e) = roots.add(cert) {
                errs.push(format!(
                    "{field}: {path:?} holds a certificate rustls rejects: {e}"
                ));
            }
        }
        ca.extend_from_slice(&pem);
        ca.push(b'\n');
    }
    if matches!(&c.ca_file, Some(OneOrMany::Many(v)) if v.is_empty()) {
        errs.push(format!(
            "{at}.ca_file: an empty list would trust no server certificate"
        ));
    }
    let identity = match (&c.client_cert_file, &c.client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => identity(cert, key, at, errs),
        _ => {
            errs.push(format!(
                "{at}: client_cert_file and client_key_file go together"
            ));
            None
        }
    };
    if c.ca_file.is_none() && c.client_cert_file.is_none() && c.client_key_file.is_none() {
        return None;
    }
    Some(RedisTls {
        ca: c.ca_file.is_some().then_some(ca),
        identity,
    })
}

/// A PEM file's bytes and the certificates in it; problems go to `errs` under `field`.
fn read_certs(
    path: &str,
    field: &str,
    errs: &mut Vec<String>,
) -> Option<(Vec<u8>, Vec<CertificateDer<'static>>)> {
    let pem = std::fs::read(path)
        .map_err(|e| errs.push(format!("{field}: cannot read {path:?}: {e}")))
        .ok()?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Some((pem, certs)),
        Ok(_) => {
            errs.push(format!("{field}: {path:?} holds no PEM certificate"));
            None
        }
        Err(e) => {
            errs.push(format!("{field}: {path:?} is not valid PEM: {e}"));
            None
        }
    }
}

/// The client certificate chain and key, checked to belong together.
// ring is the crypto provider of the whole binary (see `state.rs`); rustls deprecated its
// constructor only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn identity(cert: &str, key: &str, at: &str, errs: &mut Vec<String>) -> Option<(Vec<u8>, Secret)> {
    let chain = read_certs(cert, &format!("{at}.client_cert_file"), errs);
    let key_pem = std::fs::read(key)
        .map_err(|e| errs.push(format!("{at}.client_key_file: cannot read {key:?}: {e}")))
        .ok()?;
    // Neither the parser's message nor the file is echoed: it could quote key material.
    let no_key = || {
        format!("{at}.client_key_file: {key:?} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
    };
    let Some(key_text) = String::from_utf8(key_pem).ok() else {
        errs.push(no_key());
        return None;
    };
    let key_text = Secret::new(key_text);
    let Ok(parsed) = PrivateKeyDer::from_pem_slice(key_text.expose().as_bytes()) else {
        errs.push(no_key());
        return None;
    };
    let (pem, certs) = chain?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let fits = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(certs, parsed)
        });
    match fits {
        Ok(Ok(_)) => Some((pem, key_text)),
        Ok(Err(e)) | Err(e) => {
            errs.push(format!(
                "{at}: client_cert_file and client_key_file do not form an identity: {e}"
            ));
            None
        }
    }
}

/// Whether the authority of `url` carries a password (`redis://user:pw@host`, `redis://:pw@`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `redis://[user@]host...` with `:password` inserted (percent-encoded).
fn with_password(url: &str, pw: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let encoded: String = pw
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Some(match rest.split_once('@') {
        Some((user, host)) if !user.contains('/') => format!("{scheme}://{user}:{encoded}@{host}"),
        _ => format!("{scheme}://:{encoded}@{rest}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_named_not_written() {
        assert!(has_password("redis://:pw@h:6379"));
        assert!(has_password("rediss://u:pw@h/0"));
        assert!(!has_password("redis://u@h:6379/0"));
        assert!(!has_password("redis://h:6379/0"));
        assert_eq!(
            with_password("redis://h:6379/0", "a b").as_deref(),
            Some("redis://:a%20b@h:6379/0")
        );
        assert_eq!(
            with_password("rediss://app@h/1", "x").as_deref(),
            Some("rediss://app:x@h/1")
        );
        let mut errs = Vec::new();
        let c = RedisConfig {
            url: Some("redis://:hunter2@h".into()),
            ..RedisConfig::default()
        };
        assert!(build(&c, &|_| None, &mut errs).is_none());
        assert!(errs[0].contains("password_env"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"));
    }

    #[test]
    fn tls_files_are_never_printed() {
        let tls = RedisTls {
            ca: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            identity: Some((
                b"cert".to_vec(),
                Secret::new("-----BEGIN PRIVATE KEY----- k"),
            )),
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        let certs = format!("{:?}", tls.certificates());
        assert!(!certs.contains("BEGIN"), "{certs}");
    }

    #[test]
    fn tls_settings_need_a_tls_url() {
        let mut errs = Vec::new();
        let c = RedisConfig {
            url: Some("redis://h:6379".into()),
            client_key_file: Some("/nonexistent/key.pem".into()),
            ..RedisConfig::default()
        };
        build(&c, &|_| None, &mut errs);
        assert!(errs.iter().any(|e| e.contains("go together")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("rediss://")), "{errs:?}");
    }
}
