//! The audit log: one metadata-only JSON line per request, written off the request path.
//!
//! A request's `Ctx::finish` hands a [`Record`] to the [`Auditor`], which queues it on a bounded
//! channel; one blocking writer task (tracked, so shutdown drains it) serialises records into
//! daily files `audit-YYYY-MM-DD.jsonl` under `[audit] dir` (continued in
//! `audit-YYYY-MM-DD.N.jsonl` past the size cap, pruned after `retention_days`) and/or stdout.
//! A full queue either blocks the finishing request (back-pressure) or drops the record and
//! counts it, as the operator chose; memory never grows without bound.
//!
//! A record holds what happened, never what was said: no prompt or completion text, no keys
//! (the virtual key appears only as its short non-secret id).
//!
//! With `hmac_key_env` set, each line also carries `seq` and `chain` =
//! HMAC-SHA256(key, previous chain || the line without its `chain` field), so an edited or a
//! deleted record breaks the chain; [`verify`] (`gateway audit verify`) walks it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use prometheus::IntCounterVec;
use serde::{Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio_util::task::TaskTracker;

use crate::config::ops::{AuditSettings, ClientIp, OnFull};
use crate::config::validate::hex;
use crate::config::Secret;
use crate::ledger::period::civil_from_days;

const DAY_MS: i64 = 86_400_000;
/// `,"chain":"` + 64 hex digits + `"}`.
const CHAIN_SUFFIX_LEN: usize = 10 + 64 + 2;
/// Records written between flushes when the queue is busy.
const BATCH: usize = 512;

/// One request, as the audit log sees it. Every field is always present (null when it does
/// not apply), so each line has the same shape.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the request was received (UTC, RFC 3339 with milliseconds).
    #[serde(serialize_with = "ts_ms")]
    pub ts: i64,
    pub request_id: String,
    pub project: Option<String>,
    /// The short id of the virtual key (first 8 hex digits of its hash), never the key.
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    pub endpoint: &'static str,
    /// The public model name asked for.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub deployment: Option<String>,
    pub stream: bool,
    /// Every upstream attempt in order, with how it ended (`ok` or the failure class).
    pub attempts: Vec<Attempt>,
    pub status: u16,
    /// The gateway's error kind (as in error bodies and metrics), when the request failed.
    pub error: Option<&'static str>,
    /// The class of the last failed upstream attempt.
    pub error_class: Option<&'static str>,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
    /// Response cache outcome (`hit`, `miss`, `bypass`) for projects using the cache.
    pub cache: Option<&'static str>,
    /// What a cache hit would have cost upstream.
    pub cache_saved_usd: Option<f64>,
    /// Data-protection findings per entity type, and the actions taken (count per action).
    pub dlp: Option<BTreeMap<String, u64>>,
    pub dlp_actions: Option<BTreeMap<String, u64>>,
    /// Prompt-injection verdict.
    pub injection: Option<String>,
    pub policy: Option<String>,
    pub policy_version: Option<String>,
    #[serde(serialize_with = "as_str")]
    pub config_hash: Arc<str>,
}

fn as_str<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub deployment: String,
    pub class: &'static str,
}

fn ts_ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(*ms))
}

/// `2025-09-01T12:00:00.123Z` of Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let t = ms.rem_euclid(DAY_MS);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a request's context collects for its audit record besides what metrics use.
#[derive(Debug, Default)]
pub struct Facts {
    pub client_ip: Option<String>,
    pub attempts: Vec<Attempt>,
    pub ttfb: Option<Duration>,
    /// Time spent waiting on upstream attempts that failed (the served one is added at the
    /// end), for the gateway's own overhead.
    pub upstream_failed: Duration,
    pub cache_saved_nanos: Option<u64>,
    /// Filled by the data-protection stage: findings per entity type, actions, verdict,
    /// and the policy applied.
    pub dlp: Option<BTreeMap<String, u64>>,
    pub dlp_actions: Option<BTreeMap<String, u64>>,
    pub injection: Option<String>,
    pub policy: Option<String>,
    pub policy_version: Option<String>,
    pub config_hash: Arc<str>,
}

impl Facts {
    /// Starts the record of an upstream attempt (its outcome comes with `end_attempt`).
    pub fn begin_attempt(&mut self, deployment: &str) {
        self.attempts.push(Attempt {
            deployment: deployment.to_string(),
            class: "not_sent",
        });
    }

    /// How the latest attempt ended; `waited` is its time upstream when it failed.
    pub fn end_attempt(&mut self, class: &'static str, waited: Option<Duration>) {
        if let Some(a) = self.attempts.last_mut() {
            a.class = class;
        }
        self.upstream_failed += waited.unwrap_or_default();
    }
}

/// The client address to record, by the configured mode.
pub fn client_ip(
    mode: ClientIp,
    peer: Option<std::net::SocketAddr>,
    headers: &http::HeaderMap,
) -> Option<String> {
    match mode {
        ClientIp::Off => None,
        ClientIp::Peer => peer.map(|p| p.ip().to_string()),
        ClientIp::Forwarded => headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string())
            .or_else(|| peer.map(|p| p.ip().to_string())),
    }
}

enum Msg {
    Record(Box<Record>),
    Close,
}

/// The request side of the audit log: a bounded queue to the writer.
pub struct Auditor {
    tx: Option<SyncSender<Msg>>,
    /// The writer and its queue end, until `start` moves them onto a blocking task.
    pending: Mutex<Option<(Receiver<Msg>, Writer)>>,
    on_full: OnFull,
    counter: IntCounterVec,
}

impl Auditor {
    /// An auditor for `settings`; a disabled one (no sink) accepts and discards nothing.
    pub fn new(settings: &AuditSettings, counter: IntCounterVec) -> Self {
        if !settings.enabled() {
            return Self {
                tx: None,
                pending: Mutex::new(None),
                on_full: settings.on_full,
                counter,
            };
        }
        let (tx, rx) = sync_channel(settings.queue);
        let writer = Writer::new(settings, counter.clone());
        Self {
            tx: Some(tx),
            pending: Mutex::new(Some((rx, writer))),
            on_full: settings.on_full,
            counter,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record; with `on_full = "drop"` a full queue drops it (counted), with
    /// `"block"` the caller waits for room.
    pub fn submit(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        let msg = Msg::Record(Box::new(record));
        let sent = match self.on_full {
            OnFull::Block => tx.send(msg).is_ok(),
            OnFull::Drop => match tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
        };
        if !sent {
            self.counter.with_label_values(&["dropped"]).inc();
        }
    }

    /// Starts the writer on a tracked blocking task (once; later calls do nothing).
    pub fn start(&self, tasks: &TaskTracker) {
        let pending = self.pending.lock().ok().and_then(|mut p| p.take());
        if let Some((rx, mut writer)) = pending {
            tasks.spawn_blocking(move || writer.run(&rx));
        }
    }

    /// Asks the writer to write what is queued, flush and stop. Records submitted later are
    /// dropped and counted.
    pub fn close(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Close);
        }
    }
}

struct Chain {
    key: Secret,
    prev: [u8; 32],
    seq: u64,
}

impl Chain {
    /// `{..}` -> `{..,"seq":N,"chain":"<mac>"}`, the MAC taken over the line up to `seq`.
    fn seal(&mut self, mut line: String) -> String {
        line.pop();
        line.push_str(&format!(",\"seq\":{}}}", self.seq));
        let mac = mac(self.key.expose().as_bytes(), &self.prev, line.as_bytes());
        line.pop();
        line.push_str(&format!(",\"chain\":\"{}\"}}", hex(&mac)));
        self.prev = mac;
        self.seq += 1;
        line
    }
}

fn mac(key: &[u8], prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    m.update(prev);
    m.update(body);
    m.finalize().into_bytes().into()
}

struct OpenFile {
    day: i64,
    n: u32,
    out: BufWriter<File>,
    size: u64,
}

struct Writer {
    dir: Option<PathBuf>,
    stdout: bool,
    max_bytes: u64,
    retention_days: u32,
    chain: Option<Chain>,
    file: Option<OpenFile>,
    counter: IntCounterVec,
}

impl Writer {
    fn new(s: &AuditSettings, counter: IntCounterVec) -> Self {
        let chain = s.hmac_key.clone().map(|key| {
            // Continue the chain of the newest file, so a restart does not break it.
            let (prev, seq) = s
                .dir
                .as_deref()
                .and_then(last_link)
                .map_or(([0; 32], 0), |(prev, seq)| (prev, seq + 1));
            Chain { key, prev, seq }
        });
        Self {
            dir: s.dir.clone(),
            stdout: s.stdout,
            max_bytes: s.max_file_bytes,
            retention_days: s.retention_days,
            chain,
            file: None,
            counter,
        }
    }

    fn run(&mut self, rx: &Receiver<Msg>) {
        if let Some(dir) = &self.dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::error!(dir = %dir.display(), error = %e, "audit directory cannot be created");
            }
        }
        'outer: while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut n = 0;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(r) => self.write(&r),
                    Msg::Close => break 'outer,
                }
                n += 1;
                if n < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.flush();
        }
        // Close, or every sender gone: write what is still queued, then flush.
        while let Ok(Msg::Record(r)) = rx.try_recv() {
            self.write(&r);
        }
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            if let Err(e) = f.out.flush() {
                tracing::error!(error = %e, "audit file flush failed");
            }
        }
        if self.stdout {
            let _ = std::io::stdout().lock().flush();
        }
    }

    fn write(&mut self, r: &Record) {
        let Ok(mut line) = serde_json::to_string(r) else {
            self.counter.with_label_values(&["error"]).inc();
            return;
        };
        if let Some(chain) = &mut self.chain {
            line = chain.seal(line);
        }
        line.push('\n');
        let mut ok = true;
        if self.dir.is_some() {
            if let Err(e) = self.write_file(r.ts.div_euclid(DAY_MS), line.as_bytes()) {
                tracing::error!(error = %e, "audit record not written to file");
                ok = false;
            }
        }
        if self.stdout && std::io::stdout().lock().write_all(line.as_bytes()).is_err() {
            ok = false;
        }
        let result = if ok { "written" } else { "error" };
        self.counter.with_label_values(&[result]).inc();
    }

    fn write_file(&mut self, day: i64, bytes: &[u8]) -> std::io::Result<()> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let len = bytes.len() as u64;
        let reopen = match &self.file {
            None => Some(None),
            Some(f) if f.day != day => Some(None),
            Some(f) if f.size > 0 && f.size + len > self.max_bytes => Some(Some(f.n + 1)),
            Some(_) => None,
        };
        if let Some(n) = reopen {
            if let Some(mut old) = self.file.take() {
                old.out.flush()?;
            }
            let n = match n {
                Some(n) => n,
                None => {
                    self.prune(&dir, day);
                    // Continue today's newest part after a restart, unless it is full.
                    let newest = list_files(&dir)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|f| f.day == day)
                        .max_by_key(|f| f.n);
                    match newest {
                        Some(f) => {
                            let size = std::fs::metadata(&f.path).map_or(0, |m| m.len());
                            if size > 0 && size + len > self.max_bytes {
                                f.n + 1
                            } else {
                                f.n
                            }
                        }
                        None => 0,
                    }
                }
            };
            let path = dir.join(file_name(day, n));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let size = file.metadata().map_or(0, |m| m.len());
            self.file = Some(OpenFile {
                day,
                n,
                out: BufWriter::with_capacity(64 * 1024, file),
                size,
            });
        }
        if let Some(f) = &mut self.file {
            f.out.write_all(bytes)?;
            f.size += len;
        }
        Ok(())
    }

    /// Deletes files older than the retention period.
    fn prune(&self, dir: &Path, today: i64) {
        if self.retention_days == 0 {
            return;
        }
        for f in list_files(dir).unwrap_or_default() {
            if f.day < today - i64::from(self.retention_days) {
                match std::fs::remove_file(&f.path) {
                    Ok(()) => {
                        tracing::info!(file = %f.path.display(), "audit file past retention deleted")
                    }
                    Err(e) => {
                        tracing::warn!(file = %f.path.display(), error = %e, "audit file past retention not deleted")
                    }
                }
            }
        }
    }
}

/// `audit-YYYY-MM-DD.jsonl`, or `audit-YYYY-MM-DD.N.jsonl` for later parts of the day.
pub fn file_name(day: i64, n: u32) -> String {
    let (y, m, d) = civil_from_days(day);
    if n == 0 {
        format!("audit-{y:04}-{m:02}-{d:02}.jsonl")
    } else {
        format!("audit-{y:04}-{m:02}-{d:02}.{n}.jsonl")
    }
}

/// An audit file found in a directory.
#[derive(Debug, Clone)]
pub struct AuditFile {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub n: u32,
    pub path: PathBuf,
}

/// The audit files under `dir`, oldest first (by day, then part).
pub fn list_files(dir: &Path) -> std::io::Result<Vec<AuditFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name
            .strip_prefix("audit-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        let (date, part) = rest.split_at(rest.len().min(10));
        let Some(day) = parse_date(date) else {
            continue;
        };
        let n = match part.strip_prefix('.') {
            None if part.is_empty() => 0,
            Some(n) => match n.parse() {
                Ok(n) => n,
                Err(_) => continue,
            },
            None => continue,
        };
        out.push(AuditFile {
            day,
            n,
            path: entry.path(),
        });
    }
    out.sort_by_key(|f| (f.day, f.n));
    Ok(out)
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if s.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(crate::ledger::period::days_from_civil(y, m, d))
}

/// The chain link (`chain`, `seq`) of the newest record on disk, if it has one.
fn last_link(dir: &Path) -> Option<([u8; 32], u64)> {
    let newest = list_files(dir).ok()?.pop()?;
    let file = File::open(&newest.path).ok()?;
    let last = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .last()?;
    let (body, chain) = split_chain(&last)?;
    Some((chain, seq_of(&body)?))
}

/// A chained line as (the line the MAC covers, its MAC).
fn split_chain(line: &str) -> Option<(String, [u8; 32])> {
    let line = line.trim_end();
    let cut = line.len().checked_sub(CHAIN_SUFFIX_LEN)?;
    let suffix = line.get(cut..)?;
    let hexed = suffix.strip_prefix(",\"chain\":\"")?.strip_suffix("\"}")?;
    let mut mac = [0u8; 32];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(hexed.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut body = line.get(..cut)?.to_string();
    body.push('}');
    Some((body, mac))
}

fn seq_of(body: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(body).ok().map(|s| s.seq)
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    pub files: usize,
    pub records: u64,
    /// Tampering found: edited, deleted or inserted records, by file and line.
    pub problems: Vec<String>,
    /// Not tampering, but worth knowing (a chain that starts mid-way after pruning).
    pub notes: Vec<String>,
}

/// Walks every audit file under `dir` in order and checks the hash chain with `key`.
pub fn verify(dir: &Path, key: &[u8]) -> std::io::Result<Verified> {
    let mut v = Verified::default();
    // The previous record's (seq, chain), once the chain has begun.
    let mut expected: Option<(u64, [u8; 32])> = None;
    for f in list_files(dir)? {
        v.files += 1;
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reader = BufReader::new(File::open(&f.path)?);
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            v.records += 1;
            let at = format!("{name}:{}", i + 1);
            let Some((body, claimed)) = split_chain(&line) else {
                if expected.is_some() {
                    v.problems
                        .push(format!("{at}: record without a chain link (inserted?)"));
                }
                continue;
            };
            let Some(seq) = seq_of(&body) else {
                v.problems
                    .push(format!("{at}: chained record without a seq"));
                continue;
            };
            let prev = match expected {
                _ if seq == 0 => {
                    if expected.is_some() {
                        v.notes.push(format!("{at}: a new chain starts here"));
                    }
                    [0; 32]
                }
                None => {
                    v.notes.push(format!(
                        "{at}: the chain starts at seq {seq} (older records pruned); this record is the anchor"
                    ));
                    expected = Some((seq, claimed));
                    continue;
                }
                Some((last, prev)) => {
                    if seq != last + 1 {
                        v.problems.push(format!(
                            "{at}: seq jumps from {last} to {seq}: {} record(s) deleted before this line",
                            seq.saturating_sub(last + 1).max(1)
                        ));
                        expected = Some((seq, claimed));
                        continue;
                    }
                    prev
                }
            };
            let actual = mac(key, &prev, body.as_bytes());
            if !bool::from(actual.ct_eq(&claimed)) {
                v.problems.push(format!(
                    "{at}: MAC mismatch: the record was edited (or the key is wrong)"
                ));
            }
            expected = Some((seq, claimed));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_file_names() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_756_728_000_123), "2025-09-01T12:00:00.123Z");
        let day = parse_date("2025-09-01").unwrap();
        assert_eq!(file_name(day, 0), "audit-2025-09-01.jsonl");
        assert_eq!(file_name(day, 3), "audit-2025-09-01.3.jsonl");
        assert_eq!(parse_date("2025-13-01"), None);
    }

    #[test]
    fn sealed_lines_split_back() {
        let mut c = Chain {
            key: Secret::new("0123456789abcdef"),
            prev: [0; 32],
            seq: 7,
        };
        let line = c.seal("{\"a\":1}".into());
        let (body, mac_) = split_chain(&line).unwrap();
        assert_eq!(body, "{\"a\":1,\"seq\":7}");
        assert_eq!(mac_, mac(b"0123456789abcdef", &[0; 32], body.as_bytes()));
        assert_eq!(seq_of(&body), Some(7));
    }

    fn record(ts: i64) -> Record {
        Record {
            ts,
            request_id: "req_1".into(),
            project: Some("alpha".into()),
            key_id: None,
            client_ip: None,
            endpoint: "chat",
            model: None,
            provider: None,
            deployment: None,
            stream: false,
            attempts: Vec::new(),
            status: 200,
            error: None,
            error_class: None,
            latency_ms: 1.0,
            ttfb_ms: None,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            cost_usd: None,
            cache: None,
            cache_saved_usd: None,
            dlp: None,
            dlp_actions: None,
            injection: None,
            policy: None,
            policy_version: None,
            config_hash: Arc::from("h"),
        }
    }

    #[test]
    fn files_rotate_by_size_and_day_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let day = parse_date("2025-09-01").unwrap();
        // A file from long ago, past a 7-day retention.
        std::fs::write(dir.path().join(file_name(day - 30, 0)), "{}\n").unwrap();
        let settings = AuditSettings {
            dir: Some(dir.path().to_path_buf()),
            stdout: false,
            max_file_bytes: 1500,
            retention_days: 7,
            queue: 8,
            on_full: OnFull::Block,
            client_ip: ClientIp::Off,
            hmac_key: None,
        };
        let counter = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).unwrap();
        let mut w = Writer::new(&settings, counter.clone());
        for _ in 0..5 {
            w.write(&record(day * DAY_MS + 1000));
        }
        w.write(&record((day + 1) * DAY_MS));
        w.flush();
        let files: Vec<(i64, u32)> = list_files(dir.path())
            .unwrap()
            .iter()
            .map(|f| (f.day, f.n))
            .collect();
        // Old file pruned; the day split into numbered parts; the next day starts afresh.
        let parts = files.len() - 1;
        assert!(parts >= 2, "{files:?}");
        let expected: Vec<(i64, u32)> = (0..parts as u32)
            .map(|n| (day, n))
            .chain([(day + 1, 0)])
            .collect();
        assert_eq!(files, expected);
        for f in list_files(dir.path()).unwrap() {
            assert!(std::fs::metadata(&f.path).unwrap().len() <= 1500);
        }
        assert_eq!(counter.with_label_values(&["written"]).get(), 6);
        // A restart continues the newest part of the day while it has room.
        let mut w = Writer::new(&settings, counter);
        w.write(&record((day + 1) * DAY_MS + 5));
        w.flush();
        assert_eq!(list_files(dir.path()).unwrap().len(), parts + 1);
    }
}
