//! The mock's Azure OpenAI dialect: `POST /openai/deployments/{deployment}/chat/completions`
//! and `/embeddings` with `?api-version=`, and the newer `/openai/v1/chat/completions` and
//! `/embeddings` (no version). Answers are the OpenAI mock's ([`super::openai`]), with Azure's
//! `prompt_filter_results` and `content_filter_results` added to chat completions.
//!
//! Checked as Azure checks them: the key in `api-key` (missing: 401 with Azure's
//! `{"error": {"code": "401", "message": "Access denied due to invalid subscription key…"}}`;
//! a key starting `revoked` the same), `api-version` present and known on deployment routes
//! (else 404 `Resource not found`, as Azure answers), a JSON body. Rate limits are 429 with
//! both `retry-after` and `retry-after-ms`. The `deployments` answered are any name; a model
//! name in the body is not required on deployment routes and is required on `v1` routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{MockUpstream, Refusal, header_str, key_label, openai};

/// The `api-version`s the mock knows (GA and preview data-plane versions Azure documents).
const API_VERSIONS: [&str; 6] = [
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-04-01-preview",
];

/// Azure's error shape: `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn access_denied() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
    )
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::RateLimited { retry_after } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                "Requests to the ChatCompletions_Create Operation have exceeded the rate limit of your current pricing tier. Please retry after the time in the retry-after header.",
            );
            if let Ok(v) = retry_after.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = (retry_after * 1000).to_string().parse() {
                r.headers_mut().insert("retry-after-ms", v);
            }
            r
        }
        other => openai::refused(other),
    }
}

/// Which route a call came by.
enum Route {
    Deployment(String),
    V1,
}

/// The checks every Azure route makes; the key's label and the body.
async fn admit(
    mock: &MockUpstream,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    route: &Route,
) -> Result<(String, Value), Response> {
    mock.record_headers(uri, headers);
    let secret = header_str(headers, "api-key").ok_or_else(access_denied)?;
    let key = key_label(secret);
    mock.count(&key, |s| s.requests += 1);
    if super::is_revoked(secret) {
        return Err(access_denied());
    }
    if let Route::Deployment(_) = route {
        let version = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("api-version="));
        if !version.is_some_and(|v| API_VERSIONS.contains(&v)) {
            return Err(error(StatusCode::NOT_FOUND, "404", "Resource not found"));
        }
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid JSON in the request body: {e}"),
        )
    })?;
    if !request.is_object() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body must be a JSON object",
        ));
    }
    if matches!(route, Route::V1) && request.get("model").and_then(Value::as_str).is_none() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "model is required on /openai/v1 routes (the deployment name)",
        ));
    }
    mock.record_body(&request, body);
    super::sleep_latency(&mock.options).await;
    if let Some(refusal) = mock.refusal(&key) {
        return Err(refused(refusal));
    }
    Ok((key, request))
}

/// The request with the deployment as its model when it names none.
fn with_model(mut request: Value, route: &Route) -> Value {
    if let (Route::Deployment(name), Some(body)) = (route, request.as_object_mut()) {
        body.entry("model")
            .or_insert_with(|| Value::String(name.clone()));
    }
    request
}

async fn chat_on(
    mock: Arc<MockUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    route: Route,
) -> Response {
    let (key, request) = match admit(&mock, &uri, &headers, &body, &route).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let request = with_model(request, &route);
    let streams = request.get("stream").and_then(Value::as_bool) == Some(true);
    let answer = openai::answer_chat(&mock, &key, &request);
    if streams || !answer.status().is_success() {
        return answer;
    }
    with_filter_results(answer).await
}

/// Adds Azure's content filter annotations to a chat completion, as Azure sends them.
async fn with_filter_results(answer: Response) -> Response {
    let (parts, body) = answer.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "500", "mock body");
    };
    let Ok(mut completion) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let safe = json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"},
    });
    completion["prompt_filter_results"] =
        json!([{"prompt_index": 0, "content_filter_results": safe}]);
    if let Some(choices) = completion.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            choice["content_filter_results"] = safe.clone();
        }
    }
    let mut response = axum::Json(completion).into_response();
    *response.status_mut() = parts.status;
    response
}

async fn embeddings_on(
    mock: Arc<MockUpstream>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    route: Route,
) -> Response {
    match admit(&mock, &uri, &headers, &body, &route).await {
        Ok((key, request)) => openai::answer_embeddings(&mock, &key, &with_model(request, &route)),
        Err(response) => response,
    }
}

/// `POST /openai/deployments/{deployment}/chat/completions`.
pub(super) async fn deployment_chat(
    State(mock): State<Arc<MockUpstream>>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat_on(mock, uri, headers, body, Route::Deployment(deployment)).await
}

/// `POST /openai/deployments/{deployment}/embeddings`.
pub(super) async fn deployment_embeddings(
    State(mock): State<Arc<MockUpstream>>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    embeddings_on(mock, uri, headers, body, Route::Deployment(deployment)).await
}

/// `POST /openai/v1/chat/completions`.
pub(super) async fn v1_chat(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    chat_on(mock, uri, headers, body, Route::V1).await
}

/// `POST /openai/v1/embeddings`.
pub(super) async fn v1_embeddings(
    State(mock): State<Arc<MockUpstream>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    embeddings_on(mock, uri, headers, body, Route::V1).await
}
