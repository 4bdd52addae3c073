//! In-process runtime store: the embedded default for a single gateway, and the fallback the
//! resilient wrapper degrades to.
//!
//! State is sharded by [`ProviderKey`], so every metric of one key sits behind one mutex and a
//! reservation over several metrics is a single critical section (never held across `.await`).
//! Memory is bounded: at most `capacity` provider keys, each metric keeping at most one bucket
//! per [`Windowing`] step. Expired data is dropped lazily on access and by a sweep that runs
//! every few thousand writes and whenever the store is full; roll-ups (kept an hour) keep a key
//! only while there is room, since live limits outrank analytics. When it is full of live
//! data, a new key is refused with [`StoreError::Capacity`] rather than silently evicting live
//! counts.
//!
//! Two readings of "now" (see [`Now`]): writes and windows are placed by [`Clock::now_ms`]
//! (behind a storage server, the caller's clock), while expiry, sweeps and eviction run on
//! [`Clock::expiry_ms`] (the store's own), so no caller can expire another's data by claiming
//! a later time.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::period::{
    PeriodAdd, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve, check_adds, check_reads,
    fits_budget,
};
use crate::series::{Metric, ProviderKey, Series, check_value};
use crate::store::{
    ConnectionStats, Denial, Increment, ListedSeries, Reservation, ReserveOutcome, ReserveRequest,
    Result, RollupPoint, RuntimeStore, SeriesRollup, check_batch_id, check_increments,
    group_by_key,
};
use crate::window::{StoreOptions, Windowing, fits, retry_after_ms};

const BACKEND: &str = "memory";
const SHARDS: usize = 32;
/// A sweep of one shard runs every this many writes.
const SWEEP_EVERY: u64 = 4096;

/// Default bound on provider keys held at once.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The in-memory runtime store.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    options: StoreOptions,
    capacity: usize,
    keys: AtomicUsize,
    writes: AtomicU64,
    /// Documents, bounded by [`crate::docs::MEMORY_DOC_BUDGET`].
    docs: crate::docs::MemoryDocs,
}

/// "Now", read twice from the store's clock.
#[derive(Debug, Clone, Copy)]
struct Now {
    /// Where writes land and windows end ([`Clock::now_ms`]).
    event: u64,
    /// What has expired ([`Clock::expiry_ms`]).
    store: u64,
}

#[derive(Default)]
struct Shard {
    keys: HashMap<ProviderKey, KeyState>,
}

#[derive(Default)]
struct KeyState {
    metrics: [MetricState; Metric::ALL.len()],
    /// Batch ids applied to this key, with the instant (Unix ms) they may be forgotten.
    applied_batches: HashMap<String, u64>,
    /// Period counters (see [`crate::period`]) by metric and name: value and expiry.
    periods: HashMap<(Metric, String), (f64, Option<u64>)>,
}

#[derive(Default)]
struct MetricState {
    /// The counter and the instant (Unix ms) it expires.
    counter: Option<(f64, u64)>,
    /// Window buckets by index, and the instant they all expire.
    buckets: BTreeMap<u64, f64>,
    buckets_expire_at_ms: u64,
    /// Roll-up totals by step index, and the instant they all expire.
    rollup: BTreeMap<u64, f64>,
    rollup_expire_at_ms: u64,
}

impl MemoryStore {
    /// A store with default options and capacity.
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default(), DEFAULT_CAPACITY)
    }

    /// A store with the given options, holding at most `capacity` provider keys.
    pub fn with_options(options: StoreOptions, capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            options,
            capacity: capacity.max(1),
            keys: AtomicUsize::new(0),
            writes: AtomicU64::new(0),
            docs: crate::docs::MemoryDocs::default(),
        }
    }

    /// Provider keys currently held (live or not yet swept).
    pub fn key_count(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// "Now" by this store's clock, for placing events.
    pub(crate) fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    /// "Now" for expiry by this store's clock ([`Clock::expiry_ms`]).
    pub(crate) fn expiry_now_ms(&self) -> u64 {
        self.options.clock.expiry_ms()
    }

    /// "Now" by this store's clock, both readings.
    fn now(&self) -> Now {
        let clock: &dyn Clock = self.options.clock.as_ref();
        Now {
            event: clock.now_ms(),
            store: clock.expiry_ms(),
        }
    }

    fn shard_of(&self, key: &ProviderKey) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % SHARDS as u64) as usize
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a half-applied update that matters more
        // than losing the whole store, so a poisoned lock is used as it is.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the state of `key`, creating it if absent (bounded by capacity).
    fn with_key<T>(
        &self,
        key: &ProviderKey,
        f: impl FnOnce(&mut KeyState, Now) -> Result<T>,
    ) -> Result<T> {
        self.maybe_sweep();
        let now = self.now();
        let index = self.shard_of(key);
        let mut shard = self.lock(index);
        if !shard.keys.contains_key(key) {
            drop(shard);
            self.make_room(now.store)?;
            shard = self.lock(index);
            if !shard.keys.contains_key(key) {
                shard.keys.insert(key.clone(), KeyState::default());
                self.keys.fetch_add(1, Ordering::Relaxed);
            }
        }
        let state = shard
            .keys
            .get_mut(key)
            .ok_or_else(|| StoreError::invalid("provider key vanished during update"))?;
        f(state, now)
    }

    /// Runs `f` on the state of `key` if it exists, without creating it.
    fn read_key<T>(&self, key: &ProviderKey, f: impl FnOnce(Option<&KeyState>, Now) -> T) -> T {
        let now = self.now();
        let shard = self.lock(self.shard_of(key));
        f(shard.keys.get(key), now)
    }

    /// Sweeps when full; `now` is the store's own time ([`Now::store`]).
    fn make_room(&self, now: u64) -> Result<()> {
        if self.keys.load(Ordering::Relaxed) < self.capacity {
            return Ok(());
        }
        for index in 0..SHARDS {
            self.sweep_shard(index, now);
        }
        // Still full: live limits outrank analytics, so keys that hold nothing but roll-ups
        // (their counters and windows expired) make way.
        if self.keys.load(Ordering::Relaxed) >= self.capacity {
            for index in 0..SHARDS {
                let mut shard = self.lock(index);
                let before = shard.keys.len();
                shard
                    .keys
                    .retain(|_, state| state.holds_more_than_rollups());
                self.keys
                    .fetch_sub(before - shard.keys.len(), Ordering::Relaxed);
            }
        }
        if self.keys.load(Ordering::Relaxed) < self.capacity {
            Ok(())
        } else {
            Err(StoreError::Capacity {
                backend: BACKEND,
                detail: format!(
                    "{} provider keys of live data; new keys are refused until old ones expire",
                    self.capacity
                ),
            })
        }
    }

    fn maybe_sweep(&self) {
        let writes = self.writes.fetch_add(1, Ordering::Relaxed);
        if writes.is_multiple_of(SWEEP_EVERY) {
            let index = (writes / SWEEP_EVERY) as usize % SHARDS;
            self.sweep_shard(index, self.now().store);
        }
    }

    fn sweep_shard(&self, index: usize, now: u64) {
        let mut shard = self.lock(index);
        let before = shard.keys.len();
        shard.keys.retain(|_, state| state.expire(now));
        let removed = before - shard.keys.len();
        self.keys.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Adds `delta` at `at_ms` (never later than now: a future instant would sit in every
    /// window until it came).
    fn add(&self, state: &mut KeyState, metric: Metric, delta: f64, at_ms: u64, now: Now) -> f64 {
        let w = self.options.windowing;
        let at_ms = at_ms.min(now.event);
        let m = state.metric_mut(metric);
        m.expire(now.store);
        let value = m.counter.map_or(0.0, |(v, _)| v) + delta;
        m.counter = Some((value, now.store.saturating_add(self.options.ttl_ms())));
        let oldest_kept = w.oldest_kept(w.bucket_index(now.event));
        let bucket = w.bucket_index(at_ms);
        if bucket >= oldest_kept {
            *m.buckets.entry(bucket).or_default() += delta;
            m.buckets = m.buckets.split_off(&oldest_kept);
            m.buckets_expire_at_ms = now.store.saturating_add(w.bucket_ttl_ms());
        }
        let rollup = self.options.rollup;
        let oldest_step = rollup.oldest_kept(now.event);
        let step = rollup.step_index(at_ms);
        if rollup.is_on() && delta != 0.0 && step >= oldest_step {
            *m.rollup.entry(step).or_default() += delta;
            m.rollup = m.rollup.split_off(&oldest_step);
            m.rollup_expire_at_ms = now.store.saturating_add(rollup.ttl_ms());
        }
        value
    }

    fn window_sum(&self, state: Option<&KeyState>, metric: Metric, buckets: u64, now: Now) -> f64 {
        let w = self.options.windowing;
        let first = Windowing::first_in_window(w.bucket_index(now.event), buckets);
        state
            .map(|s| s.metric(metric))
            .filter(|m| m.buckets_expire_at_ms > now.store)
            .map_or(0.0, |m| m.buckets.range(first..).map(|(_, v)| v).sum())
    }
    /// Reserves one request whose amounts [`ReserveRequest::amounts`] has checked.
    fn reserve_validated(
        &self,
        request: &ReserveRequest,
        amounts: Vec<(Metric, f64)>,
    ) -> Result<ReserveOutcome> {
        let w = self.options.windowing;
        self.with_key(&request.key, |state, now| {
            for check in &request.checks {
                let buckets = w.buckets_in(check.window)?;
                let used = self.window_sum(Some(state), check.metric, buckets, now);
                if !fits(used, check.amount, check.limit) {
                    let first = Windowing::first_in_window(w.bucket_index(now.event), buckets);
                    let mut in_window: Vec<(u64, f64)> = state
                        .metric(check.metric)
                        .buckets
                        .range(first..)
                        .map(|(i, v)| (*i, *v))
                        .collect();
                    let wait = retry_after_ms(
                        &mut in_window,
                        used,
                        check.amount,
                        check.limit,
                        buckets,
                        w.bucket_ms(),
                        now.event,
                    );
                    return Ok(ReserveOutcome::Denied(Denial {
                        metric: check.metric,
                        limit: check.limit,
                        used,
                        requested: check.amount,
                        retry_after: Duration::from_millis(wait),
                    }));
                }
            }
            for (metric, amount) in &amounts {
                self.add(state, *metric, *amount, now.event, now);
            }
            if let Some(id) = &request.id {
                state.first_application(id, now.store);
            }
            Ok(ReserveOutcome::Granted(Reservation {
                key: request.key.clone(),
                at_ms: now.event,
                reserved: amounts,
            }))
        })
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyState {
    fn metric(&self, metric: Metric) -> &MetricState {
        &self.metrics[metric as usize]
    }

    fn metric_mut(&mut self, metric: Metric) -> &mut MetricState {
        &mut self.metrics[metric as usize]
    }

    /// Drops what has expired; returns whether anything is left.
    fn expire(&mut self, now: u64) -> bool {
        self.applied_batches.retain(|_, until| *until > now);
        let metrics_alive = self.metrics.iter_mut().fold(false, |alive, m| {
            m.expire(now);
            alive | m.is_alive()
        });
        self.periods
            .retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
        metrics_alive || !self.applied_batches.is_empty() || !self.periods.is_empty()
    }

    /// The sum of the live period counters named in `counted`.
    fn period_sum(&self, metric: Metric, counted: &[String], now: u64) -> f64 {
        counted
            .iter()
            .filter_map(|name| self.periods.get(&(metric, name.clone())))
            .filter(|(_, expires)| expires.is_none_or(|at| at > now))
            .map(|(value, _)| value)
            .sum()
    }

    /// Adds `delta` to a period counter; an expired counter is dropped and left alone.
    fn add_to_period(&mut self, metric: Metric, counter: &PeriodCounter, delta: f64, now: u64) {
        if counter.expires_at_ms.is_some_and(|at| at <= now) {
            self.periods.remove(&(metric, counter.name.clone()));
            return;
        }
        let entry = self
            .periods
            .entry((metric, counter.name.clone()))
            .or_insert((0.0, counter.expires_at_ms));
        if entry.1.is_some_and(|at| at <= now) {
            entry.0 = 0.0;
        }
        entry.0 += delta;
        entry.1 = counter.expires_at_ms;
    }

    /// Whether anything but roll-ups is kept (call after `expire`).
    fn holds_more_than_rollups(&self) -> bool {
        !self.applied_batches.is_empty()
            || !self.periods.is_empty()
            || self
                .metrics
                .iter()
                .any(|m| m.counter.is_some() || !m.buckets.is_empty())
    }

    /// Records `batch_id` as applied; false if it already was (and is remembered).
    fn first_application(&mut self, batch_id: &str, now: u64) -> bool {
        if self
            .applied_batches
            .get(batch_id)
            .is_some_and(|until| *until > now)
        {
            return false;
        }
        let ttl = crate::window::duration_ms(crate::store::BATCH_ID_TTL);
        self.applied_batches
            .insert(batch_id.to_owned(), now.saturating_add(ttl));
        true
    }
}

impl MetricState {
    fn expire(&mut self, now: u64) {
        if matches!(self.counter, Some((_, expires)) if expires <= now) {
            self.counter = None;
        }
        if self.buckets_expire_at_ms <= now {
            self.buckets.clear();
        }
        if self.rollup_expire_at_ms <= now {
            self.rollup.clear();
        }
    }

    fn is_alive(&self) -> bool {
        self.counter.is_some() || !self.buckets.is_empty() || !self.rollup.is_empty()
    }

    fn live_counter(&self, now: u64) -> Option<(f64, u64)> {
        self.counter.filter(|(_, expires)| *expires > now)
    }
}

#[async_trait]
impl RuntimeStore for MemoryStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn windowing(&self) -> Windowing {
        self.options.windowing
    }

    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        check_value("value", value)?;
        let ttl = self.options.ttl_ms();
        self.with_key(series.key(), |state, now| {
            state.metric_mut(series.metric()).counter =
                Some((value, now.store.saturating_add(ttl)));
            Ok(())
        })
    }

    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        Ok(series
            .iter()
            .map(|s| {
                self.read_key(s.key(), |state, now| {
                    state
                        .and_then(|state| state.metric(s.metric()).live_counter(now.store))
                        .map_or(0.0, |(v, _)| v)
                })
            })
            .collect())
    }

    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        let buckets = self.options.windowing.buckets_in(window)?;
        Ok(series
            .iter()
            .map(|s| {
                self.read_key(s.key(), |state, now| {
                    self.window_sum(state, s.metric(), buckets, now)
                })
            })
            .collect())
    }

    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        check_increments(increments)?;
        let mut values = Vec::with_capacity(increments.len());
        for inc in increments {
            values.push(self.with_key(inc.series.key(), |state, now| {
                Ok(self.add(state, inc.series.metric(), inc.delta, now.event, now))
            })?);
        }
        Ok(values)
    }

    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        check_batch_id(batch_id)?;
        check_increments(increments)?;
        let (groups, places) = group_by_key(increments);
        let mut per_group = Vec::with_capacity(groups.len());
        for (key, deltas) in &groups {
            per_group.push(self.with_key(key, |state, now| {
                let apply = state.first_application(batch_id, now.store);
                Ok(deltas
                    .iter()
                    .map(|&(metric, delta)| {
                        if apply {
                            self.add(state, metric, delta, now.event, now)
                        } else {
                            state
                                .metric(metric)
                                .live_counter(now.store)
                                .map_or(0.0, |(v, _)| v)
                        }
                    })
                    .collect::<Vec<f64>>())
            })?);
        }
        Ok(places.iter().map(|&(g, i)| per_group[g][i]).collect())
    }

    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        let w = self.options.windowing;
        let amounts: Vec<_> = requests
            .iter()
            .map(|r| r.amounts(&w))
            .collect::<Result<_>>()?;
        requests
            .iter()
            .zip(amounts)
            .map(|(request, amounts)| self.reserve_validated(request, amounts))
            .collect()
    }

    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        let deltas = reservation.deltas(actual)?;
        if deltas.is_empty() {
            return Ok(());
        }
        self.with_key(&reservation.key, |state, now| {
            for (metric, delta) in &deltas {
                self.add(state, *metric, *delta, reservation.at_ms, now);
            }
            Ok(())
        })
    }

    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        check_batch_id(settle_id)?;
        let deltas = reservation.deltas(actual)?;
        self.with_key(&reservation.key, |state, now| {
            if state.first_application(settle_id, now.store) {
                for (metric, delta) in &deltas {
                    self.add(state, *metric, *delta, reservation.at_ms, now);
                }
            }
            Ok(())
        })
    }

    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        request.validate(self.now().store)?;
        self.with_key(&request.key, |state, now| {
            for (i, check) in request.checks.iter().enumerate() {
                let used = state.period_sum(check.metric, &check.counted, now.store);
                if !fits_budget(used, check.amount, check.limit) {
                    return Ok(PeriodOutcome::Denied { check: i, used });
                }
            }
            for check in &request.checks {
                state.add_to_period(check.metric, &check.write, check.amount, now.store);
            }
            Ok(PeriodOutcome::Granted)
        })
    }

    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        check_adds(batch_id, adds)?;
        self.with_key(key, |state, now| {
            if batch_id.is_none_or(|id| state.first_application(id, now.store)) {
                for add in adds {
                    state.add_to_period(add.metric, &add.counter, add.delta, now.store);
                }
            }
            Ok(())
        })
    }

    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        check_reads(reads)?;
        Ok(self.read_key(key, |state, now| {
            reads
                .iter()
                .map(|read| {
                    state.map_or(0.0, |s| s.period_sum(read.metric, &read.counted, now.store))
                })
                .collect()
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        let mut listed = Vec::new();
        for index in 0..SHARDS {
            let now = self.now().store;
            let shard = self.lock(index);
            for (key, state) in &shard.keys {
                for metric in Metric::ALL {
                    let Some((value, expires)) = state.metric(metric).live_counter(now) else {
                        continue;
                    };
                    let series = key.series(metric);
                    if series.to_string().starts_with(prefix) {
                        listed.push(ListedSeries {
                            series,
                            value,
                            ttl: Some(Duration::from_millis(expires.saturating_sub(now))),
                        });
                    }
                }
            }
        }
        listed.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(listed)
    }

    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        let policy = self.options.rollup;
        let mut found = Vec::new();
        for index in 0..SHARDS {
            let now = self.now();
            let first = policy
                .oldest_kept(now.event)
                .max(since_ms.div_ceil(policy.step_ms()));
            let shard = self.lock(index);
            for (key, state) in &shard.keys {
                for metric in Metric::ALL {
                    let m = state.metric(metric);
                    if m.rollup_expire_at_ms <= now.store {
                        continue;
                    }
                    let series = key.series(metric);
                    if !series.to_string().starts_with(prefix) {
                        continue;
                    }
                    let points: Vec<RollupPoint> = m
                        .rollup
                        .range(first..)
                        .map(|(step, value)| RollupPoint {
                            start_ms: step * policy.step_ms(),
                            value: *value,
                        })
                        .collect();
                    if !points.is_empty() {
                        found.push(SeriesRollup { series, points });
                    }
                }
            }
        }
        found.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(found)
    }

    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.docs.put(key, value, ttl, self.now().store)
    }

    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.docs.get(key, self.now().store)
    }

    async fn delete_doc(&self, key: &str) -> Result<bool> {
        self.docs.delete(key, self.now().store)
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    fn connection_stats(&self) -> ConnectionStats {
        ConnectionStats::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.key_count())
            .field("capacity", &self.capacity)
            .field("options", &self.options)
            .finish()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryStore(capacity={})", self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::RuntimeStoreExt;

    fn store_with(clock: &ManualClock, capacity: usize) -> MemoryStore {
        let options = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        };
        MemoryStore::with_options(options, capacity)
    }

    #[tokio::test]
    async fn a_full_store_evicts_expired_keys_and_refuses_live_ones() {
        let clock = ManualClock::new(1_000_000);
        let store = store_with(&clock, 2);
        let series = |k: &str| Series::new("p", k, Metric::Req).expect("valid");
        store.increment(&series("a"), 1.0).await.expect("a");
        store.increment(&series("b"), 1.0).await.expect("b");
        let full = store.increment(&series("c"), 1.0).await;
        assert!(matches!(full, Err(StoreError::Capacity { .. })), "{full:?}");
        assert_eq!(
            store.get(&series("a")).await.expect("get"),
            1.0,
            "live data kept"
        );

        clock.advance(Duration::from_secs(62));
        store
            .increment(&series("c"), 1.0)
            .await
            .expect("room after expiry");
        assert_eq!(
            store.key_count(),
            1,
            "expired keys were evicted, their roll-ups first among what is left"
        );
    }

    /// A caller's clock (behind a storage server) places writes but never expires others'
    /// data: a write "ten days ahead" into a full store finds nothing expired and is refused,
    /// and the live keys keep their counts.
    #[tokio::test]
    async fn a_caller_claiming_a_later_time_expires_nothing() {
        use crate::clock::{RequestClock, SystemClock};
        let options = StoreOptions {
            clock: Arc::new(RequestClock),
            ..StoreOptions::default()
        };
        let store = MemoryStore::with_options(options, 2);
        let series = |p: &str| Series::new(p, "k", Metric::Req).expect("valid");
        store.increment(&series("a"), 1.0).await.expect("a");
        store.increment(&series("b"), 1.0).await.expect("b");
        let ahead = SystemClock.now_ms() + 10 * 86_400_000;
        let full = RequestClock::scope(ahead, store.increment(&series("c"), 1.0)).await;
        assert!(matches!(full, Err(StoreError::Capacity { .. })), "{full:?}");
        let far = RequestClock::scope(u64::MAX, store.increment(&series("a"), 1.0)).await;
        assert_eq!(far.expect("u64::MAX is only a placement"), 2.0);
        for p in ["a", "b"] {
            assert!(store.get(&series(p)).await.expect("get") >= 1.0, "{p} kept");
        }
        assert_eq!(store.key_count(), 2);
    }
}
