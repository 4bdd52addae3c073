//! `GET /admin/requests`: the request log, filtered as `truckllm logs search` filters it
//! (`since`, `until`, `provider`, `key`, `client`, `model`, `status`, `grep`), newest first,
//! each record whole. Reads the running config's first file sink (rotated files included) with
//! `truckllm_logging::search`, else its PostgreSQL sink in SQL; with neither, the answer says
//! the log is not searchable here (`available: false`) rather than failing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use truckllm_config::schema::LogSinkConfig;
use truckllm_logging::search::{self, Filter};

use super::Call;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::Gateway;

/// Records answered by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Where the running config's request log can be searched.
pub enum LogSource {
    Files(PathBuf),
    Sql(String),
}

/// The running config's request log: its first file sink, else its PostgreSQL sink.
pub fn log_source(sinks: &[LogSinkConfig]) -> Option<LogSource> {
    let file = sinks.iter().find_map(|s| match s {
        LogSinkConfig::File(f) => Some(LogSource::Files(PathBuf::from(&f.path))),
        _ => None,
    });
    file.or_else(|| {
        sinks.iter().find_map(|s| match s {
            LogSinkConfig::Postgres(p) => Some(LogSource::Sql(p.url.clone())),
            _ => None,
        })
    })
}

/// Calls `each` with every matching record's raw JSON, oldest first.
pub async fn scan(
    source: &LogSource,
    filter: Filter,
    each: impl FnMut(&[u8]) + Send + 'static,
) -> Result<(), ApiError> {
    let mut each = each;
    match source {
        #[cfg(feature = "postgres")]
        LogSource::Sql(url) => truckllm_logging::postgres::scan_sql(url, false, &filter, each)
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(error = %e, "request log search failed");
                ApiError::store_unavailable("the request log database is unavailable")
            }),
        #[cfg(not(feature = "postgres"))]
        LogSource::Sql(_) => Err(ApiError::store_unavailable(
            "the request log is in PostgreSQL, and this build has no PostgreSQL support",
        )),
        LogSource::Files(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let files = search::log_files(&path, filter.since)?;
                search::scan_requests(&files, &filter, |_, raw| each(raw)).map(|_| ())
            })
            .await
            .map_err(|e| ApiError::internal(format!("the log search stopped: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = %e, "request log search failed");
                ApiError::store_unavailable("the request log cannot be read")
            })
        }
    }
}

/// The query of a search; the names are `logs search`'s flags.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    since: Option<String>,
    until: Option<String>,
    provider: Option<String>,
    key: Option<String>,
    client: Option<String>,
    model: Option<String>,
    status: Option<String>,
    grep: Option<String>,
    limit: Option<usize>,
}

/// How far back a search without `since` looks.
const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A time given as a duration ago (`15m`, `2h`) or an RFC 3339 time.
pub fn parse_time(name: &str, text: &str, now: SystemTime) -> Result<SystemTime, ApiError> {
    humantime::parse_duration(text)
        .ok()
        .and_then(|ago| now.checked_sub(ago))
        .or_else(|| humantime::parse_rfc3339_weak(text).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be a duration ago (15m, 2h) or a time (2026-11-01T00:00:00Z)"),
            )
        })
}

fn filter_of(query: &SearchQuery, now: SystemTime) -> Result<Filter, ApiError> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let time = |name, v: &Option<String>| given(v).map(|t| parse_time(name, &t, now)).transpose();
    let status = given(&query.status)
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: String| ApiError::bad_request("invalid_query", format!("status: {e}")))?;
    // Without `since`, the last day: a search is never a scan of every log kept.
    let since = time("since", &query.since)?.or_else(|| now.checked_sub(DEFAULT_WINDOW));
    Ok(Filter {
        since,
        until: time("until", &query.until)?,
        provider: given(&query.provider),
        key: given(&query.key),
        client: given(&query.client),
        model: given(&query.model),
        status,
        grep: given(&query.grep),
    })
}

/// `GET /admin/requests`.
pub async fn search_log(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "requests.search",
        target: "requests".into(),
    };
    let result = async {
        let Query(query) =
            query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
        let filter = filter_of(&query, SystemTime::now())?;
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let running = gw.live().current();
        let Some(source) = log_source(&running.resolved.storage.logging) else {
            return Ok(json!({
                "available": false,
                "reason": "no file or postgres sink under storage.logging: the request log is not searchable",
                "records": [],
            }));
        };
        let kept = Arc::new(std::sync::Mutex::new(VecDeque::with_capacity(limit)));
        let sink = Arc::clone(&kept);
        let matched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&matched);
        scan(&source, filter, move |raw| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(record) = serde_json::from_slice::<Value>(raw) else {
                return;
            };
            let mut kept = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(record);
        })
        .await?;
        let records: Vec<Value> = kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .rev()
            .collect();
        Ok(json!({
            "available": true,
            "matched": matched.load(std::sync::atomic::Ordering::Relaxed),
            "records": records,
        }))
    }
    .await;
    call.read(result)
}

/// Latency percentiles and per-client and per-model sums of the request log since `since`,
/// for the overview; `None` when the log is not searchable here.
pub async fn stats_since(
    sinks: &[LogSinkConfig],
    since: SystemTime,
) -> Option<Result<LogStats, ApiError>> {
    let source = log_source(sinks)?;
    let filter = Filter {
        since: Some(since),
        ..Filter::default()
    };
    let stats = Arc::new(std::sync::Mutex::new(LogStats::default()));
    let sink = Arc::clone(&stats);
    let scanned = scan(&source, filter, move |raw| {
        if let Ok(record) = serde_json::from_slice::<search::RequestView<'_>>(raw) {
            let mut stats = sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stats.add(&record);
        }
    })
    .await;
    Some(scanned.map(|()| {
        let mut stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        stats.finish();
        stats
    }))
}

/// What the overview takes from the request log.
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    pub all: search::Stats,
    pub by_client: search::Stats,
    pub by_model: search::Stats,
}

impl LogStats {
    fn add(&mut self, record: &search::RequestView<'_>) {
        // Latency over the requests that reached a provider (refusals take microseconds), in
        // one group: grouping by a constant is grouping by nothing.
        if record.provider.is_some() {
            let mut whole = record.clone();
            whole.provider = Some("all".into());
            self.all.add(search::GroupBy::Provider, &whole);
        }
        self.by_client.add(search::GroupBy::Client, record);
        self.by_model.add(search::GroupBy::Model, record);
    }

    fn finish(&mut self) {
        self.all.finish();
        self.by_client.finish();
        self.by_model.finish();
    }
}
