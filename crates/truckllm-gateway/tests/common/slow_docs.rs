//! A runtime store whose document writes take a while: a memory store that waits before each
//! `put_doc`, so a test can see whether an answer is sent before what it names is stored.

use std::time::Duration;

use async_trait::async_trait;
use truckllm_store::store::Result;
use truckllm_store::{
    ConnectionStats, Increment, ListedSeries, MemoryStore, Metric, PeriodAdd, PeriodOutcome,
    PeriodRead, PeriodReserve, ProviderKey, Reservation, ReserveOutcome, ReserveRequest,
    RuntimeStore, Series, SeriesRollup, Windowing,
};

#[derive(Debug, Default)]
pub struct SlowDocWrites {
    inner: MemoryStore,
    pub delay: Duration,
}

impl SlowDocWrites {
    pub fn new(delay: Duration) -> Self {
        Self {
            inner: MemoryStore::new(),
            delay,
        }
    }
}

impl std::fmt::Display for SlowDocWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slow document writes over {}", self.inner)
    }
}

#[async_trait]
impl RuntimeStore for SlowDocWrites {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn windowing(&self) -> Windowing {
        self.inner.windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        self.inner.set(series, value).await
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        self.inner.get_many(series).await
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        self.inner.window_many(series, window).await
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        self.inner.increment_many(increments).await
    }
    async fn increment_many_once(&self, id: &str, increments: &[Increment]) -> Result<Vec<f64>> {
        self.inner.increment_many_once(id, increments).await
    }
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        self.inner.reserve_many(requests).await
    }
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        self.inner.reconcile(reservation, actual).await
    }
    async fn reconcile_once(
        &self,
        id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        self.inner.reconcile_once(id, reservation, actual).await
    }
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        self.inner.reserve_periods(request).await
    }
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        self.inner.add_to_periods(key, batch_id, adds).await
    }
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        self.inner.read_periods(key, reads).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        self.inner.list(prefix).await
    }
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        self.inner.rollups(prefix, since_ms).await
    }
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        tokio::time::sleep(self.delay).await;
        self.inner.put_doc(key, value, ttl).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get_doc(key).await
    }
    async fn delete_doc(&self, key: &str) -> Result<bool> {
        self.inner.delete_doc(key).await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    fn connection_stats(&self) -> ConnectionStats {
        self.inner.connection_stats()
    }
}
