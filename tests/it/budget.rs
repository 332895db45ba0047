//! Spend control over HTTP: wallets that concurrent requests cannot overrun, every refusal's
//! error body, clamping, per-key wallets, period rollover on an injected clock, settlement on
//! client disconnect and at the fallback deployment's price, spend kept across a config swap.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// $0.001 per token in and out, so costs are easy to compute by hand.
const PRICING: &str = "[pricing.\"mock/gpt-4o-mini\"]\ninput = 1000.0\noutput = 1000.0\n";
/// "hi" with max_tokens 10 against the mock replying "hello world!": 4 prompt tokens (1 + 3
/// per message) and 3 completion tokens, so $0.007; the reservation is (1 + 4 + 3) prompt
/// tokens plus 10 output tokens, $0.018.
const COST: u64 = 7_000_000;
const RESERVATION: u64 = 18_000_000;

fn cfg(project: &str, rest: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
reply = "hello world!"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "gpt-4o"
deployments = [{{ provider = "mock", model = "gpt-4o" }}]

[[projects]]
name = "alpha"
keys = ["{}", "{}"]
{project}

{PRICING}
{rest}
"#,
        hashed(KEY),
        hashed(KEY_B)
    )
}

const KEY_B: &str = "sk-test-bravo";

fn hi() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat(gw: &Gateway, key: &str, body: &Value) -> Reply {
    post_json(&gw.url("/v1/chat/completions"), Some(key), body).await
}

fn nanos(usd: &str) -> u64 {
    let (whole, frac) = usd.split_once('.').unwrap();
    whole.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
}

fn project_spent(gw: &Gateway) -> gateway::ledger::Standing {
    let rt = gw.state.runtime();
    let p = &rt.spend.projects["alpha"];
    gw.state.ledger.standing(&p.wallet)
}

#[tokio::test]
async fn cost_header_and_settled_spend() {
    let gw = spawn_gateway(&cfg("budget = { usd = 1.0, period = \"monthly\" }", "")).await;
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-cost-usd"), Some("0.007000000"));
    let s = project_spent(&gw);
    assert_eq!((s.spent, s.reserved, s.inflight), (COST, 0, 0));
    let m = metrics(&gw).await;
    assert!(m.contains("gateway_cost_usd_total{model=\"gpt-4o-mini\",project=\"alpha\",provider=\"mock\"} 0.007"), "{m}");
    assert!(
        m.contains("gateway_budget_remaining_usd{project=\"alpha\"} 0.993"),
        "{m}"
    );
}

#[tokio::test]
async fn five_hundred_concurrent_requests_never_overrun_the_wallet() {
    // Covers 50 requests at their actual cost; 19 reservations fit at once.
    let limit = 50 * COST;
    let gw = spawn_gateway(&cfg("budget = { usd = 0.35, period = \"total\" }", "")).await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { chat(&gw, KEY, &hi()).await }));
    }
    let mut served = 0u64;
    let mut charged = 0u64;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                served += 1;
                charged += nanos(r.header("x-gateway-cost-usd").unwrap());
            }
            429 => assert_eq!(r.error_code(), "budget_exceeded"),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let s = project_spent(&gw);
    assert_eq!(s.reserved, 0, "every reservation was settled");
    assert_eq!(s.spent, charged);
    assert!(s.spent <= limit, "spent {} > limit {limit}", s.spent);
    assert!(served >= limit / RESERVATION, "served only {served}");
    // Then one at a time until refused: the wallet is used up to the last reservation.
    loop {
        let r = chat(&gw, KEY, &hi()).await;
        if r.status != 200 {
            assert_eq!(r.status, 429);
            break;
        }
        served += 1;
    }
    let s = project_spent(&gw);
    assert!(s.spent <= limit);
    assert!(
        limit - s.spent < RESERVATION,
        "left {} unused",
        limit - s.spent
    );
    assert_eq!(served, s.spent / COST);
}

#[tokio::test]
async fn budget_exceeded_says_what_remains_and_when_it_resets() {
    let gw = spawn_gateway(&cfg("budget = { usd = 0.02, period = \"daily\" }", "")).await;
    assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "budget_exceeded");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("$0.013000000 remaining of $0.020000000 (daily)"),
        "{msg}"
    );
    assert!(
        msg.contains("resets at ") && msg.contains("T00:00:00Z"),
        "{msg}"
    );
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 86_400);
    let m = metrics(&gw).await;
    assert!(
        m.contains(
            "gateway_budget_rejections_total{project=\"alpha\",reason=\"budget_exceeded\"} 1"
        ),
        "{m}"
    );

    // Rollover on the injected clock: the next day has the whole budget again.
    gw.state.ledger.clock.advance(86_400_000);
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = project_spent(&gw);
    assert_eq!((s.spent, s.lifetime), (COST, 2 * COST));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_the_limit() {
    let gw = spawn_gateway(&cfg("limits = { rpm = 2 }", "")).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);
    }
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_rpm");
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("30"));
    gw.state.ledger.clock.advance(30_000);
    assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);

    // Tokens per minute: 18 reserved per request, corrected to 7 on settlement.
    let gw = spawn_gateway(&cfg("limits = { tpm = 40 }", "")).await;
    for _ in 0..4 {
        assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);
    }
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_tpm");
    assert!(r.header("retry-after").is_some());
    let m = metrics(&gw).await;
    assert!(
        m.contains("gateway_ratelimit_rejections_total{limit=\"tpm\",project=\"alpha\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn concurrency_limit_counts_open_streams() {
    let up = MockUpstream::openai()
        .stream_gated(stream_frames(&["a", "b"], true), 1)
        .start()
        .await;
    let gw = gateway_for(
        &up,
        "limits = { concurrency = 1 }\n[pricing.\"up/*\"]\ninput = 1.0\noutput = 1.0",
    )
    .await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let open = open_stream(&gw, &body).await;
    assert_eq!(open.status(), 200);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limit_concurrency");
    assert_eq!(r.header("retry-after"), Some("1"));
    up.gate.notify_one();
    let _ = http_body_util::BodyExt::collect(open.into_body()).await;
    let rt = gw.state.runtime();
    let s = gw.state.ledger.standing(&rt.spend.projects["alpha"].wallet);
    assert_eq!((s.inflight, s.reserved), (0, 0));
}

#[tokio::test]
async fn caps_tiers_and_unknown_prices() {
    let project = r#"tiers = ["cheap"]
caps = { max_tokens = 50, max_tokens_action = "reject", max_prompt_tokens = 100, max_request_usd = 0.05 }"#;
    let rest = "[spend.tiers]\ncheap = [\"gpt-4o-mini\"]\n";
    let gw = spawn_gateway(&cfg(project, rest)).await;

    let r = chat(
        &gw,
        KEY,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "model_not_allowed");
    assert_eq!(r.json()["error"]["type"], "permission_error");

    let mut body = hi();
    body["max_tokens"] = json!(51);
    let r = chat(&gw, KEY, &body).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, "max_tokens_exceeded".into())
    );

    let long = "x".repeat(1000);
    let r = chat(&gw, KEY, &json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": long}]})).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, "max_prompt_tokens_exceeded".into())
    );

    // 50 output tokens plus the prompt at $0.001 each is more than $0.05.
    body["max_tokens"] = json!(50);
    let r = chat(&gw, KEY, &body).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (400, "max_request_usd_exceeded".into())
    );
    assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);

    // A model without a price, in a project with a budget: refused, never free.
    let no_price = cfg("budget = { usd = 1.0 }", "")
        .replace(PRICING, "")
        .replace("model = \"gpt-4o-mini\" }", "model = \"my-finetune\" }");
    let rt = runtime_from(&no_price, &[]).unwrap();
    assert!(
        rt.warnings.iter().any(|w| w.contains("mock/my-finetune")),
        "{:?}",
        rt.warnings
    );
    let gw = spawn_gateway(&no_price).await;
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (403, "model_price_unknown".into())
    );
    // ...or priced by the operator's fallback.
    let fallback = format!("{no_price}\n[spend]\nunknown_price = \"fallback\"\nfallback_price = {{ input = 2000.0, output = 2000.0 }}\n");
    let gw = spawn_gateway(&fallback).await;
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.header("x-gateway-cost-usd"), Some("0.014000000"));
}

#[tokio::test]
async fn max_tokens_are_clamped_to_the_cap_and_the_balance() {
    let up = MockUpstream::openai().start().await;
    let pricing = "[pricing.\"up/*\"]\ninput = 1000.0\noutput = 1000.0\n";
    let gw = gateway_for(&up, &format!("caps = {{ max_tokens = 40 }}\n{pricing}")).await;
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(500);
    assert_eq!(
        post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body)
            .await
            .status,
        200
    );
    assert_eq!(up.last().json()["max_tokens"], 40);
    // No max_tokens at all: the cap is sent.
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &chat_body("hi")).await;
    assert_eq!(up.last().json()["max_tokens"], 40);

    // The balance pays for fewer tokens than asked: clamped to what it covers.
    let gw = gateway_for(
        &up,
        &format!("budget = {{ usd = 0.1, on_exceed = \"clamp\" }}\n{pricing}"),
    )
    .await;
    let mut body = chat_body("hi");
    body["max_completion_tokens"] = json!(1000);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // $0.1 = 100 tokens, less the 8 reserved for the prompt.
    assert_eq!(up.last().json()["max_completion_tokens"], 92);
}

#[tokio::test]
async fn key_wallets_inside_a_project_wallet() {
    let project = format!(
        "budget = {{ usd = 1.0 }}\n[[projects.key_budgets]]\nkey = \"{}\"\nbudget = {{ usd = 0.02, period = \"daily\" }}\n",
        hashed(KEY)
    );
    let gw = spawn_gateway(&cfg(&project, "")).await;
    assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "budget_exceeded");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    let key_id = &hashed(KEY)[7..15];
    assert!(
        msg.contains(&format!("the budget of key {key_id} in project 'alpha'")),
        "{msg}"
    );
    // The other key spends from the project's wallet only.
    for _ in 0..3 {
        assert_eq!(chat(&gw, KEY_B, &hi()).await.status, 200);
    }
    assert_eq!(project_spent(&gw).spent, 4 * COST);

    let admin = get(&gw.admin_url("/admin/usage"), None).await;
    assert_eq!(admin.status, 403, "no admin token configured");
}

#[tokio::test]
async fn admin_usage_needs_the_admin_token() {
    let toml = cfg("budget = { usd = 2.0, period = \"weekly\" }", "").replace(
        "[server]\n",
        "[server]\nadmin_token_env = \"ADMIN_TOKEN\"\n",
    );
    let gw = spawn_gateway_env(&toml, &[("ADMIN_TOKEN", "admin-token-0123456789")]).await;
    chat(&gw, KEY, &hi()).await;
    let r = get(
        &gw.admin_url("/admin/usage"),
        Some("wrong-token-0123456789"),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (401, "invalid_admin_token".into())
    );
    let r = get(
        &gw.admin_url("/admin/usage"),
        Some("admin-token-0123456789"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let w = &r.json()["wallets"][0];
    assert_eq!(w["wallet"], "alpha");
    assert_eq!(w["period"], "weekly");
    assert_eq!(w["spent_usd"], 0.007);
    assert_eq!(w["limit_usd"], 2.0);
    assert_eq!(w["remaining_usd"], 1.993);
    assert!(w["resets_at"].as_str().unwrap().ends_with("T00:00:00Z"));
}

#[tokio::test]
async fn a_stream_the_client_drops_settles_and_releases() {
    let up = MockUpstream::openai()
        .endless(Duration::from_millis(20))
        .start()
        .await;
    let pricing = "budget = { usd = 1.0 }\n[pricing.\"up/*\"]\ninput = 1000.0\noutput = 1000.0";
    let gw = gateway_for(&up, pricing).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(100);
    let resp = open_stream(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    // Usage is asked for upstream although the client did not ask for it.
    assert_eq!(up.last().json()["stream_options"]["include_usage"], true);
    let mut body = resp.into_body();
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert!(!first.into_data().unwrap().is_empty());
    assert!(project_spent(&gw).reserved > 0);
    drop(body);
    tokio::time::timeout(Duration::from_secs(5), up.hung_up.notified())
        .await
        .unwrap();
    let s = project_spent(&gw);
    assert_eq!((s.reserved, s.inflight), (0, 0));
    // Charged an estimate: the prompt and what was relayed, never more than reserved.
    assert!(s.spent > 0 && s.spent <= 108_000_000, "{}", s.spent);
    // The output part of the estimate follows the generated text ("tick", a token a chunk),
    // not the JSON and SSE framing around it (about 50 tokens' worth of bytes a chunk).
    assert!(s.spent < 30_000_000, "{}", s.spent);

    // A stream read to the end is charged its final usage (5 + 3 tokens), and the usage
    // chunk the client did not ask for is not passed on.
    let up = MockUpstream::openai()
        .stream(stream_frames(&["one", "two"], true), Duration::ZERO)
        .start()
        .await;
    let gw = gateway_for(&up, pricing).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(100);
    let resp = open_stream(&gw, &body).await;
    let text = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("[DONE]") && !text.contains("\"usage\":{"),
        "{text}"
    );
    assert_eq!(project_spent(&gw).spent, 8_000_000);
}

#[tokio::test]
async fn settlement_uses_the_fallback_deployments_price() {
    let bad = MockUpstream::openai().fail_n(100, 500, "{}").start().await;
    let good = MockUpstream::openai().start().await;
    let rest = "budget = { usd = 1.0 }\n[pricing.\"p0/up-m\"]\ninput = 100.0\noutput = 200.0\n[pricing.\"p1/up-m\"]\ninput = 1.0\noutput = 2.0\n";
    let gw = spawn_gateway_env(
        &multi_config(&[&bad, &good], "", rest),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &m_body()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    // 11 prompt tokens (2 cached, no cache price: input) at $1/M, 7 completion at $2/M.
    assert_eq!(r.header("x-gateway-cost-usd"), Some("0.000025000"));
}

#[tokio::test]
async fn a_new_config_keeps_the_spend_and_applies_the_new_limit() {
    let gw = spawn_gateway(&cfg("budget = { usd = 1.0 }", "")).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, KEY, &hi()).await.status, 200);
    }
    let tighter = runtime_from(&cfg("budget = { usd = 0.03 }", ""), &[]).unwrap();
    gw.state.set_runtime(tighter);
    assert_eq!(project_spent(&gw).spent, 3 * COST);
    // $0.009 left: less than one reservation.
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.status, 429);
    assert!(
        r.text().contains("$0.009000000 remaining of $0.030000000"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_cache_hit_costs_nothing() {
    let gw = spawn_gateway(&cfg("cache = true\nbudget = { usd = 1.0 }", "")).await;
    assert_eq!(
        chat(&gw, KEY, &hi()).await.header("x-gateway-cost-usd"),
        Some("0.007000000")
    );
    let r = chat(&gw, KEY, &hi()).await;
    assert_eq!(r.header("x-gateway-cache"), Some("hit"));
    assert_eq!(r.header("x-gateway-cost-usd"), Some("0.000000000"));
    assert_eq!(project_spent(&gw).spent, COST);
    let m = metrics(&gw).await;
    assert!(
        m.contains("gateway_cache_saved_usd_total{project=\"alpha\"} 0.007"),
        "{m}"
    );
}

#[tokio::test]
async fn spend_survives_sigkill_mid_load_and_a_torn_journal_tail() {
    for fsync in ["always", "batched"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = dir.path().join("gateway.toml");
        let toml = cfg(
            "budget = { usd = 100.0 }",
            &format!(
                "[state]\ndir = \"{}\"\nfsync = \"{fsync}\"\nfsync_window_ms = 50\n",
                state.display()
            ),
        )
        .replace(
            "[server]\n",
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
        )
        .replace(
            "reply = \"hello world!\"",
            "reply = \"hello world!\"\nlatency_ms = 2",
        );
        std::fs::write(&path, &toml).unwrap();

        let mut served = serve_binary(&path);
        let url = format!("http://{}/v1/chat/completions", served.addr);
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (url, ok) = (url.clone(), ok.clone());
            workers.push(tokio::spawn(async move {
                let client = client();
                for _ in 0..10_000 {
                    let req = http::Request::post(&url)
                        .header("authorization", format!("Bearer {KEY}"))
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(
                            hi().to_string(),
                        )))
                        .unwrap();
                    let Ok(resp) = client.request(req).await else {
                        return;
                    };
                    if resp.status() == 200 && resp.headers().contains_key("x-gateway-cost-usd") {
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }));
        }
        while ok.load(std::sync::atomic::Ordering::SeqCst) < 150 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        signal(&served.child, "-KILL");
        let _ = served.child.wait();
        for w in workers {
            let _ = w.await;
        }
        let answered = ok.load(std::sync::atomic::Ordering::SeqCst);
        let on_disk = gateway::ledger::journal::read_state(&state)
            .unwrap()
            .wallets["alpha"]
            .spent;
        // Every answered request is on disk (records reach the OS before the response is
        // sent); at most the 8 in flight were settled without their answer arriving.
        assert!(
            on_disk >= answered * COST,
            "{fsync}: lost spend: {on_disk} < {answered} x {COST}"
        );
        assert!(
            on_disk <= (answered + 8) * COST,
            "{fsync}: {on_disk} vs {answered}"
        );

        // A crash in the middle of a write: a torn frame at the end of the last segment.
        let mut segs: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segs.sort();
        let last = segs.last().unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
        std::io::Write::write_all(&mut f, &[60, 0, 0, 0, 1, 2, 3, 4, b'{', b'"', b't']).unwrap();
        drop(f);

        let mut served = serve_binary(&path);
        let url = format!("http://{}/v1/chat/completions", served.addr);
        let r = post_json(&url, Some(KEY), &hi()).await;
        assert_eq!(r.status, 200);
        let expected = on_disk + COST;
        // `gateway budget` reads the state directory while the server runs.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["budget", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("alpha "))
            .unwrap_or_else(|| panic!("{text}"));
        let spent = format!("${:.4}", expected as f64 / 1e9);
        assert!(
            line.contains(&spent) && line.contains("$100.0000"),
            "{fsync}: {line} (want {spent})"
        );

        signal(&served.child, "-TERM");
        assert!(served.child.wait().unwrap().success());
        assert!(
            state.join("snapshot.json").exists(),
            "compacted at shutdown"
        );
        let after = gateway::ledger::journal::read_state(&state).unwrap();
        assert_eq!(after.wallets["alpha"].spent, expected);
        assert_eq!(after.torn, 0, "the torn segment was compacted away");
    }
}
