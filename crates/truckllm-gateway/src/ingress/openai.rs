//! The OpenAI dialect: `POST /v1/chat/completions` (streaming or not), `POST /v1/embeddings`,
//! `GET /v1/models` and `GET /v1/models/{id}` (in Anthropic's shape when the request carries
//! `anthropic-version`, as Anthropic's SDKs and Claude Code list models). Errors are
//! `{"error": {"message", "type", "code"}}`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ClientRequest, max_tokens, model_of, relay, run, scan_json, text_len};
use crate::auth::Caller;
use crate::error::{ApiError, clip};
use crate::providers::{Operation, Wire};
use crate::state::Gateway;
use crate::trace::RequestId;

pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let default_max = caller.runtime.policy.default_max_tokens;
    let parsed = parse(headers, body, Operation::Chat, default_max);
    run(
        &gw,
        &caller,
        &id,
        parsed,
        ("chat", Wire::OpenAi),
        relay::render_owned,
    )
    .await
}

pub async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let default_max = caller.runtime.policy.default_max_tokens;
    let parsed = parse(headers, body, Operation::Embeddings, default_max);
    run(
        &gw,
        &caller,
        &id,
        parsed,
        ("embeddings", Wire::OpenAi),
        relay::render_owned,
    )
    .await
}

async fn parse(
    headers: HeaderMap,
    body: Body,
    operation: Operation,
    default_max_tokens: u32,
) -> Result<ClientRequest, ApiError> {
    let mut body = scan_json(&headers, body).await?;
    let model = model_of(body.model()?.as_ref())?;
    let stream = operation == Operation::Chat && body.stream();
    let asked_usage = body
        .stream_options()?
        .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
        == Some(true);
    if stream && !asked_usage {
        body.ask_for_usage()?;
    }
    let estimate = match operation {
        Operation::Embeddings => (text_len(body.input()?.as_ref()) as f64 / 4.0)
            .ceil()
            .max(1.0),
        _ => max_tokens(body.token_cap(&["max_completion_tokens", "max_tokens"])?)?
            .unwrap_or(f64::from(default_max_tokens)),
    };
    Ok(ClientRequest {
        wire: Wire::OpenAi,
        operation,
        body,
        model,
        stream,
        strip_usage: stream && !asked_usage,
        estimate,
        headers,
        default_max_tokens,
    })
}

/// `GET /v1/models`: the models the caller may use.
pub async fn models(Extension(caller): Extension<Caller>, headers: HeaderMap) -> Response {
    let names = caller.runtime.routes.model_names(&caller.client);
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = names.iter().map(|id| anthropic_model(id)).collect();
        return axum::Json(json!({
            "data": data,
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last(),
        }))
        .into_response();
    }
    let data: Vec<Value> = names.iter().map(|id| model_object(id)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`: one model the caller may use, else 404 as OpenAI answers.
pub async fn model(
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let names = caller.runtime.routes.model_names(&caller.client);
    let anthropic = headers.contains_key("anthropic-version");
    match names.iter().find(|name| name.as_str() == id) {
        Some(name) if anthropic => axum::Json(anthropic_model(name)).into_response(),
        Some(name) => axum::Json(model_object(name)).into_response(),
        None => {
            let error = ApiError::model_not_found(&clip(&id, super::MAX_MODEL_NAME_BYTES));
            crate::metrics::rejected(error.code);
            error.into_response_for(if anthropic {
                Wire::Anthropic
            } else {
                Wire::OpenAi
            })
        }
    }
}

fn model_object(id: &str) -> Value {
    let owner = id.split_once(':').map_or("truckllm", |(p, _)| p);
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

fn anthropic_model(id: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
}
