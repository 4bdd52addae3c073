//! The admin API for client keys and teams (`/admin/keys…`, `/admin/teams…`), and the usage
//! history (`/admin/usage/history`, a read of PostgreSQL, not config).
//!
//! Keys and teams are config. Every change is made the same way ([`change`]): take the config
//! version running now (as written, `${ENV}` references kept), apply the edit, validate the
//! whole result, save it through the config store as a new version (author: the admin
//! identity; comment: the action) naming the version it edits, then apply it here at once.
//! Other instances sharing the config store pick the version up through their config watch.
//! A save that loses a race with another writer is redone on the newer version; a bad edit is a
//! 400 naming the field and saves nothing. Every call, read or write, leaves an audit record,
//! but for a dashboard session's repeated reads ([`crate::ui::read_audits`]).
//!
//! The dashboard (`/ui`) reads and changes everything through these routes; the ones it adds
//! are the usage summary ([`usage`]), provider keys' live state ([`providers`]), the request
//! log ([`requests`]), config versions, diff and rollback ([`config`]) and the runtime store's
//! state ([`storage`]).

pub mod budget_status;
pub mod config;
pub mod history;
pub mod keys;
pub mod providers;
pub mod requests;
pub mod storage;
pub mod teams;
pub mod usage;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use truckllm_config::schema::Config;
use truckllm_config::{ConfigError, SaveMeta};
use truckllm_logging::{AuditCategory, AuditRecord};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::Gateway;

/// Saves lost to concurrent writers before giving up with a 409.
const SAVE_ATTEMPTS: usize = 3;

/// What a config edit did: the answer's body, and the entry it changed (`api_keys[3]`), so
/// that validation problems inside it are named relative to it.
pub struct Edited {
    pub body: Value,
    pub entry: String,
}

/// A successful answer: its status, its body, and the (old, new) config versions of a change.
type Answered = (StatusCode, Value, Option<(u64, u64)>);

/// One admin call: who made it, what it is, what it is about; audited once answered.
pub struct Call<'a> {
    pub gw: &'a Gateway,
    pub admin: &'a AdminCaller,
    pub action: &'static str,
    pub target: String,
}

impl Call<'_> {
    /// Audits and answers a read; a dashboard session's repeated successful reads are
    /// audited at most once per interval ([`crate::ui::read_audits`]).
    pub fn read(&self, result: Result<Value, ApiError>) -> Response {
        match (result, self.admin.session) {
            (Ok(body), Some(session))
                if !self.gw.ui.read_audits.due(
                    session,
                    self.action,
                    &self.target,
                    self.gw.now_ms(),
                ) =>
            {
                (StatusCode::OK, axum::Json(body)).into_response()
            }
            (result, _) => self.answer(result.map(|body| (StatusCode::OK, body, None))),
        }
    }

    /// Audits and answers a call refused before anything was looked at (a bad body).
    pub fn refuse(&self, error: ApiError) -> Response {
        self.answer(Err(error))
    }

    /// Applies `edit` to the running config, saves and applies the result, audits, answers
    /// `status` with the edit's body (and `config_version`).
    pub async fn write(
        &self,
        status: StatusCode,
        edit: impl Fn(&mut Config, &Config) -> Result<Edited, ApiError>,
    ) -> Response {
        let result = change(self.gw, self.admin, self.action, &self.target, edit).await;
        self.answer(result.map(|(body, versions)| (status, body, Some(versions))))
    }

    /// Audits and answers a change made other than by editing the config (a rollback):
    /// its status, body, (old, new) running versions and the audit record's message.
    pub fn changed(
        &self,
        result: Result<(StatusCode, Value, (u64, u64), String), ApiError>,
    ) -> Response {
        let (result, message) = match result {
            Ok((status, body, versions, message)) => {
                (Ok((status, body, Some(versions))), Some(message))
            }
            Err(e) => (Err(e), None),
        };
        self.answer_with(result, message)
    }

    fn answer(&self, result: Result<Answered, ApiError>) -> Response {
        self.answer_with(result, None)
    }

    /// Audits (with `message` when it succeeded, if any) and answers.
    fn answer_with(&self, result: Result<Answered, ApiError>, message: Option<String>) -> Response {
        let record = AuditRecord::new(
            AuditCategory::Admin,
            self.action,
            self.admin.id.clone(),
            if result.is_ok() { "ok" } else { "failed" },
        )
        .target(self.target.clone());
        match result {
            Ok((status, mut body, versions)) => {
                let mut record = record.status(status.as_u16());
                if let Some(message) = message {
                    record = record.message(message);
                }
                if let Some((old, new)) = versions {
                    record = record.versions(Some(old), Some(new));
                    if let Value::Object(map) = &mut body {
                        map.insert("config_version".into(), new.into());
                    }
                }
                self.gw.logger.emit(record);
                (status, axum::Json(body)).into_response()
            }
            Err(e) => {
                self.gw
                    .logger
                    .emit(record.status(e.status.as_u16()).message(e.message.clone()));
                e.into_response()
            }
        }
    }
}

/// Edits the running config, saves it as a new version and applies it; returns the edit's body
/// and the (old, new) versions.
async fn change(
    gw: &Gateway,
    admin: &AdminCaller,
    action: &str,
    target: &str,
    edit: impl Fn(&mut Config, &Config) -> Result<Edited, ApiError>,
) -> Result<(Value, (u64, u64)), ApiError> {
    let live = gw.live();
    for _ in 0..SAVE_ATTEMPTS {
        // Edit the newest version: another instance may have saved one we have not seen.
        // A store that cannot be read now shows up in the save below.
        let _ = live.reload_if_changed("admin api").await;
        let running = live.current();
        let mut raw = running.raw.clone();
        let edited = edit(&mut raw, &running.resolved)?;
        check(&raw, &edited.entry)?;
        // Nothing changed (enabling an enabled key, an empty patch): no new version.
        if raw == running.raw {
            return Ok((edited.body, (running.version, running.version)));
        }
        let meta = SaveMeta::new(admin.id.clone(), format!("{action} {target}"));
        match live.store().save(&raw, running.version, meta).await {
            Ok(_) => {}
            Err(ConfigError::Conflict { .. }) => continue,
            Err(e) => return Err(save_error(e)),
        }
        live.reload("admin api").await.map_err(|e| {
            ApiError::internal(format!(
                "the new version was saved but not applied here: {e}"
            ))
        })?;
        let new = gw.runtime().version;
        return Ok((edited.body, (running.version, new)));
    }
    Err(ApiError::bad_request(
        "version_conflict",
        "the config store kept holding a version newer than the one this instance runs (other \
         writers, or a stored version this instance rejected: see its reload error); try \
         again, or fix or roll back the stored version",
    )
    .with_status(StatusCode::CONFLICT))
}

/// Validates an edited config as written; problems inside `entry` are named relative to it.
fn check(raw: &Config, entry: &str) -> Result<(), ApiError> {
    if raw.api_keys.is_empty() && !raw.server.open_mode {
        return Err(ApiError::bad_request(
            "last_key",
            "this would remove the last client key and leave the gateway open to anyone; \
             set server.open_mode: true first if that is meant",
        )
        .with_status(StatusCode::CONFLICT));
    }
    let problems = truckllm_config::validate::validate_written(raw);
    if problems.is_empty() {
        return Ok(());
    }
    let prefix = format!("{entry}.");
    let named: Vec<String> = problems
        .iter()
        .map(|(path, message)| {
            let field = path.strip_prefix(&prefix).unwrap_or(path);
            format!("{field}: {message}")
        })
        .collect();
    Err(ApiError::bad_request("invalid_field", named.join("; ")))
}

fn save_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Parse(_) | ConfigError::Invalid(_) | ConfigError::Interpolation(_) => {
            ApiError::bad_request(
                "invalid_config",
                format!("the edited config is invalid: {e}"),
            )
        }
        other => ApiError::store_unavailable(format!("cannot save the config: {other}")),
    }
}

/// A JSON object body (an empty body is `{}`) whose fields are all in `allowed`.
pub fn object(body: &Bytes, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!(
                "{}: unknown field; expected one of {}",
                crate::error::clip(unknown, 64),
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

/// `value` as a `T`; a mismatch names the field.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request("invalid_field", format!("{path}: {}", e.inner()))
    })
}

/// `current` with the fields of `patch` replaced (`null` removes one), as a JSON merge patch
/// of one level.
pub fn merged(current: Value, patch: Map<String, Value>) -> Value {
    let mut object = match current {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (field, value) in patch {
        if value.is_null() {
            object.remove(&field);
        } else {
            object.insert(field, value);
        }
    }
    Value::Object(object)
}

/// The gateway state handlers share.
pub type Shared = axum::extract::State<Arc<Gateway>>;
