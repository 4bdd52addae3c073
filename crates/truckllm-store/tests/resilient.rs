//! The resilient wrapper against a real Redis that is killed and restarted.

use std::time::{Duration, Instant};

use truckllm_store::{
    LimitCheck, Metric, OutageLimits, ProviderKey, RedisOptions, RedisStore, ReserveOutcome,
    ReserveRequest, ResilientOptions, ResilientStore, RuntimeStore, RuntimeStoreExt, Series,
    StoreOptions,
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
    // A batch during the outage is decided from memory too, in order, at the same share.
    let batch = vec![
        ReserveRequest {
            key: ProviderKey::new("openai", "key2").expect("key"),
            checks: vec![LimitCheck {
                limit: 6.0,
                ..request.checks[0].clone()
            }],
            id: None,
        };
        4
    ];
    let outcomes = store
        .reserve_many(&batch)
        .await
        .expect("reserve_many during outage");
    let granted: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, ReserveOutcome::Granted(_)))
        .collect();
    assert_eq!(granted, [true, true, true, false], "6 over 2 instances: 3");

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
    assert_eq!(
        server.cli(&["GET", "usage:{openai:key2}:tokens"]),
        "3",
        "the outage's batched reservations were replayed"
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

/// A primary of a real 3-node cluster is killed with SIGKILL under concurrent load and
/// restarted: every increment the wrapper acknowledged is in the cluster exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_restart_under_load_loses_no_increment() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cluster = tokio::task::spawn_blocking(|| {
        truckllm_testkit::RedisCluster::start_with(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    })
    .await
    .expect("cluster");
    let redis_options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let inner = RedisStore::connect(&cluster.url(), StoreOptions::default(), redis_options)
        .await
        .expect("connect");
    let store = Arc::new(ResilientStore::new(
        inner,
        StoreOptions::default(),
        options(),
    ));
    let mut events = store.subscribe();
    // Sixteen provider keys: their hash tags spread over the three primaries' slots.
    let series: Vec<Series> = (0..16)
        .map(|i| Series::new(format!("p{i}"), "k", Metric::Req).expect("series"))
        .collect();
    let acknowledged: Arc<Vec<AtomicU64>> =
        Arc::new(series.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, series, acknowledged, stop) = (
                Arc::clone(&store),
                series.clone(),
                Arc::clone(&acknowledged),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::SeqCst) {
                    let i = n % series.len();
                    if store.increment(&series[i], 1.0).await.is_ok() {
                        acknowledged[i].fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes_mut()[0].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(store.is_degraded(), "losing a primary was noticed");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.nodes_mut()[0].restart();
        cluster.wait_until_healthy();
        cluster
    })
    .await
    .expect("restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while store.is_degraded() || store.journal_len() > 0 {
        assert!(
            Instant::now() < deadline,
            "never recovered; journal {}",
            store.journal_len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The alerts: degraded once, then recovered with the replayed increments.
    assert!(matches!(
        events.try_recv(),
        Ok(truckllm_store::StorageEvent::Degraded {
            backend: "redis-cluster",
            ..
        })
    ));
    match events.try_recv() {
        Ok(truckllm_store::StorageEvent::Recovered {
            replayed_increments,
            ..
        }) => {
            assert!(
                replayed_increments > 0,
                "the outage's increments were replayed"
            );
        }
        other => panic!("expected a recovered event, got {other:?}"),
    }
    let total: u64 = acknowledged.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    assert!(total > 500, "the load ran throughout: {total} increments");
    for (i, s) in series.iter().enumerate() {
        assert_eq!(
            store.get(s).await.expect("read back from the cluster"),
            acknowledged[i].load(Ordering::SeqCst) as f64,
            "{s}: every acknowledged increment counted exactly once"
        );
    }
    drop(cluster);
}

/// Budgets' period counters through an outage: reservations decided in memory at the share
/// (10 over 2 instances: 5), settlements journaled under their batch ids, reads from memory,
/// and after the restart every grant and settlement in Redis exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn period_counters_follow_outage_limits_and_replay_exactly_once() {
    use truckllm_store::{
        PeriodAdd, PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve,
    };

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
    let key = ProviderKey::new("_clients", "alice").expect("key");
    let day = PeriodCounter {
        name: "d1".into(),
        expires_at_ms: None,
    };
    let request = PeriodReserve {
        key: key.clone(),
        checks: vec![PeriodCheck {
            metric: Metric::Cost,
            limit: 10.0,
            amount: 1.0,
            counted: vec!["d1".into()],
            write: day.clone(),
        }],
    };
    let settle = |delta: f64| {
        [PeriodAdd {
            metric: Metric::Cost,
            counter: day.clone(),
            delta,
        }]
    };
    let read = [PeriodRead {
        metric: Metric::Cost,
        counted: vec!["d1".into()],
    }];

    for _ in 0..3 {
        let outcome = store.reserve_periods(&request).await.expect("healthy");
        assert_eq!(outcome, PeriodOutcome::Granted);
    }
    store
        .add_to_periods(&key, Some("settle-a"), &settle(-0.5))
        .await
        .expect("healthy settlement");
    assert!(!store.is_degraded());

    server.kill();
    let mut granted = 0;
    for _ in 0..8 {
        let outcome = store
            .reserve_periods(&request)
            .await
            .expect("reserve during the outage");
        granted += usize::from(outcome == PeriodOutcome::Granted);
    }
    assert!(store.is_degraded(), "the outage was noticed");
    assert_eq!(granted, 5, "a limit of 10 over 2 instances: 5 from memory");
    for id in ["settle-b", "settle-b", "settle-a"] {
        store
            .add_to_periods(&key, Some(id), &settle(-1.0))
            .await
            .expect("settlement during the outage");
    }
    let during = store.read_periods(&key, &read).await.expect("read");
    assert_eq!(
        during,
        vec![3.0],
        "reads come from memory: 5 granted, settle-b once, settle-a once (memory never saw it)"
    );

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
    // 3 - 0.5 before; 5 granted and settle-b's -1 replayed once; settle-a's repeat skipped.
    assert_eq!(
        server.cli(&["GET", "usage-period:{_clients:alice}:cost:d1"]),
        "6.5"
    );
    assert_eq!(
        store.read_periods(&key, &read).await.expect("read"),
        vec![6.5]
    );
}

/// Fail-open during an outage: every period reservation is granted, counted in memory, and
/// replayed once, so the store holds the overspend afterwards (and denies from then on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_period_reservations_are_granted_and_replayed() {
    use truckllm_store::{PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve};

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let redis_options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let inner = RedisStore::connect(&server.url(), StoreOptions::default(), redis_options)
        .await
        .expect("connect");
    let fail_open = ResilientOptions {
        limits: OutageLimits::FailOpen,
        ..options()
    };
    let store = ResilientStore::new(inner, StoreOptions::default(), fail_open);
    let key = ProviderKey::new("_teams", "search").expect("key");
    let request = PeriodReserve {
        key: key.clone(),
        checks: vec![PeriodCheck {
            metric: Metric::Tokens,
            limit: 3.0,
            amount: 1.0,
            counted: vec!["total".into()],
            write: PeriodCounter {
                name: "total".into(),
                expires_at_ms: None,
            },
        }],
    };
    let reserve = || async {
        store
            .reserve_periods(&request)
            .await
            .expect("reserve_periods")
    };
    assert_eq!(reserve().await, PeriodOutcome::Granted);
    server.kill();
    for _ in 0..4 {
        assert_eq!(reserve().await, PeriodOutcome::Granted, "fail-open");
    }
    assert!(store.is_degraded());
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.is_degraded() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.cli(&["GET", "usage-period:{_teams:search}:tokens:total"]),
        "5",
        "1 before and 4 during the outage, each once"
    );
    let read = PeriodRead {
        metric: Metric::Tokens,
        counted: vec!["total".into()],
    };
    assert_eq!(
        store.read_periods(&key, &[read]).await.expect("read"),
        vec![5.0]
    );
    assert_eq!(
        reserve().await,
        PeriodOutcome::Denied {
            check: 0,
            used: 5.0
        }
    );
}
