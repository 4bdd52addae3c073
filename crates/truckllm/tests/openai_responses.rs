//! OpenAI's Responses API through real gateways, tried as a new user would:
//! - the official `openai` Python SDK (`client.responses.create` with text, tools and a
//!   `function_call_output` round trip, json_schema; `client.responses.stream`; retrieve,
//!   input_items, delete, `store: false`) against two gateway processes sharing one
//!   redis-server, every follow-up (`previous_response_id`) on the other gateway, through an
//!   OpenAI-compatible provider and an Anthropic one (the checks are in `openai_responses.py`);
//!   then the usage the store counted equals what the mock provider reported;
//! - the Codex CLI (`codex exec "say hi"`) against `serve --demo`, configured by
//!   `~/.codex/config.toml` with `wire_api = "responses"`.
//!
//! Needs `python3` with the `openai` package, `redis-server`, and the `codex` CLI
//! (`npm install -g @openai/codex`); `bash .ci/run` installs them. Without them the tests fail
//! and say so.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Process;
use serde_json::Value;
use truckllm_testkit::{RedisServer, free_port};

/// A gateway config: one OpenAI-compatible and one Anthropic provider, both the mock, with
/// one key each; the runtime store is the given Redis; one client key, `client-secret`.
fn config(dir: &std::path::Path, listen: u16, redis_port: u16, mock: &str) -> String {
    let providers = format!(
        r#"llm_providers:
  - id: "chat"
    base_url: "{mock}/v1"
    keys:
      - id: "k1"
        secret: "mock-secret"
    models: ["gpt-4o-mini"]
  - id: "claude"
    type: "anthropic"
    base_url: "{mock}/v1"
    keys:
      - id: "k1"
        secret: "mock-secret"
aliases:
  "claude-*": ["claude:*"]
"#
    );
    config_with(dir, listen, redis_port, &providers)
}

/// A gateway config with the given providers (and aliases), the runtime store the given
/// Redis, and one client key, `client-secret`.
fn config_with(dir: &std::path::Path, listen: u16, redis_port: u16, providers: &str) -> String {
    let path = dir.join(format!("config-{listen}.yaml"));
    let text = format!(
        r#"server:
  listen: "127.0.0.1:{listen}"
storage:
  runtime:
    type: "redis"
    addr: "127.0.0.1:{redis_port}"
    db: 0
policy:
  algorithm: "round_robin"
{providers}api_keys:
  - id: "client"
    key: "client-secret"
"#
    );
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

fn assert_ran(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn get_json(url: &str) -> Value {
    let output = Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("curl");
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The sum over every provider key of one usage counter in Redis (not the gateway's own
/// namespaces, `_clients`, `_teams`, `_models`, which count the same usage again).
fn counted(redis: &RedisServer, metric: &str) -> f64 {
    let keys = redis.cli(&["--scan", "--pattern", &format!("usage:*:{metric}")]);
    keys.lines()
        .filter(|k| !k.is_empty() && !k.starts_with("usage:{_"))
        .map(|k| redis.cli(&["GET", k]).trim().parse::<f64>().unwrap_or(0.0))
        .sum()
}

#[test]
fn the_openai_sdk_continues_responses_on_another_gateway_through_both_provider_kinds() {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with the openai package is needed: `python3 -m pip install openai` (or run `bash .ci/run`)"
    );
    let redis = RedisServer::start();
    let mock_port = free_port();
    let mock = format!("http://127.0.0.1:{mock_port}");
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let dir = tempfile::tempdir().expect("dir");
    let ports = [free_port(), free_port()];
    let gateways: Vec<Process> = ports
        .iter()
        .map(|port| {
            let config = config(dir.path(), *port, redis.port(), &mock);
            Process::spawn(&["serve", "--config", &config], &[])
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_responses.py");
    let output = Command::new("python3")
        .args([
            script,
            &format!("http://127.0.0.1:{}/v1", ports[0]),
            &format!("http://127.0.0.1:{}/v1", ports[1]),
            &mock,
        ])
        .output()
        .expect("run python3");
    assert_ran("the Responses SDK checks", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));

    // Usage: what the store counted (both gateways, both providers, streams included) is what
    // the mock reported. Settlements are written just after each answer, so poll briefly.
    let stats = get_json(&format!("{mock}/mock/stats"));
    let reported = |field: &str| -> f64 {
        stats
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|s| s[field].as_f64())
            .sum()
    };
    let expected = (
        reported("prompt_tokens") + reported("cache_write_tokens") + reported("cache_read_tokens"),
        reported("completion_tokens"),
    );
    assert!(
        expected.0 > 0.0 && expected.1 > 0.0,
        "the mock was used: {stats}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = (0.0, 0.0);
    while Instant::now() < deadline {
        seen = (
            counted(&redis, "prompt_tokens"),
            counted(&redis, "completion_tokens"),
        );
        if seen == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for gateway in gateways {
        gateway.stop();
    }
    assert_eq!(
        seen, expected,
        "usage counted (prompt, completion) vs reported by the mock"
    );
}

/// A provider that takes Responses natively keeps each conversation with the key that made
/// it: every follow-up, retrieve and delete, on either gateway, streamed or not, goes to that
/// key (the mock refuses a response id another key made), and the usage counted is what the
/// provider reported.
#[test]
fn native_follow_ups_reach_the_key_that_made_the_response_on_any_gateway() {
    let redis = RedisServer::start();
    let mock_port = free_port();
    let mock = format!("http://127.0.0.1:{mock_port}");
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--responses-native",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let providers = format!(
        r#"llm_providers:
  - id: "native"
    base_url: "{mock}/v1"
    responses: "native"
    keys:
      - id: "k1"
        secret: "native-secret-1"
      - id: "k2"
        secret: "native-secret-2"
    models: ["gpt-4o-mini"]
"#
    );
    let dir = tempfile::tempdir().expect("dir");
    let ports = [free_port(), free_port()];
    let gateways: Vec<Process> = ports
        .iter()
        .map(|port| {
            let config = config_with(dir.path(), *port, redis.port(), &providers);
            Process::spawn(&["serve", "--config", &config], &[])
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openai_responses_native.py"
    );
    let output = Command::new("python3")
        .args([
            script,
            &format!("http://127.0.0.1:{}/v1", ports[0]),
            &format!("http://127.0.0.1:{}/v1", ports[1]),
        ])
        .output()
        .expect("run python3");
    assert_ran("the native Responses checks", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));

    let stats = get_json(&format!("{mock}/mock/stats"));
    let per_key: Vec<u64> = stats
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .map(|s| s["ok"].as_u64().unwrap_or(0))
        .filter(|ok| *ok > 0)
        .collect();
    // One conversation of 1 + 6 + 1 + 1 turns, all on the key that made its first response.
    assert_eq!(per_key, [9], "every turn on one key: {stats}");
    let reported = |field: &str| -> f64 {
        stats
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|s| s[field].as_f64())
            .sum()
    };
    let expected = (reported("prompt_tokens"), reported("completion_tokens"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = (0.0, 0.0);
    while Instant::now() < deadline {
        seen = (
            counted(&redis, "prompt_tokens"),
            counted(&redis, "completion_tokens"),
        );
        if seen == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for gateway in gateways {
        gateway.stop();
    }
    assert_eq!(
        seen, expected,
        "usage counted (prompt, completion) vs reported by the mock"
    );
}

#[test]
fn codex_says_hi_through_the_demo() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gateway = Process::spawn(&["serve", "--demo", "--listen", &listen], &[]);
    let home = tempfile::tempdir().expect("home");
    let codex_dir = home.path().join(".codex");
    std::fs::create_dir_all(&codex_dir).expect("codex dir");
    std::fs::write(
        codex_dir.join("config.toml"),
        format!(
            r#"model = "gpt-4o-mini"
model_provider = "truckllm"

[model_providers.truckllm]
name = "TruckLLM"
base_url = "http://{listen}/v1"
env_key = "TRUCKLLM_API_KEY"
wire_api = "responses"
"#
        ),
    )
    .expect("codex config");
    let work = tempfile::tempdir().expect("work dir");
    let output = match Command::new("codex")
        .args(["exec", "--skip-git-repo-check", "say hi"])
        .current_dir(work.path())
        .env("HOME", home.path())
        .env("TRUCKLLM_API_KEY", "anything-in-open-mode")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "the codex CLI is needed: `npm install -g @openai/codex` (or run `bash .ci/run`): {e}"
        ),
    };
    gateway.stop();
    assert_ran("codex exec", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("This is a mock reply from the TruckLLM upstream."),
        "codex printed the gateway's answer: {stdout}"
    );
}
