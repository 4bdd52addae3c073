//! Client dialects: one module each. An ingress handler parses its dialect into a
//! [`ClientRequest`] (the neutral request [`crate::dispatch`] runs), and renders the answer,
//! its stream frames and its errors back in the same dialect ([`relay`]).
//!
//! - [`openai`]: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models[/{id}]`.
//! - [`anthropic`]: `POST /v1/messages`, `POST /v1/messages/count_tokens`.
//! - [`responses`]: OpenAI's Responses API, `/v1/responses` (always translated, with its
//!   conversations kept in the runtime store); its own [`CallPlan`].
//!
//! When the client's dialect is the provider's, the body goes upstream as the client sent it
//! but for the model name (OpenAI streams also ask for the usage chunk, dropped again on the
//! way back if the client did not ask for it). Otherwise [`crate::conversion`] translates it,
//! and what cannot be expressed is a 400 that says so.

pub mod anthropic;
pub mod body;
pub mod openai;
pub mod relay;
pub mod responses;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::conversion;
use crate::dispatch::CallPlan;
use crate::error::ApiError;
use crate::providers::{Operation, Protocol, Wire};
use crate::state::Gateway;
use crate::trace::{RequestId, Trace};
pub use body::RequestBody;

/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;
/// Longest model name accepted; longer names are refused, not copied into records.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// Largest `max_tokens` accepted: far above any model's output, far below what would overflow
/// a counter.
pub const MAX_TOKENS_LIMIT: u64 = 100_000_000;

/// A client's request, parsed once, in the client's own dialect.
pub struct ClientRequest {
    pub wire: Wire,
    pub operation: Operation,
    /// The body as the client sent it (the model is replaced per target).
    pub body: RequestBody,
    /// The model as the client asked for it.
    pub model: String,
    pub stream: bool,
    /// OpenAI streams: the client did not ask for the usage chunk the gateway asked for.
    pub strip_usage: bool,
    pub estimate: f64,
    pub headers: HeaderMap,
    /// `policy.default_max_tokens`, for providers that require `max_tokens`.
    pub default_max_tokens: u32,
}

impl CallPlan for ClientRequest {
    fn model(&self) -> &str {
        &self.model
    }

    fn operation(&self) -> Operation {
        self.operation
    }

    fn estimate(&self) -> f64 {
        self.estimate
    }

    fn prompt_estimate(&self) -> f64 {
        self.body.prompt().estimate_tokens()
    }

    fn streams(&self) -> bool {
        self.stream
    }

    fn client_headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn body_for(&mut self, protocol: &dyn Protocol, model: &str) -> Result<Bytes, ApiError> {
        let translated = match (self.wire, protocol.wire()) {
            (from, to) if from == to => return self.body.with_model(model),
            (Wire::OpenAi, Wire::Anthropic) => conversion::chat_to_messages_request(
                self.body.tree()?,
                model,
                self.default_max_tokens,
            ),
            (Wire::Anthropic, Wire::OpenAi) => {
                conversion::messages_to_chat_request(self.body.tree()?, model)
            }
            (from, native) => self.native_body(from, native, model)?,
        };
        let body = translated.map_err(|e| {
            ApiError::bad_request(
                "untranslatable_request",
                format!("the request cannot be sent to this model's provider: {e}"),
            )
        })?;
        to_bytes(&body)
    }
}

impl ClientRequest {
    /// The body for a provider dialect no client speaks, through Chat.
    fn native_body(
        &mut self,
        from: Wire,
        native: Wire,
        model: &str,
    ) -> Result<Result<Map<String, Value>, conversion::Unsupported>, ApiError> {
        let default_max_tokens = self.default_max_tokens;
        let operation = self.operation;
        let tree = self.body.tree()?;
        Ok(match (from, operation) {
            (Wire::OpenAi, Operation::Embeddings) => {
                conversion::native::embeddings_to_native_request(native, tree, model)
            }
            (Wire::OpenAi, _) => {
                conversion::native::chat_to_native_request(native, tree, model, default_max_tokens)
            }
            (Wire::Anthropic, _) => {
                conversion::messages_to_chat_request(tree, model).and_then(|chat| {
                    conversion::native::chat_to_native_request(
                        native,
                        &chat,
                        model,
                        default_max_tokens,
                    )
                })
            }
            _ => Err(conversion::Unsupported(
                "no translation between these dialects".into(),
            )),
        })
    }
}

pub(crate) fn to_bytes(body: &Map<String, Value>) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Runs a parsed request end to end and renders its answer with `render`, errors included,
/// in its dialect (`wire`); one request record per request, named `action`.
pub async fn run<R: CallPlan>(
    gw: &Arc<Gateway>,
    caller: &Caller,
    request_id: &RequestId,
    parsed: impl Future<Output = Result<R, ApiError>>,
    (action, wire): (&str, Wire),
    render: impl AsyncFnOnce(crate::dispatch::Answer, R, &mut Trace) -> Response,
) -> Response {
    let mut trace = Trace::start(&gw.logger, action, &request_id.0);
    trace.client(&caller.client.id);
    let result = async {
        let mut request = parsed.await?;
        trace.model(request.model(), request.streams());
        let mut answer = crate::dispatch::dispatch(
            Arc::clone(gw),
            Arc::clone(&caller.runtime),
            &caller.client,
            &mut request,
            &mut trace,
        )
        .await?;
        let status = answer.status.take();
        let mut response = render(answer, request, &mut trace).await;
        if let Some(Ok(status)) = match status {
            Some(task) => Some(task.await),
            None => None,
        } {
            status.apply(response.headers_mut());
        }
        Ok::<_, ApiError>(response)
    }
    .await;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            trace.error(e.code);
            audit_denial(gw, &e, action);
            crate::metrics::rejected(e.code);
            let refused = e.status == axum::http::StatusCode::TOO_MANY_REQUESTS;
            let mut response = e.into_response_for(wire);
            // A refusal by a limit or a budget says what is left too, as OpenAI's does.
            if refused
                && let Some(Ok(status)) = match crate::client_status::read_later(gw, &caller.client)
                {
                    Some(task) => Some(task.await),
                    None => None,
                }
            {
                status.apply(response.headers_mut());
            }
            response
        }
    };
    trace.status(response.status().as_u16());
    response
}

/// A 403 leaves an audit record of category `access`: the action refused, the status and why;
/// never the key. (401s are refused, and audited, by [`crate::auth`] before a handler runs.)
pub(crate) fn audit_denial(gw: &Gateway, e: &ApiError, action: &str) {
    use truckllm_logging::{AuditCategory, AuditRecord};
    if e.status == axum::http::StatusCode::FORBIDDEN {
        gw.logger.emit(
            AuditRecord::new(AuditCategory::Access, action, "client", "denied")
                .status(e.status.as_u16())
                .message(e.message.clone()),
        );
    }
}

/// Reads a JSON object body into a tree: `application/json`, at most [`MAX_REQUEST_BYTES`].
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(headers, body).await?;
    serde_json::from_slice(&bytes).map_err(not_an_object)
}

/// The client's error for a body that is not one JSON object, with why.
pub fn not_an_object(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "invalid_json",
        format!("request body is not a JSON object: {detail}"),
    )
}

/// Reads a JSON object body and locates its fields without a tree ([`RequestBody`]).
pub async fn scan_json(headers: &HeaderMap, body: Body) -> Result<RequestBody, ApiError> {
    RequestBody::scan(read_body(headers, body).await?)
}

/// Reads a body sent as `application/json`, at most [`MAX_REQUEST_BYTES`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
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
            crate::error::clip(content_type, 64)
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES) {
        return Err(ApiError::payload_too_large(MAX_REQUEST_BYTES));
    }
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| ApiError::payload_too_large(MAX_REQUEST_BYTES))
}

/// The `model` of a body: a non-empty string of at most [`MAX_MODEL_NAME_BYTES`].
pub fn model_of(model: Option<&Value>) -> Result<String, ApiError> {
    match model {
        Some(Value::String(m)) if m.len() > MAX_MODEL_NAME_BYTES => Err(ApiError::bad_request(
            "invalid_model",
            format!(
                "`model` is {} bytes long; model names are at most {MAX_MODEL_NAME_BYTES} bytes",
                m.len()
            ),
        )),
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_model",
            "`model` must be a non-empty string",
        )),
        None => Err(ApiError::bad_request(
            "missing_model",
            "`model` is required",
        )),
    }
}

/// A token cap (the first of the caps a body names, see [`RequestBody::token_cap`]): absent,
/// or a whole number from 1 to [`MAX_TOKENS_LIMIT`] (`4096.0` is a whole number).
/// Anything else is the client's error, answered before the store is asked to reserve it.
pub fn max_tokens(cap: Option<(&str, Value)>) -> Result<Option<f64>, ApiError> {
    let Some((field, value)) = cap else {
        return Ok(None);
    };
    let whole = value.as_f64().filter(|n| n.fract() == 0.0);
    match whole {
        Some(n) if (1.0..=MAX_TOKENS_LIMIT as f64).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            "invalid_max_tokens",
            format!(
                "`{field}` must be a whole number from 1 to {MAX_TOKENS_LIMIT} (got {})",
                crate::error::clip(&value.to_string(), 64)
            ),
        )),
    }
}

/// Characters of the text in a JSON value, a rough measure of its tokens (about 4 per token).
pub fn text_len(value: Option<&Value>) -> usize {
    match value {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(items)) => items.iter().map(|v| text_len(Some(v))).sum(),
        Some(Value::Object(map)) => map.values().map(|v| text_len(Some(v))).sum(),
        Some(other) => other.to_string().len(),
        None => 0,
    }
}
