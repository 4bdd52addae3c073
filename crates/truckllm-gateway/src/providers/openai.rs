//! OpenAI-compatible providers (OpenAI, Together, OpenRouter, Mistral, Groq, vLLM, Ollama…):
//! `POST {base_url}/chat/completions` and `/embeddings` with `Authorization: Bearer <key>`;
//! with `responses: native`, Responses API turns go to `/responses` as they are.

use axum::http::{HeaderMap, Uri, header};
use truckllm_config::schema::ResponsesMode;

use super::{KeySecret, Operation, Protocol, Wire, sensitive};
use crate::upstream::UpstreamError;
use crate::usage::{self, Usage};

/// An OpenAI-compatible provider's endpoints.
#[derive(Debug)]
pub struct OpenAi {
    chat: Uri,
    embeddings: Uri,
    /// `/responses` when the provider takes Responses requests natively.
    responses: Option<Uri>,
}

impl OpenAi {
    /// `url` turns a path below the base URL into a parsed URL.
    pub fn new(
        url: &dyn Fn(&str) -> Result<Uri, String>,
        responses: ResponsesMode,
    ) -> Result<Self, String> {
        Ok(Self {
            chat: url("/chat/completions")?,
            embeddings: url("/embeddings")?,
            responses: match responses {
                ResponsesMode::Native => Some(url("/responses")?),
                ResponsesMode::Translate => None,
            },
        })
    }
}

impl Protocol for OpenAi {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn url(&self, operation: Operation, _model: &str, _stream: bool) -> Option<Uri> {
        match operation {
            Operation::Chat => Some(self.chat.clone()),
            Operation::Embeddings => Some(self.embeddings.clone()),
            Operation::CountTokens => None,
            Operation::Responses => Some(self.responses.as_ref().unwrap_or(&self.chat).clone()),
        }
    }

    fn responses_native(&self) -> bool {
        self.responses.is_some()
    }

    fn authorize(
        &self,
        key: &KeySecret,
        _url: &Uri,
        _body: &[u8],
        _client: &HeaderMap,
    ) -> Result<HeaderMap, UpstreamError> {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(
            header::AUTHORIZATION,
            sensitive(format!("Bearer {}", key.api_key()?))?,
        );
        Ok(headers)
    }

    fn usage_of_body(&self, body: &[u8]) -> Option<Usage> {
        usage::from_body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> OpenAi {
        OpenAi::new(
            &|path| {
                format!("https://api.example.com/v1{path}")
                    .parse()
                    .map_err(|_| String::new())
            },
            ResponsesMode::Native,
        )
        .expect("urls")
    }

    #[test]
    fn calls_carry_the_key_as_a_sensitive_bearer_token() {
        let p = provider();
        let url = p.url(Operation::Chat, "m", false).expect("chat");
        let key = KeySecret::ApiKey(truckllm_config::Secret::new("sk-1"));
        let headers = p
            .authorize(&key, &url, b"{}", &HeaderMap::new())
            .expect("headers");
        let auth = &headers[header::AUTHORIZATION];
        assert_eq!(auth, "Bearer sk-1");
        assert!(auth.is_sensitive());
        assert!(!format!("{headers:?}").contains("sk-1"), "not printed");
    }

    #[test]
    fn operations_map_to_their_endpoints() {
        let p = provider();
        assert_eq!(
            p.url(Operation::Chat, "m", true)
                .map(|u| u.to_string())
                .as_deref(),
            Some("https://api.example.com/v1/chat/completions")
        );
        assert!(p.url(Operation::CountTokens, "m", false).is_none());
        assert_eq!(
            p.url(Operation::Responses, "m", false)
                .map(|u| u.to_string())
                .as_deref(),
            Some("https://api.example.com/v1/responses"),
            "a native provider takes Responses turns at /responses"
        );
        assert!(p.responses_native());
        let body = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        assert_eq!(p.usage_of_body(body).map(|u| u.total()), Some(7.0));
    }
}
