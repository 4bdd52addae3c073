//! Real Anthropic clients against real gateways, tried as a new user would:
//! - the official `anthropic` Python SDK against `truckllm serve --demo` (the checks are in
//!   `anthropic_sdk.py`: create, stream, tools, count_tokens, errors, to an Anthropic provider
//!   and to an OpenAI-compatible one);
//! - Claude Code (`claude -p`) against the demo, and against a configured gateway with client
//!   keys, the key given as `ANTHROPIC_AUTH_TOKEN` (a bearer token) and as `ANTHROPIC_API_KEY`
//!   (`x-api-key`).
//!
//! Needs `python3` with the `anthropic` package and the `claude` CLI
//! (`npm install -g @anthropic-ai/claude-code`); `bash .ci/run` installs both. Without them
//! the tests fail and say so.

mod common;

use std::process::{Command, Output};

use common::Process;
use truckllm_testkit::free_port;

fn demo() -> (Process, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    (
        Process::spawn(&["serve", "--demo", "--listen", &listen], &[]),
        port,
    )
}

fn assert_ran(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_anthropic_python_sdk_works_against_the_demo() {
    let probe = Command::new("python3")
        .args(["-c", "import anthropic"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with the anthropic package is needed: `python3 -m pip install anthropic` (or run `bash .ci/run`)"
    );
    let (gateway, port) = demo();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/anthropic_sdk.py");
    let output = Command::new("python3")
        .args([
            "-W",
            "ignore::DeprecationWarning",
            script,
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .expect("run python3");
    gateway.stop();
    assert_ran("the anthropic SDK checks", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
}

/// `claude -p PROMPT` with a scratch home (no other config found) and the given environment.
fn claude(base_url: &str, env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new("claude");
    command
        .args(["-p", "say hi"])
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", base_url)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    for (name, value) in env {
        command.env(name, value);
    }
    match command.output() {
        Ok(output) => output,
        Err(e) => panic!(
            "the claude CLI is needed: `npm install -g @anthropic-ai/claude-code` (or run `bash .ci/run`): {e}"
        ),
    }
}

const ANSWER: &str = "This is a mock reply from the TruckLLM upstream.";

#[test]
fn claude_code_answers_through_the_demo() {
    let (gateway, port) = demo();
    let output = claude(
        &format!("http://127.0.0.1:{port}"),
        &[("ANTHROPIC_AUTH_TOKEN", "any-token-in-open-mode")],
    );
    gateway.stop();
    assert_ran("claude -p", &output);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), ANSWER);
}

#[test]
fn claude_code_answers_through_a_gateway_with_client_keys() {
    let mock_port = free_port();
    let mock_listen = format!("127.0.0.1:{mock_port}");
    let _mock = Process::spawn(&["mock-upstream", "--listen", &mock_listen], &[]);
    let port = free_port();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"server:
  listen: "127.0.0.1:{port}"
storage:
  runtime:
    type: "memory"
llm_providers:
  - id: "anthropic"
    type: "anthropic"
    base_url: "http://{mock_listen}/v1"
    keys:
      - id: "k1"
        secret: "sk-ant-secret"
aliases:
  "claude-*": ["anthropic:*"]
api_keys:
  - id: "dev"
    key: "tk-dev-client-key"
"#
        ),
    )
    .expect("config");
    let gateway = Process::spawn(&["serve", "--config", config.to_str().expect("utf-8")], &[]);
    let base = format!("http://127.0.0.1:{port}");
    for key_variable in ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"] {
        let output = claude(&base, &[(key_variable, "tk-dev-client-key")]);
        assert_ran(key_variable, &output);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            ANSWER,
            "{key_variable}"
        );
    }
    // (A wrong key is refused with 401, tested in the gateway's own tests: Claude Code keeps
    // retrying a 401 for minutes, which is no use in a test run.)
    gateway.stop();
}
