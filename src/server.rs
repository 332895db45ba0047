//! The listeners: `serve` takes already-bound listeners (so tests bind `127.0.0.1:0`) and runs
//! the client API and the admin endpoints until `shutdown` resolves, then stops accepting and
//! lets in-flight requests finish for up to the grace period. HTTP/1.1 and h2c on both, or
//! HTTP/1.1 and HTTP/2 over TLS (rustls) on the API listener when `[server.tls]` is set.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::body::{full, Body};
use crate::error::Error;
use crate::pipeline;
use crate::state::AppState;

/// Runs until `shutdown` resolves, then drains. Returns once every connection has closed or
/// the grace period has passed.
pub async fn serve(
    api: TcpListener,
    admin: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_api, api_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    watch_key_files(&state, api_stopped.clone());
    let api_loop = accept_loop(api, state.clone(), api_stopped, Role::Api);
    let admin_loop = accept_loop(admin, state.clone(), admin_stopped, Role::Admin);
    let spend_background = crate::pipeline::budget::start_background(&state);
    state.audit.start(&state.tasks);
    let reloader = crate::reload::start(&state);
    state.set_ready(true);
    tracing::info!("gateway ready");
    // The admin listener outlives the API drain, so `/readyz` can say "not ready" meanwhile.
    let api_then_admin = async {
        let res = api_loop.await;
        let _ = stop_admin.send(true);
        res
    };
    let stopper = async {
        shutdown.await;
        state.set_ready(false);
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        let _ = stop_api.send(true);
    };
    let (api_res, admin_res, ()) = tokio::join!(api_then_admin, admin_loop, stopper);
    spend_background.stop();
    reloader.stop();
    // Every request has finished (or was cut off): what the audit queue holds is complete.
    state.audit.close();
    api_res.and(admin_res)
}

/// Reads provider key files again every `server.key_file_check_secs`, so a rotated key (or a
/// refreshed Entra ID token) is used without a restart; until `stop` says the server is
/// stopping. Logs which provider changed, never a key.
fn watch_key_files(state: &Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        loop {
            let every = state.runtime().server.key_file_check;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
            for p in state.runtime().providers.iter().filter(|p| p.keys.has_files()) {
                match p.keys.refresh() {
                    Ok(true) => tracing::info!(provider = %p.name, pool = %p.pool, keys = p.keys.len(), "key file changed: new key in use"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(provider = %p.name, error = %e, "key file unreadable: the previous key stays in use"),
                }
            }
        }
    });
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum Role {
    Api,
    Admin,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    role: Role,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    // Fired when the grace period is over: whatever is still open is closed then.
    let cut_off = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let svc_state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = svc_state.clone();
            async move {
                Ok::<_, Infallible>(match role {
                    Role::Api => pipeline::handle(state, req, Some(peer)).await,
                    Role::Admin if crate::admin::handles(req.uri().path()) => {
                        crate::admin::handle(state, req).await
                    }
                    Role::Admin => admin(&state, &req).await,
                })
            }
        });
        // The TLS setup comes from the current snapshot, so a reload renews the certificate.
        let tls = match role {
            Role::Api => state.runtime().ops.tls.clone(),
            Role::Admin => None,
        };
        if let Some(tls) = tls {
            // The handshake runs on the connection's task: a slow client never holds up
            // the accept loop.
            let (builder, watcher, cut) = (builder.clone(), graceful.watcher(), cut_off.clone());
            state.tasks.spawn(async move {
                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                let stream = tokio::select! {
                    r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept) => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    },
                    () = cut.cancelled() => return,
                };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = watcher.watch(conn.into_owned());
                tokio::select! {
                    _ = conn => {}
                    () = cut.cancelled() => {}
                }
            });
            continue;
        }
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        let cut = cut_off.clone();
        state.tasks.spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = cut.cancelled() => {}
            }
        });
    }
    drop(listener);
    let grace = state.runtime().server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing remaining connections"
        );
        cut_off.cancel();
    }
    Ok(())
}

/// Cooldowns end by the clock, not by an event: the gauge is read off the health registry at
/// scrape time so an idle deployment does not show as cooling forever.
fn refresh_cooldown_gauges(state: &AppState) {
    let rt = state.runtime();
    for d in rt.models.iter().flat_map(|m| m.deployments.iter()) {
        let cooling = state.health.get(&d.id).cooling_for().is_some();
        state
            .metrics
            .cooldown
            .with_label_values(&[&d.id])
            .set(i64::from(cooling));
    }
}

/// The admin listener: metrics and health. No client data is reachable here.
async fn admin(state: &AppState, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = Error::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.uri().path().into(),
        }
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let (status, content_type, body): (StatusCode, &'static str, Bytes) = match req.uri().path() {
        "/metrics" => {
            refresh_cooldown_gauges(state);
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(state.metrics.render()),
            )
        }
        "/admin/usage" => return crate::pipeline::budget::admin_usage(state, req.headers()).await,
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if state.is_ready() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready\n"),
        ),
        path => return Error::NotFound { path: path.into() }.into_response(),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
