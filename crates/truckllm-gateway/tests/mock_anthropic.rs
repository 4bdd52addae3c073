//! The mock upstream's Anthropic Messages dialect (and the OpenAI usage details) over real
//! HTTP: shapes, streams, tool use, token counting, request checks, knobs and the cache rule.

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use truckllm_gateway::mock::{MockOptions, MockUpstream, key_label};

const REPLY: &str = "This is a mock reply from the TruckLLM upstream.";

struct Mock {
    url: String,
    mock: Arc<MockUpstream>,
    client: reqwest::Client,
    _server: common::Mock,
}

/// A response: status, headers, body text.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).expect("JSON body")
    }

    /// Asserts an Anthropic error of this status and type.
    fn assert_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["request_id"].as_str().is_some(), "{body}");
        assert!(self.headers.contains_key("request-id"));
        body["error"]["message"]
            .as_str()
            .expect("message")
            .to_owned()
    }
}

impl Mock {
    async fn start(options: MockOptions) -> Self {
        let server = common::Mock::start(options).await;
        Self {
            url: server.url.clone(),
            mock: Arc::clone(&server.mock),
            client: reqwest::Client::new(),
            _server: server,
        }
    }

    async fn send(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.url))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("send");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    /// A well-formed call with `x-api-key: secret-a`.
    async fn call(&self, path: &str, body: &Value) -> Answer {
        self.send(path, &standard_headers(), &body.to_string())
            .await
    }

    async fn messages(&self, body: &Value) -> Answer {
        self.call("/v1/messages", body).await
    }
}

fn standard_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-api-key", "secret-a"),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ]
}

fn hello() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello there friend"}],
    })
}

fn weather_tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Weather for a place",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"}
            },
            "required": ["location", "unit"]
        }
    }])
}

fn weather_question() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "tools": weather_tools(),
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]}],
    })
}

/// SSE events as (event name, data JSON).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line");
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line");
            let data: Value = serde_json::from_str(data).expect("data JSON");
            assert_eq!(data["type"], name, "event name and data type agree");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The deltas of one kind joined, e.g. `text_delta`'s `text`.
fn joined(events: &[(String, Value)], kind: &str, field: &str) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == kind)
        .map(|(_, d)| d["delta"][field].as_str().expect("delta text"))
        .collect()
}

#[tokio::test]
async fn create_answers_a_message_with_usage() {
    let mock = Mock::start(MockOptions::default()).await;
    let answer = mock.messages(&hello()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.headers.contains_key("request-id"));
    let body = answer.json();
    assert!(body["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["content"], json!([{"type": "text", "text": REPLY}]));
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 5, "output_tokens": 9,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );

    let mut short = hello();
    short["max_tokens"] = json!(3);
    let body = mock.messages(&short).await.json();
    assert_eq!(body["content"][0]["text"], "This is a");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 3);

    let mut stopped = hello();
    stopped["stop_sequences"] = json!(["mock"]);
    let body = mock.messages(&stopped).await.json();
    assert_eq!(body["content"][0]["text"], "This is a");
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], "mock");
}

#[tokio::test]
async fn keys_arrive_as_x_api_key_or_bearer_and_are_counted_by_label() {
    let mock = Mock::start(MockOptions::default()).await;
    assert_eq!(mock.messages(&hello()).await.status, StatusCode::OK);
    let bearer = [
        ("authorization", "Bearer secret-b"),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ];
    let answer = mock
        .send("/v1/messages", &bearer, &hello().to_string())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let stats = mock.mock.stats();
    for secret in ["secret-a", "secret-b"] {
        let s = &stats[&key_label(secret)];
        assert_eq!((s.requests, s.ok), (1, 1));
        assert_eq!((s.prompt_tokens, s.completion_tokens), (5, 9));
    }
}

#[tokio::test]
async fn stream_sends_anthropics_events_in_order() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = hello();
    request["stream"] = json!(true);
    let answer = mock.messages(&request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events = events(&answer.text);
    let names = names(&events);
    assert_eq!(
        names[..3],
        ["message_start", "content_block_start", "ping"],
        "{names:?}"
    );
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[3..names.len() - 3]
            .iter()
            .all(|n| *n == "content_block_delta")
    );
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 5);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(joined(&events, "text_delta", "text"), REPLY);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 9);
}

#[tokio::test]
async fn weather_with_tools_answers_a_tool_use() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = mock.messages(&weather_question()).await.json();
    assert_eq!(body["stop_reason"], "tool_use", "{body}");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().expect("id").starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(
        block["input"],
        json!({"location": "mock location", "unit": "celsius"})
    );

    // The tool's result comes back: the answer is text.
    let mut follow = weather_question();
    follow["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [block.clone()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "Sunny"}]},
    ]);
    let body = mock.messages(&follow).await.json();
    assert_eq!(body["stop_reason"], "end_turn", "{body}");
    assert_eq!(body["content"][0]["type"], "text");

    // No trigger word: text; `tool_choice: any` forces the tool.
    let mut plain = weather_question();
    plain["messages"] = json!([{"role": "user", "content": "Hello"}]);
    assert_eq!(
        mock.messages(&plain).await.json()["stop_reason"],
        "end_turn"
    );
    plain["tool_choice"] = json!({"type": "any"});
    assert_eq!(
        mock.messages(&plain).await.json()["stop_reason"],
        "tool_use"
    );
}

#[tokio::test]
async fn streamed_tool_use_sends_json_pieces_that_join() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = weather_question();
    request["stream"] = json!(true);
    let events = events(&mock.messages(&request).await.text);
    let start = &events[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let pieces = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .count();
    assert!(pieces > 2, "the input arrives in several pieces");
    let input: Value =
        serde_json::from_str(&joined(&events, "input_json_delta", "partial_json")).expect("JSON");
    assert_eq!(
        input,
        json!({"location": "mock location", "unit": "celsius"})
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn count_tokens_counts_as_messages_does() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = weather_question();
    request["system"] = json!([{"type": "text", "text": "You know the weather."}]);
    let used = mock.messages(&request).await.json()["usage"]["input_tokens"].clone();
    request
        .as_object_mut()
        .expect("object")
        .remove("max_tokens");
    let answer = mock.call("/v1/messages/count_tokens", &request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // Tool description 4 + system 4 + message 6.
    assert_eq!(answer.json(), json!({"input_tokens": 14}));
    assert_eq!(used, 14);

    request["max_tokens"] = json!(10);
    let message = mock
        .call("/v1/messages/count_tokens", &request)
        .await
        .assert_error(400, "invalid_request_error");
    assert!(message.contains("max_tokens"), "{message}");
    let missing_version = mock
        .send(
            "/v1/messages/count_tokens",
            &[("x-api-key", "k"), ("content-type", "application/json")],
            &hello().to_string(),
        )
        .await;
    missing_version.assert_error(400, "invalid_request_error");
}

#[tokio::test]
async fn missing_headers_are_refused_in_anthropics_shape() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = hello().to_string();
    let no_key = [
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ];
    let message = mock
        .send("/v1/messages", &no_key, &body)
        .await
        .assert_error(401, "authentication_error");
    assert!(message.contains("x-api-key"), "{message}");
    let no_version = [("x-api-key", "k"), ("content-type", "application/json")];
    let message = mock
        .send("/v1/messages", &no_version, &body)
        .await
        .assert_error(400, "invalid_request_error");
    assert!(message.contains("anthropic-version"), "{message}");
    let bad_version = [
        ("x-api-key", "k"),
        ("anthropic-version", "latest"),
        ("content-type", "application/json"),
    ];
    mock.send("/v1/messages", &bad_version, &body)
        .await
        .assert_error(400, "invalid_request_error");
    let newer_version = [
        ("x-api-key", "k"),
        ("anthropic-version", "2026-10-21"),
        ("content-type", "application/json"),
    ];
    let answer = mock.send("/v1/messages", &newer_version, &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let text = [
        ("x-api-key", "k"),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "text/plain"),
    ];
    let message = mock
        .send("/v1/messages", &text, &body)
        .await
        .assert_error(400, "invalid_request_error");
    assert!(message.contains("content-type"), "{message}");
    mock.send("/v1/messages", &standard_headers(), "{not json")
        .await
        .assert_error(400, "invalid_request_error");
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_field_named() {
    let mock = Mock::start(MockOptions::default()).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"max_tokens": null}), "max_tokens"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_tokens": "ten"}), "max_tokens"),
        (json!({"model": 7}), "model"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": "hi"}), "messages"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role",
        ),
        (
            json!({"messages": [{"role": "user", "content": 3}]}),
            "messages.0.content",
        ),
        (
            json!({"messages": [{"role": "user", "content": ""}]}),
            "messages.0",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]}]}),
            "messages.0.content.0",
        ),
        (json!({"system": 5}), "system"),
        (json!({"system": [{"type": "image"}]}), "system.0.type"),
        (json!({"temperature": 1.5}), "temperature"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (json!({"tools": [{"name": "x"}]}), "tools.0.input_schema"),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 100}}),
            "budget_tokens",
        ),
    ];
    for (change, field) in cases {
        let mut request = hello();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                request.as_object_mut().expect("object").remove(k);
            } else {
                request[k] = v.clone();
            }
        }
        let message = mock
            .messages(&request)
            .await
            .assert_error(400, "invalid_request_error");
        assert!(message.contains(field), "{field}: {message}");
    }
    let mut missing = hello();
    missing["model"] = json!("missing-model");
    mock.messages(&missing)
        .await
        .assert_error(404, "not_found_error");
}

#[tokio::test]
async fn mid_conversation_system_turns_need_their_beta() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = hello();
    request["messages"] = json!([
        {"role": "user", "content": "Hello"},
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Again"},
    ]);
    mock.messages(&request)
        .await
        .assert_error(400, "invalid_request_error");
    let mut headers = standard_headers();
    headers.push((
        "anthropic-beta",
        "claude-code-20250219,mid-conversation-system-2026-04-07",
    ));
    let answer = mock
        .send("/v1/messages?beta=true", &headers, &request.to_string())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn knobs_answer_429_529_and_500_as_anthropic_does() {
    let cases = [
        (
            MockOptions {
                rate_limit_rate: 1.0,
                ..MockOptions::default()
            },
            429,
            "rate_limit_error",
        ),
        (
            MockOptions {
                overload_rate: 1.0,
                ..MockOptions::default()
            },
            529,
            "overloaded_error",
        ),
        (
            MockOptions {
                error_rate: 1.0,
                ..MockOptions::default()
            },
            500,
            "api_error",
        ),
    ];
    for (options, status, kind) in cases {
        let mock = Mock::start(options).await;
        let answer = mock.messages(&hello()).await;
        answer.assert_error(status, kind);
        assert_eq!(answer.headers.contains_key("retry-after"), status == 429);
        let stats = &mock.mock.stats()[&key_label("secret-a")];
        assert_eq!(
            (stats.rate_limited, stats.overloaded, stats.errors),
            (
                u64::from(status == 429),
                u64::from(status == 529),
                u64::from(status == 500)
            )
        );
    }
}

#[tokio::test]
async fn cache_control_writes_then_reads_the_prefix() {
    let mock = Mock::start(MockOptions::default()).await;
    let system = json!([{"type": "text", "text": "You are a careful assistant today.",
        "cache_control": {"type": "ephemeral"}}]);
    let mut first = hello();
    first["system"] = system.clone();
    let usage = |body: Value| body["usage"].clone();
    let expected = |input: u64, write: u64, read: u64| {
        json!({"input_tokens": input, "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read, "output_tokens": 9})
    };
    // The 6 system words are written, then read; the 3 message words are not cached.
    assert_eq!(usage(mock.messages(&first).await.json()), expected(3, 6, 0));
    assert_eq!(usage(mock.messages(&first).await.json()), expected(3, 0, 6));

    // A longer conversation with a second breakpoint reads the first, writes the rest.
    let mut longer = first.clone();
    longer["messages"] = json!([
        {"role": "user", "content": [{"type": "text", "text": "Hello there friend",
            "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "More please"},
    ]);
    assert_eq!(
        usage(mock.messages(&longer).await.json()),
        expected(3, 3, 6)
    );
    let stats = &mock.mock.stats()[&key_label("secret-a")];
    assert_eq!((stats.cache_write_tokens, stats.cache_read_tokens), (9, 12));

    // Streams report the cache in message_start.
    let mut streamed = longer.clone();
    streamed["stream"] = json!(true);
    let events = events(&mock.messages(&streamed).await.text);
    let start = &events[0].1["message"]["usage"];
    assert_eq!(start["cache_read_input_tokens"], 9);
    assert_eq!(start["input_tokens"], 3);

    // Another model has its own cache.
    let mut other = first;
    other["model"] = json!("claude-haiku-4-5");
    assert_eq!(usage(mock.messages(&other).await.json()), expected(3, 6, 0));
}

#[tokio::test]
async fn thinking_adds_a_signed_thinking_block() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = hello();
    request["max_tokens"] = json!(2048);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let body = mock.messages(&request).await.json();
    let thinking = &body["content"][0];
    assert_eq!(thinking["type"], "thinking", "{body}");
    assert!(
        !thinking["signature"]
            .as_str()
            .expect("signature")
            .is_empty()
    );
    assert_eq!(body["content"][1]["text"], REPLY);
    let thought = thinking["thinking"].as_str().expect("thinking");
    let thought_words = thought.split_whitespace().count() as u64;
    assert_eq!(body["usage"]["output_tokens"], 9 + thought_words);

    request["stream"] = json!(true);
    let events = events(&mock.messages(&request).await.text);
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(joined(&events, "thinking_delta", "thinking"), thought);
    assert_eq!(
        joined(&events, "signature_delta", "signature"),
        thinking["signature"].as_str().expect("signature")
    );
    assert_eq!(joined(&events, "text_delta", "text"), REPLY);
}

#[tokio::test]
async fn last_headers_show_what_reached_the_provider_without_secrets() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut headers = standard_headers();
    headers.push(("anthropic-beta", "claude-code-20250219"));
    headers.push(("authorization", "Bearer secret-bearer"));
    mock.send("/v1/messages?beta=true", &headers, &hello().to_string())
        .await;
    let seen = mock.mock.last_headers().expect("headers");
    assert_eq!(seen[":path"], "/v1/messages?beta=true");
    assert_eq!(seen["anthropic-version"], "2023-06-01");
    assert_eq!(seen["anthropic-beta"], "claude-code-20250219");
    assert_eq!(seen["x-api-key"], key_label("secret-a"));
    assert_eq!(
        seen["authorization"],
        format!("Bearer {}", key_label("secret-bearer"))
    );
    let served = mock
        .client
        .get(format!("{}/mock/last-headers", mock.url))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(served.contains("claude-code-20250219"), "{served}");
    assert!(!served.contains("secret-a") && !served.contains("secret-bearer"));
    assert_eq!(mock.mock.last_request(), Some(hello()));
}

#[tokio::test]
async fn openai_chat_reports_cached_and_reasoning_tokens() {
    let mock = Mock::start(MockOptions::default()).await;
    let bearer = [
        ("authorization", "Bearer k"),
        ("content-type", "application/json"),
    ];
    let (m, b) = (&mock, &bearer);
    let chat =
        |body: Value| async move { m.send("/v1/chat/completions", b, &body.to_string()).await };
    let plain = json!({"model": "m", "messages": [{"role": "user", "content": "one two three"}]});
    let usage = chat(plain.clone()).await.json()["usage"].clone();
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(usage["completion_tokens"], 9);

    let mut reasoning = plain.clone();
    reasoning["reasoning_effort"] = json!("high");
    let usage = chat(reasoning.clone()).await.json()["usage"].clone();
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 8);
    assert_eq!(usage["completion_tokens"], 17);
    reasoning["reasoning_effort"] = json!("extreme");
    assert_eq!(chat(reasoning).await.status, StatusCode::BAD_REQUEST);

    // Under a prompt_cache_key, the earlier turns are cached on the next call.
    let mut keyed = plain;
    keyed["prompt_cache_key"] = json!("conversation-1");
    let usage = chat(keyed.clone()).await.json()["usage"].clone();
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    keyed["messages"] = json!([
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six"},
    ]);
    let usage = chat(keyed).await.json()["usage"].clone();
    assert_eq!(usage["prompt_tokens"], 6);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
}

#[tokio::test]
async fn models_are_listed_in_the_dialect_asked() {
    let mock = Mock::start(MockOptions::default()).await;
    let list = |anthropic: bool| {
        let mut request = mock.client.get(format!("{}/v1/models", mock.url));
        if anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        async move {
            let body = request
                .send()
                .await
                .expect("send")
                .text()
                .await
                .expect("body");
            serde_json::from_str::<Value>(&body).expect("JSON")
        }
    };
    let anthropic = list(true).await;
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(list(false).await["object"], "list");
}

#[tokio::test]
async fn server_tool_blocks_pass_and_unknown_blocks_do_not() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut request = hello();
    request["messages"] = json!([
        {"role": "user", "content": "Search"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {}},
        ]},
        {"role": "user", "content": "Thanks"},
    ]);
    let answer = mock.messages(&request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    request["messages"][1]["content"][0]["type"] = json!("made_up");
    mock.messages(&request)
        .await
        .assert_error(400, "invalid_request_error");
}
