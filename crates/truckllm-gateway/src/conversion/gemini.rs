//! OpenAI Chat ↔ Google Gemini `generateContent` (AI Studio, `v1beta`): requests, whole
//! answers, usage, and embeddings (`batchEmbedContents`). The stream is in
//! [`super::gemini_stream`].
//!
//! Request (Chat → Gemini):
//! - `system`/`developer` messages become `systemInstruction` text parts, in order (their
//!   place in the conversation is lost); `assistant` is role `model`; consecutive turns of
//!   one role are merged. `tool` messages become `functionResponse` parts of a user turn (the
//!   function's name looked up from the assistant's call; a JSON-object result is the
//!   `response` as is, anything else `{"result": …}`).
//! - Text parts are text parts; `data:` image URLs and inline files (PDFs) `inlineData`;
//!   http(s) image URLs are refused (Gemini fetches only its own file URIs).
//! - Function `tools` become one `functionDeclarations` tool with the JSON Schema as
//!   `parametersJsonSchema` (lossless); `tool_choice` `none`/`auto`/`required`/a named
//!   function → `toolConfig.functionCallingConfig` `NONE`/`AUTO`/`ANY`/`ANY` with
//!   `allowedFunctionNames`.
//! - `generationConfig`: `temperature`, `top_p`, `max_completion_tokens`/`max_tokens` →
//!   `maxOutputTokens`, `stop` → `stopSequences`, `presence_penalty`, `frequency_penalty`,
//!   `seed`; `response_format` `json_object` → `responseMimeType: application/json`,
//!   `json_schema` → that and `responseJsonSchema` (its `name` and `strict` dropped);
//!   `reasoning_effort` → `thinkingConfig.thinkingBudget` (`none` 0, `minimal` 512, `low`
//!   1024, `medium` 8192, `high` 24576) with `includeThoughts` unless `none` (models that must
//!   think, such as 2.5 Pro, refuse a budget of 0: their 400 reaches the client).
//! - Refused: `n` > 1, `logprobs`, audio, non-function tools, the legacy `functions`, tool
//!   call arguments that are not a JSON object. Dropped: `user`, `metadata`, `store`,
//!   `service_tier`, `stream_options`, `parallel_tool_calls`, `logit_bias`,
//!   `prompt_cache_key` (Gemini caches implicitly).
//!
//! Answer (Gemini → Chat): the first candidate's text parts are the content, `thought` parts
//! `reasoning_content`, `functionCall` parts `tool_calls`. A call's `thoughtSignature` rides
//! in its tool call id (`call_…__ts_…`, URL-safe base64) and is restored on the way back, so
//! Gemini 3's multi-turn tool use keeps working through clients that echo ids. `finishReason`
//! `STOP` → `stop` (`tool_calls` when there are calls), `MAX_TOKENS` → `length`, the safety
//! family (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
//! `IMAGE_SAFETY`, `LANGUAGE`) and a prompt blocked by `promptFeedback` → `content_filter`,
//! anything else → `stop`. Safety ratings and citations are dropped.
//!
//! Usage: `promptTokenCount` (cached tokens included, as OpenAI counts them) plus
//! `toolUsePromptTokenCount` is the prompt; `candidatesTokenCount` plus `thoughtsTokenCount`
//! the completion (OpenAI counts reasoning in it); `cachedContentTokenCount` the cache reads;
//! `thoughtsTokenCount` the reasoning tokens.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::{Unsupported, now_seconds, text_of};
use crate::usage::Usage;

/// The separator between a tool call's id and the thought signature it carries.
const SIGNATURE_MARK: &str = "__ts_";

type Object = Map<String, Value>;

/// A Chat request as a Gemini `generateContent` body (the model goes in the URL).
pub fn chat_to_gemini_request(chat: &Object) -> Result<Object, Unsupported> {
    refuse_unsupported(chat)?;
    let messages = chat
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("`messages` must be a list"))?;
    let mut body = Object::new();
    let (system, contents) = contents(messages)?;
    if contents.is_empty() {
        return Err(Unsupported::new(
            "Gemini needs at least one user or assistant message",
        ));
    }
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = tools(chat)? {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(chat.get("tool_choice"))? {
        body.insert("toolConfig".into(), config);
    }
    let config = generation_config(chat)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(body)
}

fn refuse_unsupported(chat: &Object) -> Result<(), Unsupported> {
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(Unsupported::new("`n` > 1 is not supported for Gemini"));
    }
    if chat.get("logprobs").and_then(Value::as_bool) == Some(true)
        || chat.get("top_logprobs").is_some_and(|v| !v.is_null())
    {
        return Err(Unsupported::new("`logprobs` is not supported for Gemini"));
    }
    if chat.get("audio").is_some_and(|v| !v.is_null())
        || chat
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x != "text"))
    {
        return Err(Unsupported::new("audio output is not supported for Gemini"));
    }
    if chat.contains_key("functions") || chat.contains_key("function_call") {
        return Err(Unsupported::new(
            "the legacy `functions`/`function_call` are not supported; use `tools`",
        ));
    }
    Ok(())
}

/// `systemInstruction` parts and `contents`, from Chat messages.
fn contents(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), Unsupported> {
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    let mut call_names: Vec<(String, String)> = Vec::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let (role, parts) = match role {
            "system" | "developer" => {
                let text = text_of(message.get("content"));
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", user_parts(message.get("content"))?),
            "assistant" => ("model", assistant_parts(message, &mut call_names)?),
            "tool" => ("user", vec![function_response(message, &call_names)?]),
            other => {
                return Err(Unsupported::new(format!(
                    "message role {other:?} is not supported for Gemini"
                )));
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if last == role => existing.extend(parts),
            _ => turns.push((role.to_owned(), parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect();
    Ok((system, contents))
}

fn user_parts(content: Option<&Value>) -> Result<Vec<Value>, Unsupported> {
    match content {
        Some(Value::String(text)) if !text.is_empty() => Ok(vec![json!({ "text": text })]),
        Some(Value::Array(parts)) => parts.iter().filter_map(user_part).collect(),
        _ => Ok(Vec::new()),
    }
}

fn user_part(part: &Value) -> Option<Result<Value, Unsupported>> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => {
            let text = part.get("text").and_then(Value::as_str).unwrap_or("");
            (!text.is_empty()).then(|| Ok(json!({ "text": text })))
        }
        "image_url" => {
            let url = part
                .pointer("/image_url/url")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(inline_data(url, "image URLs"))
        }
        "file" => {
            let data = part
                .pointer("/file/file_data")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(inline_data(data, "files"))
        }
        other => Some(Err(Unsupported::new(format!(
            "content part {other:?} is not supported for Gemini"
        )))),
    }
}

/// A `data:{mime};base64,{data}` URL as an `inlineData` part.
fn inline_data(url: &str, what: &str) -> Result<Value, Unsupported> {
    let parsed = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(head, data)| head.strip_suffix(";base64").map(|mime| (mime, data)));
    match parsed {
        Some((mime, data)) if !mime.is_empty() => {
            Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }))
        }
        _ => Err(Unsupported::new(format!(
            "{what} must be base64 `data:` URLs for Gemini (it does not fetch other URLs)"
        ))),
    }
}

fn assistant_parts(
    message: &Value,
    call_names: &mut Vec<(String, String)>,
) -> Result<Vec<Value>, Unsupported> {
    let mut parts = Vec::new();
    let text = text_of(message.get("content"));
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| Unsupported::new("a tool call needs a function name"))?;
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|_| {
                Unsupported::new("tool call arguments must be a JSON object for Gemini")
            })?
        };
        if !args.is_object() {
            return Err(Unsupported::new(
                "tool call arguments must be a JSON object for Gemini",
            ));
        }
        let mut part = json!({ "functionCall": { "name": name, "args": args } });
        if let Some(signature) = signature_of(id) {
            part["thoughtSignature"] = Value::String(signature);
        }
        parts.push(part);
        call_names.push((id.to_owned(), name.to_owned()));
    }
    Ok(parts)
}

fn function_response(
    message: &Value,
    call_names: &[(String, String)],
) -> Result<Value, Unsupported> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = call_names
        .iter()
        .rev()
        .find(|(call, _)| call == id)
        .map(|(_, name)| name.clone())
        .ok_or_else(|| {
            Unsupported::new(format!(
                "tool result {id:?} answers no earlier tool call; Gemini needs the function's name"
            ))
        })?;
    let text = text_of(message.get("content"));
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => json!({ "result": other }),
        Err(_) => json!({ "result": text }),
    };
    Ok(json!({ "functionResponse": { "name": name, "response": response } }))
}

fn tools(chat: &Object) -> Result<Option<Value>, Unsupported> {
    let Some(tools) = chat.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut declarations = Vec::new();
    for tool in tools {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Unsupported::new(
                "only function tools are supported for Gemini",
            ));
        }
        let function = tool.get("function").unwrap_or(&Value::Null);
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Unsupported::new("a function tool needs a name"))?;
        let mut declaration = json!({ "name": name });
        if let Some(description) = function.get("description").filter(|d| d.is_string()) {
            declaration["description"] = description.clone();
        }
        if let Some(parameters) = function.get("parameters").filter(|p| p.is_object()) {
            declaration["parametersJsonSchema"] = parameters.clone();
        }
        declarations.push(declaration);
    }
    Ok((!declarations.is_empty()).then(|| json!([{ "functionDeclarations": declarations }])))
}

fn tool_config(choice: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let config = |mode: &str| Some(json!({ "functionCallingConfig": { "mode": mode } }));
    Ok(match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => config("NONE"),
            "auto" => config("AUTO"),
            "required" => config("ANY"),
            other => {
                return Err(Unsupported::new(format!(
                    "tool_choice {other:?} is not supported"
                )));
            }
        },
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| Unsupported::new("tool_choice must name a function"))?;
            Some(json!({ "functionCallingConfig": {
                "mode": "ANY",
                "allowedFunctionNames": [name],
            }}))
        }
    })
}

fn generation_config(chat: &Object) -> Result<Object, Unsupported> {
    let mut config = Object::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ] {
        if let Some(value) = chat.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), value.clone());
        }
    }
    let cap = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| chat.get(*k).filter(|v| v.is_number()));
    if let Some(cap) = cap {
        config.insert("maxOutputTokens".into(), cap.clone());
    }
    match chat.get("stop") {
        Some(Value::String(s)) if !s.is_empty() => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    response_format(chat.get("response_format"), &mut config)?;
    if let Some(budget) = thinking_budget(chat.get("reasoning_effort"))? {
        // Thoughts come back only when asked for: without `includeThoughts` the answer holds
        // no `thought` parts and `reasoning_content` would stay empty.
        let thinking = if budget > 0 {
            json!({ "thinkingBudget": budget, "includeThoughts": true })
        } else {
            json!({ "thinkingBudget": budget })
        };
        config.insert("thinkingConfig".into(), thinking);
    }
    Ok(config)
}

fn response_format(format: Option<&Value>, config: &mut Object) -> Result<(), Unsupported> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(());
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    Unsupported::new("`response_format.json_schema.schema` is required")
                })?;
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        _ => return Err(Unsupported::new("unknown `response_format` type")),
    }
    Ok(())
}

fn thinking_budget(effort: Option<&Value>) -> Result<Option<u64>, Unsupported> {
    Ok(match effort.and_then(Value::as_str) {
        None => None,
        Some("none") => Some(0),
        Some("minimal") => Some(512),
        Some("low") => Some(1024),
        Some("medium") => Some(8192),
        Some("high") => Some(24576),
        Some(other) => {
            return Err(Unsupported::new(format!(
                "reasoning_effort {other:?} is not supported"
            )));
        }
    })
}

/// A Gemini `generateContent` answer as a Chat completion named `model`.
pub fn gemini_to_chat_response(body: &Value, model: &str) -> Result<Value, Unsupported> {
    let candidate = body.pointer("/candidates/0");
    if candidate.is_none() && body.get("promptFeedback").is_none() {
        return Err(Unsupported::new("the provider's answer has no candidates"));
    }
    let parts = candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let read = read_parts(parts, 0, body.get("responseId").and_then(Value::as_str));
    let mut message = json!({
        "role": "assistant",
        "content": if read.text.is_empty() && !read.calls.is_empty() { Value::Null } else { Value::String(read.text) },
    });
    if !read.thoughts.is_empty() {
        message["reasoning_content"] = Value::String(read.thoughts);
    }
    if !read.calls.is_empty() {
        // A whole message's calls carry no stream `index`.
        let calls = read
            .calls
            .iter()
            .cloned()
            .map(|mut call| {
                if let Some(call) = call.as_object_mut() {
                    call.remove("index");
                }
                call
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason(
        candidate
            .and_then(|c| c.get("finishReason"))
            .and_then(Value::as_str),
        !read.calls.is_empty(),
        body.pointer("/promptFeedback/blockReason").is_some(),
    );
    let usage = usage_of(body).unwrap_or_default();
    Ok(json!({
        "id": chat_id(body),
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish, "logprobs": null }],
        "usage": openai_usage(&usage),
    }))
}

/// `chatcmpl-` and Gemini's `responseId`.
pub(super) fn chat_id(body: &Value) -> String {
    let id = body.get("responseId").and_then(Value::as_str).unwrap_or("");
    format!("chatcmpl-{id}")
}

/// What the parts of a candidate say.
#[derive(Debug, Default)]
pub(super) struct ReadParts {
    pub text: String,
    pub thoughts: String,
    /// Chat `tool_calls` entries (with `index` from `first_index` on).
    pub calls: Vec<Value>,
}

/// Reads candidate parts; tool calls are numbered from `first_index` (streams number them
/// across events), their ids made unique with the answer's `responseId`.
pub(super) fn read_parts(parts: &[Value], first_index: usize, response: Option<&str>) -> ReadParts {
    let mut read = ReadParts::default();
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            let index = first_index + read.calls.len();
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            let signature = part.get("thoughtSignature").and_then(Value::as_str);
            read.calls.push(json!({
                "index": index,
                "id": call_id(call.get("id").and_then(Value::as_str), response, index, signature),
                "type": "function",
                "function": { "name": name, "arguments": args.to_string() },
            }));
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                read.thoughts.push_str(text);
            } else {
                read.text.push_str(text);
            }
        }
    }
    read
}

/// A tool call id: Gemini's own when it sends one, else `call_{responseId}_{index}`; with
/// the call's thought signature appended (URL-safe base64) so it comes back with the result.
fn call_id(
    own: Option<&str>,
    response: Option<&str>,
    index: usize,
    signature: Option<&str>,
) -> String {
    let safe = |id: &&str| {
        !id.is_empty()
            && !id.contains(SIGNATURE_MARK)
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let base = match (own.filter(safe), response.filter(safe)) {
        (Some(own), _) => own.to_owned(),
        (None, Some(response)) => format!("call_{response}_{index}"),
        (None, None) => format!("call_{index}"),
    };
    let signature = signature
        .and_then(|s| STANDARD.decode(s).ok())
        .map(|bytes| URL_SAFE_NO_PAD.encode(bytes));
    match signature {
        Some(signature) => format!("{base}{SIGNATURE_MARK}{signature}"),
        None => base,
    }
}

/// The thought signature a tool call id carries, as Gemini sent it (standard base64).
fn signature_of(id: &str) -> Option<String> {
    let (_, encoded) = id.split_once(SIGNATURE_MARK)?;
    URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .map(|bytes| STANDARD.encode(bytes))
}

/// Gemini `finishReason` → Chat `finish_reason`.
pub(super) fn finish_reason(reason: Option<&str>, calls: bool, blocked: bool) -> &'static str {
    match reason {
        _ if blocked && reason.is_none() => "content_filter",
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
            | "LANGUAGE",
        ) => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// The neutral usage of a Gemini answer's `usageMetadata` (see the module doc).
pub fn usage_of(body: &Value) -> Option<Usage> {
    let meta = body.get("usageMetadata")?;
    let n = |key: &str| meta.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let prompt = n("promptTokenCount") + n("toolUsePromptTokenCount");
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount") + thoughts;
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cache_read_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0.0,
        reasoning_tokens: thoughts,
    })
}

/// An OpenAI `usage` object with the cached and reasoning details.
pub(super) fn openai_usage(usage: &Usage) -> Value {
    let count = |v: f64| v.max(0.0).round() as u64;
    json!({
        "prompt_tokens": count(usage.prompt_tokens),
        "completion_tokens": count(usage.completion_tokens),
        "total_tokens": count(usage.total()),
        "prompt_tokens_details": { "cached_tokens": count(usage.cache_read_tokens) },
        "completion_tokens_details": { "reasoning_tokens": count(usage.reasoning_tokens) },
    })
}

/// An OpenAI embeddings request as a `batchEmbedContents` body for `model`.
pub fn embeddings_to_gemini_request(request: &Object, model: &str) -> Result<Object, Unsupported> {
    let texts: Vec<&str> = match request.get("input") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    Unsupported::new("Gemini embeds text: `input` must be strings, not tokens")
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(Unsupported::new(
                "`input` must be a string or a list of strings",
            ));
        }
    };
    let name = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    let dimensions = request.get("dimensions").filter(|d| d.is_u64());
    let requests = texts
        .into_iter()
        .map(|text| {
            let mut one = json!({ "model": name, "content": { "parts": [{ "text": text }] } });
            if let Some(d) = dimensions {
                one["outputDimensionality"] = d.clone();
            }
            one
        })
        .collect();
    let mut body = Object::new();
    body.insert("requests".into(), Value::Array(requests));
    Ok(body)
}

/// A `batchEmbedContents` answer as an OpenAI embeddings list named `model`; `base64`: the
/// vectors as little-endian `f32`s in base64 (`encoding_format: base64`). Gemini reports no
/// usage for embeddings, so the list carries none.
pub fn gemini_to_embeddings_response(
    body: &Value,
    model: &str,
    base64: bool,
) -> Result<Value, Unsupported> {
    let embeddings = body
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("the provider's answer has no `embeddings`"))?;
    let data = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| Unsupported::new("an embedding has no `values`"))?;
            let embedding = if base64 {
                let bytes: Vec<u8> = values
                    .iter()
                    .flat_map(|v| (v.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                    .collect();
                Value::String(STANDARD.encode(bytes))
            } else {
                Value::Array(values.clone())
            };
            Ok(json!({ "object": "embedding", "index": i, "embedding": embedding }))
        })
        .collect::<Result<Vec<_>, Unsupported>>()?;
    Ok(json!({ "object": "list", "data": data, "model": model }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Object {
        match value {
            Value::Object(map) => map,
            _ => Object::new(),
        }
    }

    #[test]
    fn thought_signatures_ride_in_tool_call_ids_and_come_back() {
        let id = call_id(None, Some("r1"), 2, Some("c2lnbmF0dXJlKysvLw=="));
        assert!(id.starts_with("call_r1_2__ts_"), "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "valid as an Anthropic tool_use id too: {id}"
        );
        assert_eq!(signature_of(&id).as_deref(), Some("c2lnbmF0dXJlKysvLw=="));
        assert_eq!(signature_of("call_1"), None);
        assert_eq!(call_id(Some("bad id!"), None, 0, None), "call_0");
    }

    #[test]
    fn a_tool_result_needs_its_call_and_unsupported_input_is_refused() {
        let orphan = object(json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_9", "content": "x"}
        ]}));
        assert!(chat_to_gemini_request(&orphan).is_err());
        let remote_image = object(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        ]}]}));
        assert!(chat_to_gemini_request(&remote_image).is_err());
        let many = object(json!({"n": 2, "messages": [{"role": "user", "content": "hi"}]}));
        assert!(chat_to_gemini_request(&many).is_err());
        let only_system = object(json!({"messages": [{"role": "system", "content": "be"}]}));
        assert!(chat_to_gemini_request(&only_system).is_err());
    }

    #[test]
    fn usage_counts_thoughts_as_completion_and_cache_as_prompt() {
        let body = json!({"usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
            "candidatesTokenCount": 7, "thoughtsTokenCount": 5, "totalTokenCount": 112}});
        let u = usage_of(&body).expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total()),
            (100.0, 12.0, 112.0)
        );
        assert_eq!((u.cache_read_tokens, u.reasoning_tokens), (60.0, 5.0));
    }

    #[test]
    fn embeddings_go_in_one_batch_and_come_back_as_float_or_base64() {
        let request = object(json!({"input": ["a b", "c"], "dimensions": 4}));
        let body = embeddings_to_gemini_request(&request, "text-embedding-004").expect("ok");
        assert_eq!(body["requests"][1]["model"], "models/text-embedding-004");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "c");
        assert_eq!(body["requests"][0]["outputDimensionality"], 4);
        let tokens = object(json!({"input": [[1, 2]]}));
        assert!(embeddings_to_gemini_request(&tokens, "m").is_err());
        let answer = json!({"embeddings": [{"values": [0.5, -1.0]}]});
        let floats = gemini_to_embeddings_response(&answer, "m", false).expect("ok");
        assert_eq!(floats["data"][0]["embedding"], json!([0.5, -1.0]));
        let packed = gemini_to_embeddings_response(&answer, "m", true).expect("ok");
        let bytes = STANDARD
            .decode(packed["data"][0]["embedding"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(bytes[..4], 0.5f32.to_le_bytes());
        assert_eq!(bytes[4..], (-1.0f32).to_le_bytes());
    }
}
