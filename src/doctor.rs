//! `gateway doctor`: checks, for each configured provider, the way out as the gateway takes it
//! (the same proxy, CAs, client certificates and connection settings): the name resolves, a
//! connection opens (through the egress proxy if one applies), TLS verifies, and the key is
//! accepted by the cheapest authenticated call the provider has (listing models). Prints one
//! table row per provider with advice for each failure; never a key, never a response body.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use tower_service::Service;

use crate::config::{Provider, ProviderKind, Runtime};
use crate::egress::{self, Clients, Connector, ProxyError, ProxyFailure};
use crate::providers;

/// How long one provider's checks may take in all.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(20);

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Ok,
    Fail,
    /// Not applicable or not checkable (shown as `-`).
    Skip,
}

impl Step {
    fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "FAIL",
            Self::Skip => "-",
        }
    }
}

struct Row {
    provider: String,
    kind: &'static str,
    endpoint: String,
    route: String,
    reachable: Step,
    tls: Step,
    auth: Step,
    latency: Option<Duration>,
    advice: Vec<String>,
}

impl Row {
    fn failed(&self) -> bool {
        [&self.reachable, &self.tls, &self.auth].contains(&&Step::Fail)
    }
}

/// Checks every provider of `rt` and prints the table to `out`; false if any failed.
pub async fn run(rt: &Runtime, out: &mut impl Write) -> std::io::Result<bool> {
    let clients = Clients::new(&rt.egress);
    let mut rows = Vec::with_capacity(rt.providers.len());
    for p in &rt.providers {
        let row = match tokio::time::timeout(PROVIDER_TIMEOUT, check(rt, &clients, p)).await {
            Ok(row) => row,
            Err(_) => {
                let mut row = Row::new(p);
                row.reachable = Step::Fail;
                row.advice.push(format!(
                    "no answer within {}s: a firewall may be dropping the traffic",
                    PROVIDER_TIMEOUT.as_secs()
                ));
                row
            }
        };
        rows.push(row);
    }
    print(&rows, out)?;
    Ok(!rows.iter().any(Row::failed))
}

impl Row {
    fn new(p: &Provider) -> Self {
        Self {
            provider: p.name.clone(),
            kind: p.kind.as_str(),
            endpoint: String::new(),
            route: "direct".into(),
            reachable: Step::Skip,
            tls: Step::Skip,
            auth: Step::Skip,
            latency: None,
            advice: Vec::new(),
        }
    }
}

async fn check(rt: &Runtime, clients: &Clients, p: &Provider) -> Row {
    let mut row = Row::new(p);
    if p.kind == ProviderKind::Mock {
        row.endpoint = "in-process".into();
        row.route = "-".into();
        return row;
    }
    let Ok(uri) = p.base_url.parse::<Uri>() else {
        row.reachable = Step::Fail;
        row.advice.push("base_url is not a URL".into());
        return row;
    };
    let host = uri.host().unwrap_or("").to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    row.endpoint = format!("{host}:{port}");
    let proxy = rt.egress.proxy_for(&p.name, &uri);

    // Name resolution: the gateway's own for a direct connection, the proxy's address when
    // tunnelling (the proxy resolves the provider's name itself).
    let lookup = match &proxy {
        Some(pu) => {
            row.route = format!(
                "proxy {}:{}",
                pu.host().unwrap_or(""),
                pu.port_u16().unwrap_or(80)
            );
            format!(
                "{}:{}",
                pu.host().unwrap_or(""),
                pu.port_u16().unwrap_or(80)
            )
        }
        None => row.endpoint.clone(),
    };
    if let Err(e) = tokio::net::lookup_host(&lookup).await {
        row.reachable = Step::Fail;
        row.advice.push(match &proxy {
            Some(_) => format!("cannot resolve the egress proxy's name ({e}): check [egress] proxy"),
            None => format!(
                "cannot resolve {host} ({e}): check DNS, or set [egress] proxy if only the proxy can reach outside names"
            ),
        });
        return row;
    }

    // A connection (a tunnel, with a proxy), then TLS, each on its own so the advice can say
    // which one failed.
    let started = Instant::now();
    let mut connector = Connector::for_provider(&rt.egress, &p.name);
    if let Err(e) = connector.call(uri.clone()).await {
        row.reachable = Step::Fail;
        row.advice.push(connect_advice(e.as_ref(), &row.endpoint));
        return row;
    }
    row.reachable = Step::Ok;
    if https {
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*egress::tls_for(&rt.egress, &p.name)).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(Connector::for_provider(&rt.egress, &p.name));
        let mut tls = tls;
        match tls.call(uri.clone()).await {
            Ok(_) => row.tls = Step::Ok,
            Err(e) => {
                row.tls = Step::Fail;
                row.advice.push(tls_advice(e.as_ref()));
                return row;
            }
        }
    }
    row.latency = Some(started.elapsed());

    let Some(path) = models_path(p) else {
        row.advice.push(
            "key not checked: Bedrock has no unsigned listing call on the runtime endpoint".into(),
        );
        return row;
    };
    let req = match auth_request(p, &path) {
        Some(r) => r,
        None => {
            row.advice
                .push("key not checked: this provider has no key configured".into());
            return row;
        }
    };
    let started = Instant::now();
    match clients.get(&p.name).request(req).await {
        Ok(resp) => {
            row.latency = Some(started.elapsed());
            let status = resp.status();
            if status.is_success() {
                row.auth = Step::Ok;
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                row.auth = Step::Fail;
                row.advice.push(format!(
                    "key rejected (HTTP {}): check api_key_env / api_key_file of provider '{}' (and that the key belongs to this endpoint)",
                    status.as_u16(),
                    p.name
                ));
            } else if status == StatusCode::NOT_FOUND {
                row.advice.push(format!(
                    "key not verified: {path} answered 404 (this endpoint lists no models)"
                ));
            } else if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                row.auth = Step::Fail;
                row.advice.push(
                    "blocked by a proxy asking for credentials (407): set [egress] proxy_auth_env"
                        .into(),
                );
            } else {
                row.auth = Step::Fail;
                row.advice.push(format!(
                    "the provider answered HTTP {} to an authenticated listing call",
                    status.as_u16()
                ));
            }
        }
        Err(e) => {
            row.auth = Step::Fail;
            row.advice
                .push(format!("the authenticated call failed: {}", chain(&e)));
        }
    }
    row
}

/// The cheapest authenticated call: listing models.
fn models_path(p: &Provider) -> Option<String> {
    match p.kind {
        ProviderKind::Openai | ProviderKind::Gemini | ProviderKind::Mock => Some("/models".into()),
        ProviderKind::Azure => Some(format!("/models?api-version={}", p.api_version)),
        ProviderKind::Anthropic | ProviderKind::Cohere => Some("/v1/models".into()),
        ProviderKind::Bedrock => None,
    }
}

fn auth_request(p: &Provider, path: &str) -> Option<Request<Full<Bytes>>> {
    let (_, key) = p.pick_key(|_| true)?;
    let adapter = providers::adapter(p.kind);
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(format!("{}{path}", p.base_url))
        .header(header::ACCEPT, HeaderValue::from_static("application/json"))
        .header(adapter.auth_header(), key.clone());
    for (k, v) in adapter.required_headers() {
        b = b.header(*k, *v);
    }
    for (k, v) in &p.headers {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::new())).ok()
}

fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        // An I/O error's `source` skips the error it wraps, and rustls' errors arrive wrapped
        // (twice), so the wrapped one is followed instead.
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn connect_advice(e: &(dyn std::error::Error + Send + Sync + 'static), endpoint: &str) -> String {
    if let Some(p) = find::<ProxyError>(e) {
        return match p.kind {
            ProxyFailure::AuthRequired => {
                "blocked by the egress proxy: it wants credentials (407); set [egress] proxy_auth_env to a variable holding user:password".into()
            }
            ProxyFailure::Refused => format!(
                "blocked by the egress proxy: it refused the tunnel to {endpoint}; ask for the host to be allowed"
            ),
            ProxyFailure::Unreachable => {
                "cannot connect to the egress proxy: check [egress] proxy (host and port)".into()
            }
            ProxyFailure::Broken => format!("the egress proxy broke the tunnel: {}", chain(e)),
        };
    }
    format!(
        "cannot connect to {endpoint} ({}): check base_url, firewalls, or whether a proxy is required",
        chain(e)
    )
}

fn tls_advice(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    use rustls::{AlertDescription, CertificateError, Error as TlsError};
    match find::<TlsError>(e) {
        Some(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "unknown CA: the certificate is not signed by a trusted CA; if a proxy or firewall re-signs TLS, add its CA with [egress] ca_file".into()
        }
        Some(TlsError::InvalidCertificate(CertificateError::NotValidForName))
        | Some(TlsError::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
            "the certificate is not valid for this host name: check base_url".into()
        }
        Some(TlsError::InvalidCertificate(CertificateError::Expired))
        | Some(TlsError::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
            "the server's certificate has expired".into()
        }
        Some(TlsError::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        )) => {
            "the server refused the handshake: it may require a client certificate (client_cert_file / client_key_file) or a newer TLS version".into()
        }
        Some(TlsError::PeerIncompatible(_)) => {
            "no TLS version or cipher in common: check [egress] min_tls_version".into()
        }
        Some(other) => format!("TLS failed: {other}"),
        None => format!("TLS failed: {}", chain(e)),
    }
}

fn print(rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    let header = [
        "PROVIDER",
        "KIND",
        "ENDPOINT",
        "ROUTE",
        "REACHABLE",
        "TLS",
        "AUTH",
        "LATENCY",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.provider.clone(),
                r.kind.to_string(),
                r.endpoint.clone(),
                r.route.clone(),
                r.reachable.label().to_string(),
                r.tls.label().to_string(),
                r.auth.label().to_string(),
                r.latency
                    .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let line = |vals: &[&str]| {
        vals.iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for (row, c) in rows.iter().zip(&cells) {
        let vals: Vec<&str> = c.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&vals))?;
        for a in &row.advice {
            writeln!(out, "  {}: {a}", row.provider)?;
        }
    }
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed == 0 {
        writeln!(out, "\nall {} provider(s) OK", rows.len())
    } else {
        writeln!(out, "\n{failed} of {} provider(s) failing", rows.len())
    }
}
