//! Azure OpenAI: the OpenAI dialect at Azure's paths. With an `api_version` date (default
//! [`DEFAULT_API_VERSION`]) a model is sent to its deployment,
//! `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…` (and
//! `/embeddings`), the deployment named by the provider's `deployments` map (a model not in
//! it is its own deployment name). With `api_version: v1` calls go to the newer
//! `{base_url}/openai/v1/chat/completions` (and `/embeddings`), with the deployment as the
//! body's `model`. The key is sent in `api-key`.
//!
//! Azure answers a rate limit with 429 and `retry-after-ms` (milliseconds) beside
//! `retry-after` (seconds); the finer one is honoured. Content filtering is in the body
//! (`prompt_filter_results`, `content_filter_results`, `finish_reason: content_filter`, or a
//! 400 `content_filter` error) and passes through as Azure sent it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use truckllm_config::schema::ProviderConfig;

use super::{
    KeySecret, Operation, Protocol, Verdict, Wire, common_verdict, path_segment, sensitive,
};
use crate::upstream::UpstreamError;
use crate::usage::{self, Usage};

/// The `api-version` sent when the provider names none: the latest GA data-plane version.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// An Azure OpenAI resource.
#[derive(Debug)]
pub struct Azure {
    /// `{base_url}/openai`.
    base: String,
    /// `None` for the `v1` routes.
    api_version: Option<String>,
    deployments: BTreeMap<String, String>,
}

impl Azure {
    pub fn new(config: &ProviderConfig, base_url: &str) -> Result<Self, String> {
        let version = config.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        let azure = Self {
            base: format!("{base_url}/openai"),
            api_version: (version != "v1").then(|| version.to_owned()),
            deployments: config.deployments.clone(),
        };
        azure
            .url(Operation::Chat, "check", false)
            .ok_or_else(|| format!("provider {}: bad base_url {base_url:?}", config.id))?;
        Ok(azure)
    }

    fn deployment<'m>(&'m self, model: &'m str) -> &'m str {
        self.deployments.get(model).map_or(model, String::as_str)
    }
}

impl Protocol for Azure {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn upstream_model<'m>(&'m self, model: &'m str) -> &'m str {
        self.deployment(model)
    }

    fn url(&self, operation: Operation, model: &str, _stream: bool) -> Option<Uri> {
        let path = match operation {
            Operation::Chat | Operation::Responses => "chat/completions",
            Operation::Embeddings => "embeddings",
            Operation::CountTokens => return None,
        };
        let url = match &self.api_version {
            Some(version) => format!(
                "{}/deployments/{}/{path}?api-version={}",
                self.base,
                path_segment(model),
                path_segment(version)
            ),
            None => format!("{}/v1/{path}", self.base),
        };
        url.parse().ok()
    }

    fn authorize(
        &self,
        key: &KeySecret,
        _url: &Uri,
        _body: &[u8],
        _client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert("api-key", sensitive(key.api_key()?.to_owned())?);
        Ok(headers)
    }

    /// As every provider, but a rate limit's wait is `retry-after-ms` when Azure sends it.
    fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        match common_verdict(status, headers) {
            Verdict::Retry {
                rate_limited,
                retry_after,
            } => Verdict::Retry {
                rate_limited,
                retry_after: retry_after_ms(headers).or(retry_after),
            },
            other => other,
        }
    }

    fn usage_of_body(&self, body: &[u8]) -> Option<Usage> {
        usage::from_body(body)
    }
}

/// Azure's `retry-after-ms`: milliseconds, at most an hour.
fn retry_after_ms(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(3600.0)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn provider(extra: &str) -> Azure {
        let yaml = format!(
            "llm_providers:\n  - id: az\n    type: azure\n    base_url: https://res.openai.azure.com/\n    keys: [{{id: k, secret: s}}]\n{extra}"
        );
        let config = truckllm_config::parse(&yaml).expect("provider config");
        let config = &config.llm_providers[0];
        Azure::new(config, "https://res.openai.azure.com").expect("provider")
    }

    #[test]
    fn models_go_to_their_deployments_with_the_api_version() {
        let p = provider("    deployments: {gpt-4o: prod-4o}\n");
        let model = p.upstream_model("gpt-4o");
        assert_eq!(model, "prod-4o");
        assert_eq!(
            p.url(Operation::Chat, model, true).map(|u| u.to_string()),
            Some(
                "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
                    .into()
            )
        );
        assert_eq!(p.upstream_model("unlisted"), "unlisted");
        assert_eq!(
            p.url(Operation::Embeddings, "emb", false)
                .map(|u| u.to_string()),
            Some(
                "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
                    .into()
            )
        );
        assert!(p.url(Operation::CountTokens, "m", false).is_none());
    }

    #[test]
    fn the_v1_routes_carry_no_deployment_in_the_path() {
        let p = provider("    api_version: v1\n");
        assert_eq!(
            p.url(Operation::Chat, "gpt-4o", false)
                .map(|u| u.to_string()),
            Some("https://res.openai.azure.com/openai/v1/chat/completions".into())
        );
        let p = provider("    api_version: 2025-04-01-preview\n");
        assert!(
            p.url(Operation::Chat, "d", false)
                .is_some_and(|u| u.query() == Some("api-version=2025-04-01-preview"))
        );
    }

    #[test]
    fn the_key_goes_in_api_key_and_rate_limits_honour_milliseconds() {
        let p = provider("");
        let url = p.url(Operation::Chat, "d", false).expect("url");
        let key = KeySecret::ApiKey(truckllm_config::Secret::new("az-key"));
        let headers = p
            .authorize(&key, &url, b"{}", &HeaderMap::new())
            .expect("headers");
        assert_eq!(headers["api-key"], "az-key");
        assert!(headers["api-key"].is_sensitive());
        assert!(!headers.contains_key("authorization"));
        let mut answer = HeaderMap::new();
        answer.insert("retry-after", HeaderValue::from_static("2"));
        answer.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            p.verdict(StatusCode::TOO_MANY_REQUESTS, &answer),
            Verdict::Retry {
                rate_limited: true,
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        answer.remove("retry-after-ms");
        assert_eq!(
            p.verdict(StatusCode::TOO_MANY_REQUESTS, &answer),
            Verdict::Retry {
                rate_limited: true,
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }
}
