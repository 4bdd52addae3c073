//! Gemini's `streamGenerateContent?alt=sse` stream re-framed as OpenAI
//! `chat.completion.chunk`s. Each Gemini event is a whole `GenerateContentResponse` holding
//! the next parts: text parts become `content` deltas, `thought` parts `reasoning_content`
//! deltas, each `functionCall` part one whole tool call (Gemini does not split arguments).
//! `usageMetadata` is cumulative; the last one seen is the usage. The stream is complete
//! once a candidate has a `finishReason` (or the prompt was blocked).

use bytes::Bytes;
use serde_json::{Value, json};

use super::gemini::{chat_id, finish_reason, openai_usage, read_parts, usage_of};
use super::native::ChatReframer;
use super::sse::{self, DONE_FRAME, Payload};
use super::{Unsupported, now_seconds};
use crate::usage::Usage;

/// Re-frames a Gemini SSE stream as chat chunks, one event at a time.
#[derive(Debug)]
pub struct GeminiToChatStream {
    model: String,
    include_usage: bool,
    id: Option<String>,
    created: u64,
    usage: Option<Usage>,
    /// Tool calls sent so far (the next call's index).
    calls: usize,
    /// Set once a candidate finished; the stream is complete.
    finished: bool,
    /// `[DONE]` (or an error frame) was sent: nothing more goes out.
    closed: bool,
    /// The stream ended in an error frame.
    failed: bool,
}

impl GeminiToChatStream {
    /// `model` is the name echoed to the client; `include_usage` adds the usage chunk.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: None,
            created: now_seconds(),
            usage: None,
            calls: 0,
            finished: false,
            closed: false,
            failed: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        sse::data_frame(&json!({
            "id": self.id.as_deref().unwrap_or("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        }))
    }

    fn response(&mut self, data: &Value) -> String {
        let mut frames = String::new();
        if self.id.is_none() {
            self.id = Some(chat_id(data));
            frames.push_str(&self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
        if let Some(usage) = usage_of(data) {
            self.usage = Some(usage);
        }
        let candidate = data.pointer("/candidates/0");
        let parts = candidate
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let read = read_parts(
            parts,
            self.calls,
            data.get("responseId").and_then(Value::as_str),
        );
        if !read.thoughts.is_empty() {
            frames.push_str(&self.chunk(json!({ "reasoning_content": read.thoughts }), None));
        }
        if !read.text.is_empty() {
            frames.push_str(&self.chunk(json!({ "content": read.text }), None));
        }
        if !read.calls.is_empty() {
            self.calls += read.calls.len();
            frames.push_str(&self.chunk(json!({ "tool_calls": read.calls }), None));
        }
        let reason = candidate
            .and_then(|c| c.get("finishReason"))
            .and_then(Value::as_str);
        let blocked = data.pointer("/promptFeedback/blockReason").is_some();
        if (reason.is_some() || blocked) && !self.finished {
            self.finished = true;
            let finish = finish_reason(reason, self.calls > 0, blocked);
            frames.push_str(&self.chunk(json!({}), Some(finish)));
        }
        frames
    }

    /// The usage chunk (if asked for) and `[DONE]`.
    fn close(&mut self) -> String {
        self.closed = true;
        let mut frames = String::new();
        if self.include_usage
            && let Some(usage) = self.usage
        {
            frames.push_str(&sse::data_frame(&json!({
                "id": self.id.as_deref().unwrap_or("chatcmpl-"),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": openai_usage(&usage),
            })));
        }
        frames.push_str(DONE_FRAME);
        frames
    }

    /// A Google error object (sent in the stream) as an OpenAI-shaped error frame.
    fn error(&mut self, error: &Value) -> String {
        self.closed = true;
        self.failed = true;
        let status = error.get("code").and_then(Value::as_u64).unwrap_or(500);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider failed");
        let code = error.get("status").and_then(Value::as_str);
        sse::data_frame(&json!({ "error": {
            "message": message,
            "type": super::openai_error_type(u16::try_from(status).unwrap_or(500)),
            "param": null,
            "code": code,
        }}))
    }
}

impl ChatReframer for GeminiToChatStream {
    fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let Payload::Json(_, data) = sse::parse(event)? else {
            return Ok(Bytes::new());
        };
        if self.closed {
            return Ok(Bytes::new());
        }
        let frames = match data.get("error") {
            Some(error) => self.error(error),
            None => self.response(&data),
        };
        Ok(sse::bytes(frames))
    }

    fn finish(&mut self) -> Bytes {
        if self.closed {
            return Bytes::new();
        }
        if self.finished {
            return sse::bytes(self.close());
        }
        let error = json!({"code": 502, "message": "the provider's stream ended before the response was complete"});
        sse::bytes(self.error(&error))
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::SseScanner;

    const STREAM: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1},\"responseId\":\"r1\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2,\"thoughtsTokenCount\":3,\"totalTokenCount\":9},\"responseId\":\"r1\"}\r\n\r\n",
    );

    fn convert(stream: &[u8], split: usize) -> (String, Option<Usage>) {
        let mut scanner = SseScanner::default();
        let mut reframer = GeminiToChatStream::new("m", true);
        let mut out = Vec::new();
        for chunk in [&stream[..split], &stream[split..]] {
            for event in scanner.push(chunk).expect("small events") {
                out.extend_from_slice(&reframer.event(&event).expect("converts"));
            }
        }
        out.extend_from_slice(&reframer.finish());
        (String::from_utf8(out).expect("utf-8"), reframer.usage())
    }

    #[test]
    fn text_streams_as_content_deltas_with_the_last_usage() {
        let stream = STREAM.as_bytes();
        let (whole, usage) = convert(stream, stream.len());
        assert!(whole.contains("\"content\":\"Hel\""), "{whole}");
        assert!(whole.contains("\"finish_reason\":\"stop\""), "{whole}");
        assert!(whole.contains("\"id\":\"chatcmpl-r1\""), "{whole}");
        assert!(
            whole.contains("\"reasoning_tokens\":3") && whole.ends_with(DONE_FRAME),
            "{whole}"
        );
        let usage = usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (4.0, 5.0));
        for split in 1..stream.len() {
            let (out, _) = convert(stream, split);
            let strip = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
            assert_eq!(strip(&out), strip(&whole), "split at {split}");
        }
    }

    #[test]
    fn calls_are_numbered_across_events_and_a_cut_stream_ends_in_an_error() {
        let mut reframer = GeminiToChatStream::new("m", false);
        let call = |name: &str| {
            format!(
                "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"functionCall\":{{\"name\":\"{name}\",\"args\":{{\"a\":1}}}}}}]}}}}]}}\n\n"
            )
        };
        let first = reframer.event(call("f").as_bytes()).expect("ok");
        let second = reframer.event(call("g").as_bytes()).expect("ok");
        let text = String::from_utf8_lossy(&second);
        assert!(
            text.contains("\"index\":1") && text.contains("\"name\":\"g\""),
            "{text}"
        );
        assert!(String::from_utf8_lossy(&first).contains("\"arguments\":\"{\\\"a\\\":1}\""));
        let end = String::from_utf8(reframer.finish().to_vec()).expect("utf-8");
        assert!(
            end.contains("ended before the response was complete"),
            "{end}"
        );
        assert!(reframer.finish().is_empty(), "finish answers once");
    }
}
