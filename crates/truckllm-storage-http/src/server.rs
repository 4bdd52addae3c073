//! `truckllm storage-server`: the HTTP storage protocol served from any runtime store (memory,
//! Redis) and, optionally, a config store.
//!
//! Every route but those in [`PUBLIC_ROUTES`] (`/health`) sits behind one auth layer and needs
//! a bearer token; each handler then checks the scope (`read`, `write`, `config`) and, for
//! tokens limited to some providers, that it may touch the providers named: 401 for a missing
//! or unknown token, 403 outside its scope. Writes are charged against the token's quota of
//! provider keys (507 `quota_exceeded` past it; a full store is 507 `store_full`). Every write
//! and every denied request leaves an audit record (who, what, when, outcome). Bad input gets
//! a 4xx with a JSON error and changes nothing. Store calls place window buckets by the
//! caller's clock (`x-truckllm-time-ms`, at most [`MAX_CLOCK_SKEW`] from ours, else 400), see
//! [`RequestClock`]; the store expires and evicts by its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde_json::json;
use truckllm_config::schema::LogSinkConfig;
use truckllm_config::{Config, ConfigError, ConfigStore, SaveMeta};
use truckllm_logging::{AuditCategory, AuditRecord, Logger};
use truckllm_store::{
    Clock, Increment, ProviderKey, RequestClock, ReserveRequest, RuntimeStore, RuntimeStoreExt,
    Series, StoreError, SystemClock,
};

use crate::protocol::*;
use crate::tokens::{Scope, Token, Tokens};

/// What the server serves, and who may call it.
pub struct ServerState {
    pub store: Arc<dyn RuntimeStore>,
    pub config: Option<Arc<dyn ConfigStore>>,
    pub tokens: Tokens,
    pub audit: Audit,
}

/// Audit records of the storage server: every write and every denied request, sent to the
/// logging store's sinks (and to `tracing` at target `truckllm::audit`). Tokens appear by
/// name only.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    logger: Logger,
}

impl Audit {
    pub fn new(logger: Logger) -> Self {
        Self { logger }
    }

    /// Audit records as JSON lines in `path` (a file sink with no request log). Needs a Tokio
    /// runtime: the sink runs as a task.
    pub fn to_file(path: &std::path::Path) -> Result<Self, truckllm_logging::SinkError> {
        let sink = truckllm_logging::file::audit_only(path);
        truckllm_logging::start(&[LogSinkConfig::File(sink)]).map(Self::new)
    }

    /// Waits until every record so far has reached its sinks.
    pub async fn flush(&self) {
        self.logger.flush().await;
    }

    /// Delivers what is queued and stops the sinks.
    pub async fn shutdown(&self) {
        self.logger.shutdown(Duration::from_secs(5)).await;
    }

    /// A change from version `old` to `new`.
    fn record_change(
        &self,
        who: &str,
        action: &str,
        target: &str,
        status: StatusCode,
        old: u64,
        new: u64,
    ) {
        self.logger.emit(
            AuditRecord::new(AuditCategory::Config, action, who, "ok")
                .target(target)
                .status(status.as_u16())
                .versions(Some(old), Some(new)),
        );
    }

    fn record(&self, who: &str, action: &str, target: &str, status: StatusCode) {
        let (category, outcome) = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (AuditCategory::Access, "denied"),
            s if s.is_success() => (AuditCategory::Storage, "ok"),
            _ => (AuditCategory::Storage, "failed"),
        };
        let category = if action.starts_with("config.") && category == AuditCategory::Storage {
            AuditCategory::Config
        } else {
            category
        };
        self.logger.emit(
            AuditRecord::new(category, action, who, outcome)
                .target(target)
                .status(status.as_u16()),
        );
    }
}

/// An error answer: status, machine code, message.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }
}

impl From<StoreError> for HttpError {
    /// Status and code as the error itself decides ([`StoreError::wire`]).
    fn from(e: StoreError) -> Self {
        let wire = e.wire();
        let status = StatusCode::from_u16(wire.status).unwrap_or(StatusCode::BAD_GATEWAY);
        Self::new(status, wire.code, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message,
                code: self.code.to_owned(),
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

type Reply = Result<Response, HttpError>;

/// Every route the server answers, as documented in `docs/storage-api.openapi.yaml`.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/usage"),
    ("get", "/rollups"),
    ("get", "/usage/{provider}/{keyId}/{metric}"),
    ("put", "/usage/{provider}/{keyId}/{metric}"),
    ("post", "/usage/{provider}/{keyId}/{metric}/increment"),
    ("post", "/batch/get"),
    ("post", "/batch/increment"),
    ("post", "/reserve"),
    ("post", "/batch/reserve"),
    ("post", "/reconcile"),
    ("post", "/periods/reserve"),
    ("post", "/periods/add"),
    ("post", "/periods/read"),
    ("get", "/config"),
    ("put", "/config"),
    ("get", "/docs/{key}"),
    ("put", "/docs/{key}"),
    ("delete", "/docs/{key}"),
];

/// The routes of [`ROUTES`] anyone may call without a token. Every other route is protected.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    // Load balancers and orchestrators probe it; it tells nothing but the store's health.
    ("get", "/health"),
];

/// Most a caller's `x-truckllm-time-ms` may differ from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The routes (see [`ROUTES`]). Auth is the default: each route is protected unless it is
/// added to the public router (and listed in [`PUBLIC_ROUTES`]).
pub fn router(state: Arc<ServerState>) -> Router {
    let public = Router::new().route("/health", get(health));
    let protected = Router::new()
        .route("/usage", get(list))
        .route("/rollups", get(rollups))
        .route(
            "/usage/{provider}/{key_id}/{metric}",
            get(get_usage).put(put_usage),
        )
        .route(
            "/usage/{provider}/{key_id}/{metric}/increment",
            post(increment),
        )
        .route("/batch/get", post(batch_get))
        .route("/batch/increment", post(batch_increment))
        .route("/reserve", post(reserve))
        .route("/batch/reserve", post(batch_reserve))
        .route("/reconcile", post(reconcile))
        .route("/periods/reserve", post(reserve_periods))
        .route("/periods/add", post(add_to_periods))
        .route("/periods/read", post(read_periods))
        .route("/config", get(get_config).put(put_config))
        .route("/docs/{key}", get(get_doc).put(put_doc).delete(delete_doc))
        // Runs on every route above, before its handler reads path, query or body:
        // 401 without a known token, 400 for a caller's clock out of bounds, then the
        // handler on the caller's clock with the token as its `Caller`.
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    public
        .merge(protected)
        // Unknown routes are 404 for everyone (no token needed to learn that).
        .fallback(|| async {
            HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        })
        .with_state(state)
}

fn unauthorized() -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or unknown bearer token",
    )
}

/// The auth layer of every protected route: checks the bearer token (a denial is audited),
/// reads the caller's clock, and runs the rest of the request on that clock with the token
/// in the request as its [`Caller`].
async fn authenticate(
    State(s): State<Arc<ServerState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = s.tokens.authenticate(authorization).cloned() else {
        let target = format!("{} {}", request.method(), request.uri().path());
        s.audit
            .record("-", "authenticate", &target, StatusCode::UNAUTHORIZED);
        return unauthorized().into_response();
    };
    let now = match caller_time(request.headers()) {
        Ok(now) => now,
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(Caller(token));
    RequestClock::scope(now, next.run(request)).await
}

/// The caller's clock (`x-truckllm-time-ms`), or ours when it sends none. It places window
/// buckets only (the store expires by its own clock), and may stray from ours by at most
/// [`MAX_CLOCK_SKEW`].
fn caller_time(headers: &HeaderMap) -> Result<u64, HttpError> {
    let ours = SystemClock.now_ms();
    let Some(value) = headers.get(TIME_HEADER) else {
        return Ok(ours);
    };
    let theirs: u64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "invalid_time",
                format!("{TIME_HEADER} must be whole Unix milliseconds"),
            )
        })?;
    let skew = theirs.abs_diff(ours);
    if u128::from(skew) > MAX_CLOCK_SKEW.as_millis() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "clock_skew",
            format!(
                "{TIME_HEADER} is {skew} ms from the server's clock; at most {} ms is accepted (run NTP)",
                MAX_CLOCK_SKEW.as_millis()
            ),
        ));
    }
    Ok(theirs)
}

/// The caller of a protected route, as the auth layer found it. A handler that takes a
/// `Caller` cannot run unauthenticated: outside the layer it answers 401.
#[derive(Debug, Clone)]
struct Caller(Arc<Token>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthorized)
    }
}

impl Caller {
    /// Checks the scope, and each provider touched (those the path names; bodies are checked
    /// with [`check_providers`] once read). Denials are audited.
    fn require(
        &self,
        state: &ServerState,
        scope: Scope,
        providers: &[&str],
        action: &str,
        target: &str,
    ) -> Result<&Token, HttpError> {
        let token = &self.0;
        if !token.has(scope) {
            state
                .audit
                .record(&token.name, action, target, StatusCode::FORBIDDEN);
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token `{}` lacks the {scope:?} scope", token.name),
            ));
        }
        check_providers(state, token, providers, action, target)?;
        Ok(token)
    }
}

/// Checks that `token` may touch every provider (once the body says which). Denials are
/// audited.
fn check_providers(
    state: &ServerState,
    token: &Token,
    providers: &[&str],
    action: &str,
    target: &str,
) -> Result<(), HttpError> {
    if let Some(provider) = providers.iter().find(|p| !token.may_touch(p)) {
        state
            .audit
            .record(&token.name, action, target, StatusCode::FORBIDDEN);
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token `{}` may not touch provider {provider:?}", token.name),
        ));
    }
    Ok(())
}

/// Charges the keys a write touches against its token's quota (by the server's clock).
fn charge(s: &ServerState, token: &Token, keys: &[&ProviderKey]) -> Result<(), HttpError> {
    token.charge(keys, SystemClock.now_ms()).map_err(|e| {
        HttpError::from(StoreError::QuotaExceeded {
            backend: s.store.backend(),
            detail: e.to_string(),
        })
    })
}

async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, HttpError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("bad JSON body: {e}"),
        )
    })
}

fn series_of(
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Series, HttpError> {
    let Path((provider, key_id, metric)) =
        path.map_err(|e| HttpError::bad(format!("bad path: {e}")))?;
    Ok(Series::new(provider, key_id, metric.parse()?)?)
}

fn number(value: f64) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Audits a write's outcome and passes it on.
fn audited(state: &ServerState, who: &str, action: &str, target: &str, reply: Reply) -> Reply {
    let status = match &reply {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    state.audit.record(who, action, target, status);
    reply
}

async fn health(State(s): State<Arc<ServerState>>) -> Response {
    let w = s.store.windowing();
    let (status, code, reason) = match s.store.health().await {
        Ok(()) => (StatusCode::OK, "ok", None),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Some(e.to_string()),
        ),
    };
    let body = HealthResponse {
        status: code.into(),
        reason,
        bucket_ms: w.bucket_ms(),
        max_window_seconds: w.max_window().as_secs(),
    };
    (status, axum::Json(body)).into_response()
}

/// Documents need the `docs` scope, which only unlimited tokens can hold (see
/// [`crate::tokens`]): they belong to no provider and hold what clients said.
fn require_docs<'a>(
    s: &ServerState,
    caller: &'a Caller,
    action: &str,
    key: &str,
) -> Result<&'a Token, HttpError> {
    caller.require(s, Scope::Docs, &[], action, key)
}

async fn get_doc(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    Path(key): Path<String>,
) -> Reply {
    require_docs(&s, &caller, "docs.get", &key)?;
    let value = s.store.get_doc(&key).await?;
    let body = DocResponse {
        value_b64: value.map(|v| BASE64.encode(v)),
    };
    Ok(axum::Json(body).into_response())
}

async fn put_doc(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    Path(key): Path<String>,
    body: Body,
) -> Reply {
    let token = require_docs(&s, &caller, "docs.put", &key)?;
    let reply = async {
        let bytes = axum::body::to_bytes(body, MAX_DOC_BODY_BYTES)
            .await
            .map_err(|_| {
                HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("body larger than {MAX_DOC_BODY_BYTES} bytes"),
                )
            })?;
        let PutDocBody { value_b64, ttl_ms } = serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::bad(format!("bad JSON body: {e}")))?;
        let value = BASE64
            .decode(value_b64)
            .map_err(|e| HttpError::bad(format!("`value_b64` is not base64: {e}")))?;
        s.store
            .put_doc(&key, &value, Duration::from_millis(ttl_ms))
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audited(&s, &token.name, "docs.put", &key, reply)
}

async fn delete_doc(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    Path(key): Path<String>,
) -> Reply {
    let token = require_docs(&s, &caller, "docs.delete", &key)?;
    let reply = async {
        let deleted = s.store.delete_doc(&key).await?;
        Ok(axum::Json(DeletedResponse { deleted }).into_response())
    }
    .await;
    audited(&s, &token.name, "docs.delete", &key, reply)
}

async fn get_usage(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let series = series_of(path)?;
    let target = series.to_string();
    caller.require(&s, Scope::Read, &[series.provider()], "usage.get", &target)?;
    let value = match query.get("window") {
        Some(w) => {
            let secs: f64 = w
                .parse()
                .map_err(|_| HttpError::bad(format!("window={w:?} is not a number of seconds")))?;
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                return Err(HttpError::bad(format!("window={w} is out of range")));
            }
            s.store
                .window(&series, Duration::from_secs_f64(secs))
                .await?
        }
        None => s.store.get(&series).await?,
    };
    Ok(number(value))
}

async fn put_usage(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Body,
) -> Reply {
    let series = series_of(path)?;
    let target = series.to_string();
    let token = caller.require(&s, Scope::Write, &[series.provider()], "usage.set", &target)?;
    let reply = async {
        let SetBody { value } = read_json(body).await?;
        charge(&s, token, &[series.key()])?;
        s.store.set(&series, value).await?;
        Ok(number(value))
    }
    .await;
    audited(&s, &token.name, "usage.set", &target, reply)
}

async fn increment(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let series = series_of(path)?;
    let target = series.to_string();
    let action = "usage.increment";
    let token = caller.require(&s, Scope::Write, &[series.provider()], action, &target)?;
    let reply = async {
        let IncrementBody { delta } = read_json(body).await?;
        let increments = [Increment::new(series.clone(), delta)];
        let values = apply_increments(&s, token, &headers, &increments).await?;
        Ok(number(values.first().copied().unwrap_or_default()))
    }
    .await;
    audited(&s, &token.name, action, &target, reply)
}

async fn apply_increments(
    s: &ServerState,
    token: &Token,
    headers: &HeaderMap,
    increments: &[Increment],
) -> Result<Vec<f64>, HttpError> {
    let keys: Vec<&ProviderKey> = increments.iter().map(|i| i.series.key()).collect();
    charge(s, token, &keys)?;
    Ok(match idempotency_key(headers) {
        Some(key) => s.store.increment_many_once(&key, increments).await?,
        None => s.store.increment_many(increments).await?,
    })
}

async fn list(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let token = caller.require(&s, Scope::Read, &[], "usage.list", &prefix)?;
    let listed = s.store.list(&prefix).await?;
    let series = listed
        .into_iter()
        .filter(|l| token.may_touch(l.series.provider()))
        .map(|l| ListedRef {
            series: SeriesRef::from_series(&l.series),
            value: l.value,
            ttl_ms: l
                .ttl
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        })
        .collect();
    Ok(axum::Json(ListResponse { series }).into_response())
}

async fn rollups(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let since_ms = match query.get("since_ms") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            HttpError::bad(format!(
                "since_ms must be a whole number of Unix ms, not {v:?}"
            ))
        })?,
    };
    let token = caller.require(&s, Scope::Read, &[], "usage.rollups", &prefix)?;
    let found = s.store.rollups(&prefix, since_ms).await?;
    let series = found
        .into_iter()
        .filter(|r| token.may_touch(r.series.provider()))
        .map(|r| RollupRef {
            series: SeriesRef::from_series(&r.series),
            points: r
                .points
                .iter()
                .map(|p| PointRef {
                    start_ms: p.start_ms,
                    value: p.value,
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(RollupsResponse { series }).into_response())
}

fn parse_series(refs: &[SeriesRef]) -> Result<Vec<Series>, HttpError> {
    refs.iter()
        .map(|r| r.to_series().map_err(HttpError::from))
        .collect()
}

async fn batch_get(State(s): State<Arc<ServerState>>, caller: Caller, body: Body) -> Reply {
    let token = caller.require(&s, Scope::Read, &[], "batch.get", "batch")?;
    let BatchGetBody {
        series,
        window_seconds,
    } = read_json(body).await?;
    let series = parse_series(&series)?;
    let providers: Vec<&str> = series.iter().map(Series::provider).collect();
    check_providers(
        &s,
        token,
        &providers,
        "batch.get",
        &format!("{} series", series.len()),
    )?;
    let values = match window_seconds {
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            let window = Duration::from_secs_f64(secs);
            s.store.window_many(&series, window).await?
        }
        Some(secs) => {
            return Err(HttpError::bad(format!(
                "window_seconds {secs} is out of range"
            )));
        }
        None => s.store.get_many(&series).await?,
    };
    Ok(axum::Json(ValuesResponse { values }).into_response())
}

async fn batch_increment(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "batch.increment", "batch")?;
    let BatchIncrementBody { increments } = read_json(body).await?;
    let increments: Vec<Increment> = increments
        .iter()
        .map(|i| Ok(Increment::new(i.series.to_series()?, i.delta)))
        .collect::<Result<_, StoreError>>()?;
    let providers: Vec<&str> = increments.iter().map(|i| i.series.provider()).collect();
    let target = format!("{} increments", increments.len());
    check_providers(&s, token, &providers, "batch.increment", &target)?;
    let reply = apply_increments(&s, token, &headers, &increments)
        .await
        .map(|values| axum::Json(ValuesResponse { values }).into_response());
    audited(&s, &token.name, "batch.increment", &target, reply)
}

async fn reserve(State(s): State<Arc<ServerState>>, caller: Caller, body: Body) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "reserve", "reserve")?;
    let body: ReserveBody = read_json(body).await?;
    let key = ProviderKey::new(body.provider.clone(), body.key_id.clone())?;
    let target = key.encoded();
    check_providers(&s, token, &[key.provider()], "reserve", &target)?;
    let reply = async {
        let request = body.to_request()?;
        charge(&s, token, &[&key])?;
        let outcome = s.store.reserve(&request).await?;
        Ok(axum::Json(ReserveResponse::from_outcome(&outcome)).into_response())
    }
    .await;
    audited(&s, &token.name, "reserve", &target, reply)
}

/// Many reservations: every provider they touch is checked before any is made, and a bad one
/// refuses the whole batch.
async fn batch_reserve(State(s): State<Arc<ServerState>>, caller: Caller, body: Body) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "batch.reserve", "batch")?;
    let BatchReserveBody { reservations } = read_json(body).await?;
    let keys = reservations
        .iter()
        .map(|r| ProviderKey::new(r.provider.clone(), r.key_id.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let providers: Vec<&str> = keys.iter().map(|k| k.provider()).collect();
    let target = format!("{} reservations", reservations.len());
    check_providers(&s, token, &providers, "batch.reserve", &target)?;
    let reply = async {
        let requests = reservations
            .iter()
            .map(ReserveBody::to_request)
            .collect::<Result<Vec<ReserveRequest>, _>>()?;
        charge(&s, token, &keys.iter().collect::<Vec<_>>())?;
        let outcomes = s.store.reserve_many(&requests).await?;
        let outcomes = outcomes.iter().map(ReserveResponse::from_outcome).collect();
        Ok(axum::Json(BatchReserveResponse { outcomes }).into_response())
    }
    .await;
    audited(&s, &token.name, "batch.reserve", &target, reply)
}

async fn reconcile(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "reconcile", "reconcile")?;
    let body: ReconcileBody = read_json(body).await?;
    let reservation = body.reservation.to_reservation()?;
    let target = reservation.key.encoded();
    check_providers(
        &s,
        token,
        &[reservation.key.provider()],
        "reconcile",
        &target,
    )?;
    let reply = async {
        let actual = parse_metric_amounts(&body.actual)?;
        charge(&s, token, &[&reservation.key])?;
        match idempotency_key(&headers) {
            Some(key) => s.store.reconcile_once(&key, reservation, &actual).await?,
            None => s.store.reconcile(reservation, &actual).await?,
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audited(&s, &token.name, "reconcile", &target, reply)
}

/// Budgets' period counters: checked and reserved together for one key (scope `write`).
async fn reserve_periods(State(s): State<Arc<ServerState>>, caller: Caller, body: Body) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "periods.reserve", "periods")?;
    let body: PeriodReserveBody = read_json(body).await?;
    let key = ProviderKey::new(body.provider.clone(), body.key_id.clone())?;
    let target = key.encoded();
    check_providers(&s, token, &[key.provider()], "periods.reserve", &target)?;
    let reply = async {
        let request = body.to_request()?;
        charge(&s, token, &[&key])?;
        let outcome = s.store.reserve_periods(&request).await?;
        Ok(axum::Json(PeriodReserveResponse::from_outcome(outcome)).into_response())
    }
    .await;
    audited(&s, &token.name, "periods.reserve", &target, reply)
}

/// Deltas to period counters of one key, once per `Idempotency-Key` if one is sent (scope
/// `write`).
async fn add_to_periods(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let token = caller.require(&s, Scope::Write, &[], "periods.add", "periods")?;
    let body: PeriodAddBody = read_json(body).await?;
    let key = ProviderKey::new(body.provider.clone(), body.key_id.clone())?;
    let target = key.encoded();
    check_providers(&s, token, &[key.provider()], "periods.add", &target)?;
    let reply = async {
        let adds = body.to_adds()?;
        charge(&s, token, &[&key])?;
        let batch_id = idempotency_key(&headers);
        s.store
            .add_to_periods(&key, batch_id.as_deref(), &adds)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audited(&s, &token.name, "periods.add", &target, reply)
}

/// Sums of period counters of one key (scope `read`).
async fn read_periods(State(s): State<Arc<ServerState>>, caller: Caller, body: Body) -> Reply {
    let token = caller.require(&s, Scope::Read, &[], "periods.read", "periods")?;
    let body: PeriodReadBody = read_json(body).await?;
    let key = ProviderKey::new(body.provider.clone(), body.key_id.clone())?;
    check_providers(&s, token, &[key.provider()], "periods.read", &key.encoded())?;
    let values = s.store.read_periods(&key, &body.to_reads()?).await?;
    Ok(axum::Json(ValuesResponse { values }).into_response())
}

fn config_store(s: &ServerState) -> Result<&Arc<dyn ConfigStore>, HttpError> {
    s.config.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "no_config_store",
            "this server has no config store (--config-store)",
        )
    })
}

fn config_error(e: ConfigError) -> HttpError {
    match e {
        ConfigError::Conflict { .. } => HttpError::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            e.to_string(),
        ),
        ConfigError::Parse(_)
        | ConfigError::Invalid(_)
        | ConfigError::Interpolation(_)
        | ConfigError::Crypto(_) => HttpError::bad(e.to_string()),
        other => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config_store_error",
            other.to_string(),
        ),
    }
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The current config, redacted (literal secrets, reference defaults and URL passwords as
/// `[REDACTED]`) unless the token also holds `config_secrets`; a clear read is audited.
async fn get_config(State(s): State<Arc<ServerState>>, caller: Caller) -> Reply {
    let token = caller.require(&s, Scope::Config, &[], "config.get", "config")?;
    let current = config_store(&s)?.load().await.map_err(config_error)?;
    let config = truckllm_config::parse(&current.text).map_err(config_error)?;
    let config = if token.has(Scope::ConfigSecrets) {
        s.audit
            .record(&token.name, "config.get_secrets", "config", StatusCode::OK);
        config
    } else {
        config.redacted()
    };
    let mut response = axum::Json(config).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(current.info.version));
    Ok(response)
}

async fn put_config(
    State(s): State<Arc<ServerState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let who = caller
        .require(&s, Scope::Config, &[], "config.put", "config")?
        .name
        .clone();
    let reply = async {
        let store = config_store(&s)?;
        let config: Config = read_json(body).await?;
        let current = store.load().await.map_err(config_error)?.info.version;
        let expected = match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
            Some(tag) => tag
                .trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .parse::<u64>()
                .map_err(|_| HttpError::bad(format!("If-Match {tag:?} is not a version ETag")))?,
            None => current,
        };
        let meta = SaveMeta::new(who.clone(), format!("PUT /config (was version {current})"));
        let version = store
            .save(&config, expected, meta)
            .await
            .map_err(config_error)?;
        let mut response =
            axum::Json(json!({"version": version, "previous": current})).into_response();
        response.headers_mut().insert(header::ETAG, etag(version));
        Ok((response, current, version))
    }
    .await;
    // A config change is audited with its old and new version.
    match reply {
        Ok((response, old, new)) => {
            s.audit
                .record_change(&who, "config.put", "config", response.status(), old, new);
            Ok(response)
        }
        Err(e) => audited(&s, &who, "config.put", "config", Err(e)),
    }
}

/// Loads a rustls server config from PEM files.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("bad certificate or key: {e}"))?;
    Ok(Arc::new(config))
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `shutdown` resolves, with
/// the default connection limits; see [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        app,
        tls,
        truckllm_http_serve::Limits::default(),
        shutdown,
    )
    .await
}

/// Serves `app` on `listener`, over TLS when `tls` is given, within `limits` (header, body,
/// idle and TLS-handshake timeouts, a connection cap), until `shutdown` resolves; then lets
/// requests in flight finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: truckllm_http_serve::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    truckllm_http_serve::serve(listener, app, tls, limits, shutdown).await
}
