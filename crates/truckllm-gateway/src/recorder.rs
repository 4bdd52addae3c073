//! Usage recording, coalesced. Every settled attempt hands its corrections (actual usage minus
//! what was reserved) to a [`UsageRecorder`]; one background task drains them, sums the deltas
//! of the same provider key and time bucket, and writes each sum with one reconcile. Writes
//! are spaced at least `storage.runtime.settle_interval_ms` apart (10 ms by default), and
//! settlements arriving meanwhile join the next batch, so under load the store sees one call
//! per busy key per interval instead of one per request; an idle gateway's first settlement is
//! written at once. Totals are exact; they land up to one interval (plus a round trip) later,
//! and until then the reservation's estimate stands in the windows. [`UsageRecorder::flush`]
//! waits until everything recorded so far is in the store (shutdown and tests use it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use truckllm_store::{Metric, ProviderKey, Reservation, RuntimeStore};

/// Most settlements folded into one batch.
const MAX_BATCH: usize = 8192;

struct Pending {
    key: ProviderKey,
    bucket_start_ms: u64,
    deltas: Vec<(Metric, f64)>,
}

/// Hands usage to the background writer.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    tx: mpsc::UnboundedSender<Pending>,
    outstanding: Arc<AtomicU64>,
    flushed: Arc<Notify>,
}

impl UsageRecorder {
    /// Starts the writer task for `store`, writing at most once per `spacing`.
    pub fn start(store: Arc<dyn RuntimeStore>, spacing: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let outstanding = Arc::new(AtomicU64::new(0));
        let flushed = Arc::new(Notify::new());
        tokio::spawn(write_loop(
            store,
            spacing,
            rx,
            Arc::clone(&outstanding),
            Arc::clone(&flushed),
        ));
        Self {
            tx,
            outstanding,
            flushed,
        }
    }

    /// Settles `reservation` at `actual` (see [`Reservation::deltas`]).
    pub fn record(&self, reservation: Reservation, actual: &[(Metric, f64)], bucket_ms: u64) {
        let deltas = match reservation.deltas(actual) {
            Ok(deltas) if !deltas.is_empty() => deltas,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "dropping a usage record with a bad value");
                return;
            }
        };
        let pending = Pending {
            bucket_start_ms: reservation.at_ms / bucket_ms.max(1) * bucket_ms.max(1),
            key: reservation.key,
            deltas,
        };
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(pending).is_err() {
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("usage writer has stopped; a usage record was lost");
        }
    }

    /// Waits until every record made before this call has been written (or failed).
    pub async fn flush(&self) {
        loop {
            let notified = self.flushed.notified();
            if self.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn write_loop(
    store: Arc<dyn RuntimeStore>,
    spacing: Duration,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    outstanding: Arc<AtomicU64>,
    flushed: Arc<Notify>,
) {
    let mut last_write: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        // At most one write per `spacing`; what arrives meanwhile joins this batch.
        if let Some(last) = last_write {
            tokio::time::sleep_until(last + spacing).await;
        }
        last_write = Some(Instant::now());
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        write(store.as_ref(), batch).await;
        outstanding.fetch_sub(count, Ordering::SeqCst);
        flushed.notify_waiters();
    }
}

/// Sums the batch per key and bucket and writes each sum with one reconcile, concurrently.
async fn write(store: &dyn RuntimeStore, batch: Vec<Pending>) {
    let mut sums: BTreeMap<(ProviderKey, u64), BTreeMap<Metric, f64>> = BTreeMap::new();
    for item in batch {
        let entry = sums.entry((item.key, item.bucket_start_ms)).or_default();
        for (metric, delta) in item.deltas {
            *entry.entry(metric).or_default() += delta;
        }
    }
    let writes = sums.into_iter().map(|((key, at_ms), deltas)| {
        let deltas: Vec<(Metric, f64)> = deltas.into_iter().filter(|(_, d)| *d != 0.0).collect();
        async move {
            if deltas.is_empty() {
                return;
            }
            let reservation = Reservation { key, at_ms, reserved: Vec::new() };
            if let Err(e) = store.reconcile(reservation, &deltas).await {
                tracing::error!(error = %e, "cannot record usage; the counts of this batch are lost");
            }
        }
    });
    join_all(writes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use truckllm_store::{MemoryStore, RuntimeStoreExt, Series};

    #[tokio::test]
    async fn records_are_summed_per_key_and_flushed_exactly() {
        let store: Arc<dyn RuntimeStore> = Arc::new(MemoryStore::new());
        let recorder = UsageRecorder::start(Arc::clone(&store), Duration::from_millis(10));
        let key = ProviderKey::new("p", "k").expect("key");
        let now = truckllm_store::Clock::now_ms(&truckllm_store::SystemClock);
        for _ in 0..500 {
            let reservation = Reservation {
                key: key.clone(),
                at_ms: now,
                reserved: vec![(Metric::Req, 1.0), (Metric::Tokens, 100.0)],
            };
            // The reservation already counted 1 request and 100 tokens; 30 were used.
            recorder.record(
                reservation,
                &[
                    (Metric::Req, 1.0),
                    (Metric::Tokens, 30.0),
                    (Metric::Latency, 2.0),
                ],
                1000,
            );
        }
        recorder.flush().await;
        let get = |m| {
            let store = Arc::clone(&store);
            async move {
                store
                    .get(&Series::new("p", "k", m).expect("series"))
                    .await
                    .expect("get")
            }
        };
        assert_eq!(
            get(Metric::Tokens).await,
            -35_000.0,
            "only the corrections were written"
        );
        assert_eq!(get(Metric::Latency).await, 1000.0);
        assert_eq!(get(Metric::Req).await, 0.0, "req matched its reservation");
    }

    /// How many reconcile calls reached the store behind `metrics`.
    fn reconciles(metrics: &metrics_exporter_prometheus::PrometheusHandle) -> u64 {
        metrics
            .render()
            .lines()
            .find(|l| {
                l.starts_with("storage_operation_duration_seconds_count{operation=\"reconcile\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    // Time is tokio's paused clock: the spacing is observed without sleeping for real.
    #[tokio::test(start_paused = true)]
    async fn writes_are_spaced_and_what_arrives_meanwhile_joins_one_write() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let store: Arc<dyn RuntimeStore> = Arc::new(
            truckllm_store::InstrumentedStore::with_recorder(MemoryStore::new(), &recorder),
        );
        let spacing = Duration::from_millis(50);
        let usage = UsageRecorder::start(Arc::clone(&store), spacing);
        let key = ProviderKey::new("p", "k").expect("key");
        let now = truckllm_store::Clock::now_ms(&truckllm_store::SystemClock);
        let settle = |tokens: f64| {
            let reservation = Reservation {
                key: key.clone(),
                at_ms: now,
                reserved: vec![(Metric::Tokens, 100.0)],
            };
            usage.record(reservation, &[(Metric::Tokens, tokens)], 1000);
        };
        let started = Instant::now();
        settle(40.0);
        usage.flush().await;
        assert_eq!(reconciles(&metrics), 1);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "an idle recorder writes at once"
        );

        for _ in 0..100 {
            settle(90.0);
        }
        usage.flush().await;
        assert_eq!(reconciles(&metrics), 2, "100 settlements, one write");
        assert!(started.elapsed() >= spacing, "not before the spacing");
        let tokens = Series::new("p", "k", Metric::Tokens).expect("series");
        assert_eq!(
            store.get(&tokens).await.expect("get"),
            -60.0 - 1000.0,
            "every correction counted once"
        );
    }
}
