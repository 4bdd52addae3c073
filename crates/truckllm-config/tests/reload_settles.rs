//! The watcher settles: one change to the file gives one reload (or one rejection) and one
//! read, and nothing more until the next change. A reload that would drop the last client key
//! without `server.open_mode: true` is refused. A store that is not a file is polled, with the
//! same "once per change" rule.
//!
//! Every wait is for the watcher's own progress ([`WatchGuard::caught_up`], the next event),
//! never a fixed sleep; a guard only turns a hang into a failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast::{Receiver, error::TryRecvError};
use truckllm_config::reload::WatchGuard;
use truckllm_config::store::Result;
use truckllm_config::store::file::write_atomic;
use truckllm_config::{
    ConfigStore, FileConfigStore, LiveConfig, ReloadEvent, SaveMeta, VersionInfo, Versioned,
};

const GUARD: Duration = Duration::from_secs(30);

/// A file store that counts its loads, and may hide its file (as a remote store would).
#[derive(Debug)]
struct Counting {
    inner: FileConfigStore,
    loads: AtomicU64,
    file_visible: bool,
}

#[async_trait]
impl ConfigStore for Counting {
    async fn load(&self) -> Result<Versioned> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load().await
    }
    async fn save_text(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64> {
        self.inner.save_text(text, expected, meta).await
    }
    async fn versions(&self) -> Result<Vec<VersionInfo>> {
        self.inner.versions().await
    }
    async fn get(&self, version: u64) -> Result<Versioned> {
        self.inner.get(version).await
    }
    async fn backup(&self, path: &Path) -> Result<()> {
        self.inner.backup(path).await
    }
    async fn restore(&self, path: &Path) -> Result<u64> {
        self.inner.restore(path).await
    }
    fn watched_path(&self) -> Option<PathBuf> {
        self.file_visible.then(|| self.inner.path().to_owned())
    }
}

struct Setup {
    live: Arc<LiveConfig>,
    store: Arc<Counting>,
    events: Receiver<ReloadEvent>,
    guard: WatchGuard,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(first: &str, file_visible: bool) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let inner = common::store_in(dir.path(), None);
        write_atomic(inner.path(), first.as_bytes()).expect("first version");
        let store = Arc::new(Counting {
            inner,
            loads: AtomicU64::new(0),
            file_visible,
        });
        let live = LiveConfig::start(
            Arc::clone(&store) as Arc<dyn ConfigStore>,
            Arc::new(common::env()),
            None,
        )
        .await
        .expect("start");
        let events = live.subscribe();
        let guard = live.watch().expect("watch");
        Self {
            live,
            store,
            events,
            guard,
            _dir: dir,
        }
    }

    fn write(&self, text: &str) {
        write_atomic(self.store.inner.path(), text.as_bytes()).expect("write");
    }

    fn loads(&self) -> u64 {
        self.store.loads.load(Ordering::SeqCst)
    }

    async fn next(&mut self) -> ReloadEvent {
        tokio::time::timeout(GUARD, self.events.recv())
            .await
            .expect("an event came")
            .expect("event")
    }

    async fn caught_up(&self) {
        tokio::time::timeout(GUARD, self.guard.caught_up())
            .await
            .expect("the watcher caught up")
            .expect("caught up");
    }

    /// Waits until the watcher has handled everything so far, then checks that it stays
    /// still: handling nothing new reads nothing and says nothing.
    async fn assert_settled(&mut self) {
        self.caught_up().await;
        let loads = self.loads();
        for _ in 0..3 {
            self.caught_up().await;
        }
        assert_eq!(
            self.loads(),
            loads,
            "the watcher kept reading the file after the change was handled"
        );
        self.assert_quiet();
    }

    fn assert_quiet(&mut self) {
        match self.events.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("an extra reload event: {other:?}"),
        }
    }
}

/// A valid config that names its version in its listen port.
fn valid(n: u16) -> String {
    format!(
        "server:\n  listen: \"127.0.0.1:{}\"\nstorage:\n  config:\n    poll_secs: 1\nllm_providers:\n  - id: \"p\"\n    base_url: \"https://p.example/v1\"\n    keys:\n      - id: \"k\"\n        secret: \"sk\"\napi_keys:\n  - id: \"c\"\n    key: \"client-secret\"\n",
        3000 + n
    )
}

const INVALID: &str = "server:\n  listen: [broken\n";

fn applied_listen(live: &LiveConfig) -> String {
    live.current().resolved.server.listen.clone()
}

#[tokio::test]
async fn one_valid_change_gives_one_reload_and_then_nothing() {
    let mut s = Setup::start(&valid(1), true).await;
    s.write(&valid(2));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
    assert_eq!(applied_listen(&s.live), "127.0.0.1:3002");
    // The reload's own read of the file must not trigger another.
    s.assert_settled().await;
    s.write(&valid(3));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
    assert_eq!(applied_listen(&s.live), "127.0.0.1:3003");
    s.assert_settled().await;
}

#[tokio::test]
async fn one_bad_change_gives_one_rejection() {
    let mut s = Setup::start(&valid(1), true).await;
    s.write(INVALID);
    let ReloadEvent::Rejected { error, .. } = s.next().await else {
        panic!("the bad version was not rejected");
    };
    assert!(error.contains("line 2"), "{error}");
    s.assert_settled().await;
    s.write(&valid(3));
    // Exactly [rejected, applied(v3)]: nothing between them.
    let event = s.next().await;
    assert!(
        matches!(event, ReloadEvent::Applied { .. }),
        "expected the next change, got {event:?}"
    );
    assert_eq!(applied_listen(&s.live), "127.0.0.1:3003");
    s.assert_settled().await;
}

#[tokio::test]
async fn the_same_bad_text_saved_again_is_not_rejected_again_by_the_watcher() {
    let mut s = Setup::start(&valid(1), true).await;
    s.write(INVALID);
    assert!(matches!(s.next().await, ReloadEvent::Rejected { .. }));
    s.caught_up().await;
    s.write(INVALID);
    s.caught_up().await;
    s.assert_quiet();
    // An explicit reload still answers.
    assert!(s.live.reload("admin").await.is_err());
    assert!(matches!(s.next().await, ReloadEvent::Rejected { .. }));
}

#[tokio::test]
async fn a_polled_store_reloads_once_per_change() {
    let mut s = Setup::start(&valid(1), false).await;
    s.write(&valid(2));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
    s.write(INVALID);
    assert!(matches!(s.next().await, ReloadEvent::Rejected { .. }));
    // Three more polls see the same bad text and say nothing.
    for _ in 0..3 {
        s.caught_up().await;
    }
    s.assert_quiet();
    s.write(&valid(4));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
    assert_eq!(applied_listen(&s.live), "127.0.0.1:3004");
}

/// `valid(n)` without its client keys, and with `extra` under `server:`.
fn keyless(n: u16, extra: &str) -> String {
    let text = valid(n).replace("api_keys:\n  - id: \"c\"\n    key: \"client-secret\"\n", "");
    text.replacen("server:\n", &format!("server:\n{extra}"), 1)
}

#[tokio::test]
async fn removing_every_client_key_needs_open_mode_said_explicitly() {
    let mut s = Setup::start(&valid(1), true).await;
    s.write(&keyless(2, ""));
    let ReloadEvent::Rejected { error, .. } = s.next().await else {
        panic!("a reload to open mode was applied silently");
    };
    assert!(error.contains("server.open_mode"), "{error}");
    assert_eq!(s.live.current().resolved.api_keys.len(), 1, "keys kept");
    s.caught_up().await;
    s.write(&keyless(3, "  open_mode: true\n"));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
    assert!(s.live.current().resolved.api_keys.is_empty());
    assert!(s.live.current().resolved.server.open_mode);
}

#[tokio::test]
async fn a_config_already_without_keys_still_starts_and_reloads() {
    let mut s = Setup::start(&keyless(1, ""), true).await;
    s.write(&keyless(2, ""));
    assert!(matches!(s.next().await, ReloadEvent::Applied { .. }));
}
