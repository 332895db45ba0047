//! The Redis side of shared spend: key layout, the Lua scripts that make a reservation, a
//! settlement or a release one atomic step across every wallet of a request, the reads behind
//! reports, and cooldown publication. Only I/O and the scripts live here; when to fall back,
//! what to retry and the holds are in `shared.rs`.
//!
//! Keys (all under the configured prefix `P`; wallet ids are project names and key *ids*):
//! - `P w:<wallet>:s:<period start>` spent in that period (nano-dollars), expiring at its end
//! - `P w:<wallet>:life` spent since the wallet was first charged
//! - `P w:<wallet>:h` hash: `reserved` and the RPM/TPM token buckets (`rl rt tl tt`)
//! - `P w:<wallet>:l` sorted set: reservation id -> lease expiry (ms); its size is the
//!   wallet's concurrency
//! - `P w:<wallet>:r` hash: reservation id -> `"<cost> <tokens>"`
//! - `P w:<wallet>:x` hash: reservations whose lease ran out before they were settled
//! - `P done:<batch>` marks a written-back batch of local spend (so a retry counts once)
//!
//! A settlement charges a wallet only if it finds its reservation (live or lapsed) and removes
//! it in the same step, so settling twice (a retry after a lost reply) charges once.
//! - `P cool:<deployment or provider#key>` a cooldown's end, and channel `P cooldowns`
//!
//! Rate-limit buckets run on the server's clock (`TIME`), so replicas with skewed clocks
//! agree; periods use the gateway's calendar, as the local ledger does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use tokio::sync::OnceCell;

use super::{Denial, Limit, Standing, WalletSpec};
use crate::config::shared::{RedisTls, SharedSettings};

/// Reserve in every wallet or in none. KEYS: 6 per wallet (s, life, h, l, r, x).
/// ARGV: id, cost, tokens, lease_ms, n, then per wallet: limit, rpm, tpm, concurrency (-1: none).
/// Returns {0} or {wallet index (1-based), kind (1 concurrency, 2 rpm, 3 tpm, 4 budget), value}.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, cost, tokens, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local function purge(h, l, r, x)
  local gone = redis.call('ZRANGEBYSCORE', l, '-inf', now, 'LIMIT', 0, 100)
  for _, g in ipairs(gone) do
    local v = redis.call('HGET', r, g)
    if v then
      local c = string.match(v, '^(%d+)')
      if c ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. c) end
      redis.call('HDEL', r, g)
      redis.call('HSET', x, g, v)
      redis.call('PEXPIRE', x, 86400000)
    end
    redis.call('ZREM', l, g)
  end
end
local function level(h, lf, tf, cap)
  local v = redis.call('HMGET', h, lf, tf)
  local lv, at = tonumber(v[1]), tonumber(v[2])
  if not lv then return cap end
  local el = now - at
  if el < 0 then el = 0 end
  return math.min(cap, lv + el * cap / 60000)
end
local function wait(lv, need, cap)
  if need > cap then need = cap end
  if lv >= need then return 0 end
  return math.max(1, math.ceil((need - lv) * 60 / cap))
end
local levels = {}
for i = 1, n do
  local k, a = (i - 1) * 6, 5 + (i - 1) * 4
  local s, h, l, r, x = KEYS[k + 1], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local limit, rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  purge(h, l, r, x)
  if conc >= 0 and redis.call('ZCARD', l) >= conc then return {i, 1, 1} end
  local rl, tl = nil, nil
  if rpm >= 0 then
    rl = level(h, 'rl', 'rt', rpm)
    local w = wait(rl, 1, rpm)
    if w > 0 then return {i, 2, w} end
  end
  if tpm >= 0 then
    tl = level(h, 'tl', 'tt', tpm)
    local w = wait(tl, tokens, tpm)
    if w > 0 then return {i, 3, w} end
  end
  if limit >= 0 then
    local avail = limit - tonumber(redis.call('GET', s) or '0') - tonumber(redis.call('HGET', h, 'reserved') or '0')
    if avail < 0 then avail = 0 end
    if cost > avail then return {i, 4, avail} end
  end
  levels[i] = {rl, tl}
end
for i = 1, n do
  local k = (i - 1) * 6
  local h, l, r = KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  redis.call('HINCRBY', h, 'reserved', ARGV[2])
  redis.call('HSET', r, id, ARGV[2] .. ' ' .. ARGV[3])
  redis.call('ZADD', l, now + lease, id)
  if levels[i][1] then redis.call('HSET', h, 'rl', tostring(levels[i][1] - 1), 'rt', now) end
  if levels[i][2] then redis.call('HSET', h, 'tl', tostring(levels[i][2] - tokens), 'tt', now) end
  for _, key in ipairs({h, l, r}) do redis.call('PEXPIRE', key, lease + 60000) end
end
return {0}
"#;

/// Settle (or release) a reservation, or write back a batch of local spend: charges each
/// wallet its cost in the given period. KEYS: marker, then 6 per wallet (s, life, h, l, r, x).
/// ARGV: id, used tokens, n, marker ttl, then per wallet: cost, expire-at (Unix seconds, 0:
/// never), tpm (-1: none). Marker ttl 0: a reservation, charged where it is found (live or
/// lapsed) and nowhere else; above 0: a batch, charged unless the marker shows it was.
/// Returns {-1} when the marker shows the batch was written already, else per wallet the
/// spent before and after.
const SETTLE: &str = r#"
local id, used, n, mttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if mttl > 0 and not redis.call('SET', KEYS[1], '1', 'NX', 'EX', mttl) then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, n do
  local k, a = 1 + (i - 1) * 6, 4 + (i - 1) * 3
  local s, life, h, l, r, x = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local cost, exp, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local v = redis.call('HGET', r, id)
  local charge = mttl > 0
  if not v and not charge and redis.call('HDEL', x, id) == 1 then charge = true end
  if v then
    charge = true
    local rc, rt = string.match(v, '^(%d+) (%d+)$')
    redis.call('HDEL', r, id)
    redis.call('ZREM', l, id)
    if rc ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. rc) end
    if tpm >= 0 then
      local lv = tonumber(redis.call('HGET', h, 'tl'))
      if lv then
        local at = tonumber(redis.call('HGET', h, 'tt') or now)
        local el = now - at
        if el < 0 then el = 0 end
        lv = math.min(tpm, lv + el * tpm / 60000 + tonumber(rt) - used)
        redis.call('HSET', h, 'tl', tostring(lv), 'tt', now)
      end
    end
  end
  local before = tonumber(redis.call('GET', s) or '0')
  local after = before
  if charge and cost > 0 then
    after = redis.call('INCRBY', s, ARGV[a + 1])
    if exp > 0 then redis.call('EXPIREAT', s, ARGV[a + 2]) end
    redis.call('INCRBY', life, ARGV[a + 1])
  end
  out[2 * i - 1] = before
  out[2 * i] = after
end
return out
"#;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered with an unexpected reply")]
    Reply,
}

/// One wallet's part of a settlement or write-back.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub wallet: String,
    pub period_start: i64,
    /// When the period's key expires (its end); None: a total budget, never.
    pub expire_at: Option<i64>,
    pub cost: u64,
    pub tpm: Option<u64>,
}

/// The connection pool, the scripts and the key names.
pub struct Store {
    settings: SharedSettings,
    /// Replaced when a reload brings other TLS files; requests under way keep the old pool.
    conns: arc_swap::ArcSwap<Conns>,
    next: AtomicUsize,
    reserve: Script,
    settle: Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

/// The TLS material connections are made with, and the pool made with it.
struct Conns {
    tls: Option<RedisTls>,
    pool: OnceCell<Vec<ConnectionManager>>,
}

impl Conns {
    fn new(tls: Option<RedisTls>) -> Arc<Self> {
        Arc::new(Self {
            tls,
            pool: OnceCell::new(),
        })
    }
}

impl Store {
    pub fn new(settings: SharedSettings) -> Arc<Self> {
        Arc::new(Self {
            conns: arc_swap::ArcSwap::new(Conns::new(settings.tls.clone())),
            settings,
            next: AtomicUsize::new(0),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
        })
    }

    pub fn settings(&self) -> &SharedSettings {
        &self.settings
    }

    /// Makes new connections use `tls` (the files as a reload read them); false when they
    /// already do. Open connections are kept until the requests using them are done.
    pub fn use_tls(&self, tls: Option<RedisTls>) -> bool {
        if self.conns.load().tls == tls {
            return false;
        }
        self.conns.store(Conns::new(tls));
        true
    }

    fn client(&self, tls: Option<&RedisTls>) -> Result<redis::Client, StoreError> {
        let url = self.settings.url.expose();
        Ok(match tls {
            None => redis::Client::open(url)?,
            Some(t) => redis::Client::build_with_tls(url, t.certificates())?,
        })
    }

    /// A connection of the pool (connected lazily, reconnected by the manager).
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let conns = self.conns.load_full();
        let pool = conns
            .pool
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.settings.connect_timeout))
                    .set_response_timeout(Some(self.settings.command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let client = self.client(conns.tls.as_ref())?;
                (0..self.settings.pool_size)
                    .map(|_| {
                        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                            .map_err(StoreError::from)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len().max(1);
        pool.get(i).cloned().ok_or(StoreError::Reply)
    }

    /// Runs `f` on a pooled connection within the command timeout (connecting included).
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let limit = self.settings.command_timeout + self.settings.connect_timeout;
        let work = async {
            let conn = self.conn().await?;
            f(conn).await.map_err(StoreError::from)
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(limit)),
        }
    }

    fn key(&self, wallet: &str, part: &str) -> String {
        format!("{}w:{wallet}:{part}", self.settings.prefix)
    }

    fn wallet_keys(&self, wallet: &str, period_start: i64) -> [String; 6] {
        [
            self.key(wallet, &format!("s:{period_start}")),
            self.key(wallet, "life"),
            self.key(wallet, "h"),
            self.key(wallet, "l"),
            self.key(wallet, "r"),
            self.key(wallet, "x"),
        ]
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Reserves in every wallet or none; `Ok(Err(_))` is a refusal, `Err(_)` an outage.
    pub async fn reserve(
        &self,
        id: &str,
        wallets: &[Arc<WalletSpec>],
        now_secs: i64,
        cost: u64,
        tokens: u64,
    ) -> Result<Result<(), Denial>, StoreError> {
        let mut inv = self.reserve.prepare_invoke();
        inv.arg(id)
            .arg(cost)
            .arg(tokens)
            .arg(u64::try_from(self.settings.lease.as_millis()).unwrap_or(u64::MAX))
            .arg(wallets.len());
        for w in wallets {
            for k in self.wallet_keys(&w.id, w.calendar.start(now_secs)) {
                inv.key(k);
            }
            let opt = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
            inv.arg(opt(w.limit))
                .arg(opt(w.rate.rpm.map(u64::from)))
                .arg(opt(w.rate.tpm))
                .arg(opt(w.rate.concurrency.map(u64::from)));
        }
        let reply: Vec<i64> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let (i, kind, value) = match reply.as_slice() {
            [0] => return Ok(Ok(())),
            [i, kind, value] => (*i, *kind, u64::try_from(*value).unwrap_or(0)),
            _ => return Err(StoreError::Reply),
        };
        let w = usize::try_from(i - 1)
            .ok()
            .and_then(|i| wallets.get(i))
            .ok_or(StoreError::Reply)?;
        let rate = |limit| Denial::Rate {
            wallet: w.id.clone(),
            limit,
            retry_after_secs: value.max(1),
        };
        Ok(Err(match kind {
            1 => rate(Limit::Concurrency),
            2 => rate(Limit::Rpm),
            3 => rate(Limit::Tpm),
            _ => Denial::Budget {
                wallet: w.id.clone(),
                limit: w.limit.unwrap_or(0),
                available: value,
                needed: cost,
                period: w.calendar.label(),
                reset: w.calendar.next_reset(now_secs),
            },
        }))
    }

    /// Settles reservation `id` (`marker` false: charged only where the reservation is found,
    /// so a retry charges once) or writes back batch `id` of local spend (`marker` true: at
    /// most once).
    /// Returns (spent before, spent after) per wallet; None: the batch was written already.
    pub async fn settle(
        &self,
        id: &str,
        charges: &[Charge],
        used_tokens: u64,
        marker: bool,
    ) -> Result<Option<Vec<(u64, u64)>>, StoreError> {
        let mut inv = self.settle.prepare_invoke();
        inv.key(format!("{}done:{id}", self.settings.prefix));
        inv.arg(id)
            .arg(used_tokens)
            .arg(charges.len())
            .arg(if marker { 7 * 86_400 } else { 0 });
        for c in charges {
            for k in self.wallet_keys(&c.wallet, c.period_start) {
                inv.key(k);
            }
            inv.arg(c.cost)
                .arg(c.expire_at.unwrap_or(0))
                .arg(c.tpm.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        }
        let reply: Vec<i64> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        if reply.as_slice() == [-1] {
            return Ok(None);
        }
        if reply.len() != charges.len() * 2 {
            return Err(StoreError::Reply);
        }
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Some(reply.chunks(2).map(|p| (n(p[0]), n(p[1]))).collect()))
    }

    /// Spent in the current period, reserved, lifetime and requests in flight of each wallet.
    pub async fn standings(
        &self,
        wallets: &[&WalletSpec],
        now_secs: i64,
    ) -> Result<Vec<Standing>, StoreError> {
        let mut pipe = redis::pipe();
        let now_ms = now_secs.saturating_mul(1000);
        for w in wallets {
            let [s, life, h, l, _, _] = self.wallet_keys(&w.id, w.calendar.start(now_secs));
            pipe.get(s)
                .get(life)
                .hget(h, "reserved")
                .zcount(l, now_ms, "+inf");
        }
        let rows: Vec<Option<i64>> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if rows.len() != wallets.len() * 4 {
            return Err(StoreError::Reply);
        }
        let n = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(wallets
            .iter()
            .zip(rows.chunks(4))
            .map(|(w, r)| Standing {
                spent: n(r[0]),
                lifetime: n(r[1]),
                reserved: n(r[2]),
                inflight: u32::try_from(n(r[3])).unwrap_or(u32::MAX),
                period_start: w.calendar.start(now_secs),
            })
            .collect())
    }

    /// Records a cooldown of `health` (a deployment or `provider#key`) for every replica.
    pub async fn publish_cooldown(&self, health: &str, ms: u64) -> Result<(), StoreError> {
        let key = format!("{}cool:{health}", self.settings.prefix);
        let channel = self.channel();
        let msg = format!("{ms} {health}");
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            pipe.set_options(
                key,
                ms,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ms.max(1))),
            )
            .ignore()
            .publish(channel, msg)
            .ignore();
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    fn channel(&self) -> String {
        format!("{}cooldowns", self.settings.prefix)
    }

    /// Cooldowns running now (for a replica that starts or reconnects): name -> ms left.
    pub async fn cooldowns(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = format!("{}cool:", self.settings.prefix);
        let pattern = format!("{prefix}*");
        let keys: Vec<String> = self
            .run(|mut c| async move {
                let mut keys = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await?;
                    keys.extend(batch);
                    if next == 0 || keys.len() > 10_000 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            })
            .await?;
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = self
                .run(|mut c| {
                    let k = k.clone();
                    async move { c.pttl(k).await }
                })
                .await?;
            if let (Some(name), Ok(ms)) = (k.strip_prefix(&prefix), u64::try_from(ttl)) {
                out.push((name.to_string(), ms));
            }
        }
        Ok(out)
    }

    /// A subscription to published cooldowns; messages are `"<ms> <name>"`.
    pub async fn subscribe(&self) -> Result<redis::aio::PubSub, StoreError> {
        let client = self.client(self.conns.load().tls.as_ref())?;
        let channel = self.channel();
        let limit = self.settings.connect_timeout + self.settings.command_timeout;
        let work = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(channel).await?;
            Ok::<_, StoreError>(ps)
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| StoreError::Timeout(limit))?
    }
}

/// Parses a published cooldown message.
pub fn parse_cooldown(msg: &str) -> Option<(String, Duration)> {
    let (ms, name) = msg.split_once(' ')?;
    Some((name.to_string(), Duration::from_millis(ms.parse().ok()?)))
}
