//! Checks that need the whole config: unique ids, well-formed URLs and addresses, positive
//! limits, durations in range, an admin key long enough, and references to providers and
//! aliases that exist. Each problem is a field path and a message; [`crate::load`] adds the
//! line and column and the value as written.
//!
//! Messages never quote a value: checks run on the resolved config, where a string may be an
//! environment variable or a decrypted secret. [`crate::load`] shows the value as written
//! (the `${VAR}` reference, the `enc:` value, or `[REDACTED]` for a literal secret).

mod governance;

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::interpolate::{is_opaque, walk};
use crate::schema::{
    Config, ConfigKind, Limits, LogSinkConfig, ProviderConfig, ProviderKeyConfig, ProviderKind,
    ResponsesMode, RuntimeKind,
};
use crate::secret::REDACTED;
use crate::spans::string_at;

/// Shortest admin key accepted, in bytes.
pub const MIN_ADMIN_KEY_BYTES: usize = 16;
const MINUTE_MS: u64 = 60_000;
const DAY_SECS: f64 = 86_400.0;
const MAX_ROLLUP_KEEP_SECS: u64 = 30 * 86_400;

/// Every problem of a resolved config, as `(field path, message)`; empty when the config holds
/// together.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    check(config, false)
}

/// Every problem of a config as written, treating `${…}` references and `enc:` values as
/// opaque: a field whose value holds one is not checked, nor is a reference to a provider when
/// some provider id is opaque. For a store that keeps configs it must not resolve.
pub fn validate_written(raw: &Config) -> Vec<(String, String)> {
    let Ok(value) = serde_json::to_value(raw) else {
        return vec![(String::new(), "cannot walk the config".into())];
    };
    check(raw, true)
        .into_iter()
        .filter(|(path, _)| !string_at(&value, path).is_some_and(is_opaque))
        .collect()
}

/// Every string that holds the `[REDACTED]` placeholder: a redacted config sent back as is
/// would otherwise replace real secrets with the placeholder.
pub fn placeholders(raw: &Config) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Ok(mut value) = serde_json::to_value(raw) {
        let _ = walk(&mut value, String::new(), &mut |path, text| {
            if text.contains(REDACTED) {
                found.push((
                    path.to_owned(),
                    format!(
                        "holds the placeholder {REDACTED} of a redacted config (GET /config, \
                         config show): write the real value, a ${{VAR}} reference or an enc:v1: \
                         value"
                    ),
                ));
            }
            Ok(text.to_owned())
        });
    }
    found
}

fn check(config: &Config, opaque: bool) -> Vec<(String, String)> {
    let mut problems = Problems {
        found: Vec::new(),
        opaque,
    };
    check_server(config, &mut problems);
    check_storage(config, &mut problems);
    check_providers(config, &mut problems);
    check_aliases(config, &mut problems);
    check_clients(config, &mut problems);
    governance::check_admins(config, &mut problems);
    governance::check_teams(config, &mut problems);
    governance::check_client_lifecycle(config, &mut problems);
    check_policy(config, &mut problems);
    problems.found
}

struct Problems {
    found: Vec<(String, String)>,
    /// Checking a config as written: references and `enc:` values stand for unknown values.
    opaque: bool,
}

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.found.push((path.into(), message.into()));
    }

    /// A duration written as a number (of seconds, hours or days): finite, at least 0 (above
    /// 0 when `above`), at most `max`, so that turning it into a `Duration` cannot panic;
    /// `range` says the range in words.
    fn duration(&mut self, path: String, value: f64, above: bool, max: f64, range: &str) {
        let low_ok = if above { value > 0.0 } else { value >= 0.0 };
        if !(value.is_finite() && low_ok && value <= max) {
            self.add(path, format!("must be {range}, got {value}"));
        }
    }

    /// A whole number (of milliseconds or seconds) within `min..=max`.
    fn whole(&mut self, path: String, value: u64, min: u64, max: u64, unit: &str) {
        if !(min..=max).contains(&value) {
            self.add(
                path,
                format!("must be from {min} to {max} {unit}, got {value}"),
            );
        }
    }

    fn url(&mut self, path: &str, url: &str) {
        if let Err(message) = check_http_url(url) {
            self.add(path, message);
        }
    }

    fn limits(&mut self, path: &str, limits: Option<&Limits>) {
        let Some(limits) = limits else { return };
        for (name, value) in [
            ("req_per_min", limits.req_per_min),
            ("tokens_per_min", limits.tokens_per_min),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                self.add(
                    format!("{path}.{name}"),
                    format!("must be a number above 0, got {v}"),
                );
            }
        }
    }

    fn unique<'a>(&mut self, what: &str, ids: impl Iterator<Item = (String, &'a str)>) {
        let mut seen = HashSet::new();
        for (path, id) in ids {
            if id.trim().is_empty() {
                self.add(path, format!("{what} id must not be empty"));
            } else if !seen.insert(id) {
                self.add(path, format!("duplicate {what} id"));
            }
        }
    }
}

/// An absolute `http://` or `https://` URL with a host and no whitespace. The message does not
/// quote the URL (it may hold a password or come from the environment).
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "is not an http:// or https:// URL".to_owned())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err("is not a valid URL: it needs a host and no spaces".into());
    }
    Ok(())
}

fn check_server(config: &Config, problems: &mut Problems) {
    if config.server.listen.parse::<SocketAddr>().is_err() {
        problems.add("server.listen", "is not an address like 127.0.0.1:2906");
    }
    if let Some(key) = &config.server.admin_key
        && key.expose().len() < MIN_ADMIN_KEY_BYTES
    {
        problems.add(
            "server.admin_key",
            format!(
                "must be at least {MIN_ADMIN_KEY_BYTES} bytes (an empty or short key, e.g. from \
                 an unset ${{VAR:-}}, would leave the admin API open or guessable); make one \
                 with `openssl rand -hex 32`, or leave admin_key out to turn the admin API off"
            ),
        );
    }
}

/// `storage.history`: a PostgreSQL URL, days kept, a source name, and roll-ups to read.
fn check_history(config: &Config, problems: &mut Problems) {
    let Some(history) = &config.storage.history else {
        return;
    };
    if !is_postgres_url(&history.url) {
        problems.add(
            "storage.history.url",
            "must be a postgres:// URL, e.g. postgres://truckllm@db:5432/truckllm",
        );
    }
    if !(1..=3660).contains(&history.keep_days) {
        problems.add(
            "storage.history.keep_days",
            "must be between 1 and 3660 days",
        );
    }
    if history.source.trim().is_empty() {
        problems.add("storage.history.source", "must not be empty");
    }
    if config.storage.runtime.rollup_keep_secs == 0 {
        problems.add(
            "storage.history",
            "needs roll-ups: storage.runtime.rollup_keep_secs is 0",
        );
    }
}

fn check_storage(config: &Config, problems: &mut Problems) {
    let runtime = &config.storage.runtime;
    match (runtime.kind, runtime.addr.as_deref()) {
        (RuntimeKind::Http, None) => {
            problems.add("storage.runtime.addr", "the http runtime store needs addr")
        }
        (RuntimeKind::Http, Some(addr)) => problems.url("storage.runtime.addr", addr),
        (RuntimeKind::Redis, Some(addr)) if addr.trim().is_empty() => {
            problems.add("storage.runtime.addr", "must not be empty")
        }
        (RuntimeKind::Postgres, None) => problems.add(
            "storage.runtime.addr",
            "the postgres runtime store needs addr, e.g. postgres://truckllm@db:5432/truckllm",
        ),
        (RuntimeKind::Postgres, Some(addr)) if !is_postgres_url(addr) => problems.add(
            "storage.runtime.addr",
            "must be a postgres:// URL, e.g. postgres://truckllm@db:5432/truckllm",
        ),
        _ => {}
    }
    if runtime.expected_instances == 0 {
        problems.add("storage.runtime.expected_instances", "must be at least 1");
    }
    check_history(config, problems);
    problems.whole(
        "storage.runtime.call_timeout_ms".into(),
        runtime.call_timeout_ms,
        1,
        MINUTE_MS,
        "milliseconds",
    );
    if config.storage.runtime.settle_interval_ms > 1000 {
        problems.add(
            "storage.runtime.settle_interval_ms",
            "must be at most 1000 (usage corrections would land too late for the limits)",
        );
    }
    let runtime = &config.storage.runtime;
    problems.whole(
        "storage.runtime.rollup_keep_secs".into(),
        runtime.rollup_keep_secs,
        0,
        MAX_ROLLUP_KEEP_SECS,
        "seconds (30 days; 0 turns roll-ups off)",
    );
    if runtime.rollup_keep_secs > 0 {
        if runtime.rollup_step_secs == 0 || runtime.rollup_step_secs > runtime.rollup_keep_secs {
            problems.add(
                "storage.runtime.rollup_step_secs",
                "must be at least 1 and at most rollup_keep_secs",
            );
        }
        if runtime.rollup_keep_secs / runtime.rollup_step_secs.max(1) > 10_000 {
            problems.add(
                "storage.runtime.rollup_keep_secs",
                "keeps more than 10,000 steps per series; use a longer rollup_step_secs",
            );
        }
    }
    let store = &config.storage.config;
    match (store.kind, store.addr.as_deref()) {
        (ConfigKind::Http, Some(addr)) => problems.url("storage.config.addr", addr),
        (ConfigKind::Http, None) => {
            problems.add("storage.config.addr", "the http config store needs addr");
        }
        (ConfigKind::Postgres, Some(addr)) if !is_postgres_url(addr) => problems.add(
            "storage.config.addr",
            "the postgres config store needs a postgres:// (or postgresql://) URL",
        ),
        (ConfigKind::Postgres, None) => problems.add(
            "storage.config.addr",
            "the postgres config store needs addr (postgres://user:pass@host:port/db)",
        ),
        _ => {}
    }
    if store.history == 0 {
        problems.add("storage.config.history", "keep at least 1 version");
    }
    for (i, sink) in config.storage.logging.iter().enumerate() {
        check_log_sink(&format!("storage.logging[{i}]"), sink, problems);
    }
}

fn check_log_sink(at: &str, sink: &LogSinkConfig, problems: &mut Problems) {
    let positive = |problems: &mut Problems, field: &str, value: f64| {
        if !(value.is_finite() && value > 0.0) {
            problems.add(format!("{at}.{field}"), "must be a number above 0");
        }
    };
    match sink {
        LogSinkConfig::File(file) => {
            if file.path.trim().is_empty() {
                problems.add(format!("{at}.path"), "must not be empty");
            }
            if file.audit_path.as_deref() == Some(file.path.as_str()) {
                problems.add(
                    format!("{at}.audit_path"),
                    "must differ from path: audit records have their own file",
                );
            }
            positive(problems, "max_size_mb", file.max_size_mb);
            problems.duration(
                format!("{at}.max_age_hours"),
                file.max_age_hours,
                true,
                24.0 * 366.0,
                "above 0 and at most 8784 hours (a year)",
            );
            problems.duration(
                format!("{at}.keep_days"),
                file.keep_days,
                false,
                3660.0,
                "0 (off) to 3660 days (ten years)",
            );
            if file.queue_size == 0 {
                problems.add(format!("{at}.queue_size"), "must be at least 1");
            }
        }
        LogSinkConfig::Webhook(webhook) => {
            problems.url(&format!("{at}.url"), &webhook.url);
            for (field, value) in [
                ("batch_size", webhook.batch_size as u64),
                ("queue_size", webhook.queue_size as u64),
            ] {
                if value == 0 {
                    problems.add(format!("{at}.{field}"), "must be at least 1");
                }
            }
            let ms = "milliseconds";
            let timeout = format!("{at}.timeout_ms");
            problems.whole(timeout, webhook.timeout_ms, 1, 10 * MINUTE_MS, ms);
            let flush = format!("{at}.flush_interval_ms");
            problems.whole(flush, webhook.flush_interval_ms, 0, 60 * MINUTE_MS, ms);
        }
        LogSinkConfig::Pushgateway(push) => {
            problems.url(&format!("{at}.url"), &push.url);
            problems.duration(
                format!("{at}.interval_secs"),
                push.interval_secs,
                true,
                DAY_SECS,
                "above 0 and at most 86400 seconds (a day)",
            );
            if push.job.trim().is_empty() {
                problems.add(format!("{at}.job"), "must not be empty");
            }
            let timeout = format!("{at}.timeout_ms");
            problems.whole(timeout, push.timeout_ms, 1, 10 * MINUTE_MS, "milliseconds");
        }
        LogSinkConfig::Postgres(pg) => {
            if !is_postgres_url(&pg.url) {
                problems.add(format!("{at}.url"), "must be a postgres:// URL");
            }
            for (field, days) in [
                ("keep_days", pg.keep_days),
                ("audit_keep_days", pg.audit_keep_days),
            ] {
                if !(days.is_finite() && (1.0..=3660.0).contains(&days)) {
                    problems.add(format!("{at}.{field}"), "must be 1 to 3660 days");
                }
            }
            if pg.batch_size == 0 || pg.batch_size > 10_000 {
                problems.add(format!("{at}.batch_size"), "must be 1 to 10000");
            }
            let flush = format!("{at}.flush_interval_ms");
            problems.whole(
                flush,
                pg.flush_interval_ms,
                0,
                60 * MINUTE_MS,
                "milliseconds",
            );
            if pg.queue_size == 0 {
                problems.add(format!("{at}.queue_size"), "must be at least 1");
            }
            positive(problems, "queue_max_mb", pg.queue_max_mb);
        }
    }
}

fn check_providers(config: &Config, problems: &mut Problems) {
    problems.unique(
        "provider",
        config
            .llm_providers
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("llm_providers[{i}].id"), p.id.as_str())),
    );
    for (i, provider) in config.llm_providers.iter().enumerate() {
        let path = format!("llm_providers[{i}]");
        if provider.id.contains(':') {
            problems.add(
                format!("{path}.id"),
                "must not contain ':' (models are named provider:model)",
            );
        }
        if provider.id.starts_with('_') {
            problems.add(
                format!("{path}.id"),
                "must not start with '_': such ids are reserved for the gateway's own usage \
                 counters (client limits are counted under `_clients`)",
            );
        }
        check_provider_kind(&path, provider, problems);
        if provider.keys.is_empty() {
            problems.add(format!("{path}.keys"), "a provider needs at least one key");
        }
        problems.unique(
            "key",
            provider
                .keys
                .iter()
                .enumerate()
                .map(|(k, key)| (format!("{path}.keys[{k}].id"), key.id.as_str())),
        );
        for (k, key) in provider.keys.iter().enumerate() {
            check_key_credentials(&format!("{path}.keys[{k}]"), provider.kind, key, problems);
            problems.limits(&format!("{path}.keys[{k}].limits"), key.limits.as_ref());
        }
        problems.limits(&format!("{path}.limits"), provider.limits.as_ref());
        if let Some(pricing) = provider.pricing {
            for (name, v) in [
                ("input_per_1m", pricing.input_per_1m),
                ("output_per_1m", pricing.output_per_1m),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    problems.add(
                        format!("{path}.pricing.{name}"),
                        format!("must be 0 or more, got {v}"),
                    );
                }
            }
        }
    }
}

/// What a provider of each type needs, and what only some types take.
fn check_provider_kind(path: &str, provider: &ProviderConfig, problems: &mut Problems) {
    let kind = provider.kind;
    let default_base = kind.default_base_url(provider.region.as_deref());
    if !provider.base_url.is_empty() || default_base.is_none() {
        problems.url(&format!("{path}.base_url"), &provider.base_url);
    }
    if kind != ProviderKind::Openai && provider.responses == ResponsesMode::Native {
        problems.add(
            format!("{path}.responses"),
            "`native` is for OpenAI-compatible providers; others are translated",
        );
    }
    check_region(path, provider, problems);
    check_azure_options(path, provider, problems);
}

/// Bedrock needs an AWS region; no other type takes one.
fn check_region(path: &str, provider: &ProviderConfig, problems: &mut Problems) {
    match (provider.kind, provider.region.as_deref()) {
        (ProviderKind::Bedrock, None) => {
            problems.add(
                format!("{path}.region"),
                "a bedrock provider needs a region",
            );
        }
        (ProviderKind::Bedrock, Some(region)) if !is_aws_region(region) => {
            problems.add(
                format!("{path}.region"),
                "must be an AWS region name such as us-east-1",
            );
        }
        (ProviderKind::Bedrock, Some(_)) | (_, None) => {}
        (_, Some(_)) => problems.add(
            format!("{path}.region"),
            "only bedrock providers take a region",
        ),
    }
}

/// Azure's `deployments` and `api_version`: well formed, and on Azure providers only.
fn check_azure_options(path: &str, provider: &ProviderConfig, problems: &mut Problems) {
    if provider.kind != ProviderKind::Azure {
        if !provider.deployments.is_empty() {
            problems.add(
                format!("{path}.deployments"),
                "only azure providers take deployments",
            );
        }
        if provider.api_version.is_some() {
            problems.add(
                format!("{path}.api_version"),
                "only azure providers take an api_version",
            );
        }
    }
    if let Some(version) = &provider.api_version
        && (version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        problems.add(
            format!("{path}.api_version"),
            "must be an API version such as 2024-10-21, or v1",
        );
    }
    for (model, deployment) in &provider.deployments {
        if deployment.is_empty()
            || !deployment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            problems.add(
                format!("{path}.deployments.{model}"),
                "must be a deployment name (letters, digits, '-', '_', '.')",
            );
        }
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`: lower-case words and a number, by dashes.
fn is_aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// A key holds an API key (`secret`), or for Bedrock AWS credentials, never both.
fn check_key_credentials(
    path: &str,
    kind: ProviderKind,
    key: &ProviderKeyConfig,
    problems: &mut Problems,
) {
    let aws = [
        ("access_key_id", key.access_key_id.as_ref()),
        ("secret_access_key", key.secret_access_key.as_ref()),
        ("session_token", key.session_token.as_ref()),
    ];
    if kind == ProviderKind::Bedrock {
        if !key.secret.is_empty() {
            problems.add(
                format!("{path}.secret"),
                "bedrock keys hold access_key_id and secret_access_key, not secret",
            );
        }
        for (name, value) in &aws[..2] {
            if value.is_none_or(|v| v.is_empty()) {
                problems.add(
                    format!("{path}.{name}"),
                    "a bedrock key needs it (not empty)",
                );
            }
        }
        if key.session_token.as_ref().is_some_and(|t| t.is_empty()) {
            problems.add(
                format!("{path}.session_token"),
                "must not be empty when given",
            );
        }
    } else {
        if key.secret.is_empty() {
            problems.add(format!("{path}.secret"), "must not be empty");
        }
        for (name, value) in aws {
            if value.is_some() {
                problems.add(
                    format!("{path}.{name}"),
                    "only bedrock keys take AWS credentials",
                );
            }
        }
    }
}

/// Whether `target` (`provider:model`) names a configured provider (and model, if listed).
fn target_problem(config: &Config, opaque: bool, target: &str) -> Option<String> {
    let Some((provider, model)) = target.split_once(':') else {
        return Some("is not of the form provider:model".into());
    };
    let Some(p) = config.llm_providers.iter().find(|p| p.id == provider) else {
        return (!any_opaque_id(config, opaque))
            .then(|| "names a provider that is not configured".into());
    };
    let opaque_models = opaque && p.models.iter().any(|m| is_opaque(m));
    if model != "*"
        && !p.models.is_empty()
        && !opaque_models
        && !p.models.iter().any(|m| m == model)
    {
        return Some("names a model its provider does not list in models".into());
    }
    None
}

/// Whether some provider id is a reference, when checking a config as written: a provider
/// name that matches no id may then match that one.
fn any_opaque_id(config: &Config, opaque: bool) -> bool {
    opaque && config.llm_providers.iter().any(|p| is_opaque(&p.id))
}

fn check_aliases(config: &Config, problems: &mut Problems) {
    for (name, targets) in &config.aliases {
        let path = format!("aliases.{name}");
        if name.contains(':') {
            problems.add(&path, "an alias name must not contain ':'");
        }
        if name.trim_end_matches('*').contains('*') || name == "*" {
            problems.add(
                &path,
                "a pattern alias is a prefix followed by one `*` at its end (`claude-*`)",
            );
        }
        if targets.is_empty() {
            problems.add(&path, "an alias needs at least one provider:model target");
        }
        for (i, target) in targets.iter().enumerate() {
            if let Some(message) = target_problem(config, problems.opaque, target) {
                problems.add(format!("{path}[{i}]"), message);
            }
        }
    }
}

fn check_clients(config: &Config, problems: &mut Problems) {
    problems.unique(
        "client",
        config
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("api_keys[{i}].id"), c.id.as_str())),
    );
    for (i, client) in config.api_keys.iter().enumerate() {
        let path = format!("api_keys[{i}]");
        match (&client.key, &client.key_sha256) {
            (Some(_), Some(_)) | (None, None) => {
                problems.add(&path, "give exactly one of key and key_sha256")
            }
            (Some(key), None) if key.is_empty() => {
                problems.add(format!("{path}.key"), "must not be empty")
            }
            (None, Some(hash))
                if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                problems.add(
                    format!("{path}.key_sha256"),
                    "must be 64 hex digits (a SHA-256)",
                )
            }
            _ => {}
        }
        permissions(
            config,
            problems,
            &path,
            &client.allowed_providers,
            &client.allowed_models,
        );
        problems.limits(&format!("{path}.limits"), client.limits.as_ref());
    }
}

/// `allowed_providers` and `allowed_models` of a client key or team at `path`.
fn permissions(
    config: &Config,
    problems: &mut Problems,
    path: &str,
    providers: &[String],
    models: &[String],
) {
    for (j, provider) in providers.iter().enumerate() {
        if provider != "*"
            && !config.llm_providers.iter().any(|p| &p.id == provider)
            && !any_opaque_id(config, problems.opaque)
        {
            problems.add(
                format!("{path}.allowed_providers[{j}]"),
                "names a provider that is not configured",
            );
        }
    }
    for (j, model) in models.iter().enumerate() {
        let known_alias = config.aliases.contains_key(model);
        if model != "*"
            && !known_alias
            && let Some(message) = target_problem(config, problems.opaque, model)
        {
            problems.add(format!("{path}.allowed_models[{j}]"), message);
        }
    }
}

fn check_policy(config: &Config, problems: &mut Problems) {
    let policy = &config.policy;
    if policy.retry.max_attempts == 0 {
        problems.add("policy.retry.max_attempts", "must be at least 1");
    }
    problems.duration(
        "policy.retry.deadline_secs".into(),
        policy.retry.deadline_secs,
        true,
        DAY_SECS,
        "above 0 and at most 86400 seconds (a day)",
    );
    if policy.cooldown.failures == 0 {
        problems.add("policy.cooldown.failures", "must be at least 1");
    }
    problems.duration(
        "policy.cooldown.seconds".into(),
        policy.cooldown.seconds,
        false,
        DAY_SECS,
        "0 to 86400 seconds (a day)",
    );
    if policy.default_max_tokens == 0 {
        problems.add("policy.default_max_tokens", "must be at least 1");
    }
    problems.duration(
        "policy.stream_drain_secs".into(),
        policy.stream_drain_secs,
        false,
        3600.0,
        "0 to 3600 seconds (an hour)",
    );
    let year = 365 * 24 * 3600;
    if !(1..=year).contains(&policy.responses_ttl_secs) {
        problems.add(
            "policy.responses_ttl_secs",
            "must be from 1 to 31536000 seconds (a year)",
        );
    }
}

/// Whether `addr` names a PostgreSQL database.
fn is_postgres_url(addr: &str) -> bool {
    addr.starts_with("postgres://") || addr.starts_with("postgresql://")
}
