//! The `[egress]` section and the per-provider `[providers.connection]` table: how the gateway
//! reaches providers (HTTP proxy, CA bundles, client certificate, TLS version, connection
//! pool). Plain serde structs with defaults; `crate::egress` validates them and builds the
//! clients.

use serde::Deserialize;

use super::OneOrMany;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// HTTP(S) proxy every upstream connection goes through (HTTP CONNECT), like
    /// `http://proxy.internal:3128`. Absent: the `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and
    /// `NO_PROXY` environment variables, unless `proxy_from_env = false`.
    pub proxy: Option<String>,
    /// Hosts that bypass `proxy` (NO_PROXY syntax: `example.com` also covers subdomains,
    /// `10.0.0.0/8`, `*`). Only with `proxy`; the environment's NO_PROXY goes with its proxy.
    pub no_proxy: Vec<String>,
    /// Honour the proxy environment variables when `proxy` is not set.
    pub proxy_from_env: bool,
    /// Environment variable holding `user:password` for the proxy (sent as Basic auth).
    pub proxy_auth_env: Option<String>,
    /// PEM file(s) of CA certificates trusted for upstream TLS (a corporate CA that
    /// re-signs traffic, a private endpoint's CA), in addition to the public roots.
    pub ca_file: Option<OneOrMany>,
    /// Trust the built-in public (Mozilla) roots; false: only `ca_file`.
    pub public_roots: bool,
    /// PEM client certificate (chain) and private key for mTLS to every provider; a provider's
    /// own `connection` pair overrides it.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// Lowest TLS version accepted upstream: "1.2" or "1.3".
    pub min_tls_version: String,
    /// Time to establish a TCP connection (to the proxy, when there is one).
    pub connect_timeout_secs: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            proxy: None,
            no_proxy: Vec::new(),
            proxy_from_env: true,
            proxy_auth_env: None,
            ca_file: None,
            public_roots: true,
            client_cert_file: None,
            client_key_file: None,
            min_tls_version: "1.2".into(),
            connect_timeout_secs: 10,
        }
    }
}

/// One provider's connection settings; absent fields take the shared client's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Idle connections kept per host (default 512).
    pub pool_max_idle: Option<usize>,
    /// How long an idle connection is kept (default 90 s).
    pub pool_idle_timeout_secs: Option<u64>,
    /// Offer HTTP/2 by ALPN (default true); false: HTTP/1.1 only.
    pub http2: Option<bool>,
    /// Go through the egress proxy (default true); false: connect directly.
    pub proxy: Option<bool>,
    /// mTLS to this provider: PEM client certificate (chain) and private key.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}
