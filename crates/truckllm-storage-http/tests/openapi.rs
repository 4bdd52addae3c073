//! The server matches `docs/storage-api.openapi.yaml`: the documented routes are exactly the
//! server's, and every documented operation, called with the document's example on a real
//! server, answers a documented status with the documented required fields.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use truckllm_config::{ConfigStore, FileConfigStore, FileStoreOptions};
use truckllm_storage_http::server::{PUBLIC_ROUTES, ROUTES, ServerState, router, serve};
use truckllm_storage_http::{Audit, Tokens};
use truckllm_store::{MemoryStore, RuntimeStore};

const DOC: &str = include_str!("../../../docs/storage-api.openapi.yaml");

fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer).unwrap_or(node)
        }
        None => node,
    }
}

#[tokio::test]
async fn the_server_matches_its_openapi_document() {
    let doc: Value = serde_saphyr::from_str(DOC).expect("the OpenAPI document parses");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            ["get", "put", "post", "delete"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(move |m| (m.to_owned(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, served,
        "documented routes and served routes differ"
    );
    let documented_public: BTreeSet<(String, String)> = documented
        .iter()
        .filter(|(m, p)| {
            paths[p][m]["security"]
                .as_array()
                .is_some_and(Vec::is_empty)
        })
        .cloned()
        .collect();
    let public: BTreeSet<(String, String)> = PUBLIC_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented_public, public,
        "the public routes are those documented without security"
    );
    for (method, path) in &documented {
        let writes_usage =
            method != "get" && path != "/batch/get" && path != "/periods/read" && path != "/config";
        if writes_usage {
            assert!(
                paths[path][method]["responses"].get("507").is_some(),
                "{method} {path} documents 507 (quota exceeded, store full)"
            );
        }
    }

    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, "server:\n  listen: \"127.0.0.1:2906\"\n").expect("config");
    let env: HashMap<String, String> = [("T".to_owned(), "doc-token".to_owned())].into();
    let config: Arc<dyn ConfigStore> = Arc::new(FileConfigStore::new(
        &config_path,
        FileStoreOptions {
            env: Arc::new(env.clone()),
            ..FileStoreOptions::default()
        },
    ));
    let store: Arc<dyn RuntimeStore> = Arc::new(MemoryStore::new());
    let tokens = Tokens::parse(
        "tokens:\n  - name: doc\n    token: \"${T}\"\n    scopes: [read, write, config, docs]\n",
        &env,
    )
    .expect("tokens");
    let state = Arc::new(ServerState {
        store,
        config: Some(config),
        tokens,
        audit: Audit::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, router(state), None, std::future::pending()));
    let http = reqwest::Client::new();

    for (method, path) in &documented {
        let op = &paths[path][method];
        let url = format!(
            "{base}{}",
            path.replace("{provider}", "openai")
                .replace("{keyId}", "key1")
                .replace("{metric}", "req")
                .replace("{key}", "resp:example")
        );
        let mut request = http
            .request(method.to_uppercase().parse().expect("method"), &url)
            .bearer_auth("doc-token");
        if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
            request = request.json(example);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16().to_string();
        let text = response.text().await.expect("body");
        let documented_response = op["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{method} {path} answered undocumented {status}: {text}"));
        let documented_response = resolve(&doc, documented_response);
        if let Some(schema) = documented_response.pointer("/content/application~1json/schema") {
            let schema = resolve(&doc, schema);
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
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
        assert!(
            status.starts_with('2'),
            "{method} {path} with the document's example answered {status}: {text}"
        );
    }

    // And without a token, every protected route says 401 as documented.
    for (method, path) in documented.difference(&public) {
        let url = format!(
            "{base}{}",
            path.replace("{provider}", "openai")
                .replace("{keyId}", "key1")
                .replace("{metric}", "req")
                .replace("{key}", "resp:example")
        );
        let response = http
            .request(method.to_uppercase().parse().expect("method"), &url)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 401, "{method} {path}");
        assert!(
            paths[path][method]["responses"].get("401").is_some(),
            "{method} {path} documents 401"
        );
    }
}
