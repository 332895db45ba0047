//! Scanning throughput and per-request latency of the data protection engine with the full
//! built-in policy (every type detected), on a realistic mix: mostly clean chat text, and a
//! dense-PII variant. A plain byte scan of the same text (`memchr`-style search for a byte
//! that never occurs) runs in the same process as the baseline, so ratios survive noisy
//! machines. Run: `cargo bench --bench dlp`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway::dlp::{injection, Policy, Sensitivity};

const CLEAN: &str = "Can you help me refactor this function so that it handles errors properly? \
It currently returns early when the input is empty, but I think we should log a warning and \
continue with the default configuration instead. Also, please explain why the borrow checker \
complains about the mutable reference in the loop, and suggest a cleaner way to structure the \
code. We are targeting the 2021 edition and would like to keep dependencies to a minimum. The \
team meets on Thursday to review the design, so a short summary of the trade-offs would help. ";

const PII: &str = "Hi, my name is Maria Garcia, email maria.garcia@example.com, phone +34 612 345 678. \
Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-1234, born on 12 March 1985. \
I live at 221B Baker Street, London NW1 6XE; server 10.0.0.12, key AKIAIOSFODNN7EXAMPLE. ";

fn text_of(unit: &str, len: usize) -> String {
    let mut s = String::with_capacity(len + unit.len());
    while s.len() < len {
        s.push_str(unit);
    }
    s.truncate(len);
    while !s.is_char_boundary(s.len()) {
        s.pop();
    }
    s
}

fn bench(c: &mut Criterion) {
    let p = Policy::builtin_default().unwrap();
    let clean = text_of(CLEAN, 64 * 1024);
    // A realistic mix: one PII paragraph per ~2 KB of clean prose.
    let mixed = text_of(&format!("{}{PII}", CLEAN.repeat(5)), 64 * 1024);
    let dense = text_of(PII, 64 * 1024);
    let mut g = c.benchmark_group("dlp_scan");
    for (name, t) in [("clean", &clean), ("mixed", &mixed), ("dense_pii", &dense)] {
        g.throughput(Throughput::Bytes(t.len() as u64));
        g.bench_with_input(BenchmarkId::new("policy", name), t, |b, t| {
            b.iter(|| black_box(p.findings(black_box(t), Sensitivity::Medium)))
        });
        g.bench_with_input(BenchmarkId::new("baseline_byte_scan", name), t, |b, t| {
            b.iter(|| black_box(black_box(t).bytes().position(|c| c == 0)))
        });
    }
    g.finish();

    // Per-request added latency for a 4 KB prompt: detection, transformation and the
    // injection score, as the guard runs them.
    let prompt = text_of(&format!("{}{PII}", CLEAN.repeat(5)), 4096);
    let clean4k = text_of(CLEAN, 4096);
    let mut g = c.benchmark_group("dlp_request_4k");
    for (name, t) in [("clean", &clean4k), ("with_pii", &prompt)] {
        g.bench_with_input(BenchmarkId::new("guard", name), t, |b, t| {
            b.iter(|| {
                let f = p.findings(black_box(t), Sensitivity::Medium);
                let mut ps = gateway::dlp::policy::Pseudonyms::default();
                let out = p.transform(t, &f, Some(&mut ps));
                black_box((out, injection::score(t)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
