//! [`HttpConfigStore`]: the config store over the storage server's `GET/PUT /config`, behind
//! the same [`ConfigStore`] trait as the file store. Versions travel as `ETag`; a save sends
//! `If-Match` with the version it edits, and a stale one is a [`ConfigError::Conflict`].
//! History, backup and restore are not part of the protocol: they are run where the file is
//! (`truckllm config history|backup|restore` on the server's host).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::StatusCode;
use truckllm_config::store::Result;
use truckllm_config::store::file::sha256_hex;
use truckllm_config::{Config, ConfigError, ConfigStore, SaveMeta, VersionInfo, Versioned};

/// A config store that is a storage server's `/config`.
#[derive(Clone)]
pub struct HttpConfigStore {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl std::fmt::Debug for HttpConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfigStore")
            .field("url", &truckllm_store::redact_url(&self.base))
            .finish_non_exhaustive()
    }
}

impl HttpConfigStore {
    pub fn new(url: &str, token: Option<String>) -> std::result::Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ConfigError::Other(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            http,
            token,
        })
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}/config", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn unsupported(what: &str) -> ConfigError {
        ConfigError::Other(format!(
            "{what} is not part of the HTTP storage protocol; run `truckllm config {what}` where the config file is"
        ))
    }
}

fn transport(e: reqwest::Error) -> ConfigError {
    ConfigError::Other(format!("config server unreachable: {}", e.without_url()))
}

fn version_of(response: &reqwest::Response) -> Result<u64> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse().ok())
        .ok_or_else(|| ConfigError::Other("config server sent no version ETag".into()))
}

async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<crate::protocol::ErrorBody>(&text)
        .map(|b| b.error.message)
        .unwrap_or(text);
    format!("config server answered {status}: {message}")
}

#[async_trait]
impl ConfigStore for HttpConfigStore {
    async fn load(&self) -> Result<Versioned> {
        let response = self
            .request(reqwest::Method::GET)
            .send()
            .await
            .map_err(transport)?;
        if !response.status().is_success() {
            return Err(ConfigError::Other(error_message(response).await));
        }
        let version = version_of(&response)?;
        let config: Config = response.json().await.map_err(transport)?;
        let text = serde_saphyr::to_string(&config)
            .map_err(|e| ConfigError::Other(format!("cannot render config: {e}")))?;
        Ok(Versioned {
            info: VersionInfo {
                version,
                time_ms: 0,
                author: String::new(),
                comment: String::new(),
                sha256: sha256_hex(&text),
            },
            text,
        })
    }

    async fn save_text(&self, text: &str, expected: u64, _meta: SaveMeta) -> Result<u64> {
        let config = truckllm_config::parse(text)?;
        let response = self
            .request(reqwest::Method::PUT)
            .header(reqwest::header::IF_MATCH, format!("\"{expected}\""))
            .json(&config)
            .send()
            .await
            .map_err(transport)?;
        match response.status() {
            s if s.is_success() => version_of(&response),
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => {
                let current = self.load().await.map(|v| v.info.version).unwrap_or(0);
                Err(ConfigError::Conflict { expected, current })
            }
            _ => Err(ConfigError::Other(error_message(response).await)),
        }
    }

    async fn versions(&self) -> Result<Vec<VersionInfo>> {
        Err(Self::unsupported("history"))
    }

    async fn get(&self, _version: u64) -> Result<Versioned> {
        Err(Self::unsupported("diff"))
    }

    async fn backup(&self, _path: &Path) -> Result<()> {
        Err(Self::unsupported("backup"))
    }

    async fn restore(&self, _path: &Path) -> Result<u64> {
        Err(Self::unsupported("restore"))
    }

    fn watched_path(&self) -> Option<PathBuf> {
        None
    }
}

/// Opens the config store `target` names: a `postgres://` (or `postgresql://`) database, a
/// storage server's `http(s)://` URL (with `token`), or else a YAML file path. The one way
/// every command names a config store (`--config-store`).
pub async fn open_config_store(
    target: &str,
    options: truckllm_config::FileStoreOptions,
    token: Option<String>,
) -> std::result::Result<std::sync::Arc<dyn ConfigStore>, ConfigError> {
    use std::sync::Arc;
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = truckllm_config::PostgresConfigStore::connect(target, options).await?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(ConfigError::Other(
            "this build has no PostgreSQL config store (cargo feature `postgres`)".into(),
        ));
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(Arc::new(HttpConfigStore::new(target, token)?));
    }
    Ok(Arc::new(truckllm_config::FileConfigStore::new(
        target, options,
    )))
}
