//! Translation between the OpenAI Chat Completions and Anthropic Messages dialects: requests,
//! responses, stream events, usage and errors, as pure functions on JSON values (no I/O).
//!
//! # Layout
//!
//! Grouped by the client's dialect:
//!
//! - `from_chat`: a Chat Completions client in front of an Anthropic provider:
//!   [`chat_to_messages_request`], [`messages_to_chat_response`], [`usage_of_message`].
//! - `from_messages`: an Anthropic Messages client in front of an OpenAI-compatible provider:
//!   [`messages_to_chat_request`], [`chat_to_messages_response`].
//! - `stream_to_chat`: [`MessagesToChatStream`], Anthropic stream events re-framed as
//!   `chat.completion.chunk`s.
//! - `stream_to_messages`: [`ChatToMessagesStream`], OpenAI chunks re-framed as Anthropic
//!   stream events.
//! - `responses`: an OpenAI Responses client in front of a Chat provider (and, composed with
//!   `from_chat`, an Anthropic one): [`responses_to_chat_request`],
//!   [`chat_to_responses_response`], the [`ResponseShell`] a response object is built on.
//! - `responses_stream`: [`ChatToResponsesStream`] and [`MessagesToResponsesStream`], Chat
//!   chunks (or Anthropic events, through [`MessagesToChatStream`]) re-framed as Responses
//!   stream events.
//! - [`gemini`] and `gemini_stream`: Chat ↔ Gemini `generateContent`, its SSE stream
//!   ([`GeminiToChatStream`]) and `batchEmbedContents`; what is lossy is listed there.
//! - `converse` and `converse_stream`: Chat ↔ Bedrock Converse ([`chat_to_converse_request`],
//!   [`converse_to_chat_response`]) and its event stream ([`ConverseToChatStream`]); what is
//!   lossy is listed in `converse`.
//! - [`native`]: providers' own dialects no client speaks (Gemini, Bedrock), reached through
//!   Chat: requests from Chat, answers, streams ([`ChatReframer`]) and errors to Chat.
//! - `errors`: error bodies and error `type`s for a status, both ways
//!   ([`anthropic_error_type`], [`openai_error_type`], [`openai_error_to_anthropic`],
//!   [`anthropic_error_to_openai`]).
//!
//! The stream re-framers are fed one complete SSE event at a time (as
//! [`crate::usage::SseScanner`] yields them), answer the bytes to send to the client (possibly
//! none), and keep the usage they saw in the neutral [`Usage`] record. `finish` is called when
//! the upstream stream ends: it closes a stream whose last event was missing, or answers an
//! error event when the provider stopped before the response was complete.
//!
//! # Failure behaviour
//!
//! What the target dialect cannot express at all is refused with [`Unsupported`], whose
//! message the gateway answers as a 400 in the client's dialect (for requests), or as an
//! upstream error (for responses the provider sent that cannot be translated). Nothing here
//! panics on input.
//!
//! # Lossy translations
//!
//! Chat → Messages (request):
//! - `system`/`developer` messages anywhere in the conversation become top-level `system` text
//!   blocks, in order: their position in the conversation is lost.
//! - Consecutive messages of one role are merged (Anthropic requires alternation); `tool`
//!   messages become `tool_result` blocks of a user message.
//! - Assistant messages with no content and no tool calls are left out; `reasoning_content`
//!   on assistant messages is dropped (Anthropic thinking blocks need a signature).
//! - `temperature` is passed as is (Anthropic's range is 0–1, OpenAI's 0–2; the provider
//!   refuses values over 1). `frequency_penalty`, `presence_penalty`, `logit_bias`, `seed`,
//!   `service_tier`, `store`, `metadata`, `prediction`, `reasoning_effort`, `stream_options`
//!   are dropped (usage is always reported in streams).
//! - Empty and whitespace-only `stop` sequences (`"\n"`) are left out: Anthropic refuses
//!   them. Empty system texts are left out too.
//! - `response_format` `json_schema` becomes Anthropic's structured output format
//!   (`output_config.format`; its `name` and `strict` are dropped). Tool call ids are made
//!   valid for Anthropic (characters outside `[a-zA-Z0-9_-]` become `_`, the same in
//!   `tool_use` and `tool_result`); an empty tool result is sent without `content`.
//! - Refused: `n` > 1, `logprobs`/`top_logprobs`, `response_format` `json_object`, audio
//!   (`modalities`, `audio`, `input_audio` parts), `file` parts other than inline PDFs
//!   (which become base64 `document` blocks, the file name as `title`), the legacy
//!   `functions`/`function_call`, non-function tools, tool call arguments that are not a JSON
//!   object, image URLs that are neither `data:…;base64,` nor http(s).
//!
//! Messages → Chat (response and stream):
//! - `thinking` blocks and deltas become `reasoning_content` (the de-facto field of
//!   DeepSeek/vLLM-style clients); their signatures and `redacted_thinking` blocks are dropped.
//! - Server tool blocks (`server_tool_use`, `web_search_tool_result`, …) and citations are
//!   dropped.
//! - `stop_reason` `end_turn`/`stop_sequence`/`pause_turn` → `stop`, `max_tokens`/
//!   `model_context_window_exceeded` → `length`, `tool_use` → `tool_calls`, `refusal` →
//!   `content_filter`. Which stop sequence matched is lost.
//! - Usage: `prompt_tokens` = input + cache writes + cache reads, with cache reads as
//!   `prompt_tokens_details.cached_tokens`; cache writes are counted in `prompt_tokens` but
//!   not shown separately (the OpenAI shape has no field for them).
//!
//! Messages → Chat (request):
//! - `system` blocks are joined with blank lines into one system message; `cache_control`
//!   everywhere is dropped (OpenAI-compatible providers cache on their own). Claude Code's
//!   `x-anthropic-billing-header: …` system block is dropped: it changes on every request and
//!   would defeat the provider's prefix cache.
//! - `role: "system"` messages inside `messages` stay system messages in place.
//! - `thinking` and `redacted_thinking` blocks in assistant turns, `thinking`, `top_k`,
//!   `output_config` (but its `format`, below; `effort` is dropped), `context_management`, `service_tier`, `container`, `mcp_servers` and other
//!   top-level fields the OpenAI side cannot express are dropped, so Claude Code's requests
//!   do not fail.
//! - `max_tokens` is sent as `max_completion_tokens` (a model whose output limit is lower
//!   refuses it; Claude Code asks for 32000). `output_config.format` (`json_schema`) becomes
//!   `response_format` `json_schema` named `structured_output`.
//! - `metadata.user_id` becomes `user`; ids over 64 characters (Claude Code's) are sent as
//!   their SHA-256 in hex, still one stable value per user.
//! - `tool_result` blocks become `tool` messages (text only, blocks joined by newlines); an
//!   `is_error` result is prefixed with `Error: `; images inside a tool result are moved to a
//!   user message right after the tool messages. Text and images that share a user message
//!   with tool results follow the tool messages.
//! - `document` blocks: base64 PDFs become `file` parts, plain-text sources text parts;
//!   other sources are refused. Server tools (typed tools without `input_schema`) are
//!   refused.
//!
//! Chat → Messages (response and stream):
//! - `reasoning_content` is dropped (an Anthropic client would need a signed thinking block).
//! - `refusal` text becomes a text block; `finish_reason` `stop` → `end_turn`, `length` →
//!   `max_tokens`, `tool_calls`/`function_call` → `tool_use`, `content_filter` → `refusal`.
//! - Usage: `input_tokens` = prompt − cache reads − cache writes, `cache_read_input_tokens`
//!   = `cached_tokens`, `cache_creation_input_tokens` = the cache writes when the provider
//!   reports them (`prompt_tokens_details.cache_write_tokens` or `cache_creation_input_tokens`,
//!   as some OpenAI-compatible providers do), else 0. In streams the usage is only known at
//!   the end, so `message_start` says 0 and `message_delta` carries it.
//! - Only the first choice is translated. Arguments of parallel tool calls that arrive
//!   interleaved in a stream (a fragment for a tool call whose block was already closed) are
//!   refused; providers send them one call after another.

mod converse;
mod converse_stream;
mod errors;
mod from_chat;
mod from_messages;
pub mod gemini;
mod gemini_stream;
pub mod native;
mod responses;
mod responses_stream;
mod sse;
mod stream_to_chat;
mod stream_to_messages;

pub use converse::{chat_to_converse_request, converse_to_chat_response, usage_of_converse};
pub use converse_stream::ConverseToChatStream;
pub use errors::{
    anthropic_error_to_openai, anthropic_error_type, openai_error_to_anthropic, openai_error_type,
};
pub use from_chat::{chat_to_messages_request, messages_to_chat_response, usage_of_message};
pub use from_messages::{chat_to_messages_response, messages_to_chat_request};
pub use gemini_stream::GeminiToChatStream;
pub use native::{ChatReframer, NativeToMessagesStream};
pub use responses::{
    ResponseShell, chat_to_responses_response, input_items, kept_item, responses_to_chat_request,
    responses_usage_json, usage_from_responses,
};
pub use responses_stream::{ChatToResponsesStream, MessagesToResponsesStream};
pub use stream_to_chat::MessagesToChatStream;
pub use stream_to_messages::ChatToMessagesStream;

use serde_json::{Value, json};

use crate::usage::Usage;

/// Something the target dialect cannot express; the gateway answers 400 in the client's
/// dialect with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl Unsupported {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The neutral record of an Anthropic `usage` object (cache tokens added into the prompt);
/// the same reader the pass-through path uses.
fn usage_from_anthropic(usage: &Value) -> Usage {
    crate::providers::anthropic::usage_from_value(usage).unwrap_or_default()
}

/// The neutral record of an OpenAI `usage` object; the same reader the pass-through path uses.
fn usage_from_openai(usage: &Value) -> Usage {
    crate::usage::from_openai_value(usage).unwrap_or_default()
}

/// Token counts are whole numbers; the neutral record keeps them as f64.
fn count(tokens: f64) -> u64 {
    tokens.max(0.0).round() as u64
}

/// An OpenAI `usage` object for the neutral record.
fn openai_usage_json(usage: &Usage) -> Value {
    let mut details = json!({"cached_tokens": count(usage.cache_read_tokens)});
    // Cache writes (Anthropic, Bedrock) have no OpenAI field; shown when there are any, in
    // the name the gateway reads back (see `crate::usage`).
    if usage.cache_write_tokens > 0.0 {
        details["cache_write_tokens"] = count(usage.cache_write_tokens).into();
    }
    json!({
        "prompt_tokens": count(usage.prompt_tokens),
        "completion_tokens": count(usage.completion_tokens),
        "total_tokens": count(usage.total()),
        "prompt_tokens_details": details,
    })
}

/// An Anthropic `usage` object for the neutral record (cache tokens taken out of the input).
fn anthropic_usage_json(usage: &Usage) -> Value {
    let cached = usage.cache_read_tokens + usage.cache_write_tokens;
    json!({
        "input_tokens": count(usage.prompt_tokens - cached),
        "cache_creation_input_tokens": count(usage.cache_write_tokens),
        "cache_read_input_tokens": count(usage.cache_read_tokens),
        "output_tokens": count(usage.completion_tokens),
    })
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The text of OpenAI message content: a string, or the `text` parts of a list (some
/// providers, e.g. Mistral's reasoning models, answer with parts; other parts are dropped).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Seconds since the epoch, for the `created` field of chat completions.
fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod golden;
