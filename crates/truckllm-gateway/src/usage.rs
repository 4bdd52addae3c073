//! Reading token usage from provider responses without re-serialising them: a typed view of
//! just the `usage` object of a JSON body, and an SSE scanner that frames a stream into events,
//! finds the usage chunk, and can drop it when the client did not ask for it.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// The OpenAI `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: f64,
    #[serde(default)]
    pub completion_tokens: f64,
    #[serde(default)]
    pub total_tokens: f64,
}

impl Usage {
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
    usage: Option<Usage>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// The usage of a whole JSON response body, if it has one.
pub fn from_body(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body)
        .ok()
        .and_then(|r| r.usage)
}

/// One SSE event, exactly as received (terminator included).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub bytes: Bytes,
    pub usage: Option<Usage>,
    /// A chunk that carries usage and no choices: the one `include_usage` adds.
    pub usage_only: bool,
}

/// Frames an SSE byte stream into events, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct SseScanner {
    buffer: BytesMut,
}

impl SseScanner {
    /// Adds received bytes; returns every event now complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let bytes = self.buffer.split_to(end).freeze();
            events.push(inspect(bytes));
        }
        events
    }

    /// Whatever is left when the stream ends (an unterminated last event), as is.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn inspect(bytes: Bytes) -> Event {
    // Cheap test first: most chunks carry `"usage":null` or no usage at all.
    let has_usage = memfind(&bytes, b"\"usage\":{") || memfind(&bytes, b"\"usage\": {");
    if !has_usage {
        return Event {
            bytes,
            usage: None,
            usage_only: false,
        };
    }
    let data: Vec<u8> = String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    match serde_json::from_slice::<WithUsage>(&data) {
        Ok(parsed) => Event {
            usage_only: parsed.usage.is_some() && parsed.choices.as_ref().is_none_or(Vec::is_empty),
            usage: parsed.usage,
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
    haystack.windows(needle.len()).any(|w| w == needle)
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
                events.extend(scanner.push(chunk));
            }
            assert_eq!(events.len(), 3, "split {split}");
            let joined: Vec<u8> = events.iter().flat_map(|e| e.bytes.to_vec()).collect();
            assert_eq!(joined, stream, "bytes pass unchanged");
            assert!(events[1].usage_only && events[1].usage.map(|u| u.total()) == Some(7.0));
            assert!(!events[0].usage_only && events[0].usage.is_none());
            assert!(scanner.finish().is_none());
        }
    }
}
