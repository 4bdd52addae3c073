//! The coalescing wrapper's own behaviour: concurrent reservations leave as one batch, in
//! arrival order; a lone reservation leaves at once; bad input fails alone; a backend failure
//! reaches every caller of the batch. (The conformance suite covers its decisions.)

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use truckllm_store::{
    CoalescingOptions, CoalescingStore, InstrumentedStore, LimitCheck, MemoryStore, Metric,
    ProviderKey, RedisOptions, RedisStore, ReserveOutcome, ReserveRequest, RuntimeStore,
    RuntimeStoreExt, StoreError, StoreOptions,
};
use truckllm_testkit::RedisServer;

fn request(limit: f64) -> ReserveRequest {
    ReserveRequest {
        key: ProviderKey::new("openai", "key1").expect("key"),
        checks: vec![LimitCheck {
            metric: Metric::Req,
            limit,
            window: Duration::from_secs(60),
            amount: 1.0,
        }],
        id: None,
    }
}

/// A coalescing store over an instrumented memory store, and the inner store's metrics.
fn counted_store(
    options: CoalescingOptions,
) -> (CoalescingStore<impl RuntimeStore>, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let inner = InstrumentedStore::with_recorder(MemoryStore::new(), &recorder);
    (CoalescingStore::new(inner, options), handle)
}

/// How many calls of `operation` reached the inner store.
fn calls(metrics: &PrometheusHandle, operation: &str) -> u64 {
    let prefix = format!("storage_operation_duration_seconds_count{{operation=\"{operation}\"");
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// On a current-thread runtime the batch's task runs only once the test task waits, so all 100
// calls queue first: deterministic, no timing involved.
#[tokio::test]
async fn concurrent_reservations_leave_as_one_batch_in_arrival_order() {
    let (store, metrics) = counted_store(CoalescingOptions {
        max_in_flight: 1,
        max_batch: 256,
    });
    let request = request(60.0);
    let outcomes = join_all((0..100).map(|_| store.reserve(&request))).await;
    let granted: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, Ok(ReserveOutcome::Granted(_))))
        .collect();
    assert_eq!(
        granted[..60],
        [true; 60],
        "the first 60 to arrive are admitted"
    );
    assert_eq!(granted[60..], [false; 40], "the rest are denied");
    assert_eq!(calls(&metrics, "reserve_many"), 1, "one batch for all 100");
    assert_eq!(calls(&metrics, "reserve"), 0, "none sent alone");
}

#[tokio::test]
async fn batches_are_cut_at_max_batch() {
    let (store, metrics) = counted_store(CoalescingOptions {
        max_in_flight: 1,
        max_batch: 16,
    });
    let request = request(1000.0);
    let outcomes = join_all((0..100).map(|_| store.reserve(&request))).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(ReserveOutcome::Granted(_))))
    );
    assert_eq!(
        calls(&metrics, "reserve_many") + calls(&metrics, "reserve"),
        7,
        "100 in batches of at most 16"
    );
}

#[tokio::test]
async fn a_lone_reservation_leaves_at_once() {
    let (store, metrics) = counted_store(CoalescingOptions::default());
    for i in 1..=5 {
        let outcome = store.reserve(&request(10.0)).await.expect("reserve");
        assert!(matches!(outcome, ReserveOutcome::Granted(_)));
        assert_eq!(
            calls(&metrics, "reserve"),
            i,
            "each call is its own batch (of one, named by its single form)"
        );
    }
}

#[tokio::test]
async fn several_reservations_in_one_call_are_already_a_batch() {
    let (store, metrics) = counted_store(CoalescingOptions::default());
    let requests = [request(2.0), request(2.0), request(2.0)];
    let outcomes = store.reserve_many(&requests).await.expect("reserve_many");
    let granted: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, ReserveOutcome::Granted(_)))
        .collect();
    assert_eq!(granted, [true, true, false], "decided in input order");
    assert_eq!(calls(&metrics, "reserve_many"), 1, "sent as it is");
}

#[tokio::test]
async fn bad_input_fails_alone() {
    let (store, metrics) = counted_store(CoalescingOptions::default());
    let good = request(10.0);
    let bad = request(f64::NAN);
    let outcomes = join_all([&good, &bad, &good].map(|r| store.reserve(r))).await;
    assert!(matches!(outcomes[0], Ok(ReserveOutcome::Granted(_))));
    assert!(
        matches!(outcomes[1], Err(StoreError::InvalidInput { .. })),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(outcomes[2], Ok(ReserveOutcome::Granted(_))));
    assert_eq!(
        calls(&metrics, "reserve_many"),
        1,
        "the bad one never joined"
    );
}

#[tokio::test]
async fn a_failed_batch_answers_every_caller_and_the_next_batch_goes_out() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut server = RedisServer::start();
    let inner = RedisStore::connect(
        &server.url(),
        StoreOptions::default(),
        RedisOptions::default(),
    )
    .await
    .expect("connect");
    let store = Arc::new(CoalescingStore::new(inner, CoalescingOptions::default()));
    let request = request(1000.0);
    server.kill();
    let outcomes = join_all((0..20).map(|_| store.reserve(&request))).await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Err(e) if e.is_retryable()),
            "every caller learns of the outage: {outcome:?}"
        );
    }
    server.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if let Ok(ReserveOutcome::Granted(_)) = store.reserve(&request).await {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "reservations go out again once Redis is back");
}
