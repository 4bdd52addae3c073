//! Request and audit records from a running gateway, read back from a real file sink; and a
//! webhook endpoint that hangs while a burst of requests goes through.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use futures_util::StreamExt;
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "three words here"}], "max_tokens": 4})
}

fn file_sink(dir: &Path) -> String {
    format!(
        "storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n      audit_path: \"{}\"\n",
        dir.join("requests.jsonl").display(),
        dir.join("audit.jsonl").display()
    )
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

const CLIENTS: &str =
    "api_keys:\n  - id: \"team-a\"\n    key: \"client-secret\"\n    allowed_models: [\"*\"]\n";

#[tokio::test]
async fn every_request_leaves_one_record_of_what_happened() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let extra = format!("{CLIENTS}{}", file_sink(logs.path()));
    let limits = "    limits:\n      req_per_min: 3\n";
    let gw = TestGateway::start(&config(&mock.url, 1, limits, &extra), Backend::Memory).await;
    let key = Some("client-secret");

    // 1: a plain chat, with the client's own request id.
    let response = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth("client-secret")
        .header("x-request-id", "my-req-1")
        .json(&hello("gpt-4o-mini"))
        .send()
        .await
        .expect("chat");
    assert_eq!(response.headers()["x-request-id"], "my-req-1");
    let chat: Value = response.json().await.expect("json");
    // 2: a stream that asks for usage; 3: embeddings.
    let mut stream_body = hello("mock:gpt-4o-mini");
    stream_body["stream"] = json!(true);
    stream_body["stream_options"] = json!({"include_usage": true});
    let (status, stream_headers, text) = gw.post("/v1/chat/completions", key, &stream_body).await;
    assert_eq!(status, 200);
    let stream_usage: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .expect("usage chunk");
    let embed = json!({"model": "text-embedding-3-small", "input": "some text to embed"});
    assert_eq!(gw.post("/v1/embeddings", key, &embed).await.0, 200);
    // 4: no key; 5: over req_per_min; 6: malformed JSON.
    assert_eq!(gw.chat(None, hello("gpt-4o-mini")).await.0, 401);
    assert_eq!(gw.chat(key, hello("gpt-4o-mini")).await.0, 429);
    let malformed = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth("client-secret")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(malformed.status(), 400);
    gw.stop().await;

    let records = read_lines(&logs.path().join("requests.jsonl"));
    assert_eq!(records.len(), 6, "one record per request: {records:#?}");
    assert!(records.iter().all(|r| r["schema"] == "truckllm.request/v1"));
    let find = |pred: &dyn Fn(&Value) -> bool| -> Value {
        records.iter().find(|r| pred(r)).cloned().expect("record")
    };

    let plain = find(&|r| r["request_id"] == "my-req-1");
    assert_eq!(
        (
            &plain["status"],
            &plain["client"],
            &plain["provider"],
            &plain["key"]
        ),
        (&json!(200), &json!("team-a"), &json!("mock"), &json!("k1"))
    );
    assert_eq!(
        (&plain["model"], &plain["stream"], &plain["error"]),
        (&json!("gpt-4o-mini"), &json!(false), &Value::Null)
    );
    assert_eq!(plain["prompt_tokens"], chat["usage"]["prompt_tokens"]);
    assert_eq!(
        plain["completion_tokens"],
        chat["usage"]["completion_tokens"]
    );
    let expected_cost = chat["usage"]["prompt_tokens"].as_f64().expect("n")
        + 2.0 * chat["usage"]["completion_tokens"].as_f64().expect("n");
    assert!(
        (plain["cost"].as_f64().expect("cost") - expected_cost).abs() < 1e-9,
        "pricing is per 1M"
    );
    assert_eq!(plain["retries"], 0);

    let streamed = find(&|r| r["stream"] == true);
    assert_eq!(
        streamed["request_id"],
        stream_headers["x-request-id"].to_str().expect("id")
    );
    assert_eq!(streamed["model"], "mock:gpt-4o-mini");
    assert_eq!(streamed["upstream_model"], "gpt-4o-mini");
    assert_eq!(streamed["prompt_tokens"], stream_usage["prompt_tokens"]);
    assert_eq!(
        streamed["completion_tokens"],
        stream_usage["completion_tokens"]
    );
    let ttfb = streamed["ttfb_ms"].as_f64().expect("ttfb for a stream");
    assert!(ttfb <= streamed["latency_ms"].as_f64().expect("latency"));

    let embedded = find(&|r| r["endpoint"] == "embeddings");
    assert_eq!(
        (&embedded["status"], &embedded["provider"]),
        (&json!(200), &json!("mock"))
    );

    let unauthorized = find(&|r| r["status"] == 401);
    assert_eq!(
        (&unauthorized["client"], &unauthorized["error"]),
        (&Value::Null, &json!("invalid_api_key"))
    );
    let limited = find(&|r| r["status"] == 429);
    assert_eq!(
        (&limited["rate_limited"], &limited["error"]),
        (&json!(true), &json!("rate_limit_exceeded"))
    );
    let bad = find(&|r| r["status"] == 400);
    assert_eq!(bad["error"], "invalid_json");

    let audit = read_lines(&logs.path().join("audit.jsonl"));
    assert!(
        audit.iter().any(|a| a["action"] == "chat"
            && a["status"] == 401
            && a["category"] == "access"
            && a["outcome"] == "denied"),
        "{audit:#?}"
    );
    let all = std::fs::read_to_string(logs.path().join("requests.jsonl")).expect("read")
        + &std::fs::read_to_string(logs.path().join("audit.jsonl")).expect("read");
    assert!(
        !all.contains("client-secret") && !all.contains("secret-k1"),
        "no secret in any record"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_recorded_as_disconnected() {
    let mock = Mock::start(MockOptions {
        chunk_delay: Duration::from_millis(30),
        ..MockOptions::default()
    })
    .await;
    let logs = tempfile::tempdir().expect("dir");
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &file_sink(logs.path())),
        Backend::Memory,
    )
    .await;
    gw.leave_a_stream_after_its_first_chunk().await;
    gw.stop().await;

    let records = read_lines(&logs.path().join("requests.jsonl"));
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        (
            &records[0]["status"],
            &records[0]["stream"],
            &records[0]["error"]
        ),
        (&json!(200), &json!(true), &json!("client_disconnected"))
    );
    assert!(records[0]["ttfb_ms"].is_number());
}

#[tokio::test]
async fn a_hanging_webhook_slows_no_request_and_its_drops_are_counted() {
    let mock = Mock::start(MockOptions::default()).await;
    // Accepts connections (the kernel's backlog) and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hook = format!(
        "storage:\n  logging:\n    - type: \"webhook\"\n      url: \"http://{}/hook\"\n      queue_size: 20\n      batch_size: 10\n      timeout_ms: 1000\n",
        hanging.local_addr().expect("addr")
    );
    let gw = TestGateway::start(&config(&mock.url, 2, "", &hook), Backend::Memory).await;
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|_| async { gw.chat(None, hello("gpt-4o-mini")).await.0 })
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "every request served");
    let stats = gw.gateway.logger.sink_stats();
    assert!(
        stats[0].dropped_requests >= 200 - 20 - 10,
        "queue 20, one batch of 10 in flight, the rest dropped and counted: {stats:?}"
    );
    assert_eq!(stats[0].written, 0);
    gw.stop().await;
    drop(hanging);
}

#[tokio::test]
async fn admin_actions_config_changes_and_failed_reloads_are_audited() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let extra = format!(
        "server:\n  admin_key: \"admin-secret-key\"\n{}",
        file_sink(logs.path())
    );
    let base = config(&mock.url, 1, "", &extra);
    let gw = TestGateway::start(&base, Backend::Memory).await;
    let path = gw.dir.path().join("config.yaml");
    let reload = |key: &'static str| {
        gw.http
            .post(format!("{}/admin/config/reload", gw.url))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(reload("wrong").await.expect("send").status(), 401);
    std::fs::write(
        &path,
        format!("{base}aliases:\n  fast: [\"mock:gpt-4o-mini\"]\n"),
    )
    .expect("edit");
    assert_eq!(
        reload("admin-secret-key").await.expect("send").status(),
        200
    );
    std::fs::write(&path, "llm_providers: [oops\n").expect("break");
    assert_eq!(
        reload("admin-secret-key").await.expect("send").status(),
        400
    );
    gw.stop().await;

    let audit = read_lines(&logs.path().join("audit.jsonl"));
    let find = |pred: &dyn Fn(&Value) -> bool| audit.iter().find(|a| pred(a)).cloned();
    let denied = find(&|a| a["category"] == "access").expect("denied admin call");
    assert_eq!(
        (&denied["action"], &denied["status"]),
        (&json!("config.reload"), &json!(401))
    );
    let admin_ok =
        find(&|a| a["category"] == "admin" && a["outcome"] == "ok").expect("admin reload");
    let (old, new) = (
        admin_ok["old_version"].as_u64().expect("old"),
        admin_ok["new_version"].as_u64().expect("new"),
    );
    assert!(new > old, "{admin_ok}");
    let applied = find(&|a| a["action"] == "config.applied").expect("config change");
    assert_eq!(
        (
            applied["old_version"].as_u64(),
            applied["new_version"].as_u64()
        ),
        (Some(old), Some(new))
    );
    assert_eq!(applied["actor"], "admin api");
    let failed =
        find(&|a| a["category"] == "admin" && a["outcome"] == "failed").expect("failed reload");
    assert_eq!(failed["status"], 400);
    let alert = find(&|a| a["action"] == "config.reload_failed").expect("alert");
    assert_eq!(
        (&alert["category"], &alert["severity"]),
        (&json!("alert"), &json!("warning"))
    );
    assert_eq!(alert["old_version"].as_u64(), Some(new), "the kept version");
    assert!(
        !audit
            .iter()
            .any(|a| a.to_string().contains("admin-secret-key"))
    );
}
