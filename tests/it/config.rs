//! Config validation: every problem reported at once, with its TOML path.

use crate::support::*;

#[test]
fn every_problem_is_listed_with_its_path() {
    let toml = r#"
[server]
listen = "not an address"
max_body_bytes = 0

[[providers]]
name = "openai"
kind = "openai"
api_key_env = "DEFINITELY_UNSET_GATEWAY_TEST_VAR"

[[providers]]
name = "openai"
kind = "openai"
base_url = "ftp://example.com"

[[models]]
name = "gpt-4o"
deployments = [{ provider = "nowhere", model = "gpt-4o" }]

[[models]]
name = "empty"
deployments = []

[[projects]]
name = "p"
keys = ["plaintext-key", "sha256:1234"]
"#;
    let errs = runtime_from(toml, &[]).expect_err("config must be rejected");
    let all = errs.join("\n");
    for needle in [
        "server.listen",
        "server.max_body_bytes",
        "providers[0].api_key_env: environment variable \"DEFINITELY_UNSET_GATEWAY_TEST_VAR\" is not set (provider \"openai\")",
        "providers[1].name: duplicate provider name",
        "providers[1].base_url",
        "models[0].deployments[0].provider: unknown provider \"nowhere\"",
        "models[1].deployments: at least one deployment",
        "projects[0].keys[0]",
        "projects[0].keys[1]",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(errs.len() >= 9, "{all}");
}

#[test]
fn unknown_fields_and_wrong_types_are_rejected_with_their_path() {
    let errs =
        runtime_from("[server]\nlisten_adress = \"127.0.0.1:1\"\n", &[]).expect_err("rejected");
    assert!(errs.join("\n").contains("listen_adress"), "{errs:?}");
    let errs = runtime_from(
        "[[providers]]\nname = \"x\"\nkind = \"carrier-pigeon\"\n",
        &[],
    )
    .expect_err("rejected");
    assert!(errs.join("\n").contains("providers"), "{errs:?}");
    let errs = runtime_from("[server]\nmax_body_bytes = \"lots\"\n", &[]).expect_err("rejected");
    assert!(
        errs.join("\n").contains("server.max_body_bytes"),
        "{errs:?}"
    );
}

#[test]
fn a_key_belongs_to_one_project() {
    let h = hashed("sk-shared");
    let toml = format!("[[projects]]\nname = \"a\"\nkeys = [\"{h}\"]\n[[projects]]\nname = \"b\"\nkeys = [\"{h}\"]\n");
    let errs = runtime_from(&toml, &[]).expect_err("rejected");
    assert!(errs.join("\n").contains("projects[1].keys[0]"), "{errs:?}");
}

#[test]
fn secrets_never_print() {
    let toml = "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key_env = \"K\"\n";
    let rt = runtime_from(toml, &[("K", "sk-very-secret-value")]).expect("valid");
    let dump = format!("{rt:?}");
    assert!(!dump.contains("sk-very-secret-value"), "{dump}");
}

#[test]
fn the_shipped_configs_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rt = gateway::cli::load_runtime(&std::path::Path::new(root).join("gateway.toml"))
        .expect("gateway.toml is valid");
    assert!(
        rt.authenticate("sk-gateway-demo").is_some(),
        "the documented demo key works"
    );
    assert_eq!(rt.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(rt.server.admin_listen.to_string(), "127.0.0.1:9090");
    assert!(rt.model("gpt-4o-mini").is_some() && rt.model("text-embedding-3-small").is_some());
}

#[test]
fn provider_specific_checks() {
    // Real OpenAI without a key cannot work.
    let errs = runtime_from("[[providers]]\nname = \"openai\"\nkind = \"openai\"\n", &[])
        .expect_err("rejected");
    assert!(
        errs.join("\n")
            .contains("providers[0]: provider \"openai\" goes to https://api.openai.com/v1"),
        "{errs:?}"
    );
    // A key that cannot be sent as a header is caught at load, without printing it.
    let errs = runtime_from(
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        &[("K", "sk-a\nb")],
    )
    .expect_err("rejected");
    assert!(
        errs.join("\n").contains("not allowed in an HTTP header"),
        "{errs:?}"
    );
    assert!(!errs.join("\n").contains("sk-a"), "{errs:?}");
    // A keyless OpenAI-compatible server (Ollama, vLLM) is fine.
    runtime_from("[[providers]]\nname = \"ollama\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:11434/v1\"\n", &[]).expect("valid");
    // A mock's failure status must be an error status; openai providers ignore the mock table.
    let errs = runtime_from(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[providers.mock]\nfail_status = 200\n",
        &[],
    )
    .expect_err("rejected");
    assert!(
        errs.join("\n").contains("providers[0].mock.fail_status"),
        "{errs:?}"
    );
    let h = hashed("k").replace("sha256:", "sha256:+");
    let errs = runtime_from(
        &format!(
            "[[projects]]\nname = \"p\"\nkeys = [\"{}\"]\n",
            &h[..h.len() - 1]
        ),
        &[],
    )
    .expect_err("rejected");
    assert!(errs.join("\n").contains("projects[0].keys[0]"), "{errs:?}");
}

#[test]
fn every_example_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = gateway::config::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            // Provider keys come from the environment in production; any value will do here.
            gateway::config::Runtime::build(&cfg, &|_| Some("sk-placeholder".into()))
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example configs found");
}
