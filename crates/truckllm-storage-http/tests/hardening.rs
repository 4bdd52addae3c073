//! The storage server's defences against one caller harming others, over real HTTP: auth on
//! every route by default, a bounded caller clock that never drives expiry, and per-token
//! quotas with a "store full" that a gateway does not mistake for an outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use truckllm_storage_http::server::{PUBLIC_ROUTES, ROUTES, ServerState, router, serve};
use truckllm_storage_http::{Audit, HttpOptions, HttpStore, Tokens};
use truckllm_store::{
    Clock, LimitCheck, MemoryStore, Metric, ProviderKey, ReserveRequest, ResilientOptions,
    ResilientStore, RuntimeStore, RuntimeStoreExt, Series, StoreError, StoreOptions, SystemClock,
};

/// A gateway for all providers, and two tenants limited to one provider each; `openai`'s
/// tenant may hold 3 provider keys.
const TOKENS: &str = "tokens:
  - name: gateway
    token: gw-secret
    scopes: [read, write, config, docs]
  - name: openai-tenant
    token: openai-secret
    scopes: [read, write]
    providers: [openai]
    quota: 3
  - name: groq-tenant
    token: groq-secret
    scopes: [read, write]
    providers: [groq]
";

struct Server {
    base: String,
    store: Arc<dyn RuntimeStore>,
}

async fn start(store: MemoryStore) -> Server {
    let store: Arc<dyn RuntimeStore> = Arc::new(store);
    let env: HashMap<String, String> = HashMap::new();
    let state = Arc::new(ServerState {
        store: Arc::clone(&store),
        config: None,
        tokens: Tokens::parse(TOKENS, &env).expect("tokens"),
        audit: Audit::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, router(state), None, std::future::pending()));
    Server { base, store }
}

/// Sends `method path` with an optional token, caller time and JSON body; the status and
/// the body's error code (if any).
async fn send(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    time: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let http = reqwest::Client::new();
    let mut request = http.request(method.parse().expect("method"), format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(time) = time {
        request = request.header("x-truckllm-time-ms", time);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("text");
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, code)
}

fn increment_path(provider: &str, key: &str) -> String {
    format!("/usage/{provider}/{key}/req/increment")
}

/// Every served route answers 401 without a token, before it reads a bad path, query or
/// body, unless it is listed public; the public ones answer without one.
#[tokio::test]
async fn every_route_but_the_listed_public_ones_needs_a_token() {
    let s = start(MemoryStore::new()).await;
    assert!(PUBLIC_ROUTES.iter().all(|r| ROUTES.contains(r)));
    for (method, path) in ROUTES {
        // Bad input everywhere: an unknown metric, unparsable query values, broken JSON.
        let url = format!(
            "{}?window=abc&since_ms=abc&prefix=",
            path.replace("{provider}", "openai")
                .replace("{keyId}", "key1")
                .replace("{metric}", "bogus")
        );
        let method = method.to_uppercase();
        let (status, code) = send(&s.base, &method, &url, None, None, Some("{bad")).await;
        if PUBLIC_ROUTES.contains(&(method.to_lowercase().as_str(), *path)) {
            assert_eq!(status, 200, "{method} {path} is public: {code}");
        } else {
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "{method} {path}"
            );
            let (status, _) = send(&s.base, &method, &url, Some("nope"), None, None).await;
            assert_eq!(status, 401, "{method} {path} with an unknown token");
        }
    }
}

/// A caller's time places its writes but cannot stray from the server's by more than five
/// minutes (400), and a time ahead within that expires nobody's data: a full store stays
/// full instead of sweeping other tenants' counters.
#[tokio::test]
async fn a_callers_clock_is_bounded_and_never_expires_others_data() {
    let options = StoreOptions {
        clock: Arc::new(truckllm_store::RequestClock),
        ..StoreOptions::default()
    };
    let s = start(MemoryStore::with_options(options, 2)).await;
    let b = &s.base;
    let now = SystemClock.now_ms();
    let gw = Some("gw-secret");
    assert_eq!(
        send(
            b,
            "POST",
            &increment_path("openai", "k1"),
            gw,
            None,
            Some(r#"{"delta":1}"#)
        )
        .await,
        (200, "1".into())
    );
    assert_eq!(
        send(
            b,
            "POST",
            &increment_path("groq", "k1"),
            gw,
            None,
            Some(r#"{"delta":1}"#)
        )
        .await,
        (200, "1".into())
    );
    let ten_days = (now + 10 * 86_400_000).to_string();
    for (time, code) in [
        (ten_days.as_str(), "clock_skew"),
        ("18446744073709551615", "clock_skew"),
        ("0", "clock_skew"),
        ("soon", "invalid_time"),
    ] {
        let batch = r#"{"increments":[{"series":{"provider":"openai","key_id":"k2","metric":"req"},"delta":1}]}"#;
        let answer = send(b, "POST", "/batch/increment", gw, Some(time), Some(batch)).await;
        assert_eq!(answer, (400, code.to_owned()), "time {time}");
    }
    let ahead = (now + 4 * 60_000).to_string();
    let (status, code) = send(
        b,
        "POST",
        &increment_path("mistral", "k1"),
        Some("gw-secret"),
        Some(&ahead),
        Some(r#"{"delta":1}"#),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (507, "store_full"),
        "a time four minutes ahead expired nothing, so the store is still full"
    );
    for provider in ["openai", "groq"] {
        let series = Series::new(provider, "k1", Metric::Req).expect("series");
        assert_eq!(s.store.get(&series).await.expect("get"), 1.0, "{provider}");
    }
}

/// A tenant fills its quota and is refused new keys (507 `quota_exceeded`) while its held
/// keys still work; another tenant still writes new keys; and a gateway-side HTTP store sees
/// a quota or a full store as a refusal, not an outage, so its resilient wrapper stays up.
#[tokio::test]
async fn a_tenant_fills_only_its_quota_and_a_gateway_sees_no_outage() {
    let s = start(MemoryStore::with_options(StoreOptions::default(), 6)).await;
    let b = &s.base;
    let tenant = Some("openai-secret");
    let one = Some(r#"{"delta":1}"#);
    for key in ["k1", "k2", "k3"] {
        let answer = send(b, "POST", &increment_path("openai", key), tenant, None, one).await;
        assert_eq!(answer.0, 200, "{key}: {}", answer.1);
    }
    let answer = send(
        b,
        "POST",
        &increment_path("openai", "k4"),
        tenant,
        None,
        one,
    )
    .await;
    assert_eq!(answer, (507, "quota_exceeded".into()));
    let answer = send(
        b,
        "POST",
        &increment_path("openai", "k1"),
        tenant,
        None,
        one,
    )
    .await;
    assert_eq!(answer, (200, "2".into()), "held keys stay writable");
    let other = Some("groq-secret");
    for key in ["k1", "k2"] {
        let answer = send(b, "POST", &increment_path("groq", key), other, None, one).await;
        assert_eq!(
            answer.0, 200,
            "another tenant writes new keys: {}",
            answer.1
        );
    }

    // The gateway's view: an HTTP store behind the resilient wrapper, as `http://` configures.
    let resilient = |token: &str| {
        let token = token.to_owned();
        let base = b.clone();
        async move {
            let options = HttpOptions {
                token: Some(token),
                ..HttpOptions::default()
            };
            let http = HttpStore::connect(&base, options).await.expect("connect");
            ResilientStore::new(http, StoreOptions::default(), ResilientOptions::default())
        }
    };
    let reserve = |provider: &str, key: &str| ReserveRequest {
        key: ProviderKey::new(provider, key).expect("key"),
        checks: vec![LimitCheck {
            metric: Metric::Req,
            limit: 2.0,
            window: Duration::from_secs(60),
            amount: 1.0,
        }],
        id: None,
    };
    let tenant_store = resilient("openai-secret").await;
    let refused = tenant_store.reserve(&reserve("openai", "k5")).await;
    assert!(
        matches!(&refused, Err(StoreError::QuotaExceeded { .. })),
        "{refused:?}"
    );
    let increment = tenant_store
        .increment(
            &Series::new("openai", "k6", Metric::Req).expect("series"),
            1.0,
        )
        .await;
    assert!(
        matches!(&increment, Err(e) if !e.is_retryable()),
        "{increment:?}"
    );
    assert!(!tenant_store.is_degraded(), "a quota is no outage");

    // The store itself is now full (3 + 2 keys of 6, then one more): a new key is refused
    // with `store_full`, again no outage.
    let gateway = resilient("gw-secret").await;
    gateway
        .reserve(&reserve("mistral", "k1"))
        .await
        .expect("the last free key");
    let full = gateway.reserve(&reserve("mistral", "k2")).await;
    assert!(
        matches!(&full, Err(StoreError::Capacity { .. })),
        "{full:?}"
    );
    assert!(!gateway.is_degraded(), "a full store is no outage");
}
