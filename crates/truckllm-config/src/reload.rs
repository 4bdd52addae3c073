//! The running configuration and how it changes: [`LiveConfig`] holds the config in use behind
//! an atomic pointer; [`LiveConfig::reload`] loads the store's current version, validates it
//! and swaps it in. A config that fails validation leaves the running one in place, is logged
//! and counted (`truckllm_config_reload_failures_total`). So is a version that would drop the
//! last client key (`api_keys`) without saying `server.open_mode: true`: that would open the
//! gateway to anyone.
//!
//! Reloads are triggered by a change to the file (its directory is watched, debounced), by
//! polling a store that is not a file (`storage.config.poll_secs`), by SIGHUP, or by a direct
//! call (the admin API). One change gives one reload or one rejection, and nothing more until
//! the next change:
//!
//! - Only events that can change the file's content count (create, write, rename, remove).
//!   Opening and reading it do not: reading the file is what a reload does, so counting those
//!   made every reload trigger the next one, for ever.
//! - A change, or a poll, whose text is already running or was already rejected is skipped
//!   quietly: one save seen as two batches of events, or the same bad text polled again, is
//!   still one change. An explicit reload (SIGHUP, admin API) always answers afresh.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, new_debouncer};
use tokio::sync::{mpsc, watch};

use crate::error::{ConfigError, Problem};
use crate::interpolate::Env;
use crate::load::load_str;
use crate::schema::Config;
use crate::secret::MasterKey;
use crate::store::ConfigStore;
use crate::store::file::sha256_hex;

/// The config in use.
#[derive(Debug)]
pub struct Running {
    pub version: u64,
    /// As written (references kept); safe to show once redacted.
    pub raw: Config,
    /// As used: references resolved, secrets decrypted. Never saved or printed whole.
    pub resolved: Config,
    pub sha256: String,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied { version: u64 },
    Unchanged { version: u64 },
}

/// What a reload did, for whoever audits config changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    /// A new version is running.
    Applied {
        trigger: String,
        old_version: u64,
        new_version: u64,
    },
    /// A version was rejected; `kept_version` still runs.
    Rejected {
        trigger: String,
        kept_version: u64,
        error: String,
    },
}

/// The running config, shared by everything that reads it.
pub struct LiveConfig {
    store: Arc<dyn ConfigStore>,
    events: tokio::sync::broadcast::Sender<ReloadEvent>,
    env: Arc<dyn Env + Send + Sync>,
    master_key: Option<Arc<MasterKey>>,
    current: ArcSwap<Running>,
    /// What the last rejection was about (the text's hash, or the store's error), so that a
    /// change seen twice is rejected once.
    rejected: Mutex<Option<String>>,
    /// Held across a reload's load and apply, so two reloads (the watcher's and an admin
    /// call's) never interleave and put an older version back over a newer one.
    applying: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("store", &self.store)
            .field("version", &self.current.load().version)
            .finish_non_exhaustive()
    }
}

impl LiveConfig {
    /// Loads the current version; fails if it does not validate (nothing to fall back on yet).
    pub async fn start(
        store: Arc<dyn ConfigStore>,
        env: Arc<dyn Env + Send + Sync>,
        master_key: Option<Arc<MasterKey>>,
    ) -> Result<Arc<Self>, ConfigError> {
        let versioned = store.load().await?;
        let loaded = load_str(&versioned.text, env.as_ref(), master_key.as_deref())?;
        let running = Running {
            version: versioned.info.version,
            raw: loaded.raw,
            resolved: loaded.resolved,
            sha256: sha256_hex(&versioned.text),
        };
        metrics::gauge!("truckllm_config_version").set(running.version as f64);
        Ok(Arc::new(Self {
            store,
            events: tokio::sync::broadcast::channel(64).0,
            env,
            master_key,
            current: ArcSwap::from_pointee(running),
            rejected: Mutex::new(None),
            applying: tokio::sync::Mutex::new(()),
        }))
    }

    /// The config in use now.
    pub fn current(&self) -> Arc<Running> {
        self.current.load_full()
    }

    pub fn store(&self) -> &Arc<dyn ConfigStore> {
        &self.store
    }

    /// Every reload that applied or rejected a version from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    /// Loads, validates and applies the store's current version. On failure the running
    /// config stays, and the error says why.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadOutcome, ConfigError> {
        self.apply(trigger, false).await
    }

    /// As [`LiveConfig::reload`], for watchers and pollers: a version already running or
    /// already rejected is `Unchanged`, and says nothing more.
    pub async fn reload_if_changed(&self, trigger: &str) -> Result<ReloadOutcome, ConfigError> {
        self.apply(trigger, true).await
    }

    async fn apply(&self, trigger: &str, quiet: bool) -> Result<ReloadOutcome, ConfigError> {
        let _applying = self.applying.lock().await;
        let old_version = self.current().version;
        let (key, result) = self.try_reload().await;
        if quiet && result.is_err() && self.already_rejected(&key) {
            return Ok(ReloadOutcome::Unchanged {
                version: old_version,
            });
        }
        match &result {
            Ok(ReloadOutcome::Applied { version }) => {
                metrics::gauge!("truckllm_config_version").set(*version as f64);
                tracing::info!(trigger, version, "config reloaded");
                let _ = self.events.send(ReloadEvent::Applied {
                    trigger: trigger.to_owned(),
                    old_version,
                    new_version: *version,
                });
            }
            Ok(ReloadOutcome::Unchanged { .. }) => {}
            Err(e) => {
                metrics::counter!("truckllm_config_reload_failures_total").increment(1);
                tracing::error!(trigger, error = %e, kept_version = old_version, "config reload rejected; keeping the running config");
                let _ = self.events.send(ReloadEvent::Rejected {
                    trigger: trigger.to_owned(),
                    kept_version: old_version,
                    error: e.to_string(),
                });
            }
        }
        self.remember(result.is_err().then_some(key));
        result
    }

    fn already_rejected(&self, key: &str) -> bool {
        self.rejected
            .lock()
            .is_ok_and(|last| last.as_deref() == Some(key))
    }

    fn remember(&self, rejected: Option<String>) {
        if let Ok(mut last) = self.rejected.lock() {
            *last = rejected;
        }
    }

    /// The outcome, and what it was about: the text's hash, or the store's error.
    async fn try_reload(&self) -> (String, Result<ReloadOutcome, ConfigError>) {
        let versioned = match self.store.load().await {
            Ok(versioned) => versioned,
            Err(e) => return (format!("store: {e}"), Err(e)),
        };
        let hash = sha256_hex(&versioned.text);
        let result = self.try_apply(&versioned.text, versioned.info.version, &hash);
        (hash, result)
    }

    fn try_apply(
        &self,
        text: &str,
        version: u64,
        hash: &str,
    ) -> Result<ReloadOutcome, ConfigError> {
        let running = self.current();
        if hash == running.sha256 {
            // The same text saved again as a newer version: run it under that number, so the
            // next save names the version the store holds.
            if version != running.version {
                self.current.store(Arc::new(Running {
                    version,
                    raw: running.raw.clone(),
                    resolved: running.resolved.clone(),
                    sha256: running.sha256.clone(),
                }));
            }
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let loaded = load_str(text, self.env.as_ref(), self.master_key.as_deref())?;
        refuse_silent_open_mode(&running.resolved, &loaded.resolved)?;
        self.current.store(Arc::new(Running {
            version,
            raw: loaded.raw,
            resolved: loaded.resolved,
            sha256: hash.to_owned(),
        }));
        Ok(ReloadOutcome::Applied { version })
    }

    /// Reloads on every change to the store's file (or, for a store that is not a file, every
    /// `storage.config.poll_secs` of the running config) and on SIGHUP, until the returned
    /// guard is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<WatchGuard, ConfigError> {
        let every = self.current().resolved.storage.config.poll_secs;
        self.watch_polling(Duration::from_secs(every.max(1)))
    }

    /// As [`LiveConfig::watch`], polling a store that is not a file every `poll`.
    pub fn watch_polling(self: &Arc<Self>, poll: Duration) -> Result<WatchGuard, ConfigError> {
        let (tx, rx) = mpsc::channel::<Trigger>(16);
        let (debouncer, marker) = match self.store.watched_path() {
            Some(path) => {
                let (debouncer, marker) = watch_file(&path, tx.clone())?;
                (Some(debouncer), Some(marker))
            }
            None => (None, None),
        };
        let mut tasks = vec![spawn_sighup(tx.clone())?];
        if debouncer.is_none() {
            tasks.push(spawn_poll(poll, tx.clone()));
            tasks.push(spawn_notified(Arc::clone(&self.store), tx.clone()));
        }
        let (synced_tx, synced) = watch::channel(0);
        tasks.push(tokio::spawn(run_worker(Arc::clone(self), rx, synced_tx)));
        Ok(WatchGuard {
            _debouncer: debouncer,
            tasks,
            marker,
            tx,
            syncs: AtomicU64::new(0),
            synced,
        })
    }
}

/// Refuses a version that removes the last client key without asking for open mode.
fn refuse_silent_open_mode(running: &Config, next: &Config) -> Result<(), ConfigError> {
    if next.api_keys.is_empty() && !running.api_keys.is_empty() && !next.server.open_mode {
        return Err(ConfigError::Invalid(vec![Problem {
            path: "api_keys".into(),
            position: None,
            message: "this version removes every client key, which would let anyone call the gateway; to run without client keys, say so with `server.open_mode: true`".into(),
        }]));
    }
    Ok(())
}

/// What the watcher's worker is asked to do, in order.
#[derive(Debug)]
enum Trigger {
    /// The file may have changed, or a poll is due: reload unless already seen.
    Changed(&'static str),
    /// Someone asked (SIGHUP): reload and report, whatever was seen before.
    Asked(&'static str),
    /// Everything before this has been handled ([`WatchGuard::caught_up`]).
    Synced(u64),
}

async fn run_worker(
    live: Arc<LiveConfig>,
    mut rx: mpsc::Receiver<Trigger>,
    synced: watch::Sender<u64>,
) {
    while let Some(trigger) = rx.recv().await {
        // Failures are logged, counted and announced inside.
        match trigger {
            Trigger::Changed(what) => drop(live.reload_if_changed(what).await),
            Trigger::Asked(what) => drop(live.reload(what).await),
            Trigger::Synced(n) => synced.send_modify(|s| *s = (*s).max(n)),
        }
    }
}

/// Keeps the watchers alive; dropping it stops them.
pub struct WatchGuard {
    _debouncer: Option<
        notify_debouncer_full::Debouncer<
            notify::RecommendedWatcher,
            notify_debouncer_full::RecommendedCache,
        >,
    >,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where [`WatchGuard::caught_up`] writes its marker files, when watching a file.
    marker: Option<Marker>,
    tx: mpsc::Sender<Trigger>,
    syncs: AtomicU64,
    synced: watch::Receiver<u64>,
}

impl WatchGuard {
    /// Resolves once the watcher has handled everything that happened before the call: every
    /// file event (through a marker file written beside the config and removed again), or,
    /// for a polled store, one poll. Lets a caller (a test, say) know that nothing it did is
    /// still on its way.
    pub async fn caught_up(&self) -> Result<(), ConfigError> {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.marker {
            Some(marker) => marker.touch(n).await?,
            None => {
                self.send(Trigger::Changed("poll")).await?;
                self.send(Trigger::Synced(n)).await?;
            }
        }
        let mut synced = self.synced.clone();
        synced
            .wait_for(|s| *s >= n)
            .await
            .map_err(|_| ConfigError::Other("the config watcher has stopped".into()))?;
        match &self.marker {
            Some(marker) => marker.remove(n).await,
            None => Ok(()),
        }
    }

    async fn send(&self, trigger: Trigger) -> Result<(), ConfigError> {
        self.tx
            .send(trigger)
            .await
            .map_err(|_| ConfigError::Other("the config watcher has stopped".into()))
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The marker files of [`WatchGuard::caught_up`]: `.NAME.sync-N` beside the config.
struct Marker {
    dir: PathBuf,
    prefix: String,
}

impl Marker {
    fn new(dir: &Path, name: &std::ffi::OsStr) -> Self {
        Self {
            dir: dir.to_owned(),
            prefix: format!(".{}.sync-", name.to_string_lossy()),
        }
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{}{n}", self.prefix))
    }

    /// Writes marker `n`. It stays until seen: a file created and removed within one debounce
    /// window is reported as nothing at all.
    async fn touch(&self, n: u64) -> Result<(), ConfigError> {
        let path = self.path(n);
        tokio::fs::write(&path, b"")
            .await
            .map_err(|e| ConfigError::io("write", &path, e))
    }

    async fn remove(&self, n: u64) -> Result<(), ConfigError> {
        let path = self.path(n);
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| ConfigError::io("remove", &path, e))
    }

    /// The number of a marker file's name, if it is one.
    fn number(&self, name: &std::ffi::OsStr) -> Option<u64> {
        name.to_str()?.strip_prefix(&self.prefix)?.parse().ok()
    }
}

/// Whether an event can have changed a file's content. Opening, reading and closing a file
/// read-only cannot, and neither can a change of its metadata.
fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// What one batch of debounced events means for the watcher.
fn classify(events: &[DebouncedEvent], name: &std::ffi::OsStr, marker: &Marker) -> Vec<Trigger> {
    let mut changed = false;
    let mut synced = None;
    for event in events {
        changed |= event.need_rescan();
        for file in event.paths.iter().filter_map(|p| p.file_name()) {
            if file == name {
                changed |= is_content_change(&event.kind);
            } else if let Some(n) = marker.number(file) {
                synced = synced.max(Some(n));
            }
        }
    }
    let mut triggers = Vec::new();
    if changed {
        triggers.push(Trigger::Changed("file change"));
    }
    triggers.extend(synced.map(Trigger::Synced));
    triggers
}

type FileDebouncer = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

fn watch_file(
    path: &Path,
    tx: mpsc::Sender<Trigger>,
) -> Result<(FileDebouncer, Marker), ConfigError> {
    let name: OsString = path
        .file_name()
        .map(ToOwned::to_owned)
        .ok_or_else(|| ConfigError::Other(format!("{} names no file", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let marker = Marker::new(&dir, &name);
    let seen = Marker::new(&dir, &name);
    let mut debouncer = new_debouncer(
        Duration::from_millis(200),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            // This runs on the debouncer's own thread: waiting for room keeps the order.
            for trigger in classify(&events, &name, &seen) {
                if tx.blocking_send(trigger).is_err() {
                    return;
                }
            }
        },
    )
    .map_err(|e| ConfigError::Other(format!("cannot watch {}: {e}", dir.display())))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| ConfigError::Other(format!("cannot watch {}: {e}", dir.display())))?;
    Ok((debouncer, marker))
}

/// Reloads whenever the store says another process saved (LISTEN/NOTIFY on PostgreSQL); a
/// store that cannot tell ends this task at once and is polled only.
fn spawn_notified(
    store: Arc<dyn ConfigStore>,
    tx: mpsc::Sender<Trigger>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut changes) = store.notifications().await else {
            return;
        };
        while changes.next().await.is_some() {
            if tx.send(Trigger::Changed("notify")).await.is_err() {
                break;
            }
        }
    })
}

fn spawn_poll(every: Duration, tx: mpsc::Sender<Trigger>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if tx.send(Trigger::Changed("poll")).await.is_err() {
                break;
            }
        }
    })
}

fn spawn_sighup(tx: mpsc::Sender<Trigger>) -> Result<tokio::task::JoinHandle<()>, ConfigError> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ConfigError::Other(format!("cannot listen for SIGHUP: {e}")))?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if tx.send(Trigger::Asked("SIGHUP")).await.is_err() {
                break;
            }
        }
    }))
}
