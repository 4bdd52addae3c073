//! The config-store conformance suite against the file store and the PostgreSQL store (a
//! real server, a fresh database per check); the HTTP store runs it in `truckllm-storage-http`.
//! Also: a save on one PostgreSQL store reaches another's LISTEN at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use truckllm_config::store::conformance::{Capabilities, run_all, sample};
use truckllm_config::{
    ConfigStore, FileConfigStore, FileStoreOptions, PostgresConfigStore, SaveMeta,
};
use truckllm_testkit::PostgresServer;

const HISTORY: Capabilities = Capabilities { history: true };

fn options() -> FileStoreOptions {
    FileStoreOptions {
        history: 10,
        ..FileStoreOptions::written_only()
    }
}

#[tokio::test]
async fn the_file_store_conforms() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    run_all(
        || {
            let dirs = Arc::clone(&dirs);
            async move {
                let dir = tempfile::tempdir().expect("dir");
                let path = dir.path().join("config.yaml");
                std::fs::write(&path, sample(1)).expect("write");
                dirs.lock().expect("lock").push(dir);
                Arc::new(FileConfigStore::new(path, options())) as Arc<dyn ConfigStore>
            }
        },
        HISTORY,
    )
    .await;
}

async fn postgres_store() -> PostgresConfigStore {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("a test database");
    let store = PostgresConfigStore::connect(&url, options())
        .await
        .expect("connect");
    store
        .save_text(&sample(1), 0, SaveMeta::new("test", "first"))
        .await
        .expect("the first save names version 0");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_conforms() {
    run_all(
        || async { Arc::new(postgres_store().await) as Arc<dyn ConfigStore> },
        HISTORY,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_reaches_every_listener_and_an_empty_store_says_what_to_do() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("a test database");
    let first = PostgresConfigStore::connect(&url, options())
        .await
        .expect("connect");
    let empty = first.load().await.expect_err("nothing saved yet");
    assert!(empty.to_string().contains("config import"), "{empty}");
    let second = PostgresConfigStore::connect(&url, options())
        .await
        .expect("connect");
    let mut changes = second.notifications().await.expect("LISTEN");
    first
        .save_text(&sample(1), 0, SaveMeta::new("test", "first"))
        .await
        .expect("save");
    tokio::time::timeout(Duration::from_secs(30), changes.next())
        .await
        .expect("a notification")
        .expect("the stream goes on");
    assert!(second.load().await.expect("load").text.contains("client-1"));
}

/// Into an empty store, two first saves at once: one is version 1, the other a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_first_saves_into_an_empty_store_conflict() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("a test database");
    let store = Arc::new(
        PostgresConfigStore::connect(&url, options())
            .await
            .expect("connect"),
    );
    let saves = (1..=2).map(|n| {
        let store = Arc::clone(&store);
        async move {
            store
                .save_text(&sample(n), 0, SaveMeta::new("boot", "first"))
                .await
        }
    });
    let results = futures_util::future::join_all(saves).await;
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(truckllm_config::ConfigError::Conflict { .. }))),
        "{results:?}"
    );
}
