//! The webhook sink: records POSTed in batches as one JSON object,
//! `{"schema":"truckllm.batch/v1","batch_id":…,"records":[…]}`.
//!
//! Each body is signed with HMAC-SHA256 under the shared secret, sent as
//! `X-TruckLLM-Signature: sha256=<hex>`; receivers recompute it over the raw body. The batch id
//! (also in `X-TruckLLM-Batch-Id`) stays the same across retries, so a receiver can drop a
//! batch it already has. Failed POSTs (transport errors, timeouts, 408, 429, 5xx) are retried
//! with exponential backoff and jitter, honouring `Retry-After` (seconds, however large,
//! capped at the longest backoff; a date or a malformed value is ignored), for as long as the
//! process runs: while the endpoint is down the sink's queue absorbs new records and only what
//! overflows it is lost, and counted. Other 4xx answers mean the batch will never be taken; it
//! is given up and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use truckllm_config::Secret;
use truckllm_config::schema::WebhookSinkConfig;

use crate::record::LogRecord;
use crate::sink::{Batching, LogSink, SinkError, Wants};

/// `schema` of a webhook body.
pub const BATCH_SCHEMA: &str = "truckllm.batch/v1";
/// The signature header: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-truckllm-signature";
pub const BATCH_ID_HEADER: &str = "x-truckllm-batch-id";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

static NEXT_BATCH: AtomicU64 = AtomicU64::new(0);

pub struct WebhookSink {
    name: String,
    url: reqwest::Url,
    secret: Option<Secret>,
    client: reqwest::Client,
    batching: Batching,
    timeout: Duration,
    wants: Wants,
    batch_prefix: String,
    retries: metrics::Counter,
    first_backoff: Duration,
    /// Longest wait between two attempts, `Retry-After` included.
    max_backoff: Duration,
}

impl WebhookSink {
    pub fn new(config: &WebhookSinkConfig) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| SinkError::Http(format!("webhook url: {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Http(format!("cannot build the webhook client: {e}")))?;
        Ok(Self {
            name: format!("webhook:{}", redact(&url)),
            url,
            secret: config.secret.clone(),
            client,
            batching: Batching {
                max_records: config.batch_size.max(1),
                linger: Duration::from_millis(config.flush_interval_ms),
            },
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            wants: if config.alerts_only {
                Wants::AlertsOnly
            } else {
                Wants::All
            },
            batch_prefix: format!(
                "{:x}-{}",
                std::process::id(),
                crate::record::timestamp(std::time::SystemTime::now())
            ),
            retries: metrics::counter!("truckllm_log_retries_total", "sink" => "webhook"),
            first_backoff: Duration::from_millis(100),
            max_backoff: MAX_BACKOFF,
        })
    }

    /// The first wait between retries (tests shorten it).
    pub fn with_first_backoff(mut self, wait: Duration) -> Self {
        self.first_backoff = wait;
        self
    }

    /// The longest wait between retries, `Retry-After` included (tests shorten it).
    pub fn with_max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    fn body(&self, batch_id: &str, batch: &[LogRecord]) -> Vec<u8> {
        let mut body = format!(
            "{{\"schema\":\"{BATCH_SCHEMA}\",\"batch_id\":{},\"records\":[",
            serde_json::Value::String(batch_id.to_owned())
        )
        .into_bytes();
        for (i, record) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&record.to_json());
        }
        body.extend_from_slice(b"]}");
        body
    }

    async fn post(&self, batch_id: &str, body: &[u8]) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(BATCH_ID_HEADER, batch_id)
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret.expose().as_bytes(), body));
        }
        match request.send().await {
            Err(e) => Attempt::Retry {
                reason: e.without_url().to_string(),
                after: None,
            },
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Attempt::Done
                } else if status.as_u16() == 408
                    || status.as_u16() == 429
                    || status.is_server_error()
                {
                    Attempt::Retry {
                        reason: format!("endpoint answered {status}"),
                        after: retry_after(response.headers(), self.max_backoff),
                    }
                } else {
                    Attempt::Refused(format!("endpoint answered {status}"))
                }
            }
        }
    }
}

enum Attempt {
    Done,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Refused(String),
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The URL without credentials or query (which may hold tokens), for names and errors.
fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// The wait a `Retry-After` header asks for, at most `cap`. Seconds, whole or fractional, of
/// any size (`1e20` waits `cap`); an HTTP date, a negative or a malformed value is ignored.
fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan() && *s >= 0.0)?;
    // Clamp before converting (`Duration::from_secs_f64` panics past `u64::MAX` seconds), and
    // convert without panicking all the same.
    Some(Duration::try_from_secs_f64(seconds.min(cap.as_secs_f64())).map_or(cap, |d| d.min(cap)))
}

#[async_trait]
impl LogSink for WebhookSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn wants(&self) -> Wants {
        self.wants
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    async fn write(
        &mut self,
        batch: &[LogRecord],
        stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        let batch_id = format!(
            "{}-{}",
            self.batch_prefix,
            NEXT_BATCH.fetch_add(1, Ordering::Relaxed)
        );
        let body = self.body(&batch_id, batch);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let last_chance = stop.is_cancelled();
            let (reason, after) = match self.post(&batch_id, &body).await {
                Attempt::Done => return Ok(()),
                Attempt::Refused(reason) => {
                    return Err(SinkError::GaveUp {
                        records: batch.len(),
                        reason,
                    });
                }
                Attempt::Retry { reason, after } => (reason, after),
            };
            if last_chance {
                return Err(SinkError::GaveUp {
                    records: batch.len(),
                    reason: format!("shutting down; last attempt failed: {reason}"),
                });
            }
            let wait = after.unwrap_or_else(|| backoff.next().unwrap_or(self.max_backoff));
            tracing::warn!(sink = %self.name, batch_id, error = %reason, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
            self.retries.increment(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_published_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_after_of_any_size_is_capped_and_garbage_ignored() {
        let cap = Duration::from_secs(30);
        let after = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::RETRY_AFTER,
                value.parse().expect("header value"),
            );
            retry_after(&headers, cap)
        };
        assert_eq!(after("2"), Some(Duration::from_secs(2)));
        assert_eq!(after("0.5"), Some(Duration::from_millis(500)));
        for huge in ["1e20", "inf", "18446744073709551616", "1e308"] {
            assert_eq!(after(huge), Some(cap), "{huge}");
        }
        for ignored in ["-1", "NaN", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(after(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn names_never_show_credentials_or_query() {
        let url = reqwest::Url::parse("https://user:pw@hooks.example/h?token=abc").expect("url");
        assert_eq!(redact(&url), "https://hooks.example/h");
    }
}
