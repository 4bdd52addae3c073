//! A fleet on PostgreSQL alone: `config import` begins the config store, two
//! `serve --config-store postgres://…` gateways (their runtime store and log sink PostgreSQL
//! too: no Redis, no shared disk) run it, a new version saved from the command line reaches
//! both through LISTEN/NOTIFY (their poll is an hour, so nothing else could bring it), and
//! `logs search`/`logs stats --db` read both gateways' request records in SQL.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Process;
use truckllm_testkit::{PostgresServer, free_port};

fn fleet_config(postgres: &str, upstream: &str, client_keys: &[&str]) -> String {
    let clients: String = client_keys
        .iter()
        .map(|k| format!("  - id: \"{k}\"\n    key: \"{k}-secret\"\n"))
        .collect();
    format!(
        "storage:\n  runtime:\n    type: \"postgres\"\n    addr: \"{postgres}\"\n  config:\n    poll_secs: 3600\n  logging:\n    - type: \"postgres\"\n      url: \"{postgres}\"\n      flush_interval_ms: 50\nllm_providers:\n  - id: \"mock\"\n    base_url: \"{upstream}/v1\"\n    keys:\n      - id: \"only\"\n        secret: \"secret-only\"\n    models: [\"gpt-4o-mini\"]\napi_keys:\n{clients}"
    )
}

fn truckllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(args)
        .env_remove("TRUCKLLM_CONFIG_STORE")
        .output()
        .expect("run truckllm")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The status of one chat request with `key`.
fn chat(port: u16, key: &str) -> u16 {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
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
        .args(["-H", "Content-Type: application/json", "-d", body])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

#[test]
fn a_fleet_on_postgres_alone_shares_its_config_and_applies_a_new_version_on_notify() {
    let postgres = PostgresServer::start();
    let url = postgres.url();
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
    let upstream = format!("http://127.0.0.1:{mock_port}");
    let first = dir.path().join("first.yaml");
    std::fs::write(&first, fleet_config(&url, &upstream, &["alice"])).expect("write");
    let first_arg = first.display().to_string();
    let imported = ok(truckllm(&[
        "config",
        "import",
        &first_arg,
        "--config-store",
        &url,
        "--author",
        "ops",
    ]));
    assert!(imported.contains("as version 1"), "{imported}");

    let ports = [free_port(), free_port()];
    let _gateways: Vec<Process> = ports
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            Process::spawn(&["serve", "--config-store", &url, "--listen", &listen], &[])
        })
        .collect();
    for port in ports {
        assert_eq!(chat(port, "alice-secret"), 200);
        assert_eq!(chat(port, "bob-secret"), 401);
    }

    let second = dir.path().join("second.yaml");
    std::fs::write(&second, fleet_config(&url, &upstream, &["alice", "bob"])).expect("write");
    let second_arg = second.display().to_string();
    let imported = ok(truckllm(&[
        "config",
        "import",
        &second_arg,
        "--config-store",
        &url,
        "--author",
        "ops",
    ]));
    assert!(imported.contains("as version 2"), "{imported}");
    let saved = Instant::now();
    for port in ports {
        // Bounded only so a broken notify fails instead of hanging; the poll is an hour.
        while chat(port, "bob-secret") != 200 {
            assert!(
                saved.elapsed() < Duration::from_secs(60),
                "bob never reached {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "a new version reached both gateways {:?} after its save",
        saved.elapsed()
    );

    // Both gateways' records, in SQL: alice's four 200s and two refusals of bob, then bob's
    // 200s (at least one per gateway) once his key arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let found = ok(truckllm(&[
            "logs", "search", "--db", &url, "--client", "alice", "--json",
        ]));
        if found.lines().count() >= 2 || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(found.lines().count(), 2, "alice's requests: {found}");
    assert!(found.contains("\"status\":200"), "{found}");
    let stats = ok(truckllm(&["logs", "stats", "--db", &url, "--by", "client"]));
    assert!(stats.contains("alice"), "{stats}");
    let refused = ok(truckllm(&[
        "logs", "search", "--db", &url, "--status", "401",
    ]));
    assert!(
        refused.lines().count() >= 3,
        "header and two 401s: {refused}"
    );

    let history = ok(truckllm(&["config", "history", "--config-store", &url]));
    assert!(
        history.contains("import") && history.contains("ops"),
        "{history}"
    );
    let stale = truckllm(&[
        "config",
        "rollback",
        "1",
        "--config-store",
        &url,
        "--author",
        "ops",
    ]);
    ok(stale);
    let shown = ok(truckllm(&["config", "show", "--config-store", &url]));
    assert!(
        shown.contains("# version 3") && !shown.contains("bob"),
        "{shown}"
    );
    assert!(!shown.contains("secret-only"), "secrets redacted: {shown}");
}
