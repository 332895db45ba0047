//! Spend shared by replicas through Redis (`[state] backend = "redis"`): reservations and
//! settlements made atomically in the store, the holds that settle them, and what happens when
//! the store cannot be reached: refuse (`fail_closed`) or serve on this replica's own ledger
//! (`fail_open_local`) and write that spend back once the store answers again. Also the
//! background work: probing an unreachable store, writing back, and receiving the cooldowns
//! other replicas publish.
//!
//! The store's keys and scripts are in `redis.rs`; the request path only sees [`SpendHold`].

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::allowance::{Allowance, Miss, PotHold};
use super::redis::{parse_cooldown, Charge, Store, StoreError};
use super::{Alert, Denial, Hold, Ledger, Settled, Standing, WalletSpec};
use crate::config::shared::{OnFailure, SharedSettings};

/// Most wallets written back in one script call.
const BATCH_WALLETS: usize = 64;

/// Counters and gauges of the shared store (registered with the spend metrics).
#[derive(Clone)]
pub struct SharedMetrics {
    pub up: IntGauge,
    pub errors: IntCounter,
    pub fallback: IntCounter,
    pub unavailable: IntCounter,
    pub pending: IntGauge,
    pub written_back: IntCounter,
    pub allowance_admitted: IntCounter,
    pub allowance_top_ups: IntCounter,
}

impl SharedMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            up: IntGauge::with_opts(Opts::new(
                "gateway_shared_state_up",
                "1 while the shared spend store (Redis) answers, 0 while it does not (only with state.backend = \"redis\").",
            ))?,
            errors: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_errors_total",
                "Commands to the shared spend store that failed or timed out.",
            ))?,
            fallback: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_fallback_requests_total",
                "Requests admitted on this replica's own limits because the shared store was unreachable (fail_open_local).",
            ))?,
            unavailable: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_unavailable_total",
                "Requests refused with 503 because the shared store was unreachable (fail_closed).",
            ))?,
            pending: IntGauge::with_opts(Opts::new(
                "gateway_shared_state_pending_batches",
                "Settlements waiting to be written back to the shared store.",
            ))?,
            written_back: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_written_back_total",
                "Batches of spend written back to the shared store after an outage.",
            ))?,
            allowance_admitted: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_allowance_admitted_total",
                "Requests admitted from this replica's local allowances, without a round trip to the shared store.",
            ))?,
            allowance_top_ups: IntCounter::with_opts(Opts::new(
                "gateway_shared_state_allowance_top_ups_total",
                "Allowances topped up on the request path because they could not cover a request.",
            ))?,
        };
        // Nothing is down until a shared store fails (the local backend never does).
        m.up.set(1);
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.fallback.clone()))?;
        registry.register(Box::new(m.unavailable.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.written_back.clone()))?;
        registry.register(Box::new(m.allowance_admitted.clone()))?;
        registry.register(Box::new(m.allowance_top_ups.clone()))?;
        Ok(m)
    }
}

/// Why a shared reservation was not made.
#[derive(Debug)]
pub enum Refused {
    Denied(Denial),
    /// The store is unreachable and the operator chose `fail_closed`.
    Unavailable,
}

/// Spend to write back: whole settlements that failed (with their reservation id, so the
/// reservation is released too), and charges made on local limits, summed per wallet and
/// period until the store answers (bounded by the number of wallets, not of requests).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Pending {
    batches: VecDeque<Batch>,
    #[serde(with = "open_entries")]
    open: BTreeMap<(String, i64), (Option<i64>, u64)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.open.is_empty()
    }
}

/// The per-wallet sums as a list (JSON maps need string keys).
mod open_entries {
    use std::collections::BTreeMap;

    /// (wallet, period start) -> (expire at, cost).
    type Entry = ((String, i64), (Option<i64>, u64));
    type Open = BTreeMap<(String, i64), (Option<i64>, u64)>;

    pub fn serialize<S: serde::Serializer>(open: &Open, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(open.iter())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Open, D::Error> {
        let entries: Vec<Entry> = serde::Deserialize::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Batch {
    id: String,
    charges: Vec<Charge>,
    used_tokens: u64,
    /// A batch of local spend (at most once by marker), not a reservation's settlement.
    local: bool,
}

/// The shared store, the local ledger it falls back to, and what waits to be written back.
pub struct Shared {
    store: Arc<Store>,
    local: Arc<Ledger>,
    mode: OnFailure,
    probe_interval: Duration,
    up: AtomicBool,
    pending: Mutex<Pending>,
    /// With `[state] dir`: where the pending spend is kept, so a replica killed while the
    /// store is unreachable writes it back after its restart.
    spool: Option<PathBuf>,
    /// The pending spend changed since it was last written to `spool`.
    dirty: AtomicBool,
    /// With `local_allowance`: what this replica admits from without a round trip.
    allowance: Option<Allowance>,
    tasks: TaskTracker,
    metrics: SharedMetrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        settings: SharedSettings,
        local: Arc<Ledger>,
        tasks: TaskTracker,
        metrics: SharedMetrics,
        spool: Option<PathBuf>,
    ) -> Arc<Self> {
        metrics.up.set(1);
        let pending = spool.as_deref().map(load_spool).unwrap_or_default();
        metrics
            .pending
            .set(pending.batches.len() as i64 + i64::from(!pending.open.is_empty()));
        let allowance = (settings.local_allowance > 0.0)
            .then(|| Allowance::new(settings.local_allowance, settings.allowance_sync));
        Arc::new(Self {
            allowance,
            mode: settings.on_failure,
            probe_interval: settings.probe_interval,
            store: Store::new(settings),
            local,
            up: AtomicBool::new(true),
            pending: Mutex::new(pending),
            spool,
            dirty: AtomicBool::new(false),
            tasks,
            metrics,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Counts a failure and, on the first of an outage, says so once.
    fn failed(&self, e: &StoreError) {
        self.metrics.errors.inc();
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.up.set(0);
            let then = match self.mode {
                OnFailure::FailClosed => "refusing requests with 503 until it answers",
                OnFailure::FailOpenLocal => {
                    "serving on this replica's own limits; spend is written back when it answers"
                }
            };
            tracing::error!(error = %e, "shared spend store unreachable: {then}");
        }
    }

    fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.up.set(1);
            tracing::info!("shared spend store reachable again");
        }
    }

    /// Reserves in the store; while it is unreachable, refuses or reserves locally as the
    /// operator chose.
    pub async fn reserve(
        self: &Arc<Self>,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
    ) -> Result<SpendHold, Refused> {
        if let Some(a) = &self.allowance {
            return self.reserve_from_allowance(a, wallets, cost, tokens).await;
        }
        let now = self.local.clock.now_secs();
        if self.is_up() {
            let id = new_id();
            match self.store.reserve(&id, wallets, now, cost, tokens).await {
                Ok(Ok(())) => {
                    return Ok(SpendHold::Remote(RemoteHold {
                        shared: self.clone(),
                        id,
                        wallets: wallets.to_vec(),
                        cost,
                        tokens,
                        done: false,
                    }))
                }
                Ok(Err(d)) => return Err(Refused::Denied(d)),
                Err(e) => {
                    self.failed(&e);
                    // The reservation may have been made with its reply lost: released later.
                    self.queue(Batch {
                        id,
                        charges: self.charges(wallets, 0),
                        used_tokens: tokens,
                        local: false,
                    });
                }
            }
        }
        self.unreachable(wallets, cost, tokens)
    }

    /// Admits from this replica's allowances, topping them up from the store when short.
    async fn reserve_from_allowance(
        self: &Arc<Self>,
        a: &Allowance,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
    ) -> Result<SpendHold, Refused> {
        let mut topped_up = false;
        for _ in 0..3 {
            let now = self.local.clock.now_ms();
            let which = match a.admit(wallets, cost, tokens, now, topped_up) {
                Ok(h) => {
                    self.metrics.allowance_admitted.inc();
                    return Ok(SpendHold::Pot(h));
                }
                Err(Miss::Denied(d)) => return Err(Refused::Denied(d)),
                Err(Miss::TopUp(which)) => which,
            };
            if !self.is_up() {
                break;
            }
            self.metrics.allowance_top_ups.inc();
            match a
                .top_up(&self.store, wallets, &which, cost, tokens, now)
                .await
            {
                Ok(replies) => {
                    for (w, r) in replies {
                        self.local.observe(&w, r.period_start, r.spent_after);
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    break;
                }
            }
            topped_up = true;
        }
        self.unreachable(wallets, cost, tokens)
    }

    /// What a request gets while the store cannot be reached, as the operator chose.
    fn unreachable(
        self: &Arc<Self>,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
    ) -> Result<SpendHold, Refused> {
        match self.mode {
            OnFailure::FailClosed => {
                self.metrics.unavailable.inc();
                Err(Refused::Unavailable)
            }
            OnFailure::FailOpenLocal => {
                let hold = self
                    .local
                    .reserve(wallets, cost, tokens)
                    .map_err(Refused::Denied)?;
                self.metrics.fallback.inc();
                Ok(SpendHold::Fallback(FallbackHold {
                    hold: Some(hold),
                    shared: self.clone(),
                    wallets: wallets.to_vec(),
                }))
            }
        }
    }

    /// What `wallets` can still pay, from the store (or the local ledger while it is down).
    pub async fn available(&self, wallets: &[Arc<WalletSpec>]) -> Option<u64> {
        let now = self.local.clock.now_secs();
        let limited: Vec<&WalletSpec> = wallets
            .iter()
            .filter(|w| w.limit.is_some())
            .map(|w| &**w)
            .collect();
        if self.is_up() {
            match self.store.standings(&limited, now).await {
                Ok(s) => {
                    return limited
                        .iter()
                        .zip(s)
                        .filter_map(|(w, s)| {
                            let held = self.allowance.as_ref().map_or(0, |a| a.free(w));
                            Some(w.limit?.saturating_sub(s.spent + s.reserved) + held)
                        })
                        .min()
                }
                Err(e) => self.failed(&e),
            }
        }
        self.local.available(wallets)
    }

    /// Standings of `wallets` from the store.
    pub async fn standings(&self, wallets: &[&WalletSpec]) -> Result<Vec<Standing>, StoreError> {
        let r = self
            .store
            .standings(wallets, self.local.clock.now_secs())
            .await;
        if let Err(e) = &r {
            self.failed(e);
        }
        r
    }

    fn charges(&self, wallets: &[Arc<WalletSpec>], cost: u64) -> Vec<Charge> {
        let now = self.local.clock.now_secs();
        wallets
            .iter()
            .map(|w| Charge {
                wallet: w.id.clone(),
                period_start: w.calendar.start(now),
                expire_at: w.calendar.next_reset(now),
                cost,
                tpm: w.rate.tpm,
            })
            .collect()
    }

    async fn settle_remote(
        &self,
        id: String,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
    ) -> Settled {
        let charges = self.charges(wallets, cost);
        if self.is_up() {
            match self.store.settle(&id, &charges, tokens, false).await {
                Ok(Some(spent)) => return self.settled(wallets, &charges, cost, &spent),
                Ok(None) => {
                    return Settled {
                        cost,
                        ..Settled::default()
                    }
                }
                Err(e) => self.failed(&e),
            }
        }
        self.queue(Batch {
            id,
            charges,
            used_tokens: tokens,
            local: false,
        });
        Settled {
            cost,
            ..Settled::default()
        }
    }

    /// Alerts crossed between the spent before and after, and the local ledger told what the
    /// store holds (so a fallback starts from the shared figures, not from zero).
    fn settled(
        &self,
        wallets: &[Arc<WalletSpec>],
        charges: &[Charge],
        cost: u64,
        spent: &[(u64, u64)],
    ) -> Settled {
        let mut alerts = Vec::new();
        for ((w, c), (before, after)) in wallets.iter().zip(charges).zip(spent) {
            self.local.observe(w, c.period_start, *after);
            let Some(limit) = w.limit.filter(|l| *l > 0) else {
                continue;
            };
            for t in &w.alerts {
                let mark = t * limit as f64;
                if (*before as f64) < mark && *after as f64 >= mark {
                    alerts.push(Alert {
                        wallet: w.id.clone(),
                        threshold: *t,
                        spent: *after,
                        limit,
                    });
                }
            }
        }
        Settled {
            cost,
            alerts,
            spent: spent.first().map(|s| s.1),
        }
    }

    fn queue(&self, batch: Batch) {
        if let Ok(mut p) = self.pending.lock() {
            p.batches.push_back(batch);
            self.metrics.pending.set(p.batches.len() as i64);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the pending spend to the spool file if it changed (removes the file once
    /// nothing is pending). A write that fails is tried again at the next call.
    fn persist(&self) {
        let Some(path) = &self.spool else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let bytes = match self.pending.lock() {
            Ok(p) if p.is_empty() => None,
            Ok(p) => serde_json::to_vec(&*p).ok(),
            Err(_) => return,
        };
        let result = match bytes {
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(b) => write_atomically(path, &b),
        };
        if let Err(e) = result {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(error = %e, file = %path.display(), "cannot write the pending shared spend to disk; it is kept in memory");
        }
    }

    /// Adds a charge made on local limits to what is written back later.
    fn queue_local(&self, wallets: &[Arc<WalletSpec>], cost: u64) {
        if cost == 0 {
            return;
        }
        let charges = self.charges(wallets, cost);
        if let Ok(mut p) = self.pending.lock() {
            for c in charges {
                let e = p
                    .open
                    .entry((c.wallet, c.period_start))
                    .or_insert((c.expire_at, 0));
                e.1 = e.1.saturating_add(c.cost);
            }
            self.metrics.pending.set(p.batches.len() as i64 + 1);
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes back everything pending, in order, until done or the store fails again. Each
    /// batch keeps its id across retries and is marked in the store, so it counts once.
    pub async fn write_back(&self) {
        if let Ok(mut p) = self.pending.lock() {
            let open = std::mem::take(&mut p.open);
            let charges: Vec<Charge> = open
                .into_iter()
                .map(|((wallet, period_start), (expire_at, cost))| Charge {
                    wallet,
                    period_start,
                    expire_at,
                    cost,
                    tpm: None,
                })
                .collect();
            for chunk in charges.chunks(BATCH_WALLETS) {
                p.batches.push_back(Batch {
                    id: new_id(),
                    charges: chunk.to_vec(),
                    used_tokens: 0,
                    local: true,
                });
                self.dirty.store(true, Ordering::Release);
            }
        }
        // The batches' ids are on disk before they are sent: a batch sent, then lost to a
        // crash before its removal is written, is sent again after the restart under the same
        // id, and counts once.
        self.persist();
        while let Some(batch) = self.next_batch() {
            match self
                .store
                .settle(&batch.id, &batch.charges, batch.used_tokens, batch.local)
                .await
            {
                Ok(_) => {
                    self.metrics.written_back.inc();
                }
                Err(e) => {
                    self.failed(&e);
                    if let Ok(mut p) = self.pending.lock() {
                        p.batches.push_front(batch);
                    }
                    break;
                }
            }
        }
        if let Ok(p) = self.pending.lock() {
            let open = i64::from(!p.open.is_empty());
            self.metrics.pending.set(p.batches.len() as i64 + open);
        }
        self.dirty.store(true, Ordering::Release);
        self.persist();
    }

    fn next_batch(&self) -> Option<Batch> {
        self.pending.lock().ok()?.batches.pop_front()
    }

    /// Whether spend is waiting to be written back (or, with allowances, to be charged).
    pub fn has_pending(&self) -> bool {
        self.pending
            .lock()
            .is_ok_and(|p| !p.batches.is_empty() || !p.open.is_empty())
            || self.allowance.as_ref().is_some_and(Allowance::has_unsynced)
    }

    /// Probes the store while it is unreachable and writes pending spend back once it answers;
    /// on `stop`, tries one last write-back.
    pub async fn monitor(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.persist();
            tokio::select! {
                () = tokio::time::sleep(self.probe_interval) => {}
                () = stop.cancelled() => {
                    if self.has_pending() && self.is_up() {
                        self.write_back().await;
                    }
                    self.persist();
                    return;
                }
            }
            if !self.is_up() {
                match self.store.ping().await {
                    Ok(()) => self.recovered(),
                    Err(_) => continue,
                }
            }
            if self.has_pending() {
                self.write_back().await;
            }
        }
    }

    /// With `local_allowance`: charges what the allowances served and tops them up (or gives
    /// them back) every sync interval while the store answers; on `stop`, gives every
    /// allowance back once more.
    pub async fn sync_allowances(self: Arc<Self>, stop: CancellationToken) {
        let Some(a) = &self.allowance else { return };
        loop {
            let last = tokio::select! {
                () = tokio::time::sleep(a.interval) => false,
                () = stop.cancelled() => true,
            };
            if self.is_up() || last {
                let (replies, error) = a.sync(&self.store, self.local.clock.now_ms(), last).await;
                for (w, r) in replies {
                    self.local.observe(&w, r.period_start, r.spent_after);
                }
                match error {
                    Some(e) => self.failed(&e),
                    None => self.recovered(),
                }
            }
            if last {
                return;
            }
        }
    }

    /// Publishes a cooldown so every replica benches `health` (a deployment, or a provider
    /// key as `pool#index`) for `d`; skipped while the store is unreachable.
    pub fn publish_cooldown(self: &Arc<Self>, health: &str, d: Duration) {
        if !self.is_up() || d.is_zero() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (me, name) = (self.clone(), health.to_string());
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.tasks.spawn_on(
            async move {
                if let Err(e) = me.store.publish_cooldown(&name, ms).await {
                    me.failed(&e);
                }
            },
            &handle,
        );
    }

    /// Applies the cooldowns other replicas publish (and those running when it (re)connects)
    /// through `apply`, until `stop`.
    pub async fn listen_cooldowns(
        self: Arc<Self>,
        stop: CancellationToken,
        apply: impl Fn(&str, Duration),
    ) {
        loop {
            match self.store.subscribe().await {
                Ok(ps) => {
                    if let Ok(running) = self.store.cooldowns().await {
                        for (name, ms) in running {
                            apply(&name, Duration::from_millis(ms));
                        }
                    }
                    let mut messages = ps.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(m) => {
                                    let text: String = m.get_payload().unwrap_or_default();
                                    if let Some((name, d)) = parse_cooldown(&text) {
                                        apply(&name, d);
                                    }
                                }
                                None => break,
                            },
                            () = stop.cancelled() => return,
                        }
                    }
                }
                Err(e) => self.failed(&e),
            }
            tokio::select! {
                () = tokio::time::sleep(self.probe_interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// The spend a previous run left pending in `path` (nothing if there is no file; a file that
/// cannot be read is set aside and reported).
fn load_spool(path: &Path) -> Pending {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Pending::default(),
        Err(e) => {
            tracing::error!(error = %e, file = %path.display(), "cannot read the pending shared spend");
            return Pending::default();
        }
    };
    match serde_json::from_slice::<Pending>(&bytes) {
        Ok(p) => {
            tracing::warn!(
                batches = p.batches.len(),
                wallets = p.open.len(),
                "spend served while the shared store was unreachable, before a restart: written back once it answers"
            );
            p
        }
        Err(e) => {
            let aside = path.with_extension("json.unreadable");
            let _ = std::fs::rename(path, &aside);
            tracing::error!(error = %e, file = %aside.display(), "the pending shared spend file is unreadable; set aside");
            Pending::default()
        }
    }
}

/// Replaces `path` with `bytes` (a temporary file, synced, then renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// 128 random bits in hex: a reservation or batch id (no request data in it).
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A reservation, wherever it was made. Settle it with the actual cost; `then` gets the
/// outcome (at once for local holds, once the store answered for shared ones). Dropped
/// unsettled, it charges the whole reservation, like [`Hold`].
#[derive(Debug)]
pub enum SpendHold {
    Local(Hold),
    Remote(RemoteHold),
    Fallback(FallbackHold),
    Pot(PotHold),
}

impl SpendHold {
    pub fn reserved(&self) -> u64 {
        match self {
            Self::Local(h) => h.reserved(),
            Self::Remote(h) => h.cost,
            Self::Fallback(h) => h.hold.as_ref().map_or(0, Hold::reserved),
            Self::Pot(h) => h.reserved(),
        }
    }

    pub fn settle(self, cost: u64, tokens: u64, then: impl FnOnce(Settled) + Send + 'static) {
        match self {
            Self::Local(h) => then(h.settle(cost, tokens)),
            Self::Remote(mut h) => h.finish(cost, tokens, then),
            Self::Fallback(mut h) => h.finish(cost, tokens, then),
            Self::Pot(mut h) => then(h.settle(cost, tokens)),
        }
    }
}

/// A reservation in the shared store.
pub struct RemoteHold {
    shared: Arc<Shared>,
    id: String,
    wallets: Vec<Arc<WalletSpec>>,
    cost: u64,
    tokens: u64,
    done: bool,
}

impl std::fmt::Debug for RemoteHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHold")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl RemoteHold {
    fn finish(&mut self, cost: u64, tokens: u64, then: impl FnOnce(Settled) + Send + 'static) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let shared = self.shared.clone();
        let id = std::mem::take(&mut self.id);
        let wallets = std::mem::take(&mut self.wallets);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                self.shared.tasks.spawn_on(
                    async move {
                        then(shared.settle_remote(id, &wallets, cost, tokens).await);
                    },
                    &handle,
                );
            }
            // No runtime to talk to the store from: written back by the monitor.
            Err(_) => {
                let charges = shared.charges(&wallets, cost);
                shared.queue(Batch {
                    id,
                    charges,
                    used_tokens: tokens,
                    local: false,
                });
                then(Settled {
                    cost,
                    ..Settled::default()
                });
            }
        }
    }
}

impl Drop for RemoteHold {
    fn drop(&mut self) {
        let (cost, tokens) = (self.cost, self.tokens);
        self.finish(cost, tokens, drop);
    }
}

/// A reservation on this replica's own ledger, made while the store was unreachable; its
/// settlement is written back to the store later.
#[derive(Debug)]
pub struct FallbackHold {
    hold: Option<Hold>,
    shared: Arc<Shared>,
    wallets: Vec<Arc<WalletSpec>>,
}

impl FallbackHold {
    fn finish(&mut self, cost: u64, tokens: u64, then: impl FnOnce(Settled)) {
        let Some(hold) = self.hold.take() else { return };
        let settled = hold.settle(cost, tokens);
        self.shared.queue_local(&self.wallets, cost);
        then(settled);
    }
}

impl Drop for FallbackHold {
    fn drop(&mut self) {
        if let Some(h) = &self.hold {
            let (cost, tokens) = (h.reserved(), h.reserved_tokens());
            self.finish(cost, tokens, drop);
        }
    }
}
