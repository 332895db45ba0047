//! `AppState`: what every request shares. The validated config sits behind an `ArcSwap` so a
//! request takes one snapshot and never sees a mix; the HTTP client, metrics and the task
//! tracker (for draining on shutdown) live beside it and survive config swaps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::task::TaskTracker;

use crate::cache::Cache;
use crate::config::Runtime;
use crate::health::Registry;
use crate::metrics::Metrics;
use crate::pipeline::retry::RetryBudget;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct AppState {
    runtime: ArcSwap<Runtime>,
    pub client: HttpClient,
    pub metrics: Metrics,
    pub health: Registry,
    pub retry_budget: RetryBudget,
    pub cache: Cache,
    /// Spend: outside the swapped `Runtime`, so a reload never resets it.
    pub ledger: Arc<crate::ledger::Ledger>,
    pub tasks: TaskTracker,
    /// The audit log's queue (`audit.rs`); its writer starts with `serve`.
    pub audit: crate::audit::Auditor,
    /// The file the config was loaded from, when reloads are possible (`reload.rs`).
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    ready: AtomicBool,
}

impl AppState {
    pub fn new(runtime: Runtime) -> Result<Arc<Self>, String> {
        let (cache_bytes, cache_ttl) = runtime.cache;
        let ledger = crate::pipeline::budget::open_ledger(&runtime)?;
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        metrics.ops.set_config(&runtime.ops.config_hash);
        let audit =
            crate::audit::Auditor::new(&runtime.ops.audit, metrics.ops.audit_records.clone());
        Ok(Arc::new(Self {
            ledger,
            audit,
            config_path: std::sync::OnceLock::new(),
            runtime: ArcSwap::from_pointee(runtime),
            client: http_client()?,
            metrics,
            health: Registry::default(),
            retry_budget: RetryBudget::default(),
            cache: Cache::new(cache_bytes, cache_ttl),
            tasks: TaskTracker::new(),
            ready: AtomicBool::new(false),
        }))
    }

    /// The current config snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Installs a new config snapshot; requests in flight keep theirs, spend is untouched.
    pub fn set_runtime(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// One pooled client for every provider: rustls with the ring provider and the webpki roots,
/// HTTP/1.1 and HTTP/2 by ALPN.
// ring is the provider the design picked (pure Rust + asm, no cmake/C toolchain as aws-lc-rs
// needs); rustls deprecated its constructor only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn http_client() -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(512)
        .build(https))
}
