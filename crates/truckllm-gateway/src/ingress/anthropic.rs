//! The Anthropic dialect: `POST /v1/messages` (streaming or not; Claude Code adds
//! `?beta=true`) and `POST /v1/messages/count_tokens`. The key comes as `x-api-key` or
//! `Authorization: Bearer` ([`crate::auth`]); errors are
//! `{"type":"error","error":{"type","message"}}` with Anthropic's error types.
//!
//! `count_tokens` asks the provider's own counting endpoint where it has one (Anthropic). For
//! a provider without one the gateway estimates (about four characters a token) and says so
//! in `x-truckllm-token-count: estimate`: never a confident wrong number.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ClientRequest, max_tokens, model_of, read_json, relay, run, scan_json, text_len};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::providers::{Operation, Verdict, Wire};
use crate::state::Gateway;
use crate::trace::RequestId;

/// The header that marks a token count as the gateway's estimate.
pub const TOKEN_COUNT_HEADER: &str = "x-truckllm-token-count";

pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let default_max = caller.runtime.policy.default_max_tokens;
    let parsed = parse(headers, body, default_max);
    run(
        &gw,
        &caller,
        &id,
        parsed,
        ("messages", Wire::Anthropic),
        relay::render_owned,
    )
    .await
}

async fn parse(
    headers: HeaderMap,
    body: Body,
    default_max_tokens: u32,
) -> Result<ClientRequest, ApiError> {
    let body = scan_json(&headers, body).await?;
    let model = model_of(body.model()?.as_ref())?;
    let estimate = max_tokens(body.token_cap(&["max_tokens"])?)?
        .ok_or_else(|| ApiError::bad_request("missing_max_tokens", "max_tokens: Field required"))?;
    check_messages(body.messages_is_list())?;
    let stream = body.stream();
    Ok(ClientRequest {
        wire: Wire::Anthropic,
        operation: Operation::Chat,
        body,
        model,
        stream,
        strip_usage: false,
        estimate,
        headers,
        default_max_tokens,
    })
}

/// `messages` must be a list, as Anthropic requires (`None`: absent).
fn check_messages(is_list: Option<bool>) -> Result<(), ApiError> {
    match is_list {
        Some(true) => Ok(()),
        Some(false) => Err(ApiError::bad_request(
            "invalid_messages",
            "messages: Input should be a valid list",
        )),
        None => Err(ApiError::bad_request(
            "missing_messages",
            "messages: Field required",
        )),
    }
}

pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count(gw, caller, headers, body).await.unwrap_or_else(|e| {
        crate::metrics::rejected(e.code);
        e.into_response_for(Wire::Anthropic)
    })
}

async fn count(
    gw: Arc<Gateway>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut body = read_json(&headers, body).await?;
    let model = model_of(body.get("model"))?;
    check_messages(body.get("messages").map(Value::is_array))?;
    let routes = &caller.runtime.routes;
    for target in routes.resolve(&model, &caller.client)? {
        let provider = &routes.providers[target.provider];
        let Some(url) = provider.protocol.url(
            Operation::CountTokens,
            provider.protocol.upstream_model(&target.model),
            false,
        ) else {
            continue;
        };
        body.insert("model".into(), Value::String(target.model.clone()));
        let payload = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
        for key in &provider.keys {
            let Ok(auth) = provider
                .protocol
                .authorize(&key.secret, &url, &payload, &headers)
            else {
                continue;
            };
            let Ok(response) = gw.upstream.post(&url, auth, payload.clone().into()).await else {
                continue;
            };
            let status = response.status();
            if let Verdict::Retry { .. } = provider.protocol.verdict(status, response.headers()) {
                continue;
            }
            let bytes = response
                .bytes(1 << 20)
                .await
                .map_err(|e| ApiError::upstream(StatusCode::BAD_GATEWAY, e.to_string()))?;
            return Ok((
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response());
        }
    }
    Ok(estimate(&body))
}

/// About four characters a token over the system prompt, messages and tools, flagged.
fn estimate(body: &Map<String, Value>) -> Response {
    let chars: usize = ["system", "messages", "tools"]
        .iter()
        .map(|field| text_len(body.get(*field)))
        .sum();
    let tokens = (chars as f64 / 4.0).ceil().max(1.0) as u64;
    let mut response = axum::Json(json!({"input_tokens": tokens})).into_response();
    response
        .headers_mut()
        .insert(TOKEN_COUNT_HEADER, HeaderValue::from_static("estimate"));
    response
}
