//! Who is calling: client keys from `api_keys`, hashed (SHA-256) as soon as the config is
//! loaded and compared in constant time. With no client keys configured the gateway runs in
//! an explicit open mode (announced at start), where every caller is the anonymous client.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use truckllm_config::Config;
use truckllm_config::schema::Limits;

use crate::auth::digest;
use crate::error::ApiError;

/// One configured client, holding only the hash of its key.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    key_hash: [u8; 32],
    allowed_providers: Vec<String>,
    allowed_models: Vec<String>,
    pub limits: Option<Limits>,
}

impl Client {
    /// Whether this client may use `provider`.
    pub fn may_use_provider(&self, provider: &str) -> bool {
        self.allowed_providers
            .iter()
            .any(|p| p == "*" || p == provider)
    }

    /// Whether this client may use `provider:model`, asked for as `requested` (an alias name,
    /// `provider:model`, or a bare model name).
    pub fn may_use_model(&self, provider: &str, model: &str, requested: &str) -> bool {
        self.allowed_models.iter().any(|allowed| {
            allowed == "*"
                || allowed == requested
                || allowed
                    .strip_suffix('*')
                    .is_some_and(|prefix| !requested.contains(':') && requested.starts_with(prefix))
                || allowed
                    .split_once(':')
                    .is_some_and(|(p, m)| p == provider && (m == model || m == "*"))
        })
    }
}

/// Every configured client, or open mode.
#[derive(Debug, Clone)]
pub struct Clients {
    clients: Vec<Arc<Client>>,
    open: Arc<Client>,
}

impl Clients {
    /// Builds the client table from a resolved config; keys are hashed here and the plaintext
    /// is not kept.
    pub fn from_config(config: &Config) -> Self {
        let clients = config
            .api_keys
            .iter()
            .filter_map(|c| {
                let key_hash = match (&c.key, &c.key_sha256) {
                    (Some(key), _) => digest(key.expose().as_bytes()),
                    (None, Some(hex)) => truckllm_config::secret::parse_sha256_hex(hex)?,
                    (None, None) => return None,
                };
                Some(Arc::new(Client {
                    id: c.id.clone(),
                    key_hash,
                    allowed_providers: c.allowed_providers.clone(),
                    allowed_models: c.allowed_models.clone(),
                    limits: c.limits,
                }))
            })
            .collect();
        Self {
            clients,
            open: Arc::new(Client {
                id: "anonymous".into(),
                key_hash: [0; 32],
                allowed_providers: vec!["*".into()],
                allowed_models: vec!["*".into()],
                limits: None,
            }),
        }
    }

    /// True when no client keys are configured and anyone may call.
    pub fn is_open(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client whose key was presented (see [`crate::auth::presented_key`]). Every stored
    /// hash is compared, in constant time, whether or not an earlier one matched.
    pub fn authenticate(&self, key: Option<&str>) -> Result<&Arc<Client>, ApiError> {
        if self.is_open() {
            return Ok(&self.open);
        }
        let key = key.ok_or_else(|| {
            ApiError::unauthorized(
                "missing API key: send Authorization: Bearer <key> (or x-api-key: <key>)",
            )
        })?;
        let presented = digest(key.as_bytes());
        let mut found: Option<&Arc<Client>> = None;
        for client in &self.clients {
            if bool::from(client.key_hash.ct_eq(&presented)) {
                found = Some(client);
            }
        }
        found.ok_or_else(|| ApiError::unauthorized("invalid API key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(yaml: &str) -> Clients {
        let env = std::collections::HashMap::new();
        let loaded = truckllm_config::load_str(yaml, &env, None).expect("config");
        Clients::from_config(&loaded.resolved)
    }

    const PROVIDERS: &str = "llm_providers:\n  - id: a\n    base_url: http://a/v1\n    keys: [{id: k, secret: s}]\n  - id: b\n    base_url: http://b/v1\n    keys: [{id: k, secret: s}]\n";

    #[test]
    fn keys_and_hashes_authenticate_and_nothing_else_does() {
        let not_a_key = "d2a6d7cf3ad4ef6ff0e9a2d62b9bf3e80ac34a2d6cd1e3b9bb1b89d5e64b1c31";
        let yaml = format!(
            "{PROVIDERS}api_keys:\n  - id: one\n    key: plain-key\n  - id: two\n    key_sha256: \"{}\"\n",
            hex(&digest(b"hashed-key"))
        );
        let c = clients(&yaml);
        assert!(!c.is_open());
        assert_eq!(
            c.authenticate(Some("plain-key"))
                .map(|c| c.id.as_str())
                .ok(),
            Some("one")
        );
        assert_eq!(
            c.authenticate(Some("hashed-key"))
                .map(|c| c.id.as_str())
                .ok(),
            Some("two")
        );
        for bad in [
            None,
            Some("wrong"),
            Some("Bearer plain-key"),
            Some(not_a_key),
        ] {
            let err = c.authenticate(bad).expect_err("rejected");
            assert_eq!(err.status, axum::http::StatusCode::UNAUTHORIZED);
        }
        assert!(!format!("{c:?}").contains("plain-key"), "no plaintext kept");
    }

    #[test]
    fn permissions_cover_providers_models_and_aliases() {
        let yaml = format!(
            "{PROVIDERS}aliases:\n  fast: [\"a:m1\"]\napi_keys:\n  - id: c\n    key: k\n    allowed_providers: [a]\n    allowed_models: [\"a:m1\", \"fast\", \"b:*\"]\n"
        );
        let c = clients(&yaml);
        let client = c.authenticate(Some("k")).expect("auth");
        assert!(client.may_use_provider("a") && !client.may_use_provider("b"));
        assert!(client.may_use_model("a", "m1", "a:m1"));
        assert!(!client.may_use_model("a", "m2", "a:m2"));
        assert!(
            client.may_use_model("a", "m9", "fast"),
            "allowed through the alias it asked for"
        );
        assert!(client.may_use_model("b", "anything", "b:anything"));
        assert!(clients(PROVIDERS).is_open());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
