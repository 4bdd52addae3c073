//! TruckLLM's configuration: the schema of the whole gateway, how a file becomes a checked
//! config, and how configs are stored, versioned and reloaded.
//!
//! # Layout
//!
//! - [`schema`]: the serde types, one per YAML section; the JSON Schema is generated from them.
//! - [`governance`]: admin identities and roles, teams, budgets, client key lifecycle.
//! - [`load`]: YAML text to a checked [`LoadedConfig`]: parse (path, line, column,
//!   did-you-mean), [`interpolate`] (`${VAR}`, `${VAR:-default}`, `enc:v1:`), [`validate`].
//! - [`secret`]: the redacting [`Secret`] type and AES-256-GCM encryption at rest.
//! - [`spans`]: field path to line and column, for errors found after parsing.
//! - [`store`]: the [`ConfigStore`] trait (versions, conflicts, backup, rollback) and the
//!   YAML file store.
//! - [`reload`]: the running config and its triggers (file change, SIGHUP, call).
//! - [`error`]: the one error type, whose problems name a field path and a line.

pub mod error;
pub mod governance;
pub mod interpolate;
pub mod load;
pub mod metrics;
pub mod reload;
pub mod schema;
pub mod secret;
pub mod spans;
pub mod store;
pub mod validate;

pub use error::{ConfigError, Position, Problem};
pub use interpolate::{Env, ProcessEnv, resolve};
pub use load::{LoadedConfig, load_str, parse};
pub use reload::{LiveConfig, ReloadEvent, ReloadOutcome, Running};
pub use schema::Config;
pub use secret::{MasterKey, Secret};
pub use store::file::{FileConfigStore, FileStoreOptions};
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresConfigStore;
pub use store::{ConfigStore, SaveMeta, VersionInfo, Versioned, diff};

/// The JSON Schema of the config file, for editor completion (`configs/config.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}
