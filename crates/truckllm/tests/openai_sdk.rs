//! The official OpenAI Python SDK works unchanged against `truckllm serve --demo`, streaming
//! included (the checks are in `openai_sdk.py`). Needs `python3` with the `openai` package,
//! which `bash .ci/run` installs; without it the test fails and says so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use truckllm_testkit::free_port;

#[test]
fn the_openai_python_sdk_works_against_the_demo() {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with the openai package is needed: `python3 -m pip install openai` (or run `bash .ci/run`)"
    );
    let port = free_port();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        // The demo's provider is in-process: an egress proxy in the environment (here one
        // nothing listens on) must not reroute it.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the demo gateway");
    let mut stdout = BufReader::new(gateway.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("banner");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stderr = BufReader::new(gateway.stderr.take().expect("stderr"));
    let mut warning = String::new();
    stderr.read_line(&mut warning).expect("warning");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    assert!(
        warning.starts_with("WARNING: OPEN MODE"),
        "open mode is announced: {warning}"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_sdk.py");
    let output = Command::new("python3")
        .args([script, &format!("http://127.0.0.1:{port}/v1")])
        .output()
        .expect("run python3");
    let metrics = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl /metrics");
    let _ = gateway.kill();
    let _ = gateway.wait();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains(r#"truckllm_requests_total{provider="mock",key="demo-key-"#),
        "per-key request counters: {metrics}"
    );
    assert!(
        metrics.contains("truckllm_request_duration_seconds_bucket"),
        "latency histogram"
    );
    assert!(
        metrics.contains(
            r#"storage_operation_duration_seconds_count{operation="reserve",backend="memory"}"#
        ),
        "store metrics"
    );
    assert!(!metrics.contains("demo-secret"), "no secret in any label");
    assert_promtool_accepts(&metrics);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all checks passed"));
}

/// `promtool check metrics` (Debian's `prometheus` package) finds nothing to complain about:
/// every family has HELP and TYPE, names and labels follow the conventions.
fn assert_promtool_accepts(metrics: &str) {
    use std::io::Write;
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut promtool) = promtool else {
        panic!("promtool is needed: `apt-get install prometheus` (or run `bash .ci/run`)");
    };
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
