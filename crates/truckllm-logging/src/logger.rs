//! [`Logger`]: the front of the logging store. [`Logger::emit`] never waits: it hands the
//! record to each sink's bounded queue with `try_send` and returns, so a slow or dead sink
//! cannot slow a request. Each sink has two queues, one for request records and one for audit
//! records, drained audit first by the sink's own worker task, which groups records into
//! batches as the sink asks.
//!
//! Each queue is bounded twice, by records and by bytes (each record weighs its strings plus
//! a fixed overhead, see [`LogRecord::weight`]), so a few large records cannot hold more memory
//! than many small ones. When a queue is full by either bound, a request record is dropped for
//! that sink and counted (`truckllm_log_dropped_total{sink,class="request"}`), and an alert
//! says the sink is dropping (at most once a minute per sink). An audit record is never
//! dropped silently: it is counted (`class="audit"`) and written whole to the process log at
//! error level instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::record::{AuditRecord, LogRecord, Severity};
use crate::sink::{LogSink, Wants};

/// Least time between two "sink dropping" alerts for one sink.
const DROP_ALERT_EVERY: Duration = Duration::from_secs(60);

/// The bounds of one sink's queues (each of its two queues has both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most records queued.
    pub records: usize,
    /// Most bytes queued, by [`LogRecord::weight`]. An empty queue takes one record of any
    /// weight, so a bound below a record's weight still lets records through one at a time.
    pub bytes: usize,
}

impl QueueLimits {
    /// `records` records and `max_mb` MiB (at least 64 KiB; NaN and negatives count as 0).
    pub fn new(records: usize, max_mb: f64) -> Self {
        let bytes = (max_mb.max(0.0) * 1024.0 * 1024.0).clamp(64.0 * 1024.0, (1u64 << 40) as f64);
        Self {
            records,
            bytes: bytes as usize,
        }
    }
}

/// The bytes held by one queue, reserved by [`Logger::emit`] and released by the worker as it
/// takes records off.
#[derive(Default)]
struct QueuedBytes(AtomicUsize);

impl QueuedBytes {
    /// Reserves `weight` bytes if they fit under `max` (or the queue holds nothing).
    fn reserve(&self, weight: usize, max: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(weight) <= max)
                    .then(|| used.saturating_add(weight))
            })
            .is_ok()
    }

    fn release(&self, weight: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(weight))
            });
    }
}

enum Item {
    Record(LogRecord),
    /// Acknowledged once everything queued before it has been written.
    Flush(oneshot::Sender<()>),
}

/// Emits records to every configured sink. Cheap to clone; a logger with no sinks does nothing.
#[derive(Clone, Default)]
pub struct Logger {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .inner
            .iter()
            .flat_map(|i| i.sinks.iter().map(|s| s.name.as_str()))
            .collect();
        f.debug_struct("Logger").field("sinks", &names).finish()
    }
}

struct Inner {
    sinks: Vec<SinkHandle>,
    stop: CancellationToken,
    workers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

/// What one sink has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub written: u64,
    pub dropped_requests: u64,
    pub dropped_audit: u64,
}

/// The counts behind [`SinkStats`], shared by the emitting side and the worker; the
/// Prometheus counters carry the same numbers.
#[derive(Default)]
struct Counts {
    written: AtomicU64,
    dropped_requests: AtomicU64,
    dropped_audit: AtomicU64,
}

struct SinkHandle {
    name: String,
    counts: Arc<Counts>,
    wants: Wants,
    requests: mpsc::Sender<Item>,
    audit: mpsc::Sender<Item>,
    request_bytes: Arc<QueuedBytes>,
    audit_bytes: Arc<QueuedBytes>,
    max_bytes: usize,
    dropped_requests: metrics::Counter,
    dropped_audit: metrics::Counter,
    /// Request records dropped since the last alert about it.
    dropped_since_alert: AtomicU64,
    /// When the last drop alert went out, in ms since the logger started (0: never).
    last_alert_ms: AtomicU64,
}

impl Logger {
    /// A logger that discards everything (no sinks configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts one worker per sink, each with two queues bounded by its [`QueueLimits`].
    pub fn start(sinks: Vec<crate::QueuedSink>) -> Self {
        if sinks.is_empty() {
            return Self::disabled();
        }
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut workers = Vec::new();
        for (sink, limits) in sinks {
            let (requests, requests_rx) = mpsc::channel(limits.records.max(1));
            let (audit, audit_rx) = mpsc::channel(limits.records.max(1));
            let request_bytes = Arc::new(QueuedBytes::default());
            let audit_bytes = Arc::new(QueuedBytes::default());
            let kind = sink.kind();
            let counts = Arc::new(Counts::default());
            handles.push(SinkHandle {
                name: sink.name(),
                counts: Arc::clone(&counts),
                wants: sink.wants(),
                requests,
                audit,
                request_bytes: Arc::clone(&request_bytes),
                audit_bytes: Arc::clone(&audit_bytes),
                max_bytes: limits.bytes,
                dropped_requests: metrics::counter!("truckllm_log_dropped_total", "sink" => kind, "class" => "request"),
                dropped_audit: metrics::counter!("truckllm_log_dropped_total", "sink" => kind, "class" => "audit"),
                dropped_since_alert: AtomicU64::new(0),
                last_alert_ms: AtomicU64::new(0),
            });
            workers.push(tokio::spawn(run_worker(
                sink,
                Queues {
                    requests: requests_rx,
                    audit: audit_rx,
                    request_bytes,
                    audit_bytes,
                },
                stop.clone(),
                counts,
            )));
        }
        Self {
            inner: Some(Arc::new(Inner {
                sinks: handles,
                stop,
                workers: std::sync::Mutex::new(workers),
                started: Instant::now(),
            })),
        }
    }

    /// Written and dropped counts per sink, in config order.
    pub fn sink_stats(&self) -> Vec<SinkStats> {
        self.inner
            .iter()
            .flat_map(|i| i.sinks.iter())
            .map(|s| SinkStats {
                name: s.name.clone(),
                written: s.counts.written.load(Ordering::Relaxed),
                dropped_requests: s.counts.dropped_requests.load(Ordering::Relaxed),
                dropped_audit: s.counts.dropped_audit.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// True if any sink is configured; callers may skip building records otherwise.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Hands `record` to every sink that wants it, without waiting. Its string fields are
    /// capped first (see [`LogRecord::capped`]).
    pub fn emit(&self, record: impl Into<LogRecord>) {
        let record = record.into().capped();
        if let LogRecord::Audit(audit) = &record {
            tracing::info!(target: "truckllm::audit", category = ?audit.category, action = %audit.action, actor = %audit.actor, outcome = %audit.outcome, target = audit.target.as_deref().unwrap_or(""), "audit");
        }
        let Some(inner) = &self.inner else {
            return;
        };
        let weight = record.weight();
        for (i, sink) in inner.sinks.iter().enumerate() {
            if !sink.wants.accepts(&record) {
                continue;
            }
            if !sink.enqueue(&record, weight) {
                self.dropped(inner, i, &record);
            }
        }
    }

    fn dropped(&self, inner: &Inner, sink: usize, record: &LogRecord) {
        let handle = &inner.sinks[sink];
        if let LogRecord::Audit(audit) = record {
            handle.dropped_audit.increment(1);
            handle.counts.dropped_audit.fetch_add(1, Ordering::Relaxed);
            let line = String::from_utf8_lossy(&record.to_json()).into_owned();
            tracing::error!(target: "truckllm::audit", sink = %handle.name, action = %audit.action, record = %line, "audit queue full: the record did not reach this sink and is written here instead");
            return;
        }
        handle.dropped_requests.increment(1);
        handle
            .counts
            .dropped_requests
            .fetch_add(1, Ordering::Relaxed);
        let dropped = handle.dropped_since_alert.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = inner.started.elapsed().as_millis() as u64 + 1;
        let last = handle.last_alert_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= DROP_ALERT_EVERY.as_millis() as u64;
        if due
            && handle
                .last_alert_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            handle.dropped_since_alert.store(0, Ordering::Relaxed);
            self.emit(
                AuditRecord::alert(
                    "log.sink_dropping",
                    Severity::Warning,
                    format!(
                        "log sink {} is not keeping up: {dropped} request records dropped",
                        handle.name
                    ),
                )
                .target(handle.name.clone()),
            );
        }
    }

    /// Waits until every record emitted before this call has been handed to its sinks.
    pub async fn flush(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut acks = Vec::new();
        for sink in &inner.sinks {
            let (tx, rx) = oneshot::channel();
            if sink.audit.send(Item::Flush(tx)).await.is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
    }

    /// Stops the workers: each writes what is queued (a retrying sink gets one last attempt),
    /// then closes its sink. A worker still busy after `grace` is abandoned.
    pub async fn shutdown(&self, grace: Duration) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.stop.cancel();
        let workers: Vec<JoinHandle<()>> = inner
            .workers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + grace;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                tracing::error!(
                    "a log sink did not finish within {grace:?} of shutdown; abandoned"
                );
            }
        }
    }
}

impl SinkHandle {
    /// Queues `record` if both bounds of its queue allow; false if it was not queued.
    fn enqueue(&self, record: &LogRecord, weight: usize) -> bool {
        let (queue, bytes) = if record.is_audit() {
            (&self.audit, &self.audit_bytes)
        } else {
            (&self.requests, &self.request_bytes)
        };
        if !bytes.reserve(weight, self.max_bytes) {
            return false;
        }
        if queue.try_send(Item::Record(record.clone())).is_err() {
            bytes.release(weight);
            return false;
        }
        true
    }
}

struct Queues {
    requests: mpsc::Receiver<Item>,
    audit: mpsc::Receiver<Item>,
    request_bytes: Arc<QueuedBytes>,
    audit_bytes: Arc<QueuedBytes>,
}

impl Queues {
    /// Releases the bytes `record` held in its queue, now that the worker has it.
    fn taken(&self, record: &LogRecord) {
        let bytes = if record.is_audit() {
            &self.audit_bytes
        } else {
            &self.request_bytes
        };
        bytes.release(record.weight());
    }

    /// The next item, audit first, without waiting.
    fn try_next(&mut self) -> Option<Item> {
        self.audit
            .try_recv()
            .ok()
            .or_else(|| self.requests.try_recv().ok())
    }
}

/// Counters of one sink's worker.
struct WorkerMetrics {
    written: metrics::Counter,
    /// Records lost in a write the sink gave up on; counted as dropped too.
    failed: metrics::Counter,
    dropped_requests: metrics::Counter,
    dropped_audit: metrics::Counter,
    counts: Arc<Counts>,
}

async fn run_worker(
    mut sink: Box<dyn LogSink>,
    mut queues: Queues,
    stop: CancellationToken,
    counts: Arc<Counts>,
) {
    let kind = sink.kind();
    let metrics = WorkerMetrics {
        written: metrics::counter!("truckllm_log_written_total", "sink" => kind),
        failed: metrics::counter!("truckllm_log_write_failures_total", "sink" => kind),
        dropped_requests: metrics::counter!("truckllm_log_dropped_total", "sink" => kind, "class" => "request"),
        dropped_audit: metrics::counter!("truckllm_log_dropped_total", "sink" => kind, "class" => "audit"),
        counts,
    };
    let batching = sink.batching();
    let mut ticker = sink.tick_every().map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(item) = queues.audit.recv() => item,
            Some(item) = queues.requests.recv() => item,
            _ = tick(&mut ticker) => {
                if let Err(e) = sink.tick(&stop).await {
                    tracing::warn!(sink = %sink.name(), error = %e, "log sink periodic work failed");
                }
                continue;
            }
        };
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        take(first, &mut batch, &mut acks, &mut queues);
        fill(&mut batch, &mut acks, &mut queues, batching, &stop).await;
        // Only a flush makes a batch longer than the sink's size.
        for chunk in batch.chunks(batching.max_records.max(1)) {
            write(sink.as_mut(), chunk, &stop, &metrics).await;
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    drain_on_shutdown(
        sink.as_mut(),
        &mut queues,
        &stop,
        &metrics,
        batching.max_records,
    )
    .await;
    if let Err(e) = sink.close().await {
        tracing::warn!(sink = %sink.name(), error = %e, "log sink did not close cleanly");
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Adds an item to the batch; a flush marker first takes everything already in the request
/// queue (all of it was sent before the marker).
fn take(
    item: Item,
    batch: &mut Vec<LogRecord>,
    acks: &mut Vec<oneshot::Sender<()>>,
    queues: &mut Queues,
) {
    match item {
        Item::Record(record) => {
            queues.taken(&record);
            batch.push(record);
        }
        Item::Flush(ack) => {
            while let Ok(item) = queues.requests.try_recv() {
                match item {
                    Item::Record(record) => {
                        queues.taken(&record);
                        batch.push(record);
                    }
                    Item::Flush(other) => acks.push(other),
                }
            }
            acks.push(ack);
        }
    }
}

/// Fills a batch up to the sink's size, waiting at most its linger for more records.
async fn fill(
    batch: &mut Vec<LogRecord>,
    acks: &mut Vec<oneshot::Sender<()>>,
    queues: &mut Queues,
    batching: crate::sink::Batching,
    stop: &CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.max_records && acks.is_empty() {
        if let Some(item) = queues.try_next() {
            take(item, batch, acks, queues);
            continue;
        }
        if batching.linger.is_zero() {
            return;
        }
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(deadline) => return,
            Some(item) = queues.audit.recv() => item,
            Some(item) = queues.requests.recv() => item,
        };
        take(next, batch, acks, queues);
    }
}

async fn write(
    sink: &mut dyn LogSink,
    batch: &[LogRecord],
    stop: &CancellationToken,
    metrics: &WorkerMetrics,
) {
    if batch.is_empty() {
        return;
    }
    match sink.write(batch, stop).await {
        Ok(()) => {
            metrics.written.increment(batch.len() as u64);
            metrics
                .counts
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            let audit = batch.iter().filter(|r| r.is_audit()).count() as u64;
            metrics.failed.increment(batch.len() as u64);
            metrics.dropped_audit.increment(audit);
            metrics
                .dropped_requests
                .increment(batch.len() as u64 - audit);
            metrics
                .counts
                .dropped_audit
                .fetch_add(audit, Ordering::Relaxed);
            metrics
                .counts
                .dropped_requests
                .fetch_add(batch.len() as u64 - audit, Ordering::Relaxed);
            tracing::error!(sink = %sink.name(), records = batch.len(), audit_records = audit, error = %e, "log sink lost a batch");
            for record in batch.iter().filter(|r| r.is_audit()) {
                let line = String::from_utf8_lossy(&record.to_json()).into_owned();
                tracing::error!(target: "truckllm::audit", sink = %sink.name(), record = %line, "audit record the sink lost, written here instead");
            }
        }
    }
}

async fn drain_on_shutdown(
    sink: &mut dyn LogSink,
    queues: &mut Queues,
    stop: &CancellationToken,
    metrics: &WorkerMetrics,
    max_records: usize,
) {
    queues.audit.close();
    queues.requests.close();
    loop {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        while batch.len() < max_records.max(1) {
            let Some(item) = queues.try_next() else { break };
            take(item, &mut batch, &mut acks, queues);
        }
        if batch.is_empty() && acks.is_empty() {
            return;
        }
        for chunk in batch.chunks(max_records.max(1)) {
            write(sink, chunk, stop, metrics).await;
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}
