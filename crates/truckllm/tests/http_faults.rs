//! Fault tests for the HTTP backend with real processes: a storage server that goes away and
//! comes back, with Redis behind it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use truckllm_storage_http::{HttpOptions, HttpStore};
use truckllm_store::{Increment, Metric, RuntimeStore, Series};
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
        let dir = tempfile::tempdir().expect("dir");
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!("tokens:\n  - name: t\n    token: \"{TOKEN}\"\n    scopes: [read, write]\n"),
        )
        .expect("tokens");
        let mut server = Self {
            child: None,
            port: free_port(),
            redis_url: redis.url(),
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
