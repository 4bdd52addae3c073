//! Long-term usage history: the runtime store's per-step roll-ups (see
//! [`RollupPolicy`](crate::RollupPolicy), kept an hour) summed into hourly and daily rows in
//! PostgreSQL and kept for `keep_days` (default 400), for spend reports and the dashboard.
//!
//! A [`HistoryWriter`] takes roll-ups read from the runtime store and writes each *finished*
//! step (ended at least [`SETTLE_MS`] ago) exactly once per `source`: the step is recorded in
//! `truckllm_usage_history_steps` in the same transaction as its sums, and a step already
//! recorded is skipped. Roll-ups in a shared runtime store are fleet-wide, so every gateway of
//! one fleet uses the same source and whichever writes a step first writes it for all; a
//! restart or a retry after a lost answer writes nothing twice. Fleets with separate runtime
//! stores use different sources and their sums add up (`value = value + EXCLUDED.value`).
//!
//! Readers ([`read_history`]) group rows by provider, provider key, client, team or model.
//! Clients, teams and models are counted by the gateway under namespaces of the runtime store
//! ([`CLIENTS_PROVIDER`], [`TEAMS_PROVIDER`], [`MODELS_PROVIDER`]; provider ids never start
//! with `_`), so their roll-ups reach the history the same way as a provider key's.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::series::Metric;
use crate::store::{RuntimeStore, SeriesRollup};
use crate::window::{RollupPolicy, duration_ms};

const BACKEND: &str = "postgres";

/// The runtime store's provider namespace that client keys are counted under (the gateway's
/// `CLIENTS_NAMESPACE`).
pub const CLIENTS_PROVIDER: &str = "_clients";

/// The namespace teams are counted under (the gateway's `TEAMS_NAMESPACE`).
pub const TEAMS_PROVIDER: &str = "_teams";

/// The namespace models are counted under, by the name the client asked for (the gateway's
/// `MODELS_NAMESPACE`).
pub const MODELS_PROVIDER: &str = "_models";

/// How long after a step ends it is still left alone, for increments from gateways whose clocks
/// lag a little (placed by the writer's time, see the runtime store's docs on NTP).
pub const SETTLE_MS: u64 = 10_000;

/// Days of history kept unless configured otherwise.
pub const DEFAULT_KEEP_DAYS: u32 = 400;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Resolution of history rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStep {
    Hour,
    Day,
}

impl HistoryStep {
    fn table(self) -> &'static str {
        match self {
            HistoryStep::Hour => "truckllm_usage_hourly",
            HistoryStep::Day => "truckllm_usage_daily",
        }
    }

    fn width_ms(self) -> u64 {
        match self {
            HistoryStep::Hour => HOUR_MS,
            HistoryStep::Day => DAY_MS,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryStep::Hour => "hour",
            HistoryStep::Day => "day",
        }
    }
}

impl FromStr for HistoryStep {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(HistoryStep::Hour),
            "day" => Ok(HistoryStep::Day),
            other => Err(StoreError::invalid(format!(
                "unknown step {other:?}; known steps: hour, day"
            ))),
        }
    }
}

/// What history rows are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryGroup {
    /// Per provider (client counters left out).
    Provider,
    /// Per provider key, named `provider:key_id`.
    Key,
    /// Per client key id.
    Client,
    /// Per team id.
    Team,
    /// Per model, as the clients asked for it (`provider:model` or an alias).
    Model,
}

impl HistoryGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryGroup::Provider => "provider",
            HistoryGroup::Key => "key",
            HistoryGroup::Client => "client",
            HistoryGroup::Team => "team",
            HistoryGroup::Model => "model",
        }
    }

    /// The SQL expression naming a row's group, and the namespace its rows are counted under
    /// (`None`: the providers' own rows, every namespace left out).
    fn sql(self) -> (&'static str, Option<&'static str>) {
        match self {
            HistoryGroup::Provider => ("provider", None),
            HistoryGroup::Key => ("provider || ':' || key_id", None),
            HistoryGroup::Client => ("key_id", Some(CLIENTS_PROVIDER)),
            HistoryGroup::Team => ("key_id", Some(TEAMS_PROVIDER)),
            HistoryGroup::Model => ("key_id", Some(MODELS_PROVIDER)),
        }
    }
}

impl fmt::Display for HistoryGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HistoryGroup {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(HistoryGroup::Provider),
            "key" => Ok(HistoryGroup::Key),
            "client" => Ok(HistoryGroup::Client),
            "team" => Ok(HistoryGroup::Team),
            "model" => Ok(HistoryGroup::Model),
            other => Err(StoreError::invalid(format!(
                "unknown grouping {other:?}; known: provider, key, client, team, model"
            ))),
        }
    }
}

/// One summed value of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Start of the hour or day (Unix ms, UTC).
    pub start_ms: u64,
    pub group: String,
    pub metric: String,
    pub value: f64,
}

/// What one [`HistoryWriter::write_finished`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Steps summed into the history by this call.
    pub written: usize,
    /// Finished steps already recorded (by this or another gateway of the source).
    pub already_written: usize,
    /// Steps not finished yet, left for a later call.
    pub unfinished: usize,
}

/// Writes finished roll-up steps into the history of one source (see the module docs).
#[derive(Debug, Clone)]
pub struct HistoryWriter {
    pool: PgPool,
    source: String,
    keep: Duration,
    clock: SharedClock,
    /// Set once the schema migrations have been applied (at once by [`HistoryWriter::new`],
    /// at the first call that reaches the database for [`HistoryWriter::lazy`]).
    schema: Arc<tokio::sync::OnceCell<()>>,
}

/// One step's sums, as parallel columns for `unnest`.
#[derive(Debug, Default)]
struct StepRows {
    providers: Vec<String>,
    key_ids: Vec<String>,
    metrics: Vec<String>,
    values: Vec<f64>,
}

impl HistoryWriter {
    /// A writer for `source` (the fleet's name) that keeps `keep_days` of history; applies the
    /// schema migrations first.
    pub async fn new(
        pool: PgPool,
        source: impl Into<String>,
        keep_days: u32,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let writer = Self::lazy(pool, source, keep_days, clock)?;
        writer.ensure_schema().await?;
        Ok(writer)
    }

    /// The same writer without touching the database: the migrations run at the first call
    /// that reaches it, so a gateway starts while its history database is down (give it a
    /// pool from [`lazy_pool`](super::lazy_pool)).
    pub fn lazy(
        pool: PgPool,
        source: impl Into<String>,
        keep_days: u32,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let source = source.into();
        if source.is_empty() {
            return Err(StoreError::invalid("history source name must not be empty"));
        }
        if keep_days == 0 {
            return Err(StoreError::invalid("history keep_days must be at least 1"));
        }
        Ok(Self {
            pool,
            source,
            keep: Duration::from_secs(u64::from(keep_days) * 86_400),
            clock,
            schema: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// Applies the schema migrations unless done already; fails while the database is down.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| super::schema::migrate(&self.pool, BACKEND))
            .await
            .map(|_| ())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Sums every finished step of `rollups` not yet recorded for this source into the hourly
    /// and daily rows, one transaction per step.
    pub async fn write_finished(
        &self,
        rollups: &[SeriesRollup],
        step: Duration,
    ) -> Result<WriteReport, StoreError> {
        self.ensure_schema().await?;
        let now_ms = self.clock.now_ms();
        let step_ms = duration_ms(step).max(1);
        let mut report = WriteReport::default();
        let steps = steps_of(rollups);
        let first = steps.keys().next().copied().unwrap_or(now_ms);
        let recorded = self.recorded_since(first).await?;
        for (start_ms, rows) in steps {
            if start_ms.saturating_add(step_ms).saturating_add(SETTLE_MS) > now_ms {
                report.unfinished += 1;
            } else if recorded.contains(&start_ms) {
                report.already_written += 1;
            } else if self.write_step(start_ms, &rows, now_ms).await? {
                report.written += 1;
            } else {
                report.already_written += 1;
            }
        }
        Ok(report)
    }

    /// Reads the roll-ups `store` keeps (steps of `policy`) and writes the finished ones.
    pub async fn write_from(
        &self,
        store: &dyn RuntimeStore,
        policy: RollupPolicy,
    ) -> Result<WriteReport, StoreError> {
        let since_ms = policy.oldest_kept(self.clock.now_ms()) * policy.step_ms();
        let rollups = store.rollups("", since_ms).await?;
        self.write_finished(&rollups, policy.step).await
    }

    /// Steps of this source recorded from `since_ms` on (a cheap first filter; the insert in
    /// [`Self::write_step`] is what decides).
    async fn recorded_since(&self, since_ms: u64) -> Result<HashSet<u64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT step_start_ms FROM truckllm_usage_history_steps \
             WHERE source = $1 AND step_start_ms >= $2",
        )
        .bind(&self.source)
        .bind(ms_i64(since_ms))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| super::map_error(BACKEND, "history_write", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|ms| u64::try_from(ms).ok())
            .collect())
    }

    /// Writes one step unless it is recorded already; whether it wrote.
    async fn write_step(
        &self,
        start_ms: u64,
        rows: &StepRows,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let err = |e| super::map_error(BACKEND, "history_write", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let recorded = sqlx::query(
            "INSERT INTO truckllm_usage_history_steps (source, step_start_ms, written_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&self.source)
        .bind(ms_i64(start_ms))
        .bind(ms_i64(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await.map_err(err)?;
            return Ok(false);
        }
        for step in [HistoryStep::Hour, HistoryStep::Day] {
            // The statement's text is built from this module's constants only.
            let bucket = start_ms - start_ms % step.width_ms();
            let sql = format!(
                "INSERT INTO {table} (bucket_start_ms, provider, key_id, metric, value) \
                 SELECT $1, p, k, m, v FROM unnest($2::text[], $3::text[], $4::text[], \
                 $5::float8[]) AS t(p, k, m, v) \
                 ON CONFLICT (bucket_start_ms, provider, key_id, metric) \
                 DO UPDATE SET value = {table}.value + EXCLUDED.value",
                table = step.table()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ms_i64(bucket))
                .bind(&rows.providers)
                .bind(&rows.key_ids)
                .bind(&rows.metrics)
                .bind(&rows.values)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    /// The history from `since_ms` on (see [`read_history`]).
    pub async fn read(
        &self,
        group: HistoryGroup,
        step: HistoryStep,
        since_ms: u64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.ensure_schema().await?;
        read_history(&self.pool, group, step, since_ms).await
    }

    /// Deletes history rows and step records older than `keep_days`; how many rows went.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.ensure_schema().await?;
        let err = |e| super::map_error(BACKEND, "history_prune", e);
        let cutoff = ms_i64(self.clock.now_ms().saturating_sub(duration_ms(self.keep)));
        let mut deleted = 0;
        for sql in [
            "DELETE FROM truckllm_usage_hourly WHERE bucket_start_ms < $1",
            "DELETE FROM truckllm_usage_daily WHERE bucket_start_ms < $1",
            "DELETE FROM truckllm_usage_history_steps WHERE step_start_ms < $1",
        ] {
            let done = sqlx::query(sql)
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
}

/// The history from `since_ms` on, summed by `group` per hour or day, oldest first.
pub async fn read_history(
    pool: &PgPool,
    group: HistoryGroup,
    step: HistoryStep,
    since_ms: u64,
) -> Result<Vec<HistoryRow>, StoreError> {
    // The statement's text is built from this module's constants only.
    let (name, namespace) = group.sql();
    let filter = match namespace {
        Some(_) => "provider = $2",
        None => "left(provider, 1) <> '_'",
    };
    let sql = format!(
        "SELECT bucket_start_ms, {name} AS grp, metric, sum(value) AS value FROM {table} \
         WHERE bucket_start_ms >= $1 AND {filter} \
         GROUP BY bucket_start_ms, grp, metric ORDER BY bucket_start_ms, grp, metric",
        table = step.table()
    );
    let since_bucket = since_ms - since_ms % step.width_ms();
    let query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ms_i64(since_bucket));
    let query = match namespace {
        Some(namespace) => query.bind(namespace),
        None => query,
    };
    let rows: Vec<(i64, String, String, f64)> = query
        .fetch_all(pool)
        .await
        .map_err(|e| super::map_error(BACKEND, "history_read", e))?;
    Ok(rows
        .into_iter()
        .map(|(start, group, metric, value)| HistoryRow {
            start_ms: u64::try_from(start).unwrap_or(0),
            group,
            metric,
            value,
        })
        .collect())
}

/// The roll-ups regrouped by step start, usage metrics only (cooldowns are not usage).
fn steps_of(rollups: &[SeriesRollup]) -> std::collections::BTreeMap<u64, StepRows> {
    let mut steps: std::collections::BTreeMap<u64, StepRows> = Default::default();
    for rollup in rollups {
        if rollup.series.metric() == Metric::Cooldown {
            continue;
        }
        for point in &rollup.points {
            let rows = steps.entry(point.start_ms).or_default();
            rows.providers.push(rollup.series.provider().to_owned());
            rows.key_ids.push(rollup.series.key_id().to_owned());
            rows.metrics
                .push(rollup.series.metric().as_str().to_owned());
            rows.values.push(point.value);
        }
    }
    steps
}

/// Unix ms as PostgreSQL's bigint; times past year 292 million are clamped.
fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// How often the gateway's history task writes finished steps.
pub const WRITE_EVERY: Duration = Duration::from_secs(60);

/// Rounds of [`WRITE_EVERY`] between retention passes (an hour).
const PRUNE_EVERY_ROUNDS: u64 = 60;

/// Runs `writer` until the process ends: every [`WRITE_EVERY`] the finished steps of `store`'s
/// roll-ups, every hour a retention pass. Failures are logged once per outage and retried
/// next round; steps missed stay in the runtime store for its `keep`, so an outage shorter
/// than that loses nothing.
pub fn spawn_history(
    writer: HistoryWriter,
    store: Arc<dyn RuntimeStore>,
    policy: RollupPolicy,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(WRITE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        for round in 0u64.. {
            ticker.tick().await;
            let mut result = writer.write_from(store.as_ref(), policy).await.map(|_| ());
            if result.is_ok() && round % PRUNE_EVERY_ROUNDS == 0 {
                result = writer.prune().await.map(|_| ());
            }
            match result {
                Ok(()) if failing => {
                    tracing::info!("usage history writes recovered");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "usage history write failed; retrying every minute");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    })
}
