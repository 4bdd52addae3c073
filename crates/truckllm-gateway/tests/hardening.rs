//! The gateway under hostile or careless input: every route behind its access class, unknown
//! routes, oversized names and numbers, a provider that streams without end, and what the
//! mock provider shows of the keys it received.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::Method;
use common::{Backend, Mock, TestGateway, config};
use serde_json::{Value, json};
use truckllm_gateway::app::{Access, ROUTES};
use truckllm_gateway::mock::MockOptions;
use truckllm_gateway::providers::Wire;

const CLIENT_KEY: &str = "client-secret-key";
const ADMIN_KEY: &str = "admin-secret-key-0123456789";
const VIEWER_KEY: &str = "viewer-secret-key-0123456789";

fn clients_and_admin() -> String {
    format!(
        "server:\n  admin_key: \"{ADMIN_KEY}\"\n  admin_keys: [{{id: auditor, key: \"{VIEWER_KEY}\", role: viewer}}]\napi_keys:\n  - id: \"team-a\"\n    key: \"{CLIENT_KEY}\"\n    allowed_models: [\"mock:gpt-4o-mini\"]\n"
    )
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "three words here"}], "max_tokens": 4})
}

async fn call(gw: &TestGateway, method: &Method, path: &str, key: Option<&str>) -> (u16, Value) {
    let url = format!(
        "{}{}",
        gw.url,
        path.replace("{*id}", "mock:gpt-4o-mini")
            .replace("{id}", "no-such-id")
    );
    let mut request = gw.http.request(method.clone(), url);
    if *method == Method::POST {
        request = request.json(&hello("mock:gpt-4o-mini"));
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn every_route_is_authenticated_unless_it_is_on_the_public_list() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &clients_and_admin()),
        Backend::Memory,
    )
    .await;
    // A wrong admin key counts as a failed sign-in of this address (10 a minute are allowed):
    // each route's refusals are made a minute after the last route's, so every one is a 401.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let clock = Arc::new(truckllm_store::ManualClock::new(now_ms));
    gw.gateway.use_clock(clock.clone());
    let public: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        public,
        ["/", "/health", "/ready", "/metrics"],
        "the public list"
    );
    for route in ROUTES {
        clock.advance(std::time::Duration::from_secs(61));
        let (anonymous, body) = call(&gw, &route.method, route.path, None).await;
        let (with_client_key, _) = call(&gw, &route.method, route.path, Some(CLIENT_KEY)).await;
        match route.access {
            // Metrics are off in this process (no recorder): 404, but never a 401.
            Access::Public => assert!(
                anonymous != 401 && anonymous != 403,
                "{} {} is public: {anonymous}",
                route.method,
                route.path
            ),
            Access::Client => {
                assert_eq!(anonymous, 401, "{} {}: {body}", route.method, route.path);
                match route.wire {
                    Wire::Anthropic => {
                        assert_eq!(body["type"], "error", "{body}");
                        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
                    }
                    // Routes speak OpenAI's dialect or Anthropic's; the rest are providers'.
                    _ => assert_eq!(body["error"]["code"], "invalid_api_key", "{body}"),
                }
                assert_ne!(with_client_key, 401, "{} {}", route.method, route.path);
            }
            Access::Admin | Access::AdminRead => {
                assert_eq!(anonymous, 401, "{} {}: {body}", route.method, route.path);
                assert_eq!(with_client_key, 401, "a client key is not the admin key");
                let (viewer, _) = call(&gw, &route.method, route.path, Some(VIEWER_KEY)).await;
                let (admin, body) = call(&gw, &route.method, route.path, Some(ADMIN_KEY)).await;
                // Admitted: the handler answers (a chat body is no admin request, and the ids
                // do not exist), never with a refusal of the caller.
                assert!(
                    ![401, 403].contains(&admin) && admin < 500,
                    "{} {}: {admin} {body}",
                    route.method,
                    route.path
                );
                if route.access == Access::AdminRead {
                    assert_eq!(viewer, admin, "{} {} reads", route.method, route.path);
                } else {
                    assert_eq!(
                        viewer, 403,
                        "{} {}: a viewer only reads",
                        route.method, route.path
                    );
                }
            }
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_unknown_route_names_itself_has_a_request_id_and_is_recorded() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let sink = format!(
        "storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n",
        logs.path().join("requests.jsonl").display()
    );
    let extra = format!("{}{sink}", clients_and_admin());
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;

    let anonymous = gw
        .http
        .post(format!("{}/v1/no-such-route", gw.url))
        .send()
        .await
        .expect("request");
    assert_eq!(
        anonymous.status(),
        401,
        "unknown routes are not probed anonymously"
    );
    assert!(anonymous.headers().contains_key("x-request-id"));

    let response = gw
        .http
        .post(format!("{}/v1/no-such-route?beta=true", gw.url))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "probe-1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "probe-1");
    let body: Value = response.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("POST /v1/no-such-route"), "{message}");
    assert!(
        !message.contains("does not exist"),
        "not blamed on a model: {message}"
    );
    assert_eq!(body["error"]["code"], "route_not_found");

    let long_path = format!("/{}", "x".repeat(10_000));
    let (status, body) = call(&gw, &Method::GET, &long_path, Some(CLIENT_KEY)).await;
    assert_eq!(status, 404);
    assert!(
        body.to_string().len() < 2_000,
        "a long path is clipped in the message"
    );

    gw.stop().await;
    let records = std::fs::read_to_string(logs.path().join("requests.jsonl")).expect("records");
    let probe: Value = records
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .find(|r| r["request_id"] == "probe-1")
        .expect("a request record for the unknown route");
    assert_eq!(probe["status"], 404, "{probe}");
    assert_eq!(probe["error"], "route_not_found", "{probe}");
}

#[tokio::test]
async fn the_admin_key_is_checked_as_a_digest_and_a_missing_one_is_refused() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &clients_and_admin()),
        Backend::Memory,
    )
    .await;
    let reload = Method::POST;
    let path = "/admin/config/reload";
    let prefix = &ADMIN_KEY[..ADMIN_KEY.len() - 1];
    let longer = format!("{ADMIN_KEY}x");
    for (key, expected) in [
        (None, 401),
        (Some(""), 401),
        (Some(prefix), 401),
        (Some(longer.as_str()), 401),
        (Some(ADMIN_KEY), 200),
    ] {
        let mut request = gw.http.request(reload.clone(), format!("{}{path}", gw.url));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let status = request.send().await.expect("reload").status().as_u16();
        assert_eq!(status, expected, "{key:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_dialect_the_client_speaks() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &clients_and_admin()),
        Backend::Memory,
    )
    .await;
    for path in ["/v1/models", "/v1/no-such-route"] {
        let refused: Value = gw
            .http
            .get(format!("{}{path}", gw.url))
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(refused["type"], "error", "{path}: {refused}");
        assert_eq!(
            refused["error"]["type"], "authentication_error",
            "{path}: {refused}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn models_can_be_retrieved_one_by_one_within_the_clients_permissions() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &clients_and_admin()),
        Backend::Memory,
    )
    .await;
    let (status, model) = call(
        &gw,
        &Method::GET,
        "/v1/models/mock:gpt-4o-mini",
        Some(CLIENT_KEY),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(model["id"], "mock:gpt-4o-mini");
    assert_eq!(model["object"], "model");
    assert_eq!(model["owned_by"], "mock");
    let (status, body) = call(
        &gw,
        &Method::GET,
        "/v1/models/mock:text-embedding-3-small",
        Some(CLIENT_KEY),
    )
    .await;
    assert_eq!(status, 404, "not in the client's allowed models: {body}");
    assert_eq!(body["error"]["code"], "model_not_found");
    gw.stop().await;
}

#[tokio::test]
async fn long_model_names_and_absurd_max_tokens_are_the_clients_error() {
    let mock = Mock::start(MockOptions::default()).await;
    // Limits make every request reserve in the store, where a huge estimate used to fail.
    let limits = "    limits:\n      tokens_per_min: 100000\n";
    let gw = TestGateway::start(&config(&mock.url, 1, limits, ""), Backend::Memory).await;

    let long_model = "m".repeat(300);
    let (status, _, body) = gw.chat(None, hello(&long_model)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_model");
    assert!(
        body.to_string().len() < 1_000,
        "the name is not echoed whole"
    );

    for bad in [json!(1e16), json!(-5), json!(1.5), json!("10"), json!(0)] {
        let mut request = hello("gpt-4o-mini");
        request["max_tokens"] = bad.clone();
        let (status, _, body) = gw.chat(None, request).await;
        assert_eq!(status, 400, "max_tokens {bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_max_tokens", "{body}");
    }
    let mut fine = hello("gpt-4o-mini");
    fine["max_completion_tokens"] = json!(3);
    assert_eq!(gw.chat(None, fine).await.0, 200);
    assert_eq!(
        mock.total_requests(),
        1,
        "refused requests never reach the provider"
    );
    gw.stop().await;
}

/// A provider that answers a stream with one event that never ends: `total` bytes of `x`,
/// in 16 KiB chunks, counting what it managed to hand over.
async fn endless_event_provider(total: usize, sent: Arc<AtomicU64>) -> String {
    use axum::body::{Body, Bytes};
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let sent = Arc::clone(&sent);
            async move {
                let chunks = futures_util::stream::iter((0..total / 16_384).map(move |_| {
                    sent.fetch_add(16_384, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 16_384]))
                }));
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(chunks))
                    .expect("response")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_stream_event_past_the_cap_breaks_the_stream_and_stops_the_reading() {
    let total = 64 << 20;
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = endless_event_provider(total, Arc::clone(&sent)).await;
    let policy = "policy:\n  max_stream_event_bytes: 262144\n";
    let gw = TestGateway::start(&config(&upstream, 1, "", policy), Backend::Memory).await;
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    let response = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let read = response.bytes().await;
    assert!(
        read.is_err(),
        "the client sees a broken stream, not a clean end"
    );
    let errors = gw.usage("mock", "k1", truckllm_store::Metric::Errors).await;
    assert_eq!(errors, 1.0, "counted as the provider's failure");
    let handed_over = sent.load(Ordering::SeqCst) as usize;
    assert!(
        handed_over < total / 2,
        "the gateway stopped reading: {handed_over} of {total} bytes were produced"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_mock_shows_key_fingerprints_never_the_secrets_it_received() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 2, "", ""), Backend::Memory).await;
    for _ in 0..2 {
        assert_eq!(gw.chat(None, hello("gpt-4o-mini")).await.0, 200);
    }
    let stats = gw
        .http
        .get(format!("{}/mock/stats", mock.url))
        .send()
        .await
        .expect("stats")
        .text()
        .await
        .expect("body");
    assert!(!stats.contains("secret-k"), "{stats}");
    let requests = mock.stats("secret-k1").requests + mock.stats("secret-k2").requests;
    assert_eq!(requests, 2, "{stats}");
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_in_base64_decode_to_the_float_vectors() {
    use base64::Engine;
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", ""), Backend::Memory).await;
    let ask = |format: &str| json!({"model": "text-embedding-3-small", "input": "some text", "encoding_format": format});
    let (status, _, floats) = gw.post("/v1/embeddings", None, &ask("float")).await;
    assert_eq!(status, 200);
    let (status, _, encoded) = gw.post("/v1/embeddings", None, &ask("base64")).await;
    assert_eq!(status, 200);
    let floats: Value = serde_json::from_str(&floats).expect("json");
    let encoded: Value = serde_json::from_str(&encoded).expect("json");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            encoded["data"][0]["embedding"]
                .as_str()
                .expect("a base64 string"),
        )
        .expect("base64");
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let plain: Vec<f64> = floats["data"][0]["embedding"]
        .as_array()
        .expect("floats")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(decoded.len(), 8);
    assert_eq!(decoded.len(), plain.len());
    for (d, p) in decoded.iter().zip(&plain) {
        assert!((f64::from(*d) - p).abs() < 1e-6, "{d} vs {p}");
    }
    let (status, _, _) = gw.post("/v1/embeddings", None, &ask("hex")).await;
    assert_eq!(status, 400, "an unknown format is refused");
    gw.stop().await;
}

#[tokio::test]
async fn a_rejected_reload_names_the_field_but_never_the_resolved_secret() {
    use std::collections::HashMap;
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let secret = "resolved-secret-value-7f3a9c";
    let env = HashMap::from([("PROVIDER_SECRET".to_owned(), secret.to_owned())]);
    let sink = format!(
        "storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n",
        logs.path().join("requests.jsonl").display()
    );
    let valid = config(&mock.url, 1, "", &format!("{}{sink}", clients_and_admin()));
    let upstream = truckllm_gateway::UpstreamOptions {
        proxy: truckllm_gateway::UpstreamProxy::Direct,
        ..Default::default()
    };
    let gw = TestGateway::start_with_env(&valid, Backend::Memory, upstream, env).await;
    // The secret, resolved from the environment, lands in a field that rejects it.
    let invalid = valid.replace("server:\n", "server:\n  listen: \"${PROVIDER_SECRET}\"\n");
    std::fs::write(gw.dir.path().join("config.yaml"), invalid).expect("write config");
    let response = gw
        .http
        .post(format!("{}/admin/config/reload", gw.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("reload");
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(body.contains("server.listen"), "the field is named: {body}");
    assert!(!body.contains(secret), "the resolved value is not: {body}");
    gw.stop().await;
    let audit = std::fs::read_to_string(logs.path().join("audit.jsonl")).expect("audit log");
    assert!(audit.contains("config.reload"), "{audit}");
    assert!(
        !audit.contains(secret),
        "nor in audit records or alerts: {audit}"
    );
}

#[tokio::test]
async fn a_last_stream_event_without_its_blank_line_still_counts() {
    use axum::body::Body;
    // A provider whose stream ends right after its usage chunk, with no blank line after it.
    let stream = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}"
    );
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(stream))
                .expect("response")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = TestGateway::start(&config(&upstream, 1, "", ""), Backend::Memory).await;
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    let (status, _, text) = gw.post("/v1/chat/completions", None, &body).await;
    assert_eq!(status, 200);
    assert!(
        !text.contains("usage"),
        "the usage chunk nobody asked for is dropped: {text}"
    );
    assert_eq!(
        gw.usage("mock", "k1", truckllm_store::Metric::Tokens).await,
        10.0
    );
    gw.stop().await;
}
