//! Anthropic's Messages API: `POST {base_url}/messages` and `/messages/count_tokens` with
//! `x-api-key`, `anthropic-version` (the provider's `anthropic_version`, default `2023-06-01`)
//! and the client's `anthropic-beta` flags that the provider's `allowed_betas` permits (all by
//! default). 429 and 529 (`overloaded_error`) retry on another key, honouring `retry-after`.
//!
//! Usage: Anthropic reports `input_tokens` beside `cache_creation_input_tokens` and
//! `cache_read_input_tokens`; the neutral [`Usage`] counts all three as prompt tokens. In a
//! stream, `message_start` carries the input side and `message_delta` the cumulative output.

use axum::http::{HeaderMap, HeaderValue, Uri};
use serde::Deserialize;
use truckllm_config::schema::ProviderConfig;

use super::{KeySecret, Operation, Protocol, Wire, sensitive};
use crate::upstream::UpstreamError;
use crate::usage::Usage;

/// The API version sent when the provider names none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// An Anthropic provider's endpoints and headers.
#[derive(Debug)]
pub struct Anthropic {
    messages: Uri,
    count_tokens: Uri,
    version: HeaderValue,
    /// Betas a client may ask for; `None` lets every one through.
    allowed_betas: Option<Vec<String>>,
}

impl Anthropic {
    pub fn new(
        config: &ProviderConfig,
        url: &dyn Fn(&str) -> Result<Uri, String>,
    ) -> Result<Self, String> {
        let version = config
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_VERSION);
        Ok(Self {
            messages: url("/messages")?,
            count_tokens: url("/messages/count_tokens")?,
            version: HeaderValue::from_str(version).map_err(|_| {
                format!(
                    "provider {}: anthropic_version is not a header value",
                    config.id
                )
            })?,
            allowed_betas: config.allowed_betas.clone(),
        })
    }

    /// The client's betas this provider lets through, comma-joined as Anthropic reads them.
    fn betas(&self, client: &HeaderMap) -> Option<HeaderValue> {
        let asked = client
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .filter(|b| {
                self.allowed_betas
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a == b))
            })
            .collect::<Vec<_>>();
        (!asked.is_empty())
            .then(|| HeaderValue::from_str(&asked.join(",")).ok())
            .flatten()
    }
}

impl Protocol for Anthropic {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn url(&self, operation: Operation, _model: &str, _stream: bool) -> Option<Uri> {
        match operation {
            Operation::Chat | Operation::Responses => Some(self.messages.clone()),
            Operation::CountTokens => Some(self.count_tokens.clone()),
            Operation::Embeddings => None,
        }
    }

    fn authorize(
        &self,
        key: &KeySecret,
        _url: &Uri,
        _body: &[u8],
        client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert("x-api-key", sensitive(key.api_key()?.to_owned())?);
        headers.insert("anthropic-version", self.version.clone());
        if let Some(betas) = self.betas(client) {
            headers.insert("anthropic-beta", betas);
        }
        Ok(headers)
    }

    fn usage_of_body(&self, body: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Message {
            usage: Option<WireUsage>,
        }
        serde_json::from_slice::<Message>(body)
            .ok()?
            .usage
            .map(|u| u.into_usage(0.0))
    }

    /// Anthropic's input-token limits leave cache reads out.
    fn cache_reads_count_toward_limits(&self) -> bool {
        false
    }
}

/// Anthropic's `usage` object.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub input_tokens: Option<f64>,
    #[serde(default)]
    pub output_tokens: Option<f64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<f64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<f64>,
}

/// An Anthropic `usage` object already parsed (the translation works on JSON values).
pub fn usage_from_value(usage: &serde_json::Value) -> Option<Usage> {
    WireUsage::deserialize(usage)
        .ok()
        .map(|u| u.into_usage(0.0))
}

impl WireUsage {
    /// As the neutral record; `output_floor` is output already seen (streams).
    pub fn into_usage(self, output_floor: f64) -> Usage {
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0.0);
        let cache_read = self.cache_read_input_tokens.unwrap_or(0.0);
        let prompt = self.input_tokens.unwrap_or(0.0) + cache_write + cache_read;
        let completion = self.output_tokens.unwrap_or(0.0).max(output_floor);
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

/// Usage gathered from a Messages stream, event by event.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamUsage {
    input: Option<WireUsage>,
    output: Option<f64>,
}

impl StreamUsage {
    /// Reads one SSE event (bytes as framed by [`crate::usage::SseScanner`]).
    pub fn observe(&mut self, event: &[u8]) {
        if memchr::memmem::find(event, b"usage").is_none() {
            return;
        }
        #[derive(Deserialize)]
        struct Event {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            message: Option<MessageUsage>,
            #[serde(default)]
            usage: Option<WireUsage>,
        }
        #[derive(Deserialize)]
        struct MessageUsage {
            usage: Option<WireUsage>,
        }
        let Some(data) = crate::usage::sse_data(event) else {
            return;
        };
        let Ok(parsed) = serde_json::from_slice::<Event>(&data) else {
            return;
        };
        match parsed.kind.as_str() {
            "message_start" => self.input = parsed.message.and_then(|m| m.usage),
            "message_delta" => {
                if let Some(u) = parsed.usage {
                    self.output = u.output_tokens.or(self.output);
                    // Newer streams repeat the input side here; keep what is known.
                    if u.input_tokens.is_some() {
                        let mut input = self.input.unwrap_or_default();
                        input.input_tokens = u.input_tokens;
                        input.cache_creation_input_tokens = u
                            .cache_creation_input_tokens
                            .or(input.cache_creation_input_tokens);
                        input.cache_read_input_tokens =
                            u.cache_read_input_tokens.or(input.cache_read_input_tokens);
                        self.input = Some(input);
                    }
                }
            }
            _ => {}
        }
    }

    /// The usage so far, if the stream has said any.
    pub fn usage(&self) -> Option<Usage> {
        let input = self.input?;
        let mut wire = input;
        wire.output_tokens = self.output.or(input.output_tokens);
        Some(wire.into_usage(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(yaml_extra: &str) -> Anthropic {
        let yaml = format!(
            "llm_providers:\n  - id: a\n    type: anthropic\n    base_url: https://api.anthropic.com/v1\n    keys: [{{id: k, secret: s}}]\n{yaml_extra}"
        );
        let config = truckllm_config::parse(&yaml).expect("provider config");
        let config = &config.llm_providers[0];
        Anthropic::new(config, &|path| {
            format!("https://api.anthropic.com/v1{path}")
                .parse()
                .map_err(|_| String::new())
        })
        .expect("provider")
    }

    fn auth_headers(p: &Anthropic, client: &HeaderMap) -> HeaderMap {
        let key = KeySecret::ApiKey(truckllm_config::Secret::new("sk-ant"));
        let url = p.url(Operation::Chat, "m", false).expect("messages");
        p.authorize(&key, &url, b"{}", client).expect("headers")
    }

    #[test]
    fn calls_carry_the_key_the_version_and_the_allowed_betas() {
        let mut client = HeaderMap::new();
        client.insert(
            "anthropic-beta",
            HeaderValue::from_static("claude-code-20250219, context-1m-2025-08-07"),
        );
        let headers = auth_headers(&provider(""), &client);
        assert_eq!(headers["x-api-key"], "sk-ant");
        assert!(headers["x-api-key"].is_sensitive());
        assert_eq!(headers["anthropic-version"], DEFAULT_VERSION);
        assert_eq!(
            headers["anthropic-beta"],
            "claude-code-20250219,context-1m-2025-08-07"
        );
        let narrow = provider(
            "    anthropic_version: \"2024-01-01\"\n    allowed_betas: [\"claude-code-20250219\"]\n",
        );
        let headers = auth_headers(&narrow, &client);
        assert_eq!(headers["anthropic-version"], "2024-01-01");
        assert_eq!(headers["anthropic-beta"], "claude-code-20250219");
        let none = auth_headers(&provider("    allowed_betas: []\n"), &client);
        assert!(!none.contains_key("anthropic-beta"));
    }

    #[test]
    fn usage_counts_cache_tokens_as_prompt_tokens() {
        let body = br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000}}"#;
        let usage = provider("").usage_of_body(body).expect("usage");
        assert_eq!(usage.prompt_tokens, 1110.0);
        assert_eq!(usage.completion_tokens, 5.0);
        assert_eq!(
            (usage.cache_write_tokens, usage.cache_read_tokens),
            (100.0, 1000.0)
        );
        assert_eq!(usage.total(), 1115.0);
    }

    #[test]
    fn stream_usage_joins_message_start_and_the_last_message_delta() {
        let mut usage = StreamUsage::default();
        assert!(usage.usage().is_none());
        usage.observe(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1,\"cache_read_input_tokens\":3}}}\n\n");
        usage.observe(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
        usage.observe(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n");
        usage.observe(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":9}}\n\n");
        let u = usage.usage().expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cache_read_tokens),
            (10.0, 9.0, 3.0)
        );
    }
}
