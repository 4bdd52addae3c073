//! `budget_status` in the admin API's views of keys and teams: what each budget has spent in
//! its current period, what is left, and when it resets, read from the runtime store.

use futures_util::StreamExt;
use serde_json::{Value, json};
use truckllm_config::schema::BudgetConfig;

use crate::budgets::{self, Budget, Owner, rfc3339};
use crate::state::Gateway;

/// Budgets read at once when listing many keys.
const CONCURRENT_READS: usize = 16;

/// Adds `budget_status` to each view whose entry has a budget (`budgets[i]` for `views[i]`,
/// named `ids[i]`). A store that cannot answer leaves `budget_status_error` instead.
pub async fn add(
    gw: &Gateway,
    owner: Owner,
    namespace: &str,
    views: &mut [Value],
    entries: Vec<(String, Option<BudgetConfig>)>,
) {
    let reads = futures_util::stream::iter(entries.into_iter().enumerate())
        .map(|(i, (id, config))| async move {
            let budget = config.and_then(|c| Budget::from_config(owner, namespace, &id, &c))?;
            Some((i, status(gw, &budget).await))
        })
        .buffered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await;
    for (i, answer) in reads.into_iter().flatten() {
        if let Some(Value::Object(map)) = views.get_mut(i) {
            match answer {
                Ok(status) => map.insert("budget_status".into(), status),
                Err(e) => map.insert("budget_status_error".into(), e.into()),
            };
        }
    }
}

async fn status(gw: &Gateway, budget: &Budget) -> Result<Value, String> {
    let standing = budgets::standing(gw, budget)
        .await
        .map_err(|e| format!("the usage store cannot say: {e}"))?;
    Ok(json!({
        "spent": standing.used,
        "limit": standing.limit,
        "remaining": standing.remaining(),
        "unit": if budget.metric == truckllm_store::Metric::Cost { "cost" } else { "tokens" },
        "period": budget.period,
        "reset": budget.reset,
        "resets_at": standing.resets_at_ms.map(rfc3339),
    }))
}
