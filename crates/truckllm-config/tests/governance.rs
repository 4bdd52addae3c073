//! Admin identities, teams, budgets and client key lifecycle fields: what loads, and what is
//! refused with the field named.

use std::collections::HashMap;

use truckllm_config::load_str;
use truckllm_config::schema::{AdminRole, BudgetPeriod, BudgetReset};

const PROVIDER: &str =
    "llm_providers:\n  - id: p\n    base_url: http://p/v1\n    keys: [{id: k, secret: s}]\n";

fn load(yaml: &str) -> Result<truckllm_config::LoadedConfig, String> {
    let env: HashMap<String, String> = HashMap::new();
    load_str(&format!("{PROVIDER}{yaml}"), &env, None).map_err(|e| e.to_string())
}

#[test]
fn a_full_governance_config_loads() {
    let hash = "a".repeat(64);
    let yaml = format!(
        "server:\n  admin_key: legacy-admin-key-0123\n  admin_keys:\n    - {{id: ops, key: ops-admin-key-01234, role: admin}}\n    - {{id: auditor, key_sha256: \"{hash}\", role: viewer}}\nteams:\n  - id: search\n    limits: {{req_per_min: 100}}\n    budget: {{max_cost: 50.0, period: day}}\n    allowed_models: [\"p:*\"]\n    metadata: {{owner: platform}}\napi_keys:\n  - id: alice\n    key: alice-key\n    team: search\n    budget: {{max_tokens: 100000, period: month, reset: rolling}}\n    expires_at: \"2030-01-01T00:00:00Z\"\n    disabled: true\n    metadata: {{owner: alice}}\n    previous: {{key_sha256: \"{hash}\", until: \"2026-12-01T00:00:00Z\"}}\n"
    );
    let loaded = load(&yaml).expect("loads");
    let config = loaded.resolved;
    assert_eq!(config.server.admin_keys[1].role, AdminRole::Viewer);
    let team = &config.teams[0];
    assert_eq!(
        team.budget.as_ref().map(|b| b.period),
        Some(BudgetPeriod::Day)
    );
    assert_eq!(
        team.budget.as_ref().map(|b| b.reset),
        Some(BudgetReset::Calendar),
        "the default"
    );
    let alice = &config.api_keys[0];
    assert_eq!(alice.team.as_deref(), Some("search"));
    assert!(alice.disabled);
    assert_eq!(
        alice.budget.as_ref().map(|b| b.reset),
        Some(BudgetReset::Rolling)
    );
    let redacted = serde_json::to_string(&config.redacted()).expect("json");
    assert!(
        !redacted.contains("ops-admin-key"),
        "admin keys are redacted: {redacted}"
    );
}

#[test]
fn each_bad_field_is_named() {
    let cases = [
        (
            "server:\n  admin_keys: [{id: ops, key: short, role: admin}]\n",
            "server.admin_keys[0].key",
        ),
        (
            "server:\n  admin_keys: [{id: ops, key: long-enough-admin-key, role: root}]\n",
            "role",
        ),
        (
            "server:\n  admin_keys: [{id: ops, role: admin}]\n",
            "server.admin_keys[0]",
        ),
        (
            "server:\n  admin_keys:\n    - {id: a, key: long-enough-admin-key, role: admin}\n    - {id: a, key: other-long-admin-key, role: viewer}\n",
            "server.admin_keys[1].id",
        ),
        (
            "server:\n  admin_key: legacy-admin-key-0123\n  admin_keys: [{id: admin, key: long-enough-admin-key, role: admin}]\n",
            "server.admin_keys[0].id",
        ),
        ("teams:\n  - id: \"a/b\"\n", "teams[0].id"),
        ("teams:\n  - id: t\n  - id: t\n", "teams[1].id"),
        (
            "teams:\n  - id: t\n    budget: {max_cost: -1, period: day}\n",
            "teams[0].budget.max_cost",
        ),
        // A non-finite number does not survive `${VAR}` interpolation (JSON has none): it
        // arrives as no amount at all, and is refused as such.
        (
            "teams:\n  - id: t\n    budget: {max_cost: .nan, period: day}\n",
            "teams[0].budget",
        ),
        (
            "teams:\n  - id: t\n    budget: {period: day}\n",
            "teams[0].budget",
        ),
        (
            "teams:\n  - id: t\n    allowed_providers: [q]\n",
            "teams[0].allowed_providers[0]",
        ),
        (
            "api_keys:\n  - {id: c, key: k, team: nobody}\n",
            "api_keys[0].team",
        ),
        (
            "api_keys:\n  - {id: a, key: same-key}\n  - {id: b, key: same-key}\n",
            "api_keys[1].key",
        ),
        (
            "api_keys:\n  - {id: a, key: same-key}\n  - {id: b, key_sha256: \"b7f06468dced375ec726a327f16fd99199f28485fd5338aa0c882dcdada6f078\"}\n",
            "api_keys[1].key_sha256",
        ),
        (
            "teams:\n  - id: t\n    budget: {max_cost: 1, period: day, timezone: Mars/Olympus}\n",
            "teams[0].budget.timezone",
        ),
        (
            "api_keys:\n  - {id: c, key: k, expires_at: tomorrow}\n",
            "api_keys[0].expires_at",
        ),
        (
            "api_keys:\n  - id: c\n    key: k\n    previous: {key_sha256: xyz, until: \"2026-12-01T00:00:00Z\"}\n",
            "api_keys[0].previous.key_sha256",
        ),
        (
            "api_keys:\n  - id: c\n    key: k\n    budget: {max_tokens: 10, period: year}\n",
            "period",
        ),
    ];
    for (yaml, field) in cases {
        let error = load(yaml).expect_err(yaml);
        assert!(error.contains(field), "{yaml}: names {field}: {error}");
    }
}
