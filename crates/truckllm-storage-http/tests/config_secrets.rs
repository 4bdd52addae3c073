//! `GET/PUT /config` and secrets: the server checks configs as written (never resolving or
//! decrypting), `GET` is redacted unless the token holds `config_secrets`, and a redacted
//! config sent back is refused rather than overwriting real secrets with `[REDACTED]`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use truckllm_config::{ConfigStore, FileConfigStore, FileStoreOptions, MasterKey};
use truckllm_storage_http::server::{ServerState, router, serve};
use truckllm_storage_http::{Audit, Tokens};
use truckllm_store::MemoryStore;

const TOKENS: &str = "tokens:\n  - name: editor\n    token: \"editor-token\"\n    scopes: [config]\n  - name: gateway\n    token: \"gateway-token\"\n    scopes: [config, config_secrets]\n";

/// The stored config: literal secrets, a reference with a default, a URL with a password.
const STORED: &str = "server:\n  listen: \"127.0.0.1:2906\"\n  admin_key: \"literal-admin-key-0123456789\"\nstorage:\n  runtime:\n    type: redis\n    addr: \"redis://:redis-pass@cache:6379\"\nllm_providers:\n  - id: p\n    base_url: https://p/v1\n    keys:\n      - {id: a, secret: \"sk-literal-provider\"}\n      - {id: b, secret: \"${KEY_B:-sk-default-provider}\"}\napi_keys:\n  - id: c\n    key: \"client-literal-key\"\n";

const HIDDEN: [&str; 5] = [
    "literal-admin-key",
    "redis-pass",
    "sk-literal-provider",
    "sk-default-provider",
    "client-literal-key",
];

struct Server {
    base: String,
    http: reqwest::Client,
    file: Arc<dyn ConfigStore>,
    audit: Audit,
    audit_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A server whose config store is built as `truckllm storage-server` builds it.
async fn start() -> Server {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, STORED).expect("config");
    let file: Arc<dyn ConfigStore> = Arc::new(FileConfigStore::new(
        &path,
        FileStoreOptions::written_only(),
    ));
    let env: HashMap<String, String> = HashMap::new();
    let audit_path = dir.path().join("audit.jsonl");
    let audit = Audit::to_file(&audit_path).expect("audit");
    let state = Arc::new(ServerState {
        store: Arc::new(MemoryStore::new()),
        config: Some(Arc::clone(&file)),
        tokens: Tokens::parse(TOKENS, &env).expect("tokens"),
        audit: audit.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, router(state), None, std::future::pending()));
    Server {
        base,
        http: reqwest::Client::new(),
        file,
        audit,
        audit_path,
        _dir: dir,
    }
}

impl Server {
    async fn get(&self, token: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}/config", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn put(&self, token: &str, body: &Value) -> (u16, String) {
        let response = self
            .http
            .put(format!("{}/config", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("put");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }
}

#[tokio::test]
async fn get_config_is_redacted_without_the_config_secrets_scope() {
    let server = start().await;
    let (status, redacted) = server.get("editor-token").await;
    assert_eq!(status, 200, "{redacted}");
    for secret in HIDDEN {
        assert!(!redacted.contains(secret), "{secret} shown: {redacted}");
    }
    for shown in [
        "[REDACTED]",
        "redis://:[REDACTED]@cache:6379",
        "${KEY_B:-[REDACTED]}",
    ] {
        assert!(redacted.contains(shown), "{shown} missing: {redacted}");
    }

    let (status, clear) = server.get("gateway-token").await;
    assert_eq!(status, 200);
    for secret in HIDDEN {
        assert!(
            clear.contains(secret),
            "config_secrets sees {secret}: {clear}"
        );
    }

    // The clear read is audited, by token name, without the config.
    server.audit.flush().await;
    let audit = std::fs::read_to_string(&server.audit_path).expect("audit");
    let clear_reads: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .filter(|r: &Value| r["action"] == "config.get_secrets")
        .collect();
    assert_eq!(clear_reads.len(), 1, "{audit}");
    assert_eq!(clear_reads[0]["actor"], "gateway", "{audit}");
    assert!(HIDDEN.iter().all(|s| !audit.contains(s)), "{audit}");
}

#[tokio::test]
async fn a_redacted_config_put_back_is_refused_and_the_secrets_stay() {
    let server = start().await;
    let (_, redacted) = server.get("editor-token").await;
    let mut config: Value = serde_json::from_str(&redacted).expect("json");
    config["server"]["listen"] = json!("127.0.0.1:2907");
    let (status, body) = server.put("editor-token", &config).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("placeholder") && body.contains("server.admin_key"),
        "{body}"
    );
    assert_eq!(server.file.load().await.expect("load").text, STORED);

    // The clear copy, edited and put back, is saved.
    let (_, clear) = server.get("gateway-token").await;
    let mut config: Value = serde_json::from_str(&clear).expect("json");
    config["server"]["listen"] = json!("127.0.0.1:2907");
    let (status, body) = server.put("editor-token", &config).await;
    assert_eq!(status, 200, "{body}");
    let saved = server.file.load().await.expect("load").text;
    assert!(saved.contains("2907") && saved.contains("sk-literal-provider"));
}

#[tokio::test]
async fn put_config_checks_as_written_and_never_resolves_or_decrypts() {
    let server = start().await;
    let sealed = MasterKey::generate()
        .encrypt("decrypted-plaintext")
        .expect("encrypt");
    for listen in [
        "${TRUCKLLM_MASTER_KEY}".to_owned(),
        "${HOME}".to_owned(),
        sealed.clone(),
    ] {
        let (status, body) = server
            .put("editor-token", &json!({"server": {"listen": listen}}))
            .await;
        assert_eq!(status, 200, "references are opaque: {body}");
        let saved = server.file.load().await.expect("load").text;
        assert!(saved.contains(&listen), "saved as written: {saved}");
    }
    let (status, body) = server
        .put("editor-token", &json!({"server": {"listen": "nonsense"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("server.listen"), "{body}");
    let (status, body) = server
        .put(
            "editor-token",
            &json!({"server": {"listen": "127.0.0.1:1", "admin_key": ""}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("server.admin_key"), "{body}");
}
