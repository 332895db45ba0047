//! Hot reload: the config file is watched (notify), and reloaded on change, on SIGHUP and on
//! `POST /admin/reload`. A new config is validated completely before it is installed; an
//! invalid one leaves the old one serving, is logged and counted, and readiness is unaffected.
//!
//! A request holds the snapshot it started with until it ends; new requests get the new one.
//! Spend (the ledger), cooldowns (the health registry, keyed by deployment id) and the response
//! cache live in `AppState`, outside the snapshot, so unchanged entities keep theirs.
//! Listeners, the state directory, the cache size and the audit sinks are set up once, at
//! start: a change to them is reported as needing a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Runtime};
use crate::state::AppState;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub hash: String,
    /// False when the new config equals the one served (nothing was swapped).
    pub changed: bool,
    pub changes: Vec<String>,
    /// Settings that changed but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

/// Loads, validates and installs the config file; on any problem keeps the old config.
pub fn reload(state: &AppState, trigger: &'static str) -> Result<Reloaded, Vec<String>> {
    let Some(path) = state.config_path.get() else {
        return Err(vec!["the gateway was not started from a config file".into()]);
    };
    let counter = &state.metrics.ops.config_reloads;
    let result = crate::cli::load_runtime(path);
    let new = match result {
        Ok(rt) => rt,
        Err(problems) => {
            counter.with_label_values(&["failed"]).inc();
            tracing::error!(
                trigger,
                config = %path.display(),
                problems = problems.len(),
                "config reload rejected; the previous config stays in use"
            );
            for p in &problems {
                tracing::error!(trigger, "config problem: {p}");
            }
            return Err(problems);
        }
    };
    let old = state.runtime();
    counter.with_label_values(&["ok"]).inc();
    let hash = new.ops.config_hash.to_string();
    // Certificate files can change under an unchanged config: with TLS on, always swap.
    let redis = new.spend.shared.clone();
    let redis_tls = redis.as_ref().is_some_and(|s| s.tls.is_some());
    if *old.ops.config_hash == *hash && new.ops.tls.is_none() && !redis_tls {
        tracing::debug!(trigger, hash, "config unchanged");
        return Ok(Reloaded {
            hash,
            changed: false,
            changes: Vec::new(),
            needs_restart: Vec::new(),
        });
    }
    let changes = match (&old.ops.tree, &new.ops.tree) {
        (Some(before), Some(after)) => config::diff::diff(before, after),
        _ => Vec::new(),
    };
    let needs_restart = needs_restart(&old, &new);
    for w in &new.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    state.metrics.ops.set_config(&new);
    state.set_runtime(new);
    // Other files for the same store are taken over; another store waits for a restart.
    if let (Some(shared), Some(redis)) = (&state.shared, redis) {
        let store = shared.store();
        if store.settings().same_but_tls(&redis) && store.use_tls(redis.tls) {
            tracing::info!(
                trigger,
                "state.redis TLS files changed: new connections use them"
            );
        }
    }
    tracing::info!(trigger, hash, changes = changes.len(), "config reloaded");
    for c in &changes {
        tracing::info!(trigger, "config change: {c}");
    }
    for r in &needs_restart {
        tracing::warn!(trigger, "{r} changed: takes effect after a restart");
    }
    Ok(Reloaded {
        hash,
        changed: true,
        changes,
        needs_restart,
    })
}

fn needs_restart(old: &Runtime, new: &Runtime) -> Vec<String> {
    let mut out = Vec::new();
    if old.server.listen != new.server.listen {
        out.push("server.listen".to_string());
    }
    if old.server.admin_listen != new.server.admin_listen {
        out.push("server.admin_listen".to_string());
    }
    if old.cache != new.cache {
        out.push("cache".to_string());
    }
    let dir = |rt: &Runtime| rt.spend.state.as_ref().map(|s| s.dir.clone());
    if dir(old) != dir(new) {
        out.push("state.dir".to_string());
    }
    match (&old.spend.shared, &new.spend.shared) {
        (None, None) => {}
        (Some(a), Some(b)) if a.same_but_tls(b) => {}
        _ => out.push("state.backend or state.redis".to_string()),
    }
    if old.ops.audit.sink_differs(&new.ops.audit) {
        out.push("audit (sinks, queue, key)".to_string());
    }
    out
}

/// Stops the watcher task.
pub struct Background {
    stop: CancellationToken,
}

impl Background {
    pub fn stop(self) {
        self.stop.cancel();
    }
}

/// Starts watching the config file (when the gateway has one and `watch_config` is on) and
/// listening for SIGHUP, on a tracked task.
pub fn start(state: &Arc<AppState>) -> Background {
    let stop = CancellationToken::new();
    let Some(path) = state.config_path.get().cloned() else {
        return Background { stop };
    };
    let (tx, rx) = mpsc::channel::<()>(1);
    let watcher = if state.runtime().ops.watch_config {
        watch(&path, tx)
    } else {
        None
    };
    // Registered before `serve` reports ready, so a SIGHUP from then on never meets the
    // default action (which ends the process).
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hup = None;
    let st = state.clone();
    let token = stop.clone();
    state.tasks.spawn(async move {
        // Held by the task: dropping it stops the watching.
        let _watcher = watcher;
        run(st, rx, hup, token).await;
    });
    Background { stop }
}

fn watch(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    // Editors and config managers replace the file (write a temp, rename): watch the
    // directory and pick out events naming the file.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path.file_name().map(ToOwned::to_owned);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event
            .paths
            .iter()
            .any(|p| p.file_name().map(ToOwned::to_owned) == name)
        {
            // A full channel already has a reload pending.
            let _ = tx.try_send(());
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "config file not watched; reload with SIGHUP or POST /admin/reload");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "config file not watched; reload with SIGHUP or POST /admin/reload");
            None
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

async fn run(
    state: Arc<AppState>,
    mut changed: mpsc::Receiver<()>,
    mut hup: Hangup,
    stop: CancellationToken,
) {
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = {
            let _ = &mut hup;
            std::future::pending::<()>()
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = sighup => {
                let _ = reload(&state, "sighup");
            }
            Some(()) = changed.recv() => {
                // One save is often several events (truncate, write, rename): let them
                // settle, then reload once.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while changed.try_recv().is_ok() {}
                let _ = reload(&state, "file");
            }
        }
    }
}
