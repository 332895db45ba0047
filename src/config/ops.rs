//! Operations settings in `gateway.toml`: `[audit]` (where the per-request audit records go,
//! how full queues behave, the hash-chain key) and their validation into [`Ops`], which also
//! carries the config's hash. The audit writer itself is `crate::audit`; the record format
//! is documented there.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{Config, Secret};

/// `[audit]`: one metadata-only JSON line per request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory of the daily files `audit-YYYY-MM-DD.jsonl`; absent: no file sink.
    pub dir: Option<PathBuf>,
    /// Also (or only) write each record as a line to stdout (logs go to stderr).
    pub stdout: bool,
    /// A day's file is continued in `audit-YYYY-MM-DD.N.jsonl` past this size.
    pub max_file_mb: u64,
    /// Files older than this many days are deleted; 0 keeps them forever.
    pub retention_days: u32,
    /// Records waiting for the writer, at most.
    pub queue: usize,
    /// What a request does when the queue is full: `block` (wait for room: back-pressure) or
    /// `drop` (the record is dropped and counted in `gateway_audit_records_total`).
    pub on_full: OnFull,
    /// Client address in records: `peer` (the TCP peer), `forwarded` (the first
    /// `X-Forwarded-For` entry, for a gateway behind a trusted proxy) or `off`.
    pub client_ip: ClientIp,
    /// Environment variable holding a key (16+ characters) that chains every record to the
    /// previous one with HMAC-SHA256, so an edited or deleted record is detectable.
    pub hmac_key_env: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: None,
            stdout: false,
            max_file_mb: 256,
            retention_days: 0,
            queue: 8192,
            on_full: OnFull::Block,
            client_ip: ClientIp::Peer,
            hmac_key_env: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    Block,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientIp {
    Peer,
    Forwarded,
    Off,
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: Option<PathBuf>,
    pub stdout: bool,
    pub max_file_bytes: u64,
    pub retention_days: u32,
    pub queue: usize,
    pub on_full: OnFull,
    pub client_ip: ClientIp,
    pub hmac_key: Option<Secret>,
}

impl AuditSettings {
    pub fn enabled(&self) -> bool {
        self.dir.is_some() || self.stdout
    }

    /// Whether the writer would have to be rebuilt to follow `other` (it is built once, at
    /// start).
    pub fn sink_differs(&self, other: &Self) -> bool {
        self.dir != other.dir
            || self.stdout != other.stdout
            || self.max_file_bytes != other.max_file_bytes
            || self.retention_days != other.retention_days
            || self.queue != other.queue
            || self.on_full != other.on_full
            || self.hmac_key != other.hmac_key
    }
}

/// `[server.tls]`: serve the client API over TLS with this certificate chain and key (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Settings for running the gateway that are not about requests' routing or spend.
#[derive(Debug, Clone)]
pub struct Ops {
    pub audit: AuditSettings,
    /// Short hash of the effective config (file plus environment overrides); set by the
    /// loader, empty for a config built from a `Config` value alone.
    pub config_hash: Arc<str>,
    /// The effective config tree the hash was taken of, for describing reloads.
    pub tree: Option<Arc<serde_json::Value>>,
    /// `server.watch_config`: reload when the file changes.
    pub watch_config: bool,
    /// The client listener's TLS setup, read from the files at every (re)load.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

pub fn build(config: &Config, env: &dyn Fn(&str) -> Option<String>, errs: &mut Vec<String>) -> Ops {
    let a = &config.audit;
    if a.queue == 0 {
        errs.push("audit.queue: must be greater than 0".into());
    }
    if a.max_file_mb == 0 {
        errs.push("audit.max_file_mb: must be greater than 0".into());
    }
    let hmac_key = a.hmac_key_env.as_ref().and_then(|var| match env(var) {
        Some(v) if v.trim().len() >= 16 => Some(Secret::new(v.trim())),
        Some(_) => {
            errs.push(format!(
                "audit.hmac_key_env: the key in {var:?} must be at least 16 characters"
            ));
            None
        }
        None => {
            errs.push(format!(
                "audit.hmac_key_env: environment variable {var:?} is not set"
            ));
            None
        }
    });
    Ops {
        audit: AuditSettings {
            dir: a.dir.clone(),
            stdout: a.stdout,
            max_file_bytes: a.max_file_mb.saturating_mul(1024 * 1024),
            retention_days: a.retention_days,
            queue: a.queue.max(1),
            on_full: a.on_full,
            client_ip: a.client_ip,
            hmac_key,
        },
        config_hash: Arc::from(""),
        tree: None,
        watch_config: config.server.watch_config,
        tls: config.server.tls.as_ref().and_then(|t| tls(t, errs)),
    }
}

// ring is the crypto provider of the whole binary (see `state.rs`); rustls deprecated its
// constructor only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn tls(t: &TlsConfig, errs: &mut Vec<String>) -> Option<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &PathBuf, field: &str, errs: &mut Vec<String>| {
        std::fs::read(path)
            .map_err(|e| errs.push(format!("server.tls.{field}: {}: {e}", path.display())))
            .ok()
    };
    let cert_pem = read(&t.cert_file, "cert_file", errs);
    let key_pem = read(&t.key_file, "key_file", errs);
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            errs.push(format!(
                "server.tls.cert_file: not a PEM certificate chain: {e}"
            ))
        })
        .ok()?;
    if certs.is_empty() {
        errs.push("server.tls.cert_file: no certificate in the file".into());
        return None;
    }
    // The error never contains key material, only what kind of problem it was.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| errs.push(format!("server.tls.key_file: not a PEM private key: {e}")))
        .ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| errs.push(format!("server.tls: {e}")))
        .ok()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            errs.push(format!(
                "server.tls: the key does not fit the certificate: {e}"
            ))
        })
        .ok()?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(Arc::new(config))
}
