//! Long-term usage history against a real PostgreSQL: roll-ups recorded by a runtime store
//! (the in-memory backend, with an injected clock) summed into hourly and daily rows, two
//! fleets adding up, a step written once however often it is offered, and retention.

use std::sync::Arc;
use std::time::Duration;

use truckllm_store::postgres::history::{
    HistoryGroup, HistoryStep, HistoryWriter, SETTLE_MS, read_history,
};
use truckllm_store::postgres::{PostgresOptions, connect_pool};
use truckllm_store::{
    ManualClock, MemoryStore, Metric, ProviderKey, RollupPolicy, RuntimeStore, RuntimeStoreExt,
    SharedClock, StoreOptions,
};
use truckllm_testkit::PostgresServer;

/// 2026-11-27 10:00:00 UTC, a whole hour.
const T0: u64 = 1_795_773_600_000;
const STEP: Duration = Duration::from_secs(60);

async fn fresh_pool() -> sqlx::PgPool {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("create a test database");
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    };
    connect_pool(&url, &options).await.expect("connect")
}

fn runtime(clock: &Arc<ManualClock>) -> MemoryStore {
    let options = StoreOptions {
        rollup: RollupPolicy {
            step: STEP,
            keep: Duration::from_secs(3600),
        },
        clock: clock.clone(),
        ..StoreOptions::default()
    };
    MemoryStore::with_options(options, 10_000)
}

async fn record(store: &MemoryStore, provider: &str, key: &str, metric: Metric, delta: f64) {
    let series = ProviderKey::new(provider, key).expect("key").series(metric);
    store.increment(&series, delta).await.expect("increment");
}

async fn writer(pool: &sqlx::PgPool, source: &str, clock: &Arc<ManualClock>) -> HistoryWriter {
    let clock: SharedClock = clock.clone();
    HistoryWriter::new(pool.clone(), source, 400, clock)
        .await
        .expect("writer")
}

fn value(rows: &[truckllm_store::postgres::history::HistoryRow], group: &str, metric: &str) -> f64 {
    rows.iter()
        .filter(|r| r.group == group && r.metric == metric)
        .map(|r| r.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_steps_land_once_in_hours_and_days() {
    let pool = fresh_pool().await;
    let clock = Arc::new(ManualClock::new(T0 + 5_000));
    let store = runtime(&clock);
    record(&store, "openai", "k1", Metric::Req, 1.0).await;
    record(&store, "openai", "k1", Metric::Cost, 0.25).await;
    record(&store, "_clients", "app", Metric::Req, 1.0).await;
    clock.advance(Duration::from_secs(60));
    record(&store, "openai", "k2", Metric::Req, 2.0).await;
    record(&store, "openai", "k1", Metric::Cooldown, 99.0).await;

    let history = writer(&pool, "fleet-a", &clock).await;
    let rollups = store.rollups("", 0).await.expect("rollups");
    // Now is inside the second step: only the first is finished, and only once it settled.
    let report = history.write_finished(&rollups, STEP).await.expect("write");
    assert_eq!((report.written, report.unfinished), (0, 2));
    clock.set_ms(T0 + 60_000 + SETTLE_MS);
    let report = history.write_finished(&rollups, STEP).await.expect("write");
    assert_eq!((report.written, report.unfinished), (1, 1));

    // Offered again (a retry, a restart, another gateway of the fleet): nothing counted twice.
    clock.set_ms(T0 + 180_000);
    let again = writer(&pool, "fleet-a", &clock).await;
    let report = again.write_finished(&rollups, STEP).await.expect("write");
    assert_eq!((report.written, report.already_written), (1, 1));
    let report = history.write_finished(&rollups, STEP).await.expect("write");
    assert_eq!((report.written, report.already_written), (0, 2));

    let hours = read_history(&pool, HistoryGroup::Provider, HistoryStep::Hour, T0)
        .await
        .expect("read");
    assert_eq!(value(&hours, "openai", "req"), 3.0);
    assert_eq!(value(&hours, "openai", "cost"), 0.25);
    assert_eq!(
        value(&hours, "openai", "cooldown"),
        0.0,
        "cooldowns are not usage"
    );
    assert!(
        hours
            .iter()
            .all(|r| r.group != "_clients" && r.start_ms == T0)
    );
    let keys = read_history(&pool, HistoryGroup::Key, HistoryStep::Day, T0)
        .await
        .expect("read");
    assert_eq!(value(&keys, "openai:k1", "req"), 1.0);
    assert_eq!(value(&keys, "openai:k2", "req"), 2.0);
    assert_eq!(keys[0].start_ms, T0 - T0 % 86_400_000);
    let clients = read_history(&pool, HistoryGroup::Client, HistoryStep::Hour, T0)
        .await
        .expect("read");
    assert_eq!(clients.len(), 1);
    assert_eq!(value(&clients, "app", "req"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fleets_add_up_and_race_on_one_step_safely() {
    let pool = fresh_pool().await;
    let clock = Arc::new(ManualClock::new(T0));
    let (east, west) = (runtime(&clock), runtime(&clock));
    record(&east, "anthropic", "k", Metric::PromptTokens, 100.0).await;
    record(&west, "anthropic", "k", Metric::PromptTokens, 40.0).await;
    clock.set_ms(T0 + 60_000 + SETTLE_MS);
    let east_rollups = east.rollups("", 0).await.expect("rollups");
    let west_rollups = west.rollups("", 0).await.expect("rollups");

    // Two gateways of the east fleet race on the same step; the west fleet writes its own.
    let (a, b) = (
        writer(&pool, "east", &clock).await,
        writer(&pool, "east", &clock).await,
    );
    let w = writer(&pool, "west", &clock).await;
    let (ra, rb, rw) = tokio::join!(
        a.write_finished(&east_rollups, STEP),
        b.write_finished(&east_rollups, STEP),
        w.write_finished(&west_rollups, STEP),
    );
    let (ra, rb, rw) = (ra.expect("a"), rb.expect("b"), rw.expect("w"));
    assert_eq!(
        ra.written + rb.written,
        1,
        "one east gateway wrote the step"
    );
    assert_eq!(rw.written, 1);

    let rows = read_history(&pool, HistoryGroup::Provider, HistoryStep::Day, T0)
        .await
        .expect("read");
    assert_eq!(value(&rows, "anthropic", "prompt_tokens"), 140.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_keep_days_are_deleted() {
    let pool = fresh_pool().await;
    let clock = Arc::new(ManualClock::new(T0));
    let store = runtime(&clock);
    record(&store, "openai", "k", Metric::Req, 1.0).await;
    clock.set_ms(T0 + 60_000 + SETTLE_MS);
    let history = writer(&pool, "fleet", &clock).await;
    let rollups = store.rollups("", 0).await.expect("rollups");
    history.write_finished(&rollups, STEP).await.expect("write");

    // 399 days on, the rows are still kept; past 400 days they go.
    clock.set_ms(T0 + 399 * 86_400_000);
    assert_eq!(history.prune().await.expect("prune"), 0);
    clock.set_ms(T0 + 401 * 86_400_000);
    assert_eq!(
        history.prune().await.expect("prune"),
        3,
        "hour, day and step record"
    );
    let rows = read_history(&pool, HistoryGroup::Provider, HistoryStep::Hour, 0)
        .await
        .expect("read");
    assert!(rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_and_models_are_grouped_apart_from_providers() {
    let pool = fresh_pool().await;
    let clock = Arc::new(ManualClock::new(T0));
    let store = runtime(&clock);
    record(&store, "openai", "k1", Metric::Req, 2.0).await;
    record(&store, "_teams", "search", Metric::Req, 2.0).await;
    record(&store, "_teams", "search", Metric::Cost, 0.5).await;
    record(&store, "_teams", "ads", Metric::Req, 1.0).await;
    record(&store, "_models", "openai:gpt-4o", Metric::Req, 2.0).await;
    record(&store, "_models", "fast", Metric::PromptTokens, 30.0).await;
    record(&store, "_clients", "app", Metric::Req, 2.0).await;
    clock.set_ms(T0 + 60_000 + SETTLE_MS);
    let history = writer(&pool, "fleet", &clock).await;
    let rollups = store.rollups("", 0).await.expect("rollups");
    history.write_finished(&rollups, STEP).await.expect("write");

    let read = |group| read_history(&pool, group, HistoryStep::Hour, T0);
    let teams = read(HistoryGroup::Team).await.expect("teams");
    assert_eq!(value(&teams, "search", "req"), 2.0);
    assert_eq!(value(&teams, "search", "cost"), 0.5);
    assert_eq!(value(&teams, "ads", "req"), 1.0);
    assert_eq!(teams.len(), 3, "teams only: {teams:?}");
    let models = read(HistoryGroup::Model).await.expect("models");
    assert_eq!(value(&models, "openai:gpt-4o", "req"), 2.0);
    assert_eq!(value(&models, "fast", "prompt_tokens"), 30.0);
    assert_eq!(models.len(), 2, "models only: {models:?}");
    // Namespaces never show up as providers or keys.
    for group in [HistoryGroup::Provider, HistoryGroup::Key] {
        let rows = read(group).await.expect("read");
        assert_eq!(rows.len(), 1, "{group}: {rows:?}");
        assert_eq!(
            value(&rows, "openai", "req") + value(&rows, "openai:k1", "req"),
            2.0
        );
    }
    assert_eq!(
        "team".parse::<HistoryGroup>().expect("team"),
        HistoryGroup::Team
    );
    assert_eq!(
        "model".parse::<HistoryGroup>().expect("model"),
        HistoryGroup::Model
    );
    let unknown = "region".parse::<HistoryGroup>().expect_err("unknown");
    assert!(
        unknown
            .to_string()
            .contains("provider, key, client, team, model")
    );
}

/// The writer is made while its database is down (as `serve` makes it), fails while it stays
/// down, and once the real server is back writes every finished step the runtime store kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_made_while_the_database_is_down_catches_up_when_it_is_back() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let url = server.url();
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("stop");
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    };
    let pool = truckllm_store::postgres::lazy_pool(&url, &options).expect("lazy pool");
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();
    let history = HistoryWriter::lazy(pool, "fleet", 400, shared).expect("a lazy writer");
    let store = runtime(&clock);
    let policy = RollupPolicy {
        step: STEP,
        keep: Duration::from_secs(3600),
    };

    // Three minutes of usage while the database is down: every write fails, nothing is lost.
    for minute in 0..3u64 {
        clock.set_ms(T0 + minute * 60_000);
        record(&store, "openai", "k", Metric::Req, 1.0).await;
        record(&store, "_models", "openai:gpt-4o", Metric::Req, 1.0).await;
    }
    clock.set_ms(T0 + 180_000 + SETTLE_MS);
    for _ in 0..2 {
        assert!(history.write_from(&store, policy).await.is_err());
    }
    assert!(
        history
            .read(HistoryGroup::Provider, HistoryStep::Hour, T0)
            .await
            .is_err()
    );

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let report = history.write_from(&store, policy).await.expect("caught up");
    assert_eq!((report.written, report.already_written), (3, 0));
    let rows = history
        .read(HistoryGroup::Model, HistoryStep::Hour, T0)
        .await
        .expect("read");
    assert_eq!(value(&rows, "openai:gpt-4o", "req"), 3.0);
    let report = history.write_from(&store, policy).await.expect("again");
    assert_eq!(
        (report.written, report.already_written),
        (0, 3),
        "nothing twice"
    );
    drop(server);
}
