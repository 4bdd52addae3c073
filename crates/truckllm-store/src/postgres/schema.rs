//! The schema of a TruckLLM database: versioned migrations embedded in the binary, applied
//! when anything connects (the runtime store here, the config store in `truckllm-config`, the log sink in
//! `truckllm-logging`).
//! One list for every table, so one database holds them all under one version number.
//!
//! sqlx's migrator applies them under a PostgreSQL advisory lock, so many gateways may start
//! at once against one database: one applies, the others wait and then find nothing to do.
//! Applied versions are recorded in `truckllm_migrations` (not sqlx's default table, so a
//! database shared with another sqlx application keeps its own history). A database whose
//! schema is newer than this binary knows is refused with an error that says so: an older
//! gateway must not write to tables whose meaning it does not know.

use std::borrow::Cow;

use sqlx::PgPool;
use sqlx::SqlStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use crate::error::StoreError;

/// Where applied versions are recorded.
pub const MIGRATIONS_TABLE: &str = "truckllm_migrations";

/// Every schema version this binary knows, oldest first. A released migration is never edited
/// (databases that applied it would refuse the binary: sqlx compares checksums); a change is
/// a new version.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "runtime store",
        include_str!("migrations/0001_runtime_store.sql"),
    ),
    (
        2,
        "documents",
        include_str!("migrations/0002_documents.sql"),
    ),
    (
        3,
        "config versions",
        include_str!("migrations/0003_config_versions.sql"),
    ),
    (4, "logs", include_str!("migrations/0004_logs.sql")),
    (
        5,
        "usage history",
        include_str!("migrations/0005_usage_history.sql"),
    ),
    (
        6,
        "period counters",
        include_str!("migrations/0006_period_counters.sql"),
    ),
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

/// Brings the database's schema up to [`latest_version`], or refuses a newer one.
pub async fn migrate(pool: &PgPool, backend: &'static str) -> Result<(), StoreError> {
    if let Some(applied) = applied_version(pool, backend).await?
        && applied > latest_version()
    {
        return Err(newer_schema(backend, applied));
    }
    let mut migrator = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    );
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await.map_err(|e| match e {
        MigrateError::VersionMissing(version) => newer_schema(backend, version),
        other => migration_failed(backend, &other),
    })
}

/// The newest version applied to the database, if it has the migrations table.
pub async fn applied_version(
    pool: &PgPool,
    backend: &'static str,
) -> Result<Option<i64>, StoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(pool)
        .await
        .map_err(|e| super::map_error(backend, "migrate", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version) FROM truckllm_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(|e| super::map_error(backend, "migrate", e))
}

fn newer_schema(backend: &'static str, applied: i64) -> StoreError {
    StoreError::Protocol {
        backend,
        operation: "migrate",
        detail: format!(
            "the database's TruckLLM schema is at version {applied}, newer than this \
             binary knows (version {}); upgrade truckllm before pointing it at this database",
            latest_version()
        ),
    }
}

fn migration_failed(backend: &'static str, error: &MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) if super::is_outage(e) => {
            StoreError::unavailable(backend, "migrate", e)
        }
        other => StoreError::Protocol {
            backend,
            operation: "migrate",
            detail: format!("cannot apply the schema migrations: {other}"),
        },
    }
}
