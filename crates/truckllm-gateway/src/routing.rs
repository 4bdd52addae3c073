//! From a model name to the upstream targets that may serve it, for one client.
//!
//! Names are, in this order of precedence: an alias (one or more `provider:model` targets, in
//! order), `provider:model`, a bare model name listed by some provider, or a name matching a
//! pattern alias (`"claude-sonnet-*": [...]`, a prefix ending in `*`; the longest matching
//! prefix wins). A target model `*` stands for the name asked for, without a trailing
//! `[...]` variant tag such as Claude Code's `[1m]` (`"claude-*": ["anthropic:*"]`). The same resolver that routes also applies the
//! client's allowed providers and models, so no spelling of a name reaches a target the
//! client may not use.
//!
//! The tables are built when a config version is applied. Each provider and key carries its
//! runtime state ([`ProviderState`], [`KeyState`]: health, metrics, rotation), which a new
//! version takes over from the last one for every provider and key that did not change, so a
//! reload does not forget cooldowns or latency.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::atomic::AtomicUsize;

use truckllm_config::Config;
use truckllm_config::schema::{Limits, Pricing, ProviderConfig};
use truckllm_store::ProviderKey;

use crate::clients::Client;
use crate::error::ApiError;
use crate::health::KeyHealth;
use crate::metrics::{KeyMetrics, ProviderMetrics};
use crate::providers::{KeySecret, Protocol};

/// One upstream provider, ready to call.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    /// Its wire protocol, URLs parsed.
    pub protocol: Box<dyn Protocol>,
    pub keys: Vec<Key>,
    pub pricing: Pricing,
    pub models: Vec<String>,
    pub state: Arc<ProviderState>,
    /// What the state was made for: the config of the provider, keys aside.
    fingerprint: String,
}

/// A provider's runtime state, carried across config versions while the provider is unchanged.
#[derive(Debug)]
pub struct ProviderState {
    pub metrics: ProviderMetrics,
    /// Where round-robin ordering starts next.
    pub rotation: AtomicUsize,
}

/// One provider API key.
#[derive(Debug)]
pub struct Key {
    pub id: String,
    pub secret: KeySecret,
    /// The provider's limits, overridden field by field by the key's own.
    pub limits: Limits,
    /// Its name in the runtime store.
    pub store_key: ProviderKey,
    pub state: Arc<KeyState>,
}

/// A key's runtime state, carried across config versions while the key and its provider are
/// unchanged.
#[derive(Debug)]
pub struct KeyState {
    pub health: KeyHealth,
    pub metrics: KeyMetrics,
}

/// Where a request may go: a provider (by index) and the model name upstream knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: usize,
    pub model: String,
}

/// How a model name is counted in the usage history ([`Routes::counted_as`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountedAs {
    /// Under this name, which the config holds.
    Named(String),
    /// Under the name asked for, while this instance counts few enough such names.
    Open,
}

/// Providers and aliases of one config version.
#[derive(Debug)]
pub struct Routes {
    pub providers: Vec<Provider>,
    aliases: BTreeMap<String, Vec<(usize, String)>>,
    /// Pattern aliases by prefix (the name without its `*`), longest first.
    patterns: Vec<(String, Vec<(usize, String)>)>,
}

impl Routes {
    /// Builds the tables from a resolved, validated config, taking over the state of every
    /// provider and key that `previous` has unchanged.
    pub fn from_config(config: &Config, previous: Option<&Routes>) -> Result<Arc<Self>, String> {
        let mut providers = Vec::with_capacity(config.llm_providers.len());
        for p in &config.llm_providers {
            let fingerprint = provider_fingerprint(p);
            let before = previous
                .and_then(|r| r.providers.iter().find(|old| old.id == p.id))
                .filter(|old| old.fingerprint == fingerprint);
            let base = p.limits.unwrap_or_default();
            let keys = p
                .keys
                .iter()
                .map(|k| {
                    let own = k.limits.unwrap_or_default();
                    let secret = KeySecret::from_config(k);
                    let kept = before
                        .and_then(|old| old.keys.iter().find(|o| o.id == k.id))
                        .filter(|old| old.secret == secret)
                        .map(|old| Arc::clone(&old.state));
                    Ok(Key {
                        id: k.id.clone(),
                        secret,
                        limits: Limits {
                            req_per_min: own.req_per_min.or(base.req_per_min),
                            tokens_per_min: own.tokens_per_min.or(base.tokens_per_min),
                        },
                        store_key: ProviderKey::new(p.id.clone(), k.id.clone())
                            .map_err(|e| e.to_string())?,
                        state: kept.unwrap_or_else(|| {
                            Arc::new(KeyState {
                                health: KeyHealth::default(),
                                metrics: KeyMetrics::register(&p.id, &k.id),
                            })
                        }),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            providers.push(Provider {
                id: p.id.clone(),
                protocol: crate::providers::protocol_for(p)?,
                keys,
                pricing: p.pricing.unwrap_or_default(),
                models: p.models.clone(),
                state: before.map_or_else(
                    || {
                        Arc::new(ProviderState {
                            metrics: ProviderMetrics::register(&p.id),
                            rotation: AtomicUsize::new(0),
                        })
                    },
                    |old| Arc::clone(&old.state),
                ),
                fingerprint,
            });
        }
        let index = |id: &str| providers.iter().position(|p| p.id == id);
        let mut aliases: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (name, targets) in &config.aliases {
            let resolved = targets
                .iter()
                .filter_map(|t| t.split_once(':'))
                .filter_map(|(p, m)| index(p).map(|i| (i, m.to_owned())))
                .collect();
            aliases.insert(name.clone(), resolved);
        }
        let mut patterns: Vec<(String, Vec<(usize, String)>)> = aliases
            .iter()
            .filter_map(|(name, targets)| {
                name.strip_suffix('*')
                    .map(|prefix| (prefix.to_owned(), targets.clone()))
            })
            .collect();
        aliases.retain(|name, _| !name.ends_with('*'));
        patterns.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(Arc::new(Self {
            providers,
            aliases,
            patterns,
        }))
    }

    /// The targets for `model` that `client` may use, in the order to try them.
    pub fn resolve(&self, model: &str, client: &Client) -> Result<Vec<Target>, ApiError> {
        let candidates = self.candidates(model)?;
        let allowed: Vec<Target> = candidates
            .into_iter()
            .filter(|t| {
                let provider = &self.providers[t.provider].id;
                client.may_use_provider(provider) && client.may_use_model(provider, &t.model, model)
            })
            .collect();
        if allowed.is_empty() {
            return Err(ApiError::forbidden(format!(
                "client `{}` may not use the model `{model}`",
                client.id
            )));
        }
        Ok(allowed)
    }

    fn candidates(&self, model: &str) -> Result<Vec<Target>, ApiError> {
        if let Some(targets) = self.aliases.get(model) {
            return Ok(alias_targets(targets, model));
        }
        if let Some((provider_id, upstream_model)) = model.split_once(':')
            && let Some(provider) = self.providers.iter().position(|p| p.id == provider_id)
        {
            let p = &self.providers[provider];
            if upstream_model.is_empty()
                || (!p.models.is_empty() && !p.models.iter().any(|m| m == upstream_model))
            {
                return Err(ApiError::model_not_found(model));
            }
            return Ok(vec![Target {
                provider,
                model: upstream_model.to_owned(),
            }]);
        }
        let listed: Vec<Target> = self
            .providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.models.iter().any(|m| m == model))
            .map(|(provider, _)| Target {
                provider,
                model: model.to_owned(),
            })
            .collect();
        if !listed.is_empty() {
            return Ok(listed);
        }
        self.patterns
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .map(|(_, targets)| alias_targets(targets, model))
            .ok_or_else(|| ApiError::model_not_found(model))
    }

    /// How a request for `model` is counted in the usage history: by a name the config holds
    /// (an alias, a listed model, `provider:model` of a provider that lists its models, or a
    /// pattern alias whose targets are all fixed: counted under the pattern, `gpt-*`), or
    /// [`CountedAs::Open`] for a name the client chose (a passthrough provider, a pattern
    /// alias with a `*` target), of which there may be any number.
    pub fn counted_as(&self, model: &str) -> CountedAs {
        if self.aliases.contains_key(model) {
            return CountedAs::Named(model.to_owned());
        }
        if let Some((provider_id, _)) = model.split_once(':')
            && let Some(provider) = self.providers.iter().find(|p| p.id == provider_id)
        {
            return if provider.models.is_empty() {
                CountedAs::Open
            } else {
                CountedAs::Named(model.to_owned())
            };
        }
        if self
            .providers
            .iter()
            .any(|p| p.models.iter().any(|m| m == model))
        {
            return CountedAs::Named(model.to_owned());
        }
        match self
            .patterns
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
        {
            Some((prefix, targets)) if targets.iter().all(|(_, m)| m != "*") => {
                CountedAs::Named(format!("{prefix}*"))
            }
            _ => CountedAs::Open,
        }
    }

    /// Every model name a client may ask for: `provider:model` for listed models, and aliases.
    pub fn model_names(&self, client: &Client) -> Vec<String> {
        let mut names: Vec<String> = self
            .providers
            .iter()
            .filter(|p| client.may_use_provider(&p.id))
            .flat_map(|p| {
                p.models
                    .iter()
                    .filter(|m| client.may_use_model(&p.id, m, &format!("{}:{m}", p.id)))
                    .map(|m| format!("{}:{m}", p.id))
                    .collect::<Vec<_>>()
            })
            .collect();
        names.extend(
            self.aliases
                .keys()
                .filter(|a| self.resolve(a, client).is_ok())
                .cloned(),
        );
        names
    }
}

/// An alias's targets for a request that asked for `requested`; a target model `*` is the
/// requested name without a trailing `[...]` variant tag.
fn alias_targets(targets: &[(usize, String)], requested: &str) -> Vec<Target> {
    targets
        .iter()
        .map(|(provider, model)| Target {
            provider: *provider,
            model: if model == "*" {
                strip_variant(requested).to_owned()
            } else {
                model.clone()
            },
        })
        .collect()
}

/// `claude-opus-4-8[1m]` → `claude-opus-4-8`.
fn strip_variant(name: &str) -> &str {
    match name.rfind('[') {
        Some(open) if name.ends_with(']') => &name[..open],
        _ => name,
    }
}

/// What must stay the same for a provider's runtime state to be kept: its kind and where it is.
fn provider_fingerprint(p: &ProviderConfig) -> String {
    format!(
        "{:?} {} {:?}",
        p.kind,
        p.base_url.trim_end_matches('/'),
        p.region
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(aliases: &str) -> (Arc<Routes>, crate::clients::Clients) {
        let yaml = format!(
            "llm_providers:\n  - id: anthropic\n    type: anthropic\n    base_url: http://a/v1\n    keys: [{{id: k, secret: s}}]\n  - id: openai\n    base_url: http://o/v1\n    keys: [{{id: k, secret: s}}]\n    models: [gpt-4o, claude-sonnet-listed]\naliases:\n{aliases}"
        );
        let env = std::collections::HashMap::new();
        let loaded = truckllm_config::load_str(&yaml, &env, None).expect("config");
        (
            Routes::from_config(&loaded.resolved, None).expect("routes"),
            crate::clients::Clients::from_config(&loaded.resolved),
        )
    }

    fn resolved(
        routes: &Routes,
        clients: &crate::clients::Clients,
        model: &str,
    ) -> Vec<(String, String)> {
        let client = clients.authenticate(None, 0).expect("open mode");
        routes
            .resolve(model, client)
            .map(|targets| {
                targets
                    .into_iter()
                    .map(|t| (routes.providers[t.provider].id.clone(), t.model))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn pattern_aliases_match_by_the_longest_prefix_after_exact_names() {
        let (routes, clients) = routes(
            "  \"claude-*\": [\"anthropic:*\"]\n  \"claude-sonnet-*\": [\"anthropic:claude-sonnet-4-5\", \"openai:gpt-4o\"]\n  fast: [\"openai:gpt-4o\"]\n",
        );
        let pair = |p: &str, m: &str| (p.to_owned(), m.to_owned());
        assert_eq!(
            resolved(&routes, &clients, "claude-opus-4-8[1m]"),
            [pair("anthropic", "claude-opus-4-8")],
            "`*` passes the name, without its variant tag"
        );
        assert_eq!(
            resolved(&routes, &clients, "claude-sonnet-4-6"),
            [
                pair("anthropic", "claude-sonnet-4-5"),
                pair("openai", "gpt-4o")
            ],
            "the most specific pattern wins"
        );
        assert_eq!(
            resolved(&routes, &clients, "claude-sonnet-listed"),
            [pair("openai", "claude-sonnet-listed")],
            "a listed model comes before patterns"
        );
        assert_eq!(
            resolved(&routes, &clients, "fast"),
            [pair("openai", "gpt-4o")]
        );
        assert!(
            resolved(&routes, &clients, "gpt-5").is_empty(),
            "no match is not found"
        );
        assert!(
            !routes
                .model_names(clients.authenticate(None, 0).expect("open"))
                .iter()
                .any(|n| n.contains('*'))
        );
    }

    #[test]
    fn usage_counts_names_the_config_holds_and_calls_the_rest_open() {
        let (routes, _) = routes(
            "  \"claude-*\": [\"anthropic:*\"]\n  \"claude-sonnet-*\": [\"anthropic:claude-sonnet-4-5\", \"openai:gpt-4o\"]\n  fast: [\"openai:gpt-4o\"]\n",
        );
        let named = |n: &str| CountedAs::Named(n.to_owned());
        for (asked, counted) in [
            ("fast", named("fast")),
            ("gpt-4o", named("gpt-4o")),
            ("openai:gpt-4o", named("openai:gpt-4o")),
            ("claude-sonnet-4-6", named("claude-sonnet-*")),
            ("claude-opus-4-8[1m]", CountedAs::Open),
            ("anthropic:anything", CountedAs::Open),
        ] {
            assert_eq!(routes.counted_as(asked), counted, "{asked}");
        }
    }

    #[test]
    fn a_new_config_version_keeps_the_state_of_unchanged_keys_only() {
        let env = std::collections::HashMap::new();
        let load = |yaml: &str| {
            truckllm_config::load_str(yaml, &env, None)
                .expect("config")
                .resolved
        };
        let yaml = "llm_providers:\n  - id: p\n    base_url: http://a/v1\n    keys:\n      - {id: k1, secret: s1}\n      - {id: k2, secret: s2}\n";
        let first = Routes::from_config(&load(yaml), None).expect("routes");
        first.providers[0].keys[0]
            .state
            .health
            .cool_down_until(u64::MAX);
        let same = Routes::from_config(&load(yaml), Some(&first)).expect("routes");
        assert!(Arc::ptr_eq(
            &first.providers[0].state,
            &same.providers[0].state
        ));
        assert!(Arc::ptr_eq(
            &first.providers[0].keys[0].state,
            &same.providers[0].keys[0].state
        ));
        assert!(
            same.providers[0].keys[0].state.health.cooling_down(0),
            "the cooldown survives"
        );
        let rotated =
            Routes::from_config(&load(&yaml.replace("s1", "s1-new")), Some(&same)).expect("routes");
        assert!(!Arc::ptr_eq(
            &same.providers[0].keys[0].state,
            &rotated.providers[0].keys[0].state
        ));
        assert!(
            !rotated.providers[0].keys[0].state.health.cooling_down(0),
            "a new secret starts afresh"
        );
        assert!(Arc::ptr_eq(
            &same.providers[0].keys[1].state,
            &rotated.providers[0].keys[1].state
        ));
        let moved =
            Routes::from_config(&load(&yaml.replace("http://a", "http://b")), Some(&rotated))
                .expect("routes");
        assert!(!Arc::ptr_eq(
            &rotated.providers[0].keys[1].state,
            &moved.providers[0].keys[1].state
        ));
    }
}
