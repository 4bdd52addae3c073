//! The storage server over real HTTP: auth and scopes, bad input, odd path segments, audit
//! records, and TLS.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use truckllm_storage_http::server::{ServerState, router, serve, tls_config};
use truckllm_storage_http::{Audit, HttpOptions, HttpStore, Tokens};
use truckllm_store::{MemoryStore, Metric, RuntimeStore, RuntimeStoreExt, Series};

const TOKENS: &str = "tokens:\n  - name: gateway\n    token: \"gw-secret\"\n    scopes: [read, write, config, docs]\n  - name: dashboard\n    token: \"dash-secret\"\n    scopes: [read]\n    providers: [\"openai\"]\n";

struct Server {
    base: String,
    store: Arc<dyn RuntimeStore>,
    audit_path: std::path::PathBuf,
    audit: Audit,
    _dir: tempfile::TempDir,
}

async fn start(tls: bool) -> Server {
    start_with(tls, TOKENS, MemoryStore::new()).await
}

async fn start_with(tls: bool, tokens: &str, store: MemoryStore) -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let audit_path = dir.path().join("audit.jsonl");
    let store: Arc<dyn RuntimeStore> = Arc::new(store);
    let env: HashMap<String, String> = HashMap::new();
    let audit = Audit::to_file(&audit_path).expect("audit");
    let state = Arc::new(ServerState {
        store: Arc::clone(&store),
        config: None,
        tokens: Tokens::parse(tokens, &env).expect("tokens"),
        audit: audit.clone(),
    });
    let tls_config = tls.then(|| {
        truckllm_testkit::make_certificates(dir.path());
        tls_config(
            &dir.path().join("server.crt"),
            &dir.path().join("server.key"),
        )
        .expect("tls")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let scheme = if tls { "https" } else { "http" };
    let base = format!(
        "{scheme}://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    tokio::spawn(serve(
        listener,
        router(state),
        tls_config,
        std::future::pending(),
    ));
    Server {
        base,
        store,
        audit_path,
        audit,
        _dir: dir,
    }
}

async fn send(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let http = reqwest::Client::new();
    let mut request = http.request(method.parse().expect("method"), format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("send");
    (
        response.status().as_u16(),
        response.text().await.expect("text"),
    )
}

#[tokio::test]
async fn tokens_scopes_and_providers_are_enforced_and_audited() {
    let s = start(false).await;
    let b = &s.base;
    assert_eq!(
        send(b, "GET", "/usage/openai/key1/req", None, None).await.0,
        401
    );
    assert_eq!(
        send(b, "GET", "/usage/openai/key1/req", Some("wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        send(
            b,
            "GET",
            "/usage/openai/key1/req",
            Some("dash-secret"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(b, "GET", "/usage/groq/key1/req", Some("dash-secret"), None)
            .await
            .0,
        403,
        "outside its providers"
    );
    let (status, body) = send(
        b,
        "POST",
        "/usage/openai/key1/req/increment",
        Some("dash-secret"),
        Some(r#"{"delta":1}"#),
    )
    .await;
    assert_eq!(status, 403, "read scope cannot write");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["error"]["code"],
        "forbidden"
    );
    assert_eq!(
        send(
            b,
            "POST",
            "/usage/openai/key1/req/increment",
            Some("gw-secret"),
            Some(r#"{"delta":2}"#)
        )
        .await,
        (200, "2".into())
    );
    assert_eq!(
        send(
            b,
            "POST",
            "/usage/groq/k/req/increment",
            Some("gw-secret"),
            Some(r#"{"delta":5}"#)
        )
        .await
        .0,
        200
    );
    let (_, listed) = send(b, "GET", "/usage?prefix=", Some("dash-secret"), None).await;
    let listed: Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(
        listed["series"].as_array().map(Vec::len),
        Some(1),
        "the dashboard sees only openai: {listed}"
    );

    s.audit.flush().await;
    let audit = std::fs::read_to_string(&s.audit_path).expect("audit");
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["actor"] == "-" && r["status"] == 401 && r["category"] == "access"),
        "unknown callers are audited"
    );
    assert!(records.iter().any(|r| r["actor"] == "dashboard"
        && r["status"] == 403
        && r["outcome"] == "denied"
        && r["action"] == "usage.increment"));
    assert!(records.iter().any(|r| r["actor"] == "gateway"
        && r["status"] == 200
        && r["category"] == "storage"
        && r["schema"] == "truckllm.audit/v1"
        && r["action"] == "usage.increment"));
    assert!(
        !audit.contains("gw-secret") && !audit.contains("dash-secret"),
        "no token in the audit log"
    );
}

/// Documents hold what clients said: only a token with the `docs` scope reaches them, not
/// one that may read or write usage, and a bounded token cannot be given that scope.
#[tokio::test]
async fn documents_need_the_docs_scope() {
    let tokens = "tokens:\n  - name: gateway\n    token: gw\n    scopes: [read, write, docs]\n  - name: reader\n    token: rd\n    scopes: [read, write]\n";
    let server = start_with(false, tokens, MemoryStore::new()).await;
    let put = r#"{"value_b64": "aGk=", "ttl_ms": 60000}"#;
    let (status, body) = send(&server.base, "PUT", "/docs/resp:1", Some("rd"), Some(put)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(&server.base, "PUT", "/docs/resp:1", Some("gw"), Some(put)).await;
    assert_eq!(status, 204, "{body}");
    for method in ["GET", "DELETE"] {
        let (status, body) = send(&server.base, method, "/docs/resp:1", Some("rd"), None).await;
        assert_eq!(status, 403, "{method}: {body}");
    }
    let (status, body) = send(&server.base, "GET", "/docs/resp:1", Some("gw"), None).await;
    assert_eq!((status, body.contains("aGk=")), (200, true), "{body}");
    for bounded in ["quota: 5", "providers: [openai]"] {
        let yaml =
            format!("tokens:\n  - name: t\n    token: t\n    scopes: [docs]\n    {bounded}\n");
        let env: HashMap<String, String> = HashMap::new();
        let refused = Tokens::parse(&yaml, &env).expect_err(bounded);
        assert!(refused.contains("docs scope"), "{refused}");
    }
}

#[tokio::test]
async fn bad_input_is_a_json_4xx_and_changes_nothing() {
    let s = start(false).await;
    let b = &s.base;
    let path = "/usage/openai/key1/req/increment";
    assert_eq!(
        send(
            b,
            "PUT",
            "/usage/openai/key1/req",
            Some("gw-secret"),
            Some(r#"{"value":5}"#)
        )
        .await
        .0,
        200
    );
    for body in [
        r#"{"delta": NaN}"#,
        r#"{"delta": Infinity}"#,
        r#"{"delta": 1e999}"#,
        r#"{"delta": "5"}"#,
        r#"{}"#,
        r#"{bad"#,
        r#"{"delta": 1, "extra": 2}"#,
        r#"{"delta": 1e300}"#,
    ] {
        let (status, text) = send(b, "POST", path, Some("gw-secret"), Some(body)).await;
        assert_eq!(status, 400, "{body}: {text}");
        let error: Value = serde_json::from_str(&text).expect("JSON error");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    let huge = format!(r#"{{"delta": 1, "pad": "{}"}}"#, "x".repeat(2 << 20));
    assert_eq!(
        send(b, "POST", path, Some("gw-secret"), Some(&huge))
            .await
            .0,
        413
    );
    assert_eq!(
        send(
            b,
            "GET",
            "/usage/openai/key1/bogus",
            Some("gw-secret"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(
            b,
            "GET",
            "/usage/openai/key1/req?window=abc",
            Some("gw-secret"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(b, "GET", "/nowhere", Some("gw-secret"), None).await.0,
        404
    );
    let series = Series::new("openai", "key1", Metric::Req).expect("series");
    assert_eq!(
        s.store.get(&series).await.expect("get"),
        5.0,
        "nothing changed"
    );
}

/// `POST /batch/reserve` decides in order, and a batch with one bad reservation, or one the
/// token may not make, is refused whole: nothing reserved.
#[tokio::test]
async fn batch_reserve_decides_in_order_and_refuses_bad_batches_whole() {
    let s = start(false).await;
    let b = &s.base;
    let one = |key: &str, limit: &str| {
        format!(
            r#"{{"provider":"openai","key_id":"{key}","checks":[{{"metric":"req","limit":{limit},"window_seconds":60,"amount":1}}]}}"#
        )
    };
    let req = |key: &str| Series::new("openai", key, Metric::Req).expect("series");
    for bad in [
        one("k2", "NaN"),
        one("k2", "1e999"),
        one("k2", "-1"),
        r#"{"provider":"openai","key_id":"k2","checks":[{"metric":"bogus","limit":1,"window_seconds":60,"amount":1}]}"#.to_owned(),
        r#"{"provider":"openai","key_id":"k2","checks":[{"metric":"req","limit":1,"window_seconds":0,"amount":1}]}"#.to_owned(),
        r#"{"provider":"","key_id":"k2","checks":[]}"#.to_owned(),
    ] {
        let body = format!(r#"{{"reservations":[{},{bad}]}}"#, one("k1", "5"));
        let (status, text) = send(b, "POST", "/batch/reserve", Some("gw-secret"), Some(&body)).await;
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(text.contains("\"message\""), "{text}");
    }
    let valid = format!(r#"{{"reservations":[{}]}}"#, one("k1", "5"));
    assert_eq!(
        send(
            b,
            "POST",
            "/batch/reserve",
            Some("dash-secret"),
            Some(&valid)
        )
        .await
        .0,
        403,
        "a read-only token cannot reserve"
    );
    assert_eq!(
        s.store.get(&req("k1")).await.expect("get"),
        0.0,
        "refused batches reserved nothing"
    );

    let body = format!(
        r#"{{"reservations":[{},{},{}]}}"#,
        one("k1", "2"),
        one("k1", "2"),
        one("k1", "2")
    );
    let (status, text) = send(b, "POST", "/batch/reserve", Some("gw-secret"), Some(&body)).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let granted: Vec<bool> = answer["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["granted"] == true)
        .collect();
    assert_eq!(granted, [true, true, false], "{text}");
    assert_eq!(answer["outcomes"][2]["denial"]["used"], 2.0, "{text}");
    assert_eq!(s.store.get(&req("k1")).await.expect("get"), 2.0);
}

#[tokio::test]
async fn percent_encoded_segments_reach_the_right_series() {
    let s = start(false).await;
    let (status, _) = send(
        &s.base,
        "POST",
        "/usage/a%3Ab%7Bc/k%2F1%20x/tokens/increment",
        Some("gw-secret"),
        Some(r#"{"delta":3}"#),
    )
    .await;
    assert_eq!(status, 200);
    let series = Series::new("a:b{c", "k/1 x", Metric::Tokens).expect("series");
    assert_eq!(s.store.get(&series).await.expect("get"), 3.0);
    assert_eq!(
        send(
            &s.base,
            "GET",
            "/usage/a%3Ab%7Bc/k%2F1%20x/tokens",
            Some("gw-secret"),
            None
        )
        .await,
        (200, "3".into())
    );
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let s = start(true).await;
    let ca = s._dir.path().join("ca.crt");
    let options = HttpOptions {
        token: Some("gw-secret".into()),
        tls_ca_file: Some(ca),
        ..HttpOptions::default()
    };
    let store = HttpStore::connect(&s.base, options)
        .await
        .expect("connect over TLS");
    let series = Series::new("openai", "key1", Metric::Req).expect("series");
    assert_eq!(
        store
            .increment(&series, 4.0)
            .await
            .expect("increment over TLS"),
        4.0
    );
    let plain = HttpStore::connect(
        &s.base,
        HttpOptions {
            token: Some("gw-secret".into()),
            ..HttpOptions::default()
        },
    )
    .await;
    assert!(plain.is_err(), "an unknown CA is refused");
}

#[tokio::test]
async fn the_http_config_store_loads_saves_and_detects_stale_versions() {
    use truckllm_config::{ConfigError, ConfigStore, FileConfigStore, FileStoreOptions, SaveMeta};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "server:\n  listen: \"127.0.0.1:2906\"\n").expect("config");
    let env: HashMap<String, String> = HashMap::new();
    let file: Arc<dyn ConfigStore> = Arc::new(FileConfigStore::new(
        &path,
        FileStoreOptions {
            env: Arc::new(env.clone()),
            ..FileStoreOptions::default()
        },
    ));
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

    let remote = truckllm_storage_http::HttpConfigStore::new(&base, Some("gw-secret".into()))
        .expect("client");
    let current = remote.load().await.expect("load");
    assert_eq!(current.info.version, 1);
    assert!(current.text.contains("127.0.0.1:2906"));
    let edited = current.text.replace("2906", "2907");
    let v2 = remote
        .save_text(&edited, 1, SaveMeta::default())
        .await
        .expect("save");
    assert_eq!(v2, 2);
    assert!(
        std::fs::read_to_string(&path)
            .expect("file")
            .contains("2907"),
        "saved through to the file store"
    );
    let stale = remote
        .save_text(&current.text, 1, SaveMeta::default())
        .await;
    assert!(
        matches!(
            stale,
            Err(ConfigError::Conflict {
                expected: 1,
                current: 2
            })
        ),
        "{stale:?}"
    );
    assert!(
        file.load().await.expect("load").text.contains("2907"),
        "a stale save changed nothing"
    );
    let reader = truckllm_storage_http::HttpConfigStore::new(&base, Some("dash-secret".into()))
        .expect("client");
    assert!(reader.load().await.is_err(), "no config scope, no config");

    // The change is audited with its old and new version; the stale save as failed.
    audit.flush().await;
    let records: Vec<Value> = std::fs::read_to_string(&audit_path)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let changes: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "config.put")
        .collect();
    assert_eq!(changes.len(), 2, "{records:#?}");
    assert_eq!(
        (
            &changes[0]["category"],
            &changes[0]["old_version"],
            &changes[0]["new_version"]
        ),
        (
            &serde_json::json!("config"),
            &serde_json::json!(1),
            &serde_json::json!(2)
        )
    );
    assert_eq!(changes[1]["outcome"], "failed");
    assert_eq!(changes[1]["status"], 412, "a stale If-Match is a 412");
}

/// The config-store conformance suite through the HTTP protocol (load and save: the seed's
/// protocol has no history), each check against its own server over a fresh file store.
#[tokio::test]
async fn the_http_config_store_conforms() {
    use truckllm_config::store::conformance::{Capabilities, run_all, sample};
    use truckllm_config::{ConfigStore, FileConfigStore, FileStoreOptions};
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fresh = || {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, sample(1)).expect("config");
            let file: Arc<dyn ConfigStore> = Arc::new(FileConfigStore::new(
                &path,
                FileStoreOptions::written_only(),
            ));
            let env: HashMap<String, String> = HashMap::new();
            let state = Arc::new(ServerState {
                store: Arc::new(MemoryStore::new()),
                config: Some(file),
                tokens: Tokens::parse(TOKENS, &env).expect("tokens"),
                audit: Audit::to_file(&dir.path().join("audit.jsonl")).expect("audit"),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(serve(listener, router(state), None, std::future::pending()));
            dirs.lock().expect("lock").push(dir);
            let remote =
                truckllm_storage_http::HttpConfigStore::new(&base, Some("gw-secret".into()))
                    .expect("client");
            Arc::new(remote) as Arc<dyn ConfigStore>
        }
    };
    run_all(fresh, Capabilities { history: false }).await;
}

/// Budgets' period routes: reserve and add need the write scope, read the read scope (and the
/// token's providers); bad input is a 400 that changes nothing; an add repeated under one
/// Idempotency-Key counts once.
#[tokio::test]
async fn period_routes_check_scopes_and_input() {
    let s = start(false).await;
    let b = &s.base;
    let reserve = r#"{"provider":"openai","key_id":"key1","checks":[{"metric":"cost","limit":1,"amount":0.25,"counted":["total"],"write":{"name":"total"}}]}"#;
    let read =
        r#"{"provider":"openai","key_id":"key1","reads":[{"metric":"cost","counted":["total"]}]}"#;
    let add = r#"{"provider":"openai","key_id":"key1","adds":[{"metric":"cost","counter":{"name":"total"},"delta":0.5}]}"#;
    let (status, text) = send(
        b,
        "POST",
        "/periods/reserve",
        Some("dash-secret"),
        Some(reserve),
    )
    .await;
    assert_eq!(status, 403, "a read token may not reserve: {text}");
    let (status, _) = send(b, "POST", "/periods/add", Some("dash-secret"), Some(add)).await;
    assert_eq!(status, 403, "a read token may not add");
    assert_eq!(
        send(b, "POST", "/periods/reserve", None, Some(reserve))
            .await
            .0,
        401
    );

    let (status, text) = send(
        b,
        "POST",
        "/periods/reserve",
        Some("gw-secret"),
        Some(reserve),
    )
    .await;
    assert_eq!((status, text.as_str()), (200, r#"{"granted":true}"#));
    let (status, text) = send(b, "POST", "/periods/read", Some("dash-secret"), Some(read)).await;
    assert_eq!(
        (status, text.as_str()),
        (200, r#"{"values":[0.25]}"#),
        "a read token may read"
    );
    let groq = read.replace("openai", "groq");
    let (status, _) = send(b, "POST", "/periods/read", Some("dash-secret"), Some(&groq)).await;
    assert_eq!(status, 403, "outside the read token's providers");

    let http = reqwest::Client::new();
    for _ in 0..2 {
        let response = http
            .post(format!("{b}/periods/add"))
            .bearer_auth("gw-secret")
            .header("idempotency-key", "settle-1")
            .header("content-type", "application/json")
            .body(add)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 204);
    }
    let (_, text) = send(b, "POST", "/periods/read", Some("gw-secret"), Some(read)).await;
    assert_eq!(
        text, r#"{"values":[0.75]}"#,
        "the repeated key counted once"
    );

    for (path, body) in [
        ("/periods/reserve", reserve.replace("0.25", "-1")),
        (
            "/periods/reserve",
            reserve.replace(r#""total"]"#, r#""a b"]"#),
        ),
        (
            "/periods/reserve",
            reserve.replace(r#""checks":["#, r#""checks":[],"x":["#),
        ),
        (
            "/periods/reserve",
            reserve.replace(
                r#"{"name":"total"}"#,
                r#"{"name":"total","expires_at_ms":1}"#,
            ),
        ),
        ("/periods/reserve", reserve.replace("cost", "dollars")),
        ("/periods/add", add.replace("0.5", "1e300")),
        (
            "/periods/add",
            add.replace(r#""adds":[{"#, r#""adds":[],"y":[{"#),
        ),
        ("/periods/read", read.replace(r#"["total"]"#, "[]")),
    ] {
        let (status, text) = send(b, "POST", path, Some("gw-secret"), Some(&body)).await;
        assert_eq!(status, 400, "{path} {body}: {text}");
    }
    let (_, text) = send(b, "POST", "/periods/read", Some("gw-secret"), Some(read)).await;
    assert_eq!(text, r#"{"values":[0.75]}"#, "bad input changed nothing");
}
