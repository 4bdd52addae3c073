//! The golden matrix: every fixture under `tests/fixtures/conversion/` is one case, an input
//! in one dialect and the expected output in the other (or the expected refusal).
//!
//! A fixture is `{"function", "model", "input", "expected"}` or `{…, "error": "<part of the
//! message>"}`. Streams are given as lists of events: Anthropic events as `{"event", "data"}`,
//! OpenAI events as their `data` (a JSON value or `"[DONE]"`); `usage` optionally names the
//! neutral usage expected at the end as `[prompt, completion, cache_read, cache_write]`.
//! `created` timestamps are compared as 0. `GOLDEN_BLESS=1` writes the actual output into
//! the fixtures' `expected` (review the diff before committing it).

use std::path::Path;

use serde_json::{Value, json};

use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conversion");

#[test]
fn golden_fixtures() {
    let mut paths: Vec<_> = std::fs::read_dir(DIR)
        .expect("the fixtures directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 20,
        "the matrix has its cases ({})",
        paths.len()
    );
    let failures: Vec<String> = paths.iter().filter_map(|p| run(p).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn run(path: &Path) -> Result<(), String> {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let model = case["model"].as_str().unwrap_or("model");
    let input = &case["input"];
    let (actual, usage) = convert(case["function"].as_str().unwrap_or(""), input, model, &case);
    let actual = actual.map(|mut v| {
        zero_created(&mut v);
        v
    });
    if std::env::var_os("GOLDEN_BLESS").is_some()
        && case.get("error").is_none()
        && let Ok(value) = &actual
    {
        let mut blessed = case.clone();
        blessed["expected"] = value.clone();
        let _ = std::fs::write(path, pretty(&blessed) + "\n");
        return Ok(());
    }
    match (&actual, case.get("error")) {
        (Err(message), Some(part)) if message.contains(part.as_str().unwrap_or("?")) => Ok(()),
        (Ok(value), None) if *value == case["expected"] => check_usage(&name, usage, &case),
        (Ok(value), None) => Err(format!(
            "{name}: expected\n{}\ngot\n{}",
            pretty(&case["expected"]),
            pretty(value)
        )),
        (other, expected_error) => Err(format!(
            "{name}: expected error {expected_error:?}, got {other:?}"
        )),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn check_usage(name: &str, usage: Option<crate::usage::Usage>, case: &Value) -> Result<(), String> {
    let Some(expected) = case.get("usage") else {
        return Ok(());
    };
    let actual = usage.map(|u| {
        json!([
            u.prompt_tokens,
            u.completion_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens
        ])
    });
    let expected_f: Vec<f64> = expected
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if actual == Some(json!(expected_f)) {
        Ok(())
    } else {
        Err(format!("{name}: usage {actual:?}, expected {expected}"))
    }
}

type Outcome = (Result<Value, String>, Option<crate::usage::Usage>);

fn convert(function: &str, input: &Value, model: &str, case: &Value) -> Outcome {
    let object = || input.as_object().cloned().unwrap_or_default();
    let plain = |r: Result<Value, Unsupported>| (r.map_err(|e| e.0), None);
    match function {
        "chat_to_messages_request" => {
            let max = case["default_max_tokens"].as_u64().unwrap_or(4096) as u32;
            plain(chat_to_messages_request(&object(), model, max).map(Value::Object))
        }
        "messages_to_chat_request" => {
            plain(messages_to_chat_request(&object(), model).map(Value::Object))
        }
        "messages_to_chat_response" => plain(messages_to_chat_response(input, model)),
        "chat_to_messages_response" => plain(chat_to_messages_response(input, model)),
        "usage_of_message" => {
            let usage = usage_of_message(input);
            (Ok(Value::Null), usage)
        }
        "openai_error_to_anthropic" => (
            Ok(openai_error_to_anthropic(status(case), &raw(input))),
            None,
        ),
        "anthropic_error_to_openai" => (
            Ok(anthropic_error_to_openai(status(case), &raw(input))),
            None,
        ),
        "messages_to_chat_stream" => {
            let mut stream = MessagesToChatStream::new(model, case["include_usage"] == true);
            let out = feed(input, |e| stream.event(e), named_event).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&stream.finish()));
                chat_frames(&frames)
            });
            (out, stream.usage())
        }
        "chat_to_messages_stream" => {
            let mut stream = ChatToMessagesStream::new(model);
            let out = feed(input, |e| stream.event(e), data_event).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&stream.finish()));
                anthropic_frames(&frames)
            });
            (out, stream.usage())
        }
        "responses_to_chat_request" => {
            let request = object();
            let items = input_items(request.get("input")).map_err(|e| e.0);
            let out = items.and_then(|items| {
                responses_to_chat_request(&request, &items, model)
                    .map(Value::Object)
                    .map_err(|e| e.0)
            });
            (out, None)
        }
        "chat_to_responses_response" => plain(chat_to_responses_response(
            input,
            &golden_shell(model, case),
        )),
        "chat_to_responses_stream" => {
            let mut stream = ChatToResponsesStream::new(golden_shell(model, case));
            let out = feed(input, |e| stream.event(e), data_event).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&stream.finish()));
                anthropic_frames(&frames)
            });
            (out, stream.usage())
        }
        "messages_to_responses_stream" => {
            let mut stream = MessagesToResponsesStream::new(golden_shell(model, case), model);
            let out = feed(input, |e| stream.event(e), named_event).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&stream.finish()));
                anthropic_frames(&frames)
            });
            (out, stream.usage())
        }
        "chat_to_converse_request" => plain(chat_to_converse_request(&object()).map(Value::Object)),
        "converse_to_chat_response" => plain(converse_to_chat_response(input, model)),
        "converse_to_chat_stream" => {
            let mut stream = ConverseToChatStream::new(model, case["include_usage"] == true);
            let out = feed_event_stream(input, &mut stream).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&native::ChatReframer::finish(
                    &mut stream,
                )));
                chat_frames(&frames)
            });
            (out, native::ChatReframer::usage(&stream))
        }
        "chat_to_gemini_request" => {
            plain(gemini::chat_to_gemini_request(&object()).map(Value::Object))
        }
        "gemini_to_chat_response" => {
            let usage = gemini::usage_of(input);
            (
                gemini::gemini_to_chat_response(input, model).map_err(|e| e.0),
                usage,
            )
        }
        "gemini_to_chat_stream" => {
            use native::ChatReframer as _;
            let mut stream = GeminiToChatStream::new(model, case["include_usage"] == true);
            let out = feed(input, |e| stream.event(e), data_event).map(|mut frames| {
                frames.push_str(&String::from_utf8_lossy(&stream.finish()));
                chat_frames(&frames)
            });
            (out, stream.usage())
        }
        other => (Err(format!("unknown function {other}")), None),
    }
}

/// The response shell of a Responses case: id `resp_golden`, the case's `request` echoed.
fn golden_shell(model: &str, case: &Value) -> ResponseShell {
    let request = case["request"].as_object().cloned().unwrap_or_default();
    ResponseShell::new("resp_golden", model, 0, &request)
}

fn status(case: &Value) -> u16 {
    case["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(500)
}

/// An error body: a string fixture is the raw body, anything else its JSON.
fn raw(input: &Value) -> Vec<u8> {
    match input {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn feed(
    input: &Value,
    mut event: impl FnMut(&[u8]) -> Result<bytes::Bytes, Unsupported>,
    frame: fn(&Value) -> String,
) -> Result<String, String> {
    let mut out = String::new();
    for item in input.as_array().into_iter().flatten() {
        let bytes = event(frame(item).as_bytes()).map_err(|e| e.0)?;
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
    Ok(out)
}

/// Bedrock stream items, `{"event": type, "data": payload}` or `{"exception": type, "data":
/// payload}`, each encoded as an event-stream message and fed whole.
fn feed_event_stream(input: &Value, stream: &mut ConverseToChatStream) -> Result<String, String> {
    use crate::providers::bedrock::eventstream::{Frame, encode};
    let mut out = String::new();
    for item in input.as_array().into_iter().flatten() {
        let payload = bytes::Bytes::from(item["data"].to_string());
        let frame = match (item["event"].as_str(), item["exception"].as_str()) {
            (Some(kind), _) => Frame::Event {
                kind: kind.to_owned(),
                payload,
            },
            (None, Some(kind)) => Frame::Exception {
                kind: kind.to_owned(),
                payload,
            },
            (None, None) => return Err(format!("a stream item without a type: {item}")),
        };
        let message = encode(&frame).map_err(|e| e.to_string())?;
        let bytes = native::ChatReframer::event(stream, &message).map_err(|e| e.0)?;
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
    Ok(out)
}

fn named_event(item: &Value) -> String {
    format!(
        "event: {}\ndata: {}\n\n",
        item["event"].as_str().unwrap_or(""),
        item["data"]
    )
}

fn data_event(item: &Value) -> String {
    match item {
        Value::String(s) => format!("data: {s}\n\n"),
        other => format!("data: {other}\n\n"),
    }
}

/// Output frames as a list of `data` values (`"[DONE]"` as a string); every frame must be
/// `data:` only.
fn chat_frames(frames: &str) -> Value {
    let mut out = Vec::new();
    for frame in frames.split_terminator("\n\n") {
        match frame.strip_prefix("data: ") {
            Some("[DONE]") => out.push(json!("[DONE]")),
            Some(data) => out.push(serde_json::from_str(data).unwrap_or(json!({"unparsed": data}))),
            None => out.push(json!({"not a data frame": frame})),
        }
    }
    Value::Array(out)
}

/// Output frames as a list of `{"event", "data"}`; the event name must match `data.type`.
fn anthropic_frames(frames: &str) -> Value {
    let mut out = Vec::new();
    for frame in frames.split_terminator("\n\n") {
        let mut lines = frame.lines();
        let event = lines
            .next()
            .and_then(|l| l.strip_prefix("event: "))
            .unwrap_or("?");
        let data = lines
            .next()
            .and_then(|l| l.strip_prefix("data: "))
            .unwrap_or("");
        let data: Value = serde_json::from_str(data).unwrap_or(json!({"unparsed": data}));
        if data["type"] != event {
            out.push(json!({"event name differs from data.type": frame}));
        }
        out.push(json!({"event": event, "data": data}));
    }
    Value::Array(out)
}

/// `created` is the clock; fixtures say 0. Completions made from Bedrock answers (which have
/// no id) get fresh ids; fixtures say `chatcmpl-bedrock`.
fn zero_created(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("created") {
                map.insert("created".into(), 0.into());
            }
            let fresh = map
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with("chatcmpl-bedrock-"));
            if fresh {
                map.insert("id".into(), "chatcmpl-bedrock".into());
            }
            map.values_mut().for_each(zero_created);
        }
        Value::Array(items) => items.iter_mut().for_each(zero_created),
        _ => {}
    }
}
