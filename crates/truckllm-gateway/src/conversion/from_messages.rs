//! An Anthropic Messages client in front of an OpenAI-compatible provider: the Messages
//! request as a chat request, and the `chat.completion` back as an Anthropic message.

use serde_json::{Map, Value, json};

use super::{Unsupported, anthropic_usage_json, stop_reason, usage_from_openai};

/// Anthropic Messages request → OpenAI Chat request. `model` is the upstream model name. A
/// streamed request asks for the usage chunk (`stream_options.include_usage`).
pub fn messages_to_chat_request(
    messages: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, Unsupported> {
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut chat = Vec::new();
    if let Some(system) = system_message(messages.get("system"))? {
        chat.push(system);
    }
    let list = messages
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| Unsupported::new("`messages` must be a list"))?;
    for message in list {
        convert_message(message, &mut chat)?;
    }
    out.insert("messages".into(), Value::Array(chat));
    if let Some(max) = messages.get("max_tokens").filter(|v| v.is_u64()) {
        out.insert("max_completion_tokens".into(), max.clone());
    }
    for key in ["temperature", "top_p"] {
        if let Some(value) = messages.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stop) = messages.get("stop_sequences").and_then(Value::as_array)
        && !stop.is_empty()
    {
        out.insert("stop".into(), Value::Array(stop.clone()));
    }
    if messages.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    convert_tools(messages, &mut out)?;
    let user = messages.get("metadata").and_then(|m| m.get("user_id"));
    if let Some(user) = user.and_then(Value::as_str) {
        out.insert("user".into(), openai_user(user).into());
    }
    let format = messages.get("output_config").and_then(|c| c.get("format"));
    if let Some(schema) = format
        .filter(|f| f.get("type") == Some(&json!("json_schema")))
        .and_then(|f| f.get("schema"))
    {
        let json_schema = json!({ "name": "structured_output", "schema": schema });
        out.insert(
            "response_format".into(),
            json!({ "type": "json_schema", "json_schema": json_schema }),
        );
    }
    Ok(out)
}

/// The longest `user` passed as is; longer ids (Claude Code's are about 150 characters) are
/// sent as their SHA-256, still stable per user, within what OpenAI-compatible providers take.
const MAX_OPENAI_USER: usize = 64;

fn openai_user(user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    if user_id.len() <= MAX_OPENAI_USER {
        return user_id.to_owned();
    }
    Sha256::digest(user_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The top-level `system` (a string or text blocks) as one system message, without Claude
/// Code's billing header.
fn system_message(system: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let text = match system {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => without_billing_header(text).to_owned(),
        Some(Value::Array(blocks)) => {
            let kept: Vec<Value> = blocks
                .iter()
                .filter(|b| {
                    !b.get("text")
                        .and_then(Value::as_str)
                        .is_some_and(is_billing_header)
                })
                .cloned()
                .collect();
            joined_text(&kept, "\n\n", "system")?
        }
        Some(_) => return Err(Unsupported::new("`system` must be a string or text blocks")),
    };
    Ok((!text.is_empty()).then(|| json!({ "role": "system", "content": text })))
}

/// Claude Code opens `system` with `x-anthropic-billing-header: cc_version=…; cch=…;`, which
/// changes on every request: sent on, it would defeat the provider's prefix prompt cache, and
/// it says nothing to the model.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

fn is_billing_header(text: &str) -> bool {
    text.trim_start().starts_with(BILLING_HEADER)
}

/// A system string without a leading billing header line.
fn without_billing_header(text: &str) -> &str {
    if !is_billing_header(text) {
        return text;
    }
    text.split_once('\n')
        .map_or("", |(_, rest)| rest.trim_start())
}

/// The texts of text blocks, joined; other blocks are refused.
fn joined_text(blocks: &[Value], separator: &str, place: &str) -> Result<String, Unsupported> {
    let texts = blocks
        .iter()
        .map(|block| match block.get("type").and_then(Value::as_str) {
            Some("text") => Ok(block.get("text").and_then(Value::as_str).unwrap_or("")),
            other => Err(Unsupported::new(format!(
                "`{}` blocks in `{place}` are not supported by OpenAI-compatible models",
                other.unwrap_or("untyped")
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join(separator))
}

fn convert_message(message: &Value, chat: &mut Vec<Value>) -> Result<(), Unsupported> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let content = message.get("content");
    match (role, content) {
        ("user" | "assistant" | "system", Some(Value::String(text))) => {
            chat.push(json!({ "role": role, "content": text }));
            Ok(())
        }
        ("system", Some(Value::Array(blocks))) => {
            let text = joined_text(blocks, "\n\n", "system")?;
            chat.push(json!({ "role": "system", "content": text }));
            Ok(())
        }
        ("user", Some(Value::Array(blocks))) => user_blocks(blocks, chat),
        ("assistant", Some(Value::Array(blocks))) => {
            chat.push(assistant_blocks(blocks)?);
            Ok(())
        }
        ("user" | "assistant" | "system", _) => Err(Unsupported::new(format!(
            "a `{role}` message needs `content` (a string or blocks)"
        ))),
        _ => Err(Unsupported::new(format!(
            "the message role `{role}` is not supported"
        ))),
    }
}

/// A user turn: its tool results as `tool` messages first, then the rest as a user message
/// (with the images of tool results, which `tool` messages cannot carry).
fn user_blocks(blocks: &[Value], chat: &mut Vec<Value>) -> Result<(), Unsupported> {
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "tool_result" => chat.push(tool_message(block, &mut parts)?),
            _ => parts.push(user_part(block)?),
        }
    }
    let all_text = parts.iter().all(|p| p.get("type") == Some(&json!("text")));
    let content = match parts.len() {
        0 => return Ok(()),
        1 if all_text => parts
            .swap_remove(0)
            .get("text")
            .cloned()
            .unwrap_or_default(),
        _ => Value::Array(parts),
    };
    chat.push(json!({ "role": "user", "content": content }));
    Ok(())
}

fn user_part(block: &Value) -> Result<Value, Unsupported> {
    let text = |t: &Value| json!({ "type": "text", "text": t });
    match block.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => Ok(text(block.get("text").unwrap_or(&Value::Null))),
        "image" => image_part(block),
        "document" => document_part(block),
        other => Err(Unsupported::new(format!(
            "`{other}` blocks in a user message are not supported by OpenAI-compatible models"
        ))),
    }
}

/// An image block as an `image_url` part (base64 as a `data:` URL).
fn image_part(block: &Value) -> Result<Value, Unsupported> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let field = |key: &str| source.get(key).and_then(Value::as_str).unwrap_or("");
    let url = match field("type") {
        "base64" => format!("data:{};base64,{}", field("media_type"), field("data")),
        "url" => field("url").to_owned(),
        other => {
            return Err(Unsupported::new(format!(
                "image sources of type `{other}` are not supported by OpenAI-compatible models"
            )));
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A document block: a base64 PDF as a `file` part, a plain-text source as text.
fn document_part(block: &Value) -> Result<Value, Unsupported> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let field = |key: &str| source.get(key).and_then(Value::as_str).unwrap_or("");
    match (field("type"), field("media_type")) {
        ("base64", "application/pdf") => {
            let name = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            Ok(json!({ "type": "file", "file": {
                "filename": name,
                "file_data": format!("data:application/pdf;base64,{}", field("data")),
            }}))
        }
        ("text", _) => Ok(json!({ "type": "text", "text": field("data") })),
        (kind, _) => Err(Unsupported::new(format!(
            "document sources of type `{kind}` are not supported by OpenAI-compatible models"
        ))),
    }
}

/// A `tool_result` block as a `tool` message; its images go to `images`.
fn tool_message(block: &Value, images: &mut Vec<Value>) -> Result<Value, Unsupported> {
    let id = block.get("tool_use_id").cloned().unwrap_or_default();
    let mut text = match block.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("image") => images.push(image_part(part)?),
                    _ => texts.push(user_part(part)?),
                }
            }
            let texts: Vec<&str> = texts
                .iter()
                .filter_map(|t| t.get("text")?.as_str())
                .collect();
            texts.join("\n")
        }
        _ => String::new(),
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text = format!("Error: {text}");
    }
    Ok(json!({ "role": "tool", "tool_call_id": id, "content": text }))
}

/// An assistant turn: text as content, `tool_use` as tool calls, thinking dropped.
fn assistant_blocks(blocks: &[Value]) -> Result<Value, Unsupported> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            "tool_use" => calls.push(super::from_chat::tool_call(block)),
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(Unsupported::new(format!(
                    "`{other}` blocks in an assistant message are not supported by OpenAI-compatible models"
                )));
            }
        }
    }
    let mut message = json!({ "role": "assistant", "content": text });
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(message)
}

/// `tools` as function tools, `tool_choice` and `disable_parallel_tool_use`.
fn convert_tools(
    messages: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), Unsupported> {
    let Some(tools) = messages
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    else {
        return Ok(());
    };
    let tools = tools
        .iter()
        .map(function_tool)
        .collect::<Result<Vec<_>, _>>()?;
    out.insert("tools".into(), Value::Array(tools));
    let Some(choice) = messages.get("tool_choice").filter(|c| c.is_object()) else {
        return Ok(());
    };
    let name = choice.get("name").cloned().unwrap_or_default();
    let mapped = match choice.get("type").and_then(Value::as_str).unwrap_or("") {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({ "type": "function", "function": { "name": name } }),
        other => {
            return Err(Unsupported::new(format!(
                "unknown `tool_choice` type `{other}`"
            )));
        }
    };
    out.insert("tool_choice".into(), mapped);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.insert("parallel_tool_calls".into(), false.into());
    }
    Ok(())
}

fn function_tool(tool: &Value) -> Result<Value, Unsupported> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("custom");
    let schema = tool.get("input_schema").filter(|s| s.is_object());
    let Some(schema) = schema.filter(|_| kind == "custom") else {
        return Err(Unsupported::new(format!(
            "the server tool `{kind}` is not supported by OpenAI-compatible models"
        )));
    };
    let mut function = json!({
        "name": tool.get("name").cloned().unwrap_or_default(),
        "parameters": schema,
    });
    if let Some(description) = tool.get("description").filter(|d| d.is_string()) {
        function["description"] = description.clone();
    }
    Ok(json!({ "type": "function", "function": function }))
}

/// `chat.completion` → Anthropic message (the client's `model` name is echoed). Only the
/// first choice is translated.
pub fn chat_to_messages_response(response: &Value, model: &str) -> Result<Value, Unsupported> {
    let choice = response
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Unsupported::new("the provider's answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    for key in ["content", "refusal"] {
        let text = super::text_of(message.get(key));
        if !text.is_empty() {
            content.push(json!({ "type": "text", "text": text }));
        }
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        content.push(tool_use(call)?);
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let usage = response
        .get("usage")
        .map(usage_from_openai)
        .unwrap_or_default();
    Ok(json!({
        "id": message_id(response.get("id").and_then(Value::as_str).unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish.map(stop_reason),
        "stop_sequence": null,
        "usage": anthropic_usage_json(&usage),
    }))
}

/// An Anthropic message id for a chat completion id.
pub(super) fn message_id(chat_id: &str) -> String {
    format!(
        "msg_{}",
        chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id)
    )
}

/// An OpenAI tool call as a `tool_use` block (arguments parsed; they must be a JSON object).
fn tool_use(call: &Value) -> Result<Value, Unsupported> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let function = call.get("function").unwrap_or(&Value::Null);
    let arguments = function
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    let input: Value = match arguments.trim() {
        "" => json!({}),
        text => serde_json::from_str(text).map_err(|_| {
            Unsupported::new(format!(
                "the provider's tool call `{id}` has arguments that are not JSON"
            ))
        })?,
    };
    if !input.is_object() {
        return Err(Unsupported::new(format!(
            "the provider's tool call `{id}` has arguments that are not a JSON object"
        )));
    }
    Ok(json!({
        "type": "tool_use",
        "id": id,
        "name": function.get("name").cloned().unwrap_or_default(),
        "input": input,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Value) -> Result<Map<String, Value>, Unsupported> {
        let Value::Object(messages) = messages else {
            panic!("a request is an object")
        };
        messages_to_chat_request(&messages, "gpt-x")
    }

    #[test]
    fn server_tools_and_unknown_blocks_are_refused() {
        let web = json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
        assert!(
            request(web)
                .expect_err("refused")
                .0
                .contains("web_search_20250305")
        );
        let search = json!({"messages": [{"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}
        ]}]});
        assert!(
            request(search)
                .expect_err("refused")
                .0
                .contains("server_tool_use")
        );
    }

    #[test]
    fn an_answer_with_bad_tool_arguments_or_no_choice_is_refused() {
        let bad = json!({"choices": [{"message": {"tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
        ]}}]});
        assert!(chat_to_messages_response(&bad, "m").is_err());
        assert!(chat_to_messages_response(&json!({"choices": []}), "m").is_err());
    }
}

#[cfg(test)]
mod system_tests {
    use super::*;

    #[test]
    fn the_billing_header_is_dropped_from_either_form_of_system() {
        let header =
            "x-anthropic-billing-header: cc_version=2.1.3.abc; cc_entrypoint=cli; cch=71fea;";
        let as_string = json!(format!("{header}\nYou are Claude Code."));
        assert_eq!(
            system_message(Some(&as_string)).expect("converts"),
            Some(json!({"role": "system", "content": "You are Claude Code."}))
        );
        let only = json!([{"type": "text", "text": header}]);
        assert_eq!(system_message(Some(&only)).expect("converts"), None);
        let plain = json!("Mentions x-anthropic-billing-header: later, kept.");
        assert_eq!(
            system_message(Some(&plain)).expect("converts"),
            Some(
                json!({"role": "system", "content": "Mentions x-anthropic-billing-header: later, kept."})
            )
        );
    }
}
