//! From a model name to the upstream targets that may serve it, for one client.
//!
//! Names are `provider:model`, an alias (one or more `provider:model` targets, in order), or a
//! bare model name listed by some provider. The same resolver that routes also applies the
//! client's allowed providers and models, so no spelling of a name reaches a target the
//! client may not use.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Uri;
use truckllm_config::Config;
use truckllm_config::Secret;
use truckllm_config::schema::{Limits, Pricing};
use truckllm_store::ProviderKey;

use crate::clients::Client;
use crate::error::ApiError;

/// One upstream provider, ready to call.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    /// Base URL with the version path and no trailing slash.
    pub base_url: String,
    /// `{base_url}/chat/completions` and `{base_url}/embeddings`, parsed once.
    pub chat_url: Uri,
    pub embeddings_url: Uri,
    pub keys: Vec<Key>,
    pub pricing: Pricing,
    pub models: Vec<String>,
}

/// One provider API key.
#[derive(Debug)]
pub struct Key {
    pub id: String,
    pub secret: Secret,
    /// The provider's limits, overridden field by field by the key's own.
    pub limits: Limits,
    /// Its name in the runtime store.
    pub store_key: ProviderKey,
}

/// Where a request may go: a provider (by index) and the model name upstream knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: usize,
    pub model: String,
}

/// Providers and aliases of one config version.
#[derive(Debug)]
pub struct Routes {
    pub providers: Vec<Provider>,
    aliases: BTreeMap<String, Vec<(usize, String)>>,
}

impl Routes {
    /// Builds the tables from a resolved, validated config.
    pub fn from_config(config: &Config) -> Result<Arc<Self>, String> {
        let mut providers = Vec::with_capacity(config.llm_providers.len());
        for p in &config.llm_providers {
            let base = p.limits.unwrap_or_default();
            let keys = p
                .keys
                .iter()
                .map(|k| {
                    let own = k.limits.unwrap_or_default();
                    Ok(Key {
                        id: k.id.clone(),
                        secret: k.secret.clone(),
                        limits: Limits {
                            req_per_min: own.req_per_min.or(base.req_per_min),
                            tokens_per_min: own.tokens_per_min.or(base.tokens_per_min),
                        },
                        store_key: ProviderKey::new(p.id.clone(), k.id.clone())
                            .map_err(|e| e.to_string())?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let base_url = p.base_url.trim_end_matches('/').to_owned();
            let url = |path: &str| {
                upstream_uri(&format!("{base_url}{path}"))
                    .map_err(|e| format!("provider {}: bad base_url {base_url:?}: {e}", p.id))
            };
            providers.push(Provider {
                id: p.id.clone(),
                chat_url: url("/chat/completions")?,
                embeddings_url: url("/embeddings")?,
                base_url,
                keys,
                pricing: p.pricing.unwrap_or_default(),
                models: p.models.clone(),
            });
        }
        let index = |id: &str| providers.iter().position(|p| p.id == id);
        let mut aliases = BTreeMap::new();
        for (name, targets) in &config.aliases {
            let resolved = targets
                .iter()
                .filter_map(|t| t.split_once(':'))
                .filter_map(|(p, m)| index(p).map(|i| (i, m.to_owned())))
                .collect();
            aliases.insert(name.clone(), resolved);
        }
        Ok(Arc::new(Self { providers, aliases }))
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
            return Ok(targets
                .iter()
                .map(|(provider, model)| Target {
                    provider: *provider,
                    model: model.clone(),
                })
                .collect());
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
        if listed.is_empty() {
            return Err(ApiError::model_not_found(model));
        }
        Ok(listed)
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

/// An endpoint URL the upstream client can call: absolute, `http` or `https`.
fn upstream_uri(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err("expected an absolute http:// or https:// URL".into()),
    }
}
