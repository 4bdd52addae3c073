//! Google Gemini (AI Studio): `POST {base_url}/models/{model}:generateContent`, streamed as
//! `:streamGenerateContent?alt=sse`, and `:batchEmbedContents` for embeddings, with the key in
//! `x-goog-api-key`. The default base URL is `https://generativelanguage.googleapis.com/v1beta`.
//! Requests and answers are translated through OpenAI Chat ([`crate::conversion::gemini`]).
//!
//! Google answers a refused key with 400 `API_KEY_INVALID` (a malformed or unknown key, passed
//! back as the request's error, since a 400 cannot be told apart from a bad request by its
//! status) or 403 `PERMISSION_DENIED` (retried on another key); quota with 429
//! `RESOURCE_EXHAUSTED`, overload with 503 `UNAVAILABLE`.

use axum::http::{HeaderMap, Uri};

use super::{KeySecret, Operation, Protocol, Wire, path_segment, sensitive};
use crate::upstream::UpstreamError;
use crate::usage::Usage;

/// A Gemini API endpoint.
#[derive(Debug)]
pub struct Gemini {
    /// `{base_url}/models`.
    models: String,
}

impl Gemini {
    pub fn new(base_url: &str) -> Result<Self, String> {
        let gemini = Self {
            models: format!("{base_url}/models"),
        };
        gemini
            .url(Operation::Chat, "check", false)
            .ok_or_else(|| format!("bad base_url {base_url:?}"))?;
        Ok(gemini)
    }
}

impl Protocol for Gemini {
    fn wire(&self) -> Wire {
        Wire::Gemini
    }

    /// `models/gemini-2.5-flash` and `gemini-2.5-flash` name the same model.
    fn upstream_model<'m>(&'m self, model: &'m str) -> &'m str {
        model.strip_prefix("models/").unwrap_or(model)
    }

    fn url(&self, operation: Operation, model: &str, stream: bool) -> Option<Uri> {
        let method = match (operation, stream) {
            (Operation::Chat | Operation::Responses, false) => "generateContent",
            (Operation::Chat | Operation::Responses, true) => "streamGenerateContent?alt=sse",
            (Operation::Embeddings, _) => "batchEmbedContents",
            (Operation::CountTokens, _) => return None,
        };
        format!("{}/{}:{method}", self.models, path_segment(model))
            .parse()
            .ok()
    }

    fn authorize(
        &self,
        key: &KeySecret,
        _url: &Uri,
        _body: &[u8],
        _client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert("x-goog-api-key", sensitive(key.api_key()?.to_owned())?);
        Ok(headers)
    }

    fn usage_of_body(&self, body: &[u8]) -> Option<Usage> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        crate::conversion::gemini::usage_of(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_and_the_streaming_are_in_the_url_and_the_key_in_its_header() {
        let p = Gemini::new("https://generativelanguage.googleapis.com/v1beta").expect("ok");
        let model = p.upstream_model("models/gemini-2.5-flash");
        let url = |op, stream| p.url(op, model, stream).map(|u| u.to_string());
        assert_eq!(
            url(Operation::Chat, false).as_deref(),
            Some(
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
            )
        );
        assert_eq!(
            url(Operation::Chat, true).as_deref(),
            Some(
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
            )
        );
        assert!(
            url(Operation::Embeddings, false).is_some_and(|u| u.ends_with(":batchEmbedContents"))
        );
        assert!(url(Operation::CountTokens, false).is_none());
        let key = KeySecret::ApiKey(truckllm_config::Secret::new("AIza-1"));
        let headers = p
            .authorize(
                &key,
                &"http://x/".parse().expect("uri"),
                b"{}",
                &HeaderMap::new(),
            )
            .expect("headers");
        assert_eq!(headers["x-goog-api-key"], "AIza-1");
        assert!(headers["x-goog-api-key"].is_sensitive());
        let body = br#"{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"thoughtsTokenCount":2}}"#;
        assert_eq!(p.usage_of_body(body).map(|u| u.total()), Some(9.0));
    }
}
