//! `AppState`: what every request shares. The validated config sits behind an `ArcSwap` so a
//! request takes one snapshot and never sees a mix; the HTTP client, metrics and the task
//! tracker (for draining on shutdown) live beside it and survive config swaps; the upstream
//! clients are swapped only when the egress settings change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::cache::Cache;
use crate::config::Runtime;
use crate::egress::Clients;
use crate::health::Registry;
use crate::metrics::Metrics;
use crate::pipeline::retry::RetryBudget;

pub use crate::egress::HttpClient;

pub struct AppState {
    runtime: ArcSwap<Runtime>,
    /// Upstream clients, rebuilt only when the egress settings change.
    clients: ArcSwap<Clients>,
    pub metrics: Metrics,
    pub health: Registry,
    pub retry_budget: RetryBudget,
    pub cache: Cache,
    /// Spend: outside the swapped `Runtime`, so a reload never resets it.
    pub ledger: Arc<crate::ledger::Ledger>,
    /// Wallets, limits and cooldowns shared with other replicas (`[state] backend = "redis"`).
    pub shared: Option<Arc<crate::ledger::shared::Shared>>,
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
        metrics.ops.set_config(&runtime);
        let audit =
            crate::audit::Auditor::new(&runtime.ops.audit, metrics.ops.audit_records.clone());
        let tasks = TaskTracker::new();
        let shared =
            crate::pipeline::budget::open_shared(&runtime, &ledger, &tasks, &metrics.spend);
        Ok(Arc::new(Self {
            ledger,
            shared,
            clients: ArcSwap::from_pointee(Clients::new(&runtime.egress)),
            audit,
            config_path: std::sync::OnceLock::new(),
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            health: Registry::default(),
            retry_budget: RetryBudget::default(),
            cache: Cache::new(cache_bytes, cache_ttl),
            tasks,
            ready: AtomicBool::new(false),
        }))
    }

    /// The current config snapshot.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Installs a new config snapshot; requests in flight keep theirs, spend is untouched, and
    /// pooled connections survive unless the egress settings changed.
    pub fn set_runtime(&self, runtime: Runtime) {
        if !self.clients.load().built_from(&runtime.egress) {
            self.clients.store(Arc::new(Clients::new(&runtime.egress)));
        }
        self.runtime.store(Arc::new(runtime));
    }

    /// The pooled client for requests to `provider` (its own if it has connection settings).
    pub fn client_for(&self, provider: &str) -> HttpClient {
        self.clients.load().get(provider).clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
