//! Who is calling: client keys from `api_keys`, hashed (SHA-256) as soon as the config is
//! loaded and compared in constant time. With no client keys configured the gateway runs in
//! an explicit open mode (announced at start), where every caller is the anonymous client.
//!
//! A key may belong to a team (`teams`): the team's permissions bound the key's (a key can
//! narrow them, never widen them). A disabled or expired key is refused; after a rotation the
//! old key's digest is accepted until its grace period ends.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use truckllm_config::Config;
use truckllm_config::governance::parse_time_ms;
use truckllm_config::schema::{ClientKeyConfig, Limits, TeamConfig};

use crate::auth::digest;
use crate::budgets::{Budget, Owner};
use crate::dispatch::{CLIENTS_NAMESPACE, TEAMS_NAMESPACE};
use crate::error::ApiError;

/// Which providers and models may be used.
#[derive(Debug, Clone)]
pub struct Permissions {
    providers: Vec<String>,
    models: Vec<String>,
}

impl Permissions {
    fn everything() -> Self {
        Self {
            providers: vec!["*".into()],
            models: vec!["*".into()],
        }
    }

    fn may_use_provider(&self, provider: &str) -> bool {
        self.providers.iter().any(|p| p == "*" || p == provider)
    }

    fn may_use_model(&self, provider: &str, model: &str, requested: &str) -> bool {
        self.models.iter().any(|allowed| {
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

/// A team, as its keys see it.
#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub limits: Option<Limits>,
    pub budget: Option<Budget>,
    permissions: Permissions,
}

impl Team {
    fn from_config(team: &TeamConfig) -> Self {
        Self {
            id: team.id.clone(),
            limits: team.limits,
            budget: team
                .budget
                .as_ref()
                .and_then(|b| Budget::from_config(Owner::Team, TEAMS_NAMESPACE, &team.id, b)),
            permissions: Permissions {
                providers: team.allowed_providers.clone(),
                models: team.allowed_models.clone(),
            },
        }
    }
}

/// One configured client, holding only the hash of its key.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    key_hash: [u8; 32],
    /// The rotated-out key's digest and when it stops working (Unix ms).
    previous: Option<([u8; 32], u64)>,
    permissions: Permissions,
    pub limits: Option<Limits>,
    pub budget: Option<Budget>,
    pub team: Option<Arc<Team>>,
    disabled: bool,
    /// When the key stops working (Unix ms).
    expires_ms: Option<u64>,
}

impl Client {
    /// Whether this client (and its team) may use `provider`.
    pub fn may_use_provider(&self, provider: &str) -> bool {
        self.permissions.may_use_provider(provider)
            && self
                .team
                .as_ref()
                .is_none_or(|t| t.permissions.may_use_provider(provider))
    }

    /// Whether this client (and its team) may use `provider:model`, asked for as `requested`
    /// (an alias name, `provider:model`, or a bare model name).
    pub fn may_use_model(&self, provider: &str, model: &str, requested: &str) -> bool {
        self.permissions.may_use_model(provider, model, requested)
            && self
                .team
                .as_ref()
                .is_none_or(|t| t.permissions.may_use_model(provider, model, requested))
    }

    /// Whether any budget holds this client's requests (no allocation: asked on every request).
    pub fn has_budget(&self) -> bool {
        self.budget.is_some() || self.team.as_ref().is_some_and(|t| t.budget.is_some())
    }

    /// The budgets this client's requests are held to: its own, then its team's.
    pub fn budgets(&self) -> Vec<&Budget> {
        self.budget
            .iter()
            .chain(self.team.as_ref().and_then(|t| t.budget.as_ref()))
            .collect()
    }

    /// The client of one `api_keys` entry; `None` when it names neither key nor hash (the
    /// config validation refuses that).
    fn from_config(c: &ClientKeyConfig, teams: &[Arc<Team>]) -> Option<Self> {
        let key_hash = match (&c.key, &c.key_sha256) {
            (Some(key), _) => digest(key.expose().as_bytes()),
            (None, Some(hex)) => truckllm_config::secret::parse_sha256_hex(hex)?,
            (None, None) => return None,
        };
        let previous = c.previous.as_ref().and_then(|p| {
            let hash = truckllm_config::secret::parse_sha256_hex(&p.key_sha256)?;
            Some((hash, parse_time_ms(&p.until)?))
        });
        Some(Self {
            id: c.id.clone(),
            key_hash,
            previous,
            permissions: Permissions {
                providers: c.allowed_providers.clone(),
                models: c.allowed_models.clone(),
            },
            limits: c.limits,
            budget: c
                .budget
                .as_ref()
                .and_then(|b| Budget::from_config(Owner::Client, CLIENTS_NAMESPACE, &c.id, b)),
            team: c
                .team
                .as_ref()
                .and_then(|id| teams.iter().find(|t| &t.id == id).cloned()),
            disabled: c.disabled,
            // An unreadable time is refused by validation; were one to get here, the key is
            // treated as expired rather than as never expiring.
            expires_ms: c
                .expires_at
                .as_ref()
                .map(|at| parse_time_ms(at).unwrap_or(0)),
        })
    }

    /// Whether `presented` is this client's key, or its previous one within the grace period
    /// (`Some(true)` for the previous one). Both digests are compared in constant time.
    fn matches(&self, presented: &[u8; 32]) -> Option<bool> {
        let current = bool::from(self.key_hash.ct_eq(presented));
        let previous = self
            .previous
            .as_ref()
            .is_some_and(|(hash, _)| bool::from(hash.ct_eq(presented)));
        match (current, previous) {
            (true, _) => Some(false),
            (false, true) => Some(true),
            (false, false) => None,
        }
    }

    /// Refuses a key that is disabled, expired, or an old key past its grace period.
    fn check_usable(&self, via_previous: bool, now_ms: u64) -> Result<(), ApiError> {
        if self.disabled {
            return Err(ApiError::unauthorized(format!(
                "API key `{}` is disabled",
                self.id
            )));
        }
        if self.expires_ms.is_some_and(|at| now_ms >= at) {
            return Err(ApiError::unauthorized(format!(
                "API key `{}` has expired",
                self.id
            )));
        }
        if via_previous && self.previous.is_some_and(|(_, until)| now_ms >= until) {
            return Err(ApiError::unauthorized(format!(
                "API key `{}` was rotated and this old key's grace period has ended",
                self.id
            )));
        }
        Ok(())
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
        let teams: Vec<Arc<Team>> = config
            .teams
            .iter()
            .map(|t| Arc::new(Team::from_config(t)))
            .collect();
        let clients = config
            .api_keys
            .iter()
            .filter_map(|c| Client::from_config(c, &teams).map(Arc::new))
            .collect();
        Self {
            clients,
            open: Arc::new(Client {
                id: "anonymous".into(),
                key_hash: [0; 32],
                previous: None,
                permissions: Permissions::everything(),
                limits: None,
                budget: None,
                team: None,
                disabled: false,
                expires_ms: None,
            }),
        }
    }

    /// True when no client keys are configured and anyone may call.
    pub fn is_open(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client whose key was presented (see [`crate::auth::presented_key`]) at `now_ms`.
    /// Every stored hash is compared, in constant time, whether or not an earlier one matched.
    pub fn authenticate(&self, key: Option<&str>, now_ms: u64) -> Result<&Arc<Client>, ApiError> {
        if self.is_open() {
            return Ok(&self.open);
        }
        let key = key.ok_or_else(|| {
            ApiError::unauthorized(
                "missing API key: send Authorization: Bearer <key> (or x-api-key: <key>)",
            )
        })?;
        let presented = digest(key.as_bytes());
        let mut found: Option<(&Arc<Client>, bool)> = None;
        for client in &self.clients {
            if let Some(via_previous) = client.matches(&presented) {
                found = Some((client, via_previous));
            }
        }
        let (client, via_previous) =
            found.ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
        client.check_usable(via_previous, now_ms)?;
        Ok(client)
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
            c.authenticate(Some("plain-key"), 0)
                .map(|c| c.id.as_str())
                .ok(),
            Some("one")
        );
        assert_eq!(
            c.authenticate(Some("hashed-key"), 0)
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
            let err = c.authenticate(bad, 0).expect_err("rejected");
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
        let client = c.authenticate(Some("k"), 0).expect("auth");
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

    #[test]
    fn disabled_expired_and_rotated_keys_are_refused_by_the_clock() {
        let old = hex(&digest(b"old-key"));
        let yaml = format!(
            "{PROVIDERS}teams:\n  - id: t\n    allowed_providers: [a]\napi_keys:\n  - id: off\n    key: off-key\n    disabled: true\n  - id: dated\n    key: dated-key\n    expires_at: \"2026-12-01T00:00:00Z\"\n  - id: turned\n    key: new-key\n    team: t\n    previous: {{key_sha256: \"{old}\", until: \"2026-12-01T00:00:10Z\"}}\n"
        );
        let c = clients(&yaml);
        let at = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        let refused = |key: &str, now: u64| c.authenticate(Some(key), now).err().map(|e| e.message);
        assert!(refused("off-key", 0).is_some_and(|m| m.contains("disabled")));
        assert_eq!(refused("dated-key", at - 1), None);
        assert!(refused("dated-key", at).is_some_and(|m| m.contains("expired")));
        assert_eq!(
            refused("new-key", at + 60_000),
            None,
            "the new key has no end"
        );
        assert_eq!(
            refused("old-key", at + 9_999),
            None,
            "the old key within its grace"
        );
        assert!(refused("old-key", at + 10_000).is_some_and(|m| m.contains("grace")));
        let turned = c.authenticate(Some("new-key"), at).expect("auth");
        assert!(
            turned.may_use_provider("a") && !turned.may_use_provider("b"),
            "team bounds"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
