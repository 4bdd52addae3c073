//! OpenAI's Responses API over real HTTP through the project's mock provider: usage classes
//! counted as the provider reported them, streams re-framed from Anthropic events, refusals
//! in OpenAI's shape, and stored responses that only their own client finds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::slow_docs::SlowDocWrites;
use common::{Backend, Mock, TestGateway};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_store::{Metric, RuntimeStore};

const CLIENT_A: &str = "client-a-secret";
const CLIENT_B: &str = "client-b-secret";

fn config(upstream: &str) -> String {
    format!(
        r#"llm_providers:
  - id: "openai"
    base_url: "{upstream}/v1"
    keys:
      - id: "o1"
        secret: "sk-openai-1"
  - id: "anthropic"
    type: "anthropic"
    base_url: "{upstream}/v1"
    keys:
      - id: "a1"
        secret: "sk-ant-1"
aliases:
  "claude-*": ["anthropic:*"]
  "gpt-*": ["openai:*"]
api_keys:
  - id: "a"
    key: "{CLIENT_A}"
  - id: "b"
    key: "{CLIENT_B}"
"#
    )
}

async fn start() -> (Mock, TestGateway) {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url), Backend::Memory).await;
    (mock, gw)
}

async fn create(gw: &TestGateway, key: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = gw.post("/v1/responses", Some(key), &body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(gw: &TestGateway, key: &str, path: &str) -> (u16, Value) {
    let response = gw
        .http
        .get(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn reasoning_and_cached_tokens_are_shown_and_counted_as_the_provider_reported() {
    let (mock, gw) = start().await;
    let body = json!({"model": "gpt-4o-mini", "input": "four words of input",
        "reasoning": {"effort": "high"}, "prompt_cache_key": "conversation-1"});
    let (status, first) = create(&gw, CLIENT_A, body.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    let (_, second) = create(&gw, CLIENT_A, body).await;
    let cached = second["usage"]["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached tokens");
    assert!(cached > 0, "the mock's cache rule applies: {second}");
    let stats = mock.stats("sk-openai-1");
    assert_eq!(
        gw.usage("openai", "o1", Metric::PromptTokens).await,
        stats.prompt_tokens as f64
    );
    assert_eq!(
        gw.usage("openai", "o1", Metric::CompletionTokens).await,
        stats.completion_tokens as f64
    );
    assert_eq!(
        gw.usage("openai", "o1", Metric::CacheReadTokens).await,
        cached as f64
    );
    assert_eq!(
        gw.usage("openai", "o1", Metric::ReasoningTokens).await,
        16.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn what_cannot_be_translated_or_found_is_refused_in_openai_shape() {
    let (mock, gw) = start().await;
    let cases = [
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "custom", "name": "x"}]}),
            "untranslatable_request",
        ),
        (json!({"model": "gpt-4o-mini"}), "missing_input"),
        (json!({"model": "gpt-4o-mini", "input": 7}), "invalid_input"),
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "previous_response_id": "resp_00ff"}),
            "previous_response_not_found",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 0}),
            "invalid_max_tokens",
        ),
        // Refused before routing, so for native providers too: its usage could not be metered.
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "background": true}),
            "unsupported_parameter",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": vec![json!("x"); 10_001]}),
            "invalid_input",
        ),
        // Provider objects whose owner the gateway cannot check, on every provider.
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "conversation": "conv_123"}),
            "unsupported_parameter",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "unsupported_parameter",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": [{"id": "msg_1"}]}),
            "unsupported_parameter",
        ),
        // Kept with the response but sent to no provider: held to OpenAI's bounds.
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "metadata": {"k": "v".repeat(513)}}),
            "invalid_metadata",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "metadata": {"k": 1}}),
            "invalid_metadata",
        ),
        (
            json!({"model": "gpt-4o-mini", "input": "hi", "user": "u".repeat(257)}),
            "invalid_metadata",
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = create(&gw, CLIENT_A, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    }
    // A query or path the handlers cannot read is answered in OpenAI's shape too.
    for (path, code) in [
        (
            "/v1/responses/resp_00ff/input_items?limit=abc",
            "invalid_query",
        ),
        ("/v1/responses/resp_%FF", "invalid_path"),
    ] {
        let (status, answer) = get(&gw, CLIENT_A, path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path}: {answer}");
    }
    assert_eq!(mock.total_requests(), 0, "nothing reached the provider");
    gw.stop().await;
}

/// `(event name, data)` of each SSE event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|event| {
            let name = event.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).ok()?))
        })
        .collect()
}

#[tokio::test]
async fn an_anthropic_stream_is_reframed_kept_and_continued() {
    let (mock, gw) = start().await;
    let body = json!({"model": "claude-sonnet-4-5", "input": "three words here", "stream": true});
    let (status, headers, text) = gw.post("/v1/responses", Some(CLIENT_A), &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let events = events(&text);
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "event name is data.type");
        assert_eq!(data["sequence_number"], n, "{name}");
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["response.created", "response.in_progress"]);
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    let completed = &events.last().expect("events").1["response"];
    let stats = mock.stats("sk-ant-1");
    assert_eq!(
        completed["usage"]["output_tokens"], stats.completion_tokens,
        "{completed}"
    );
    assert_eq!(
        gw.usage("anthropic", "a1", Metric::CompletionTokens).await,
        stats.completion_tokens as f64
    );
    // Kept (the flush above waited for it), and continued from the conversation it keeps.
    let id = completed["id"].as_str().expect("id");
    let (status, kept) = get(&gw, CLIENT_A, &format!("/v1/responses/{id}")).await;
    assert_eq!((status, &kept["output"]), (200, &completed["output"]));
    let (status, next) = create(
        &gw,
        CLIENT_A,
        json!({"model": "claude-sonnet-4-5", "input": "and more", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    let upstream = mock.mock.last_request().expect("a request");
    let turns = upstream["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(turns, 3, "user, assistant, user: {upstream}");
    gw.stop().await;
}

/// A stream's last event is sent only once what it names is stored: a follow-up sent the
/// moment the client has it finds the response (or its route) on any instance. The store here
/// takes 300 ms for each document write, so an answer that did not wait would be caught.
#[tokio::test]
async fn a_streamed_response_is_stored_before_its_last_event_is_sent() {
    for native in [false, true] {
        let mock = Mock::start(MockOptions {
            responses_native: native,
            ..MockOptions::default()
        })
        .await;
        let slow = Arc::new(SlowDocWrites::new(Duration::from_millis(300)));
        let providers = config(&mock.url).replace(
            "    keys:\n      - id: \"o1\"",
            "    responses: native\n    keys:\n      - id: \"o1\"",
        );
        let cfg = if native { providers } else { config(&mock.url) };
        let gw = TestGateway::start(&cfg, Backend::Given(slow.clone())).await;
        for model in ["gpt-4o-mini", "claude-sonnet-4-5"] {
            let body = json!({"model": model, "input": "stream and keep", "stream": true});
            let (status, _, text) = gw.post("/v1/responses", Some(CLIENT_A), &body).await;
            assert_eq!(status, 200, "{text}");
            let events = events(&text);
            let (name, last) = events.last().expect("events");
            assert_eq!(name, "response.completed");
            let id = last["response"]["id"].as_str().expect("id");
            let kept = if native && model.starts_with("gpt") {
                format!("route:{id}")
            } else {
                format!("resp:{id}")
            };
            let doc = slow.get_doc(&kept).await.expect("store");
            assert!(
                doc.is_some(),
                "native={native} {model}: {kept} not stored yet"
            );
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_response_is_found_only_by_its_own_client() {
    let (_mock, gw) = start().await;
    let (_, made) = create(
        &gw,
        CLIENT_A,
        json!({"model": "gpt-4o-mini", "input": "mine"}),
    )
    .await;
    let id = made["id"].as_str().expect("id").to_owned();
    gw.usage("openai", "o1", Metric::Req).await; // waits for the write
    let path = format!("/v1/responses/{id}");
    assert_eq!(get(&gw, CLIENT_B, &path).await.0, 404);
    let deleted = gw
        .http
        .delete(format!("{}{path}", gw.url))
        .bearer_auth(CLIENT_B)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 404);
    let (status, follow) = create(
        &gw,
        CLIENT_B,
        json!({"model": "gpt-4o-mini", "input": "x", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400, "{follow}");
    let (status, items) = get(&gw, CLIENT_A, &format!("{path}/input_items")).await;
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["data"][0]["content"][0]["text"], "mine", "{items}");
    assert_eq!(get(&gw, CLIENT_A, &path).await.0, 200);
    gw.stop().await;
}

/// Only what a provider is sent is kept: fields no provider reads are not stored.
#[tokio::test]
async fn fields_no_provider_reads_are_not_kept() {
    let (_mock, gw) = start().await;
    let junk = "j".repeat(100_000);
    let input = json!([{
        "type": "message", "role": "user", "junk": junk,
        "content": [{"type": "input_text", "text": "kept", "junk": junk}],
    }]);
    let (status, made) = create(
        &gw,
        CLIENT_A,
        json!({"model": "gpt-4o-mini", "input": input}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["id"].as_str().expect("id");
    gw.usage("openai", "o1", Metric::Req).await; // waits for the write
    let doc = gw
        .store
        .get_doc(&format!("resp:{id}"))
        .await
        .expect("store");
    let doc = String::from_utf8(doc.expect("kept")).expect("utf-8");
    assert!(doc.contains("kept") && !doc.contains("junk"), "{doc}");
    assert!(doc.len() < 10_000, "{} bytes kept", doc.len());
    gw.stop().await;
}
