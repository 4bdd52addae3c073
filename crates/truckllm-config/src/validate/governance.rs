//! Checks of admin identities, teams, budgets and the lifecycle fields of client keys.

use std::collections::HashSet;

use super::{MIN_ADMIN_KEY_BYTES, Problems};
use crate::governance::{BudgetConfig, is_plain_id, parse_time_ms};
use crate::schema::Config;

pub(super) fn check_admins(config: &Config, problems: &mut Problems) {
    problems.unique(
        "admin",
        config
            .server
            .admin_keys
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("server.admin_keys[{i}].id"), a.id.as_str())),
    );
    for (i, admin) in config.server.admin_keys.iter().enumerate() {
        let path = format!("server.admin_keys[{i}]");
        if !is_plain_id(&admin.id) {
            problems.add(format!("{path}.id"), PLAIN_ID);
        }
        if admin.id == "admin" && config.server.admin_key.is_some() {
            problems.add(
                format!("{path}.id"),
                "`admin` is the identity of server.admin_key; name this one differently",
            );
        }
        match (&admin.key, &admin.key_sha256) {
            (Some(_), Some(_)) | (None, None) => {
                problems.add(&path, "give exactly one of key and key_sha256")
            }
            (Some(key), None) if key.expose().len() < MIN_ADMIN_KEY_BYTES => problems.add(
                format!("{path}.key"),
                format!(
                    "must be at least {MIN_ADMIN_KEY_BYTES} bytes; make one with `openssl rand \
                     -hex 32`"
                ),
            ),
            (None, Some(hash)) => sha256(problems, &format!("{path}.key_sha256"), hash),
            _ => {}
        }
    }
}

pub(super) fn check_teams(config: &Config, problems: &mut Problems) {
    problems.unique(
        "team",
        config
            .teams
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("teams[{i}].id"), t.id.as_str())),
    );
    for (i, team) in config.teams.iter().enumerate() {
        let path = format!("teams[{i}]");
        if !is_plain_id(&team.id) {
            problems.add(format!("{path}.id"), PLAIN_ID);
        }
        problems.limits(&format!("{path}.limits"), team.limits.as_ref());
        budget(problems, &format!("{path}.budget"), team.budget.as_ref());
        super::permissions(
            config,
            problems,
            &path,
            &team.allowed_providers,
            &team.allowed_models,
        );
    }
}

/// The fields a client key gained for governance (its id, key and permissions are checked
/// with the rest of `api_keys`).
pub(super) fn check_client_lifecycle(config: &Config, problems: &mut Problems) {
    check_distinct_keys(config, problems);
    let teams: HashSet<&str> = config.teams.iter().map(|t| t.id.as_str()).collect();
    for (i, client) in config.api_keys.iter().enumerate() {
        let path = format!("api_keys[{i}]");
        if let Some(team) = &client.team
            && !teams.contains(team.as_str())
        {
            problems.add(format!("{path}.team"), "names a team that is not in teams");
        }
        budget(problems, &format!("{path}.budget"), client.budget.as_ref());
        if let Some(at) = &client.expires_at {
            time(problems, &format!("{path}.expires_at"), at);
        }
        if let Some(previous) = &client.previous {
            sha256(
                problems,
                &format!("{path}.previous.key_sha256"),
                &previous.key_sha256,
            );
            time(problems, &format!("{path}.previous.until"), &previous.until);
        }
    }
}

/// Two client keys with the same secret (or one key's current secret another's rotated-out
/// one) would make a presented key mean two clients: refused, naming the other entry, never
/// the secret.
fn check_distinct_keys(config: &Config, problems: &mut Problems) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, client) in config.api_keys.iter().enumerate() {
        let current = match (&client.key, &client.key_sha256) {
            (Some(key), _) => Some(("key", crate::store::file::sha256_hex(key.expose()))),
            (None, Some(hex)) => Some(("key_sha256", hex.to_ascii_lowercase())),
            (None, None) => None,
        };
        let previous = client
            .previous
            .as_ref()
            .map(|p| ("previous.key_sha256", p.key_sha256.to_ascii_lowercase()));
        for (field, digest) in current.into_iter().chain(previous) {
            match seen.get(&digest) {
                Some(&j) if j != i => problems.add(
                    format!("api_keys[{i}].{field}"),
                    format!(
                        "is the same key as api_keys[{j}] (`{}`): each client needs its own key",
                        config.api_keys[j].id
                    ),
                ),
                _ => {
                    seen.insert(digest, i);
                }
            }
        }
    }
}

const PLAIN_ID: &str =
    "must be 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit";

fn budget(problems: &mut Problems, path: &str, budget: Option<&BudgetConfig>) {
    let Some(budget) = budget else { return };
    match (budget.max_cost, budget.max_tokens) {
        (Some(_), Some(_)) | (None, None) => {
            problems.add(path, "give exactly one of max_cost and max_tokens")
        }
        (Some(v), None) | (None, Some(v)) if !(v.is_finite() && v > 0.0) => {
            let field = if budget.max_cost.is_some() {
                "max_cost"
            } else {
                "max_tokens"
            };
            problems.add(
                format!("{path}.{field}"),
                format!("must be a number above 0, got {v}"),
            )
        }
        _ => {}
    }
    if let Some(zone) = &budget.timezone
        && jiff::tz::TimeZone::get(zone).is_err()
    {
        problems.add(
            format!("{path}.timezone"),
            format!(
                "unknown time zone {:?}; use an IANA name such as Europe/Berlin",
                zone.chars().take(64).collect::<String>()
            ),
        );
    }
}

fn time(problems: &mut Problems, path: &str, text: &str) {
    if parse_time_ms(text).is_none() {
        problems.add(
            path,
            "must be an RFC 3339 time in UTC, like 2026-12-01T00:00:00Z",
        );
    }
}

fn sha256(problems: &mut Problems, path: &str, hash: &str) {
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        problems.add(path, "must be 64 hex digits (a SHA-256)");
    }
}
