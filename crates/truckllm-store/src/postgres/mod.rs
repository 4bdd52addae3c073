//! PostgreSQL runtime store (`postgres://user:pass@host:port/db`), for teams that run
//! PostgreSQL and not Redis.
//!
//! Every store call is one SQL statement, so one round trip and one transaction: writes call
//! the functions that [`schema`]'s migration defines (`truckllm_increment`, `truckllm_reserve`,
//! …), which lock each provider key they touch with a transaction-level advisory lock, in a
//! fixed order. So a reservation's checks and writes are atomic against every other writer of
//! the key, on any number of gateways, and concurrent batches never deadlock.
//!
//! Tables: `truckllm_counters` (the seed's counters, with their expiry), `truckllm_buckets`
//! (window buckets), `truckllm_rollups` (per-step totals) and `truckllm_batch_ids` (applied
//! batch ids). Time comes from the store's [`Clock`](crate::Clock), as with the other backends:
//! window buckets and roll-up steps are placed by the caller's time, expiry is judged by
//! [`Clock::expiry_ms`](crate::Clock::expiry_ms), so gateways sharing a database should run
//! NTP. Reads skip expired rows; a background task deletes them
//! ([`PostgresStore::sweep`]), one sweeper at a time per database.
//!
//! TLS follows the URL's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert`, through rustls with the aws-lc-rs provider.

pub mod history;
pub mod schema;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve, check_adds, check_reads};
use crate::series::ProviderKey;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::task::AbortHandle;

use crate::error::StoreError;
use crate::series::{Metric, Series, check_value};
use crate::store::{
    BATCH_ID_TTL, ConnectionStats, Denial, Increment, ListedSeries, Reservation, ReserveOutcome,
    ReserveRequest, Result, RollupPoint, RuntimeStore, SeriesRollup, check_batch_id,
    check_increments,
};
use crate::url::redact_url;
use crate::window::{StoreOptions, Windowing, duration_ms};

/// The backend name in metrics labels and errors.
const BACKEND: &str = "postgres";

/// Most rows of each table one sweep statement deletes.
const SWEEP_LIMIT: i32 = 10_000;

/// Tries of a statement that lost a deadlock or serialization conflict (it changed nothing).
const CONFLICT_TRIES: usize = 3;

/// How to reach PostgreSQL and how long to wait for it.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool.
    pub pool_size: u32,
    /// Longest wait for a connection (a new one, or a free one from the pool).
    pub connect_timeout: Duration,
    /// Longest wait for a statement's answer; the server also cancels statements that run
    /// twice as long (`statement_timeout`).
    pub response_timeout: Duration,
    /// PEM file of the CA that signed the server's certificate, for `sslmode=verify-ca` or
    /// `verify-full` with a private CA (the URL's `sslrootcert` does the same).
    pub tls_ca_file: Option<PathBuf>,
    /// How often expired rows are deleted.
    pub sweep_interval: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            tls_ca_file: None,
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL runtime store.
pub struct PostgresStore {
    pool: PgPool,
    options: StoreOptions,
    response_timeout: Duration,
    /// The URL with any password removed, for Display and errors.
    redacted_url: String,
    sweeper: AbortHandle,
}

/// Where and when a write counts: what every write function takes after its data.
struct WriteAt {
    /// Now on the expiry clock: counters and batch ids expire relative to it.
    expiry_ms: i64,
    ttl_ms: i64,
    bucket: i64,
    oldest_bucket: i64,
    step: i64,
    oldest_step: i64,
    rollups: bool,
}

impl PostgresStore {
    /// Connects, applies the schema migrations (or refuses a newer schema) and starts the
    /// sweeper. `url` is `postgres://user:pass@host:port/db[?sslmode=…]`.
    pub async fn connect(
        url: &str,
        options: StoreOptions,
        postgres: PostgresOptions,
    ) -> Result<Self> {
        let redacted_url = redact_url(url);
        let pool = connect_pool(url, &postgres).await?;
        let sweeper = spawn_sweeper(pool.clone(), options.clone(), postgres.sweep_interval);
        Ok(Self {
            pool,
            options,
            response_timeout: postgres.response_timeout,
            redacted_url,
            sweeper,
        })
    }

    /// Deletes expired rows now (the background task does this every `sweep_interval`);
    /// returns how many it deleted. Returns 0 at once while another store sweeps the database.
    pub async fn sweep(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = self
                .run("sweep", || sweep_once(&self.pool, &self.options))
                .await?;
            total += deleted;
            if deleted < u64::try_from(SWEEP_LIMIT).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }

    /// Runs one statement, bounded by the response timeout; a statement that lost a deadlock
    /// or serialization conflict changed nothing and is run again.
    async fn run<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match tokio::time::timeout(self.response_timeout, call()).await {
                Err(_) => return Err(timeout(operation, self.response_timeout)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if is_conflict(&e) && tries < CONFLICT_TRIES => {}
                Ok(Err(e)) => return Err(map_error(BACKEND, operation, e)),
            }
        }
    }

    fn write_at(&self, at_ms: u64) -> WriteAt {
        let w = self.options.windowing;
        let rollup = self.options.rollup;
        let now_ms = self.options.clock.now_ms();
        WriteAt {
            expiry_ms: ms(self.options.clock.expiry_ms()),
            ttl_ms: ms(self.options.ttl_ms()),
            bucket: ms(w.bucket_index(at_ms)),
            oldest_bucket: ms(w.oldest_kept(w.bucket_index(now_ms))),
            step: ms(rollup.step_index(at_ms)),
            oldest_step: ms(rollup.oldest_kept(now_ms)),
            rollups: rollup.is_on(),
        }
    }

    /// Adds `deltas` (per series, in order) at `at_ms`'s bucket and step, at most once per
    /// `batch_id` if one is given; returns the counters' values in input order.
    async fn add(
        &self,
        operation: &'static str,
        batch_id: Option<&str>,
        deltas: &[(Series, f64)],
        at_ms: u64,
    ) -> Result<Vec<f64>> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = deltas.iter().map(|(s, _)| s.key().encoded()).collect();
        let series: Vec<String> = deltas.iter().map(|(s, _)| s.to_string()).collect();
        let values: Vec<f64> = deltas.iter().map(|(_, d)| *d).collect();
        let at = self.write_at(at_ms);
        let answer: Vec<f64> = self
            .run(operation, || {
                sqlx::query_scalar(
                    "SELECT truckllm_increment($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(batch_id)
                .bind(&keys)
                .bind(&series)
                .bind(&values)
                .bind(at.expiry_ms)
                .bind(at.ttl_ms)
                .bind(at.bucket)
                .bind(at.oldest_bucket)
                .bind(at.step)
                .bind(at.oldest_step)
                .bind(at.rollups)
                .bind(ms(duration_ms(BATCH_ID_TTL)))
                .fetch_one(&self.pool)
            })
            .await?;
        if answer.len() != deltas.len() {
            return Err(protocol(
                operation,
                format!("{} values for {} increments", answer.len(), deltas.len()),
            ));
        }
        Ok(answer)
    }
}

/// The arguments of one `truckllm_reserve` call, column by column (see the migration).
#[derive(Default)]
struct ReserveArgs {
    keys: Vec<String>,
    ids: Vec<Option<String>>,
    amount_counts: Vec<i32>,
    amount_metrics: Vec<String>,
    amounts: Vec<f64>,
    check_counts: Vec<i32>,
    check_metrics: Vec<String>,
    check_limits: Vec<f64>,
    check_buckets: Vec<i64>,
}

impl ReserveArgs {
    fn new(
        requests: &[ReserveRequest],
        amounts: &[Vec<(Metric, f64)>],
        windowing: &Windowing,
    ) -> Result<Self> {
        let mut args = Self::default();
        for (request, amounts) in requests.iter().zip(amounts) {
            args.keys.push(request.key.encoded());
            args.ids.push(request.id.clone());
            args.amount_counts.push(count(amounts.len())?);
            for (metric, amount) in amounts {
                args.amount_metrics.push(metric.as_str().to_owned());
                args.amounts.push(*amount);
            }
            args.check_counts.push(count(request.checks.len())?);
            for check in &request.checks {
                args.check_metrics.push(check.metric.as_str().to_owned());
                args.check_limits.push(check.limit);
                args.check_buckets
                    .push(ms(windowing.buckets_in(check.window)?));
            }
        }
        Ok(args)
    }
}

/// The arguments of a period call, column by column (see migration 0006).
#[derive(Default)]
struct PeriodArgs {
    metrics: Vec<&'static str>,
    limits: Vec<f64>,
    amounts: Vec<f64>,
    counted_counts: Vec<i32>,
    counted: Vec<String>,
    names: Vec<String>,
    expiries: Vec<Option<i64>>,
}

impl PeriodArgs {
    fn of_reserve(request: &PeriodReserve) -> Result<Self> {
        let mut args = Self::default();
        for check in &request.checks {
            args.metrics.push(check.metric.as_str());
            args.limits.push(check.limit);
            args.amounts.push(check.amount);
            args.counted_counts.push(count(check.counted.len())?);
            args.counted.extend(check.counted.iter().cloned());
            args.names.push(check.write.name.clone());
            args.expiries.push(check.write.expires_at_ms.map(ms));
        }
        Ok(args)
    }

    /// Adds: `amounts` holds the deltas.
    fn of_adds(adds: &[PeriodAdd]) -> Self {
        let mut args = Self::default();
        for add in adds {
            args.metrics.push(add.metric.as_str());
            args.amounts.push(add.delta);
            args.names.push(add.counter.name.clone());
            args.expiries.push(add.counter.expires_at_ms.map(ms));
        }
        args
    }
}

#[async_trait]
impl RuntimeStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn windowing(&self) -> Windowing {
        self.options.windowing
    }

    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        check_value("value", value)?;
        let key = series.key().encoded();
        let name = series.to_string();
        let now = ms(self.options.clock.expiry_ms());
        let ttl = ms(self.options.ttl_ms());
        self.run("set", || {
            sqlx::query("SELECT truckllm_set($1, $2, $3, $4, $5)")
                .bind(&key)
                .bind(&name)
                .bind(value)
                .bind(now)
                .bind(ttl)
                .execute(&self.pool)
        })
        .await
        .map(drop)
    }

    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = series.iter().map(Series::to_string).collect();
        let now = ms(self.options.clock.expiry_ms());
        self.run("get_many", || {
            sqlx::query_scalar(
                "SELECT coalesce(c.value, 0)::float8 \
                 FROM unnest($1::text[]) WITH ORDINALITY AS s(series, i) \
                 LEFT JOIN truckllm_counters AS c \
                   ON c.series = s.series AND c.expires_at_ms > $2 \
                 ORDER BY s.i",
            )
            .bind(&names)
            .bind(now)
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        let w = self.options.windowing;
        let buckets = w.buckets_in(window)?;
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let now_bucket = w.bucket_index(self.options.clock.now_ms());
        let first = ms(Windowing::first_in_window(now_bucket, buckets));
        let names: Vec<String> = series.iter().map(Series::to_string).collect();
        self.run("window", || {
            sqlx::query_scalar(
                "SELECT coalesce(sum(b.value), 0)::float8 \
                 FROM unnest($1::text[]) WITH ORDINALITY AS s(series, i) \
                 LEFT JOIN truckllm_buckets AS b ON b.series = s.series AND b.bucket >= $2 \
                 GROUP BY s.i ORDER BY s.i",
            )
            .bind(&names)
            .bind(first)
            .fetch_all(&self.pool)
        })
        .await
    }

    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        check_increments(increments)?;
        let deltas: Vec<(Series, f64)> = increments
            .iter()
            .map(|i| (i.series.clone(), i.delta))
            .collect();
        self.add("increment", None, &deltas, self.options.clock.now_ms())
            .await
    }

    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        check_batch_id(batch_id)?;
        check_increments(increments)?;
        let deltas: Vec<(Series, f64)> = increments
            .iter()
            .map(|i| (i.series.clone(), i.delta))
            .collect();
        self.add(
            "increment_once",
            Some(batch_id),
            &deltas,
            self.options.clock.now_ms(),
        )
        .await
    }

    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        let w = self.options.windowing;
        let amounts: Vec<Vec<(Metric, f64)>> = requests
            .iter()
            .map(|r| r.amounts(&w))
            .collect::<Result<_>>()?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let args = ReserveArgs::new(requests, &amounts, &w)?;
        let now_ms = self.options.clock.now_ms();
        let at = self.write_at(now_ms);
        let rows: Vec<(bool, i32, f64, i64)> = self
            .run("reserve", || {
                sqlx::query_as(
                    "SELECT granted, check_number, used, retry_after_ms FROM truckllm_reserve(\
                     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     $17, $18, $19)",
                )
                .bind(&args.keys)
                .bind(&args.ids)
                .bind(&args.amount_counts)
                .bind(&args.amount_metrics)
                .bind(&args.amounts)
                .bind(&args.check_counts)
                .bind(&args.check_metrics)
                .bind(&args.check_limits)
                .bind(&args.check_buckets)
                .bind(ms(now_ms))
                .bind(at.expiry_ms)
                .bind(at.ttl_ms)
                .bind(at.bucket)
                .bind(at.oldest_bucket)
                .bind(ms(w.bucket_ms()))
                .bind(at.step)
                .bind(at.oldest_step)
                .bind(at.rollups)
                .bind(ms(duration_ms(BATCH_ID_TTL)))
                .fetch_all(&self.pool)
            })
            .await?;
        if rows.len() != requests.len() {
            return Err(protocol(
                "reserve",
                format!("{} answers to {} requests", rows.len(), requests.len()),
            ));
        }
        rows.into_iter()
            .zip(requests.iter().zip(amounts))
            .map(|(row, (request, amounts))| outcome(row, request, amounts, now_ms))
            .collect()
    }

    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        let deltas = reservation.deltas(actual)?;
        let deltas: Vec<(Series, f64)> = deltas
            .into_iter()
            .map(|(m, d)| (reservation.key.series(m), d))
            .collect();
        self.add("reconcile", None, &deltas, reservation.at_ms)
            .await
            .map(drop)
    }

    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        check_batch_id(settle_id)?;
        let deltas = reservation.deltas(actual)?;
        let deltas: Vec<(Series, f64)> = deltas
            .into_iter()
            .map(|(m, d)| (reservation.key.series(m), d))
            .collect();
        self.add(
            "reconcile_once",
            Some(settle_id),
            &deltas,
            reservation.at_ms,
        )
        .await
        .map(drop)
    }

    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        let now = self.options.clock.expiry_ms();
        request.validate(now)?;
        let args = PeriodArgs::of_reserve(request)?;
        let key = request.key.encoded();
        let (granted, check_number, used): (bool, i32, f64) = self
            .run("reserve_periods", || {
                sqlx::query_as(
                    "SELECT granted, check_number, used FROM truckllm_reserve_periods(\
                     $1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&key)
                .bind(&args.metrics)
                .bind(&args.limits)
                .bind(&args.amounts)
                .bind(&args.counted_counts)
                .bind(&args.counted)
                .bind(&args.names)
                .bind(&args.expiries)
                .bind(ms(now))
                .fetch_one(&self.pool)
            })
            .await?;
        if granted {
            return Ok(PeriodOutcome::Granted);
        }
        let check = usize::try_from(check_number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < request.checks.len())
            .ok_or_else(|| protocol("reserve_periods", format!("no check {check_number}")))?;
        Ok(PeriodOutcome::Denied { check, used })
    }

    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        check_adds(batch_id, adds)?;
        let now = self.options.clock.expiry_ms();
        let args = PeriodArgs::of_adds(adds);
        let key = key.encoded();
        let id_expires = ms(now.saturating_add(duration_ms(BATCH_ID_TTL)));
        self.run("add_to_periods", || {
            sqlx::query_scalar::<_, bool>(
                "SELECT truckllm_add_periods($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key)
            .bind(batch_id)
            .bind(&args.metrics)
            .bind(&args.names)
            .bind(&args.amounts)
            .bind(&args.expiries)
            .bind(ms(now))
            .bind(id_expires)
            .fetch_one(&self.pool)
        })
        .await
        .map(drop)
    }

    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        check_reads(reads)?;
        let now = ms(self.options.clock.expiry_ms());
        let key = key.encoded();
        let metrics: Vec<&str> = reads.iter().map(|r| r.metric.as_str()).collect();
        let counts: Vec<i32> = reads
            .iter()
            .map(|r| count(r.counted.len()))
            .collect::<Result<_>>()?;
        let counted: Vec<&str> = reads
            .iter()
            .flat_map(|r| r.counted.iter().map(String::as_str))
            .collect();
        let sums: Vec<f64> = self
            .run("read_periods", || {
                sqlx::query_scalar(
                    "SELECT truckllm_period_sum($1, r.metric, \
                     ($3::text[])[r.first + 1 : r.first + r.n], $4) \
                     FROM (SELECT m.metric, m.n, m.i, \
                           coalesce(sum(m.n) OVER (ORDER BY m.i \
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::int AS first \
                           FROM unnest($2::text[], $5::int[]) WITH ORDINALITY AS m(metric, n, i)) AS r \
                     ORDER BY r.i",
                )
                .bind(&key)
                .bind(&metrics)
                .bind(&counted)
                .bind(now)
                .bind(&counts)
                .fetch_all(&self.pool)
            })
            .await?;
        if sums.len() != reads.len() {
            return Err(protocol(
                "read_periods",
                format!("{} sums for {} reads", sums.len(), reads.len()),
            ));
        }
        Ok(sums)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        let now = self.options.clock.expiry_ms();
        let rows: Vec<(String, f64, i64)> = self
            .run("list", || {
                sqlx::query_as(
                    "SELECT series, value, expires_at_ms FROM truckllm_counters \
                     WHERE starts_with(series, $1) AND expires_at_ms > $2",
                )
                .bind(prefix)
                .bind(ms(now))
                .fetch_all(&self.pool)
            })
            .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for (name, value, expires_at_ms) in rows {
            let left = u64::try_from(expires_at_ms)
                .unwrap_or(0)
                .saturating_sub(now);
            listed.push(ListedSeries {
                series: parse_series("list", &name)?,
                value,
                ttl: Some(Duration::from_millis(left)),
            });
        }
        listed.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(listed)
    }

    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        let policy = self.options.rollup;
        let step_ms = policy.step_ms();
        // Steps past retention are swept later; until then they are not shown.
        let oldest = policy.oldest_kept(self.options.clock.now_ms());
        let rows: Vec<(String, i64, f64)> = self
            .run("rollups", || {
                sqlx::query_as(
                    "SELECT series, step, value FROM truckllm_rollups \
                     WHERE starts_with(series, $1) AND step >= $2 ORDER BY series, step",
                )
                .bind(prefix)
                .bind(ms(oldest))
                .fetch_all(&self.pool)
            })
            .await?;
        let mut rollups: Vec<SeriesRollup> = Vec::new();
        let mut current: Option<String> = None;
        for (name, step, value) in rows {
            let start_ms = u64::try_from(step).unwrap_or(0).saturating_mul(step_ms);
            if start_ms < since_ms {
                continue;
            }
            let point = RollupPoint { start_ms, value };
            match rollups.last_mut() {
                Some(last) if current.as_deref() == Some(name.as_str()) => last.points.push(point),
                _ => {
                    rollups.push(SeriesRollup {
                        series: parse_series("rollups", &name)?,
                        points: vec![point],
                    });
                    current = Some(name);
                }
            }
        }
        rollups.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(rollups)
    }

    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        crate::docs::check_put_doc(key, value, ttl)?;
        let expires = ms(self
            .options
            .clock
            .expiry_ms()
            .saturating_add(duration_ms(ttl)));
        self.run("put_doc", || {
            sqlx::query(
                "INSERT INTO truckllm_documents (key, value, expires_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE \
                 SET value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms",
            )
            .bind(key)
            .bind(value)
            .bind(expires)
            .execute(&self.pool)
        })
        .await
        .map(drop)
    }

    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        crate::docs::check_doc_key(key)?;
        let now = ms(self.options.clock.expiry_ms());
        self.run("get_doc", || {
            sqlx::query_scalar(
                "SELECT value FROM truckllm_documents WHERE key = $1 AND expires_at_ms > $2",
            )
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
        })
        .await
    }

    async fn delete_doc(&self, key: &str) -> Result<bool> {
        crate::docs::check_doc_key(key)?;
        let now = ms(self.options.clock.expiry_ms());
        // An expired document is removed too, but was not there to the caller.
        let live: i64 = self
            .run("delete_doc", || {
                sqlx::query_scalar(
                    "WITH gone AS (DELETE FROM truckllm_documents WHERE key = $1 \
                     RETURNING expires_at_ms) \
                     SELECT count(*) FROM gone WHERE expires_at_ms > $2",
                )
                .bind(key)
                .bind(now)
                .fetch_one(&self.pool)
            })
            .await?;
        Ok(live > 0)
    }

    async fn health(&self) -> Result<()> {
        self.run("health", || sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(drop)
    }

    fn connection_stats(&self) -> ConnectionStats {
        let idle = u64::try_from(self.pool.num_idle()).unwrap_or(u64::MAX);
        ConnectionStats {
            active: u64::from(self.pool.size()).saturating_sub(idle),
            idle,
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.redacted_url)
            .field("options", &self.options)
            .finish()
    }
}

impl fmt::Display for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresStore({})", self.redacted_url)
    }
}

/// A pool of connections to the database at `url`, its schema migrated (or a newer schema
/// refused): what the runtime store and the config store each open.
pub async fn connect_pool(url: &str, postgres: &PostgresOptions) -> Result<PgPool> {
    let redacted_url = redact_url(url);
    let connect = connect_options(url, &redacted_url, postgres)?;
    let pool = pool_options(postgres).connect_with(connect);
    let pool = match tokio::time::timeout(postgres.connect_timeout * 2, pool).await {
        Ok(pool) => pool.map_err(|e| map_error(BACKEND, "connect", e))?,
        Err(_) => return Err(timeout("connect", postgres.connect_timeout * 2)),
    };
    schema::migrate(&pool, BACKEND).await?;
    Ok(pool)
}

/// A pool that connects on first use, for callers that must not wait at start (a log sink);
/// they run [`schema::migrate`] before their first statement.
pub fn lazy_pool(url: &str, postgres: &PostgresOptions) -> Result<PgPool> {
    let connect = connect_options(url, &redact_url(url), postgres)?;
    Ok(pool_options(postgres).connect_lazy_with(connect))
}

fn pool_options(postgres: &PostgresOptions) -> PgPoolOptions {
    // No ping before each call (sqlx's default would double the round trips): a connection
    // the server dropped fails its next call, which the caller sees as an outage and sqlx
    // then closes, so the pool heals by itself.
    PgPoolOptions::new()
        .max_connections(postgres.pool_size.max(1))
        .acquire_timeout(postgres.connect_timeout)
        .test_before_acquire(false)
}

/// Reads the URL (TLS from its `sslmode`) and adds the pool's settings.
fn connect_options(
    url: &str,
    redacted_url: &str,
    postgres: &PostgresOptions,
) -> Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(url).map_err(|e| {
        StoreError::invalid(format!(
            "cannot read the PostgreSQL URL {redacted_url}: {e}"
        ))
    })?;
    let statement_timeout = duration_ms(postgres.response_timeout * 2)
        .max(1)
        .to_string();
    // Slow statements are not logged by sqlx: the store's own timeouts and latency metrics
    // cover them, and a long `logs search` would otherwise print warnings into its output.
    options = options
        .application_name("truckllm")
        .options([("statement_timeout", statement_timeout.as_str())])
        .disable_statement_logging();
    if let Some(ca) = &postgres.tls_ca_file {
        options = options.ssl_root_cert(ca);
    }
    Ok(options)
}

/// Deletes expired rows, by the store's expiry clock, up to [`SWEEP_LIMIT`] per table.
async fn sweep_once(
    pool: &PgPool,
    options: &StoreOptions,
) -> std::result::Result<u64, sqlx::Error> {
    let now_ms = options.clock.expiry_ms();
    let w = options.windowing;
    let oldest_step = options
        .rollup
        .is_on()
        .then(|| ms(options.rollup.oldest_kept(now_ms)));
    let deleted: i64 = sqlx::query_scalar("SELECT truckllm_sweep($1, $2, $3, $4)")
        .bind(ms(now_ms))
        .bind(ms(w.oldest_kept(w.bucket_index(now_ms))))
        .bind(oldest_step)
        .bind(SWEEP_LIMIT)
        .fetch_one(pool)
        .await?;
    let periods = sqlx::query(
        "DELETE FROM truckllm_periods WHERE ctid = ANY (ARRAY(\
         SELECT ctid FROM truckllm_periods WHERE expires_at_ms <= $1 \
         LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(ms(now_ms))
    .bind(SWEEP_LIMIT)
    .execute(pool)
    .await?
    .rows_affected();
    let documents = sqlx::query(
        "DELETE FROM truckllm_documents WHERE key IN \
         (SELECT key FROM truckllm_documents WHERE expires_at_ms <= $1 LIMIT $2)",
    )
    .bind(ms(now_ms))
    .bind(SWEEP_LIMIT)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(u64::try_from(deleted)
        .unwrap_or(0)
        .saturating_add(documents)
        .saturating_add(periods))
}

/// Sweeps every `interval` until the store is dropped. A failed sweep is logged and tried
/// again at the next tick: an outage must not end the sweeping.
fn spawn_sweeper(pool: PgPool, options: StoreOptions, interval: Duration) -> AbortHandle {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match sweep_once(&pool, &options).await {
                Ok(deleted) => tracing::debug!(deleted, "postgres store swept"),
                Err(e) => tracing::warn!(error = %map_error(BACKEND, "sweep", e), "sweep failed"),
            }
        }
    });
    task.abort_handle()
}

fn outcome(
    (granted, check_number, used, wait_ms): (bool, i32, f64, i64),
    request: &ReserveRequest,
    amounts: Vec<(Metric, f64)>,
    now_ms: u64,
) -> Result<ReserveOutcome> {
    if granted {
        return Ok(ReserveOutcome::Granted(Reservation {
            key: request.key.clone(),
            at_ms: now_ms,
            reserved: amounts,
        }));
    }
    let check = usize::try_from(check_number)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| request.checks.get(i))
        .ok_or_else(|| protocol("reserve", format!("no check {check_number}")))?;
    Ok(ReserveOutcome::Denied(Denial {
        metric: check.metric,
        limit: check.limit,
        used,
        requested: check.amount,
        retry_after: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
    }))
}

fn parse_series(operation: &'static str, name: &str) -> Result<Series> {
    Series::parse_encoded(name).map_err(|e| {
        protocol(
            operation,
            format!("stored series {name:?} is unreadable: {e}"),
        )
    })
}

/// True for errors that mean the database could not be reached or cannot serve now: the
/// failures the resilient wrapper rides out.
///
/// sqlx reports a connection cut in the middle of a message as a protocol error (and then
/// closes that connection), so protocol errors count as outages too: a call that fails on a
/// half-read answer must be journaled and replayed, not refused.
pub(crate) fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 53: out of resources (connections, disk, memory);
            // 57: shutting down, crashed, not accepting connections yet, or a statement
            // cancelled (statement_timeout); 58: the server's own I/O failed; 25006: a
            // read-only standby after a failover.
            ["08", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || code.as_ref() == "25006"
        }),
        _ => false,
    }
}

/// A deadlock or serialization failure: the statement was rolled back and may be run again.
fn is_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(code.as_ref(), "40001" | "40P01"))
}

/// Maps a driver error into the store's error; outages are retryable, the rest are not.
pub(crate) fn map_error(
    backend: &'static str,
    operation: &'static str,
    error: sqlx::Error,
) -> StoreError {
    if is_outage(&error) {
        StoreError::unavailable(backend, operation, &error)
    } else {
        StoreError::Protocol {
            backend,
            operation,
            detail: error.to_string(),
        }
    }
}

fn timeout(operation: &'static str, after: Duration) -> StoreError {
    StoreError::Timeout {
        backend: BACKEND,
        operation,
        after_ms: duration_ms(after),
    }
}

fn protocol(operation: &'static str, detail: String) -> StoreError {
    StoreError::Protocol {
        backend: BACKEND,
        operation,
        detail,
    }
}

/// A time or index as PostgreSQL's `bigint`.
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn count(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| StoreError::invalid(format!("{n} items are too many")))
}
