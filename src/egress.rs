//! How the gateway reaches providers: the validated `[egress]` settings (proxy, CA bundles,
//! client certificates, minimum TLS version, per-provider pools and HTTP/2), the connector that
//! tunnels through an HTTP proxy with CONNECT, and the pooled clients built from them.
//!
//! Everything that can fail (reading PEM files, a key that does not match its certificate) is
//! checked when the config is validated, so building the clients cannot fail and a reload with
//! a broken CA file keeps the old config. Clients are rebuilt only when these settings change,
//! so an unrelated reload keeps warm connections. The request path only asks `Clients::get`.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::BoxError;
use crate::config::egress::{ConnectionConfig, EgressConfig};
use crate::config::{OneOrMany, ProviderConfig, ProviderKind};

pub type HttpClient = Client<HttpsConnector<Connector>, Full<Bytes>>;

const DEFAULT_POOL_MAX_IDLE: usize = 512;
const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(90);

/// The validated egress settings (part of the `Runtime`).
#[derive(Debug)]
pub struct Settings {
    /// Digest of everything the clients are built from: equal digests, same clients.
    fingerprint: [u8; 32],
    proxy: Option<Arc<Proxy>>,
    connect_timeout: Duration,
    default: Profile,
    /// Providers with a `connection` table of their own.
    providers: HashMap<String, Profile>,
}

/// How one client connects.
#[derive(Debug, Clone)]
struct Profile {
    tls: Arc<rustls::ClientConfig>,
    http2: bool,
    pool_max_idle: usize,
    pool_idle: Duration,
    proxy: bool,
}

/// Where upstream connections are tunnelled, and for which destinations.
#[derive(Debug)]
pub struct Proxy {
    matcher: Matcher,
    /// `Proxy-Authorization` from `proxy_auth_env` (marked sensitive).
    auth: Option<HeaderValue>,
    /// Proxies from the environment leave loopback destinations alone, as Go's and most
    /// tools' do; a proxy set in the config applies to what the config says.
    from_env: bool,
}

impl Proxy {
    /// The proxy for `dst` and the credentials to give it, if `dst` goes through one.
    fn route(&self, dst: &Uri) -> Option<(Uri, Option<HeaderValue>)> {
        if self.from_env && is_loopback(dst) {
            return None;
        }
        let hit = self.matcher.intercept(dst)?;
        let auth = self.auth.clone().or_else(|| hit.basic_auth().cloned());
        Some((hit.uri().clone(), auth))
    }
}

fn is_loopback(dst: &Uri) -> bool {
    match dst.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl Settings {
    /// The proxy `provider`'s connections go through for `dst`, for `gateway doctor`.
    pub fn proxy_for(&self, provider: &str, dst: &Uri) -> Option<Uri> {
        let profile = self.providers.get(provider).unwrap_or(&self.default);
        profile
            .proxy
            .then_some(self.proxy.as_ref())
            .flatten()
            .and_then(|p| p.route(dst))
            .map(|(uri, _)| uri)
    }
}

/// Validates `[egress]` and every provider's `connection` table, reading PEM files and the
/// proxy credentials (through `env`). Problems go to `errs` with their TOML path (None when
/// no TLS configuration could be built at all).
pub fn settings(
    cfg: &EgressConfig,
    providers: &[ProviderConfig],
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<Settings> {
    let mut digest = Sha256::new();
    digest.update(format!("{cfg:?}").as_bytes());

    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_tls_version.as_str() {
        "1.2" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => {
            errs.push(format!(
                "egress.min_tls_version: {other:?} is not \"1.2\" or \"1.3\""
            ));
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    if cfg.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let ca_files = cfg
        .ca_file
        .as_ref()
        .map(OneOrMany::to_vec)
        .unwrap_or_default();
    for (i, path) in ca_files.iter().enumerate() {
        let at = if ca_files.len() == 1 {
            "egress.ca_file".to_string()
        } else {
            format!("egress.ca_file[{i}]")
        };
        for cert in read_certs(path, &at, errs) {
            digest.update(cert.as_ref());
            if let Err(e) = roots.add(cert) {
                errs.push(format!(
                    "{at}: {path:?} holds a certificate rustls rejects: {e}"
                ));
            }
        }
    }
    if roots.is_empty() {
        errs.push(
            "egress: public_roots = false and no ca_file: no upstream certificate could be trusted"
                .into(),
        );
    }
    let roots = Arc::new(roots);
    let default_identity = identity(
        cfg.client_cert_file.as_deref(),
        cfg.client_key_file.as_deref(),
        "egress",
        &mut digest,
        errs,
    );
    let tls = |identity: &Option<Identity>, at: &str, errs: &mut Vec<String>| {
        tls_config(versions, roots.clone(), identity.clone(), at, errs)
    };
    let default = Profile {
        tls: tls(&default_identity, "egress", errs)?,
        http2: true,
        pool_max_idle: DEFAULT_POOL_MAX_IDLE,
        pool_idle: DEFAULT_POOL_IDLE,
        proxy: true,
    };

    let mut per_provider = HashMap::new();
    for (i, p) in providers.iter().enumerate() {
        let Some(c) = &p.connection else { continue };
        let at = format!("providers[{i}].connection");
        digest.update(format!("{}{c:?}", p.name).as_bytes());
        if p.kind == ProviderKind::Mock {
            errs.push(format!("{at}: a mock provider makes no connections"));
            continue;
        }
        let own = identity(
            c.client_cert_file.as_deref(),
            c.client_key_file.as_deref(),
            &at,
            &mut digest,
            errs,
        );
        let tls = match own {
            Some(_) => match tls(&own, &at, errs) {
                Some(t) => t,
                None => continue,
            },
            None => default.tls.clone(),
        };
        per_provider.insert(p.name.clone(), profile(c, tls, &at, errs));
    }

    let proxy = proxy(cfg, env, &mut digest, errs);
    Some(Settings {
        fingerprint: digest.finalize().into(),
        proxy,
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
        default,
        providers: per_provider,
    })
}

fn profile(
    c: &ConnectionConfig,
    tls: Arc<rustls::ClientConfig>,
    at: &str,
    errs: &mut Vec<String>,
) -> Profile {
    if c.pool_max_idle == Some(0) && c.pool_idle_timeout_secs.is_some() {
        errs.push(format!(
            "{at}.pool_idle_timeout_secs: meaningless with pool_max_idle = 0 (no idle connections are kept)"
        ));
    }
    Profile {
        tls,
        http2: c.http2.unwrap_or(true),
        pool_max_idle: c.pool_max_idle.unwrap_or(DEFAULT_POOL_MAX_IDLE),
        pool_idle: c
            .pool_idle_timeout_secs
            .map_or(DEFAULT_POOL_IDLE, Duration::from_secs),
        proxy: c.proxy.unwrap_or(true),
    }
}

fn proxy(
    cfg: &EgressConfig,
    env: &dyn Fn(&str) -> Option<String>,
    digest: &mut Sha256,
    errs: &mut Vec<String>,
) -> Option<Arc<Proxy>> {
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| env(n))
            .filter(|v| !v.trim().is_empty())
    };
    let (builder, from_env) = match (&cfg.proxy, cfg.proxy_from_env) {
        (Some(url), _) => {
            match url.parse::<Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
                Ok(u) if u.scheme_str() == Some("https") => errs.push(
                    "egress.proxy: the proxy is reached over plain HTTP (the tunnel inside it is TLS); use an http:// URL".into(),
                ),
                _ => errs.push(
                    "egress.proxy: not an http:// URL like \"http://proxy.internal:3128\"".into(),
                ),
            }
            let b = Matcher::builder()
                .all(url.clone())
                .no(cfg.no_proxy.join(","));
            (b, false)
        }
        (None, true) => {
            let https = first(&["HTTPS_PROXY", "https_proxy"]);
            let http = first(&["HTTP_PROXY", "http_proxy"]);
            let all = first(&["ALL_PROXY", "all_proxy"]);
            if https.is_none() && http.is_none() && all.is_none() {
                return None;
            }
            let no = first(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
            digest.update(format!("{https:?}{http:?}{all:?}{no}").as_bytes());
            let mut b = Matcher::builder().no(no);
            if let Some(all) = all {
                b = b.all(all);
            }
            if let Some(h) = http {
                b = b.http(h);
            }
            if let Some(h) = https {
                b = b.https(h);
            }
            (b, true)
        }
        (None, false) => {
            if !cfg.no_proxy.is_empty() {
                errs.push("egress.no_proxy: only meaningful with egress.proxy".into());
            }
            return None;
        }
    };
    if from_env && !cfg.no_proxy.is_empty() {
        errs.push(
            "egress.no_proxy: only meaningful with egress.proxy (with a proxy from the environment, NO_PROXY applies)"
                .into(),
        );
    }
    let auth = cfg
        .proxy_auth_env
        .as_deref()
        .and_then(|name| match env(name) {
            Some(v) if v.contains(':') => {
                digest.update(v.as_bytes());
                let token = base64::engine::general_purpose::STANDARD.encode(v.trim());
                let mut h = HeaderValue::try_from(format!("Basic {token}")).ok()?;
                h.set_sensitive(true);
                Some(h)
            }
            Some(_) => {
                errs.push(format!(
                    "egress.proxy_auth_env: {name} must hold \"user:password\""
                ));
                None
            }
            None => {
                errs.push(format!("egress.proxy_auth_env: {name} is not set"));
                None
            }
        });
    Some(Arc::new(Proxy {
        matcher: builder.build(),
        auth,
        from_env,
    }))
}

#[derive(Debug, Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

fn read_certs(path: &str, at: &str, errs: &mut Vec<String>) -> Vec<CertificateDer<'static>> {
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) => {
            errs.push(format!("{at}: cannot read {path:?}: {e}"));
            return Vec::new();
        }
    };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            errs.push(format!("{at}: {path:?} holds no PEM certificate"));
            Vec::new()
        }
        Err(e) => {
            errs.push(format!("{at}: {path:?} is not valid PEM: {e}"));
            Vec::new()
        }
    }
}

fn identity(
    cert: Option<&str>,
    key: Option<&str>,
    at: &str,
    digest: &mut Sha256,
    errs: &mut Vec<String>,
) -> Option<Identity> {
    let (cert, key) = match (cert, key) {
        (None, None) => return None,
        (Some(c), Some(k)) => (c, k),
        _ => {
            errs.push(format!(
                "{at}: client_cert_file and client_key_file go together"
            ));
            return None;
        }
    };
    let chain = read_certs(cert, &format!("{at}.client_cert_file"), errs);
    let pem = match std::fs::read(key) {
        Ok(p) => p,
        Err(e) => {
            errs.push(format!("{at}.client_key_file: cannot read {key:?}: {e}"));
            return None;
        }
    };
    digest.update(&pem);
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => k,
        Err(_) => {
            // The error could quote the file; a key file's content is never echoed.
            errs.push(format!(
                "{at}.client_key_file: {key:?} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
            ));
            return None;
        }
    };
    for c in &chain {
        digest.update(c.as_ref());
    }
    (!chain.is_empty()).then(|| Identity {
        chain,
        key: Arc::new(key),
    })
}

// ring is the provider the design picked (pure Rust + asm, no cmake/C toolchain as aws-lc-rs
// needs); rustls deprecated its constructor only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn tls_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    roots: Arc<rustls::RootCertStore>,
    identity: Option<Identity>,
    at: &str,
    errs: &mut Vec<String>,
) -> Option<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| errs.push(format!("{at}: TLS setup: {e}")))
        .ok()?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key.clone_key())
            .map_err(|e| {
                errs.push(format!(
                    "{at}: the client certificate and key do not form an identity: {e}"
                ))
            })
            .ok()?,
    };
    Some(Arc::new(config))
}

/// The pooled clients: one shared, plus one per provider with its own `connection` table.
pub struct Clients {
    fingerprint: [u8; 32],
    default: HttpClient,
    providers: HashMap<String, HttpClient>,
}

impl Clients {
    pub fn new(s: &Settings) -> Self {
        let build = |p: &Profile| client(p, s.proxy.clone(), s.connect_timeout);
        Self {
            fingerprint: s.fingerprint,
            default: build(&s.default),
            providers: s
                .providers
                .iter()
                .map(|(name, p)| (name.clone(), build(p)))
                .collect(),
        }
    }

    /// Whether these clients were built from `s` (so a reload can keep them).
    pub fn built_from(&self, s: &Settings) -> bool {
        self.fingerprint == s.fingerprint
    }

    pub fn get(&self, provider: &str) -> &HttpClient {
        self.providers.get(provider).unwrap_or(&self.default)
    }
}

fn client(p: &Profile, proxy: Option<Arc<Proxy>>, connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = Connector {
        http,
        proxy: proxy.filter(|_| p.proxy),
    };
    // Without HTTP/2 no ALPN is offered, which means HTTP/1.1 to every server.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*p.tls).clone())
        .https_or_http()
        .enable_http1();
    let https = if p.http2 {
        builder.enable_http2().wrap_connector(connector)
    } else {
        builder.wrap_connector(connector)
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(p.pool_idle)
        .pool_max_idle_per_host(p.pool_max_idle)
        .build(https)
}

/// A TCP connector that goes through the egress proxy (HTTP CONNECT) for the destinations it
/// covers and directly to the others; TLS is layered on top by hyper-rustls either way, so
/// the proxy sees only the host and port.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    proxy: Option<Arc<Proxy>>,
}

impl Connector {
    /// A connector for `provider` (`gateway doctor` opens connections step by step with it).
    pub fn for_provider(s: &Settings, provider: &str) -> Self {
        let p = s.providers.get(provider).unwrap_or(&s.default);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(s.connect_timeout));
        Self {
            http,
            proxy: s.proxy.clone().filter(|_| p.proxy),
        }
    }
}

/// The TLS settings `provider` connects with, for `gateway doctor`.
pub fn tls_for(s: &Settings, provider: &str) -> Arc<rustls::ClientConfig> {
    s.providers.get(provider).unwrap_or(&s.default).tls.clone()
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The HTTP connector is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let mut http = self.http.clone();
        match self.proxy.as_ref().and_then(|p| p.route(&dst)) {
            None => Box::pin(async move { http.call(dst).await.map_err(BoxError::from) }),
            Some((proxy, auth)) => {
                let mut tunnel = Tunnel::new(proxy, http);
                if let Some(auth) = auth {
                    tunnel = tunnel.with_auth(auth);
                }
                let dst = with_default_port(dst);
                Box::pin(async move {
                    tunnel
                        .call(dst)
                        .await
                        .map_err(|e| BoxError::from(ProxyError::from_tunnel(e)))
                })
            }
        }
    }
}

/// The tunnel's CONNECT names a port; a URL without one means the scheme's default.
fn with_default_port(dst: Uri) -> Uri {
    if dst.port().is_some() || dst.scheme_str() != Some("http") {
        return dst;
    }
    let Some(host) = dst.host() else { return dst };
    format!("http://{host}:80").parse().unwrap_or(dst)
}

/// Why a tunnel through the egress proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The proxy asked for credentials (407).
    AuthRequired,
    /// The proxy answered the CONNECT with another non-200 status (a policy block).
    Refused,
    /// The proxy itself could not be reached.
    Unreachable,
    /// The proxy broke the exchange (closed, oversized headers, I/O error).
    Broken,
}

/// A failure to open a tunnel through the egress proxy, said plainly (never with the proxy's
/// credentials).
#[derive(Debug)]
pub struct ProxyError {
    pub kind: ProxyFailure,
    source: Option<BoxError>,
}

impl ProxyError {
    /// hyper-util does not export its tunnel error type; its messages are stable words.
    fn from_tunnel<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        let text = e.to_string();
        let kind = if text.contains("proxy authorization required") {
            ProxyFailure::AuthRequired
        } else if text.contains("unsuccessful") {
            ProxyFailure::Refused
        } else if text.contains("underlying connection") {
            ProxyFailure::Unreachable
        } else {
            ProxyFailure::Broken
        };
        Self {
            kind,
            source: Some(Box::new(e)),
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            ProxyFailure::AuthRequired => {
                "the egress proxy requires authentication (407); set egress.proxy_auth_env"
            }
            ProxyFailure::Refused => {
                "the egress proxy refused the tunnel (CONNECT was not answered with 200)"
            }
            ProxyFailure::Unreachable => "the egress proxy is unreachable",
            ProxyFailure::Broken => "the tunnel through the egress proxy failed",
        })
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(cfg: EgressConfig, env: &[(&str, &str)]) -> (Option<Settings>, Vec<String>) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut errs = Vec::new();
        let s = settings(&cfg, &[], &|n| env.get(n).cloned(), &mut errs);
        (s, errs)
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn a_configured_proxy_covers_every_host_but_no_proxy() {
        let cfg = EgressConfig {
            proxy: Some("http://proxy.internal:3128".into()),
            no_proxy: vec![".corp.example".into()],
            ..EgressConfig::default()
        };
        let (s, errs) = settings_of(cfg, &[("HTTPS_PROXY", "http://other:1")]);
        assert!(errs.is_empty(), "{errs:?}");
        let s = s.unwrap();
        assert_eq!(
            s.proxy_for("p", &uri("https://api.openai.com/v1")),
            Some(uri("http://proxy.internal:3128"))
        );
        assert_eq!(s.proxy_for("p", &uri("https://llm.corp.example/v1")), None);
        // A configured proxy is used for loopback too (that is how it is tested).
        assert!(s.proxy_for("p", &uri("http://127.0.0.1:8000")).is_some());
    }

    #[test]
    fn the_environment_proxy_is_honoured_unless_turned_off() {
        let env = [
            ("HTTPS_PROXY", "http://envproxy:3128"),
            ("NO_PROXY", "internal.example"),
        ];
        let s = settings_of(EgressConfig::default(), &env).0.unwrap();
        assert_eq!(
            s.proxy_for("p", &uri("https://api.anthropic.com")),
            Some(uri("http://envproxy:3128"))
        );
        assert_eq!(s.proxy_for("p", &uri("https://x.internal.example")), None);
        assert_eq!(s.proxy_for("p", &uri("http://127.0.0.1:9")), None);
        let off = EgressConfig {
            proxy_from_env: false,
            ..EgressConfig::default()
        };
        let s = settings_of(off, &env).0.unwrap();
        assert_eq!(s.proxy_for("p", &uri("https://api.anthropic.com")), None);
    }

    #[test]
    fn problems_are_reported_with_their_paths() {
        let cfg = EgressConfig {
            proxy: Some("https://proxy:3128".into()),
            proxy_auth_env: Some("PROXY_AUTH".into()),
            ca_file: Some(OneOrMany::One("/nonexistent/ca.pem".into())),
            public_roots: false,
            client_cert_file: Some("cert.pem".into()),
            min_tls_version: "1.1".into(),
            ..EgressConfig::default()
        };
        let (_, errs) = settings_of(cfg, &[("PROXY_AUTH", "no-colon")]);
        let all = errs.join("\n");
        for needle in [
            "egress.min_tls_version",
            "egress.ca_file",
            "no upstream certificate could be trusted",
            "client_cert_file and client_key_file go together",
            "egress.proxy:",
            "egress.proxy_auth_env",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        assert!(!all.contains("no-colon"), "{all}");
    }

    #[test]
    fn the_fingerprint_follows_the_settings() {
        let a = settings_of(EgressConfig::default(), &[]).0.unwrap();
        let b = settings_of(EgressConfig::default(), &[]).0.unwrap();
        let c = settings_of(
            EgressConfig {
                min_tls_version: "1.3".into(),
                ..EgressConfig::default()
            },
            &[],
        )
        .0
        .unwrap();
        let clients = Clients::new(&a);
        assert!(clients.built_from(&b));
        assert!(!clients.built_from(&c));
    }
}
