//! Who may do what, and how much: admin identities with roles, teams, budgets, and the
//! lifecycle fields of client keys (expiry, disabling, rotation). These are config like the
//! rest: the admin API changes them by saving a new config version, so every instance sharing
//! the config store applies the same keys.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{ClientKeyConfig, Limits};
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

/// The keys a rollback from `current` to `target` would let in again, at `now_ms`: client keys
/// enabled in `target` that `current` no longer has (revoked since), has disabled, has with
/// another secret (rotated since), has with an earlier expiry (or `target` has none), or
/// that `target` lets in with a rotated-out secret (`previous`, unexpired at `now_ms`) that
/// `current` no longer accepts as long; admin keys `target` has that `current` does not have,
/// or has with another secret; and whether `target` has no client keys while `current` has
/// (it would open the gateway to anyone). Secrets are compared as written, so one only written
/// differently (re-encrypted under a new master key) is named too. Each list sorted; never a
/// secret.
pub fn revived_by_rollback(
    target: &crate::Config,
    current: &crate::Config,
    now_ms: u64,
) -> Revived {
    let mut client_keys: Vec<String> = target
        .api_keys
        .iter()
        .filter(|key| !key.disabled)
        .filter(|key| {
            let now = current.api_keys.iter().find(|now| now.id == key.id);
            now.is_none_or(|now| client_key_revived(key, now, now_ms))
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
    client_keys.sort();
    client_keys.dedup();
    Revived {
        client_keys,
        admin_keys,
        opens_gateway: target.api_keys.is_empty() && !current.api_keys.is_empty(),
    }
}

/// Whether the enabled client key `key` of a rollback's target lets in more than the current
/// entry with its id, `now`: it is disabled now, has another secret, expires earlier, or
/// accepts a rotated-out secret the target still accepts at `now_ms`.
fn client_key_revived(key: &ClientKeyConfig, now: &ClientKeyConfig, now_ms: u64) -> bool {
    now.disabled
        || !same_secret(&now.key, &key.key, &now.key_sha256, &key.key_sha256)
        || extends_expiry(key.expires_at.as_deref(), now.expires_at.as_deref())
        || key
            .previous
            .as_ref()
            .is_some_and(|previous| revives_previous(previous, now, now_ms))
}

/// Whether a target's expiry (`target`) is later than the current one, or absent while the
/// current one is set. An expiry that does not parse counts as later.
fn extends_expiry(target: Option<&str>, current: Option<&str>) -> bool {
    let Some(current) = current.and_then(parse_time_ms) else {
        return false;
    };
    target.and_then(parse_time_ms).is_none_or(|t| t > current)
}

/// Whether the target's rotated-out secret `previous`, unexpired at `now_ms`, is one the
/// current entry `now` does not accept as long: neither its digest nor its own `previous`
/// with the same digest and an `until` at least as late.
fn revives_previous(previous: &PreviousKeyConfig, now: &ClientKeyConfig, now_ms: u64) -> bool {
    let until = parse_time_ms(&previous.until);
    if until.is_some_and(|until| until <= now_ms) {
        return false;
    }
    let digest = previous.key_sha256.to_ascii_lowercase();
    let is_current = now
        .key_sha256
        .as_ref()
        .is_some_and(|h| h.to_ascii_lowercase() == digest);
    let still_accepted = now.previous.as_ref().is_some_and(|p| {
        p.key_sha256.to_ascii_lowercase() == digest
            && match (parse_time_ms(&p.until), until) {
                (Some(now_until), Some(until)) => now_until >= until,
                _ => false,
            }
    });
    !(is_current || still_accepted)
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
    /// The target has no client keys while the current version has: anyone could call.
    pub opens_gateway: bool,
}

impl Revived {
    pub fn is_empty(&self) -> bool {
        self.client_keys.is_empty() && self.admin_keys.is_empty() && !self.opens_gateway
    }
}

impl std::fmt::Display for Revived {
    /// `client keys alice, bob; admin keys ops`, and `anyone (no client keys: open mode)`
    /// when the target would open the gateway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = [("client", &self.client_keys), ("admin", &self.admin_keys)]
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(kind, ids)| {
                let noun = if ids.len() == 1 { "key" } else { "keys" };
                format!("{kind} {noun} {}", ids.join(", "))
            })
            .collect();
        if self.opens_gateway {
            parts.push("anyone (no client keys: open mode)".into());
        }
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
        let revived = revived_by_rollback(&target, &current, 0);
        assert_eq!(revived.client_keys, ["disabled", "revoked", "rotated"]);
        assert_eq!(
            revived.to_string(),
            "client keys disabled, revoked, rotated"
        );
        assert_eq!(
            revived_by_rollback(&current, &target, 0).client_keys,
            ["rotated"],
            "the other way, only a secret the target no longer has"
        );
        assert!(revived_by_rollback(&target, &target, 0).is_empty());
        let admins = |keys: &str| -> crate::Config {
            crate::parse(&format!("server:\n  admin_keys:\n{keys}")).expect("config")
        };
        let revived = revived_by_rollback(
            &admins(
                "    - {id: ops, key: x, role: admin}\n    - {id: eye, key: y, role: viewer}\n",
            ),
            &admins("    - {id: eye, key: y, role: viewer}\n"),
            0,
        );
        assert_eq!(revived.to_string(), "admin key ops");
    }

    fn keys(keys: &str) -> crate::Config {
        crate::parse(&format!("api_keys:\n{keys}")).expect("config")
    }

    #[test]
    fn a_rollback_that_extends_an_expiry_names_the_key() {
        let target = keys(
            "  - {id: later, key: a, expires_at: \"2031-01-01T00:00:00Z\"}\n  - {id: never, key: b}\n  - {id: same, key: c, expires_at: \"2030-01-01T00:00:00Z\"}\n  - {id: sooner, key: d, expires_at: \"2029-01-01T00:00:00Z\"}\n",
        );
        let current = keys(
            "  - {id: later, key: a, expires_at: \"2030-01-01T00:00:00Z\"}\n  - {id: never, key: b, expires_at: \"2030-01-01T00:00:00Z\"}\n  - {id: same, key: c, expires_at: \"2030-01-01T00:00:00Z\"}\n  - {id: sooner, key: d, expires_at: \"2030-01-01T00:00:00Z\"}\n",
        );
        let revived = revived_by_rollback(&target, &current, 0);
        assert_eq!(revived.client_keys, ["later", "never"]);
        assert!(!revived.opens_gateway);
    }

    #[test]
    fn a_rollback_that_brings_back_a_rotated_out_secret_names_the_key() {
        let target = keys(
            "  - {id: back, key_sha256: bb, previous: {key_sha256: AA, until: \"2030-01-01T00:00:00Z\"}}\n  - {id: kept, key_sha256: bb, previous: {key_sha256: aa, until: \"2030-01-01T00:00:00Z\"}}\n  - {id: over, key_sha256: bb, previous: {key_sha256: aa, until: \"2020-01-01T00:00:00Z\"}}\n",
        );
        let current = keys(
            "  - {id: back, key_sha256: bb}\n  - {id: kept, key_sha256: bb, previous: {key_sha256: aa, until: \"2030-01-01T00:00:00Z\"}}\n  - {id: over, key_sha256: bb}\n",
        );
        let now = parse_time_ms("2026-01-01T00:00:00Z").expect("time");
        let revived = revived_by_rollback(&target, &current, now);
        assert_eq!(
            revived.client_keys,
            ["back"],
            "`over`'s old secret has expired"
        );
        let later = keys(
            "  - {id: kept, key_sha256: bb, previous: {key_sha256: aa, until: \"2031-01-01T00:00:00Z\"}}\n",
        );
        assert_eq!(
            revived_by_rollback(&later, &current, now).client_keys,
            ["kept"],
            "accepted for longer"
        );
    }

    #[test]
    fn a_rollback_to_a_version_without_client_keys_would_open_the_gateway() {
        let open = crate::parse("server:\n  open_mode: true\n").expect("config");
        let closed = keys("  - {id: a, key: a}\n");
        let revived = revived_by_rollback(&open, &closed, 0);
        assert!(revived.opens_gateway);
        assert!(!revived.is_empty());
        assert_eq!(revived.to_string(), "anyone (no client keys: open mode)");
        assert!(revived_by_rollback(&open, &open, 0).is_empty());
        assert!(!revived_by_rollback(&closed, &open, 0).opens_gateway);
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
