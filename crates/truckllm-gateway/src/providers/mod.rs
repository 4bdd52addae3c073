//! Upstream protocols, one file each, all behind [`Protocol`]: where each call is sent (by
//! operation, upstream model and whether it streams), how a key authorises it (given the URL
//! and the exact body, so a signature can cover them), what an answer's status means for the
//! attempt loop (decided here, once, as a [`Verdict`]), and how usage is read from a body.
//!
//! - [`openai`]: any OpenAI-compatible API (`Authorization: Bearer`).
//! - [`anthropic`]: Anthropic's Messages API (`x-api-key`, `anthropic-version`).
//! - [`azure`]: Azure OpenAI (`api-key`, deployments, `api-version`).
//! - [`gemini`]: Google Gemini (`x-goog-api-key`, the model in the URL).
//! - [`bedrock`]: AWS Bedrock's Converse API (SigV4, the model in the URL, event-stream framing).
//!
//! A key's credentials are a [`KeySecret`]: one API key, or AWS credentials (Bedrock signs each
//! request with them).
//!
//! Translating between dialects is not a provider's business: [`crate::conversion`] does it,
//! chosen by [`crate::ingress`] from the client's [`Wire`] and the provider's. Clients speak
//! [`Wire::OpenAi`] or [`Wire::Anthropic`]; the other wires are providers' only, reached
//! through OpenAI Chat ([`crate::conversion::native`]).

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod openai;

use std::fmt::Debug;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use truckllm_config::Secret;
use truckllm_config::schema::{ProviderConfig, ProviderKeyConfig, ProviderKind};

use crate::upstream::UpstreamError;
use crate::usage::Usage;

/// A wire format of conversations, spoken by clients and providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (and its embeddings and models routes).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini `generateContent` (providers only).
    Gemini,
    /// AWS Bedrock Converse (providers only).
    Bedrock,
}

/// One provider key's credentials, as the protocol needs them.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySecret {
    /// An API key, sent in a header.
    ApiKey(Secret),
    /// AWS credentials, for SigV4 signing.
    Aws {
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySecret::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
            KeySecret::Aws { .. } => f.write_str("Aws([REDACTED])"),
        }
    }
}

impl KeySecret {
    /// A configured key's credentials: AWS ones when it holds an access key id (validation
    /// allows that for `type: bedrock` only), else its `secret`.
    pub fn from_config(key: &ProviderKeyConfig) -> Self {
        match (&key.access_key_id, &key.secret_access_key) {
            (Some(id), Some(secret)) => KeySecret::Aws {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: key.session_token.clone(),
            },
            _ => KeySecret::ApiKey(key.secret.clone()),
        }
    }

    /// The API key, for protocols that send one; AWS credentials are not one.
    pub fn api_key(&self) -> Result<&str, UpstreamError> {
        match self {
            KeySecret::ApiKey(secret) => Ok(secret.expose()),
            KeySecret::Aws { .. } => Err(UpstreamError::Transport(
                "this key holds AWS credentials, not an API key".into(),
            )),
        }
    }
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

    /// The name the provider knows `model` by (Azure: the model's deployment); the URL and
    /// the body are made for it.
    fn upstream_model<'m>(&'m self, model: &'m str) -> &'m str {
        model
    }

    /// Where `operation` on the upstream `model` is sent (`stream`: the answer is to be
    /// streamed), if this provider offers it. Some providers name the model or the streaming
    /// in the URL (Gemini, Bedrock, Azure deployments); the rest ignore both.
    fn url(&self, operation: Operation, model: &str, stream: bool) -> Option<Uri>;

    /// The headers authorising a call to `url` carrying exactly `body` with `key`, given the
    /// client's own request headers (some are forwarded, such as Anthropic's betas). Secrets
    /// are marked sensitive.
    fn authorize(
        &self,
        key: &KeySecret,
        url: &Uri,
        body: &[u8],
        client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError>;

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
    let base_url = base_url(config)?;
    let base_url = base_url.as_str();
    let url = |path: &str| {
        upstream_uri(&format!("{base_url}{path}"))
            .map_err(|e| format!("provider {}: bad base_url {base_url:?}: {e}", config.id))
    };
    url("")?;
    Ok(match config.kind {
        ProviderKind::Openai => Box::new(openai::OpenAi::new(&url, config.responses)?),
        ProviderKind::Anthropic => Box::new(anthropic::Anthropic::new(config, &url)?),
        ProviderKind::Azure => Box::new(azure::Azure::new(config, base_url)?),
        ProviderKind::Gemini => Box::new(
            gemini::Gemini::new(base_url).map_err(|e| format!("provider {}: {e}", config.id))?,
        ),
        ProviderKind::Bedrock => Box::new(bedrock::Bedrock::new(config, base_url)?),
    })
}

/// The provider's base URL without a trailing `/`: as configured, else its type's default.
pub fn base_url(config: &ProviderConfig) -> Result<String, String> {
    if !config.base_url.is_empty() {
        return Ok(config.base_url.trim_end_matches('/').to_owned());
    }
    config
        .kind
        .default_base_url(config.region.as_deref())
        .ok_or_else(|| format!("provider {}: base_url is required", config.id))
}

/// `text` as one URL path segment: unreserved characters kept, every other byte
/// percent-encoded (a model name such as `anthropic.claude-3:0` or `a/b` stays one segment).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // `.` and `..` alone would be read as path steps: their dots are encoded too.
    let only_dots = text.bytes().all(|b| b == b'.');
    for byte in text.bytes() {
        let dot = byte == b'.' && !only_dots;
        if byte.is_ascii_alphanumeric() || dot || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Parses an upstream URL (http or https with a host).
fn upstream_uri(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("it must be an http:// or https:// URL with a host".into()),
    }
}

/// 429 and 5xx retry elsewhere (429 as a rate limit, honouring `Retry-After`); so do 401
/// and 403, the provider refusing the key (another key may be good; the client's own key is
/// not in question, so its 401 is never handed back); other 4xx are the client's; the rest
/// succeed.
pub fn common_verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Verdict::Retry {
            rate_limited: false,
            retry_after: None,
        }
    } else if status == StatusCode::TOO_MANY_REQUESTS {
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
        for refused_key in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            assert_eq!(
                common_verdict(refused_key, &headers),
                Verdict::Retry {
                    rate_limited: false,
                    retry_after: None
                },
                "a key the provider refuses is not the client's fault"
            );
        }
        assert_eq!(common_verdict(StatusCode::OK, &headers), Verdict::Success);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1e20"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("NaN"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn model_names_stay_one_path_segment() {
        assert_eq!(path_segment("gemini-2.5-flash"), "gemini-2.5-flash");
        assert_eq!(
            path_segment("anthropic.claude-3:0/x?y"),
            "anthropic.claude-3%3A0%2Fx%3Fy"
        );
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("."), "%2E");
        assert_eq!(path_segment("a..b"), "a..b");
    }

    #[test]
    fn key_secrets_never_print() {
        let key = KeySecret::Aws {
            access_key_id: Secret::new("AKIDEXAMPLE"),
            secret_access_key: Secret::new("wJalrXUtnFEMI"),
            session_token: None,
        };
        assert!(key.api_key().is_err());
        let shown = format!("{key:?} {:?}", KeySecret::ApiKey(Secret::new("sk-1")));
        assert!(!shown.contains("AKID") && !shown.contains("wJal") && !shown.contains("sk-1"));
    }
}
