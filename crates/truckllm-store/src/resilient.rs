//! A wrapper that keeps serving when the backend fails, and loses and double-counts nothing.
//!
//! Every call to the backend has a short timeout. When one fails with a backend fault
//! (connection refused, timeout, READONLY, LOADING, CLUSTERDOWN…), the store **degrades**: the
//! call, and every call after it, is served at once from an in-memory store, and every delta is
//! kept in a journal. An alert is raised (a `tracing` event at target `truckllm::alert`, and
//! the metric `truckllm_storage_degraded{backend}` = 1). A probe task checks the backend with
//! exponential backoff and jitter; when it answers, the journal is **replayed exactly once**:
//! it is cut into batches, each with an id fixed before its first attempt, and written with
//! [`RuntimeStore::increment_many_once`], which skips an id it has already applied. Writes the
//! backend may or may not have applied before failing keep the id they were sent with, so their
//! replay is skipped if they did land. Then the store is healthy again
//! (`truckllm_storage_degraded_seconds_total` counts the outage).
//!
//! Healthy writes also go through `increment_many_once` for that reason.
//!
//! **Limits during an outage** are a choice ([`OutageLimits`]): fail-open (every request is
//! admitted and counted), or a conservative share (each limit divided by the expected number
//! of instances, enforced in memory). A reservation sent to the backend carries an id; if it
//! times out, its fallback grant is journaled under that id, so the replay is skipped when the
//! backend had granted it after all. Reconciles are sent with an id too
//! ([`RuntimeStore::reconcile_once`], in the reservation's bucket), and journaled under it.
//!
//! **Budgets' period counters** ([`crate::period`]) follow the same rules. Adds are sent with
//! a batch id (the caller's, or a fresh one) and journaled under it when they fail, so the
//! replay ([`RuntimeStore::add_to_periods`] with that id) applies each exactly once. During an
//! outage a period reservation is decided in memory: fail-open grants it; a share checks each
//! limit divided by the expected instances against what this instance counted in memory for
//! that counter, which is what it granted and settled during outages (net of give-backs) while
//! the counter lives. With at most N (`instances`) instances sharing the backend, outage
//! spending of one period counter therefore stays within its limit in total, so the backend's count after the replay
//! is at most the limit plus what it held before the outage. Grants are journaled as adds and
//! replayed once; an add whose period has ended by then changes nothing. A period reservation
//! carries no id, so one that timed out at the backend but landed there is counted twice
//! after the replay: budgets over-count (deny early), never under-count.
//!
//! Reads during an outage see only what was written during it. Deltas replayed after an outage
//! land in the current window bucket, not the original one.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::period::{PeriodAdd, PeriodCheck, PeriodOutcome, PeriodRead, PeriodReserve, check_adds};
use crate::series::ProviderKey;
use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::memory::{DEFAULT_CAPACITY, MemoryStore};
use crate::series::{Metric, Series};
use crate::store::{
    ConnectionStats, Increment, LimitCheck, ListedSeries, Reservation, ReserveOutcome,
    ReserveRequest, Result, RuntimeStore, RuntimeStoreExt, SeriesRollup,
};
use crate::window::{StoreOptions, Windowing};

/// How limits are enforced while the backend is away.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutageLimits {
    /// Admit every request (and count it, for the replay).
    FailOpen,
    /// Enforce each limit divided by this many instances, in memory.
    Share { instances: u32 },
}

/// Timeouts, probing and replay settings.
#[derive(Debug, Clone)]
pub struct ResilientOptions {
    /// Longest wait for the backend before serving from memory.
    pub call_timeout: Duration,
    pub probe_min_delay: Duration,
    pub probe_max_delay: Duration,
    /// Increments per replayed batch.
    pub replay_batch: usize,
    pub limits: OutageLimits,
}

impl Default for ResilientOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(300),
            probe_min_delay: Duration::from_millis(100),
            probe_max_delay: Duration::from_secs(1),
            replay_batch: 256,
            limits: OutageLimits::FailOpen,
        }
    }
}

/// What must still reach the backend.
#[derive(Default)]
struct Journal {
    /// Batches with their ids, replayed in order: writes that failed (they may have landed),
    /// and outage deltas already cut into batches.
    batches: VecDeque<(String, Vec<Increment>)>,
    /// Deltas made while degraded, summed per series until the replay cuts them into batches.
    deltas: BTreeMap<Series, f64>,
    /// Last value `set` while degraded, per series.
    sets: BTreeMap<Series, f64>,
    /// Period adds (grants, settlements) with their ids, replayed in order with
    /// [`RuntimeStore::add_to_periods`].
    periods: VecDeque<PeriodBatch>,
}

/// Period adds of one key that must reach the backend, under a fixed batch id.
#[derive(Clone)]
struct PeriodBatch {
    id: String,
    key: ProviderKey,
    adds: Vec<PeriodAdd>,
}

/// The next thing the replay sends.
enum Next {
    Batch(String, Vec<Increment>),
    Period(PeriodBatch),
    Sets(BTreeMap<Series, f64>),
}

impl Journal {
    fn add(&mut self, increments: &[Increment]) {
        for inc in increments {
            *self.deltas.entry(inc.series.clone()).or_default() += inc.delta;
        }
    }
}

struct Shared<S> {
    inner: S,
    fallback: MemoryStore,
    options: ResilientOptions,
    degraded: AtomicBool,
    probing: AtomicBool,
    journal: Mutex<Journal>,
    since: Mutex<Option<Instant>>,
    id_prefix: String,
    next_id: AtomicU64,
    degraded_gauge: metrics::Gauge,
    degraded_seconds: metrics::Counter,
    replayed: metrics::Counter,
    /// Increments replayed since the outage began.
    replayed_in_outage: AtomicU64,
    events: tokio::sync::broadcast::Sender<StorageEvent>,
}

/// A change of the wrapper's state, for alerting.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageEvent {
    /// The backend failed; calls are served from memory.
    Degraded {
        backend: &'static str,
        operation: String,
        reason: String,
    },
    /// The backend answers again and the journal has been replayed.
    Recovered {
        backend: &'static str,
        outage_seconds: f64,
        replayed_increments: u64,
    },
}

/// Serves from memory while the inner store fails; replays exactly once when it is back.
pub struct ResilientStore<S> {
    shared: Arc<Shared<S>>,
}

impl<S: RuntimeStore + 'static> ResilientStore<S> {
    /// Wraps `inner`; the fallback memory store shares `fallback_options` (its clock, TTL and
    /// windowing should match the inner store's).
    pub fn new(inner: S, fallback_options: StoreOptions, options: ResilientOptions) -> Self {
        let backend = inner.backend();
        Self {
            shared: Arc::new(Shared {
                fallback: MemoryStore::with_options(fallback_options, DEFAULT_CAPACITY),
                options,
                degraded: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                journal: Mutex::new(Journal::default()),
                since: Mutex::new(None),
                id_prefix: format!("r{:016x}", RandomState::new().build_hasher().finish()),
                next_id: AtomicU64::new(0),
                degraded_gauge: metrics::gauge!("truckllm_storage_degraded", "backend" => backend),
                degraded_seconds: metrics::counter!("truckllm_storage_degraded_seconds_total", "backend" => backend),
                replayed: metrics::counter!("truckllm_storage_replayed_increments_total", "backend" => backend),
                replayed_in_outage: AtomicU64::new(0),
                events: tokio::sync::broadcast::channel(64).0,
                inner,
            }),
        }
    }

    /// Degraded and recovered events from now on (the alerts of the logging store).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StorageEvent> {
        self.shared.events.subscribe()
    }

    /// True while calls are served from memory.
    pub fn is_degraded(&self) -> bool {
        self.shared.degraded.load(Ordering::SeqCst)
    }

    /// Deltas and batches waiting for the backend.
    pub fn journal_len(&self) -> usize {
        let j = self.shared.lock_journal();
        j.batches.iter().map(|(_, b)| b.len()).sum::<usize>()
            + j.deltas.len()
            + j.sets.len()
            + j.periods.iter().map(|b| b.adds.len()).sum::<usize>()
    }

    fn new_id(&self) -> String {
        self.shared.new_id()
    }

    /// Runs `call` on the backend with the timeout; `Ok(None)` means it failed with a backend
    /// fault and the store is now degraded.
    async fn try_inner<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        match tokio::time::timeout(self.shared.options.call_timeout, call).await {
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(e)) if !e.is_retryable() => Err(e),
            Ok(Err(e)) => {
                self.degrade(operation, &e.to_string());
                Ok(None)
            }
            Err(_) => {
                self.degrade(operation, "timed out");
                Ok(None)
            }
        }
    }

    fn degrade(&self, operation: &str, reason: &str) {
        let shared = &self.shared;
        if !shared.degraded.swap(true, Ordering::SeqCst) {
            *shared.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            shared.degraded_gauge.set(1.0);
            shared.replayed_in_outage.store(0, Ordering::SeqCst);
            tracing::error!(target: "truckllm::alert", backend = shared.inner.backend(), operation, reason, "storage degraded: serving from memory and journaling deltas");
            let _ = shared.events.send(StorageEvent::Degraded {
                backend: shared.inner.backend(),
                operation: operation.to_owned(),
                reason: reason.to_owned(),
            });
        }
        if !shared.probing.swap(true, Ordering::SeqCst) {
            tokio::spawn(probe_and_replay(Arc::clone(shared)));
        }
    }

    /// Writes increments: to the backend with an id, or to memory and the journal.
    async fn write(&self, batch_id: String, increments: &[Increment]) -> Result<Vec<f64>> {
        crate::store::check_increments(increments)?;
        if !self.is_degraded() {
            let call = self.shared.inner.increment_many_once(&batch_id, increments);
            if let Some(values) = self.try_inner("increment", call).await? {
                return Ok(values);
            }
            // It may have landed: keep its id so the replay skips it if so.
            self.shared
                .lock_journal()
                .batches
                .push_back((batch_id.clone(), increments.to_vec()));
            return self
                .shared
                .fallback
                .increment_many_once(&batch_id, increments)
                .await;
        }
        {
            let mut journal = self.shared.lock_journal();
            if !self.is_degraded() {
                drop(journal);
                return Box::pin(self.write(batch_id, increments)).await;
            }
            journal.add(increments);
        }
        self.shared.fallback.increment_many(increments).await
    }

    /// Reserves in memory according to [`OutageLimits`], journaling what is granted: under
    /// `journal_id` if the backend may have granted it already (its replay is then skipped if
    /// it did), else summed with the outage's other deltas.
    async fn reserve_in_memory(
        &self,
        request: &ReserveRequest,
        journal_id: Option<String>,
    ) -> Result<ReserveOutcome> {
        let amounts = request.amounts(&self.shared.fallback.windowing())?;
        let outcome = match self.shared.options.limits {
            OutageLimits::FailOpen => {
                let increments: Vec<Increment> = amounts
                    .iter()
                    .map(|(m, a)| Increment::new(request.key.series(*m), *a))
                    .collect();
                self.shared.fallback.increment_many(&increments).await?;
                ReserveOutcome::Granted(Reservation {
                    key: request.key.clone(),
                    at_ms: self.shared.fallback_now(),
                    reserved: amounts.clone(),
                })
            }
            OutageLimits::Share { instances } => {
                let checks: Vec<LimitCheck> = request
                    .checks
                    .iter()
                    .map(|c| LimitCheck {
                        limit: c.limit / f64::from(instances.max(1)),
                        ..c.clone()
                    })
                    .collect();
                self.shared
                    .fallback
                    .reserve(&ReserveRequest {
                        key: request.key.clone(),
                        checks,
                        id: None,
                    })
                    .await?
            }
        };
        if let ReserveOutcome::Granted(r) = &outcome {
            let increments: Vec<Increment> = r
                .reserved
                .iter()
                .map(|(m, a)| Increment::new(r.key.series(*m), *a))
                .collect();
            let mut journal = self.shared.lock_journal();
            match journal_id {
                Some(id) => journal.batches.push_back((id, increments)),
                None => journal.add(&increments),
            }
        }
        Ok(outcome)
    }
}

impl<S: RuntimeStore + 'static> ResilientStore<S> {
    /// Decides a period reservation in memory according to [`OutageLimits`]; a grant is added
    /// to the fallback's counters and journaled.
    async fn reserve_periods_in_memory(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        let fallback = &self.shared.fallback;
        let outcome = match self.shared.options.limits {
            OutageLimits::FailOpen => {
                request.validate(fallback.expiry_now_ms())?;
                fallback
                    .add_to_periods(&request.key, None, &grants(request))
                    .await?;
                PeriodOutcome::Granted
            }
            OutageLimits::Share { instances } => {
                let share = PeriodReserve {
                    key: request.key.clone(),
                    checks: request
                        .checks
                        .iter()
                        .map(|c| PeriodCheck {
                            limit: c.limit / f64::from(instances.max(1)),
                            ..c.clone()
                        })
                        .collect(),
                };
                fallback.reserve_periods(&share).await?
            }
        };
        if outcome == PeriodOutcome::Granted {
            let id = self.new_id();
            if !self.journal_periods(&id, &request.key, grants(request)) {
                // The backend is back and the journal replayed: send the grant there.
                self.add_to_periods(&request.key, Some(&id), &grants(request))
                    .await?;
            }
        }
        Ok(outcome)
    }

    /// Journals period adds, if the store is still degraded (checked under the journal's
    /// lock, which the replay holds when it declares the store healthy); false if not, and
    /// the adds must go to the backend.
    fn journal_periods(&self, id: &str, key: &ProviderKey, adds: Vec<PeriodAdd>) -> bool {
        let mut journal = self.shared.lock_journal();
        if !self.is_degraded() {
            return false;
        }
        journal.periods.push_back(PeriodBatch {
            id: id.to_owned(),
            key: key.clone(),
            adds,
        });
        true
    }
}

/// A granted reservation's amounts, as adds to its write counters.
fn grants(request: &PeriodReserve) -> Vec<PeriodAdd> {
    request
        .checks
        .iter()
        .map(|c| PeriodAdd {
            metric: c.metric,
            counter: c.write.clone(),
            delta: c.amount,
        })
        .collect()
}

impl<S> Shared<S> {
    fn lock_journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_id(&self) -> String {
        format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn fallback_now(&self) -> u64 {
        self.fallback.now_ms()
    }
}

/// Probes the backend with backoff until it answers and the journal is replayed.
async fn probe_and_replay<S: RuntimeStore + 'static>(shared: Arc<Shared<S>>) {
    let mut delays = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(shared.options.probe_min_delay)
        .with_max_delay(shared.options.probe_max_delay)
        .without_max_times()
        .build();
    loop {
        tokio::time::sleep(delays.next().unwrap_or(shared.options.probe_max_delay)).await;
        let healthy =
            tokio::time::timeout(shared.options.call_timeout, shared.inner.health()).await;
        if !matches!(healthy, Ok(Ok(()))) {
            continue;
        }
        if replay(&shared).await {
            break;
        }
    }
    shared.probing.store(false, Ordering::SeqCst);
}

/// Replays the journal; true when it is empty and the store is healthy again.
async fn replay<S: RuntimeStore>(shared: &Shared<S>) -> bool {
    loop {
        let next = {
            let mut journal = shared.lock_journal();
            cut_batches(shared, &mut journal);
            if journal.batches.is_empty() && journal.sets.is_empty() && journal.periods.is_empty() {
                // Nothing left, and writers check the flag under this lock: none is stranded.
                shared.degraded.store(false, Ordering::SeqCst);
                drop(journal);
                recovered(shared);
                return true;
            }
            if let Some((id, increments)) = journal.batches.front().cloned() {
                Next::Batch(id, increments)
            } else if let Some(batch) = journal.periods.front().cloned() {
                Next::Period(batch)
            } else {
                Next::Sets(std::mem::take(&mut journal.sets))
            }
        };
        let sent = match next {
            Next::Batch(id, increments) => replay_batch(shared, id, increments).await,
            Next::Period(batch) => replay_periods(shared, batch).await,
            Next::Sets(sets) => replay_sets(shared, sets).await,
        };
        if !sent {
            return false;
        }
    }
}

/// Sends one journaled batch; false if the backend failed (the batch stays).
async fn replay_batch<S: RuntimeStore>(
    shared: &Shared<S>,
    id: String,
    increments: Vec<Increment>,
) -> bool {
    let call = shared.inner.increment_many_once(&id, &increments);
    match tokio::time::timeout(shared.options.call_timeout, call).await {
        Ok(Ok(_)) => {
            shared.replayed.increment(increments.len() as u64);
            shared
                .replayed_in_outage
                .fetch_add(increments.len() as u64, Ordering::SeqCst);
            let mut journal = shared.lock_journal();
            if journal
                .batches
                .front()
                .is_some_and(|(front, _)| *front == id)
            {
                journal.batches.pop_front();
            }
            true
        }
        Ok(Err(e)) if !e.is_retryable() => {
            tracing::error!(target: "truckllm::alert", error = %e, "dropping a journal batch the backend refuses");
            shared.lock_journal().batches.pop_front();
            true
        }
        _ => false,
    }
}

/// Sends one journaled batch of period adds under its id; false if the backend failed.
async fn replay_periods<S: RuntimeStore>(shared: &Shared<S>, batch: PeriodBatch) -> bool {
    let call = shared
        .inner
        .add_to_periods(&batch.key, Some(&batch.id), &batch.adds);
    let pop = |shared: &Shared<S>| {
        let mut journal = shared.lock_journal();
        if journal.periods.front().is_some_and(|b| b.id == batch.id) {
            journal.periods.pop_front();
        }
    };
    match tokio::time::timeout(shared.options.call_timeout, call).await {
        Ok(Ok(())) => {
            shared.replayed.increment(batch.adds.len() as u64);
            shared
                .replayed_in_outage
                .fetch_add(batch.adds.len() as u64, Ordering::SeqCst);
            pop(shared);
            true
        }
        Ok(Err(e)) if !e.is_retryable() => {
            tracing::error!(target: "truckllm::alert", error = %e, "dropping journaled period adds the backend refuses");
            pop(shared);
            true
        }
        _ => false,
    }
}

/// Sends the values `set` during the outage; false (and they are kept) if the backend failed.
async fn replay_sets<S: RuntimeStore>(shared: &Shared<S>, sets: BTreeMap<Series, f64>) -> bool {
    for (series, value) in &sets {
        if shared.inner.set(series, *value).await.is_err() {
            shared.lock_journal().sets.extend(sets.clone());
            return false;
        }
    }
    true
}

/// Cuts the summed outage deltas into batches with fixed ids.
fn cut_batches<S>(shared: &Shared<S>, journal: &mut Journal) {
    if journal.deltas.is_empty() {
        return;
    }
    let deltas: Vec<Increment> = std::mem::take(&mut journal.deltas)
        .into_iter()
        .filter(|(_, d)| *d != 0.0)
        .map(|(series, delta)| Increment::new(series, delta))
        .collect();
    for chunk in deltas.chunks(shared.options.replay_batch.max(1)) {
        journal.batches.push_back((shared.new_id(), chunk.to_vec()));
    }
}

fn recovered<S: RuntimeStore>(shared: &Shared<S>) {
    let outage = shared
        .since
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let seconds = outage.map_or(0.0, |since| since.elapsed().as_secs_f64());
    shared.degraded_seconds.increment(seconds.ceil() as u64);
    shared.degraded_gauge.set(0.0);
    tracing::warn!(target: "truckllm::alert", backend = shared.inner.backend(), outage_seconds = seconds, "storage recovered: journal replayed");
    let _ = shared.events.send(StorageEvent::Recovered {
        backend: shared.inner.backend(),
        outage_seconds: seconds,
        replayed_increments: shared.replayed_in_outage.load(Ordering::SeqCst),
    });
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: RuntimeStore + 'static> RuntimeStore for ResilientStore<S> {
    fn backend(&self) -> &'static str {
        self.shared.inner.backend()
    }
    fn windowing(&self) -> Windowing {
        self.shared.inner.windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        crate::series::check_value("value", value)?;
        if !self.is_degraded()
            && self
                .try_inner("set", self.shared.inner.set(series, value))
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.shared
            .lock_journal()
            .sets
            .insert(series.clone(), value);
        self.shared.fallback.set(series, value).await
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        if !self.is_degraded()
            && let Some(v) = self
                .try_inner("get_many", self.shared.inner.get_many(series))
                .await?
        {
            return Ok(v);
        }
        self.shared.fallback.get_many(series).await
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        if !self.is_degraded()
            && let Some(v) = self
                .try_inner("window_many", self.shared.inner.window_many(series, window))
                .await?
        {
            return Ok(v);
        }
        self.shared.fallback.window_many(series, window).await
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        self.write(self.new_id(), increments).await
    }
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        crate::store::check_batch_id(batch_id)?;
        if self.is_degraded() {
            // The caller's id must reach the backend, so this batch keeps it.
            crate::store::check_increments(increments)?;
            self.shared
                .lock_journal()
                .batches
                .push_back((batch_id.to_owned(), increments.to_vec()));
            return self
                .shared
                .fallback
                .increment_many_once(batch_id, increments)
                .await;
        }
        self.write(batch_id.to_owned(), increments).await
    }
    /// Each request carries an id (its own, or a fresh one), so the replay of any fallback
    /// grant is skipped if the backend granted that request too.
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        let windowing = self.shared.fallback.windowing();
        for request in requests {
            request.amounts(&windowing)?;
        }
        if self.is_degraded() {
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                outcomes.push(self.reserve_in_memory(request, None).await?);
            }
            return Ok(outcomes);
        }
        let with_ids: Vec<ReserveRequest> = requests
            .iter()
            .map(|r| ReserveRequest {
                id: Some(r.id.clone().unwrap_or_else(|| self.new_id())),
                ..r.clone()
            })
            .collect();
        if let Some(outcomes) = self
            .try_inner("reserve_many", self.shared.inner.reserve_many(&with_ids))
            .await?
        {
            return Ok(outcomes);
        }
        // The call may have landed: each grant is journaled under its request's id.
        let mut outcomes = Vec::with_capacity(requests.len());
        for (request, with_id) in requests.iter().zip(&with_ids) {
            outcomes.push(self.reserve_in_memory(request, with_id.id.clone()).await?);
        }
        Ok(outcomes)
    }
    /// Sent as [`reconcile_once`](RuntimeStore::reconcile_once) with a fresh id, so a
    /// settlement that timed out but landed is not applied again by the replay.
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        self.reconcile_once(&self.new_id(), reservation, actual)
            .await
    }
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        crate::store::check_batch_id(settle_id)?;
        let deltas = reservation.deltas(actual)?;
        if deltas.is_empty() {
            return Ok(());
        }
        let increments: Vec<Increment> = deltas
            .iter()
            .map(|(m, d)| Increment::new(reservation.key.series(*m), *d))
            .collect();
        if self.is_degraded() {
            // The backend never saw it: summed with the outage's other deltas.
            return self.write(self.new_id(), &increments).await.map(drop);
        }
        let call = self
            .shared
            .inner
            .reconcile_once(settle_id, reservation.clone(), actual);
        if self.try_inner("reconcile", call).await?.is_some() {
            return Ok(());
        }
        // It may have landed: its replay carries the same id and is skipped if so.
        self.shared
            .lock_journal()
            .batches
            .push_back((settle_id.to_owned(), increments));
        self.shared.fallback.reconcile(reservation, actual).await
    }
    /// Sent to the backend as is; decided in memory during an outage (see the module doc).
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        if !self.is_degraded()
            && let Some(outcome) = self
                .try_inner(
                    "reserve_periods",
                    self.shared.inner.reserve_periods(request),
                )
                .await?
        {
            return Ok(outcome);
        }
        self.reserve_periods_in_memory(request).await
    }
    /// Sent with the caller's batch id or a fresh one, and journaled under it when the
    /// backend fails, so the replay applies it exactly once.
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        check_adds(batch_id, adds)?;
        let id = batch_id.map_or_else(|| self.new_id(), str::to_owned);
        if !self.is_degraded() {
            let call = self.shared.inner.add_to_periods(key, Some(&id), adds);
            if self.try_inner("add_to_periods", call).await?.is_some() {
                return Ok(());
            }
        }
        if !self.journal_periods(&id, key, adds.to_vec()) {
            return Box::pin(self.add_to_periods(key, Some(&id), adds)).await;
        }
        self.shared
            .fallback
            .add_to_periods(key, Some(&id), adds)
            .await
    }
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        if !self.is_degraded()
            && let Some(v) = self
                .try_inner("read_periods", self.shared.inner.read_periods(key, reads))
                .await?
        {
            return Ok(v);
        }
        self.shared.fallback.read_periods(key, reads).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        if !self.is_degraded()
            && let Some(v) = self
                .try_inner("list", self.shared.inner.list(prefix))
                .await?
        {
            return Ok(v);
        }
        self.shared.fallback.list(prefix).await
    }
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        if !self.is_degraded()
            && let Some(v) = self
                .try_inner("rollups", self.shared.inner.rollups(prefix, since_ms))
                .await?
        {
            return Ok(v);
        }
        self.shared.fallback.rollups(prefix, since_ms).await
    }
    /// Documents go to the backend only: a conversation kept in one instance's memory during
    /// an outage would be missing on the others, so an outage fails these calls.
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.shared.inner.put_doc(key, value, ttl).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.shared.inner.get_doc(key).await
    }
    async fn delete_doc(&self, key: &str) -> Result<bool> {
        self.shared.inner.delete_doc(key).await
    }
    /// The backend's own health, so readiness shows an outage even while calls are served.
    async fn health(&self) -> Result<()> {
        self.shared.inner.health().await
    }
    fn connection_stats(&self) -> ConnectionStats {
        self.shared.inner.connection_stats()
    }
}

impl<S: fmt::Display> fmt::Display for ResilientStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resilient({})", self.shared.inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for ResilientStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientStore")
            .field("inner", &self.shared.inner)
            .field("degraded", &self.shared.degraded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
