//! Dashboard sessions: signing in with an admin key gives a session cookie that the admin
//! layer ([`crate::auth::admin`]) accepts beside the bearer key.
//!
//! Sessions live in this instance's memory, keyed by the SHA-256 of a random 32-byte token
//! (the cookie's value). Chosen over signed cookies because signing out, or removing the admin
//! key from the config, ends a session at once, and there is no server secret to keep, share
//! and rotate. The cost: a restarted instance, or another replica behind a load balancer
//! without affinity, asks to sign in again.
//!
//! A session remembers the digest of the admin key it was opened with, and every use looks
//! that digest up in the running config's admin identities: a key removed or demoted to
//! `viewer` in a new config version takes effect on its sessions at the next request.
//!
//! The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, with a `Max-Age` of
//! [`SESSION_TTL`], and `Secure` when the request came over TLS (a proxy in front says so with
//! `X-Forwarded-Proto: https`; the gateway itself serves plain HTTP). Every change made with a
//! session (any method but GET and HEAD) must also carry the session's CSRF token in the
//! `x-csrf-token` header, compared in constant time.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use subtle::ConstantTimeEq;
use truckllm_config::schema::AdminRole;

use crate::auth::{AdminCaller, Admins, digest};
use crate::error::ApiError;

/// The cookie's name.
pub const COOKIE: &str = "truckllm_session";
/// The header a change made with a session carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after signing in.
pub const SESSION_TTL_SECS: u64 = 8 * 3600;
/// Most sessions kept at once; beyond it the one closest to expiry goes.
const MAX_SESSIONS: usize = 1024;

/// One signed-in admin.
#[derive(Debug, Clone)]
struct Session {
    /// SHA-256 of the admin key signed in with (never the key).
    key_digest: [u8; 32],
    csrf: String,
    expires_ms: u64,
}

/// What the dashboard's script learns about its session (`GET /ui/session`).
#[derive(Debug, Clone)]
pub struct Opened {
    pub caller: AdminCaller,
    pub csrf: String,
    pub expires_ms: u64,
}

/// The sessions of this instance.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(truckllm_config::secret::random_bytes())
}

impl Sessions {
    /// Signs in with `key`: the new session's cookie token and what it opened, or `None`
    /// when `key` is no admin identity of `admins`.
    pub fn sign_in(&self, admins: &Admins, key: &str, now_ms: u64) -> Option<(String, Opened)> {
        let key_digest = digest(key.as_bytes());
        let caller = admins.by_digest(&key_digest)?.clone();
        let token = random_token();
        let session = Session {
            key_digest,
            csrf: random_token(),
            expires_ms: now_ms + SESSION_TTL_SECS * 1000,
        };
        let key = digest(token.as_bytes());
        let opened = Opened {
            caller: AdminCaller {
                session: Some(key),
                ..caller
            },
            csrf: session.csrf.clone(),
            expires_ms: session.expires_ms,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires_ms > now_ms);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(key, session);
        Some((token, opened))
    }

    /// Ends the session of `token`; whether there was one.
    pub fn sign_out(&self, token: &str) -> bool {
        self.lock().remove(&digest(token.as_bytes())).is_some()
    }

    /// The live session of `token`, its identity as the running config says now.
    pub fn find(&self, admins: &Admins, token: &str, now_ms: u64) -> Option<Opened> {
        let key = digest(token.as_bytes());
        let mut sessions = self.lock();
        let session = sessions.get(&key)?.clone();
        if session.expires_ms <= now_ms {
            sessions.remove(&key);
            return None;
        }
        let Some(caller) = admins.by_digest(&session.key_digest) else {
            // The admin key left the config: its sessions end with it.
            sessions.remove(&key);
            return None;
        };
        Some(Opened {
            caller: AdminCaller {
                session: Some(key),
                ..caller.clone()
            },
            csrf: session.csrf,
            expires_ms: session.expires_ms,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves a consistent map: every change is one call.
        self.by_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session token the request's cookie carries.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the request reached us over TLS: the gateway serves plain HTTP, so only a proxy in
/// front that terminated TLS and says so (`X-Forwarded-Proto: https`).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that stores `token`.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL_SECS}{secure}"
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Whether `method` changes something, and so needs the CSRF token.
pub fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The admin a session request is made by, checked for its CSRF token when it changes
/// something. `Ok(None)`: the request carries no session cookie at all.
pub fn admit(
    sessions: &Sessions,
    admins: &Admins,
    headers: &HeaderMap,
    method: &Method,
    now_ms: u64,
) -> Result<Option<AdminCaller>, ApiError> {
    let Some(token) = cookie_token(headers) else {
        return Ok(None);
    };
    let opened = sessions.find(admins, token, now_ms).ok_or_else(|| {
        ApiError::unauthorized("the dashboard session has expired or was signed out; sign in again")
    })?;
    if changes(method) {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(opened.csrf.as_bytes())) {
            return Err(ApiError::forbidden(
                "a change made with a dashboard session needs its CSRF token in x-csrf-token",
            )
            .with_code("csrf"));
        }
    }
    Ok(Some(opened.caller))
}

/// Whether a role may change things.
pub fn may_change(role: AdminRole) -> bool {
    role == AdminRole::Admin
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn admins() -> Admins {
        let config: truckllm_config::Config = serde_saphyr::from_str(
            "server:\n  admin_keys:\n    - {id: ops, key: ops-key, role: admin}\n    - {id: eye, key: eye-key, role: viewer}\n",
        )
        .expect("config");
        Admins::from_config(&config)
    }

    fn with_cookie(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={token}");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&cookie).expect("cookie"),
        );
        headers
    }

    #[test]
    fn a_session_needs_a_known_key_expires_and_ends_on_sign_out() {
        let sessions = Sessions::default();
        let admins = admins();
        assert!(sessions.sign_in(&admins, "wrong", 0).is_none());
        let (token, opened) = sessions
            .sign_in(&admins, "eye-key", 1000)
            .expect("signed in");
        assert_eq!(opened.caller.id, "eye");
        assert_eq!(opened.caller.role, AdminRole::Viewer);
        assert!(sessions.find(&admins, &token, 2000).is_some());
        assert!(sessions.find(&admins, "forged", 2000).is_none());
        let later = 1000 + SESSION_TTL_SECS * 1000;
        assert!(sessions.find(&admins, &token, later).is_none(), "expired");
        let (token, _) = sessions.sign_in(&admins, "ops-key", 0).expect("signed in");
        assert!(sessions.sign_out(&token));
        assert!(sessions.find(&admins, &token, 1).is_none(), "signed out");
    }

    #[test]
    fn a_session_ends_when_its_key_leaves_the_config() {
        let sessions = Sessions::default();
        let (token, _) = sessions
            .sign_in(&admins(), "ops-key", 0)
            .expect("signed in");
        assert!(sessions.find(&Admins::default(), &token, 1).is_none());
        assert!(
            sessions.find(&admins(), &token, 1).is_none(),
            "gone for good"
        );
    }

    #[test]
    fn changes_need_the_csrf_token_and_reads_do_not() {
        let sessions = Sessions::default();
        let admins = admins();
        let (token, opened) = sessions.sign_in(&admins, "ops-key", 0).expect("signed in");
        let mut headers = with_cookie(&token);
        let read = admit(&sessions, &admins, &headers, &Method::GET, 1).expect("read");
        assert_eq!(read.expect("session").id, "ops");
        let refused = admit(&sessions, &admins, &headers, &Method::POST, 1).expect_err("no token");
        assert_eq!(refused.status.as_u16(), 403);
        headers.insert(CSRF_HEADER, HeaderValue::from_static("guess"));
        assert!(admit(&sessions, &admins, &headers, &Method::DELETE, 1).is_err());
        headers.insert(
            CSRF_HEADER,
            HeaderValue::from_str(&opened.csrf).expect("token"),
        );
        assert!(admit(&sessions, &admins, &headers, &Method::POST, 1).is_ok());
        assert_eq!(
            admit(&sessions, &admins, &HeaderMap::new(), &Method::GET, 1).expect("none"),
            None
        );
        let stale = with_cookie("stale");
        assert_eq!(
            admit(&sessions, &admins, &stale, &Method::GET, 1)
                .expect_err("stale")
                .status
                .as_u16(),
            401
        );
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_under_tls() {
        let cookie = set_cookie("t", true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=28800",
            "Path=/",
        ] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie("t", false).contains("Secure"));
        let mut headers = HeaderMap::new();
        assert!(!over_tls(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&headers));
    }
}
