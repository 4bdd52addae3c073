//! The OpenAI-compatible endpoints: `POST /v1/chat/completions` (streaming or not),
//! `POST /v1/embeddings` and `GET /v1/models`.
//!
//! A request is authenticated, parsed once, resolved to targets the client may use, and then
//! tried key by key in the balancer's order: reserve the key's limits (one store call), call
//! the provider, and on a 429, a 5xx or a transport error try the next key, then the next
//! target, within the attempt and time budget. Bodies pass through unchanged except for the
//! model name (and `stream_options.include_usage`, which the gateway needs; the usage chunk is
//! stripped again if the client did not ask for it). Responses are returned as received;
//! streams chunk by chunk.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use truckllm_store::{LimitCheck, Metric, ProviderKey, ReserveOutcome, ReserveRequest};

use crate::attempt::{Attempt, Outcome, settle_client_only};
use crate::auth::Caller;
use crate::clients::Client;
use crate::error::{ApiError, clip};
use crate::routing::{Key, Target};
use crate::snapshot::WINDOW;
use crate::state::{Gateway, Runtime};
use crate::trace::{RequestId, Trace};
use crate::upstream::{ReadBody, UpstreamError, UpstreamResponse};
use crate::usage::{self, SseScanner, Usage};
use truckllm_logging::{AuditCategory, AuditRecord};

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;
/// Largest non-streaming response body read from a provider.
const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Longest model name accepted; longer names are refused, not copied into records.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// Largest `max_tokens` accepted: far above any model's output, far below what would overflow
/// a counter.
pub const MAX_TOKENS_LIMIT: u64 = 100_000_000;
/// Provider id under which per-client limits are counted in the store.
pub const CLIENTS_NAMESPACE: &str = "_clients";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
        }
    }

    fn url(self, provider: &crate::routing::Provider) -> &Uri {
        match self {
            Endpoint::Chat => &provider.chat_url,
            Endpoint::Embeddings => &provider.embeddings_url,
        }
    }
}

pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, caller, &id, headers, body, Endpoint::Chat).await
}

pub async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, caller, &id, headers, body, Endpoint::Embeddings).await
}

/// Runs one proxied request with its trace.
async fn handle(
    gw: Arc<Gateway>,
    caller: Caller,
    request_id: &RequestId,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let mut trace = Trace::start(&gw.logger, endpoint.name(), &request_id.0);
    let result = proxy(Arc::clone(&gw), caller, headers, body, endpoint, &mut trace).await;
    if let Err(e) = &result {
        trace.error(e.code);
        audit_denial(&gw, e, endpoint.name());
    }
    let response = respond(result);
    trace.status(response.status().as_u16());
    response
}

/// A 403 leaves an audit record of category `access`: the action refused (`chat`,
/// `embeddings`, `models`), the status and why; never the key. (401s are refused, and
/// audited, by [`crate::auth`] before a handler runs.)
fn audit_denial(gw: &Gateway, e: &ApiError, action: &str) {
    if e.status == StatusCode::FORBIDDEN {
        gw.logger.emit(
            AuditRecord::new(AuditCategory::Access, action, "client", "denied")
                .status(e.status.as_u16())
                .message(e.message.clone()),
        );
    }
}

/// `GET /v1/models`: the models the caller may use.
pub async fn models(Extension(caller): Extension<Caller>) -> Response {
    let data: Vec<Value> = caller
        .runtime
        .routes
        .model_names(&caller.client)
        .iter()
        .map(|id| model_object(id))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`: one model the caller may use, else 404 as OpenAI answers.
pub async fn model(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Response {
    let names = caller.runtime.routes.model_names(&caller.client);
    match names.iter().find(|name| name.as_str() == id) {
        Some(name) => axum::Json(model_object(name)).into_response(),
        None => respond(Err(ApiError::model_not_found(&clip(
            &id,
            MAX_MODEL_NAME_BYTES,
        )))),
    }
}

fn model_object(id: &str) -> Value {
    let owner = id.split_once(':').map_or("truckllm", |(p, _)| p);
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        crate::metrics::rejected(e.code);
        e.into_response()
    })
}

/// What the request asks for, parsed once.
struct Request {
    body: Map<String, Value>,
    model: String,
    stream: bool,
    strip_usage: bool,
    estimate: f64,
}

async fn proxy(
    gw: Arc<Gateway>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
    trace: &mut Trace,
) -> Result<Response, ApiError> {
    let Caller {
        runtime: rt,
        client,
    } = caller;
    let client = client.as_ref();
    trace.client(&client.id);
    let mut request = parse(&headers, body, endpoint, rt.policy.default_max_tokens).await?;
    trace.model(&request.model, request.stream);
    let targets = rt.routes.resolve(&request.model, client)?;
    let client_hold = match reserve_client(&gw, client, request.estimate).await {
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            trace.rate_limited();
            return Err(e);
        }
        other => other?,
    };
    attempt_all(gw, rt, &targets, &mut request, endpoint, client_hold, trace).await
}

async fn parse(
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
    default_max_tokens: u32,
) -> Result<Request, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::unsupported_media_type(format!(
            "send the request as Content-Type: application/json (got {:?})",
            content_type
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(ApiError::payload_too_large(MAX_REQUEST_BYTES));
    }
    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| ApiError::payload_too_large(MAX_REQUEST_BYTES))?;
    let mut body: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not a JSON object: {e}"),
        )
    })?;
    let model = match body.get("model") {
        Some(Value::String(m)) if m.len() > MAX_MODEL_NAME_BYTES => {
            return Err(ApiError::bad_request(
                "invalid_model",
                format!(
                    "`model` is {} bytes long; model names are at most {MAX_MODEL_NAME_BYTES} bytes",
                    m.len()
                ),
            ));
        }
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_model",
                "`model` must be a non-empty string",
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "missing_model",
                "`model` is required",
            ));
        }
    };
    let stream =
        endpoint == Endpoint::Chat && body.get("stream").and_then(Value::as_bool) == Some(true);
    let asked_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    if stream && !asked_usage {
        let options = body.entry("stream_options").or_insert_with(|| json!({}));
        match options {
            Value::Object(map) => {
                map.insert("include_usage".into(), Value::Bool(true));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_stream_options",
                    "`stream_options` must be an object",
                ));
            }
        }
    }
    let estimate = match endpoint {
        Endpoint::Chat => match max_tokens(&body)? {
            Some(n) => n,
            None => f64::from(default_max_tokens),
        },
        Endpoint::Embeddings => (text_len(body.get("input")) as f64 / 4.0).ceil().max(1.0),
    };
    Ok(Request {
        body,
        model,
        stream,
        strip_usage: stream && !asked_usage,
        estimate,
    })
}

/// `max_completion_tokens` (or the older `max_tokens`): absent, or a whole number from 1 to
/// [`MAX_TOKENS_LIMIT`]. Anything else is the client's error, answered before the store is
/// asked to reserve it.
fn max_tokens(body: &Map<String, Value>) -> Result<Option<f64>, ApiError> {
    let Some((field, value)) = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
    else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(n) if (1..=MAX_TOKENS_LIMIT).contains(&n) => Ok(Some(n as f64)),
        _ => Err(ApiError::bad_request(
            "invalid_max_tokens",
            format!(
                "`{field}` must be a whole number from 1 to {MAX_TOKENS_LIMIT} (got {})",
                clip(&value.to_string(), 64)
            ),
        )),
    }
}

fn text_len(value: Option<&Value>) -> usize {
    match value {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(items)) => items.iter().map(|v| text_len(Some(v))).sum(),
        Some(other) => other.to_string().len(),
        None => 0,
    }
}

fn limit_checks(
    req_per_min: Option<f64>,
    tokens_per_min: Option<f64>,
    estimate: f64,
) -> Vec<LimitCheck> {
    let mut checks = Vec::new();
    if let Some(limit) = req_per_min {
        checks.push(LimitCheck {
            metric: Metric::Req,
            limit,
            window: WINDOW,
            amount: 1.0,
        });
    }
    if let Some(limit) = tokens_per_min {
        checks.push(LimitCheck {
            metric: Metric::Tokens,
            limit,
            window: WINDOW,
            amount: estimate,
        });
    }
    checks
}

/// Reserves against `key`'s limits; without limits nothing is asked of the store.
async fn reserve(
    gw: &Gateway,
    key: &ProviderKey,
    checks: Vec<LimitCheck>,
) -> Result<ReserveOutcome, ApiError> {
    if checks.is_empty() {
        return Ok(ReserveOutcome::Granted(truckllm_store::Reservation {
            key: key.clone(),
            at_ms: gw.now_ms(),
            reserved: Vec::new(),
        }));
    }
    let request = ReserveRequest {
        key: key.clone(),
        checks,
        id: None,
    };
    gw.store.reserve(&request).await.map_err(|e| {
        if e.is_caller_fault() {
            ApiError::bad_request(
                "invalid_request",
                format!("the request cannot be metered: {e}"),
            )
        } else {
            ApiError::store_unavailable(format!(
                "usage store unavailable, refusing to guess limits: {e}"
            ))
        }
    })
}

async fn reserve_client(
    gw: &Gateway,
    client: &Client,
    estimate: f64,
) -> Result<Option<truckllm_store::Reservation>, ApiError> {
    let Some(limits) = client.limits else {
        return Ok(None);
    };
    let key = ProviderKey::new(CLIENTS_NAMESPACE, client.id.clone())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match reserve(
        gw,
        &key,
        limit_checks(limits.req_per_min, limits.tokens_per_min, estimate),
    )
    .await?
    {
        ReserveOutcome::Granted(r) => Ok(Some(r)),
        ReserveOutcome::Denied(d) => Err(ApiError::rate_limited(
            format!(
                "client `{}` is over its {} limit ({} of {} per minute)",
                client.id, d.metric, d.used, d.limit
            ),
            d.retry_after,
        )),
    }
}

fn key_order(gw: &Gateway, rt: &Runtime, provider: usize) -> Vec<usize> {
    let keys = &rt.routes.providers[provider].keys;
    let candidates: Vec<crate::balancer::Candidate<'_>> = keys
        .iter()
        .enumerate()
        .map(|(k, key)| crate::balancer::Candidate {
            key,
            health: &rt.health[provider][k],
            usage: rt.snapshot.get(provider, k),
        })
        .collect();
    crate::balancer::order(
        rt.policy.algorithm,
        &candidates,
        &rt.rotations[provider],
        gw.now_ms(),
    )
}

/// Why the last attempt failed, to answer with if every attempt does.
struct Failure {
    error: ApiError,
}

async fn attempt_all(
    gw: Arc<Gateway>,
    rt: Arc<Runtime>,
    targets: &[Target],
    request: &mut Request,
    endpoint: Endpoint,
    mut client_hold: Option<truckllm_store::Reservation>,
    trace: &mut Trace,
) -> Result<Response, ApiError> {
    let policy = &rt.policy;
    let deadline = Instant::now() + Duration::from_secs_f64(policy.retry.deadline_secs);
    let mut attempts = 0u32;
    let mut limited: Option<Duration> = None;
    let mut failure: Option<Failure> = None;
    'targets: for (t, target) in targets.iter().enumerate() {
        if t > 0 && !policy.fallback {
            break;
        }
        let provider = &rt.routes.providers[target.provider];
        request
            .body
            .insert("model".into(), Value::String(target.model.clone()));
        let body = Bytes::from(
            serde_json::to_vec(&request.body).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        for k in key_order(&gw, &rt, target.provider) {
            if attempts >= policy.retry.max_attempts || Instant::now() >= deadline {
                break 'targets;
            }
            let key = &provider.keys[k];
            let checks = limit_checks(
                key.limits.req_per_min,
                key.limits.tokens_per_min,
                request.estimate,
            );
            let reservation = match reserve(&gw, &key.store_key, checks).await? {
                ReserveOutcome::Granted(r) => r,
                ReserveOutcome::Denied(d) => {
                    trace.rate_limited();
                    rt.key_metrics[target.provider][k].rate_limited.increment(1);
                    limited = Some(limited.map_or(d.retry_after, |w| w.min(d.retry_after)));
                    continue;
                }
            };
            attempts += 1;
            trace.attempt(&provider.id, &key.id, &target.model, attempts);
            if attempts > 1 {
                rt.provider_metrics[target.provider].retries.increment(1);
            }
            rt.health[target.provider][k]
                .sent_since_snapshot
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut attempt = Attempt::new(
                Arc::clone(&gw),
                Arc::clone(&rt),
                target.provider,
                k,
                reservation,
            );
            attempt.hold_client(client_hold.take());
            let sent = send(&gw, endpoint.url(provider), key, body.clone()).await;
            match classify(sent) {
                Sent::Transport(e) => {
                    client_hold = attempt.fail(None);
                    failure = Some(Failure {
                        error: ApiError::upstream(
                            StatusCode::BAD_GATEWAY,
                            format!("provider `{}` key `{}`: {e}", provider.id, key.id),
                        ),
                    });
                }
                Sent::Retryable(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    drop(response);
                    client_hold = attempt.fail(if status == StatusCode::TOO_MANY_REQUESTS {
                        Some(retry_after.unwrap_or(Duration::from_secs(1)))
                    } else {
                        None
                    });
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        trace.rate_limited();
                    }
                    failure = Some(Failure {
                        error: if status == StatusCode::TOO_MANY_REQUESTS {
                            let wait = retry_after.unwrap_or(Duration::from_secs(1));
                            limited = Some(limited.map_or(wait, |w| w.min(wait)));
                            ApiError::rate_limited(
                                format!(
                                    "every key of `{}` is rate limited upstream",
                                    request.model
                                ),
                                wait,
                            )
                        } else {
                            ApiError::upstream(
                                StatusCode::BAD_GATEWAY,
                                format!("provider `{}` answered {status}", provider.id),
                            )
                        },
                    });
                }
                Sent::ClientError(response) => {
                    trace.error("upstream_rejected");
                    let passed = pass_through(response, &provider.id, &key.id).await;
                    attempt.settle(Outcome::ClientError);
                    return Ok(passed);
                }
                Sent::Success(response) => {
                    return Ok(if request.stream {
                        trace.status(response.status().as_u16());
                        stream_back(
                            response,
                            attempt,
                            SseScanner::new(policy.max_stream_event_bytes as usize),
                            request.strip_usage,
                            &provider.id,
                            &key.id,
                            trace.take(),
                        )
                    } else {
                        complete(response, attempt, provider, &key.id, trace).await
                    });
                }
            }
        }
    }
    settle_client_only(&gw, client_hold);
    Err(match (failure, limited) {
        (Some(f), Some(wait)) if f.error.status == StatusCode::TOO_MANY_REQUESTS => {
            ApiError::rate_limited(f.error.message, wait)
        }
        (Some(f), _) => f.error,
        (None, Some(wait)) => ApiError::rate_limited(
            format!(
                "every key for `{}` is at its rate limit; retry after {} s",
                request.model,
                wait.as_secs_f64().ceil()
            ),
            wait,
        ),
        (None, None) => ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "no attempt was possible within the retry budget",
        ),
    })
}

async fn send(
    gw: &Gateway,
    url: &Uri,
    key: &Key,
    body: Bytes,
) -> Result<UpstreamResponse, UpstreamError> {
    gw.upstream.post_json(url, key.secret.expose(), body).await
}

enum Sent {
    Transport(String),
    Retryable(UpstreamResponse),
    ClientError(UpstreamResponse),
    Success(UpstreamResponse),
}

fn classify(sent: Result<UpstreamResponse, UpstreamError>) -> Sent {
    match sent {
        Err(e) => Sent::Transport(e.to_string()),
        Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() => {
            Sent::Retryable(r)
        }
        Ok(r) if r.status().is_client_error() => Sent::ClientError(r),
        Ok(r) => Sent::Success(r),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by LLM providers).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

fn response_headers(
    builder: axum::http::response::Builder,
    upstream: &UpstreamResponse,
    provider: &str,
    key: &str,
) -> axum::http::response::Builder {
    let mut builder = builder.status(upstream.status());
    if let Some(ct) = upstream.headers().get(header::CONTENT_TYPE) {
        builder = builder.header(header::CONTENT_TYPE, ct.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{provider}/{key}")) {
        builder = builder.header("x-truckllm-key", v);
    }
    builder
}

async fn read_body(response: UpstreamResponse) -> Result<Bytes, String> {
    response
        .bytes(MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| e.to_string())
}

async fn pass_through(response: UpstreamResponse, provider: &str, key: &str) -> Response {
    let builder = response_headers(Response::builder(), &response, provider, key);
    match read_body(response).await {
        Ok(bytes) => builder
            .body(Body::from(bytes))
            .unwrap_or_else(|_| ApiError::internal("bad upstream headers").into_response()),
        Err(e) => ApiError::upstream(StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

async fn complete(
    response: UpstreamResponse,
    attempt: Attempt,
    provider: &crate::routing::Provider,
    key: &str,
    trace: &mut Trace,
) -> Response {
    let builder = response_headers(Response::builder(), &response, &provider.id, key);
    match read_body(response).await {
        Ok(bytes) => {
            let usage = usage::from_body(&bytes);
            trace.usage(usage.as_ref(), &provider.pricing);
            attempt.settle(Outcome::Success(usage));
            builder
                .body(Body::from(bytes))
                .unwrap_or_else(|_| ApiError::internal("bad upstream headers").into_response())
        }
        Err(e) => {
            attempt.settle(Outcome::UpstreamFailure);
            trace.error("upstream_broke_off");
            ApiError::upstream(
                StatusCode::BAD_GATEWAY,
                format!("provider `{}` broke off: {e}", provider.id),
            )
            .into_response()
        }
    }
}

fn stream_back(
    response: UpstreamResponse,
    attempt: Attempt,
    scanner: SseScanner,
    strip_usage: bool,
    provider: &str,
    key: &str,
    trace: Trace,
) -> Response {
    let builder = response_headers(Response::builder(), &response, provider, key)
        .header(header::CACHE_CONTROL, "no-cache");
    let metered = Metered {
        trace,
        inner: response.into_stream(),
        scanner,
        strip_usage,
        usage: None,
        attempt: Some(attempt),
        done: false,
    };
    builder
        .body(Body::from_stream(metered))
        .unwrap_or_else(|_| ApiError::internal("bad upstream headers").into_response())
}

/// Passes a provider's SSE stream through event by event, reading the usage chunk on the way
/// (and dropping it if the client did not ask for it); settles usage when the stream ends, or
/// as abandoned if the client goes away first.
struct Metered {
    trace: Trace,
    inner: ReadBody,
    scanner: SseScanner,
    strip_usage: bool,
    usage: Option<Usage>,
    attempt: Option<Attempt>,
    done: bool,
}

impl Drop for Metered {
    fn drop(&mut self) {
        if !self.done {
            if let Some(attempt) = &self.attempt {
                let pricing = &attempt.provider_config().pricing;
                self.trace.usage(self.usage.as_ref(), pricing);
            }
            self.trace.error("client_disconnected");
        }
    }
}

impl Metered {
    /// Ends the stream as broken by the provider: recorded as an upstream failure, and the
    /// upstream body is dropped with the stream, so nothing more is read from it.
    fn broken(&mut self, cause: impl std::fmt::Display) -> std::io::Error {
        self.done = true;
        self.trace.error("stream_broken");
        if let Some(attempt) = self.attempt.take() {
            attempt.settle(Outcome::UpstreamFailure);
        }
        std::io::Error::other(cause.to_string())
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let events = match this.scanner.push(&chunk) {
                        Ok(events) => events,
                        Err(too_large) => return Poll::Ready(Some(Err(this.broken(too_large)))),
                    };
                    let mut out = BytesMut::new();
                    for event in events {
                        if event.usage.is_some() {
                            this.usage = event.usage;
                        }
                        if !(this.strip_usage && event.usage_only) {
                            out.extend_from_slice(&event.bytes);
                        }
                    }
                    if !out.is_empty() {
                        this.trace.first_byte();
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(this.broken(e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if let Some(attempt) = this.attempt.take() {
                        let pricing = &attempt.provider_config().pricing;
                        this.trace.usage(this.usage.as_ref(), pricing);
                        attempt.settle(Outcome::Success(this.usage));
                    }
                    return Poll::Ready(this.scanner.finish().map(Ok));
                }
            }
        }
    }
}
