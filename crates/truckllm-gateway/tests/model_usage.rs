//! The gateway's per-model usage series (`_models:{name}`) over real HTTP: a request that
//! failed over to another key counts once, with the failed attempt's error; a request no key
//! answered counts once, with every attempt's error, whether its answer is a 5xx or not (every
//! key rate limited upstream); names a client makes up for a
//! passthrough provider are bounded per instance, the rest counted under `_models:_other`.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Mock, TestGateway, config};
use futures_util::StreamExt;
use serde_json::{Value, json};
use truckllm_gateway::attempt::{MAX_OPEN_MODEL_NAMES, OTHER_MODELS};
use truckllm_gateway::mock::{KeyFault, MockOptions};
use truckllm_store::Metric;

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

const MODEL: &str = "mock:gpt-4o-mini";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_over_request_counts_once_with_its_failed_attempts_errors() {
    let mock = Mock::start(MockOptions::default()).await;
    mock.mock.fault_key("secret-k1", KeyFault::Failing);
    let policy = "policy:\n  algorithm: round_robin\n  cooldown: {failures: 100, seconds: 1}\n";
    let gw = TestGateway::start(&config(&mock.url, 2, "", policy), Backend::Memory).await;
    // Round robin starts the two requests on different keys: one of them meets k1's 500
    // first and fails over to k2.
    for _ in 0..2 {
        let (status, _, body) = gw.chat(None, hello(MODEL)).await;
        assert_eq!(status, 200, "{body}");
    }
    let failed_attempts = mock.stats("secret-k1").errors as f64;
    assert!(failed_attempts >= 1.0, "a request failed over");
    assert_eq!(
        gw.usage("mock", "k1", Metric::Errors).await,
        failed_attempts
    );
    assert_eq!(
        gw.usage("_models", MODEL, Metric::Req).await,
        2.0,
        "once each"
    );
    assert_eq!(
        gw.usage("_models", MODEL, Metric::Errors).await,
        failed_attempts,
        "as the provider key counts them"
    );
    assert_eq!(
        gw.usage("_models", MODEL, Metric::CompletionTokens).await,
        gw.usage("mock", "k2", Metric::CompletionTokens).await,
        "the answering attempts' tokens"
    );
    assert_eq!(
        gw.usage("_models", MODEL, Metric::Cost).await,
        gw.usage("mock", "k2", Metric::Cost).await
    );

    // No key answers: the request counts once, with each attempt's error.
    mock.mock.fault_key("secret-k2", KeyFault::Failing);
    let before = mock.total_requests();
    let (status, _, body) = gw.chat(None, hello(MODEL)).await;
    assert_eq!(status, 502, "{body}");
    let attempts = (mock.total_requests() - before) as f64;
    assert!(attempts >= 2.0, "both keys tried: {attempts}");
    assert_eq!(gw.usage("_models", MODEL, Metric::Req).await, 3.0);
    assert_eq!(
        gw.usage("_models", MODEL, Metric::Errors).await,
        failed_attempts + attempts
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_every_key_refused_upstream_counts_once_though_not_a_5xx() {
    let mock = Mock::start(MockOptions::default()).await;
    mock.mock.fault_key("secret-k1", KeyFault::RateLimited);
    mock.mock.fault_key("secret-k2", KeyFault::RateLimited);
    let gw = TestGateway::start(&config(&mock.url, 2, "", ""), Backend::Memory).await;
    let (status, _, body) = gw.chat(None, hello(MODEL)).await;
    assert_eq!(status, 429, "{body}");
    let attempts = mock.total_requests() as f64;
    assert!(attempts >= 1.0, "an attempt went out");
    assert_eq!(gw.usage("_models", MODEL, Metric::Req).await, 1.0);
    assert_eq!(
        gw.usage("_models", MODEL, Metric::Errors).await,
        attempts,
        "each attempt's error, none more"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_model_names_create_a_bounded_number_of_series() {
    let mock = Mock::start(MockOptions::default()).await;
    let open = format!(
        "  - id: open\n    base_url: \"{}/v1\"\n    keys: [{{id: o1, secret: secret-o1}}]\n\
         aliases:\n  fast: [\"open:gpt-4o-mini\"]\n  \"any-*\": [\"open:*\"]\n  \"fixed-*\": [\"mock:gpt-4o-mini\"]\n",
        mock.url
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &open), Backend::Memory).await;
    let names = 2 * MAX_OPEN_MODEL_NAMES;
    let answered = futures_util::stream::iter(0..names)
        .map(|i| {
            let name = if i % 2 == 0 {
                format!("open:made-up-{i}")
            } else {
                format!("any-{i}")
            };
            let gw = &gw;
            async move { gw.chat(None, hello(&name)).await.0 }
        })
        .buffer_unordered(8)
        .filter(|status| std::future::ready(*status == 200))
        .count()
        .await;
    assert_eq!(answered, names);
    for name in ["fast", "fixed-anything", "fixed-other"] {
        let (status, _, body) = gw.chat(None, hello(name)).await;
        assert_eq!(status, 200, "{body}");
    }
    gw.gateway.flush().await;

    let rollups = gw.store.rollups("_models:", 0).await.expect("rollups");
    let counted: BTreeSet<&str> = rollups
        .iter()
        .filter(|r| r.series.metric() == Metric::Req)
        .map(|r| r.series.key_id())
        .collect();
    assert!(counted.contains("fast"), "a name the config holds");
    assert!(
        counted.contains("fixed-*"),
        "a pattern with fixed targets counts under its own name: {counted:?}"
    );
    assert!(
        !counted
            .iter()
            .any(|n| n.starts_with("fixed-") && *n != "fixed-*")
    );
    let open_names = counted
        .iter()
        .filter(|n| n.starts_with("open:") || n.starts_with("any-"))
        .count();
    assert_eq!(
        open_names, MAX_OPEN_MODEL_NAMES,
        "made-up names up to the cap"
    );
    assert_eq!(
        gw.usage("_models", OTHER_MODELS, Metric::Req).await,
        (names - MAX_OPEN_MODEL_NAMES) as f64,
        "the rest counted together"
    );
    assert_eq!(gw.usage("_models", "fixed-*", Metric::Req).await, 2.0);
    gw.stop().await;
}
