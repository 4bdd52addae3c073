//! `GET /admin/storage`: the runtime store as this instance sees it: backend, health (a probe
//! made for the call), degraded or not and since when, time spent degraded, and the last
//! replay after an outage.
//!
//! The resilient wrapper announces its state changes as [`StorageEvent`]s; [`StorageWatch`]
//! follows them (the binary hands it the stack's events). The wrapper's journal is not
//! reachable through the store stack's `dyn RuntimeStore`, so its length is not reported:
//! while degraded, `truckllm_storage_degraded` and the replay counters on `/metrics` tell the
//! same story.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use truckllm_config::governance::{format_time_ms, now_ms};
use truckllm_store::StorageEvent;

use super::Call;
use crate::auth::AdminCaller;
use crate::state::Gateway;

/// Longest the health probe of one call may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last replay after an outage.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Replay {
    at_ms: u64,
    outage_seconds: f64,
    replayed_increments: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Watched {
    /// Unix ms the current outage began; `None` while the backend answers.
    degraded_since_ms: Option<u64>,
    reason: Option<String>,
    /// Seconds degraded in outages that have ended.
    degraded_secs: f64,
    outages: u64,
    last_replay: Option<Replay>,
}

/// This instance's view of the resilient wrapper's state changes.
#[derive(Debug, Default)]
pub struct StorageWatch {
    watched: Mutex<Watched>,
    /// Whether a resilient wrapper's events are followed (not for the in-memory store).
    tracked: AtomicBool,
}

impl StorageWatch {
    /// Follows `events` until the sender goes away.
    pub fn track(self: &Arc<Self>, mut events: tokio::sync::broadcast::Receiver<StorageEvent>) {
        self.tracked.store(true, Ordering::SeqCst);
        let watch = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(watch) = watch.upgrade() else {
                    return;
                };
                watch.apply(&event, now_ms());
            }
        });
    }

    fn apply(&self, event: &StorageEvent, now_ms: u64) {
        let mut w = self.lock();
        match event {
            StorageEvent::Degraded { reason, .. } => {
                if w.degraded_since_ms.is_none() {
                    w.degraded_since_ms = Some(now_ms);
                    w.outages += 1;
                }
                w.reason = Some(reason.clone());
            }
            StorageEvent::Recovered {
                outage_seconds,
                replayed_increments,
                ..
            } => {
                w.degraded_since_ms = None;
                w.reason = None;
                w.degraded_secs += outage_seconds;
                w.last_replay = Some(Replay {
                    at_ms: now_ms,
                    outage_seconds: *outage_seconds,
                    replayed_increments: *replayed_increments,
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state as JSON at `now_ms`.
    fn view(&self, now_ms: u64) -> Value {
        let w = self.lock().clone();
        let current = w
            .degraded_since_ms
            .map_or(0.0, |since| now_ms.saturating_sub(since) as f64 / 1000.0);
        json!({
            "tracked": self.tracked.load(Ordering::SeqCst),
            "degraded": w.degraded_since_ms.is_some(),
            "degraded_since": w.degraded_since_ms.map(format_time_ms),
            "degraded_reason": w.reason,
            "degraded_seconds_total": w.degraded_secs + current,
            "outages": w.outages,
            "last_replay": w.last_replay.map(|r| json!({
                "at": format_time_ms(r.at_ms),
                "outage_seconds": r.outage_seconds,
                "replayed_increments": r.replayed_increments,
            })),
        })
    }
}

/// `GET /admin/storage`.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "storage.show",
        target: "storage".into(),
    };
    let started = Instant::now();
    let health = match tokio::time::timeout(PROBE_TIMEOUT, gw.store.health()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    let probe_ms = started.elapsed().as_secs_f64() * 1000.0;
    let connections = gw.store.connection_stats();
    let running = gw.live().current();
    let runtime = &running.resolved.storage.runtime;
    let mut body = gw.ui.storage.view(now_ms());
    if let Value::Object(map) = &mut body {
        map.insert("backend".into(), gw.store.backend().into());
        map.insert("stack".into(), gw.store.to_string().into());
        map.insert("healthy".into(), health.is_ok().into());
        map.insert("health_error".into(), health.err().into());
        map.insert("probe_ms".into(), probe_ms.into());
        map.insert(
            "connections".into(),
            json!({"active": connections.active, "idle": connections.idle}),
        );
        map.insert("journal_length".into(), Value::Null);
        map.insert(
            "rollups".into(),
            json!({"step_secs": runtime.rollup_step_secs, "keep_secs": runtime.rollup_keep_secs}),
        );
        #[cfg(feature = "postgres")]
        let history = gw.history().is_some();
        #[cfg(not(feature = "postgres"))]
        let history = false;
        map.insert("history".into(), history.into());
    }
    call.read(Ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_timed_and_the_last_replay_kept() {
        let watch = StorageWatch::default();
        let degraded = StorageEvent::Degraded {
            backend: "redis",
            operation: "reserve".into(),
            reason: "connection refused".into(),
        };
        watch.apply(&degraded, 10_000);
        watch.apply(&degraded, 11_000);
        let view = watch.view(13_000);
        assert_eq!(view["degraded"], true);
        assert_eq!(view["degraded_seconds_total"], 3.0);
        assert_eq!(view["outages"], 1, "one outage, however many failures");
        assert_eq!(view["degraded_reason"], "connection refused");
        watch.apply(
            &StorageEvent::Recovered {
                backend: "redis",
                outage_seconds: 4.0,
                replayed_increments: 7,
            },
            14_000,
        );
        let view = watch.view(20_000);
        assert_eq!(view["degraded"], false);
        assert_eq!(view["degraded_seconds_total"], 4.0);
        assert_eq!(view["last_replay"]["replayed_increments"], 7);
    }
}
