//! The gateway's HTTP surface and its lifecycle.
//!
//! [`ROUTES`] is the one table of what the gateway serves and who may call each route
//! ([`Access`]); [`router`] builds the router from it, so no route can be served without an
//! access decision. Layers, outermost first:
//! 1. [`trace::layer`]: a request id for every request, `x-request-id` on every answer;
//! 2. per access class: [`auth::client`] (client key) or [`auth::admin`] (an admin identity,
//!    by its key or a dashboard session; a viewer only on [`Access::AdminRead`] routes);
//!    public routes have none.
//!
//! The dashboard's pages (`/ui/...`) have their own table, [`crate::ui::ROUTES`]: open for
//! signing in, a session for everything else; the data they show is this table's admin API.
//!
//! Anything not in the table is a 404 that names the method and path, behind client auth (so
//! the route list is not probed anonymously), logged and counted.
//!
//! [`serve`] runs until the shutdown future resolves, lets requests in flight finish, then
//! waits for every usage settlement so nothing is lost.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde_json::json;

use truckllm_logging::{AuditCategory, AuditRecord};

use crate::admin::{keys, teams};
use crate::auth;
use crate::error::{ApiError, clip};
use crate::ingress::{anthropic, openai, responses};
use crate::providers::Wire;
use crate::state::Gateway;
use crate::trace;

/// How long log sinks get to deliver what is queued when the gateway stops.
const LOG_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness and metrics, for probes and scrapers that hold no key.
    Public,
    /// A client key ([`auth::client`]).
    Client,
    /// An admin identity with the `admin` role ([`auth::admin`]): routes that change things.
    Admin,
    /// Any admin identity, `viewer` included: routes that only read.
    AdminRead,
}

/// One served route.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    /// The axum path pattern (`/v1/models/{*id}`).
    pub path: &'static str,
    pub access: Access,
    /// The action named in audit and request records (`chat`, `models`, `config.reload`).
    pub action: &'static str,
    /// The dialect its errors, refusals included, are written in.
    pub wire: Wire,
}

const fn route(method: Method, path: &'static str, access: Access, action: &'static str) -> Route {
    Route {
        method,
        path,
        access,
        action,
        wire: Wire::OpenAi,
    }
}

/// A route of the Anthropic dialect.
const fn anthropic(method: Method, path: &'static str, action: &'static str) -> Route {
    Route {
        method,
        path,
        access: Access::Client,
        action,
        wire: Wire::Anthropic,
    }
}

/// Every route the gateway serves. The public ones are the explicit list of routes that skip
/// authentication; keep it short.
pub const ROUTES: &[Route] = &[
    // Claude Code checks the base URL is reachable with `HEAD /` before anything else.
    route(Method::HEAD, "/", Access::Public, "root"),
    route(Method::GET, "/health", Access::Public, "health"),
    route(Method::GET, "/ready", Access::Public, "ready"),
    route(Method::GET, "/metrics", Access::Public, "metrics"),
    route(Method::POST, "/v1/chat/completions", Access::Client, "chat"),
    route(Method::POST, "/v1/embeddings", Access::Client, "embeddings"),
    route(Method::GET, "/v1/models", Access::Client, "models"),
    route(Method::GET, "/v1/models/{*id}", Access::Client, "models"),
    route(Method::POST, "/v1/responses", Access::Client, "responses"),
    route(
        Method::GET,
        "/v1/responses/{id}",
        Access::Client,
        "responses",
    ),
    route(
        Method::DELETE,
        "/v1/responses/{id}",
        Access::Client,
        "responses",
    ),
    route(
        Method::GET,
        "/v1/responses/{id}/input_items",
        Access::Client,
        "responses",
    ),
    anthropic(Method::POST, "/v1/messages", "messages"),
    anthropic(Method::POST, "/v1/messages/count_tokens", "count_tokens"),
    route(
        Method::POST,
        "/admin/config/reload",
        Access::Admin,
        "config.reload",
    ),
    route(Method::GET, "/admin/keys", Access::AdminRead, "keys.list"),
    route(Method::POST, "/admin/keys", Access::Admin, "keys.create"),
    route(
        Method::GET,
        "/admin/keys/{id}",
        Access::AdminRead,
        "keys.show",
    ),
    route(
        Method::PATCH,
        "/admin/keys/{id}",
        Access::Admin,
        "keys.update",
    ),
    route(
        Method::DELETE,
        "/admin/keys/{id}",
        Access::Admin,
        "keys.revoke",
    ),
    route(
        Method::POST,
        "/admin/keys/{id}/disable",
        Access::Admin,
        "keys.disable",
    ),
    route(
        Method::POST,
        "/admin/keys/{id}/enable",
        Access::Admin,
        "keys.enable",
    ),
    route(
        Method::POST,
        "/admin/keys/{id}/rotate",
        Access::Admin,
        "keys.rotate",
    ),
    route(Method::GET, "/admin/teams", Access::AdminRead, "teams.list"),
    route(Method::POST, "/admin/teams", Access::Admin, "teams.create"),
    route(
        Method::GET,
        "/admin/teams/{id}",
        Access::AdminRead,
        "teams.show",
    ),
    route(
        Method::PATCH,
        "/admin/teams/{id}",
        Access::Admin,
        "teams.update",
    ),
    route(
        Method::DELETE,
        "/admin/teams/{id}",
        Access::Admin,
        "teams.delete",
    ),
    route(
        Method::GET,
        "/admin/usage/history",
        Access::AdminRead,
        "usage.history",
    ),
    route(
        Method::GET,
        "/admin/usage/summary",
        Access::AdminRead,
        "usage.summary",
    ),
    route(
        Method::GET,
        "/admin/providers",
        Access::AdminRead,
        "providers.list",
    ),
    route(
        Method::GET,
        "/admin/requests",
        Access::AdminRead,
        "requests.search",
    ),
    route(
        Method::GET,
        "/admin/storage",
        Access::AdminRead,
        "storage.show",
    ),
    route(
        Method::GET,
        "/admin/config/versions",
        Access::AdminRead,
        "config.versions",
    ),
    route(
        Method::GET,
        "/admin/config/show",
        Access::AdminRead,
        "config.show",
    ),
    route(
        Method::GET,
        "/admin/config/diff",
        Access::AdminRead,
        "config.diff",
    ),
    route(
        Method::POST,
        "/admin/config/rollback",
        Access::Admin,
        "config.rollback",
    ),
];

/// The route `method path` matched, if it is one of [`ROUTES`].
pub fn route_named(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| {
        r.path == path && (r.method == method || *method == Method::HEAD && r.method == Method::GET)
    })
}

/// The handler of each route in [`ROUTES`].
fn handler(route: &Route) -> MethodRouter<Arc<Gateway>> {
    match (route.method.as_str(), route.path) {
        ("HEAD", "/") => axum::routing::head(|| async { StatusCode::OK }),
        ("GET", "/health") => get(|| async { "ok" }),
        ("GET", "/ready") => get(ready),
        ("GET", "/metrics") => get(metrics),
        ("POST", "/v1/chat/completions") => post(openai::chat_completions),
        ("POST", "/v1/embeddings") => post(openai::embeddings),
        ("GET", "/v1/models") => get(openai::models),
        ("GET", "/v1/models/{*id}") => get(openai::model),
        ("POST", "/v1/responses") => post(responses::create),
        ("GET", "/v1/responses/{id}") => get(responses::retrieve),
        ("DELETE", "/v1/responses/{id}") => delete(responses::delete),
        ("GET", "/v1/responses/{id}/input_items") => get(responses::input_items),
        ("POST", "/v1/messages") => post(anthropic::messages),
        ("POST", "/v1/messages/count_tokens") => post(anthropic::count_tokens),
        ("POST", "/admin/config/reload") => post(reload),
        ("GET", "/admin/keys") => get(keys::list),
        ("POST", "/admin/keys") => post(keys::create),
        ("GET", "/admin/keys/{id}") => get(keys::show),
        ("PATCH", "/admin/keys/{id}") => patch(keys::update),
        ("DELETE", "/admin/keys/{id}") => delete(keys::revoke),
        ("POST", "/admin/keys/{id}/disable") => post(keys::disable),
        ("POST", "/admin/keys/{id}/enable") => post(keys::enable),
        ("POST", "/admin/keys/{id}/rotate") => post(keys::rotate),
        ("GET", "/admin/teams") => get(teams::list),
        ("POST", "/admin/teams") => post(teams::create),
        ("GET", "/admin/teams/{id}") => get(teams::show),
        ("PATCH", "/admin/teams/{id}") => patch(teams::update),
        ("DELETE", "/admin/teams/{id}") => delete(teams::delete),
        ("GET", "/admin/usage/history") => get(crate::admin::history::history),
        ("GET", "/admin/usage/summary") => get(crate::admin::usage::summary),
        ("GET", "/admin/providers") => get(crate::admin::providers::list),
        ("GET", "/admin/requests") => get(crate::admin::requests::search_log),
        ("GET", "/admin/storage") => get(crate::admin::storage::show),
        ("GET", "/admin/config/versions") => get(crate::admin::config::versions),
        ("GET", "/admin/config/show") => get(crate::admin::config::show),
        ("GET", "/admin/config/diff") => get(crate::admin::config::diff),
        ("POST", "/admin/config/rollback") => post(crate::admin::config::rollback),
        _ => unreachable_route(route),
    }
}

/// A table entry without a handler is a programming error caught by the route test; served,
/// it answers 500 rather than panicking.
fn unreachable_route(route: &Route) -> MethodRouter<Arc<Gateway>> {
    let path = route.path;
    axum::routing::any(move || async move {
        ApiError::internal(format!("route {path} has no handler")).into_response()
    })
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut public = Router::new();
    let mut client = Router::new();
    let mut admin = Router::new();
    for route in ROUTES {
        let group = match route.access {
            Access::Public => &mut public,
            Access::Client => &mut client,
            Access::Admin | Access::AdminRead => &mut admin,
        };
        *group = std::mem::take(group).route(route.path, handler(route));
    }
    let client = client
        .fallback(unknown_route)
        .layer(from_fn_with_state(Arc::clone(&gateway), auth::client));
    let admin = admin.layer(from_fn_with_state(Arc::clone(&gateway), auth::admin));
    public
        .merge(crate::ui::router(Arc::clone(&gateway)))
        .merge(admin)
        .merge(client)
        .layer(axum::middleware::from_fn(trace::layer))
        .with_state(gateway)
}

/// A 404 that says which method and path had no route, logged and counted like any refusal.
async fn unknown_route(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = clip(request.uri().path(), 200);
    tracing::info!(%method, path = %path, "no such route");
    let error = ApiError::not_found(format!(
        "no route for {method} {path}; this gateway serves {}",
        ROUTES
            .iter()
            .filter(|r| r.access == Access::Client)
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .with_code("route_not_found");
    auth::answer_refusal(&gw, &request, None, "unknown_route", error)
}

/// Serves until `shutdown` within the connection limits of `server.limits` (read at start),
/// then drains requests and usage settlements.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = gateway.live().current().resolved.server.limits;
    let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
    let limits = truckllm_http_serve::Limits {
        header_read_timeout: secs(config.header_read_timeout_secs),
        body_read_timeout: secs(config.body_read_timeout_secs),
        idle_timeout: secs(config.idle_timeout_secs),
        tls_handshake_timeout: secs(config.tls_handshake_timeout_secs),
        max_connections: config.max_connections.max(1),
    };
    let app = router(Arc::clone(&gateway));
    truckllm_http_serve::serve(listener, app, None, limits, shutdown).await?;
    gateway.flush().await;
    gateway.logger.shutdown(LOG_SHUTDOWN_GRACE).await;
    Ok(())
}

async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "config_version": gw.runtime().version})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    match &gw.prometheus {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::not_found("metrics are not enabled in this process").into_response(),
    }
}

async fn reload(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(admin): axum::Extension<auth::AdminCaller>,
) -> Response {
    let running = gw.live().current();
    let old_version = running.version;
    let result = gw.live().reload("admin api").await;
    let audit = AuditRecord::new(
        AuditCategory::Admin,
        "config.reload",
        admin.id,
        if result.is_ok() { "ok" } else { "failed" },
    )
    .target("config");
    match result {
        Ok(outcome) => {
            let new_version = gw.runtime().version;
            gw.logger.emit(
                audit
                    .status(200)
                    .versions(Some(old_version), Some(new_version)),
            );
            axum::Json(json!({"outcome": format!("{outcome:?}"), "version": new_version}))
                .into_response()
        }
        Err(e) => {
            let error = ApiError::bad_request(
                "invalid_config",
                format!("config rejected, running version kept: {e}"),
            );
            gw.logger.emit(
                audit
                    .status(400)
                    .versions(Some(old_version), None)
                    .message(error.message.clone()),
            );
            error.into_response()
        }
    }
}
