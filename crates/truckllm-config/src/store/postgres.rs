//! The PostgreSQL config store (`storage.config: { type: postgres, addr: "postgres://…" }`):
//! the same versions, conflicts, history, rollback, backup and restore as the file store, in
//! two tables of the TruckLLM database (`truckllm_config_versions`, and the one-row
//! `truckllm_config_current`; see the migration in `truckllm-store`), so a fleet on many hosts
//! shares one config without a shared disk.
//!
//! A save runs in one transaction that locks the current-version row, so saves are
//! serialised and a stale one fails with [`ConfigError::Conflict`]; it then sends
//! `NOTIFY truckllm_config`, and every gateway LISTENing ([`ConfigStore::notifications`])
//! reloads at once. Notifications are a fast path only: a gateway also polls
//! (`storage.config.poll_secs`), which covers any it missed while its listener reconnected.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Row, Transaction};
use truckllm_store::postgres::{PostgresOptions, connect_pool};
use truckllm_store::redact_url;

use super::file::{FileStoreOptions, sha256_hex, write_atomic};
use super::{
    BACKUP_FORMAT, Backup, BackupEntry, ConfigStore, Result, SaveMeta, VersionInfo, Versioned,
};
use crate::error::ConfigError;

/// The channel saves NOTIFY on.
pub const CHANNEL: &str = "truckllm_config";

/// The config kept in a PostgreSQL database.
pub struct PostgresConfigStore {
    pool: PgPool,
    /// The URL with any password removed, for messages.
    shown: String,
    options: FileStoreOptions,
}

impl std::fmt::Debug for PostgresConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfigStore")
            .field("url", &self.shown)
            .field("history", &self.options.history)
            .finish_non_exhaustive()
    }
}

impl PostgresConfigStore {
    /// Connects to `url` (migrating the schema, as the runtime store does); saves are checked
    /// and history is kept as `options` say, exactly as for the file store.
    pub async fn connect(url: &str, options: FileStoreOptions) -> Result<Self> {
        let shown = redact_url(url);
        // Config calls are rare and not on any request's path: patient timeouts.
        let postgres = PostgresOptions {
            pool_size: 2,
            connect_timeout: std::time::Duration::from_secs(5),
            response_timeout: std::time::Duration::from_secs(10),
            ..PostgresOptions::default()
        };
        let pool = connect_pool(url, &postgres)
            .await
            .map_err(|e| ConfigError::Other(format!("config store {shown}: {e}")))?;
        Ok(Self {
            pool,
            shown,
            options,
        })
    }

    fn failed(&self, action: &str, e: sqlx::Error) -> ConfigError {
        ConfigError::Other(format!("config store {}: {action}: {e}", self.shown))
    }

    fn empty(&self) -> ConfigError {
        ConfigError::Other(format!(
            "config store {} holds no config yet: save one first (`truckllm config import FILE --config-store URL`)",
            self.shown
        ))
    }

    /// The current version, its row locked for the rest of `tx`; `None` in a new store.
    async fn current_version(&self, tx: &mut Transaction<'_, Postgres>) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM truckllm_config_current FOR UPDATE")
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.failed("read the current version", e))?;
        Ok(version.map(to_u64))
    }

    /// A transaction holding the config's advisory lock: saves and restores take turns, even
    /// into an empty store (where there is no current row to lock yet).
    async fn begin(&self) -> Result<Transaction<'_, Postgres>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.failed("begin a transaction", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('truckllm_config'))")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed("lock the config", e))?;
        Ok(tx)
    }

    async fn read_version(&self, version: u64) -> Result<Versioned> {
        let row = sqlx::query(
            "SELECT version, time_ms, author, comment, sha256, text \
             FROM truckllm_config_versions WHERE version = $1",
        )
        .bind(to_i64(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.failed("read a version", e))?
        .ok_or(ConfigError::UnknownVersion(version))?;
        versioned_of(&row)
    }

    /// Inserts `text` as the version after the newest, makes it current, drops versions
    /// beyond the history, and notifies; all in `tx`, which the caller commits.
    async fn insert_current(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        text: &str,
        meta: &SaveMeta,
    ) -> Result<u64> {
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM truckllm_config_versions")
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| self.failed("read the newest version", e))?;
        let version = newest.map_or(1, |v| v + 1);
        sqlx::query(
            "INSERT INTO truckllm_config_versions (version, time_ms, author, comment, sha256, text) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(version)
        .bind(to_i64(now_ms()))
        .bind(&meta.author)
        .bind(&meta.comment)
        .bind(sha256_hex(text))
        .bind(text)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.failed("insert a version", e))?;
        self.make_current(tx, version).await?;
        self.trim_history(tx, version).await?;
        Ok(to_u64(version))
    }

    async fn make_current(&self, tx: &mut Transaction<'_, Postgres>, version: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO truckllm_config_current (id, version) VALUES (true, $1) \
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        )
        .bind(version)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.failed("move the current version", e))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(version.to_string())
            .execute(&mut **tx)
            .await
            .map_err(|e| self.failed("notify", e))?;
        Ok(())
    }

    /// Keeps the newest `history` versions (and always the current one).
    async fn trim_history(&self, tx: &mut Transaction<'_, Postgres>, current: i64) -> Result<()> {
        let keep = i64::try_from(self.options.history.max(1)).unwrap_or(i64::MAX);
        sqlx::query(
            "DELETE FROM truckllm_config_versions WHERE version <> $1 AND version <= \
             (SELECT max(version) FROM truckllm_config_versions) - $2",
        )
        .bind(current)
        .bind(keep)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.failed("trim the history", e))?;
        Ok(())
    }

    async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<()> {
        tx.commit().await.map_err(|e| self.failed("commit", e))
    }
}

#[async_trait]
impl ConfigStore for PostgresConfigStore {
    async fn load(&self) -> Result<Versioned> {
        // One statement: the pointer and the text it names, as of one snapshot.
        let row = sqlx::query(
            "SELECT v.version, v.time_ms, v.author, v.comment, v.sha256, v.text \
             FROM truckllm_config_current c JOIN truckllm_config_versions v USING (version)",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.failed("load", e))?
        .ok_or_else(|| self.empty())?;
        versioned_of(&row)
    }

    async fn save_text(&self, text: &str, expected: u64, meta: SaveMeta) -> Result<u64> {
        self.options.check(text)?;
        let mut tx = self.begin().await?;
        let current = self.current_version(&mut tx).await?.unwrap_or(0);
        if current != expected {
            return Err(ConfigError::Conflict { expected, current });
        }
        let version = self.insert_current(&mut tx, text, &meta).await?;
        self.commit(tx).await?;
        Ok(version)
    }

    async fn versions(&self) -> Result<Vec<VersionInfo>> {
        let rows = sqlx::query(
            "SELECT version, time_ms, author, comment, sha256 \
             FROM truckllm_config_versions ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.failed("list versions", e))?;
        if rows.is_empty() {
            return Err(self.empty());
        }
        rows.iter().map(info_of).collect()
    }

    async fn get(&self, version: u64) -> Result<Versioned> {
        self.read_version(version).await
    }

    async fn backup(&self, path: &Path) -> Result<()> {
        let current = self.load().await?;
        let mut versions = Vec::new();
        for info in self.versions().await? {
            let v = self.read_version(info.version).await?;
            versions.push(BackupEntry {
                info: v.info,
                text: v.text,
            });
        }
        let backup = Backup {
            format: BACKUP_FORMAT.into(),
            current: current.info.version,
            versions,
        };
        let json = serde_json::to_vec_pretty(&backup)
            .map_err(|e| ConfigError::Other(format!("cannot write backup: {e}")))?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || write_atomic(&path, &json))
            .await
            .map_err(|e| ConfigError::Other(format!("cannot write backup: {e}")))?
    }

    async fn restore(&self, path: &Path) -> Result<u64> {
        let backup = Backup::read_checked(path)?;
        self.options.check(backup.current_text()?)?;
        let mut tx = self.begin().await?;
        self.current_version(&mut tx).await?;
        for sql in [
            "DELETE FROM truckllm_config_current",
            "DELETE FROM truckllm_config_versions",
        ] {
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed("clear the history", e))?;
        }
        for entry in &backup.versions {
            sqlx::query(
                "INSERT INTO truckllm_config_versions \
                 (version, time_ms, author, comment, sha256, text) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(to_i64(entry.info.version))
            .bind(to_i64(entry.info.time_ms))
            .bind(&entry.info.author)
            .bind(&entry.info.comment)
            .bind(&entry.info.sha256)
            .bind(&entry.text)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed("restore a version", e))?;
        }
        self.make_current(&mut tx, to_i64(backup.current)).await?;
        self.commit(tx).await?;
        Ok(backup.current)
    }

    fn watched_path(&self) -> Option<PathBuf> {
        None
    }

    async fn notifications(&self) -> Option<BoxStream<'static, ()>> {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(store = %self.shown, error = %e, "cannot LISTEN for config changes; polling only");
                return None;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(store = %self.shown, error = %e, "cannot LISTEN for config changes; polling only");
            return None;
        }
        // `recv` reconnects by itself after a lost connection; what was sent meanwhile is
        // caught by the poll.
        let changes = futures_util::stream::unfold(listener, |mut listener| async move {
            loop {
                match listener.recv().await {
                    Ok(_) => return Some(((), listener)),
                    Err(e) => {
                        tracing::debug!(error = %e, "config LISTEN connection lost; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Some(Box::pin(changes))
    }
}

fn versioned_of(row: &sqlx::postgres::PgRow) -> Result<Versioned> {
    Ok(Versioned {
        info: info_of(row)?,
        text: row
            .try_get("text")
            .map_err(|e| ConfigError::Other(format!("config store: a bad row: {e}")))?,
    })
}

fn info_of(row: &sqlx::postgres::PgRow) -> Result<VersionInfo> {
    let read = |e: sqlx::Error| ConfigError::Other(format!("config store: a bad row: {e}"));
    Ok(VersionInfo {
        version: to_u64(row.try_get("version").map_err(read)?),
        time_ms: to_u64(row.try_get("time_ms").map_err(read)?),
        author: row.try_get("author").map_err(read)?,
        comment: row.try_get("comment").map_err(read)?,
        sha256: row.try_get("sha256").map_err(read)?,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
