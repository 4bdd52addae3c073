//! The PostgreSQL store against real servers, beyond the conformance suite: migrations under
//! concurrent starts and a newer schema refused, expired rows really deleted, limits held by
//! several stores (gateways) at once, TLS by `sslmode`, and an outage ridden out by the
//! resilient wrapper and replayed exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use truckllm_store::postgres::schema;
use truckllm_store::{Clock, PeriodAdd, PeriodCounter};
use truckllm_store::{
    Increment, LimitCheck, ManualClock, Metric, OutageLimits, PostgresOptions, PostgresStore,
    ProviderKey, ReserveOutcome, ReserveRequest, ResilientOptions, ResilientStore, RuntimeStore,
    RuntimeStoreExt, Series, StoreError, StoreOptions,
};
use truckllm_testkit::PostgresServer;

fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn fresh_database() -> (String, &'static PostgresServer) {
    install_tls_provider();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("create a test database");
    (url, server)
}

fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// Connects with long timeouts: these tests are about correctness, and a loaded CI host may
/// queue 150 calls on one key for longer than the default 2 s.
async fn connect(url: &str, options: StoreOptions) -> Result<PostgresStore, StoreError> {
    let postgres = PostgresOptions {
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    };
    PostgresStore::connect(url, options, postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stores_opening_at_once_apply_the_schema_once() {
    let (url, server) = fresh_database().await;
    let opened = join_all((0..6).map(|_| connect(&url, StoreOptions::default()))).await;
    for store in &opened {
        assert!(store.is_ok(), "every store opens: {store:?}");
    }
    let db = database_name(&url);
    let versions: Vec<String> = (1..=schema::latest_version())
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        server.psql_in(
            db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM truckllm_migrations WHERE success"
        ),
        versions.join(","),
        "every version applied, each once"
    );
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let (url, server) = fresh_database().await;
    drop(
        connect(&url, StoreOptions::default())
            .await
            .expect("first open"),
    );
    server.psql_in(
        database_name(&url),
        "INSERT INTO truckllm_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from a newer truckllm', true, '\\x00', 0)",
    );
    let err = connect(&url, StoreOptions::default())
        .await
        .expect_err("a newer schema is refused");
    let message = err.to_string();
    assert!(
        message.contains("version 999") && message.contains("newer than this binary knows"),
        "{message}"
    );
    assert!(!err.is_retryable(), "waiting will not help: {message}");
}

#[tokio::test]
async fn expired_rows_are_deleted_not_only_hidden() {
    let (url, server) = fresh_database().await;
    let clock = ManualClock::starting_now();
    let options = StoreOptions {
        clock: Arc::new(clock.clone()),
        ..StoreOptions::default()
    };
    let store = connect(&url, options).await.expect("connect");
    let req = Series::new("p", "k", Metric::Req).expect("series");
    store
        .increment_many_once("b-1", &[Increment::new(req.clone(), 2.0)])
        .await
        .expect("increment");
    // Two period counters: one expiring in 30 s, one never.
    let period = |name: &str, expires_at_ms: Option<u64>| PeriodAdd {
        metric: Metric::Cost,
        counter: PeriodCounter {
            name: name.into(),
            expires_at_ms,
        },
        delta: 1.0,
    };
    let brief = period("d1", Some(clock.now_ms() + 30_000));
    store
        .add_to_periods(req.key(), None, &[brief, period("total", None)])
        .await
        .expect("add to periods");
    let db = database_name(&url);
    let rows = || {
        [
            "truckllm_counters",
            "truckllm_buckets",
            "truckllm_rollups",
            "truckllm_batch_ids",
            "truckllm_periods",
        ]
        .map(|table| server.psql_in(db, &format!("SELECT count(*) FROM {table}")))
    };
    assert_eq!(rows(), ["1", "1", "1", "1", "2"]);
    assert_eq!(
        store.sweep().await.expect("sweep"),
        0,
        "nothing expired yet"
    );

    // Past the counter TTL, the longest window and the period's expiry: the counter, bucket
    // and expired period go; the period without expiry stays.
    clock.advance(Duration::from_secs(62));
    assert_eq!(store.sweep().await.expect("sweep"), 3);
    assert_eq!(rows(), ["0", "0", "1", "1", "1"]);
    // Past the roll-up retention and the batch id's hour: the rest goes.
    clock.advance(Duration::from_secs(3660));
    assert_eq!(store.sweep().await.expect("sweep"), 2);
    assert_eq!(rows(), ["0", "0", "0", "0", "1"]);
    assert_eq!(store.get(&req).await.expect("get"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_on_one_database_admit_exactly_the_limit() {
    let (url, _server) = fresh_database().await;
    let mut stores: Vec<Arc<PostgresStore>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            connect(&url, StoreOptions::default())
                .await
                .expect("connect"),
        ));
    }
    let request = ReserveRequest {
        key: ProviderKey::new("openai", "key1").expect("key"),
        checks: vec![
            LimitCheck {
                metric: Metric::Req,
                limit: 50.0,
                window: Duration::from_secs(60),
                amount: 1.0,
            },
            LimitCheck {
                metric: Metric::Tokens,
                limit: 1e9,
                window: Duration::from_secs(60),
                amount: 10.0,
            },
        ],
        id: None,
    };
    let calls = (0..150).map(|i| {
        let store = Arc::clone(&stores[i % stores.len()]);
        let request = request.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                store.reserve(&request).await.map(|o| vec![o])
            } else {
                store.reserve_many(&[request.clone(), request]).await
            }
        })
    });
    let mut granted = 0;
    for outcome in join_all(calls).await {
        for o in outcome.expect("task").expect("reserve") {
            granted += usize::from(matches!(o, ReserveOutcome::Granted(_)));
        }
    }
    assert_eq!(granted, 50, "exactly the limit, across three gateways");
    let req = request.key.series(Metric::Req);
    let tokens = request.key.series(Metric::Tokens);
    assert_eq!(stores[0].get(&req).await.expect("get"), 50.0);
    assert_eq!(stores[1].get(&tokens).await.expect("get"), 500.0);
}

#[tokio::test]
async fn tls_follows_sslmode() {
    install_tls_provider();
    let server = tokio::task::spawn_blocking(PostgresServer::start_tls)
        .await
        .expect("start a TLS postgres");
    let ca = server.ca_file().display().to_string();
    let verified = format!("{}?sslmode=verify-full&sslrootcert={ca}", server.url());
    let store = connect(&verified, StoreOptions::default())
        .await
        .expect("TLS with the private CA");
    store.health().await.expect("healthy over TLS");
    let s = Series::new("p", "k", Metric::Req).expect("series");
    assert_eq!(store.increment(&s, 1.0).await.expect("increment"), 1.0);

    let plain = format!("{}?sslmode=disable", server.url());
    let refused = connect(&plain, StoreOptions::default()).await;
    assert!(
        refused.is_err(),
        "the server takes TLS only, so sslmode=disable cannot connect"
    );
    let unknown_ca = format!("{}?sslmode=verify-full", server.url());
    assert!(
        connect(&unknown_ca, StoreOptions::default()).await.is_err(),
        "a certificate from an unknown CA is not trusted"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_outage_and_the_password_stays_secret() {
    install_tls_provider();
    let port = truckllm_testkit::free_port();
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{port}/usage");
    let options = PostgresOptions {
        connect_timeout: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let err = PostgresStore::connect(&url, StoreOptions::default(), options)
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    let bad = PostgresStore::connect(
        "postgres://app:s3cret-pw@127.0.0.1:notaport/usage",
        StoreOptions::default(),
        PostgresOptions::default(),
    )
    .await
    .expect_err("not a URL");
    assert!(bad.is_caller_fault(), "{bad}");
    assert!(!bad.to_string().contains("s3cret-pw"), "{bad}");
}

fn resilient_options() -> ResilientOptions {
    ResilientOptions {
        call_timeout: Duration::from_millis(500),
        probe_min_delay: Duration::from_millis(50),
        probe_max_delay: Duration::from_millis(300),
        replay_batch: 7,
        limits: OutageLimits::Share { instances: 2 },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_served_from_memory_and_replayed_exactly_once() {
    install_tls_provider();
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("start postgres");
    let postgres_options = PostgresOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let inner = PostgresStore::connect(&server.url(), StoreOptions::default(), postgres_options)
        .await
        .expect("connect");
    let store = ResilientStore::new(inner, StoreOptions::default(), resilient_options());
    let req = Series::new("openai", "key1", Metric::Req).expect("series");
    let tokens = Series::new("openai", "key1", Metric::Tokens).expect("series");

    for _ in 0..100 {
        store.increment(&req, 1.0).await.expect("healthy increment");
    }
    assert!(!store.is_degraded());

    server.stop();
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
        let outcome = store
            .reserve(&request)
            .await
            .expect("reserve during outage");
        granted += usize::from(matches!(outcome, ReserveOutcome::Granted(_)));
    }
    assert_eq!(granted, 5);

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.is_degraded() {
        assert!(
            Instant::now() < deadline,
            "never recovered; journal {}",
            store.journal_len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.journal_len(), 0);
    let counter = |series: &str| {
        server.psql(&format!(
            "SELECT value FROM truckllm_counters WHERE series = '{series}'"
        ))
    };
    assert_eq!(
        counter("openai:key1:req"),
        "200",
        "every increment counted exactly once"
    );
    assert_eq!(
        counter("openai:key1:tokens"),
        "5",
        "the outage's reservations were replayed"
    );
    assert_eq!(
        store.get(&req).await.expect("read from Postgres again"),
        200.0
    );
    assert_eq!(store.get(&tokens).await.expect("read"), 5.0);
}
