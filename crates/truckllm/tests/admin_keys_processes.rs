//! Keys managed through the admin API across real gateway processes sharing one config file:
//! a key created on one gateway works on the other with the official OpenAI Python SDK;
//! a rotation's old key works through its grace and is then refused on both; a revocation
//! reaches the other gateway; a viewer cannot write; a budget shared through Redis admits
//! exactly what it can pay for on both gateways together. Needs `python3` with the `openai`
//! package and `curl` (`bash .ci/run` installs them).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Process;
use serde_json::{Value, json};
use truckllm_testkit::free_port;

const ADMIN: &str = "admin-key-for-process-tests";
const VIEWER: &str = "viewer-key-for-process-tests";

/// How long a change may take to reach the other gateway before the test fails; the issue's
/// bound is 2 s, this leaves room for a loaded test machine.
const PROPAGATION: Duration = Duration::from_secs(10);

/// `curl` a gateway: status and JSON body.
fn call(port: u16, method: &str, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--max-time",
        "30",
    ]);
    command.args(["-H", &format!("Authorization: Bearer {key}")]);
    if let Some(body) = body {
        command.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn chat(port: u16, key: &str) -> u16 {
    let body = json!({"model": "mock:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    call(port, "POST", "/v1/chat/completions", key, Some(&body)).0
}

/// Polls until `check` holds, failing after [`PROPAGATION`].
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PROPAGATION;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {PROPAGATION:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The OpenAI Python SDK's chat call with `key` on `port`: "ok", or the SDK's error class.
fn sdk(port: u16, key: &str) -> String {
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
try:
    reply = client.chat.completions.create(model="mock:gpt-4o-mini", max_tokens=3,
        messages=[{"role": "user", "content": "count these five words"}])
    assert reply.choices[0].message.content == "This is a", reply
    print("ok")
except openai.APIStatusError as e:
    print(type(e).__name__)
"#;
    let output = Command::new("python3")
        .args(["-c", script, &format!("http://127.0.0.1:{port}/v1"), key])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "python3 with the openai package is needed (`bash .ci/run`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn keys_made_on_one_gateway_work_rotate_and_are_revoked_on_another() {
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\n    - {{id: auditor, key: \"{VIEWER}\", role: viewer}}\nllm_providers:\n  - id: mock\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys: [{{id: only, secret: secret-only}}]\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - {{id: seed, key: seed-client-key}}\n"
        ),
    )
    .expect("config");
    let config = path.to_str().expect("utf-8 path");
    let (a, b) = (free_port(), free_port());
    let _gateways: Vec<Process> = [a, b]
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            Process::spawn(&["serve", "--config", config, "--listen", &listen], &[])
        })
        .collect();

    // Made on A, used on B through the SDK.
    let (status, created) = call(
        a,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(&json!({"id": "alice"})),
    );
    assert_eq!(status, 201, "{created}");
    let first = created["key"].as_str().expect("secret").to_owned();
    eventually("the new key reaches B", || chat(b, &first) == 200);
    assert_eq!(sdk(b, &first), "ok");

    // A viewer reads on B but cannot write there.
    let (status, list) = call(b, "GET", "/admin/keys", VIEWER, None);
    assert_eq!(status, 200, "{list}");
    assert!(!list.to_string().contains(&first), "no secret listed");
    let (status, body) = call(b, "POST", "/admin/keys/alice/disable", VIEWER, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(chat(b, &first), 200);

    // Rotated on B with a 3 s grace: both secrets work on both, then the old one nowhere.
    let grace = json!({"grace_secs": 3});
    let (status, rotated) = call(b, "POST", "/admin/keys/alice/rotate", ADMIN, Some(&grace));
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().expect("new secret").to_owned();
    eventually("the new secret reaches A", || chat(a, &second) == 200);
    for port in [a, b] {
        assert_eq!(chat(port, &second), 200);
    }
    eventually("the old secret ends on A and B after its grace", || {
        chat(a, &first) == 401 && chat(b, &first) == 401
    });
    assert_eq!(chat(b, &second), 200);

    // Revoked on A: refused on B, as the SDK sees it.
    let (status, body) = call(a, "DELETE", "/admin/keys/alice", ADMIN, None);
    assert_eq!(status, 200, "{body}");
    eventually("the revocation reaches B", || chat(b, &second) == 401);
    assert_eq!(sdk(b, &second), "AuthenticationError");
    assert_eq!(chat(b, "seed-client-key"), 200, "other keys are untouched");
}

/// `truckllm ARGS` against the admin API on `port`: exit success, stdout, stderr.
fn cli(port: u16, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(args)
        .args(["--admin-url", &format!("http://127.0.0.1:{port}")])
        .env("TRUCKLLM_ADMIN_KEY", ADMIN)
        .output()
        .expect("truckllm");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_keys_and_teams_commands_drive_a_running_gateway() {
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  admin_keys: [{{id: ops, key: \"{ADMIN}\", role: admin}}]\nllm_providers:\n  - id: mock\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys: [{{id: only, secret: secret-only}}]\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - {{id: seed, key: seed-client-key}}\n"
        ),
    )
    .expect("config");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = path.to_str().expect("utf-8 path");
    let _gateway = Process::spawn(&["serve", "--config", config, "--listen", &listen], &[]);

    let (ok, out, err) = cli(
        port,
        &[
            "teams",
            "create",
            "search",
            "--allowed-models",
            "mock:gpt-4o-mini",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(
        port,
        &[
            "keys",
            "create",
            "--id",
            "cli-key",
            "--team",
            "search",
            "--meta",
            "owner=ops",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    let secret = created["key"].as_str().expect("secret");
    assert_eq!(created["metadata"]["owner"], "ops");
    assert_eq!(chat(port, secret), 200);

    let (ok, table, _) = cli(port, &["keys", "list"]);
    assert!(
        ok && table.starts_with("ID") && table.contains("cli-key") && table.contains("search"),
        "{table}"
    );
    assert!(!table.contains(secret), "{table}");

    let bad = r#"{"budget": {"max_cost": -1, "period": "day"}}"#;
    let (ok, _, err) = cli(port, &["keys", "update", "cli-key", "--fields", bad]);
    assert!(
        !ok && err.contains("400") && err.contains("budget.max_cost"),
        "{err}"
    );

    let (ok, out, err) = cli(port, &["keys", "rotate", "cli-key"]);
    assert!(ok && err.contains("shown once"), "{out}{err}");
    let rotated = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("the new secret")
        .to_owned();
    assert_eq!(chat(port, secret), 401);
    assert_eq!(chat(port, &rotated), 200);

    let (ok, _, err) = cli(port, &["teams", "delete", "search"]);
    assert!(
        !ok && err.contains("409") && err.contains("cli-key"),
        "{err}"
    );
    assert!(cli(port, &["keys", "revoke", "cli-key"]).0);
    assert_eq!(chat(port, &rotated), 401);
    assert!(cli(port, &["teams", "delete", "search"]).0);
    let (ok, _, err) = cli(port, &["keys", "show", "cli-key"]);
    assert!(!ok && err.contains("404"), "{err}");
}

/// With `storage.config.type: http`, admin changes are saved on the storage server (with
/// If-Match on the version they edit) and polled in by every gateway sharing it.
#[test]
fn admin_changes_travel_through_an_http_config_store() {
    let dir = tempfile::tempdir().expect("dir");
    let (mock, server) = (free_port(), free_port());
    let _mock = Process::spawn(
        &["mock-upstream", "--listen", &format!("127.0.0.1:{mock}")],
        &[],
    );
    let central = dir.path().join("central.yaml");
    std::fs::write(
        &central,
        format!(
            "server:\n  admin_keys: [{{id: ops, key: \"{ADMIN}\", role: admin}}]\nllm_providers:\n  - id: mock\n    base_url: \"http://127.0.0.1:{mock}/v1\"\n    keys: [{{id: only, secret: secret-only}}]\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - {{id: seed, key: seed-client-key}}\n"
        ),
    )
    .expect("central config");
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - name: gateways\n    token: \"cfg-secret\"\n    scopes: [read, write, config, config_secrets]\n",
    )
    .expect("tokens");
    let _server = Process::spawn(
        &[
            "storage-server",
            "--insecure-plain-http",
            "--listen",
            &format!("127.0.0.1:{server}"),
            "--store",
            "memory:",
            "--tokens",
            tokens.to_str().expect("utf-8"),
            "--config-store",
            central.to_str().expect("utf-8"),
        ],
        &[],
    );
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        format!(
            "storage:\n  config:\n    type: http\n    addr: \"http://127.0.0.1:{server}\"\n    api_key: \"cfg-secret\"\n    poll_secs: 1\n"
        ),
    )
    .expect("bootstrap config");
    let (a, b) = (free_port(), free_port());
    let _gateways: Vec<Process> = [a, b]
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            let config = bootstrap.to_str().expect("utf-8");
            Process::spawn(&["serve", "--config", config, "--listen", &listen], &[])
        })
        .collect();

    let (status, created) = call(
        a,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(&json!({"id": "erin"})),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("secret").to_owned();
    assert_eq!(chat(a, &secret), 200, "applied where it was made");
    eventually("the key reaches B through the storage server", || {
        chat(b, &secret) == 200
    });
    let saved = std::fs::read_to_string(&central).expect("central config");
    assert!(
        saved.contains("erin") && !saved.contains(&secret),
        "{saved}"
    );

    let (status, body) = call(b, "DELETE", "/admin/keys/erin", ADMIN, None);
    assert_eq!(status, 200, "{body}");
    eventually("the revocation reaches A", || chat(a, &secret) == 401);
}

/// A request the mock and the gateway both count as 4 prompt tokens ("ab ab ab ab", with the
/// role 15 characters: 4 by the gateway's estimate) and 2 completion tokens: at the budget
/// test's prices (125 and 250 per million), exactly 0.001 reserved and 0.001 spent.
fn paid_chat(port: u16, key: &str) -> (u16, Value) {
    let body = json!({"model": "mock:gpt-4o-mini", "messages": [{"role": "user", "content": "ab ab ab ab"}], "max_tokens": 2});
    call(port, "POST", "/v1/chat/completions", key, Some(&body))
}

#[test]
fn a_budget_admits_exactly_what_it_can_pay_for_across_two_gateways_sharing_redis() {
    let redis = truckllm_testkit::RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\nstorage:\n  runtime: {{type: redis, addr: \"127.0.0.1:{}\"}}\nllm_providers:\n  - id: mock\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys: [{{id: only, secret: secret-only}}]\n    models: [\"gpt-4o-mini\"]\n    pricing: {{input_per_1m: 125, output_per_1m: 250}}\napi_keys:\n  - {{id: seed, key: seed-client-key}}\n",
            redis.port()
        ),
    )
    .expect("config");
    let config = path.to_str().expect("utf-8 path");
    let (a, b) = (free_port(), free_port());
    let _gateways: Vec<Process> = [a, b]
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            Process::spawn(&["serve", "--config", config, "--listen", &listen], &[])
        })
        .collect();

    let budget = json!({"id": "alice", "budget": {"max_cost": 0.01, "period": "day"}});
    let (status, created) = call(a, "POST", "/admin/keys", ADMIN, Some(&budget));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("secret").to_owned();
    eventually("the new key reaches B", || {
        call(b, "GET", "/v1/models", &key, None).0 == 200
    });

    // 16 requests at once, half on each gateway: the budget pays for 10.
    let statuses: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let key = key.as_str();
                scope.spawn(move || paid_chat(if i % 2 == 0 { a } else { b }, key))
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("call")).collect()
    });
    let admitted = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&Value> = statuses
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((admitted, refused.len()), (10, 6), "{statuses:?}");
    for body in refused {
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    }

    // The SDK sees the refusal as OpenAI's own 429, with the code.
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
try:
    client.chat.completions.create(model="mock:gpt-4o-mini", max_tokens=2,
        messages=[{"role": "user", "content": "ab ab ab ab"}])
    print("ok")
except openai.APIStatusError as e:
    print(type(e).__name__, e.code)
"#;
    let output = Command::new("python3")
        .args(["-c", script, &format!("http://127.0.0.1:{b}/v1"), &key])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "RateLimitError budget_exceeded",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Both gateways report the same spend, from the store they share.
    for port in [a, b] {
        let (status, shown) = call(port, "GET", "/admin/keys/alice", ADMIN, None);
        assert_eq!(status, 200, "{shown}");
        let spent = shown["budget_status"]["spent"].as_f64().expect("spent");
        assert!((spent - 0.01).abs() < 1e-9, "{shown}");
    }
    assert_eq!(
        paid_chat(a, "seed-client-key").0,
        200,
        "other keys are untouched"
    );
}
