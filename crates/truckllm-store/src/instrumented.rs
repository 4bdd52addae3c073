//! A wrapper that exports the seed's storage metrics for any store:
//!
//! - `storage_operation_duration_seconds{operation,backend}` (histogram); `operation` is the
//!   [`RuntimeStore`] method, except that a batch of one is named by its single form, as the
//!   seed names it: `get`, `increment`, `window` or `reserve` (what
//!   [`RuntimeStoreExt`](crate::store::RuntimeStoreExt) sends), so the seed's
//!   `operation="get"` is what a single read shows
//! - `storage_errors_total{backend,operation}`: backend faults only; a caller's bad input is
//!   not a storage error
//! - `storage_connections_active{backend}` / `storage_connections_idle{backend}`, sampled
//!   after every operation
//!
//! Handles are registered once, at construction, so the hot path only records into atomics.
//! Labels are operation and backend names, never keys or secrets.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve};
use crate::series::ProviderKey;
use async_trait::async_trait;
use metrics::{Counter, Gauge, Histogram, Recorder};

use crate::series::{Metric, Series};
use crate::store::{
    ConnectionStats, Increment, ListedSeries, Reservation, ReserveOutcome, ReserveRequest, Result,
    RuntimeStore, SeriesRollup,
};
use crate::window::Windowing;

/// Name of the operation-latency histogram; give it buckets when installing the exporter.
pub const DURATION_METRIC: &str = "storage_operation_duration_seconds";
pub const ERRORS_METRIC: &str = "storage_errors_total";
pub const ACTIVE_METRIC: &str = "storage_connections_active";
pub const IDLE_METRIC: &str = "storage_connections_idle";

/// Histogram buckets (seconds) suited to store calls: 50 µs to 2.5 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// The operations timed, one per [`RuntimeStore`] method, plus the single forms of
/// [`RuntimeStoreExt`](crate::store::RuntimeStoreExt): a batch of one is counted as one.
#[derive(Debug, Clone, Copy)]
enum Op {
    Set,
    Get,
    Window,
    Increment,
    Reserve,
    GetMany,
    WindowMany,
    IncrementMany,
    IncrementManyOnce,
    ReserveMany,
    Reconcile,
    ReconcileOnce,
    ReservePeriods,
    AddToPeriods,
    ReadPeriods,
    List,
    Rollups,
    PutDoc,
    GetDoc,
    DeleteDoc,
    Health,
}

impl Op {
    const ALL: [Op; 21] = [
        Op::Set,
        Op::Get,
        Op::Window,
        Op::Increment,
        Op::Reserve,
        Op::GetMany,
        Op::WindowMany,
        Op::IncrementMany,
        Op::IncrementManyOnce,
        Op::ReserveMany,
        Op::Reconcile,
        Op::ReconcileOnce,
        Op::ReservePeriods,
        Op::AddToPeriods,
        Op::ReadPeriods,
        Op::List,
        Op::Rollups,
        Op::PutDoc,
        Op::GetDoc,
        Op::DeleteDoc,
        Op::Health,
    ];

    /// `single` for a batch of one item, else `batch`.
    fn by_len(len: usize, single: Op, batch: Op) -> Op {
        if len == 1 { single } else { batch }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
            Op::Window => "window",
            Op::Increment => "increment",
            Op::Reserve => "reserve",
            Op::GetMany => "get_many",
            Op::WindowMany => "window_many",
            Op::IncrementMany => "increment_many",
            Op::IncrementManyOnce => "increment_many_once",
            Op::ReserveMany => "reserve_many",
            Op::Reconcile => "reconcile",
            Op::ReconcileOnce => "reconcile_once",
            Op::ReservePeriods => "reserve_periods",
            Op::AddToPeriods => "add_to_periods",
            Op::ReadPeriods => "read_periods",
            Op::List => "list",
            Op::Rollups => "rollups",
            Op::PutDoc => "put_doc",
            Op::GetDoc => "get_doc",
            Op::DeleteDoc => "delete_doc",
            Op::Health => "health",
        }
    }
}

struct Handles {
    durations: Vec<Histogram>,
    errors: Vec<Counter>,
    active: Gauge,
    idle: Gauge,
}

impl Handles {
    fn register(backend: &'static str) -> Self {
        Self {
            durations: Op::ALL
                .iter()
                .map(|op| metrics::histogram!(DURATION_METRIC, "operation" => op.name(), "backend" => backend))
                .collect(),
            errors: Op::ALL
                .iter()
                .map(|op| metrics::counter!(ERRORS_METRIC, "backend" => backend, "operation" => op.name()))
                .collect(),
            active: metrics::gauge!(ACTIVE_METRIC, "backend" => backend),
            idle: metrics::gauge!(IDLE_METRIC, "backend" => backend),
        }
    }
}

/// Records the seed's storage metrics around every call of the inner store.
pub struct InstrumentedStore<S> {
    inner: S,
    handles: Handles,
}

impl<S: RuntimeStore> InstrumentedStore<S> {
    /// Wraps `inner`, registering its metrics with the global recorder.
    pub fn new(inner: S) -> Self {
        let handles = Handles::register(inner.backend());
        Self { inner, handles }
    }

    /// Wraps `inner`, registering its metrics with `recorder` (tests, embedded exporters).
    pub fn with_recorder(inner: S, recorder: &dyn Recorder) -> Self {
        let backend = inner.backend();
        let handles = metrics::with_local_recorder(recorder, || Handles::register(backend));
        Self { inner, handles }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn observe<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.handles.durations[op as usize].record(started.elapsed().as_secs_f64());
        if let Err(e) = &result
            && !e.is_caller_fault()
        {
            self.handles.errors[op as usize].increment(1);
        }
        let stats = self.inner.connection_stats();
        self.handles.active.set(stats.active as f64);
        self.handles.idle.set(stats.idle as f64);
        result
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: RuntimeStore> RuntimeStore for InstrumentedStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn windowing(&self) -> Windowing {
        self.inner.windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        self.observe(Op::Set, self.inner.set(series, value)).await
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        self.observe(
            Op::by_len(series.len(), Op::Get, Op::GetMany),
            self.inner.get_many(series),
        )
        .await
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        self.observe(
            Op::by_len(series.len(), Op::Window, Op::WindowMany),
            self.inner.window_many(series, window),
        )
        .await
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        self.observe(
            Op::by_len(increments.len(), Op::Increment, Op::IncrementMany),
            self.inner.increment_many(increments),
        )
        .await
    }
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        self.observe(
            Op::IncrementManyOnce,
            self.inner.increment_many_once(batch_id, increments),
        )
        .await
    }
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        self.observe(
            Op::by_len(requests.len(), Op::Reserve, Op::ReserveMany),
            self.inner.reserve_many(requests),
        )
        .await
    }
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        self.observe(Op::Reconcile, self.inner.reconcile(reservation, actual))
            .await
    }
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        self.observe(
            Op::ReconcileOnce,
            self.inner.reconcile_once(settle_id, reservation, actual),
        )
        .await
    }
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        self.observe(Op::ReservePeriods, self.inner.reserve_periods(request))
            .await
    }
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        self.observe(
            Op::AddToPeriods,
            self.inner.add_to_periods(key, batch_id, adds),
        )
        .await
    }
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        self.observe(Op::ReadPeriods, self.inner.read_periods(key, reads))
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        self.observe(Op::List, self.inner.list(prefix)).await
    }
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        self.observe(Op::Rollups, self.inner.rollups(prefix, since_ms))
            .await
    }
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.observe(Op::PutDoc, self.inner.put_doc(key, value, ttl))
            .await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.observe(Op::GetDoc, self.inner.get_doc(key)).await
    }
    async fn delete_doc(&self, key: &str) -> Result<bool> {
        self.observe(Op::DeleteDoc, self.inner.delete_doc(key))
            .await
    }
    async fn health(&self) -> Result<()> {
        self.observe(Op::Health, self.inner.health()).await
    }
    fn connection_stats(&self) -> ConnectionStats {
        self.inner.connection_stats()
    }
}

impl<S: fmt::Display> fmt::Display for InstrumentedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for InstrumentedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
