//! The mock's AWS Bedrock dialect: the Converse API, `POST /model/{modelId}/converse` (JSON)
//! and `/model/{modelId}/converse-stream` (AWS's binary event-stream framing, valid CRCs, each
//! message sent in two pieces so clients must join frames across reads).
//!
//! It checks what AWS checks, in AWS's error shape (`{"message": …}` with the error's name in
//! `x-amzn-ErrorType`): a SigV4 `Authorization` header (`AWS4-HMAC-SHA256
//! Credential=AKID/date/region/bedrock/aws4_request, SignedHeaders=…, Signature=…`) with
//! `host` and `x-amz-date` signed, `x-amz-date` within 15 minutes, and the signature itself,
//! recomputed with the secret the mock holds for the access key id ([`secret_of`]: those of
//! [`TEST_CREDENTIALS`], else [`test_secret`]; ids starting with `revoked` are unknown) (403
//! `UnrecognizedClientException` for an unknown id, `InvalidSignatureException` for a wrong
//! secret or a changed request); then the body (400 `ValidationException`): known top-level
//! fields only, a conversation that starts with a user turn and alternates, content blocks of
//! one known kind each (no blank text), `toolConfig` present when tool blocks are, sane
//! `inferenceConfig`.
//!
//! Answers are deterministic, as on the other routes: `inputTokens` are the words of the
//! conversation and system; the reply is the fixed sentence cut to `maxTokens` words. With
//! tools and a last user turn that mentions "weather" (or `toolChoice` `any`/`tool`) the answer
//! is one `toolUse` of the first (or chosen) tool with input `{}`. A request with `cachePoint`
//! blocks reports the words before the last one as `cacheWriteInputTokens` the first time and
//! `cacheReadInputTokens` after (left out of `inputTokens`, as Bedrock counts them). Models
//! named `missing-…` are refused as unknown; models named `exception-…` stream one delta and
//! then a `throttlingException` message. Knobs: 429 `ThrottlingException`, 503
//! `ServiceUnavailableException`, 500 `InternalServerException`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{MockUpstream, Refusal, key_label, reply};
use crate::providers::bedrock::eventstream::{Frame, encode};
use crate::providers::bedrock::sigv4;

/// The AWS keys the mock knows: access key id → secret access key. The first is AWS's own
/// documentation example.
pub const TEST_CREDENTIALS: [(&str, &str); 4] = [
    ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    (
        "AKIAMOCKKEY000000001",
        "mock/secret/one+0000000000000000000000001",
    ),
    (
        "AKIAMOCKKEY000000002",
        "mock/secret/two+0000000000000000000000002",
    ),
    (
        "AKIAMOCKKEY000000003",
        "mock/secret/three+00000000000000000000003",
    ),
];

/// Top-level fields of a Converse request.
const REQUEST_FIELDS: [&str; 10] = [
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "outputConfig",
];

/// Members of the `ContentBlock` union a message may hold.
const BLOCK_KINDS: [&str; 9] = [
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "reasoningContent",
    "cachePoint",
];

/// An AWS error answer: status, the name for `x-amzn-ErrorType`, the message.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    name: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            name,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    fn from_refusal(refusal: Refusal) -> Self {
        match refusal {
            Refusal::RateLimited { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            Refusal::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
            ),
            Refusal::Failed => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "The server encountered an internal error while processing the request.",
            ),
        }
    }

    fn from_signature(refused: sigv4::Refused) -> Self {
        let name = match &refused {
            sigv4::Refused::Malformed(m) if m == "Missing Authentication Token" => {
                "MissingAuthenticationTokenException"
            }
            sigv4::Refused::Malformed(_) => "IncompleteSignatureException",
            sigv4::Refused::UnknownKey => "UnrecognizedClientException",
            sigv4::Refused::Mismatch | sigv4::Refused::Expired(_) => "InvalidSignatureException",
        };
        Self::new(StatusCode::FORBIDDEN, name, refused.to_string())
    }

    fn render(self, request_id: &str) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "message": self.message }))).into_response();
        let kind = format!(
            "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            self.name
        );
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&kind) {
            headers.insert("x-amzn-errortype", v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-requestid", v);
        }
        response
    }
}

/// The secret the mock holds for an access key id: its own for [`TEST_CREDENTIALS`], none for
/// ids starting with `revoked` (unknown to AWS, as a deleted key is), else [`test_secret`].
pub fn secret_of(access_key_id: &str) -> Option<String> {
    if let Some((_, secret)) = TEST_CREDENTIALS.iter().find(|(id, _)| *id == access_key_id) {
        return Some((*secret).to_owned());
    }
    (!access_key_id.starts_with("revoked")).then(|| test_secret(access_key_id))
}

/// The secret the mock expects for an access key id outside [`TEST_CREDENTIALS`], so tests
/// can make keys of their own.
pub fn test_secret(access_key_id: &str) -> String {
    format!("{access_key_id}/mock-secret")
}

/// `POST /model/{modelId}/converse`.
pub(super) async fn converse(
    State(mock): State<Arc<MockUpstream>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&mock, &model, &uri, &headers, &body, false).await
}

/// `POST /model/{modelId}/converse-stream`.
pub(super) async fn converse_stream(
    State(mock): State<Arc<MockUpstream>>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&mock, &model, &uri, &headers, &body, true).await
}

async fn answer(
    mock: &MockUpstream,
    model: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    stream: bool,
) -> Response {
    let request_id = format!("mock-bedrock-{:012}", mock.next_id());
    let admitted = admit(mock, model, uri, headers, body).await;
    let (key, request) = match admitted {
        Ok(admitted) => admitted,
        Err(failure) => return failure.render(&request_id),
    };
    let turn = Turn::of(mock, &request);
    mock.count(&key, |s| {
        s.ok += 1;
        s.prompt_tokens += turn.input + turn.cache_read + turn.cache_write;
        s.completion_tokens += turn.output();
        s.cache_read_tokens += turn.cache_read;
        s.cache_write_tokens += turn.cache_write;
    });
    let mut response = if stream {
        stream_answer(mock, &turn, model.starts_with("exception-"))
    } else {
        axum::Json(turn.response()).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// Signature, body and knob checks; the key's label and the request body.
async fn admit(
    mock: &MockUpstream,
    model: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), Failure> {
    mock.record_headers(uri, headers);
    // Counted under the key it claims to be, even if the signature is refused.
    let claimed = super::header_str(headers, "authorization")
        .and_then(|auth| sigv4::parse_authorization(auth).ok())
        .map(|auth| key_label(auth.access_key_id));
    if let Some(claimed) = &claimed {
        mock.count(claimed, |s| s.requests += 1);
    }
    let access_key_id = verify_signature(uri, headers, body)?;
    let key = key_label(&access_key_id);
    let json_type = super::header_str(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaTypeException",
            "content-type must be application/json",
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "The request body is not valid JSON.",
        )
    })?;
    mock.record_body(&request, body);
    check_request(&request)?;
    if model.starts_with("missing-") {
        return Err(Failure::invalid(
            "The provided model identifier is invalid.",
        ));
    }
    super::sleep_latency(&mock.options).await;
    if let Some(refusal) = mock.refusal(&key) {
        return Err(Failure::from_refusal(refusal));
    }
    Ok((key, request))
}

/// The SigV4 check; the access key id that signed.
fn verify_signature(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<String, Failure> {
    let listed: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let pairs: Vec<(&str, &str)> = listed
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let host = super::header_str(headers, "host")
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let received = sigv4::Received {
        method: "POST",
        host,
        path_and_query: uri.path_and_query().map_or(uri.path(), |p| p.as_str()),
        headers: &pairs,
        body,
    };
    sigv4::verify(received, "bedrock", SystemTime::now(), secret_of)
        .map(str::to_owned)
        .map_err(Failure::from_signature)
}

/// The body checks Bedrock makes (see the module doc).
fn check_request(request: &Value) -> Result<(), Failure> {
    let body = request
        .as_object()
        .ok_or_else(|| Failure::invalid("The request body must be a JSON object."))?;
    if let Some(extra) = body.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(Failure::invalid(format!(
            "Unknown field `{extra}` in the request body."
        )));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Failure::invalid("messages: a non-empty list is required."))?;
    let mut uses_tools = false;
    for (i, message) in messages.iter().enumerate() {
        uses_tools |= check_message(i, message)?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if i == 0 && role != "user" {
            return Err(Failure::invalid(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        if role != expected {
            return Err(Failure::invalid(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.",
            ));
        }
    }
    check_system(body.get("system"))?;
    check_inference(body.get("inferenceConfig"))?;
    let tools = check_tools(body.get("toolConfig"))?;
    if uses_tools && tools.is_empty() {
        return Err(Failure::invalid(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        ));
    }
    Ok(())
}

/// One message's checks; whether it holds tool blocks.
fn check_message(i: usize, message: &Value) -> Result<bool, Failure> {
    let role = message.get("role").and_then(Value::as_str);
    if !matches!(role, Some("user" | "assistant")) {
        return Err(Failure::invalid(format!(
            "messages.{i}.role: must be user or assistant."
        )));
    }
    let content = message
        .get("content")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Failure::invalid(format!(
                "messages.{i}.content: a non-empty list is required."
            ))
        })?;
    let mut tools = false;
    for (j, block) in content.iter().enumerate() {
        let kind = check_block(&format!("messages.{i}.content.{j}"), block)?;
        tools |= matches!(kind, "toolUse" | "toolResult");
    }
    Ok(tools)
}

/// A content block holds exactly one known member, well formed; answers its kind.
fn check_block<'a>(at: &str, block: &'a Value) -> Result<&'a str, Failure> {
    let object = block
        .as_object()
        .ok_or_else(|| Failure::invalid(format!("{at}: a content block must be an object.")))?;
    let mut keys = object.keys();
    let (Some(kind), None) = (keys.next(), keys.next()) else {
        return Err(Failure::invalid(format!(
            "{at}: a content block must have exactly one member."
        )));
    };
    if !BLOCK_KINDS.contains(&kind.as_str()) {
        return Err(Failure::invalid(format!(
            "{at}: unknown content block member `{kind}`."
        )));
    }
    let value = &object[kind];
    let field = |path: &str| value.pointer(path);
    let ok = match kind.as_str() {
        "text" => {
            let text = value
                .as_str()
                .ok_or_else(|| Failure::invalid(format!("{at}.text: must be a string.")))?;
            if text.trim().is_empty() {
                return Err(Failure::invalid(format!(
                    "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
                )));
            }
            true
        }
        "image" => {
            matches!(
                field("/format").and_then(Value::as_str),
                Some("png" | "jpeg" | "gif" | "webp")
            ) && field("/source/bytes").is_some_and(Value::is_string)
        }
        "document" => {
            field("/format").is_some_and(Value::is_string)
                && field("/name").is_some_and(Value::is_string)
                && field("/source").is_some_and(Value::is_object)
        }
        "toolUse" => {
            field("/toolUseId")
                .and_then(Value::as_str)
                .is_some_and(is_tool_id)
                && field("/name").is_some_and(Value::is_string)
                && field("/input").is_some()
        }
        "toolResult" => {
            field("/toolUseId")
                .and_then(Value::as_str)
                .is_some_and(is_tool_id)
                && field("/content").is_some_and(Value::is_array)
        }
        "cachePoint" => field("/type").and_then(Value::as_str) == Some("default"),
        _ => value.is_object(),
    };
    if !ok {
        return Err(Failure::invalid(format!("{at}.{kind}: malformed.")));
    }
    Ok(kind.as_str())
}

fn is_tool_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_system(system: Option<&Value>) -> Result<(), Failure> {
    let Some(system) = system else {
        return Ok(());
    };
    let blocks = system
        .as_array()
        .ok_or_else(|| Failure::invalid("system: must be a list."))?;
    for (i, block) in blocks.iter().enumerate() {
        let kind = check_block(&format!("system.{i}"), block)?;
        if !matches!(kind, "text" | "cachePoint" | "guardContent") {
            return Err(Failure::invalid(format!(
                "system.{i}: `{kind}` is not a system content block."
            )));
        }
    }
    Ok(())
}

fn check_inference(config: Option<&Value>) -> Result<(), Failure> {
    let Some(config) = config else {
        return Ok(());
    };
    let config = config
        .as_object()
        .ok_or_else(|| Failure::invalid("inferenceConfig: must be an object."))?;
    if let Some(max) = config.get("maxTokens")
        && max.as_u64().is_none_or(|m| m < 1)
    {
        return Err(Failure::invalid(
            "inferenceConfig.maxTokens: must be an integer of at least 1.",
        ));
    }
    for name in ["temperature", "topP"] {
        if let Some(v) = config.get(name)
            && v.as_f64().is_none_or(|v| !(0.0..=1.0).contains(&v))
        {
            return Err(Failure::invalid(format!(
                "inferenceConfig.{name}: must be a number from 0 to 1."
            )));
        }
    }
    if let Some(stops) = config.get("stopSequences")
        && !stops
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())))
    {
        return Err(Failure::invalid(
            "inferenceConfig.stopSequences: must be a list of non-empty strings.",
        ));
    }
    Ok(())
}

/// The tool names of a `toolConfig` (none without one), after checking it.
fn check_tools(config: Option<&Value>) -> Result<Vec<String>, Failure> {
    let Some(config) = config else {
        return Ok(Vec::new());
    };
    let tools = config
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::invalid("toolConfig.tools: a non-empty list is required."))?;
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("cachePoint").is_some() {
            continue;
        }
        let spec = tool.get("toolSpec");
        let name = spec
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str)
            .filter(|n| is_tool_id(n))
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "toolConfig.tools.{i}.toolSpec.name: must match [a-zA-Z0-9_-]{{1,64}}."
                ))
            })?;
        if !spec
            .and_then(|s| s.pointer("/inputSchema/json"))
            .is_some_and(Value::is_object)
        {
            return Err(Failure::invalid(format!(
                "toolConfig.tools.{i}.toolSpec.inputSchema.json: a JSON schema object is required."
            )));
        }
        names.push(name.to_owned());
    }
    match config.get("toolChoice") {
        None => {}
        Some(choice) if choice.get("auto").is_some() || choice.get("any").is_some() => {}
        Some(choice) => {
            let chosen = choice.pointer("/tool/name").and_then(Value::as_str);
            if !chosen.is_some_and(|c| names.iter().any(|n| n == c)) {
                return Err(Failure::invalid(
                    "toolConfig.toolChoice: must be auto, any, or a tool named in tools.",
                ));
            }
        }
    }
    Ok(names)
}

/// What the mock answers one request with.
struct Turn {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    reply: Vec<&'static str>,
    /// `(toolUseId, name)` when the answer is a tool use.
    tool: Option<(String, String)>,
}

impl Turn {
    fn of(mock: &MockUpstream, request: &Value) -> Self {
        let total = request.get("messages").map_or(0, content_words)
            + request.get("system").map_or(0, content_words);
        let (cache_read, cache_write) = cache(mock, request);
        let max = request
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Value::as_u64)
            .unwrap_or(super::REPLY.len() as u64);
        let tool =
            chosen_tool(request).map(|name| (format!("tooluse_mock{:016}", mock.next_id()), name));
        Self {
            input: total.saturating_sub(cache_read + cache_write),
            cache_read,
            cache_write,
            reply: reply(max),
            tool,
        }
    }

    fn output(&self) -> u64 {
        if self.tool.is_some() {
            1
        } else {
            self.reply.len() as u64
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage(&self) -> Value {
        let mut usage = json!({
            "inputTokens": self.input,
            "outputTokens": self.output(),
            "totalTokens": self.input + self.output() + self.cache_read + self.cache_write,
        });
        if self.cache_read + self.cache_write > 0 {
            usage["cacheReadInputTokens"] = self.cache_read.into();
            usage["cacheWriteInputTokens"] = self.cache_write.into();
        }
        usage
    }

    fn response(&self) -> Value {
        let content = match &self.tool {
            Some((id, name)) => {
                json!([{ "toolUse": { "toolUseId": id, "name": name, "input": {} } }])
            }
            None => json!([{ "text": self.reply.join(" ") }]),
        };
        json!({
            "output": { "message": { "role": "assistant", "content": content } },
            "stopReason": self.stop_reason(),
            "usage": self.usage(),
            "metrics": { "latencyMs": 0 },
        })
    }

    /// The stream's events, in order.
    fn events(&self, throttled: bool) -> Vec<Frame> {
        let event = |kind: &str, payload: Value| Frame::Event {
            kind: kind.to_owned(),
            payload: Bytes::from(payload.to_string()),
        };
        let mut events = vec![event("messageStart", json!({ "role": "assistant" }))];
        match &self.tool {
            Some((id, name)) => {
                events.push(event(
                    "contentBlockStart",
                    json!({ "contentBlockIndex": 0,
                    "start": { "toolUse": { "toolUseId": id, "name": name } } }),
                ));
                events.push(event(
                    "contentBlockDelta",
                    json!({ "contentBlockIndex": 0,
                    "delta": { "toolUse": { "input": "{}" } } }),
                ));
            }
            None => {
                for (i, word) in self.reply.iter().enumerate() {
                    let text = if i == 0 {
                        (*word).to_owned()
                    } else {
                        format!(" {word}")
                    };
                    events.push(event(
                        "contentBlockDelta",
                        json!({ "contentBlockIndex": 0,
                        "delta": { "text": text } }),
                    ));
                    if throttled {
                        events.push(Frame::Exception {
                            kind: "throttlingException".into(),
                            payload: Bytes::from_static(
                                br#"{"message":"Too many tokens, please wait before trying again."}"#,
                            ),
                        });
                        return events;
                    }
                }
            }
        }
        events.push(event("contentBlockStop", json!({ "contentBlockIndex": 0 })));
        events.push(event(
            "messageStop",
            json!({ "stopReason": self.stop_reason() }),
        ));
        events.push(event(
            "metadata",
            json!({ "usage": self.usage(), "metrics": { "latencyMs": 0 } }),
        ));
        events
    }
}

/// Words of Converse content: `text` blocks, tool results' text, strings.
fn content_words(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(content_words).sum(),
        Value::Object(map) => ["content", "text", "toolResult"]
            .iter()
            .filter_map(|k| map.get(*k))
            .map(content_words)
            .sum(),
        _ => 0,
    }
}

/// `(read, written)` cache tokens: the words before the last `cachePoint` (see the module doc).
fn cache(mock: &MockUpstream, request: &Value) -> (u64, u64) {
    let mut blocks: Vec<&Value> = Vec::new();
    for block in request
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(block);
    }
    for message in request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.extend(
            message
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    let Some(last) = blocks.iter().rposition(|b| b.get("cachePoint").is_some()) else {
        return (0, 0);
    };
    let prefix = &blocks[..last];
    let cached: u64 = prefix.iter().map(|b| content_words(b)).sum();
    let text: String = prefix.iter().map(|b| b.to_string()).collect();
    let fingerprint = super::sha256_hex(format!("bedrock\0{text}").as_bytes());
    match mock.cache_lookup(&[fingerprint]) {
        Some(_) => (cached, 0),
        None => (0, cached),
    }
}

/// The tool the answer calls, if any (see the module doc).
fn chosen_tool(request: &Value) -> Option<String> {
    let config = request.get("toolConfig")?;
    let first = config
        .get("tools")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str))?;
    let choice = config.get("toolChoice");
    if let Some(name) = choice
        .and_then(|c| c.pointer("/tool/name"))
        .and_then(Value::as_str)
    {
        return Some(name.to_owned());
    }
    let wanted =
        choice.is_some_and(|c| c.get("any").is_some()) || last_user_asks_for_weather(request);
    wanted.then(|| first.to_owned())
}

fn last_user_asks_for_weather(request: &Value) -> bool {
    let last = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let Some(content) = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    content
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .any(|t| t.to_ascii_lowercase().contains("weather"))
}

/// An `application/vnd.amazon.eventstream` answer; each message goes out in two pieces, with
/// `chunk_delay` before each message.
fn stream_answer(mock: &MockUpstream, turn: &Turn, throttled: bool) -> Response {
    let mut pieces = Vec::new();
    for frame in turn.events(throttled) {
        let Ok(bytes) = encode(&frame) else {
            return Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "the mock could not frame its answer",
            )
            .render("");
        };
        let cut = bytes.len() / 2 + 1;
        pieces.push((true, bytes.slice(..cut)));
        pieces.push((false, bytes.slice(cut..)));
    }
    let delay = mock.options.chunk_delay;
    let body = futures_util::stream::iter(pieces).then(move |(first, piece)| async move {
        if first && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(piece)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(request: Value, needle: &str) {
        let err = check_request(&request).expect_err("refused");
        assert!(
            err.message.contains(needle),
            "{} should mention {needle}",
            err.message
        );
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn bedrock_body_rules_are_enforced() {
        let user = |text: &str| json!({"role": "user", "content": [{"text": text}]});
        check_request(&json!({"messages": [user("hi")]})).expect("valid");
        fails(
            json!({"messages": [user("hi")], "model": "x"}),
            "Unknown field `model`",
        );
        fails(json!({"messages": []}), "non-empty");
        fails(
            json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
            "start with a user message",
        );
        fails(json!({"messages": [user("a"), user("b")]}), "alternate");
        fails(json!({"messages": [user(" ")]}), "is blank");
        fails(
            json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
            "exactly one member",
        );
        fails(
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}),
            "exactly one member",
        );
        fails(
            json!({"messages": [user("a"),
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "1"}]}}]}]}),
            "toolConfig field must be defined",
        );
        fails(
            json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}),
            "temperature",
        );
        fails(
            json!({"messages": [user("a")], "toolConfig": {"tools": [{"toolSpec": {"name": "a.b", "inputSchema": {"json": {}}}}]}}),
            "toolSpec.name",
        );
        fails(
            json!({"messages": [user("a")], "toolConfig": {
                "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}],
                "toolChoice": {"tool": {"name": "g"}}}}),
            "toolChoice",
        );
    }

    #[test]
    fn signature_failures_are_403_with_aws_names() {
        let cases = [
            (sigv4::Refused::UnknownKey, "UnrecognizedClientException"),
            (sigv4::Refused::Mismatch, "InvalidSignatureException"),
            (
                sigv4::Refused::Malformed("Missing Authentication Token".into()),
                "MissingAuthenticationTokenException",
            ),
        ];
        for (refused, name) in cases {
            let failure = Failure::from_signature(refused);
            assert_eq!(
                (failure.status, failure.name),
                (StatusCode::FORBIDDEN, name)
            );
        }
    }

    #[test]
    fn words_count_text_and_tool_results() {
        let messages = json!([
            {"role": "user", "content": [{"text": "one two"}, {"cachePoint": {"type": "default"}}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"q": "not counted"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "three"}]}}]},
        ]);
        assert_eq!(content_words(&messages), 3);
    }
}
