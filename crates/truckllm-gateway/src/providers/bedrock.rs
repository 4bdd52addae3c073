//! AWS Bedrock's Converse API: `POST {base_url}/model/{modelId}/converse` and
//! `/converse-stream`, signed with SigV4 ([`sigv4`]) for the service `bedrock` in the
//! provider's `region` with the key's AWS credentials; the stream comes in AWS's binary
//! event-stream framing ([`eventstream`]). The default base URL is
//! `https://bedrock-runtime.{region}.amazonaws.com`. Requests and answers are translated
//! through OpenAI Chat ([`crate::conversion::chat_to_converse_request`]).
//!
//! Statuses: `ThrottlingException` (429) and `ServiceUnavailableException` (503),
//! `InternalServerException` (500) and `ModelTimeoutException` (408) retry on another key; a
//! refused signature or unknown key (403 `InvalidSignatureException`,
//! `UnrecognizedClientException`) too, as for every provider a refused key is not the
//! client's fault; `ValidationException` (400) goes back to the client.
//!
//! Usage: Converse reports `inputTokens` (input not read from or written to the prompt cache)
//! beside `cacheReadInputTokens` and `cacheWriteInputTokens`; the neutral [`Usage`] counts all
//! three as prompt tokens, as for Anthropic. A stream reports its usage once, in the last
//! event (`metadata`).

pub mod eventstream;
pub mod sigv4;

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde::Deserialize;
use truckllm_config::schema::ProviderConfig;

use super::{KeySecret, Operation, Protocol, Verdict, Wire, common_verdict, path_segment};
use crate::upstream::UpstreamError;
use crate::usage::Usage;

/// The name Bedrock's runtime API signs under.
pub const SIGNING_SERVICE: &str = "bedrock";

/// A Bedrock runtime endpoint in one region.
#[derive(Debug)]
pub struct Bedrock {
    /// `{base_url}/model`.
    models: String,
    region: String,
}

impl Bedrock {
    pub fn new(config: &ProviderConfig, base_url: &str) -> Result<Self, String> {
        let region = config
            .region
            .clone()
            .ok_or_else(|| format!("provider {}: a bedrock provider needs a region", config.id))?;
        let bedrock = Self {
            models: format!("{base_url}/model"),
            region,
        };
        bedrock
            .url(Operation::Chat, "check", false)
            .ok_or_else(|| format!("provider {}: bad base_url {base_url:?}", config.id))?;
        Ok(bedrock)
    }
}

impl Protocol for Bedrock {
    fn wire(&self) -> Wire {
        Wire::Bedrock
    }

    /// Conversation turns only: Converse has no embeddings or token counting.
    fn url(&self, operation: Operation, model: &str, stream: bool) -> Option<Uri> {
        let action = match (operation, stream) {
            (Operation::Chat | Operation::Responses, false) => "converse",
            (Operation::Chat | Operation::Responses, true) => "converse-stream",
            (Operation::Embeddings | Operation::CountTokens, _) => return None,
        };
        let uri: Uri = format!("{}/{}/{action}", self.models, path_segment(model))
            .parse()
            .ok()?;
        // The signer needs a host; `protocol_for` checked the base URL has one.
        uri.host().is_some().then_some(uri)
    }

    /// SigV4 over the method, URL, `host`, `content-type` (the client sends
    /// `application/json`), `x-amz-date`, the session token if any, and the body.
    fn authorize(
        &self,
        key: &KeySecret,
        url: &Uri,
        body: &[u8],
        _client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let KeySecret::Aws {
            access_key_id,
            secret_access_key,
            session_token,
        } = key
        else {
            return Err(UpstreamError::Transport(
                "a bedrock key needs access_key_id and secret_access_key".into(),
            ));
        };
        let key = sigv4::AwsKey {
            access_key_id: access_key_id.expose(),
            secret_access_key: secret_access_key.expose(),
            session_token: session_token.as_ref().map(|t| t.expose()),
        };
        let scope = sigv4::Scope {
            region: &self.region,
            service: SIGNING_SERVICE,
        };
        let url = url.to_string();
        let request = sigv4::Request {
            method: "POST",
            url: &url,
            headers: &[("content-type", "application/json")],
            body,
        };
        let signed = sigv4::sign(key, scope, request, SystemTime::now())
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(signed.headers.len());
        for (name, value, sensitive) in signed.headers {
            let mut value = HeaderValue::try_from(value).map_err(|_| {
                UpstreamError::Transport("an AWS credential is not a valid header value".into())
            })?;
            value.set_sensitive(sensitive);
            headers.insert(HeaderName::from_static(name), value);
        }
        Ok(headers)
    }

    /// Bedrock's 408 (`ModelTimeoutException`) is the model's, not the request's: retried.
    /// Its 400 `ServiceQuotaExceededException` is the account's quota: another key (another
    /// account) may have room, so it is retried as a rate limit.
    fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        if status == StatusCode::REQUEST_TIMEOUT {
            return Verdict::Retry {
                rate_limited: false,
                retry_after: None,
            };
        }
        let error_type = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if error_type.starts_with("ServiceQuotaExceededException") {
            return Verdict::Retry {
                rate_limited: true,
                retry_after: None,
            };
        }
        common_verdict(status, headers)
    }

    fn usage_of_body(&self, body: &[u8]) -> Option<Usage> {
        usage_of_body(body)
    }
}

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
    use truckllm_config::Secret;

    fn provider() -> Bedrock {
        let yaml = "llm_providers:\n  - id: b\n    type: bedrock\n    region: eu-west-1\n    keys: [{id: k, access_key_id: AKIDEXAMPLE, secret_access_key: s}]\n";
        let config = truckllm_config::parse(yaml).expect("provider config");
        let config = &config.llm_providers[0];
        let base = super::super::base_url(config).expect("default base url");
        Bedrock::new(config, &base).expect("provider")
    }

    fn aws(token: Option<&str>) -> KeySecret {
        KeySecret::Aws {
            access_key_id: Secret::new("AKIDEXAMPLE"),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
        }
    }

    #[test]
    fn an_accounts_quota_moves_to_the_next_key_and_a_bad_request_does_not() {
        let bedrock = provider();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            axum::http::HeaderValue::from_static("ServiceQuotaExceededException:http://internal"),
        );
        assert!(matches!(
            bedrock.verdict(StatusCode::BAD_REQUEST, &headers),
            Verdict::Retry {
                rate_limited: true,
                ..
            }
        ));
        headers.insert(
            "x-amzn-errortype",
            axum::http::HeaderValue::from_static("ValidationException"),
        );
        assert_eq!(
            bedrock.verdict(StatusCode::BAD_REQUEST, &headers),
            Verdict::ClientError
        );
    }

    #[test]
    fn urls_name_the_model_and_the_stream_on_the_regional_default() {
        let bedrock = provider();
        let url = |op, stream| bedrock.url(op, "anthropic.claude-3-5-sonnet-20241022-v2:0", stream);
        assert_eq!(
            url(Operation::Chat, false).expect("url").to_string(),
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
        );
        assert!(
            url(Operation::Chat, true)
                .expect("url")
                .path()
                .ends_with("/converse-stream")
        );
        assert!(url(Operation::Embeddings, false).is_none());
        assert!(url(Operation::CountTokens, false).is_none());
    }

    #[test]
    fn calls_are_signed_for_bedrock_in_the_region_and_verify() {
        let bedrock = provider();
        let url = bedrock.url(Operation::Chat, "m", false).expect("url");
        let body = br#"{"messages":[]}"#;
        let headers = bedrock
            .authorize(&aws(Some("tok")), &url, body, &HeaderMap::new())
            .expect("signed");
        let auth = headers["authorization"].to_str().expect("ascii");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="));
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-amz-security-token"].is_sensitive());
        let date = headers["x-amz-date"].to_str().expect("ascii");
        let received: Vec<(&str, &str)> = vec![
            ("authorization", auth),
            ("x-amz-date", date),
            ("x-amz-security-token", "tok"),
            ("content-type", "application/json"),
            ("host", "bedrock-runtime.eu-west-1.amazonaws.com"),
        ];
        let check = sigv4::Received {
            method: "POST",
            host: "bedrock-runtime.eu-west-1.amazonaws.com",
            path_and_query: url.path(),
            headers: &received,
            body,
        };
        let secret = |_: &str| Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned());
        assert_eq!(
            sigv4::verify(check, SIGNING_SERVICE, SystemTime::now(), secret),
            Ok("AKIDEXAMPLE")
        );
    }

    #[test]
    fn an_api_key_cannot_sign() {
        let bedrock = provider();
        let url = bedrock.url(Operation::Chat, "m", false).expect("url");
        let api_key = KeySecret::ApiKey(Secret::new("sk-1"));
        assert!(
            bedrock
                .authorize(&api_key, &url, b"{}", &HeaderMap::new())
                .is_err()
        );
    }

    #[test]
    fn throttling_overload_and_model_timeouts_retry() {
        let bedrock = provider();
        let none = HeaderMap::new();
        for status in [429, 500, 503, 408, 403] {
            let status = StatusCode::from_u16(status).expect("status");
            assert!(
                matches!(bedrock.verdict(status, &none), Verdict::Retry { .. }),
                "{status}"
            );
        }
        assert_eq!(
            bedrock.verdict(StatusCode::BAD_REQUEST, &none),
            Verdict::ClientError
        );
    }

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
