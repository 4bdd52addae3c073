//! `/admin/teams…`: create, list, show, update and delete teams. A team bounds the limits,
//! budget and permissions of the keys naming it; a team still named by a key cannot be
//! deleted (409, naming the keys).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use truckllm_config::governance::is_plain_id;
use truckllm_config::schema::{Config, TeamConfig};

use super::{Call, Edited, merged, object, typed};
use crate::admin::budget_status;
use crate::auth::AdminCaller;
use crate::budgets::Owner;
use crate::dispatch::TEAMS_NAMESPACE;
use crate::error::{ApiError, clip};
use crate::state::Gateway;

/// Fields a team is created with; all but `id` may be changed later.
const FIELDS: &[&str] = &[
    "id",
    "limits",
    "budget",
    "allowed_providers",
    "allowed_models",
    "metadata",
];

/// What the admin API shows of a team: its config and the keys naming it.
pub fn view(config: &Config, team: &TeamConfig) -> Value {
    let mut value = serde_json::to_value(team).unwrap_or(Value::Null);
    let keys: Vec<&str> = members(config, &team.id);
    if let Value::Object(map) = &mut value {
        map.insert("keys".into(), json!(keys));
    }
    value
}

fn members<'a>(config: &'a Config, team: &str) -> Vec<&'a str> {
    config
        .api_keys
        .iter()
        .filter(|k| k.team.as_deref() == Some(team))
        .map(|k| k.id.as_str())
        .collect()
}

fn position(config: &Config, id: &str) -> Result<usize, ApiError> {
    config
        .teams
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no team `{}`", clip(id, 64))))
}

fn edited(config: &Config, i: usize) -> Edited {
    Edited {
        body: view(config, &config.teams[i]),
        entry: format!("teams[{i}]"),
    }
}

fn call<'a>(gw: &'a Gateway, admin: &'a AdminCaller, action: &'static str, id: &str) -> Call<'a> {
    Call {
        gw,
        admin,
        action,
        target: clip(id, 64).into_owned(),
    }
}

/// `POST /admin/teams`.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    body: Bytes,
) -> Response {
    let fields = object(&body, FIELDS);
    let id = match fields.as_ref().ok().and_then(|f| f.get("id")) {
        Some(Value::String(id)) => id.clone(),
        _ => String::new(),
    };
    let call = call(&gw, &admin, "teams.create", &id);
    let fields = match fields {
        Ok(fields) => fields,
        Err(e) => return call.refuse(e),
    };
    call.write(StatusCode::CREATED, |raw, _| {
        if !is_plain_id(&id) {
            return Err(ApiError::bad_request(
                "invalid_field",
                "id: required, a string of 1 to 64 letters, digits, `.`, `_` or `-`, \
                 starting with a letter or digit",
            ));
        }
        if raw.teams.iter().any(|t| t.id == id) {
            return Err(ApiError::bad_request(
                "duplicate_id",
                format!("id: a team `{id}` already exists"),
            ));
        }
        let team: TeamConfig = typed(Value::Object(fields.clone()))?;
        raw.teams.push(team);
        Ok(edited(raw, raw.teams.len() - 1))
    })
    .await
}

/// `GET /admin/teams`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
) -> Response {
    let running = gw.live().current();
    let mut teams: Vec<Value> = running
        .raw
        .teams
        .iter()
        .map(|t| view(&running.raw, t))
        .collect();
    let budgets = running
        .raw
        .teams
        .iter()
        .map(|t| (t.id.clone(), t.budget.clone()));
    budget_status::add(
        &gw,
        Owner::Team,
        TEAMS_NAMESPACE,
        &mut teams,
        budgets.collect(),
    )
    .await;
    call(&gw, &admin, "teams.list", "teams").read(Ok(json!({ "teams": teams })))
}

/// `GET /admin/teams/{id}`.
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Response {
    let running = gw.live().current();
    let found = match position(&running.raw, &id).map(|i| &running.raw.teams[i]) {
        Ok(team) => {
            let mut views = [view(&running.raw, team)];
            let budget = vec![(team.id.clone(), team.budget.clone())];
            budget_status::add(&gw, Owner::Team, TEAMS_NAMESPACE, &mut views, budget).await;
            let [view] = views;
            Ok(view)
        }
        Err(e) => Err(e),
    };
    call(&gw, &admin, "teams.show", &id).read(found)
}

/// `PATCH /admin/teams/{id}`: the fields given replace the team's (`null` clears one).
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let call = call(&gw, &admin, "teams.update", &id);
    let patch = match object(&body, &FIELDS[1..]) {
        Ok(patch) => patch,
        Err(e) => return call.refuse(e),
    };
    call.write(StatusCode::OK, |raw, _| {
        let i = position(raw, &id)?;
        let current =
            serde_json::to_value(&raw.teams[i]).map_err(|e| ApiError::internal(e.to_string()))?;
        raw.teams[i] = typed(merged(current, patch.clone()))?;
        Ok(edited(raw, i))
    })
    .await
}

/// `DELETE /admin/teams/{id}`: only a team no key names.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(admin): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Response {
    call(&gw, &admin, "teams.delete", &id)
        .write(StatusCode::OK, |raw, _| {
            let i = position(raw, &id)?;
            let keys = members(raw, &id);
            if !keys.is_empty() {
                return Err(ApiError::bad_request(
                    "team_in_use",
                    format!(
                        "team `{id}` is still named by keys {}; move or revoke them first",
                        keys.join(", ")
                    ),
                )
                .with_status(StatusCode::CONFLICT));
            }
            raw.teams.remove(i);
            Ok(Edited {
                body: json!({"id": id, "deleted": true}),
                entry: String::new(),
            })
        })
        .await
}
