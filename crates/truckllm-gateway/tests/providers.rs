//! The provider suite: one list of checks, run against every provider type through the
//! project's mock (which checks requests as each provider does), over real HTTP, from OpenAI
//! Chat and Anthropic Messages clients: chat, stream, a tool call round trip, JSON output,
//! embeddings where the provider offers them, 429 and 5xx moving to the next key, refused
//! credentials surfacing as the gateway's upstream error (never the client's 401), and usage
//! in the store equal to the provider's own figures.
//!
//! A provider joins the suite with one [`Case`] line in [`CASES`] (and one `suite!` line).

mod common;

use common::{Backend, Mock, TestGateway};
use serde_json::{Value, json};
use truckllm_gateway::mock::{KeyFault, MockOptions};
use truckllm_store::Metric;

/// One provider type under test.
struct Case {
    name: &'static str,
    /// The provider's YAML lines after `id:` (type, base_url at the mock, options).
    provider: fn(mock_url: &str) -> String,
    /// One key's YAML (a flow mapping) for `id` holding `secret`.
    key: fn(id: &str, secret: &str) -> String,
    /// The model clients ask for (routed to this provider).
    model: &'static str,
    /// The embeddings model, when the provider offers embeddings.
    embeddings: Option<&'static str>,
    /// Whether the body the provider got asks for JSON output with `schema`.
    json_asked: fn(sent: &Value, schema: &Value) -> bool,
}

/// The mock's whole reply (50 tokens are more than it says).
const REPLY: &str = "This is a mock reply from the TruckLLM upstream.";

fn api_key(id: &str, secret: &str) -> String {
    format!("{{id: \"{id}\", secret: \"{secret}\"}}")
}

fn openai_json(sent: &Value, schema: &Value) -> bool {
    sent.pointer("/response_format/json_schema/schema") == Some(schema)
}

const OPENAI: Case = Case {
    name: "openai",
    provider: |url| format!("type: openai\n    base_url: \"{url}/v1\"\n"),
    key: api_key,
    model: "gpt-4o-mini",
    embeddings: Some("text-embedding-3-small"),
    json_asked: openai_json,
};

const ANTHROPIC: Case = Case {
    name: "anthropic",
    provider: |url| format!("type: anthropic\n    base_url: \"{url}/v1\"\n"),
    key: api_key,
    model: "claude-sonnet-4-5",
    embeddings: None,
    json_asked: |sent, schema| sent.pointer("/output_config/format/schema") == Some(schema),
};

const AZURE: Case = Case {
    name: "azure",
    provider: |url| {
        format!(
            "type: azure\n    base_url: \"{url}\"\n    deployments: {{gpt-4o: prod-4o, text-embedding-3-small: emb}}\n"
        )
    },
    key: api_key,
    model: "gpt-4o",
    embeddings: Some("text-embedding-3-small"),
    json_asked: openai_json,
};

const AZURE_V1: Case = Case {
    name: "azure_v1",
    provider: |url| format!("type: azure\n    base_url: \"{url}\"\n    api_version: v1\n"),
    key: api_key,
    model: "gpt-4o",
    embeddings: Some("text-embedding-3-small"),
    json_asked: openai_json,
};

const GEMINI: Case = Case {
    name: "gemini",
    provider: |url| format!("type: gemini\n    base_url: \"{url}/v1beta\"\n"),
    key: api_key,
    model: "gemini-2.5-flash",
    embeddings: Some("text-embedding-004"),
    json_asked: |sent, schema| {
        sent.pointer("/generationConfig/responseMimeType") == Some(&json!("application/json"))
            && sent.pointer("/generationConfig/responseJsonSchema") == Some(schema)
    },
};

const BEDROCK: Case = Case {
    name: "bedrock",
    provider: |url| format!("type: bedrock\n    region: us-east-1\n    base_url: \"{url}\"\n"),
    // The suite's key names are the access key ids; the mock knows their secrets.
    key: |id, access| {
        format!(
            "{{id: \"{id}\", access_key_id: \"{access}\", secret_access_key: \"{}\"}}",
            truckllm_gateway::mock::bedrock::test_secret(access)
        )
    },
    model: "anthropic.claude-3-5-haiku-20241022-v1:0",
    embeddings: None,
    json_asked: |sent, schema| {
        let asked = sent
            .pointer("/outputConfig/textFormat/structure/jsonSchema/schema")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        asked.as_ref() == Some(schema)
    },
};

/// A gateway with the provider `p` (keys `k1`, `k2` holding `secrets`) in front of a mock.
async fn start(case: &Case, secrets: [&str; 2]) -> (Mock, TestGateway) {
    let mock = Mock::start(MockOptions::default()).await;
    let keys: String = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| format!("      - {}\n", (case.key)(&format!("k{}", i + 1), s)))
        .collect();
    let yaml = format!(
        "llm_providers:\n  - id: \"p\"\n    {}    keys:\n{keys}policy:\n  algorithm: round_robin\n",
        (case.provider)(&mock.url)
    );
    let gw = TestGateway::start(&yaml, Backend::Memory).await;
    (mock, gw)
}

fn model(case: &Case) -> String {
    format!("p:{}", case.model)
}

async fn post(gw: &TestGateway, path: &str, body: &Value) -> (u16, String, String) {
    let response = gw
        .http
        .post(format!("{}{path}", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let key = response
        .headers()
        .get("x-truckllm-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, key, response.text().await.expect("body"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The JSON payloads of an SSE body (`[DONE]` left out).
fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(json_of)
        })
        .collect()
}

/// The store's usage of key `k1` equals what the provider reported to the mock.
async fn usage_matches_upstream(mock: &Mock, gw: &TestGateway, secret: &str) {
    let upstream = mock.stats(secret);
    assert!(upstream.ok > 0, "the provider answered");
    let used = |metric| gw.usage("p", "k1", metric);
    assert_eq!(
        used(Metric::PromptTokens).await,
        upstream.prompt_tokens as f64
    );
    assert_eq!(
        used(Metric::CompletionTokens).await,
        upstream.completion_tokens as f64
    );
    assert_eq!(
        used(Metric::CacheReadTokens).await,
        upstream.cache_read_tokens as f64
    );
}

async fn chat_from_openai_clients(case: &Case) {
    let (mock, gw) = start(case, ["good-1", "good-2"]).await;
    let body = json!({"model": model(case), "max_tokens": 50,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "three words here"}]});
    let mut total = (0, 0);
    // Round robin: k1, k2, k1; the third repeats a prompt (a cache hit where the provider
    // reports one).
    for _ in 0..3 {
        let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{}: {text}", case.name);
        let answer = json_of(&text);
        assert_eq!(answer["object"], "chat.completion", "{text}");
        assert_eq!(
            answer["choices"][0]["message"]["content"], REPLY,
            "{}: {text}",
            case.name
        );
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        total.0 += answer["usage"]["prompt_tokens"].as_u64().expect("prompt");
        total.1 += answer["usage"]["completion_tokens"]
            .as_u64()
            .expect("completion");
    }
    let upstream = [mock.stats("good-1"), mock.stats("good-2")];
    let reported: u64 = upstream.iter().map(|s| s.prompt_tokens).sum();
    assert_eq!(
        total.0, reported,
        "{}: the client sees the provider's usage",
        case.name
    );
    assert_eq!(
        total.1,
        upstream.iter().map(|s| s.completion_tokens).sum::<u64>()
    );
    usage_matches_upstream(&mock, &gw, "good-1").await;
    gw.stop().await;
}

async fn responses_clients(case: &Case) {
    let (_mock, gw) = start(case, ["good-1", "good-2"]).await;
    let body = json!({"model": model(case), "max_output_tokens": 50,
        "instructions": "be brief", "input": "three words here"});
    let (status, _, text) = post(&gw, "/v1/responses", &body).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let answer = json_of(&text);
    assert_eq!(answer["object"], "response", "{text}");
    assert_eq!(answer["status"], "completed", "{text}");
    assert_eq!(
        answer["output"][0]["content"][0]["text"], REPLY,
        "{}: {text}",
        case.name
    );
    let streamed = json!({"model": model(case), "max_output_tokens": 50, "stream": true,
        "input": "three words here", "previous_response_id": answer["id"]});
    let (status, _, text) = post(&gw, "/v1/responses", &streamed).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let events = sse_data(&text);
    let last = events.last().expect("events");
    assert_eq!(last["type"], "response.completed", "{}: {text}", case.name);
    gw.stop().await;
}

async fn chat_from_anthropic_clients(case: &Case) {
    let (mock, gw) = start(case, ["good-1", "good-2"]).await;
    let body = json!({"model": model(case), "max_tokens": 50, "system": "be brief",
        "messages": [{"role": "user", "content": "three words here"}]});
    let (status, _, text) = post(&gw, "/v1/messages", &body).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let answer = json_of(&text);
    assert_eq!(answer["type"], "message", "{text}");
    assert_eq!(answer["content"][0]["text"], REPLY, "{text}");
    assert_eq!(answer["stop_reason"], "end_turn");
    let upstream: u64 = ["good-1", "good-2"]
        .iter()
        .map(|s| mock.stats(s).completion_tokens)
        .sum();
    assert_eq!(answer["usage"]["output_tokens"].as_u64(), Some(upstream));
    gw.stop().await;
}

async fn streams_to_both_clients(case: &Case) {
    let (mock, gw) = start(case, ["good-1", "good-2"]).await;
    let body = json!({"model": model(case), "max_tokens": 50, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "three words here"}]});
    let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "{}: {text}",
        case.name
    );
    let chunks = sse_data(&text);
    let content: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, REPLY, "{}: {text}", case.name);
    let usage = chunks
        .iter()
        .rev()
        .find_map(|c| c.get("usage").filter(|u| u.is_object()))
        .expect("a usage chunk");
    let upstream: u64 = ["good-1", "good-2"]
        .iter()
        .map(|s| mock.stats(s).completion_tokens)
        .sum();
    assert_eq!(
        usage["completion_tokens"].as_u64(),
        Some(upstream),
        "{text}"
    );

    let messages = json!({"model": model(case), "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "three words here"}]});
    let (status, _, text) = post(&gw, "/v1/messages", &messages).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let events = sse_data(&text);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{text}");
    assert_eq!(kinds.last(), Some(&"message_stop"), "{text}");
    let text_out: String = events
        .iter()
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text_out, REPLY, "{}: {text}", case.name);
    gw.stop().await;
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

async fn tool_calls_round_trip(case: &Case) {
    let (_mock, gw) = start(case, ["good-1", "good-2"]).await;
    let ask = json!({"role": "user", "content": "what is the weather in Paris"});
    let first = json!({"model": model(case), "max_tokens": 50, "tools": weather_tools(), "messages": [ask]});
    let (status, _, text) = post(&gw, "/v1/chat/completions", &first).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let answer = json_of(&text);
    let message = &answer["choices"][0]["message"];
    assert_eq!(
        answer["choices"][0]["finish_reason"], "tool_calls",
        "{text}"
    );
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{text}");
    let follow_up = json!({"model": model(case), "max_tokens": 50, "tools": weather_tools(), "messages": [
        ask, message,
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"celsius\": 21}"}
    ]});
    let (status, _, text) = post(&gw, "/v1/chat/completions", &follow_up).await;
    assert_eq!(
        status, 200,
        "{}: the tool result goes back: {text}",
        case.name
    );
    assert_eq!(
        json_of(&text)["choices"][0]["finish_reason"],
        "stop",
        "{text}"
    );

    // The same round trip from an Anthropic Messages client.
    let tools = json!([{"name": "get_weather", "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let ask = json!({"role": "user", "content": "what is the weather in Paris"});
    let first = json!({"model": model(case), "max_tokens": 50, "tools": tools, "messages": [ask]});
    let (status, _, text) = post(&gw, "/v1/messages", &first).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let answer = json_of(&text);
    assert_eq!(answer["stop_reason"], "tool_use", "{text}");
    let tool_use = answer["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_use"))
        .cloned()
        .expect("a tool_use block");
    let follow_up = json!({"model": model(case), "max_tokens": 50, "tools": tools, "messages": [
        ask,
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "21 C"}]}
    ]});
    let (status, _, text) = post(&gw, "/v1/messages", &follow_up).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    assert_eq!(json_of(&text)["stop_reason"], "end_turn", "{text}");
    gw.stop().await;
}

async fn json_output_is_asked_for(case: &Case) {
    let (mock, gw) = start(case, ["good-1", "good-2"]).await;
    let schema = json!({"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"]});
    let body = json!({"model": model(case), "max_tokens": 50,
        "messages": [{"role": "user", "content": "answer in JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}});
    let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let sent = mock
        .mock
        .last_request()
        .expect("a request reached the provider");
    assert!((case.json_asked)(&sent, &schema), "{}: {sent}", case.name);
    gw.stop().await;
}

async fn embeddings_where_offered(case: &Case) {
    let Some(embeddings) = case.embeddings else {
        return;
    };
    let (_mock, gw) = start(case, ["good-1", "good-2"]).await;
    let body = json!({"model": format!("p:{embeddings}"), "input": ["one two", "three"]});
    let (status, _, text) = post(&gw, "/v1/embeddings", &body).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    let answer = json_of(&text);
    assert_eq!(answer["object"], "list", "{text}");
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2), "{text}");
    assert!(answer["data"][1]["embedding"][0].is_number(), "{text}");
    let packed =
        json!({"model": format!("p:{embeddings}"), "input": "one", "encoding_format": "base64"});
    let (status, _, text) = post(&gw, "/v1/embeddings", &packed).await;
    assert_eq!(status, 200, "{}: {text}", case.name);
    assert!(json_of(&text)["data"][0]["embedding"].is_string(), "{text}");
    gw.stop().await;
}

/// Key `k1` always meets `fault`; every request still succeeds, on `k2`, and `k1` was tried.
async fn faults_move_to_the_next_key(case: &Case, fault: KeyFault) {
    let (mock, gw) = start(case, ["faulty-1", "good-2"]).await;
    mock.mock.fault_key("faulty-1", fault);
    let body = json!({"model": model(case), "max_tokens": 50,
        "messages": [{"role": "user", "content": "three words here"}]});
    for _ in 0..2 {
        let (status, key, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(
            (status, key.as_str()),
            (200, "p/k2"),
            "{}: {text}",
            case.name
        );
    }
    let tried = mock.stats("faulty-1");
    assert!(
        tried.requests >= 1,
        "{}: round robin tried k1 first once",
        case.name
    );
    match fault {
        KeyFault::RateLimited => assert!(tried.rate_limited >= 1),
        KeyFault::Failing => assert!(tried.errors >= 1),
    }
    gw.stop().await;
}

async fn refused_credentials_are_the_gateways_upstream_error(case: &Case) {
    let (mock, gw) = start(case, ["revoked-1", "good-2"]).await;
    let body = json!({"model": model(case), "max_tokens": 50,
        "messages": [{"role": "user", "content": "three words here"}]});
    for _ in 0..2 {
        let (status, key, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(
            (status, key.as_str()),
            (200, "p/k2"),
            "{}: {text}",
            case.name
        );
    }
    assert!(mock.stats("revoked-1").requests >= 1, "{}", case.name);
    gw.stop().await;

    let (_mock, gw) = start(case, ["revoked-1", "revoked-2"]).await;
    let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 502, "{}: never the client's 401: {text}", case.name);
    assert!(text.contains("refused the key"), "{}: {text}", case.name);
    let (status, _, text) = post(&gw, "/v1/messages", &body).await;
    assert_eq!(status, 502, "{}: {text}", case.name);
    assert_eq!(
        json_of(&text)["type"],
        "error",
        "in the client's dialect: {text}"
    );
    gw.stop().await;
}

/// One test per check and provider.
macro_rules! suite {
    ($module:ident, $case:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn chat_from_openai_clients() {
                super::chat_from_openai_clients(&$case).await;
            }
            #[tokio::test]
            async fn chat_from_anthropic_clients() {
                super::chat_from_anthropic_clients(&$case).await;
            }
            #[tokio::test]
            async fn responses_clients() {
                super::responses_clients(&$case).await;
            }
            #[tokio::test]
            async fn streams_to_both_clients() {
                super::streams_to_both_clients(&$case).await;
            }
            #[tokio::test]
            async fn tool_calls_round_trip() {
                super::tool_calls_round_trip(&$case).await;
            }
            #[tokio::test]
            async fn json_output_is_asked_for() {
                super::json_output_is_asked_for(&$case).await;
            }
            #[tokio::test]
            async fn embeddings_where_offered() {
                super::embeddings_where_offered(&$case).await;
            }
            #[tokio::test]
            async fn rate_limits_move_to_the_next_key() {
                super::faults_move_to_the_next_key(&$case, KeyFault::RateLimited).await;
            }
            #[tokio::test]
            async fn server_errors_move_to_the_next_key() {
                super::faults_move_to_the_next_key(&$case, KeyFault::Failing).await;
            }
            #[tokio::test]
            async fn refused_credentials_are_the_gateways_upstream_error() {
                super::refused_credentials_are_the_gateways_upstream_error(&$case).await;
            }
        }
    };
}

suite!(openai, OPENAI);
suite!(anthropic, ANTHROPIC);
suite!(azure, AZURE);
suite!(azure_v1, AZURE_V1);
suite!(gemini, GEMINI);
suite!(bedrock, BEDROCK);

/// Gemini's implicit cache hits (`cachedContentTokenCount`) and thinking tokens reach the
/// client's usage and the store by class.
#[tokio::test]
async fn gemini_cache_reads_and_thoughts_are_recorded_by_class() {
    let (mock, gw) = start(&GEMINI, ["good-1", "good-2"]).await;
    let body = json!({"model": model(&GEMINI), "max_tokens": 50, "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "three words here"}]});
    let (status, _, first) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{first}");
    let (status, _, second) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{second}");
    let usage = &json_of(&second)["usage"];
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 3,
        "{second}"
    );
    assert_eq!(
        usage["completion_tokens_details"]["reasoning_tokens"], 4,
        "{second}"
    );
    assert_eq!(
        usage["completion_tokens"],
        9 + 4,
        "thoughts count as completion: {second}"
    );
    let read = gw.usage("p", "k1", Metric::CacheReadTokens).await
        + gw.usage("p", "k2", Metric::CacheReadTokens).await;
    assert_eq!(read, 3.0);
    assert_eq!(
        read,
        (mock.stats("good-1").cache_read_tokens + mock.stats("good-2").cache_read_tokens) as f64
    );
    gw.stop().await;
}

/// Azure's content filter annotations reach an OpenAI client as Azure sent them.
#[tokio::test]
async fn azure_content_filter_results_pass_through() {
    let (_mock, gw) = start(&AZURE, ["good-1", "good-2"]).await;
    let body = json!({"model": model(&AZURE), "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let answer = json_of(&text);
    assert_eq!(
        answer["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"], false,
        "{text}"
    );
    assert!(
        answer["choices"][0]["content_filter_results"].is_object(),
        "{text}"
    );
    gw.stop().await;
}

/// The mock refuses what Google and Azure refuse, in their error shapes, so the suite's
/// green means the gateway sent what those providers accept.
#[tokio::test]
async fn the_mock_refuses_what_gemini_and_azure_refuse() {
    let mock = Mock::start(MockOptions::default()).await;
    let http = reqwest::Client::new();
    let gemini = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        mock.url
    );
    let call = |url: String, headers: Vec<(&'static str, &'static str)>, body: Value| {
        let mut request = http.post(url).json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.expect("mock");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let hello = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let key = vec![("x-goog-api-key", "AIza-good")];
    let (status, body) = call(gemini.clone(), key.clone(), hello.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(gemini.clone(), vec![], hello.clone()).await;
    assert_eq!(
        (status, &body["error"]["status"]),
        (403, &json!("PERMISSION_DENIED"))
    );
    for bad in [
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]}),
        json!({"contents": [{"role": "user", "parts": []}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {"mimeType": "x/y", "data": ""}}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "messages": []}),
        json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}]}),
    ] {
        let (status, body) = call(gemini.clone(), key.clone(), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{bad}: {body}");
        assert_eq!(body["error"]["code"], 400);
    }
    let azure = |query: &str| {
        format!(
            "{}/openai/deployments/prod/chat/completions{query}",
            mock.url
        )
    };
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    let api_key = vec![("api-key", "az-good")];
    let (status, body) = call(
        azure("?api-version=2024-10-21"),
        api_key.clone(),
        chat.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["prompt_filter_results"].is_array(), "{body}");
    for query in ["", "?api-version=1999-01-01"] {
        let (status, body) = call(azure(query), api_key.clone(), chat.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("404")),
            "{query}"
        );
    }
    let bearer = vec![("authorization", "Bearer az-good")];
    let (status, body) = call(azure("?api-version=2024-10-21"), bearer, chat.clone()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("401")),
        "{body}"
    );
    let v1 = format!("{}/openai/v1/chat/completions", mock.url);
    let (status, _) = call(v1.clone(), api_key.clone(), chat.clone()).await;
    assert_eq!(status, 400, "the v1 routes need the model in the body");
    let mut named = chat;
    named["model"] = json!("prod");
    let (status, body) = call(v1, api_key, named).await;
    assert_eq!(status, 200, "{body}");
}
