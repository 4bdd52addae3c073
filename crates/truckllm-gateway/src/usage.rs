//! Reading token usage from provider responses without re-serialising them: a typed view of
//! just the `usage` object of a JSON body, and an SSE scanner that frames a stream into events,
//! finds the usage chunk, and can drop it when the client did not ask for it.
//!
//! [`Usage`] is the neutral record every provider's usage is converted to. Its classes follow
//! OpenAI's accounting: `prompt_tokens` counts every input token, cached or not, with
//! `cache_read_tokens` and `cache_write_tokens` the parts of it read from or written to a
//! prompt cache; `completion_tokens` counts every output token, with `reasoning_tokens` the
//! part spent thinking. (Anthropic reports cache tokens beside `input_tokens`, not inside it;
//! its converter adds them in.)

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// Token usage of one response, by class (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
    pub total_tokens: f64,
    pub cache_read_tokens: f64,
    pub cache_write_tokens: f64,
    pub reasoning_tokens: f64,
}

/// The OpenAI `usage` object as sent.
#[derive(Debug, Default, Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: f64,
    #[serde(default)]
    completion_tokens: f64,
    #[serde(default)]
    total_tokens: f64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    /// …and others under Anthropic's name.
    #[serde(default)]
    cache_creation_input_tokens: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<f64>,
    /// Some OpenAI-compatible providers report cache writes here…
    #[serde(default)]
    cache_write_tokens: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<f64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        let details = u.prompt_tokens_details.unwrap_or_default();
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            cache_read_tokens: details.cached_tokens.unwrap_or(0.0),
            cache_write_tokens: details
                .cache_write_tokens
                .filter(|w| *w > 0.0)
                .or(u.cache_creation_input_tokens)
                .unwrap_or(0.0),
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0.0),
        }
    }
}

impl Usage {
    /// Tokens that count toward a provider's token limits: all of them, less cache reads where
    /// the provider does not count those (Anthropic).
    pub fn limit_tokens(&self, cache_reads_count: bool) -> f64 {
        if cache_reads_count {
            self.total()
        } else {
            (self.total() - self.cache_read_tokens).max(0.0)
        }
    }

    /// Total tokens, computed if the provider left it out.
    pub fn total(&self) -> f64 {
        if self.total_tokens > 0.0 {
            self.total_tokens
        } else {
            self.prompt_tokens + self.completion_tokens
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// An OpenAI `usage` object already parsed (the translation works on JSON values).
pub fn from_openai_value(usage: &serde_json::Value) -> Option<Usage> {
    OpenAiUsage::deserialize(usage).ok().map(Usage::from)
}

/// The `data:` lines of one SSE event, joined: its payload.
pub fn sse_data(event: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    (!data.is_empty()).then(|| data.join("\n").into_bytes())
}

/// The usage of a whole JSON response body, if it has one.
pub fn from_body(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body)
        .ok()
        .and_then(|r| r.usage)
        .map(Usage::from)
}

/// One SSE event, exactly as received (terminator included).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub bytes: Bytes,
    pub usage: Option<Usage>,
    /// A chunk that carries usage and no choices: the one `include_usage` adds.
    pub usage_only: bool,
}

/// Default cap on one SSE event (`policy.max_stream_event_bytes`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// A provider sent an event longer than the cap without ending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the provider sent a stream event over {limit} bytes without ending it")]
pub struct EventTooLarge {
    pub limit: usize,
}

/// Frames an SSE byte stream into events, whatever the chunk boundaries. Each received byte is
/// searched once (the buffer keeps how far it has been searched), and an unfinished event may
/// grow to a cap, past which the stream is broken: a provider cannot make the gateway buffer
/// or rescan without bound.
#[derive(Debug)]
pub struct SseScanner {
    buffer: BytesMut,
    /// Bytes of `buffer` already searched for an event end.
    searched: usize,
    max_event: usize,
}

impl Default for SseScanner {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseScanner {
    /// A scanner that refuses events over `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            searched: 0,
            max_event,
        }
    }

    /// Adds received bytes; returns every event now complete, exactly as received.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, EventTooLarge> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            // A terminator may straddle the previous chunk's end: look back 3 bytes.
            let from = self.searched.saturating_sub(3);
            match event_end(&self.buffer[from..]) {
                Some(end) => {
                    events.push(self.buffer.split_to(from + end).freeze());
                    self.searched = 0;
                }
                None => {
                    self.searched = self.buffer.len();
                    break;
                }
            }
        }
        if self.buffer.len() > self.max_event {
            return Err(EventTooLarge {
                limit: self.max_event,
            });
        }
        Ok(events)
    }

    /// Whatever is left when the stream ends (an unterminated last event), as is.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.searched = 0;
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(buffer, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(buffer, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads an OpenAI stream event: its usage, and whether it is the usage-only chunk.
pub fn inspect(bytes: Bytes) -> Event {
    // Cheap test first: most chunks carry `"usage":null` or no usage at all.
    let has_usage = memfind(&bytes, b"\"usage\":{") || memfind(&bytes, b"\"usage\": {");
    if !has_usage {
        return Event {
            bytes,
            usage: None,
            usage_only: false,
        };
    }
    let data = sse_data(&bytes).unwrap_or_default();
    match serde_json::from_slice::<WithUsage>(&data) {
        Ok(parsed) => Event {
            usage_only: parsed.usage.is_some() && parsed.choices.as_ref().is_none_or(Vec::is_empty),
            usage: parsed.usage.map(Usage::from),
            bytes,
        },
        Err(_) => Event {
            bytes,
            usage: None,
            usage_only: false,
        },
    }
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_a_body() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let usage = from_body(body).expect("usage");
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total()),
            (5.0, 2.0, 7.0)
        );
        assert_eq!(from_body(br#"{"choices":[]}"#), None);
        let detailed = br#"{"usage":{"prompt_tokens":100,"completion_tokens":50,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":20}}}"#;
        let usage = from_body(detailed).expect("usage");
        assert_eq!(
            (usage.cache_read_tokens, usage.reasoning_tokens),
            (60.0, 20.0)
        );
        assert_eq!(from_body(b"not json"), None);
    }

    #[test]
    fn events_split_across_chunks_are_framed_and_the_usage_chunk_is_found() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        for split in [1, 7, 40, 90, stream.len()] {
            let mut scanner = SseScanner::default();
            let mut events = Vec::new();
            for chunk in stream.chunks(split) {
                events.extend(
                    scanner
                        .push(chunk)
                        .expect("small events")
                        .into_iter()
                        .map(inspect),
                );
            }
            assert_eq!(events.len(), 3, "split {split}");
            let joined: Vec<u8> = events.iter().flat_map(|e| e.bytes.to_vec()).collect();
            assert_eq!(joined, stream, "bytes pass unchanged");
            assert!(events[1].usage_only && events[1].usage.map(|u| u.total()) == Some(7.0));
            assert!(!events[0].usage_only && events[0].usage.is_none());
            assert!(scanner.finish().is_none());
        }
    }

    #[test]
    fn a_terminator_split_across_chunks_ends_its_event() {
        let mut scanner = SseScanner::default();
        assert!(scanner.push(b"data: a\r\n").expect("ok").is_empty());
        assert!(scanner.push(b"\r").expect("ok").is_empty());
        let events = scanner.push(b"\ndata: b\n").expect("ok");
        assert_eq!(events.len(), 1);
        assert_eq!(&events[0][..], b"data: a\r\n\r\n");
        assert_eq!(scanner.finish().as_deref(), Some(&b"data: b\n"[..]));
    }

    #[test]
    fn an_event_that_never_ends_is_refused_past_the_cap() {
        let mut scanner = SseScanner::new(1024);
        let mut refused = None;
        for i in 0..100 {
            match scanner.push(&[b'x'; 100]) {
                Ok(events) => assert!(events.is_empty()),
                Err(e) => {
                    refused = Some((i, e));
                    break;
                }
            }
        }
        assert_eq!(refused, Some((10, EventTooLarge { limit: 1024 })));
        let mut scanner = SseScanner::new(1024);
        let ok = scanner.push(&[b"data: ", &[b'y'; 1000][..], b"\n\n"].concat());
        assert_eq!(ok.map(|e| e.len()), Ok(1), "an event at the cap passes");
    }
}
