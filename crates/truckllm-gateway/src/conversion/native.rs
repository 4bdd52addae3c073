//! Providers' own dialects that no client speaks ([`Wire::Gemini`], [`Wire::Bedrock`]), all
//! reached through OpenAI Chat: a client's request is made a Chat request first (Anthropic
//! Messages through [`super::messages_to_chat_request`], Responses through
//! [`super::responses_to_chat_request`]), then put in the provider's dialect here; the answer,
//! its stream and its errors come back as Chat, and from Chat on to the client's dialect.
//!
//! Each provider dialect adds one arm to each function below and a [`ChatReframer`] for its
//! stream; the ingress code stays the same for every one of them.

use std::fmt::Debug;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{ChatToMessagesStream, Unsupported};
use crate::providers::Wire;
use crate::usage::Usage;

/// Re-frames a provider's stream as OpenAI `chat.completion.chunk` SSE frames, one upstream
/// event at a time, keeping the usage it saw (in the neutral record, every token class the
/// provider reported).
pub trait ChatReframer: Send + Debug {
    /// The Chat frames for one complete upstream event (possibly none).
    fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported>;
    /// Called when the upstream stream ends: closes the Chat stream (`[DONE]`), or answers an
    /// error frame when the provider stopped before the answer was complete.
    fn finish(&mut self) -> Bytes;
    fn usage(&self) -> Option<Usage>;
    /// Whether the stream ended in an error frame (an exception, or cut short): the attempt
    /// then counts as failed, not as a success.
    fn failed(&self) -> bool;
}

fn not_built(wire: Wire) -> Unsupported {
    Unsupported(format!(
        "the {wire:?} dialect is not built into this gateway yet"
    ))
}

/// A Chat request body as the provider's request body for `model`.
pub fn chat_to_native_request(
    wire: Wire,
    chat: &Map<String, Value>,
    model: &str,
    default_max_tokens: u32,
) -> Result<Map<String, Value>, Unsupported> {
    let _ = (model, default_max_tokens);
    match wire {
        Wire::Gemini => super::gemini::chat_to_gemini_request(chat),
        Wire::Bedrock => super::chat_to_converse_request(chat),
        _ => Err(not_built(wire)),
    }
}

/// A Chat embeddings request as the provider's embeddings request for `model`.
pub fn embeddings_to_native_request(
    wire: Wire,
    request: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, Unsupported> {
    match wire {
        Wire::Gemini => super::gemini::embeddings_to_gemini_request(request, model),
        _ => Err(not_built(wire)),
    }
}

/// The provider's whole answer as a Chat completion named `model` (the name the client
/// asked for).
pub fn native_to_chat_response(
    wire: Wire,
    body: &Value,
    model: &str,
) -> Result<Value, Unsupported> {
    match wire {
        Wire::Gemini => super::gemini::gemini_to_chat_response(body, model),
        Wire::Bedrock => super::converse_to_chat_response(body, model),
        _ => Err(not_built(wire)),
    }
}

/// The provider's embeddings answer as an OpenAI embeddings list named `model`; `base64`:
/// the client asked for `encoding_format: base64`.
pub fn native_to_embeddings_response(
    wire: Wire,
    body: &Value,
    model: &str,
    base64: bool,
) -> Result<Value, Unsupported> {
    match wire {
        Wire::Gemini => super::gemini::gemini_to_embeddings_response(body, model, base64),
        _ => Err(not_built(wire)),
    }
}

/// The re-framer of the provider's stream to Chat chunks; `include_usage`: end with the
/// usage chunk (the client asked for `stream_options.include_usage`).
pub fn native_to_chat_stream(
    wire: Wire,
    model: &str,
    include_usage: bool,
) -> Result<Box<dyn ChatReframer>, Unsupported> {
    match wire {
        Wire::Gemini => Ok(Box::new(super::gemini_stream::GeminiToChatStream::new(
            model,
            include_usage,
        ))),
        Wire::Bedrock => Ok(Box::new(super::ConverseToChatStream::new(
            model,
            include_usage,
        ))),
        _ => Err(not_built(wire)),
    }
}

/// A provider's error body as OpenAI's `{"error": {...}}`, keeping its message.
pub fn native_error_to_openai(wire: Wire, status: u16, body: &[u8]) -> Value {
    let _ = wire;
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(error_message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(1000).collect());
    // Google's `status` (`INVALID_ARGUMENT`), AWS's `__type`, as the OpenAI `code`.
    let code = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/status").or_else(|| v.get("__type")))
        .filter(|c| c.is_string())
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::json!({
        "error": {
            "message": message,
            "type": super::openai_error_type(status),
            "param": null,
            "code": code,
        }
    })
}

/// The message of the error bodies providers send: `{"error": {"message"}}` (Google, OpenAI),
/// `{"message"}` / `{"Message"}` (AWS).
fn error_message(body: &Value) -> Option<String> {
    body.pointer("/error/message")
        .or_else(|| body.get("message"))
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The Chat SSE frames in `bytes` (each `data: …` and a blank line), one by one.
pub fn chat_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| format!("{e}\n\n").into_bytes())
        .collect()
}

/// A provider's stream re-framed twice: to Chat chunks, then to Anthropic Messages events;
/// the usage is the provider's own (Chat chunks cannot carry every token class).
#[derive(Debug)]
pub struct NativeToMessagesStream {
    chat: Box<dyn ChatReframer>,
    messages: ChatToMessagesStream,
}

impl NativeToMessagesStream {
    pub fn new(chat: Box<dyn ChatReframer>, model: &str) -> Self {
        Self {
            chat,
            messages: ChatToMessagesStream::new(model),
        }
    }

    /// The Messages events for one complete upstream event.
    pub fn event(&mut self, event: &[u8]) -> Result<Bytes, Unsupported> {
        let chat = self.chat.event(event)?;
        self.reframe(&chat)
    }

    pub fn finish(&mut self) -> Bytes {
        let chat = self.chat.finish();
        let mut out = self.reframe(&chat).unwrap_or_default().to_vec();
        out.extend_from_slice(&self.messages.finish());
        Bytes::from(out)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.chat.usage()
    }

    pub fn failed(&self) -> bool {
        self.chat.failed()
    }

    fn reframe(&mut self, chat: &[u8]) -> Result<Bytes, Unsupported> {
        let mut out = Vec::new();
        for frame in chat_frames(chat) {
            out.extend_from_slice(&self.messages.event(&frame)?);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_their_message_and_code_in_openai_shape() {
        let google =
            br#"{"error":{"code":400,"message":"bad contents","status":"INVALID_ARGUMENT"}}"#;
        let error = native_error_to_openai(Wire::Gemini, 400, google);
        assert_eq!(error["error"]["message"], "bad contents");
        assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        let aws = br#"{"message":"Too many requests","__type":"ThrottlingException"}"#;
        let error = native_error_to_openai(Wire::Bedrock, 429, aws);
        assert_eq!(error["error"]["code"], "ThrottlingException");
        let raw = native_error_to_openai(Wire::Gemini, 502, b"<html>bad gateway</html>");
        assert_eq!(raw["error"]["message"], "<html>bad gateway</html>");
    }
}
