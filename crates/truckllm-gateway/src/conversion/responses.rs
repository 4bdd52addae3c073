//! An OpenAI Responses client in front of a Chat Completions provider: the Responses request
//! (its `input` items already joined with the stored conversation) as a Chat request, and the
//! `chat.completion` back as a Responses `response` object.
//!
//! Anthropic providers are reached by composing this with [`super::chat_to_messages_request`]
//! and [`super::messages_to_chat_response`]; nothing here knows about Anthropic.

use serde_json::{Map, Value, json};

use super::{Unsupported, count, text_of, usage_from_openai};
use crate::usage::Usage;

/// Responses request fields a Chat request cannot express, refused with this reason.
const REFUSED_FIELDS: &[(&str, &str)] = &[
    ("background", "background responses"),
    (
        "conversation",
        "`conversation` objects (use `previous_response_id`)",
    ),
    ("prompt", "stored prompt templates (`prompt`)"),
    ("max_tool_calls", "`max_tool_calls`"),
    ("top_logprobs", "`top_logprobs`"),
];

/// Responses request → Chat request for `model`. `items` is the whole conversation as
/// Responses input items (the stored turns of `previous_response_id`, then this request's
/// `input`); `request` is the client's body, read for everything but its `input`.
pub fn responses_to_chat_request(
    request: &Map<String, Value>,
    items: &[Value],
    model: &str,
) -> Result<Map<String, Value>, Unsupported> {
    refuse_inexpressible(request)?;
    let mut messages = Vec::new();
    if let Some(instructions) = instructions_text(request.get("instructions"))? {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    convert_items(items, &mut messages)?;
    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), Value::Array(messages));
    copy_sampling(request, &mut chat);
    if let Some(tools) = convert_tools(request.get("tools"))? {
        chat.insert("tools".into(), tools);
        if let Some(choice) = convert_tool_choice(request.get("tool_choice"))? {
            chat.insert("tool_choice".into(), choice);
        }
        if let Some(parallel) = request
            .get("parallel_tool_calls")
            .filter(|v| v.is_boolean())
        {
            chat.insert("parallel_tool_calls".into(), parallel.clone());
        }
    }
    if let Some(format) = response_format(request.get("text"))? {
        chat.insert("response_format".into(), format);
    }
    if let Some(effort) = request
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| v.is_string())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(chat)
}

fn refuse_inexpressible(request: &Map<String, Value>) -> Result<(), Unsupported> {
    for (field, what) in REFUSED_FIELDS {
        let present = match request.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(_) => true,
        };
        if present {
            return Err(Unsupported::new(format!(
                "{what} cannot be translated for this model's provider"
            )));
        }
    }
    Ok(())
}

/// `temperature`, `top_p`, `max_output_tokens` (as `max_completion_tokens`), `user`,
/// `prompt_cache_key`, `service_tier`: the fields with a Chat twin.
fn copy_sampling(request: &Map<String, Value>, chat: &mut Map<String, Value>) {
    let pairs = [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_completion_tokens"),
        ("user", "user"),
        ("prompt_cache_key", "prompt_cache_key"),
        ("service_tier", "service_tier"),
    ];
    for (from, to) in pairs {
        if let Some(value) = request.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), value.clone());
        }
    }
}

/// `instructions`: a string, or a list of input messages whose text is joined.
fn instructions_text(instructions: Option<&Value>) -> Result<Option<String>, Unsupported> {
    match instructions {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(items)) => {
            let texts: Vec<String> = items
                .iter()
                .map(|item| parts_text(item.get("content")))
                .collect::<Result<_, _>>()?;
            Ok(Some(texts.join("\n\n")).filter(|t| !t.is_empty()))
        }
        Some(_) => Err(Unsupported::new(
            "`instructions` must be a string or a list of messages",
        )),
    }
}

/// The Responses `input` of a request as a list of items (a string is one user message).
pub fn input_items(input: Option<&Value>) -> Result<Vec<Value>, Unsupported> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        })]),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(Unsupported::new(
            "`input` must be a string or a list of items",
        )),
    }
}

/// Appends the Chat messages for Responses `items`; `function_call`s right after an
/// assistant message (or each other) join that message's `tool_calls`.
fn convert_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), Unsupported> {
    for item in items {
        let kind = item_type(item);
        match kind {
            "message" => messages.push(convert_message(item)?),
            "function_call" => push_tool_call(messages, item)?,
            "function_call_output" => messages.push(tool_message(item)?),
            // Reasoning is the provider's own; a Chat provider cannot take it back.
            "reasoning" => {}
            other => {
                return Err(Unsupported::new(format!(
                    "input items of type `{other}` cannot be translated for this model's provider"
                )));
            }
        }
    }
    Ok(())
}

/// An item's `type`; an item with a `role` and no type is a message, as OpenAI reads it.
fn item_type(item: &Value) -> &str {
    match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind,
        None if item.get("role").is_some() => "message",
        None => "(none)",
    }
}

/// The fields of each input item kind a provider is sent; nothing else of an item is kept.
const KEPT_FIELDS: &[(&str, &[&str])] = &[
    ("message", &["type", "role", "content"]),
    (
        "function_call",
        &["type", "id", "call_id", "name", "arguments", "status"],
    ),
    ("function_call_output", &["type", "call_id", "output"]),
];

/// The fields of a content part a provider is sent.
const KEPT_PART_FIELDS: &[&str] = &[
    "type",
    "text",
    "refusal",
    "image_url",
    "detail",
    "file_data",
    "filename",
];

/// An input item as the gateway keeps it for a follow-up: only what a provider is sent, so
/// fields no provider reads are not stored (stored bytes are bytes a provider was sent and
/// billed for). Items of kinds no provider takes back (reasoning) are not kept at all.
pub fn kept_item(item: &Value) -> Option<Value> {
    let kind = item_type(item);
    let (_, fields) = KEPT_FIELDS.iter().find(|(k, _)| *k == kind)?;
    let mut kept: Map<String, Value> = fields
        .iter()
        .filter_map(|f| item.get(*f).map(|v| ((*f).to_owned(), v.clone())))
        .collect();
    kept.insert("type".into(), kind.into());
    if let Some(Value::Array(parts)) = kept.get_mut("content") {
        for part in parts.iter_mut() {
            if let Value::Object(fields) = part {
                fields.retain(|k, _| KEPT_PART_FIELDS.contains(&k.as_str()));
            }
        }
    }
    Some(Value::Object(kept))
}

fn convert_message(item: &Value) -> Result<Value, Unsupported> {
    let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
    match role {
        "user" => Ok(json!({"role": "user", "content": user_content(item.get("content"))?})),
        // `system` for every OpenAI-compatible provider: not all know `developer`, and OpenAI
        // reads `system` as `developer` for the models that have one.
        "system" | "developer" => {
            Ok(json!({"role": "system", "content": parts_text(item.get("content"))?}))
        }
        "assistant" => {
            Ok(json!({"role": "assistant", "content": parts_text(item.get("content"))?}))
        }
        other => Err(Unsupported::new(format!("unknown message role `{other}`"))),
    }
}

/// User content: a string, or parts (text, images, inline files) as Chat parts.
fn user_content(content: Option<&Value>) -> Result<Value, Unsupported> {
    let Some(Value::Array(parts)) = content else {
        return Ok(Value::String(parts_text(content)?));
    };
    parts
        .iter()
        .map(user_part)
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

fn user_part(part: &Value) -> Result<Value, Unsupported> {
    match part.get("type").and_then(Value::as_str).unwrap_or("") {
        "input_text" | "output_text" | "text" => {
            Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()}))
        }
        "input_image" => image_part(part),
        "input_file" => file_part(part),
        "input_audio" => Err(Unsupported::new("audio input")),
        other => Err(Unsupported::new(format!(
            "content parts of type `{other}` cannot be translated for this model's provider"
        ))),
    }
}

fn image_part(part: &Value) -> Result<Value, Unsupported> {
    let Some(url) = part.get("image_url").and_then(Value::as_str) else {
        return Err(Unsupported::new(
            "images by `file_id` (uploaded files); send `image_url` instead",
        ));
    };
    let mut image = json!({"url": url});
    if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
        image["detail"] = detail.clone();
    }
    Ok(json!({"type": "image_url", "image_url": image}))
}

fn file_part(part: &Value) -> Result<Value, Unsupported> {
    let Some(data) = part.get("file_data").and_then(Value::as_str) else {
        return Err(Unsupported::new(
            "files by `file_id` or `file_url`; send `file_data` instead",
        ));
    };
    let mut file = json!({"file_data": data});
    if let Some(name) = part.get("filename").filter(|n| n.is_string()) {
        file["filename"] = name.clone();
    }
    Ok(json!({"type": "file", "file": file}))
}

/// The text of message content: a string, or the text of its text parts (a refusal's text
/// too); anything else in an assistant, system or instructions message is refused.
fn parts_text(content: Option<&Value>) -> Result<String, Unsupported> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let piece = match kind {
                    "input_text" | "output_text" | "text" => part.get("text"),
                    "refusal" => part.get("refusal"),
                    other => {
                        return Err(Unsupported::new(format!(
                            "`{other}` parts outside user messages cannot be translated"
                        )));
                    }
                };
                text.push_str(piece.and_then(Value::as_str).unwrap_or(""));
            }
            Ok(text)
        }
        Some(_) => Err(Unsupported::new(
            "message `content` must be a string or a list",
        )),
    }
}

/// A `function_call` item joins the assistant message before it, or starts one.
fn push_tool_call(messages: &mut Vec<Value>, item: &Value) -> Result<(), Unsupported> {
    let call_id = required_str(item, "call_id", "function_call")?;
    let name = flat_name(
        item.get("namespace").and_then(Value::as_str),
        required_str(item, "name", "function_call")?,
    );
    let arguments = item
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let call = json!({
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    });
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == "assistant")
        && let Some(map) = last.as_object_mut()
    {
        let calls = map.entry("tool_calls").or_insert_with(|| json!([]));
        if let Value::Array(calls) = calls {
            calls.push(call);
            return Ok(());
        }
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    Ok(())
}

fn tool_message(item: &Value) -> Result<Value, Unsupported> {
    let call_id = required_str(item, "call_id", "function_call_output")?;
    let output = match item.get("output") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(_)) => parts_text(item.get("output"))?,
        _ => String::new(),
    };
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": output}))
}

fn required_str<'a>(item: &'a Value, field: &str, kind: &str) -> Result<&'a str, Unsupported> {
    item.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Unsupported::new(format!("a `{kind}` item needs a string `{field}`")))
}

/// Tools the provider itself runs (OpenAI's hosted tools). A Chat provider has none, so they
/// are left out: the model answers without them (Codex sends `web_search` on every turn).
const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "image_generation",
    "mcp",
    "tool_search",
];

/// Joins a namespace and a function name into one Chat function name.
const NAMESPACE_SEPARATOR: &str = "__";

/// Function tools in the Responses shape as Chat tools, namespaced ones flattened to
/// `{namespace}__{name}`; hosted tools left out; other tool types refused.
fn convert_tools(tools: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let Some(Value::Array(tools)) = tools else {
        return Ok(None);
    };
    let mut converted = Vec::new();
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => converted.push(chat_tool(tool, None)),
            "namespace" => {
                let namespace = tool.get("name").and_then(Value::as_str).unwrap_or("");
                for inner in tool
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if inner.get("type").and_then(Value::as_str) != Some("function") {
                        return Err(Unsupported::new(
                            "namespaces of tools other than functions cannot be translated",
                        ));
                    }
                    converted.push(chat_tool(inner, Some(namespace)));
                }
            }
            hosted if HOSTED_TOOLS.contains(&hosted) => {}
            other => {
                return Err(Unsupported::new(format!(
                    "`{other}` tools cannot be translated for this model's provider (only function tools)"
                )));
            }
        }
    }
    Ok((!converted.is_empty()).then_some(Value::Array(converted)))
}

fn chat_tool(tool: &Value, namespace: Option<&str>) -> Value {
    let mut function = Map::new();
    for field in ["name", "description", "parameters", "strict"] {
        if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
            function.insert(field.into(), value.clone());
        }
    }
    if let Some(namespace) = namespace {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        function.insert("name".into(), flat_name(Some(namespace), name).into());
    }
    json!({"type": "function", "function": function})
}

/// The Chat function name of a (possibly namespaced) Responses function.
fn flat_name(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(namespace) => format!("{namespace}{NAMESPACE_SEPARATOR}{name}"),
        None => name.to_owned(),
    }
}

fn convert_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(mode)) => Ok(Some(Value::String(mode.clone()))),
        Some(Value::Object(object)) if object.get("type") == Some(&json!("function")) => {
            let name = object.get("name").cloned().unwrap_or_default();
            Ok(Some(
                json!({"type": "function", "function": {"name": name}}),
            ))
        }
        Some(other) => Err(Unsupported::new(format!(
            "`tool_choice` {} cannot be translated for this model's provider",
            crate::error::clip(&other.to_string(), 64)
        ))),
    }
}

/// `text.format` as `response_format` (`text` needs none).
fn response_format(text: Option<&Value>) -> Result<Option<Value>, Unsupported> {
    let Some(format) = text.and_then(|t| t.get("format")).filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "description", "schema", "strict"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.into(), value.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(Unsupported::new("unknown `text.format` type")),
    }
}

/// What a Responses `response` object says besides its output: built from the request when
/// it arrives, then completed by the answer (and by each stream event).
#[derive(Debug, Clone)]
pub struct ResponseShell {
    /// `resp_…`: also the stem of the ids of the output items.
    pub id: String,
    pub object: Map<String, Value>,
}

impl ResponseShell {
    /// The `response` object for `request` before any output: status `in_progress`.
    pub fn new(id: &str, model: &str, created_at: u64, request: &Map<String, Value>) -> Self {
        let mut object = Map::new();
        let echo = |field: &str, default: Value| {
            request
                .get(field)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(default)
        };
        object.insert("id".into(), id.into());
        object.insert("object".into(), "response".into());
        object.insert("created_at".into(), created_at.into());
        object.insert("status".into(), "in_progress".into());
        object.insert("error".into(), Value::Null);
        object.insert("incomplete_details".into(), Value::Null);
        object.insert("instructions".into(), echo("instructions", Value::Null));
        object.insert(
            "max_output_tokens".into(),
            echo("max_output_tokens", Value::Null),
        );
        object.insert("model".into(), model.into());
        object.insert("output".into(), json!([]));
        object.insert(
            "parallel_tool_calls".into(),
            echo("parallel_tool_calls", json!(true)),
        );
        object.insert(
            "previous_response_id".into(),
            echo("previous_response_id", Value::Null),
        );
        object.insert(
            "reasoning".into(),
            echo("reasoning", json!({"effort": null, "summary": null})),
        );
        object.insert("store".into(), echo("store", json!(true)));
        object.insert("temperature".into(), echo("temperature", Value::Null));
        object.insert(
            "text".into(),
            echo("text", json!({"format": {"type": "text"}})),
        );
        object.insert("tool_choice".into(), echo("tool_choice", json!("auto")));
        object.insert("tools".into(), echo("tools", json!([])));
        object.insert("top_p".into(), echo("top_p", Value::Null));
        object.insert("truncation".into(), echo("truncation", json!("disabled")));
        object.insert("usage".into(), Value::Null);
        object.insert("user".into(), echo("user", Value::Null));
        object.insert("metadata".into(), echo("metadata", json!({})));
        Self {
            id: id.to_owned(),
            object,
        }
    }

    /// The id of output item `index` of `kind` (`msg`, `fc`, `rs`): stable for a response.
    pub fn item_id(&self, kind: &str, index: usize) -> String {
        let stem = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{kind}_{stem}_{index}")
    }

    /// A Chat function name back as the request's (namespace, name): `ns__name` is split
    /// when the request offered a namespace `ns`.
    pub fn tool_name(&self, flat: &str) -> (Option<String>, String) {
        let namespaces = self
            .object
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("namespace"))
            .filter_map(|t| t.get("name").and_then(Value::as_str));
        for namespace in namespaces {
            if let Some(name) = flat
                .strip_prefix(namespace)
                .and_then(|rest| rest.strip_prefix(NAMESPACE_SEPARATOR))
            {
                return (Some(namespace.to_owned()), name.to_owned());
            }
        }
        (None, flat.to_owned())
    }

    /// The object with its final output, status and usage.
    pub fn finished(
        &self,
        output: Vec<Value>,
        finish_reason: &str,
        usage: Option<&Usage>,
    ) -> Value {
        let mut object = self.object.clone();
        let (status, incomplete) = status_of(finish_reason);
        object.insert("status".into(), status.into());
        object.insert("incomplete_details".into(), incomplete);
        object.insert("output".into(), Value::Array(output));
        object.insert(
            "usage".into(),
            usage.map_or(Value::Null, responses_usage_json),
        );
        Value::Object(object)
    }
}

/// Chat `finish_reason` → Responses `status` and `incomplete_details`.
fn status_of(finish_reason: &str) -> (&'static str, Value) {
    match finish_reason {
        "length" => ("incomplete", json!({"reason": "max_output_tokens"})),
        "content_filter" => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The neutral record of a Responses `usage` object (a native provider's answer).
pub fn usage_from_responses(usage: &Value) -> Option<Usage> {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_f64);
    let input = count("/input_tokens")?;
    let output = count("/output_tokens").unwrap_or(0.0);
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: count("/total_tokens").unwrap_or(input + output),
        cache_read_tokens: count("/input_tokens_details/cached_tokens").unwrap_or(0.0),
        cache_write_tokens: 0.0,
        reasoning_tokens: count("/output_tokens_details/reasoning_tokens").unwrap_or(0.0),
    })
}

/// A Responses `usage` object for the neutral record.
pub fn responses_usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": count(usage.prompt_tokens),
        "input_tokens_details": {"cached_tokens": count(usage.cache_read_tokens)},
        "output_tokens": count(usage.completion_tokens),
        "output_tokens_details": {"reasoning_tokens": count(usage.reasoning_tokens)},
        "total_tokens": count(usage.total()),
    })
}

/// `chat.completion` → Responses `response`, completing `shell`.
pub fn chat_to_responses_response(
    chat: &Value,
    shell: &ResponseShell,
) -> Result<Value, Unsupported> {
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Unsupported::new("the provider's answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    let reasoning = message.get("reasoning_content").and_then(Value::as_str);
    if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
        output.push(reasoning_item(shell.item_id("rs", output.len()), text));
    }
    let text = text_of(message.get("content"));
    let refusal = message.get("refusal").and_then(Value::as_str);
    if !text.is_empty() || refusal.is_some() {
        let part = match refusal {
            Some(refusal) if text.is_empty() => json!({"type": "refusal", "refusal": refusal}),
            _ => output_text_part(&text),
        };
        output.push(message_item(
            shell.item_id("msg", output.len()),
            vec![part],
            "completed",
        ));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        output.push(function_call_item(
            shell.item_id("fc", output.len()),
            call.get("id").and_then(Value::as_str).unwrap_or(""),
            &shell.tool_name(function.get("name").and_then(Value::as_str).unwrap_or("")),
            function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or(""),
            "completed",
        ));
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let usage = chat
        .get("usage")
        .filter(|u| u.is_object())
        .map(usage_from_openai);
    Ok(shell.finished(output, finish, usage.as_ref()))
}

/// An `output_text` content part.
pub(super) fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// An assistant `message` output item.
pub(super) fn message_item(id: String, content: Vec<Value>, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

/// A `function_call` output item; `name` is (namespace, name) as [`ResponseShell::tool_name`]
/// gives it.
pub(super) fn function_call_item(
    id: String,
    call_id: &str,
    name: &(Option<String>, String),
    arguments: &str,
    status: &str,
) -> Value {
    let mut item = json!({"type": "function_call", "id": id, "call_id": call_id, "name": name.1,
        "arguments": arguments, "status": status});
    if let Some(namespace) = &name.0 {
        item["namespace"] = namespace.as_str().into();
    }
    item
}

/// A `reasoning` output item carrying the provider's reasoning text.
pub(super) fn reasoning_item(id: String, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}]})
}
