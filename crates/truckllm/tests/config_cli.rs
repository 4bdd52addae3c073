//! `truckllm config …` end to end, on real files: validate, show (redacted), history, diff,
//! rollback, backup/restore, and the master-key commands; and `storage-server`'s config
//! store, which never resolves a config it keeps.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXAMPLE: &str = include_str!("../../../configs/config.example.yaml");

fn truckllm(dir: &Path, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_truckllm"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("TRUCKLLM_MASTER_KEY")
        .env_remove("TRUCKLLM_MASTER_KEY_FILE")
        .env_remove("TRUCKLLM_CONFIG")
        .env("OPENAI_KEY_1", "sk-plain-one")
        .env("OPENAI_KEY_2", "sk-plain-two")
        .env("TRUCKLLM_CLIENT_KEY", "client-plain")
        .env("ANTHROPIC_KEY_1", "sk-ant-plain")
        .env("TRUCKLLM_ADMIN_KEY", "admin-plain-0123456789")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run truckllm");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("configs")).expect("configs dir");
    std::fs::write(dir.path().join("configs/config.yaml"), EXAMPLE).expect("write config");
    dir
}

#[test]
fn validate_show_history_and_rollback() {
    let dir = setup();
    let d = dir.path();
    assert!(
        ok(truckllm(d, &["config", "validate"], &[], None))
            .starts_with("ok: ./configs/config.yaml is valid")
    );
    let shown = ok(truckllm(d, &["config", "show"], &[], None));
    assert!(
        shown.starts_with("# version 1") && shown.contains("${OPENAI_KEY_1}"),
        "{shown}"
    );
    assert!(!shown.contains("sk-plain"), "{shown}");
    let json = ok(truckllm(d, &["config", "show", "--json"], &[], None));
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("show --json is JSON");
    assert_eq!(parsed["llm_providers"][0]["id"], "openai");

    let edited = EXAMPLE.replace("req_per_min: 200", "req_per_min: 250");
    std::fs::write(d.join("configs/config.yaml"), edited).expect("edit");
    let history = ok(truckllm(d, &["config", "history"], &[], None));
    assert!(history.contains("      2*"), "{history}");
    let diff = ok(truckllm(d, &["config", "diff", "1", "2"], &[], None));
    assert!(
        diff.contains("-      req_per_min: 200") && diff.contains("+      req_per_min: 250"),
        "{diff}"
    );
    assert!(
        ok(truckllm(
            d,
            &["config", "rollback", "1", "--author", "ops"],
            &[],
            None
        ))
        .contains("as version 3")
    );
    assert_eq!(
        std::fs::read_to_string(d.join("configs/config.yaml")).expect("read"),
        EXAMPLE
    );

    let backup = ok(truckllm(d, &["config", "backup", "b.json"], &[], None));
    assert!(backup.contains("b.json"));
    std::fs::write(
        d.join("configs/config.yaml"),
        "server: {listen: \"127.0.0.1:1\"}\n",
    )
    .expect("overwrite");
    assert!(ok(truckllm(d, &["config", "restore", "b.json"], &[], None)).contains("at version 3"));
    assert_eq!(
        std::fs::read_to_string(d.join("configs/config.yaml")).expect("read"),
        EXAMPLE
    );
    // A key disabled since version 3: rolling back to it is refused, naming the key,
    // unless forced.
    let key_line = "key: \"${TRUCKLLM_CLIENT_KEY}\"";
    assert!(EXAMPLE.contains(key_line));
    let disabled = EXAMPLE.replacen(key_line, &format!("{key_line}\n    disabled: true"), 1);
    std::fs::write(d.join("configs/config.yaml"), disabled).expect("disable");
    assert!(ok(truckllm(d, &["config", "history"], &[], None)).contains("      4*"));
    let refused = fails(truckllm(d, &["config", "rollback", "3"], &[], None));
    assert!(
        refused.contains("client key client-1") && refused.contains("--force"),
        "{refused}"
    );
    let forced = ok(truckllm(
        d,
        &["config", "rollback", "3", "--force"],
        &[],
        None,
    ));
    assert!(forced.contains("as version 5"), "{forced}");
}

#[test]
fn invalid_configs_fail_with_every_detail() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("bad.yaml"), "server:\n  lisen: x\n").expect("write");
    let err = fails(truckllm(d, &["config", "validate", "bad.yaml"], &[], None));
    assert!(
        err.contains("server.lisen (line 2, column 3)") && err.contains("did you mean `listen`?"),
        "{err}"
    );
    let unset = fails(truckllm(
        d,
        &["config", "validate"],
        &[("OPENAI_KEY_1", "")],
        None,
    ));
    assert!(unset.contains("OPENAI_KEY_1 is not set"), "{unset}");
    let missing = fails(truckllm(d, &["config", "diff", "1", "9"], &[], None));
    assert!(
        missing.contains("version 9 is not in the history"),
        "{missing}"
    );
}

#[test]
fn encrypt_value_and_rotate_key() {
    let dir = setup();
    let d = dir.path();
    let key = ok(truckllm(d, &["config", "generate-key"], &[], None))
        .trim()
        .to_owned();
    let no_key = fails(truckllm(d, &["config", "encrypt-value"], &[], Some("x")));
    assert!(no_key.contains("TRUCKLLM_MASTER_KEY"), "{no_key}");
    let sealed = ok(truckllm(
        d,
        &["config", "encrypt-value"],
        &[("TRUCKLLM_MASTER_KEY", &key)],
        Some("sk-sealed\n"),
    ));
    let sealed = sealed.trim();
    assert!(sealed.starts_with("enc:v1:"));
    let text = EXAMPLE.replace("\"${OPENAI_KEY_2}\"", &format!("\"{sealed}\""));
    std::fs::write(d.join("configs/config.yaml"), &text).expect("write");
    ok(truckllm(
        d,
        &["config", "validate"],
        &[("TRUCKLLM_MASTER_KEY", &key)],
        None,
    ));

    let new_key = ok(truckllm(d, &["config", "generate-key"], &[], None))
        .trim()
        .to_owned();
    std::fs::write(d.join("new.key"), &new_key).expect("key file");
    let rotated = ok(truckllm(
        d,
        &["config", "rotate-key", "--new-key-file", "new.key"],
        &[("TRUCKLLM_MASTER_KEY", &key)],
        None,
    ));
    assert!(rotated.contains("re-encrypted 1 values"), "{rotated}");
    let after = std::fs::read_to_string(d.join("configs/config.yaml")).expect("read");
    assert!(
        !after.contains(sealed) && after.contains("# TruckLLM configuration"),
        "comments kept, value changed"
    );
    let old = fails(truckllm(
        d,
        &["config", "validate"],
        &[("TRUCKLLM_MASTER_KEY", &key)],
        None,
    ));
    assert!(old.contains("wrong master key"), "{old}");
    ok(truckllm(
        d,
        &["config", "validate"],
        &[("TRUCKLLM_MASTER_KEY", &new_key)],
        None,
    ));
    assert!(!after.contains("sk-sealed"));
}

#[test]
fn show_hides_url_passwords_and_reference_defaults() {
    let dir = setup();
    let d = dir.path();
    let text = EXAMPLE
        .replace(
            "type: \"memory\"            # redis",
            "type: \"redis\"\n    addr: \"redis://:cli-redis-pass@cache:6379\"  # redis",
        )
        .replace(
            "${LOCAL_LLM_KEY:-unused}",
            "${LOCAL_LLM_KEY:-cli-default-secret}",
        );
    assert_ne!(text, EXAMPLE);
    std::fs::write(d.join("configs/config.yaml"), &text).expect("write");
    for args in [&["config", "show"][..], &["config", "show", "--json"][..]] {
        let shown = ok(truckllm(d, args, &[], None));
        assert!(
            !shown.contains("cli-redis-pass") && !shown.contains("cli-default-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://:[REDACTED]@cache:6379")
                && shown.contains("${LOCAL_LLM_KEY:-[REDACTED]}"),
            "{shown}"
        );
    }
}

#[test]
fn the_example_has_no_default_admin_key() {
    let dir = setup();
    let unset = fails(truckllm(
        dir.path(),
        &["config", "validate"],
        &[("TRUCKLLM_ADMIN_KEY", "")],
        None,
    ));
    assert!(unset.contains("TRUCKLLM_ADMIN_KEY is not set"), "{unset}");
    let short = fails(truckllm(
        dir.path(),
        &["config", "validate"],
        &[("TRUCKLLM_ADMIN_KEY", "short-admin")],
        None,
    ));
    assert!(
        short.contains("server.admin_key") && !short.contains("short-admin"),
        "{short}"
    );
}

/// `storage-server` with a master key and other secrets in its environment: a `config`-scope
/// token that PUTs references to them, or an `enc:` value, gets no value back, and the store
/// keeps what was written.
#[tokio::test]
async fn storage_server_never_resolves_or_decrypts_a_put_config() {
    use std::io::{BufRead, BufReader};

    let dir = setup();
    let d = dir.path();
    let master = truckllm_config::MasterKey::generate();
    let master_b64 = master.to_base64();
    let sealed = master.encrypt("decrypted-by-the-server").expect("encrypt");
    std::fs::write(
        d.join("tokens.yaml"),
        "tokens:\n  - name: editor\n    token: \"editor-token\"\n    scopes: [config]\n",
    )
    .expect("tokens");
    let port = truckllm_testkit::free_port();
    let mut child = Stopped(
        Command::new(env!("CARGO_BIN_EXE_truckllm"))
            .current_dir(d)
            .args([
                "storage-server",
                "--insecure-plain-http",
                "--store",
                "memory:",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--tokens",
                "tokens.yaml",
                "--config-store",
                "configs/config.yaml",
            ])
            .env("TRUCKLLM_MASTER_KEY", &master_b64)
            .env("OTHER_SERVICE_TOKEN", "other-service-token-value")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn storage-server"),
    );
    let mut banner = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    assert!(banner.contains("storage server on"), "{banner}");

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/config");
    for listen in [
        "${TRUCKLLM_MASTER_KEY}",
        "${OTHER_SERVICE_TOKEN}",
        "x${TRUCKLLM_MASTER_KEY}",
        sealed.as_str(),
    ] {
        let body = serde_json::json!({"server": {"listen": listen}});
        let response = http
            .put(&url)
            .bearer_auth("editor-token")
            .json(&body)
            .send()
            .await
            .expect("put");
        let status = response.status();
        let text = response.text().await.expect("body");
        for secret in [
            master_b64.as_str(),
            "other-service-token-value",
            "decrypted-by-the-server",
        ] {
            assert!(!text.contains(secret), "{listen}: {status} {text}");
        }
        assert!(status.is_success(), "opaque values are saved: {text}");
        let saved = std::fs::read_to_string(d.join("configs/config.yaml")).expect("read");
        assert!(saved.contains(listen), "kept as written: {saved}");
    }
}

/// A child process stopped when dropped, also when a test fails.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
