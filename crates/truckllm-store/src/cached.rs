//! A wrapper that serves hot reads (counters, window sums: the balancer's snapshot, cooldowns)
//! from a bounded in-process cache.
//!
//! - **Bounded**: at most `capacity` series are cached (S3-FIFO eviction, `quick_cache`).
//! - **Fresh**: a cached value is used only while it is younger than `max_age`, both by the
//!   store's clock and by real time (stores may expire by either), and, for windows, only
//!   within the window bucket it was read in, so a window never reads stale across a bucket
//!   boundary. Other instances' writes are seen within `max_age`.
//! - **Write-through**: writes go straight to the inner store, and drop the series from the
//!   cache (a value returned by a write is not cached: concurrent writes complete in any
//!   order). A read racing a write may cache the value from before it, for at most `max_age`,
//!   as with other instances' writes.
//! - **Hit rate**: `truckllm_store_cache_hits_total{backend}`,
//!   `truckllm_store_cache_misses_total{backend}` and `truckllm_store_cache_hit_ratio{backend}`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve};
use crate::series::ProviderKey;
use async_trait::async_trait;
use quick_cache::sync::Cache;

use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::series::{Metric, Series};
use crate::store::{
    ConnectionStats, Increment, ListedSeries, Reservation, ReserveOutcome, ReserveRequest, Result,
    RuntimeStore, SeriesRollup,
};
use crate::window::{Windowing, duration_ms};

/// When a value was read: by the store's clock (ms) and by real time.
#[derive(Debug, Clone, Copy)]
struct ReadAt {
    store_ms: u64,
    real: Instant,
}

/// What one series has cached.
#[derive(Debug, Clone, Default)]
struct Entry {
    counter: Option<(f64, ReadAt)>,
    /// Window sums: (window ms, value, read at).
    windows: Vec<(u64, f64, ReadAt)>,
}

/// Caches hot reads of any store.
pub struct CachedStore<S> {
    inner: S,
    cache: Cache<Series, Arc<Entry>>,
    clock: SharedClock,
    max_age_ms: u64,
    hits: metrics::Counter,
    misses: metrics::Counter,
    ratio: metrics::Gauge,
    hit_count: AtomicU64,
    lookups: AtomicU64,
}

impl<S: RuntimeStore> CachedStore<S> {
    /// Caches up to `capacity` series for at most `max_age`, judged by `clock` (the inner
    /// store's clock).
    pub fn new(inner: S, capacity: usize, max_age: Duration, clock: SharedClock) -> Self {
        let backend = inner.backend();
        Self {
            cache: Cache::new(capacity.max(1)),
            clock,
            max_age_ms: duration_ms(max_age),
            hits: metrics::counter!("truckllm_store_cache_hits_total", "backend" => backend),
            misses: metrics::counter!("truckllm_store_cache_misses_total", "backend" => backend),
            ratio: metrics::gauge!("truckllm_store_cache_hit_ratio", "backend" => backend),
            hit_count: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            inner,
        }
    }

    /// Series currently cached.
    pub fn cached_len(&self) -> usize {
        self.cache.len()
    }

    /// Hits and lookups so far.
    pub fn hit_stats(&self) -> (u64, u64) {
        (
            self.hit_count.load(Ordering::Relaxed),
            self.lookups.load(Ordering::Relaxed),
        )
    }

    fn count(&self, hit: bool) {
        let lookups = self.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        let hits = if hit {
            self.hits.increment(1);
            self.hit_count.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.misses.increment(1);
            self.hit_count.load(Ordering::Relaxed)
        };
        self.ratio.set(hits as f64 / lookups as f64);
    }

    fn fresh(&self, read_at: ReadAt, now: u64) -> bool {
        now.saturating_sub(read_at.store_ms) < self.max_age_ms
            && duration_ms(read_at.real.elapsed()) < self.max_age_ms
    }

    fn read_at(now: u64) -> ReadAt {
        ReadAt {
            store_ms: now,
            real: Instant::now(),
        }
    }

    fn cached_counter(&self, series: &Series, now: u64) -> Option<f64> {
        let entry = self.cache.get(series)?;
        entry
            .counter
            .filter(|(_, at)| self.fresh(*at, now))
            .map(|(v, _)| v)
    }

    fn cached_window(&self, series: &Series, window_ms: u64, now: u64) -> Option<f64> {
        let w = self.inner.windowing();
        let entry = self.cache.get(series)?;
        entry
            .windows
            .iter()
            .find(|(ms, _, at)| {
                *ms == window_ms
                    && self.fresh(*at, now)
                    && w.bucket_index(at.store_ms) == w.bucket_index(now)
            })
            .map(|(_, v, _)| *v)
    }

    fn store_counter(&self, series: &Series, value: f64, now: u64) {
        let windows = self
            .cache
            .get(series)
            .map(|e| e.windows.clone())
            .unwrap_or_default();
        let counter = Some((value, Self::read_at(now)));
        self.cache
            .insert(series.clone(), Arc::new(Entry { counter, windows }));
    }

    fn store_window(&self, series: &Series, window_ms: u64, value: f64, now: u64) {
        let mut entry = self
            .cache
            .get(series)
            .map(|e| (*e).clone())
            .unwrap_or_default();
        entry.windows.retain(|(ms, _, _)| *ms != window_ms);
        entry.windows.push((window_ms, value, Self::read_at(now)));
        self.cache.insert(series.clone(), Arc::new(entry));
    }

    /// After a write to `series`.
    fn written(&self, series: &Series) {
        self.cache.remove(series);
    }

    /// The inner store's answers to `asked` series, if it gave one each.
    fn one_each(
        &self,
        operation: &'static str,
        answers: Vec<f64>,
        asked: usize,
    ) -> Result<std::vec::IntoIter<f64>> {
        if answers.len() != asked {
            return Err(StoreError::Protocol {
                backend: self.inner.backend(),
                operation,
                detail: format!("{} answers to {asked} series", answers.len()),
            });
        }
        Ok(answers.into_iter())
    }

    fn forget_key(&self, key: &crate::series::ProviderKey) {
        for metric in Metric::ALL {
            self.written(&key.series(metric));
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: RuntimeStore> RuntimeStore for CachedStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn windowing(&self) -> Windowing {
        self.inner.windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        self.inner.set(series, value).await?;
        self.written(series);
        Ok(())
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        let now = self.clock.now_ms();
        let mut values: Vec<Option<f64>> =
            series.iter().map(|s| self.cached_counter(s, now)).collect();
        let missing: Vec<Series> = series
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        for v in &values {
            self.count(v.is_some());
        }
        if !missing.is_empty() {
            let fetched = self.inner.get_many(&missing).await?;
            let mut fetched = self.one_each("get_many", fetched, missing.len())?;
            for (s, slot) in series.iter().zip(values.iter_mut()) {
                if slot.is_none() {
                    let v = fetched.next().unwrap_or_default();
                    self.store_counter(s, v, now);
                    *slot = Some(v);
                }
            }
        }
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        self.inner.windowing().buckets_in(window)?;
        let now = self.clock.now_ms();
        let window_ms = duration_ms(window);
        let mut values: Vec<Option<f64>> = series
            .iter()
            .map(|s| self.cached_window(s, window_ms, now))
            .collect();
        let missing: Vec<Series> = series
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(s, _)| s.clone())
            .collect();
        for v in &values {
            self.count(v.is_some());
        }
        if !missing.is_empty() {
            let fetched = self.inner.window_many(&missing, window).await?;
            let mut fetched = self.one_each("window_many", fetched, missing.len())?;
            for (s, slot) in series.iter().zip(values.iter_mut()) {
                if slot.is_none() {
                    let v = fetched.next().unwrap_or_default();
                    self.store_window(s, window_ms, v, now);
                    *slot = Some(v);
                }
            }
        }
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        let values = self.inner.increment_many(increments).await?;
        for inc in increments {
            self.written(&inc.series);
        }
        Ok(values)
    }
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        let values = self.inner.increment_many_once(batch_id, increments).await?;
        for inc in increments {
            self.written(&inc.series);
        }
        Ok(values)
    }
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        let outcomes = self.inner.reserve_many(requests).await?;
        for (request, outcome) in requests.iter().zip(&outcomes) {
            if matches!(outcome, ReserveOutcome::Granted(_)) {
                self.forget_key(&request.key);
            }
        }
        Ok(outcomes)
    }
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        let key = reservation.key.clone();
        self.inner.reconcile(reservation, actual).await?;
        self.forget_key(&key);
        Ok(())
    }
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        let key = reservation.key.clone();
        self.inner
            .reconcile_once(settle_id, reservation, actual)
            .await?;
        self.forget_key(&key);
        Ok(())
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

impl<S: fmt::Display> fmt::Display for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cached({})", self.inner)
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("max_age_ms", &self.max_age_ms)
            .finish_non_exhaustive()
    }
}
