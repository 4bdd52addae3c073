//! The mock's Anthropic dialect: `POST /v1/messages` (plain and SSE) and
//! `POST /v1/messages/count_tokens`, checking requests as Anthropic's API reference says.
//!
//! Checks, in order, each answered in Anthropic's error shape
//! `{"type":"error","error":{"type":…,"message":…},"request_id":…}` with a `request-id` header:
//! the key (`x-api-key`, or `Authorization: Bearer` as gateways may send it; 401
//! `authentication_error` when missing), `anthropic-version` (400 when missing or not a
//! `YYYY-MM-DD` date), `content-type: application/json`, the JSON body, then its
//! fields: unknown top-level fields are refused as Anthropic does ("Extra inputs are not
//! permitted"; `count_tokens` takes no `max_tokens`), `model` a string, `max_tokens` an integer
//! of at least 1, `messages` a non-empty list of `user`/`assistant` turns (`system` turns too
//! when `anthropic-beta` lists a `mid-conversation-system-…` beta) whose content is a
//! non-empty string or a list of known blocks (unknown `type` tags are refused), `system` a string or a list of text blocks,
//! `temperature` within 0 to 1, `tools` with `name` and `input_schema`, `tool_choice`,
//! `thinking` (`budget_tokens` at least 1024 and below `max_tokens`), at most 4
//! `cache_control` breakpoints. Models named `missing-…` answer 404 `not_found_error`. Knobs
//! answer 429 `rate_limit_error` with `retry-after`, 529 `overloaded_error`, 500 `api_error`.
//!
//! Deterministic answers:
//! - Input tokens are the words of the tools' descriptions, the system text and the
//!   messages' text (text blocks and tool results); `count_tokens` reports the same number.
//! - The reply is the fixed sentence cut to `max_tokens` words (`stop_reason: max_tokens` when
//!   cut, `end_turn` otherwise), or cut before the first of `stop_sequences` it contains
//!   (`stop_reason: stop_sequence`).
//! - Tool use: with custom `tools`, `tool_choice` `any` or `tool` (that tool), or `auto` (the
//!   default) when the last user turn's text contains the word "weather", the answer is one
//!   `tool_use` block (`toolu_…` id, the first custom tool's name) whose `input` fills the
//!   schema's required properties (an enum's first value, strings `"mock <name>"`, numbers 1,
//!   booleans true); `stop_reason: tool_use`. A turn of only tool results answers in text.
//! - Prompt cache: the input in the order tools, system, messages is cut at each block
//!   carrying `cache_control`. The longest such prefix (same model, any key) answered before is
//!   reported as `cache_read_input_tokens`; the words from there to the last breakpoint as
//!   `cache_creation_input_tokens`; `input_tokens` is the rest, as Anthropic reports it.
//!   No minimum length applies.
//! - Thinking: `thinking: {type: enabled | adaptive}` adds a `thinking` block with a
//!   `signature` before the answer; its words count as output tokens.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{MockUpstream, REPLY, Refusal, event_stream, header_str, key_label, reply, words};

/// Top-level fields `POST /v1/messages` accepts.
const MESSAGE_FIELDS: [&str; 20] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "inference_geo",
];

/// Top-level fields `POST /v1/messages/count_tokens` accepts.
const COUNT_FIELDS: [&str; 10] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
];

/// Content block types a message may carry, besides server tools' `…_tool_use` and
/// `…_tool_result` blocks.
const BLOCK_TYPES: [&str; 13] = [
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "container_upload",
    "mcp_tool_use",
];

/// A check of a block field's JSON kind.
type IsKind = fn(&Value) -> bool;

/// What the mock "thinks" when thinking is on.
const THINKING: &str = "The user wrote to the mock; it answers with its fixed sentence.";

/// A refusal before any answer, rendered in Anthropic's error shape.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn from_refusal(refusal: Refusal) -> Self {
        match refusal {
            Refusal::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "mock upstream rate limit",
                )
            },
            Refusal::Overloaded => Self::new(overloaded_status(), "overloaded_error", "Overloaded"),
            Refusal::Failed => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "mock upstream failure",
            ),
        }
    }

    fn render(self, request_id: &str) -> Response {
        let mut r = error(self.status, self.kind, &self.message, Some(request_id));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// 529, Anthropic's "overloaded" status.
fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// An error in Anthropic's shape, with its `request-id` header when there is one.
pub(super) fn error(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response {
    let mut body = json!({"type": "error", "error": {"type": kind, "message": message}});
    if let Some(id) = request_id {
        body["request_id"] = json!(id);
    }
    let mut r = (status, axum::Json(body)).into_response();
    add_request_id(&mut r, request_id);
    r
}

fn add_request_id(r: &mut Response, request_id: Option<&str>) {
    if let Some(v) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        r.headers_mut().insert("request-id", v);
    }
}

/// `GET /v1/models` as Anthropic lists models (asked with `anthropic-version`).
pub(super) fn models() -> Response {
    let model = |id: &str, name: &str| json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"});
    axum::Json(json!({
        "data": [
            model("claude-sonnet-4-5", "Claude Sonnet 4.5"),
            model("claude-haiku-4-5", "Claude Haiku 4.5"),
        ],
        "has_more": false,
        "first_id": "claude-sonnet-4-5",
        "last_id": "claude-haiku-4-5",
    }))
    .into_response()
}

/// `POST /v1/messages`.
pub(super) async fn messages(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = format!("req_mock{:016}", mock.next_id());
    let mut r = match create(&mock, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(failure) => return failure.render(&request_id),
    };
    add_request_id(&mut r, Some(&request_id));
    r
}

/// `POST /v1/messages/count_tokens`.
pub(super) async fn count_tokens(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = format!("req_mock{:016}", mock.next_id());
    let answer = async {
        let (key, request) = admit(&mock, &uri, &headers, &body).await?;
        let parsed = parse(&request, &headers, Mode::CountTokens)?;
        refuse(&mock, &key, &parsed).await?;
        mock.count(&key, |s| s.ok += 1);
        Ok::<_, Failure>(axum::Json(json!({"input_tokens": parsed.input})).into_response())
    };
    match answer.await {
        Ok(mut r) => {
            add_request_id(&mut r, Some(&request_id));
            r
        }
        Err(failure) => failure.render(&request_id),
    }
}

/// Whether an `anthropic-version` value is a version: a date `YYYY-MM-DD` from 2023 on (SDKs
/// send newer dates than `2023-06-01`; the mock cannot know which dates Anthropic has
/// published, so it checks the form).
fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let numeric = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_digit());
    matches!(parts[..], [y, m, d] if numeric(y, 4) && numeric(m, 2) && numeric(d, 2) && y >= "2023")
}

/// The key's label: `x-api-key`, else a bearer token.
fn key_of(headers: &HeaderMap) -> Option<String> {
    header_str(headers, "x-api-key")
        .map(key_label)
        .or_else(|| super::bearer_label(headers))
}

/// Headers and body checks shared by both routes; the key's label and the body.
async fn admit(
    mock: &MockUpstream,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), Failure> {
    mock.record_headers(uri, headers);
    let key = key_of(headers).ok_or_else(|| {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        )
    })?;
    mock.count(&key, |s| s.requests += 1);
    if header_str(headers, "x-api-key").is_some_and(super::is_revoked) {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    match header_str(headers, "anthropic-version") {
        None => return Err(Failure::invalid("anthropic-version: header is required")),
        Some(v) if !is_version(v) => {
            return Err(Failure::invalid(format!(
                "anthropic-version: {v:?} is not a version (a date such as 2023-06-01)"
            )));
        }
        Some(_) => {}
    }
    let json_type = header_str(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(Failure::invalid("content-type: must be application/json"));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::invalid(format!("invalid JSON in request body: {e}")))?;
    mock.record_body(&request, body);
    Ok((key, request))
}

/// The model check, the latency and the knobs, after a body passed its checks.
async fn refuse(mock: &MockUpstream, key: &str, parsed: &Parsed<'_>) -> Result<(), Failure> {
    if parsed.model.starts_with("missing-") {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("model: {}", parsed.model),
        ));
    }
    super::sleep_latency(&mock.options).await;
    match mock.refusal(key) {
        Some(refusal) => Err(Failure::from_refusal(refusal)),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Messages,
    CountTokens,
}

/// A checked request: what the answer is built from.
#[derive(Debug)]
struct Parsed<'a> {
    model: &'a str,
    max_tokens: u64,
    stream: bool,
    /// Words of all input.
    input: u64,
    /// Per `cache_control` breakpoint, in order: the prefix's fingerprint and its words.
    breakpoints: Vec<(String, u64)>,
    /// The tool call to answer with: the tool's name and its input.
    tool: Option<(&'a str, Value)>,
    thinking: bool,
    stop_sequences: Vec<&'a str>,
}

fn parse<'a>(request: &'a Value, headers: &HeaderMap, mode: Mode) -> Result<Parsed<'a>, Failure> {
    let body = request
        .as_object()
        .ok_or_else(|| Failure::invalid("body: Input should be an object"))?;
    let allowed: &[&str] = match mode {
        Mode::Messages => &MESSAGE_FIELDS,
        Mode::CountTokens => &COUNT_FIELDS,
    };
    if let Some(extra) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Failure::invalid(format!(
            "{extra}: Extra inputs are not permitted"
        )));
    }
    let model = required(body, "model")?
        .as_str()
        .ok_or_else(|| Failure::invalid("model: Input should be a valid string"))?;
    let max_tokens = match mode {
        Mode::Messages => max_tokens(required(body, "max_tokens")?)?,
        Mode::CountTokens => 0,
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Failure::invalid("stream: Input should be a valid boolean")),
    };
    check_temperature(body.get("temperature"))?;
    let system_turns = beta_listed(headers, "mid-conversation-system-");
    let messages = check_messages(required(body, "messages")?, system_turns)?;
    check_system(body.get("system"))?;
    let tools = check_tools(body.get("tools"))?;
    let thinking = check_thinking(body.get("thinking"), max_tokens, mode)?;
    let stop_sequences = check_stop_sequences(body.get("stop_sequences"))?;
    let (input, breakpoints) = count_input(model, tools, body.get("system"), messages)?;
    let tool = choose_tool(body.get("tool_choice"), tools, messages)?;
    Ok(Parsed {
        model,
        max_tokens,
        stream,
        input,
        breakpoints,
        tool,
        thinking,
        stop_sequences,
    })
}

fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a Value, Failure> {
    body.get(field)
        .ok_or_else(|| Failure::invalid(format!("{field}: Field required")))
}

fn max_tokens(value: &Value) -> Result<u64, Failure> {
    if value.as_i64().is_some_and(|n| n < 1) {
        return Err(Failure::invalid(
            "max_tokens: Input should be greater than or equal to 1",
        ));
    }
    value
        .as_u64()
        .ok_or_else(|| Failure::invalid("max_tokens: Input should be a valid integer"))
}

fn check_temperature(value: Option<&Value>) -> Result<(), Failure> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(()),
            Some(_) => Err(Failure::invalid(
                "temperature: Input should be between 0 and 1",
            )),
            None => Err(Failure::invalid(
                "temperature: Input should be a valid number",
            )),
        },
    }
}

/// Whether `anthropic-beta` lists a beta whose name starts with `prefix`.
fn beta_listed(headers: &HeaderMap, prefix: &str) -> bool {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|beta| beta.trim().starts_with(prefix))
}

fn check_messages(value: &Value, system_turns: bool) -> Result<&Vec<Value>, Failure> {
    let messages = value
        .as_array()
        .ok_or_else(|| Failure::invalid("messages: Input should be a valid list"))?;
    if messages.is_empty() {
        return Err(Failure::invalid(
            "messages: at least one message is required",
        ));
    }
    let last = messages.len() - 1;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let role_ok =
            matches!(role, Some("user" | "assistant")) || (system_turns && role == Some("system"));
        if !role_ok {
            return Err(Failure::invalid(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let may_be_empty = i == last && role == Some("assistant");
        check_content(i, message.get("content"), may_be_empty)?;
    }
    Ok(messages)
}

fn check_content(i: usize, content: Option<&Value>, may_be_empty: bool) -> Result<(), Failure> {
    let empty = || {
        Failure::invalid(format!(
            "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
        ))
    };
    match content {
        None => Err(Failure::invalid(format!(
            "messages.{i}.content: Field required"
        ))),
        Some(Value::String(s)) if s.is_empty() && !may_be_empty => Err(empty()),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) if blocks.is_empty() && !may_be_empty => Err(empty()),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .try_for_each(|(j, block)| check_block(&format!("messages.{i}.content.{j}"), block)),
        Some(_) => Err(Failure::invalid(format!(
            "messages.{i}.content: Input should be a valid string or list of content blocks"
        ))),
    }
}

fn check_block(at: &str, block: &Value) -> Result<(), Failure> {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::invalid(format!("{at}.type: Field required")))?;
    let server_tool = kind.ends_with("_tool_use") || kind.ends_with("_tool_result");
    if !BLOCK_TYPES.contains(&kind) && !server_tool {
        return Err(Failure::invalid(format!(
            "{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {BLOCK_TYPES:?}"
        )));
    }
    let needs: &[(&str, IsKind)] = match kind {
        "text" => &[("text", Value::is_string)],
        "tool_use" => &[
            ("id", Value::is_string),
            ("name", Value::is_string),
            ("input", Value::is_object),
        ],
        "tool_result" => &[("tool_use_id", Value::is_string)],
        "thinking" => &[
            ("thinking", Value::is_string),
            ("signature", Value::is_string),
        ],
        "image" | "document" => &[("source", Value::is_object)],
        _ => &[],
    };
    for (field, ok) in needs {
        match block.get(*field) {
            None => return Err(Failure::invalid(format!("{at}.{field}: Field required"))),
            Some(v) if !ok(v) => {
                return Err(Failure::invalid(format!(
                    "{at}.{field}: Input has the wrong type"
                )));
            }
            Some(_) => {}
        }
    }
    if kind == "text" && block.get("text").and_then(Value::as_str) == Some("") {
        return Err(Failure::invalid(
            "messages: text content blocks must be non-empty",
        ));
    }
    check_cache_control(at, block)
}

fn check_cache_control(at: &str, block: &Value) -> Result<(), Failure> {
    let Some(cc) = block.get("cache_control").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    if cc.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(Failure::invalid(format!(
            "{at}.cache_control.type: Input should be 'ephemeral'"
        )));
    }
    match cc.get("ttl") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == "5m" || t == "1h" => Ok(()),
        Some(_) => Err(Failure::invalid(format!(
            "{at}.cache_control.ttl: Input should be '5m' or '1h'"
        ))),
    }
}

fn check_system(value: Option<&Value>) -> Result<(), Failure> {
    match value {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => blocks.iter().enumerate().try_for_each(|(j, block)| {
            if block.get("type").and_then(Value::as_str) != Some("text") {
                return Err(Failure::invalid(format!(
                    "system.{j}.type: Input should be 'text'"
                )));
            }
            check_block(&format!("system.{j}"), block)
        }),
        Some(_) => Err(Failure::invalid(
            "system: Input should be a valid string or list of text blocks",
        )),
    }
}

/// The tools, checked; an absent list is empty.
fn check_tools(value: Option<&Value>) -> Result<&[Value], Failure> {
    let tools = match value {
        None | Some(Value::Null) => return Ok(&[]),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(Failure::invalid("tools: Input should be a valid list")),
    };
    for (i, tool) in tools.iter().enumerate() {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::invalid(format!("tools.{i}.name: Field required")))?;
        let name_ok = (1..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(Failure::invalid(format!(
                "tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )));
        }
        if is_custom(tool) && !tool.get("input_schema").is_some_and(Value::is_object) {
            return Err(Failure::invalid(format!(
                "tools.{i}.input_schema: Field required"
            )));
        }
        check_cache_control(&format!("tools.{i}"), tool)?;
    }
    Ok(tools)
}

/// A client tool (as opposed to a server tool such as `web_search_20250305`).
fn is_custom(tool: &Value) -> bool {
    matches!(
        tool.get("type").and_then(Value::as_str),
        None | Some("custom")
    )
}

fn check_thinking(value: Option<&Value>, max_tokens: u64, mode: Mode) -> Result<bool, Failure> {
    let Some(thinking) = value.filter(|v| !v.is_null()) else {
        return Ok(false);
    };
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(false),
        Some("adaptive") => Ok(true),
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .ok_or_else(|| Failure::invalid("thinking.enabled.budget_tokens: Field required"))?
                .as_u64()
                .filter(|b| *b >= 1024)
                .ok_or_else(|| {
                    Failure::invalid(
                        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                    )
                })?;
            if mode == Mode::Messages && budget >= max_tokens {
                return Err(Failure::invalid(
                    "`max_tokens` must be greater than `thinking.budget_tokens`",
                ));
            }
            Ok(true)
        }
        _ => Err(Failure::invalid(
            "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'",
        )),
    }
}

fn check_stop_sequences(value: Option<&Value>) -> Result<Vec<&str>, Failure> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str().ok_or_else(|| {
                    Failure::invalid("stop_sequences: Input should be a valid list of strings")
                })
            })
            .collect(),
        Some(_) => Err(Failure::invalid(
            "stop_sequences: Input should be a valid list",
        )),
    }
}

/// Words of all input, and per `cache_control` breakpoint the prefix's fingerprint and words
/// (the order Anthropic caches in: tools, system, messages).
fn count_input(
    model: &str,
    tools: &[Value],
    system: Option<&Value>,
    messages: &[Value],
) -> Result<(u64, Vec<(String, u64)>), Failure> {
    let mut segments: Vec<(String, u64, bool)> = Vec::new();
    for tool in tools {
        let w = tool.get("description").map_or(0, words);
        segments.push((tool.to_string(), w, has_cache_control(tool)));
    }
    match system {
        Some(Value::Array(blocks)) => {
            for block in blocks {
                segments.push((block.to_string(), words(block), has_cache_control(block)));
            }
        }
        Some(s @ Value::String(_)) => segments.push((s.to_string(), words(s), false)),
        _ => {}
    }
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match message.get("content") {
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    segments.push((
                        format!("{role}:{block}"),
                        words(block),
                        has_cache_control(block),
                    ));
                }
            }
            Some(content) => segments.push((format!("{role}:{content}"), words(content), false)),
            None => {}
        }
    }
    let marks = segments.iter().filter(|s| s.2).count();
    if marks > 4 {
        return Err(Failure::invalid(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {marks}."
        )));
    }
    let mut running = format!("anthropic\0{model}");
    let mut total = 0;
    let mut breakpoints = Vec::new();
    for (source, w, mark) in segments {
        running.push('\0');
        running.push_str(&source);
        total += w;
        if mark {
            breakpoints.push((super::sha256_hex(running.as_bytes()), total));
        }
    }
    Ok((total, breakpoints))
}

fn has_cache_control(block: &Value) -> bool {
    block.get("cache_control").is_some_and(|v| !v.is_null())
}

/// The tool call the answer makes, if any (see the module doc).
fn choose_tool<'a>(
    choice: Option<&'a Value>,
    tools: &'a [Value],
    messages: &[Value],
) -> Result<Option<(&'a str, Value)>, Failure> {
    let custom: Vec<&Value> = tools.iter().filter(|t| is_custom(t)).collect();
    let kind = match choice.filter(|v| !v.is_null()) {
        None => "auto",
        Some(c) => c.get("type").and_then(Value::as_str).unwrap_or(""),
    };
    let tool = match kind {
        "none" => None,
        "auto" => custom
            .first()
            .filter(|_| asks_for_weather(messages))
            .copied(),
        "any" => custom.first().copied(),
        "tool" => {
            let name = choice
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::invalid("tool_choice.tool.name: Field required"))?;
            let found = custom
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
                .copied();
            Some(found.ok_or_else(|| {
                Failure::invalid(format!("Tool '{name}' not found in provided tools"))
            })?)
        }
        _ => {
            return Err(Failure::invalid(
                "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
            ));
        }
    };
    Ok(tool.map(|t| {
        let name = t.get("name").and_then(Value::as_str).unwrap_or("tool");
        (name, tool_input(t.get("input_schema")))
    }))
}

/// Whether the last user turn's own text (not tool results) has the word "weather".
fn asks_for_weather(messages: &[Value]) -> bool {
    let Some(last) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return false;
    };
    let texts: Vec<&str> = match last.get("content") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    };
    texts.iter().any(|t| {
        t.split(|c: char| !c.is_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case("weather"))
    })
}

/// An input filling the schema's required properties.
fn tool_input(schema: Option<&Value>) -> Value {
    let mut input = Map::new();
    let Some(schema) = schema else {
        return Value::Object(input);
    };
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = schema.pointer(&format!("/properties/{}", escape_pointer(name)));
        let value = match property {
            Some(p)
                if p.get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty()) =>
            {
                p["enum"][0].clone()
            }
            Some(p) => match p.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!(format!("mock {name}")),
            },
            None => json!(format!("mock {name}")),
        };
        input.insert(name.to_owned(), value);
    }
    Value::Object(input)
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The answer's content, decided once and rendered plain or streamed.
#[derive(Debug)]
struct Answer {
    id: String,
    model: String,
    thinking: Option<(String, String)>,
    body: Body,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

#[derive(Debug)]
enum Body {
    Text(Vec<String>),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl Usage {
    fn json(self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output,
        })
    }
}

async fn create(
    mock: &MockUpstream,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, Failure> {
    let (key, request) = admit(mock, uri, headers, body).await?;
    let parsed = parse(&request, headers, Mode::Messages)?;
    refuse(mock, &key, &parsed).await?;
    let answer = answer(mock, &parsed);
    let u = answer.usage;
    mock.count(&key, |s| {
        s.ok += 1;
        s.prompt_tokens += u.input + u.cache_creation + u.cache_read;
        s.completion_tokens += u.output;
        s.cache_write_tokens += u.cache_creation;
        s.cache_read_tokens += u.cache_read;
    });
    if parsed.stream {
        return event_stream(&mock.options, stream_events(&answer))
            .map_err(|_| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "stream"));
    }
    Ok(axum::Json(message_json(&answer)).into_response())
}

fn answer(mock: &MockUpstream, parsed: &Parsed<'_>) -> Answer {
    let fingerprints: Vec<String> = parsed.breakpoints.iter().map(|b| b.0.clone()).collect();
    let cache_read = mock
        .cache_lookup(&fingerprints)
        .map_or(0, |hit| parsed.breakpoints[hit].1);
    let cached_end = parsed.breakpoints.last().map_or(0, |b| b.1);
    let cache_creation = cached_end.saturating_sub(cache_read);
    let thinking = parsed.thinking.then(|| {
        let signature = super::sha256_hex(THINKING.as_bytes());
        (THINKING.to_owned(), format!("mock-signature-{signature}"))
    });
    let thinking_words = thinking.as_ref().map_or(0, |t| words(&json!(t.0)));
    let (body, stop_reason, stop_sequence, output) = match &parsed.tool {
        Some((name, input)) => {
            let output = input.to_string().split_whitespace().count() as u64;
            let id = format!("toolu_mock{:016}", mock.next_id());
            let name = (*name).to_owned();
            let input = input.clone();
            (Body::ToolUse { id, name, input }, "tool_use", None, output)
        }
        None => {
            let (text, stop_reason, stop_sequence) = text_reply(parsed);
            let output = text.len() as u64;
            (Body::Text(text), stop_reason, stop_sequence, output)
        }
    };
    Answer {
        id: format!("msg_mock{:016}", mock.next_id()),
        model: parsed.model.to_owned(),
        thinking,
        body,
        stop_reason,
        stop_sequence,
        usage: Usage {
            input: parsed.input.saturating_sub(cached_end),
            cache_creation,
            cache_read,
            output: output + thinking_words,
        },
    }
}

/// The reply's words, the stop reason and the stop sequence that ended it.
fn text_reply(parsed: &Parsed<'_>) -> (Vec<String>, &'static str, Option<String>) {
    let words = reply(parsed.max_tokens);
    let cut = (words.len() as u64) < REPLY.len() as u64;
    let text = words.join(" ");
    let earliest = parsed
        .stop_sequences
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(*s).map(|at| (at, *s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, sequence)) = earliest {
        let kept: Vec<String> = text[..at].split_whitespace().map(str::to_owned).collect();
        return (kept, "stop_sequence", Some(sequence.to_owned()));
    }
    let words = words.into_iter().map(str::to_owned).collect();
    (words, if cut { "max_tokens" } else { "end_turn" }, None)
}

fn message_json(answer: &Answer) -> Value {
    let mut content = Vec::new();
    if let Some((thinking, signature)) = &answer.thinking {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
    }
    content.push(match &answer.body {
        Body::Text(words) => json!({"type": "text", "text": words.join(" ")}),
        Body::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    });
    json!({
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": answer.usage.json(answer.usage.output),
    })
}

/// One SSE event as Anthropic sends it: an `event:` line and a `data:` line with a `type`.
fn sse(data: &Value) -> String {
    let kind = data.get("type").and_then(Value::as_str).unwrap_or("error");
    format!("event: {kind}\ndata: {data}\n\n")
}

/// Text pieces as deltas: each word with the space that follows it.
fn pieces(words: &[String]) -> Vec<String> {
    let last = words.len().saturating_sub(1);
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == last {
                w.clone()
            } else {
                format!("{w} ")
            }
        })
        .collect()
}

fn stream_events(answer: &Answer) -> Vec<String> {
    let mut events = vec![sse(&json!({"type": "message_start", "message": {
        "id": answer.id, "type": "message", "role": "assistant", "model": answer.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": answer.usage.json(1),
    }}))];
    let mut index = 0;
    let mut block = |events: &mut Vec<String>, start: Value, deltas: Vec<Value>| {
        events.push(sse(
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(sse(&json!({"type": "ping"})));
        }
        for delta in deltas {
            events.push(sse(
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(sse(&json!({"type": "content_block_stop", "index": index})));
        index += 1;
    };
    if let Some((thinking, signature)) = &answer.thinking {
        let words: Vec<String> = thinking.split_whitespace().map(str::to_owned).collect();
        let mut deltas: Vec<Value> = pieces(&words)
            .into_iter()
            .map(|t| json!({"type": "thinking_delta", "thinking": t}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": signature}));
        block(
            &mut events,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
        );
    }
    match &answer.body {
        Body::Text(words) => {
            let deltas = pieces(words)
                .into_iter()
                .map(|t| json!({"type": "text_delta", "text": t}))
                .collect();
            block(&mut events, json!({"type": "text", "text": ""}), deltas);
        }
        Body::ToolUse { id, name, input } => {
            let deltas = json_pieces(&input.to_string())
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            block(
                &mut events,
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                deltas,
            );
        }
    }
    events.push(sse(&json!({"type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
        "usage": answer.usage.json(answer.usage.output)})));
    events.push(sse(&json!({"type": "message_stop"})));
    events
}

/// A tool input's JSON in pieces as Anthropic streams it: an empty piece, then at most 8
/// characters at a time.
fn json_pieces(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    std::iter::once(String::new())
        .chain(chars.chunks(8).map(|c| c.iter().collect()))
        .collect()
}
