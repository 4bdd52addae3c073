//! Both directions between the Anthropic and OpenAI dialects, over real HTTP through the
//! project's mock provider (which checks requests as Anthropic's API does): Messages clients
//! to an Anthropic provider (passed through) and to an OpenAI-compatible one (translated),
//! Chat clients to an Anthropic provider, streams, tools, errors, count_tokens, and usage in
//! the store equal to what the provider reported, cache classes included.

mod common;

use common::{Backend, Mock, TestGateway};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_store::Metric;

/// An Anthropic provider and an OpenAI one, both at the mock; `claude-*` names go to the
/// first, `gpt-*` to the second.
fn config(upstream: &str, anthropic_extra: &str) -> String {
    format!(
        r#"llm_providers:
  - id: "anthropic"
    type: "anthropic"
    base_url: "{upstream}/v1"
    keys:
      - id: "a1"
        secret: "sk-ant-1"
      - id: "a2"
        secret: "sk-ant-2"
    pricing: {{ input_per_1m: 3.0, output_per_1m: 15.0, cache_write_per_1m: 3.75, cache_read_per_1m: 0.30 }}
{anthropic_extra}  - id: "openai"
    base_url: "{upstream}/v1"
    keys:
      - id: "o1"
        secret: "sk-openai-1"
aliases:
  "claude-*": ["anthropic:*"]
  "gpt-*": ["openai:*"]
"#
    )
}

async fn start(options: MockOptions, anthropic_extra: &str) -> (Mock, TestGateway) {
    let mock = Mock::start(options).await;
    let gw = TestGateway::start(&config(&mock.url, anthropic_extra), Backend::Memory).await;
    (mock, gw)
}

fn message(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
}

async fn post(
    gw: &TestGateway,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = gw
        .http
        .post(format!("{}{path}", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `(event type, data)` of each SSE event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|event| {
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))?
                .to_owned();
            let kind = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            Some((
                kind,
                serde_json::from_str(&data).unwrap_or(Value::String(data)),
            ))
        })
        .collect()
}

async fn used(gw: &TestGateway, provider: &str, key: &str, metric: Metric) -> f64 {
    gw.usage(provider, key, metric).await
}

/// A metric over both Anthropic keys.
async fn sum(gw: &TestGateway, metric: Metric) -> f64 {
    used(gw, "anthropic", "a1", metric).await + used(gw, "anthropic", "a2", metric).await
}

#[tokio::test]
async fn messages_pass_through_to_an_anthropic_provider_with_the_key_version_and_betas() {
    let (mock, gw) = start(MockOptions::default(), "").await;
    let (status, headers, text) = post(
        &gw,
        "/v1/messages?beta=true",
        &message("claude-sonnet-4-5", "three words here"),
        &[(
            "anthropic-beta",
            "claude-code-20250219,context-1m-2025-08-07",
        )],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body = json_of(&text);
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"][0]["text"], "This is a mock reply");
    assert!(
        headers["x-truckllm-key"]
            .to_str()
            .expect("ascii")
            .starts_with("anthropic/")
    );
    let seen = mock
        .mock
        .last_headers()
        .expect("headers reached the provider");
    assert_eq!(
        seen.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    assert_eq!(
        seen.get("anthropic-beta").map(String::as_str),
        Some("claude-code-20250219,context-1m-2025-08-07")
    );
    assert!(
        !format!("{seen:?}").contains("sk-ant"),
        "no secret recorded: {seen:?}"
    );
    let asked = mock.mock.last_request().expect("request");
    assert_eq!(asked["model"], "claude-sonnet-4-5");
    assert_eq!(
        asked["messages"],
        message("x", "three words here")["messages"]
    );
    let calls = mock.stats("sk-ant-1").requests + mock.stats("sk-ant-2").requests;
    assert_eq!(calls, 1, "one call with one of the Anthropic keys");
    let usage = body["usage"].clone();
    let reported = usage["input_tokens"].as_f64().expect("input")
        + usage["output_tokens"].as_f64().expect("output");
    let stored = used(&gw, "anthropic", "a1", Metric::Tokens).await
        + used(&gw, "anthropic", "a2", Metric::Tokens).await;
    assert_eq!(stored, reported, "usage as the provider reported it");
    gw.stop().await;
}

#[tokio::test]
async fn cache_tokens_are_recorded_by_class_and_priced_as_billed() {
    let (_mock, gw) = start(MockOptions::default(), "").await;
    let cached = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 5,
        "system": [{"type": "text", "text": "a long shared system prompt of many words", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello there"}],
    });
    let (status, _, first) = post(&gw, "/v1/messages", &cached, &[("x-api-key", "unused")]).await;
    assert_eq!(status, 200, "{first}");
    let (status, _, second) = post(&gw, "/v1/messages", &cached, &[]).await;
    assert_eq!(status, 200, "{second}");
    let (first, second) = (
        json_of(&first)["usage"].clone(),
        json_of(&second)["usage"].clone(),
    );
    let field = |u: &Value, f: &str| u[f].as_f64().unwrap_or(0.0);
    let written = field(&first, "cache_creation_input_tokens")
        + field(&second, "cache_creation_input_tokens");
    let read = field(&first, "cache_read_input_tokens") + field(&second, "cache_read_input_tokens");
    assert!(written > 0.0 && read > 0.0, "{first} {second}");
    assert_eq!(sum(&gw, Metric::CacheWriteTokens).await, written);
    assert_eq!(sum(&gw, Metric::CacheReadTokens).await, read);
    let input = field(&first, "input_tokens") + field(&second, "input_tokens");
    let output = field(&first, "output_tokens") + field(&second, "output_tokens");
    assert_eq!(sum(&gw, Metric::PromptTokens).await, input + written + read);
    assert_eq!(
        sum(&gw, Metric::Tokens).await,
        input + written + output,
        "cache reads do not count toward Anthropic's limits"
    );
    let expected_cost = (input * 3.0 + written * 3.75 + read * 0.30 + output * 15.0) / 1e6;
    assert!((sum(&gw, Metric::Cost).await - expected_cost).abs() < 1e-12);
    gw.stop().await;
}

#[tokio::test]
async fn a_streamed_message_passes_event_by_event_and_its_usage_is_recorded() {
    let (_mock, gw) = start(MockOptions::default(), "").await;
    let mut body = message("claude-haiku-4-5", "one two three four");
    body["stream"] = json!(true);
    let (status, headers, text) = post(&gw, "/v1/messages", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    let events = events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "This is a mock reply");
    let input = events[0].1["message"]["usage"]["input_tokens"]
        .as_f64()
        .expect("input");
    let output = events
        .iter()
        .filter(|(k, _)| k == "message_delta")
        .filter_map(|(_, d)| d["usage"]["output_tokens"].as_f64())
        .next_back()
        .expect("output");
    let stored = used(&gw, "anthropic", "a1", Metric::Tokens).await
        + used(&gw, "anthropic", "a2", Metric::Tokens).await;
    assert_eq!(stored, input + output);
    gw.stop().await;
}

#[tokio::test]
async fn messages_to_an_openai_provider_are_translated_both_ways() {
    let (mock, gw) = start(MockOptions::default(), "").await;
    let mut body = message("gpt-4o-mini", "count these five words");
    body["system"] = json!("be brief");
    let (status, _, text) = post(&gw, "/v1/messages", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    let reply = json_of(&text);
    assert_eq!(reply["type"], "message");
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["content"][0]["type"], "text");
    assert_eq!(reply["content"][0]["text"], "This is a mock reply");
    assert_eq!(
        reply["stop_reason"], "end_turn",
        "the mock says finish_reason stop"
    );
    let asked = mock.mock.last_request().expect("request");
    assert_eq!(asked["model"], "gpt-4o-mini");
    assert_eq!(
        asked["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(asked["messages"][1]["role"], "user");
    assert_eq!(
        asked["max_tokens"]
            .as_u64()
            .or(asked["max_completion_tokens"].as_u64()),
        Some(5)
    );
    assert_eq!(
        used(&gw, "openai", "o1", Metric::CompletionTokens).await,
        reply["usage"]["output_tokens"].as_f64().expect("output")
    );

    body["stream"] = json!(true);
    let (status, _, text) = post(&gw, "/v1/messages", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    let events = events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{text}");
    assert!(kinds.contains(&"content_block_delta") && kinds.contains(&"message_delta"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let streamed: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "This is a mock reply");
    gw.stop().await;
}

#[tokio::test]
async fn chat_to_an_anthropic_provider_is_translated_with_tools_and_streams() {
    let (mock, gw) = start(MockOptions::default(), "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let chat = json!({"model": "claude-sonnet-4-5", "max_tokens": 20, "tools": tools,
        "messages": [{"role": "system", "content": "you are terse"}, {"role": "user", "content": "what is the weather in Paris"}]});
    let (status, _, reply) = gw.chat(None, chat.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    let call = &reply["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
            .expect("arguments are JSON");
    assert!(arguments["city"].is_string(), "{arguments}");
    let asked = mock.mock.last_request().expect("request");
    assert!(
        asked["system"].to_string().contains("you are terse"),
        "{asked}"
    );
    assert_eq!(asked["tools"][0]["name"], "get_weather");
    assert!(asked["tools"][0]["input_schema"].is_object());

    // The tool's result goes back as Anthropic's tool_result; the answer is text.
    let id = call["id"].as_str().expect("id");
    let follow_up = json!({"model": "claude-sonnet-4-5", "max_tokens": 20, "tools": tools, "messages": [
        {"role": "user", "content": "what is the weather in Paris"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "sunny"}]});
    let (status, _, reply) = gw.chat(None, follow_up).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "This is a mock reply from the TruckLLM upstream."
    );
    let asked = mock.mock.last_request().expect("request");
    assert_eq!(asked["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(asked["messages"][2]["content"][0]["tool_use_id"], id);

    let mut streamed = chat;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = gw.post("/v1/chat/completions", None, &streamed).await;
    assert_eq!(status, 200, "{text}");
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(json_of)
        .collect();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(
        serde_json::from_str::<Value>(&arguments).is_ok(),
        "fragments join: {arguments}"
    );
    let usage = chunks.last().expect("usage chunk")["usage"].clone();
    assert!(
        usage["prompt_tokens"].as_f64().is_some_and(|p| p > 0.0),
        "{usage}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn overloaded_and_rate_limited_keys_are_retried_and_client_errors_come_back_in_dialect() {
    let options = MockOptions {
        overload_rate: 1.0,
        ..MockOptions::default()
    };
    let (mock, gw) = start(options, "").await;
    let (status, _, text) = post(
        &gw,
        "/v1/messages",
        &message("claude-sonnet-4-5", "hi"),
        &[],
    )
    .await;
    assert_eq!(status, 502, "{text}");
    let error = json_of(&text);
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    let tried = mock.stats("sk-ant-1").requests + mock.stats("sk-ant-2").requests;
    assert_eq!(tried, 2, "529 moved to the other key");
    gw.stop().await;

    let (mock, gw) = start(MockOptions::default(), "").await;
    // A model the provider does not know: its 404 comes back, translated for a Chat client.
    let (status, _, body) = gw
        .chat(
            None,
            json!({"model": "anthropic:missing-model", "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].is_string(), "OpenAI shape: {body}");
    assert_eq!(mock.total_requests(), 1, "a client error is not retried");
    // Missing max_tokens is refused by the gateway, in Anthropic's shape.
    let (status, _, text) = post(
        &gw,
        "/v1/messages",
        &json!({"model": "claude-x", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(json_of(&text)["error"]["type"], "invalid_request_error");
    gw.stop().await;
}

#[tokio::test]
async fn count_tokens_asks_the_provider_or_says_it_is_an_estimate() {
    let (_mock, gw) = start(MockOptions::default(), "").await;
    let body = json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "one two three"}]});
    let (status, headers, text) = post(&gw, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        json_of(&text)["input_tokens"],
        3,
        "the provider's own count"
    );
    assert!(!headers.contains_key("x-truckllm-token-count"));
    let body =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]});
    let (status, headers, text) = post(&gw, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-truckllm-token-count"], "estimate");
    assert!(
        json_of(&text)["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn models_are_listed_in_anthropic_shape_when_asked_in_that_dialect() {
    let (_mock, gw) = start(
        MockOptions::default(),
        "    models: [\"claude-sonnet-4-5\"]\n",
    )
    .await;
    let listed: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["has_more"], false);
    assert!(
        listed["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["id"] == "anthropic:claude-sonnet-4-5" && m["type"] == "model"),
        "{listed}"
    );
    let head = gw
        .http
        .head(format!("{}/", gw.url))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200, "Claude Code's reachability check");
    gw.stop().await;
}

/// Sends `raw` as it is, and returns the status and what reached the provider, byte for byte.
async fn pass_raw(mock: &Mock, gw: &TestGateway, path: &str, raw: &str) -> (u16, String) {
    let response = gw
        .http
        .post(format!("{}{path}", gw.url))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(raw.to_owned())
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    let seen = mock
        .mock
        .last_raw_request()
        .expect("a body reached the provider");
    (status, String::from_utf8(seen.to_vec()).expect("utf8"))
}

#[tokio::test]
async fn same_dialect_bodies_reach_the_provider_byte_for_byte_but_for_the_model() {
    let (mock, gw) = start(MockOptions::default(), "").await;
    // Spacing, key order, number spelling, escapes and a nested `model` are the client's own.
    let messages = r#"{ "max_tokens" : 5, "model":"anthropic:claude-sonnet-4-5",
        "metadata": {"user_id": "u\u00e9"}, "temperature": 0.50,
        "tools": [{"name": "pick", "input_schema": {"type": "object",
            "properties": {"model": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "say \"hi\""}] }"#;
    let (status, seen) = pass_raw(&mock, &gw, "/v1/messages", messages).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen,
        messages.replace(r#""anthropic:claude-sonnet-4-5""#, r#""claude-sonnet-4-5""#)
    );

    let chat = r#"{"messages":[{"role":"user","content":"hi"}],  "model" : "openai:gpt-4o",
        "stream": true, "n": 1}"#;
    let (status, seen) = pass_raw(&mock, &gw, "/v1/chat/completions", chat).await;
    assert_eq!(status, 200);
    let expected = chat
        .replacen('{', r#"{"stream_options":{"include_usage":true},"#, 1)
        .replace(r#""openai:gpt-4o""#, r#""gpt-4o""#);
    assert_eq!(
        seen, expected,
        "the usage chunk is asked for, nothing else changes"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_body_naming_the_model_twice_is_refused_before_any_provider_sees_it() {
    let (mock, gw) = start(MockOptions::default(), "").await;
    let twice = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[],"model":"gpt-4o"}"#;
    let response = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(twice)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("duplicate field `model`"), "{message}");
    assert!(mock.mock.last_raw_request().is_none());
    gw.stop().await;
}
