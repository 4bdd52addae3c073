//! AWS Bedrock (`type: bedrock`) over real HTTP through the project's mock, which checks each
//! request's SigV4 signature with the key's secret and the Converse body as Bedrock does: Chat
//! and Anthropic Messages clients, plain and streamed (AWS event-stream framing), tools, JSON
//! output, refused keys, throttling and failures retried on another key, errors in the
//! client's dialect, and usage in the store equal to what the mock reported.

mod common;

use std::time::SystemTime;

use common::{Backend, Mock, TestGateway};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_gateway::mock::bedrock::TEST_CREDENTIALS;
use truckllm_gateway::providers::bedrock::sigv4;
use truckllm_store::Metric;

/// A Bedrock model id with a `:` (sent percent-encoded, signed encoded twice).
const MODEL: &str = "bedrock:anthropic.claude-3-5-haiku-20241022-v1:0";

/// A Bedrock provider at the mock with `keys` (`(id, access key id, secret)`).
fn config(upstream: &str, keys: &[(&str, &str, &str)], extra: &str) -> String {
    let mut keys_yaml = String::new();
    for (id, access, secret) in keys {
        keys_yaml.push_str(&format!(
            "      - id: \"{id}\"\n        access_key_id: \"{access}\"\n        secret_access_key: \"{secret}\"\n"
        ));
    }
    format!(
        "llm_providers:\n  - id: \"bedrock\"\n    type: \"bedrock\"\n    region: \"us-east-1\"\n    base_url: \"{upstream}\"\n    keys:\n{keys_yaml}    pricing: {{ input_per_1m: 1000000, output_per_1m: 2000000 }}\naliases:\n  \"claude-*\": [\"bedrock:anthropic.claude-3-5-haiku-20241022-v1:0\"]\n{extra}"
    )
}

/// The mock's first two test keys, as `b1` and `b2`.
fn two_keys() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("b1", TEST_CREDENTIALS[1].0, TEST_CREDENTIALS[1].1),
        ("b2", TEST_CREDENTIALS[2].0, TEST_CREDENTIALS[2].1),
    ]
}

async fn start(
    options: MockOptions,
    keys: &[(&str, &str, &str)],
    extra: &str,
) -> (Mock, TestGateway) {
    let mock = Mock::start(options).await;
    let gw = TestGateway::start(&config(&mock.url, keys, extra), Backend::Memory).await;
    (mock, gw)
}

fn hello(stream: bool) -> Value {
    json!({"model": MODEL, "max_tokens": 5, "stream": stream,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "three words here"}]})
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

async fn messages(gw: &TestGateway, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let response = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

/// The JSON `data:` payloads of an SSE body (`[DONE]` as a string).
fn data_of(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
        .collect()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn tokens(gw: &TestGateway, key: &str) -> (f64, f64) {
    (
        gw.usage("bedrock", key, Metric::PromptTokens).await,
        gw.usage("bedrock", key, Metric::CompletionTokens).await,
    )
}

#[tokio::test]
async fn a_chat_client_gets_a_completion_from_a_signed_converse_call() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let (status, headers, body) = gw.chat(None, hello(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "This is a mock reply"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"]["prompt_tokens"], 5,
        "Be brief. + three words here"
    );
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(headers["x-truckllm-key"], "bedrock/b1");
    // What reached Bedrock: a Converse body, the model in the path, a SigV4 signature over
    // host, x-amz-date and content-type (the mock verified it, or it would have been a 403).
    let sent = mock.mock.last_request().expect("a request");
    assert_eq!(
        sent,
        json!({"messages": [{"role": "user", "content": [{"text": "three words here"}]}],
               "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 5}})
    );
    let seen = mock.mock.last_headers().expect("headers");
    assert_eq!(
        seen[":path"],
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    let auth = &seen["authorization"];
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={}/", keys[0].1))
            && auth.ends_with(
                "/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date"
            ),
        "{auth}"
    );
    assert!(
        !auth.contains(keys[0].2),
        "no secret in what the mock shows"
    );
    let stats = mock.stats(keys[0].1);
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (5, 5));
    assert_eq!(
        tokens(&gw, "b1").await,
        (5.0, 5.0),
        "usage equals Bedrock's figures"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_chat_stream_is_reframed_from_event_stream_messages() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let mut body = hello(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, text) = gw.post("/v1/chat/completions", None, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let chunks = data_of(&text);
    let said: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(said, "This is a mock reply");
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("stop")))
    );
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| !u.is_null()))
        .expect("usage chunk");
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(5), Some(5))
    );
    assert_eq!(chunks.last(), Some(&json!("[DONE]")));
    let seen = mock.mock.last_headers().expect("headers");
    assert!(seen[":path"].ends_with("%3A0/converse-stream"), "{seen:?}");
    assert_eq!(tokens(&gw, "b1").await, (5.0, 5.0));
    gw.stop().await;
}

#[tokio::test]
async fn an_anthropic_client_reaches_bedrock_plain_and_streamed() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let request = json!({"model": "claude-haiku", "max_tokens": 4, "system": "Be brief.",
        "messages": [{"role": "user", "content": "three words here"}]});
    let (status, _, text) = messages(&gw, &request).await;
    assert_eq!(status, 200, "{text}");
    let body = json_of(&text);
    assert_eq!(body["type"], "message");
    assert_eq!(
        body["content"][0],
        json!({"type": "text", "text": "This is a mock"})
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(
        (
            body["usage"]["input_tokens"].as_u64(),
            body["usage"]["output_tokens"].as_u64()
        ),
        (Some(5), Some(4))
    );
    assert_eq!(
        mock.mock.last_request().expect("sent")["inferenceConfig"]["maxTokens"],
        4
    );

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, _, text) = messages(&gw, &streamed).await;
    assert_eq!(status, 200, "{text}");
    let events = data_of(&text);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let said: String = events
        .iter()
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(said, "This is a mock");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .expect("message_delta");
    assert_eq!(delta["usage"]["output_tokens"], 4);
    assert_eq!(
        tokens(&gw, "b1").await,
        (10.0, 8.0),
        "two calls, as Bedrock counted them"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_tool_call_round_trip_works_for_chat_and_messages_clients() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let ask = json!({"model": MODEL, "tools": weather_tools(),
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    let (status, _, body) = gw.chat(None, ask.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(
        call["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tooluse_mock"))
    );
    // The answer goes back; Bedrock checks that tool blocks come with a toolConfig and that
    // turns alternate.
    let mut follow = ask.clone();
    follow["messages"] = json!([
        ask["messages"][0],
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"},
    ]);
    let (status, _, body) = gw.chat(None, follow).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = mock.mock.last_request().expect("sent");
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"],
        json!({"toolUseId": call["id"], "content": [{"text": "Sunny, 21 C"}]})
    );

    let anthropic = json!({"model": "claude-haiku", "max_tokens": 50,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "weather in Oslo?"}]});
    let (status, _, text) = messages(&gw, &anthropic).await;
    assert_eq!(status, 200, "{text}");
    let body = json_of(&text);
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["type"], "tool_use");
    assert_eq!(body["content"][0]["name"], "get_weather");
    gw.stop().await;
}

#[tokio::test]
async fn json_schema_output_is_asked_for_natively() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let mut body = hello(false);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "person",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}});
    let (status, _, answer) = gw.chat(None, body).await;
    assert_eq!(status, 200, "{answer}");
    let format = mock.mock.last_request().expect("sent")["outputConfig"]["textFormat"].clone();
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["structure"]["jsonSchema"]["name"], "person");
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_signature_moves_to_the_next_key_and_alone_is_an_upstream_error() {
    let good = two_keys()[0];
    let bad = ("bad", TEST_CREDENTIALS[2].0, "not-the-secret-of-this-key");
    let (mock, gw) = start(
        MockOptions::default(),
        &[bad, good],
        "policy:\n  algorithm: round_robin\n",
    )
    .await;
    let (status, headers, body) = gw.chat(None, hello(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["x-truckllm-key"], "bedrock/b1",
        "retried on the good key"
    );
    assert_eq!(mock.stats(bad.1).ok, 0);
    gw.stop().await;

    let (_mock, gw) = start(MockOptions::default(), &[bad], "").await;
    let (status, _, body) = gw.chat(None, hello(false)).await;
    assert_eq!(
        status, 502,
        "the provider refused the key, not the client: {body}"
    );
    assert_eq!(body["error"]["type"], "upstream_error");
    let (status, _, text) = messages(
        &gw,
        &json!({"model": "claude-haiku", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(json_of(&text)["type"], "error");
    gw.stop().await;
}

/// Signs a Converse call to the mock directly, as another user of the key would.
async fn direct_call(gw: &TestGateway, mock: &Mock, key: (&str, &str, &str)) -> u16 {
    let url = format!("{}/model/m/converse", mock.url);
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let signed = sigv4::sign(
        sigv4::AwsKey {
            access_key_id: key.1,
            secret_access_key: key.2,
            session_token: None,
        },
        sigv4::Scope {
            region: "us-east-1",
            service: "bedrock",
        },
        sigv4::Request {
            method: "POST",
            url: &url,
            headers: &[("content-type", "application/json")],
            body,
        },
        SystemTime::now(),
    )
    .expect("signed");
    let mut request = gw
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(&body[..]);
    for (name, value, _) in &signed.headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("direct").status().as_u16()
}

#[tokio::test]
async fn throttling_moves_to_another_key() {
    let keys = two_keys();
    let options = MockOptions {
        rpm_cap: Some(2),
        ..MockOptions::default()
    };
    let (mock, gw) = start(options, &keys, "policy:\n  algorithm: round_robin\n").await;
    // Someone else has used b2's Bedrock quota for this minute.
    for _ in 0..2 {
        assert_eq!(direct_call(&gw, &mock, keys[1]).await, 200);
    }
    let (status, headers, _) = gw.chat(None, hello(false)).await;
    assert_eq!(
        (status, headers["x-truckllm-key"].to_str().ok()),
        (200, Some("bedrock/b1"))
    );
    // The next request starts on b2, is throttled (429 ThrottlingException) and moves on.
    let (status, headers, body) = gw.chat(None, hello(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["x-truckllm-key"], "bedrock/b1",
        "retried on the other key"
    );
    assert_eq!(mock.stats(keys[1].1).rate_limited, 1);
    assert_eq!(gw.usage("bedrock", "b2", Metric::Errors).await, 1.0);
    gw.stop().await;
}

#[tokio::test]
async fn failures_and_overload_are_retried_then_answered_in_the_clients_dialect() {
    for options in [
        MockOptions {
            error_rate: 1.0,
            ..MockOptions::default()
        },
        MockOptions {
            overload_rate: 1.0,
            ..MockOptions::default()
        },
    ] {
        let keys = two_keys();
        let (mock, gw) = start(options, &keys, "policy:\n  retry:\n    max_attempts: 2\n").await;
        let (status, _, body) = gw.chat(None, hello(false)).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["type"], "upstream_error");
        assert_eq!(mock.total_requests(), 2, "one attempt per key");
        // A stream that fails before it starts is retried the same way.
        let (status, _, text) = gw.post("/v1/chat/completions", None, &hello(true)).await;
        assert_eq!(status, 502, "{text}");
        assert_eq!(mock.total_requests(), 4);
        gw.stop().await;
    }
    let keys = two_keys();
    let options = MockOptions {
        rate_limit_rate: 1.0,
        ..MockOptions::default()
    };
    let (mock, gw) = start(options, &keys, "").await;
    let (status, _, body) = gw.chat(None, hello(false)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        mock.stats(keys[0].1).rate_limited + mock.stats(keys[1].1).rate_limited,
        2
    );
    gw.stop().await;
}

#[tokio::test]
async fn bedrock_refusals_and_stream_exceptions_reach_the_client() {
    let keys = two_keys();
    let (_mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let mut unknown = hello(false);
    unknown["model"] = json!("bedrock:missing-model");
    let (status, _, body) = gw.chat(None, unknown).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "The provided model identifier is invalid."
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let embed = json!({"model": MODEL, "input": "hi"});
    let (status, _, text) = gw.post("/v1/embeddings", None, &embed).await;
    assert_eq!(status, 400, "Converse has no embeddings: {text}");
    assert!(text.contains("does not offer embeddings"), "{text}");

    let url_image = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let (status, _, body) = gw.chat(None, url_image).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bytes only")),
        "{body}"
    );

    let mut throttled = hello(true);
    throttled["model"] = json!("bedrock:exception-model");
    let (status, _, text) = gw.post("/v1/chat/completions", None, &throttled).await;
    assert_eq!(status, 200, "the stream had started: {text}");
    let chunks = data_of(&text);
    let said: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(said, "This", "the one delta before the exception");
    let error = chunks
        .iter()
        .find_map(|c| c.get("error"))
        .expect("an error frame");
    assert_eq!(error["code"], "throttlingException");
    assert_eq!(
        error["message"],
        "Too many tokens, please wait before trying again."
    );
    // The key failed, though the client had a 200: an error for it, not a success.
    let errors = gw
        .usage("bedrock", "b1", truckllm_store::Metric::Errors)
        .await;
    assert!(errors >= 1.0, "the stream's exception counts as an error");
    gw.stop().await;
}

#[tokio::test]
async fn a_responses_client_reaches_bedrock_streamed_and_continued() {
    let keys = two_keys();
    let (mock, gw) = start(MockOptions::default(), &keys[..1], "").await;
    let body = json!({"model": MODEL, "input": "three words here", "max_output_tokens": 5, "stream": true});
    let (status, _, text) = gw.post("/v1/responses", None, &body).await;
    assert_eq!(status, 200, "{text}");
    let events = data_of(&text);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    let completed = &events.last().expect("events")["response"];
    assert_eq!(completed["usage"]["input_tokens"], 3, "{completed}");
    assert_eq!(completed["usage"]["output_tokens"], 5, "{completed}");
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(said, "This is a mock reply");
    assert_eq!(tokens(&gw, "b1").await, (3.0, 5.0));
    // A follow-up carries the conversation to Bedrock as alternating Converse turns.
    let id = completed["id"].as_str().expect("id");
    let next = json!({"model": MODEL, "input": "and more", "previous_response_id": id});
    let (status, _, text) = gw.post("/v1/responses", None, &next).await;
    assert_eq!(status, 200, "{text}");
    let sent = mock.mock.last_request().expect("sent");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{sent}");
    assert_eq!(json_of(&text)["status"], "completed");
    gw.stop().await;
}
