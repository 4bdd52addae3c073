//! `truckllm serve` whose log and history database (a real PostgreSQL) is down when it starts:
//! the gateway starts and serves anyway, says so on stderr, and once the server is back the
//! request records written meanwhile reach the PostgreSQL sink and the usage history gets the
//! finished roll-up steps, by provider and by model, each once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use truckllm_testkit::{PostgresServer, free_port};

/// A `truckllm serve` child whose stderr goes to a file, killed on drop.
struct Gateway {
    child: Child,
}

impl Gateway {
    fn spawn(config: &std::path::Path, stderr: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_truckllm"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("TRUCKLLM_STORE")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("spawn truckllm");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        assert!(banner.contains("://"), "unexpected banner: {banner}");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chat(port: u16) -> u16 {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30"])
        .args(["-H", "content-type: application/json", "-H"])
        .arg("authorization: Bearer client-key-0123")
        .args([
            "-d",
            r#"{"model":"mock:gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#,
        ])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

/// Polls `check` until it holds (bounded by `within`): a real process does this in its own
/// time.
fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_starts_while_its_database_is_down_and_catches_up_when_it_is_back() {
    let mut server = PostgresServer::start();
    let url = server.url();
    server.stop();

    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = common::Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let port = free_port();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\nstorage:\n  runtime:\n    type: memory\n    rollup_step_secs: 1\n  history:\n    url: \"{url}\"\n  logging:\n    - type: postgres\n      url: \"{url}\"\n      flush_interval_ms: 50\nllm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys:\n      - id: \"only\"\n        secret: \"secret-only\"\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - {{id: app, key: client-key-0123}}\n"
        ),
    )
    .expect("write config");
    let stderr = dir.path().join("stderr.log");
    let _gateway = Gateway::spawn(&config, &stderr);

    for _ in 0..3 {
        assert_eq!(chat(port), 200, "serves while the database is down");
    }
    eventually("the start-up warnings", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        text.contains("WARNING: the log database") && text.contains("WARNING: the usage history")
    });

    server.restart();
    let count = |sql: &str| server.psql(sql).parse::<f64>().unwrap_or(-1.0);
    eventually(
        "the records kept during the outage",
        Duration::from_secs(60),
        || {
            server.psql("SELECT to_regclass('truckllm_request_log') IS NOT NULL") == "t"
                && count("SELECT count(*) FROM truckllm_request_log") >= 3.0
        },
    );
    assert_eq!(
        count("SELECT count(*) FROM truckllm_request_log WHERE status = 200"),
        3.0
    );

    // The history task writes every minute: its next round finds the finished steps.
    let model_requests = "SELECT coalesce(sum(value), 0) FROM truckllm_usage_hourly \
        WHERE provider = '_models' AND key_id = 'mock:gpt-4o-mini' AND metric = 'req'";
    eventually("the usage history", Duration::from_secs(150), || {
        server.psql("SELECT to_regclass('truckllm_usage_hourly') IS NOT NULL") == "t"
            && count(model_requests) >= 3.0
    });
    assert_eq!(count(model_requests), 3.0, "each step once");
    assert_eq!(
        count(
            "SELECT sum(value) FROM truckllm_usage_daily \
             WHERE provider = 'mock' AND metric = 'req'"
        ),
        3.0
    );
}
