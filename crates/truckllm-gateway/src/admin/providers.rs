//! `GET /admin/providers`: every provider key's live state: its usage in the last 60 seconds
//! across every instance sharing the store (the window the limits and the balancer use)
//! against its limits, its shared cooldown, and what this instance alone sees of it (its own
//! cooldown, latency EWMA). One batched store read for all keys, as the usage snapshot does.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};
use truckllm_config::governance::format_time_ms;
use truckllm_store::{Metric, Series};

use super::Call;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::routing::Routes;
use crate::snapshot::WINDOW;
use crate::state::Gateway;

/// The windowed metrics read per key, in the order of the answer's fields.
const WINDOWED: [Metric; 5] = [
    Metric::Req,
    Metric::Tokens,
    Metric::Errors,
    Metric::Latency,
    Metric::Cost,
];

/// `GET /admin/providers`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "providers.list",
        target: "providers".into(),
    };
    let runtime = gw.runtime();
    let result = read(&gw, &runtime.routes).await;
    call.read(result)
}

async fn read(gw: &Gateway, routes: &Routes) -> Result<Value, ApiError> {
    let keys: Vec<(usize, usize)> = routes
        .providers
        .iter()
        .enumerate()
        .flat_map(|(p, provider)| (0..provider.keys.len()).map(move |k| (p, k)))
        .collect();
    let key = |p: usize, k: usize| &routes.providers[p].keys[k];
    let windowed: Vec<Series> = keys
        .iter()
        .flat_map(|&(p, k)| WINDOWED.map(|m| key(p, k).store_key.series(m)))
        .collect();
    let cooldowns: Vec<Series> = keys
        .iter()
        .map(|&(p, k)| key(p, k).store_key.series(Metric::Cooldown))
        .collect();
    let store = gw.store.as_ref();
    let (windows, cooldown_secs) = futures_util::try_join!(
        store.window_many(&windowed, WINDOW),
        store.get_many(&cooldowns)
    )
    .map_err(|e| ApiError::store_unavailable(format!("cannot read the usage windows: {e}")))?;
    let now = gw.now_ms();
    let mut providers: Vec<Value> = routes
        .providers
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "models": p.models,
                "pricing": {"input_per_1m": p.pricing.input_per_1m, "output_per_1m": p.pricing.output_per_1m},
                "keys": [],
            })
        })
        .collect();
    for (i, &(p, k)) in keys.iter().enumerate() {
        // A store answering fewer values than asked is a broken store, not a reason to panic.
        let Some(w) = windows.get(i * WINDOWED.len()..(i + 1) * WINDOWED.len()) else {
            break;
        };
        let entry = key(p, k);
        let cooldown = cooldown_secs.get(i).copied().unwrap_or(0.0);
        let shared_until_ms = (cooldown.max(0.0) * 1000.0) as u64;
        let health = &entry.state.health;
        let view = json!({
            "id": entry.id,
            "limits": {
                "req_per_min": entry.limits.req_per_min,
                "tokens_per_min": entry.limits.tokens_per_min,
            },
            "window_secs": WINDOW.as_secs(),
            "window": {
                "req": w[0],
                "tokens": w[1],
                "errors": w[2],
                "error_rate": if w[0] > 0.0 { w[2] / w[0] } else { 0.0 },
                "mean_latency_ms": if w[0] > 0.0 { w[3] / w[0] } else { 0.0 },
                "cost": w[4],
            },
            "cooldown": {
                "shared_until": (shared_until_ms > now).then(|| format_time_ms(shared_until_ms)),
                "this_instance": health.cooling_down(now),
            },
            "this_instance": {"ewma_latency_ms": health.ewma_latency_ms()},
        });
        if let Some(list) = providers[p]["keys"].as_array_mut() {
            list.push(view);
        }
    }
    Ok(json!({ "providers": providers }))
}
