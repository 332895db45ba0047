//! The budget stage's hot path: reserve a worst-case cost, settle the actual one, append the
//! settlement to the journal (batched fsync, as deployed). Baselines in the same run: the same
//! without a journal. Contention: 4 threads reserving and settling against 1 project (one
//! wallet, one lock) and against 64 projects (the ledger is sharded and locks per wallet).
//! Run: `cargo bench --bench budget`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::ledger::{Calendar, Clock, Fsync, Ledger, Period, RateLimits, WalletSpec};

const THREADS: u64 = 4;

fn wallet(id: String) -> Arc<WalletSpec> {
    Arc::new(WalletSpec {
        id,
        limit: Some(u64::MAX / 4),
        calendar: Calendar {
            period: Period::Monthly { day: 1 },
            offset_secs: 0,
        },
        alerts: vec![0.8, 1.0],
        rate: RateLimits {
            rpm: Some(1_000_000_000),
            tpm: Some(u64::MAX / 4),
            concurrency: Some(1_000_000),
        },
    })
}

fn journaled() -> (Arc<Ledger>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = Ledger::open(
        dir.path(),
        Fsync::Batched { window_ms: 100 },
        Clock::system(),
    )
    .unwrap();
    (Arc::new(l), dir)
}

fn per_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("budget");
    let memory = Arc::new(Ledger::in_memory(Clock::system()));
    let w = [wallet("alpha".into())];
    g.bench_function("reserve+settle (in memory, baseline)", |b| {
        b.iter(|| {
            memory
                .reserve(&w, 18_000, 1_200)
                .unwrap()
                .settle(7_000, 700)
        })
    });
    let (ledger, _dir) = journaled();
    g.bench_function("reserve+settle+journal append", |b| {
        b.iter(|| {
            ledger
                .reserve(&w, 18_000, 1_200)
                .unwrap()
                .settle(7_000, 700)
        })
    });
    let key = [wallet("alpha".into()), wallet("alpha/key:0123abcd".into())];
    g.bench_function(
        "reserve+settle+journal append (project and key wallets)",
        |b| {
            b.iter(|| {
                ledger
                    .reserve(&key, 18_000, 1_200)
                    .unwrap()
                    .settle(7_000, 700)
            })
        },
    );
    g.finish();
}

/// Wall time for `iters` reserve+settle+append operations spread over THREADS threads, each
/// request going to one of `projects` wallets.
fn contended(ledger: &Arc<Ledger>, wallets: &[[Arc<WalletSpec>; 1]], iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let ledger = ledger.clone();
            s.spawn(move || {
                for i in 0..iters / THREADS {
                    let w = &wallets[((i * THREADS + t) as usize) % wallets.len()];
                    ledger.reserve(w, 18_000, 1_200).unwrap().settle(7_000, 700);
                }
            });
        }
    });
    start.elapsed()
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("budget contention (4 threads)");
    for projects in [1usize, 64] {
        let wallets: Vec<[Arc<WalletSpec>; 1]> = (0..projects)
            .map(|p| [wallet(format!("project-{p}"))])
            .collect();
        let memory = Arc::new(Ledger::in_memory(Clock::system()));
        g.bench_function(format!("{projects} project(s), in memory"), |b| {
            b.iter_custom(|iters| contended(&memory, &wallets, iters.max(THREADS)))
        });
        let (ledger, _dir) = journaled();
        g.bench_function(format!("{projects} project(s), journaled"), |b| {
            b.iter_custom(|iters| contended(&ledger, &wallets, iters.max(THREADS)))
        });
    }
    g.finish();
}

criterion_group!(benches, per_request, contention);
criterion_main!(benches);
