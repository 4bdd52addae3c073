//! The one conformance suite every runtime store and wrapper must pass.
//!
//! Each check is a `pub async fn check_…(store, ctx)`. [`conformance_tests!`] expands every
//! check into a `#[tokio::test]` for one backend, so a new check reaches every backend and
//! wrapper at once. Checks namespace their provider names with [`Context::namespace`], so they
//! can share one server and run in parallel.
//!
//! The store under test must read time from [`Context::clock`]; checks move that clock instead
//! of sleeping. Counter expiry is the exception where a backend expires by its own clock
//! (Redis TTLs): [`Expiry::RealTime`] then polls for the key to vanish, bounded by a deadline.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use crate::clock::{Clock, ManualClock};
use crate::error::StoreError;
use crate::period::{
    PeriodAdd, PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve,
};
use crate::series::{Metric, ProviderKey, Series};
use crate::store::{
    Increment, LimitCheck, ReserveOutcome, ReserveRequest, RollupPoint, RuntimeStore,
    RuntimeStoreExt,
};

/// How the backend under test expires counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// By the injected clock: advancing it past the TTL expires counters.
    Clock,
    /// By its own wall clock (Redis): wait, polling, for the TTL to pass.
    RealTime,
}

/// What a check needs besides the store: the clock the store reads, a unique namespace, and
/// the counter TTL the store was built with.
#[derive(Debug, Clone)]
pub struct Context {
    pub clock: ManualClock,
    pub namespace: String,
    pub ttl: Duration,
    pub expiry: Expiry,
}

static NEXT_NAMESPACE: AtomicU64 = AtomicU64::new(0);

impl Context {
    /// A context for one check; `ttl` and `expiry` describe the store the harness will build.
    pub fn new(check: &str, ttl: Duration, expiry: Expiry) -> Self {
        let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        Self {
            clock: ManualClock::starting_now(),
            namespace: format!("{check}-{}-{n}", std::process::id()),
            ttl,
            expiry,
        }
    }

    /// A provider name private to this check.
    pub fn provider(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    pub fn series(&self, provider: &str, key_id: &str, metric: Metric) -> Series {
        Series::new(self.provider(provider), key_id, metric).expect("valid test series")
    }

    pub fn key(&self, provider: &str, key_id: &str) -> ProviderKey {
        ProviderKey::new(self.provider(provider), key_id).expect("valid test key")
    }
}

/// Expands every check of the suite into a test for one backend.
///
/// `$setup` is an async closure `|ctx: Context| async move { … }` that returns
/// `(Arc<dyn RuntimeStore>, guard)`; the guard (a server process, say) lives until the test
/// ends. `$ttl` and `$expiry` describe the store `$setup` builds.
///
/// `conformance_tests!(@near_now $setup, $ttl, $expiry)` expands every check but the two that
/// move the caller's clock an hour ahead (`check_batch_ids_are_remembered_for_their_ttl`,
/// `check_rollups`), for stores that refuse a caller time far from their own (the storage
/// server through HTTP). A new check goes in one of the two lists below and reaches every
/// store that can run it.
#[macro_export]
macro_rules! conformance_tests {
    ($setup:expr, $ttl:expr, $expiry:expr) => {
        $crate::conformance_tests!(@near_now $setup, $ttl, $expiry);
        $crate::conformance_tests!(@each $setup, $ttl, $expiry;
            check_batch_ids_are_remembered_for_their_ttl,
            check_rollups,
        );
    };
    (@near_now $setup:expr, $ttl:expr, $expiry:expr) => {
        $crate::conformance_tests!(@each $setup, $ttl, $expiry;
            check_get_set_increment,
            check_float_accumulation,
            check_concurrent_increments,
            check_batches,
            check_increment_many_once,
            check_window_slides,
            check_window_rejects_bad_lengths,
            check_reserve_limits,
            check_reserve_under_contention,
            check_reserve_id_marks_the_batch,
            check_reserve_many,
            check_reserve_many_under_contention,
            check_reconcile,
            check_reconcile_once,
            check_ttl,
            check_odd_names,
            check_non_finite_rejected,
            check_list_prefix,
            check_documents,
            check_document_ttl,
            check_health,
            check_period_reserve_limits,
            check_period_rolling_sum_and_isolation,
            check_period_expiry,
            check_period_adds,
            check_period_reserve_under_contention,
            check_period_bad_input,
        );
    };
    (@each $setup:expr, $ttl:expr, $expiry:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let ctx = $crate::conformance::Context::new(stringify!($check), $ttl, $expiry);
                let (store, _guard) = ($setup)(ctx.clone()).await;
                $crate::conformance::$check(&store, &ctx).await;
            }
        )*
    };
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(e @ StoreError::InvalidInput { .. }) => {
            assert!(!e.to_string().is_empty(), "{what}: error has a message");
        }
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    }
}

/// The seed's three operations: get, set, increment.
pub async fn check_get_set_increment(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("openai", "key1", Metric::Req);
    assert_eq!(
        store.get(&s).await.expect("get missing"),
        0.0,
        "absent reads 0"
    );
    store.set(&s, 123.45).await.expect("set");
    assert!(close(store.get(&s).await.expect("get"), 123.45));
    let after = store.increment(&s, 10.0).await.expect("increment");
    assert!(
        close(after, 133.45),
        "increment returns the new value, got {after}"
    );
    assert!(close(
        store.increment(&s, -33.45).await.expect("decrement"),
        100.0
    ));
    store.set(&s, 7.0).await.expect("overwrite");
    assert!(close(store.get(&s).await.expect("get"), 7.0));
    let other = ctx.series("openai", "key1", Metric::Tokens);
    assert_eq!(
        store.get(&other).await.expect("get"),
        0.0,
        "metrics are separate"
    );
}

/// 0.1 added ten times reads back as 1.0 (within 1e-9), as counter and as window.
pub async fn check_float_accumulation(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Cost);
    for _ in 0..10 {
        store.increment(&s, 0.1).await.expect("increment");
    }
    let value = store.get(&s).await.expect("get");
    assert!(close(value, 1.0), "counter {value}");
    let window = store
        .window(&s, Duration::from_secs(60))
        .await
        .expect("window");
    assert!(close(window, 1.0), "window {window}");
}

/// 1,000 increments from several threads at once: none lost, each saw a distinct new value.
pub async fn check_concurrent_increments(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Req);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            let s = s.clone();
            tokio::spawn(async move { join_all((0..250).map(|_| store.increment(&s, 1.0))).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        for result in task.await.expect("task") {
            seen.push(result.expect("increment") as i64);
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<i64>>(),
        "each increment saw its own value"
    );
    assert_eq!(store.get(&s).await.expect("get"), 1000.0);
    assert_eq!(
        store
            .window(&s, Duration::from_secs(60))
            .await
            .expect("window"),
        1000.0
    );
}

/// Batched increments, gets and windows: input order kept, the same series twice adds up.
pub async fn check_batches(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let a_req = ctx.series("a", "k1", Metric::Req);
    let a_tok = ctx.series("a", "k1", Metric::Tokens);
    let b_req = ctx.series("b", "k2", Metric::Req);
    let batch = vec![
        Increment::new(a_req.clone(), 1.0),
        Increment::new(b_req.clone(), 5.0),
        Increment::new(a_tok.clone(), 100.0),
        Increment::new(a_req.clone(), 2.0),
    ];
    let values = store.increment_many(&batch).await.expect("increment_many");
    assert_eq!(values.len(), 4);
    assert_eq!(values[1], 5.0);
    assert_eq!(values[2], 100.0);
    assert_eq!(
        values[3], 3.0,
        "second increment of a series sees the first"
    );
    assert!(
        values[0] == 1.0 || values[0] == 3.0,
        "first increment {}",
        values[0]
    );

    let all = [
        a_req.clone(),
        b_req.clone(),
        a_tok.clone(),
        ctx.series("none", "x", Metric::Req),
    ];
    assert_eq!(
        store.get_many(&all).await.expect("get_many"),
        vec![3.0, 5.0, 100.0, 0.0]
    );
    let windows = store
        .window_many(&all, Duration::from_secs(30))
        .await
        .expect("window_many");
    assert_eq!(windows, vec![3.0, 5.0, 100.0, 0.0]);
    assert!(store.increment_many(&[]).await.expect("empty").is_empty());
    assert!(store.get_many(&[]).await.expect("empty").is_empty());
}

/// A batch applied twice under one id counts once (windows too); a new id counts again; the
/// values returned for a repeat are the current ones.
pub async fn check_increment_many_once(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let a = ctx.series("a", "k1", Metric::Req);
    let b = ctx.series("b", "k2", Metric::Tokens);
    let batch = [
        Increment::new(a.clone(), 1.0),
        Increment::new(b.clone(), 10.0),
        Increment::new(a.clone(), 1.0),
    ];
    assert_eq!(
        store
            .increment_many_once("batch-1", &batch)
            .await
            .expect("first"),
        vec![1.0, 10.0, 2.0]
    );
    assert_eq!(
        store
            .increment_many_once("batch-1", &batch)
            .await
            .expect("repeat"),
        vec![2.0, 10.0, 2.0]
    );
    assert_eq!(store.get(&a).await.expect("get"), 2.0);
    assert_eq!(
        store
            .window(&b, Duration::from_secs(60))
            .await
            .expect("window"),
        10.0
    );
    assert_eq!(
        store
            .increment_many_once("batch-2", &batch)
            .await
            .expect("new id"),
        vec![3.0, 20.0, 4.0]
    );
    // Concurrent repeats of one id still apply once.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(store);
            let batch = batch.clone();
            tokio::spawn(async move { store.increment_many_once("batch-3", &batch).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("increment_many_once");
    }
    assert_eq!(store.get(&a).await.expect("get"), 6.0);
    for bad in ["", "has space", "x".repeat(129).as_str(), "semi;colon"] {
        assert_invalid(store.increment_many_once(bad, &batch).await, "bad batch id");
    }
    assert_invalid(
        store
            .increment_many_once("batch-4", &[Increment::new(a.clone(), f64::NAN)])
            .await,
        "NaN in an idempotent batch",
    );
    assert_eq!(
        store.get(&a).await.expect("get"),
        6.0,
        "bad input changed nothing"
    );
}

/// Under continuous traffic the window holds what arrived in the last W seconds, to within one
/// bucket, and drops everything older.
pub async fn check_window_slides(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Tokens);
    let bucket_ms = store.windowing().bucket_ms();
    let step_ms = bucket_ms / 4 + 1;
    let mut sent: Vec<(u64, f64)> = Vec::new();
    let start = ctx.clock.now_ms();
    for (i, window_secs) in (0..600u64).zip([10u64, 30, 60].into_iter().cycle()) {
        let now = ctx.clock.now_ms();
        let delta = (i % 7 + 1) as f64;
        store.increment(&s, delta).await.expect("increment");
        sent.push((now, delta));
        let window_ms = window_secs * 1000;
        let got = store
            .window(&s, Duration::from_secs(window_secs))
            .await
            .expect("window");
        // Exact in the last W seconds; everything older than W + one bucket must be gone.
        let exact: f64 = sent
            .iter()
            .filter(|(t, _)| *t + window_ms > now)
            .map(|(_, d)| d)
            .sum();
        let upper: f64 = sent
            .iter()
            .filter(|(t, _)| *t + window_ms + bucket_ms > now)
            .map(|(_, d)| d)
            .sum();
        assert!(
            got >= exact - 1e-9 && got <= upper + 1e-9,
            "t+{} ms: window({window_secs}s)={got}, true sum {exact}, bound with one bucket {upper}",
            now - start
        );
        ctx.clock.advance(Duration::from_millis(step_ms));
    }
    // After a quiet minute the window is empty, whatever the counter says.
    ctx.clock.advance(Duration::from_secs(61));
    assert_eq!(
        store
            .window(&s, Duration::from_secs(60))
            .await
            .expect("window"),
        0.0
    );
}

/// Windows of zero length or longer than the store keeps are refused.
pub async fn check_window_rejects_bad_lengths(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Req);
    assert_invalid(store.window(&s, Duration::ZERO).await, "zero window");
    let too_long = store.windowing().max_window() + Duration::from_secs(1);
    assert_invalid(
        store.window(&s, too_long).await,
        "window beyond the longest kept",
    );
    assert_invalid(
        store.window_many(&[s], too_long).await,
        "window_many beyond the longest",
    );
}

fn req_and_tokens(ctx: &Context, req: f64, tokens: f64, estimate: f64) -> ReserveRequest {
    ReserveRequest {
        key: ctx.key("openai", "key1"),
        checks: vec![
            LimitCheck {
                metric: Metric::Req,
                limit: req,
                window: Duration::from_secs(60),
                amount: 1.0,
            },
            LimitCheck {
                metric: Metric::Tokens,
                limit: tokens,
                window: Duration::from_secs(60),
                amount: estimate,
            },
        ],
        id: None,
    }
}

/// Reserve admits up to each limit, names the limit that denied, changes nothing when it
/// denies, and its retry-after is when the request really fits again.
pub async fn check_reserve_limits(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let request = req_and_tokens(ctx, 5.0, 1000.0, 100.0);
    let req = ctx.series("openai", "key1", Metric::Req);
    let tokens = ctx.series("openai", "key1", Metric::Tokens);
    for i in 0..5 {
        match store.reserve(&request).await.expect("reserve") {
            ReserveOutcome::Granted(r) => {
                assert_eq!(
                    r.reserved,
                    vec![(Metric::Req, 1.0), (Metric::Tokens, 100.0)]
                );
                store
                    .reconcile(r, &[(Metric::Tokens, 100.0)])
                    .await
                    .expect("settle");
            }
            ReserveOutcome::Denied(d) => panic!("request {i} denied: {d:?}"),
        }
        ctx.clock.advance(Duration::from_secs(10));
    }
    let denial = match store.reserve(&request).await.expect("reserve") {
        ReserveOutcome::Denied(d) => d,
        ReserveOutcome::Granted(r) => panic!("sixth request granted: {r:?}"),
    };
    assert_eq!(denial.metric, Metric::Req);
    assert_eq!(denial.limit, 5.0);
    assert_eq!(denial.used, 5.0);
    // The oldest request was made 50 s ago; it leaves the 60 s window in about 10 s.
    let wait = denial.retry_after;
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(11),
        "retry after {wait:?}"
    );
    assert_eq!(
        store
            .window(&req, Duration::from_secs(60))
            .await
            .expect("w"),
        5.0,
        "denial adds nothing"
    );
    assert_eq!(
        store
            .window(&tokens, Duration::from_secs(60))
            .await
            .expect("w"),
        500.0
    );

    ctx.clock.advance(wait);
    let granted = store
        .reserve(&request)
        .await
        .expect("reserve after waiting");
    assert!(
        matches!(granted, ReserveOutcome::Granted(_)),
        "fits after retry-after: {granted:?}"
    );

    // A token estimate that can never fit is denied on tokens, with the whole window to wait.
    let huge = req_and_tokens(ctx, 100.0, 1000.0, 5000.0);
    match store.reserve(&huge).await.expect("reserve") {
        ReserveOutcome::Denied(d) => {
            assert_eq!(d.metric, Metric::Tokens);
            assert_eq!(d.requested, 5000.0);
            assert_eq!(d.retry_after, Duration::from_secs(60));
        }
        other => panic!("oversize estimate granted: {other:?}"),
    }
    assert_invalid(
        store
            .reserve(&req_and_tokens(ctx, f64::NAN, 1.0, 1.0))
            .await,
        "NaN limit",
    );
    assert_invalid(
        store.reserve(&req_and_tokens(ctx, 1.0, 1.0, -1.0)).await,
        "negative amount",
    );
}

/// Many concurrent reservers never get more than the limit, and exactly the limit is admitted.
pub async fn check_reserve_under_contention(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let request = req_and_tokens(ctx, 50.0, 1e9, 10.0);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            let request = request.clone();
            tokio::spawn(async move { join_all((0..50).map(|_| store.reserve(&request))).await })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        for outcome in task.await.expect("task") {
            if let ReserveOutcome::Granted(r) = outcome.expect("reserve") {
                granted += 1;
                drop(r); // settled at its estimate: nothing to reconcile
            }
        }
    }
    assert_eq!(granted, 50, "exactly the limit is admitted");
    let req = ctx.series("openai", "key1", Metric::Req);
    assert_eq!(
        store
            .window(&req, Duration::from_secs(60))
            .await
            .expect("w"),
        50.0
    );
    assert_eq!(store.get(&req).await.expect("get"), 50.0);
}

/// An applied batch id, from `increment_many_once` or a granted reservation, is remembered
/// until [`BATCH_ID_TTL`](crate::store::BATCH_ID_TTL) has passed on the store's clock, however
/// the backend keeps its markers (Redis rotates them through ten-minute hashes). The replays
/// write to another metric of the same key, whose counter nothing else touches.
pub async fn check_batch_ids_are_remembered_for_their_ttl(
    store: &Arc<dyn RuntimeStore>,
    ctx: &Context,
) {
    let req = ctx.series("openai", "key1", Metric::Req);
    store
        .increment_many_once("late-1", &[Increment::new(req.clone(), 1.0)])
        .await
        .expect("apply");
    let mut request = req_and_tokens(ctx, 1e9, 1e9, 10.0);
    request.id = Some("late-2".into());
    assert!(matches!(
        store.reserve(&request).await.expect("reserve"),
        ReserveOutcome::Granted(_)
    ));
    let errors = ctx.series("openai", "key1", Metric::Errors);
    let ttl = crate::store::BATCH_ID_TTL;
    // Across several of Redis's ten-minute generations, to the last minute of the id's hour.
    for step in [ttl / 2, ttl / 2 - Duration::from_secs(60)] {
        ctx.clock.advance(step);
        for id in ["late-1", "late-2"] {
            let seen = store
                .increment_many_once(id, &[Increment::new(errors.clone(), 5.0)])
                .await
                .expect("replay");
            assert_eq!(seen, vec![0.0], "{id} is still remembered");
        }
    }
    assert_eq!(store.get(&errors).await.expect("get"), 0.0);
}

/// A granted reservation with an id marks that id as applied: replaying its amounts with
/// `increment_many_once` under the same id changes nothing. A denied one marks nothing.
pub async fn check_reserve_id_marks_the_batch(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let mut request = req_and_tokens(ctx, 1.0, 1e9, 10.0);
    request.id = Some("reserve-1".into());
    assert!(matches!(
        store.reserve(&request).await.expect("reserve"),
        ReserveOutcome::Granted(_)
    ));
    let req = ctx.series("openai", "key1", Metric::Req);
    let tokens = ctx.series("openai", "key1", Metric::Tokens);
    let replay = [
        Increment::new(req.clone(), 1.0),
        Increment::new(tokens.clone(), 10.0),
    ];
    store
        .increment_many_once("reserve-1", &replay)
        .await
        .expect("replay");
    assert_eq!(
        store.get(&req).await.expect("get"),
        1.0,
        "the replay of a granted reservation is skipped"
    );
    assert_eq!(store.get(&tokens).await.expect("get"), 10.0);

    request.id = Some("reserve-2".into());
    assert!(
        matches!(
            store.reserve(&request).await.expect("reserve"),
            ReserveOutcome::Denied(_)
        ),
        "over the limit of 1"
    );
    store
        .increment_many_once("reserve-2", &replay)
        .await
        .expect("replay");
    assert_eq!(
        store.get(&req).await.expect("get"),
        2.0,
        "a denied reservation marked nothing"
    );
    request.id = Some("bad id".into());
    assert_invalid(store.reserve(&request).await, "bad reservation id");
}

/// `reserve_many` decides in order as one `reserve` each would: later requests see what
/// earlier ones of the same call were granted, a denied one adds nothing, keys are independent,
/// ids are marked only for grants, and one invalid request fails the call and reserves nothing.
pub async fn check_reserve_many(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key1 = req_and_tokens(ctx, 2.0, 250.0, 100.0);
    let key2 = ReserveRequest {
        key: ctx.key("openai", "key2"),
        ..req_and_tokens(ctx, 1.0, 1e9, 10.0)
    };
    let small = req_and_tokens(ctx, 100.0, 250.0, 50.0);
    let mut with_id = key2.clone();
    with_id.id = Some("many-denied".into());
    let outcomes = store
        .reserve_many(&[
            key1.clone(),
            key2.clone(),
            key1.clone(),
            with_id,
            key1.clone(),
            small,
        ])
        .await
        .expect("reserve_many");
    let granted: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, ReserveOutcome::Granted(_)))
        .collect();
    assert_eq!(
        granted,
        [true, true, true, false, false, true],
        "in order: {outcomes:?}"
    );
    match &outcomes[4] {
        ReserveOutcome::Denied(d) => {
            assert_eq!(d.metric, Metric::Req, "{d:?}");
            assert_eq!(d.used, 2.0, "the earlier grants of the call count: {d:?}");
            assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(61));
        }
        other => panic!("third key1 request granted: {other:?}"),
    }
    if let ReserveOutcome::Granted(r) = &outcomes[5] {
        assert_eq!(r.key, ctx.key("openai", "key1"));
        assert_eq!(r.reserved, vec![(Metric::Req, 1.0), (Metric::Tokens, 50.0)]);
    }
    let window = |metric, key: &str| {
        let series = ctx.series("openai", key, metric);
        async move {
            store
                .window(&series, Duration::from_secs(60))
                .await
                .expect("window")
        }
    };
    assert_eq!(window(Metric::Req, "key1").await, 3.0);
    assert_eq!(window(Metric::Tokens, "key1").await, 250.0);
    assert_eq!(
        window(Metric::Req, "key2").await,
        1.0,
        "the denial added nothing"
    );

    // Ids: a granted request's id is marked, a denied one's is not.
    let mut fresh = ReserveRequest {
        key: ctx.key("openai", "key3"),
        ..req_and_tokens(ctx, 1.0, 1e9, 10.0)
    };
    fresh.id = Some("many-granted".into());
    let outcomes = store
        .reserve_many(std::slice::from_ref(&fresh))
        .await
        .expect("reserve_many");
    assert!(matches!(outcomes[0], ReserveOutcome::Granted(_)));
    for (id, key, expected) in [("many-granted", "key3", 1.0), ("many-denied", "key2", 2.0)] {
        let req = ctx.series("openai", key, Metric::Req);
        store
            .increment_many_once(id, &[Increment::new(req.clone(), 1.0)])
            .await
            .expect("replay");
        assert_eq!(
            store.get(&req).await.expect("get"),
            expected,
            "replay of {id}"
        );
    }

    // One bad request: the call fails and reserves nothing.
    let bad = req_and_tokens(ctx, f64::NAN, 1.0, 1.0);
    let fits = ReserveRequest {
        key: ctx.key("openai", "key4"),
        ..req_and_tokens(ctx, 100.0, 1e9, 1.0)
    };
    assert_invalid(
        store.reserve_many(&[fits, bad]).await,
        "NaN limit in a batch",
    );
    assert_eq!(window(Metric::Req, "key4").await, 0.0, "nothing reserved");
    assert!(
        store
            .reserve_many(&[])
            .await
            .expect("empty batch")
            .is_empty()
    );
}

/// Concurrent batches and single reservations together admit exactly the limit.
pub async fn check_reserve_many_under_contention(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let request = req_and_tokens(ctx, 60.0, 1e9, 10.0);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            let batch = vec![request.clone(); 10];
            let single = request.clone();
            tokio::spawn(async move {
                let batches = join_all((0..3).map(|_| store.reserve_many(&batch))).await;
                let singles = join_all((0..10).map(|_| store.reserve(&single))).await;
                let mut granted = 0;
                for outcome in batches
                    .into_iter()
                    .flat_map(|b| b.expect("reserve_many"))
                    .chain(singles.into_iter().map(|o| o.expect("reserve")))
                {
                    granted += usize::from(matches!(outcome, ReserveOutcome::Granted(_)));
                }
                granted
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.expect("task");
    }
    assert_eq!(granted, 60, "exactly the limit of 160 requests is admitted");
    let req = ctx.series("openai", "key1", Metric::Req);
    assert_eq!(store.get(&req).await.expect("get"), 60.0);
}

/// Reconcile moves a reservation to what was used, in the bucket it was made in.
pub async fn check_reconcile(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let tokens = ctx.series("openai", "key1", Metric::Tokens);
    let prompt = ctx.series("openai", "key1", Metric::PromptTokens);
    let request = req_and_tokens(ctx, 100.0, 10_000.0, 1000.0);
    let ReserveOutcome::Granted(reservation) = store.reserve(&request).await.expect("reserve")
    else {
        panic!("denied");
    };
    ctx.clock.advance(Duration::from_secs(5));
    store
        .reconcile(
            reservation,
            &[(Metric::Tokens, 300.0), (Metric::PromptTokens, 120.0)],
        )
        .await
        .expect("reconcile");
    assert_eq!(store.get(&tokens).await.expect("get"), 300.0);
    assert_eq!(
        store.get(&prompt).await.expect("get"),
        120.0,
        "unreserved metrics are added"
    );
    assert_eq!(
        store
            .window(&tokens, Duration::from_secs(60))
            .await
            .expect("w"),
        300.0
    );
    // The correction sits in the reservation's bucket, so both leave the window together;
    // filed under the reconcile time instead, -700 would linger after the +1000 left.
    ctx.clock.advance(Duration::from_millis(56_500));
    assert_eq!(
        store
            .window(&tokens, Duration::from_secs(60))
            .await
            .expect("w"),
        0.0
    );

    let ReserveOutcome::Granted(late) = store.reserve(&request).await.expect("reserve") else {
        panic!("denied");
    };
    assert_invalid(
        store
            .reconcile(late, &[(Metric::Tokens, f64::INFINITY)])
            .await,
        "inf usage",
    );
}

/// A settlement repeated under one id applies once, in the reservation's bucket.
pub async fn check_reconcile_once(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let tokens = ctx.series("openai", "key1", Metric::Tokens);
    let request = req_and_tokens(ctx, 100.0, 10_000.0, 1000.0);
    let ReserveOutcome::Granted(reservation) = store.reserve(&request).await.expect("reserve")
    else {
        panic!("denied");
    };
    ctx.clock.advance(Duration::from_secs(5));
    for _ in 0..3 {
        store
            .reconcile_once("settle-1", reservation.clone(), &[(Metric::Tokens, 300.0)])
            .await
            .expect("reconcile_once");
    }
    assert_eq!(
        store.get(&tokens).await.expect("get"),
        300.0,
        "applied once"
    );
    ctx.clock.advance(Duration::from_millis(56_500));
    assert_eq!(
        store
            .window(&tokens, Duration::from_secs(60))
            .await
            .expect("w"),
        0.0,
        "in the reservation's bucket"
    );
    assert_invalid(
        store
            .reconcile_once("bad id", reservation, &[(Metric::Tokens, 1.0)])
            .await,
        "bad settle id",
    );
}

/// Counters carry the TTL and disappear once it passes.
pub async fn check_ttl(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Req);
    store.increment(&s, 1.0).await.expect("increment");
    let listed = store.list(&ctx.namespace).await.expect("list");
    let ttl = listed
        .first()
        .and_then(|l| l.ttl)
        .expect("counter has a TTL");
    assert!(
        ttl > Duration::ZERO && ttl <= ctx.ttl,
        "ttl {ttl:?} of {:?}",
        ctx.ttl
    );
    match ctx.expiry {
        Expiry::Clock => ctx.clock.advance(ctx.ttl + Duration::from_millis(1)),
        Expiry::RealTime => {
            let deadline = tokio::time::Instant::now() + ctx.ttl + Duration::from_secs(5);
            while store.get(&s).await.expect("get") != 0.0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "counter outlived its TTL"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(store.get(&s).await.expect("get"), 0.0, "expired");
    assert!(
        store.list(&ctx.namespace).await.expect("list").is_empty(),
        "expired counters are not listed"
    );
}

/// Roll-ups (default policy: one-minute steps kept an hour) total every write of a series per
/// step, whatever path it took (increment, batch, reserve and reconcile), filter by prefix and
/// time, and drop steps past retention.
pub async fn check_rollups(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    const STEP: u64 = 60_000;
    let first = ctx.clock.now_ms() / STEP * STEP;
    let tokens = ctx.series("p", "k", Metric::Tokens);
    let other = ctx.series("p", "k2", Metric::Req);
    store.increment(&tokens, 5.0).await.expect("increment");
    store.increment(&tokens, 2.0).await.expect("increment");
    ctx.clock.advance(Duration::from_millis(STEP));
    store
        .increment_many(&[
            Increment::new(tokens.clone(), 3.0),
            Increment::new(other.clone(), 1.0),
        ])
        .await
        .expect("batch");
    let request = ReserveRequest {
        key: ctx.key("p", "k"),
        checks: vec![LimitCheck {
            metric: Metric::Tokens,
            limit: 1_000.0,
            window: Duration::from_secs(60),
            amount: 10.0,
        }],
        id: None,
    };
    let ReserveOutcome::Granted(reservation) = store.reserve(&request).await.expect("reserve")
    else {
        panic!("a reservation far under its limit is granted");
    };
    store
        .reconcile(reservation, &[(Metric::Tokens, 4.0)])
        .await
        .expect("reconcile");

    let point = |start_ms: u64, value: f64| RollupPoint { start_ms, value };
    let all = store.rollups(&ctx.namespace, 0).await.expect("rollups");
    let shown: Vec<(String, Vec<RollupPoint>)> = all
        .iter()
        .map(|r| (r.series.to_string(), r.points.clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                tokens.to_string(),
                vec![point(first, 7.0), point(first + STEP, 7.0)]
            ),
            (other.to_string(), vec![point(first + STEP, 1.0)]),
        ],
        "per-step totals; the reservation counts as reconciled (10 reserved, 4 used)"
    );
    let recent = store
        .rollups(&ctx.namespace, first + STEP)
        .await
        .expect("rollups since");
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].points, vec![point(first + STEP, 7.0)]);
    let k2 = store
        .rollups(&format!("{}:k2", ctx.provider("p")), 0)
        .await
        .expect("rollups by prefix");
    assert_eq!(k2.len(), 1);
    assert_eq!(k2[0].series, other);

    // An hour later, the first steps are past retention.
    ctx.clock.advance(Duration::from_millis(61 * STEP));
    store.increment(&tokens, 1.0).await.expect("increment");
    let later = store.rollups(&ctx.namespace, 0).await.expect("rollups");
    let now_step = ctx.clock.now_ms() / STEP * STEP;
    assert_eq!(
        later.len(),
        1,
        "k2's only step is past retention: {later:?}"
    );
    assert_eq!(later[0].points, vec![point(now_step, 1.0)]);
}

/// Names with separators, tag braces, slashes, spaces, glob characters and unicode round-trip
/// and never collide.
pub async fn check_odd_names(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let names = [
        ("a:b", "c"),
        ("a", "b:c"),
        ("{x}", "}y{"),
        ("x", "y"),
        ("s/l/a/s/h", "with space"),
        ("ünïcødé", "😀"),
        ("100%", "%3A"),
        ("glob*?[", "\\"),
    ];
    let series: Vec<Series> = names
        .iter()
        .map(|(p, k)| Series::new(ctx.provider(p), *k, Metric::Tokens).expect("valid"))
        .collect();
    for (i, s) in series.iter().enumerate() {
        store.increment(s, (i + 1) as f64).await.expect("increment");
    }
    for (i, s) in series.iter().enumerate() {
        assert_eq!(store.get(s).await.expect("get"), (i + 1) as f64, "{s:?}");
    }
    let listed = store.list(&ctx.namespace).await.expect("list");
    let mut got: Vec<(Series, f64)> = listed.into_iter().map(|l| (l.series, l.value)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(Series, f64)> = series.iter().cloned().zip((1..).map(f64::from)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want, "every odd name lists as itself");
}

/// NaN and infinities are refused with a clear error, and nothing is stored, even for the
/// valid increments of a batch that holds one bad delta.
pub async fn check_non_finite_rejected(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let s = ctx.series("p", "k", Metric::Latency);
    store.set(&s, 5.0).await.expect("set");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
        assert_invalid(store.set(&s, bad).await, "set");
        assert_invalid(store.increment(&s, bad).await, "increment");
        let batch = [
            Increment::new(s.clone(), 1.0),
            Increment::new(s.clone(), bad),
        ];
        assert_invalid(store.increment_many(&batch).await, "increment_many");
    }
    assert_eq!(store.get(&s).await.expect("get"), 5.0, "nothing changed");
    assert_eq!(
        store.window(&s, Duration::from_secs(60)).await.expect("w"),
        0.0
    );
}

/// Listing narrows by provider, by provider and key, and by full series.
pub async fn check_list_prefix(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    for (p, k, m) in [
        ("openai", "key1", Metric::Req),
        ("openai", "key1", Metric::Tokens),
        ("openai", "key2", Metric::Req),
        ("groq", "key1", Metric::Req),
    ] {
        store
            .increment(&ctx.series(p, k, m), 1.0)
            .await
            .expect("increment");
    }
    let names = |prefix: String| {
        let store = Arc::clone(store);
        async move {
            store
                .list(&prefix)
                .await
                .expect("list")
                .into_iter()
                .map(|l| l.series.to_string())
                .collect::<Vec<String>>()
        }
    };
    let openai = ctx.provider("openai");
    assert_eq!(names(ctx.namespace.clone()).await.len(), 4);
    assert_eq!(
        names(openai.clone()).await,
        vec![
            format!("{openai}:key1:req"),
            format!("{openai}:key1:tokens"),
            format!("{openai}:key2:req"),
        ],
        "sorted by series"
    );
    assert_eq!(names(format!("{openai}:key1")).await.len(), 2);
    assert_eq!(
        names(format!("{openai}:key1:tok")).await,
        vec![format!("{openai}:key1:tokens")]
    );
    assert!(
        names(format!("{openai}:key1:tokens:extra"))
            .await
            .is_empty()
    );
}

/// Documents: put, read, replaced whole, deleted, bad input refused with nothing stored.
pub async fn check_documents(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = format!("resp:{}", ctx.namespace);
    let day = Duration::from_secs(86_400);
    assert_eq!(store.get_doc(&key).await.expect("get missing"), None);
    let blob: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.put_doc(&key, &blob, day).await.expect("put");
    assert_eq!(store.get_doc(&key).await.expect("get"), Some(blob));
    store.put_doc(&key, b"second", day).await.expect("replace");
    assert_eq!(
        store.get_doc(&key).await.expect("get"),
        Some(b"second".to_vec())
    );
    assert!(store.delete_doc(&key).await.expect("delete"), "was there");
    assert!(!store.delete_doc(&key).await.expect("delete"), "gone");
    assert_eq!(store.get_doc(&key).await.expect("get deleted"), None);
    let max = crate::docs::MAX_DOC_BYTES;
    assert_invalid(
        store.put_doc(&key, &vec![b'x'; max + 1], day).await,
        "too big",
    );
    assert_invalid(store.put_doc("", b"x", day).await, "empty key");
    assert_invalid(store.put_doc("a b", b"x", day).await, "odd key");
    assert_invalid(store.get_doc(&"k".repeat(129)).await, "long key");
    assert_invalid(store.put_doc(&key, b"x", Duration::ZERO).await, "no TTL");
    assert_eq!(
        store.get_doc(&key).await.expect("get"),
        None,
        "nothing stored"
    );
}

/// A document disappears once its TTL passes.
pub async fn check_document_ttl(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = format!("ttl:{}", ctx.namespace);
    let ttl = Duration::from_secs(1);
    store.put_doc(&key, b"brief", ttl).await.expect("put");
    assert!(store.get_doc(&key).await.expect("get").is_some());
    match ctx.expiry {
        Expiry::Clock => ctx.clock.advance(ttl + Duration::from_millis(1)),
        Expiry::RealTime => {
            let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(5);
            while store.get_doc(&key).await.expect("get").is_some() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "document outlived its TTL"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(store.get_doc(&key).await.expect("get"), None, "expired");
    assert!(
        !store.delete_doc(&key).await.expect("delete"),
        "nothing live"
    );
}

/// A reachable store is healthy.
pub async fn check_health(store: &Arc<dyn RuntimeStore>, _ctx: &Context) {
    store.health().await.expect("healthy");
}

fn period_counter(name: &str, expires_at_ms: Option<u64>) -> PeriodCounter {
    PeriodCounter {
        name: name.to_owned(),
        expires_at_ms,
    }
}

/// A check of `limit` summing `counted`, writing `amount` to `write` (expiring in a day).
fn period_check(
    ctx: &Context,
    metric: Metric,
    limit: f64,
    amount: f64,
    counted: &[&str],
    write: &str,
) -> PeriodCheck {
    PeriodCheck {
        metric,
        limit,
        amount,
        counted: counted.iter().map(|n| (*n).to_owned()).collect(),
        write: period_counter(write, Some(ctx.clock.now_ms() + 86_400_000)),
    }
}

fn period_reserve(key: &ProviderKey, checks: Vec<PeriodCheck>) -> PeriodReserve {
    PeriodReserve {
        key: key.clone(),
        checks,
    }
}

fn period_read(metric: Metric, counted: &[&str]) -> PeriodRead {
    PeriodRead {
        metric,
        counted: counted.iter().map(|n| (*n).to_owned()).collect(),
    }
}

/// One period sum of `key`.
async fn period_sum(
    store: &Arc<dyn RuntimeStore>,
    key: &ProviderKey,
    metric: Metric,
    counted: &[&str],
) -> f64 {
    let values = store
        .read_periods(key, &[period_read(metric, counted)])
        .await
        .expect("read_periods");
    assert_eq!(values.len(), 1, "one sum per read");
    values[0]
}

/// Period reservations grant up to the limit, then deny with what was used and add nothing;
/// several checks in one call are granted or denied together.
pub async fn check_period_reserve_limits(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "alice");
    let day = period_reserve(
        &key,
        vec![period_check(ctx, Metric::Cost, 1.0, 0.25, &["d1"], "d1")],
    );
    for _ in 0..4 {
        let outcome = store.reserve_periods(&day).await.expect("reserve_periods");
        assert_eq!(outcome, PeriodOutcome::Granted);
    }
    let denied = store.reserve_periods(&day).await.expect("reserve_periods");
    let PeriodOutcome::Denied { check: 0, used } = denied else {
        panic!("the fifth quarter of a 1.0 budget is denied, got {denied:?}");
    };
    assert!(close(used, 1.0), "used {used}");
    assert!(close(
        period_sum(store, &key, Metric::Cost, &["d1"]).await,
        1.0
    ));

    // Both checks fit: both are written. The second does not fit: neither is.
    let both = |tokens_limit: f64| {
        period_reserve(
            &key,
            vec![
                period_check(ctx, Metric::Tokens, 1000.0, 400.0, &["m1"], "m1"),
                period_check(ctx, Metric::Req, tokens_limit, 1.0, &["m1"], "m1"),
            ],
        )
    };
    assert_eq!(
        store.reserve_periods(&both(5.0)).await.expect("reserve"),
        PeriodOutcome::Granted
    );
    let denied = store.reserve_periods(&both(1.0)).await.expect("reserve");
    let PeriodOutcome::Denied { check: 1, used } = denied else {
        panic!("the second check denies, got {denied:?}");
    };
    assert!(close(used, 1.0), "used {used}");
    let sums = store
        .read_periods(
            &key,
            &[
                period_read(Metric::Tokens, &["m1"]),
                period_read(Metric::Req, &["m1"]),
            ],
        )
        .await
        .expect("read_periods");
    assert_eq!(sums, vec![400.0, 1.0], "the denied call added nothing");
    // A zero limit denies any positive amount; a zero amount fits it.
    let zero = period_reserve(
        &key,
        vec![period_check(ctx, Metric::Cost, 0.0, 0.0, &["z"], "z")],
    );
    assert_eq!(
        store.reserve_periods(&zero).await.expect("reserve"),
        PeriodOutcome::Granted
    );
}

/// A rolling sum counts several counters and writes one; counters are separate per key,
/// metric and name.
pub async fn check_period_rolling_sum_and_isolation(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "bob");
    let hours = ["h1", "h2", "h3"];
    for (hour, amount) in hours.iter().zip([3.0, 4.0, 5.0]) {
        let request = period_reserve(
            &key,
            vec![period_check(
                ctx,
                Metric::Tokens,
                100.0,
                amount,
                &hours,
                hour,
            )],
        );
        assert_eq!(
            store.reserve_periods(&request).await.expect("reserve"),
            PeriodOutcome::Granted
        );
    }
    assert_eq!(period_sum(store, &key, Metric::Tokens, &hours).await, 12.0);
    assert_eq!(period_sum(store, &key, Metric::Tokens, &["h2"]).await, 4.0);
    assert_eq!(
        period_sum(store, &key, Metric::Tokens, &["h2", "h3", "h9"]).await,
        9.0,
        "an absent counter counts zero"
    );
    // 12 used of 20: 9 more would pass 20 even though h3 alone holds only 5.
    let over = period_reserve(
        &key,
        vec![period_check(ctx, Metric::Tokens, 20.0, 9.0, &hours, "h3")],
    );
    assert_eq!(
        store.reserve_periods(&over).await.expect("reserve"),
        PeriodOutcome::Denied {
            check: 0,
            used: 12.0
        }
    );
    let other_key = ctx.key("_clients", "carol");
    let other_provider = ctx.key("openai", "bob");
    assert_eq!(
        period_sum(store, &other_key, Metric::Tokens, &hours).await,
        0.0
    );
    assert_eq!(
        period_sum(store, &other_provider, Metric::Tokens, &hours).await,
        0.0
    );
    assert_eq!(period_sum(store, &key, Metric::Cost, &hours).await, 0.0);
    assert_eq!(period_sum(store, &key, Metric::Tokens, &["h4"]).await, 0.0);
    let sums = store
        .read_periods(
            &key,
            &[
                period_read(Metric::Tokens, &["h1"]),
                period_read(Metric::Cost, &["h1"]),
                period_read(Metric::Tokens, &["h3", "h1"]),
            ],
        )
        .await
        .expect("read_periods");
    assert_eq!(sums, vec![3.0, 0.0, 8.0], "one sum per read, in order");
}

/// An expired counter reads 0 and an add to it changes nothing; a counter without an expiry
/// stays.
pub async fn check_period_expiry(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "dave");
    if ctx.expiry == Expiry::RealTime {
        // The store expires by the real clock, which ran on while the harness started it.
        ctx.clock.set_ms(ctx.clock.now_ms().max(wall_ms()));
    }
    let ttl = Duration::from_secs(2);
    let expires = ctx.clock.now_ms() + ttl.as_millis() as u64;
    let request = |name: &str, expires_at_ms: Option<u64>| PeriodReserve {
        key: key.clone(),
        checks: vec![PeriodCheck {
            metric: Metric::Cost,
            limit: 10.0,
            amount: 2.0,
            counted: vec![name.to_owned()],
            write: period_counter(name, expires_at_ms),
        }],
    };
    for (name, expiry) in [("brief", Some(expires)), ("total", None)] {
        assert_eq!(
            store
                .reserve_periods(&request(name, expiry))
                .await
                .expect("reserve"),
            PeriodOutcome::Granted
        );
    }
    assert_eq!(period_sum(store, &key, Metric::Cost, &["brief"]).await, 2.0);
    match ctx.expiry {
        Expiry::Clock => ctx.clock.advance(ttl + Duration::from_millis(1)),
        Expiry::RealTime => {
            let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(5);
            while period_sum(store, &key, Metric::Cost, &["brief"]).await != 0.0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "period counter outlived its expiry"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The store's own clock catches up with the real time that passed.
            ctx.clock
                .set_ms(ctx.clock.now_ms().max(expires + 1).max(wall_ms()));
        }
    }
    assert_eq!(
        period_sum(store, &key, Metric::Cost, &["brief", "total"]).await,
        2.0,
        "the expired counter reads 0, the one without expiry stays"
    );
    let late = PeriodAdd {
        metric: Metric::Cost,
        counter: period_counter("brief", Some(expires)),
        delta: 5.0,
    };
    store
        .add_to_periods(&key, None, std::slice::from_ref(&late))
        .await
        .expect("add to an expired counter");
    store
        .add_to_periods(&key, Some("late-settle"), &[late])
        .await
        .expect("add to an expired counter, once");
    assert_eq!(
        period_sum(store, &key, Metric::Cost, &["brief"]).await,
        0.0,
        "an add to an expired counter changes nothing"
    );
    assert_invalid(
        store
            .reserve_periods(&request("brief", Some(expires)))
            .await,
        "a reservation writing an expired counter",
    );
    assert_eq!(period_sum(store, &key, Metric::Cost, &["total"]).await, 2.0);
}

/// Adds apply together; with a batch id, once; negative deltas give back.
pub async fn check_period_adds(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "erin");
    let expires = Some(ctx.clock.now_ms() + 86_400_000);
    let add = |metric: Metric, name: &str, delta: f64| PeriodAdd {
        metric,
        counter: period_counter(name, expires),
        delta,
    };
    let settle = [
        add(Metric::Cost, "d1", 1.5),
        add(Metric::Tokens, "d1", 300.0),
    ];
    for _ in 0..3 {
        store
            .add_to_periods(&key, Some("settle-1"), &settle)
            .await
            .expect("add once");
    }
    let both = [
        period_read(Metric::Cost, &["d1"]),
        period_read(Metric::Tokens, &["d1"]),
    ];
    assert_eq!(
        store.read_periods(&key, &both).await.expect("read"),
        vec![1.5, 300.0],
        "applied once"
    );
    // Concurrent repeats of one id still apply once.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(store);
            let key = key.clone();
            let settle = settle.clone();
            tokio::spawn(async move { store.add_to_periods(&key, Some("settle-2"), &settle).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("add_to_periods");
    }
    assert_eq!(
        store.read_periods(&key, &both).await.expect("read"),
        vec![3.0, 600.0]
    );
    // Without an id every call counts; negative deltas give back.
    let give_back = [add(Metric::Cost, "d1", -0.5)];
    store
        .add_to_periods(&key, None, &give_back)
        .await
        .expect("add");
    store
        .add_to_periods(&key, None, &give_back)
        .await
        .expect("add");
    assert!(close(
        period_sum(store, &key, Metric::Cost, &["d1"]).await,
        2.0
    ));
    // What was given back can be reserved again.
    let request = period_reserve(
        &key,
        vec![period_check(ctx, Metric::Cost, 3.0, 1.0, &["d1"], "d1")],
    );
    assert_eq!(
        store.reserve_periods(&request).await.expect("reserve"),
        PeriodOutcome::Granted
    );
    assert_eq!(
        store.reserve_periods(&request).await.expect("reserve"),
        PeriodOutcome::Denied {
            check: 0,
            used: 3.0
        }
    );
    // An add to an absent counter creates it.
    store
        .add_to_periods(&key, None, &[add(Metric::Req, "fresh", 2.0)])
        .await
        .expect("add");
    assert_eq!(period_sum(store, &key, Metric::Req, &["fresh"]).await, 2.0);
}

/// Concurrent reservers never pass the limit, and the counter ends at exactly what was granted.
pub async fn check_period_reserve_under_contention(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "frank");
    let request = period_reserve(
        &key,
        vec![period_check(ctx, Metric::Req, 37.0, 1.0, &["d1"], "d1")],
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(store);
            let request = request.clone();
            tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..10 {
                    let outcome = store.reserve_periods(&request).await.expect("reserve");
                    granted += usize::from(outcome == PeriodOutcome::Granted);
                }
                granted
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.expect("task");
    }
    assert_eq!(granted, 37, "exactly the limit of 200 attempts is granted");
    assert_eq!(period_sum(store, &key, Metric::Req, &["d1"]).await, 37.0);
}

/// Bad input is refused as invalid and changes nothing.
pub async fn check_period_bad_input(store: &Arc<dyn RuntimeStore>, ctx: &Context) {
    let key = ctx.key("_clients", "grace");
    let good = period_check(ctx, Metric::Cost, 10.0, 1.0, &["d1"], "d1");
    let with = |change: &dyn Fn(&mut PeriodCheck)| {
        let mut check = good.clone();
        change(&mut check);
        // A good check first: a bad second one must stop it being written too.
        period_reserve(&key, vec![good.clone(), check])
    };
    let bad_requests = [
        ("NaN amount", with(&|c| c.amount = f64::NAN)),
        ("infinite limit", with(&|c| c.limit = f64::INFINITY)),
        ("negative limit", with(&|c| c.limit = -1.0)),
        ("negative amount", with(&|c| c.amount = -1.0)),
        ("nothing counted", with(&|c| c.counted.clear())),
        (
            "bad counted name",
            with(&|c| c.counted = vec!["a b".into()]),
        ),
        ("bad write name", with(&|c| c.write.name = "{x}".into())),
        ("empty write name", with(&|c| c.write.name = String::new())),
        (
            "long name",
            with(&|c| c.write.name = "n".repeat(crate::period::MAX_PERIOD_NAME_LEN + 1)),
        ),
        (
            "too many counted",
            with(&|c| c.counted = vec!["d1".into(); crate::period::MAX_COUNTED + 1]),
        ),
        (
            "expired write",
            with(&|c| c.write.expires_at_ms = Some(ctx.clock.now_ms() - 60_000)),
        ),
        (
            "too many checks",
            period_reserve(&key, vec![good.clone(); crate::period::MAX_PER_CALL + 1]),
        ),
        ("no checks", period_reserve(&key, vec![])),
    ];
    for (what, request) in &bad_requests {
        assert_invalid(store.reserve_periods(request).await, what);
    }
    let add = PeriodAdd {
        metric: Metric::Cost,
        counter: good.write.clone(),
        delta: 1.0,
    };
    let bad_add = |change: &dyn Fn(&mut PeriodAdd)| {
        let mut bad = add.clone();
        change(&mut bad);
        vec![add.clone(), bad]
    };
    let bad_adds = [
        ("NaN delta", None, bad_add(&|a| a.delta = f64::NAN)),
        ("huge delta", None, bad_add(&|a| a.delta = -1e300)),
        (
            "bad name",
            None,
            bad_add(&|a| a.counter.name = "a/b".into()),
        ),
        ("bad batch id", Some("has space"), vec![add.clone()]),
        ("no adds", None, vec![]),
        (
            "too many adds",
            None,
            vec![add.clone(); crate::period::MAX_PER_CALL + 1],
        ),
    ];
    for (what, batch_id, adds) in &bad_adds {
        assert_invalid(store.add_to_periods(&key, *batch_id, adds).await, what);
    }
    assert_invalid(store.read_periods(&key, &[]).await, "no reads");
    assert_invalid(
        store
            .read_periods(&key, &[period_read(Metric::Cost, &[])])
            .await,
        "a read of nothing",
    );
    assert_invalid(
        store
            .read_periods(&key, &[period_read(Metric::Cost, &["a b"])])
            .await,
        "a read of a bad name",
    );
    assert_eq!(
        period_sum(store, &key, Metric::Cost, &["d1"]).await,
        0.0,
        "bad input changed nothing"
    );
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
