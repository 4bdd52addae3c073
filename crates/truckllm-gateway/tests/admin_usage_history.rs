//! `GET /admin/usage/history` on a real gateway over HTTP, reading a real PostgreSQL that a
//! history writer filled: sums per group and step, viewers may read, bad parameters are a 400
//! naming the parameter, no credentials a 401, no history configured a 404. And the feed:
//! requests through the gateway counted per model, client and team in the runtime store,
//! written by the history writer and read back `by=model` and `by=team`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use serde_json::Value;
use truckllm_gateway::mock::MockOptions;
use truckllm_store::postgres::history::{HistoryGroup, HistoryStep, HistoryWriter, SETTLE_MS};
use truckllm_store::postgres::{PostgresOptions, connect_pool};
use truckllm_store::{
    ManualClock, Metric, ProviderKey, RollupPoint, RuntimeStore, RuntimeStoreExt, Series,
    SeriesRollup,
};
use truckllm_testkit::PostgresServer;

const ADMIN: &str = "admin-secret-key-0123456789";
const VIEWER: &str = "viewer-secret-key-012345678";

/// A writer on a fresh database holding one step of usage that began at `start_ms`.
async fn history_with_usage(start_ms: u64) -> HistoryWriter {
    let writer = fresh_writer(start_ms + 60_000 + SETTLE_MS).await;
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

/// A writer on a fresh database whose clock reads `now_ms`.
async fn fresh_writer(now_ms: u64) -> HistoryWriter {
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
    let clock = Arc::new(ManualClock::new(now_ms));
    HistoryWriter::new(pool, "fleet", 400, clock)
        .await
        .expect("writer")
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

    let (status, body) = get("?by=region", Some(VIEWER)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("grouping"), "{body}");
    let (status, _) = get("?step=week", Some(VIEWER)).await;
    assert_eq!(status, 400);
    let (status, _) = get("", None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}

async fn window(store: &Arc<dyn RuntimeStore>, provider: &str, id: &str, metric: Metric) -> f64 {
    let series = Series::new(provider, id, metric).expect("series");
    store
        .window(&series, Duration::from_secs(60))
        .await
        .expect("window")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_per_model_client_and_team_into_the_history() {
    let mock = Mock::start(MockOptions::default()).await;
    let extra = "teams:\n  - {id: duo}\n  - {id: capped, limits: {req_per_min: 100}}\n\
        api_keys:\n  - {id: free, key: key-free, team: duo}\n\
        \x20 - {id: limited, key: key-limited, team: capped, limits: {req_per_min: 100}}\n\
        policy:\n  quota_leasing: false\n";
    let gw = TestGateway::start(&config(&mock.url, 1, "", extra), Backend::Memory).await;
    let model = "mock:gpt-4o-mini";
    let hello = |model: &str| serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for key in ["key-free", "key-free", "key-limited"] {
        let (status, _, body) = gw.chat(Some(key), hello(model)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, _) = gw.chat(Some("key-free"), hello("mock:no-such-model")).await;
    assert_ne!(status, 200);
    gw.gateway.flush().await;

    let store = &gw.store;
    assert_eq!(window(store, "_models", model, Metric::Req).await, 3.0);
    assert!(window(store, "_models", model, Metric::CompletionTokens).await > 0.0);
    assert!(window(store, "_models", model, Metric::Latency).await > 0.0);
    assert_eq!(
        window(store, "_models", "mock:no-such-model", Metric::Req).await,
        0.0,
        "a refused model is not usage"
    );
    assert_eq!(window(store, "_clients", "free", Metric::Req).await, 2.0);
    assert_eq!(window(store, "_teams", "duo", Metric::Req).await, 2.0);
    assert_eq!(
        window(store, "_clients", "limited", Metric::Req).await,
        1.0,
        "counted once: by its limit reservation only"
    );
    assert_eq!(window(store, "_teams", "capped", Metric::Req).await, 1.0);

    // The roll-ups the history writer reads, once their step is over.
    let rollups = store.rollups("", 0).await.expect("rollups");
    let writer = fresh_writer(now_ms() + 3_600_000).await;
    let step = truckllm_store::RollupPolicy::default().step;
    let report = writer.write_finished(&rollups, step).await.expect("write");
    assert!(report.written >= 1, "{report:?}");
    let rows = writer
        .read(HistoryGroup::Model, HistoryStep::Day, 0)
        .await
        .expect("by model");
    let req = |rows: &[truckllm_store::postgres::history::HistoryRow], group: &str| -> f64 {
        rows.iter()
            .filter(|r| r.group == group && r.metric == "req")
            .map(|r| r.value)
            .sum()
    };
    assert_eq!(req(&rows, model), 3.0, "{rows:?}");
    let rows = writer
        .read(HistoryGroup::Team, HistoryStep::Day, 0)
        .await
        .expect("by team");
    assert_eq!((req(&rows, "duo"), req(&rows, "capped")), (2.0, 1.0));
    let rows = writer
        .read(HistoryGroup::Provider, HistoryStep::Day, 0)
        .await
        .expect("by provider");
    assert_eq!(req(&rows, "mock"), 3.0, "{rows:?}");
    gw.stop().await;
}
