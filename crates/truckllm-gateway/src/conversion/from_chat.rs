//! A Chat Completions client in front of an Anthropic provider: the chat request as a Messages
//! request, and the Anthropic message (and its usage) back as a `chat.completion`.

use serde_json::{Map, Value, json};

use super::{Unsupported, finish_reason, now_seconds, openai_usage_json, usage_from_anthropic};
use crate::usage::Usage;

/// OpenAI Chat request → Anthropic Messages request. `model` is the upstream model name;
/// `default_max_tokens` applies when the client set no limit (Anthropic requires one).
pub fn chat_to_messages_request(
    chat: &Map<String, Value>,
    model: &str,
    default_max_tokens: u32,
) -> Result<Map<String, Value>, Unsupported> {
    refuse_inexpressible(chat)?;
    let (system, messages) = convert_messages(chat.get("messages"))?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), max_tokens(chat, default_max_tokens));
    if let Some(stop) = stop_sequences(chat.get("stop")) {
        out.insert("stop_sequences".into(), stop);
    }
    for key in ["temperature", "top_p", "stream"] {
        if let Some(value) = chat.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), value.clone());
        }
    }
    let tools = convert_tools(chat.get("tools"))?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = tool_choice(chat)? {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(user) = chat.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(format) = output_format(chat.get("response_format"))? {
        out.insert("output_config".into(), json!({ "format": format }));
    }
    Ok(out)
}

/// Refuses the fields Anthropic has no way to honour.
fn refuse_inexpressible(chat: &Map<String, Value>) -> Result<(), Unsupported> {
    let refuse = |what: &str| {
        Err(Unsupported::new(format!(
            "{what} is not supported by Anthropic models"
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
        return refuse(
            "`response_format` `json_object` (use `json_schema`, describe the format in the prompt, or use a tool)",
        );
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

/// `response_format` `json_schema` as Anthropic's structured output format
/// (`output_config.format`); models without structured outputs refuse it themselves.
fn output_format(format: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let Some(format) = format.filter(|f| f.get("type") == Some(&json!("json_schema"))) else {
        return Ok(None);
    };
    let schema = format
        .get("json_schema")
        .and_then(|s| s.get("schema"))
        .filter(|s| s.is_object())
        .ok_or_else(|| {
            Unsupported::new("`response_format` `json_schema` needs `json_schema.schema`")
        })?;
    Ok(Some(json!({ "type": "json_schema", "schema": schema })))
}

fn max_tokens(chat: &Map<String, Value>, default: u32) -> Value {
    let set = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| chat.get(*key).and_then(Value::as_u64));
    set.unwrap_or(u64::from(default)).into()
}

/// `stop` as `stop_sequences`. Anthropic refuses empty and whitespace-only sequences
/// (`"\n"` is common with OpenAI clients): they are left out.
fn stop_sequences(stop: Option<&Value>) -> Option<Value> {
    let list: Vec<&str> = match stop {
        None | Some(Value::Null) => return None,
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(_) => Vec::new(),
    };
    let kept: Vec<Value> = list
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(Value::from)
        .collect();
    (!kept.is_empty()).then_some(Value::Array(kept))
}

/// The conversation as top-level system blocks and alternating user/assistant messages.
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
            "system" | "developer" => system.extend(
                text_blocks(content, role)?
                    .into_iter()
                    .filter(|b| b.get("text").and_then(Value::as_str) != Some("")),
            ),
            "user" => push_merged(&mut out, "user", user_content(content)?),
            "assistant" => {
                if let Some(content) = assistant_content(message)? {
                    push_merged(&mut out, "assistant", content);
                }
            }
            "tool" => push_merged(&mut out, "user", Value::Array(vec![tool_result(message)?])),
            other => {
                return Err(Unsupported::new(format!(
                    "the message role `{other}` is not supported by Anthropic models"
                )));
            }
        }
    }
    Ok((system, out))
}

/// Appends a message, merging it into the previous one when both have the same role.
fn push_merged(out: &mut Vec<Value>, role: &str, content: Value) {
    if let Some(last) = out.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
    {
        let mut blocks = into_blocks(last.get_mut("content").map(Value::take));
        blocks.extend(into_blocks(Some(content)));
        last["content"] = Value::Array(blocks);
        return;
    }
    out.push(json!({ "role": role, "content": content }));
}

/// Message content as a list of blocks (a string becomes one text block).
fn into_blocks(content: Option<Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![json!({ "type": "text", "text": text })],
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    }
}

/// Text content (a string or text parts) as text blocks, `cache_control` kept.
fn text_blocks(content: Option<&Value>, role: &str) -> Result<Vec<Value>, Unsupported> {
    match content {
        Some(Value::String(text)) => Ok(vec![json!({ "type": "text", "text": text })]),
        Some(Value::Array(parts)) => parts.iter().map(|p| text_part(p, role)).collect(),
        _ => Ok(Vec::new()),
    }
}

fn text_part(part: &Value, role: &str) -> Result<Value, Unsupported> {
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
    let mut block = json!({ "type": "text", "text": text });
    copy_cache_control(part, &mut block);
    Ok(block)
}

fn copy_cache_control(from: &Value, to: &mut Value) {
    if let Some(cache) = from.get("cache_control") {
        to["cache_control"] = cache.clone();
    }
}

fn user_content(content: Option<&Value>) -> Result<Value, Unsupported> {
    match content {
        Some(Value::String(text)) => Ok(Value::String(text.clone())),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(user_part)
            .collect::<Result<_, _>>()
            .map(Value::Array),
        _ => Err(Unsupported::new("a user message needs `content`")),
    }
}

fn user_part(part: &Value) -> Result<Value, Unsupported> {
    match part.get("type").and_then(Value::as_str).unwrap_or("") {
        "image_url" => {
            let url = part.get("image_url").and_then(|i| i.get("url").or(Some(i)));
            let mut block = image_block(url.and_then(Value::as_str).unwrap_or(""))?;
            copy_cache_control(part, &mut block);
            Ok(block)
        }
        "input_audio" => Err(Unsupported::new(
            "audio input is not supported by Anthropic models",
        )),
        "file" => document_block(part.get("file").unwrap_or(&Value::Null)),
        _ => text_part(part, "user"),
    }
}

/// A `file` part with inline PDF data as a base64 document block; uploaded files (`file_id`)
/// and other types are refused.
fn document_block(file: &Value) -> Result<Value, Unsupported> {
    let data = file.get("file_data").and_then(Value::as_str).unwrap_or("");
    let Some(data) = data.strip_prefix("data:application/pdf;base64,") else {
        return Err(Unsupported::new(
            "only inline PDF `file` parts (`file_data` as a `data:application/pdf;base64,` URL) are supported by Anthropic models",
        ));
    };
    let mut block = json!({
        "type": "document",
        "source": { "type": "base64", "media_type": "application/pdf", "data": data },
    });
    if let Some(name) = file.get("filename").filter(|n| n.is_string()) {
        block["title"] = name.clone();
    }
    Ok(block)
}

/// An image URL as an Anthropic image block: `data:` URLs as base64, http(s) as url.
fn image_block(url: &str) -> Result<Value, Unsupported> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
            Unsupported::new("an image `data:` URL must be base64 (`data:<type>;base64,…`)")
        })?;
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(Unsupported::new(
        "an image URL must be a `data:` or http(s) URL",
    ))
}

/// An assistant turn as content blocks (text, then tool uses); `None` when empty.
fn assistant_content(message: &Value) -> Result<Option<Value>, Unsupported> {
    let mut blocks = match message.get("content") {
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        Some(Value::String(text)) => vec![json!({ "type": "text", "text": text })],
        other => text_blocks(other, "assistant")?,
    };
    blocks.retain(|b| b.get("text").and_then(Value::as_str) != Some(""));
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        blocks.push(tool_use(call)?);
    }
    Ok(match blocks.len() {
        0 => None,
        1 if blocks[0].get("type") == Some(&json!("text"))
            && blocks[0].get("cache_control").is_none() =>
        {
            blocks[0].get("text").cloned()
        }
        _ => Some(Value::Array(blocks)),
    })
}

fn tool_use(call: &Value) -> Result<Value, Unsupported> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let arguments = function.and_then(|f| f.get("arguments"));
    let input = match arguments {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| {
            Unsupported::new(format!(
                "the arguments of tool call `{id}` are not valid JSON"
            ))
        })?,
        Some(other) => other.clone(),
    };
    if !input.is_object() {
        return Err(Unsupported::new(format!(
            "the arguments of tool call `{id}` must be a JSON object for Anthropic models"
        )));
    }
    let id = anthropic_tool_id(id);
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// A tool call id as Anthropic accepts it (`[a-zA-Z0-9_-]+`): other characters become `_`
/// (some providers use ids like `functions.read:0`); the same id maps the same way in
/// `tool_use` and `tool_result`.
fn anthropic_tool_id(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if id.is_empty() { "_".to_owned() } else { id }
}

fn tool_result(message: &Value) -> Result<Value, Unsupported> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut block = json!({ "type": "tool_result", "tool_use_id": anthropic_tool_id(id) });
    // An empty result is sent without `content` (Anthropic refuses empty text).
    match message.get("content") {
        Some(Value::Array(parts)) if !parts.is_empty() => {
            block["content"] = Value::Array(text_blocks(message.get("content"), "tool")?);
        }
        Some(Value::String(text)) if !text.is_empty() => block["content"] = text.clone().into(),
        _ => {}
    }
    Ok(block)
}

fn convert_tools(tools: Option<&Value>) -> Result<Vec<Value>, Unsupported> {
    let Some(list) = tools.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter().map(convert_tool).collect()
}

fn convert_tool(tool: &Value) -> Result<Value, Unsupported> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    let function = tool
        .get("function")
        .filter(|_| kind == "function")
        .ok_or_else(|| {
            Unsupported::new(format!(
                "tools of type `{kind}` are not supported by Anthropic models"
            ))
        })?;
    let schema = function
        .get("parameters")
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    let mut out = json!({
        "name": function.get("name").cloned().unwrap_or_default(),
        "input_schema": schema,
    });
    if let Some(description) = function.get("description").filter(|d| d.is_string()) {
        out["description"] = description.clone();
    }
    copy_cache_control(tool, &mut out);
    Ok(out)
}

/// `tool_choice` and `parallel_tool_calls: false` as an Anthropic `tool_choice`.
fn tool_choice(chat: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let mut choice = match chat.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({ "type": "auto" }),
            "none" => json!({ "type": "none" }),
            "required" => json!({ "type": "any" }),
            other => return Err(Unsupported::new(format!("unknown `tool_choice` `{other}`"))),
        }),
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            let name =
                name.ok_or_else(|| Unsupported::new("`tool_choice` must name a function"))?;
            Some(json!({ "type": "tool", "name": name }))
        }
        Some(_) => {
            return Err(Unsupported::new(
                "`tool_choice` must be a string or an object",
            ));
        }
    };
    if chat.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice.get("type") != Some(&json!("none")) {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    Ok(choice)
}

/// Anthropic message → `chat.completion` (the client's `model` name is echoed).
pub fn messages_to_chat_response(response: &Value, model: &str) -> Result<Value, Unsupported> {
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("the provider's answer is not an Anthropic message"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        let field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "text" => text.push_str(field("text")),
            "thinking" => reasoning.push_str(field("thinking")),
            "tool_use" => calls.push(tool_call(block)),
            _ => {}
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
    let stop = response.get("stop_reason").and_then(Value::as_str);
    let mut out = json!({
        "id": chat_id(response.get("id").and_then(Value::as_str).unwrap_or("")),
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": stop.map(finish_reason) }],
    });
    if let Some(usage) = usage_of_message(response) {
        out["usage"] = openai_usage_json(&usage);
    }
    Ok(out)
}

/// A chat completion id for an Anthropic message id.
pub(super) fn chat_id(message_id: &str) -> String {
    format!(
        "chatcmpl-{}",
        message_id.strip_prefix("msg_").unwrap_or(message_id)
    )
}

/// An Anthropic `tool_use` block as an OpenAI tool call (arguments as a JSON string).
pub(super) fn tool_call(block: &Value) -> Value {
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": block.get("id").cloned().unwrap_or_default(),
        "type": "function",
        "function": {
            "name": block.get("name").cloned().unwrap_or_default(),
            "arguments": input.to_string(),
        },
    })
}

/// The usage of an Anthropic message body: the prompt counts input, cache writes and cache
/// reads.
pub fn usage_of_message(response: &Value) -> Option<Usage> {
    response
        .get("usage")
        .filter(|u| u.is_object())
        .map(usage_from_anthropic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chat: Value) -> Result<Map<String, Value>, Unsupported> {
        let Value::Object(chat) = chat else {
            panic!("a request is an object")
        };
        chat_to_messages_request(&chat, "claude-x", 1024)
    }

    #[test]
    fn consecutive_same_role_messages_are_merged_and_the_default_limit_applies() {
        let out = request(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
        ]}))
        .expect("converts");
        assert_eq!(out["max_tokens"], 1024);
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}
            ]}])
        );
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let out = request(json!({"messages": [], "max_tokens": 5, "max_completion_tokens": 7}))
            .expect("converts");
        assert_eq!(out["max_tokens"], 7);
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
            chat["messages"] = json!([]);
            let err = request(chat).expect_err("refused");
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
        let bad_args = json!({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
        ]}]});
        assert!(
            request(bad_args)
                .expect_err("refused")
                .0
                .contains("not valid JSON")
        );
        let audio = json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
        ]}]});
        assert!(
            request(audio)
                .expect_err("refused")
                .0
                .contains("audio input")
        );
        let ftp = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}
        ]}]});
        assert!(request(ftp).is_err());
    }

    #[test]
    fn usage_adds_cache_reads_and_writes_into_the_prompt() {
        let usage = usage_of_message(&json!({"usage": {
            "input_tokens": 10, "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30, "output_tokens": 5
        }}))
        .expect("usage");
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total()),
            (60.0, 5.0, 65.0)
        );
        assert_eq!(
            (usage.cache_read_tokens, usage.cache_write_tokens),
            (30.0, 20.0)
        );
        assert_eq!(usage_of_message(&json!({"content": []})), None);
    }

    #[test]
    fn a_body_that_is_not_a_message_is_refused() {
        assert!(messages_to_chat_response(&json!({"type": "error"}), "m").is_err());
    }
}
