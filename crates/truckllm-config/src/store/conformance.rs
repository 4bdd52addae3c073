//! The config-store conformance suite: one list of checks every [`ConfigStore`] must pass,
//! run against the file, HTTP and PostgreSQL stores by their tests, so they behave alike.
//!
//! Each check gets a fresh store whose current config is [`sample`]`(1)`, made by the
//! caller's `fresh` function. Stores that keep a history ([`Capabilities::history`]) also
//! get the history, rollback, backup and restore checks; the seed's HTTP protocol has load
//! and save only.

use std::future::Future;
use std::sync::Arc;

use super::{ConfigStore, SaveMeta};
use crate::error::ConfigError;

/// What a store offers beyond load and save.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Versions, get, rollback, backup and restore.
    pub history: bool,
}

/// A valid config, distinct for each `n`: its client key id is `client-{n}`.
pub fn sample(n: u32) -> String {
    format!(
        "llm_providers:\n  - id: \"p\"\n    base_url: \"http://127.0.0.1:9/v1\"\n    keys:\n      - id: \"k1\"\n        secret: \"provider-secret\"\napi_keys:\n  - id: \"client-{n}\"\n    key: \"client-secret-{n}\"\n"
    )
}

/// Runs every check that `capabilities` allow, each on a store made by `fresh`.
pub async fn run_all<F, Fut>(fresh: F, capabilities: Capabilities)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ConfigStore>>,
{
    check_save_and_load(fresh().await).await;
    check_stale_save_conflicts(fresh().await).await;
    check_invalid_text_changes_nothing(fresh().await).await;
    check_concurrent_saves_one_wins(fresh().await).await;
    if capabilities.history {
        check_versions_and_get(fresh().await).await;
        check_rollback(fresh().await).await;
        check_backup_and_restore(fresh().await).await;
        check_history_is_bounded(fresh().await).await;
    }
}

async fn current(store: &dyn ConfigStore) -> (u64, String) {
    let loaded = store.load().await.expect("load");
    (loaded.info.version, loaded.text)
}

pub async fn check_save_and_load(store: Arc<dyn ConfigStore>) {
    let (v1, text) = current(store.as_ref()).await;
    assert!(text.contains("client-1"), "starts at sample(1): {text}");
    let meta = SaveMeta::new("alice", "second");
    let v2 = store.save_text(&sample(2), v1, meta).await.expect("save");
    assert!(v2 > v1, "a save makes a newer version ({v1} → {v2})");
    let (now, text) = current(store.as_ref()).await;
    assert_eq!(now, v2);
    assert!(text.contains("client-2"), "{text}");
}

pub async fn check_stale_save_conflicts(store: Arc<dyn ConfigStore>) {
    let (v1, _) = current(store.as_ref()).await;
    let v2 = store
        .save_text(&sample(2), v1, SaveMeta::new("a", "first"))
        .await
        .expect("save");
    let stale = store
        .save_text(&sample(3), v1, SaveMeta::new("b", "stale"))
        .await;
    match stale {
        Err(ConfigError::Conflict { expected, current }) => {
            assert_eq!((expected, current), (v1, v2));
        }
        other => panic!("a stale save must conflict, got {other:?}"),
    }
    let (now, text) = current(store.as_ref()).await;
    assert_eq!(now, v2);
    assert!(
        text.contains("client-2"),
        "the stale save changed nothing: {text}"
    );
}

pub async fn check_invalid_text_changes_nothing(store: Arc<dyn ConfigStore>) {
    let (v1, _) = current(store.as_ref()).await;
    for bad in [
        "llm_providers: 5\n",
        "server: {listen: [\n",
        "api_keys: [{id: \"\"}]\n",
    ] {
        let refused = store.save_text(bad, v1, SaveMeta::new("a", "bad")).await;
        assert!(refused.is_err(), "{bad:?} must be refused");
    }
    let (now, text) = current(store.as_ref()).await;
    assert_eq!(now, v1);
    assert!(text.contains("client-1"), "{text}");
}

pub async fn check_concurrent_saves_one_wins(store: Arc<dyn ConfigStore>) {
    let (v1, _) = current(store.as_ref()).await;
    let saves = (2..6).map(|n| {
        let store = Arc::clone(&store);
        async move {
            store
                .save_text(&sample(n), v1, SaveMeta::new("racer", format!("{n}")))
                .await
        }
    });
    let results = futures_util::future::join_all(saves).await;
    let won: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one of four saves of v{v1} wins: {results:?}"
    );
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(ConfigError::Conflict { .. })))
        .count();
    assert_eq!(conflicts, 3, "{results:?}");
    assert_eq!(current(store.as_ref()).await.0, won[0]);
}

pub async fn check_versions_and_get(store: Arc<dyn ConfigStore>) {
    let (v1, _) = current(store.as_ref()).await;
    let v2 = store
        .save_text(&sample(2), v1, SaveMeta::new("bob", "two"))
        .await
        .expect("save");
    let versions = store.versions().await.expect("versions");
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {numbers:?}"
    );
    assert_eq!(numbers.last(), Some(&v2));
    let newest = versions.last().expect("a version");
    assert_eq!(
        (newest.author.as_str(), newest.comment.as_str()),
        ("bob", "two")
    );
    let old = store.get(v1).await.expect("get v1");
    assert!(old.text.contains("client-1"), "{}", old.text);
    assert_eq!(old.info.sha256, super::file::sha256_hex(&old.text));
    assert!(matches!(
        store.get(v2 + 100).await,
        Err(ConfigError::UnknownVersion(v)) if v == v2 + 100
    ));
}

pub async fn check_rollback(store: Arc<dyn ConfigStore>) {
    let (v1, _) = current(store.as_ref()).await;
    let v2 = store
        .save_text(&sample(2), v1, SaveMeta::new("a", "two"))
        .await
        .expect("save");
    let v3 = store.rollback(v1, "carol").await.expect("rollback");
    assert!(v3 > v2, "a rollback is a new version");
    let (now, text) = current(store.as_ref()).await;
    assert_eq!(now, v3);
    assert!(text.contains("client-1"), "{text}");
    let info = store.versions().await.expect("versions");
    let last = info.last().expect("a version");
    assert_eq!(last.author, "carol");
    assert_eq!(last.comment, format!("rollback to version {v1}"));
}

pub async fn check_backup_and_restore(store: Arc<dyn ConfigStore>) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("backup.json");
    let (v1, _) = current(store.as_ref()).await;
    let v2 = store
        .save_text(&sample(2), v1, SaveMeta::new("a", "two"))
        .await
        .expect("save");
    store.backup(&file).await.expect("backup");
    store
        .save_text(&sample(3), v2, SaveMeta::new("a", "three"))
        .await
        .expect("save");
    let restored = store.restore(&file).await.expect("restore");
    assert_eq!(restored, v2);
    let (now, text) = current(store.as_ref()).await;
    assert_eq!(now, v2);
    assert!(text.contains("client-2"), "{text}");
    assert!(
        store
            .get(v1)
            .await
            .expect("v1 back")
            .text
            .contains("client-1")
    );
    std::fs::write(&file, b"{\"format\": \"something else\"}").expect("write");
    assert!(store.restore(&file).await.is_err(), "not a backup");
    assert_eq!(
        current(store.as_ref()).await.0,
        v2,
        "a bad restore changed nothing"
    );
}

pub async fn check_history_is_bounded(store: Arc<dyn ConfigStore>) {
    let (mut version, _) = current(store.as_ref()).await;
    for n in 2..40 {
        version = store
            .save_text(&sample(n), version, SaveMeta::new("a", "many"))
            .await
            .expect("save");
    }
    let versions = store.versions().await.expect("versions");
    assert!(
        versions.len() < 39,
        "the history is bounded: {} kept",
        versions.len()
    );
    assert_eq!(versions.last().map(|v| v.version), Some(version));
}
