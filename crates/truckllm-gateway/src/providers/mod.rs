//! Upstream protocols, one file each, all behind [`Protocol`]: where each operation is sent,
//! how a key authenticates, what an answer's status means for the attempt loop (decided here,
//! once, as a [`Verdict`]), and how usage is read from a body and from a stream.
//!
//! - [`openai`]: any OpenAI-compatible API (`Authorization: Bearer`).
//! - [`anthropic`]: Anthropic's Messages API (`x-api-key`, `anthropic-version`).
//!
//! Translating between dialects is not a provider's business: [`crate::conversion`] does it,
//! chosen by [`crate::ingress`] from the client's [`Wire`] and the provider's.

pub mod anthropic;
pub mod bedrock;
pub mod openai;

use std::fmt::Debug;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use truckllm_config::schema::{ProviderConfig, ProviderKind};

use crate::upstream::UpstreamError;
use crate::usage::Usage;

/// A wire format of conversations, spoken by clients and providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (and its embeddings and models routes).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// What a request asks a provider to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A conversation turn: OpenAI `chat/completions`, Anthropic `messages`.
    Chat,
    Embeddings,
    /// Anthropic `messages/count_tokens`.
    CountTokens,
    /// An OpenAI Responses API turn: the provider's own `/responses` when it takes them
    /// natively ([`Protocol::responses_native`]), else where its conversation turns go.
    Responses,
}

impl Operation {
    /// The name used in records and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
            Operation::CountTokens => "count_tokens",
            Operation::Responses => "responses",
        }
    }
}

/// What a provider's answer means for the attempt loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Try another key: the provider is limited (`rate_limited`), overloaded or failing.
    Retry {
        rate_limited: bool,
        retry_after: Option<Duration>,
    },
    /// The request itself is wrong: hand the answer back, trying elsewhere would not help.
    ClientError,
}

/// One upstream protocol, ready to call (URLs parsed once when a config version is applied).
pub trait Protocol: Send + Sync + Debug {
    /// The dialect this provider speaks.
    fn wire(&self) -> Wire;

    /// Where `operation` is sent, if this provider offers it.
    fn url(&self, operation: Operation) -> Option<&Uri>;

    /// The headers of a call with `secret`, given the client's own request headers (some are
    /// forwarded, such as Anthropic's betas). Secrets are marked sensitive.
    fn headers(&self, secret: &str, client: &HeaderMap) -> Result<HeaderMap, UpstreamError>;

    /// What a status means; shared by every protocol unless it has statuses of its own.
    fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        common_verdict(status, headers)
    }

    /// The usage of a whole (non-streamed) response body in this provider's dialect.
    fn usage_of_body(&self, body: &[u8]) -> Option<Usage>;

    /// Whether the provider takes Responses API requests as they are (`responses: native`).
    fn responses_native(&self) -> bool {
        false
    }

    /// Whether prompt-cache reads count toward the provider's token limits.
    fn cache_reads_count_toward_limits(&self) -> bool {
        true
    }
}

/// Builds the protocol of a configured provider.
pub fn protocol_for(config: &ProviderConfig) -> Result<Box<dyn Protocol>, String> {
    let base_url = config.base_url.trim_end_matches('/');
    let url = |path: &str| {
        upstream_uri(&format!("{base_url}{path}"))
            .map_err(|e| format!("provider {}: bad base_url {base_url:?}: {e}", config.id))
    };
    Ok(match config.kind {
        ProviderKind::Openai => Box::new(openai::OpenAi::new(&url, config.responses)?),
        ProviderKind::Anthropic => Box::new(anthropic::Anthropic::new(config, &url)?),
    })
}

/// Parses an upstream URL (http or https with a host).
fn upstream_uri(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("it must be an http:// or https:// URL with a host".into()),
    }
}

/// 429 and 5xx retry elsewhere (429 as a rate limit, honouring `Retry-After`); other 4xx are
/// the client's; the rest succeed.
pub fn common_verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status == StatusCode::TOO_MANY_REQUESTS {
        Verdict::Retry {
            rate_limited: true,
            retry_after: retry_after(headers),
        }
    } else if status.is_server_error() {
        Verdict::Retry {
            rate_limited: false,
            retry_after: retry_after(headers),
        }
    } else if status.is_client_error() {
        Verdict::ClientError
    } else {
        Verdict::Success
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by LLM providers), at most an hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// A header value holding a secret: never printed, never indexed by HTTP/2's HPACK.
fn sensitive(value: String) -> Result<HeaderValue, UpstreamError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| UpstreamError::Transport("the key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_verdicts_once() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            common_verdict(StatusCode::TOO_MANY_REQUESTS, &headers),
            Verdict::Retry {
                rate_limited: true,
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            common_verdict(StatusCode::BAD_GATEWAY, &HeaderMap::new()),
            Verdict::Retry {
                rate_limited: false,
                ..
            }
        ));
        assert_eq!(
            common_verdict(StatusCode::BAD_REQUEST, &headers),
            Verdict::ClientError
        );
        assert_eq!(common_verdict(StatusCode::OK, &headers), Verdict::Success);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("NaN"));
        assert_eq!(retry_after(&headers), None);
    }
}
