//! The mock's OpenAI dialect: `POST /v1/chat/completions` (plain and SSE, with a usage chunk
//! when `stream_options.include_usage` is set, as OpenAI sends it), `POST /v1/embeddings`
//! (honouring `encoding_format: "base64"`: little-endian `f32`s) and `GET /v1/models`.
//!
//! Tool calls: with function `tools` and the last message a user message whose text has the
//! word "weather" (`tool_choice` not `none`), or `tool_choice` `required`, the answer is one
//! call (`call_mock…` id) of the first tool with arguments `{}`, `finish_reason: tool_calls`,
//! streamed as one tool-call chunk when streaming.
//!
//! Usage classes, deterministic so gateways' accounting can be tested:
//! - `prompt_tokens_details.cached_tokens`: only for requests carrying `prompt_cache_key`. The
//!   mock remembers every prefix of `messages` it answered under that key; a later request
//!   under the same key reports the words of its longest remembered prefix as cached (they
//!   stay counted in `prompt_tokens`, as OpenAI counts them). Without the key: 0.
//! - `completion_tokens_details.reasoning_tokens`: with `reasoning_effort` set, `minimal` 1,
//!   `low` 2, `medium` 4, `high` 8 (`none`: 0), added to `completion_tokens` as OpenAI
//!   counts them; any other value is a 400, as OpenAI answers. Without it: 0.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{MockOptions, MockUpstream, Refusal, event_stream, long_reply, reply, words};

pub(super) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": null}})),
    )
        .into_response()
}

pub(super) fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::RateLimited { retry_after } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "mock upstream rate limit",
            );
            if let Ok(v) = retry_after.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Refusal::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "mock upstream overloaded",
        ),
        Refusal::Failed => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "mock upstream failure",
        ),
    }
}

/// `GET /v1/models`: OpenAI's list, or Anthropic's when asked with `anthropic-version`.
pub(super) async fn models(headers: HeaderMap) -> Response {
    if headers.contains_key("anthropic-version") {
        return super::anthropic::models();
    }
    axum::Json(json!({"object": "list", "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "mock"}
    ]}))
    .into_response()
}

/// The bearer token's label, if a token was sent.
fn key_of(headers: &HeaderMap) -> Option<String> {
    super::bearer_label(headers)
}

pub(super) async fn admit(
    mock: &MockUpstream,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), Response> {
    mock.record_headers(uri, headers);
    let key = key_of(headers).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing bearer token",
        )
    })?;
    mock.count(&key, |s| s.requests += 1);
    if super::header_str(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(super::is_revoked)
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("bad JSON: {e}"),
        )
    })?;
    mock.record_body(&request, body);
    super::sleep_latency(&mock.options).await;
    if let Some(refusal) = mock.refusal(&key) {
        return Err(refused(refusal));
    }
    Ok((key, request))
}

/// Reasoning tokens for `reasoning_effort` (see the module doc), or the 400 message.
fn reasoning_tokens(request: &Value) -> Result<u64, String> {
    match request.get("reasoning_effort") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(e)) => match e.as_str() {
            "none" => Ok(0),
            "minimal" => Ok(1),
            "low" => Ok(2),
            "medium" => Ok(4),
            "high" => Ok(8),
            _ => Err(format!(
                "Invalid value: '{e}'. Supported values are: 'none', 'minimal', 'low', 'medium', and 'high'."
            )),
        },
        Some(other) => Err(format!("Invalid type for 'reasoning_effort': {other}")),
    }
}

/// Cached prompt tokens under `prompt_cache_key` (see the module doc).
fn cached_tokens(mock: &MockUpstream, request: &Value) -> u64 {
    let (Some(cache_key), Some(Value::Array(messages))) = (
        request.get("prompt_cache_key").and_then(Value::as_str),
        request.get("messages"),
    ) else {
        return 0;
    };
    let mut running = String::new();
    let prefixes: Vec<String> = messages
        .iter()
        .map(|m| {
            running.push_str(&m.to_string());
            super::sha256_hex(format!("openai\0{cache_key}\0{running}").as_bytes())
        })
        .collect();
    mock.cache_lookup(&prefixes)
        .map_or(0, |hit| messages[..=hit].iter().map(words).sum())
}

pub(super) async fn chat(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&mock, &uri, &headers, &body).await {
        Ok((key, request)) => answer_chat(&mock, &key, &request),
        Err(response) => response,
    }
}

/// A chat completion for an admitted request (also Azure's, [`super::azure`]).
pub(super) fn answer_chat(mock: &MockUpstream, key: &str, request: &Value) -> Response {
    let reasoning = match reasoning_tokens(request) {
        Ok(n) => n,
        Err(message) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
        }
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_owned();
    let prompt = request.get("messages").map_or(0, words);
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64))
        .unwrap_or(super::REPLY.len() as u64);
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let reply = match mock.options.stream_chunks.filter(|_| streaming) {
        Some(chunks) => long_reply(chunks),
        None => reply(max),
    };
    let completion = reply.len() as u64 + reasoning;
    let cached = cached_tokens(mock, request);
    mock.count(key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
        s.completion_tokens += completion;
        s.cache_read_tokens += cached;
    });
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning}});
    let call = tool_call(mock, request);
    if streaming {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return stream(
            &mock.options,
            model,
            reply,
            call,
            include_usage.then_some(usage),
        );
    }
    if let Some(call) = call {
        return axum::Json(json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]}, "finish_reason": "tool_calls", "logprobs": null}],
            "usage": usage,
        }))
        .into_response();
    }
    axum::Json(json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.join(" ")}, "finish_reason": "stop", "logprobs": null}],
        "usage": usage,
    }))
    .into_response()
}

/// The tool call the mock answers with, if the request asks for one (see the module doc).
fn tool_call(mock: &MockUpstream, request: &Value) -> Option<Value> {
    let first = request
        .get("tools")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|t| t.pointer("/function/name").and_then(Value::as_str))?;
    let wanted = match request.get("tool_choice").and_then(Value::as_str) {
        Some("none") => false,
        Some("required") => true,
        _ => last_user_asks_for_weather(request),
    };
    wanted.then(|| {
        json!({"id": format!("call_mock{:016}", mock.next_id()), "type": "function",
            "function": {"name": first, "arguments": "{}"}})
    })
}

fn last_user_asks_for_weather(request: &Value) -> bool {
    let messages = request.get("messages").and_then(Value::as_array);
    let last = messages.and_then(|m| m.last());
    let text = match last.filter(|m| m.get("role").and_then(Value::as_str) == Some("user")) {
        Some(m) => m.get("content").map(|c| c.to_string()).unwrap_or_default(),
        None => return false,
    };
    text.to_ascii_lowercase().contains("weather")
}

fn stream(
    options: &MockOptions,
    model: String,
    reply: Vec<&'static str>,
    call: Option<Value>,
    usage: Option<Value>,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if usage.is_some() {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(mut call) = call {
        call["index"] = json!(0);
        events.push(chunk(json!({"tool_calls": [call]}), Value::Null));
        events.push(chunk(json!({}), json!("tool_calls")));
        return finish_stream(options, &model, events, usage);
    }
    let last = reply.len().saturating_sub(1);
    for (i, word) in reply.iter().enumerate() {
        let text = if i == last {
            (*word).to_owned()
        } else {
            format!("{word} ")
        };
        events.push(chunk(json!({"content": text}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    finish_stream(options, &model, events, usage)
}

/// Ends a stream: the usage chunk when asked for, then `[DONE]`.
fn finish_stream(
    options: &MockOptions,
    model: &str,
    mut events: Vec<String>,
    usage: Option<Value>,
) -> Response {
    if let Some(usage) = usage {
        events.push(format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage})));
    }
    events.push("data: [DONE]\n\n".to_owned());
    event_stream(options, events).unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot build stream",
        )
    })
}

pub(super) async fn embeddings(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&mock, &uri, &headers, &body).await {
        Ok((key, request)) => answer_embeddings(&mock, &key, &request),
        Err(response) => response,
    }
}

/// Embeddings for an admitted request (also Azure's).
pub(super) fn answer_embeddings(mock: &MockUpstream, key: &str, request: &Value) -> Response {
    let inputs: Vec<String> = match request.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`input` is required",
            );
        }
    };
    let prompt: u64 = inputs
        .iter()
        .map(|s| s.split_whitespace().count() as u64)
        .sum();
    mock.count(key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
    });
    let base64 = match request.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("`encoding_format` must be \"float\" or \"base64\", not {other}"),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let embedding = vector(text);
            let embedding = if base64 {
                Value::String(encode_f32s(&embedding))
            } else {
                json!(embedding)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }))
    .into_response()
}

/// An embedding as OpenAI's `base64` format carries it: the vector's `f32`s, little-endian.
fn encode_f32s(vector: &[f64]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A deterministic 8-dimensional unit vector for a text.
pub(super) fn vector(text: &str) -> Vec<f64> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let raw: Vec<f64> = (0..8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.into_iter().map(|v| v / norm).collect()
}
