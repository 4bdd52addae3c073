//! The PostgreSQL sink: request and audit records in `truckllm_request_log` and
//! `truckllm_audit_log`, each partitioned by UTC day (see the migration in `truckllm-store`),
//! written one INSERT per batch, so `logs search` and `logs stats` can run in SQL over every
//! gateway's records and retention drops whole days.
//!
//! The sink connects on its first write (a gateway starts even when the database does not
//! answer) and migrates the schema then. A failed write is retried with backoff for as long
//! as the process runs, like the webhook's: while the database is down the sink's bounded
//! queue absorbs new records, and it catches up when the database is back. Every hour (and at
//! the first write) it creates the partitions of today and tomorrow and drops those older than
//! `keep_days` (requests) and `audit_keep_days` (audit records and alerts).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use truckllm_config::schema::PostgresSinkConfig;
use truckllm_store::postgres::{PostgresOptions, lazy_pool, schema};
use truckllm_store::redact_url;

use crate::record::LogRecord;
use crate::sink::{Batching, LogSink, SinkError};

/// The request table.
pub const REQUEST_TABLE: &str = "truckllm_request_log";
/// The audit table.
pub const AUDIT_TABLE: &str = "truckllm_audit_log";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often partitions are made ahead and old ones dropped.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

const INSERT_REQUESTS: &str = "INSERT INTO truckllm_request_log (ts, request_id, client, \
    endpoint, model, provider, key, status, error, prompt_tokens, completion_tokens, \
    latency_ms, cost, record) \
    SELECT (e->>'ts')::timestamptz, e->>'request_id', e->>'client', e->>'endpoint', \
    e->>'model', e->>'provider', e->>'key', (e->>'status')::integer, e->>'error', \
    (e->>'prompt_tokens')::bigint, (e->>'completion_tokens')::bigint, \
    (e->>'latency_ms')::float8, (e->>'cost')::float8, e \
    FROM jsonb_array_elements($1::jsonb) AS e";

const INSERT_AUDIT: &str = "INSERT INTO truckllm_audit_log (ts, category, action, actor, \
    target, outcome, record) \
    SELECT (e->>'ts')::timestamptz, e->>'category', e->>'action', e->>'actor', \
    e->>'target', e->>'outcome', e \
    FROM jsonb_array_elements($1::jsonb) AS e";

pub struct PostgresSink {
    name: String,
    pool: PgPool,
    migrated: bool,
    /// Partitions known to exist: (table, day as `YYYY-MM-DD`).
    partitions: BTreeSet<(&'static str, String)>,
    batching: Batching,
    keep: Duration,
    audit_keep: Duration,
    retries: metrics::Counter,
}

impl PostgresSink {
    pub fn new(config: &PostgresSinkConfig) -> Result<Self, SinkError> {
        let shown = redact_url(&config.url);
        let options = PostgresOptions {
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            ..PostgresOptions::default()
        };
        let pool = lazy_pool(&config.url, &options)
            .map_err(|e| SinkError::Http(format!("postgres sink {shown}: {e}")))?;
        let name = format!("postgres:{shown}");
        Ok(Self {
            retries: metrics::counter!("truckllm_log_sink_retries_total", "sink" => name.clone()),
            name,
            pool,
            migrated: false,
            partitions: BTreeSet::new(),
            batching: Batching {
                max_records: config.batch_size.max(1),
                linger: Duration::from_millis(config.flush_interval_ms),
            },
            keep: days(config.keep_days),
            audit_keep: days(config.audit_keep_days),
        })
    }

    /// One attempt at the whole batch: schema, partitions, then one INSERT per table, in one
    /// transaction (all of the batch or none of it).
    async fn try_write(&mut self, batch: &[LogRecord]) -> Result<(), Failure> {
        self.migrate().await?;
        let (requests, audits) = split(batch);
        for (table, records) in [(REQUEST_TABLE, &requests), (AUDIT_TABLE, &audits)] {
            for day in days_of(records) {
                self.ensure_partition(table, &day).await?;
            }
        }
        let mut tx = self.pool.begin().await.map_err(Failure::of)?;
        for (sql, records) in [(INSERT_REQUESTS, requests), (INSERT_AUDIT, audits)] {
            if records.is_empty() {
                continue;
            }
            let json = serde_json::Value::Array(records.into_iter().map(|(_, v)| v).collect());
            let inserted = sqlx::query(sql)
                .bind(json.to_string())
                .execute(&mut *tx)
                .await;
            if let Err(e) = inserted {
                // Perhaps another gateway dropped a partition this sink thought it had.
                self.partitions.clear();
                return Err(Failure::of(e));
            }
        }
        tx.commit().await.map_err(Failure::of)
    }

    async fn migrate(&mut self) -> Result<(), Failure> {
        if !self.migrated {
            schema::migrate(&self.pool, "postgres")
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            self.migrated = true;
            self.maintain().await.map_err(Failure::Transient)?;
        }
        Ok(())
    }

    async fn ensure_partition(&mut self, table: &'static str, day: &str) -> Result<(), Failure> {
        if self.partitions.contains(&(table, day.to_owned())) {
            return Ok(());
        }
        sqlx::query("SELECT truckllm_log_partition($1, $2::date)")
            .bind(table)
            .bind(day)
            .execute(&self.pool)
            .await
            .map_err(Failure::of)?;
        self.partitions.insert((table, day.to_owned()));
        Ok(())
    }

    /// Today's and tomorrow's partitions made; days past retention dropped.
    async fn maintain(&mut self) -> Result<(), String> {
        let now = SystemTime::now();
        for table in [REQUEST_TABLE, AUDIT_TABLE] {
            for ahead in [Duration::ZERO, Duration::from_secs(86_400)] {
                let day = day_of(now + ahead);
                self.ensure_partition(table, &day)
                    .await
                    .map_err(|f| f.to_string())?;
            }
        }
        for (table, keep) in [(REQUEST_TABLE, self.keep), (AUDIT_TABLE, self.audit_keep)] {
            let before = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
            let dropped: i32 =
                sqlx::query_scalar("SELECT truckllm_log_drop_before($1, $2::timestamptz)")
                    .bind(table)
                    .bind(crate::record::timestamp(before))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if dropped > 0 {
                self.partitions.retain(|(t, _)| *t != table);
                tracing::info!(sink = %self.name, table, dropped, "dropped log partitions past retention");
            }
        }
        Ok(())
    }
}

/// Why a write failed: worth retrying (the database is away, a conflict), or never (the
/// records themselves are refused: SQLSTATE class 22, data exception, or 23, integrity).
#[derive(Debug)]
enum Failure {
    Transient(String),
    Refused(String),
}

impl Failure {
    fn of(e: sqlx::Error) -> Self {
        let refused = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"));
        if refused {
            Failure::Refused(e.to_string())
        } else {
            Failure::Transient(e.to_string())
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(reason) | Failure::Refused(reason) => f.write_str(reason),
        }
    }
}

/// Each record's UTC day and its JSON, requests and audit records apart.
type Rows = Vec<(String, serde_json::Value)>;

fn split(batch: &[LogRecord]) -> (Rows, Rows) {
    let mut requests = Vec::new();
    let mut audits = Vec::new();
    for record in batch {
        let (ts, json, rows) = match record {
            LogRecord::Request(r) => (&r.ts, serde_json::to_value(&**r), &mut requests),
            LogRecord::Audit(a) => (&a.ts, serde_json::to_value(&**a), &mut audits),
        };
        if let Ok(mut json) = json {
            without_nul(&mut json);
            rows.push((ts.get(..10).unwrap_or_default().to_owned(), json));
        }
    }
    (requests, audits)
}

/// PostgreSQL's `jsonb` refuses `\u0000`, and record strings come from clients (a model
/// name, a request id): each NUL becomes U+FFFD, so one request cannot stop the sink.
fn without_nul(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', "\u{fffd}");
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_nul),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(without_nul),
        _ => {}
    }
}

fn days_of(rows: &Rows) -> BTreeSet<String> {
    rows.iter().map(|(day, _)| day.clone()).collect()
}

/// `YYYY-MM-DD` (UTC) of an instant.
fn day_of(at: SystemTime) -> String {
    crate::record::timestamp(at)[..10].to_owned()
}

fn days(n: f64) -> Duration {
    Duration::from_secs_f64((n.clamp(1.0, 3660.0)) * 86_400.0)
}

#[async_trait]
impl LogSink for PostgresSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    async fn write(
        &mut self,
        batch: &[LogRecord],
        stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(MAX_BACKOFF)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let last_chance = stop.is_cancelled();
            let reason = match self.try_write(batch).await {
                Ok(()) => return Ok(()),
                // The same batch would fail the same way forever: give it up, counted.
                Err(Failure::Refused(reason)) => {
                    return Err(SinkError::GaveUp {
                        records: batch.len(),
                        reason: format!("PostgreSQL refused the records: {reason}"),
                    });
                }
                Err(Failure::Transient(reason)) => reason,
            };
            if last_chance {
                return Err(SinkError::GaveUp {
                    records: batch.len(),
                    reason: format!("shutting down; last attempt failed: {reason}"),
                });
            }
            let wait = backoff.next().unwrap_or(MAX_BACKOFF);
            tracing::warn!(sink = %self.name, error = %reason, retry_in_ms = wait.as_millis() as u64, "log write to PostgreSQL failed; retrying");
            self.retries.increment(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(MAINTENANCE_EVERY)
    }

    async fn tick(&mut self, _stop: &CancellationToken) -> Result<(), SinkError> {
        if !self.migrated {
            return Ok(());
        }
        self.maintain()
            .await
            .map_err(|reason| SinkError::Http(format!("{}: maintenance: {reason}", self.name)))
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.pool.close().await;
        Ok(())
    }
}

/// The statuses a filter keeps, as an inclusive range for the indexed `status` column.
fn status_range(filter: Option<crate::search::StatusFilter>) -> Option<(i32, i32)> {
    use crate::search::StatusFilter;
    filter.map(|f| match f {
        StatusFilter::Class(c) => (i32::from(c) * 100, i32::from(c) * 100 + 99),
        StatusFilter::Exact(code) => (i32::from(code), i32::from(code)),
    })
}

/// `logs search` and `logs stats` in SQL: the records of `table` that `filter` keeps, oldest
/// first, each handed to `each` as compact JSON. Time, provider, key, client and model are
/// matched by the indexed columns; status and text (`--grep`, over the compact JSON) as over
/// files. Keys come out in PostgreSQL's jsonb order, not the order the file sink writes.
pub async fn scan_sql(
    url: &str,
    audit: bool,
    filter: &crate::search::Filter,
    mut each: impl FnMut(&[u8]),
) -> Result<crate::search::ScanSummary, String> {
    use futures_util::TryStreamExt;
    let options = PostgresOptions {
        pool_size: 1,
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(600),
        ..PostgresOptions::default()
    };
    let pool = lazy_pool(url, &options).map_err(|e| e.to_string())?;
    let ts = |at: Option<SystemTime>| at.map(crate::record::timestamp);
    let sql = if audit {
        "SELECT record::text FROM truckllm_audit_log WHERE ($1::timestamptz IS NULL OR ts >= $1::timestamptz) \
         AND ($2::timestamptz IS NULL OR ts < $2::timestamptz) \
         ORDER BY ts"
    } else {
        "SELECT record::text FROM truckllm_request_log WHERE ($1::timestamptz IS NULL OR ts >= $1::timestamptz) \
         AND ($2::timestamptz IS NULL OR ts < $2::timestamptz) AND ($3::text IS NULL OR provider = $3) \
         AND ($4::text IS NULL OR key = $4) AND ($5::text IS NULL OR client = $5) \
         AND ($6::text IS NULL OR model = $6) \
         AND ($7::integer IS NULL OR (status >= $7 AND status <= $8)) ORDER BY ts"
    };
    let statuses = status_range(filter.status);
    let mut rows = sqlx::query_scalar::<_, String>(sql)
        .bind(ts(filter.since))
        .bind(ts(filter.until))
        .bind(filter.provider.as_deref())
        .bind(filter.key.as_deref())
        .bind(filter.client.as_deref())
        .bind(filter.model.as_deref())
        .bind(statuses.map(|r| r.0))
        .bind(statuses.map(|r| r.1))
        .fetch(&pool);
    let mut summary = crate::search::ScanSummary::default();
    while let Some(text) = rows.try_next().await.map_err(|e| e.to_string())? {
        summary.lines += 1;
        // PostgreSQL prints jsonb with spaces; records go out compact, as the file sink has them.
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
            summary.malformed += 1;
            continue;
        };
        let status = record.get("status").and_then(serde_json::Value::as_u64);
        let keep = filter.status.is_none_or(|want| {
            status
                .and_then(|s| u16::try_from(s).ok())
                .is_some_and(|s| want.matches(s))
        });
        let line = record.to_string();
        if keep
            && filter
                .grep
                .as_deref()
                .is_none_or(|text| line.contains(text))
        {
            summary.matched += 1;
            each(line.as_bytes());
        }
    }
    Ok(summary)
}
