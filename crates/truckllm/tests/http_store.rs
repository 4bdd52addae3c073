//! The runtime store conformance suite through HTTP: an `HttpStore` client against a real
//! `truckllm storage-server` process, backed by memory, and again backed by a real Redis (also
//! with the client coalescing reservations, as a gateway does).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use truckllm_storage_http::{HttpOptions, HttpStore};
use truckllm_store::RuntimeStore;
use truckllm_store::conformance::{Context, Expiry};
use truckllm_testkit::{RedisServer, free_port};

const TOKEN: &str = "conformance-token";

/// A storage-server process and what it stands on; all stopped on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServer>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(
    store_url: Option<String>,
    counter_ttl: u64,
    redis: Option<RedisServer>,
) -> (Server, String) {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tokens:\n  - name: tests\n    token: \"{TOKEN}\"\n    scopes: [read, write, config, docs]\n"
        ),
    )
    .expect("tokens");
    let port = free_port();
    let store_url = store_url.unwrap_or_else(|| "memory:".into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args([
            "storage-server",
            "--insecure-plain-http",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--store",
            &store_url,
            "--counter-ttl",
            &counter_ttl.to_string(),
        ])
        .arg("--tokens")
        .arg(&tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn storage-server");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("banner");
    assert!(banner.contains("storage server on"), "{banner}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (
        Server {
            child,
            _dir: dir,
            _redis: redis,
        },
        format!("http://127.0.0.1:{port}"),
    )
}

async fn client(url: &str, ctx: &Context) -> HttpStore {
    let options = HttpOptions {
        token: Some(TOKEN.into()),
        clock: Arc::new(ctx.clock.clone()),
        ..HttpOptions::default()
    };
    HttpStore::connect(url, options)
        .await
        .expect("connect to the storage server")
}

/// The server expires counters by its own clock (memory) or Redis's; a short TTL keeps the
/// wait for that quick.
const SERVER_TTL: Duration = Duration::from_secs(3);

/// Every conformance check but the two that move the caller's clock an hour ahead: the
/// server refuses a caller time more than five minutes from its own, so through HTTP nobody
/// can claim that. Both run against each backend directly
/// (crates/truckllm-store/tests/conformance.rs).
macro_rules! http_conformance_tests {
    ($setup:expr) => {
        truckllm_store::conformance_tests!(@near_now $setup, SERVER_TTL, Expiry::RealTime);
    };
}

mod through_memory {
    use super::*;
    http_conformance_tests!(|ctx: Context| async move {
        let (server, url) = start_server(None, SERVER_TTL.as_secs(), None);
        let store: Arc<dyn RuntimeStore> = Arc::new(client(&url, &ctx).await);
        (store, server)
    });
}

mod through_redis {
    use super::*;
    http_conformance_tests!(|ctx: Context| async move {
        let redis = RedisServer::start();
        let (server, url) = start_server(Some(redis.url()), SERVER_TTL.as_secs(), Some(redis));
        let store: Arc<dyn RuntimeStore> = Arc::new(client(&url, &ctx).await);
        (store, server)
    });
}

/// The client side of a gateway on the storage server: concurrent reservations coalesced into
/// `POST /batch/reserve`.
mod coalescing_through_redis {
    use super::*;
    use truckllm_store::{CoalescingOptions, CoalescingStore};
    http_conformance_tests!(|ctx: Context| async move {
        let redis = RedisServer::start();
        let (server, url) = start_server(Some(redis.url()), SERVER_TTL.as_secs(), Some(redis));
        let client = client(&url, &ctx).await;
        let store: Arc<dyn RuntimeStore> =
            Arc::new(CoalescingStore::new(client, CoalescingOptions::default()));
        (store, server)
    });
}
