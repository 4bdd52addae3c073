//! Who may call the storage server: bearer tokens from a YAML file, in this shape:
//!
//! ```yaml
//! tokens:
//!   - name: gateway
//!     token: "${GATEWAY_STORE_TOKEN}"   # or token_sha256: "<hex>"
//!     scopes: [read, write, config, docs]
//!   - name: dashboard
//!     token: "${DASHBOARD_STORE_TOKEN}"
//!     scopes: [read]
//!     providers: ["openai"]            # optional; absent = all providers
//!     quota: 1000                      # optional; provider keys it may hold, see below
//! ```
//!
//! Scopes: `read` and `write` (usage), `config` (`GET/PUT /config`; `GET` shows secrets as
//! `[REDACTED]`), `config_secrets`, which with `config` makes `GET /config` return the
//! config as stored, secrets and all: give it to gateways that load their config from this
//! server, not to dashboards or editors; and `docs` (`/docs/{key}`: the gateways' stored
//! Responses conversations, which hold what clients said, so neither `read` nor `write`
//! reaches them). `docs` is for the operator's gateways only: a token limited to some
//! providers or given a `quota` cannot have it, since documents belong to no provider and
//! are not counted against quotas.
//!
//! Tokens are hashed (SHA-256) on load and compared in constant time; only names appear in
//! logs and audit records.
//!
//! A token's `quota` bounds the provider keys (each with its series) its writes may keep in
//! the store, so that one tenant cannot fill a bounded store for all the others. A key counts
//! from the token's first write to it until [`QUOTA_HOLD`] after its last; a write that would
//! add a key past the quota is refused whole. Tokens limited to some providers (tenants)
//! default to [`DEFAULT_QUOTA`]; tokens for all providers (the operator's gateways) have no
//! quota unless given one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use truckllm_config::interpolate::{Env, interpolate};
use truckllm_store::ProviderKey;

/// Provider keys a provider-limited token may hold when its entry gives no `quota`.
pub const DEFAULT_QUOTA: usize = 1000;

/// How long a key counts against its token's quota after the token last wrote to it: the
/// longest a store keeps a written key (its batch ids, [`truckllm_store::store::BATCH_ID_TTL`]).
pub const QUOTA_HOLD: Duration = truckllm_store::store::BATCH_ID_TTL;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Config,
    /// With `config`: `GET /config` returns literal secrets instead of `[REDACTED]`.
    ConfigSecrets,
    /// Documents (`/docs/{key}`): read, write and delete.
    Docs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_sha256: Option<String>,
    scopes: Vec<Scope>,
    #[serde(default)]
    providers: Option<Vec<String>>,
    #[serde(default)]
    quota: Option<usize>,
}

/// One caller.
#[derive(Debug)]
pub struct Token {
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    providers: Option<Vec<String>>,
    /// The keys this token's writes hold, if it has a quota.
    quota: Option<Quota>,
}

/// A token's quota and the keys it holds, each with the server time (Unix ms) of its last
/// write.
#[derive(Debug)]
struct Quota {
    limit: usize,
    held: Mutex<HashMap<ProviderKey, u64>>,
}

/// A write refused because its token holds its whole quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "token `{token}` holds its quota of {limit} provider keys; new keys are refused until one has gone unwritten for {} s",
    QUOTA_HOLD.as_secs()
)]
pub struct QuotaExceeded {
    pub token: String,
    pub limit: usize,
}

impl Token {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the token may touch only some providers.
    pub fn limited_to_providers(&self) -> bool {
        self.providers.is_some()
    }

    pub fn may_touch(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.iter().any(|p| p == provider))
    }

    /// Charges the keys a write touches against the quota at server time `now_ms`: keys
    /// already held are refreshed, new ones taken while there is room. All or nothing.
    pub fn charge(&self, keys: &[&ProviderKey], now_ms: u64) -> Result<(), QuotaExceeded> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        let mut held = quota.held.lock().unwrap_or_else(|p| p.into_inner());
        let new = |held: &HashMap<ProviderKey, u64>| {
            keys.iter()
                .filter(|k| !held.contains_key(**k))
                .collect::<HashSet<_>>()
                .len()
        };
        if held.len() + new(&held) > quota.limit {
            let hold_ms = u64::try_from(QUOTA_HOLD.as_millis()).unwrap_or(u64::MAX);
            held.retain(|_, last| now_ms.saturating_sub(*last) < hold_ms);
            if held.len() + new(&held) > quota.limit {
                return Err(QuotaExceeded {
                    token: self.name.clone(),
                    limit: quota.limit,
                });
            }
        }
        for key in keys {
            held.insert((*key).clone(), now_ms);
        }
        Ok(())
    }
}

/// Every token of the server.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Arc<Token>>);

impl Tokens {
    /// Parses the tokens file, resolving `${VAR}` references from `env`.
    pub fn parse(yaml: &str, env: &dyn Env) -> Result<Self, String> {
        let file: TokensFile =
            serde_saphyr::from_str(yaml).map_err(|e| format!("tokens file: {e}"))?;
        let mut tokens = Vec::with_capacity(file.tokens.len());
        for entry in file.tokens {
            let hash = match (&entry.token, &entry.token_sha256) {
                (Some(token), None) => {
                    let token = interpolate(token, env)
                        .map_err(|e| format!("token {:?}: {e}", entry.name))?;
                    if token.is_empty() {
                        return Err(format!("token {:?} is empty", entry.name));
                    }
                    Sha256::digest(token.as_bytes()).into()
                }
                (None, Some(hex)) => {
                    truckllm_config::secret::parse_sha256_hex(hex).ok_or_else(|| {
                        format!("token {:?}: token_sha256 must be 64 hex digits", entry.name)
                    })?
                }
                _ => {
                    return Err(format!(
                        "token {:?}: give exactly one of token and token_sha256",
                        entry.name
                    ));
                }
            };
            if entry.scopes.is_empty() {
                return Err(format!("token {:?} has no scopes", entry.name));
            }
            let bounded = entry.quota.is_some() || entry.providers.is_some();
            if bounded && entry.scopes.contains(&Scope::Docs) {
                return Err(format!(
                    "token {:?}: the docs scope is for unlimited tokens (no providers, no quota): documents belong to no provider and are not counted against quotas",
                    entry.name
                ));
            }
            let limit = match (entry.quota, &entry.providers) {
                (Some(0), _) => {
                    return Err(format!("token {:?}: quota must be at least 1", entry.name));
                }
                (Some(limit), _) => Some(limit),
                (None, Some(_)) => Some(DEFAULT_QUOTA),
                (None, None) => None,
            };
            tokens.push(Arc::new(Token {
                name: entry.name,
                hash,
                scopes: entry.scopes,
                providers: entry.providers,
                quota: limit.map(|limit| Quota {
                    limit,
                    held: Mutex::default(),
                }),
            }));
        }
        Ok(Self(tokens))
    }

    /// The token presented in `Authorization: Bearer …`; every stored hash is compared.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&Arc<Token>> {
        let presented = authorization?.strip_prefix("Bearer ")?.trim();
        if presented.is_empty() {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.hash.ct_eq(&hash)) {
                found = Some(token);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_issue_shape_loads_and_authenticates() {
        let yaml = "tokens:\n  - name: gateway\n    token: \"${GATEWAY_STORE_TOKEN}\"\n    scopes: [read, write, config]\n  - name: dashboard\n    token: \"${DASHBOARD_STORE_TOKEN}\"\n    scopes: [read]\n    providers: [\"openai\"]\n";
        let env: HashMap<String, String> = [
            ("GATEWAY_STORE_TOKEN", "gw-tok"),
            ("DASHBOARD_STORE_TOKEN", "dash-tok"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        let tokens = Tokens::parse(yaml, &env).expect("parse");
        let gw = tokens.authenticate(Some("Bearer gw-tok")).expect("gateway");
        assert!(gw.has(Scope::Write) && gw.may_touch("anything"));
        let dash = tokens
            .authenticate(Some("Bearer dash-tok"))
            .expect("dashboard");
        assert!(!dash.has(Scope::Write) && dash.may_touch("openai") && !dash.may_touch("groq"));
        assert!(tokens.authenticate(Some("Bearer nope")).is_none());
        assert!(tokens.authenticate(None).is_none());
        assert!(!format!("{tokens:?}").contains("gw-tok"));
        assert!(
            Tokens::parse(
                "tokens:\n  - name: x\n    token: \"${UNSET_TOKEN_VAR}\"\n    scopes: [read]\n",
                &env
            )
            .is_err()
        );
    }

    #[test]
    fn a_quota_holds_keys_until_they_go_unwritten_for_the_hold() {
        let yaml = "tokens:\n  - name: tenant\n    token: t\n    scopes: [write]\n    providers: [p]\n    quota: 2\n  - name: tenant2\n    token: u\n    scopes: [write]\n    providers: [p]\n  - name: gw\n    token: g\n    scopes: [write]\n";
        let tokens = Tokens::parse(yaml, &HashMap::new()).expect("parse");
        let key = |k: &str| ProviderKey::new("p", k).expect("key");
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let tenant = tokens.authenticate(Some("Bearer t")).expect("tenant");
        tenant.charge(&[&a, &a, &b], 1_000).expect("two keys fit");
        let refused = tenant.charge(&[&a, &c], 2_000);
        assert_eq!(
            refused.map_err(|e| e.limit),
            Err(2),
            "a third key is refused"
        );
        tenant
            .charge(&[&b], 2_000)
            .expect("held keys stay writable");
        let hold = u64::try_from(QUOTA_HOLD.as_millis()).expect("ms");
        tenant
            .charge(&[&c], 1_000 + hold)
            .expect("`a` went unwritten for the hold and makes room");
        assert!(
            tenant.charge(&[&a], 1_000 + hold).is_err(),
            "b and c are held"
        );
        let defaulted = tokens.authenticate(Some("Bearer u")).expect("tenant2");
        assert_eq!(
            defaulted.quota.as_ref().map(|q| q.limit),
            Some(DEFAULT_QUOTA)
        );
        let gw = tokens.authenticate(Some("Bearer g")).expect("gw");
        assert!(
            gw.quota.is_none(),
            "all-provider tokens have no default quota"
        );
        assert!(Tokens::parse(&yaml.replace("quota: 2", "quota: 0"), &HashMap::new()).is_err());
    }
}
