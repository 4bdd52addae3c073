//! The gateway's HTTP surface and its lifecycle.
//!
//! Routes: the OpenAI endpoints (each authenticates the client itself, see [`crate::proxy`]),
//! and a short list that skips client auth: `/health` (liveness), `/ready` (the runtime store
//! answers), `/metrics` (Prometheus). `/admin/config/reload` needs the admin key. Anything
//! else is a 404 in the OpenAI error shape.
//!
//! [`serve`] runs until the shutdown future resolves, lets requests in flight finish, then
//! waits for every usage settlement so nothing is lost.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use truckllm_logging::{AuditCategory, AuditRecord};

use crate::error::ApiError;
use crate::proxy;
use crate::state::Gateway;

/// How long log sinks get to deliver what is queued when the gateway stops.
const LOG_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(proxy::models))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/config/reload", post(reload))
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .with_state(gateway)
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

async fn reload(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let running = gw.live().current();
    let Some(admin_key) = running.resolved.server.admin_key.as_ref() else {
        return ApiError::not_found("the admin API is off: set server.admin_key").into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(admin_key.expose().as_bytes())) {
        gw.logger.emit(
            AuditRecord::new(AuditCategory::Access, "config.reload", "admin", "denied")
                .target("config")
                .status(401),
        );
        return ApiError::unauthorized("invalid admin key").into_response();
    }
    let old_version = running.version;
    let result = gw.live().reload("admin api").await;
    let audit = AuditRecord::new(
        AuditCategory::Admin,
        "config.reload",
        "admin",
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
