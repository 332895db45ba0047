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
    matches!(path, "/admin/reload")
}

pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Err(denied) = authorize(&state, req.headers()) {
        return denied;
    }
    match (path.as_str(), method) {
        ("/admin/reload", Method::POST) => reload(&state),
        (_, m) => {
            let allow = "POST";
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
