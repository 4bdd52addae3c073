//! `storage.config.type: http` in real processes: a gateway whose local file names a storage
//! server loads its config from that server, picks up a new version saved there, and refuses
//! one that would drop every client key without `server.open_mode: true`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Process;
use truckllm_config::{ConfigStore, SaveMeta};
use truckllm_storage_http::HttpConfigStore;
use truckllm_testkit::free_port;

/// The central config, as the storage server keeps it: the gateway on `listen`, the mock
/// provider, the admin key, and `extra` (client keys, open mode).
fn central(listen: u16, mock: u16, server_extra: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: \"127.0.0.1:{listen}\"\n  admin_key: \"admin-secret-key-0001\"\n{server_extra}llm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock}/v1\"\n    keys:\n      - id: \"only\"\n        secret: \"secret-only\"\n    models: [\"gpt-4o-mini\"]\n{extra}"
    )
}

const CLIENT: &str = "api_keys:\n  - id: \"client\"\n    key: \"client-secret\"\n";

/// Status of one chat request, with `key` as the client key if given.
fn chat(port: u16, key: Option<&str>) -> u16 {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
    let mut command = Command::new("curl");
    command
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args(["-H", "Content-Type: application/json", "-d", body]);
    if let Some(key) = key {
        command.args(["-H", &format!("Authorization: Bearer {key}")]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

/// `POST /admin/config/reload`: status and body.
fn admin_reload(port: u16) -> (u16, String) {
    let output = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "30",
            "-X",
            "POST",
        ])
        .args(["-H", "Authorization: Bearer admin-secret-key-0001"])
        .arg(format!("http://127.0.0.1:{port}/admin/config/reload"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.parse().unwrap_or(0), body.to_owned())
}

/// Saves `text` on the storage server as the next version.
fn save(url: &str, text: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = HttpConfigStore::new(url, Some("cfg-secret".into())).expect("client");
        let current = store.load().await.expect("load").info.version;
        store
            .save_text(text, current, SaveMeta::new("test", "change"))
            .await
            .expect("save");
    });
}

#[test]
fn the_gateway_loads_and_reloads_its_config_from_the_storage_server() {
    let dir = tempfile::tempdir().expect("dir");
    let (mock, gateway, server) = (free_port(), free_port(), free_port());
    let _mock = Process::spawn(
        &["mock-upstream", "--listen", &format!("127.0.0.1:{mock}")],
        &[],
    );
    let central_path = dir.path().join("central.yaml");
    std::fs::write(
        &central_path,
        central(gateway, mock, "  open_mode: true\n", ""),
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
            central_path.to_str().expect("utf-8"),
        ],
        &[],
    );
    let url = format!("http://127.0.0.1:{server}");
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        format!(
            "storage:\n  config:\n    type: http\n    addr: \"{url}\"\n    api_key: \"cfg-secret\"\n    poll_secs: 1\n"
        ),
    )
    .expect("bootstrap config");
    let _gateway = Process::spawn(
        &["serve", "--config", bootstrap.to_str().expect("utf-8")],
        &[],
    );

    // Version 1 from the server: open mode, said explicitly.
    assert_eq!(chat(gateway, None), 200);

    // A version with a client key, saved on the server, is polled in.
    save(&url, &central(gateway, mock, "", CLIENT));
    let deadline = Instant::now() + Duration::from_secs(30);
    while chat(gateway, None) != 401 {
        assert!(Instant::now() < deadline, "the new version never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(chat(gateway, Some("client-secret")), 200);

    // A version without keys and without open_mode is refused; the keys stay required.
    save(&url, &central(gateway, mock, "", ""));
    let (status, body) = admin_reload(gateway);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("open_mode"), "{body}");
    assert_eq!(chat(gateway, None), 401);
}
