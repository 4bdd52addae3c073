//! The logging store end to end with real processes: a gateway (Redis store, killed and
//! restarted mid-run) and a storage server send their records to a file sink, a webhook
//! receiver in this test and a real `prometheus-pushgateway`; `truckllm logs search|stats`
//! read the gateway's files back.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::Process;
use serde_json::Value;
use truckllm_testkit::{Pushgateway, RedisServer, free_port};

/// Every record the webhook receiver got, with the signature checked.
type Received = Arc<Mutex<Vec<Value>>>;

async fn start_receiver(secret: &'static str) -> (String, Received) {
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                let signature = headers
                    .get("x-truckllm-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert_eq!(
                    signature,
                    truckllm_logging::webhook::sign(secret.as_bytes(), &body)
                );
                let batch: Value = serde_json::from_slice(&body).expect("json batch");
                let records = batch["records"].as_array().cloned().unwrap_or_default();
                store.lock().expect("lock").extend(records);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn curl(args: &[&str]) -> u16 {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

fn chat(port: u16) -> u16 {
    curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}],"max_tokens":4}"#,
        &format!("http://127.0.0.1:{port}/v1/chat/completions"),
    ])
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Polls `check` (bounded): a real process does this in its own time.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn truckllm(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(args)
        .output()
        .expect("run truckllm");
    assert!(
        output.status.success(),
        "truckllm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_gateway_and_the_storage_server_log_to_file_webhook_and_pushgateway() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (hook_url, received) = runtime.block_on(start_receiver("hook-secret"));
    let pushgateway = Pushgateway::start();
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
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

    let sinks = |name: &str| {
        format!(
            "  logging:\n    - type: \"file\"\n      path: \"{dir}/{name}/requests.jsonl\"\n      audit_path: \"{dir}/{name}/audit.jsonl\"\n    - type: \"webhook\"\n      url: \"{hook_url}\"\n      secret: \"${{HOOK_SECRET}}\"\n      flush_interval_ms: 50\n    - type: \"pushgateway\"\n      url: \"{}\"\n      job: \"truckllm\"\n      instance: \"{name}\"\n      interval_secs: 0.2\n",
            pushgateway.url(),
            dir = dir.path().display()
        )
    };
    let port = free_port();
    let gateway_config = dir.path().join("gateway.yaml");
    std::fs::write(
        &gateway_config,
        format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\nstorage:\n  runtime:\n    type: \"redis\"\n    addr: \"127.0.0.1:{}\"\n{}llm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys:\n      - id: \"only\"\n        secret: \"secret-only\"\n    models: [\"gpt-4o-mini\"]\n",
            redis.port(),
            sinks("gw")
        ),
    )
    .expect("config");
    let env = [("HOOK_SECRET", "hook-secret")];
    let gateway = Process::spawn(
        &["serve", "--config", gateway_config.to_str().expect("utf-8")],
        &env,
    );

    for _ in 0..20 {
        assert_eq!(chat(port), 200);
    }
    redis.kill();
    for _ in 0..5 {
        assert_eq!(chat(port), 200, "fail-open during the outage");
    }
    redis.restart();
    let gw_audit = dir.path().join("gw/audit.jsonl");
    eventually("the storage.recovered alert", || {
        lines(&gw_audit)
            .iter()
            .any(|a| a["action"] == "storage.recovered")
    });

    // A storage server logging its audit records through the same kinds of sinks.
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - name: writer\n    token: \"store-secret\"\n    scopes: [read, write, docs]\n",
    )
    .expect("tokens");
    let server_config = dir.path().join("server.yaml");
    std::fs::write(&server_config, format!("storage:\n{}", sinks("ss"))).expect("config");
    let server_port = free_port();
    let server = Process::spawn(
        &[
            "storage-server",
            "--insecure-plain-http",
            "--listen",
            &format!("127.0.0.1:{server_port}"),
            "--store",
            "memory:",
            "--tokens",
            tokens.to_str().expect("utf-8"),
            "--log-config",
            server_config.to_str().expect("utf-8"),
        ],
        &env,
    );
    let increment = format!("http://127.0.0.1:{server_port}/usage/mock/only/req/increment");
    let body = [
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"delta":1}"#,
    ];
    assert_eq!(
        curl(
            &[
                &body[..],
                &["-H", "authorization: Bearer store-secret", &increment]
            ]
            .concat()
        ),
        200
    );
    assert_eq!(
        curl(
            &[
                &body[..],
                &["-H", "authorization: Bearer wrong", &increment]
            ]
            .concat()
        ),
        401
    );

    server.stop();
    gateway.stop();

    // The file sinks.
    let requests = lines(&dir.path().join("gw/requests.jsonl"));
    assert_eq!(requests.len(), 25);
    assert!(
        requests
            .iter()
            .all(|r| r["status"] == 200 && r["key"] == "only")
    );
    let alerts: Vec<&Value> = lines(&gw_audit)
        .leak()
        .iter()
        .filter(|a| a["category"] == "alert")
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a["action"] == "storage.degraded" && a["severity"] == "critical"),
        "{alerts:?}"
    );
    let server_audit = lines(&dir.path().join("ss/audit.jsonl"));
    assert!(server_audit.iter().any(|a| a["action"] == "usage.increment"
        && a["actor"] == "writer"
        && a["outcome"] == "ok"));
    assert!(
        server_audit
            .iter()
            .any(|a| a["category"] == "access" && a["status"] == 401)
    );
    assert!(
        !dir.path().join("ss/requests.jsonl").exists(),
        "no empty request log for the storage server"
    );

    // The webhook got the same records, signed.
    let hooked = received.lock().expect("lock").clone();
    let hooked_requests = hooked
        .iter()
        .filter(|r| r["schema"] == "truckllm.request/v1")
        .count();
    assert_eq!(hooked_requests, 25);
    for action in ["storage.degraded", "storage.recovered", "usage.increment"] {
        assert!(
            hooked.iter().any(|r| r["action"] == action),
            "webhook lacks {action}"
        );
    }
    assert!(
        hooked
            .iter()
            .any(|r| r["category"] == "access" && r["outcome"] == "denied")
    );

    // The Pushgateway kept the gateway's last push.
    let scraped = pushgateway.scrape();
    let pushed = scraped
        .lines()
        .find(|l| {
            l.starts_with("truckllm_requests_total{")
                && l.contains("instance=\"gw\"")
                && l.contains("key_id=\"only\"")
        })
        .unwrap_or_else(|| panic!("no pushed request total in:\n{scraped}"));
    assert!(pushed.ends_with(" 25"), "{pushed}");

    // And the CLI reads the files back.
    let config = gateway_config.to_str().expect("utf-8");
    let found = truckllm(&[
        "logs", "search", "--config", config, "--status", "2xx", "--json",
    ]);
    assert_eq!(found.lines().count(), 25);
    let stats = truckllm(&["logs", "stats", "--config", config, "--by", "key", "--json"]);
    let row: Value = serde_json::from_str(stats.lines().next().expect("a group")).expect("json");
    assert_eq!(
        (&row["group"], &row["requests"], &row["errors"]),
        (&Value::from("mock/only"), &Value::from(25), &Value::from(0))
    );
    let audit = truckllm(&[
        "logs",
        "search",
        "--config",
        config,
        "--audit",
        "--grep",
        "storage.recovered",
    ]);
    assert_eq!(audit.lines().count(), 2, "header and one alert: {audit}");
}

#[test]
fn logs_commands_reject_bad_filters_and_missing_logs_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("requests.jsonl");
    std::fs::write(&log, "{\"schema\":\"truckllm.request/v1\",\"ts\":\"2026-11-25T10:00:00.000Z\",\"request_id\":\"r1\",\"model\":\"m\",\"status\":200}\nnot a record\n").expect("log");
    let file = log.to_str().expect("utf-8");
    let fails = |args: &[&str]| -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
            .args(args)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(
        fails(&["logs", "search", "--file", file, "--status", "9xx"])
            .contains("not a status class")
    );
    assert!(
        fails(&["logs", "search", "--file", file, "--since", "yesterday-ish"])
            .contains("neither a duration")
    );
    assert!(fails(&["logs", "stats", "--file", file, "--by", "color"]).contains("cannot group by"));
    let missing = dir.path().join("nowhere.jsonl");
    assert!(
        fails(&["logs", "search", "--file", missing.to_str().expect("utf-8")])
            .contains("no log at")
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "server:\n  listen: \"127.0.0.1:1\"\n").expect("config");
    assert!(
        fails(&[
            "logs",
            "search",
            "--config",
            config.to_str().expect("utf-8")
        ])
        .contains("no file or postgres sink")
    );

    // A torn or foreign line is skipped and reported, never fatal.
    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args([
            "logs",
            "search",
            "--file",
            file,
            "--json",
            "--since",
            "2026-11-25T09:00:00Z",
            "--until",
            "2026-11-25T11:00:00Z",
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 lines skipped: not records"));
}

/// Whether `text` would reach a terminal with a control character (other than the line ends
/// of the output itself) or a bidirectional override in it.
fn has_unprintable(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}')
            || ('\u{2028}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    })
}

#[test]
fn logs_search_and_stats_escape_control_characters_in_client_strings() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("requests.jsonl");
    let hostile = "gpt\u{1b}[2J\u{1b}]0;owned\u{7}\nfake row\r\u{9b}31m\u{202e}\u{7f}";
    let request = serde_json::json!({
        "schema": "truckllm.request/v1", "ts": "2026-11-25T10:00:00.000Z",
        "request_id": hostile, "client": hostile, "model": hostile, "provider": hostile,
        "key": hostile, "status": 403, "error": hostile,
    });
    std::fs::write(&log, format!("{request}\n")).expect("log");
    let audit = serde_json::json!({
        "schema": "truckllm.audit/v1", "ts": "2026-11-25T10:00:00.000Z", "category": "access",
        "action": hostile, "actor": hostile, "target": hostile, "outcome": "denied",
        "status": 403, "message": hostile,
    });
    std::fs::write(dir.path().join("audit.jsonl"), format!("{audit}\n")).expect("audit log");
    let file = log.to_str().expect("utf-8");
    // Each run: its arguments, the rows it prints, and for JSON the field holding a string.
    let runs: [(&[&str], usize, Option<&str>); 6] = [
        (&["logs", "search", "--file", file], 2, None),
        (
            &["logs", "search", "--file", file, "--json"],
            1,
            Some("model"),
        ),
        (&["logs", "search", "--file", file, "--audit"], 2, None),
        (
            &["logs", "search", "--file", file, "--audit", "--json"],
            1,
            Some("message"),
        ),
        (&["logs", "stats", "--file", file, "--by", "model"], 2, None),
        (
            &["logs", "stats", "--file", file, "--by", "client", "--json"],
            1,
            Some("group"),
        ),
    ];
    for (args, rows, json_field) in runs {
        let out = truckllm(args);
        assert!(!has_unprintable(&out), "{args:?} printed {out:?}");
        assert_eq!(
            out.lines().count(),
            rows,
            "{args:?}: one row per record: {out}"
        );
        if let Some(field) = json_field {
            let value: Value = serde_json::from_str(out.trim_end()).expect("still json");
            assert_eq!(value[field], hostile, "{args:?}: the same value, escaped");
        } else {
            assert!(
                out.contains("gpt\\u{1b}[2J"),
                "{args:?}: shown escaped: {out}"
            );
        }
    }
}
