//! What a client key has left, told on every answer: OpenAI's rate-limit headers for the
//! key's minute limits (`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
//! `x-ratelimit-reset-requests` and the `-tokens` ones) and `x-truckllm-budget-remaining`:
//! what is left of the tightest of its budgets (its own, its team's; the one with the least
//! left as a share of its limit), in that budget's unit, named by `x-truckllm-budget-unit`
//! (`cost` or `tokens`).
//!
//! The figures are read from the store once the request's reservation is made, on a task that
//! runs while the provider answers, so they count this request and cost the answer no wait.
//! With quota leasing an instance's unused lease counts as used until its bucket ends, so
//! `remaining` may read a little low, never high. A header whose figure the store could not
//! give is left out rather than guessed; a key without limits or budgets gets none.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::task::JoinHandle;
use truckllm_store::{Metric, ProviderKey};

use crate::budgets;
use crate::clients::Client;
use crate::dispatch::CLIENTS_NAMESPACE;
use crate::state::Gateway;

/// The window the minute limits count over.
const MINUTE: Duration = Duration::from_secs(60);

/// One minute limit and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Headroom {
    limit: f64,
    used: f64,
}

/// A client key's figures, as read for one answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStatus {
    requests: Option<Headroom>,
    tokens: Option<Headroom>,
    /// The budget with the least left, as a share of its limit.
    budget: Option<BudgetLeft>,
}

/// What one budget has left.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BudgetLeft {
    remaining: f64,
    share: f64,
    unit: &'static str,
}

/// Starts reading `client`'s figures; `None` when it has no limits and no budgets.
pub fn read_later(gw: &Arc<Gateway>, client: &Arc<Client>) -> Option<JoinHandle<ClientStatus>> {
    let limits = client
        .limits
        .filter(|l| l.req_per_min.is_some() || l.tokens_per_min.is_some());
    if limits.is_none() && !client.has_budget() {
        return None;
    }
    let gw = Arc::clone(gw);
    let client = Arc::clone(client);
    Some(tokio::spawn(async move { read(&gw, &client).await }))
}

async fn read(gw: &Gateway, client: &Client) -> ClientStatus {
    let mut status = ClientStatus::default();
    if let Some(limits) = client.limits {
        let used = match ProviderKey::new(CLIENTS_NAMESPACE, client.id.clone()) {
            Ok(key) => gw
                .store
                .window_many(
                    &[key.series(Metric::Req), key.series(Metric::Tokens)],
                    MINUTE,
                )
                .await
                .ok(),
            Err(_) => None,
        };
        if let Some([requests, tokens]) = used.as_deref() {
            status.requests = limits.req_per_min.map(|limit| Headroom {
                limit,
                used: *requests,
            });
            status.tokens = limits.tokens_per_min.map(|limit| Headroom {
                limit,
                used: *tokens,
            });
        }
    }
    for budget in client.budgets() {
        let Ok(standing) = budgets::standing(gw, budget).await else {
            continue;
        };
        budgets::alert_on(gw, budget, &standing).await;
        let left = BudgetLeft {
            remaining: standing.remaining(),
            share: standing.remaining() / standing.limit,
            unit: if budget.metric == Metric::Cost {
                "cost"
            } else {
                "tokens"
            },
        };
        if status.budget.is_none_or(|b| left.share < b.share) {
            status.budget = Some(left);
        }
    }
    status
}

impl ClientStatus {
    /// Adds the headers this status has figures for.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (what, headroom) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(h) = headroom else { continue };
            let remaining = (h.limit - h.used).max(0.0);
            let reset = if h.used > 0.0 { "60s" } else { "0s" };
            insert(
                headers,
                &format!("x-ratelimit-limit-{what}"),
                &whole(h.limit),
            );
            insert(
                headers,
                &format!("x-ratelimit-remaining-{what}"),
                &whole(remaining),
            );
            insert(headers, &format!("x-ratelimit-reset-{what}"), reset);
        }
        if let Some(left) = self.budget {
            let remaining = format!("{:.6}", left.remaining);
            insert(headers, "x-truckllm-budget-remaining", &remaining);
            insert(headers, "x-truckllm-budget-unit", left.unit);
        }
    }
}

/// A count as a whole number (rounded down: never more than is left).
fn whole(value: f64) -> String {
    format!("{}", value.floor().max(0.0) as u64)
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_say_the_limits_and_what_is_left_never_below_zero() {
        let status = ClientStatus {
            requests: Some(Headroom {
                limit: 10.0,
                used: 3.0,
            }),
            tokens: Some(Headroom {
                limit: 1000.0,
                used: 1500.5,
            }),
            budget: Some(BudgetLeft {
                remaining: 0.25,
                share: 0.5,
                unit: "cost",
            }),
        };
        let mut headers = HeaderMap::new();
        status.apply(&mut headers);
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("10"));
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("7"));
        assert_eq!(get("x-ratelimit-reset-requests").as_deref(), Some("60s"));
        assert_eq!(get("x-ratelimit-remaining-tokens").as_deref(), Some("0"));
        assert_eq!(
            get("x-truckllm-budget-remaining").as_deref(),
            Some("0.250000")
        );
    }

    #[test]
    fn figures_not_read_are_left_out() {
        let mut headers = HeaderMap::new();
        ClientStatus::default().apply(&mut headers);
        assert!(headers.is_empty());
    }
}
