//! The PostgreSQL side of `GET /admin/usage/history` (cargo feature `postgres`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use truckllm_store::postgres::history::{HistoryGroup, HistoryStep};

use super::super::Call;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::Gateway;

/// Longest span one call may ask for (the longest `keep_days` accepted).
const MAX_SINCE: Duration = Duration::from_secs(3660 * 86_400);

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    by: Option<String>,
    since: Option<String>,
    step: Option<String>,
}

/// The query's grouping, step and start (Unix ms), or a 400 naming the bad parameter.
fn parse(
    query: &HistoryQuery,
    now: SystemTime,
) -> Result<(HistoryGroup, HistoryStep, u64), ApiError> {
    let invalid =
        |e: truckllm_store::StoreError| ApiError::bad_request("invalid_query", e.to_string());
    let by: HistoryGroup = query
        .by
        .as_deref()
        .unwrap_or("provider")
        .parse()
        .map_err(invalid)?;
    let step: HistoryStep = query
        .step
        .as_deref()
        .unwrap_or("day")
        .parse()
        .map_err(invalid)?;
    let since = query.since.as_deref().unwrap_or("30d");
    let start = match humantime::parse_duration(since) {
        Ok(ago) if ago <= MAX_SINCE => now.checked_sub(ago),
        Ok(_) => None,
        Err(_) => humantime::parse_rfc3339_weak(since).ok(),
    }
    .ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            "since must be a duration of at most 3660 days (30d, 12h) or a time (2026-11-01T00:00:00Z)",
        )
    })?;
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok((by, step, start_ms))
}

/// `GET /admin/usage/history`.
pub async fn history(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "usage.history",
        target: "usage".to_owned(),
    };
    let parsed = query
        .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
        .and_then(|Query(q)| parse(&q, SystemTime::now()));
    let (by, step, since_ms) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return call.refuse(e),
    };
    let Some(writer) = gw.history() else {
        return call.refuse(ApiError::not_found(
            "the usage history is not configured (storage.history)",
        ));
    };
    let rows = match writer.read(by, step, since_ms).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "usage history read failed");
            return call.refuse(ApiError::upstream(
                StatusCode::SERVICE_UNAVAILABLE,
                "the usage history database is unavailable",
            ));
        }
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"start_ms": r.start_ms, "group": r.group, "metric": r.metric, "value": r.value}))
        .collect();
    call.read(Ok(
        json!({"by": by.as_str(), "step": step.as_str(), "since_ms": since_ms, "rows": rows}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(by: &str, since: &str, step: &str) -> HistoryQuery {
        HistoryQuery {
            by: Some(by.into()),
            since: Some(since.into()),
            step: Some(step.into()),
        }
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let now = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let ok = parse(&q("client", "2d", "hour"), now).expect("valid");
        assert_eq!(
            ok,
            (HistoryGroup::Client, HistoryStep::Hour, 98 * 86_400_000)
        );
        let team = parse(&q("team", "1d", "day"), now).expect("by team");
        assert_eq!(team.0, HistoryGroup::Team);
        let model = parse(&q("model", "1d", "day"), now).expect("by model");
        assert_eq!(model.0, HistoryGroup::Model);
        for (query, word) in [
            (q("region", "1d", "day"), "grouping"),
            (q("key", "1d", "week"), "step"),
            (q("key", "yesterday", "day"), "since"),
            (q("key", "9999d", "day"), "since"),
        ] {
            let err = parse(&query, now).expect_err("refused");
            assert!(format!("{err:?}").contains(word), "{query:?}: {err:?}");
        }
    }
}
