//! One request's log record ([`RequestRecord`]), filled in along the request path and emitted
//! exactly once when the request ends: when the handler returns, or, for a stream, when the
//! stream ends or the client goes away (the trace travels with the stream and is emitted on
//! drop). With no log sink configured nothing is built.
//!
//! Also the request id: the client's `x-request-id` if it is a sane token, else a new one; it
//! is sent back in `x-request-id` and names the record.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use axum::http::HeaderMap;
use truckllm_config::schema::Pricing;
use truckllm_logging::{Logger, RequestRecord};

use crate::usage::Usage;

/// The request id header, read from clients and set on every answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

static PROCESS_PREFIX: LazyLock<u64> = LazyLock::new(|| {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
});
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A request's id, put in its extensions by [`layer`] for handlers and refusals to name.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives every request an id ([`request_id`]) and every answer, whatever route or refusal
/// produced it, the `x-request-id` header.
pub async fn layer(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request_id(request.headers());
    let value = axum::http::HeaderValue::from_str(&id).ok();
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The client's request id if it is 1–128 characters of `[A-Za-z0-9._:-]`, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        });
    match given {
        Some(id) => id.to_owned(),
        None => format!(
            "req-{:016x}{:08x}",
            *PROCESS_PREFIX,
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// The cost of `usage` at `pricing` (per million tokens), each class at its price: uncached
/// input, cache writes and cache reads (at the input price unless priced), and output with
/// reasoning included, as providers bill.
pub fn cost(pricing: &Pricing, usage: &Usage) -> f64 {
    let cached = usage.cache_write_tokens + usage.cache_read_tokens;
    let uncached = (usage.prompt_tokens - cached).max(0.0);
    let write = pricing.cache_write_per_1m.unwrap_or(pricing.input_per_1m);
    let read = pricing.cache_read_per_1m.unwrap_or(pricing.input_per_1m);
    (uncached * pricing.input_per_1m
        + usage.cache_write_tokens * write
        + usage.cache_read_tokens * read
        + usage.completion_tokens * pricing.output_per_1m)
        / 1e6
}

/// A request's record in the making.
pub struct Trace {
    logger: Logger,
    started: Instant,
    record: Option<Box<RequestRecord>>,
}

impl Trace {
    /// Starts the record of a request to `endpoint` (`chat`, `embeddings`).
    pub fn start(logger: &Logger, endpoint: &str, request_id: &str) -> Self {
        let record = logger.is_enabled().then(|| {
            Box::new(RequestRecord::new(
                SystemTime::now(),
                request_id.to_owned(),
                endpoint,
            ))
        });
        Self {
            logger: logger.clone(),
            started: Instant::now(),
            record,
        }
    }

    /// Moves the record out (to travel with a stream), leaving a trace that emits nothing.
    pub fn take(&mut self) -> Trace {
        Trace {
            logger: self.logger.clone(),
            started: self.started,
            record: self.record.take(),
        }
    }

    fn with(&mut self, fill: impl FnOnce(&mut RequestRecord)) {
        if let Some(record) = self.record.as_deref_mut() {
            fill(record);
        }
    }

    pub fn client(&mut self, id: &str) {
        self.with(|r| r.client = Some(id.to_owned()));
    }

    pub fn model(&mut self, model: &str, stream: bool) {
        self.with(|r| {
            r.model = model.to_owned();
            r.stream = stream;
        });
    }

    /// An attempt on `provider`/`key` for `upstream_model`; `attempts` counts it.
    pub fn attempt(&mut self, provider: &str, key: &str, upstream_model: &str, attempts: u32) {
        self.with(|r| {
            r.provider = Some(provider.to_owned());
            r.key = Some(key.to_owned());
            r.upstream_model = Some(upstream_model.to_owned());
            r.retries = attempts.saturating_sub(1);
        });
    }

    pub fn rate_limited(&mut self) {
        self.with(|r| r.rate_limited = true);
    }

    pub fn usage(&mut self, usage: Option<&Usage>, pricing: &Pricing) {
        if let Some(usage) = usage {
            let cost = cost(pricing, usage);
            self.with(|r| {
                r.prompt_tokens = usage.prompt_tokens.max(0.0) as u64;
                r.completion_tokens = usage.completion_tokens.max(0.0) as u64;
                r.cost = cost;
            });
        }
    }

    /// The token counts are the gateway's estimate, not the provider's report.
    pub fn usage_estimated(&mut self) {
        self.with(|r| r.usage_estimated = true);
    }

    /// The first byte went back to the client (streams).
    pub fn first_byte(&mut self) {
        let elapsed = self.started.elapsed();
        self.with(|r| {
            if r.ttfb_ms.is_none() {
                r.ttfb_ms = Some(elapsed.as_secs_f64() * 1000.0);
            }
        });
    }

    pub fn status(&mut self, status: u16) {
        self.with(|r| r.status = status);
    }

    pub fn error(&mut self, kind: &str) {
        self.with(|r| {
            if r.error.is_none() {
                r.error = Some(kind.to_owned());
            }
        });
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            self.logger.emit(*record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cost_prices_each_token_class_as_the_bill_does() {
        // Anthropic's Sonnet prices: $3 in, $15 out, $3.75 cache write, $0.30 cache read.
        let pricing = Pricing {
            input_per_1m: 3.0,
            output_per_1m: 15.0,
            cache_write_per_1m: Some(3.75),
            cache_read_per_1m: Some(0.30),
        };
        let usage = Usage {
            prompt_tokens: 1_110_000.0,
            completion_tokens: 1_000_000.0,
            total_tokens: 2_110_000.0,
            cache_write_tokens: 100_000.0,
            cache_read_tokens: 1_000_000.0,
            reasoning_tokens: 500_000.0,
        };
        let expected = 0.01 * 3.0 + 0.1 * 3.75 + 1.0 * 0.30 + 1.0 * 15.0;
        assert!((cost(&pricing, &usage) - expected).abs() < 1e-9);
        let unpriced_cache = Pricing {
            cache_write_per_1m: None,
            cache_read_per_1m: None,
            ..pricing
        };
        assert!((cost(&unpriced_cache, &usage) - (1.11 * 3.0 + 15.0)).abs() < 1e-9);
    }

    #[test]
    fn a_sane_client_request_id_is_kept_and_anything_else_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123.x:y_z"));
        assert_eq!(request_id(&headers), "abc-123.x:y_z");
        for bad in ["has space", "quote\"", ""] {
            headers.insert(
                REQUEST_ID_HEADER,
                HeaderValue::from_str(bad).expect("header"),
            );
            assert!(request_id(&headers).starts_with("req-"), "{bad:?}");
        }
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&"a".repeat(129)).expect("header"),
        );
        assert!(request_id(&headers).starts_with("req-"));
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b, "generated ids are unique");
    }
}
