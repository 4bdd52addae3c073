//! `/admin/keys…`: create, list, show, update, revoke, disable, enable and rotate client keys.
//!
//! A new key's secret (`tk-` and 32 random bytes, base64url) is in the answer that made it and
//! nowhere else: the config keeps only its SHA-256. A rotation keeps the id (and so the usage
//! and budget counted under it); the old key keeps working until `grace_secs` have passed,
//! then it is refused on every instance (each checks the grace end against its own clock).
//! Rotating again within a grace period ends the older key's grace at once.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use truckllm_config::governance::{format_time_ms, is_plain_id, now_ms, parse_time_ms};
use truckllm_config::schema::{ClientKeyConfig, Config, PreviousKeyConfig};

use super::{Call, Edited, merged, object, typed};
use crate::admin::budget_status;
use crate::auth::{AdminCaller, digest};
use crate::budgets::Owner;
use crate::dispatch::CLIENTS_NAMESPACE;
use crate::error::ApiError;
use crate::state::Gateway;

/// Fields a key may be created with; all but `id` may be changed later.
const FIELDS: &[&str] = &[
    "id",
    "team",
    "allowed_providers",
    "allowed_models",
    "limits",
    "budget",
    "expires_at",
    "metadata",
];

/// Longest grace period of a rotation: 30 days.
const MAX_GRACE_SECS: u64 = 30 * 86_400;

/// A fresh secret and its SHA-256 in hex.
fn new_secret() -> (String, String) {
    let bytes = truckllm_config::secret::random_bytes();
    let secret = format!(
        "tk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex(&digest(secret.as_bytes()));
    (secret, hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the admin API shows of a key: everything but its secret and digests.
pub fn view(entry: &ClientKeyConfig, now_ms: u64) -> Value {
    let expired = entry
        .expires_at
        .as_deref()
        .is_some_and(|at| parse_time_ms(at).is_none_or(|at| now_ms >= at));
    let status = match (entry.disabled, expired) {
        (true, _) => "disabled",
        (false, true) => "expired",
        (false, false) => "active",
    };
    let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        for hidden in ["key", "key_sha256", "previous"] {
            map.remove(hidden);
        }
        map.insert("disabled".into(), entry.disabled.into());
        map.insert("status".into(), status.into());
        if let Some(previous) = &entry.previous {
            let until = previous.until.clone();
            map.insert("previous_key_valid_until".into(), until.into());
        }
    }
    value
}

/// Adds `last_used` (RFC 3339, exact to a minute; `null` if never) to each key's view.
async fn add_last_used(gw: &Gateway, views: &mut [Value], ids: &[String]) {
    let used = crate::last_used::read_many(gw, ids).await;
    for (view, at) in views.iter_mut().zip(used) {
        if let Value::Object(map) = view {
            let at = at.map(format_time_ms);
            map.insert("last_used".into(), at.into());
        }
    }
}

/// The position of key `id` in `config.api_keys`.
fn position(config: &Config, id: &str) -> Result<usize, ApiError> {
    config
        .api_keys
        .iter()
        .position(|k| k.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("no client key `{}`", crate::error::clip(id, 64)))
        })
}

fn edited(config: &Config, i: usize) -> Edited {
    Edited {
        body: view(&config.api_keys[i], now_ms()),
        entry: format!("api_keys[{i}]"),
    }
}

/// `POST /admin/keys`.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    body: Bytes,
) -> Response {
    let fields = object(&body, FIELDS);
    let requested = fields.as_ref().ok().and_then(|f| f.get("id").cloned());
    let id = match requested {
        Some(Value::String(id)) => id,
        Some(_) => String::new(),
        None => format!("key-{}", &new_secret().1[..12]),
    };
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.create",
        target: crate::error::clip(&id, 64).into_owned(),
    };
    let fields = match fields {
        Ok(fields) => fields,
        Err(e) => return call.refuse(e),
    };
    let (secret, hash) = new_secret();
    call.write(StatusCode::CREATED, |raw, _| {
        if !is_plain_id(&id) {
            return Err(ApiError::bad_request(
                "invalid_field",
                "id: must be a string of 1 to 64 letters, digits, `.`, `_` or `-`, starting \
                 with a letter or digit",
            ));
        }
        if raw.api_keys.iter().any(|k| k.id == id) {
            return Err(ApiError::bad_request(
                "duplicate_id",
                format!("id: a client key `{id}` already exists"),
            ));
        }
        let mut value = Value::Object(fields.clone());
        value["id"] = id.clone().into();
        value["key_sha256"] = hash.clone().into();
        let entry: ClientKeyConfig = typed(value)?;
        raw.api_keys.push(entry);
        let mut answer = edited(raw, raw.api_keys.len() - 1);
        answer.body["key"] = secret.clone().into();
        Ok(answer)
    })
    .await
}

/// `GET /admin/keys`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
) -> Response {
    let running = gw.live().current();
    let now = now_ms();
    let mut keys: Vec<Value> = running.raw.api_keys.iter().map(|k| view(k, now)).collect();
    let ids: Vec<String> = running.raw.api_keys.iter().map(|k| k.id.clone()).collect();
    add_last_used(&gw, &mut keys, &ids).await;
    let budgets = running
        .raw
        .api_keys
        .iter()
        .map(|k| (k.id.clone(), k.budget.clone()));
    budget_status::add(
        &gw,
        Owner::Client,
        CLIENTS_NAMESPACE,
        &mut keys,
        budgets.collect(),
    )
    .await;
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.list",
        target: "keys".into(),
    };
    call.read(Ok(json!({ "keys": keys })))
}

/// `GET /admin/keys/{id}`.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Response {
    let running = gw.live().current();
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.show",
        target: crate::error::clip(&id, 64).into_owned(),
    };
    let found = position(&running.raw, &id).map(|i| &running.raw.api_keys[i]);
    let found = match found {
        Ok(entry) => {
            let mut views = [view(entry, now_ms())];
            add_last_used(&gw, &mut views, std::slice::from_ref(&entry.id)).await;
            let budget = vec![(entry.id.clone(), entry.budget.clone())];
            budget_status::add(&gw, Owner::Client, CLIENTS_NAMESPACE, &mut views, budget).await;
            let [view] = views;
            Ok(view)
        }
        Err(e) => Err(e),
    };
    call.read(found)
}

/// `PATCH /admin/keys/{id}`: the fields given replace the key's (`null` clears one).
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.update",
        target: crate::error::clip(&id, 64).into_owned(),
    };
    let patch = match object(&body, &FIELDS[1..]) {
        Ok(patch) => patch,
        Err(e) => return call.refuse(e),
    };
    call.write(StatusCode::OK, |raw, _| {
        let i = position(raw, &id)?;
        let current = serde_json::to_value(&raw.api_keys[i])
            .map_err(|e| ApiError::internal(e.to_string()))?;
        raw.api_keys[i] = typed(merged(current, patch.clone()))?;
        Ok(edited(raw, i))
    })
    .await
}

/// `DELETE /admin/keys/{id}`: revokes the key on every instance.
pub async fn revoke(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.revoke",
        target: crate::error::clip(&id, 64).into_owned(),
    };
    call.write(StatusCode::OK, |raw, _| {
        let i = position(raw, &id)?;
        raw.api_keys.remove(i);
        Ok(Edited {
            body: json!({"id": id, "revoked": true}),
            entry: String::new(),
        })
    })
    .await
}

/// `POST /admin/keys/{id}/disable`.
pub async fn disable(
    state: State<Arc<Gateway>>,
    admin: Extension<AdminCaller>,
    id: Path<String>,
    body: Bytes,
) -> Response {
    set_disabled(state, admin, id, body, true).await
}

/// `POST /admin/keys/{id}/enable`.
pub async fn enable(
    state: State<Arc<Gateway>>,
    admin: Extension<AdminCaller>,
    id: Path<String>,
    body: Bytes,
) -> Response {
    set_disabled(state, admin, id, body, false).await
}

async fn set_disabled(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Bytes,
    disabled: bool,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: if disabled {
            "keys.disable"
        } else {
            "keys.enable"
        },
        target: crate::error::clip(&id, 64).into_owned(),
    };
    if let Err(e) = object(&body, &[]) {
        return call.refuse(e);
    }
    call.write(StatusCode::OK, |raw, _| {
        let i = position(raw, &id)?;
        raw.api_keys[i].disabled = disabled;
        Ok(edited(raw, i))
    })
    .await
}

/// The body of a rotation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// Seconds the old key keeps working.
    #[serde(default)]
    grace_secs: u64,
}

/// `POST /admin/keys/{id}/rotate {grace_secs}`: a new secret for the same id.
pub async fn rotate(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = Call {
        gw: &gw,
        admin: &admin,
        action: "keys.rotate",
        target: crate::error::clip(&id, 64).into_owned(),
    };
    let rotate = object(&body, &["grace_secs"])
        .and_then(|fields| typed::<Rotate>(Value::Object(fields)))
        .and_then(|r| {
            if r.grace_secs > MAX_GRACE_SECS {
                Err(ApiError::bad_request(
                    "invalid_field",
                    format!("grace_secs: must be at most {MAX_GRACE_SECS} (30 days)"),
                ))
            } else {
                Ok(r)
            }
        });
    let rotate = match rotate {
        Ok(rotate) => rotate,
        Err(e) => return call.refuse(e),
    };
    let (secret, hash) = new_secret();
    call.write(StatusCode::OK, |raw, resolved| {
        let i = position(raw, &id)?;
        let old = resolved
            .api_keys
            .iter()
            .find(|k| k.id == id)
            .and_then(current_hash)
            .ok_or_else(|| ApiError::internal("the running key has no readable digest"))?;
        let entry = &mut raw.api_keys[i];
        entry.key = None;
        entry.key_sha256 = Some(hash.clone());
        entry.previous = (rotate.grace_secs > 0).then(|| PreviousKeyConfig {
            key_sha256: old,
            // Rounded up to the second the time is written in.
            until: format_time_ms((now_ms() + rotate.grace_secs * 1000).div_ceil(1000) * 1000),
        });
        let mut answer = edited(raw, i);
        answer.body["key"] = secret.clone().into();
        Ok(answer)
    })
    .await
}

/// The SHA-256 (hex) of a resolved key's current secret.
fn current_hash(entry: &ClientKeyConfig) -> Option<String> {
    match (&entry.key, &entry.key_sha256) {
        (Some(key), _) => Some(hex(&digest(key.expose().as_bytes()))),
        (None, Some(hash)) => Some(hash.to_ascii_lowercase()),
        (None, None) => None,
    }
}
