//! What the shared (Redis) backend adds to a request, end to end: in-process gateways in front
//! of the built-in mock provider, a project with a budget and RPM/TPM/concurrency limits (so
//! every request reserves and settles), and a real `redis-server` on a free loopback port.
//!
//! 1. Latency at a fixed rate (default 1,000 req/s), local backend vs Redis backend (one round
//!    trip per admission) vs Redis with `local_allowance` (admissions from shares taken ahead),
//!    in alternating slices of the same run; p50/p90/p99 and the added p99.
//! 2. Throughput, closed loop: one Redis-backed replica vs two sharing the Redis (both in this
//!    process, so on one machine this shows whether the store is a bottleneck, not how far more
//!    machines scale).
//!
//! Run: `cargo bench --bench shared` (needs `redis-server` on PATH). Knobs (environment):
//! `SECS` per backend (default 10), `RATE` (default 1000), `ROUNDS` (default 5),
//! `CONCURRENCY` for the closed loop (default 32).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const KEY: &str = "sk-bench-key-0001";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(state: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

{state}

[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
reply = "hello world!"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[projects]]
name = "bench"
keys = ["{key}"]
budget = {{ usd = 1000000, period = "monthly" }}
limits = {{ rpm = 100000000, tpm = 100000000000, concurrency = 100000 }}

[pricing."mock/gpt-4o-mini"]
input = 0.15
output = 0.6
"#,
        key = gateway::cli::hashed(KEY)
    )
}

async fn spawn_gateway(toml: &str) -> SocketAddr {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = gateway::config::load(&path).unwrap();
    let rt = gateway::config::Runtime::build(&cfg, &|_| None).unwrap();
    let state = gateway::AppState::new(rt).unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = gateway::serve(api, admin, state, std::future::pending()).await;
    });
    addr
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn one(client: &HttpClient, addr: SocketAddr) -> bool {
    let body =
        r#"{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    match client.request(req).await {
        Ok(r) => {
            let ok = r.status() == 200;
            let _ = r.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// `rate` requests per second for `secs` against `addr`; latencies of successful requests.
async fn fixed_rate(client: &HttpClient, addr: SocketAddr, rate: u64, secs: f64) -> Vec<f64> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let n = (rate as f64 * secs) as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(at.into()).await;
        let (client, out, failed) = (client.clone(), out.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if one(&client, addr).await {
                out.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed");
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// Requests completed per second by `concurrency` workers over `addrs` (round robin).
async fn closed_loop(
    client: &HttpClient,
    addrs: &[SocketAddr],
    concurrency: u64,
    secs: f64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, done, stop, addrs) =
            (client.clone(), done.clone(), stop.clone(), addrs.to_vec());
        workers.push(tokio::spawn(async move {
            let mut i = w as usize;
            while !stop.load(Ordering::Relaxed) {
                if one(&client, addrs[i % addrs.len()]).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for w in workers {
        let _ = w.await;
    }
    n as f64 / elapsed
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let secs = env_num("SECS", 10) as f64;
    let rate = env_num("RATE", 1000);
    let rounds = env_num("ROUNDS", 5).max(1);
    let concurrency = env_num("CONCURRENCY", 32);
    let redis = Redis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let shared = format!(
            "[state]\nbackend = \"redis\"\n[state.redis]\nurl = \"redis://127.0.0.1:{}/0\"\nkey_prefix = \"bench:\"\n",
            redis.1
        );
        let allowance = format!("{shared}local_allowance = 0.05\n");
        let local = spawn_gateway(&config("")).await;
        let remote = spawn_gateway(&config(&shared)).await;
        let remote2 = spawn_gateway(&config(&shared)).await;
        let held = spawn_gateway(&config(&allowance)).await;
        let held2 = spawn_gateway(&config(&allowance)).await;
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build_http();
        // Warm-up: connections, script cache, allocator.
        for addr in [local, remote, remote2, held, held2] {
            fixed_rate(&client, addr, rate, 1.0).await;
        }

        let (mut lat_local, mut lat_redis, mut lat_held) = (Vec::new(), Vec::new(), Vec::new());
        let slice = secs / rounds as f64;
        for _ in 0..rounds {
            lat_local.extend(fixed_rate(&client, local, rate, slice).await);
            lat_redis.extend(fixed_rate(&client, remote, rate, slice).await);
            lat_held.extend(fixed_rate(&client, held, rate, slice).await);
        }
        lat_local.sort_by(f64::total_cmp);
        lat_redis.sort_by(f64::total_cmp);
        lat_held.sort_by(f64::total_cmp);
        println!("latency at {rate} req/s, {secs} s per backend in {rounds} alternating slices (ms):");
        println!("  backend          n       p50     p90     p99");
        for (name, l) in [
            ("local", &lat_local),
            ("redis", &lat_redis),
            ("redis+allowance", &lat_held),
        ] {
            println!(
                "  {name:<15} {:<7} {:>6.3}  {:>6.3}  {:>6.3}",
                l.len(),
                pct(l, 0.5),
                pct(l, 0.9),
                pct(l, 0.99)
            );
        }
        for (name, l) in [("redis", &lat_redis), ("redis+allowance", &lat_held)] {
            println!(
                "  added by {name}: p50 {:+.3} ms, p99 {:+.3} ms",
                pct(l, 0.5) - pct(&lat_local, 0.5),
                pct(l, 0.99) - pct(&lat_local, 0.99)
            );
        }

        let t = secs / 2.0;
        let one_local = closed_loop(&client, &[local], concurrency, t).await;
        let one_replica = closed_loop(&client, &[remote], concurrency, t).await;
        let two_replicas = closed_loop(&client, &[remote, remote2], concurrency, t).await;
        let one_held = closed_loop(&client, &[held], concurrency, t).await;
        let two_held = closed_loop(&client, &[held, held2], concurrency, t).await;
        println!("throughput, closed loop with {concurrency} workers, {t} s each (req/s):");
        println!("  local, 1 replica:  {one_local:.0}");
        println!("  redis, 1 replica:  {one_replica:.0}");
        println!(
            "  redis, 2 replicas: {two_replicas:.0}  ({:.2}x of 1 replica)",
            two_replicas / one_replica
        );
        println!("  redis+allowance, 1 replica:  {one_held:.0}");
        println!(
            "  redis+allowance, 2 replicas: {two_held:.0}  ({:.2}x of 1 replica)",
            two_held / one_held
        );
    });
}
