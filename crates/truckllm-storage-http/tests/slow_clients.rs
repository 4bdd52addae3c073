//! The storage server's connection limits over real sockets: a TLS client that never sends
//! its ClientHello is closed, a slow head is disconnected, and a TLS client that does its part
//! is served. No assertion on elapsed time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use truckllm_http_serve::Limits;
use truckllm_storage_http::server::{ServerState, router, serve_with, tls_config};
use truckllm_storage_http::{Audit, HttpOptions, HttpStore, Tokens};
use truckllm_store::{MemoryStore, Metric, RuntimeStoreExt, Series};

const TOKENS: &str =
    "tokens:\n  - name: gateway\n    token: \"gw-secret\"\n    scopes: [read, write]\n";

/// Turns a hang into a failure; never reached when the server behaves.
const GUARD: Duration = Duration::from_secs(30);

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        tls_handshake_timeout: Duration::from_secs(1),
        max_connections: 16,
    }
}

/// Starts a storage server (TLS when `tls`); returns its address and the temp dir with the CA.
async fn start(tls: bool) -> (String, tempfile::TempDir) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("dir");
    let env: HashMap<String, String> = HashMap::new();
    let state = Arc::new(ServerState {
        store: Arc::new(MemoryStore::new()),
        config: None,
        tokens: Tokens::parse(TOKENS, &env).expect("tokens"),
        audit: Audit::new(truckllm_logging::Logger::disabled()),
    });
    let tls = tls.then(|| {
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
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve_with(
        listener,
        router(state),
        tls,
        limits(),
        std::future::pending(),
    ));
    (addr, dir)
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0) | Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_tls_client_that_never_says_hello_is_closed() {
    let (addr, _dir) = start(true).await;
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    assert!(
        read_to_close(&mut silent).await.is_empty(),
        "closed without a word"
    );
}

#[tokio::test]
async fn a_tls_client_that_does_its_part_is_served() {
    let (addr, dir) = start(true).await;
    let options = HttpOptions {
        token: Some("gw-secret".into()),
        tls_ca_file: Some(dir.path().join("ca.crt")),
        ..HttpOptions::default()
    };
    let store = HttpStore::connect(&format!("https://{addr}"), options)
        .await
        .expect("connect over TLS");
    let series = Series::new("openai", "key1", Metric::Req).expect("series");
    assert_eq!(store.increment(&series, 2.0).await.expect("increment"), 2.0);
}

#[tokio::test]
async fn a_trickled_head_is_disconnected() {
    let (addr, _dir) = start(false).await;
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        let head = format!(
            "GET /health HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
            "a".repeat(160)
        );
        for b in head.bytes() {
            if writer.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(GUARD, reader.read(&mut buf))
        .await
        .expect("the server closed the connection");
    if let Ok(n) = read {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.contains(" 200 "), "served: {text}");
    }
}
