//! The [`LogSink`] trait: what a backend (file, webhook, Pushgateway) implements. A sink is
//! driven by one worker task of its own (see [`crate::Logger`]), which hands it batches of
//! records, calls [`LogSink::tick`] on its schedule, and [`LogSink::close`] at shutdown, so a
//! sink needs no locking and its slowness stays inside its worker.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::record::LogRecord;

/// How a sink wants its records grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most records in one [`LogSink::write`].
    pub max_records: usize,
    /// How long the first record of a batch may wait for others.
    pub linger: Duration,
}

/// Which records a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    All,
    /// Only alerts (an alerts-only webhook).
    AlertsOnly,
    /// Only request records (the Pushgateway sink aggregates requests).
    RequestsOnly,
}

impl Wants {
    pub fn accepts(self, record: &LogRecord) -> bool {
        match self {
            Wants::All => true,
            Wants::AlertsOnly => record.is_alert(),
            Wants::RequestsOnly => !record.is_audit(),
        }
    }
}

/// A sink could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(String),
    /// The batch was given up (shutdown while retrying, or refused for good); it is counted
    /// as dropped.
    #[error("gave up on {records} records: {reason}")]
    GaveUp { records: usize, reason: String },
}

impl SinkError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SinkError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A destination for log records.
#[async_trait]
pub trait LogSink: Send + 'static {
    /// A label for metrics and errors: `file`, `webhook`, `pushgateway`, plus where it goes.
    /// Never contains a secret.
    fn name(&self) -> String;

    /// The sink type (`file`, `webhook`, `pushgateway`), the `sink` label of its metrics.
    fn kind(&self) -> &'static str;

    /// Which records this sink takes; asked once, when its worker starts.
    fn wants(&self) -> Wants {
        Wants::All
    }

    fn batching(&self) -> Batching;

    /// Takes one batch. A sink that retries watches `stop`: once it is cancelled, it makes at
    /// most one more attempt and then gives up with [`SinkError::GaveUp`].
    async fn write(
        &mut self,
        batch: &[LogRecord],
        stop: &CancellationToken,
    ) -> Result<(), SinkError>;

    /// How often [`LogSink::tick`] runs, if at all.
    fn tick_every(&self) -> Option<Duration> {
        None
    }

    /// Periodic work: a Pushgateway push, an age rotation.
    async fn tick(&mut self, stop: &CancellationToken) -> Result<(), SinkError> {
        let _ = stop;
        Ok(())
    }

    /// Flushes and releases everything; called once, after the last write.
    async fn close(&mut self) -> Result<(), SinkError>;
}
