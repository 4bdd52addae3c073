//! The gateway matches `docs/admin-api.openapi.yaml`: the documented admin routes are exactly
//! the served ones, each with the role the route table gives it, and every documented
//! operation, called in the document's order with its example on a real gateway, answers a
//! documented status with the documented required fields.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Mock, TestGateway, config};
use serde_json::Value;
use truckllm_gateway::app::{Access, ROUTES};
use truckllm_gateway::mock::MockOptions;

const DOC: &str = include_str!("../../../docs/admin-api.openapi.yaml");
const ADMIN: &str = "admin-secret-key-0123456789";
const METHODS: [&str; 4] = ["post", "get", "patch", "delete"];

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or(node),
        None => node,
    }
}

async fn history_database() -> truckllm_store::postgres::history::HistoryWriter {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = truckllm_testkit::PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("create a test database");
    let options = truckllm_store::PostgresOptions {
        connect_timeout: std::time::Duration::from_secs(10),
        response_timeout: std::time::Duration::from_secs(10),
        ..truckllm_store::PostgresOptions::default()
    };
    let pool = truckllm_store::postgres::connect_pool(&url, &options)
        .await
        .expect("connect");
    truckllm_store::postgres::history::HistoryWriter::new(
        pool,
        "fleet",
        400,
        std::sync::Arc::new(truckllm_store::SystemClock),
    )
    .await
    .expect("history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_matches_its_openapi_document() {
    let doc: Value = serde_saphyr::from_str(DOC).expect("the OpenAPI document parses");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(move |m| (m.to_owned(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Admin | Access::AdminRead))
        .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented.iter().cloned().collect::<BTreeSet<_>>(),
        served,
        "documented admin routes and served admin routes differ"
    );
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/admin/")) {
        let op = &paths[route.path][route.method.as_str().to_lowercase()];
        let role = if route.access == Access::AdminRead {
            "viewer"
        } else {
            "admin"
        };
        assert_eq!(
            op["x-truckllm-role"], role,
            "{} {}",
            route.method, route.path
        );
        assert!(
            op["responses"].get("401").is_some(),
            "{} {}",
            route.method,
            route.path
        );
        if role == "admin" {
            assert!(
                op["responses"].get("403").is_some(),
                "{} {}",
                route.method,
                route.path
            );
        }
    }

    let mock = Mock::start(MockOptions::default()).await;
    let setup = format!(
        "server:\n  admin_keys: [{{id: ops, key: \"{ADMIN}\", role: admin}}]\napi_keys:\n  - {{id: seed, key: seed-key}}\n"
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup), Backend::Memory).await;
    // The usage history lives in PostgreSQL (storage.history): a real one, empty.
    gw.gateway.set_history(history_database().await);
    for (method, path) in &documented {
        let op = &paths[path][method];
        let id = if path.starts_with("/admin/teams") {
            "doc-team"
        } else {
            "doc-key"
        };
        let url = format!("{}{}", gw.url, path.replace("{id}", id));
        let mut request = gw
            .http
            .request(method.to_uppercase().parse().expect("method"), &url)
            .bearer_auth(ADMIN);
        if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
            request = request.json(example);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16().to_string();
        let text = response.text().await.expect("body");
        assert!(
            status.starts_with('2'),
            "{method} {path} with the document's example answered {status}: {text}"
        );
        let documented_response = op["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{method} {path} answered undocumented {status}: {text}"));
        let documented_response = resolve(&doc, documented_response);
        if let Some(schema) = documented_response.pointer("/content/application~1json/schema") {
            let schema = resolve(&doc, schema);
            let body: Value = serde_json::from_str(&text).expect("JSON");
            for field in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                assert!(
                    body.get(field).is_some(),
                    "{method} {path} {status}: missing `{field}` in {text}"
                );
            }
        }
    }
    gw.stop().await;
}
