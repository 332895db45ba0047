//! Wallets, reservations and rate limits: the spend state that outlives config reloads.
//!
//! A wallet (a project's, or a virtual key's inside a project) is an account keyed by its id.
//! Accounts live in a sharded map and each has its own mutex, so requests of different
//! projects never wait on each other. A request reserves its worst-case cost (and its tokens
//! and a concurrency slot) in every wallet it is charged to, all or nothing; the returned
//! [`Hold`] settles the actual cost exactly once (its `Drop` settles if nobody did, so no path
//! can leak a reservation). Limits come with each call from the current config, so an edited
//! budget applies at once to the spend already recorded.
//!
//! Settlements are journaled (`journal.rs`); periods are calendar arithmetic (`period.rs`).
//! Time comes from an injectable [`Clock`] so tests can move it. Wallets shared by replicas
//! through Redis are in `shared.rs` (with the store in `redis.rs`); this ledger is then the
//! fallback a replica serves on while the store is unreachable.

pub mod allowance;
pub mod journal;
pub mod period;
pub mod redis;
pub mod shared;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use journal::{Folded, Fsync, Journal, Record, WalletTotal};
pub use period::{Calendar, Period};

const SHARDS: usize = 32;

/// Wall-clock time in milliseconds, movable in tests (`advance`) or fixed (`manual`).
#[derive(Debug)]
pub struct Clock {
    manual: bool,
    ms: AtomicI64,
}

impl Clock {
    pub fn system() -> Self {
        Self {
            manual: false,
            ms: AtomicI64::new(0),
        }
    }

    /// A clock that stands still at `ms` until advanced.
    pub fn manual(ms: i64) -> Self {
        Self {
            manual: true,
            ms: AtomicI64::new(ms),
        }
    }

    pub fn now_ms(&self) -> i64 {
        let base = if self.manual {
            0
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        base + self.ms.load(Ordering::Relaxed)
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    pub fn advance(&self, ms: i64) {
        self.ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Rate limits of one wallet; None: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u32>,
}

/// One wallet as the config defines it now.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletSpec {
    pub id: String,
    /// Nano-dollars per period; None: spend is recorded, never refused.
    pub limit: Option<u64>,
    pub calendar: Calendar,
    /// Fractions of the limit that raise an alert when crossed, ascending.
    pub alerts: Vec<f64>,
    pub rate: RateLimits,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Rpm,
    Tpm,
    Concurrency,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
            Self::Concurrency => "concurrency",
        }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    Budget {
        wallet: String,
        limit: u64,
        /// Limit minus spend minus other requests' reservations.
        available: u64,
        needed: u64,
        period: &'static str,
        reset: Option<i64>,
    },
    Rate {
        wallet: String,
        limit: Limit,
        retry_after_secs: u64,
    },
}

/// An alert threshold crossed by a settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub wallet: String,
    pub threshold: f64,
    pub spent: u64,
    pub limit: u64,
}

/// A wallet's standing, for reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standing {
    pub spent: u64,
    pub reserved: u64,
    pub lifetime: u64,
    pub inflight: u32,
    pub period_start: i64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at_ms: i64,
}

impl Bucket {
    fn full(capacity: f64, now: i64) -> Self {
        Self {
            level: capacity,
            at_ms: now,
        }
    }

    /// Refills at `capacity` per minute.
    fn refill(&mut self, capacity: f64, now: i64) {
        let elapsed = (now - self.at_ms).max(0) as f64;
        self.level = (self.level + elapsed * capacity / 60_000.0).min(capacity);
        self.at_ms = now;
    }

    /// Seconds until `need` is available; zero when it is now. A need larger than the
    /// capacity passes on a full bucket, so a big request is slowed, never refused forever.
    fn wait_secs(&self, need: f64, capacity: f64) -> u64 {
        let need = need.min(capacity);
        if self.level >= need {
            return 0;
        }
        let ms = (need - self.level) * 60_000.0 / capacity;
        (ms / 1000.0).ceil().max(1.0) as u64
    }
}

#[derive(Debug)]
struct State {
    total: WalletTotal,
    reserved: u64,
    inflight: u32,
    rpm: Option<Bucket>,
    tpm: Option<Bucket>,
    /// Bit i: alert threshold i already raised in this period.
    alerted: u64,
}

impl State {
    /// Moves to the period containing `now`.
    fn roll(&mut self, calendar: &Calendar, now_secs: i64) {
        let start = calendar.start(now_secs);
        if start != self.total.period_start {
            if start > self.total.period_start {
                self.total.spent = 0;
                self.alerted = 0;
            }
            self.total.period_start = start;
        }
    }
}

#[derive(Debug)]
struct Account {
    state: Mutex<State>,
}

/// The ledger: every wallet's spend, reservations and limiter state, and the journal.
#[derive(Debug)]
pub struct Ledger {
    shards: Vec<RwLock<HashMap<String, Arc<Account>>>>,
    journal: Option<Journal>,
    pub clock: Clock,
    /// Set when a journal write failed (reported once per failure run, not per request).
    journal_failing: AtomicBool,
}

impl Ledger {
    /// A ledger kept in memory only (no `[state] dir`).
    pub fn in_memory(clock: Clock) -> Self {
        Self::with(clock, None, Folded::default())
    }

    /// A ledger persisted in `dir`, rebuilt from what is there.
    pub fn open(dir: &Path, fsync: Fsync, clock: Clock) -> std::io::Result<(Self, Folded)> {
        let (journal, folded) = Journal::open(dir, fsync)?;
        Ok((Self::with(clock, Some(journal), folded.clone()), folded))
    }

    fn with(clock: Clock, journal: Option<Journal>, folded: Folded) -> Self {
        let shards: Vec<RwLock<HashMap<String, Arc<Account>>>> =
            (0..SHARDS).map(|_| RwLock::default()).collect();
        for (id, total) in folded.wallets {
            if let Ok(mut shard) = shards[shard_of(&id)].write() {
                shard.insert(id, Arc::new(Account::new(total)));
            }
        }
        Self {
            shards,
            journal,
            clock,
            journal_failing: AtomicBool::new(false),
        }
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    fn account(&self, id: &str) -> Arc<Account> {
        let shard = &self.shards[shard_of(id)];
        if let Some(a) = shard.read().ok().and_then(|s| s.get(id).cloned()) {
            return a;
        }
        match shard.write() {
            Ok(mut s) => s
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(Account::new(WalletTotal::default())))
                .clone(),
            // A poisoned shard: an account of its own keeps the request going.
            Err(_) => Arc::new(Account::new(WalletTotal::default())),
        }
    }

    /// What `wallets` can still pay (the smallest of their remainders); None: no limit.
    pub fn available(&self, wallets: &[Arc<WalletSpec>]) -> Option<u64> {
        let now = self.clock.now_secs();
        wallets
            .iter()
            .filter_map(|w| {
                let limit = w.limit?;
                let a = self.account(&w.id);
                let mut s = a.state.lock().ok()?;
                s.roll(&w.calendar, now);
                Some(limit.saturating_sub(s.total.spent + s.reserved))
            })
            .min()
    }

    /// Reserves `cost` nano-dollars, `tokens` and one request slot in every wallet (the
    /// project's first), or refuses without reserving anything.
    pub fn reserve(
        self: &Arc<Self>,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
    ) -> Result<Hold, Denial> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let accounts: Vec<Arc<Account>> = wallets.iter().map(|w| self.account(&w.id)).collect();
        // Locked in the order given (project, then key) by every caller: no deadlock.
        let mut guards = Vec::with_capacity(accounts.len());
        for a in &accounts {
            match a.state.lock() {
                Ok(g) => guards.push(g),
                Err(p) => guards.push(p.into_inner()),
            }
        }
        for (w, s) in wallets.iter().zip(guards.iter_mut()) {
            s.roll(&w.calendar, now);
            let deny = |limit, retry_after_secs| Denial::Rate {
                wallet: w.id.clone(),
                limit,
                retry_after_secs,
            };
            if let Some(max) = w.rate.concurrency {
                if s.inflight >= max {
                    return Err(deny(Limit::Concurrency, 1));
                }
            }
            if let Some(rpm) = w.rate.rpm {
                let cap = f64::from(rpm);
                let b = s.rpm.get_or_insert(Bucket::full(cap, now_ms));
                b.refill(cap, now_ms);
                let wait = b.wait_secs(1.0, cap);
                if wait > 0 {
                    return Err(deny(Limit::Rpm, wait));
                }
            }
            if let Some(tpm) = w.rate.tpm {
                let cap = tpm as f64;
                let b = s.tpm.get_or_insert(Bucket::full(cap, now_ms));
                b.refill(cap, now_ms);
                let wait = b.wait_secs(tokens as f64, cap);
                if wait > 0 {
                    return Err(deny(Limit::Tpm, wait));
                }
            }
            if let Some(limit) = w.limit {
                let available = limit.saturating_sub(s.total.spent + s.reserved);
                if cost > available {
                    return Err(Denial::Budget {
                        wallet: w.id.clone(),
                        limit,
                        available,
                        needed: cost,
                        period: w.calendar.label(),
                        reset: w.calendar.next_reset(now),
                    });
                }
            }
        }
        for (w, s) in wallets.iter().zip(guards.iter_mut()) {
            s.reserved += cost;
            s.inflight += 1;
            if let Some(b) = s.rpm.as_mut().filter(|_| w.rate.rpm.is_some()) {
                b.level -= 1.0;
            }
            if let Some(b) = s.tpm.as_mut().filter(|_| w.rate.tpm.is_some()) {
                b.level -= tokens as f64;
            }
        }
        drop(guards);
        Ok(Hold {
            ledger: self.clone(),
            wallets: wallets.to_vec(),
            accounts,
            cost,
            tokens,
            done: false,
        })
    }

    /// Raises a wallet's spend in the period starting `period_start` to `spent` if it is
    /// lower: what the shared store reported, so a fallback to this ledger starts from it.
    pub fn observe(&self, w: &WalletSpec, period_start: i64, spent: u64) {
        let a = self.account(&w.id);
        let mut s = match a.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.roll(&w.calendar, self.clock.now_secs());
        if s.total.period_start == period_start && s.total.spent < spent {
            s.total.spent = spent;
        }
    }

    /// A wallet's standing now (rolled into the current period).
    pub fn standing(&self, w: &WalletSpec) -> Standing {
        let a = self.account(&w.id);
        let mut s = match a.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.roll(&w.calendar, self.clock.now_secs());
        Standing {
            spent: s.total.spent,
            reserved: s.reserved,
            lifetime: s.total.lifetime,
            inflight: s.inflight,
            period_start: s.total.period_start,
        }
    }

    fn journal_append(&self, record: &Record) {
        let Some(j) = &self.journal else { return };
        match j.append(record) {
            Ok(()) => {
                if self.journal_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("spend journal writable again");
                }
            }
            Err(e) => {
                if !self.journal_failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot write the spend journal; spend is kept in memory");
                }
            }
        }
    }
}

impl Account {
    fn new(total: WalletTotal) -> Self {
        Self {
            state: Mutex::new(State {
                total,
                reserved: 0,
                inflight: 0,
                rpm: None,
                tpm: None,
                alerted: 0,
            }),
        }
    }
}

fn shard_of(id: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

/// A reservation. Settle it with the actual cost; dropped unsettled, it charges the whole
/// reservation (the safe side: a path that forgot to settle never under-counts).
#[derive(Debug)]
pub struct Hold {
    ledger: Arc<Ledger>,
    wallets: Vec<Arc<WalletSpec>>,
    accounts: Vec<Arc<Account>>,
    cost: u64,
    tokens: u64,
    done: bool,
}

/// What a settlement did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    pub cost: u64,
    pub alerts: Vec<Alert>,
    /// The first (the project's) wallet's spend in its period after this settlement, when
    /// known.
    pub spent: Option<u64>,
}

impl Hold {
    pub fn reserved(&self) -> u64 {
        self.cost
    }

    pub fn reserved_tokens(&self) -> u64 {
        self.tokens
    }

    /// Charges `cost` nano-dollars and `tokens` in place of the reservation; exactly once.
    pub fn settle(mut self, cost: u64, tokens: u64) -> Settled {
        self.finish(cost, tokens)
    }

    fn finish(&mut self, cost: u64, tokens: u64) -> Settled {
        if std::mem::replace(&mut self.done, true) {
            return Settled::default();
        }
        let ledger = &self.ledger;
        let now_ms = ledger.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let mut charged = Vec::with_capacity(self.wallets.len());
        let mut alerts = Vec::new();
        let mut first_spent = None;
        for (w, a) in self.wallets.iter().zip(&self.accounts) {
            let mut s = match a.state.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            s.roll(&w.calendar, now);
            s.reserved = s.reserved.saturating_sub(self.cost);
            s.inflight = s.inflight.saturating_sub(1);
            if let (Some(b), Some(cap)) = (s.tpm.as_mut(), w.rate.tpm) {
                // Tokens reserved up front are corrected to what was used.
                b.refill(cap as f64, now_ms);
                b.level = (b.level + self.tokens as f64 - tokens as f64).min(cap as f64);
            }
            if cost > 0 {
                let start = s.total.period_start;
                s.total.charge(start, cost);
                charged.push((w.id.clone(), start));
            }
            first_spent.get_or_insert(s.total.spent);
            if let Some(limit) = w.limit.filter(|l| *l > 0) {
                for (i, t) in w.alerts.iter().enumerate().take(64) {
                    let bit = 1u64 << i;
                    if s.alerted & bit == 0 && s.total.spent as f64 >= t * limit as f64 {
                        s.alerted |= bit;
                        alerts.push(Alert {
                            wallet: w.id.clone(),
                            threshold: *t,
                            spent: s.total.spent,
                            limit,
                        });
                    }
                }
            }
        }
        if !charged.is_empty() {
            ledger.journal_append(&Record {
                t: now,
                c: cost,
                w: charged,
            });
        }
        Settled {
            cost,
            alerts,
            spent: first_spent,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.done {
            let (cost, tokens) = (self.cost, self.tokens);
            self.finish(cost, tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn wallet(id: &str, limit: Option<u64>, period: Period) -> Arc<WalletSpec> {
        Arc::new(WalletSpec {
            id: id.into(),
            limit,
            calendar: Calendar {
                period,
                offset_secs: 0,
            },
            alerts: vec![0.5, 0.9],
            rate: RateLimits::default(),
        })
    }

    fn ledger(start_ms: i64) -> Arc<Ledger> {
        Arc::new(Ledger::in_memory(Clock::manual(start_ms)))
    }

    #[test]
    fn reservations_never_overrun_and_release_exactly_once() {
        let l = ledger(10 * DAY_MS);
        let w = [wallet("p", Some(100), Period::Total)];
        let a = l.reserve(&w, 60, 0).unwrap();
        let denied = l.reserve(&w, 50, 0).unwrap_err();
        assert!(
            matches!(
                denied,
                Denial::Budget {
                    available: 40,
                    needed: 50,
                    ..
                }
            ),
            "{denied:?}"
        );
        let b = l.reserve(&w, 40, 0).unwrap();
        assert_eq!(l.standing(&w[0]).reserved, 100);
        assert_eq!(a.settle(10, 0).cost, 10);
        drop(b); // dropped unsettled: charged in full
        let s = l.standing(&w[0]);
        assert_eq!((s.spent, s.reserved, s.inflight), (50, 0, 0));
        assert_eq!(l.available(&w), Some(50));
    }

    #[test]
    fn project_and_key_wallets_are_reserved_together_or_not_at_all() {
        let l = ledger(0);
        let project = wallet("p", Some(1000), Period::Total);
        let key = wallet("p/key:1", Some(100), Period::Total);
        let both = [project.clone(), key.clone()];
        let denied = l.reserve(&both, 150, 0).unwrap_err();
        assert!(matches!(&denied, Denial::Budget { wallet, .. } if wallet == "p/key:1"));
        assert_eq!(
            l.standing(&project).reserved,
            0,
            "nothing reserved on refusal"
        );
        l.reserve(&both, 80, 0).unwrap().settle(80, 0);
        assert_eq!(l.standing(&project).spent, 80);
        assert_eq!(l.standing(&key).spent, 80);
        // Another key of the same project still has the project's remainder.
        let other = [project.clone(), wallet("p/key:2", Some(900), Period::Total)];
        assert!(l
            .reserve(&other, 900, 0)
            .is_ok_and(|h| h.settle(900, 0).cost == 900));
        assert_eq!(l.available(&[project]), Some(20));
    }

    #[test]
    fn periods_roll_over_with_the_clock() {
        let l = ledger(20_000 * DAY_MS + 1000);
        let w = [wallet("p", Some(100), Period::Daily)];
        l.reserve(&w, 100, 0).unwrap().settle(100, 0);
        assert!(l.reserve(&w, 1, 0).is_err());
        match l.reserve(&w, 1, 0).unwrap_err() {
            Denial::Budget { reset, period, .. } => {
                assert_eq!(period, "daily");
                assert_eq!(reset, Some(20_001 * 86_400));
            }
            other => panic!("{other:?}"),
        }
        l.clock.advance(DAY_MS);
        let s = l.standing(&w[0]);
        assert_eq!((s.spent, s.lifetime), (0, 100));
        assert!(l.reserve(&w, 100, 0).is_ok());
    }

    #[test]
    fn a_settlement_after_rollover_is_charged_to_the_new_period() {
        let l = ledger(5 * DAY_MS);
        let w = [wallet("p", Some(100), Period::Daily)];
        let h = l.reserve(&w, 90, 0).unwrap();
        l.clock.advance(DAY_MS);
        h.settle(30, 0);
        let s = l.standing(&w[0]);
        assert_eq!((s.spent, s.reserved), (30, 0));
    }

    #[test]
    fn alerts_fire_once_per_threshold_and_period() {
        let l = ledger(0);
        let w = [wallet("p", Some(100), Period::Daily)];
        let a = l.reserve(&w, 60, 0).unwrap().settle(60, 0).alerts;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].threshold, 0.5);
        assert!(l.reserve(&w, 1, 0).unwrap().settle(1, 0).alerts.is_empty());
        let a = l.reserve(&w, 30, 0).unwrap().settle(30, 0).alerts;
        assert_eq!(a.iter().map(|a| a.threshold).collect::<Vec<_>>(), vec![0.9]);
        l.clock.advance(DAY_MS);
        assert_eq!(l.reserve(&w, 60, 0).unwrap().settle(60, 0).alerts.len(), 1);
    }

    #[test]
    fn rpm_tpm_and_concurrency_limits() {
        let l = ledger(0);
        let mut spec = (*wallet("p", None, Period::Total)).clone();
        spec.rate = RateLimits {
            rpm: Some(2),
            tpm: Some(1000),
            concurrency: Some(2),
        };
        let w = [Arc::new(spec)];
        let a = l.reserve(&w, 0, 400).unwrap();
        let b = l.reserve(&w, 0, 400).unwrap();
        let c = l.reserve(&w, 0, 10).unwrap_err();
        assert!(matches!(
            c,
            Denial::Rate {
                limit: Limit::Concurrency,
                retry_after_secs: 1,
                ..
            }
        ));
        a.settle(0, 100); // used far less than reserved: 300 tokens come back
        let d = l.reserve(&w, 0, 10).unwrap_err();
        assert!(
            matches!(
                d,
                Denial::Rate {
                    limit: Limit::Rpm,
                    retry_after_secs: 30,
                    ..
                }
            ),
            "{d:?}"
        );
        l.clock.advance(30_000);
        // Refilled 500 tokens + 300 corrected: 1000 - 400 - 100 + 500 = 1000 (capped).
        let e = l.reserve(&w, 0, 1000).unwrap();
        b.settle(0, 400);
        drop(e);
        l.clock.advance(30_000);
        let f = l.reserve(&w, 0, 5000).unwrap_err();
        assert!(
            matches!(
                f,
                Denial::Rate {
                    limit: Limit::Tpm,
                    ..
                }
            ),
            "{f:?}"
        );
    }

    #[test]
    fn an_edited_limit_applies_to_recorded_spend() {
        let l = ledger(0);
        l.reserve(&[wallet("p", Some(100), Period::Total)], 80, 0)
            .unwrap()
            .settle(80, 0);
        assert!(l
            .reserve(&[wallet("p", Some(50), Period::Total)], 1, 0)
            .is_err());
        assert!(l
            .reserve(&[wallet("p", Some(200), Period::Total)], 120, 0)
            .is_ok());
    }

    #[test]
    fn spend_survives_a_restart_through_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let w = [wallet("p", Some(1000), Period::Daily)];
        {
            let (l, _) = Ledger::open(dir.path(), Fsync::Always, Clock::manual(DAY_MS)).unwrap();
            let l = Arc::new(l);
            l.reserve(&w, 500, 0).unwrap().settle(300, 0);
            let _leaked_then_dropped = l.reserve(&w, 100, 0).unwrap();
        }
        let (l, folded) = Ledger::open(dir.path(), Fsync::Always, Clock::manual(DAY_MS)).unwrap();
        assert_eq!(folded.wallets["p"].spent, 400);
        assert_eq!(l.standing(&w[0]).spent, 400);
        // The next day starts from zero but keeps the lifetime figure.
        let l2 = Arc::new(l);
        l2.clock.advance(DAY_MS);
        let s = l2.standing(&w[0]);
        assert_eq!((s.spent, s.lifetime), (0, 400));
    }

    #[test]
    fn many_threads_one_wallet_never_overrun() {
        let l = ledger(0);
        let w = [wallet("p", Some(1_000), Period::Total)];
        let served = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(h) = l.reserve(&w, 10, 0) {
                            served.fetch_add(1, Ordering::Relaxed);
                            h.settle(10, 0);
                        }
                    }
                });
            }
        });
        assert_eq!(l.standing(&w[0]).spent, 1_000);
        assert_eq!(served.load(Ordering::Relaxed), 100);
    }
}
