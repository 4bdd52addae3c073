//! No error ever quotes a resolved or decrypted value; configs can be checked as written
//! without resolving; redacted views hide literal secrets, reference defaults and URL
//! passwords; and the values that would break the gateway (empty admin keys, huge durations,
//! reserved provider ids) are rejected at validation.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::env;
use truckllm_config::load::check_written;
use truckllm_config::store::file::Validation;
use truckllm_config::{
    ConfigStore, FileConfigStore, FileStoreOptions, LiveConfig, MasterKey, SaveMeta, load_str,
};

const SECRET: &str = "the-master-key-value-Zx9";

fn secret_env() -> HashMap<String, String> {
    let mut vars = env();
    vars.insert("HIDDEN".into(), SECRET.into());
    vars
}

/// One minimal provider, so that configs around it validate.
const PROVIDER: &str =
    "llm_providers:\n  - id: p\n    base_url: https://p/v1\n    keys: [{id: k, secret: s}]\n";

/// Configs whose checked field holds `${HIDDEN}`, and the field the error must name.
fn reference_cases() -> Vec<(String, &'static str)> {
    let r = "\"${HIDDEN}\"";
    vec![
        (format!("server:\n  listen: {r}\n"), "server.listen"),
        (
            format!(
                "llm_providers:\n  - id: p\n    base_url: {r}\n    keys: [{{id: k, secret: s}}]\n"
            ),
            "llm_providers[0].base_url",
        ),
        (
            format!("storage:\n  runtime:\n    type: http\n    addr: {r}\n"),
            "storage.runtime.addr",
        ),
        (
            format!("storage:\n  runtime:\n    type: postgres\n    addr: {r}\n"),
            "storage.runtime.addr",
        ),
        (
            format!("storage:\n  logging:\n    - type: webhook\n      url: {r}\n"),
            "storage.logging[0].url",
        ),
        (
            format!("{PROVIDER}aliases:\n  fast: [{r}]\n"),
            "aliases.fast[0]",
        ),
        (
            format!("{PROVIDER}api_keys:\n  - id: c\n    key: x\n    allowed_models: [{r}]\n"),
            "api_keys[0].allowed_models[0]",
        ),
        (
            format!("{PROVIDER}api_keys:\n  - id: c\n    key_sha256: {r}\n"),
            "api_keys[0].key_sha256",
        ),
        (
            format!(
                "llm_providers:\n  - id: {r}\n    base_url: https://p/v1\n    keys: [{{id: k, secret: s}}]\n  - id: {r}\n    base_url: https://p/v1\n    keys: [{{id: k, secret: s}}]\n"
            ),
            "llm_providers[1].id",
        ),
    ]
}

#[test]
fn validation_errors_show_the_reference_never_the_resolved_value() {
    for (yaml, field) in reference_cases() {
        let err = load_str(&yaml, &secret_env(), None)
            .expect_err(field)
            .to_string();
        assert!(!err.contains(SECRET), "{field} leaked the value: {err}");
        assert!(err.contains(field), "{field} is not named: {err}");
        assert!(err.contains("${HIDDEN}"), "{field}: {err}");
    }
}

#[test]
fn validation_errors_never_show_a_decrypted_value() {
    let key = MasterKey::generate();
    let sealed = key.encrypt(SECRET).expect("encrypt");
    let yaml = format!("server:\n  listen: \"{sealed}\"\n");
    let err = load_str(&yaml, &env(), Some(&key))
        .expect_err("not an address")
        .to_string();
    assert!(!err.contains(SECRET), "{err}");
    assert!(
        err.contains("server.listen") && err.contains(&sealed),
        "{err}"
    );
}

#[test]
fn literal_secrets_defaults_and_url_passwords_are_redacted_in_errors() {
    let yaml = "server:\n  admin_key: \"short-literal\"\n";
    let err = load_str(yaml, &env(), None).expect_err("short").to_string();
    assert!(!err.contains("short-literal"), "{err}");
    assert!(err.contains("[REDACTED]"), "{err}");

    let yaml = "storage:\n  runtime:\n    type: http\n    addr: \"ftp://u:pw-secret@h\"\n";
    let err = load_str(yaml, &env(), None)
        .expect_err("not http")
        .to_string();
    assert!(
        !err.contains("pw-secret") && err.contains("storage.runtime.addr"),
        "{err}"
    );

    let yaml = "server:\n  listen: \"${UNSET_LISTEN:-default-secret}\"\n";
    let err = load_str(yaml, &env(), None)
        .expect_err("bad default")
        .to_string();
    assert!(!err.contains("default-secret"), "{err}");
    assert!(err.contains("${UNSET_LISTEN:-[REDACTED]}"), "{err}");
}

#[tokio::test]
async fn a_rejected_reload_does_not_carry_the_resolved_value() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "server:\n  listen: \"127.0.0.1:2906\"\n").expect("config");
    let vars: Arc<HashMap<String, String>> = Arc::new(secret_env());
    let options = FileStoreOptions {
        env: vars.clone(),
        ..FileStoreOptions::default()
    };
    let store = Arc::new(FileConfigStore::new(&path, options));
    let live = LiveConfig::start(store, vars, None).await.expect("start");
    let mut events = live.subscribe();
    std::fs::write(&path, "server:\n  listen: \"${HIDDEN}\"\n").expect("edit");
    let err = live.reload("test").await.expect_err("rejected").to_string();
    assert!(
        !err.contains(SECRET) && err.contains("server.listen"),
        "{err}"
    );
    let event = format!("{:?}", events.recv().await.expect("event"));
    assert!(
        !event.contains(SECRET) && event.contains("Rejected"),
        "{event}"
    );
}

#[test]
fn checking_as_written_resolves_nothing() {
    // References and enc: values are opaque: accepted without an environment or a key.
    let sealed = MasterKey::generate()
        .encrypt("not an address")
        .expect("encrypt");
    for yaml in [
        "server:\n  listen: \"${TRUCKLLM_MASTER_KEY}\"\n".to_owned(),
        format!("server:\n  listen: \"{sealed}\"\n  admin_key: \"{sealed}\"\n"),
        "server:\n  admin_key: \"${NOT_SET_HERE}\"\n".to_owned(),
        "llm_providers:\n  - id: \"${PID}\"\n    base_url: \"${URL}\"\n    keys: [{id: k, secret: \"${S}\"}]\naliases:\n  fast: [\"openai:gpt-4o\"]\n".to_owned(),
    ] {
        check_written(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
    // Literal values are still checked, and malformed references are still errors.
    for (yaml, field) in [
        ("server:\n  listen: nonsense\n", "server.listen"),
        ("server:\n  admin_key: \"\"\n", "server.admin_key"),
        ("server:\n  listen: \"${OPEN\"\n", "server.listen"),
        ("server:\n  listen: \"[REDACTED]\"\n", "server.listen"),
        (
            "llm_providers:\n  - id: _clients\n    base_url: https://p/v1\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].id",
        ),
    ] {
        let err = check_written(yaml).expect_err(yaml).to_string();
        assert!(err.contains(field), "{err}");
    }
}

#[tokio::test]
async fn a_written_only_store_saves_references_it_cannot_resolve() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "server:\n  listen: \"127.0.0.1:2906\"\n").expect("config");
    let options = FileStoreOptions::written_only();
    assert_eq!(options.validation, Validation::Written);
    let store = FileConfigStore::new(&path, options);
    let text = "server:\n  listen: \"${GATEWAY_LISTEN}\"\n  admin_key: \"${ADMIN}\"\n";
    let version = store
        .save_text(text, 1, SaveMeta::default())
        .await
        .expect("opaque references are saved");
    assert_eq!(store.load().await.expect("load").text, text);
    let err = store
        .save_text(
            "server:\n  listen: \"[REDACTED]\"\n",
            version,
            SaveMeta::default(),
        )
        .await
        .expect_err("placeholder");
    assert!(err.to_string().contains("placeholder"), "{err}");
}

#[test]
fn empty_and_short_admin_keys_are_rejected_without_showing_them() {
    for (written, vars) in [
        ("\"\"", env()),
        ("\"${UNSET_ADMIN_KEY:-}\"", env()),
        ("\"${EMPTY_ADMIN_KEY:-}\"", {
            let mut v = env();
            v.insert("EMPTY_ADMIN_KEY".into(), String::new());
            v
        }),
        ("\"fifteen-bytes!!\"", env()),
    ] {
        let yaml = format!("server:\n  admin_key: {written}\n");
        let err = load_str(&yaml, &vars, None).expect_err(written).to_string();
        assert!(
            err.contains("server.admin_key") && err.contains("16 bytes"),
            "{err}"
        );
        assert!(!err.contains("fifteen-bytes"), "{err}");
    }
    let ok = "server:\n  admin_key: \"sixteen-bytes-ok\"\n";
    load_str(ok, &env(), None).expect("16 bytes is enough");
    load_str("server: {}\n", &env(), None).expect("no admin key: the admin API is off");
}

#[test]
fn durations_must_be_finite_and_in_range() {
    let sink = |body: &str| format!("storage:\n  logging:\n    - {body}\n");
    let cases = [
        (
            "policy:\n  retry:\n    deadline_secs: 1e19\n".to_owned(),
            "policy.retry.deadline_secs",
        ),
        (
            "policy:\n  retry:\n    deadline_secs: 86401\n".to_owned(),
            "policy.retry.deadline_secs",
        ),
        (
            "policy:\n  retry:\n    deadline_secs: 0\n".to_owned(),
            "policy.retry.deadline_secs",
        ),
        (
            "policy:\n  cooldown:\n    seconds: 1e300\n".to_owned(),
            "policy.cooldown.seconds",
        ),
        (
            "policy:\n  cooldown:\n    seconds: -1\n".to_owned(),
            "policy.cooldown.seconds",
        ),
        (
            "storage:\n  runtime:\n    call_timeout_ms: 18446744073709551615\n".to_owned(),
            "storage.runtime.call_timeout_ms",
        ),
        (
            "storage:\n  runtime:\n    rollup_keep_secs: 18446744073709551615\n".to_owned(),
            "storage.runtime.rollup_keep_secs",
        ),
        (
            sink("{type: file, path: a.jsonl, max_age_hours: 1e19}"),
            "storage.logging[0].max_age_hours",
        ),
        (
            sink("{type: file, path: a.jsonl, keep_days: 1e19}"),
            "storage.logging[0].keep_days",
        ),
        (
            sink("{type: webhook, url: \"http://h/x\", timeout_ms: 18446744073709551615}"),
            "storage.logging[0].timeout_ms",
        ),
        (
            sink("{type: webhook, url: \"http://h/x\", flush_interval_ms: 18446744073709551615}"),
            "storage.logging[0].flush_interval_ms",
        ),
        (
            sink("{type: pushgateway, url: \"http://h\", interval_secs: 1e19}"),
            "storage.logging[0].interval_secs",
        ),
        (
            sink("{type: pushgateway, url: \"http://h\", timeout_ms: 18446744073709551615}"),
            "storage.logging[0].timeout_ms",
        ),
    ];
    for (yaml, field) in cases {
        let err = load_str(&yaml, &env(), None).expect_err(field).to_string();
        assert!(
            err.contains(field) && err.contains("must be"),
            "{field}: {err}"
        );
    }
    let fine = "policy:\n  retry:\n    deadline_secs: 86400\n  cooldown:\n    seconds: 0\n";
    load_str(fine, &env(), None).expect("a day and zero are in range");
}

#[test]
fn provider_ids_starting_with_underscore_are_reserved() {
    let yaml = "llm_providers:\n  - id: _clients\n    base_url: https://p/v1\n    keys: [{id: k, secret: s}]\n";
    let err = load_str(yaml, &env(), None)
        .expect_err("reserved")
        .to_string();
    assert!(
        err.contains("llm_providers[0].id") && err.contains("reserved"),
        "{err}"
    );
}

#[test]
fn redacted_configs_hide_literal_secrets_defaults_and_url_passwords() {
    let yaml = "server:\n  admin_key: \"${ADMIN:-fallback-admin-secret}\"\nstorage:\n  runtime:\n    type: redis\n    addr: \"redis://:redis-pass@cache:6379\"\n    password: \"literal-redis-pass\"\n  config:\n    addr: \"${CONFIG_URL:-https://u:url-pass@h}\"\nllm_providers:\n  - id: p\n    base_url: https://p/v1\n    keys:\n      - {id: a, secret: \"sk-literal\"}\n      - {id: b, secret: \"${A}sk-mixed${B}\"}\n      - {id: c, secret: \"${KEY_C}\"}\n  - id: aws\n    type: bedrock\n    region: us-east-1\n    keys:\n      - {id: k, access_key_id: \"AKIALITERAL\", secret_access_key: \"aws-secret-literal\", session_token: \"aws-session-literal\"}\n";
    let raw = truckllm_config::parse(yaml).expect("parse");
    let shown = serde_json::to_string(&raw.redacted()).expect("json");
    for hidden in [
        "fallback-admin-secret",
        "redis-pass",
        "url-pass",
        "sk-literal",
        "sk-mixed",
        "AKIALITERAL",
        "aws-secret-literal",
        "aws-session-literal",
    ] {
        assert!(!shown.contains(hidden), "{hidden} shown: {shown}");
    }
    for kept in [
        "${ADMIN:-[REDACTED]}",
        "redis://:[REDACTED]@cache:6379",
        "${CONFIG_URL:-[REDACTED]}",
        "${KEY_C}",
    ] {
        assert!(shown.contains(kept), "{kept} missing: {shown}");
    }
}

#[test]
fn responses_settings_are_checked() {
    let provider = |kind: &str| {
        format!(
            "llm_providers:\n  - id: \"p\"\n    type: \"{kind}\"\n    base_url: \"https://api.example.com/v1\"\n    responses: \"native\"\n    keys: [{{ id: \"k\", secret: \"s\" }}]\n"
        )
    };
    let err = load_str(&provider("anthropic"), &env(), None)
        .expect_err("native on an Anthropic provider")
        .to_string();
    assert!(err.contains("llm_providers[0].responses"), "{err}");
    let config = load_str(&provider("openai"), &env(), None).expect("native on an OpenAI one");
    assert_eq!(
        config.resolved.llm_providers[0].responses,
        truckllm_config::schema::ResponsesMode::Native
    );
    assert_eq!(
        config.resolved.policy.responses_ttl_secs,
        30 * 24 * 3600,
        "30 days"
    );
    let err = load_str("policy:\n  responses_ttl_secs: 0\n", &env(), None)
        .expect_err("no TTL")
        .to_string();
    assert!(err.contains("policy.responses_ttl_secs"), "{err}");
}
