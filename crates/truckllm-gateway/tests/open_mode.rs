//! A running gateway with client keys refuses a config version that drops them all unless it
//! says `server.open_mode: true`: the refusal is a failed reload with the usual alert, and
//! the keys stay required. Said explicitly, open mode applies.

mod common;

use std::path::Path;

use common::{Backend, Mock, TestGateway, config};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;

const CLIENTS: &str = "api_keys:\n  - id: \"team-a\"\n    key: \"client-secret\"\n";

fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
}

/// `server:` with the admin key and `open_mode`, and a file sink for audit records in `dir`.
fn extra(dir: &Path, open_mode: &str, clients: &str) -> String {
    format!(
        "server:\n  admin_key: \"admin-secret-key-0001\"\n{open_mode}storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n      audit_path: \"{}\"\n{clients}",
        dir.join("requests.jsonl").display(),
        dir.join("audit.jsonl").display()
    )
}

#[tokio::test]
async fn dropping_every_client_key_needs_open_mode_said_explicitly() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let with_keys = config(&mock.url, 1, "", &extra(logs.path(), "", CLIENTS));
    let gw = TestGateway::start(&with_keys, Backend::Memory).await;
    let path = gw.dir.path().join("config.yaml");
    let reload = || async {
        let response = gw
            .http
            .post(format!("{}/admin/config/reload", gw.url))
            .bearer_auth("admin-secret-key-0001")
            .send()
            .await
            .expect("send");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    };
    assert_eq!(gw.chat(None, hello()).await.0, 401);

    std::fs::write(&path, config(&mock.url, 1, "", &extra(logs.path(), "", ""))).expect("edit");
    let (status, body) = reload().await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("server.open_mode"), "{body}");
    assert_eq!(gw.chat(None, hello()).await.0, 401, "keys still required");
    assert_eq!(gw.chat(Some("client-secret"), hello()).await.0, 200);

    let open = extra(logs.path(), "  open_mode: true\n", "");
    std::fs::write(&path, config(&mock.url, 1, "", &open)).expect("edit");
    assert_eq!(reload().await.0, 200);
    assert_eq!(gw.chat(None, hello()).await.0, 200, "open mode, as said");
    gw.stop().await;

    let audit = std::fs::read_to_string(logs.path().join("audit.jsonl")).expect("audit");
    let alert = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .find(|a| a["action"] == "config.reload_failed")
        .expect("the refusal raised the reload-failed alert");
    assert_eq!(alert["category"], "alert");
    assert!(alert.to_string().contains("open_mode"), "{alert}");
    assert!(!audit.contains("client-secret") && !audit.contains("admin-secret-key-0001"));
}
