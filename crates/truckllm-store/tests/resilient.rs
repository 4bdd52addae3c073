//! The resilient wrapper against a real Redis that is killed and restarted.

use std::time::{Duration, Instant};

use truckllm_store::{
    LimitCheck, Metric, OutageLimits, ProviderKey, RedisOptions, RedisStore, ReserveOutcome,
    ReserveRequest, ResilientOptions, ResilientStore, RuntimeStore, Series, StoreOptions,
};
use truckllm_testkit::RedisServer;

fn options() -> ResilientOptions {
    ResilientOptions {
        call_timeout: Duration::from_millis(300),
        probe_min_delay: Duration::from_millis(50),
        probe_max_delay: Duration::from_millis(300),
        replay_batch: 7,
        limits: OutageLimits::Share { instances: 2 },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_served_from_memory_and_replayed_exactly_once() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Redis keeps what it acknowledged across the kill, as a production Redis with AOF would.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let redis_options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let inner = RedisStore::connect(&server.url(), StoreOptions::default(), redis_options)
        .await
        .expect("connect");
    let store = ResilientStore::new(inner, StoreOptions::default(), options());
    let req = Series::new("openai", "key1", Metric::Req).expect("series");
    let tokens = Series::new("openai", "key1", Metric::Tokens).expect("series");

    for _ in 0..100 {
        store.increment(&req, 1.0).await.expect("healthy increment");
    }
    assert!(!store.is_degraded());

    server.kill();
    for i in 0..100 {
        store
            .increment(&req, 1.0)
            .await
            .unwrap_or_else(|e| panic!("increment {i} during the outage failed: {e}"));
    }
    assert!(store.is_degraded(), "the outage was noticed");
    assert!(store.journal_len() > 0, "outage deltas are journaled");
    // Limits run from memory at a conservative share: 10 per minute over 2 instances = 5 here.
    let request = ReserveRequest {
        key: ProviderKey::new("openai", "key1").expect("key"),
        checks: vec![LimitCheck {
            metric: Metric::Tokens,
            limit: 10.0,
            window: Duration::from_secs(60),
            amount: 1.0,
        }],
        id: None,
    };
    let mut granted = 0;
    for _ in 0..8 {
        if let ReserveOutcome::Granted(r) = store
            .reserve(&request)
            .await
            .expect("reserve during outage")
        {
            granted += 1;
            drop(r);
        }
    }
    assert_eq!(granted, 5);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.is_degraded() {
        assert!(
            Instant::now() < deadline,
            "never recovered; journal {}",
            store.journal_len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.journal_len(), 0);
    assert_eq!(
        server.cli(&["GET", "usage:{openai:key1}:req"]),
        "200",
        "every increment counted exactly once"
    );
    assert_eq!(
        server.cli(&["GET", "usage:{openai:key1}:tokens"]),
        "5",
        "the outage's reservations were replayed"
    );
    assert_eq!(store.get(&req).await.expect("read from Redis again"), 200.0);
    assert_eq!(store.get(&tokens).await.expect("read"), 5.0);
}

#[tokio::test]
async fn a_batch_sent_before_the_outage_is_not_counted_twice() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let inner = RedisStore::connect(
        &server.url(),
        StoreOptions::default(),
        RedisOptions::default(),
    )
    .await
    .expect("connect");
    let store = ResilientStore::new(inner, StoreOptions::default(), options());
    let s = Series::new("p", "k", Metric::Req).expect("series");
    let batch = [truckllm_store::Increment::new(s.clone(), 3.0)];
    // The batch reaches Redis; then the outage begins and the caller repeats it (same id).
    store
        .increment_many_once("caller-batch-1", &batch)
        .await
        .expect("applied");
    server.kill();
    store
        .increment_many_once("caller-batch-1", &batch)
        .await
        .expect("served from memory");
    assert!(store.is_degraded());
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.is_degraded() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.cli(&["GET", "usage:{p:k}:req"]),
        "3",
        "the replay skipped the id Redis had applied"
    );
}
