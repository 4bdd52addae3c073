//! Who may call which route, decided once per route by the router's layers instead of inside
//! each handler (see [`crate::app::ROUTES`] for the table).
//!
//! - [`client`]: client routes. The key comes from `Authorization: Bearer <key>` or
//!   `x-api-key: <key>`; it is hashed and compared in constant time against every client
//!   ([`crate::clients`]). The caller, and the runtime it was checked against, travel to the
//!   handler as a [`Caller`] extension, so a handler cannot forget to authenticate and always
//!   works with the config version that admitted it.
//! - [`admin`]: `/admin/...`. The admin identities' SHA-256 digests (`server.admin_keys`,
//!   and `server.admin_key` as the admin named `admin`) are computed when a config version is
//!   applied; a presented key is hashed and compared with every digest in constant time. A
//!   missing header is refused without comparing anything. A `viewer` may call only the
//!   read-only admin routes ([`crate::app::Access::AdminRead`]); a write answers 403. The
//!   identity travels to the handler as an [`AdminCaller`] (it authors config versions). With
//!   no admin identity configured the admin API answers 404. Without a key, a dashboard
//!   session cookie is accepted instead ([`crate::ui::session`]): the same identity and role,
//!   and every change must carry the session's CSRF token. A wrong admin key counts as a
//!   failed sign-in for the client's address, and while the address is refused (429 with
//!   `Retry-After`) no key is looked at ([`crate::ui::sign_in_limit`]).
//!
//! Every refusal leaves an audit record (category `access`, the route's action, never the key),
//! a request record, and a count in `truckllm_rejected_total{code}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use truckllm_logging::{AuditCategory, AuditRecord};

use truckllm_config::Config;
use truckllm_config::schema::AdminRole;

use crate::app::Access;
use crate::clients::Client;
use crate::error::ApiError;
use crate::providers::Wire;
use crate::state::{Gateway, Runtime};
use crate::trace::{RequestId, Trace};

/// The authenticated caller of a client route.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The runtime (config version) the caller was authenticated against.
    pub runtime: Arc<Runtime>,
    pub client: Arc<Client>,
}

/// The authenticated caller of an admin route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    pub id: String,
    pub role: AdminRole,
    /// The dashboard session the call came with (its token's SHA-256), if not with a key.
    pub session: Option<[u8; 32]>,
}

/// The admin identities of one config version, holding only digests.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    identities: Vec<(AdminCaller, [u8; 32])>,
}

impl Admins {
    /// `server.admin_keys`, and `server.admin_key` as the admin named `admin`.
    pub fn from_config(config: &Config) -> Self {
        let legacy = config.server.admin_key.as_ref().map(|key| {
            let caller = AdminCaller {
                id: "admin".into(),
                role: AdminRole::Admin,
                session: None,
            };
            (caller, digest(key.expose().as_bytes()))
        });
        let listed = config.server.admin_keys.iter().filter_map(|a| {
            let hash = match (&a.key, &a.key_sha256) {
                (Some(key), _) => digest(key.expose().as_bytes()),
                (None, Some(hex)) => truckllm_config::secret::parse_sha256_hex(hex)?,
                (None, None) => return None,
            };
            let caller = AdminCaller {
                id: a.id.clone(),
                role: a.role,
                session: None,
            };
            Some((caller, hash))
        });
        Self {
            identities: legacy.into_iter().chain(listed).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The identity whose key was presented; every digest is compared in constant time.
    fn find(&self, key: &str) -> Option<&AdminCaller> {
        self.by_digest(&digest(key.as_bytes()))
    }

    /// The identity whose key has this SHA-256; every digest is compared in constant time.
    pub fn by_digest(&self, presented: &[u8; 32]) -> Option<&AdminCaller> {
        let mut found = None;
        for (caller, hash) in &self.identities {
            if bool::from(hash.ct_eq(presented)) {
                found = Some(caller);
            }
        }
        found
    }
}

/// The client key a request presents: `Authorization: Bearer <key>` (OpenAI's way, and
/// Anthropic's with an auth token) or `x-api-key: <key>` (Anthropic's API-key way).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// SHA-256 of a key; keys are only ever compared as digests.
pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Client routes: authenticates the caller and hands it to the handler as a [`Caller`].
pub async fn client(State(gw): State<Arc<Gateway>>, mut request: Request, next: Next) -> Response {
    let runtime = gw.runtime();
    let admitted = runtime
        .clients
        .authenticate(presented_key(request.headers()), gw.now_ms())
        .map(Arc::clone);
    match admitted {
        Ok(client) => {
            gw.last_used.touch(&gw, &client.id);
            request.extensions_mut().insert(Caller { runtime, client });
            next.run(request).await
        }
        Err(e) => refuse(&gw, &request, "client", e),
    }
}

/// Admin routes: an admin identity, compared as a digest, whose role allows the route.
pub async fn admin(State(gw): State<Arc<Gateway>>, mut request: Request, next: Next) -> Response {
    let runtime = gw.runtime();
    if runtime.admins.is_empty() {
        return ApiError::not_found("the admin API is off: set server.admin_keys or admin_key")
            .into_response();
    }
    let writes = route_of(&request).is_none_or(|r| r.access != Access::AdminRead);
    // A refusal names who was refused: the viewer by its id, an unknown caller as `admin`.
    let identified = match presented_key(request.headers()) {
        Some(key) => keyed_caller(&gw, &runtime.admins, &request, key),
        None => session_caller(&gw, &runtime.admins, &request),
    };
    let admitted = match identified {
        Ok(caller) if writes && caller.role != AdminRole::Admin => Err((
            caller.id.clone(),
            ApiError::forbidden(format!(
                "admin identity `{}` is a viewer: it may only read",
                caller.id
            ))
            .with_code("read_only"),
        )),
        other => other,
    };
    match admitted {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err((who, e)) => refuse(&gw, &request, &who, e),
    }
}

/// The admin whose key the request presents. A wrong key counts as a failed sign-in for the
/// client's address, and while the address (or everyone) is refused a key is not looked at
/// ([`crate::ui::sign_in_limit`]), so admin keys cannot be guessed faster here than at
/// `/ui/login`.
fn keyed_caller(
    gw: &Gateway,
    admins: &Admins,
    request: &Request,
    key: &str,
) -> Result<AdminCaller, (String, ApiError)> {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let limit = &gw.ui.sign_in_limit;
    if let Err(wait) = limit.check(address, gw.now_ms()) {
        let error = ApiError::rate_limited(
            format!(
                "too many failed admin keys: try again in {} s",
                wait.as_secs_f64().ceil().max(1.0) as u64
            ),
            wait,
        )
        .with_code("too_many_failed_sign_ins");
        return Err(("admin".to_owned(), error));
    }
    admins.find(key).cloned().ok_or_else(|| {
        limit.failed(address, gw.now_ms());
        (
            "admin".to_owned(),
            ApiError::unauthorized("invalid admin key"),
        )
    })
}

/// The admin of the request's dashboard session, when it carries no key.
fn session_caller(
    gw: &Gateway,
    admins: &Admins,
    request: &Request,
) -> Result<AdminCaller, (String, ApiError)> {
    let admitted = crate::ui::session::admit(
        &gw.ui.sessions,
        admins,
        request.headers(),
        request.method(),
        gw.now_ms(),
    );
    match admitted {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err((
            "admin".to_owned(),
            ApiError::unauthorized(
                "missing admin key: send Authorization: Bearer <admin key> (or sign in at /ui)",
            ),
        )),
        Err(e) => Err(("admin".to_owned(), e)),
    }
}

/// Answers a refused request, leaving its audit record, request record and metric.
fn refuse(gw: &Gateway, request: &Request, who: &str, error: ApiError) -> Response {
    let route = route_of(request);
    let action = route.map_or("unknown_route", |r| r.action);
    gw.logger.emit(
        AuditRecord::new(AuditCategory::Access, action, who, "denied")
            .status(error.status.as_u16())
            .message(error.message.clone()),
    );
    answer_refusal(gw, request, route, action, error)
}

/// Answers a request refused before any handler (no key, no route): its request record and
/// its count in `truckllm_rejected_total{code}`, the error in the client's dialect.
pub fn answer_refusal(
    gw: &Gateway,
    request: &Request,
    route: Option<&crate::app::Route>,
    action: &str,
    error: ApiError,
) -> Response {
    if let Some(id) = request.extensions().get::<RequestId>() {
        let mut trace = Trace::start(&gw.logger, action, &id.0);
        trace.error(error.code);
        trace.status(error.status.as_u16());
    }
    crate::metrics::rejected(error.code);
    error.into_response_for(dialect_of(request, route))
}

/// The dialect to answer a request in: its route's, or Anthropic's for any request that
/// carries `anthropic-version` (Anthropic's SDKs and Claude Code send it on every call).
pub fn dialect_of(request: &Request, route: Option<&crate::app::Route>) -> Wire {
    match route.map(|r| r.wire) {
        Some(Wire::Anthropic) => Wire::Anthropic,
        _ if request.headers().contains_key("anthropic-version") => Wire::Anthropic,
        _ => Wire::OpenAi,
    }
}

/// The route a refused request matched, if any.
fn route_of(request: &Request) -> Option<&'static crate::app::Route> {
    let matched = request.extensions().get::<MatchedPath>()?;
    crate::app::route_named(request.method(), matched.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key_and_blanks_are_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static("sk-a"));
        assert_eq!(presented_key(&headers), Some("sk-a"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-b"),
        );
        assert_eq!(presented_key(&headers), Some("sk-b"), "bearer first");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  "));
        headers.remove("x-api-key");
        assert_eq!(presented_key(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&headers), None);
    }
}
