//! The YAML file store, with the seed's "File Storage" limitations removed:
//!
//! - **Concurrent access control**: every operation holds an exclusive lock on a lock file
//!   beside the config, across threads and processes.
//! - **Atomic updates**: a save writes a temp file in the same directory, fsyncs it, renames it
//!   over the config and fsyncs the directory: a crash leaves the old file or the new one,
//!   never half of either.
//! - **Versions**: each save is kept in `.<name>.history/` as `vNNNNNNNN.yaml` plus a JSON
//!   description; the last `history` saves are kept. The current version is the newest entry
//!   whose text matches the file; a file edited by hand is adopted as a new version the next
//!   time it is read.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    BACKUP_FORMAT, Backup, BackupEntry, ConfigStore, Result, SaveMeta, VersionInfo, Versioned,
};
use crate::error::ConfigError;
use crate::interpolate::{Env, ProcessEnv};
use crate::load::{MAX_CONFIG_BYTES, check_written, load_str};
use crate::secret::MasterKey;

/// How a store checks a config before saving it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validation {
    /// Resolve references and decrypt `enc:` values with the store's `env` and `master_key`,
    /// then validate: the store of the process that runs the config.
    #[default]
    Resolve,
    /// Check syntax, schema and structure as written ([`check_written`]), never reading the
    /// environment or decrypting: a store that keeps configs for others (the storage server),
    /// whose environment and key are not the gateway's and must not leak through errors.
    Written,
}

/// What the file store checks saves against, and how much history it keeps.
#[derive(Clone)]
pub struct FileStoreOptions {
    pub history: usize,
    /// Environment used to check that a saved config resolves.
    pub env: Arc<dyn Env + Send + Sync>,
    pub master_key: Option<Arc<MasterKey>>,
    pub validation: Validation,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        Self {
            history: 20,
            env: Arc::new(ProcessEnv),
            master_key: None,
            validation: Validation::Resolve,
        }
    }
}

impl FileStoreOptions {
    /// Checks a config text before a store saves it, as [`Self::validation`] says.
    pub fn check(&self, text: &str) -> Result<()> {
        match self.validation {
            Validation::Resolve => {
                let key = self.master_key.as_deref();
                load_str(text, self.env.as_ref(), key).map(drop)
            }
            Validation::Written => check_written(text).map(drop),
        }
    }

    /// Options of a store that checks configs as written only ([`Validation::Written`]): no
    /// environment, no master key.
    pub fn written_only() -> Self {
        Self {
            env: Arc::new(std::collections::HashMap::<String, String>::new()),
            master_key: None,
            validation: Validation::Written,
            ..Self::default()
        }
    }
}

/// A config file with its history beside it.
#[derive(Clone)]
pub struct FileConfigStore {
    path: PathBuf,
    history_dir: PathBuf,
    lock_path: PathBuf,
    options: FileStoreOptions,
}

impl std::fmt::Debug for FileConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfigStore")
            .field("path", &self.path)
            .field("history", &self.options.history)
            .finish_non_exhaustive()
    }
}

impl FileConfigStore {
    pub fn new(path: impl Into<PathBuf>, options: FileStoreOptions) -> Self {
        let path = path.into();
        let dir = parent_dir(&path);
        let name = path.file_name().map_or_else(
            || "config.yaml".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self {
            history_dir: dir.join(format!(".{name}.history")),
            lock_path: dir.join(format!(".{name}.lock")),
            path,
            options,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` holding the exclusive lock, on a blocking thread.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileConfigStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = store.lock()?;
            f(&store)
        })
        .await
        .map_err(|e| ConfigError::Other(format!("config store task failed: {e}")))?
    }

    fn lock(&self) -> Result<File> {
        fs::create_dir_all(parent_dir(&self.path))
            .map_err(|e| ConfigError::io("create directory of", &self.path, e))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| ConfigError::io("open lock file", &self.lock_path, e))?;
        file.lock()
            .map_err(|e| ConfigError::io("lock", &self.lock_path, e))?;
        Ok(file)
    }

    fn entry_paths(&self, version: u64) -> (PathBuf, PathBuf) {
        let stem = format!("v{version:08}");
        (
            self.history_dir.join(format!("{stem}.yaml")),
            self.history_dir.join(format!("{stem}.json")),
        )
    }

    /// Every kept version's description, oldest first.
    fn list(&self) -> Result<Vec<VersionInfo>> {
        let entries = match fs::read_dir(&self.history_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ConfigError::io("read history", &self.history_dir, e)),
        };
        let mut infos = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| ConfigError::io("read history", &self.history_dir, e))?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                let text =
                    fs::read_to_string(&path).map_err(|e| ConfigError::io("read", &path, e))?;
                let info: VersionInfo = serde_json::from_str(&text).map_err(|e| {
                    ConfigError::Other(format!("damaged history entry {}: {e}", path.display()))
                })?;
                infos.push(info);
            }
        }
        infos.sort_by_key(|i| i.version);
        Ok(infos)
    }

    fn read_entry(&self, version: u64) -> Result<Versioned> {
        let (text_path, info_path) = self.entry_paths(version);
        let info_text = match fs::read_to_string(&info_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::UnknownVersion(version));
            }
            Err(e) => return Err(ConfigError::io("read", &info_path, e)),
        };
        let info: VersionInfo = serde_json::from_str(&info_text)
            .map_err(|e| ConfigError::Other(format!("damaged history entry {version}: {e}")))?;
        let text =
            fs::read_to_string(&text_path).map_err(|e| ConfigError::io("read", &text_path, e))?;
        Ok(Versioned { info, text })
    }

    /// Writes a history entry: the text first, then its description, both atomically.
    fn write_entry(&self, info: &VersionInfo, text: &str) -> Result<()> {
        fs::create_dir_all(&self.history_dir)
            .map_err(|e| ConfigError::io("create", &self.history_dir, e))?;
        let (text_path, info_path) = self.entry_paths(info.version);
        write_atomic(&text_path, text.as_bytes())?;
        let json = serde_json::to_vec_pretty(info)
            .map_err(|e| ConfigError::Other(format!("cannot describe version: {e}")))?;
        write_atomic(&info_path, &json)
    }

    /// The current version, adopting a file edited by hand as a new version. Lock held.
    fn current(&self, history: &[VersionInfo]) -> Result<Versioned> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Other(format!(
                    "config file {} does not exist: create it (see configs/config.example.yaml)",
                    self.path.display()
                )));
            }
            Err(e) => return Err(ConfigError::io("read", &self.path, e)),
        };
        let hash = sha256_hex(&text);
        if let Some(info) = history.iter().rev().find(|i| i.sha256 == hash) {
            return Ok(Versioned {
                info: info.clone(),
                text,
            });
        }
        let info = VersionInfo {
            version: history.last().map_or(1, |i| i.version + 1),
            time_ms: now_ms(),
            author: "file".into(),
            comment: "edited outside truckllm".into(),
            sha256: hash,
        };
        self.write_entry(&info, &text)?;
        Ok(Versioned { info, text })
    }

    fn save_locked(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64> {
        let history = self.list()?;
        let current = match self.current(&history) {
            Ok(current) => Some(current.info.version),
            Err(ConfigError::Other(_)) if !self.path.exists() => None,
            Err(e) => return Err(e),
        };
        let history = self.list()?;
        let current_version = current.unwrap_or(0);
        if current_version != expected {
            return Err(ConfigError::Conflict {
                expected,
                current: current_version,
            });
        }
        let info = VersionInfo {
            version: history.last().map_or(1, |i| i.version + 1),
            time_ms: now_ms(),
            author: meta.author,
            comment: meta.comment,
            sha256: sha256_hex(text),
        };
        self.write_entry(&info, text)?;
        write_atomic(&self.path, text.as_bytes())?;
        self.prune(info.version)?;
        Ok(info.version)
    }

    /// Drops the oldest entries beyond the history limit.
    fn prune(&self, keep_from_latest: u64) -> Result<()> {
        let history = self.list()?;
        let excess = history.len().saturating_sub(self.options.history.max(1));
        for info in history
            .iter()
            .take(excess)
            .filter(|i| i.version != keep_from_latest)
        {
            let (text_path, info_path) = self.entry_paths(info.version);
            for path in [info_path, text_path] {
                fs::remove_file(&path).map_err(|e| ConfigError::io("remove", &path, e))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ConfigStore for FileConfigStore {
    async fn load(&self) -> Result<Versioned> {
        self.locked(|s| s.current(&s.list()?)).await
    }

    async fn save_text(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64> {
        self.options.check(text)?;
        let text = text.to_owned();
        self.locked(move |s| s.save_locked(&text, expected, meta))
            .await
    }

    async fn versions(&self) -> Result<Vec<VersionInfo>> {
        self.locked(|s| {
            s.current(&s.list()?)?;
            s.list()
        })
        .await
    }

    async fn get(&self, version: u64) -> Result<Versioned> {
        self.locked(move |s| {
            s.current(&s.list()?)?;
            s.read_entry(version)
        })
        .await
    }

    async fn backup(&self, path: &Path) -> Result<()> {
        let path = path.to_owned();
        self.locked(move |s| {
            let current = s.current(&s.list()?)?;
            let versions = s
                .list()?
                .into_iter()
                .map(|info| {
                    s.read_entry(info.version).map(|v| BackupEntry {
                        info: v.info,
                        text: v.text,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let backup = Backup {
                format: BACKUP_FORMAT.into(),
                current: current.info.version,
                versions,
            };
            let json = serde_json::to_vec_pretty(&backup)
                .map_err(|e| ConfigError::Other(format!("cannot write backup: {e}")))?;
            write_atomic(&path, &json)
        })
        .await
    }

    async fn restore(&self, path: &Path) -> Result<u64> {
        let backup = Backup::read_checked(path)?;
        self.options.check(backup.current_text()?)?;
        self.locked(move |s| {
            if s.history_dir.exists() {
                fs::remove_dir_all(&s.history_dir)
                    .map_err(|e| ConfigError::io("clear history", &s.history_dir, e))?;
            }
            for entry in &backup.versions {
                s.write_entry(&entry.info, &entry.text)?;
            }
            write_atomic(&s.path, backup.current_text()?.as_bytes())?;
            Ok(backup.current)
        })
        .await
    }

    fn watched_path(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a mix:
/// temp file in the same directory, fsync, rename over, fsync the directory. Mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_CONFIG_BYTES * 32 {
        return Err(ConfigError::Other(format!(
            "refusing to write {} bytes",
            bytes.len()
        )));
    }
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| ConfigError::io("create directory", &dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| ConfigError::io("create temp file in", &dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| ConfigError::io("write", path, e))?;
    tmp.persist(path)
        .map_err(|e| ConfigError::io("replace", path, e.error))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ConfigError::io("sync directory", &dir, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
