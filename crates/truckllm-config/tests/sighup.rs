//! SIGHUP reloads the config. Alone in its test binary, since the signal goes to the process.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{env, numbered, store_in};
use truckllm_config::store::Result;
use truckllm_config::store::file::write_atomic;
use truckllm_config::{ConfigStore, FileConfigStore, LiveConfig, SaveMeta, VersionInfo, Versioned};

/// The file store, minus its file watcher: only SIGHUP can trigger a reload here.
#[derive(Debug)]
struct Unwatched(FileConfigStore);

#[async_trait]
impl ConfigStore for Unwatched {
    async fn load(&self) -> Result<Versioned> {
        self.0.load().await
    }
    async fn save_text(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64> {
        self.0.save_text(text, expected, meta).await
    }
    async fn versions(&self) -> Result<Vec<VersionInfo>> {
        self.0.versions().await
    }
    async fn get(&self, version: u64) -> Result<Versioned> {
        self.0.get(version).await
    }
    async fn backup(&self, path: &std::path::Path) -> Result<()> {
        self.0.backup(path).await
    }
    async fn restore(&self, path: &std::path::Path) -> Result<u64> {
        self.0.restore(path).await
    }
    fn watched_path(&self) -> Option<std::path::PathBuf> {
        None
    }
}

#[tokio::test]
async fn sighup_reloads_the_config() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    store
        .save_text(&numbered(1), 0, SaveMeta::default())
        .await
        .expect("save");
    let live = LiveConfig::start(Arc::new(Unwatched(store.clone())), Arc::new(env()), None)
        .await
        .expect("start");
    let _watch = live.watch().expect("watch");
    write_atomic(store.path(), numbered(2).as_bytes()).expect("edit");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("send SIGHUP");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.current().resolved.llm_providers[0].id != "p2-0" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
