//! Who may call the storage server: bearer tokens from a YAML file, in this shape:
//!
//! ```yaml
//! tokens:
//!   - name: gateway
//!     token: "${GATEWAY_STORE_TOKEN}"   # or token_sha256: "<hex>"
//!     scopes: [read, write, config]
//!   - name: dashboard
//!     token: "${DASHBOARD_STORE_TOKEN}"
//!     scopes: [read]
//!     providers: ["openai"]            # optional; absent = all providers
//! ```
//!
//! Scopes: `read` and `write` (usage), `config` (`GET/PUT /config`; `GET` shows secrets as
//! `[REDACTED]`), and `config_secrets`, which with `config` makes `GET /config` return the
//! config as stored, secrets and all: give it to gateways that load their config from this
//! server, not to dashboards or editors.
//!
//! Tokens are hashed (SHA-256) on load and compared in constant time; only names appear in
//! logs and audit records.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use truckllm_config::interpolate::{Env, interpolate};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Config,
    /// With `config`: `GET /config` returns literal secrets instead of `[REDACTED]`.
    ConfigSecrets,
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
}

/// One caller.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
    providers: Option<Vec<String>>,
}

impl Token {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn may_touch(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.iter().any(|p| p == provider))
    }
}

/// Every token of the server.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Token>);

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
            tokens.push(Token {
                name: entry.name,
                hash,
                scopes: entry.scopes,
                providers: entry.providers,
            });
        }
        Ok(Self(tokens))
    }

    /// The token presented in `Authorization: Bearer …`; every stored hash is compared.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&Token> {
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
}
