//! Local allowances (`[state.redis] local_allowance`): instead of one round trip to the shared
//! store per request, a replica takes a share of each wallet's budget, RPM and TPM buckets and
//! concurrency slots at once (one reservation in the store, leased) and admits requests from
//! it in memory. Every `allowance_sync_ms` it charges what it served, tops the allowance up,
//! and gives back the allowances nobody used. What all replicas together admit never exceeds a
//! limit, because every allowance is reserved in the store first; the price is that a share
//! of a limit can sit with one replica while another refuses, for at most one sync interval.
//!
//! The store side is the `POT` script in `redis.rs`; the holds are [`PotHold`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;

use super::redis::{PotCall, PotReply, Store, StoreError};
use super::{Alert, Denial, Limit, Settled, WalletSpec};

/// Calls on allowances run at once by the sync task.
const SYNC_CONCURRENCY: usize = 16;

/// This replica's allowances, one per wallet it served.
pub struct Allowance {
    share: f64,
    pub(super) interval: Duration,
    /// How long an allowance is held in the store without being renewed.
    lease: Duration,
    /// This replica's id for its allowances (random per process).
    id: String,
    pots: Mutex<HashMap<String, Arc<Pot>>>,
}

/// One wallet's allowance; `calls` makes calls on it one at a time.
pub struct Pot {
    state: Mutex<PotState>,
    calls: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct PotState {
    spec: Option<Arc<WalletSpec>>,
    /// What the store holds for this replica.
    cost: u64,
    tokens: u64,
    requests: u64,
    slots: u32,
    /// Held by requests in flight.
    inflight: u32,
    inflight_cost: u64,
    inflight_tokens: u64,
    /// Served since the last call took its snapshot.
    spent: u64,
    used_tokens: u64,
    used_requests: u64,
    /// A call whose outcome is not known yet (made now, or failed and to be made again as it
    /// is); what it charges still counts against the allowance.
    pending: Option<PotCall>,
    /// A release is under way: nothing is admitted until it answers.
    closing: bool,
    /// Admissions since the last sync.
    active: bool,
    /// Until when (clock ms) the store is known to hold the allowance.
    valid_until: i64,
    period_start: i64,
    /// The period's spend in the store as of the last call.
    known_spent: u64,
    /// Alerts crossed by the last calls, reported with the next settlement.
    alerts: Vec<Alert>,
    last: PotReply,
}

impl PotState {
    fn served(&self) -> (u64, u64, u64) {
        self.pending.as_ref().map_or((0, 0, 0), |c| c.served)
    }

    fn committed_cost(&self) -> u64 {
        self.inflight_cost + self.spent + self.served().0
    }

    fn committed_tokens(&self) -> u64 {
        self.inflight_tokens + self.used_tokens + self.served().1
    }

    /// Which limit of `w` this allowance cannot cover a request of `cost` and `tokens` under;
    /// None: it can.
    fn lacks(&self, w: &WalletSpec, cost: u64, tokens: u64, now_ms: i64) -> Option<Lack> {
        if self.closing || now_ms >= self.valid_until {
            return Some(Lack::Stale);
        }
        if self.period_start != w.calendar.start(now_ms.div_euclid(1000)) {
            return Some(Lack::Stale);
        }
        if w.rate.concurrency.is_some() && self.inflight >= self.slots {
            return Some(Lack::Limit(Limit::Concurrency));
        }
        if w.rate.rpm.is_some() && self.used_requests + self.served().2 >= self.requests {
            return Some(Lack::Limit(Limit::Rpm));
        }
        if w.rate.tpm.is_some() && self.committed_tokens() + tokens > self.tokens {
            return Some(Lack::Limit(Limit::Tpm));
        }
        if w.limit.is_some() && self.committed_cost() + cost > self.cost {
            return Some(Lack::Budget);
        }
        None
    }

    fn has_anything(&self) -> bool {
        self.cost > 0 || self.tokens > 0 || self.requests > 0 || self.slots > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lack {
    /// Not held, expired, closing or of another period: ask the store.
    Stale,
    Limit(Limit),
    Budget,
}

fn lock(m: &Mutex<PotState>) -> MutexGuard<'_, PotState> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Why an admission from allowances failed.
pub enum Miss {
    /// These wallets' allowances (indices) must be topped up first.
    TopUp(Vec<usize>),
    /// Topped up already and still short.
    Denied(Denial),
}

impl Allowance {
    pub fn new(share: f64, interval: Duration) -> Self {
        Self {
            share,
            interval,
            lease: (interval * 25).max(Duration::from_secs(5)),
            id: format!("a{:032x}", rand::random::<u128>()),
            pots: Mutex::new(HashMap::new()),
        }
    }

    fn pot(&self, w: &Arc<WalletSpec>) -> Arc<Pot> {
        let mut pots = match self.pots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let pot = match pots.get(&w.id) {
            Some(p) => p.clone(),
            None => pots
                .entry(w.id.clone())
                .or_insert_with(|| {
                    Arc::new(Pot {
                        state: Mutex::new(PotState::default()),
                        calls: tokio::sync::Mutex::new(()),
                    })
                })
                .clone(),
        };
        drop(pots);
        let mut st = lock(&pot.state);
        // The wallet as configured now (a reload may have changed its limits).
        if !st.spec.as_ref().is_some_and(|s| Arc::ptr_eq(s, w)) {
            st.spec = Some(w.clone());
        }
        drop(st);
        pot
    }

    /// Admits a request from the allowances of every wallet (all or none). `topped_up`: the
    /// allowances were just topped up, so a shortfall is a refusal.
    pub fn admit(
        &self,
        wallets: &[Arc<WalletSpec>],
        cost: u64,
        tokens: u64,
        now_ms: i64,
        topped_up: bool,
    ) -> Result<PotHold, Miss> {
        let pots: Vec<Arc<Pot>> = wallets.iter().map(|w| self.pot(w)).collect();
        // Locked in the order given (project, then key) by every caller: no deadlock.
        let mut guards: Vec<MutexGuard<'_, PotState>> =
            pots.iter().map(|p| lock(&p.state)).collect();
        let lacking: Vec<(usize, Lack)> = wallets
            .iter()
            .zip(&guards)
            .enumerate()
            .filter_map(|(i, (w, st))| st.lacks(w, cost, tokens, now_ms).map(|l| (i, l)))
            .collect();
        if let Some(&(i, lack)) = lacking.first() {
            if !topped_up || lack == Lack::Stale {
                return Err(Miss::TopUp(lacking.iter().map(|(i, _)| *i).collect()));
            }
            return Err(Miss::Denied(self.denial(
                &wallets[i],
                &guards[i],
                lack,
                cost,
                tokens,
                now_ms,
            )));
        }
        for st in &mut guards {
            st.inflight += 1;
            st.inflight_cost += cost;
            st.inflight_tokens += tokens;
            st.used_requests += 1;
            st.active = true;
        }
        drop(guards);
        Ok(PotHold {
            pots,
            cost,
            tokens,
            done: false,
        })
    }

    fn denial(
        &self,
        w: &WalletSpec,
        st: &PotState,
        lack: Lack,
        cost: u64,
        tokens: u64,
        now_ms: i64,
    ) -> Denial {
        // Seconds until a bucket of `cap` per minute at `level` holds `need`.
        let wait = |level: Option<i64>, need: u64, cap: u64| -> u64 {
            let short = need.min(cap) as f64 - level.unwrap_or(0) as f64;
            if short <= 0.0 || cap == 0 {
                1
            } else {
                ((short * 60.0 / cap as f64).ceil() as u64).max(1)
            }
        };
        let rate = |limit, retry_after_secs| Denial::Rate {
            wallet: w.id.clone(),
            limit,
            retry_after_secs,
        };
        match lack {
            Lack::Limit(Limit::Rpm) => rate(
                Limit::Rpm,
                wait(st.last.rpm_level, 1, w.rate.rpm.map_or(0, u64::from)),
            ),
            Lack::Limit(Limit::Tpm) => {
                let held = st.tokens.saturating_sub(st.committed_tokens());
                rate(
                    Limit::Tpm,
                    wait(
                        st.last.tpm_level,
                        tokens.saturating_sub(held),
                        w.rate.tpm.unwrap_or(0),
                    ),
                )
            }
            Lack::Limit(Limit::Concurrency) | Lack::Stale => rate(Limit::Concurrency, 1),
            Lack::Budget => Denial::Budget {
                wallet: w.id.clone(),
                limit: w.limit.unwrap_or(0),
                available: st.cost.saturating_sub(st.committed_cost())
                    + st.last.available.unwrap_or(0),
                needed: cost,
                period: w.calendar.label(),
                reset: w.calendar.next_reset(now_ms.div_euclid(1000)),
            },
        }
    }

    /// Budget this replica holds unused for `w` (added to what the store has left).
    pub fn free(&self, w: &WalletSpec) -> u64 {
        let pots = match self.pots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        pots.get(&w.id).map_or(0, |p| {
            let st = lock(&p.state);
            st.cost.saturating_sub(st.committed_cost())
        })
    }

    /// Tops up the allowances of `wallets` so that a request of `cost` and `tokens` fits.
    pub async fn top_up(
        &self,
        store: &Store,
        wallets: &[Arc<WalletSpec>],
        which: &[usize],
        cost: u64,
        tokens: u64,
        now_ms: i64,
    ) -> Result<Vec<(Arc<WalletSpec>, PotReply)>, StoreError> {
        let calls = which.iter().filter_map(|&i| {
            let w = wallets.get(i)?;
            let pot = self.pot(w);
            Some(async move {
                self.call(store, &pot, Some((cost, tokens)), false, now_ms)
                    .await
                    .map(|r| r.map(|r| (w.clone(), r)))
            })
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(Result::transpose)
            .collect()
    }

    /// One call on `pot`: the one still pending if there is one, else a new one with a
    /// snapshot of what was served. `need`: a request that must fit after a top-up.
    /// Ok(None): there was nothing to do.
    async fn call(
        &self,
        store: &Store,
        pot: &Pot,
        need: Option<(u64, u64)>,
        release: bool,
        now_ms: i64,
    ) -> Result<Option<PotReply>, StoreError> {
        let _one_at_a_time = pot.calls.lock().await;
        // A call left over from a failure is made first, as it was; then, if a request is
        // waiting on the allowance, a fresh one for it.
        let mut fresh_after = need.is_some();
        loop {
            let (call, spec, retried) = {
                let mut st = lock(&pot.state);
                let Some(spec) = st.spec.clone() else {
                    return Ok(None);
                };
                let retried = st.pending.is_some();
                if !retried {
                    if release && !st.has_anything() && st.spent == 0 && st.used_tokens == 0 {
                        return Ok(None);
                    }
                    st.pending = Some(self.snapshot(&mut st, &spec, need, release, now_ms));
                }
                st.closing = st.pending.as_ref().is_some_and(|c| c.release);
                (st.pending.clone(), spec, retried)
            };
            let Some(call) = call else { return Ok(None) };
            let result = store.pot(&self.id, &spec, &call, self.lease).await;
            let mut st = lock(&pot.state);
            st.closing = false;
            let reply = result?;
            st.pending = None;
            st.cost = reply.cost;
            st.tokens = reply.tokens;
            st.requests = reply.requests;
            st.slots = reply.slots;
            let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
            // Used locally for half its lease: the rest is margin for a slow store.
            st.valid_until = now_ms.saturating_add(lease / 2);
            st.period_start = call.period_start;
            st.known_spent = reply.spent_after;
            if let Some(limit) = spec.limit.filter(|l| *l > 0) {
                for t in &spec.alerts {
                    let mark = t * limit as f64;
                    if (reply.spent_before as f64) < mark && reply.spent_after as f64 >= mark {
                        st.alerts.push(Alert {
                            wallet: spec.id.clone(),
                            threshold: *t,
                            spent: reply.spent_after,
                            limit,
                        });
                    }
                }
            }
            st.last = reply.clone();
            if !(retried && fresh_after) {
                return Ok(Some(reply));
            }
            fresh_after = false;
        }
    }

    /// The next call on an allowance: what was served moves into it, and it asks for the
    /// share of each limit on top of what requests in flight hold (or, releasing, for just
    /// that).
    fn snapshot(
        &self,
        st: &mut PotState,
        w: &WalletSpec,
        need: Option<(u64, u64)>,
        release: bool,
        now_ms: i64,
    ) -> PotCall {
        let served = (
            std::mem::take(&mut st.spent),
            std::mem::take(&mut st.used_tokens),
            std::mem::take(&mut st.used_requests),
        );
        st.active = false;
        let share = |limit: u64| (limit as f64 * self.share).ceil() as u64;
        let (need_cost, need_tokens) = need.unwrap_or((0, 0));
        let now = now_ms.div_euclid(1000);
        let want = if release {
            (st.inflight_cost, st.inflight_tokens, 0, 0)
        } else {
            (
                st.inflight_cost + w.limit.map_or(0, share).max(need_cost),
                st.inflight_tokens + w.rate.tpm.map_or(0, share).max(need_tokens),
                w.rate.rpm.map_or(0, |r| share(u64::from(r)).max(1)),
                st.inflight
                    + w.rate.concurrency.map_or(0, |c| {
                        u32::try_from(share(u64::from(c)))
                            .unwrap_or(u32::MAX)
                            .max(1)
                    }),
            )
        };
        PotCall {
            id: format!("{:032x}", rand::random::<u128>()),
            release,
            served,
            want,
            keep_slots: st.inflight,
            period_start: w.calendar.start(now),
            expire_at: w.calendar.next_reset(now),
        }
    }

    /// One sync of every allowance: pending calls made again, used ones charged and topped
    /// up, unused ones given back. Returns the replies (for the local ledger and metrics) and
    /// the first store error.
    pub async fn sync(
        &self,
        store: &Store,
        now_ms: i64,
        release_all: bool,
    ) -> (Vec<(Arc<WalletSpec>, PotReply)>, Option<StoreError>) {
        let pots: Vec<Arc<Pot>> = match self.pots.lock() {
            Ok(g) => g.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        let results: Vec<_> = futures_util::stream::iter(pots)
            .map(|pot| async move {
                let (spec, release) = {
                    let st = lock(&pot.state);
                    let busy = st.active || st.spent > 0 || st.used_tokens > 0;
                    let release = release_all || !busy;
                    (st.spec.clone(), release)
                };
                let r = self.call(store, &pot, None, release, now_ms).await;
                (spec, r)
            })
            .buffer_unordered(SYNC_CONCURRENCY)
            .collect()
            .await;
        let mut replies = Vec::new();
        let mut error = None;
        for (spec, r) in results {
            match (spec, r) {
                (Some(w), Ok(Some(reply))) => replies.push((w, reply)),
                (_, Err(e)) => {
                    error.get_or_insert(e);
                }
                _ => {}
            }
        }
        (replies, error)
    }

    /// Whether spend served from allowances is still to be charged in the store.
    pub fn has_unsynced(&self) -> bool {
        let pots = match self.pots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        pots.values().any(|p| {
            let st = lock(&p.state);
            st.pending.is_some() || st.spent > 0 || st.inflight > 0
        })
    }
}

/// A request admitted from allowances. Settle it with the actual cost; dropped unsettled, it
/// charges the whole reservation.
pub struct PotHold {
    pots: Vec<Arc<Pot>>,
    cost: u64,
    tokens: u64,
    done: bool,
}

impl std::fmt::Debug for PotHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PotHold")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl PotHold {
    pub fn reserved(&self) -> u64 {
        self.cost
    }

    /// Charges `cost` and `tokens` in place of the reservation; exactly once. The spend
    /// reaches the store with the next sync; alerts crossed by earlier syncs come with it.
    pub fn settle(&mut self, cost: u64, tokens: u64) -> Settled {
        if std::mem::replace(&mut self.done, true) {
            return Settled::default();
        }
        let mut alerts = Vec::new();
        let mut spent = None;
        for pot in &self.pots {
            let mut st = lock(&pot.state);
            st.inflight = st.inflight.saturating_sub(1);
            st.inflight_cost = st.inflight_cost.saturating_sub(self.cost);
            st.inflight_tokens = st.inflight_tokens.saturating_sub(self.tokens);
            st.spent += cost;
            st.used_tokens += tokens;
            alerts.append(&mut st.alerts);
            spent.get_or_insert(st.known_spent + st.spent + st.served().0);
        }
        Settled {
            cost,
            alerts,
            spent,
        }
    }
}

impl Drop for PotHold {
    fn drop(&mut self) {
        let (cost, tokens) = (self.cost, self.tokens);
        self.settle(cost, tokens);
    }
}
