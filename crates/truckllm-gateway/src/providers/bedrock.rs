//! AWS Bedrock's Converse API: `POST {base_url}/model/{modelId}/converse` and
//! `/converse-stream`, signed with SigV4 ([`sigv4`]) for the service `bedrock` in the
//! provider's `region`; the stream comes in AWS's binary event-stream framing
//! ([`eventstream`]).
//!
//! Usage: Converse reports `inputTokens` (input not read from or written to the prompt cache)
//! beside `cacheReadInputTokens` and `cacheWriteInputTokens`; the neutral [`Usage`] counts all
//! three as prompt tokens, as for Anthropic. A stream reports its usage once, in the last
//! event (`metadata`).

pub mod eventstream;
pub mod sigv4;

use serde::Deserialize;

use crate::usage::Usage;

/// Converse's `usage` object (`TokenUsage`).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<f64>,
    #[serde(default)]
    pub output_tokens: Option<f64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<f64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<f64>,
}

impl WireUsage {
    /// As the neutral record.
    pub fn into_usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0.0);
        let cache_write = self.cache_write_input_tokens.unwrap_or(0.0);
        let prompt = self.input_tokens.unwrap_or(0.0) + cache_read + cache_write;
        let completion = self.output_tokens.unwrap_or(0.0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: 0.0,
        }
    }
}

/// A Converse `usage` object already parsed (the translation works on JSON values).
pub fn usage_from_value(usage: &serde_json::Value) -> Option<Usage> {
    usage
        .is_object()
        .then(|| WireUsage::deserialize(usage).ok())
        .flatten()
        .map(WireUsage::into_usage)
}

/// The usage of a whole Converse response body.
pub fn usage_of_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Response {
        usage: Option<WireUsage>,
    }
    serde_json::from_slice::<Response>(body)
        .ok()?
        .usage
        .map(WireUsage::into_usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_cache_reads_and_writes_as_prompt_tokens() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"end_turn","usage":{"inputTokens":10,"outputTokens":5,"totalTokens":1115,"cacheReadInputTokens":1000,"cacheWriteInputTokens":100}}"#;
        let usage = usage_of_body(body).expect("usage");
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total()),
            (1110.0, 5.0, 1115.0)
        );
        assert_eq!(
            (usage.cache_read_tokens, usage.cache_write_tokens),
            (1000.0, 100.0)
        );
        assert!(usage_of_body(b"{}").is_none());
        assert!(usage_of_body(b"not json").is_none());
    }
}
