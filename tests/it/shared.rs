//! Several replicas sharing one real Redis (`[state] backend = "redis"`): one wallet under
//! concurrent load from two replicas never overspent, an RPM limit held across three, a 429 on
//! one replica cooling the deployment on the other, Redis killed mid-load under both failure
//! modes (and the spend written back once it returns), spend kept across a replica restart;
//! the store behind TLS with a private CA and with client certificates (mTLS).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::redis::RedisServer;
use crate::support::tls::Pki;
use crate::support::*;

/// $0.001 per token in and out (the same arithmetic as the budget tests).
const PRICING: &str = "[pricing.\"mock/gpt-4o-mini\"]\ninput = 1000.0\noutput = 1000.0\n";
/// What "hi" with max_tokens 10 costs against the mock, and what it reserves.
const COST: u64 = 7_000_000;
const RESERVATION: u64 = 18_000_000;

fn cfg(redis: &RedisServer, project: &str, state: &str) -> String {
    cfg_at(&redis.url(), project, state)
}

fn cfg_at(url: &str, project: &str, state: &str) -> String {
    format!(
        r#"
[server]
request_timeout_secs = 10

[state]
backend = "redis"

[state.redis]
url = "{url}"
key_prefix = "test:"
command_timeout_ms = 200
connect_timeout_ms = 200
probe_interval_ms = 50
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
name = "alpha"
keys = ["{key}"]
{project}

{PRICING}
"#,
        key = hashed(KEY),
    )
}

fn hi() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

async fn chat(gw: &Gateway) -> Reply {
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &hi()).await
}

fn nanos(usd: &str) -> u64 {
    let (whole, frac) = usd.split_once('.').unwrap();
    whole.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
}

/// The project wallet's standing as the shared store has it. A read that fails (a command
/// timeout on a loaded machine, a connection broken by a restart) is tried again for a while.
async fn shared_standing(gw: &Gateway) -> gateway::ledger::Standing {
    let rt = gw.state.runtime();
    let w = rt.spend.projects["alpha"].wallet.clone();
    let shared = gw.state.shared.as_ref().expect("redis backend");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match shared.standings(&[&w]).await {
            Ok(s) => return s[0].clone(),
            Err(e) => assert!(Instant::now() < deadline, "redis answers: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it holds or `secs` pass.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settlements reach the store after the response: waits until nothing is reserved.
async fn settled(gw: &Gateway) -> gateway::ledger::Standing {
    eventually(10, "every reservation settled", || async {
        let s = shared_standing(gw).await;
        s.reserved == 0 && s.inflight == 0
    })
    .await;
    shared_standing(gw).await
}

/// `local_allowance` on: replicas admit from shares of each limit taken from the store.
const ALLOWANCE: &str = "local_allowance = 0.1\nallowance_sync_ms = 50";

#[tokio::test]
async fn two_replicas_under_concurrent_load_never_overspend_one_wallet() {
    never_overspend("").await;
}

#[tokio::test]
async fn with_allowances_two_replicas_never_overspend_one_wallet() {
    never_overspend(ALLOWANCE).await;
}

async fn never_overspend(state: &str) {
    let redis = RedisServer::start().await;
    let limit = 30 * COST;
    let config = cfg(
        &redis,
        "budget = { usd = 0.21, period = \"monthly\" }",
        state,
    );
    let replicas = [
        Arc::new(spawn_gateway(&config).await),
        Arc::new(spawn_gateway(&config).await),
    ];
    let mut tasks = Vec::new();
    for i in 0..300 {
        let gw = replicas[i % 2].clone();
        tasks.push(tokio::spawn(async move { chat(&gw).await }));
    }
    let (mut served, mut charged) = (0u64, 0u64);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                served += 1;
                charged += nanos(r.header("x-gateway-cost-usd").unwrap());
            }
            429 => assert_eq!(r.error_code(), "budget_exceeded", "{}", r.text()),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // Then one at a time, alternating replicas, until refused; then (allowances held by the
    // other replica given back) on one replica until refused: used up to the last reservation.
    for round in 0..2 {
        settled(&replicas[0]).await;
        for i in 0.. {
            let r = chat(&replicas[if round == 0 { i % 2 } else { 0 }]).await;
            if r.status != 200 {
                assert_eq!(r.error_code(), "budget_exceeded");
                break;
            }
            served += 1;
            charged += nanos(r.header("x-gateway-cost-usd").unwrap());
            settled(&replicas[0]).await;
        }
    }
    let s = settled(&replicas[0]).await;
    assert_eq!(s.spent, charged, "the store has every settlement once");
    assert!(s.spent <= limit, "spent {} > limit {limit}", s.spent);
    assert!(
        limit - s.spent < RESERVATION,
        "left {} unused ({served} served)",
        limit - s.spent
    );
    // Both replicas report the same shared figures.
    assert_eq!(shared_standing(&replicas[1]).await.spent, charged);
}

#[tokio::test]
async fn an_rpm_limit_holds_across_three_replicas() {
    rpm_across_three_replicas("").await;
}

#[tokio::test]
async fn with_allowances_an_rpm_limit_holds_across_three_replicas() {
    rpm_across_three_replicas(ALLOWANCE).await;
}

async fn rpm_across_three_replicas(state: &str) {
    let redis = RedisServer::start().await;
    let config = cfg(&redis, "limits = { rpm = 12 }", state);
    let replicas = [
        spawn_gateway(&config).await,
        spawn_gateway(&config).await,
        spawn_gateway(&config).await,
    ];
    let mut ok = 0;
    for i in 0..36 {
        let r = chat(&replicas[i % 3]).await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.error_code(), "rate_limit_rpm");
                assert!(r.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // A bucket of 12 refills one request every 5 s: at most one more in a slow run.
    assert!(
        (12..=13).contains(&ok),
        "{ok} requests passed an rpm limit of 12"
    );
}

#[tokio::test]
async fn a_429_on_one_replica_cools_the_deployment_for_the_other() {
    let redis = RedisServer::start().await;
    let limited = MockUpstream::openai()
        .fail_n_with(
            1,
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            &[("retry-after", "30")],
        )
        .start()
        .await;
    let spare = MockUpstream::openai().start().await;
    let state = format!(
        "\n[state]\nbackend = \"redis\"\n[state.redis]\nurl = \"{}\"\nprobe_interval_ms = 50\n",
        redis.url()
    );
    let config = multi_config(&[&limited, &spare], "", "") + &state;
    let env = [("UPSTREAM_KEY", UPSTREAM_KEY)];
    let a = spawn_gateway_env(&config, &env).await;
    let b = spawn_gateway_env(&config, &env).await;

    let r = post_json(&a.url("/v1/chat/completions"), Some(KEY), &m_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!(limited.requests().len(), 1);

    eventually(10, "replica b sees the cooldown", || async {
        b.state.health.get("p0/up-m").cooling_for().is_some()
    })
    .await;
    let r = post_json(&b.url("/v1/chat/completions"), Some(KEY), &m_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!(r.header("x-gateway-attempts"), Some("1"));
    assert_eq!(
        limited.requests().len(),
        1,
        "the other replica never sent to the cooling deployment"
    );
}

/// Load on `replicas` until `stop` is set; returns (served, charged, statuses seen).
async fn load(
    replicas: Vec<Arc<Gateway>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64, Vec<u16>) {
    let mut workers = Vec::new();
    for w in 0..8 {
        let (replicas, stop) = (replicas.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut served, mut charged, mut seen) = (0u64, 0u64, Vec::new());
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = chat(&replicas[i % replicas.len()]).await;
                i += 1;
                match r.status.as_u16() {
                    200 => {
                        served += 1;
                        charged += nanos(r.header("x-gateway-cost-usd").unwrap());
                    }
                    503 => assert_eq!(r.error_code(), "shared_state_unavailable", "{}", r.text()),
                    other => panic!("unexpected {other}: {}", r.text()),
                }
                if !seen.contains(&r.status.as_u16()) {
                    seen.push(r.status.as_u16());
                }
            }
            (served, charged, seen)
        }));
    }
    let (mut served, mut charged, mut seen) = (0, 0, Vec::new());
    for w in workers {
        let (s, c, v) = w.await.unwrap();
        served += s;
        charged += c;
        for x in v {
            if !seen.contains(&x) {
                seen.push(x);
            }
        }
    }
    (served, charged, seen)
}

/// Two replicas under load; Redis killed once spend is flowing, restarted once both noticed;
/// load stopped once both use it again and every pending settlement is written back.
/// Returns what the clients were charged, the statuses they saw, the replicas and the server.
async fn redis_killed_mid_load(
    mode: &str,
    state: &str,
) -> (u64, Vec<u16>, Vec<Arc<Gateway>>, RedisServer) {
    let mut redis = RedisServer::start().await;
    let config = cfg(
        &redis,
        "budget = { usd = 1000, period = \"monthly\" }",
        &format!("on_failure = \"{mode}\"\n{state}"),
    );
    let replicas = vec![
        Arc::new(spawn_gateway(&config).await),
        Arc::new(spawn_gateway(&config).await),
    ];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = tokio::spawn(load(replicas.clone(), stop.clone()));
    eventually(10, "some spend recorded", || async {
        shared_standing(&replicas[0]).await.spent > 10 * COST
    })
    .await;
    redis.stop();
    eventually(10, "the outage is noticed by both replicas", || async {
        replicas
            .iter()
            .all(|g| !g.state.shared.as_ref().unwrap().is_up())
    })
    .await;
    // Still under load while the store is down (past the half-lease allowances are used for).
    let down_for = if state.is_empty() { 300 } else { 3000 };
    tokio::time::sleep(Duration::from_millis(down_for)).await;
    if mode == "fail_closed" {
        let r = chat(&replicas[0]).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.error_code(), "shared_state_unavailable");
        assert!(r.text().contains("fail closed"), "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    redis.restart().await;
    eventually(10, "both replicas use the store again", || async {
        replicas
            .iter()
            .all(|g| g.state.shared.as_ref().unwrap().is_up())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_, charged, seen) = running.await.unwrap();
    for g in &replicas {
        eventually(10, "pending spend written back", || async {
            !g.state.shared.as_ref().unwrap().has_pending()
        })
        .await;
    }
    (charged, seen, replicas, redis)
}

/// The store has what the clients were charged: nothing lost, nothing twice (a settlement
/// retried after a lost reply finds its reservation gone and charges nothing).
async fn all_spend_is_there(gw: &Gateway, charged: u64) {
    let s = settled(gw).await;
    assert_eq!(s.spent, charged, "store vs what the clients were charged");
    assert_eq!(s.lifetime, charged);
}

#[tokio::test]
async fn redis_killed_mid_load_fail_closed_refuses_then_writes_back() {
    let (charged, seen, replicas, _redis) = redis_killed_mid_load("fail_closed", "").await;
    assert!(seen.contains(&503) && seen.contains(&200), "{seen:?}");
    all_spend_is_there(&replicas[0], charged).await;
    let m = metrics(&replicas[0]).await;
    assert!(m.contains("gateway_shared_state_up 1"), "{m}");
    assert!(
        !m.contains("gateway_shared_state_unavailable_total 0"),
        "{m}"
    );
}

#[tokio::test]
async fn redis_killed_mid_load_fail_open_local_serves_and_reconciles() {
    let (charged, seen, replicas, _redis) = redis_killed_mid_load("fail_open_local", "").await;
    assert_eq!(seen, vec![200], "never refused: {seen:?}");
    all_spend_is_there(&replicas[1], charged).await;
    let m = metrics(&replicas[0]).await;
    assert!(
        !m.contains("gateway_shared_state_fallback_requests_total 0"),
        "{m}"
    );
    assert!(
        !m.contains("gateway_shared_state_written_back_total 0"),
        "{m}"
    );
}

#[tokio::test]
async fn with_allowances_redis_killed_mid_load_serves_from_them_then_refuses_then_charges_all() {
    let (charged, seen, replicas, _redis) = redis_killed_mid_load("fail_closed", ALLOWANCE).await;
    assert!(seen.contains(&503) && seen.contains(&200), "{seen:?}");
    all_spend_is_there(&replicas[0], charged).await;
}

#[tokio::test]
async fn with_allowances_fail_open_local_serves_throughout_and_reconciles() {
    let (charged, seen, replicas, _redis) =
        redis_killed_mid_load("fail_open_local", ALLOWANCE).await;
    assert_eq!(seen, vec![200], "never refused: {seen:?}");
    all_spend_is_there(&replicas[1], charged).await;
}

#[tokio::test]
async fn with_allowances_a_shutdown_charges_what_was_served_and_gives_the_rest_back() {
    let redis = RedisServer::start().await;
    // A long sync interval: what reaches the store is the shutdown's doing.
    let config = cfg(
        &redis,
        "budget = { usd = 1.0, period = \"daily\" }\nlimits = { rpm = 600, tpm = 100000, concurrency = 10 }",
        "local_allowance = 0.2\nallowance_sync_ms = 10000",
    );
    let mut gw = spawn_gateway(&config).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw).await.status, 200);
    }
    // One round trip, for the first request; the others were admitted from the allowance.
    let m = metrics(&gw).await;
    assert!(
        m.contains("gateway_shared_state_allowance_admitted_total 3")
            && m.contains("gateway_shared_state_allowance_top_ups_total 1"),
        "{m}"
    );
    // Held, not yet charged: the store shows the allowance reserved.
    let s = shared_standing(&gw).await;
    assert_eq!(s.spent, 0);
    assert!(s.reserved >= 200_000_000, "{s:?}");
    assert_eq!(s.inflight, 2, "two of ten slots held: {s:?}");
    gw.begin_shutdown().await.unwrap();
    drop(gw);
    let other = spawn_gateway(&config).await;
    eventually(5, "the shutdown charged the store", || async {
        shared_standing(&other).await.spent == 3 * COST
    })
    .await;
    let s = shared_standing(&other).await;
    assert_eq!((s.reserved, s.inflight), (0, 0), "{s:?}");
}

#[tokio::test]
async fn spend_written_back_after_an_outage_is_all_there() {
    let mut redis = RedisServer::start().await;
    let config = cfg(
        &redis,
        "budget = { usd = 1000, period = \"monthly\" }",
        "on_failure = \"fail_open_local\"",
    );
    let gw = spawn_gateway(&config).await;
    let mut charged = 0;
    for _ in 0..5 {
        charged += nanos(chat(&gw).await.header("x-gateway-cost-usd").unwrap());
    }
    settled(&gw).await;
    redis.stop();
    for _ in 0..7 {
        let r = chat(&gw).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += nanos(r.header("x-gateway-cost-usd").unwrap());
    }
    assert!(gw.state.shared.as_ref().unwrap().has_pending());
    redis.restart().await;
    eventually(10, "written back", || async {
        let s = gw.state.shared.as_ref().unwrap();
        s.is_up() && !s.has_pending()
    })
    .await;
    let s = settled(&gw).await;
    assert_eq!(s.spent, charged, "nothing lost, nothing twice");
    assert_eq!(s.lifetime, charged);
}

#[tokio::test]
async fn a_replica_restart_keeps_spend_and_reports_read_the_store() {
    let redis = RedisServer::start().await;
    let config = cfg(&redis, "budget = { usd = 1.0, period = \"daily\" }", "");
    let config = config.replace(
        "request_timeout_secs = 10",
        "request_timeout_secs = 10\nadmin_token_env = \"ADMIN_TOKEN\"",
    );
    let env = [("ADMIN_TOKEN", "admin-token-0123456789")];
    let mut gw = spawn_gateway_env(&config, &env).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw).await.status, 200);
    }
    assert_eq!(settled(&gw).await.spent, 3 * COST);
    gw.begin_shutdown().await.unwrap();
    drop(gw);

    let gw = spawn_gateway_env(&config, &env).await;
    assert_eq!(shared_standing(&gw).await.spent, 3 * COST);
    let r = chat(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(settled(&gw).await.spent, 4 * COST);

    // `/admin/usage` and `gateway budget` read the same figures from the store.
    let r = get(&gw.admin_url("/admin/usage"), Some(env[0].1)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let alpha = &r.json()["wallets"][0];
    assert_eq!(alpha["wallet"], "alpha");
    assert_eq!(alpha["spent_usd"], 0.028);
    let rt = runtime_from(&config, &env).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let ok = gateway::pipeline::budget::print_report(&rt, &mut out).unwrap();
        (ok, String::from_utf8(out).unwrap())
    })
    .await
    .unwrap();
    assert!(out.0, "{}", out.1);
    assert!(
        out.1.contains("alpha") && out.1.contains("$0.0280"),
        "{}",
        out.1
    );
}

/// `[state.redis]` lines for TLS: the CA file and, with `client`, the client certificate pair.
fn tls_lines(pki: &Pki, ca: &str, client: bool) -> String {
    let mut out = format!("ca_file = {:?}\n", pki.path(ca));
    if client {
        out += &format!(
            "client_cert_file = {:?}\nclient_key_file = {:?}\n",
            pki.path("client.pem"),
            pki.path("client.key")
        );
    }
    out
}

#[tokio::test]
async fn replicas_share_spend_over_tls_to_a_server_with_a_private_ca() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, false).await;
    let project = "budget = { usd = 1.0, period = \"daily\" }";
    let config = cfg(&redis, project, &tls_lines(&pki, "ca.pem", false));
    let (a, b) = (spawn_gateway(&config).await, spawn_gateway(&config).await);
    assert_eq!(chat(&a).await.status, 200);
    assert_eq!(settled(&a).await.spent, COST);
    // The other replica reads the same wallet over its own TLS connections, and adds to it.
    assert_eq!(shared_standing(&b).await.spent, COST);
    assert_eq!(chat(&b).await.status, 200);
    assert_eq!(settled(&a).await.spent, 2 * COST);

    // Without the CA, the public roots do not vouch for the server: refused, as configured.
    let untrusting = spawn_gateway(&cfg(&redis, project, "")).await;
    let r = chat(&untrusting).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "shared_state_unavailable");
}

#[tokio::test]
async fn a_server_requiring_client_certificates_admits_only_a_gateway_with_one() {
    let pki = Pki::new();
    let redis = RedisServer::start_tls(&pki, true).await;
    let project = "budget = { usd = 1.0, period = \"daily\" }";

    let without = spawn_gateway(&cfg(&redis, project, &tls_lines(&pki, "ca.pem", false))).await;
    let r = chat(&without).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "shared_state_unavailable");

    let with = spawn_gateway(&cfg(&redis, project, &tls_lines(&pki, "ca.pem", true))).await;
    let r = chat(&with).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(settled(&with).await.spent, COST);
    // Cooldowns travel over a pub/sub connection, made with the same certificates.
    let store = with.state.shared.as_ref().unwrap().store();
    assert!(store.subscribe().await.is_ok());
    let store = without.state.shared.as_ref().unwrap().store();
    assert!(store.subscribe().await.is_err());
}

#[tokio::test]
async fn a_reload_brings_a_rotated_ca_file_to_new_connections() {
    let pki = Pki::new();
    let other = Pki::new();
    let redis = RedisServer::start_tls(&pki, false).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, ca) = (dir.path().join("gateway.toml"), dir.path().join("ca.pem"));
    // First the wrong CA: the store cannot be trusted, requests are refused.
    std::fs::write(&ca, &other.ca_pem).unwrap();
    let state = format!("ca_file = {:?}", ca.to_string_lossy());
    let config = cfg(&redis, "budget = { usd = 1.0, period = \"daily\" }", &state);
    std::fs::write(
        &path,
        config.replace("[server]", "[server]\nwatch_config = false"),
    )
    .unwrap();
    let gw = spawn_gateway_file(&path).await;
    assert_eq!(chat(&gw).await.status, 503);

    // The file is replaced under an unchanged config; a reload reads it again.
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    gateway::reload::reload(&gw.state, "test").unwrap();
    let shared = gw.state.shared.clone().unwrap();
    eventually(10, "the store is reachable with the new CA", || async {
        shared.is_up()
    })
    .await;
    assert_eq!(chat(&gw).await.status, 200);
    assert_eq!(settled(&gw).await.spent, COST);
}

#[test]
fn tls_settings_are_checked_at_load() {
    let pki = Pki::new();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let tls_url = "rediss://127.0.0.1:1/0";
    let problems = |url: &str, state: &str| runtime_from(&cfg_at(url, "", state), &[]).unwrap_err();

    let e = problems(
        tls_url,
        &format!("ca_file = {:?}", garbage.to_string_lossy()),
    );
    assert!(
        e.iter().any(|p| p.starts_with("state.redis.ca_file:")),
        "{e:?}"
    );
    let e = problems(tls_url, &format!("ca_file = {:?}", pki.path("missing.pem")));
    assert!(
        e.iter()
            .any(|p| p.starts_with("state.redis.ca_file: cannot read")),
        "{e:?}"
    );
    // A TLS setting with a plain-text URL is a mistake, not something to ignore.
    let e = problems("redis://127.0.0.1:1/0", &tls_lines(&pki, "ca.pem", false));
    assert!(
        e.iter()
            .any(|p| p.contains("state.redis") && p.contains("rediss://")),
        "{e:?}"
    );
    // The pair goes together, and must fit.
    let e = problems(
        tls_url,
        &format!("client_cert_file = {:?}", pki.path("client.pem")),
    );
    assert!(
        e.iter()
            .any(|p| p.contains("state.redis: client_cert_file and client_key_file go together")),
        "{e:?}"
    );
    let mismatched = format!(
        "client_cert_file = {:?}\nclient_key_file = {:?}",
        pki.path("client.pem"),
        pki.path("server.key")
    );
    let e = problems(tls_url, &mismatched);
    assert!(
        e.iter().any(|p| p.contains("do not form an identity")),
        "{e:?}"
    );
    let e = problems(
        tls_url,
        &format!(
            "client_cert_file = {:?}\nclient_key_file = {:?}",
            pki.path("client.pem"),
            pki.path("ca.pem")
        ),
    );
    assert!(
        e.iter()
            .any(|p| p.starts_with("state.redis.client_key_file:")),
        "{e:?}"
    );
    assert!(runtime_from(&cfg_at(tls_url, "", &tls_lines(&pki, "ca.pem", true)), &[]).is_ok());
}

#[tokio::test]
async fn spend_pending_when_a_replica_is_killed_is_written_back_after_its_restart() {
    let mut redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let served_config = cfg(
        &redis,
        "budget = { usd = 1000, period = \"monthly\" }",
        "on_failure = \"fail_open_local\"",
    )
    .replace(
        "[server]\n",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .replace(
        "[state]\n",
        &format!(
            "[state]\ndir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    );
    std::fs::write(&path, &served_config).unwrap();
    // Reads the store without a state directory of its own.
    let reader = spawn_gateway(&cfg(
        &redis,
        "budget = { usd = 1000, period = \"monthly\" }",
        "",
    ))
    .await;

    let mut served = serve_binary(&path);
    let url = format!("http://{}/v1/chat/completions", served.addr);
    let mut charged = 0;
    for _ in 0..2 {
        let r = post_json(&url, Some(KEY), &hi()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += nanos(r.header("x-gateway-cost-usd").unwrap());
    }
    redis.stop();
    for _ in 0..5 {
        let r = post_json(&url, Some(KEY), &hi()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        charged += nanos(r.header("x-gateway-cost-usd").unwrap());
    }
    let spool = dir.path().join("state").join("shared-pending.json");
    eventually(10, "the pending spend is on disk", || async {
        std::fs::read_to_string(&spool).is_ok_and(|s| s.contains("alpha"))
    })
    .await;
    // Killed with the store still away: nothing gets a chance to write back.
    signal(&served.child, "-KILL");
    let _ = served.child.wait();

    redis.restart().await;
    let mut served = serve_binary(&path);
    eventually(10, "the restarted replica wrote the spend back", || async {
        shared_standing(&reader).await.spent == charged
    })
    .await;
    eventually(5, "and no longer keeps it", || async { !spool.exists() }).await;
    // Written once: it stays that way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = shared_standing(&reader).await;
    assert_eq!((s.spent, s.lifetime), (charged, charged));
    signal(&served.child, "-TERM");
    let _ = served.child.wait();
}

#[tokio::test]
async fn a_killed_replicas_allowance_lapses_and_its_spend_is_charged() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let project = "budget = { usd = 1.0, period = \"monthly\" }\nlimits = { concurrency = 4 }";
    // Streams crawl (a character every 2 s), so one can be in flight when the replica dies.
    let served_config = cfg(
        &redis,
        project,
        "local_allowance = 0.5\nallowance_sync_ms = 50",
    )
    .replace(
        "[server]\n",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .replace(
        "reply = \"hello world!\"",
        "reply = \"hello world!\"\nchunk_chars = 1\nchunk_delay_ms = 2000",
    );
    std::fs::write(&path, &served_config).unwrap();
    let other = spawn_gateway(&cfg(&redis, project, "")).await;

    let mut served = serve_binary(&path);
    let url = format!("http://{}/v1/chat/completions", served.addr);
    let r = post_json(&url, Some(KEY), &hi()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut stream = hi();
    stream["stream"] = json!(true);
    let in_flight = tokio::spawn(async move { post_json(&url, Some(KEY), &stream).await });
    // Once idle, the replica's allowance shrinks to what the stream in flight holds: its
    // reservation and one slot; the finished request is charged.
    eventually(5, "the replica synced", || async {
        let s = shared_standing(&other).await;
        s.spent == COST && s.reserved == RESERVATION && s.inflight == 1
    })
    .await;
    signal(&served.child, "-KILL");
    let _ = served.child.wait();
    let _ = in_flight.await;

    // The lease (25 syncs, at least 5 s) runs out; the next admission anywhere clears it.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let r = chat(&other).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = settled(&other).await;
    assert_eq!(s.spent, 2 * COST, "{s:?}");
    assert_eq!((s.reserved, s.inflight), (0, 0), "{s:?}");
}

#[tokio::test]
async fn with_allowances_a_tpm_limit_counts_the_tokens_used() {
    // A bucket of 100 tokens; "hi" reserves 18 and uses 7. Per request, admission or
    // allowance, the bucket loses what was used: 12 fit (the 13th finds 16 < 18 left), as
    // without allowances.
    let redis = RedisServer::start().await;
    let config = cfg(
        &redis,
        "limits = { tpm = 100 }",
        "local_allowance = 0.5\nallowance_sync_ms = 50",
    );
    let gw = spawn_gateway(&config).await;
    let mut ok = 0;
    for _ in 0..20 {
        let r = chat(&gw).await;
        match r.status.as_u16() {
            200 => ok += 1,
            429 => assert_eq!(r.error_code(), "rate_limit_tpm", "{}", r.text()),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!((11..=13).contains(&ok), "{ok} requests within a TPM of 100");
}
