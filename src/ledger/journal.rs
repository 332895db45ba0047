//! The on-disk ledger under `[state] dir`: an append-only journal of settlements in numbered
//! segments (`journal-<seq>.log`) plus a snapshot (`snapshot.json`) of every wallet's spend up
//! to a segment number. No database; just files a reader can fold at any time.
//!
//! A record is framed as `len: u32 LE | crc32: u32 LE | JSON payload`; a crash mid-write
//! leaves a short or mismatching frame at the end of the last segment, which a reader detects
//! and skips (nothing after it in that segment is trusted; later segments still are). Records
//! go to the OS at once (a killed process loses nothing); `fsync` makes them durable either on
//! every record or at most a configurable window later.
//!
//! Compaction never reads memory: it starts a new segment, folds the previous snapshot and the
//! closed segments into a new snapshot (written to a temporary file, synced, renamed), then
//! deletes those segments. A reader that races a compaction notices and reads again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const SNAPSHOT: &str = "snapshot.json";
const FRAME_HEADER: usize = 8;
/// Larger frames are not records (a torn length field, say).
const MAX_RECORD: usize = 64 * 1024;

/// One settlement: its cost, charged to each wallet in the period it was charged in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds of the settlement.
    pub t: i64,
    /// Nano-dollars.
    pub c: u64,
    /// (wallet id, period start) for every wallet charged.
    pub w: Vec<(String, i64)>,
}

/// What is known of one wallet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletTotal {
    /// Start of the period `spent` belongs to (Unix seconds).
    pub period_start: i64,
    /// Nano-dollars spent in that period.
    pub spent: u64,
    /// Nano-dollars spent since the wallet was first charged.
    pub lifetime: u64,
}

impl WalletTotal {
    /// Adds a charge made in the period starting `period_start`. A later period starts from
    /// zero; an earlier one can only mean the period was redefined in the config, and then the
    /// spend on record is kept rather than forgotten.
    pub fn charge(&mut self, period_start: i64, nanos: u64) {
        if period_start > self.period_start {
            self.spent = 0;
        }
        self.period_start = period_start;
        self.spent = self.spent.saturating_add(nanos);
        self.lifetime = self.lifetime.saturating_add(nanos);
    }
}

/// The state on disk, folded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    /// Segments up to and including this one are in the snapshot.
    pub through: u64,
    pub wallets: BTreeMap<String, WalletTotal>,
    /// Torn or corrupt record tails skipped while reading (not stored in the snapshot).
    #[serde(skip)]
    pub torn: usize,
    /// Records read from segments (not stored in the snapshot).
    #[serde(skip)]
    pub records: usize,
}

impl Folded {
    fn apply(&mut self, r: &Record) {
        for (id, start) in &r.w {
            self.wallets
                .entry(id.clone())
                .or_insert(WalletTotal {
                    period_start: *start,
                    ..WalletTotal::default()
                })
                .charge(*start, r.c);
        }
    }
}

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every record, before the settlement returns.
    Always,
    /// By the background flusher, at most this many milliseconds after the record.
    Batched { window_ms: u64 },
}

pub struct Journal {
    dir: PathBuf,
    fsync: Fsync,
    current: Mutex<Segment>,
    compacting: Mutex<()>,
}

struct Segment {
    seq: u64,
    file: File,
    dirty: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

impl Journal {
    /// Opens the journal in `dir` (created if missing): reads what is there and starts a new
    /// segment for this run's records.
    pub fn open(dir: &Path, fsync: Fsync) -> io::Result<(Self, Folded)> {
        fs::create_dir_all(dir)?;
        let folded = read_state(dir)?;
        let last = segments(dir)?.last().map_or(0, |(s, _)| *s);
        let seq = last.max(folded.through) + 1;
        let file = create_segment(dir, seq)?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                fsync,
                current: Mutex::new(Segment {
                    seq,
                    file,
                    dirty: false,
                    buf: Vec::with_capacity(256),
                }),
                compacting: Mutex::new(()),
            },
            folded,
        ))
    }

    pub fn fsync_mode(&self) -> Fsync {
        self.fsync
    }

    /// Appends one record (one `write` of the whole frame).
    pub fn append(&self, r: &Record) -> io::Result<()> {
        let mut seg = self.current.lock().map_err(|_| poisoned())?;
        let seg = &mut *seg;
        seg.buf.clear();
        seg.buf.extend_from_slice(&[0u8; FRAME_HEADER]);
        serde_json::to_writer(&mut seg.buf, r)?;
        let len = seg.buf.len() - FRAME_HEADER;
        let crc = crc32fast::hash(&seg.buf[FRAME_HEADER..]);
        seg.buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        seg.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        seg.file.write_all(&seg.buf)?;
        match self.fsync {
            Fsync::Always => seg.file.sync_data()?,
            Fsync::Batched { .. } => seg.dirty = true,
        }
        Ok(())
    }

    /// Forces appended records to disk if any are waiting (the batched flusher's tick).
    pub fn sync(&self) -> io::Result<()> {
        let mut seg = self.current.lock().map_err(|_| poisoned())?;
        if seg.dirty {
            seg.file.sync_data()?;
            seg.dirty = false;
        }
        Ok(())
    }

    /// Folds the closed segments into a new snapshot and deletes them.
    pub fn compact(&self) -> io::Result<Folded> {
        let _one_at_a_time = self.compacting.lock().map_err(|_| poisoned())?;
        let closed = {
            let mut seg = self.current.lock().map_err(|_| poisoned())?;
            seg.file.sync_data()?;
            let next = seg.seq + 1;
            seg.file = create_segment(&self.dir, next)?;
            seg.dirty = false;
            std::mem::replace(&mut seg.seq, next)
        };
        let mut folded = read_snapshot(&self.dir)?;
        for (seq, path) in segments(&self.dir)? {
            if seq > folded.through && seq <= closed {
                read_segment(&path, &mut folded)?;
            }
        }
        folded.through = closed;
        write_snapshot(&self.dir, &folded)?;
        for (seq, path) in segments(&self.dir)? {
            if seq <= closed {
                fs::remove_file(path)?;
            }
        }
        Ok(folded)
    }
}

fn poisoned() -> io::Error {
    io::Error::other("journal lock poisoned")
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("journal-{seq:016}.log")))?;
    sync_dir(dir)?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes a created or renamed file's name durable; not possible on every platform.
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) if cfg!(windows) => {
            let _ = e;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Segment files in `dir`, by number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("journal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn read_snapshot(dir: &Path) -> io::Result<Folded> {
    match fs::read(dir.join(SNAPSHOT)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(SNAPSHOT).display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Folded::default()),
        Err(e) => Err(e),
    }
}

fn write_snapshot(dir: &Path, folded: &Folded) -> io::Result<()> {
    let tmp = dir.join("snapshot.json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(folded)?)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(SNAPSHOT))?;
    sync_dir(dir)
}

/// Folds the records of one segment into `folded`, stopping at a torn or corrupt frame.
fn read_segment(path: &Path, folded: &mut Folded) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some(record) = next_frame(rest) else {
            folded.torn += 1;
            break;
        };
        let (payload, len) = record;
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => {
                folded.apply(&r);
                folded.records += 1;
            }
            Err(_) => {
                folded.torn += 1;
                break;
            }
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// The payload of the frame at the start of `buf` and the frame's whole length, if it is
/// complete and its checksum matches.
fn next_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = buf.get(FRAME_HEADER..FRAME_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, FRAME_HEADER + len))
}

/// The wallets on disk: the snapshot plus every segment after it. Safe while a server is
/// appending and compacting: a read that raced a compaction is done again.
pub fn read_state(dir: &Path) -> io::Result<Folded> {
    let mut last_err = None;
    for _ in 0..8 {
        let mut folded = read_snapshot(dir)?;
        let mut raced = false;
        for (seq, path) in segments(dir)? {
            if seq <= folded.through {
                continue;
            }
            match read_segment(&path, &mut folded) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    raced = true;
                    last_err = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !raced && read_snapshot(dir)?.through == folded.through {
            return Ok(folded);
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("the state directory kept changing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(w: &str, start: i64, c: u64) -> Record {
        Record {
            t: start + 1,
            c,
            w: vec![(w.to_string(), start)],
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn appends_fold_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (j, folded) = Journal::open(dir.path(), Fsync::Always).unwrap();
        assert!(folded.wallets.is_empty());
        j.append(&rec("a", 100, 5)).unwrap();
        j.append(&rec("a", 100, 7)).unwrap();
        j.append(&Record {
            t: 1,
            c: 3,
            w: vec![("a".into(), 100), ("a/k".into(), 50)],
        })
        .unwrap();
        drop(j);
        let (_j, folded) = Journal::open(dir.path(), Fsync::Batched { window_ms: 10 }).unwrap();
        assert_eq!(
            folded.wallets["a"],
            WalletTotal {
                period_start: 100,
                spent: 15,
                lifetime: 15
            }
        );
        assert_eq!(folded.wallets["a/k"].spent, 3);
        assert_eq!(folded.torn, 0);
        assert_eq!(folded.records, 3);
    }

    #[test]
    fn a_later_period_starts_from_zero() {
        let mut f = Folded::default();
        f.apply(&rec("a", 100, 5));
        f.apply(&rec("a", 200, 2));
        assert_eq!(
            f.wallets["a"],
            WalletTotal {
                period_start: 200,
                spent: 2,
                lifetime: 7
            }
        );
    }

    #[test]
    fn a_torn_tail_is_skipped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), Fsync::Always).unwrap();
        for _ in 0..3 {
            j.append(&rec("a", 0, 10)).unwrap();
        }
        drop(j);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let full = fs::read(&path).unwrap();
        // A crash in the middle of the third record's write.
        fs::write(&path, &full[..full.len() - 5]).unwrap();
        let (j, folded) = Journal::open(dir.path(), Fsync::Always).unwrap();
        assert_eq!(folded.wallets["a"].spent, 20);
        assert_eq!(folded.torn, 1);
        // New records go to a new segment and are read after the torn one.
        j.append(&rec("a", 0, 1)).unwrap();
        assert_eq!(read_state(dir.path()).unwrap().wallets["a"].spent, 21);

        // A flipped byte is caught by the checksum.
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x20;
        fs::write(&path, &bad).unwrap();
        assert_eq!(read_state(dir.path()).unwrap().wallets["a"].spent, 21);
    }

    #[test]
    fn compaction_keeps_every_charge_once() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), Fsync::Batched { window_ms: 5 }).unwrap();
        j.append(&rec("a", 0, 10)).unwrap();
        j.sync().unwrap();
        let f = j.compact().unwrap();
        assert_eq!(f.wallets["a"].spent, 10);
        j.append(&rec("a", 0, 1)).unwrap();
        j.compact().unwrap();
        j.append(&rec("b", 0, 4)).unwrap();
        let state = read_state(dir.path()).unwrap();
        assert_eq!(state.wallets["a"].spent, 11);
        assert_eq!(state.wallets["b"].spent, 4);
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            1,
            "compacted segments are gone"
        );
        drop(j);
        let (_, reopened) = Journal::open(dir.path(), Fsync::Always).unwrap();
        assert_eq!(reopened.wallets, state.wallets);
    }
}
