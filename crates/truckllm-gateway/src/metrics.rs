//! Gateway metrics, exported at `/metrics` in the Prometheus text format. Handles are
//! registered once per key when a config is applied, so recording is a few atomic adds.
//! Labels are provider and key ids, never secrets.
//!
//! - `truckllm_requests_total{provider,key,outcome}` (`success`, `upstream_error`, `client_error`)
//! - `truckllm_tokens_total{provider,key,kind}` (`prompt`, `completion`, and the parts of them
//!   `cache_write`, `cache_read`, `reasoning`)
//! - `truckllm_request_duration_seconds{provider}` (histogram)
//! - `truckllm_upstream_errors_total{provider,key}`, `truckllm_rate_limited_total{provider,key}`
//! - `truckllm_retries_total{provider}`, `truckllm_rejected_total{code}`

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) for request latency: 1 ms to 2 minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle. Also starts
/// the upkeep task that drains histogram samples into buckets every few seconds; without it,
/// samples would pile up between scrapes.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = build()?;
    describe();
    truckllm_store::metrics::describe();
    truckllm_logging::metrics::describe();
    truckllm_config::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn build() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("truckllm_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(truckllm_store::instrumented::DURATION_METRIC.into()),
                truckllm_store::instrumented::DURATION_BUCKETS,
            )
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// Refusal codes counted from start-up, so alerts on them have a series before the first one.
const REJECTION_CODES: &[&str] = &[
    "invalid_api_key",
    "model_not_allowed",
    "model_not_found",
    "rate_limit_exceeded",
    "route_not_found",
    "store_unavailable",
];

/// Describes the gateway's metric families and creates the refusal counters at zero.
fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "truckllm_requests_total",
        "Requests answered by a provider key, by provider, key and outcome (success, upstream_error, client_error)."
    );
    describe_counter!(
        "truckllm_tokens_total",
        "Tokens used, by provider, key and kind (prompt, completion; cache_write, cache_read and reasoning are parts of those)."
    );
    describe_histogram!(
        "truckllm_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request to the provider's complete answer, by provider."
    );
    describe_counter!(
        "truckllm_upstream_errors_total",
        "Provider answers that failed (5xx, 429, transport errors), by provider and key."
    );
    describe_counter!(
        "truckllm_rate_limited_total",
        "Times a key was at its limit, by the gateway's count or the provider's 429, by provider and key."
    );
    describe_counter!(
        "truckllm_retries_total",
        "Attempts after the first on another key or target, by provider."
    );
    describe_counter!(
        "truckllm_rejected_total",
        "Requests refused before reaching a provider, by error code."
    );
    describe_counter!(
        "truckllm_quota_reservations_total",
        "Reservations against minute limits, by where they were decided: lease (from this instance's quota lease, no store call), store (a lease or a single request's reservation asked of the store)."
    );
    for code in REJECTION_CODES {
        metrics::counter!("truckllm_rejected_total", "code" => *code).absolute(0);
    }
}

/// Handles for one key.
#[derive(Debug, Clone)]
pub struct KeyMetrics {
    pub success: Counter,
    pub upstream_error: Counter,
    pub client_error: Counter,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub cache_write_tokens: Counter,
    pub cache_read_tokens: Counter,
    pub reasoning_tokens: Counter,
    pub upstream_errors: Counter,
    pub rate_limited: Counter,
}

impl KeyMetrics {
    pub fn register(provider: &str, key: &str) -> Self {
        let request = |outcome: &'static str| metrics::counter!("truckllm_requests_total", "provider" => provider.to_owned(), "key" => key.to_owned(), "outcome" => outcome);
        let tokens = |kind: &'static str| metrics::counter!("truckllm_tokens_total", "provider" => provider.to_owned(), "key" => key.to_owned(), "kind" => kind);
        Self {
            success: request("success"),
            upstream_error: request("upstream_error"),
            client_error: request("client_error"),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            cache_write_tokens: tokens("cache_write"),
            cache_read_tokens: tokens("cache_read"),
            reasoning_tokens: tokens("reasoning"),
            upstream_errors: metrics::counter!("truckllm_upstream_errors_total", "provider" => provider.to_owned(), "key" => key.to_owned()),
            rate_limited: metrics::counter!("truckllm_rate_limited_total", "provider" => provider.to_owned(), "key" => key.to_owned()),
        }
    }
}

impl KeyMetrics {
    /// Counts a response's tokens by class.
    pub fn record_tokens(&self, usage: &crate::usage::Usage) {
        self.prompt_tokens.increment(usage.prompt_tokens as u64);
        self.completion_tokens
            .increment(usage.completion_tokens as u64);
        self.cache_write_tokens
            .increment(usage.cache_write_tokens as u64);
        self.cache_read_tokens
            .increment(usage.cache_read_tokens as u64);
        self.reasoning_tokens
            .increment(usage.reasoning_tokens as u64);
    }
}

/// Handles for one provider.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    pub duration: Histogram,
    pub retries: Counter,
}

impl ProviderMetrics {
    pub fn register(provider: &str) -> Self {
        Self {
            duration: metrics::histogram!("truckllm_request_duration_seconds", "provider" => provider.to_owned()),
            retries: metrics::counter!("truckllm_retries_total", "provider" => provider.to_owned()),
        }
    }
}

/// Counts a request refused before it reached a provider.
pub fn rejected(code: &'static str) {
    metrics::counter!("truckllm_rejected_total", "code" => code).increment(1);
}
