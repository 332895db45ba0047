//! Routing simulation: the same workload through the gateway under each strategy, against
//! in-process mock providers with realistic prices, latencies and failure rates. Reports the
//! success rate and the effective cost per 1,000 requests. Run: `cargo bench --bench routing`.
//!
//! Workload: 80% short text prompts, 20% prompts with an image. Deployments of one model:
//! - `premium`: $2.50 / $10.00 per 1M tokens, 30 ms, never fails; listed first (the default);
//! - `standard`: $0.40 / $1.60, 60 ms, answers 429 to 20% of requests;
//! - `budget`: $0.15 / $0.60, 80 ms, 5% HTTP 500, text only (no vision).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const REQUESTS: usize = 400;
const CONCURRENCY: usize = 16;
const KEY: &str = "sk-bench-routing";

fn config(strategy: &str) -> String {
    let hash = gateway::cli::hashed(KEY);
    format!(
        r#"
[[providers]]
name = "premium"
kind = "mock"
[providers.mock]
latency_ms = 30

[[providers]]
name = "standard"
kind = "mock"
[providers.mock]
latency_ms = 60
fail_probability = 0.2
fail_status = 429

[[providers]]
name = "budget"
kind = "mock"
[providers.mock]
latency_ms = 80
fail_probability = 0.05
fail_status = 500

[[models]]
name = "chat"
strategy = "{strategy}"
deployments = [
  {{ provider = "premium", model = "p", price = {{ input = 2.5, output = 10.0 }} }},
  {{ provider = "standard", model = "s", price = {{ input = 0.4, output = 1.6 }} }},
  {{ provider = "budget", model = "b", price = {{ input = 0.15, output = 0.6 }}, capabilities = ["tools", "json", "streaming"] }},
]

[[projects]]
name = "bench"
keys = ["{hash}"]
"#
    )
}

fn request(i: usize) -> Value {
    let text = "Summarise the quarterly figures in three bullet points, please. ".repeat(4);
    if i % 5 == 4 {
        json!({"model": "chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}}]}]})
    } else {
        json!({"model": "chat", "messages": [{"role": "user", "content": text}]})
    }
}

struct Outcome {
    ok: usize,
    cost: f64,
    by_deployment: HashMap<String, usize>,
    elapsed_ms: u128,
}

async fn run(strategy: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(strategy)).unwrap();
    let rt = gateway::cli::load_runtime(&path).unwrap();
    let prices: HashMap<String, (f64, f64)> = rt
        .models
        .iter()
        .flat_map(|m| m.deployments.iter())
        .map(|d| (d.id.clone(), d.price.unwrap_or_default()))
        .collect();
    let state = gateway::AppState::new(rt).unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", api.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway::serve(api, admin, state, async {
        let _ = stopped.await;
    }));

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, next, prices) =
            (client.clone(), url.clone(), next.clone(), prices.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Outcome {
                ok: 0,
                cost: 0.0,
                by_deployment: HashMap::new(),
                elapsed_ms: 0,
            };
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REQUESTS {
                    return out;
                }
                let req = http::Request::post(&url)
                    .header("authorization", format!("Bearer {KEY}"))
                    .body(Full::new(Bytes::from(request(i).to_string())))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let status = resp.status();
                let deployment = resp
                    .headers()
                    .get("x-gateway-deployment")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let body: Value =
                    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                        .unwrap_or_default();
                if status == 200 {
                    out.ok += 1;
                    let (input, output) = prices.get(&deployment).copied().unwrap_or_default();
                    let u = &body["usage"];
                    let p = u["prompt_tokens"].as_f64().unwrap_or(0.0)
                        + if i % 5 == 4 { 800.0 } else { 0.0 };
                    out.cost +=
                        (p * input + u["completion_tokens"].as_f64().unwrap_or(0.0) * output) / 1e6;
                    *out.by_deployment.entry(deployment).or_default() += 1;
                }
            }
        }));
    }
    let mut total = Outcome {
        ok: 0,
        cost: 0.0,
        by_deployment: HashMap::new(),
        elapsed_ms: 0,
    };
    for w in workers {
        let o = w.await.unwrap();
        total.ok += o.ok;
        total.cost += o.cost;
        for (k, v) in o.by_deployment {
            *total.by_deployment.entry(k).or_default() += v;
        }
    }
    total.elapsed_ms = started.elapsed().as_millis();
    let _ = stop.send(());
    let _ = server.await;
    total
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Routing simulation: {REQUESTS} requests, concurrency {CONCURRENCY}, 20% with an image\n"
    );
    println!("| strategy | success | cost per 1,000 requests (USD) | vs priority | share premium / standard / budget | wall time |");
    println!("|---|---|---|---|---|---|");
    let mut baseline = None;
    for strategy in [
        "priority",
        "least-cost",
        "least-latency",
        "weighted",
        "least-busy",
    ] {
        let o = runtime.block_on(run(strategy));
        let per_1000 = o.cost / o.ok.max(1) as f64 * 1000.0;
        let base = *baseline.get_or_insert(per_1000);
        let share =
            |d: &str| 100.0 * *o.by_deployment.get(d).unwrap_or(&0) as f64 / o.ok.max(1) as f64;
        println!(
            "| {strategy} | {:.1}% | {per_1000:.4} | {:+.0}% | {:.0}% / {:.0}% / {:.0}% | {} ms |",
            100.0 * o.ok as f64 / REQUESTS as f64,
            100.0 * (per_1000 / base - 1.0),
            share("premium/p"),
            share("standard/s"),
            share("budget/b"),
            o.elapsed_ms
        );
    }
}
