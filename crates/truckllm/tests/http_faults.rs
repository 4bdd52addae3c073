//! Fault tests for the HTTP backend with real processes: a storage server that goes away and
//! comes back, with Redis behind it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use truckllm_storage_http::{HttpOptions, HttpStore};
use truckllm_store::{
    Clock, Increment, LimitCheck, Metric, ProviderKey, ReserveOutcome, ReserveRequest,
    ResilientOptions, ResilientStore, RuntimeStore, RuntimeStoreExt, Series, StoreError,
    StoreOptions, SystemClock,
};
use truckllm_testkit::{RedisServer, free_port};

const TOKEN: &str = "fault-token";

struct Server {
    child: Option<Child>,
    port: u16,
    redis_url: String,
    tokens: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(redis: &RedisServer) -> Self {
        let tokens = format!(
            "tokens:\n  - name: t\n    token: \"{TOKEN}\"\n    scopes: [read, write, docs]\n"
        );
        Self::start_with(redis.url(), &tokens)
    }

    /// A server on `store_url` (`memory:` or Redis) with these tokens.
    fn start_with(store_url: String, tokens_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(&tokens, tokens_yaml).expect("tokens");
        let mut server = Self {
            child: None,
            port: free_port(),
            redis_url: store_url,
            tokens,
            _dir: dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_truckllm"))
            .args([
                "storage-server",
                "--insecure-plain-http",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["--store", &self.redis_url])
            .arg("--tokens")
            .arg(&self.tokens)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn storage-server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        assert!(banner.contains("storage server on"), "{banner}");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn options(retries: usize) -> HttpOptions {
    HttpOptions {
        token: Some(TOKEN.into()),
        retries,
        timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(300),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(300),
        ..HttpOptions::default()
    }
}

#[tokio::test]
async fn the_breaker_opens_while_the_server_is_down_and_closes_when_it_is_back() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let redis = RedisServer::start();
    let mut server = Server::start(&redis);
    let store = HttpStore::connect(&server.url(), options(0))
        .await
        .expect("connect");
    let s = Series::new("openai", "key1", Metric::Req).expect("series");
    assert_eq!(store.increment(&s, 1.0).await.expect("up"), 1.0);

    server.kill();
    for _ in 0..3 {
        let e = store.get(&s).await.expect_err("server down");
        assert!(e.is_retryable(), "{e}");
    }
    let open = store.get(&s).await.expect_err("breaker open");
    assert!(
        open.to_string().contains("circuit open"),
        "fails fast with a clear error: {open}"
    );

    server.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    let value = loop {
        match store.get(&s).await {
            Ok(v) => break v,
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value, 1.0, "the data in Redis survived the server restart");
    assert_eq!(store.increment(&s, 1.0).await.expect("closed again"), 2.0);
}

#[tokio::test]
async fn a_server_restart_mid_run_loses_and_duplicates_nothing() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let redis = RedisServer::start();
    let mut server = Server::start(&redis);
    let store = Arc::new(
        HttpStore::connect(&server.url(), options(2))
            .await
            .expect("connect"),
    );
    let a = Series::new("p", "a", Metric::Req).expect("series");
    let b = Series::new("p", "b", Metric::Tokens).expect("series");
    let batch = [
        Increment::new(a.clone(), 1.0),
        Increment::new(b.clone(), 10.0),
        Increment::new(a.clone(), 1.0),
    ];
    const BATCHES: usize = 150;

    let writer = {
        let store = Arc::clone(&store);
        let batch = batch.clone();
        tokio::spawn(async move {
            let mut failed_attempts = 0;
            for i in 0..BATCHES {
                let id = format!("run-batch-{i}");
                // A durable caller: retry the same id until the server takes it.
                loop {
                    match store.increment_many_once(&id, &batch).await {
                        Ok(_) => break,
                        Err(_) => {
                            failed_attempts += 1;
                            assert!(failed_attempts < 2000, "never recovered");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            failed_attempts
        })
    };
    // Kill the server once the run is under way, then bring it back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis
        .cli(&["GET", "usage:{p:a}:req"])
        .parse::<f64>()
        .unwrap_or(0.0)
        < 40.0
    {
        assert!(Instant::now() < deadline, "the run did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await; // the outage itself, not a synchronisation
    server.spawn();
    let failed_attempts = writer.await.expect("writer");
    assert!(failed_attempts > 0, "the restart was felt by the client");
    assert_eq!(
        redis.cli(&["GET", "usage:{p:a}:req"]),
        (2 * BATCHES).to_string(),
        "every batch counted once"
    );
    assert_eq!(
        redis.cli(&["GET", "usage:{p:b}:tokens"]),
        (10 * BATCHES).to_string()
    );
}

/// The hardening issue's scenario on a real `truckllm storage-server` (memory store, 10,000
/// keys): a token limited to one provider writes new keys in batches, as many as would fill
/// the store. It is stopped at its default quota (1000 keys) with 507 `quota_exceeded`, a
/// refusal its client does not count as an outage; and a gateway's resilient HTTP store still
/// gets new keys and enforces `req_per_min: 2` on the shared store, never degrading.
#[tokio::test]
async fn a_tenant_cannot_fill_the_store_and_a_gateway_keeps_its_limits() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tokens = "tokens:\n  - name: gateway\n    token: gw\n    scopes: [read, write, docs]\n  - name: tenant\n    token: tenant\n    scopes: [read, write]\n    providers: [tenant]\n";
    let server = Server::start_with("memory:".into(), tokens);
    let with_token = |token: &str| HttpOptions {
        token: Some(token.into()),
        ..HttpOptions::default()
    };
    let tenant = HttpStore::connect(&server.url(), with_token("tenant"))
        .await
        .expect("connect");
    let mut accepted = 0;
    let mut refusal = None;
    for batch in 0..20 {
        let increments: Vec<Increment> = (0..500)
            .map(|i| {
                let key = format!("k{}", batch * 500 + i);
                Increment::new(
                    Series::new("tenant", key, Metric::Req).expect("series"),
                    1.0,
                )
            })
            .collect();
        match tenant.increment_many(&increments).await {
            Ok(_) => accepted += increments.len(),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    assert_eq!(accepted, 1000, "the tenant's default quota");
    assert!(
        matches!(&refusal, Some(e @ StoreError::QuotaExceeded { .. }) if !e.is_retryable()),
        "{refusal:?}"
    );

    let http = HttpStore::connect(&server.url(), with_token("gw"))
        .await
        .expect("connect");
    let gateway = ResilientStore::new(http, StoreOptions::default(), ResilientOptions::default());
    let request = ReserveRequest {
        key: ProviderKey::new("openai", "new-key").expect("key"),
        checks: vec![LimitCheck {
            metric: Metric::Req,
            limit: 2.0,
            window: Duration::from_secs(60),
            amount: 1.0,
        }],
        id: None,
    };
    let mut granted = 0;
    for _ in 0..6 {
        if matches!(
            gateway.reserve(&request).await.expect("reserve"),
            ReserveOutcome::Granted(_)
        ) {
            granted += 1;
        }
    }
    assert_eq!(granted, 2, "req_per_min: 2 holds on the shared store");
    assert!(!gateway.is_degraded());
}

/// The caller's clock may stray five minutes from the server's, no more: a batch "ten days
/// ahead" (or at `u64::MAX`) is refused with 400 and changes nothing.
#[tokio::test]
async fn a_caller_clock_far_from_the_servers_is_refused() {
    let tokens =
        format!("tokens:\n  - name: t\n    token: \"{TOKEN}\"\n    scopes: [read, write, docs]\n");
    let server = Server::start_with("memory:".into(), &tokens);
    let http = reqwest::Client::new();
    let batch =
        r#"{"increments":[{"series":{"provider":"p","key_id":"k","metric":"req"},"delta":1}]}"#;
    let ahead = SystemClock.now_ms() + 10 * 86_400_000;
    for time in [ahead.to_string(), u64::MAX.to_string()] {
        let response = http
            .post(format!("{}/batch/increment", server.url()))
            .bearer_auth(TOKEN)
            .header("x-truckllm-time-ms", &time)
            .header("content-type", "application/json")
            .body(batch)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 400, "time {time}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "clock_skew", "{body}");
    }
    let store = HttpStore::connect(
        &server.url(),
        HttpOptions {
            token: Some(TOKEN.into()),
            ..HttpOptions::default()
        },
    )
    .await
    .expect("connect");
    let s = Series::new("p", "k", Metric::Req).expect("series");
    assert_eq!(store.get(&s).await.expect("get"), 0.0, "nothing changed");
}
