//! Bedrock `/converse-stream` events re-framed as OpenAI `chat.completion.chunk`s, with the
//! usage of the closing `metadata` event kept.
//!
//! Each call takes one whole event-stream message (as [`FrameSplitter`] cuts them) and answers
//! the chat frames it becomes (`data:` frames, possibly none), which an Anthropic client's
//! stream re-frames once more through [`super::ChatToMessagesStream`]. An exception message
//! (`throttlingException`, `serviceUnavailableException`, …) ends the stream with an error
//! frame; a message whose CRCs fail is an error of the stream itself.
//!
//! [`FrameSplitter`]: crate::providers::bedrock::eventstream::FrameSplitter

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::converse::{chat_id, finish_reason};
use super::native::ChatReframer;
use super::sse::{DONE_FRAME, data_frame};
use super::{Unsupported, now_seconds, openai_usage_json};
use crate::providers::bedrock::{self, eventstream};
use crate::usage::Usage;

/// Re-frames a Converse event stream as chat chunks, one message at a time.
#[derive(Debug)]
pub struct ConverseToChatStream {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    usage: Option<Usage>,
    /// Converse content block index → OpenAI tool call index.
    tools: HashMap<u64, usize>,
    /// Set by `messageStop`; the stream is complete once it is known.
    finish: Option<&'static str>,
    /// `[DONE]` (or an error frame) was sent: nothing more goes out.
    closed: bool,
    /// The stream ended in an error frame.
    failed: bool,
}

impl ConverseToChatStream {
    /// `model` is the name echoed to the client; `include_usage` adds the usage chunk.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: chat_id(),
            created: now_seconds(),
            usage: None,
            tools: HashMap::new(),
            finish: None,
            closed: false,
            failed: false,
        }
    }
}

impl ChatReframer for ConverseToChatStream {
    /// The chat frames for one whole event-stream message (possibly none).
    fn event(&mut self, message: &[u8]) -> Result<Bytes, Unsupported> {
        let frame = eventstream::decode(message)
            .map_err(|e| Unsupported::new(format!("the provider's stream is broken: {e}")))?;
        if self.closed {
            return Ok(Bytes::new());
        }
        let frames = match frame {
            eventstream::Frame::Event { kind, payload } => {
                let data: Value = serde_json::from_slice(&payload).map_err(|_| {
                    Unsupported::new("the provider sent a stream event that is not JSON")
                })?;
                self.on_event(&kind, &data)
            }
            exception @ (eventstream::Frame::Exception { .. }
            | eventstream::Frame::Error { .. }) => {
                vec![self.error(&exception)]
            }
        };
        Ok(Bytes::from(frames.concat()))
    }

    /// Called when the upstream stream ends: closes a complete stream that missed its last
    /// event, or answers an error frame if the message was cut short.
    fn finish(&mut self) -> Bytes {
        if self.closed {
            return Bytes::new();
        }
        self.closed = true;
        if self.finish.is_some() {
            return Bytes::from_static(DONE_FRAME.as_bytes());
        }
        self.failed = true;
        let error = json!({ "error": {
            "message": "the provider's stream ended before the response was complete",
            "type": "server_error",
            "param": null,
            "code": "stream_incomplete",
        }});
        Bytes::from(data_frame(&error))
    }

    /// The usage the stream reported (in its `metadata` event), if it got that far.
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

impl ConverseToChatStream {
    fn on_event(&mut self, kind: &str, data: &Value) -> Vec<String> {
        match kind {
            "messageStart" => vec![self.chunk(json!({ "role": "assistant", "content": "" }), None)],
            "contentBlockStart" => self.block_start(data).into_iter().collect(),
            "contentBlockDelta" => self.block_delta(data).into_iter().collect(),
            "messageStop" => {
                let stop = data.get("stopReason").and_then(Value::as_str).unwrap_or("");
                let finish = finish_reason(stop);
                self.finish = Some(finish);
                vec![self.chunk(json!({}), Some(finish))]
            }
            "metadata" => self.metadata(data),
            _ => Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        data_frame(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        }))
    }

    fn block_index(data: &Value) -> u64 {
        data.get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// A `toolUse` start opens a tool call (its id and name); other starts say nothing.
    fn block_start(&mut self, data: &Value) -> Option<String> {
        let tool = data.pointer("/start/toolUse")?;
        let index = self.tools.len();
        self.tools.insert(Self::block_index(data), index);
        let field = |key: &str| tool.get(key).cloned().unwrap_or_default();
        Some(self.chunk(
            json!({ "tool_calls": [{
                "index": index,
                "id": field("toolUseId"),
                "type": "function",
                "function": { "name": field("name"), "arguments": "" },
            }]}),
            None,
        ))
    }

    fn block_delta(&mut self, data: &Value) -> Option<String> {
        let delta = data.get("delta")?;
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            return Some(self.chunk(json!({ "content": text }), None));
        }
        if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
            let index = *self.tools.get(&Self::block_index(data))?;
            return Some(self.chunk(
                json!({ "tool_calls": [{ "index": index, "function": { "arguments": input } }] }),
                None,
            ));
        }
        let reasoning = delta
            .pointer("/reasoningContent/text")
            .and_then(Value::as_str)?;
        Some(self.chunk(json!({ "reasoning_content": reasoning }), None))
    }

    /// The last event: the usage (a usage chunk if the client asked for one), then `[DONE]`.
    fn metadata(&mut self, data: &Value) -> Vec<String> {
        self.usage = data.get("usage").and_then(bedrock::usage_from_value);
        let mut frames = Vec::new();
        if self.finish.is_none() {
            return frames;
        }
        if self.include_usage
            && let Some(usage) = &self.usage
        {
            frames.push(data_frame(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": openai_usage_json(usage),
            })));
        }
        frames.push(DONE_FRAME.to_owned());
        self.closed = true;
        frames
    }

    /// An exception or error message as an OpenAI error frame; the stream ends there.
    fn error(&mut self, frame: &eventstream::Frame) -> String {
        self.closed = true;
        self.failed = true;
        let (code, status) = match frame {
            eventstream::Frame::Exception { kind, .. } => (kind.clone(), exception_status(kind)),
            eventstream::Frame::Error { code, .. } => (code.clone(), 500),
            eventstream::Frame::Event { .. } => (String::new(), 500),
        };
        let message = Some(frame.message())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("the provider's stream failed: {code}"));
        data_frame(&json!({ "error": {
            "message": message,
            "type": super::openai_error_type(status),
            "param": null,
            "code": code,
        }}))
    }
}

/// The HTTP status Bedrock gives an exception of this name outside a stream.
pub(crate) fn exception_status(kind: &str) -> u16 {
    match kind.to_ascii_lowercase().as_str() {
        "throttlingexception" | "modelnotreadyexception" => 429,
        "servicequotaexceededexception" => 429,
        "validationexception" => 400,
        "accessdeniedexception" => 403,
        "resourcenotfoundexception" => 404,
        "modeltimeoutexception" => 408,
        "modelerrorexception" => 424,
        "serviceunavailableexception" => 503,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::bedrock::eventstream::{Frame, encode};

    fn message(kind: &str, payload: Value) -> Bytes {
        encode(&Frame::Event {
            kind: kind.to_owned(),
            payload: Bytes::from(payload.to_string()),
        })
        .expect("encoded")
    }

    fn run(stream: &mut ConverseToChatStream, events: &[(&str, Value)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (kind, payload) in events {
            let frames = stream
                .event(&message(kind, payload.clone()))
                .expect("relayed");
            out.extend(frames_json(&frames));
        }
        out
    }

    fn frames_json(frames: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(frames).expect("utf-8");
        text.split_terminator("\n\n")
            .map(|frame| {
                let data = frame.strip_prefix("data: ").expect("a data frame");
                if data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(data).expect("JSON")
                }
            })
            .collect()
    }

    #[test]
    fn text_tool_use_stop_and_usage_become_chunks() {
        let mut stream = ConverseToChatStream::new("claude", true);
        let out = run(
            &mut stream,
            &[
                ("messageStart", json!({"role": "assistant"})),
                (
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}, "p": "abcd"}),
                ),
                ("contentBlockStop", json!({"contentBlockIndex": 0})),
                (
                    "contentBlockStart",
                    json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "f"}}}),
                ),
                (
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"x\":"}}}),
                ),
                (
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}),
                ),
                ("contentBlockStop", json!({"contentBlockIndex": 1})),
                ("messageStop", json!({"stopReason": "tool_use"})),
                (
                    "metadata",
                    json!({"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {"latencyMs": 10}}),
                ),
            ],
        );
        assert_eq!(
            out[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            out[2]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        let args: String = out[3..5]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .expect("args")
                    .to_owned()
            })
            .collect();
        assert_eq!(args, "{\"x\":1}");
        assert_eq!(out[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out[6]["usage"]["total_tokens"], 7);
        assert_eq!(out[7], json!("[DONE]"));
        assert_eq!(out.len(), 8);
        let usage = stream.usage().expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3.0, 4.0));
        assert!(stream.finish().is_empty(), "already closed");
    }

    #[test]
    fn without_include_usage_no_usage_chunk_but_usage_is_kept() {
        let mut stream = ConverseToChatStream::new("m", false);
        let out = run(
            &mut stream,
            &[
                ("messageStop", json!({"stopReason": "end_turn"})),
                (
                    "metadata",
                    json!({"usage": {"inputTokens": 1, "outputTokens": 2, "cacheReadInputTokens": 5}}),
                ),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[1], json!("[DONE]"));
        assert_eq!(stream.usage().expect("usage").prompt_tokens, 6.0);
    }

    #[test]
    fn an_exception_ends_the_stream_with_an_error_frame() {
        let mut stream = ConverseToChatStream::new("m", true);
        let exception = encode(&Frame::Exception {
            kind: "throttlingException".into(),
            payload: Bytes::from_static(
                br#"{"message":"Too many tokens, please wait before trying again."}"#,
            ),
        })
        .expect("encoded");
        let out = stream.event(&exception).expect("relayed");
        let error = &frames_json(&out)[0];
        assert_eq!(error["error"]["code"], "throttlingException");
        assert_eq!(error["error"]["type"], "rate_limit_error");
        assert_eq!(
            error["error"]["message"],
            "Too many tokens, please wait before trying again."
        );
        assert!(
            stream
                .event(&message("messageStop", json!({"stopReason": "end_turn"})))
                .expect("ok")
                .is_empty()
        );
        assert!(stream.finish().is_empty());
    }

    #[test]
    fn a_cut_stream_ends_with_an_error_and_a_corrupt_message_is_refused() {
        let mut stream = ConverseToChatStream::new("m", true);
        run(
            &mut stream,
            &[("contentBlockDelta", json!({"delta": {"text": "par"}}))],
        );
        let end = &frames_json(&stream.finish())[0];
        assert_eq!(end["error"]["code"], "stream_incomplete");

        let mut stream = ConverseToChatStream::new("m", true);
        let mut corrupt = message("messageStop", json!({"stopReason": "end_turn"})).to_vec();
        let at = corrupt.len() - 8;
        corrupt[at] ^= 0x20;
        assert!(stream.event(&corrupt).is_err());
    }

    #[test]
    fn a_stream_that_missed_metadata_still_closes() {
        let mut stream = ConverseToChatStream::new("m", true);
        run(
            &mut stream,
            &[("messageStop", json!({"stopReason": "max_tokens"}))],
        );
        assert_eq!(frames_json(&stream.finish()), [json!("[DONE]")]);
        assert!(stream.usage().is_none());
    }
}
