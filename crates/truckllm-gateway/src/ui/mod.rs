//! The dashboard, `/ui`: static pages served from the binary (HTML, CSS and vanilla JS
//! embedded with `include_str!`; no build step, nothing fetched from elsewhere) that read and
//! change everything through the admin API, signed in with an admin key.
//!
//! [`ROUTES`] is the dashboard's own route table, beside [`crate::app::ROUTES`] (which holds
//! the data API, `/admin/...`):
//! - `GET /ui/login`, its stylesheet and `POST /ui/login` are open: the sign-in page and the
//!   form it posts (an admin key, typed into a password field). A known key opens a session ([`session`]) and
//!   sets its cookie; anything else is the page again with a 401. Too many failed sign-ins
//!   are refused with a 429 for a while ([`sign_in_limit`]).
//! - A session's repeated reads of the admin API are audited once per interval, not per poll
//!   ([`read_audits`]).
//! - Everything else needs a live session: pages redirect to the sign-in page without one, the
//!   rest (`/ui/session`, assets, sign-out) answer 401. Sign-out needs the CSRF token.
//!
//! Every answer carries a strict `Content-Security-Policy` (same-origin scripts, styles and
//! fetches only; no framing), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//! no-referrer` and `Cache-Control: no-store`.
//!
//! Viewers get the same pages without change buttons (`/ui/session` tells the script the
//! role), and the admin layer refuses their changes whatever the page does.

pub mod read_audits;
pub mod session;
pub mod sign_in_limit;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use truckllm_config::governance::format_time_ms;
use truckllm_logging::{AuditCategory, AuditRecord};

use crate::admin::storage::StorageWatch;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::Gateway;
use session::Sessions;

/// The dashboard's state in the gateway.
#[derive(Debug, Default)]
pub struct UiState {
    pub sessions: Sessions,
    /// When each session's reads were last audited ([`read_audits`]).
    pub read_audits: read_audits::ReadAudits,
    /// Recent failed sign-ins ([`sign_in_limit`]).
    pub sign_in_limit: sign_in_limit::SignInLimit,
    /// The runtime store's degraded/recovered history (`GET /admin/storage`).
    pub storage: Arc<StorageWatch>,
}

/// Who may reach a dashboard route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiAccess {
    /// Anyone: the sign-in page and its form.
    SignIn,
    /// A session; without one a page redirects to the sign-in page.
    Page,
    /// A session; without one a 401.
    Session,
}

/// One dashboard route.
#[derive(Debug, Clone)]
pub struct UiRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: UiAccess,
}

const fn ui(method: Method, path: &'static str, access: UiAccess) -> UiRoute {
    UiRoute {
        method,
        path,
        access,
    }
}

/// Every dashboard route.
pub const ROUTES: &[UiRoute] = &[
    ui(Method::GET, "/ui/login", UiAccess::SignIn),
    ui(Method::POST, "/ui/login", UiAccess::SignIn),
    ui(Method::GET, "/ui/login.css", UiAccess::SignIn),
    ui(Method::GET, "/ui", UiAccess::Page),
    ui(Method::GET, "/ui/{page}", UiAccess::Page),
    ui(Method::GET, "/ui/session", UiAccess::Session),
    ui(Method::POST, "/ui/logout", UiAccess::Session),
    ui(Method::GET, "/ui/assets/{file}", UiAccess::Session),
];

/// The pages, as `/ui/{page}` names them; the first is `/ui` itself.
pub const PAGES: [&str; 6] = [
    "overview",
    "providers",
    "clients",
    "requests",
    "config",
    "storage",
];

const LOGIN_HTML: &str = include_str!("assets/login.html");
const LOGIN_CSS: &str = include_str!("assets/login.css");
const APP_HTML: &str = include_str!("assets/app.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Same-origin everything, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's router: [`ROUTES`], with the session layer on all but the sign-in ones.
pub fn router(gateway: Arc<Gateway>) -> Router<Arc<Gateway>> {
    let mut open = Router::new();
    let mut guarded = Router::new();
    for route in ROUTES {
        let handler = match (route.method.as_str(), route.path) {
            ("GET", "/ui/login") => get(login_page),
            ("POST", "/ui/login") => post(sign_in),
            ("GET", "/ui/login.css") => get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    LOGIN_CSS,
                )
                    .into_response()
            }),
            ("GET", "/ui") => get(|| async { page("overview") }),
            ("GET", "/ui/{page}") => get(|Path(name): Path<String>| async move { page(&name) }),
            ("GET", "/ui/session") => get(session_info),
            ("POST", "/ui/logout") => post(sign_out),
            ("GET", "/ui/assets/{file}") => get(asset),
            _ => continue,
        };
        let group = if route.access == UiAccess::SignIn {
            &mut open
        } else {
            &mut guarded
        };
        *group = std::mem::take(group).route(route.path, handler);
    }
    let guarded = guarded.layer(from_fn_with_state(gateway, require_session));
    open.merge(guarded)
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session layer: a live session's admin goes to the handler as an [`AdminCaller`];
/// without one, pages redirect to the sign-in page and the rest answer 401.
async fn require_session(
    State(gw): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
    let runtime = gw.runtime();
    let admitted = session::admit(
        &gw.ui.sessions,
        &runtime.admins,
        request.headers(),
        request.method(),
        gw.now_ms(),
    );
    let is_page = request.method() == Method::GET
        && !request.uri().path().starts_with("/ui/assets/")
        && request.uri().path() != "/ui/session";
    match admitted {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Ok(None) | Err(_) if is_page => Redirect::to("/ui/login").into_response(),
        Ok(None) => ApiError::unauthorized("sign in at /ui/login").into_response(),
        Err(e) => e.into_response(),
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The sign-in page, with `message` (already HTML-safe) shown above the form.
fn login_with(status: StatusCode, message: &str) -> Response {
    html(status, LOGIN_HTML.replace("<!--MESSAGE-->", message))
}

async fn login_page() -> Response {
    login_with(StatusCode::OK, "")
}

/// The dashboard's page `name` (one HTML shell; the script draws the page the path names).
fn page(name: &str) -> Response {
    if !PAGES.contains(&name) {
        return ApiError::not_found(format!(
            "no dashboard page `{}`; pages: {}",
            crate::error::clip(name, 64),
            PAGES.join(", ")
        ))
        .into_response();
    }
    html(StatusCode::OK, APP_HTML.to_owned())
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found("no such dashboard asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
}

impl std::fmt::Debug for SignIn {
    // The key is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { key: .. }")
    }
}

/// `POST /ui/login` (form field `key`): a session and its cookie, or the page again.
async fn sign_in(
    State(gw): State<Arc<Gateway>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let secure = session::over_tls(&headers);
    let runtime = gw.runtime();
    if runtime.admins.is_empty() {
        return login_with(
            StatusCode::NOT_FOUND,
            "The admin API is off: set <code>server.admin_keys</code> to use the dashboard.",
        );
    }
    let address = peer.map(|Extension(ConnectInfo(peer))| peer.ip());
    if let Err(wait) = gw.ui.sign_in_limit.check(address, gw.now_ms()) {
        return too_many_sign_ins(&gw, wait);
    }
    let key = form.map(|Form(f)| f.key).unwrap_or_default();
    let opened = gw
        .ui
        .sessions
        .sign_in(&runtime.admins, key.trim(), gw.now_ms());
    let Some((token, opened)) = opened else {
        gw.ui.sign_in_limit.failed(address, gw.now_ms());
        gw.logger.emit(
            AuditRecord::new(AuditCategory::Access, "ui.sign_in", "admin", "denied")
                .status(401)
                .message("unknown admin key"),
        );
        return login_with(
            StatusCode::UNAUTHORIZED,
            "That is not an admin key of this gateway.",
        );
    };
    gw.logger.emit(
        AuditRecord::new(
            AuditCategory::Admin,
            "ui.sign_in",
            opened.caller.id.clone(),
            "ok",
        )
        .status(303),
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::set_cookie(&token, secure)),
            (header::LOCATION, "/ui".to_owned()),
        ],
    )
        .into_response()
}

/// The sign-in page again with a 429 and `Retry-After`: too many failed sign-ins
/// ([`sign_in_limit`]); audited as a refusal.
fn too_many_sign_ins(gw: &Gateway, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    gw.logger.emit(
        AuditRecord::new(AuditCategory::Access, "ui.sign_in", "admin", "denied")
            .status(429)
            .message("too many failed sign-ins"),
    );
    let mut response = login_with(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many failed sign-ins: try again in {secs} s."),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// `POST /ui/logout`: ends the session (its CSRF token checked by the session layer).
async fn sign_out(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(admin): axum::Extension<AdminCaller>,
    request: Request,
) -> Response {
    let secure = session::over_tls(request.headers());
    if let Some(token) = session::cookie_token(request.headers()) {
        gw.ui.sessions.sign_out(token);
    }
    gw.logger
        .emit(AuditRecord::new(AuditCategory::Admin, "ui.sign_out", admin.id, "ok").status(204));
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::clear_cookie(secure))],
    )
        .into_response()
}

/// `GET /ui/session`: who is signed in, the role, and the CSRF token for changes.
async fn session_info(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let runtime = gw.runtime();
    let opened = session::cookie_token(request.headers())
        .and_then(|t| gw.ui.sessions.find(&runtime.admins, t, gw.now_ms()));
    let Some(opened) = opened else {
        return ApiError::unauthorized("sign in at /ui/login").into_response();
    };
    axum::Json(json!({
        "id": opened.caller.id,
        "role": if session::may_change(opened.caller.role) { "admin" } else { "viewer" },
        "csrf": opened.csrf,
        "expires_at": format_time_ms(opened.expires_ms),
        "config_version": runtime.version,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_are_small_and_self_contained() {
        let all = [LOGIN_HTML, LOGIN_CSS, APP_HTML, APP_JS, APP_CSS];
        let total: usize = all.iter().map(|t| t.len()).sum();
        assert!(total < 500 * 1024, "{total} bytes");
        for text in all {
            for remote in [
                "src=\"http",
                "href=\"http",
                "url(http",
                "fetch(\"http",
                "@import",
            ] {
                assert!(
                    !text.contains(remote),
                    "nothing fetched from elsewhere: {remote}"
                );
            }
        }
        assert!(LOGIN_HTML.contains("type=\"password\""));
        assert!(APP_HTML.contains("<nav"));
    }
}
