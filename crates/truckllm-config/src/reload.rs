//! The running configuration and how it changes: [`LiveConfig`] holds the config in use behind
//! an atomic pointer; [`LiveConfig::reload`] loads the store's current version, validates it
//! and swaps it in. A config that fails validation leaves the running one in place, is logged
//! and counted (`truckllm_config_reload_failures_total`). Reloads are triggered by a change to
//! the file (its directory is watched, debounced), by SIGHUP, or by a direct call (the admin
//! API). Our own saves come back as file events too; they reload to the same text, which is
//! recognised by its hash and ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use crate::error::ConfigError;
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
        let old_version = self.current().version;
        let result = self.try_reload().await;
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
        result
    }

    async fn try_reload(&self) -> Result<ReloadOutcome, ConfigError> {
        let versioned = self.store.load().await?;
        let hash = sha256_hex(&versioned.text);
        let running = self.current();
        if hash == running.sha256 {
            return Ok(ReloadOutcome::Unchanged {
                version: running.version,
            });
        }
        let loaded = load_str(
            &versioned.text,
            self.env.as_ref(),
            self.master_key.as_deref(),
        )?;
        let version = versioned.info.version;
        self.current.store(Arc::new(Running {
            version,
            raw: loaded.raw,
            resolved: loaded.resolved,
            sha256: hash,
        }));
        Ok(ReloadOutcome::Applied { version })
    }

    /// Reloads on every change to the store's file and on SIGHUP, until the returned guard is
    /// dropped.
    pub fn watch(self: &Arc<Self>) -> Result<WatchGuard, ConfigError> {
        let (tx, mut rx) = mpsc::channel::<&'static str>(16);
        let debouncer = match self.store.watched_path() {
            Some(path) => Some(watch_file(path, tx.clone())?),
            None => None,
        };
        let sighup = spawn_sighup(tx)?;
        let live = Arc::clone(self);
        let worker = tokio::spawn(async move {
            while let Some(trigger) = rx.recv().await {
                // Failures are logged and counted inside reload.
                let _ = live.reload(trigger).await;
            }
        });
        Ok(WatchGuard {
            _debouncer: debouncer,
            tasks: vec![worker, sighup],
        })
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
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn watch_file(
    path: PathBuf,
    tx: mpsc::Sender<&'static str>,
) -> Result<
    notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    ConfigError,
> {
    let name = path.file_name().map(ToOwned::to_owned);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut debouncer = new_debouncer(
        Duration::from_millis(200),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let ours = events
                .iter()
                .any(|e| e.paths.iter().any(|p| p.file_name() == name.as_deref()));
            if ours {
                // A full queue already holds a pending reload, which will see this change.
                let _ = tx.try_send("file change");
            }
        },
    )
    .map_err(|e| ConfigError::Other(format!("cannot watch {}: {e}", dir.display())))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| ConfigError::Other(format!("cannot watch {}: {e}", dir.display())))?;
    Ok(debouncer)
}

fn spawn_sighup(
    tx: mpsc::Sender<&'static str>,
) -> Result<tokio::task::JoinHandle<()>, ConfigError> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| ConfigError::Other(format!("cannot listen for SIGHUP: {e}")))?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if tx.send("SIGHUP").await.is_err() {
                break;
            }
        }
    }))
}
