//! `truckllm config …` end to end, on real files: validate, show (redacted), history, diff,
//! rollback, backup/restore, and the master-key commands.

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
