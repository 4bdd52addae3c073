//! TruckLLM's logging store: structured [records](record) of every gateway request and every
//! audited action, delivered to any number of [sinks](sink) (a rotating [file], an HMAC-signed
//! [webhook], a Prometheus [pushgateway], [postgres] tables) by a [`Logger`] that never makes a request wait, and
//! [search] over the file sink for `truckllm logs search` and `truckllm logs stats`.
//!
//! The storage layer raises alerts (storage degraded or recovered, config reload failed, a
//! sink dropping records) as audit records of category `alert`, so they reach the same sinks.

pub mod file;
pub mod logger;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod pushgateway;
pub mod record;
pub mod search;
pub mod sink;
pub mod webhook;

pub use logger::{Logger, QueueLimits, SinkStats};
pub use record::{AuditCategory, AuditRecord, LogRecord, RequestRecord, Severity};
pub use sink::{LogSink, SinkError};

use truckllm_config::schema::LogSinkConfig;

/// A sink and the bounds of its queues.
pub type QueuedSink = (Box<dyn LogSink>, QueueLimits);

/// Opens the sinks of `storage.logging`, each with its queue size.
pub fn open_sinks(configs: &[LogSinkConfig], now: file::Now) -> Result<Vec<QueuedSink>, SinkError> {
    configs
        .iter()
        .map(|config| -> Result<QueuedSink, SinkError> {
            Ok(match config {
                LogSinkConfig::File(c) => (
                    Box::new(file::FileSink::open(c, std::sync::Arc::clone(&now))?),
                    QueueLimits::new(c.queue_size, c.queue_max_mb),
                ),
                LogSinkConfig::Webhook(c) => (
                    Box::new(webhook::WebhookSink::new(c)?),
                    QueueLimits::new(c.queue_size, c.queue_max_mb),
                ),
                // Aggregates only: a small queue drains into totals at once.
                LogSinkConfig::Pushgateway(c) => (
                    Box::new(pushgateway::PushgatewaySink::new(c)?),
                    QueueLimits::new(10_000, 16.0),
                ),
                #[cfg(feature = "postgres")]
                LogSinkConfig::Postgres(c) => (
                    Box::new(postgres::PostgresSink::new(c)?),
                    QueueLimits::new(c.queue_size, c.queue_max_mb),
                ),
                #[cfg(not(feature = "postgres"))]
                LogSinkConfig::Postgres(_) => {
                    return Err(SinkError::Http(
                        "this build has no PostgreSQL sink (cargo feature `postgres`)".into(),
                    ));
                }
            })
        })
        .collect()
}

/// Starts a logger for `storage.logging` (disabled if it is empty).
pub fn start(configs: &[LogSinkConfig]) -> Result<Logger, SinkError> {
    Ok(Logger::start(open_sinks(configs, file::system_now())?))
}
