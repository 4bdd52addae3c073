//! The [`RuntimeStore`] trait: the contract every usage backend and wrapper keeps.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve};
use crate::series::{Metric, ProviderKey, Series, check_value};
use crate::window::Windowing;

/// Result of every store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Usage metrics shared by every gateway instance.
///
/// # Required and provided methods
///
/// A backend or wrapper implements the methods of this trait, all of them required; the single
/// forms `get`, `increment`, `window` and `reserve` come free from [`RuntimeStoreExt`], which
/// every `RuntimeStore` (and `dyn RuntimeStore`, `Arc<dyn RuntimeStore>`) implements by calling
/// the batch form with one item. A store that wants a single call to behave differently (say,
/// join a shared batch) does so in its batch form, for a batch of one.
///
/// # Contract
///
/// - **Counters** (`get_many`/`set`/`increment_many`): one `f64` per [`Series`], the seed's
///   `usage:{provider}:{key_id}:{metric}`. Every write refreshes the counter's TTL (60 s by
///   default); a missing or expired counter reads as `0.0`. Increments are atomic and return
///   the new value; concurrent increments are never lost.
/// - **Windows** (`window_many`): the sum of increments made in the last `window` of time, exact
///   to within one bucket (see [`crate::window`]). `set` overwrites a counter and is not an
///   increment, so it does not move windows.
/// - **Batches** (`get_many`, `window_many`, `increment_many`): one round trip; results come
///   back in input order, one per input. Increments of one [`ProviderKey`] in a batch apply
///   atomically together.
/// - **Reserve** (`reserve_many`, then `reconcile`): checks every limit of one key and, only if
///   all fit, adds every amount, in one atomic step. Concurrent reservers never exceed a limit.
/// - **Documents** (`put_doc`, `get_doc`, `delete_doc`): opaque blobs under a name, with a
///   TTL, replaced whole; see [`crate::docs`].
/// - **Input**: values and deltas must be finite with `|x| <= 1e15`; windows between 1 ms and
///   the store's longest window. Bad input fails with [`StoreError::InvalidInput`] and changes
///   nothing.
///
/// # Wrappers
///
/// Wrappers such as [`InstrumentedStore`](crate::InstrumentedStore) implement this trait by
/// delegating every method to an inner store, so they compose around any backend. Every backend
/// and wrapper must pass [`crate::conformance`].
#[async_trait]
pub trait RuntimeStore: Send + Sync + Debug + Display {
    /// Short backend name used in metrics labels and errors (`memory`, `redis`, ...).
    fn backend(&self) -> &'static str;

    /// The bucket width and longest window this store answers.
    fn windowing(&self) -> Windowing;

    /// Overwrites the counter and refreshes its TTL.
    async fn set(&self, series: &Series, value: f64) -> Result<()>;

    /// The counters of many series, in one round trip and input order; `0.0` for each absent
    /// one.
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>>;

    /// Each series' sum of increments over the last `window`, in one round trip and input
    /// order.
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>>;

    /// Adds each delta (which may be negative) to its counter and the current window bucket, in
    /// one round trip; returns each counter's new value, in input order.
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>>;

    /// Like [`increment_many`](Self::increment_many), but at most once per `batch_id`: a call
    /// repeating an id seen in the last [`BATCH_ID_TTL`] (a retry after a timeout, a replay
    /// after an outage) changes nothing and returns the counters' current values. The store
    /// remembers the id itself, per provider key, so a retry is safe across client and server
    /// restarts. Ids are 1 to 128 characters of `[A-Za-z0-9._-]`.
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>>;

    /// Many reservations in one round trip. Each atomically checks every limit of its key and
    /// reserves every amount, or denies. They are decided in input order exactly as if each were
    /// sent alone in turn: each is checked against the usage plus what the earlier ones of the
    /// call were granted, and each is granted or denied on its own. Answers come back in input
    /// order. If any request is invalid the call fails with [`StoreError::InvalidInput`] and
    /// reserves nothing.
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>>;

    /// Settles a reservation with what was actually used: each reserved metric moves by
    /// `actual - reserved` in the bucket it was reserved in; metrics not reserved are added.
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()>;

    /// Like [`reconcile`](Self::reconcile), but at most once per `settle_id` (remembered per
    /// provider key like a batch id of [`increment_many_once`](Self::increment_many_once)), so a
    /// settlement that timed out can be retried or replayed safely.
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()>;

    /// Budgets' period counters (see [`crate::period`]): checks every [`PeriodCheck`] of one
    /// key against the sum of its `counted` counters and, only if all fit, adds each amount to
    /// its `write` counter (setting that counter's expiry), in one atomic step. Concurrent
    /// reservers never exceed a limit.
    ///
    /// [`PeriodCheck`]: crate::period::PeriodCheck
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome>;

    /// Adds deltas (negative to give back) to period counters of one key, atomically together;
    /// with a `batch_id`, at most once per id (remembered like
    /// [`increment_many_once`](Self::increment_many_once)'s), so a settlement can be retried or
    /// replayed. An add to a counter that has expired changes nothing.
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()>;

    /// Each read's sum of period counters (live ones; expired or absent count `0.0`), in input
    /// order.
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>>;

    /// Counters whose escaped name (`provider:key_id:metric`, see [`Series`]'s `Display`)
    /// starts with `prefix`, sorted by series. For debugging; never on a hot path.
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>>;

    /// Roll-ups (see [`RollupPolicy`](crate::RollupPolicy)) of every series whose escaped name
    /// starts with `prefix`, with the steps that began at or after `since_ms`, oldest first;
    /// series sorted, series without such steps left out. Kept longer than the counters, so
    /// this is the export path for the last hour. Never on a hot path.
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>>;

    /// Stores the document `value` under `key` for `ttl`, replacing any document there (see
    /// [`crate::docs`] for names, sizes and TTLs).
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;

    /// The document under `key`, until its TTL has passed.
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Removes the document under `key`; whether a live one was there.
    async fn delete_doc(&self, key: &str) -> Result<bool>;

    /// Ok when the backend answers (a PING on Redis).
    async fn health(&self) -> Result<()>;

    /// Connections in use and idle, for the `storage_connections_*` gauges.
    fn connection_stats(&self) -> ConnectionStats;
}

/// The single forms of [`RuntimeStore`]'s batch calls, for every store.
///
/// Each calls its batch form with one item and returns the one answer, so a backend or wrapper
/// never writes them, and what it does for a batch (a cache, coalescing, journaling during an
/// outage, metrics) holds for a single call too. Metrics name the batch operation (a `get` is
/// counted as `get_many`). A store that answers a batch of one with no answer or more than one
/// breaks the contract; the call then fails with [`StoreError::Protocol`] naming the store and
/// the single operation.
///
/// Implemented for every `T: RuntimeStore + ?Sized`, so `dyn RuntimeStore` and
/// `Arc<dyn RuntimeStore>` have these methods too; bring the trait into scope to call them.
pub trait RuntimeStoreExt: RuntimeStore {
    /// The counter's current value; `0.0` if absent. One [`get_many`](RuntimeStore::get_many).
    fn get(&self, series: &Series) -> impl Future<Output = Result<f64>> + Send;

    /// Adds `delta` (which may be negative) to the counter and the current window bucket;
    /// returns the counter's new value. One [`increment_many`](RuntimeStore::increment_many).
    fn increment(&self, series: &Series, delta: f64) -> impl Future<Output = Result<f64>> + Send;

    /// Sum of increments over the last `window`. One
    /// [`window_many`](RuntimeStore::window_many).
    fn window(&self, series: &Series, window: Duration)
    -> impl Future<Output = Result<f64>> + Send;

    /// Atomically checks every limit of one key and reserves every amount, or denies; settle a
    /// grant with [`reconcile`](RuntimeStore::reconcile). One
    /// [`reserve_many`](RuntimeStore::reserve_many).
    fn reserve(
        &self,
        request: &ReserveRequest,
    ) -> impl Future<Output = Result<ReserveOutcome>> + Send;
}

impl<T: RuntimeStore + ?Sized> RuntimeStoreExt for T {
    async fn get(&self, series: &Series) -> Result<f64> {
        let answers = self.get_many(std::slice::from_ref(series)).await?;
        only_answer(self, "get", answers)
    }

    async fn increment(&self, series: &Series, delta: f64) -> Result<f64> {
        let increment = Increment::new(series.clone(), delta);
        let answers = self
            .increment_many(std::slice::from_ref(&increment))
            .await?;
        only_answer(self, "increment", answers)
    }

    async fn window(&self, series: &Series, window: Duration) -> Result<f64> {
        let answers = self
            .window_many(std::slice::from_ref(series), window)
            .await?;
        only_answer(self, "window", answers)
    }

    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome> {
        let answers = self.reserve_many(std::slice::from_ref(request)).await?;
        only_answer(self, "reserve", answers)
    }
}

/// The one answer of a batch of one; an error naming `store` if it gave none or several.
fn only_answer<S: RuntimeStore + ?Sized, T>(
    store: &S,
    operation: &'static str,
    answers: Vec<T>,
) -> Result<T> {
    let count = answers.len();
    let mut answers = answers.into_iter();
    match (answers.next(), answers.next()) {
        (Some(answer), None) => Ok(answer),
        _ => Err(StoreError::Protocol {
            backend: store.backend(),
            operation,
            detail: format!("{count} answers to a batch of one"),
        }),
    }
}

/// One delta for [`RuntimeStore::increment_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub series: Series,
    pub delta: f64,
}

impl Increment {
    pub fn new(series: Series, delta: f64) -> Self {
        Self { series, delta }
    }
}

/// One limit checked by [`RuntimeStore::reserve_many`]: `metric` summed over `window`, plus
/// `amount`, must stay at or below `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitCheck {
    pub metric: Metric,
    pub limit: f64,
    pub window: Duration,
    /// What this request would add (1 for `req`; the estimated tokens for `tokens`).
    pub amount: f64,
}

/// Every limit of one provider key, checked and reserved together.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRequest {
    pub key: ProviderKey,
    pub checks: Vec<LimitCheck>,
    /// If set and the reservation is granted, the store records this id as applied for the
    /// key (as [`RuntimeStore::increment_many_once`] does), so a later
    /// `increment_many_once(id, amounts)` replaying the same reservation is skipped.
    pub id: Option<String>,
}

impl ReserveRequest {
    /// Validates the request and returns the amount to add per metric. A metric may appear in
    /// several checks (say, per minute and per second) but must carry one amount.
    pub fn amounts(&self, windowing: &Windowing) -> Result<Vec<(Metric, f64)>> {
        if let Some(id) = &self.id {
            check_batch_id(id)?;
        }
        let mut amounts: BTreeMap<Metric, f64> = BTreeMap::new();
        for check in &self.checks {
            check_value("limit", check.limit)?;
            check_value("amount", check.amount)?;
            if check.limit < 0.0 || check.amount < 0.0 {
                return Err(StoreError::invalid(format!(
                    "limit and amount of {} must not be negative",
                    check.metric
                )));
            }
            windowing.buckets_in(check.window)?;
            if let Some(previous) = amounts.insert(check.metric, check.amount)
                && previous != check.amount
            {
                return Err(StoreError::invalid(format!(
                    "metric {} is reserved with two different amounts ({previous} and {})",
                    check.metric, check.amount
                )));
            }
        }
        Ok(amounts.into_iter().collect())
    }
}

/// What [`RuntimeStore::reserve_many`] decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum ReserveOutcome {
    Granted(Reservation),
    Denied(Denial),
}

/// Amounts held against a key's limits until the request's real usage is known.
#[must_use = "a reservation must be settled with RuntimeStore::reconcile"]
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub key: ProviderKey,
    /// When it was taken (Unix ms); reconcile corrects the bucket of this instant.
    pub at_ms: u64,
    pub reserved: Vec<(Metric, f64)>,
}

impl Reservation {
    /// The per-metric corrections that settle this reservation at `actual`.
    pub fn deltas(&self, actual: &[(Metric, f64)]) -> Result<Vec<(Metric, f64)>> {
        let mut deltas: BTreeMap<Metric, f64> = BTreeMap::new();
        for (metric, value) in actual {
            *deltas.entry(*metric).or_default() += check_value("actual usage", *value)?;
        }
        for (metric, reserved) in &self.reserved {
            if let Some(delta) = deltas.get_mut(metric) {
                *delta -= reserved;
            }
        }
        Ok(deltas.into_iter().filter(|(_, d)| *d != 0.0).collect())
    }
}

/// Why a reservation was refused: the first limit that did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub metric: Metric,
    pub limit: f64,
    /// Usage in the window at the time of the check.
    pub used: f64,
    pub requested: f64,
    /// When enough usage will have left the window for the request to fit.
    pub retry_after: Duration,
}

/// One counter in a [`RuntimeStore::list`] answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSeries {
    pub series: Series,
    pub value: f64,
    /// Time left before the counter expires, if it has a TTL.
    pub ttl: Option<Duration>,
}

/// The roll-up of one series: its totals per step.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRollup {
    pub series: Series,
    pub points: Vec<RollupPoint>,
}

/// The total of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupPoint {
    /// When the step began (Unix ms).
    pub start_ms: u64,
    pub value: f64,
}

/// Connections of a backend, for the `storage_connections_*` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub active: u64,
    pub idle: u64,
}

/// How long a store remembers an applied batch id.
pub const BATCH_ID_TTL: Duration = Duration::from_secs(3600);

/// Checks a batch id: 1 to 128 characters of `[A-Za-z0-9._-]`.
pub fn check_batch_id(batch_id: &str) -> Result<()> {
    let ok = (1..=128).contains(&batch_id.len())
        && batch_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "batch id {batch_id:?} must be 1 to 128 characters of letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Deltas for several metrics of one provider key.
pub(crate) type KeyDeltas = (ProviderKey, Vec<(Metric, f64)>);

/// Indices of `items` grouped by provider key: keys in first-seen order, items in input order.
pub(crate) fn group_indices_by_key<T>(
    items: &[T],
    key_of: impl Fn(&T) -> &ProviderKey,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&ProviderKey, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let g = *index.entry(key_of(item)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Groups increments by provider key, keeping the first-seen order of keys; returns the groups
/// and, per input, its (group, position) so answers can be put back in input order.
pub(crate) fn group_by_key(increments: &[Increment]) -> (Vec<KeyDeltas>, Vec<(usize, usize)>) {
    let mut places = vec![(0, 0); increments.len()];
    let groups = group_indices_by_key(increments, |inc| inc.series.key())
        .into_iter()
        .enumerate()
        .map(|(g, members)| {
            let key = increments[members[0]].series.key().clone();
            let deltas = members
                .iter()
                .enumerate()
                .map(|(position, &i)| {
                    places[i] = (g, position);
                    (increments[i].series.metric(), increments[i].delta)
                })
                .collect();
            (key, deltas)
        })
        .collect();
    (groups, places)
}

/// Checks every increment's delta before anything is written.
pub(crate) fn check_increments(increments: &[Increment]) -> Result<()> {
    for inc in increments {
        check_value("delta", inc.delta)?;
    }
    Ok(())
}

/// A shared store is a store: wrappers and callers can hold `Arc<dyn RuntimeStore>`.
#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<T: RuntimeStore + ?Sized> RuntimeStore for std::sync::Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn windowing(&self) -> Windowing {
        (**self).windowing()
    }
    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        (**self).set(series, value).await
    }
    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        (**self).get_many(series).await
    }
    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        (**self).window_many(series, window).await
    }
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        (**self).increment_many(increments).await
    }
    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        (**self).increment_many_once(batch_id, increments).await
    }
    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        (**self).reserve_many(requests).await
    }
    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        (**self).reconcile(reservation, actual).await
    }
    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        (**self)
            .reconcile_once(settle_id, reservation, actual)
            .await
    }
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        (**self).reserve_periods(request).await
    }
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        (**self).add_to_periods(key, batch_id, adds).await
    }
    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        (**self).read_periods(key, reads).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        (**self).list(prefix).await
    }
    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        (**self).rollups(prefix, since_ms).await
    }
    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        (**self).put_doc(key, value, ttl).await
    }
    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (**self).get_doc(key).await
    }
    async fn delete_doc(&self, key: &str) -> Result<bool> {
        (**self).delete_doc(key).await
    }
    async fn health(&self) -> Result<()> {
        (**self).health().await
    }
    fn connection_stats(&self) -> ConnectionStats {
        (**self).connection_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[test]
    fn a_batch_of_one_must_answer_once() {
        let store = MemoryStore::new();
        assert_eq!(
            only_answer(&store, "get", vec![2.5]).expect("one answer"),
            2.5
        );
        for answers in [vec![], vec![1.0, 2.0]] {
            let count = answers.len();
            match only_answer(&store, "get", answers) {
                Err(StoreError::Protocol {
                    backend: "memory",
                    operation: "get",
                    detail,
                }) => assert_eq!(detail, format!("{count} answers to a batch of one")),
                other => panic!("{count} answers must be a protocol error: {other:?}"),
            }
        }
    }
}
