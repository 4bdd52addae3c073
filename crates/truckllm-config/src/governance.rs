//! Who may do what, and how much: admin identities with roles, teams, budgets, and the
//! lifecycle fields of client keys (expiry, disabling, rotation). These are config like the
//! rest: the admin API changes them by saving a new config version, so every instance sharing
//! the config store applies the same keys.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::Limits;
use crate::secret::Secret;

/// What an admin identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Every admin route.
    Admin,
    /// Read-only admin routes.
    Viewer,
}

/// One identity of the admin API (`server.admin_keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyConfig {
    /// Named as the author of the config versions it saves and in audit records.
    pub id: String,
    /// The key, best as a `${ENV}` reference or `enc:v1:` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// Or only its SHA-256, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    pub role: AdminRole,
}

/// A team: limits, budget and permissions that bound every key naming it (a key can narrow
/// them, never widen them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub id: String,
    /// Minute limits shared by all the team's keys together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Spend shared by all the team's keys together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// Provider ids the team's keys may use; `*` for all.
    #[serde(default = "everything")]
    pub allowed_providers: Vec<String>,
    /// Models (`provider:model` or alias) the team's keys may use; `*` for all.
    #[serde(default = "everything")]
    pub allowed_models: Vec<String>,
    /// Free-form labels (owner, cost centre), shown by the admin API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

pub(crate) fn everything() -> Vec<String> {
    vec!["*".into()]
}

/// A spending limit over a period: exactly one of `max_cost` (currency units, priced as the
/// providers' `pricing` says) and `max_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<f64>,
    pub period: BudgetPeriod,
    #[serde(default)]
    pub reset: BudgetReset,
    /// For calendar periods: the IANA time zone whose midnights, Mondays and 1sts start them
    /// (`Europe/Berlin`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The period a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    /// Never resets.
    Total,
}

/// How a budget's period starts again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetReset {
    /// At the start of each calendar period, UTC (midnight, Monday, the 1st).
    #[default]
    Calendar,
    /// Over the last period, sliding.
    Rolling,
}

/// The digest of a rotated-out key, still accepted until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviousKeyConfig {
    /// SHA-256 of the old key, in hex.
    pub key_sha256: String,
    /// When the old key stops working: RFC 3339, UTC (`2026-12-01T00:00:00Z`).
    pub until: String,
}

/// Parses an RFC 3339 UTC time (`2026-12-01T00:00:00Z`) to Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

/// Unix milliseconds as RFC 3339, UTC, to the second.
pub fn format_time_ms(ms: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `id` may name a key, team or admin made through the admin API: 1 to 64 ASCII
/// letters, digits, `.`, `_` or `-`, starting with a letter or digit (it appears in URL paths,
/// store keys and logs).
pub fn is_plain_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The keys a rollback from `current` to `target` would let in again: client keys enabled in
/// `target` that `current` no longer has (revoked since), has disabled, or has with another
/// secret (rotated since), and admin keys `target` has that `current` does not have, or has
/// with another secret. Secrets are compared as written, so one only written differently
/// (re-encrypted under a new master key) is named too. Each list sorted; never a secret.
pub fn revived_by_rollback(target: &crate::Config, current: &crate::Config) -> Revived {
    let client_keys = target
        .api_keys
        .iter()
        .filter(|key| !key.disabled)
        .filter(|key| {
            !current.api_keys.iter().any(|now| {
                now.id == key.id
                    && !now.disabled
                    && same_secret(&now.key, &key.key, &now.key_sha256, &key.key_sha256)
            })
        })
        .map(|key| key.id.clone())
        .collect();
    let legacy = target.server.admin_key.as_ref().map(|key| {
        let kept = current.server.admin_key.as_ref() == Some(key);
        (!kept).then(|| "admin".to_owned())
    });
    let listed = target.server.admin_keys.iter().filter_map(|key| {
        let kept = current.server.admin_keys.iter().any(|now| {
            now.id == key.id
                && now.role == key.role
                && same_secret(&now.key, &key.key, &now.key_sha256, &key.key_sha256)
        });
        (!kept).then(|| key.id.clone())
    });
    let mut admin_keys: Vec<String> = legacy.flatten().into_iter().chain(listed).collect();
    admin_keys.sort();
    admin_keys.dedup();
    let mut revived = Revived {
        client_keys,
        admin_keys,
    };
    revived.client_keys.sort();
    revived.client_keys.dedup();
    revived
}

/// Whether two key entries hold the same secret as written (the key, or its digest).
fn same_secret(
    a: &Option<Secret>,
    b: &Option<Secret>,
    a_sha256: &Option<String>,
    b_sha256: &Option<String>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (None, None) => {
            a_sha256.as_ref().map(|h| h.to_ascii_lowercase())
                == b_sha256.as_ref().map(|h| h.to_ascii_lowercase())
        }
        _ => false,
    }
}

/// What a rollback would let in again ([`revived_by_rollback`]), by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revived {
    pub client_keys: Vec<String>,
    pub admin_keys: Vec<String>,
}

impl Revived {
    pub fn is_empty(&self) -> bool {
        self.client_keys.is_empty() && self.admin_keys.is_empty()
    }
}

impl std::fmt::Display for Revived {
    /// `client keys alice, bob; admin keys ops`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [("client", &self.client_keys), ("admin", &self.admin_keys)]
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(kind, ids)| {
                let noun = if ids.len() == 1 { "key" } else { "keys" };
                format!("{kind} {noun} {}", ids.join(", "))
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_names_the_keys_it_would_let_in_again() {
        let config = |keys: &str| -> crate::Config {
            crate::parse(&format!("api_keys:\n{keys}")).expect("config")
        };
        let target = config(
            "  - {id: kept, key: a}\n  - {id: revoked, key: b}\n  - {id: disabled, key: c}\n  - {id: rotated, key_sha256: AA}\n  - {id: off, key: e, disabled: true}\n",
        );
        let current = config(
            "  - {id: kept, key: a}\n  - {id: disabled, key: c, disabled: true}\n  - {id: rotated, key_sha256: bb, previous: {key_sha256: aa, until: \"2030-01-01T00:00:00Z\"}}\n",
        );
        let revived = revived_by_rollback(&target, &current);
        assert_eq!(revived.client_keys, ["disabled", "revoked", "rotated"]);
        assert_eq!(
            revived.to_string(),
            "client keys disabled, revoked, rotated"
        );
        assert_eq!(
            revived_by_rollback(&current, &target).client_keys,
            ["rotated"],
            "the other way, only a secret the target no longer has"
        );
        assert!(revived_by_rollback(&target, &target).is_empty());
        let admins = |keys: &str| -> crate::Config {
            crate::parse(&format!("server:\n  admin_keys:\n{keys}")).expect("config")
        };
        let revived = revived_by_rollback(
            &admins(
                "    - {id: ops, key: x, role: admin}\n    - {id: eye, key: y, role: viewer}\n",
            ),
            &admins("    - {id: eye, key: y, role: viewer}\n"),
        );
        assert_eq!(revived.to_string(), "admin key ops");
    }

    #[test]
    fn times_parse_as_utc_and_round_trip() {
        let ms = parse_time_ms("2026-12-01T00:00:00Z").expect("time");
        assert_eq!(ms, 1_796_083_200_000);
        assert_eq!(format_time_ms(ms), "2026-12-01T00:00:00Z");
        for bad in ["tomorrow", "2026-13-01T00:00:00Z", "", "2026-12-01"] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_ids_are_short_url_safe_names() {
        for ok in ["alice", "svc-1", "a.b_c", "7"] {
            assert!(is_plain_id(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "-a", "a/b", "a:b", "a{b}", "a b", "é", long.as_str()] {
            assert!(!is_plain_id(bad), "{bad}");
        }
    }
}
