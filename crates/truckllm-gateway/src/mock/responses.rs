//! The mock's native OpenAI Responses API (`POST /v1/responses`, plain and SSE), served only
//! when the mock runs with `responses_native` (`--responses-native`); otherwise 404, as most
//! OpenAI-compatible APIs answer.
//!
//! As at OpenAI, a response is bound to the key that made it: `previous_response_id` naming
//! a response another key made, or none, is a 400 `previous_response_not_found`. The input
//! tokens are the words of `input` plus those of the conversation continued; the reply is the
//! mock's sentence cut to `max_output_tokens` words.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openai::{admit, error};
use super::{MockUpstream, event_stream, reply, words};

pub(super) async fn create(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !mock.options.responses_native {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "Unknown request URL: POST /v1/responses",
        );
    }
    let (key, request) = match admit(&mock, &uri, &headers, &body).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let Some(before) = continued(&mock, &key, &request) else {
        return previous_not_found(&request);
    };
    let model = request["model"].as_str().unwrap_or("mock").to_owned();
    let prompt = before + request.get("input").map_or(0, input_words);
    let max = request["max_output_tokens"]
        .as_u64()
        .unwrap_or(super::REPLY.len() as u64);
    let reply = reply(max);
    let completion = reply.len() as u64;
    let id = format!("resp_mock{:016}", mock.next_id());
    let kept = (key.clone(), prompt + completion, Value::Null);
    if let Ok(mut responses) = mock.responses.lock() {
        responses.insert(id.clone(), kept);
    }
    mock.count(&key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
        s.completion_tokens += completion;
    });
    let text = reply.join(" ");
    let usage = json!({"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion});
    let message = json!({"type": "message", "id": format!("msg_{id}"), "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let object = json!({"id": id, "object": "response", "created_at": 0, "status": "completed",
        "model": model, "output": [message], "usage": usage,
        "previous_response_id": request.get("previous_response_id").cloned().unwrap_or(Value::Null),
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": []});
    if let Ok(mut responses) = mock.responses.lock()
        && let Some(kept) = responses.get_mut(&id)
    {
        kept.2 = object.clone();
    }
    if request["stream"].as_bool() == Some(true) {
        return stream(&mock, object, &reply);
    }
    axum::Json(object).into_response()
}

/// Words of the conversation `previous_response_id` continues (0 without one); `None` when
/// this key made no such response.
fn continued(mock: &MockUpstream, key: &str, request: &Value) -> Option<u64> {
    let Some(previous) = request["previous_response_id"].as_str() else {
        return Some(0);
    };
    mock.responses
        .lock()
        .ok()
        .and_then(|r| r.get(previous).cloned())
        .filter(|(owner, _, _)| owner == key)
        .map(|(_, words, _)| words)
}

/// The 400 OpenAI answers for a `previous_response_id` this key did not make.
fn previous_not_found(request: &Value) -> Response {
    let previous = request["previous_response_id"].as_str().unwrap_or("");
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {
            "message": format!("Previous response with id '{previous}' not found."),
            "type": "invalid_request_error", "param": "previous_response_id",
            "code": "previous_response_not_found"}})),
    )
        .into_response()
}

/// `GET /v1/responses/{id}`: a response this key made, else 404 as OpenAI answers.
pub(super) async fn retrieve(
    State(mock): State<Arc<MockUpstream>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match owned(&mock, &headers, &id) {
        Some(object) => axum::Json(object).into_response(),
        None => no_such_response(&id),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a response this key made, else 404.
pub(super) async fn delete(
    State(mock): State<Arc<MockUpstream>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if owned(&mock, &headers, &id).is_none() {
        return no_such_response(&id);
    }
    if let Ok(mut responses) = mock.responses.lock() {
        responses.remove(&id);
    }
    axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
}

/// The response `id` if the calling key made it.
fn owned(mock: &MockUpstream, headers: &HeaderMap, id: &str) -> Option<Value> {
    let key = super::bearer_label(headers)?;
    let responses = mock.responses.lock().ok()?;
    let (owner, _, object) = responses.get(id)?;
    (mock.options.responses_native && *owner == key).then(|| object.clone())
}

fn no_such_response(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        &format!("Response with id '{id}' not found."),
    )
}

/// Words of a Responses `input`: a string, or items' text.
fn input_words(input: &Value) -> u64 {
    match input {
        Value::Array(items) => items.iter().map(words).sum(),
        other => words(other),
    }
}

/// The Responses events for `object`, its text a word per delta.
fn stream(mock: &MockUpstream, object: Value, reply: &[&str]) -> Response {
    let message = object["output"][0].clone();
    let item_id = message["id"].clone();
    let mut started = object.clone();
    started["status"] = "in_progress".into();
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    let mut in_progress = message.clone();
    in_progress["status"] = "in_progress".into();
    in_progress["content"] = json!([]);
    let mut events = vec![
        json!({"type": "response.created", "response": started}),
        json!({"type": "response.in_progress", "response": started}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": in_progress}),
        json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for (i, word) in reply.iter().enumerate() {
        let delta = if i + 1 == reply.len() {
            (*word).to_owned()
        } else {
            format!("{word} ")
        };
        events.push(
            json!({"type": "response.output_text.delta", "item_id": item_id,
            "output_index": 0, "content_index": 0, "delta": delta}),
        );
    }
    let part = message["content"][0].clone();
    events.extend([
        json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
            "content_index": 0, "text": part["text"]}),
        json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
            "content_index": 0, "part": part}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": message}),
        json!({"type": "response.completed", "response": object}),
    ]);
    let frames = events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            event["sequence_number"] = n.into();
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    event_stream(&mock.options, frames).unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot build stream",
        )
    })
}
