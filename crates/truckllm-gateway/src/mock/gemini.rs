//! The mock's Gemini dialect (AI Studio `v1beta`): `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (`?alt=sse`: SSE events with `\r\n\r\n` ends, as Google sends
//! them; without it a JSON array of the same responses) and `:batchEmbedContents`.
//!
//! Checked as Google checks them, answered in Google's error shape
//! (`{"error": {"code", "message", "status"}}`): the key in `x-goog-api-key` (or `?key=`;
//! none: 403 `PERMISSION_DENIED`; a key starting `revoked`: 403, a suspended consumer);
//! fields Google does not know, at the top level, in `generationConfig`, in a content or in
//! a part, are 400 `INVALID_ARGUMENT` ("Unknown name"), as proto JSON parsing refuses them;
//! `contents` must be a non-empty list of turns with role `user` or `model` and non-empty
//! `parts`, each part holding exactly one kind of data; a `functionCall` part in a model turn
//! must carry the `thoughtSignature` the mock gave it (as Gemini 3 requires); batch embedding
//! requests must each name the model of the URL.
//!
//! Answers, deterministic: the reply of the other dialects; with function declarations and
//! the last user text asking about the weather (mode not `NONE`), or mode `ANY`, one
//! `functionCall` of the first allowed function with `args: {}` and a `thoughtSignature`;
//! with `responseMimeType: application/json` the text is `{"reply": "…"}`. Usage: prompt
//! tokens are the words of `systemInstruction` and `contents`; `thoughtsTokenCount` 4 when a
//! `thinkingBudget` above 0 is set; `cachedContentTokenCount` the words of the longest run of
//! leading turns answered before (Gemini's implicit cache).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::{MockUpstream, Refusal, event_stream, header_str, key_label, reply};

const REQUEST_FIELDS: [&str; 6] = [
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
];
const GENERATION_FIELDS: [&str; 18] = [
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
    "speechConfig",
];
const PART_DATA: [&str; 7] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];
const PART_META: [&str; 3] = ["thought", "thoughtSignature", "videoMetadata"];

/// Google's error shape.
fn error(code: StatusCode, status: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}})),
    )
        .into_response()
}

fn invalid(message: impl AsRef<str>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        message.as_ref(),
    )
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::RateLimited { retry_after } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
            );
            if let Ok(v) = retry_after.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Refusal::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        Refusal::Failed => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "An internal error has occurred.",
        ),
    }
}

/// `POST /v1beta/models/{model}:{method}`.
pub(super) async fn call(
    State(mock): State<Arc<MockUpstream>>,
    Path(call): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, method)) = call.rsplit_once(':') else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("models/{call} is not found for API version v1beta"),
        );
    };
    let (key, request) = match admit(&mock, &uri, &headers, &body).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let sse = uri.query().unwrap_or("").split('&').any(|p| p == "alt=sse");
    match method {
        "generateContent" => generate(&mock, &key, &request, None),
        "streamGenerateContent" => generate(&mock, &key, &request, Some(sse)),
        "batchEmbedContents" => embed(&mock, &key, model, &request),
        _ => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("method {method} is not found"),
        ),
    }
}

async fn admit(
    mock: &MockUpstream,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), Response> {
    mock.record_headers(uri, headers);
    let query_key = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("key="));
    let secret = header_str(headers, "x-goog-api-key")
        .or(query_key)
        .ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            )
        })?;
    let key = key_label(secret);
    mock.count(&key, |s| s.requests += 1);
    if super::is_revoked(secret) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission denied: Consumer 'api_key' has been suspended.",
        ));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))?;
    if !request.is_object() {
        return Err(invalid(
            "Invalid JSON payload received. Expected an object.",
        ));
    }
    mock.record_body(&request, body);
    super::sleep_latency(&mock.options).await;
    if let Some(refusal) = mock.refusal(&key) {
        return Err(refused(refusal));
    }
    Ok((key, request))
}

/// "Unknown name" for the first field of `object` not in `known`.
fn unknown_field(object: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(name) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

/// The checks on a `generateContent` body (see the module doc).
fn check_request(mock: &MockUpstream, request: &Map<String, Value>) -> Result<(), String> {
    unknown_field(request, &REQUEST_FIELDS, "")?;
    if let Some(config) = request.get("generationConfig") {
        let config = config
            .as_object()
            .ok_or_else(|| String::from("generationConfig must be an object"))?;
        unknown_field(config, &GENERATION_FIELDS, "generation_config")?;
        if config.contains_key("responseSchema") && config.contains_key("responseJsonSchema") {
            return Err(String::from(
                "responseSchema and responseJsonSchema are mutually exclusive",
            ));
        }
    }
    let contents = request
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            String::from("* GenerateContentRequest.contents: contents is not specified")
        })?;
    for (i, content) in contents.iter().enumerate() {
        let content = content
            .as_object()
            .ok_or_else(|| format!("contents[{i}] must be an object"))?;
        unknown_field(content, &["role", "parts"], &format!("contents[{i}]"))?;
        let role = content.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "model" {
            return Err(format!(
                "Please use a valid role: user, model. (contents[{i}].role)"
            ));
        }
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
                )
            })?;
        for (j, part) in parts.iter().enumerate() {
            check_part(mock, part, role, &format!("contents[{i}].parts[{j}]"))?;
        }
    }
    Ok(())
}

fn check_part(mock: &MockUpstream, part: &Value, role: &str, at: &str) -> Result<(), String> {
    let part = part
        .as_object()
        .ok_or_else(|| format!("{at} must be an object"))?;
    let known: Vec<&str> = PART_DATA.iter().chain(PART_META.iter()).copied().collect();
    unknown_field(part, &known, at)?;
    let kinds = PART_DATA.iter().filter(|k| part.contains_key(**k)).count();
    if kinds != 1 {
        return Err(format!(
            "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
        ));
    }
    if let Some(call) = part.get("functionCall") {
        if call.get("name").and_then(Value::as_str).is_none() {
            return Err(format!("* {at}.function_call.name: Name cannot be empty."));
        }
        let signed = part
            .get("thoughtSignature")
            .and_then(Value::as_str)
            .is_some_and(|s| mock_signature_known(mock, s));
        if role == "model" && !signed {
            return Err(format!(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {at}.",
                call.get("name").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    if let Some(response) = part.get("functionResponse")
        && (response.get("name").and_then(Value::as_str).is_none()
            || !response.get("response").is_some_and(Value::is_object))
    {
        return Err(format!(
            "* {at}.function_response: name and an object response are required."
        ));
    }
    if let Some(inline) = part.get("inlineData") {
        let data = inline.get("data").and_then(Value::as_str).unwrap_or("");
        if inline.get("mimeType").and_then(Value::as_str).is_none()
            || base64::engine::general_purpose::STANDARD
                .decode(data)
                .is_err()
        {
            return Err(format!(
                "* {at}.inline_data: a mimeType and base64 data are required."
            ));
        }
    }
    Ok(())
}

/// Signatures the mock hands out: base64 of `mock-signature-{n}`.
fn mock_signature(n: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("mock-signature-{n}"))
}

fn mock_signature_known(_mock: &MockUpstream, signature: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|s| s.starts_with("mock-signature-"))
}

/// Words of the text parts of `contents` (or of one content).
fn words_of(value: &Value) -> u64 {
    match value {
        Value::Array(items) => items.iter().map(words_of).sum(),
        Value::Object(map) => match map.get("text").and_then(Value::as_str) {
            Some(text) => text.split_whitespace().count() as u64,
            None => map.get("parts").map_or(0, words_of),
        },
        _ => 0,
    }
}

/// Cached tokens: the words of the longest run of leading turns answered before.
fn cached_tokens(mock: &MockUpstream, contents: &[Value]) -> u64 {
    let mut running = String::new();
    let prefixes: Vec<String> = contents
        .iter()
        .map(|c| {
            running.push_str(&c.to_string());
            super::sha256_hex(format!("gemini\0{running}").as_bytes())
        })
        .collect();
    mock.cache_lookup(&prefixes)
        .map_or(0, |hit| contents[..=hit].iter().map(words_of).sum())
}

/// The function to call, if the request asks for one (see the module doc).
fn function_to_call(request: &Value) -> Option<String> {
    let declared: Vec<&str> = request
        .get("tools")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .filter_map(|d| d.get("name").and_then(Value::as_str))
        .collect();
    let config = request.pointer("/toolConfig/functionCallingConfig");
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let allowed = config
        .and_then(|c| c.get("allowedFunctionNames"))
        .and_then(Value::as_array)
        .and_then(|names| names.first())
        .and_then(Value::as_str);
    let first = allowed.or_else(|| declared.first().copied())?;
    let wanted = match mode {
        "NONE" => false,
        "ANY" => true,
        _ => last_user_asks_for_weather(request),
    };
    wanted.then(|| first.to_owned())
}

fn last_user_asks_for_weather(request: &Value) -> bool {
    let last = request
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last());
    let Some(last) = last.filter(|c| c.get("role").and_then(Value::as_str) == Some("user")) else {
        return false;
    };
    let has_response = last
        .get("parts")
        .and_then(Value::as_array)
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    !has_response && last.to_string().to_ascii_lowercase().contains("weather")
}

/// One `GenerateContentResponse` (chunk).
fn response(parts: Value, finish: Option<&str>, usage: &Value, id: &str) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "mock", "responseId": id})
}

/// `generateContent` (`stream`: `None`), or `streamGenerateContent` (`Some(sse)`).
fn generate(mock: &MockUpstream, key: &str, request: &Value, stream: Option<bool>) -> Response {
    let Some(object) = request.as_object() else {
        return invalid("Invalid JSON payload received.");
    };
    if let Err(message) = check_request(mock, object) {
        return invalid(message);
    }
    let contents = request
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let prompt = words_of(&Value::Array(contents.to_vec()))
        + request.get("systemInstruction").map_or(0, words_of);
    let cached = cached_tokens(mock, contents);
    let config = request.get("generationConfig");
    let max = config
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(super::REPLY.len() as u64);
    let thoughts = match config
        .and_then(|c| c.pointer("/thinkingConfig/thinkingBudget"))
        .and_then(Value::as_i64)
    {
        Some(budget) if budget > 0 => 4,
        _ => 0,
    };
    let json_out = config
        .and_then(|c| c.get("responseMimeType"))
        .and_then(Value::as_str)
        == Some("application/json");
    let call = function_to_call(request);
    let words = reply(max);
    let candidates = if call.is_some() {
        1
    } else {
        words.len() as u64
    };
    mock.count(key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
        s.completion_tokens += candidates + thoughts;
        s.cache_read_tokens += cached;
    });
    let id = format!("mock{:06}", mock.next_id());
    let usage = |out: u64| {
        let mut u = json!({"promptTokenCount": prompt, "candidatesTokenCount": out,
            "totalTokenCount": prompt + out + thoughts});
        if thoughts > 0 {
            u["thoughtsTokenCount"] = json!(thoughts);
        }
        if cached > 0 {
            u["cachedContentTokenCount"] = json!(cached);
        }
        u
    };
    let mut chunks = Vec::new();
    if let Some(name) = call {
        let part = json!({"functionCall": {"name": name, "args": {}},
            "thoughtSignature": mock_signature(mock.next_id())});
        chunks.push(response(json!([part]), Some("STOP"), &usage(1), &id));
    } else if json_out {
        let text = json!({"reply": words.join(" ")}).to_string();
        chunks.push(response(
            json!([{"text": text}]),
            Some("STOP"),
            &usage(candidates),
            &id,
        ));
    } else if stream.is_some() {
        let last = words.len().saturating_sub(1);
        for (i, word) in words.iter().enumerate() {
            let text = if i == last {
                (*word).to_owned()
            } else {
                format!("{word} ")
            };
            let finish = (i == last).then_some("STOP");
            let part = json!([{"text": text}]);
            chunks.push(response(part, finish, &usage(i as u64 + 1), &id));
        }
    } else {
        chunks.push(response(
            json!([{"text": words.join(" ")}]),
            Some("STOP"),
            &usage(candidates),
            &id,
        ));
    }
    match stream {
        None => axum::Json(chunks.swap_remove(0)).into_response(),
        Some(true) => {
            let events = chunks
                .iter()
                .map(|c| format!("data: {c}\r\n\r\n"))
                .collect();
            event_stream(&mock.options, events)
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "stream"))
        }
        Some(false) => axum::Json(Value::Array(chunks)).into_response(),
    }
}

/// `batchEmbedContents`.
fn embed(mock: &MockUpstream, key: &str, model: &str, request: &Value) -> Response {
    let Some(object) = request.as_object() else {
        return invalid("Invalid JSON payload received.");
    };
    if let Err(message) = unknown_field(object, &["requests"], "") {
        return invalid(message);
    }
    let Some(requests) = object
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return invalid("* BatchEmbedContentsRequest.requests: requests is not specified");
    };
    let name = format!("models/{model}");
    let mut embeddings = Vec::new();
    let mut tokens = 0;
    for (i, one) in requests.iter().enumerate() {
        if one.get("model").and_then(Value::as_str) != Some(name.as_str()) {
            return invalid(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: the model must be {name}, as in the URL"
            ));
        }
        let Some(content) = one.get("content") else {
            return invalid(format!(
                "* BatchEmbedContentsRequest.requests[{i}].content: content is not specified"
            ));
        };
        let text: Vec<&str> = content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let text = text.join(" ");
        tokens += text.split_whitespace().count() as u64;
        let mut values = super::openai::vector(&text);
        if let Some(d) = one.get("outputDimensionality").and_then(Value::as_u64) {
            values.truncate(usize::try_from(d).unwrap_or(usize::MAX));
        }
        embeddings.push(json!({"values": values}));
    }
    mock.count(key, |s| {
        s.ok += 1;
        s.prompt_tokens += tokens;
    });
    axum::Json(json!({"embeddings": embeddings})).into_response()
}
