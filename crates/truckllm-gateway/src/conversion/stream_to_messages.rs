//! OpenAI `chat.completion.chunk`s re-framed as Anthropic stream events (`message_start` …
//! `message_stop`), text and tool calls as content blocks, usage in `message_delta`.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::sse::{self, Payload};
use super::{Unsupported, anthropic_usage_json, stop_reason, usage_from_openai};
use crate::usage::Usage;

/// The content block being streamed (Anthropic blocks do not interleave).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    Text,
    ToolUse,
}

/// Keys for tool calls sent without an `index`, apart from real indexes.
const NO_INDEX_KEYS: u64 = 1 << 32;

/// Re-frames OpenAI chunks as Anthropic events, one SSE event at a time.
#[derive(Debug)]
pub struct ChatToMessagesStream {
    model: String,
    /// `message_start` was sent.
    started: bool,
    /// The open block and its Anthropic index.
    open: Option<(Block, u64)>,
    /// The Anthropic index the next block gets.
    next_index: u64,
    /// OpenAI tool call `index` → the id and Anthropic block index of the latest call with it.
    tools: HashMap<u64, (String, u64)>,
    stop: Option<&'static str>,
    usage: Option<Usage>,
    /// `message_stop` (or an error event) was sent: nothing more goes out.
    closed: bool,
}

impl ChatToMessagesStream {
    /// `model` is the name echoed to the client.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            stop: None,
            usage: None,
            closed: false,
        }
    }

    /// The Anthropic events for one complete OpenAI SSE event (possibly none).
    pub fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let payload = sse::parse(event)?;
        if self.closed {
            return Ok(Bytes::new());
        }
        let frames = match payload {
            Payload::Nothing => String::new(),
            Payload::Done => self.close(),
            Payload::Json(_, chunk) => self.chunk(&chunk)?,
        };
        Ok(sse::bytes(frames))
    }

    /// Called when the upstream stream ends: closes a complete stream that missed `[DONE]`,
    /// or answers an error event if the response was cut short.
    pub fn finish(&mut self) -> Bytes {
        if self.closed {
            return Bytes::new();
        }
        if self.stop.is_some() {
            return sse::bytes(self.close());
        }
        let error =
            json!({"message": "the provider's stream ended before the response was complete"});
        sse::bytes(self.error(&error, 500))
    }

    /// The usage from the provider's usage chunk, once it came.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn chunk(&mut self, chunk: &Value) -> Result<String, Unsupported> {
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Ok(self.error(error, 500));
        }
        let mut frames = self.start(chunk);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_from_openai(usage));
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        let Some(choice) = choice else {
            return Ok(frames);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for key in ["content", "refusal"] {
            let text = super::text_of(delta.get(key));
            if !text.is_empty() {
                frames.push_str(&self.text(&text));
            }
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            frames.push_str(&self.tool_fragment(call)?);
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(finish));
            frames.push_str(&self.close_block());
        }
        Ok(frames)
    }

    /// `message_start`, before the first event.
    fn start(&mut self, chunk: &Value) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        let id = chunk.get("id").and_then(Value::as_str).unwrap_or("");
        sse::named_frame(
            "message_start",
            &json!({ "type": "message_start", "message": {
                "id": super::from_messages::message_id(id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            }}),
        )
    }

    /// Opens a block (closing the open one); text continues an open text block.
    fn open_block(&mut self, block: Block, content_block: Value) -> (String, u64) {
        if let Some((Block::Text, index)) = self.open
            && block == Block::Text
        {
            return (String::new(), index);
        }
        let mut frames = self.close_block();
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((block, index));
        let start = json!({ "type": "content_block_start", "index": index, "content_block": content_block });
        frames.push_str(&sse::named_frame("content_block_start", &start));
        (frames, index)
    }

    fn close_block(&mut self) -> String {
        match self.open.take() {
            Some((_, index)) => sse::named_frame(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            ),
            None => String::new(),
        }
    }

    fn delta(index: u64, delta: Value) -> String {
        let event = json!({ "type": "content_block_delta", "index": index, "delta": delta });
        sse::named_frame("content_block_delta", &event)
    }

    fn text(&mut self, text: &str) -> String {
        let (mut frames, index) =
            self.open_block(Block::Text, json!({ "type": "text", "text": "" }));
        frames.push_str(&Self::delta(
            index,
            json!({ "type": "text_delta", "text": text }),
        ));
        frames
    }

    /// One piece of a tool call: the first (with id and name) opens its block, the next
    /// ones add argument fragments. A fragment with a new id opens a new block even at a known
    /// `index` (some providers send every call complete at index 0).
    fn tool_fragment(&mut self, call: &Value) -> Result<String, Unsupported> {
        let function = call.get("function").unwrap_or(&Value::Null);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let index = match call.get("index").and_then(Value::as_u64) {
            Some(index) => index,
            None => self.key_without_index(id),
        };
        let known = self
            .tools
            .get(&index)
            .filter(|(known, _)| id.is_none_or(|id| id == known));
        let mut frames = String::new();
        let block_index = match known {
            Some(&(_, block_index)) if self.open == Some((Block::ToolUse, block_index)) => {
                block_index
            }
            Some(_) => {
                return Err(Unsupported::new(
                    "the provider interleaved the arguments of parallel tool calls",
                ));
            }
            None => {
                let name = function.get("name").and_then(Value::as_str).unwrap_or("");
                let id = id.map_or_else(|| format!("call_{index}"), str::to_owned);
                let block = json!({ "type": "tool_use", "id": id, "name": name, "input": {} });
                let (start, block_index) = self.open_block(Block::ToolUse, block);
                self.tools.insert(index, (id, block_index));
                frames.push_str(&start);
                block_index
            }
        };
        let arguments = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !arguments.is_empty() {
            let delta = json!({ "type": "input_json_delta", "partial_json": arguments });
            frames.push_str(&Self::delta(block_index, delta));
        }
        Ok(frames)
    }

    /// The key of a fragment that has no `index`: the call with its id, else the open call
    /// (for a fragment without id), else a fresh key.
    fn key_without_index(&self, id: Option<&str>) -> u64 {
        let open = self.open.map(|(_, block)| block);
        let found = self.tools.iter().find(|(_, (known, block))| match id {
            Some(id) => id == known,
            None => Some(*block) == open,
        });
        match found {
            Some((key, _)) => *key,
            None => NO_INDEX_KEYS + self.tools.len() as u64,
        }
    }

    /// The last block's stop, `message_delta` with the stop reason and usage, `message_stop`.
    fn close(&mut self) -> String {
        let mut frames = self.start(&Value::Null);
        frames.push_str(&self.close_block());
        self.closed = true;
        let usage = anthropic_usage_json(&self.usage.unwrap_or_default());
        let delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null },
            "usage": usage,
        });
        frames.push_str(&sse::named_frame("message_delta", &delta));
        frames.push_str(&sse::named_frame(
            "message_stop",
            &json!({ "type": "message_stop" }),
        ));
        frames
    }

    /// An Anthropic `error` event; the stream ends there.
    fn error(&mut self, error: &Value, status: u16) -> String {
        self.closed = true;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or(error.as_str())
            .unwrap_or("the provider failed");
        let event = json!({ "type": "error", "error": {
            "type": super::anthropic_error_type(status),
            "message": message,
        }});
        sse::named_frame("error", &event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Bytes) -> String {
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn interleaved_tool_arguments_are_refused() {
        let mut stream = ChatToMessagesStream::new("m");
        let first = br#"data: {"id":"c","choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":""}}]}}]}"#;
        let second = br#"data: {"id":"c","choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#;
        let back = br#"data: {"id":"c","choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#;
        stream.event(first).expect("ok");
        stream.event(second).expect("ok");
        assert!(stream.event(back).is_err());
    }

    #[test]
    fn a_stream_cut_short_ends_with_an_error_event() {
        let mut stream = ChatToMessagesStream::new("m");
        let chunk = br#"data: {"id":"c","choices":[{"delta":{"content":"Hi"}}]}"#;
        assert!(text(stream.event(chunk).expect("ok")).starts_with("event: message_start\n"));
        let end = text(stream.finish());
        assert!(
            end.starts_with("event: error\n") && end.contains("ended before"),
            "{end}"
        );
        assert!(stream.finish().is_empty());
        assert!(stream.event(b"data: [DONE]\n\n").expect("ok").is_empty());
    }

    #[test]
    fn a_null_error_field_is_no_error() {
        let mut stream = ChatToMessagesStream::new("m");
        let chunk = br#"data: {"id":"c","error":null,"choices":[{"delta":{"content":"Hi"}}]}"#;
        let out = text(stream.event(chunk).expect("ok"));
        assert!(
            out.contains("text_delta") && !out.contains("event: error"),
            "{out}"
        );
    }

    #[test]
    fn an_error_chunk_becomes_an_error_event() {
        let mut stream = ChatToMessagesStream::new("m");
        let chunk = br#"data: {"error":{"message":"upstream overloaded","type":"server_error"}}"#;
        let out = text(stream.event(chunk).expect("ok"));
        assert!(
            out.contains("\"type\":\"error\"") && out.contains("upstream overloaded"),
            "{out}"
        );
    }
}
