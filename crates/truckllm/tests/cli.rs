//! The `truckllm` binary against a real `redis-server`: the seed's debug commands, bad
//! arguments and unreachable stores.

use std::net::TcpListener;
use std::process::{Command, Output};

use truckllm_testkit::RedisServer;

fn truckllm(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["--store", store, "--timeout", "3"])
        .args(args)
        .env_remove("TRUCKLLM_STORE")
        .output()
        .expect("run truckllm")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr_of_failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got {output:?}");
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

#[test]
fn usage_commands_mirror_the_seed_debug_commands() {
    let server = RedisServer::start();
    let url = server.url();
    stdout(&truckllm(
        &url,
        &["usage", "set", "openai", "key1", "req", "45"],
    ));
    assert_eq!(
        stdout(&truckllm(&url, &["usage", "get", "openai", "key1", "req"])),
        "45"
    );
    assert_eq!(server.cli(&["GET", "usage:{openai:key1}:req"]), "45");
    assert_eq!(
        stdout(&truckllm(
            &url,
            &["usage", "incr", "openai", "key1", "tokens", "1200"]
        )),
        "1200"
    );
    assert_eq!(
        stdout(&truckllm(
            &url,
            &["usage", "incr", "openai", "key1", "tokens", "-200.5"]
        )),
        "999.5"
    );
    let window = truckllm(
        &url,
        &["usage", "get", "openai", "key1", "tokens", "--window", "60"],
    );
    assert_eq!(
        stdout(&window),
        "999.5",
        "set is not an increment; both increments are"
    );
    stdout(&truckllm(
        &url,
        &["usage", "incr", "groq", "k:2", "errors", "2"],
    ));

    let table = stdout(&truckllm(&url, &["usage", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("SERIES"));
    assert!(lines[1].starts_with("groq:k%3A2:errors"), "{table}");
    assert!(
        lines[2].contains("openai:key1:req") && lines[2].contains("45"),
        "{table}"
    );
    let narrowed = stdout(&truckllm(&url, &["usage", "list", "openai:key1:tok"]));
    assert_eq!(narrowed.lines().count(), 2, "{narrowed}");

    assert!(stdout(&truckllm(&url, &["health"])).starts_with("ok: RedisStore(redis://127.0.0.1:"));
}

#[test]
fn bad_arguments_get_clear_errors_and_store_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let nan = stderr_of_failure(&truckllm(&url, &["usage", "set", "p", "k", "req", "NaN"]));
    assert!(nan.contains("finite number"), "{nan}");
    let inf = stderr_of_failure(&truckllm(&url, &["usage", "incr", "p", "k", "req", "inf"]));
    assert!(inf.contains("finite number"), "{inf}");
    let text = stderr_of_failure(&truckllm(&url, &["usage", "incr", "p", "k", "req", "abc"]));
    assert!(text.contains("invalid value 'abc'"), "{text}");
    let metric = stderr_of_failure(&truckllm(&url, &["usage", "get", "p", "k", "bogus"]));
    assert!(
        metric.contains("unknown metric") && metric.contains("tokens"),
        "{metric}"
    );
    let window = stderr_of_failure(&truckllm(
        &url,
        &["usage", "get", "p", "k", "req", "--window", "61"],
    ));
    assert!(window.contains("window must be"), "{window}");
    assert_eq!(server.cli(&["DBSIZE"]), "0", "nothing was stored");
}

#[test]
fn unreachable_stores_fail_with_one_line_and_no_secret() {
    let refused = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = refused.local_addr().expect("addr").port();
    drop(refused);
    let down = stderr_of_failure(&truckllm(
        &format!("redis://:hunter2@127.0.0.1:{port}"),
        &["health"],
    ));
    assert_eq!(down.lines().count(), 1, "{down}");
    assert!(
        down.contains("unavailable") && !down.contains("hunter2"),
        "{down}"
    );

    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "redis://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let timeout = stderr_of_failure(&truckllm(&url, &["usage", "get", "p", "k", "req"]));
    assert!(
        timeout.contains("timed out") || timeout.contains("no answer"),
        "{timeout}"
    );

    let scheme = stderr_of_failure(&truckllm("ftp://x", &["health"]));
    assert!(scheme.contains("memory:, redis://"), "{scheme}");
}

#[test]
fn the_memory_store_works_without_redis() {
    let out = truckllm("memory:", &["usage", "incr", "p", "k", "req", "2.5"]);
    assert_eq!(stdout(&out), "2.5");
    assert!(stdout(&truckllm("memory:", &["health"])).starts_with("ok: MemoryStore"));
}

#[test]
fn usage_export_writes_the_rollups_as_jsonl_or_csv() {
    let server = RedisServer::start();
    let url = server.url();
    for (provider, key, metric, delta) in [
        ("openai", "key1", "tokens", "100"),
        ("openai", "key1", "tokens", "23.5"),
        ("openai", "key1", "req", "2"),
        ("acme, inc", "k\"1", "req", "1"),
    ] {
        stdout(&truckllm(
            &url,
            &["usage", "incr", provider, key, metric, delta],
        ));
    }
    // A roll-up outlives its counter (kept an hour, not 60 s): drop the counters.
    server.cli(&["DEL", "usage:{openai:key1}:tokens"]);
    assert_eq!(
        server.cli(&["EXISTS", "usage-rollup:{openai:key1}:tokens"]),
        "1"
    );

    let jsonl = stdout(&truckllm(
        &url,
        &["usage", "export", "--since", "1h", "--prefix", "openai:"],
    ));
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let total = |metric: &str| -> f64 {
        rows.iter()
            .filter(|r| r["metric"] == metric && r["key_id"] == "key1")
            .map(|r| r["value"].as_f64().expect("value"))
            .sum()
    };
    assert_eq!(total("tokens"), 123.5, "{jsonl}");
    assert_eq!(total("req"), 2.0);
    assert!(rows.iter().all(
        |r| r["provider"] == "openai" && r["start"].as_str().is_some_and(|s| s.ends_with('Z'))
    ));

    let csv = stdout(&truckllm(&url, &["usage", "export", "--format", "csv"]));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("start,provider,key_id,metric,value"));
    assert!(
        csv.lines()
            .any(|l| l.contains(",\"acme, inc\",\"k\"\"1\",req,1")),
        "odd names are quoted: {csv}"
    );

    assert!(
        stderr_of_failure(&truckllm(&url, &["usage", "export", "--format", "xml"])).contains("xml")
    );
    assert!(
        stderr_of_failure(&truckllm(&url, &["usage", "export", "--since", "soon"]))
            .contains("neither a duration")
    );
    let future = stdout(&truckllm(
        &url,
        &["usage", "export", "--since", "2999-01-01T00:00:00Z"],
    ));
    assert!(future.is_empty(), "nothing after --since");
}
