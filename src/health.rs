//! What the gateway remembers about each deployment and each provider key between requests:
//! requests in flight, recent failures, cooldowns, and a moving average of time to first byte.
//! It lives in `AppState`, outside the config snapshot, keyed by name, so it is shared by all
//! requests and would survive a config swap.
//!
//! A cooldown is a circuit breaker: while it runs the deployment is skipped; when it ends,
//! exactly one request is let through as a probe, and its outcome closes or reopens it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::Routing;

/// Entries kept at most; past it, new names (passthrough model strings chosen by clients) get
/// untracked health instead of growing the map without bound.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    inflight: AtomicU32,
    /// Milliseconds since `epoch` until which this is cooling down; 0: not cooling.
    cooldown_until: AtomicU64,
    probing: AtomicBool,
    /// Failures counted in the current window, and when the window started.
    failures: Mutex<(u32, Option<Instant>)>,
    /// Moving average of time to first byte, in microseconds; 0: not measured yet.
    ewma_ttfb_us: AtomicU64,
}

impl Health {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            inflight: AtomicU32::new(0),
            cooldown_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            failures: Mutex::new((0, None)),
            ewma_ttfb_us: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Lets a request through, or says how long the cooldown still runs. When a cooldown has
    /// just ended, only the first caller gets through (as the probe).
    pub fn admit(self: &Arc<Self>) -> Result<Admission, Duration> {
        let until = self.cooldown_until.load(Ordering::Acquire);
        let mut probe = false;
        if until != 0 {
            let now = self.now_ms();
            if now < until {
                return Err(Duration::from_millis(until - now));
            }
            if self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Err(Duration::from_millis(100));
            }
            probe = true;
        }
        Ok(self.force_with(probe))
    }

    /// Lets a request through whatever the cooldown says (the last resort when every
    /// candidate is cooling down).
    pub fn force(self: &Arc<Self>) -> Admission {
        self.force_with(false)
    }

    fn force_with(self: &Arc<Self>, probe: bool) -> Admission {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        Admission {
            health: self.clone(),
            probe,
        }
    }

    /// Starts (or extends) a cooldown of `d` from now: for provider keys, which have no probe.
    pub fn cool_down(&self, d: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        self.cooldown_until.fetch_max(until, Ordering::AcqRel);
    }

    /// How much longer the cooldown runs, without claiming anything.
    pub fn cooling_for(&self) -> Option<Duration> {
        let until = self.cooldown_until.load(Ordering::Acquire);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn is_cooling(&self) -> bool {
        self.cooldown_until.load(Ordering::Acquire) != 0
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn ewma_ttfb(&self) -> Option<Duration> {
        match self.ewma_ttfb_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    fn succeeded(&self, ttfb: Option<Duration>) {
        self.cooldown_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
        if let Ok(mut f) = self.failures.lock() {
            *f = (0, None);
        }
        if let Some(t) = ttfb {
            let sample = u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1);
            let old = self.ewma_ttfb_us.load(Ordering::Relaxed);
            // Weight 1/5 for the new sample: recent enough to follow a slowdown within a few
            // requests, smooth enough not to flap on one outlier.
            let new = if old == 0 {
                sample
            } else {
                (old * 4 + sample) / 5
            };
            self.ewma_ttfb_us.store(new.max(1), Ordering::Relaxed);
        }
    }

    /// Records a failure; `retry_after` (capped by the caller) starts a cooldown at once.
    /// Returns true when this failure started a cooldown.
    fn failed(&self, routing: &Routing, retry_after: Option<Duration>) -> bool {
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        let trip = match retry_after {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                let now = Instant::now();
                let count = match self.failures.lock() {
                    Ok(mut f) => {
                        let fresh = f
                            .1
                            .is_none_or(|start| now.duration_since(start) > routing.failure_window);
                        *f = if fresh {
                            (1, Some(now))
                        } else {
                            (f.0 + 1, f.1)
                        };
                        f.0
                    }
                    Err(_) => 0,
                };
                (was_probe || count >= routing.cooldown_failures).then_some(routing.cooldown)
            }
        };
        match trip {
            Some(d) if !d.is_zero() => {
                let until = self
                    .now_ms()
                    .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .max(1);
                self.cooldown_until.fetch_max(until, Ordering::AcqRel);
                if let Ok(mut f) = self.failures.lock() {
                    *f = (0, None);
                }
                true
            }
            _ => false,
        }
    }
}

/// One request let through to a deployment: counted in flight until dropped. A probe that is
/// dropped unresolved (the client went away) gives the probe back.
#[derive(Debug)]
pub struct Admission {
    health: Arc<Health>,
    probe: bool,
}

impl Admission {
    /// Records success; the admission still counts the request in flight until dropped (a
    /// stream is busy until it ends).
    pub fn succeeded(&mut self, ttfb: Option<Duration>) {
        self.probe = false;
        self.health.succeeded(ttfb);
    }

    /// Returns true when this failure started a cooldown.
    pub fn failed(mut self, routing: &Routing, retry_after: Option<Duration>) -> bool {
        self.probe = false;
        self.health.failed(routing, retry_after)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.health.inflight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

/// Health by name: `provider/model` for deployments, `provider#N` for the Nth key of a
/// provider's pool.
#[derive(Debug)]
pub struct Registry {
    epoch: Instant,
    map: RwLock<HashMap<String, Arc<Health>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl Registry {
    pub fn get(&self, name: &str) -> Arc<Health> {
        if let Some(h) = self.map.read().ok().and_then(|m| m.get(name).cloned()) {
            return h;
        }
        let Ok(mut map) = self.map.write() else {
            return Arc::new(Health::new(self.epoch));
        };
        if let Some(h) = map.get(name) {
            return h.clone();
        }
        let h = Arc::new(Health::new(self.epoch));
        if map.len() < MAX_TRACKED {
            map.insert(name.to_string(), h.clone());
        }
        h
    }

    /// The health of a provider key, by pool index.
    pub fn key(&self, provider: &str, index: usize) -> Arc<Health> {
        self.get(&format!("{provider}#{index}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        Routing {
            max_attempts: 3,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
            max_retry_after: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(5),
            cooldown_failures: 2,
            failure_window: Duration::from_secs(30),
            cooldown: Duration::from_millis(40),
            retry_budget_ratio: 0.2,
            retry_budget_min: 10,
        }
    }

    #[test]
    fn trips_after_n_failures_then_lets_one_probe_through() {
        let r = routing();
        let h = Registry::default().get("p/m");
        assert!(!h.admit().unwrap().failed(&r, None));
        assert!(h.admit().unwrap().failed(&r, None), "second failure trips");
        assert!(h.admit().is_err());
        std::thread::sleep(Duration::from_millis(50));
        let probe = h.admit().unwrap();
        assert!(h.admit().is_err(), "only one probe at a time");
        // A failed probe reopens the cooldown at once.
        assert!(probe.failed(&r, None));
        assert!(h.admit().is_err());
        std::thread::sleep(Duration::from_millis(50));
        // A probe dropped unresolved gives the probe back.
        drop(h.admit().unwrap());
        let mut probe = h.admit().unwrap();
        assert_eq!(h.inflight(), 1);
        probe.succeeded(Some(Duration::from_millis(3)));
        assert_eq!(h.inflight(), 1, "still in flight until dropped");
        drop(probe);
        assert_eq!(h.inflight(), 0);
        assert!(h.admit().is_ok());
        assert_eq!(h.ewma_ttfb(), Some(Duration::from_millis(3)));
    }

    #[test]
    fn retry_after_cools_down_immediately() {
        let h = Registry::default().get("p/m");
        assert!(h
            .admit()
            .unwrap()
            .failed(&routing(), Some(Duration::from_secs(2))));
        assert!(h.admit().unwrap_err() > Duration::from_secs(1));
        assert!(h.cooling_for().is_some());
    }
}
