//! `/admin/config/…`: the config's versions (author, time, comment), one version's text, a
//! diff between any two, and rollback. Reads and writes go through the running config store
//! (`ConfigStore::versions`, `get`, `rollback`, and `truckllm_config::diff`), as `truckllm
//! config history|diff|rollback` do.
//!
//! Secrets never leave: a version's text is parsed and shown as [`Config::redacted`] says
//! (literal secrets become `[REDACTED]`, `${VAR}` references stay names), re-serialised, so a
//! diff compares redacted texts (comments of the stored text are not shown). A text that
//! cannot be parsed is not shown at all.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use truckllm_config::governance::{Revived, format_time_ms, revived_by_rollback};
use truckllm_config::{ConfigError, SaveMeta, Versioned};

use super::{Call, object, typed};
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::Gateway;

/// A version's text as it may be shown: parsed, secrets redacted, serialised again.
fn redacted_text(text: &str) -> String {
    match truckllm_config::parse(text) {
        Ok(config) => serde_saphyr::to_string(&config.redacted())
            .unwrap_or_else(|_| "# (this version cannot be shown)\n".to_owned()),
        Err(_) => "# (this version does not parse; it is not shown, so no secret leaks)\n".into(),
    }
}

fn redacted(version: Versioned) -> Versioned {
    Versioned {
        text: redacted_text(&version.text),
        info: version.info,
    }
}

fn store_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Conflict { .. } => ApiError::bad_request(
            "version_conflict",
            format!("another version was saved meanwhile: {e}"),
        )
        .with_status(StatusCode::CONFLICT),
        ConfigError::UnknownVersion(v) => ApiError::not_found(format!(
            "config version {v} is not kept by the config store"
        )),
        other => ApiError::store_unavailable(format!("the config store: {other}")),
    }
}

/// A version that is kept, or a 404 naming it.
async fn version(gw: &Gateway, number: u64) -> Result<Versioned, ApiError> {
    let store = gw.live().store();
    let kept = store.versions().await.map_err(store_error)?;
    if !kept.iter().any(|v| v.version == number) {
        return Err(ApiError::not_found(format!(
            "config version {number} is not kept by the config store"
        )));
    }
    store.get(number).await.map_err(store_error)
}

/// `GET /admin/config/versions`: newest first.
pub async fn versions(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "config.versions",
        target: "config".into(),
    };
    let result = async {
        let store = gw.live().store();
        let current = store.load().await.map_err(store_error)?.info.version;
        let versions: Vec<Value> = store
            .versions()
            .await
            .map_err(store_error)?
            .into_iter()
            .rev()
            .map(|v| {
                json!({
                    "version": v.version,
                    "time": format_time_ms(v.time_ms),
                    "time_ms": v.time_ms,
                    "author": v.author,
                    "comment": v.comment,
                    "sha256": v.sha256,
                    "current": v.version == current,
                })
            })
            .collect();
        Ok(json!({
            "current": current,
            "running": gw.runtime().version,
            "versions": versions,
        }))
    }
    .await;
    call.read(result)
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    version: Option<u64>,
}

/// `GET /admin/config/show?version=N`: one version (the current one by default), redacted.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    query: Result<Query<ShowQuery>, QueryRejection>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "config.show",
        target: "config".into(),
    };
    let result = async {
        let Query(query) =
            query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
        let shown = match query.version {
            Some(number) => version(&gw, number).await?,
            None => gw.live().store().load().await.map_err(store_error)?,
        };
        let shown = redacted(shown);
        Ok(json!({
            "version": shown.info.version,
            "time": format_time_ms(shown.info.time_ms),
            "author": shown.info.author,
            "comment": shown.info.comment,
            "text": shown.text,
        }))
    }
    .await;
    call.read(result)
}

#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    from: Option<u64>,
    to: Option<u64>,
}

/// `GET /admin/config/diff?from=A&to=B`: a unified diff of the redacted texts; by default
/// from the version before the current one to the current one.
pub async fn diff(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "config.diff",
        target: "config".into(),
    };
    let result = async {
        let Query(query) =
            query.map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))?;
        let store = gw.live().store();
        let current = store.load().await.map_err(store_error)?.info.version;
        let kept = store.versions().await.map_err(store_error)?;
        let to = query.to.unwrap_or(current);
        let from = query.from.unwrap_or_else(|| {
            kept.iter()
                .map(|v| v.version)
                .filter(|v| *v < to)
                .max()
                .unwrap_or(to)
        });
        let (a, b) = (
            redacted(version(&gw, from).await?),
            redacted(version(&gw, to).await?),
        );
        Ok(json!({"from": from, "to": to, "diff": truckllm_config::diff(&a, &b)}))
    }
    .await;
    call.read(result)
}

/// The body of a rollback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    version: u64,
    /// Roll back even if it lets keys revoked, disabled or rotated since in again.
    #[serde(default)]
    force: bool,
}

/// `POST /admin/config/rollback {version}`: the text of `version` becomes a new current
/// version (author: the admin identity), applied here at once and by other instances through
/// their config watch. A rollback that would let in again keys revoked, disabled, rotated or
/// given an earlier expiry since `version`, or open the gateway to anyone, is refused (409,
/// naming them) unless the body says `"force": true`. Forced or not, the answer and the audit
/// record say whether it was forced and which key ids it let in again (never a secret). The
/// version is saved only if the one checked is still current (else 409 `version_conflict`).
pub async fn rollback(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    body: Bytes,
) -> Response {
    let parsed =
        object(&body, &["version", "force"]).and_then(|f| typed::<Rollback>(Value::Object(f)));
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "config.rollback",
        target: parsed
            .as_ref()
            .map_or_else(|_| "config".into(), |r| format!("version {}", r.version)),
    };
    let result = async {
        let rollback = parsed?;
        let target = version(&gw, rollback.version).await?;
        let (checked, revived) = revival(&gw, &target.text).await?;
        if !rollback.force {
            refuse_revival(rollback.version, &revived)?;
        }
        let old = gw.runtime().version;
        let meta = SaveMeta::new(
            &admin.id,
            format!("rollback to version {}", rollback.version),
        );
        let saved = gw
            .live()
            .store()
            .save_text(&target.text, checked, meta)
            .await
            .map_err(|e| match e {
                ConfigError::Parse(_) | ConfigError::Invalid(_) | ConfigError::Interpolation(_) => {
                    ApiError::bad_request(
                        "invalid_config",
                        format!("version {} is not valid today: {e}", rollback.version),
                    )
                }
                other => store_error(other),
            })?;
        gw.live().reload("admin api rollback").await.map_err(|e| {
            ApiError::internal(format!(
                "version {saved} was saved but not applied here: {e}"
            ))
        })?;
        let running = gw.runtime().version;
        let body = json!({
            "rolled_back_to": rollback.version,
            "version": saved,
            "running": running,
            "forced": rollback.force,
            "revived": {
                "client_keys": revived.client_keys,
                "admin_keys": revived.admin_keys,
                "opens_gateway": revived.opens_gateway,
            },
        });
        let message = rollback_message(rollback.force, &revived);
        Ok((StatusCode::OK, body, (old, running), message))
    }
    .await;
    call.changed(result)
}

/// The audit message of a rollback: whether it was forced, and what it let in again.
fn rollback_message(forced: bool, revived: &Revived) -> String {
    let forced = if forced { "forced" } else { "not forced" };
    if revived.is_empty() {
        format!("{forced}; lets in nothing again")
    } else {
        format!("{forced}; lets in again {revived}")
    }
}

/// The version current now, and what rolling back from it to the version with `text` would
/// let in again. A text that does not parse revives nothing here: the save refuses it.
async fn revival(gw: &Gateway, text: &str) -> Result<(u64, Revived), ApiError> {
    let current = gw.live().store().load().await.map_err(store_error)?;
    let revived = match (
        truckllm_config::parse(text),
        truckllm_config::parse(&current.text),
    ) {
        (Ok(target), Ok(now)) => revived_by_rollback(&target, &now, gw.now_ms()),
        _ => Revived::default(),
    };
    Ok((current.info.version, revived))
}

/// Refuses (409) a rollback to `version` that would let keys in again that the current version
/// revoked, disabled, rotated or expired sooner (`would_revive_keys`), or open the gateway to
/// anyone (`would_open_gateway`).
fn refuse_revival(version: u64, revived: &Revived) -> Result<(), ApiError> {
    if revived.is_empty() {
        return Ok(());
    }
    let code = if revived.opens_gateway {
        "would_open_gateway"
    } else {
        "would_revive_keys"
    };
    Err(ApiError::bad_request(
        code,
        format!(
            "rolling back to version {version} would let in again {revived}, revoked, disabled, \
             given a new secret or an earlier expiry since (or written differently), or no \
             longer open to anyone; revoke them again after the rollback, or send \
             \"force\": true to roll back anyway"
        ),
    )
    .with_status(StatusCode::CONFLICT))
}
