//! The protocol-free attempt loop: resolve the model to targets the client may use, reserve the
//! client's limits, then for each target and each of its keys in the balancer's order reserve
//! the key's limits (one store call), call the provider, and act on the provider's
//! [`Verdict`]: answer, or retry on the next key or target within the attempt and time budget.
//! It never looks at a wire format: the ingress hands it a [`CallPlan`] that builds each
//! target's body, and renders the [`Answer`] it gets back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::task::JoinHandle;
use truckllm_store::{ProviderKey, ReserveOutcome, ReserveRequest, RuntimeStoreExt};

use crate::attempt::{Attempt, ClientHold, UsageLabels, release_client, settle_client_only};
use crate::budgets::{self, WorstCase};
use crate::client_status::{self, ClientStatus};
use crate::clients::Client;
use crate::error::ApiError;
use crate::leases::{self, Ask};
use crate::providers::{Operation, Protocol, Verdict};
use crate::routing::Target;
use crate::state::{Gateway, Runtime};
use crate::trace::Trace;
use crate::upstream::UpstreamResponse;

/// Provider id under which per-client limits are counted in the store.
pub const CLIENTS_NAMESPACE: &str = "_clients";

/// Provider id under which per-team limits (all the team's keys together) are counted.
pub const TEAMS_NAMESPACE: &str = "_teams";

/// What the loop needs of a request, whatever its dialect.
pub trait CallPlan: Send {
    /// The model name as the client asked for it.
    fn model(&self) -> &str;
    fn operation(&self) -> Operation;
    /// Tokens to reserve before the answer says how many were used.
    fn estimate(&self) -> f64;
    /// The prompt's size in tokens, roughly; asked only when a budget needs a worst case.
    fn prompt_estimate(&self) -> f64;
    /// Whether the answer is to be streamed.
    fn streams(&self) -> bool;
    /// The client's headers (some are forwarded, such as Anthropic's betas).
    fn client_headers(&self) -> &HeaderMap;
    /// The body to send `model` on a provider speaking `protocol`'s dialect.
    fn body_for(&mut self, protocol: &dyn Protocol, model: &str) -> Result<Bytes, ApiError>;
    /// The one (provider id, key id) this request may go to, if it is bound to one (a
    /// follow-up of a natively stored Responses conversation).
    fn pinned_key(&self) -> Option<(&str, &str)> {
        None
    }
}

/// A provider's answer to hand back: a success, or the provider's refusal of the request
/// itself (`client_error`), with the attempt to settle once the body is read.
pub struct Answer {
    pub response: UpstreamResponse,
    pub attempt: Attempt,
    pub client_error: bool,
    /// The client key's figures for the answer's headers, being read (see
    /// [`crate::client_status`]).
    pub status: Option<JoinHandle<ClientStatus>>,
}

/// Runs the attempt loop for `plan` on behalf of `client`.
pub async fn dispatch(
    gw: Arc<Gateway>,
    rt: Arc<Runtime>,
    client: &Arc<Client>,
    plan: &mut dyn CallPlan,
    trace: &mut Trace,
) -> Result<Answer, ApiError> {
    let targets = rt.routes.resolve(plan.model(), client)?;
    let labels = Arc::new(UsageLabels::of(&gw, &rt.routes, client, plan.model()));
    let answered = hold_and_attempt(&gw, rt, client, &targets, plan, trace, &labels).await;
    // A request no provider answered counts once: a 5xx came after the model was resolved,
    // and any other error after an attempt went out (every key rate limited upstream, a
    // later target that cannot take the request). Refusals before any attempt (limits,
    // budgets) are not usage.
    if let Err(e) = &answered
        && (e.status.is_server_error() || labels.attempted())
    {
        labels.record_failed(&gw);
    }
    answered
}

/// Holds the client's limits and budgets for the request, then runs the attempts.
async fn hold_and_attempt(
    gw: &Arc<Gateway>,
    rt: Arc<Runtime>,
    client: &Arc<Client>,
    targets: &[Target],
    plan: &mut dyn CallPlan,
    trace: &mut Trace,
    labels: &Arc<UsageLabels>,
) -> Result<Answer, ApiError> {
    let leasing = rt.policy.quota_leasing;
    let estimate = plan.estimate();
    let worst = client.has_budget().then(|| worst_case(&rt, targets, plan));
    let client_hold = match hold_client(gw, client, estimate, worst, leasing).await {
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            trace.rate_limited();
            return Err(e);
        }
        other => other?,
    };
    let status = client_status::read_later(gw, client);
    let run = Run {
        gw: Arc::clone(gw),
        rt,
        labels: Arc::clone(labels),
    };
    let mut answer = attempt_all(run, targets, plan, client_hold, trace).await?;
    answer.status = status;
    Ok(answer)
}

/// Reserves the request against the client's minute limits, then its budgets (with the
/// request's `worst` case, computed when there are budgets); a refusal by a budget gives back
/// the limits' reservations.
async fn hold_client(
    gw: &Gateway,
    client: &Client,
    estimate: f64,
    worst: Option<WorstCase>,
    leasing: bool,
) -> Result<Option<ClientHold>, ApiError> {
    let reservations = reserve_client(gw, client, estimate, leasing).await?;
    let budgets = match worst {
        Some(worst) => budgets::reserve(gw, &client.budgets(), worst).await,
        None => Ok(Vec::new()),
    };
    match budgets {
        Ok(budgets) => Ok(ClientHold::new(reservations, budgets)),
        Err(e) => {
            release_client(gw, reservations);
            Err(e)
        }
    }
}

/// The most a request may cost before its answer says: its prompt (estimated) at the highest
/// input price among its targets, and its `max_tokens`, capped at
/// `policy.max_estimate_tokens`, at the highest output price.
fn worst_case(rt: &Runtime, targets: &[Target], plan: &dyn CallPlan) -> WorstCase {
    let (prompt, completion) = match plan.operation() {
        Operation::Embeddings => (plan.estimate(), 0.0),
        _ => (
            plan.prompt_estimate(),
            plan.estimate()
                .min(f64::from(rt.policy.max_estimate_tokens)),
        ),
    };
    let cost = targets
        .iter()
        .map(|t| {
            let price = &rt.routes.providers[t.provider].pricing;
            let input = price
                .input_per_1m
                .max(price.cache_write_per_1m.unwrap_or(0.0));
            (prompt * input + completion * price.output_per_1m) / 1e6
        })
        .fold(0.0, f64::max);
    WorstCase {
        cost,
        tokens: prompt + completion,
    }
}

/// Reserves one request's amounts against `key`'s limits (from a quota lease when `leasing`);
/// without limits nothing is asked of the store.
async fn reserve(
    gw: &Gateway,
    key: &ProviderKey,
    ask: Ask,
    leasing: bool,
) -> Result<ReserveOutcome, ApiError> {
    if ask.req_per_min.is_none() && ask.tokens_per_min.is_none() {
        return Ok(ReserveOutcome::Granted(truckllm_store::Reservation {
            key: key.clone(),
            at_ms: gw.now_ms(),
            reserved: Vec::new(),
        }));
    }
    let outcome = if leasing {
        gw.leases
            .reserve(&gw.store, &gw.lease_returns, key, ask)
            .await
    } else {
        let request = ReserveRequest {
            key: key.clone(),
            checks: leases::checks(&ask, 1.0, ask.estimate),
            id: None,
        };
        gw.store.reserve(&request).await
    };
    outcome.map_err(|e| {
        if e.is_caller_fault() {
            ApiError::bad_request(
                "invalid_request",
                format!("the request cannot be metered: {e}"),
            )
        } else {
            ApiError::store_unavailable(format!(
                "usage store unavailable, refusing to guess limits: {e}"
            ))
        }
    })
}

/// Reserves the request against the client key's minute limits, then its team's. A refusal
/// at the team gives back what the key reserved, so a refused request never counts.
async fn reserve_client(
    gw: &Gateway,
    client: &Client,
    estimate: f64,
    leasing: bool,
) -> Result<Vec<truckllm_store::Reservation>, ApiError> {
    let team = client
        .team
        .as_ref()
        .and_then(|t| Some((t.id.as_str(), t.limits?)));
    let scopes = [
        client
            .limits
            .map(|l| (CLIENTS_NAMESPACE, client.id.as_str(), l, "client")),
        team.map(|(id, l)| (TEAMS_NAMESPACE, id, l, "team")),
    ];
    let mut held = Vec::new();
    for (namespace, id, limits, what) in scopes.into_iter().flatten() {
        match reserve_scope(gw, namespace, id, limits, what, estimate, leasing).await {
            Ok(reservation) => held.push(reservation),
            Err(e) => {
                release_client(gw, held);
                return Err(e);
            }
        }
    }
    Ok(held)
}

/// One reservation against the minute limits of a client key or a team (`what`).
async fn reserve_scope(
    gw: &Gateway,
    namespace: &str,
    id: &str,
    limits: truckllm_config::schema::Limits,
    what: &str,
    estimate: f64,
    leasing: bool,
) -> Result<truckllm_store::Reservation, ApiError> {
    let key = ProviderKey::new(namespace, id.to_owned())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ask = Ask {
        req_per_min: limits.req_per_min,
        tokens_per_min: limits.tokens_per_min,
        estimate,
    };
    match reserve(gw, &key, ask, leasing).await? {
        ReserveOutcome::Granted(r) => Ok(r),
        ReserveOutcome::Denied(d) => Err(ApiError::rate_limited(
            format!(
                "{what} `{id}` is over its {} limit ({} of {} per minute)",
                d.metric, d.used, d.limit
            ),
            d.retry_after,
        )),
    }
}

fn key_order(gw: &Gateway, rt: &Runtime, provider: usize) -> Vec<usize> {
    let provider_entry = &rt.routes.providers[provider];
    let candidates: Vec<crate::balancer::Candidate<'_>> = provider_entry
        .keys
        .iter()
        .enumerate()
        .map(|(k, key)| crate::balancer::Candidate {
            key,
            health: &key.state.health,
            usage: rt.snapshot.get(provider, k),
        })
        .collect();
    crate::balancer::order(
        rt.policy.algorithm,
        &candidates,
        &provider_entry.state.rotation,
        gw.now_ms(),
    )
}

/// What the loop has learnt from failed attempts, to answer with if every attempt fails.
#[derive(Default)]
struct Failures {
    last: Option<ApiError>,
    /// The shortest wait any limit (ours or the provider's) asked for.
    limited: Option<Duration>,
}

impl Failures {
    fn limited_for(&mut self, wait: Duration) {
        self.limited = Some(self.limited.map_or(wait, |w| w.min(wait)));
    }

    fn into_error(self, model: &str) -> ApiError {
        match (self.last, self.limited) {
            (Some(e), Some(wait)) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                ApiError::rate_limited(e.message, wait)
            }
            (Some(e), _) => e,
            (None, Some(wait)) => ApiError::rate_limited(
                format!(
                    "every key for `{model}` is at its rate limit; retry after {} s",
                    wait.as_secs_f64().ceil()
                ),
                wait,
            ),
            (None, None) => ApiError::upstream(
                StatusCode::SERVICE_UNAVAILABLE,
                "no attempt was possible within the retry budget",
            ),
        }
    }
}

/// What every attempt of a request shares.
struct Run {
    gw: Arc<Gateway>,
    rt: Arc<Runtime>,
    labels: Arc<UsageLabels>,
}

async fn attempt_all(
    Run { gw, rt, labels }: Run,
    targets: &[Target],
    plan: &mut dyn CallPlan,
    mut client_hold: Option<ClientHold>,
    trace: &mut Trace,
) -> Result<Answer, ApiError> {
    let policy = &rt.policy;
    let deadline = Instant::now() + Duration::from_secs_f64(policy.retry.deadline_secs);
    let mut attempts = 0u32;
    let mut failures = Failures::default();
    'targets: for (t, target) in targets.iter().enumerate() {
        if t > 0 && !policy.fallback {
            break;
        }
        let provider = &rt.routes.providers[target.provider];
        if plan.pinned_key().is_some_and(|(p, _)| p != provider.id) {
            continue;
        }
        let model = provider.protocol.upstream_model(&target.model);
        let Some(url) = provider
            .protocol
            .url(plan.operation(), model, plan.streams())
        else {
            failures.last = Some(ApiError::bad_request(
                "unsupported_operation",
                format!(
                    "provider `{}` does not offer {}",
                    provider.id,
                    plan.operation().name()
                ),
            ));
            continue;
        };
        // A target the request cannot be expressed for fails alone: the next may take it.
        let body = match plan.body_for(provider.protocol.as_ref(), model) {
            Ok(body) => body,
            Err(e) => {
                failures.last = Some(e);
                continue;
            }
        };
        for k in key_order(&gw, &rt, target.provider) {
            if attempts >= policy.retry.max_attempts || Instant::now() >= deadline {
                break 'targets;
            }
            let key = &provider.keys[k];
            if plan
                .pinned_key()
                .is_some_and(|(_, pinned)| pinned != key.id)
            {
                continue;
            }
            let ask = Ask {
                req_per_min: key.limits.req_per_min,
                tokens_per_min: key.limits.tokens_per_min,
                estimate: plan.estimate(),
            };
            let reserved = match reserve(&gw, &key.store_key, ask, policy.quota_leasing).await {
                Ok(reserved) => reserved,
                Err(e) => {
                    settle_client_only(&gw, client_hold);
                    return Err(e);
                }
            };
            let reservation = match reserved {
                ReserveOutcome::Granted(r) => r,
                ReserveOutcome::Denied(d) => {
                    trace.rate_limited();
                    key.state.metrics.rate_limited.increment(1);
                    failures.limited_for(d.retry_after);
                    continue;
                }
            };
            attempts += 1;
            trace.attempt(&provider.id, &key.id, &target.model, attempts);
            if attempts > 1 {
                provider.state.metrics.retries.increment(1);
            }
            key.state
                .health
                .sent_since_snapshot
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut attempt = Attempt::new(
                Arc::clone(&gw),
                Arc::clone(&rt),
                target.provider,
                k,
                reservation,
            );
            attempt.hold_client(client_hold.take());
            attempt.label(Arc::clone(&labels));
            let sent =
                match provider
                    .protocol
                    .authorize(&key.secret, &url, &body, plan.client_headers())
                {
                    Ok(headers) => gw.upstream.post(&url, headers, body.clone()).await,
                    Err(e) => Err(e),
                };
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    client_hold = attempt.fail(None);
                    failures.last = Some(ApiError::upstream(
                        StatusCode::BAD_GATEWAY,
                        format!("provider `{}` key `{}`: {e}", provider.id, key.id),
                    ));
                    continue;
                }
            };
            match provider
                .protocol
                .verdict(response.status(), response.headers())
            {
                Verdict::Retry {
                    rate_limited,
                    retry_after,
                } => {
                    let status = response.status();
                    drop(response);
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    client_hold = attempt.fail(rate_limited.then_some(wait));
                    failures.last = Some(if rate_limited {
                        trace.rate_limited();
                        failures.limited_for(wait);
                        ApiError::rate_limited(
                            format!("every key of `{}` is rate limited upstream", plan.model()),
                            wait,
                        )
                    } else {
                        let refused_key =
                            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
                        let what = if refused_key {
                            ": it refused the key"
                        } else {
                            ""
                        };
                        ApiError::upstream(
                            StatusCode::BAD_GATEWAY,
                            format!(
                                "provider `{}` key `{}` answered {status}{what}",
                                provider.id, key.id
                            ),
                        )
                    });
                }
                Verdict::ClientError => {
                    trace.error("upstream_rejected");
                    return Ok(Answer {
                        response,
                        attempt,
                        client_error: true,
                        status: None,
                    });
                }
                Verdict::Success => {
                    return Ok(Answer {
                        response,
                        attempt,
                        client_error: false,
                        status: None,
                    });
                }
            }
        }
    }
    settle_client_only(&gw, client_hold);
    if let Some((provider, key)) = plan.pinned_key()
        && attempts == 0
        && failures.last.is_none()
        && failures.limited.is_none()
    {
        return Err(ApiError::bad_request(
            "bound_key_unavailable",
            format!(
                "this conversation is kept by provider `{provider}` key `{key}`, which `{}` does not reach now",
                plan.model()
            ),
        ));
    }
    Err(failures.into_error(plan.model()))
}
