//! Azure OpenAI: deployment in the URL, api-version, api-key header; OpenAI bodies both ways.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn config(up: &MockHandle) -> String {
    format!(
        r#"
[[providers]]
name = "azure-eu"
kind = "azure"
base_url = "http://{}/openai"
api_key_env = "UPSTREAM_KEY"

[[models]]
name = "gpt-4o"
deployments = [{{ provider = "azure-eu", model = "gpt4o-prod" }}]

[[models]]
name = "embed"
deployments = [{{ provider = "azure-eu", model = "embed-prod" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        hashed(KEY)
    )
}

#[tokio::test]
async fn chat_goes_to_the_deployment_url_with_the_api_key_header() {
    let up = MockUpstream::openai().start().await;
    let gw = spawn_gateway_env(&config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "hello from upstream"
    );
    let got = up.last();
    assert_eq!(got.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(got.query, "api-version=2024-10-21");
    assert_eq!(got.header("api-key"), Some(UPSTREAM_KEY));
    assert!(got.header("authorization").is_none());
    assert_eq!(got.json()["messages"][0]["content"], "hi");
}

#[tokio::test]
async fn streams_and_embeddings_work_too() {
    let up = MockUpstream::openai()
        .stream(stream_frames(&["a", "b"], true), Duration::ZERO)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&up), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(sse_pieces(&r.text()).concat(), "ab");

    let emb = MockUpstream::openai()
        .reply(200, r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],"model":"x","usage":{"prompt_tokens":1,"total_tokens":1}}"#)
        .start()
        .await;
    let gw = spawn_gateway_env(&config(&emb), &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        &json!({"model": "embed", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(emb.last().path, "/openai/deployments/embed-prod/embeddings");
}

#[test]
fn an_azure_provider_needs_its_resource_url() {
    let toml = "[[providers]]\nname = \"az\"\nkind = \"azure\"\napi_key_env = \"K\"\n";
    let errs = runtime_from(toml, &[("K", "x")]).expect_err("rejected");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("providers[0].base_url"), "{errs:?}");
}

/// Entra ID tokens from a file, on the version-less v1 API: the token goes as a bearer, the
/// deployment as `model`, and a token refreshed in the file is used without a restart.
#[tokio::test]
async fn entra_tokens_from_a_file_are_refreshed_on_the_v1_api() {
    let up = MockUpstream::openai().start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("entra-token");
    std::fs::write(&token, "eyJ0eXAi.first-token\n").unwrap();
    let toml = format!(
        r#"
[server]
key_file_check_secs = 1

[[providers]]
name = "azure-entra"
kind = "azure"
base_url = "http://{}/openai"
api_version = "v1"
auth = "entra"
api_key_file = "{}"

[[models]]
name = "gpt-4o"
deployments = [{{ provider = "azure-entra", model = "gpt4o-prod" }}]

[[projects]]
name = "alpha"
keys = ["{}"]
"#,
        up.addr,
        token.display(),
        hashed(KEY)
    );
    let gw = spawn_gateway(&toml).await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = up.last();
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.query, "");
    assert_eq!(got.json()["model"], "gpt4o-prod");
    assert_eq!(
        got.header("authorization"),
        Some("Bearer eyJ0eXAi.first-token")
    );
    assert!(got.header("api-key").is_none());

    std::fs::write(&token, "eyJ0eXAi.second-token").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
        assert_eq!(r.status, 200);
        if up.last().header("authorization") == Some("Bearer eyJ0eXAi.second-token") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refreshed token was never used"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn entra_is_for_azure_only() {
    let errs = runtime_from(
        "[[providers]]\nname = \"o\"\nkind = \"openai\"\nauth = \"entra\"\napi_key_env = \"K\"\n",
        &[("K", "x")],
    )
    .err()
    .unwrap_or_default();
    assert!(errs.join("\n").contains("providers[0].auth"), "{errs:?}");
}
