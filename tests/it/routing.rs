//! Routing and resilience: retries, fallbacks, cooldowns, key rotation, strategies, budgets,
//! against mock upstreams that fail on cue.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

async fn gw(ups: &[&MockHandle], model_extra: &str, rest: &str) -> Gateway {
    spawn_gateway_env(
        &multi_config(ups, model_extra, rest),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await
}

async fn chat_m(gw: &Gateway) -> Reply {
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), &m_body()).await
}

#[tokio::test]
async fn a_429_moves_on_at_once_and_the_deployment_cools_down_then_is_probed() {
    let a = MockUpstream::openai()
        .fail_n_with(1, 429, RATE_LIMITED, &[("retry-after", "1")])
        .start()
        .await;
    let b = MockUpstream::openai().start().await;
    let gw = gw(&[&a, &b], "", "").await;

    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "the client never sees the 429");
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!(r.header("x-gateway-attempts"), Some("2"));
    assert_eq!((a.requests().len(), b.requests().len()), (1, 1));

    // While p0 cools down (Retry-After: 1 s) it is skipped.
    let r = chat_m(&gw).await;
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!(a.requests().len(), 1);
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"gateway_deployment_cooldown{deployment="p0/up-m"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"gateway_upstream_requests_total{class="rate_limited",deployment="p0/up-m",provider="p0"} 1"#), "{text}");

    // After it, one probe goes to p0; it succeeds and p0 is first again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = chat_m(&gw).await;
    assert_eq!(r.header("x-gateway-deployment"), Some("p0/up-m"));
    assert_eq!(a.requests().len(), 2);
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_deployment_cooldown{deployment="p0/up-m"} 0"#));
}

#[tokio::test]
async fn server_errors_are_retried_on_the_same_deployment_after_backoff() {
    for status in [500, 503, 529] {
        let a = MockUpstream::openai()
            .fail_n(2, status, r#"{"error":{"message":"busy"}}"#)
            .start()
            .await;
        let gw = gw(&[&a], "", "").await;
        let r = chat_m(&gw).await;
        assert_eq!(r.status, 200, "status {status}");
        assert_eq!(r.header("x-gateway-attempts"), Some("3"));
        assert_eq!(
            a.requests().len(),
            3,
            "one request per attempt, never duplicated"
        );
    }
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_error_is_returned_with_its_class() {
    let a = MockUpstream::openai()
        .reply(503, r#"{"error":{"message":"overloaded"}}"#)
        .start()
        .await;
    let b = MockUpstream::openai()
        .reply(500, r#"{"error":{"message":"boom"}}"#)
        .start()
        .await;
    let gw = gw(&[&a, &b], "", "").await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-gateway-attempts"), Some("3"));
    assert_eq!(a.requests().len() + b.requests().len(), 3);
    assert!(r.header("x-gateway-error-class").is_some());
}

#[tokio::test]
async fn bad_requests_are_not_retried() {
    let a = MockUpstream::openai()
        .reply(
            400,
            r#"{"error":{"message":"Invalid 'temperature'","code":"invalid_value"}}"#,
        )
        .start()
        .await;
    let b = MockUpstream::openai().start().await;
    let gw = gw(&[&a, &b], "", "").await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-gateway-error-class"), Some("bad_request"));
    assert_eq!(r.header("x-gateway-attempts"), Some("1"));
    assert_eq!((a.requests().len(), b.requests().len()), (1, 0));

    let a = MockUpstream::openai().reply(400, r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#).start().await;
    let gw2 = self::gw(&[&a, &b], "", "").await;
    let r = chat_m(&gw2).await;
    assert_eq!(r.header("x-gateway-error-class"), Some("context_length"));
    assert_eq!(b.requests().len(), 0);
}

#[tokio::test]
async fn quota_403_and_permission_403_are_told_apart() {
    let quota = MockUpstream::openai().fail_n(1, 403, r#"{"error":{"message":"You exceeded your current quota","code":"insufficient_quota"}}"#).start().await;
    let denied = MockUpstream::openai()
        .fail_n(
            1,
            403,
            r#"{"error":{"message":"Project does not have access to model up-m"}}"#,
        )
        .start()
        .await;
    let ok = MockUpstream::openai().start().await;
    let gw = gw(&[&quota, &denied, &ok], "", "").await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "both 403s are routed around");
    assert_eq!(r.header("x-gateway-deployment"), Some("p2/up-m"));
    let text = metrics(&gw).await;
    assert!(text.contains(r#"gateway_upstream_requests_total{class="rate_limited",deployment="p0/up-m",provider="p0"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"gateway_upstream_requests_total{class="auth",deployment="p1/up-m",provider="p1"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn connection_refused_and_first_byte_timeout_fall_through() {
    let port = closed_port().await;
    let slow = MockUpstream::openai().hang().start().await;
    let ok = MockUpstream::openai().start().await;
    let mut cfg = multi_config(&[&slow, &ok], "", "");
    cfg = cfg.replace(
        "backoff_max_ms = 20",
        "backoff_max_ms = 20\nmax_attempts = 4",
    );
    // The hanging deployment has its own first-byte timeout.
    cfg = cfg.replace(
        "{ provider = \"p0\", model = \"up-m\" }",
        "{ provider = \"p0\", model = \"up-m\", timeout_secs = 1 }",
    );
    // A first deployment on a port where nothing listens.
    cfg = cfg.replace(
        "[[models]]",
        &format!("[[providers]]\nname = \"dead\"\nkind = \"openai\"\nbase_url = \"http://{port}/v1\"\n\n[[models]]"),
    );
    cfg = cfg.replace(
        "deployments = [",
        "deployments = [{ provider = \"dead\", model = \"up-m\" }, ",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!(r.header("x-gateway-attempts"), Some("3"));
    let text = metrics(&gw).await;
    assert!(
        text.contains(r#"class="connect",deployment="dead/up-m""#),
        "{text}"
    );
    assert!(
        text.contains(r#"class="timeout",deployment="p0/up-m""#),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_broken_after_the_first_byte_is_not_retried() {
    // The upstream sends two frames and then the connection ends without [DONE].
    let frames = stream_frames(&["partial"], false);
    let cut = frames[..2].to_vec();
    let a = MockUpstream::openai()
        .stream(cut, Duration::ZERO)
        .start()
        .await;
    let b = MockUpstream::openai().start().await;
    let gw = gw(&[&a, &b], "", "").await;
    let mut body = m_body();
    body["stream"] = json!(true);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("partial"));
    assert!(
        !text.contains("[DONE]"),
        "never a clean-looking end: {text}"
    );
    assert_eq!(
        b.requests().len(),
        0,
        "no retry once bytes went to the client"
    );
}

#[tokio::test]
async fn fallback_groups_take_over_and_are_counted() {
    let a = MockUpstream::openai().reply(503, "{}").start().await;
    let b = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&a, &b], "fallbacks = [\"backup\"]", "")
        .replace("deployments = [{ provider = \"p0\", model = \"up-m\" }, { provider = \"p1\", model = \"up-m\" }]", "deployments = [{ provider = \"p0\", model = \"up-m\" }]")
        .replace("[[projects]]", "[[models]]\nname = \"backup\"\ndeployments = [{ provider = \"p1\", model = \"up-backup\" }]\n\n[[projects]]");
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-backup"));
    assert_eq!(b.last().json()["model"], "up-backup");
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_fallbacks_total{from="m",to="backup"} 1"#));
}

#[tokio::test]
async fn a_rate_limited_key_rests_while_the_pool_carries_on() {
    let a = MockUpstream::openai()
        .fail_n_with(1, 429, RATE_LIMITED, &[("retry-after", "30")])
        .start()
        .await;
    let cfg = multi_config(&[&a], "", "").replace(
        "api_key_env = \"UPSTREAM_KEY\"",
        "api_key_env = [\"KEY_A\", \"KEY_B\"]",
    );
    let gw = spawn_gateway_env(&cfg, &[("KEY_A", "sk-a"), ("KEY_B", "sk-b")]).await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-gateway-attempts"), Some("2"));
    for _ in 0..3 {
        assert_eq!(chat_m(&gw).await.status, 200);
    }
    let keys: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(keys[0], "Bearer sk-a");
    assert!(
        keys[1..].iter().all(|k| k == "Bearer sk-b"),
        "sk-a rests after its 429: {keys:?}"
    );
}

#[tokio::test]
async fn the_retry_budget_caps_amplification_in_a_total_outage() {
    let a = MockUpstream::openai().reply(500, "{}").start().await;
    let cfg = multi_config(&[&a], "", "").replace(
        "backoff_max_ms = 20",
        "backoff_max_ms = 20\nmax_attempts = 5\nretry_budget_min = 3\nretry_budget_ratio = 0.1\ncooldown_failures = 1000",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    for _ in 0..10 {
        assert_eq!(chat_m(&gw).await.status, 502);
    }
    // 10 requests: at most 3 borrowed retries plus 10 x 0.1 earned.
    let sent = a.requests().len();
    assert!(
        sent <= 10 + 3 + 1,
        "{sent} upstream requests for 10 client requests"
    );
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_retries_total{reason="budget_exhausted"}"#));
}

#[tokio::test]
async fn weighted_routing_follows_the_weights() {
    let a = MockUpstream::openai().start().await;
    let b = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&a, &b], "strategy = \"weighted\"", "").replace(
        "{ provider = \"p0\", model = \"up-m\" }",
        "{ provider = \"p0\", model = \"up-m\", weight = 3 }",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    for _ in 0..200 {
        assert_eq!(chat_m(&gw).await.status, 200);
    }
    let share = a.requests().len() as f64 / 200.0;
    assert!(
        (0.62..=0.88).contains(&share),
        "p0 got {share} of the traffic, expected about 0.75"
    );
}

#[tokio::test]
async fn round_robin_rotates() {
    let a = MockUpstream::openai().start().await;
    let b = MockUpstream::openai().start().await;
    let gw = gw(&[&a, &b], "strategy = \"round-robin\"", "").await;
    for _ in 0..6 {
        chat_m(&gw).await;
    }
    assert_eq!((a.requests().len(), b.requests().len()), (3, 3));
}

#[tokio::test]
async fn a_provider_can_be_pinned_when_the_project_allows_it() {
    let a = MockUpstream::openai().start().await;
    let b = MockUpstream::openai().start().await;
    let pinned = |gw: &Gateway, p: &'static str| {
        let req = http::Request::post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {KEY}"))
            .header("x-gateway-provider", p)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                m_body().to_string(),
            )))
            .unwrap();
        send(req)
    };
    let gw1 = gw(&[&a, &b], "", "allow_provider_pin = true").await;
    let r = pinned(&gw1, "p1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    assert_eq!((a.requests().len(), b.requests().len()), (0, 1));
    assert_eq!(pinned(&gw1, "nope").await.status, 400);

    let gw2 = gw(&[&a, &b], "", "").await;
    let r = pinned(&gw2, "p1").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "pin_not_allowed");
}

/// Three deployments: cheap but text-only with a small context window, mid-priced with
/// vision, and expensive with everything.
fn priced_config(cheap: &MockHandle, mid: &MockHandle, dear: &MockHandle) -> String {
    multi_config(&[cheap, mid, dear], "strategy = \"least-cost\"", "")
        .replace(
            "{ provider = \"p0\", model = \"up-m\" }",
            "{ provider = \"p0\", model = \"up-m\", price = { input = 0.1, output = 0.4 }, capabilities = [\"tools\", \"json\", \"streaming\"], context_window = 1000 }",
        )
        .replace(
            "{ provider = \"p1\", model = \"up-m\" }",
            "{ provider = \"p1\", model = \"up-m\", price = { input = 1.0, output = 4.0 } }",
        )
        .replace(
            "{ provider = \"p2\", model = \"up-m\" }",
            "{ provider = \"p2\", model = \"up-m\", price = { input = 5.0, output = 15.0 } }",
        )
}

#[tokio::test]
async fn least_cost_picks_the_cheapest_deployment_that_can_serve_the_request() {
    let (cheap, mid, dear) = (
        MockUpstream::openai().start().await,
        MockUpstream::openai().start().await,
        MockUpstream::openai().start().await,
    );
    let gw = spawn_gateway_env(
        &priced_config(&cheap, &mid, &dear),
        &[("UPSTREAM_KEY", UPSTREAM_KEY)],
    )
    .await;
    let url = gw.url("/v1/chat/completions");

    let r = chat_m(&gw).await;
    assert_eq!(
        r.header("x-gateway-deployment"),
        Some("p0/up-m"),
        "plain text goes to the cheapest"
    );

    let image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = post_json(&url, Some(KEY), &image).await;
    assert_eq!(
        r.header("x-gateway-deployment"),
        Some("p1/up-m"),
        "an image skips the text-only one"
    );
    assert_eq!(
        cheap.requests().len(),
        1,
        "the image never reached the text-only deployment"
    );

    let long =
        json!({"model": "m", "messages": [{"role": "user", "content": "word ".repeat(2000)}]});
    let r = post_json(&url, Some(KEY), &long).await;
    assert_eq!(
        r.header("x-gateway-deployment"),
        Some("p1/up-m"),
        "a large prompt skips the small window"
    );
    assert_eq!(dear.requests().len(), 0);
}

#[tokio::test]
async fn a_request_no_deployment_can_serve_gets_a_clear_400() {
    let a = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&a], "", "").replace(
        "{ provider = \"p0\", model = \"up-m\" }",
        "{ provider = \"p0\", model = \"up-m\", capabilities = [\"streaming\"] }",
    );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_by_model");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vision"));
    assert!(
        a.requests().is_empty(),
        "images are never silently dropped or sent where unsupported"
    );
}

#[tokio::test]
async fn prompts_too_long_or_refused_switch_to_the_groups_set_aside_for_that() {
    let small = MockUpstream::openai()
        .reply(400, r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#)
        .start()
        .await;
    let big = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&small, &big], "context_window_fallbacks = [\"big\"]\ncontent_policy_fallbacks = [\"big\"]", "")
        .replace(
            "deployments = [{ provider = \"p0\", model = \"up-m\" }, { provider = \"p1\", model = \"up-m\" }]",
            "deployments = [{ provider = \"p0\", model = \"up-m\" }]",
        )
        .replace("[[projects]]", "[[models]]\nname = \"big\"\ndeployments = [{ provider = \"p1\", model = \"up-big\" }]\n\n[[projects]]");
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-big"));
    assert_eq!(big.last().json()["model"], "up-big");
    assert!(metrics(&gw)
        .await
        .contains(r#"gateway_fallbacks_total{from="m",to="big"} 1"#));
}

#[tokio::test]
async fn least_latency_prefers_the_faster_deployment() {
    let slow = MockUpstream::openai()
        .delay(Duration::from_millis(60))
        .start()
        .await;
    let fast = MockUpstream::openai().start().await;
    let gw = gw(&[&slow, &fast], "strategy = \"least-latency\"", "").await;
    for _ in 0..40 {
        assert_eq!(chat_m(&gw).await.status, 200);
    }
    // Each is measured once, then the fast one wins, bar the occasional exploration.
    assert!(
        fast.requests().len() >= 32,
        "fast got {} of 40",
        fast.requests().len()
    );
    assert!(!slow.requests().is_empty());
}

#[tokio::test]
async fn least_busy_spreads_concurrent_requests() {
    let a = MockUpstream::openai()
        .delay(Duration::from_millis(100))
        .start()
        .await;
    let b = MockUpstream::openai()
        .delay(Duration::from_millis(100))
        .start()
        .await;
    let gw = gw(&[&a, &b], "strategy = \"least-busy\"", "").await;
    let url = gw.url("/v1/chat/completions");
    let mut handles = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            post_json(&url, Some(KEY), &m_body()).await
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap().status, 200);
    }
    let (na, nb) = (a.requests().len(), b.requests().len());
    assert_eq!(na + nb, 8);
    assert!(
        na >= 3 && nb >= 3,
        "{na} / {nb}: in-flight requests are spread"
    );
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_when_there_is_nowhere_else_to_go() {
    let a = MockUpstream::openai()
        .fail_n_with(1, 429, RATE_LIMITED, &[("retry-after", "1")])
        .start()
        .await;
    let gw = gw(&[&a], "", "").await;
    let started = std::time::Instant::now();
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-attempts"), Some("2"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited as asked"
    );
    // A longer Retry-After than routing.max_retry_after_secs goes back to the client.
    let b = MockUpstream::openai()
        .fail_n_with(1, 429, RATE_LIMITED, &[("retry-after", "60")])
        .start()
        .await;
    let gw = self::gw(&[&b], "", "").await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(b.requests().len(), 1);
}

#[tokio::test]
async fn an_unknown_upstream_model_is_not_retried_on_the_same_deployment() {
    let a = MockUpstream::openai()
        .reply(
            404,
            r#"{"error":{"message":"The model `up-m` does not exist","code":"model_not_found"}}"#,
        )
        .start()
        .await;
    let gw = gw(&[&a], "", "").await;
    let r = chat_m(&gw).await;
    assert_eq!(r.status, 404);
    assert_eq!(a.requests().len(), 1);
}

#[tokio::test]
async fn a_deployment_can_have_its_own_key_pool() {
    let a = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&a, &a], "strategy = \"round-robin\"", "").replace(
        "{ provider = \"p1\", model = \"up-m\" }",
        "{ provider = \"p0\", model = \"up-m-own\", api_key_env = \"OWN_KEY\" }",
    );
    let gw = spawn_gateway_env(
        &cfg,
        &[("UPSTREAM_KEY", UPSTREAM_KEY), ("OWN_KEY", "sk-own")],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(chat_m(&gw).await.status, 200);
    }
    let seen: Vec<(String, String)> = a
        .requests()
        .iter()
        .map(|r| {
            (
                r.json()["model"].as_str().unwrap().to_string(),
                r.header("authorization").unwrap().to_string(),
            )
        })
        .collect();
    for (model, auth) in &seen {
        let want = if model == "up-m-own" {
            "Bearer sk-own".to_string()
        } else {
            format!("Bearer {UPSTREAM_KEY}")
        };
        assert_eq!(auth, &want, "{seen:?}");
    }
    assert!(seen.iter().any(|(m, _)| m == "up-m-own") && seen.iter().any(|(m, _)| m == "up-m"));
}

#[tokio::test]
async fn a_prompt_too_big_for_every_regular_deployment_goes_to_the_long_context_group() {
    let small = MockUpstream::openai().start().await;
    let big = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&small, &big], "context_window_fallbacks = [\"big\"]", "")
        .replace(
            "deployments = [{ provider = \"p0\", model = \"up-m\" }, { provider = \"p1\", model = \"up-m\" }]",
            "deployments = [{ provider = \"p0\", model = \"up-m\", context_window = 1000 }]",
        )
        .replace("[[projects]]", "[[models]]\nname = \"big\"\ndeployments = [{ provider = \"p1\", model = \"up-big\", context_window = 200000 }]\n\n[[projects]]");
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let long =
        json!({"model": "m", "messages": [{"role": "user", "content": "word ".repeat(2000)}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &long).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-big"));
    assert!(small.requests().is_empty());
}

#[tokio::test]
async fn projects_with_regions_only_reach_deployments_there() {
    let us = MockUpstream::openai().start().await;
    let eu = MockUpstream::openai().start().await;
    let cfg = multi_config(&[&us, &eu], "", "regions = [\"eu\"]")
        .replace(
            "{ provider = \"p0\", model = \"up-m\" }",
            "{ provider = \"p0\", model = \"up-m\", region = \"us\" }",
        )
        .replace(
            "{ provider = \"p1\", model = \"up-m\" }",
            "{ provider = \"p1\", model = \"up-m\", region = \"eu\" }",
        );
    let gw = spawn_gateway_env(&cfg, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    for _ in 0..3 {
        let r = chat_m(&gw).await;
        assert_eq!(r.header("x-gateway-deployment"), Some("p1/up-m"));
    }
    assert!(
        us.requests().is_empty(),
        "nothing left the project's region"
    );
    // A bare provider/model string has no region: refused for such a project.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &json!({"model": "p0/up-m", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(us.requests().is_empty());
}

/// Deployments that declare nothing inherit what the built-in model table knows of their
/// upstream model: an image goes past a text-only model to a vision one, and a `max_tokens`
/// above every deployment's output limit is a 400 before anything is sent.
#[tokio::test]
async fn undeclared_capabilities_come_from_the_built_in_model_table() {
    let up = MockUpstream::openai().start().await;
    let toml = format!(
        r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "http://{}/v1"

[[models]]
name = "chat"
strategy = "priority"
deployments = [
  {{ provider = "up", model = "gpt-3.5-turbo-0125" }},
  {{ provider = "up", model = "gpt-4o-2024-08-06" }},
]

[[models]]
name = "old"
deployments = [{{ provider = "up", model = "gpt-3.5-turbo" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    );
    let gw = spawn_gateway(&toml).await;
    let image = |model: &str| {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    };
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &image("chat")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().json()["model"], "gpt-4o-2024-08-06");

    let sent = up.requests().len();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &image("old")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_by_model");
    assert!(r.text().contains("vision"), "{}", r.text());

    let mut big = chat_body("hi");
    big["model"] = "chat".into();
    big["max_tokens"] = 50_000.into();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &big).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("output tokens"), "{}", r.text());
    assert_eq!(up.requests().len(), sent, "refused requests are not sent");
}
