//! `GET /admin/usage/history` on a real gateway over HTTP, reading a real PostgreSQL that a
//! history writer filled: sums per group and step, viewers may read, bad parameters are a 400
//! naming the parameter, no credentials a 401, no history configured a 404.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use serde_json::Value;
use truckllm_gateway::mock::MockOptions;
use truckllm_store::postgres::history::{HistoryWriter, SETTLE_MS};
use truckllm_store::postgres::{PostgresOptions, connect_pool};
use truckllm_store::{ManualClock, Metric, ProviderKey, RollupPoint, SeriesRollup};
use truckllm_testkit::PostgresServer;

const ADMIN: &str = "admin-secret-key-0123456789";
const VIEWER: &str = "viewer-secret-key-012345678";

/// A writer on a fresh database holding one step of usage that began at `start_ms`.
async fn history_with_usage(start_ms: u64) -> HistoryWriter {
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
    let pool = connect_pool(&url, &options).await.expect("connect");
    let clock = Arc::new(ManualClock::new(start_ms + 60_000 + SETTLE_MS));
    let writer = HistoryWriter::new(pool, "fleet", 400, clock)
        .await
        .expect("writer");
    let point = |value| vec![RollupPoint { start_ms, value }];
    let series =
        |provider, key, metric| ProviderKey::new(provider, key).expect("key").series(metric);
    let rollups = [
        SeriesRollup {
            series: series("openai", "k1", Metric::Cost),
            points: point(1.5),
        },
        SeriesRollup {
            series: series("openai", "k2", Metric::Cost),
            points: point(0.5),
        },
        SeriesRollup {
            series: series("_clients", "app", Metric::Req),
            points: point(3.0),
        },
    ];
    let report = writer
        .write_finished(&rollups, Duration::from_secs(60))
        .await
        .expect("write");
    assert_eq!(report.written, 1);
    writer
}

fn now_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now");
    u64::try_from(now.as_millis()).expect("ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_serves_the_history_to_viewers() {
    let mock = Mock::start(MockOptions::default()).await;
    let setup = format!(
        "server:\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\n    - {{id: auditor, key: \"{VIEWER}\", role: viewer}}\n"
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup), Backend::Memory).await;
    let get = |query: &'static str, key: Option<&'static str>| {
        let mut request = gw
            .http
            .get(format!("{}/admin/usage/history{query}", gw.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };

    let (status, body) = get("", Some(VIEWER)).await;
    assert_eq!(status, 404, "no history configured: {body}");

    let start = now_ms() - 3 * 86_400_000;
    let start = start - start % 60_000;
    gw.gateway.set_history(history_with_usage(start).await);

    let (status, body) = get("?by=provider&since=30d&step=day", Some(VIEWER)).await;
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "clients are not providers: {body}");
    assert_eq!(rows[0]["group"], "openai");
    assert_eq!(rows[0]["metric"], "cost");
    assert_eq!(rows[0]["value"], 2.0);
    assert_eq!(rows[0]["start_ms"], start - start % 86_400_000);

    let (status, body) = get("?by=key&step=hour", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    let groups: Vec<&str> = body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    assert_eq!(groups, ["openai:k1", "openai:k2"]);

    let (status, body) = get("?by=client", Some(VIEWER)).await;
    assert_eq!(
        (status, body["rows"][0]["value"].clone()),
        (200, 3.0.into())
    );

    let (status, body) = get("?since=1d", Some(VIEWER)).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["rows"],
        Value::Array(vec![]),
        "three days ago is before 1d"
    );

    let (status, body) = get("?by=team", Some(VIEWER)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("grouping"), "{body}");
    let (status, _) = get("?step=week", Some(VIEWER)).await;
    assert_eq!(status, 400);
    let (status, _) = get("", None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}
