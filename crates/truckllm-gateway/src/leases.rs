//! Quota leasing: admitting requests against a key's minute limits without a store round trip
//! per request.
//!
//! An instance reserves a slice of a key's limits (a *lease*: so many requests and tokens) in
//! one atomic store call, exactly as a request reserves its own amounts, and admits requests
//! from it locally. Every request admitted from a lease gets an ordinary [`Reservation`] for
//! its own amounts, so settlement is unchanged; when the lease ends, what it did not hand out
//! is given back through the usage recorder. The shared counters therefore end exact: leased,
//! plus (handed out − leased), plus each request's (actual − handed out).
//!
//! Why a limit is never exceeded: a lease is only granted if it fits the limit, as a single
//! request would be, and requests never take more than their lease holds. A lease is used only
//! within the store's time bucket it was taken in (measured from before the call, so ending no
//! later than that bucket): what it admits is counted in the bucket it happened in, as a
//! per-request reservation would be.
//!
//! Sizing: a key's first lease holds one request; a lease used up within its bucket is
//! followed by one twice as large, a lease that ends with leftovers by one the size of what was
//! used. A lease never holds more than a quarter of a minute limit. When a lease does not fit
//! (near the limit, where other instances' leases count), the request reserves its own amounts
//! alone, so the last slots of a limit are shared out one request at a time.
//!
//! The cost: an instance's unused lease counts against the limit until its bucket ends (at
//! most one bucket, a second by default), so near a limit other instances may be refused up to
//! `instances × lease` early for that long. A lease held by an instance that dies is never
//! given back: it leaves the sliding window with its bucket, and the totals keep it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::Counter;
use tokio::time::Instant;
use truckllm_store::{
    LimitCheck, Metric, ProviderKey, Reservation, ReserveOutcome, ReserveRequest, RuntimeStore,
    RuntimeStoreExt, StoreError,
};

use crate::recorder::UsageRecorder;
use crate::snapshot::WINDOW;

/// A key's minute limits and one request's token estimate: what one reservation checks.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub req_per_min: Option<f64>,
    pub tokens_per_min: Option<f64>,
    pub estimate: f64,
}

/// A lease holds at most this share of a minute limit.
const MAX_SHARE: f64 = 0.25;

/// Every key's current lease, on this instance.
#[derive(Debug)]
pub struct Leases {
    slots: Mutex<HashMap<ProviderKey, Slot>>,
    /// `truckllm_quota_reservations_total{decided="lease"}` and `{decided="store"}`.
    from_lease: Counter,
    from_store: Counter,
}

impl Default for Leases {
    fn default() -> Self {
        let counter = |decided: &'static str| metrics::counter!("truckllm_quota_reservations_total", "decided" => decided);
        Leases {
            slots: Mutex::default(),
            from_lease: counter("lease"),
            from_store: counter("store"),
        }
    }
}

/// One key's lease, and how large the next should be.
#[derive(Debug, Default)]
struct Slot {
    lease: Option<Lease>,
    /// Requests the next lease holds.
    next_size: f64,
    /// Average tokens a request of this key reserves, for sizing the token part.
    tokens_per_request: f64,
    generation: u64,
}

#[derive(Debug)]
struct Lease {
    /// What the store granted: the leased amounts, at the lease's instant.
    granted: Reservation,
    handed_req: f64,
    handed_tokens: f64,
    /// When the lease's bucket ends, at the latest.
    expires: Instant,
    generation: u64,
    /// The limits it was taken under; a request under others (a reload) takes a new lease.
    limits: (Option<f64>, Option<f64>),
}

impl Lease {
    fn leased(&self, metric: Metric) -> Option<f64> {
        self.granted
            .reserved
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, amount)| *amount)
    }

    /// Hands out one request's amounts if they fit what is left and the lease is still live.
    fn take(&mut self, ask: &Ask, now: Instant) -> Option<Reservation> {
        if now >= self.expires || self.limits != (ask.req_per_min, ask.tokens_per_min) {
            return None;
        }
        let req_left = self.leased(Metric::Req).map(|l| l - self.handed_req);
        let tokens_left = self.leased(Metric::Tokens).map(|l| l - self.handed_tokens);
        if req_left.is_some_and(|left| left < 1.0)
            || tokens_left.is_some_and(|left| left < ask.estimate)
        {
            return None;
        }
        self.handed_req += 1.0;
        self.handed_tokens += ask.estimate;
        Some(Reservation {
            key: self.granted.key.clone(),
            at_ms: self.granted.at_ms,
            reserved: own_amounts(ask),
        })
    }

    /// What was handed out, per leased metric: settling the lease at this gives back the rest.
    fn handed(&self) -> Vec<(Metric, f64)> {
        self.granted
            .reserved
            .iter()
            .map(|(metric, _)| match metric {
                Metric::Req => (*metric, self.handed_req),
                _ => (*metric, self.handed_tokens),
            })
            .collect()
    }

    /// No room for another request like the last: out of requests, or (a key limited by
    /// tokens alone) out of tokens for one more of the average size.
    fn used_up(&self) -> bool {
        let out_of_requests = self
            .leased(Metric::Req)
            .is_some_and(|leased| self.handed_req >= leased);
        let average = self.handed_tokens / self.handed_req.max(1.0);
        let out_of_tokens = self
            .leased(Metric::Tokens)
            .is_some_and(|leased| leased - self.handed_tokens < average);
        out_of_requests || out_of_tokens
    }
}

/// One request's own amounts, for the limits that are set.
fn own_amounts(ask: &Ask) -> Vec<(Metric, f64)> {
    let mut amounts = Vec::with_capacity(2);
    if ask.req_per_min.is_some() {
        amounts.push((Metric::Req, 1.0));
    }
    if ask.tokens_per_min.is_some() {
        amounts.push((Metric::Tokens, ask.estimate));
    }
    amounts
}

/// The checks of a reservation of `requests` requests and `tokens` tokens.
pub fn checks(ask: &Ask, requests: f64, tokens: f64) -> Vec<LimitCheck> {
    let mut checks = Vec::with_capacity(2);
    if let Some(limit) = ask.req_per_min {
        checks.push(LimitCheck {
            metric: Metric::Req,
            limit,
            window: WINDOW,
            amount: requests,
        });
    }
    if let Some(limit) = ask.tokens_per_min {
        checks.push(LimitCheck {
            metric: Metric::Tokens,
            limit,
            window: WINDOW,
            amount: tokens,
        });
    }
    checks
}

/// Where a lease's leftovers go: settled like any reservation, through the usage recorder.
pub trait GiveBack: Send + Sync {
    fn give_back(&self, granted: Reservation, handed: &[(Metric, f64)]);
}

/// Leftovers settled through the gateway's coalescing [`UsageRecorder`].
pub struct ThroughRecorder {
    pub usage: UsageRecorder,
    pub bucket_ms: u64,
}

impl GiveBack for ThroughRecorder {
    fn give_back(&self, granted: Reservation, handed: &[(Metric, f64)]) {
        self.usage.record(granted, handed, self.bucket_ms);
    }
}

impl Leases {
    /// Reserves one request's amounts against `key`'s limits: from this instance's lease
    /// when it holds enough, else by a new lease, else (near the limit) alone.
    pub async fn reserve(
        self: &Arc<Self>,
        store: &Arc<dyn RuntimeStore>,
        give_back: &Arc<dyn GiveBack>,
        key: &ProviderKey,
        ask: Ask,
    ) -> Result<ReserveOutcome, StoreError> {
        let (size, tokens) = match self.take_or_plan(key, &ask, give_back.as_ref()) {
            Ok(reservation) => {
                self.from_lease.increment(1);
                return Ok(ReserveOutcome::Granted(reservation));
            }
            Err(plan) => plan,
        };
        self.from_store.increment(1);
        // On its own task: a request dropped mid-call (a client gone) must not strand a lease
        // the store has granted; the task installs it for the requests after.
        let leases = Arc::clone(self);
        let (store, give_back, key) = (Arc::clone(store), Arc::clone(give_back), key.clone());
        tokio::spawn(async move {
            leases
                .lease_or_alone(&store, &give_back, &key, ask, size, tokens)
                .await
        })
        .await
        .map_err(|e| StoreError::unavailable("gateway", "reserve", &e))?
    }

    /// Asks the store for a lease of `size` requests and `tokens` tokens; if it does not fit,
    /// for the request's own amounts alone.
    async fn lease_or_alone(
        self: &Arc<Self>,
        store: &Arc<dyn RuntimeStore>,
        give_back: &Arc<dyn GiveBack>,
        key: &ProviderKey,
        ask: Ask,
        size: f64,
        tokens: f64,
    ) -> Result<ReserveOutcome, StoreError> {
        let sent = Instant::now();
        let lease = ReserveRequest {
            key: key.clone(),
            checks: checks(&ask, size, tokens),
            id: None,
        };
        let denied = match store.reserve(&lease).await? {
            ReserveOutcome::Granted(granted) => {
                let expires = sent + until_bucket_end(store.as_ref(), granted.at_ms);
                return Ok(ReserveOutcome::Granted(
                    self.install(key, &ask, granted, expires, give_back),
                ));
            }
            ReserveOutcome::Denied(denied) => denied,
        };
        self.shrink(key);
        let alone = ReserveRequest {
            key: key.clone(),
            checks: checks(&ask, 1.0, ask.estimate),
            id: None,
        };
        if alone.checks == lease.checks {
            return Ok(ReserveOutcome::Denied(denied));
        }
        self.from_store.increment(1);
        store.reserve(&alone).await
    }

    /// A request's reservation from the current lease, or the size of the lease to ask for
    /// (the spent or expired lease given back first).
    fn take_or_plan(
        &self,
        key: &ProviderKey,
        ask: &Ask,
        give_back: &dyn GiveBack,
    ) -> Result<Reservation, (f64, f64)> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key.clone()).or_default();
        let now = Instant::now();
        if let Some(reservation) = slot.lease.as_mut().and_then(|l| l.take(ask, now)) {
            return Ok(reservation);
        }
        if let Some(ended) = slot.lease.take() {
            slot.next_size = if ended.used_up() && now < ended.expires {
                ended.handed_req * 2.0
            } else {
                ended.handed_req
            };
            give_back.give_back(ended.granted.clone(), &ended.handed());
        }
        slot.tokens_per_request = if slot.tokens_per_request == 0.0 {
            ask.estimate
        } else {
            0.9 * slot.tokens_per_request + 0.1 * ask.estimate
        };
        let size = lease_size(slot.next_size, ask.req_per_min);
        let tokens = capped(
            size * slot.tokens_per_request.max(ask.estimate),
            ask.tokens_per_min,
        )
        .max(ask.estimate);
        Err((size, tokens))
    }

    /// Keeps a granted lease (handing the asking request its share) unless another request
    /// installed one meanwhile, in which case this one is given back at once.
    fn install(
        self: &Arc<Self>,
        key: &ProviderKey,
        ask: &Ask,
        granted: Reservation,
        expires: Instant,
        give_back: &Arc<dyn GiveBack>,
    ) -> Reservation {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key.clone()).or_default();
        slot.generation += 1;
        let mut lease = Lease {
            granted,
            handed_req: 0.0,
            handed_tokens: 0.0,
            expires,
            generation: slot.generation,
            limits: (ask.req_per_min, ask.tokens_per_min),
        };
        let own = Reservation {
            key: key.clone(),
            at_ms: lease.granted.at_ms,
            reserved: own_amounts(ask),
        };
        lease.handed_req = 1.0;
        lease.handed_tokens = ask.estimate;
        if slot.lease.is_some() {
            give_back.give_back(lease.granted.clone(), &lease.handed());
            return own;
        }
        self.expire_at(
            key.clone(),
            lease.generation,
            expires,
            Arc::clone(give_back),
        );
        slot.lease = Some(lease);
        own
    }

    /// A lease that did not fit: the next one is back to a single request.
    fn shrink(&self, key: &ProviderKey) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(key) {
            slot.next_size = 1.0;
        }
    }

    /// Gives the lease back when its bucket ends, if it is still the key's lease by then.
    fn expire_at(
        self: &Arc<Self>,
        key: ProviderKey,
        generation: u64,
        at: Instant,
        give_back: Arc<dyn GiveBack>,
    ) {
        let leases = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mut slots = leases.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(slot) = slots.get_mut(&key) else {
                return;
            };
            if slot
                .lease
                .as_ref()
                .is_some_and(|l| l.generation == generation)
                && let Some(ended) = slot.lease.take()
            {
                slot.next_size = ended.handed_req;
                give_back.give_back(ended.granted.clone(), &ended.handed());
            }
        });
    }

    /// Gives back every lease now (shutdown, and tests that read exact counters).
    pub fn give_all_back(&self, give_back: &dyn GiveBack) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in slots.values_mut() {
            if let Some(ended) = slot.lease.take() {
                give_back.give_back(ended.granted.clone(), &ended.handed());
            }
        }
    }
}

/// Requests in the next lease: at least one, at most a quarter of the minute limit.
fn lease_size(wanted: f64, req_per_min: Option<f64>) -> f64 {
    capped(wanted.max(1.0), req_per_min).floor().max(1.0)
}

fn capped(amount: f64, limit: Option<f64>) -> f64 {
    match limit {
        Some(limit) => amount.min(limit * MAX_SHARE),
        None => amount,
    }
}

/// Time left in the store's bucket of `at_ms`.
fn until_bucket_end(store: &dyn RuntimeStore, at_ms: u64) -> Duration {
    let bucket = store.windowing().bucket_ms().max(1);
    Duration::from_millis(bucket - at_ms % bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use truckllm_store::{ManualClock, MemoryStore, StoreOptions};

    /// A memory store on a stopped clock (so every call lands in one bucket, and tokio's
    /// paused clock decides when a lease ends), with the recorder that takes leftovers.
    fn store(
        clock: &Arc<ManualClock>,
    ) -> (Arc<dyn RuntimeStore>, Arc<dyn GiveBack>, UsageRecorder) {
        let options = StoreOptions {
            clock: Arc::clone(clock) as _,
            ..StoreOptions::default()
        };
        let store: Arc<dyn RuntimeStore> = Arc::new(MemoryStore::with_options(options, 10_000));
        let usage = UsageRecorder::start(Arc::clone(&store), Duration::ZERO);
        let returns = Arc::new(ThroughRecorder {
            usage: usage.clone(),
            bucket_ms: store.windowing().bucket_ms(),
        });
        (store, returns, usage)
    }

    fn key() -> ProviderKey {
        ProviderKey::new("mock", "k1").expect("key")
    }

    fn ask(req_per_min: f64) -> Ask {
        Ask {
            req_per_min: Some(req_per_min),
            tokens_per_min: Some(1e9),
            estimate: 10.0,
        }
    }

    async fn counted(store: &Arc<dyn RuntimeStore>, metric: Metric) -> f64 {
        store
            .window(&key().series(metric), WINDOW)
            .await
            .expect("window")
    }

    async fn granted(
        leases: &Arc<Leases>,
        store: &Arc<dyn RuntimeStore>,
        returns: &Arc<dyn GiveBack>,
        ask: Ask,
    ) -> bool {
        matches!(
            leases.reserve(store, returns, &key(), ask).await,
            Ok(ReserveOutcome::Granted(_))
        )
    }

    #[tokio::test(start_paused = true)]
    async fn leases_double_while_used_up_and_give_back_what_they_did_not_hand_out() {
        let clock = Arc::new(ManualClock::new(5_000));
        let (store, returns, usage) = store(&clock);
        let leases = Arc::new(Leases::default());
        for _ in 0..8 {
            assert!(granted(&leases, &store, &returns, ask(1000.0)).await);
        }
        // Leases of 1, 2, 4 and 8 requests: four store calls for eight requests.
        assert_eq!(counted(&store, Metric::Req).await, 15.0);
        assert_eq!(counted(&store, Metric::Tokens).await, 150.0);
        leases.give_all_back(returns.as_ref());
        usage.flush().await;
        assert_eq!(
            counted(&store, Metric::Req).await,
            8.0,
            "exact once given back"
        );
        assert_eq!(counted(&store, Metric::Tokens).await, 80.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_ends_with_its_bucket_and_its_leftovers_go_back() {
        let clock = Arc::new(ManualClock::new(5_250));
        let (store, returns, usage) = store(&clock);
        let leases = Arc::new(Leases::default());
        for _ in 0..4 {
            assert!(granted(&leases, &store, &returns, ask(1000.0)).await);
        }
        assert_eq!(
            counted(&store, Metric::Req).await,
            7.0,
            "leases of 1, 2 and 4"
        );
        // The bucket of 5,250 ms ends 750 ms later; the lease's timer gives the rest back.
        tokio::time::sleep(Duration::from_millis(749)).await;
        usage.flush().await;
        assert_eq!(counted(&store, Metric::Req).await, 7.0, "not before");
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        usage.flush().await;
        assert_eq!(counted(&store, Metric::Req).await, 4.0);
    }

    #[tokio::test(start_paused = true)]
    async fn instances_sharing_a_limit_admit_exactly_the_limit() {
        let clock = Arc::new(ManualClock::new(5_000));
        let (store, returns, usage) = store(&clock);
        let instances: Vec<Arc<Leases>> = (0..3).map(|_| Arc::new(Leases::default())).collect();
        let mut admitted = 0;
        for i in 0..300 {
            if granted(&instances[i % 3], &store, &returns, ask(100.0)).await {
                admitted += 1;
            }
        }
        assert_eq!(
            admitted, 100,
            "leases never take past the limit, nor strand it"
        );
        for leases in &instances {
            leases.give_all_back(returns.as_ref());
        }
        usage.flush().await;
        assert_eq!(counted(&store, Metric::Req).await, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_limited_by_tokens_alone_gets_growing_leases_too() {
        let clock = Arc::new(ManualClock::new(5_000));
        let (store, returns, usage) = store(&clock);
        let leases = Arc::new(Leases::default());
        let tokens_only = Ask {
            req_per_min: None,
            tokens_per_min: Some(1e9),
            estimate: 10.0,
        };
        for _ in 0..8 {
            assert!(granted(&leases, &store, &returns, tokens_only).await);
        }
        assert_eq!(
            counted(&store, Metric::Tokens).await,
            150.0,
            "1, 2, 4, 8 requests' worth"
        );
        leases.give_all_back(returns.as_ref());
        usage.flush().await;
        assert_eq!(counted(&store, Metric::Tokens).await, 80.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_under_other_limits_than_its_lease_takes_a_new_one() {
        let clock = Arc::new(ManualClock::new(5_000));
        let (store, returns, usage) = store(&clock);
        let leases = Arc::new(Leases::default());
        let requests_only = Ask {
            req_per_min: Some(1000.0),
            tokens_per_min: None,
            estimate: 10.0,
        };
        // Leases of 1, 2 and 4 requests: three left in the last.
        for _ in 0..4 {
            assert!(granted(&leases, &store, &returns, requests_only).await);
        }
        // A reload adds a token limit: the old lease counted no tokens, so it is not used.
        for _ in 0..3 {
            assert!(granted(&leases, &store, &returns, ask(1000.0)).await);
        }
        leases.give_all_back(returns.as_ref());
        usage.flush().await;
        assert_eq!(counted(&store, Metric::Req).await, 7.0);
        assert_eq!(
            counted(&store, Metric::Tokens).await,
            30.0,
            "tokens counted for the three requests under the token limit, none lost"
        );
    }

    #[test]
    fn a_lease_holds_at_most_a_quarter_of_the_limit_and_at_least_one_request() {
        assert_eq!(lease_size(1000.0, Some(100.0)), 25.0);
        assert_eq!(lease_size(0.0, Some(100.0)), 1.0);
        assert_eq!(
            lease_size(8.0, Some(2.0)),
            1.0,
            "a tiny limit is reserved one by one"
        );
        assert_eq!(lease_size(64.0, None), 64.0);
    }
}
