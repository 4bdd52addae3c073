//! Anthropic stream events re-framed as OpenAI `chat.completion.chunk`s, with the usage of
//! `message_start` and `message_delta` kept.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::sse::{self, DONE_FRAME, Payload};
use super::{Unsupported, finish_reason, now_seconds, openai_usage_json, usage_from_anthropic};
use crate::usage::Usage;

/// Re-frames an Anthropic event stream as chat chunks, one event at a time.
#[derive(Debug)]
pub struct MessagesToChatStream {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    /// The Anthropic usage object so far (`message_delta` fields overwrite `message_start`'s).
    usage: Option<Value>,
    /// Anthropic content block index → OpenAI tool call index.
    tools: HashMap<u64, usize>,
    /// Set by `message_delta`; the stream is complete once it is known.
    finish: Option<&'static str>,
    /// `[DONE]` (or an error frame) was sent: nothing more goes out.
    closed: bool,
}

impl MessagesToChatStream {
    /// `model` is the name echoed to the client; `include_usage` adds the usage chunk.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: "chatcmpl-".to_owned(),
            created: now_seconds(),
            usage: None,
            tools: HashMap::new(),
            finish: None,
            closed: false,
        }
    }

    /// The chat frames for one complete Anthropic SSE event (possibly none).
    pub fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let Payload::Json(name, data) = sse::parse(event)? else {
            return Ok(Bytes::new());
        };
        if self.closed {
            return Ok(Bytes::new());
        }
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(name.as_deref())
            .unwrap_or("");
        let frames = match kind {
            "message_start" => self.message_start(&data),
            "content_block_start" => self.block_start(&data),
            "content_block_delta" => self.block_delta(&data),
            "message_delta" => self.message_delta(&data),
            "message_stop" => self.close(),
            "error" => self.error(&data),
            _ => String::new(),
        };
        Ok(sse::bytes(frames))
    }

    /// Called when the upstream stream ends: closes a complete stream that missed
    /// `message_stop`, or answers an error frame if the message was cut short.
    pub fn finish(&mut self) -> Bytes {
        if self.closed {
            return Bytes::new();
        }
        if self.finish.is_some() {
            return sse::bytes(self.close());
        }
        let error = json!({"error": {"type": "api_error", "message": "the provider's stream ended before the response was complete"}});
        sse::bytes(self.error(&error))
    }

    /// The usage seen so far (the prompt counts input, cache writes and cache reads).
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage_from_anthropic)
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        sse::data_frame(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        }))
    }

    fn message_start(&mut self, data: &Value) -> String {
        let message = data.get("message").unwrap_or(&Value::Null);
        let id = message.get("id").and_then(Value::as_str).unwrap_or("");
        self.id = super::from_chat::chat_id(id);
        self.merge_usage(message.get("usage"));
        self.chunk(json!({ "role": "assistant", "content": "" }), None)
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        let Some(Value::Object(fields)) = usage else {
            return;
        };
        let into = self.usage.get_or_insert_with(|| json!({}));
        for (key, value) in fields.iter().filter(|(_, v)| v.is_number()) {
            into[key.as_str()] = value.clone();
        }
    }

    fn block_start(&mut self, data: &Value) -> String {
        let block = data.get("content_block").unwrap_or(&Value::Null);
        let text = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
        match text("type") {
            "text" if !text("text").is_empty() => {
                self.chunk(json!({ "content": text("text") }), None)
            }
            "thinking" if !text("thinking").is_empty() => {
                self.chunk(json!({ "reasoning_content": text("thinking") }), None)
            }
            "tool_use" => {
                let index = self.tools.len();
                let block_index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                self.tools.insert(block_index, index);
                let call = json!({
                    "index": index,
                    "id": text("id"),
                    "type": "function",
                    "function": { "name": text("name"), "arguments": "" },
                });
                self.chunk(json!({ "tool_calls": [call] }), None)
            }
            _ => String::new(),
        }
    }

    fn block_delta(&mut self, data: &Value) -> String {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
        match text("type") {
            "text_delta" => self.chunk(json!({ "content": text("text") }), None),
            "thinking_delta" => self.chunk(json!({ "reasoning_content": text("thinking") }), None),
            "input_json_delta" if !text("partial_json").is_empty() => {
                let block_index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some(index) = self.tools.get(&block_index) else {
                    return String::new();
                };
                let call =
                    json!({ "index": index, "function": { "arguments": text("partial_json") } });
                self.chunk(json!({ "tool_calls": [call] }), None)
            }
            // signature_delta, citations_delta and empty deltas have no chat equivalent.
            _ => String::new(),
        }
    }

    fn message_delta(&mut self, data: &Value) -> String {
        self.merge_usage(data.get("usage"));
        let stop = data
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        let Some(stop) = stop else {
            return String::new();
        };
        let finish = finish_reason(stop);
        self.finish = Some(finish);
        self.chunk(json!({}), Some(finish))
    }

    /// The usage chunk (if asked for) and `[DONE]`.
    fn close(&mut self) -> String {
        self.closed = true;
        let mut frames = String::new();
        if self.include_usage
            && let Some(usage) = self.usage()
        {
            frames.push_str(&sse::data_frame(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": openai_usage_json(&usage),
            })));
        }
        frames.push_str(DONE_FRAME);
        frames
    }

    /// An Anthropic `error` event as an OpenAI-shaped error frame; the stream ends there.
    fn error(&mut self, data: &Value) -> String {
        self.closed = true;
        let error = data.get("error").unwrap_or(&Value::Null);
        let kind = error
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("api_error");
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider failed");
        let status = super::errors::anthropic_status(kind);
        sse::data_frame(&json!({ "error": {
            "message": message,
            "type": super::openai_error_type(status),
            "param": null,
            "code": kind,
        }}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_cut_short_ends_with_an_error_frame_and_a_finished_one_with_done() {
        let mut cut = MessagesToChatStream::new("m", false);
        let start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
        assert!(!cut.event(start).expect("converts").is_empty());
        let end = String::from_utf8(cut.finish().to_vec()).expect("utf-8");
        assert!(
            end.contains("ended before the response was complete"),
            "{end}"
        );
        assert!(cut.finish().is_empty(), "finish answers once");

        let mut no_stop = MessagesToChatStream::new("m", false);
        no_stop.event(start).expect("converts");
        let delta = b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n";
        no_stop.event(delta).expect("converts");
        assert_eq!(no_stop.finish(), Bytes::from_static(DONE_FRAME.as_bytes()));
        let usage = no_stop.usage().expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3.0, 4.0));
    }

    #[test]
    fn pings_and_comments_send_nothing_and_garbage_is_refused() {
        let mut stream = MessagesToChatStream::new("m", true);
        assert!(
            stream
                .event(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
                .expect("ok")
                .is_empty()
        );
        assert!(stream.event(b": hi\n\n").expect("ok").is_empty());
        assert!(stream.event(b"data: {nope\n\n").is_err());
    }
}

#[cfg(test)]
mod scanner_tests {
    use super::*;
    use crate::usage::SseScanner;

    /// The re-framer takes the events exactly as the scanner frames them, whatever the
    /// chunk boundaries and line ends.
    #[test]
    fn events_framed_by_the_scanner_convert_the_same_at_any_split() {
        let stream = concat!(
            "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hé\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        let convert = |split: usize| {
            let mut scanner = SseScanner::default();
            let mut stream_out = MessagesToChatStream::new("m", true);
            let mut out = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                for event in scanner.push(chunk).expect("small events") {
                    out.extend_from_slice(&stream_out.event(&event).expect("converts"));
                }
            }
            out.extend_from_slice(&stream_out.finish());
            (String::from_utf8(out).expect("utf-8"), stream_out.usage())
        };
        let (whole, usage) = convert(stream.len());
        assert!(
            whole.contains("\"content\":\"hé\"") && whole.ends_with("data: [DONE]\n\n"),
            "{whole}"
        );
        assert_eq!(
            usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((3.0, 2.0))
        );
        for split in 1..stream.len() {
            let (out, _) = convert(split);
            let strip = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
            assert_eq!(strip(&out), strip(&whole), "split at {split}");
        }
    }
}
