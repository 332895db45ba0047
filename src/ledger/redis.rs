//! The Redis side of shared spend: key layout, the Lua scripts that make a reservation, a
//! settlement or a release one atomic step across every wallet of a request, the reads behind
//! reports, and cooldown publication. Only I/O and the scripts live here; when to fall back,
//! what to retry and the holds are in `shared.rs`.
//!
//! Keys (all under the configured prefix `P`; wallet ids are project names and key *ids*):
//! - `P w:<wallet>:s:<period start>` spent in that period (nano-dollars), expiring at its end
//! - `P w:<wallet>:life` spent since the wallet was first charged
//! - `P w:<wallet>:h` hash: `reserved` and the RPM/TPM token buckets (`rl rt tl tt`)
//! - `P w:<wallet>:l` sorted set: reservation id -> lease expiry (ms); its size plus the
//!   hash's `ps` (slots that allowances hold beyond their one member each) is the wallet's
//!   concurrency
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

/// What the scripts that reserve share: the server's time in ms (`now`), `purge` (lapsed
/// reservations stop counting and are kept aside, so a late settlement is still charged) and
/// `level` (a token bucket refilled to now).
macro_rules! prelude {
    () => {
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(v) return string.format('%d', v) end
local function purge(h, l, r, x)
  local gone = redis.call('ZRANGEBYSCORE', l, '-inf', now, 'LIMIT', 0, 100)
  for _, g in ipairs(gone) do
    local v = redis.call('HGET', r, g)
    if v then
      local c = string.match(v, '^(%d+)')
      if c ~= '0' then redis.call('HINCRBY', h, 'reserved', '-' .. c) end
      -- An allowance's slots beyond its lease member are counted in `ps`.
      local m = tonumber(string.match(v, '^%d+ %d+ %d+ (%d+)$') or '1')
      if m > 1 then redis.call('HINCRBY', h, 'ps', int(1 - m)) end
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
"#
    };
}

/// Reserve in every wallet or in none. KEYS: 6 per wallet (s, life, h, l, r, x).
/// ARGV: id, cost, tokens, lease_ms, n, then per wallet: limit, rpm, tpm, concurrency (-1: none).
/// Returns {0} or {wallet index (1-based), kind (1 concurrency, 2 rpm, 3 tpm, 4 budget), value}.
const RESERVE: &str = concat!(
    prelude!(),
    r#"
local id, cost, tokens, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
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
  if conc >= 0 and redis.call('ZCARD', l) + tonumber(redis.call('HGET', h, 'ps') or '0') >= conc then return {i, 1, 1} end
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
"#
);

/// A replica's allowance of one wallet (`local_allowance`): one reservation that the replica
/// admits requests from locally. Each call charges what was served since the last one,
/// shrinks the allowance by it, and tops it up (or, `release`, shrinks it to what requests in
/// flight still hold) within what the wallet and its buckets have left. A call carries an id
/// and its reply is kept under it, so a retry after a lost reply changes nothing twice.
/// KEYS: marker, s, life, h, l, r, x. ARGV: pot id, lease_ms, release (0/1), then served
/// cost, tokens, requests; wanted cost, tokens, requests, slots; slots to keep (in flight);
/// expire-at of the period key (0: never); limit, rpm, tpm, concurrency (-1: none).
/// Returns the allowance (cost, tokens, requests, slots), the period's spent before and after
/// the charge, the budget left beyond the allowance (-1: no limit) and the RPM and TPM bucket
/// levels (-1: no limit), as decimal strings.
const POT: &str = concat!(
    prelude!(),
    r#"
local mk, s, life, h, l, r, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local prev = redis.call('GET', mk)
if prev then
  local out = {}
  for v in string.gmatch(prev, '%-?%d+') do out[#out + 1] = v end
  return out
end
local pid, lease, release = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local sc, st, sq = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wc, wt, wq, ws = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local ks, exp = tonumber(ARGV[11]), tonumber(ARGV[12])
local limit, rpm, tpm, conc = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
purge(h, l, r, x)
local pc, pt, pq, m = 0, 0, 0, 0
local old = redis.call('HGET', r, pid)
if old then
  local a, b, c, d = string.match(old, '^(%d+) (%d+) (%d+) (%d+)$')
  pc, pt, pq, m = tonumber(a) or 0, tonumber(b) or 0, tonumber(c) or 0, tonumber(d) or 0
  if pc > 0 then redis.call('HINCRBY', h, 'reserved', int(-pc)) end
  redis.call('HDEL', r, pid)
else
  -- Lapsed (its reservation already stopped counting): what it served is charged below.
  redis.call('HDEL', x, pid)
end
redis.call('ZREM', l, pid)
if m > 1 then redis.call('HINCRBY', h, 'ps', int(1 - m)) end
local before = tonumber(redis.call('GET', s) or '0')
local after = before
if sc > 0 then
  after = tonumber(redis.call('INCRBY', s, int(sc)))
  if exp > 0 then redis.call('EXPIREAT', s, int(exp)) end
  redis.call('INCRBY', life, int(sc))
end
pc = math.max(0, pc - sc)
-- Tokens used beyond what the allowance held come out of the bucket too.
local over = math.max(0, st - pt)
pt = math.max(0, pt - st)
pq = math.max(0, pq - sq)
local avail = -1
if limit >= 0 then
  local free = math.max(0, limit - after - tonumber(redis.call('HGET', h, 'reserved') or '0'))
  if release then pc = wc else pc = math.max(pc, math.min(wc, free)) end
  avail = math.max(0, free - pc)
else
  pc = 0
end
-- A bucket's part of the allowance: released down to `keep` (the rest goes back into the
-- bucket), or topped up towards `want` with what the bucket holds.
local function share(lf, tf, cap, held, want, keep, used_over)
  local lv = level(h, lf, tf, cap) - used_over
  if release then
    lv = math.min(cap, lv + held - keep)
    held = keep
  else
    local take = math.max(0, math.min(want - held, math.floor(lv)))
    lv = lv - take
    held = held + take
  end
  redis.call('HSET', h, lf, tostring(lv), tf, int(now))
  return held, math.floor(lv)
end
local rl, tl = -1, -1
if rpm >= 0 then pq, rl = share('rl', 'rt', rpm, pq, wq, 0, 0) else pq = 0 end
if tpm >= 0 then pt, tl = share('tl', 'tt', tpm, pt, wt, wt, over) else pt = 0 end
local k = 0
if conc >= 0 then
  if release then
    k = ks
  else
    k = math.max(ks, math.min(ws, conc - redis.call('ZCARD', l) - tonumber(redis.call('HGET', h, 'ps') or '0')))
  end
end
if pc > 0 or pt > 0 or pq > 0 or k > 0 then
  -- The allowance's lease is its first member (and first slot when it has one).
  m = math.max(k, 1)
  redis.call('HSET', r, pid, int(pc) .. ' ' .. int(pt) .. ' ' .. int(pq) .. ' ' .. int(m))
  if pc > 0 then redis.call('HINCRBY', h, 'reserved', int(pc)) end
  redis.call('ZADD', l, int(now + lease), pid)
  if m > 1 then redis.call('HINCRBY', h, 'ps', int(m - 1)) end
  for _, key in ipairs({h, l, r}) do
    if redis.call('PTTL', key) < lease + 60000 then redis.call('PEXPIRE', key, int(lease + 60000)) end
  end
end
local out = {int(pc), int(pt), int(pq), int(k), int(before), int(after), int(avail), int(rl), int(tl)}
redis.call('SET', mk, table.concat(out, ' '), 'EX', 3600)
return out
"#
);

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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Charge {
    pub wallet: String,
    pub period_start: i64,
    /// When the period's key expires (its end); None: a total budget, never.
    pub expire_at: Option<i64>,
    pub cost: u64,
    pub tpm: Option<u64>,
}

/// One call on a replica's allowance of a wallet (see [`POT`]); kept as it is until it
/// succeeds, so a retry is the same call.
#[derive(Debug, Clone, PartialEq)]
pub struct PotCall {
    pub id: String,
    pub release: bool,
    /// Served since the previous call: cost, tokens, requests.
    pub served: (u64, u64, u64),
    /// Wanted: cost, tokens, requests, slots.
    pub want: (u64, u64, u64, u32),
    /// Slots held by requests in flight.
    pub keep_slots: u32,
    pub period_start: i64,
    pub expire_at: Option<i64>,
}

/// What the store granted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PotReply {
    pub period_start: i64,
    pub cost: u64,
    pub tokens: u64,
    pub requests: u64,
    pub slots: u32,
    pub spent_before: u64,
    pub spent_after: u64,
    /// Budget left beyond the allowance; None: no limit.
    pub available: Option<u64>,
    /// Whole tokens left in the RPM and TPM buckets (may be negative); None: no limit.
    pub rpm_level: Option<i64>,
    pub tpm_level: Option<i64>,
}

/// The connection pool, the scripts and the key names.
pub struct Store {
    settings: SharedSettings,
    /// Replaced when a reload brings other TLS files; requests under way keep the old pool.
    conns: arc_swap::ArcSwap<Conns>,
    next: AtomicUsize,
    reserve: Script,
    settle: Script,
    pot: Script,
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
            pot: Script::new(POT),
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
            limit_args(&mut inv, w);
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

    /// Charges, shrinks and tops up (or releases) this replica's allowance `pot` of `w`.
    pub async fn pot(
        &self,
        pot: &str,
        w: &WalletSpec,
        call: &PotCall,
        lease: Duration,
    ) -> Result<PotReply, StoreError> {
        let mut inv = self.pot.prepare_invoke();
        inv.key(format!("{}done:{}", self.settings.prefix, call.id));
        for k in self.wallet_keys(&w.id, call.period_start) {
            inv.key(k);
        }
        inv.arg(pot)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(u8::from(call.release))
            .arg(call.served.0)
            .arg(call.served.1)
            .arg(call.served.2)
            .arg(call.want.0)
            .arg(call.want.1)
            .arg(call.want.2)
            .arg(call.want.3)
            .arg(call.keep_slots)
            .arg(call.expire_at.unwrap_or(0));
        limit_args(&mut inv, w);
        let reply: Vec<i64> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let [cost, tokens, requests, slots, before, after, avail, rl, tl] = reply[..] else {
            return Err(StoreError::Reply);
        };
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let some = |v: i64, limited: bool| limited.then_some(v);
        Ok(PotReply {
            period_start: call.period_start,
            cost: n(cost),
            tokens: n(tokens),
            requests: n(requests),
            slots: u32::try_from(slots).unwrap_or(0),
            spent_before: n(before),
            spent_after: n(after),
            available: w.limit.map(|_| n(avail)),
            rpm_level: some(rl, w.rate.rpm.is_some()),
            tpm_level: some(tl, w.rate.tpm.is_some()),
        })
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
                .hget(&h, "reserved")
                .zcount(l, now_ms, "+inf")
                .hget(h, "ps");
        }
        let rows: Vec<Option<i64>> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if rows.len() != wallets.len() * 5 {
            return Err(StoreError::Reply);
        }
        let n = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(wallets
            .iter()
            .zip(rows.chunks(5))
            .map(|(w, r)| Standing {
                spent: n(r[0]),
                lifetime: n(r[1]),
                reserved: n(r[2]),
                inflight: u32::try_from(n(r[3]) + n(r[4])).unwrap_or(u32::MAX),
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

/// A wallet's limit, RPM, TPM and concurrency as script arguments (-1: none).
fn limit_args(inv: &mut redis::ScriptInvocation<'_>, w: &WalletSpec) {
    let opt = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    inv.arg(opt(w.limit))
        .arg(opt(w.rate.rpm.map(u64::from)))
        .arg(opt(w.rate.tpm))
        .arg(opt(w.rate.concurrency.map(u64::from)));
}

/// Parses a published cooldown message.
pub fn parse_cooldown(msg: &str) -> Option<(String, Duration)> {
    let (ms, name) = msg.split_once(' ')?;
    Some((name.to_string(), Duration::from_millis(ms.parse().ok()?)))
}
