//! The README's storage API curl examples work as written, against a real storage server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use truckllm_testkit::{RedisServer, free_port};

const README: &str = include_str!("../../../README.md");

#[test]
fn the_readme_curl_examples_work_as_written() {
    let block = README
        .split("<!-- storage-api-examples:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- storage-api-examples:end -->").next())
        .expect("the README marks its storage API examples");
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(lines.len(), 7, "{block}");

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("tokens.yaml"), "tokens:\n  - name: gateway\n    token: \"${GATEWAY_STORE_TOKEN}\"\n    scopes: [read, write, config, docs]\n").expect("tokens");
    std::fs::create_dir(dir.path().join("configs")).expect("configs");
    std::fs::write(
        dir.path().join("configs/config.yaml"),
        "server:\n  listen: \"127.0.0.1:2906\"\n",
    )
    .expect("config");
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .current_dir(dir.path())
        .args([
            "storage-server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &redis.url(),
        ])
        .args([
            "--tokens",
            "tokens.yaml",
            "--config-store",
            "./configs/config.yaml",
            "--insecure-plain-http",
        ])
        .env("GATEWAY_STORE_TOKEN", "readme-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn storage-server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("banner");

    let outputs: Vec<String> = lines
        .iter()
        .map(|line| {
            let line = line
                .replacen("curl ", "curl -sS --fail-with-body ", 1)
                .replace("127.0.0.1:7000", &format!("127.0.0.1:{port}"));
            let out = Command::new("bash")
                .args(["-c", &line])
                .env("GATEWAY_STORE_TOKEN", "readme-token")
                .output()
                .expect("run curl");
            assert!(
                out.status.success(),
                "{line}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    let _ = server.kill();
    let _ = server.wait();
    assert!(outputs[0].contains("\"status\":\"ok\""), "{}", outputs[0]);
    assert_eq!(outputs[1..5], ["123.45", "123.45", "133.45", "10"]);
    assert!(outputs[5].contains("127.0.0.1:2906"), "{}", outputs[5]);
    assert!(outputs[6].contains("\"version\":2"), "{}", outputs[6]);
}

#[test]
fn the_readme_logging_config_is_valid_as_written() {
    let block = README
        .split("<!-- logging-config:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- logging-config:end -->").next())
        .expect("the README marks its logging config");
    let yaml = block
        .trim()
        .trim_start_matches("```yaml")
        .trim_end_matches("```");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["config", "validate", path.to_str().expect("utf-8")])
        .env("WEBHOOK_SECRET", "s")
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
