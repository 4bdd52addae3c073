//! The PostgreSQL sink against a real server: records land in their day's partition with the
//! columns `logs search` filters on, days past retention are dropped whole, and records
//! emitted while the database is down are written once it is back.

use std::time::{Duration, SystemTime};

use truckllm_config::schema::{LogSinkConfig, PostgresSinkConfig};
use truckllm_logging::{AuditCategory, AuditRecord, Logger, RequestRecord};
use truckllm_testkit::PostgresServer;

fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn sink(url: &str) -> LogSinkConfig {
    sink_keeping(url, 30.0)
}

fn sink_keeping(url: &str, keep_days: f64) -> LogSinkConfig {
    LogSinkConfig::Postgres(PostgresSinkConfig {
        url: url.to_owned(),
        keep_days,
        audit_keep_days: 400.0,
        batch_size: 100,
        flush_interval_ms: 0,
        queue_size: 10_000,
        queue_max_mb: 16.0,
    })
}

fn request(at: SystemTime, id: &str, client: &str, status: u16) -> RequestRecord {
    let mut r = RequestRecord::new(at, id.to_owned(), "chat");
    r.client = Some(client.to_owned());
    r.model = "gpt-4o-mini".into();
    r.provider = Some("openai".into());
    r.key = Some("k1".into());
    r.status = status;
    r.prompt_tokens = 12;
    r.completion_tokens = 30;
    r.latency_ms = 41.5;
    r.cost = 0.25;
    r
}

fn database(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_in_day_partitions_and_old_days_are_dropped() {
    install_tls_provider();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("a test database");
    let db = database(&url).to_owned();
    let now = SystemTime::now();
    let old = now - Duration::from_secs(3 * 86_400);

    let logger = truckllm_logging::start(&[sink(&url)]).expect("start");
    logger.emit(request(now, "r-now", "alice", 200));
    logger.emit(request(now, "r-err", "bob", 429));
    logger.emit(request(old, "r-old", "alice", 200));
    logger.emit(AuditRecord::new(AuditCategory::Admin, "keys.create", "ops", "ok").target("alice"));
    // jsonb refuses NUL: a client's model name holding one must not stop the sink.
    let mut nul = request(now, "r-nul", "dave", 200);
    nul.model = "a\0b".into();
    logger.emit(nul);
    logger.flush().await;
    logger.shutdown(Duration::from_secs(10)).await;
    let model = server.psql_in(
        &db,
        "SELECT model FROM truckllm_request_log WHERE request_id = 'r-nul'",
    );
    assert_eq!(model, "a\u{fffd}b");

    let rows = server.psql_in(
        &db,
        "SELECT request_id, client, status, prompt_tokens, cost FROM truckllm_request_log WHERE request_id <> 'r-nul' ORDER BY ts, request_id",
    );
    assert_eq!(
        rows,
        "r-old|alice|200|12|0.25\nr-err|bob|429|12|0.25\nr-now|alice|200|12|0.25"
    );
    let audit = server.psql_in(&db, "SELECT action, actor, target FROM truckllm_audit_log");
    assert_eq!(audit, "keys.create|ops|alice");
    let record = server.psql_in(
        &db,
        "SELECT record->>'model' FROM truckllm_request_log WHERE request_id = 'r-now'",
    );
    assert_eq!(record, "gpt-4o-mini", "the whole record is kept");
    let partitions = |db: &str| {
        server.psql_in(
            db,
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'truckllm_request_log'",
        )
    };
    // Today, tomorrow, and the old day.
    assert_eq!(partitions(&db), "3");

    // A sink keeping 2 days maintains at its first write: the day 3 days ago goes whole.
    let logger = truckllm_logging::start(&[sink_keeping(&url, 2.0)]).expect("start");
    logger.emit(request(now, "r-next", "carol", 200));
    logger.flush().await;
    logger.shutdown(Duration::from_secs(10)).await;
    assert_eq!(partitions(&db), "2");
    let left = server.psql_in(&db, "SELECT count(*) FROM truckllm_request_log");
    assert_eq!(left, "4", "r-old went with its day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_emitted_during_an_outage_are_written_when_the_database_is_back() {
    install_tls_provider();
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("server");
    let url = server.url();
    let logger: Logger = truckllm_logging::start(&[sink(&url)]).expect("start");
    logger.emit(request(SystemTime::now(), "before", "alice", 200));
    logger.flush().await;
    let mut server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("stop");
    for n in 0..50 {
        logger.emit(request(
            SystemTime::now(),
            &format!("during-{n}"),
            "alice",
            200,
        ));
    }
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    logger.flush().await;
    logger.shutdown(Duration::from_secs(10)).await;
    let count = server.psql("SELECT count(*) FROM truckllm_request_log");
    assert_eq!(count, "51", "nothing lost, nothing twice");
}
