//! Chat `chat.completion.chunk`s (and, composed with [`MessagesToChatStream`], Anthropic
//! events) re-framed as Responses stream events: `response.created`, `response.in_progress`,
//! then per output item `response.output_item.added`, its parts and deltas, `….done`, and
//! `response.completed` (or `response.incomplete`) carrying the whole response with usage.
//! Every event has its `sequence_number`. A provider error, or a stream cut short, ends with
//! `error` and `response.failed`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::responses::{
    ResponseShell, function_call_item, message_item, output_text_part, reasoning_item,
};
use super::sse::{self, Payload};
use super::{MessagesToChatStream, Unsupported, usage_from_openai};
use crate::usage::Usage;

/// The output item being streamed (Chat deltas of one kind arrive together).
#[derive(Debug)]
enum OpenItem {
    Reasoning {
        text: String,
    },
    Message {
        text: String,
    },
    Tool {
        chat_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Re-frames a Chat stream as Responses events, one SSE event at a time.
#[derive(Debug)]
pub struct ChatToResponsesStream {
    shell: ResponseShell,
    sequence: u64,
    started: bool,
    /// Items already closed, in output order.
    output: Vec<Value>,
    open: Option<OpenItem>,
    finish: Option<String>,
    usage: Option<Usage>,
    /// The final `response` object, once `response.completed` (or failed) was sent.
    done: Option<Value>,
}

impl ChatToResponsesStream {
    pub fn new(shell: ResponseShell) -> Self {
        Self {
            shell,
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: None,
            finish: None,
            usage: None,
            done: None,
        }
    }

    /// The Responses events for one complete Chat SSE event (possibly none).
    pub fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let payload = sse::parse(event)?;
        if self.done.is_some() {
            return Ok(Bytes::new());
        }
        let frames = match payload {
            Payload::Nothing => String::new(),
            Payload::Done => self.close(),
            Payload::Json(_, chunk) => self.chunk(&chunk),
        };
        Ok(sse::bytes(frames))
    }

    /// Called when the upstream stream ends: completes a stream that missed `[DONE]`, or
    /// fails one cut short.
    pub fn finish(&mut self) -> Bytes {
        if self.done.is_some() {
            return Bytes::new();
        }
        if self.finish.is_some() {
            return sse::bytes(self.close());
        }
        let mut frames = self.start();
        frames += &self.fail(
            "server_error",
            "the provider's stream ended before the response was complete",
        );
        sse::bytes(frames)
    }

    /// The usage from the provider's usage chunk, once it came.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The final `response` object, once the stream completed or failed.
    pub fn response(&self) -> Option<&Value> {
        self.done.as_ref()
    }

    fn frame(&mut self, kind: &str, mut data: Value) -> String {
        data["type"] = kind.into();
        data["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        sse::named_frame(kind, &data)
    }

    fn start(&mut self) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        let response = Value::Object(self.shell.object.clone());
        let mut frames = self.frame("response.created", json!({"response": response}));
        frames += &self.frame("response.in_progress", json!({"response": response}));
        frames
    }

    fn chunk(&mut self, chunk: &Value) -> String {
        let mut frames = self.start();
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("server_error");
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider failed");
            frames += &self.fail(code, message);
            return frames;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_from_openai(usage));
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return frames;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str) {
            frames += &self.reasoning_delta(text);
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            frames += &self.text_delta(text);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            frames += &self.tool_delta(call);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(reason.to_owned());
        }
        frames
    }

    fn output_index(&self) -> usize {
        self.output.len()
    }

    fn reasoning_delta(&mut self, text: &str) -> String {
        if text.is_empty() {
            return String::new();
        }
        let mut frames = String::new();
        if !matches!(self.open, Some(OpenItem::Reasoning { .. })) {
            frames += &self.close_item();
            let item = json!({"type": "reasoning", "id": self.item_id("rs"), "summary": []});
            frames += &self.added(item);
            self.open = Some(OpenItem::Reasoning {
                text: String::new(),
            });
        }
        if let Some(OpenItem::Reasoning { text: all }) = &mut self.open {
            all.push_str(text);
        }
        let data = json!({"item_id": self.item_id("rs"), "output_index": self.output_index(),
            "content_index": 0, "delta": text});
        frames += &self.frame("response.reasoning_text.delta", data);
        frames
    }

    fn text_delta(&mut self, text: &str) -> String {
        if text.is_empty() {
            return String::new();
        }
        let mut frames = String::new();
        if !matches!(self.open, Some(OpenItem::Message { .. })) {
            frames += &self.close_item();
            let id = self.item_id("msg");
            frames += &self.added(message_item(id.clone(), Vec::new(), "in_progress"));
            let data = json!({"item_id": id, "output_index": self.output_index(),
                "content_index": 0, "part": output_text_part("")});
            frames += &self.frame("response.content_part.added", data);
            self.open = Some(OpenItem::Message {
                text: String::new(),
            });
        }
        if let Some(OpenItem::Message { text: all }) = &mut self.open {
            all.push_str(text);
        }
        let data = json!({"item_id": self.item_id("msg"), "output_index": self.output_index(),
            "content_index": 0, "delta": text, "logprobs": []});
        frames += &self.frame("response.output_text.delta", data);
        frames
    }

    fn tool_delta(&mut self, call: &Value) -> String {
        let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let function = call.get("function").unwrap_or(&Value::Null);
        let same_call = matches!(&self.open, Some(OpenItem::Tool { chat_index: i, .. }) if *i == chat_index)
            && call
                .get("id")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
        let mut frames = String::new();
        if !same_call {
            frames += &self.close_item();
            let id = self.item_id("fc");
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(
                    || format!("call_{}", id.trim_start_matches("fc_")),
                    str::to_owned,
                );
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let split = self.shell.tool_name(&name);
            frames += &self.added(function_call_item(id, &call_id, &split, "", "in_progress"));
            self.open = Some(OpenItem::Tool {
                chat_index,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let fragment = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if fragment.is_empty() {
            return frames;
        }
        if let Some(OpenItem::Tool { arguments, .. }) = &mut self.open {
            arguments.push_str(fragment);
        }
        let data = json!({"item_id": self.item_id("fc"), "output_index": self.output_index(),
            "delta": fragment});
        frames += &self.frame("response.function_call_arguments.delta", data);
        frames
    }

    /// The id of the item at the current output index.
    fn item_id(&self, kind: &str) -> String {
        self.shell.item_id(kind, self.output_index())
    }

    fn added(&mut self, item: Value) -> String {
        let data = json!({"output_index": self.output_index(), "item": item});
        self.frame("response.output_item.added", data)
    }

    /// Closes the open item: its `….done` events, and it joins the output.
    fn close_item(&mut self) -> String {
        let Some(open) = self.open.take() else {
            return String::new();
        };
        let index = self.output_index();
        let mut frames = String::new();
        let item = match open {
            OpenItem::Reasoning { text } => {
                let id = self.item_id("rs");
                let data = json!({"item_id": id, "output_index": index, "content_index": 0,
                    "text": text});
                frames += &self.frame("response.reasoning_text.done", data);
                reasoning_item(id, &text)
            }
            OpenItem::Message { text } => {
                let id = self.item_id("msg");
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = base.clone();
                done["text"] = text.as_str().into();
                done["logprobs"] = json!([]);
                frames += &self.frame("response.output_text.done", done);
                let mut part = base;
                part["part"] = output_text_part(&text);
                frames += &self.frame("response.content_part.done", part);
                message_item(id, vec![output_text_part(&text)], "completed")
            }
            OpenItem::Tool {
                call_id,
                name,
                arguments,
                ..
            } => {
                let id = self.item_id("fc");
                let split = self.shell.tool_name(&name);
                let data = json!({"item_id": id, "output_index": index, "name": split.1,
                    "arguments": arguments});
                frames += &self.frame("response.function_call_arguments.done", data);
                function_call_item(id, &call_id, &split, &arguments, "completed")
            }
        };
        let data = json!({"output_index": index, "item": item});
        frames += &self.frame("response.output_item.done", data);
        self.output.push(item);
        frames
    }

    /// The response is complete: close the open item and send the whole response.
    fn close(&mut self) -> String {
        let mut frames = self.start();
        frames += &self.close_item();
        let finish = self.finish.clone().unwrap_or_else(|| "stop".into());
        let response = self.shell.finished(
            std::mem::take(&mut self.output),
            &finish,
            self.usage.as_ref(),
        );
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        frames += &self.frame(kind, json!({"response": response}));
        self.done = Some(response);
        frames
    }

    /// The provider failed: `error`, then `response.failed`; nothing more goes out.
    fn fail(&mut self, code: &str, message: &str) -> String {
        let error = json!({"code": code, "message": message});
        let mut frames = self.frame(
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut response = self.shell.finished(
            std::mem::take(&mut self.output),
            "stop",
            self.usage.as_ref(),
        );
        response["status"] = "failed".into();
        response["error"] = error;
        frames += &self.frame("response.failed", json!({"response": response}));
        self.done = Some(response);
        frames
    }
}

/// An Anthropic stream re-framed twice: to Chat chunks, then to Responses events.
#[derive(Debug)]
pub struct MessagesToResponsesStream {
    chat: MessagesToChatStream,
    responses: ChatToResponsesStream,
}

impl MessagesToResponsesStream {
    pub fn new(shell: ResponseShell, model: &str) -> Self {
        Self {
            chat: MessagesToChatStream::new(model, true),
            responses: ChatToResponsesStream::new(shell),
        }
    }

    /// The Responses events for one complete Anthropic SSE event (possibly none).
    pub fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let chat = self.chat.event(event)?;
        self.reframe(&chat)
    }

    /// Called when the upstream stream ends (see [`ChatToResponsesStream::finish`]).
    pub fn finish(&mut self) -> Bytes {
        let chat = self.chat.finish();
        let mut out = self.reframe(&chat).unwrap_or_default().to_vec();
        out.extend_from_slice(&self.responses.finish());
        Bytes::from(out)
    }

    /// The usage Anthropic reported (cache writes included, which Chat chunks cannot carry).
    pub fn usage(&self) -> Option<Usage> {
        self.chat.usage()
    }

    pub fn response(&self) -> Option<&Value> {
        self.responses.response()
    }

    /// Chat frames written by the first re-framer (`data: …` and a blank line each).
    fn reframe(&mut self, chat: &[u8]) -> Result<Bytes, Unsupported> {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(chat);
        for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
            out.extend_from_slice(&self.responses.event(event.as_bytes())?);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> ResponseShell {
        ResponseShell::new("resp_t", "m", 0, &serde_json::Map::new())
    }

    fn kinds(bytes: &[u8]) -> Vec<(String, u64)> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .map(|v| {
                (
                    v["type"].as_str().unwrap_or("").to_owned(),
                    v["sequence_number"].as_u64().unwrap_or(u64::MAX),
                )
            })
            .collect()
    }

    #[test]
    fn a_stream_cut_short_fails_and_sequence_numbers_count_up() {
        let mut stream = ChatToResponsesStream::new(shell());
        let mut out = stream
            .event(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n")
            .expect("a chunk")
            .to_vec();
        out.extend_from_slice(&stream.finish());
        let events = kinds(&out);
        let names: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "error",
                "response.failed"
            ]
        );
        let numbers: Vec<u64> = events.iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers, (0..7).collect::<Vec<_>>());
        assert_eq!(
            stream.response().map(|r| r["status"].clone()),
            Some(json!("failed"))
        );
    }

    #[test]
    fn garbage_is_refused_and_comments_send_nothing() {
        let mut stream = ChatToResponsesStream::new(shell());
        assert!(stream.event(b"data: {nope\n\n").is_err());
        assert_eq!(stream.event(b": ping\n\n").map(|b| b.len()), Ok(0));
    }
}
