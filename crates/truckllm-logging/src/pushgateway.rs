//! The Prometheus Pushgateway sink: request records are aggregated per provider and key id
//! (requests, errors, rate-limited requests, prompt and completion tokens, cost, and a latency
//! histogram), and every `interval_secs` the totals are pushed with
//! `PUT {url}/metrics/job/{job}/instance/{instance}` in the Prometheus text format 0.0.4 (the
//! Pushgateway does not take OpenMetrics). Totals are cumulative since the process started, so
//! a failed push loses nothing: the next one carries it. A push is retried a few times within
//! its interval; on shutdown a final push is made and, if configured, the group is deleted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use truckllm_config::schema::PushgatewaySinkConfig;

use crate::record::LogRecord;
use crate::sink::{Batching, LogSink, SinkError, Wants};

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Label value for requests no key was chosen for (refused before any attempt).
const NONE: &str = "none";

/// A counter to render: name, help, and how to read it from the totals.
type Counter = (&'static str, &'static str, fn(&Totals) -> f64);

/// Totals for one (provider, key id).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub latency_sum: f64,
    /// Counts per bucket of [`LATENCY_BUCKETS`] (not cumulative), then the overflow.
    pub latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

/// Totals by (provider, key id).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Aggregates {
    pub by_key: BTreeMap<(String, String), Totals>,
}

impl Aggregates {
    pub fn add(&mut self, record: &crate::record::RequestRecord) {
        let key = (
            record.provider.clone().unwrap_or_else(|| NONE.into()),
            record.key.clone().unwrap_or_else(|| NONE.into()),
        );
        let totals = self.by_key.entry(key).or_default();
        totals.requests += 1;
        totals.errors += u64::from(record.is_error());
        totals.rate_limited += u64::from(record.rate_limited);
        totals.prompt_tokens += record.prompt_tokens;
        totals.completion_tokens += record.completion_tokens;
        if record.cost.is_finite() {
            totals.cost += record.cost;
        }
        let seconds = record.latency_ms / 1000.0;
        if seconds.is_finite() && seconds >= 0.0 {
            totals.latency_sum += seconds;
            let bucket = LATENCY_BUCKETS
                .iter()
                .position(|le| seconds <= *le)
                .unwrap_or(LATENCY_BUCKETS.len());
            totals.latency_buckets[bucket] += 1;
        }
    }

    /// The totals in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [Counter; 4] = [
            (
                "truckllm_requests_total",
                "Requests through the gateway.",
                |t| t.requests as f64,
            ),
            (
                "truckllm_request_errors_total",
                "Requests answered with an error.",
                |t| t.errors as f64,
            ),
            (
                "truckllm_rate_limited_requests_total",
                "Requests a limit stopped at least once.",
                |t| t.rate_limited as f64,
            ),
            (
                "truckllm_cost_total",
                "Cost from the configured pricing.",
                |t| t.cost,
            ),
        ];
        for (name, help, value) in &counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((provider, key), totals) in &self.by_key {
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    labels(provider, key, &[]),
                    number(value(totals))
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP truckllm_tokens_total Tokens used, by type.\n# TYPE truckllm_tokens_total counter"
        );
        for ((provider, key), totals) in &self.by_key {
            for (kind, n) in [
                ("prompt", totals.prompt_tokens),
                ("completion", totals.completion_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "truckllm_tokens_total{{{}}} {n}",
                    labels(provider, key, &[("type", kind)])
                );
            }
        }
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "truckllm_request_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Request latency.\n# TYPE {name} histogram"
        );
        for ((provider, key), totals) in &self.by_key {
            let mut cumulative = 0;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += totals.latency_buckets[i];
                let le = number(*le);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{}}} {cumulative}",
                    labels(provider, key, &[("le", &le)])
                );
            }
            let count: u64 = totals.latency_buckets.iter().sum();
            let _ = writeln!(
                out,
                "{name}_bucket{{{}}} {count}",
                labels(provider, key, &[("le", "+Inf")])
            );
            let _ = writeln!(
                out,
                "{name}_sum{{{}}} {}",
                labels(provider, key, &[]),
                number(totals.latency_sum)
            );
            let _ = writeln!(
                out,
                "{name}_count{{{}}} {count}",
                labels(provider, key, &[])
            );
        }
    }
}

fn labels(provider: &str, key: &str, extra: &[(&str, &str)]) -> String {
    let mut out = format!(
        "provider=\"{}\",key_id=\"{}\"",
        escape(provider),
        escape(key)
    );
    for (name, value) in extra {
        let _ = write!(out, ",{name}=\"{}\"", escape(value));
    }
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "0".into()
    }
}

/// The host name, the default `instance` label.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "truckllm".into())
}

pub struct PushgatewaySink {
    name: String,
    group_url: reqwest::Url,
    client: reqwest::Client,
    interval: Duration,
    timeout: Duration,
    delete_on_shutdown: bool,
    aggregates: Aggregates,
    pushed: metrics::Counter,
    failed: metrics::Counter,
}

impl PushgatewaySink {
    pub fn new(config: &PushgatewaySinkConfig) -> Result<Self, SinkError> {
        let instance = config.instance.clone().unwrap_or_else(host_name);
        let mut group_url = reqwest::Url::parse(&config.url)
            .map_err(|e| SinkError::Http(format!("pushgateway url: {e}")))?;
        group_url
            .path_segments_mut()
            .map_err(|()| SinkError::Http("pushgateway url cannot have a path".into()))?
            .pop_if_empty()
            .extend(["metrics", "job", &config.job, "instance", &instance]);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::Http(format!("cannot build the pushgateway client: {e}")))?;
        Ok(Self {
            name: format!("pushgateway:{}", group_url.path()),
            group_url,
            client,
            interval: Duration::from_secs_f64(config.interval_secs.max(0.01)),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            delete_on_shutdown: config.delete_on_shutdown,
            aggregates: Aggregates::default(),
            pushed: metrics::counter!("truckllm_log_pushes_total", "outcome" => "ok"),
            failed: metrics::counter!("truckllm_log_pushes_total", "outcome" => "failed"),
        })
    }

    pub fn group_url(&self) -> &reqwest::Url {
        &self.group_url
    }

    async fn push_once(&self) -> Result<(), String> {
        let response = self
            .client
            .put(self.group_url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(self.aggregates.render())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("pushgateway answered {status}: {}", text.trim()))
    }

    /// Pushes, retrying with growing waits within half an interval (or once when stopping).
    async fn push(&self, stop: &CancellationToken) -> Result<(), SinkError> {
        let mut wait = Duration::from_millis(100);
        let budget = tokio::time::Instant::now() + self.interval / 2;
        loop {
            match self.push_once().await {
                Ok(()) => {
                    self.pushed.increment(1);
                    return Ok(());
                }
                Err(e) if stop.is_cancelled() || tokio::time::Instant::now() + wait > budget => {
                    self.failed.increment(1);
                    return Err(SinkError::Http(e));
                }
                Err(e) => {
                    tracing::debug!(sink = %self.name, error = %e, "push failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

#[async_trait]
impl LogSink for PushgatewaySink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kind(&self) -> &'static str {
        "pushgateway"
    }

    fn wants(&self) -> Wants {
        Wants::RequestsOnly
    }

    fn batching(&self) -> Batching {
        Batching {
            max_records: 4096,
            linger: Duration::ZERO,
        }
    }

    async fn write(
        &mut self,
        batch: &[LogRecord],
        _stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        for record in batch {
            if let LogRecord::Request(request) = record {
                self.aggregates.add(request);
            }
        }
        Ok(())
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(self.interval)
    }

    async fn tick(&mut self, stop: &CancellationToken) -> Result<(), SinkError> {
        self.push(stop).await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let stopped = CancellationToken::new();
        stopped.cancel();
        let pushed = self.push(&stopped).await;
        if self.delete_on_shutdown {
            let response = self
                .client
                .delete(self.group_url.clone())
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| SinkError::Http(format!("delete: {}", e.without_url())))?;
            if !response.status().is_success() {
                return Err(SinkError::Http(format!(
                    "delete: pushgateway answered {}",
                    response.status()
                )));
            }
        }
        pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestRecord;

    fn request(provider: &str, key: &str, status: u16, latency_ms: f64) -> RequestRecord {
        let mut r = RequestRecord::new(std::time::SystemTime::now(), "r".into(), "chat");
        r.provider = Some(provider.into());
        r.key = Some(key.into());
        r.status = status;
        r.latency_ms = latency_ms;
        r.prompt_tokens = 3;
        r.completion_tokens = 4;
        r
    }

    #[test]
    fn totals_render_in_the_text_format_with_cumulative_buckets() {
        let mut agg = Aggregates::default();
        agg.add(&request("openai", "k1", 200, 7.0));
        agg.add(&request("openai", "k1", 502, 300.0));
        agg.add(&request("open\"ai", "k\\2", 200, f64::NAN));
        let text = agg.render();
        assert!(
            text.contains("truckllm_requests_total{provider=\"openai\",key_id=\"k1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("truckllm_request_errors_total{provider=\"openai\",key_id=\"k1\"} 1\n")
        );
        assert!(text.contains(
            "truckllm_tokens_total{provider=\"openai\",key_id=\"k1\",type=\"prompt\"} 6\n"
        ));
        assert!(text.contains("truckllm_request_latency_seconds_bucket{provider=\"openai\",key_id=\"k1\",le=\"0.01\"} 1\n"));
        assert!(text.contains("truckllm_request_latency_seconds_bucket{provider=\"openai\",key_id=\"k1\",le=\"0.5\"} 2\n"));
        assert!(text.contains("truckllm_request_latency_seconds_bucket{provider=\"openai\",key_id=\"k1\",le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "truckllm_request_latency_seconds_sum{provider=\"openai\",key_id=\"k1\"} 0.307\n"
        ));
        assert!(
            text.contains("provider=\"open\\\"ai\",key_id=\"k\\\\2\""),
            "labels are escaped"
        );
        assert!(!text.contains("NaN"));
    }
}
