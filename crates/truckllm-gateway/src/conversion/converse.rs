//! A Chat Completions client in front of AWS Bedrock's Converse API: the chat request as a
//! Converse request and the Converse response back as a `chat.completion` (Anthropic Messages
//! clients come through Chat both ways). The model is not in a Converse body (it is in the
//! URL), nor is streaming (`/converse-stream` is another operation); Bedrock's error bodies
//! (`{"message": …}`) are read by [`super::native`].
//!
//! # Lossy translations
//!
//! Request:
//! - `system`/`developer` messages become top-level `system` blocks (their position is lost);
//!   consecutive messages of one role are merged (Converse requires alternation); `tool`
//!   messages become `toolResult` blocks of a user turn; blank texts are left out (Converse
//!   refuses them); `reasoning_content` on assistant turns is dropped.
//! - `max_completion_tokens` (else `max_tokens`), `temperature`, `top_p` and `stop` go to
//!   `inferenceConfig`; penalties, `seed`, `logit_bias`, `user`, `metadata`, `store`,
//!   `service_tier`, `reasoning_effort`, `parallel_tool_calls` and `stream_options` are
//!   dropped.
//! - `tool_choice` `auto`/`required`/a function → `auto`/`any`/`tool`; `none` has no Converse
//!   form: the tools stay (earlier tool turns need them) and the model chooses. Tool call ids
//!   are made valid for Converse (`[a-zA-Z0-9_-]{1,64}`, the same in `toolUse` and
//!   `toolResult`).
//! - A part's `cache_control` becomes a `cachePoint` block after it. Images must be
//!   `data:image/{png,jpeg,gif,webp};base64,` URLs (Converse takes bytes only); inline PDFs
//!   become `document` blocks named from the file name (in the characters Converse allows).
//! - `response_format` `json_schema` becomes `outputConfig.textFormat` (`json_schema`, the
//!   schema as a JSON string, its `name` and `description`; `strict` is implied).
//! - Refused: `n` > 1, `logprobs`, `json_object`, audio in or out, image URLs, uploaded
//!   files, the legacy `functions`, non-function tools, tool arguments that are not JSON.
//!
//! Response:
//! - `reasoningContent` text becomes `reasoning_content` (signatures and redacted reasoning
//!   are dropped); citations, images and other blocks are dropped.
//! - `stopReason` `end_turn`/`stop_sequence` → `stop`, `max_tokens`/
//!   `model_context_window_exceeded` → `length`, `tool_use` → `tool_calls`,
//!   `guardrail_intervened`/`content_filtered` → `content_filter`.
//! - Usage: `prompt_tokens` = `inputTokens` + cache reads + cache writes, cache reads as
//!   `cached_tokens`. Converse answers carry no id: the completion gets a fresh `chatcmpl-` id.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use super::{Unsupported, now_seconds, openai_usage_json};
use crate::providers::bedrock;
use crate::usage::Usage;

/// OpenAI Chat request → Converse request.
pub fn chat_to_converse_request(
    chat: &Map<String, Value>,
) -> Result<Map<String, Value>, Unsupported> {
    refuse_inexpressible(chat)?;
    let (system, messages) = convert_messages(chat.get("messages"))?;
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(chat);
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = tool_config(chat)? {
        out.insert("toolConfig".into(), tools);
    }
    if let Some(format) = output_config(chat.get("response_format"))? {
        out.insert("outputConfig".into(), format);
    }
    Ok(out)
}

/// Refuses the fields Converse has no way to honour.
fn refuse_inexpressible(chat: &Map<String, Value>) -> Result<(), Unsupported> {
    let refuse = |what: &str| {
        Err(Unsupported::new(format!(
            "{what} is not supported by Bedrock's Converse API"
        )))
    };
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return refuse("`n` > 1 (several choices)");
    }
    if chat.get("logprobs").and_then(Value::as_bool) == Some(true)
        || chat.get("top_logprobs").is_some_and(|v| !v.is_null())
    {
        return refuse("`logprobs`");
    }
    let format = chat.get("response_format").and_then(|f| f.get("type"));
    if format.and_then(Value::as_str) == Some("json_object") {
        return refuse("`response_format` `json_object` (use `json_schema`)");
    }
    let audio_out = chat
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|v| v == "audio"));
    if audio_out || chat.get("audio").is_some_and(|v| !v.is_null()) {
        return refuse("audio output");
    }
    if chat.get("functions").is_some_and(|v| !v.is_null())
        || chat.get("function_call").is_some_and(|v| !v.is_null())
    {
        return refuse("the legacy `functions`/`function_call` (use `tools`/`tool_choice`)");
    }
    Ok(())
}

/// `maxTokens`, `temperature`, `topP`, `stopSequences`.
fn inference_config(chat: &Map<String, Value>) -> Map<String, Value> {
    let mut config = Map::new();
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| chat.get(*key).and_then(Value::as_u64));
    if let Some(max) = max {
        config.insert("maxTokens".into(), max.into());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(value) = chat.get(from).filter(|v| v.is_number()) {
            config.insert(to.into(), value.clone());
        }
    }
    let stops: Vec<Value> = match chat.get("stop") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .map(Value::from)
    .collect();
    if !stops.is_empty() {
        config.insert("stopSequences".into(), Value::Array(stops));
    }
    config
}

/// The conversation as `system` blocks and alternating user/assistant messages of content
/// blocks.
fn convert_messages(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), Unsupported> {
    let list = messages
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("`messages` must be a list"))?;
    let mut system = Vec::new();
    let mut out = Vec::new();
    for message in list {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content");
        match role {
            "system" | "developer" => system.extend(text_blocks(content, role)?),
            "user" => push_merged(&mut out, "user", user_blocks(content)?),
            "assistant" => push_merged(&mut out, "assistant", assistant_blocks(message)?),
            "tool" => push_merged(&mut out, "user", vec![tool_result(message)?]),
            other => {
                return Err(Unsupported::new(format!(
                    "the message role `{other}` is not supported by Bedrock's Converse API"
                )));
            }
        }
    }
    Ok((system, out))
}

/// Appends a message's blocks, merged into the previous message when it has the same role
/// (Converse requires alternation); messages left with no blocks are dropped.
fn push_merged(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    out.push(json!({ "role": role, "content": blocks }));
}

/// Text content (a string or text parts) as text blocks; empty texts are left out (Converse
/// refuses blank text), and a part's `cache_control` becomes a `cachePoint` after it.
fn text_blocks(content: Option<&Value>, role: &str) -> Result<Vec<Value>, Unsupported> {
    match content {
        Some(Value::String(text)) => Ok(text_block(text).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for part in parts {
                blocks.extend(text_part(part, role)?);
            }
            Ok(blocks)
        }
        _ => Ok(Vec::new()),
    }
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "text": text }))
}

fn text_part(part: &Value, role: &str) -> Result<Vec<Value>, Unsupported> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text = match kind {
        "text" => part.get("text"),
        "refusal" => part.get("refusal"),
        _ => None,
    };
    let Some(text) = text.and_then(Value::as_str) else {
        return Err(Unsupported::new(format!(
            "a `{role}` message may only contain text here, not `{kind}` parts"
        )));
    };
    Ok(with_cache_point(part, text_block(text)))
}

/// The block, followed by a `cachePoint` if the part asked for caching.
fn with_cache_point(part: &Value, block: Option<Value>) -> Vec<Value> {
    let mut blocks: Vec<Value> = block.into_iter().collect();
    if !blocks.is_empty() && part.get("cache_control").is_some_and(Value::is_object) {
        blocks.push(json!({ "cachePoint": { "type": "default" } }));
    }
    blocks
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, Unsupported> {
    match content {
        Some(Value::String(text)) => Ok(text_block(text).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for part in parts {
                blocks.extend(user_part(part)?);
            }
            Ok(blocks)
        }
        _ => Err(Unsupported::new("a user message needs `content`")),
    }
}

fn user_part(part: &Value) -> Result<Vec<Value>, Unsupported> {
    match part.get("type").and_then(Value::as_str).unwrap_or("") {
        "image_url" => {
            let url = part.get("image_url").and_then(|i| i.get("url").or(Some(i)));
            let block = image_block(url.and_then(Value::as_str).unwrap_or(""))?;
            Ok(with_cache_point(part, Some(block)))
        }
        "input_audio" => Err(Unsupported::new(
            "audio input is not supported by Bedrock's Converse API",
        )),
        "file" => Ok(vec![document_block(
            part.get("file").unwrap_or(&Value::Null),
        )?]),
        _ => text_part(part, "user"),
    }
}

/// A `data:image/…;base64,` URL as an image block; Converse takes images as bytes only (the
/// gateway does not fetch URLs for the provider).
fn image_block(url: &str) -> Result<Value, Unsupported> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(Unsupported::new(
            "Bedrock's Converse API takes images as bytes only: send a `data:image/…;base64,` URL",
        ));
    };
    let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
        Unsupported::new("an image `data:` URL must be base64 (`data:<type>;base64,…`)")
    })?;
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(Unsupported::new(format!(
                "Bedrock's Converse API takes png, jpeg, gif and webp images, not `{other}`"
            )));
        }
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

/// A `file` part with inline PDF data as a document block (named from the file name, in the
/// characters Converse allows); uploaded files (`file_id`) and other types are refused.
fn document_block(file: &Value) -> Result<Value, Unsupported> {
    let data = file.get("file_data").and_then(Value::as_str).unwrap_or("");
    let Some(data) = data.strip_prefix("data:application/pdf;base64,") else {
        return Err(Unsupported::new(
            "only inline PDF `file` parts (`file_data` as a `data:application/pdf;base64,` URL) are supported by Bedrock's Converse API",
        ));
    };
    let name = file
        .get("filename")
        .and_then(Value::as_str)
        .map(document_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "document".to_owned());
    Ok(json!({ "document": { "format": "pdf", "name": name, "source": { "bytes": data } } }))
}

/// A document name as Converse accepts it: letters, digits, single spaces, hyphens,
/// parentheses and square brackets (anything else becomes a space).
fn document_name(filename: &str) -> String {
    let mapped: String = filename
        .chars()
        .map(|c| match c {
            c if c.is_alphanumeric() => c,
            '-' | '(' | ')' | '[' | ']' => c,
            _ => ' ',
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An assistant turn as blocks: text, then tool uses. `reasoning_content` is dropped.
fn assistant_blocks(message: &Value) -> Result<Vec<Value>, Unsupported> {
    let mut blocks = text_blocks(message.get("content"), "assistant")?;
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        blocks.push(tool_use(call)?);
    }
    Ok(blocks)
}

fn tool_use(call: &Value) -> Result<Value, Unsupported> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| {
            Unsupported::new(format!(
                "the arguments of tool call `{id}` are not valid JSON"
            ))
        })?,
        Some(other) => other.clone(),
    };
    Ok(json!({ "toolUse": { "toolUseId": tool_id(id), "name": name, "input": input } }))
}

/// A tool call id as Converse accepts it (`[a-zA-Z0-9_-]{1,64}`): other characters become
/// `_`, the same in `toolUse` and `toolResult`.
fn tool_id(id: &str) -> String {
    let id: String = id
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if id.is_empty() { "_".to_owned() } else { id }
}

/// A `tool` message as a `toolResult` block (its text parts as text blocks).
fn tool_result(message: &Value) -> Result<Value, Unsupported> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut content: Vec<Value> = text_blocks(message.get("content"), "tool")?
        .into_iter()
        .filter(|b| b.get("text").is_some())
        .collect();
    // Converse wants at least one block; an empty tool output is an empty JSON object.
    if content.is_empty() {
        content.push(json!({ "json": {} }));
    }
    Ok(json!({ "toolResult": { "toolUseId": tool_id(id), "content": content } }))
}

/// `tools` and `tool_choice` as a `toolConfig`. `tool_choice: "none"` has no Converse form:
/// the tools stay (earlier tool turns need them) and the model chooses.
fn tool_config(chat: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(list) = chat.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    if list.is_empty() {
        return Ok(None);
    }
    let tools = list.iter().map(tool_spec).collect::<Result<Vec<_>, _>>()?;
    let mut config = json!({ "tools": tools });
    let choice = match chat.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "auto": {} })),
            "required" => Some(json!({ "any": {} })),
            "none" => None,
            other => return Err(Unsupported::new(format!("unknown `tool_choice` `{other}`"))),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| Unsupported::new("`tool_choice` must name a function"))?;
            Some(json!({ "tool": { "name": name } }))
        }
        Some(_) => {
            return Err(Unsupported::new(
                "`tool_choice` must be a string or an object",
            ));
        }
    };
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

fn tool_spec(tool: &Value) -> Result<Value, Unsupported> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    let function = tool
        .get("function")
        .filter(|_| kind == "function")
        .ok_or_else(|| {
            Unsupported::new(format!(
                "tools of type `{kind}` are not supported by Bedrock's Converse API"
            ))
        })?;
    let schema = function
        .get("parameters")
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    let mut spec = json!({
        "name": function.get("name").cloned().unwrap_or_default(),
        "inputSchema": { "json": schema },
    });
    if let Some(description) = function
        .get("description")
        .filter(|d| d.as_str().is_some_and(|d| !d.is_empty()))
    {
        spec["description"] = description.clone();
    }
    if function.get("strict").and_then(Value::as_bool) == Some(true) {
        spec["strict"] = true.into();
    }
    Ok(json!({ "toolSpec": spec }))
}

/// `response_format` `json_schema` as Converse's structured output (`outputConfig.textFormat`,
/// the schema as a JSON string, as the API takes it).
fn output_config(format: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let Some(format) = format.filter(|f| f.get("type") == Some(&json!("json_schema"))) else {
        return Ok(None);
    };
    let definition = format.get("json_schema").unwrap_or(&Value::Null);
    let schema = definition
        .get("schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            Unsupported::new("`response_format` `json_schema` needs `json_schema.schema`")
        })?;
    let mut json_schema = json!({ "schema": schema.to_string() });
    for key in ["name", "description"] {
        if let Some(value) = definition.get(key).filter(|v| v.is_string()) {
            json_schema[key] = value.clone();
        }
    }
    Ok(Some(json!({ "textFormat": {
        "type": "json_schema",
        "structure": { "jsonSchema": json_schema },
    }})))
}

/// Converse `stopReason` → OpenAI `finish_reason`.
pub(super) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// A fresh `chatcmpl-` id (Converse answers carry none in the body).
pub(super) fn chat_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-bedrock-{:x}{n:04x}", now_seconds())
}

/// A Converse `toolUse` block as an OpenAI tool call (arguments as a JSON string).
fn tool_call(tool_use: &Value) -> Value {
    let input = tool_use.get("input").cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": tool_use.get("toolUseId").cloned().unwrap_or_default(),
        "type": "function",
        "function": {
            "name": tool_use.get("name").cloned().unwrap_or_default(),
            "arguments": input.to_string(),
        },
    })
}

/// Converse response → `chat.completion` (the client's `model` name is echoed).
pub fn converse_to_chat_response(response: &Value, model: &str) -> Result<Value, Unsupported> {
    let blocks = response
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("the provider's answer is not a Converse response"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool_use) = block.get("toolUse") {
            calls.push(tool_call(tool_use));
        } else if let Some(r) = block
            .pointer("/reasoningContent/reasoningText/text")
            .and_then(Value::as_str)
        {
            reasoning.push_str(r);
        }
    }
    let mut message = json!({ "role": "assistant", "content": text });
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    let stop = response.get("stopReason").and_then(Value::as_str);
    let mut out = json!({
        "id": chat_id(),
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": stop.map(finish_reason) }],
    });
    if let Some(usage) = usage_of_converse(response) {
        out["usage"] = openai_usage_json(&usage);
    }
    Ok(out)
}

/// The usage of a Converse response: the prompt counts input, cache reads and cache writes.
pub fn usage_of_converse(response: &Value) -> Option<Usage> {
    response.get("usage").and_then(bedrock::usage_from_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chat: Value) -> Result<Map<String, Value>, Unsupported> {
        let Value::Object(chat) = chat else {
            panic!("a request is an object")
        };
        chat_to_converse_request(&chat)
    }

    #[test]
    fn roles_alternate_and_tool_results_join_the_next_user_turn() {
        let out = request(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call:1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call:1", "content": "42"},
            {"role": "user", "content": "thanks"},
        ]}))
        .expect("converts");
        assert_eq!(out["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            Value::Array(out["messages"].as_array().expect("list").clone()),
            json!([
                {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "call_1", "name": "f", "input": {"x": 1}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "42"}]}},
                    {"text": "thanks"}
                ]},
            ])
        );
        assert!(!out.contains_key("inferenceConfig"));
    }

    #[test]
    fn limits_sampling_and_stops_go_to_inference_config() {
        let out = request(json!({"messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5, "top_p": 0.9,
            "stop": ["END", ""]}))
        .expect("converts");
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 7, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
        );
    }

    #[test]
    fn tools_and_tool_choice_become_tool_config() {
        let tools = json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
        }}]);
        let base = json!({"messages": [{"role": "user", "content": "x"}], "tools": tools});
        let with = |choice: Value| {
            let mut chat = base.clone();
            chat["tool_choice"] = choice;
            request(chat).expect("converts")["toolConfig"].clone()
        };
        assert_eq!(
            with(json!("required")),
            json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                "toolChoice": {"any": {}}})
        );
        assert_eq!(with(json!("auto"))["toolChoice"], json!({"auto": {}}));
        assert!(with(json!("none")).get("toolChoice").is_none());
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "get_weather"}}))["toolChoice"],
            json!({"tool": {"name": "get_weather"}})
        );
    }

    #[test]
    fn images_documents_and_cache_points() {
        let out = request(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "file", "file": {"filename": "q3 report.pdf", "file_data": "data:application/pdf;base64,JVBERi0"}},
        ]}]}))
        .expect("converts");
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"text": "look"},
                {"cachePoint": {"type": "default"}},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0K"}}},
                {"document": {"format": "pdf", "name": "q3 report pdf", "source": {"bytes": "JVBERi0"}}},
            ])
        );
    }

    #[test]
    fn json_schema_becomes_structured_output() {
        let out = request(json!({"messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "person",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}))
        .expect("converts");
        let format = &out["outputConfig"]["textFormat"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["structure"]["jsonSchema"]["name"], "person");
        let schema: Value = serde_json::from_str(
            format["structure"]["jsonSchema"]["schema"]
                .as_str()
                .expect("a string"),
        )
        .expect("JSON");
        assert_eq!(schema["properties"]["name"]["type"], "string");
    }

    #[test]
    fn inexpressible_requests_are_refused_with_a_reason() {
        let cases = [
            (json!({"n": 2}), "`n` > 1"),
            (json!({"logprobs": true}), "logprobs"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "json_object",
            ),
            (json!({"modalities": ["text", "audio"]}), "audio"),
            (
                json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}),
                "custom",
            ),
        ];
        for (mut chat, needle) in cases {
            chat["messages"] = json!([{"role": "user", "content": "x"}]);
            let err = request(chat).expect_err("refused");
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
        let url_image = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        ]}]});
        assert!(
            request(url_image)
                .expect_err("refused")
                .0
                .contains("bytes only")
        );
        let bmp = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0"}}
        ]}]});
        assert!(request(bmp).is_err());
        let bad_args = json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
        ]}]});
        assert!(
            request(bad_args)
                .expect_err("refused")
                .0
                .contains("not valid JSON")
        );
        assert!(request(json!({"messages": "hi"})).is_err());
    }

    #[test]
    fn a_response_becomes_a_chat_completion() {
        // The shape of AWS's Converse reference example, with a tool use and cache figures.
        let response = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig"}}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 142,
                      "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 1200}
        });
        let out = converse_to_chat_response(&response, "claude").expect("converts");
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["reasoning_content"], "Need weather.");
        assert_eq!(
            choice["message"]["tool_calls"][0],
            json!({"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                   "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 112, "completion_tokens": 30, "total_tokens": 142,
                   "prompt_tokens_details": {"cached_tokens": 100}})
        );
        assert_eq!(out["model"], "claude");
        assert!(converse_to_chat_response(&json!({"message": "x"}), "m").is_err());
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
    }
}
