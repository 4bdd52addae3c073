//! Behaviour only a real Redis shows: the seed's key layout, script-cache loss, credentials
//! and TLS from the URL, restarts, a server that never answers, SCAN paging, and metrics.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use truckllm_store::{
    Increment, InstrumentedStore, Metric, RedisOptions, RedisStore, RuntimeStore, RuntimeStoreExt,
    Series, StoreError, StoreOptions,
};
use truckllm_store::{PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve};
use truckllm_testkit::RedisServer;

fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn connect(url: &str) -> Result<RedisStore, StoreError> {
    install_tls_provider();
    RedisStore::connect(url, StoreOptions::default(), RedisOptions::default()).await
}

fn series(provider: &str, key: &str, metric: Metric) -> Series {
    Series::new(provider, key, metric).expect("valid series")
}

#[tokio::test]
async fn counters_use_the_seed_layout_with_a_60s_ttl() {
    let server = RedisServer::start();
    let store = connect(&server.url()).await.expect("connect");
    store
        .increment(&series("openai", "key1", Metric::Req), 45.0)
        .await
        .expect("incr");
    store
        .increment(&series("openai", "key1", Metric::Tokens), 1200.0)
        .await
        .expect("incr");
    assert_eq!(server.cli(&["GET", "usage:{openai:key1}:req"]), "45");
    assert_eq!(server.cli(&["GET", "usage:{openai:key1}:tokens"]), "1200");
    let ttl: u64 = server
        .cli(&["PTTL", "usage:{openai:key1}:req"])
        .parse()
        .expect("pttl");
    assert!(ttl > 55_000 && ttl <= 60_000, "ttl {ttl} ms");
    // Both keys of one provider key share a hash slot, as Redis Cluster needs.
    let slot = |key: &str| server.cli(&["CLUSTER", "KEYSLOT", key]);
    assert_eq!(
        slot("usage:{openai:key1}:req"),
        slot("usage-buckets:{openai:key1}:tokens")
    );
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded_without_double_counting() {
    let server = RedisServer::start();
    let store = connect(&server.url()).await.expect("connect");
    let a = series("p", "a", Metric::Req);
    let b = series("p", "b", Metric::Req);
    store.increment(&a, 1.0).await.expect("first");
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    let batch = [
        Increment::new(a.clone(), 1.0),
        Increment::new(b.clone(), 1.0),
    ];
    assert_eq!(
        store.increment_many(&batch).await.expect("after flush"),
        vec![2.0, 1.0]
    );
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(
        store
            .window(&a, Duration::from_secs(60))
            .await
            .expect("window"),
        2.0
    );
    assert_eq!(store.get(&a).await.expect("get"), 2.0);
}

#[tokio::test]
async fn password_user_and_db_come_from_the_url() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/3", server.port());
    let store = connect(&url).await.expect("connect with password");
    store
        .set(&series("p", "k", Metric::Req), 7.0)
        .await
        .expect("set");
    assert_eq!(server.cli(&["-n", "3", "GET", "usage:{p:k}:req"]), "7");
    assert_eq!(server.cli(&["-n", "0", "EXISTS", "usage:{p:k}:req"]), "0");
    assert!(!store.to_string().contains("s3cret"), "{store}");

    server.cli(&[
        "ACL", "SETUSER", "gateway", "on", ">gw-pass", "~usage*", "+@all",
    ]);
    let user_url = format!("redis://gateway:gw-pass@127.0.0.1:{}", server.port());
    let as_user = connect(&user_url).await.expect("connect as ACL user");
    assert_eq!(
        as_user
            .increment(&series("p", "u", Metric::Req), 1.0)
            .await
            .expect("incr"),
        1.0
    );

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    let err = connect(&wrong)
        .await
        .expect_err("a wrong password is refused");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    install_tls_provider();
    let server = RedisServer::start_tls();
    let options = RedisOptions {
        tls_ca_file: Some(server.ca_file()),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), StoreOptions::default(), options)
        .await
        .expect("connect over TLS");
    let s = series("openai", "key1", Metric::Req);
    assert_eq!(store.increment(&s, 2.0).await.expect("incr over TLS"), 2.0);
    assert_eq!(server.cli(&["GET", "usage:{openai:key1}:req"]), "2");
    let key = s.key().clone();
    let budget = PeriodReserve {
        key: key.clone(),
        checks: vec![PeriodCheck {
            metric: Metric::Cost,
            limit: 1.0,
            amount: 0.75,
            counted: vec!["total".into()],
            write: PeriodCounter {
                name: "total".into(),
                expires_at_ms: None,
            },
        }],
    };
    assert_eq!(
        store
            .reserve_periods(&budget)
            .await
            .expect("period over TLS"),
        PeriodOutcome::Granted
    );
    assert_eq!(
        server.cli(&["GET", "usage-period:{openai:key1}:cost:total"]),
        "0.75"
    );
    assert_eq!(
        server.cli(&["PTTL", "usage-period:{openai:key1}:cost:total"]),
        "-1",
        "a total never expires"
    );
    let read = PeriodRead {
        metric: Metric::Cost,
        counted: vec!["total".into()],
    };
    assert_eq!(
        store
            .read_periods(&key, &[read])
            .await
            .expect("read over TLS"),
        vec![0.75]
    );
    let untrusted = connect(&server.url()).await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA is refused"
    );
}

#[tokio::test]
async fn calls_fail_while_redis_is_down_and_recover_after_a_restart() {
    let mut server = RedisServer::start();
    let store = connect(&server.url()).await.expect("connect");
    let s = series("p", "k", Metric::Req);
    store.increment(&s, 1.0).await.expect("before");
    server.kill();
    let err = store.increment(&s, 1.0).await.expect_err("redis is down");
    assert!(err.is_retryable(), "{err}");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let value = loop {
        match store.increment(&s, 1.0).await {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => assert!(e.is_retryable(), "{e}"),
            Err(e) => panic!("no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The restarted server kept nothing (no persistence), and scripts were reloaded.
    assert_eq!(value, 1.0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "redis://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let err = RedisStore::connect(&url, StoreOptions::default(), options)
        .await
        .expect_err("nothing answers");
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn listing_pages_through_scan() {
    let server = RedisServer::start();
    let store = connect(&server.url()).await.expect("connect");
    let increments: Vec<Increment> = (0..2500)
        .map(|i| Increment::new(series("many", &format!("k{i:04}"), Metric::Req), 1.0))
        .collect();
    store.increment_many(&increments).await.expect("batch");
    store
        .increment(&series("other", "k", Metric::Req), 1.0)
        .await
        .expect("incr");
    let listed = store.list("many:").await.expect("list");
    assert_eq!(listed.len(), 2500);
    assert!(
        listed.windows(2).all(|w| w[0].series < w[1].series),
        "sorted, no duplicates"
    );
    assert_eq!(store.list("many:k0042").await.expect("list").len(), 1);
}

#[tokio::test]
async fn the_instrumented_wrapper_exports_the_seed_metrics() {
    let mut server = RedisServer::start();
    let recorder = PrometheusBuilder::new()
        .set_buckets(truckllm_store::instrumented::DURATION_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    let inner = connect(&server.url()).await.expect("connect");
    let store: Arc<dyn RuntimeStore> = Arc::new(InstrumentedStore::with_recorder(inner, &recorder));
    let s = series("openai", "key1", Metric::Req);
    store.increment(&s, 1.0).await.expect("incr");
    store.get(&s).await.expect("get");
    assert!(
        store.set(&s, f64::NAN).await.is_err(),
        "bad input is not a storage error"
    );
    server.kill();
    assert!(store.get(&s).await.is_err());

    let text = handle.render();
    for line in [
        r#"storage_operation_duration_seconds_bucket{operation="get",backend="redis",le="+Inf"} 2"#,
        r#"storage_operation_duration_seconds_count{operation="increment",backend="redis"} 1"#,
        r#"storage_errors_total{backend="redis",operation="get"} 1"#,
        r#"storage_errors_total{backend="redis",operation="set"} 0"#,
        r#"storage_connections_active{backend="redis"} 0"#,
        r#"storage_connections_idle{backend="redis"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(!text.contains("key1"), "no series names in labels");
}
