//! `GET /admin/usage/summary?range=15m|1h|24h|7d|30d`: requests, tokens, cost, errors and
//! latency over a range, in total, per provider, per provider key, per client and per team,
//! and per step for a chart: the overview's figures.
//!
//! Where they come from, said in the answer's `source`:
//! - `rollups`: the runtime store's per-step roll-ups (`storage.runtime.rollup_step_secs`,
//!   kept `rollup_keep_secs`, an hour by default) when the range fits in what they keep;
//! - `history`: the PostgreSQL usage history (`storage.history`) for longer ranges;
//! - neither: `available: false` and the reason, never a figure made up from less data.
//!
//! Steps are whole: a range covers the steps that began within it, so its start is exact to
//! one step. Latency percentiles (of the requests that reached a provider; refusals are left
//! out), and sums per model, come from the request log when a file
//! or PostgreSQL sink is configured and the range is at most a day (roll-ups keep latency sums,
//! not distributions).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use truckllm_store::Metric;
#[cfg(feature = "postgres")]
use truckllm_store::postgres::history::{HistoryGroup, HistoryStep};

use super::Call;
use super::requests::{LogStats, stats_since};
use crate::auth::AdminCaller;
use crate::dispatch::{CLIENTS_NAMESPACE, TEAMS_NAMESPACE};
use crate::error::ApiError;
use crate::state::Gateway;

/// Longest range accepted.
const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);
/// Longest range whose latency percentiles are read from the request log.
const MAX_LOG_RANGE: Duration = Duration::from_secs(86_400);
/// The metrics summed, as named in the answer.
const SUMMED: [Metric; 7] = [
    Metric::Req,
    Metric::Tokens,
    Metric::PromptTokens,
    Metric::CompletionTokens,
    Metric::Errors,
    Metric::Latency,
    Metric::Cost,
];

/// Sums of the [`SUMMED`] metrics, by metric name.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sums(BTreeMap<&'static str, f64>);

impl Sums {
    fn add(&mut self, metric: &str, value: f64) {
        if let Some(m) = SUMMED.iter().find(|m| m.as_str() == metric) {
            *self.0.entry(m.as_str()).or_default() += value;
        }
    }

    fn get(&self, metric: Metric) -> f64 {
        self.0.get(metric.as_str()).copied().unwrap_or(0.0)
    }

    fn view(&self) -> Value {
        let (req, errors) = (self.get(Metric::Req), self.get(Metric::Errors));
        let rate = |x: f64| if req > 0.0 { x / req } else { 0.0 };
        json!({
            "requests": req,
            "tokens": self.get(Metric::Tokens),
            "prompt_tokens": self.get(Metric::PromptTokens),
            "completion_tokens": self.get(Metric::CompletionTokens),
            "errors": errors,
            "error_rate": rate(errors),
            "mean_latency_ms": rate(self.get(Metric::Latency)),
            "cost": self.get(Metric::Cost),
        })
    }
}

/// Everything summed for one range.
#[derive(Debug, Default)]
struct Summary {
    total: Sums,
    by_provider: BTreeMap<String, Sums>,
    by_key: BTreeMap<String, Sums>,
    by_client: BTreeMap<String, Sums>,
    by_team: BTreeMap<String, Sums>,
    /// Provider traffic per step start (Unix ms).
    steps: BTreeMap<u64, Sums>,
}

impl Summary {
    /// Adds one value of one provider key's (or namespace's) series.
    fn add(&mut self, provider: &str, key: &str, metric: &str, start_ms: u64, value: f64) {
        match provider {
            CLIENTS_NAMESPACE => self
                .by_client
                .entry(key.into())
                .or_default()
                .add(metric, value),
            TEAMS_NAMESPACE => self
                .by_team
                .entry(key.into())
                .or_default()
                .add(metric, value),
            // Other namespaces (budgets, ...) are not traffic.
            p if p.starts_with('_') => {}
            p => {
                self.total.add(metric, value);
                self.by_provider
                    .entry(p.into())
                    .or_default()
                    .add(metric, value);
                self.by_key
                    .entry(format!("{p}/{key}"))
                    .or_default()
                    .add(metric, value);
                self.steps.entry(start_ms).or_default().add(metric, value);
            }
        }
    }

    fn view(&self) -> Map<String, Value> {
        let grouped = |groups: &BTreeMap<String, Sums>| -> Vec<Value> {
            groups
                .iter()
                .map(|(name, sums)| {
                    let mut v = sums.view();
                    v["name"] = name.clone().into();
                    v
                })
                .collect()
        };
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(start, sums)| {
                json!({"start_ms": start, "requests": sums.get(Metric::Req), "tokens": sums.get(Metric::Tokens), "cost": sums.get(Metric::Cost), "errors": sums.get(Metric::Errors)})
            })
            .collect();
        let mut map = Map::new();
        map.insert("total".into(), self.total.view());
        map.insert("by_provider".into(), grouped(&self.by_provider).into());
        map.insert("by_key".into(), grouped(&self.by_key).into());
        map.insert("by_client".into(), grouped(&self.by_client).into());
        map.insert("by_team".into(), grouped(&self.by_team).into());
        map.insert("steps".into(), steps.into());
        map
    }
}

#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    range: Option<String>,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn parse_range(query: &SummaryQuery) -> Result<(String, Duration), ApiError> {
    let text = query.range.as_deref().unwrap_or("1h").trim().to_owned();
    match humantime::parse_duration(&text) {
        Ok(range) if !range.is_zero() && range <= MAX_RANGE => Ok((text, range)),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "range must be a duration of at most 400 days (15m, 1h, 24h, 7d, 30d)",
        )),
    }
}

/// From the runtime store's roll-ups.
async fn from_rollups(gw: &Gateway, since_ms: u64) -> Result<Summary, ApiError> {
    let rollups =
        gw.store.rollups("", since_ms).await.map_err(|e| {
            ApiError::store_unavailable(format!("cannot read the usage roll-ups: {e}"))
        })?;
    let mut summary = Summary::default();
    for rollup in rollups {
        let s = &rollup.series;
        let metric = s.metric().as_str();
        for point in rollup.points.iter().filter(|p| p.start_ms >= since_ms) {
            summary.add(
                s.provider(),
                s.key_id(),
                metric,
                point.start_ms,
                point.value,
            );
        }
    }
    Ok(summary)
}

/// Without PostgreSQL support in this build there is no usage history.
#[cfg(not(feature = "postgres"))]
async fn from_history(
    _gw: &Gateway,
    _range: Duration,
    _since_ms: u64,
) -> Option<Result<Summary, ApiError>> {
    None
}

/// From the PostgreSQL usage history, hourly for up to two days, daily beyond.
#[cfg(feature = "postgres")]
async fn from_history(
    gw: &Gateway,
    range: Duration,
    since_ms: u64,
) -> Option<Result<Summary, ApiError>> {
    let history = gw.history()?;
    let step = if range <= Duration::from_secs(2 * 86_400) {
        HistoryStep::Hour
    } else {
        HistoryStep::Day
    };
    let mut summary = Summary::default();
    for group in [HistoryGroup::Key, HistoryGroup::Client] {
        let rows = match history.read(group, step, since_ms).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "usage history read failed");
                return Some(Err(ApiError::store_unavailable(
                    "the usage history database is unavailable",
                )));
            }
        };
        for row in rows {
            let (provider, key) = match group {
                HistoryGroup::Client => (CLIENTS_NAMESPACE, row.group.as_str()),
                _ => row
                    .group
                    .split_once(':')
                    .unwrap_or((row.group.as_str(), "")),
            };
            summary.add(provider, key, &row.metric, row.start_ms, row.value);
        }
    }
    Some(Ok(summary))
}

fn log_view(stats: &LogStats) -> Value {
    let all = stats
        .all
        .groups
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    let grouped = |s: &truckllm_logging::search::Stats| -> Value {
        s.groups
            .iter()
            .map(|(name, g)| {
                json!({"name": name, "requests": g.requests, "errors": g.errors, "error_rate": g.error_rate,
                       "tokens": g.prompt_tokens + g.completion_tokens, "cost": g.cost,
                       "latency_p50_ms": g.latency_p50_ms, "latency_p95_ms": g.latency_p95_ms, "latency_p99_ms": g.latency_p99_ms})
            })
            .collect::<Vec<_>>()
            .into()
    };
    json!({
        "requests": all.requests,
        "latency_p50_ms": all.latency_p50_ms,
        "latency_p95_ms": all.latency_p95_ms,
        "latency_p99_ms": all.latency_p99_ms,
        "by_model": grouped(&stats.by_model),
        "by_client": grouped(&stats.by_client),
    })
}

/// `GET /admin/usage/summary`.
pub async fn summary(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    query: Result<Query<SummaryQuery>, QueryRejection>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "usage.summary",
        target: "usage".into(),
    };
    let result = async {
        let Query(query) =
            query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
        let (text, range) = parse_range(&query)?;
        let now = SystemTime::now();
        let since = now.checked_sub(range).unwrap_or(UNIX_EPOCH);
        let since_ms = unix_ms(since);
        let running = gw.live().current();
        let runtime = &running.resolved.storage.runtime;
        let keep = Duration::from_secs(runtime.rollup_keep_secs);
        let mut body = json!({
            "range": text,
            "since_ms": since_ms,
            "now_ms": unix_ms(now),
            "rollup_step_secs": runtime.rollup_step_secs,
            "rollup_keep_secs": runtime.rollup_keep_secs,
        });
        let summary = if !keep.is_zero() && range <= keep {
            body["source"] = "rollups".into();
            Some(from_rollups(&gw, since_ms).await?)
        } else if let Some(read) = from_history(&gw, range, since_ms).await {
            body["source"] = "history".into();
            Some(read?)
        } else {
            None
        };
        match summary {
            Some(summary) => {
                body["available"] = true.into();
                for (k, v) in summary.view() {
                    body[k] = v;
                }
            }
            None => {
                body["available"] = false.into();
                body["reason"] = format!(
                    "the roll-ups keep the last {}; longer ranges need the usage history (storage.history, PostgreSQL)",
                    humantime::format_duration(keep)
                )
                .into();
            }
        }
        body["log"] = if range <= MAX_LOG_RANGE {
            match stats_since(&running.resolved.storage.logging, since).await {
                Some(Ok(stats)) => log_view(&stats),
                Some(Err(e)) => json!({"unavailable": e.message}),
                None => json!({"unavailable": "no file or postgres sink under storage.logging"}),
            }
        } else {
            json!({"unavailable": "latency percentiles are read from the request log for ranges of at most 24h"})
        };
        Ok(body)
    }
    .await;
    call.read(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_kept_apart_from_provider_traffic() {
        let mut s = Summary::default();
        s.add("mock", "k1", "req", 0, 2.0);
        s.add("mock", "k2", "req", 60_000, 1.0);
        s.add("mock", "k2", "errors", 60_000, 1.0);
        s.add("mock", "k2", "cooldown", 60_000, 99.0);
        s.add(CLIENTS_NAMESPACE, "alice", "req", 0, 3.0);
        s.add(TEAMS_NAMESPACE, "red", "req", 0, 3.0);
        s.add("_budget", "x", "req", 0, 50.0);
        let view = s.view();
        assert_eq!(view["total"]["requests"], 3.0);
        assert_eq!(view["total"]["error_rate"], 1.0 / 3.0);
        assert_eq!(view["by_key"][1]["name"], "mock/k2");
        assert_eq!(view["by_client"][0]["requests"], 3.0);
        assert_eq!(view["by_team"][0]["name"], "red");
        assert_eq!(view["steps"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn ranges_are_durations_within_bounds() {
        let q = |r: &str| SummaryQuery {
            range: Some(r.into()),
        };
        assert_eq!(
            parse_range(&q("15m")).expect("ok").1,
            Duration::from_secs(900)
        );
        assert!(parse_range(&q("0s")).is_err());
        assert!(parse_range(&q("999d")).is_err());
        assert!(parse_range(&q("soon")).is_err());
    }
}
