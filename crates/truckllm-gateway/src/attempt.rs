//! One upstream attempt and its usage. An [`Attempt`] holds the key's reservation (and the
//! client's, for the final attempt) until the outcome is known, then hands the corrections to
//! the [`UsageRecorder`](crate::recorder::UsageRecorder), so the response is not delayed by the
//! store.
//! If it is dropped unsettled (the client went away mid-stream, the request was cancelled),
//! `Drop` settles it as abandoned: the request counts and its token estimate stands.
//!
//! Every attempt of a request also counts under its [`UsageLabels`], for the long-term usage
//! history (by model, client, team; nothing limits these counters):
//! - the model (`_models:{name}`): the request once (by the attempt that answers, or as a
//!   failed request when none does), every failed attempt's error and latency, as the provider
//!   keys' series count them, and the answering attempt's tokens and cost. So `errors` counts
//!   failed attempts (a request that failed before any attempt counts one), and may exceed
//!   `req`; `latency` sums every attempt's.
//! - the client key and its team, when no limit reservation counts them already: the answering
//!   attempt's request, tokens and cost, as a reservation counts them.
//!
//! The model is named as the config names it ([`crate::routing::Routes::counted_as`]); a name
//! the client chose (a passthrough provider, a pattern alias passing the name on) is counted
//! under its own name for the first [`MAX_OPEN_MODEL_NAMES`] such names an instance sees, and
//! under `_models:_other` after that.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use truckllm_store::{Metric, ProviderKey, Reservation};

use crate::budgets::{self, BudgetHold, WorstCase};
use crate::clients::Client;
use crate::dispatch::{CLIENTS_NAMESPACE, TEAMS_NAMESPACE};
use crate::routing::{CountedAs, Routes};
use crate::state::{Gateway, Runtime};
use crate::usage::Usage;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// 2xx; the usage the provider reported, if any (without it the estimate stands).
    Success(Option<Usage>),
    /// Transport error, timeout, 429 or 5xx: counts as an error, uses no tokens.
    UpstreamFailure,
    /// A stream the provider broke off after it began: counts as an error, and uses the
    /// tokens it had streamed (the provider bills them).
    BrokenOff(Usage),
    /// Another 4xx: the client's mistake; counts the request, no tokens, no error.
    ClientError,
    /// Dropped before an outcome (client disconnect): the request counts, the estimate stands.
    Abandoned,
}

/// What a request holds against its caller's own limits: the client key's reservation and
/// its team's, settled together with the request's outcome.
#[derive(Debug)]
pub struct ClientHold {
    pub reservations: Vec<Reservation>,
    pub budgets: Vec<BudgetHold>,
}

impl ClientHold {
    /// A hold on what was reserved; `None` if nothing was.
    pub fn new(reservations: Vec<Reservation>, budgets: Vec<BudgetHold>) -> Option<Self> {
        (!reservations.is_empty() || !budgets.is_empty()).then_some(Self {
            reservations,
            budgets,
        })
    }
}

/// Provider id under which requests are counted per model (see the module docs).
pub const MODELS_NAMESPACE: &str = "_models";

/// Most model names the client chose (no config holds them) that one instance counts under
/// their own names; later ones count under [`OTHER_MODELS`]. Bounds the series, and the rows
/// of the usage history, a client can create by sending made-up names to a passthrough route.
/// Kept until the instance restarts.
pub const MAX_OPEN_MODEL_NAMES: usize = 1_000;

/// The name under `_models` that counts the model names beyond [`MAX_OPEN_MODEL_NAMES`].
pub const OTHER_MODELS: &str = "_other";

/// The model names without a config entry this instance counts under their own names.
#[derive(Debug, Default)]
pub struct OpenModelNames {
    seen: Mutex<HashSet<String>>,
}

impl OpenModelNames {
    /// The name to count `model` under: itself while there is room, else [`OTHER_MODELS`].
    pub fn name_for(&self, model: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(model) {
            return model.to_owned();
        }
        if seen.len() >= MAX_OPEN_MODEL_NAMES {
            return OTHER_MODELS.to_owned();
        }
        seen.insert(model.to_owned());
        model.to_owned()
    }
}

/// What a request is counted under besides its provider keys (see the module docs), shared
/// by its attempts.
#[derive(Debug, Default)]
pub struct UsageLabels {
    /// `_models:{model}`.
    model: Option<ProviderKey>,
    /// `_clients:{id}` and `_teams:{id}` not counted by a limit reservation: requests, tokens
    /// and cost, as a reservation counts them.
    callers: Vec<ProviderKey>,
    /// Whether a failed attempt counted an error for the model already.
    failed_attempts: AtomicBool,
}

impl UsageLabels {
    /// The labels of `client`'s request for `model`, once `routes` resolved it. A name the
    /// store refuses (too long) is left out rather than failing the request.
    pub fn of(gateway: &Gateway, routes: &Routes, client: &Client, model: &str) -> Self {
        let team = client.team.as_ref();
        let callers = [
            client
                .limits
                .is_none()
                .then_some((CLIENTS_NAMESPACE, client.id.as_str())),
            team.filter(|t| t.limits.is_none())
                .map(|t| (TEAMS_NAMESPACE, t.id.as_str())),
        ];
        let name = match routes.counted_as(model) {
            CountedAs::Named(name) => name,
            CountedAs::Open => gateway.open_model_names.name_for(model),
        };
        Self {
            model: ProviderKey::new(MODELS_NAMESPACE, name).ok(),
            callers: callers
                .into_iter()
                .flatten()
                .filter_map(|(namespace, id)| ProviderKey::new(namespace, id).ok())
                .collect(),
            failed_attempts: AtomicBool::new(false),
        }
    }

    /// Counts a request that no provider answered (every attempt failed, or the store was
    /// down): one request for the model and the callers, and one error for the model unless
    /// its failed attempts counted theirs.
    pub fn record_failed(&self, gateway: &Gateway) {
        let bucket_ms = gateway.store.windowing().bucket_ms();
        let at_ms = gateway.now_ms();
        let errors = if self.failed_attempts.load(Ordering::Acquire) {
            0.0
        } else {
            1.0
        };
        self.record(
            gateway,
            at_ms,
            &[(Metric::Req, 1.0), (Metric::Errors, errors)],
            &[(Metric::Req, 1.0)],
            bucket_ms,
        );
    }

    /// Whether an attempt of the request went out and failed (and counted its error).
    pub fn attempted(&self) -> bool {
        self.failed_attempts.load(Ordering::Acquire)
    }

    /// Counts an attempt that failed over to the next: its error and latency, for the model.
    fn record_failed_attempt(&self, gateway: &Gateway, at_ms: u64, latency_ms: f64) {
        self.failed_attempts.store(true, Ordering::Release);
        let bucket_ms = gateway.store.windowing().bucket_ms();
        let actual = [(Metric::Errors, 1.0), (Metric::Latency, latency_ms)];
        if let Some(key) = &self.model {
            gateway
                .usage
                .record(unreserved(key, at_ms), &actual, bucket_ms);
        }
    }

    fn record(
        &self,
        gateway: &Gateway,
        at_ms: u64,
        model_actual: &[(Metric, f64)],
        caller_actual: &[(Metric, f64)],
        bucket_ms: u64,
    ) {
        let model = self.model.iter().map(|key| (key, model_actual));
        let callers = self.callers.iter().map(|key| (key, caller_actual));
        for (key, actual) in model.chain(callers) {
            gateway
                .usage
                .record(unreserved(key, at_ms), actual, bucket_ms);
        }
    }
}

/// A count under `key` that reserved nothing beforehand.
fn unreserved(key: &ProviderKey, at_ms: u64) -> Reservation {
    Reservation {
        key: key.clone(),
        at_ms,
        reserved: Vec::new(),
    }
}

/// A reserved attempt on one key, to be settled exactly once.
pub struct Attempt {
    gateway: Arc<Gateway>,
    runtime: Arc<Runtime>,
    pub provider: usize,
    pub key: usize,
    reservation: Option<Reservation>,
    client: Option<ClientHold>,
    labels: Option<Arc<UsageLabels>>,
    started: Instant,
}

impl Attempt {
    pub fn new(
        gateway: Arc<Gateway>,
        runtime: Arc<Runtime>,
        provider: usize,
        key: usize,
        reservation: Reservation,
    ) -> Self {
        Self {
            gateway,
            runtime,
            provider,
            key,
            reservation: Some(reservation),
            client: None,
            labels: None,
            started: Instant::now(),
        }
    }

    /// Hands the client's reservation to this attempt, to be settled with its outcome.
    pub fn hold_client(&mut self, client: Option<ClientHold>) {
        self.client = client;
    }

    /// Counts this attempt's outcome under its request's `labels` too.
    pub fn label(&mut self, labels: Arc<UsageLabels>) {
        self.labels = Some(labels);
    }

    /// The provider this attempt went to.
    pub fn provider_config(&self) -> &crate::routing::Provider {
        &self.runtime.routes.providers[self.provider]
    }

    /// The gateway this attempt runs in.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The policy of the config version this attempt runs under.
    pub fn runtime_policy(&self) -> &truckllm_config::schema::PolicyConfig {
        &self.runtime.policy
    }

    /// The key this attempt went out with.
    pub fn key_config(&self) -> &crate::routing::Key {
        &self.runtime.routes.providers[self.provider].keys[self.key]
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Settles a failed attempt and gives back the client's reservation for the next one.
    pub fn fail(mut self, cooldown: Option<Duration>) -> Option<ClientHold> {
        let client = self.client.take();
        self.cool_down(cooldown);
        if let (Some(labels), Some(reservation)) = (self.labels.take(), &self.reservation) {
            let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            labels.record_failed_attempt(&self.gateway, reservation.at_ms, latency_ms);
        }
        self.settle(Outcome::UpstreamFailure);
        client
    }

    fn cool_down(&self, forced: Option<Duration>) {
        let policy = &self.runtime.policy.cooldown;
        let health = &self.key_config().state.health;
        let wait = match forced {
            Some(wait) => wait,
            None if health.record_failure(policy.failures) => {
                Duration::from_secs_f64(policy.seconds)
            }
            None => return,
        };
        let until_ms = self.gateway.now_ms() + wait.as_millis() as u64;
        health.cool_down_until(until_ms);
        let shared_until =
            self.gateway.now_ms() + wait.min(crate::health::MAX_SHARED_COOLDOWN).as_millis() as u64;
        let series = self.runtime.routes.providers[self.provider].keys[self.key]
            .store_key
            .series(Metric::Cooldown);
        let store = Arc::clone(&self.gateway.store);
        self.gateway.settlements.spawn(async move {
            if let Err(e) = store.set(&series, (shared_until / 1000 + 1) as f64).await {
                tracing::warn!(error = %e, "cannot share a key cooldown through the store");
            }
        });
        tracing::warn!(provider = %self.runtime.routes.providers[self.provider].id, key = %self.runtime.routes.providers[self.provider].keys[self.key].id, seconds = wait.as_secs_f64(), "key cooled down");
    }

    /// Records the outcome: metrics and health now, the store reconcile on a tracked task.
    pub fn settle(mut self, outcome: Outcome) {
        self.settle_in_place(outcome);
    }

    fn settle_in_place(&mut self, outcome: Outcome) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let client = self.client.take();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let provider = &self.runtime.routes.providers[self.provider];
        let metrics = &provider.keys[self.key].state.metrics;
        provider.state.metrics.duration.record(latency_ms / 1000.0);
        let mut actual = vec![(Metric::Req, 1.0), (Metric::Latency, latency_ms)];
        // Whether the spend is known: a provider that answered without usage, or a request
        // whose client left before the answer, may still be billed, so its budget
        // reservation stands.
        let spend_known = matches!(
            outcome,
            Outcome::Success(Some(_))
                | Outcome::BrokenOff(_)
                | Outcome::UpstreamFailure
                | Outcome::ClientError
        );
        match outcome {
            Outcome::Success(usage) => {
                metrics.success.increment(1);
                provider.keys[self.key]
                    .state
                    .health
                    .record_success(latency_ms);
                if let Some(u) = usage {
                    metrics.record_tokens(&u);
                    actual.extend(usage_entries(provider, &u));
                }
            }
            Outcome::BrokenOff(u) => {
                metrics.upstream_error.increment(1);
                metrics.upstream_errors.increment(1);
                metrics.record_tokens(&u);
                actual.extend(usage_entries(provider, &u));
                actual.push((Metric::Errors, 1.0));
            }
            Outcome::UpstreamFailure => {
                metrics.upstream_error.increment(1);
                metrics.upstream_errors.increment(1);
                actual.extend([(Metric::Tokens, 0.0), (Metric::Errors, 1.0)]);
            }
            Outcome::ClientError => {
                metrics.client_error.increment(1);
                actual.push((Metric::Tokens, 0.0));
            }
            Outcome::Abandoned => metrics.client_error.increment(1),
        }
        let bucket_ms = self.gateway.store.windowing().bucket_ms();
        let client_actual: Vec<(Metric, f64)> = actual
            .iter()
            .filter(|(m, _)| matches!(m, Metric::Req | Metric::Tokens | Metric::Cost))
            .copied()
            .collect();
        if let Some(labels) = self.labels.take() {
            labels.record(
                &self.gateway,
                reservation.at_ms,
                &actual,
                &client_actual,
                bucket_ms,
            );
        }
        if let Some(client) = client {
            for reservation in client.reservations {
                self.gateway
                    .usage
                    .record(reservation, &client_actual, bucket_ms);
            }
            let spent = |metric| {
                client_actual
                    .iter()
                    .filter(|(m, _)| *m == metric)
                    .map(|(_, v)| v)
                    .sum()
            };
            let spent = WorstCase {
                cost: spent(Metric::Cost),
                tokens: spent(Metric::Tokens),
            };
            budgets::settle(client.budgets, spend_known.then_some(spent));
        }
        self.gateway.usage.record(reservation, &actual, bucket_ms);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.settle_in_place(Outcome::Abandoned);
    }
}

/// The store entries of a response's usage: tokens as the provider's limits count them, each
/// class, and the cost.
fn usage_entries(provider: &crate::routing::Provider, u: &Usage) -> Vec<(Metric, f64)> {
    let counted = u.limit_tokens(provider.protocol.cache_reads_count_toward_limits());
    let mut entries = vec![
        (Metric::Tokens, counted),
        (Metric::PromptTokens, u.prompt_tokens),
        (Metric::CompletionTokens, u.completion_tokens),
        (Metric::Cost, crate::trace::cost(&provider.pricing, u)),
    ];
    for (metric, value) in [
        (Metric::CacheWriteTokens, u.cache_write_tokens),
        (Metric::CacheReadTokens, u.cache_read_tokens),
        (Metric::ReasoningTokens, u.reasoning_tokens),
    ] {
        if value > 0.0 {
            entries.push((metric, value));
        }
    }
    entries
}

/// Settles a client's reservations when no attempt was made or all failed: the request
/// counts, its tokens do not.
pub fn settle_client_only(gateway: &Gateway, client: Option<ClientHold>) {
    let Some(client) = client else { return };
    budgets::release(client.budgets);
    for reservation in client.reservations {
        let store = Arc::clone(&gateway.store);
        gateway.settlements.spawn(async move {
            if let Err(e) = store
                .reconcile(reservation, &[(Metric::Req, 1.0), (Metric::Tokens, 0.0)])
                .await
            {
                tracing::error!(error = %e, "cannot record usage for a client");
            }
        });
    }
}

/// Gives back reservations taken for a request that was then refused before any attempt:
/// neither its request nor its tokens count.
pub fn release_client(gateway: &Gateway, reservations: Vec<Reservation>) {
    let bucket_ms = gateway.store.windowing().bucket_ms();
    for reservation in reservations {
        gateway.usage.record(
            reservation,
            &[(Metric::Req, 0.0), (Metric::Tokens, 0.0)],
            bucket_ms,
        );
    }
}
