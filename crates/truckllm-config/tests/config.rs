//! Loading, validating, storing and reloading configs, on a real filesystem.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{EXAMPLE, env, numbered, store_in};
use truckllm_config::schema::{Algorithm, RuntimeKind};
use truckllm_config::store::file::write_atomic;
use truckllm_config::{
    ConfigError, ConfigStore, LiveConfig, MasterKey, ReloadOutcome, SaveMeta, diff, load_str,
};

fn meta() -> SaveMeta {
    SaveMeta::new("test", "change")
}

#[test]
fn the_issue_example_loads_as_written() {
    let loaded = load_str(EXAMPLE, &env(), None).expect("example loads");
    let r = &loaded.resolved;
    assert_eq!(r.server.listen, "127.0.0.1:2906");
    assert_eq!(r.storage.runtime.kind, RuntimeKind::Redis);
    assert_eq!(r.storage.runtime.addr.as_deref(), Some("localhost:6379"));
    assert_eq!(r.llm_providers[0].keys[1].secret.expose(), "sk-two-secret");
    assert_eq!(
        r.llm_providers[0].limits.and_then(|l| l.req_per_min),
        Some(200.0)
    );
    assert_eq!(r.policy.algorithm, Algorithm::Hybrid);
    assert_eq!(
        loaded.raw.llm_providers[0].keys[0].secret.expose(),
        "${OPENAI_KEY_1}"
    );
    let debug = format!("{r:?}");
    assert!(
        !debug.contains("sk-one-secret") && !debug.contains("client-secret"),
        "{debug}"
    );
}

#[test]
fn validation_names_field_line_and_reason() {
    let cases = [
        (
            "llm_providers:\n  - id: a\n    base_url: https://a/v1\n    keys: [{id: k, secret: s}]\n  - id: a\n    base_url: https://b/v1\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[1].id (line 5, column 5): duplicate provider id (as written: \"a\")",
        ),
        (
            "llm_providers:\n  - id: a\n    base_url: not-a-url\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].base_url (line 3, column 5): is not an http:// or https:// URL (as written: \"not-a-url\")",
        ),
        (
            "llm_providers:\n  - id: a\n    base_url: https://a/v1\n    keys: [{id: k, secret: s}]\n    limits:\n      req_per_min: 0\n",
            "llm_providers[0].limits.req_per_min (line 6, column 7): must be a number above 0, got 0",
        ),
        (
            "api_keys:\n  - id: c\n    key: x\n    allowed_providers: [nope]\n",
            "api_keys[0].allowed_providers[0] (line 4, column 25): names a provider that is not configured (as written: \"nope\")",
        ),
        (
            "aliases:\n  fast: [\"ghost:m\"]\n",
            "aliases.fast[0] (line 2, column 10): names a provider that is not configured (as written: \"ghost:m\")",
        ),
        (
            "server:\n  listen: nowhere\n",
            "server.listen (line 2, column 3): is not an address like 127.0.0.1:2906 (as written: \"nowhere\")",
        ),
    ];
    for (yaml, expected) in cases {
        let err = load_str(yaml, &env(), None).expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "want {expected:?}\n got {err}"
        );
    }
}

#[test]
fn unset_variables_are_named_and_encrypted_values_need_the_right_key() {
    let yaml = "server:\n  admin_key: \"${MISSING_ADMIN_KEY}\"\n";
    let err = load_str(yaml, &env(), None).expect_err("unset");
    let text = err.to_string();
    assert!(
        text.contains("MISSING_ADMIN_KEY") && text.contains("server.admin_key (line 2"),
        "{text}"
    );

    let key = MasterKey::generate();
    let sealed = key.encrypt("admin-secret-of-16-bytes").expect("encrypt");
    let yaml = format!("server:\n  admin_key: \"{sealed}\"\n");
    let loaded = load_str(&yaml, &env(), Some(&key)).expect("decrypts");
    assert_eq!(
        loaded
            .resolved
            .server
            .admin_key
            .as_ref()
            .map(|s| s.expose()),
        Some("admin-secret-of-16-bytes")
    );
    assert_eq!(
        loaded.raw.server.admin_key.as_ref().map(|s| s.expose()),
        Some(sealed.as_str())
    );
    let wrong = load_str(&yaml, &env(), Some(&MasterKey::generate())).expect_err("wrong key");
    assert!(
        wrong.to_string().contains("wrong master key")
            && wrong.to_string().contains("server.admin_key"),
        "{wrong}"
    );
    let none = load_str(&yaml, &env(), None).expect_err("no key");
    assert!(none.to_string().contains("TRUCKLLM_MASTER_KEY"), "{none}");
}

#[tokio::test]
async fn saves_keep_references_and_never_write_resolved_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    let v1 = store
        .save_text(EXAMPLE, 0, meta())
        .await
        .expect("first save");
    let mut config = load_str(EXAMPLE, &env(), None).expect("load").raw;
    config.policy.algorithm = Algorithm::RoundRobin;
    let v2 = store.save(&config, v1, meta()).await.expect("typed save");
    let on_disk = std::fs::read_to_string(store.path()).expect("read");
    assert!(
        on_disk.contains("${OPENAI_KEY_1}") && on_disk.contains("round_robin"),
        "{on_disk}"
    );
    for secret in ["sk-one-secret", "sk-two-secret", "client-secret"] {
        assert!(
            !on_disk.contains(secret),
            "resolved secret written: {on_disk}"
        );
    }
    assert_eq!(store.load().await.expect("load").info.version, v2);
}

#[tokio::test]
async fn versions_conflicts_history_diff_and_rollback() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    let stale = store.save_text(&numbered(1), 7, meta()).await;
    assert!(
        matches!(
            stale,
            Err(ConfigError::Conflict {
                expected: 7,
                current: 0
            })
        ),
        "{stale:?}"
    );
    let mut version = 0;
    for n in 1..=8 {
        version = store
            .save_text(
                &numbered(n),
                version,
                SaveMeta::new("alice", format!("edit {n}")),
            )
            .await
            .expect("save");
    }
    assert_eq!(version, 8);
    let conflict = store
        .save_text(&numbered(99), 7, meta())
        .await
        .expect_err("stale version");
    assert!(
        conflict
            .to_string()
            .contains("edits version 7, but the current version is 8"),
        "{conflict}"
    );
    assert_eq!(
        store.load().await.expect("load").text,
        numbered(8),
        "a conflict changes nothing"
    );

    let kept: Vec<u64> = store
        .versions()
        .await
        .expect("versions")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(kept, vec![4, 5, 6, 7, 8], "the last 5 are kept");
    let v5 = store.get(5).await.expect("v5");
    assert_eq!(
        (v5.info.author.as_str(), v5.info.comment.as_str()),
        ("alice", "edit 5")
    );
    assert!(matches!(
        store.get(2).await,
        Err(ConfigError::UnknownVersion(2))
    ));
    let d = diff(&v5, &store.get(6).await.expect("v6"));
    assert!(
        d.contains("-  - id: \"p5-0\"") && d.contains("+  - id: \"p6-0\""),
        "{d}"
    );

    let rolled = store.rollback(5, "bob").await.expect("rollback");
    assert_eq!(rolled, 9);
    let current = store.load().await.expect("load");
    assert_eq!(current.text, numbered(5));
    assert_eq!(current.info.comment, "rollback to version 5");
}

#[tokio::test]
async fn hand_edits_are_adopted_as_new_versions() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    let v1 = store
        .save_text(&numbered(1), 0, meta())
        .await
        .expect("save");
    std::fs::write(store.path(), numbered(2)).expect("edit by hand");
    let current = store.load().await.expect("load");
    assert_eq!(current.info.version, v1 + 1);
    assert_eq!(current.info.author, "file");
    let stale = store.save_text(&numbered(3), v1, meta()).await;
    assert!(
        matches!(stale, Err(ConfigError::Conflict { .. })),
        "the hand edit is not overwritten blindly"
    );
}

#[tokio::test]
async fn backup_and_restore_round_trip_the_history() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    let mut version = 0;
    for n in 1..=3 {
        version = store
            .save_text(&numbered(n), version, meta())
            .await
            .expect("save");
    }
    let backup = dir.path().join("backup.json");
    store.backup(&backup).await.expect("backup");
    store
        .save_text(&numbered(4), version, meta())
        .await
        .expect("later change");

    let other = tempfile::tempdir().expect("dir");
    let restored_store = store_in(other.path(), None);
    assert_eq!(restored_store.restore(&backup).await.expect("restore"), 3);
    assert_eq!(restored_store.load().await.expect("load").text, numbered(3));
    assert_eq!(restored_store.versions().await.expect("versions").len(), 3);
    assert_eq!(store.restore(&backup).await.expect("restore over"), 3);
    assert_eq!(store.load().await.expect("load").text, numbered(3));

    std::fs::write(&backup, "{\"format\":\"something else\"}").expect("damage");
    assert!(store.restore(&backup).await.is_err());
    assert_eq!(
        store.load().await.expect("load").text,
        numbered(3),
        "a bad backup changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_against_one_version_let_exactly_one_win() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(store_in(dir.path(), None));
    let base = store
        .save_text(&numbered(0), 0, meta())
        .await
        .expect("save");
    let tasks: Vec<_> = (1..=12)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.save_text(&numbered(n), base, meta()).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => wins += 1,
            Err(ConfigError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.load().await.expect("load").info.version, base + 1);
}

#[tokio::test]
async fn a_broken_file_is_rejected_and_the_running_config_stays() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    store
        .save_text(&numbered(1), 0, meta())
        .await
        .expect("save");
    let live = LiveConfig::start(Arc::new(store.clone()), Arc::new(env()), None)
        .await
        .expect("start");
    assert_eq!(live.current().resolved.llm_providers[0].id, "p1-0");

    write_atomic(store.path(), b"server:\n  listen: [broken\n").expect("break the file");
    let err = live.reload("test").await.expect_err("broken");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(
        live.current().resolved.llm_providers[0].id,
        "p1-0",
        "old config kept"
    );

    write_atomic(store.path(), numbered(2).as_bytes()).expect("fix the file");
    let outcome = live.reload("test").await.expect("valid again");
    assert!(
        matches!(outcome, ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(live.current().resolved.llm_providers[0].id, "p2-0");
    assert!(matches!(
        live.reload("test").await,
        Ok(ReloadOutcome::Unchanged { .. })
    ));
}

#[tokio::test]
async fn a_file_change_is_picked_up_by_the_watcher() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    store
        .save_text(&numbered(1), 0, meta())
        .await
        .expect("save");
    let live = LiveConfig::start(Arc::new(store.clone()), Arc::new(env()), None)
        .await
        .expect("start");
    let _watch = live.watch().expect("watch");
    write_atomic(store.path(), numbered(2).as_bytes()).expect("edit like an editor would");
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.current().resolved.llm_providers[0].id != "p2-0" {
        assert!(Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(live.current().version >= 2);
}

#[test]
fn the_shipped_json_schema_is_current() {
    let shipped = include_str!("../../../configs/config.schema.json");
    let generated = serde_json::to_string_pretty(&truckllm_config::json_schema()).expect("json");
    assert_eq!(
        shipped.trim(),
        generated.trim(),
        "regenerate with `truckllm config schema > configs/config.schema.json`"
    );
}

#[test]
fn the_commented_example_config_is_valid() {
    let example = include_str!("../../../configs/config.example.yaml");
    let loaded = load_str(example, &env(), None).expect("configs/config.example.yaml loads");
    assert!(!loaded.resolved.llm_providers.is_empty());
}

mod never_panics {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn on_arbitrary_text(text in ".{0,400}") {
            let _ = truckllm_config::load_str(&text, &super::env(), None);
            let _ = truckllm_config::load::check_written(&text);
            let _ = truckllm_config::secret::shown(&text);
        }

        #[test]
        fn on_yaml_shaped_text(lines in proptest::collection::vec(
            "( {0,6})(-( )?)?[a-z_]{0,12}(: ?)?(\\$\\{[A-Z_]{0,8}(:-[a-z]{0,3})?\\}?|[0-9.e+-]{0,6}|\\[|\\{|\"|'|&a|\\*a|enc:v1:[A-Za-z0-9+/=]{0,20})?",
            0..20,
        )) {
            let text = lines.join("\n");
            let _ = truckllm_config::load_str(&text, &super::env(), None);
            let _ = truckllm_config::load::check_written(&text);
        }
    }
}

/// Issue 6's `storage.logging` block, verbatim.
const LOGGING: &str = r#"
storage:
  logging:
    - type: "file"
      path: "./logs/requests.jsonl"
      audit_path: "./logs/audit.jsonl"
    - type: "webhook"
      url: "http://127.0.0.1:9000/hook"
      secret: "${WEBHOOK_SECRET}"
    - type: "pushgateway"
      url: "http://127.0.0.1:9091"
      job: "truckllm"
"#;

#[test]
fn the_logging_sinks_load_as_written_with_defaults_and_reject_bad_settings() {
    use truckllm_config::schema::{FsyncPolicy, LogSinkConfig};
    let mut vars = env();
    vars.insert("WEBHOOK_SECRET".into(), "hook-secret".into());
    let loaded = load_str(LOGGING, &vars, None).expect("the issue's logging block loads");
    let sinks = &loaded.resolved.storage.logging;
    let [
        LogSinkConfig::File(file),
        LogSinkConfig::Webhook(hook),
        LogSinkConfig::Pushgateway(push),
    ] = sinks.as_slice()
    else {
        panic!("three sinks in order: {sinks:?}");
    };
    assert_eq!(file.audit_path.as_deref(), Some("./logs/audit.jsonl"));
    assert_eq!(
        (file.max_size_mb, file.keep_files, file.fsync),
        (100.0, 10, FsyncPolicy::Batch)
    );
    assert_eq!(
        hook.secret.as_ref().map(|s| s.expose()),
        Some("hook-secret")
    );
    assert_eq!((hook.batch_size, hook.alerts_only), (100, false));
    assert_eq!((push.job.as_str(), push.interval_secs), ("truckllm", 15.0));
    let shown = format!("{:?}", loaded.resolved.redacted());
    assert!(!shown.contains("hook-secret"), "{shown}");

    for (bad, field) in [
        (
            "    - type: \"file\"\n      path: \"a.jsonl\"\n      max_size_mb: 0\n",
            "storage.logging[0].max_size_mb",
        ),
        (
            "    - type: \"file\"\n      path: \"a.jsonl\"\n      audit_path: \"a.jsonl\"\n",
            "storage.logging[0].audit_path",
        ),
        (
            "    - type: \"webhook\"\n      url: \"not a url\"\n",
            "storage.logging[0].url",
        ),
        (
            "    - type: \"webhook\"\n      url: \"http://127.0.0.1:9/h\"\n      batch_size: 0\n",
            "storage.logging[0].batch_size",
        ),
        (
            "    - type: \"pushgateway\"\n      url: \"http://127.0.0.1:9091\"\n      interval_secs: -1\n",
            "storage.logging[0].interval_secs",
        ),
        (
            "    - type: \"file\"\n      path: \"a.jsonl\"\n      rotate: daily\n",
            "rotate",
        ),
    ] {
        let yaml = format!("storage:\n  logging:\n{bad}");
        let err = load_str(&yaml, &vars, None).expect_err(bad).to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
}

#[test]
fn runtime_timeouts_and_rollups_have_defaults_and_reject_nonsense() {
    let loaded =
        load_str("storage:\n  runtime:\n    type: \"memory\"\n", &env(), None).expect("loads");
    let runtime = &loaded.resolved.storage.runtime;
    assert_eq!(
        (
            runtime.call_timeout_ms,
            runtime.settle_interval_ms,
            runtime.rollup_step_secs,
            runtime.rollup_keep_secs
        ),
        (300, 10, 60, 3600)
    );
    let off = load_str(
        "storage:\n  runtime:\n    rollup_keep_secs: 0\n    rollup_step_secs: 0\n",
        &env(),
        None,
    );
    assert!(off.is_ok(), "roll-ups off need no step: {off:?}");
    for (yaml, field) in [
        (
            "    call_timeout_ms: 0\n",
            "storage.runtime.call_timeout_ms",
        ),
        (
            "    settle_interval_ms: 5000\n",
            "storage.runtime.settle_interval_ms",
        ),
        (
            "    rollup_step_secs: 7200\n",
            "storage.runtime.rollup_step_secs",
        ),
        (
            "    rollup_step_secs: 0\n",
            "storage.runtime.rollup_step_secs",
        ),
        (
            "    rollup_step_secs: 1\n    rollup_keep_secs: 86400\n",
            "storage.runtime.rollup_keep_secs",
        ),
        ("    rollup_keep_secs: -5\n", "rollup_keep_secs"),
    ] {
        let err = load_str(&format!("storage:\n  runtime:\n{yaml}"), &env(), None)
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(field), "{yaml}: {err}");
    }
}

#[test]
fn a_postgres_runtime_store_needs_a_postgres_url() {
    let ok = load_str(
        "storage:\n  runtime:\n    type: postgres\n    addr: \"postgres://app@db:5432/usage?sslmode=verify-full\"\n",
        &env(),
        None,
    )
    .expect("a postgres:// addr loads");
    assert_eq!(ok.resolved.storage.runtime.kind, RuntimeKind::Postgres);
    for yaml in [
        "    type: postgres\n",
        "    type: postgres\n    addr: \"db:5432\"\n",
        "    type: postgres\n    addr: \"redis://db:6379\"\n",
    ] {
        let err = load_str(&format!("storage:\n  runtime:\n{yaml}"), &env(), None)
            .expect_err(yaml)
            .to_string();
        assert!(
            err.contains("storage.runtime.addr") && err.contains("postgres://"),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn provider_types_take_their_own_options_and_credentials() {
    let ok = load_str(
        "llm_providers:\n  - id: g\n    type: gemini\n    keys: [{id: k, secret: s}]\n  - id: az\n    type: azure\n    base_url: https://r.openai.azure.com\n    deployments: {gpt-4o: prod-4o}\n    api_version: v1\n    keys: [{id: k, secret: s}]\n  - id: b\n    type: bedrock\n    region: us-east-1\n    keys: [{id: k, access_key_id: AKIDEXAMPLE, secret_access_key: wJalr, session_token: tok}]\n",
        &env(),
        None,
    )
    .expect("gemini needs no base_url, azure takes deployments, bedrock AWS credentials");
    let providers = &ok.resolved.llm_providers;
    assert_eq!(
        providers[0].kind,
        truckllm_config::schema::ProviderKind::Gemini
    );
    assert_eq!(
        providers[2]
            .kind
            .default_base_url(providers[2].region.as_deref())
            .as_deref(),
        Some("https://bedrock-runtime.us-east-1.amazonaws.com")
    );
    let saved = serde_json::to_string(&ok.raw).expect("json");
    assert!(
        !saved.contains("\"secret\":\"\""),
        "no empty secret is written back"
    );
    for (yaml, field) in [
        (
            "    type: bedrock\n    keys: [{id: k, access_key_id: a, secret_access_key: b}]\n",
            "llm_providers[0].region",
        ),
        (
            "    type: bedrock\n    region: Nowhere\n    keys: [{id: k, access_key_id: a, secret_access_key: b}]\n",
            "llm_providers[0].region",
        ),
        (
            "    type: bedrock\n    region: us-east-1\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].keys[0].secret",
        ),
        (
            "    type: bedrock\n    region: us-east-1\n    keys: [{id: k, access_key_id: a}]\n",
            "llm_providers[0].keys[0].secret_access_key",
        ),
        (
            "    type: openai\n    base_url: https://a/v1\n    keys: [{id: k, secret: s, access_key_id: a}]\n",
            "llm_providers[0].keys[0].access_key_id",
        ),
        (
            "    type: openai\n    base_url: https://a/v1\n    deployments: {a: b}\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].deployments",
        ),
        (
            "    type: azure\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].base_url",
        ),
        (
            "    type: azure\n    base_url: https://r\n    api_version: \"2024 10\"\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].api_version",
        ),
        (
            "    type: gemini\n    responses: native\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].responses",
        ),
        (
            "    type: gemini\n    region: us-east-1\n    keys: [{id: k, secret: s}]\n",
            "llm_providers[0].region",
        ),
    ] {
        let err = load_str(&format!("llm_providers:\n  - id: p\n{yaml}"), &env(), None)
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(field), "{yaml}: {err}");
    }
}

#[test]
fn usage_history_has_defaults_and_names_bad_fields() {
    let loaded = load_str(
        "storage:\n  history:\n    url: \"postgres://truckllm@db/truckllm\"\n",
        &env(),
        None,
    )
    .expect("loads");
    let history = loaded.resolved.storage.history.expect("history on");
    assert_eq!(
        (history.keep_days, history.source.as_str()),
        (400, "default")
    );
    for (yaml, field) in [
        (
            "  history:\n    url: \"redis://db\"\n",
            "storage.history.url",
        ),
        (
            "  history:\n    url: \"postgres://db/t\"\n    keep_days: 0\n",
            "storage.history.keep_days",
        ),
        (
            "  history:\n    url: \"postgres://db/t\"\n    source: \" \"\n",
            "storage.history.source",
        ),
        (
            "  runtime:\n    rollup_keep_secs: 0\n  history:\n    url: \"postgres://db/t\"\n",
            "storage.history",
        ),
    ] {
        let err = load_str(&format!("storage:\n{yaml}"), &env(), None)
            .expect_err(yaml)
            .to_string();
        assert!(err.contains(field), "{yaml}: {err}");
    }
}
