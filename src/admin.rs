//! Admin endpoints beyond metrics and health, all behind the admin token
//! (`server.admin_token_env`): `POST /admin/reload`, `GET /admin/report` (the audit report)
//! and the read-only dashboard page at `GET /admin/`. They live on the admin listener only.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::body::{full, Body};
use crate::state::AppState;

/// Whether `path` is served here rather than by the basic admin handler.
pub fn handles(path: &str) -> bool {
    matches!(
        path,
        "/admin/reload" | "/admin/report" | "/admin/" | "/admin"
    )
}

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // The page holds no data (its requests carry the token), so it is served to anyone who
    // reaches the admin listener.
    if matches!(path.as_str(), "/admin/" | "/admin") && matches!(method, Method::GET | Method::HEAD)
    {
        return dashboard();
    }
    if let Err(denied) = authorize(&state, req.headers()) {
        return denied;
    }
    match (path.as_str(), method) {
        ("/admin/reload", Method::POST) => reload(&state),
        ("/admin/report", Method::GET) => report(&state, req.uri().query()).await,
        (p, m) => {
            let allow = if p == "/admin/reload" { "POST" } else { "GET" };
            let mut resp = crate::error::Error::MethodNotAllowed {
                method: m.to_string(),
                path,
            }
            .into_response();
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response<Body>> {
    let rt = state.runtime();
    let Some(token) = &rt.spend.admin_token else {
        return Err(json_response(
            StatusCode::FORBIDDEN,
            &error_body(
                "set server.admin_token_env to enable the admin endpoints",
                "admin_token_not_configured",
            ),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(json_response(
            StatusCode::UNAUTHORIZED,
            &error_body(
                "missing or wrong admin token (Authorization: Bearer <token>)",
                "invalid_admin_token",
            ),
        ))
    }
}

/// `GET /admin/report?since=&until=&by=&project=`: the `gateway report` data as JSON, plus the
/// deployments' health now (for the dashboard).
async fn report(state: &Arc<AppState>, query: Option<&str>) -> Response<Body> {
    let q = match crate::report::Query::from_params(query) {
        Ok(q) => q,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &error_body(&e, "invalid_query")),
    };
    let rt = state.runtime();
    let Some(dir) = rt.ops.audit.dir.clone() else {
        return json_response(
            StatusCode::NOT_FOUND,
            &error_body(
                "reports read the audit files: set audit.dir",
                "audit_not_configured",
            ),
        );
    };
    // Reading the files is blocking work: off the async workers, on a tracked thread.
    let built = state
        .tasks
        .spawn_blocking(move || crate::report::build(&dir, &q))
        .await;
    let report = match built {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => crate::report::build_empty(),
        Ok(Err(e)) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_body(&format!("reading the audit files: {e}"), "audit_unreadable"),
            )
        }
        Err(_) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_body("the report task failed", "internal_error"),
            )
        }
    };
    let deployments: Vec<Value> = rt
        .models
        .iter()
        .flat_map(|m| m.deployments.iter().map(move |d| (m, d)))
        .map(|(m, d)| {
            let h = state.health.get(&d.id);
            json!({
                "model": m.name,
                "deployment": d.id,
                "cooling": h.is_cooling(),
                "inflight": h.inflight(),
            })
        })
        .collect();
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    body["deployments"] = json!(deployments);
    body["config_hash"] = json!(rt.ops.config_hash.as_ref());
    json_response(StatusCode::OK, &body)
}

fn reload(state: &AppState) -> Response<Body> {
    match crate::reload::reload(state, "endpoint") {
        Ok(r) => json_response(
            StatusCode::OK,
            &json!({
                "result": if r.changed { "reloaded" } else { "unchanged" },
                "hash": r.hash,
                "changes": r.changes,
                "needs_restart": r.needs_restart,
            }),
        ),
        Err(problems) => {
            let mut body = error_body(
                "the new config is invalid; the previous config stays in use",
                "config_invalid",
            );
            body["error"]["problems"] = json!(problems);
            json_response(StatusCode::UNPROCESSABLE_ENTITY, &body)
        }
    }
}

const DASHBOARD: &str = include_str!("dashboard.html");

/// The Content-Security-Policy of the page: its own inline script and style (by hash), fetches
/// to this origin, nothing else.
static DASHBOARD_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let hash = |open: &str, close: &str| {
        use base64::Engine;
        use sha2::Digest;
        let body = DASHBOARD
            .split_once(open)
            .and_then(|(_, rest)| rest.split_once(close))
            .map_or("", |(b, _)| b);
        let digest = sha2::Sha256::digest(body.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("<script>", "</script>"),
        hash("<style>", "</style>")
    )
});

fn dashboard() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(DASHBOARD.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::try_from(DASHBOARD_CSP.as_str()) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

pub fn error_body(message: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
