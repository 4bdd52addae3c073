//! A wrapper that turns concurrent [`reserve`](crate::store::RuntimeStoreExt::reserve) calls
//! (each a `reserve_many` of one request) into shared
//! [`reserve_many`](RuntimeStore::reserve_many) calls.
//!
//! Every proxied request reserves before it calls its provider, so a busy gateway makes many
//! reserve calls at once: on Redis each is a round trip and a script run, and on two cores the
//! round trips (system calls, wake-ups) cost the gateway and Redis more than the work itself.
//! Here they queue, and what has queued goes down as one `reserve_many`: one round trip, and on
//! Redis one script run per provider key for the whole batch.
//!
//! - **No timer, no added wait when idle**: a call goes out at once while fewer than
//!   `max_in_flight` batches are in flight. Only calls that arrive while that many are in
//!   flight wait, and they leave together as soon as one batch returns.
//! - **Same decisions**: `reserve_many` decides in arrival order exactly as one `reserve` each
//!   would, so limits hold as before, across any number of instances.
//! - **Bad input fails alone**: each request is validated before it joins a batch.
//! - **Failures**: when a batch fails, each of its callers gets the error (what a lone call
//!   would have got). Batches run on their own tasks, so a caller that goes away (a client that
//!   disconnects) cancels nobody else's reservation; its own, if granted, stands at its estimate
//!   like any reservation that is never settled.
//!
//! A `reserve_many` of several requests is already a batch and goes straight through, as does
//! every other operation.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve};
use crate::series::ProviderKey;
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::series::{Metric, Series};
use crate::store::{
    ConnectionStats, Increment, ListedSeries, Reservation, ReserveOutcome, ReserveRequest, Result,
    RuntimeStore, SeriesRollup,
};
use crate::window::Windowing;

/// How reservations are batched.
#[derive(Debug, Clone, Copy)]
pub struct CoalescingOptions {
    /// Batches in flight at once; a call waits only when this many are.
    pub max_in_flight: usize,
    /// Most reservations in one batch.
    pub max_batch: usize,
}

impl Default for CoalescingOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 2,
            max_batch: 256,
        }
    }
}

type Reply = oneshot::Sender<Result<ReserveOutcome>>;

/// Reservations waiting for a batch, and how many batches are in flight.
#[derive(Default)]
struct Queue {
    waiting: Vec<(ReserveRequest, Reply)>,
    in_flight: usize,
}

struct Shared<S> {
    inner: S,
    options: CoalescingOptions,
    queue: Mutex<Queue>,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Batches concurrent reservations of any store.
pub struct CoalescingStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S: RuntimeStore + 'static> CoalescingStore<S> {
    pub fn new(inner: S, options: CoalescingOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner,
                options: CoalescingOptions {
                    max_in_flight: options.max_in_flight.max(1),
                    max_batch: options.max_batch.max(1),
                },
                queue: Mutex::new(Queue::default()),
            }),
        }
    }

    fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// Queues one reservation for the next batch, starting a driver if a place is free, and
    /// waits for its answer.
    async fn join_batch(&self, request: &ReserveRequest) -> Result<ReserveOutcome> {
        request.amounts(&self.inner().windowing())?;
        let (reply, answer) = oneshot::channel();
        let start_driver = {
            let mut queue = self.shared.lock();
            queue.waiting.push((request.clone(), reply));
            let free = queue.in_flight < self.shared.options.max_in_flight;
            if free {
                queue.in_flight += 1;
            }
            free
        };
        if start_driver {
            tokio::spawn(drive(Arc::clone(&self.shared)));
        }
        answer.await.map_err(|_| {
            StoreError::unavailable(
                self.backend(),
                "reserve",
                &"the batch carrying this reservation was lost",
            )
        })?
    }
}

/// Sends batches until the queue is empty. It holds one of the `max_in_flight` places, and
/// gives it back under the queue's lock when it finds the queue empty, so a call queued at any
/// moment is either taken by a running driver or starts its own.
async fn drive<S: RuntimeStore>(shared: Arc<Shared<S>>) {
    let mut place = Place {
        shared: &shared,
        held: true,
    };
    loop {
        let batch: Vec<(ReserveRequest, Reply)> = {
            let mut queue = shared.lock();
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
                place.held = false;
                return;
            }
            let take = queue.waiting.len().min(shared.options.max_batch);
            queue.waiting.drain(..take).collect()
        };
        let (requests, replies): (Vec<ReserveRequest>, Vec<Reply>) = batch.into_iter().unzip();
        let answers = match shared.inner.reserve_many(&requests).await {
            Ok(outcomes) if outcomes.len() == replies.len() => {
                outcomes.into_iter().map(Ok).collect()
            }
            Ok(outcomes) => {
                let e = StoreError::Protocol {
                    backend: shared.inner.backend(),
                    operation: "reserve_many",
                    detail: format!("{} answers to {} requests", outcomes.len(), replies.len()),
                };
                vec![Err(e); replies.len()]
            }
            Err(e) => vec![Err(e); replies.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// A driver's place among the `max_in_flight`; given back on drop if the driver ends early
/// (a panic in the inner store), so the wrapper never runs out of places.
struct Place<'a, S> {
    shared: &'a Shared<S>,
    held: bool,
}

impl<S> Drop for Place<'_, S> {
    fn drop(&mut self) {
        if self.held {
            self.shared.lock().in_flight -= 1;
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: RuntimeStore + 'static> RuntimeStore for CoalescingStore<S> {
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }
    fn windowing(&self) -> Windowing {
        self.inner().windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        self.inner().set(series, value).await
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        self.inner().get_many(series).await
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        self.inner().window_many(series, window).await
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        self.inner().increment_many(increments).await
    }
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        self.inner().increment_many_once(batch_id, increments).await
    }
    /// A lone reservation (what [`RuntimeStoreExt::reserve`] sends) joins the next batch (see
    /// the module doc); several are already a batch and are sent as they are.
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        match requests {
            [request] => self.join_batch(request).await.map(|outcome| vec![outcome]),
            _ => self.inner().reserve_many(requests).await,
        }
    }
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        self.inner().reconcile(reservation, actual).await
    }
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        self.inner()
            .reconcile_once(settle_id, reservation, actual)
            .await
    }
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        self.inner().reserve_periods(request).await
    }
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        self.inner().add_to_periods(key, batch_id, adds).await
    }
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        self.inner().read_periods(key, reads).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        self.inner().list(prefix).await
    }
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        self.inner().rollups(prefix, since_ms).await
    }
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.inner().put_doc(key, value, ttl).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner().get_doc(key).await
    }
    async fn delete_doc(&self, key: &str) -> Result<bool> {
        self.inner().delete_doc(key).await
    }
    async fn health(&self) -> Result<()> {
        self.inner().health().await
    }
    fn connection_stats(&self) -> ConnectionStats {
        self.inner().connection_stats()
    }
}

impl<S: fmt::Display> fmt::Display for CoalescingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Coalescing({})", self.shared.inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for CoalescingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoalescingStore")
            .field("inner", &self.shared.inner)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}
