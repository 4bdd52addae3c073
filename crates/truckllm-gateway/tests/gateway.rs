//! The gateway against the real mock upstream over HTTP, with the memory store and a real Redis.

mod common;

use std::time::Duration;

use common::{Backend, ConnectProxy, Mock, TestGateway, config};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_gateway::{UpstreamOptions, UpstreamProxy};
use truckllm_store::Metric;
use truckllm_store::RuntimeStoreExt;

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "three words here"}], "max_tokens": 4})
}

async fn records_usage_against_the_key_used(backend: Backend) {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 2, "", ""), backend).await;
    let (status, headers, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 4);
    let used = headers["x-truckllm-key"]
        .to_str()
        .expect("header")
        .to_owned();
    let key = used.strip_prefix("mock/").expect("provider/key");
    assert_eq!(gw.usage("mock", key, Metric::Req).await, 1.0);
    assert_eq!(gw.usage("mock", key, Metric::PromptTokens).await, 3.0);
    assert_eq!(gw.usage("mock", key, Metric::CompletionTokens).await, 4.0);
    assert_eq!(gw.usage("mock", key, Metric::Tokens).await, 7.0);
    // pricing: 1e6 per 1M input, 2e6 per 1M output, so cost = 3 + 8.
    assert!((gw.usage("mock", key, Metric::Cost).await - 11.0).abs() < 1e-9);
    assert!(gw.usage("mock", key, Metric::Latency).await > 0.0);
    assert_eq!(gw.usage("mock", key, Metric::Errors).await, 0.0);
    let other = if key == "k1" { "k2" } else { "k1" };
    assert_eq!(
        gw.usage("mock", other, Metric::Req).await,
        0.0,
        "only the key used is charged"
    );
    gw.stop().await;
}

#[tokio::test]
async fn records_usage_against_the_key_used_memory() {
    records_usage_against_the_key_used(Backend::Memory).await;
}

#[tokio::test]
async fn records_usage_against_the_key_used_redis() {
    records_usage_against_the_key_used(Backend::Redis).await;
}

#[tokio::test]
async fn bodies_pass_through_except_the_model_name() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", ""), Backend::Memory).await;
    let request = json!({
        "model": "mock:gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "n": 2, "logprobs": true, "top_logprobs": 3, "seed": 7, "user": "u-1",
        "vendor_extension": {"x": [1, 2]}
    });
    let (status, _, _) = gw.chat(None, request.clone()).await;
    assert_eq!(status, 200);
    let mut expected = request;
    expected["model"] = json!("gpt-4o-mini");
    assert_eq!(mock.mock.last_request(), Some(expected));
    gw.stop().await;
}

async fn read_stream(gw: &TestGateway, body: Value) -> (u16, String) {
    let response = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

#[tokio::test]
async fn streams_record_usage_and_strip_the_usage_chunk_unless_asked() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", ""), Backend::Redis).await;
    let mut request = hello("gpt-4o-mini");
    request["stream"] = json!(true);
    let (status, text) = read_stream(&gw, request.clone()).await;
    assert_eq!(status, 200);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        !text.contains("\"usage\":{"),
        "usage chunk stripped: {text}"
    );
    assert_eq!(
        text.matches("\"content\":").count(),
        5,
        "role chunk + 4 words: {text}"
    );
    assert_eq!(gw.usage("mock", "k1", Metric::Tokens).await, 7.0);

    request["stream_options"] = json!({"include_usage": true});
    let (_, text) = read_stream(&gw, request).await;
    assert!(
        text.contains("\"choices\":[],\"usage\":{\"prompt_tokens\":3"),
        "kept when asked: {text}"
    );
    assert_eq!(gw.usage("mock", "k1", Metric::Tokens).await, 14.0);
    assert_eq!(gw.usage("mock", "k1", Metric::Req).await, 2.0);
    gw.stop().await;
}

/// A gateway whose provider streams slowly (300 ms between chunks), with `policy` YAML.
async fn slow_stream_gateway(policy: &str) -> (Mock, TestGateway) {
    let mock = Mock::start(MockOptions {
        chunk_delay: Duration::from_millis(300),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(
        &config(
            &mock.url,
            1,
            "    limits:\n      tokens_per_min: 100000\n",
            policy,
        ),
        Backend::Memory,
    )
    .await;
    (mock, gw)
}

/// Waits until the gateway has noticed the client left and settled the stream: until a
/// request's correction reaches `metric` (the reservation alone leaves it at `reserved`).
async fn settled(gw: &TestGateway, metric: Metric, reserved: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value = gw.usage("mock", "k1", metric).await;
        if value != reserved {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream was never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_leaving_mid_stream_gets_its_real_usage_through_the_drain() {
    let (mock, gw) = slow_stream_gateway("").await;
    let first = gw.leave_a_stream_after_its_first_chunk().await;
    assert!(!first.is_empty());
    // 50 tokens are reserved until the stream is settled.
    let tokens = settled(&gw, Metric::Tokens, 50.0).await;
    let reported = mock.stats("secret-k1");
    assert_eq!(reported.ok, 1);
    assert_eq!(
        tokens,
        (reported.prompt_tokens + reported.completion_tokens) as f64,
        "what the provider reported at the stream's end, not the 50-token estimate"
    );
    assert_eq!(gw.usage("mock", "k1", Metric::Req).await, 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_without_a_drain_is_counted_by_estimate() {
    let (_mock, gw) = slow_stream_gateway("policy:\n  stream_drain_secs: 0\n").await;
    let first = gw.leave_a_stream_after_its_first_chunk().await;
    assert!(!first.is_empty());
    // The prompt's text, "user" and "three words here", is 20 characters (5 tokens at four
    // characters a token); one event was streamed.
    assert_eq!(settled(&gw, Metric::PromptTokens, 0.0).await, 5.0);
    assert_eq!(gw.usage("mock", "k1", Metric::CompletionTokens).await, 1.0);
    assert_eq!(gw.usage("mock", "k1", Metric::Req).await, 1.0);
    gw.stop().await;
}

fn read_timeout(ms: u64) -> UpstreamOptions {
    UpstreamOptions {
        read_timeout: Duration::from_millis(ms),
        proxy: UpstreamProxy::Direct,
        ..UpstreamOptions::default()
    }
}

fn stream_of(max_tokens: u32) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "three words here"}],
           "max_tokens": max_tokens, "stream": true})
}

#[tokio::test]
async fn a_provider_slower_than_the_read_timeout_is_a_502() {
    let mock = Mock::start(MockOptions {
        latency: Duration::from_secs(3),
        ..MockOptions::default()
    })
    .await;
    let policy = "policy:\n  retry:\n    max_attempts: 1\n";
    let gw = TestGateway::start_with_upstream(
        &config(&mock.url, 1, "", policy),
        Backend::Memory,
        read_timeout(200),
    )
    .await;
    let (status, _, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("read timeout"), "{message}");
    assert!(!message.contains("secret-k1"), "{message}");
    assert_eq!(gw.usage("mock", "k1", Metric::Errors).await, 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_that_keeps_sending_outlives_the_read_timeout() {
    // Nine chunks 150 ms apart: over a second in all, each gap well inside 600 ms.
    let mock = Mock::start(MockOptions {
        chunk_delay: Duration::from_millis(150),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start_with_upstream(
        &config(&mock.url, 1, "", ""),
        Backend::Memory,
        read_timeout(600),
    )
    .await;
    let (status, _, text) = gw.post("/v1/chat/completions", None, &stream_of(9)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("upstream."), "the last word arrived: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(gw.usage("mock", "k1", Metric::CompletionTokens).await, 9.0);
    assert_eq!(gw.usage("mock", "k1", Metric::Errors).await, 0.0);
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_that_stalls_past_the_read_timeout_is_cut_and_counted_as_an_error() {
    let mock = Mock::start(MockOptions {
        chunk_delay: Duration::from_secs(2),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start_with_upstream(
        &config(&mock.url, 1, "", ""),
        Backend::Memory,
        read_timeout(300),
    )
    .await;
    let response = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&stream_of(9))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let read = response.text().await;
    assert!(read.is_err(), "the stream was cut, not ended: {read:?}");
    assert_eq!(gw.usage("mock", "k1", Metric::Errors).await, 1.0);
    assert_eq!(gw.usage("mock", "k1", Metric::Req).await, 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn provider_calls_go_through_the_egress_proxy_in_one_pooled_tunnel() {
    let mock = Mock::start(MockOptions::default()).await;
    let proxy = ConnectProxy::start().await;
    let gw = TestGateway::start_with_upstream(
        &config(&mock.url, 1, "", ""),
        Backend::Memory,
        UpstreamOptions {
            proxy: UpstreamProxy::All(proxy.url.clone()),
            ..UpstreamOptions::default()
        },
    )
    .await;
    for _ in 0..3 {
        let (status, _, body) = gw.chat(None, hello("gpt-4o-mini")).await;
        assert_eq!(status, 200, "{body}");
    }
    let provider = mock.url.trim_start_matches("http://").to_owned();
    assert_eq!(
        proxy.targets(),
        vec![provider],
        "one tunnel, to the provider, reused"
    );
    assert_eq!(mock.stats("secret-k1").requests, 3);
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_502_that_does_not_show_its_password() {
    let mock = Mock::start(MockOptions::default()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let policy = "policy:\n  retry:\n    max_attempts: 1\n";
    let gw = TestGateway::start_with_upstream(
        &config(&mock.url, 1, "", policy),
        Backend::Memory,
        UpstreamOptions {
            proxy: UpstreamProxy::All(format!("http://egress:hunter2@127.0.0.1:{port}")),
            ..UpstreamOptions::default()
        },
    )
    .await;
    let (status, _, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("tunnel"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(mock.total_requests(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn embeddings_and_models() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(
            &mock.url,
            1,
            "",
            "aliases:\n  emb: [\"mock:text-embedding-3-small\"]\n",
        ),
        Backend::Memory,
    )
    .await;
    let (status, _, text) = gw
        .post(
            "/v1/embeddings",
            None,
            &json!({"model": "emb", "input": ["a b c", "d e"]}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(gw.usage("mock", "k1", Metric::PromptTokens).await, 5.0);
    assert_eq!(gw.usage("mock", "k1", Metric::Tokens).await, 5.0);
    let models: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["mock:gpt-4o-mini", "mock:text-embedding-3-small", "emb"]
    );
    gw.stop().await;
}

#[tokio::test]
async fn limits_refuse_with_429_before_the_provider_is_called() {
    let mock = Mock::start(MockOptions::default()).await;
    let provider_limits = "    limits:\n      req_per_min: 3\n";
    let gw = TestGateway::start(&config(&mock.url, 1, provider_limits, ""), Backend::Redis).await;
    for _ in 0..3 {
        assert_eq!(gw.chat(None, hello("gpt-4o-mini")).await.0, 200);
    }
    let (status, headers, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let wait: u64 = headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=61).contains(&wait), "retry-after {wait}");
    assert_eq!(
        mock.total_requests(),
        3,
        "the refused request never reached the provider"
    );
    assert_eq!(gw.usage("mock", "k1", Metric::Req).await, 3.0);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_429s_move_to_another_key_and_honour_retry_after() {
    let mock = Mock::start(MockOptions {
        rpm_cap: Some(2),
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(
        &config(&mock.url, 2, "", "policy:\n  algorithm: round_robin\n"),
        Backend::Memory,
    )
    .await;
    // Someone else has used k2's upstream quota for this minute.
    for _ in 0..2 {
        let direct = gw
            .http
            .post(format!("{}/v1/chat/completions", mock.url))
            .bearer_auth("secret-k2")
            .json(&hello("gpt-4o-mini"))
            .send()
            .await
            .expect("direct");
        assert_eq!(direct.status().as_u16(), 200);
    }
    let (status, headers, _) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(
        (status, headers["x-truckllm-key"].to_str().ok()),
        (200, Some("mock/k1"))
    );
    // The next request starts on k2, gets a 429, and moves on to k1.
    let (status, headers, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["x-truckllm-key"].to_str().ok(),
        Some("mock/k1"),
        "retried on the other key"
    );
    assert_eq!(mock.stats("secret-k2").rate_limited, 1);
    // k2 is cooled down for the upstream's Retry-After, through the store too.
    let until = gw.usage("mock", "k2", Metric::Cooldown).await;
    assert!(
        until * 1000.0 > gw.gateway.now_ms() as f64,
        "cooldown until {until}"
    );
    // Now both keys are spent upstream: the client gets a 429 with a wait.
    let (status, headers, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "retry-after {wait}");
    assert_eq!(gw.usage("mock", "k2", Metric::Errors).await, 2.0);
    gw.stop().await;
}

#[tokio::test]
async fn failing_keys_are_retried_elsewhere_and_cooled_down() {
    let mock = Mock::start(MockOptions {
        error_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let policy =
        "policy:\n  retry:\n    max_attempts: 2\n  cooldown:\n    failures: 2\n    seconds: 30\n";
    let gw = TestGateway::start(&config(&mock.url, 2, "", policy), Backend::Redis).await;
    let (status, _, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["type"], "upstream_error");
    assert_eq!(mock.total_requests(), 2, "two attempts, one per key");
    let (status, _, _) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(status, 502);
    gw.gateway.flush().await;
    // Two consecutive failures per key: both cooled down, and the cooldown is in the store.
    let until = gw.usage("mock", "k1", Metric::Cooldown).await;
    assert!(
        until * 1000.0 > gw.gateway.now_ms() as f64,
        "shared cooldown recorded: {until}"
    );
    assert_eq!(gw.usage("mock", "k1", Metric::Errors).await, 2.0);
    assert_eq!(
        gw.usage("mock", "k1", Metric::Tokens).await,
        0.0,
        "failed attempts use no tokens"
    );
    gw.stop().await;
}

#[tokio::test]
async fn other_4xx_answers_come_back_as_they_are() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", ""), Backend::Memory).await;
    // The mock rejects an embeddings call without input with its own 400.
    let (status, _, text) = gw
        .post(
            "/v1/embeddings",
            None,
            &json!({"model": "mock:text-embedding-3-small"}),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("`input` is required"), "{text}");
    assert_eq!(mock.total_requests(), 1, "not retried");
    assert_eq!(
        gw.usage("mock", "k1", Metric::Errors).await,
        0.0,
        "the client's mistake is not an upstream error"
    );
    gw.stop().await;
}

#[tokio::test]
async fn clients_are_authenticated_and_scoped_by_the_resolver() {
    let mock = Mock::start(MockOptions::default()).await;
    let extra = "aliases:\n  fast: [\"mock:gpt-4o-mini\"]\napi_keys:\n  - id: \"full\"\n    key: \"key-full\"\n  - id: \"narrow\"\n    key: \"key-narrow\"\n    allowed_models: [\"fast\"]\n";
    let gw = TestGateway::start(&config(&mock.url, 1, "", extra), Backend::Memory).await;
    let (status, _, body) = gw.chat(None, hello("gpt-4o-mini")).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    assert_eq!(gw.chat(Some("wrong"), hello("gpt-4o-mini")).await.0, 401);
    assert_eq!(gw.chat(Some("key-full"), hello("gpt-4o-mini")).await.0, 200);
    assert_eq!(gw.chat(Some("key-narrow"), hello("fast")).await.0, 200);
    for spelling in ["gpt-4o-mini", "mock:gpt-4o-mini"] {
        let (status, _, body) = gw.chat(Some("key-narrow"), hello(spelling)).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (403, Some("permission_error")),
            "{spelling}"
        );
    }
    let models: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth("key-narrow")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1), "{models}");
    assert_eq!(mock.total_requests(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_touches_no_usage() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", ""), Backend::Memory).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let send = |body: Vec<u8>, content_type: &'static str| {
        let http = gw.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let json: Value = r.json().await.expect("OpenAI error shape is JSON");
            (
                status,
                json["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    assert_eq!(
        send(b"{not json".to_vec(), "application/json").await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        send(b"[1,2]".to_vec(), "application/json").await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        send(br#"{"messages":[]}"#.to_vec(), "application/json").await,
        (400, "missing_model".into())
    );
    assert_eq!(
        send(br#"{"model":7}"#.to_vec(), "application/json").await,
        (400, "invalid_model".into())
    );
    assert_eq!(
        send(br#"{"model":"nope"}"#.to_vec(), "application/json").await,
        (404, "model_not_found".into())
    );
    assert_eq!(
        send(br#"{"model":"mock:unlisted"}"#.to_vec(), "application/json").await,
        (404, "model_not_found".into())
    );
    assert_eq!(
        send(br#"{"model":"gpt-4o-mini"}"#.to_vec(), "text/plain").await,
        (415, "unsupported_media_type".into())
    );
    let huge = format!(
        "{{\"model\":\"gpt-4o-mini\",\"pad\":\"{}\"}}",
        "a".repeat(9 << 20)
    );
    assert_eq!(
        send(huge.into_bytes(), "application/json").await,
        (413, "request_too_large".into())
    );
    assert_eq!(mock.total_requests(), 0);
    gw.gateway.flush().await;
    assert!(
        gw.store.list("").await.expect("list").is_empty(),
        "no usage recorded"
    );
    gw.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_and_least_loaded_follows_the_snapshot() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(
            &mock.url,
            2,
            "    limits:\n      req_per_min: 1000\n",
            "policy:\n  algorithm: round_robin\n",
        ),
        Backend::Memory,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(gw.chat(None, hello("gpt-4o-mini")).await.0, 200);
    }
    assert_eq!(
        (mock.stats("secret-k1").ok, mock.stats("secret-k2").ok),
        (5, 5)
    );
    gw.stop().await;

    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(
        &config(
            &mock.url,
            2,
            "    limits:\n      req_per_min: 1000\n",
            "policy:\n  algorithm: least_loaded\n",
        ),
        Backend::Memory,
    )
    .await;
    // k1 already carries 100 requests in the window (from another instance, say).
    let k1 = truckllm_store::Series::new("mock", "k1", Metric::Req).expect("series");
    gw.store.increment(&k1, 100.0).await.expect("preload");
    gw.refresh_snapshot().await;
    for _ in 0..20 {
        assert_eq!(gw.chat(None, hello("gpt-4o-mini")).await.0, 200);
    }
    assert_eq!(
        (mock.stats("secret-k1").ok, mock.stats("secret-k2").ok),
        (0, 20)
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_reload_applies_a_new_config() {
    let mock = Mock::start(MockOptions::default()).await;
    let base = config(
        &mock.url,
        1,
        "",
        "server:\n  admin_key: \"admin-secret-key\"\n",
    );
    let gw = TestGateway::start(&base, Backend::Memory).await;
    assert_eq!(gw.chat(None, hello("fast")).await.0, 404);
    let path = gw.dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!("{base}aliases:\n  fast: [\"mock:gpt-4o-mini\"]\n"),
    )
    .expect("edit");
    let denied = gw
        .http
        .post(format!("{}/admin/config/reload", gw.url))
        .bearer_auth("nope")
        .send()
        .await
        .expect("send");
    assert_eq!(denied.status().as_u16(), 401);
    let ok = gw
        .http
        .post(format!("{}/admin/config/reload", gw.url))
        .bearer_auth("admin-secret-key")
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(gw.chat(None, hello("fast")).await.0, 200);
    std::fs::write(&path, "llm_providers: [oops\n").expect("break");
    let rejected = gw
        .http
        .post(format!("{}/admin/config/reload", gw.url))
        .bearer_auth("admin-secret-key")
        .send()
        .await
        .expect("send");
    assert_eq!(rejected.status().as_u16(), 400);
    assert_eq!(
        gw.chat(None, hello("fast")).await.0,
        200,
        "the running config stays"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_alias_falls_back_to_its_next_target_when_the_first_fails() {
    let broken = Mock::start(MockOptions {
        error_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let healthy = Mock::start(MockOptions::default()).await;
    let config = format!(
        "llm_providers:\n  - id: \"first\"\n    base_url: \"{}/v1\"\n    keys: [{{id: \"a\", secret: \"secret-a\"}}]\n  - id: \"second\"\n    base_url: \"{}/v1\"\n    keys: [{{id: \"b\", secret: \"secret-b\"}}]\naliases:\n  smart: [\"first:m\", \"second:m\"]\n",
        broken.url, healthy.url
    );
    let gw = TestGateway::start(&config, Backend::Memory).await;
    let (status, headers, body) = gw.chat(None, hello("smart")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-truckllm-key"].to_str().ok(), Some("second/b"));
    assert_eq!(
        body["model"], "m",
        "the second target's model name went upstream"
    );
    assert_eq!(broken.total_requests(), 1);
    assert_eq!(gw.usage("first", "a", Metric::Errors).await, 1.0);
    assert_eq!(gw.usage("second", "b", Metric::Req).await, 1.0);
    gw.stop().await;

    let no_fallback = format!("{config}policy:\n  fallback: false\n");
    let gw = TestGateway::start(&no_fallback, Backend::Memory).await;
    assert_eq!(
        gw.chat(None, hello("smart")).await.0,
        502,
        "without fallback the first target's failure stands"
    );
    gw.stop().await;
}
