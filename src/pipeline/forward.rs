//! Stage 5, forward: all upstream I/O lives here. Builds the HTTP request for a provider (its
//! base URL, a key from its pool, its extra headers, the client's end-to-end headers minus
//! credentials and hop-by-hop ones), sends it on the shared pooled client under a deadline,
//! and turns failures into typed errors. An error status is read here (bounded) so the client
//! gets the provider's 4xx body, with any echo of the provider key scrubbed out.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::{read_limited, Body, BoxError};
use crate::config::{Provider, ProviderKind};
use crate::error::{Error, UpstreamFailure};
use crate::providers::{self, mock, UpstreamRequest};
use crate::state::AppState;

/// The most of an upstream error body the gateway reads.
const MAX_ERROR_BODY: usize = 256 * 1024;

/// Client headers that never go upstream: credentials (the client's key stays here), hop-by-hop
/// headers, framing the client negotiated with us, and headers that bind to an OpenAI account.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "accept-encoding",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "openai-organization",
    "openai-project",
    "x-request-id",
    "origin",
    "referer",
];

/// A provider's answer, headers received, body not yet read.
pub struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
    pub sent_at: Instant,
}

/// Sends `req` to `provider` with a key from its pool that is not cooling down; returns the
/// key's index (to charge a rate limit to it) with the future. The HTTP request is built
/// before the future starts, so the future borrows nothing (it is `'static` and `Send`).
pub fn send(
    state: &AppState,
    provider: &Arc<Provider>,
    req: UpstreamRequest,
    client_headers: &HeaderMap,
    request_id: &HeaderValue,
    timeout: Duration,
) -> (
    Option<usize>,
    impl Future<Output = Result<Upstream, Error>> + Send + 'static,
) {
    let key = provider.pick_key(|i| state.health.key(&provider.pool, i).cooling_for().is_none());
    let prepared = (provider.kind != ProviderKind::Mock).then(|| {
        build(
            provider,
            &req,
            client_headers,
            request_id,
            key.as_ref().map(|k| &k.1),
        )
    });
    let client = state.client_for(&provider.name);
    let provider = provider.clone();
    let fut = async move {
        let sent_at = Instant::now();
        let timed_out = || Error::UpstreamTimeout {
            provider: provider.name.clone(),
            secs: timeout.as_secs_f64().ceil() as u64,
        };
        let (status, headers, body) = match prepared {
            None => {
                let r = tokio::time::timeout(timeout, mock::respond(&provider.mock, &req))
                    .await
                    .map_err(|_| timed_out())?;
                (r.status, r.headers, r.body)
            }
            Some(http_req) => {
                let resp = tokio::time::timeout(timeout, client.request(http_req?))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| Error::UpstreamUnreachable {
                        provider: provider.name.clone(),
                        reason: describe(&e),
                    })?;
                let (parts, body) = resp.into_parts();
                let body = body
                    .map_err(|e: hyper::Error| -> BoxError { Box::new(e) })
                    .boxed_unsync();
                (parts.status, parts.headers, body)
            }
        };
        if status.is_success() {
            return Ok(Upstream {
                status,
                headers,
                body,
                sent_at,
            });
        }
        let remaining = timeout.saturating_sub(sent_at.elapsed());
        let body = tokio::time::timeout(remaining, read_limited(body, None, MAX_ERROR_BODY))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        // In the provider's own format until translated: the client gets the OpenAI shape.
        let (status, body) = providers::adapter(provider.kind).decode_error_response(
            status,
            &headers,
            scrub(&body, &provider),
        );
        Err(Error::UpstreamStatus(Box::new(UpstreamFailure {
            provider: provider.name.clone(),
            status,
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            retry_after: headers.get(header::RETRY_AFTER).cloned(),
            retry_after_ms: headers.get("retry-after-ms").cloned(),
            body,
        })))
    };
    (key.map(|k| k.0), fut)
}

fn build(
    provider: &Provider,
    req: &UpstreamRequest,
    client_headers: &HeaderMap,
    request_id: &HeaderValue,
    auth: Option<&HeaderValue>,
) -> Result<Request<Full<Bytes>>, Error> {
    let uri = format!("{}{}", provider.base_url, req.path);
    let mut builder = Request::builder().method(Method::POST).uri(uri);
    let headers = builder.headers_mut().ok_or_else(|| {
        Error::Internal(format!("bad upstream URL for provider '{}'", provider.name))
    })?;
    let connection_listed: Vec<String> = client_headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in client_headers {
        let n = name.as_str();
        if NOT_FORWARDED.contains(&n)
            || n.starts_with("x-gateway-")
            || n.starts_with("proxy-")
            || connection_listed.iter().any(|c| c == n)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let adapter = providers::adapter(provider.kind);
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(if req.stream {
            adapter.stream_framing().content_type()
        } else {
            "application/json"
        }),
    );
    headers.insert(HeaderName::from_static("x-request-id"), request_id.clone());
    if let Some(auth) = auth {
        headers.insert(provider.auth_header.clone(), auth.clone());
    }
    for (k, v) in adapter.required_headers() {
        headers.insert(*k, HeaderValue::from_static(v));
    }
    for (k, v) in &provider.headers {
        headers.insert(k.clone(), v.clone());
    }
    let (mut parts, body) = builder
        .body(Full::new(req.body.clone()))
        .map_err(|_| Error::Internal(format!("bad upstream URL for provider '{}'", provider.name)))?
        .into_parts();
    // Last, so that what is signed is what is sent.
    if auth.is_none() {
        adapter.sign(provider, &mut parts, &req.body)?;
    }
    Ok(Request::from_parts(parts, body))
}

/// The error chain of a client failure, without URLs or keys (hyper's messages carry neither).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Removes the provider's keys from an upstream error body, and the partial echoes some
/// providers make of them (`Incorrect API key provided: sk-abc*****xyz`).
fn scrub(body: &[u8], provider: &Provider) -> Bytes {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let mut changed = false;
    let pool = provider.keys.pool();
    let aws = provider.aws.iter().flat_map(|a| a.secrets());
    for key in pool.keys.iter().chain(aws) {
        if !key.expose().is_empty() && text.contains(key.expose()) {
            text = text.replace(key.expose(), "[redacted]");
            changed = true;
        }
    }
    if let Some(i) = text.find("API key provided: ") {
        let start = i + "API key provided: ".len();
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .map_or(text.len(), |e| start + e);
        let end = if text[..end].ends_with('.') {
            end - 1
        } else {
            end
        };
        text.replace_range(start..end, "[redacted]");
        changed = true;
    }
    if changed {
        Bytes::from(text)
    } else {
        Bytes::copy_from_slice(body)
    }
}
