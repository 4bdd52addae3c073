//! The [`ConfigStore`] trait: versioned configuration with optimistic concurrency.
//!
//! A store holds YAML text. Every save names the version it edits and fails with
//! [`ConfigError::Conflict`] if another save came first, so two editors never overwrite each
//! other blindly. Past versions stay readable, can be diffed and rolled back to, and the whole
//! history can be backed up to one file and restored from it.

pub mod conformance;
pub mod file;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::schema::Config;

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// What a version is and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u64,
    /// When it was saved, Unix milliseconds.
    pub time_ms: u64,
    pub author: String,
    pub comment: String,
    /// SHA-256 of the text, hex.
    pub sha256: String,
}

/// One version: its description and its YAML text exactly as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub info: VersionInfo,
    pub text: String,
}

/// Who saves and why, recorded in the history.
#[derive(Debug, Clone, Default)]
pub struct SaveMeta {
    pub author: String,
    pub comment: String,
}

impl SaveMeta {
    pub fn new(author: impl Into<String>, comment: impl Into<String>) -> Self {
        Self {
            author: author.into(),
            comment: comment.into(),
        }
    }
}

/// Versioned configuration storage.
#[async_trait]
pub trait ConfigStore: Send + Sync + std::fmt::Debug {
    /// The current version.
    async fn load(&self) -> Result<Versioned>;

    /// Saves `text` as a new version if `expected` is still current; returns the new version.
    /// The text must be a valid config (see [`crate::load_str`]).
    async fn save_text(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64>;

    /// Versions still kept, oldest first.
    async fn versions(&self) -> Result<Vec<VersionInfo>>;

    /// One kept version.
    async fn get(&self, version: u64) -> Result<Versioned>;

    /// Writes the current config and its history to one file.
    async fn backup(&self, path: &Path) -> Result<()>;

    /// Replaces the config and its history with a backup; returns the restored current version.
    async fn restore(&self, path: &Path) -> Result<u64>;

    /// The file to watch for changes, if the store is a file.
    fn watched_path(&self) -> Option<PathBuf>;

    /// A stream that yields when another process may have saved a version (PostgreSQL's
    /// LISTEN/NOTIFY), for stores that can tell; a fast path beside polling, never instead.
    async fn notifications(&self) -> Option<futures_util::stream::BoxStream<'static, ()>> {
        None
    }

    /// Saves `config` (serialised to YAML; comments of the previous text are not kept).
    async fn save(&self, config: &Config, expected: u64, meta: SaveMeta) -> Result<u64> {
        let text = serde_saphyr::to_string(config)
            .map_err(|e| ConfigError::Other(format!("cannot serialise the config: {e}")))?;
        self.save_text(&text, expected, meta).await
    }

    /// Makes the text of `version` current again, as a new version.
    async fn rollback(&self, version: u64, author: &str) -> Result<u64> {
        let old = self.get(version).await?;
        let current = self.load().await?;
        let meta = SaveMeta::new(author, format!("rollback to version {version}"));
        self.save_text(&old.text, current.info.version, meta).await
    }
}

/// A unified diff between two versions' texts.
pub fn diff(from: &Versioned, to: &Versioned) -> String {
    similar::TextDiff::from_lines(&from.text, &to.text)
        .unified_diff()
        .header(
            &format!("version {}", from.info.version),
            &format!("version {}", to.info.version),
        )
        .to_string()
}

/// The backup file: the whole history and which version is current.
#[derive(Debug, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    pub current: u64,
    pub versions: Vec<BackupEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BackupEntry {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub text: String,
}

impl Backup {
    /// Reads a backup file and checks it whole before anything is replaced: its format, each
    /// version's syntax and checksum, and that its current version is among them.
    pub fn read_checked(path: &Path) -> Result<Backup> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::io("read backup", path, e))?;
        let backup: Backup = serde_json::from_slice(&bytes).map_err(|e| {
            ConfigError::Other(format!("{} is not a config backup: {e}", path.display()))
        })?;
        if backup.format != BACKUP_FORMAT {
            return Err(ConfigError::Other(format!(
                "backup format {:?} is not {BACKUP_FORMAT:?}",
                backup.format
            )));
        }
        for entry in &backup.versions {
            crate::load::parse(&entry.text)?;
            if file::sha256_hex(&entry.text) != entry.info.sha256 {
                return Err(ConfigError::Other(format!(
                    "backup version {} does not match its checksum",
                    entry.info.version
                )));
            }
        }
        backup.current_text()?;
        Ok(backup)
    }

    /// The text of the backup's current version.
    pub fn current_text(&self) -> Result<&str> {
        self.versions
            .iter()
            .find(|e| e.info.version == self.current)
            .map(|e| e.text.as_str())
            .ok_or(ConfigError::UnknownVersion(self.current))
    }
}

/// The `format` tag of backup files this version writes and reads.
pub const BACKUP_FORMAT: &str = "truckllm-config-backup/v1";
