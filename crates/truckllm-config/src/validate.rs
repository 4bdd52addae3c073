//! Checks that need the whole (resolved) config: unique ids, well-formed URLs and addresses,
//! positive limits, and references to providers and aliases that exist. Each problem is a field
//! path and a message; [`crate::load`] adds the line and column.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::schema::{Config, ConfigKind, Limits, LogSinkConfig, RuntimeKind};

/// Every problem found, as `(field path, message)`; empty when the config holds together.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    let mut problems = Problems::default();
    check_server(config, &mut problems);
    check_storage(config, &mut problems);
    check_providers(config, &mut problems);
    check_aliases(config, &mut problems);
    check_clients(config, &mut problems);
    check_policy(config, &mut problems);
    problems.0
}

#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
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
                self.add(path, format!("duplicate {what} id {id:?}"));
            }
        }
    }
}

/// An absolute `http://` or `https://` URL with a host and no whitespace.
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "{url:?} is not a valid URL: it needs a host and no spaces"
        ));
    }
    Ok(())
}

fn check_server(config: &Config, problems: &mut Problems) {
    if config.server.listen.parse::<SocketAddr>().is_err() {
        problems.add(
            "server.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:2906",
                config.server.listen
            ),
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
        _ => {}
    }
    if runtime.expected_instances == 0 {
        problems.add("storage.runtime.expected_instances", "must be at least 1");
    }
    if config.storage.runtime.call_timeout_ms == 0 {
        problems.add("storage.runtime.call_timeout_ms", "must be at least 1");
    }
    if config.storage.runtime.settle_interval_ms > 1000 {
        problems.add(
            "storage.runtime.settle_interval_ms",
            "must be at most 1000 (usage corrections would land too late for the limits)",
        );
    }
    let runtime = &config.storage.runtime;
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
    if store.kind == ConfigKind::Http {
        match store.addr.as_deref() {
            Some(addr) => problems.url("storage.config.addr", addr),
            None => problems.add("storage.config.addr", "the http config store needs addr"),
        }
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
            positive(problems, "max_age_hours", file.max_age_hours);
            if !(file.keep_days.is_finite() && file.keep_days >= 0.0) {
                problems.add(format!("{at}.keep_days"), "must be 0 (off) or more");
            }
            if file.queue_size == 0 {
                problems.add(format!("{at}.queue_size"), "must be at least 1");
            }
        }
        LogSinkConfig::Webhook(webhook) => {
            problems.url(&format!("{at}.url"), &webhook.url);
            for (field, value) in [
                ("batch_size", webhook.batch_size as u64),
                ("queue_size", webhook.queue_size as u64),
                ("timeout_ms", webhook.timeout_ms),
            ] {
                if value == 0 {
                    problems.add(format!("{at}.{field}"), "must be at least 1");
                }
            }
        }
        LogSinkConfig::Pushgateway(push) => {
            problems.url(&format!("{at}.url"), &push.url);
            positive(problems, "interval_secs", push.interval_secs);
            if push.job.trim().is_empty() {
                problems.add(format!("{at}.job"), "must not be empty");
            }
            if push.timeout_ms == 0 {
                problems.add(format!("{at}.timeout_ms"), "must be at least 1");
            }
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
        problems.url(&format!("{path}.base_url"), &provider.base_url);
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
            if key.secret.is_empty() {
                problems.add(format!("{path}.keys[{k}].secret"), "must not be empty");
            }
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

/// Whether `target` (`provider:model`) names a configured provider (and model, if listed).
fn target_problem(config: &Config, target: &str) -> Option<String> {
    let Some((provider, model)) = target.split_once(':') else {
        return Some(format!("{target:?} is not of the form provider:model"));
    };
    let Some(p) = config.llm_providers.iter().find(|p| p.id == provider) else {
        return Some(format!("unknown provider {provider:?} in {target:?}"));
    };
    if model != "*" && !p.models.is_empty() && !p.models.iter().any(|m| m == model) {
        return Some(format!(
            "provider {provider:?} does not list model {model:?}"
        ));
    }
    None
}

fn check_aliases(config: &Config, problems: &mut Problems) {
    for (name, targets) in &config.aliases {
        let path = format!("aliases.{name}");
        if name.contains(':') {
            problems.add(&path, "an alias name must not contain ':'");
        }
        if targets.is_empty() {
            problems.add(&path, "an alias needs at least one provider:model target");
        }
        for (i, target) in targets.iter().enumerate() {
            if let Some(message) = target_problem(config, target) {
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
        for (j, provider) in client.allowed_providers.iter().enumerate() {
            if provider != "*" && !config.llm_providers.iter().any(|p| &p.id == provider) {
                problems.add(
                    format!("{path}.allowed_providers[{j}]"),
                    format!("unknown provider {provider:?}"),
                );
            }
        }
        for (j, model) in client.allowed_models.iter().enumerate() {
            let known_alias = config.aliases.contains_key(model);
            if model != "*"
                && !known_alias
                && let Some(message) = target_problem(config, model)
            {
                problems.add(format!("{path}.allowed_models[{j}]"), message);
            }
        }
        problems.limits(&format!("{path}.limits"), client.limits.as_ref());
    }
}

fn check_policy(config: &Config, problems: &mut Problems) {
    let policy = &config.policy;
    if policy.retry.max_attempts == 0 {
        problems.add("policy.retry.max_attempts", "must be at least 1");
    }
    if !(policy.retry.deadline_secs.is_finite() && policy.retry.deadline_secs > 0.0) {
        problems.add("policy.retry.deadline_secs", "must be a number above 0");
    }
    if policy.cooldown.failures == 0 {
        problems.add("policy.cooldown.failures", "must be at least 1");
    }
    if !(policy.cooldown.seconds.is_finite() && policy.cooldown.seconds >= 0.0) {
        problems.add("policy.cooldown.seconds", "must be 0 or more");
    }
    if policy.default_max_tokens == 0 {
        problems.add("policy.default_max_tokens", "must be at least 1");
    }
}
