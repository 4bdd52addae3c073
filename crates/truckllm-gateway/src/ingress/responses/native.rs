//! Responses API turns to providers that take them natively (`responses: native`): the
//! answer passed back as sent, its usage read from the Responses shape, and its id routed to
//! the provider key that made it (a `route:{id}` document), which follow-ups, retrieves and
//! deletes then reach from any instance.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Keeper, ResponsesRequest, refused};
use crate::attempt::{Attempt, Outcome};
use crate::auth::Caller;
use crate::conversion;
use crate::error::ApiError;
use crate::ingress::relay::{self, Gate, Prompt, StreamRelay};
use crate::providers::{Operation, Wire};
use crate::state::Gateway;
use crate::trace::Trace;
use crate::upstream::UpstreamResponse;
use crate::usage::Usage;

/// Where a natively kept response lives: the provider key that made it, and for which client.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Route {
    pub(super) provider: String,
    pub(super) key: String,
    client: String,
}

pub(super) fn route_key(id: &str) -> Option<String> {
    let key = format!("route:{id}");
    truckllm_store::docs::check_doc_key(&key).ok().map(|_| key)
}

/// The recorded route of a native response of this caller, if there is one.
pub(super) async fn load_route(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<Option<Route>, ApiError> {
    let Some(key) = route_key(id) else {
        return Ok(None);
    };
    let bytes =
        gw.store.get_doc(&key).await.map_err(|e| {
            ApiError::store_unavailable(format!("stored responses unavailable: {e}"))
        })?;
    let route = bytes.and_then(|b| serde_json::from_slice::<Route>(&b).ok());
    Ok(route.filter(|r| r.client == caller.client.id))
}

/// Records that `provider`'s key `key` made the native response `id` (the caller chose to
/// store it): stores the route of response `id` before its answer is returned, so a follow-up sent the
/// moment the client has it finds it on any instance.
async fn record_route(keeper: &Keeper, provider: String, key: String, id: &str) {
    if let Some((doc, bytes)) = route_doc(keeper, provider, key, id)
        && let Err(e) = keeper.store.put_doc(&doc, &bytes, keeper.ttl).await
    {
        tracing::warn!(error = %e, "the route of a native response could not be stored");
    }
}

/// Stores the route of a streamed response on its own task (shutdown waits for it), begun
/// as soon as the id is known; the stream's last event waits for the returned write.
fn record_route_later(keeper: &Keeper, provider: String, key: String, id: &str) -> Option<Gate> {
    let (doc, bytes) = route_doc(keeper, provider, key, id)?;
    let (store, ttl) = (Arc::clone(&keeper.store), keeper.ttl);
    Some(keeper.gateway.settlements.spawn(async move {
        if let Err(e) = store.put_doc(&doc, &bytes, ttl).await {
            tracing::warn!(error = %e, "the route of a native response could not be stored");
        }
    }))
}

/// The route document of response `id`: its store key and bytes.
fn route_doc(
    keeper: &Keeper,
    provider: String,
    key: String,
    id: &str,
) -> Option<(String, Vec<u8>)> {
    let Some(doc) = route_key(id) else {
        tracing::warn!("a native provider answered a response id the store cannot name");
        return None;
    };
    let route = Route {
        provider,
        key,
        client: keeper.client.clone(),
    };
    serde_json::to_vec(&route).ok().map(|bytes| (doc, bytes))
}

/// A native provider's answer, passed as it is; its usage read from the Responses shape and
/// its id routed to the key that made it.
pub(super) async fn native(
    response: UpstreamResponse,
    attempt: Attempt,
    request: ResponsesRequest,
    trace: &mut Trace,
) -> Response {
    if request.stream {
        trace.status(response.status().as_u16());
        // What was sent: a kept conversation goes whole as `input`.
        let prompt_chars = super::items_text_len(&request.items);
        let relay = Box::new(NativeRelay {
            keeper: request.keeper,
            attempt_route: Some((
                attempt.provider_config().id.clone(),
                attempt.key_config().id.clone(),
            )),
            id: None,
            usage: None,
            writing: None,
            gate: None,
        });
        return relay::stream_through(
            response,
            attempt,
            relay,
            false,
            Prompt::Chars(prompt_chars),
            trace.take(),
        );
    }
    let builder = relay::head(&response, &attempt, None);
    let bytes = match response.bytes(relay::MAX_RESPONSE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("provider `{}` broke off: {e}", attempt.provider_config().id);
            attempt.settle(Outcome::UpstreamFailure);
            trace.error("upstream_broke_off");
            return ApiError::upstream(StatusCode::BAD_GATEWAY, message)
                .into_response_for(Wire::OpenAi);
        }
    };
    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let usage = parsed
        .get("usage")
        .and_then(conversion::usage_from_responses);
    trace.usage(usage.as_ref(), &attempt.provider_config().pricing);
    if let (Some(keeper), Some(id)) = (&request.keeper, parsed["id"].as_str()) {
        let provider = attempt.provider_config().id.clone();
        record_route(keeper, provider, attempt.key_config().id.clone(), id).await;
    }
    attempt.settle(Outcome::Success(usage));
    relay::built(builder, Body::from(bytes))
}

/// A native provider's stream, passed event by event; the usage and id read on the way.
struct NativeRelay {
    keeper: Option<Keeper>,
    /// (provider id, key id) of the attempt, for the route.
    attempt_route: Option<(String, String)>,
    id: Option<String>,
    usage: Option<Usage>,
    /// The route's write, begun when the id was first seen.
    writing: Option<Gate>,
    /// That write, once the response completed: the last event waits for it.
    gate: Option<Gate>,
}

impl StreamRelay for NativeRelay {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        let data =
            crate::usage::sse_data(&event).and_then(|d| serde_json::from_slice::<Value>(&d).ok());
        if let Some(response) = data.as_ref().and_then(|d| d.get("response")) {
            if let Some(id) = response["id"].as_str() {
                self.id = Some(id.to_owned());
                self.record();
            }
            if let Some(usage) = response
                .get("usage")
                .and_then(conversion::usage_from_responses)
            {
                self.usage = Some(usage);
            }
            let done = matches!(
                data.as_ref().and_then(|d| d["type"].as_str()),
                Some("response.completed" | "response.incomplete")
            );
            if done {
                self.gate = self.writing.take();
            }
        }
        Ok(Some(event))
    }

    fn finish(&mut self) -> Option<Bytes> {
        None
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn hold_until(&mut self) -> Option<Gate> {
        self.gate.take()
    }
}

impl NativeRelay {
    /// Records the route of the response, once, as soon as its id is known.
    fn record(&mut self) {
        if let (Some(keeper), Some((provider, key)), Some(id)) = (
            self.keeper.take(),
            self.attempt_route.take(),
            self.id.as_deref(),
        ) {
            self.writing = record_route_later(&keeper, provider, key, id);
        }
    }
}

/// `method` on `/responses/{id}{suffix}` of the provider key that made the native response
/// `id`, its answer passed back; `None` when this caller has no such response. A `DELETE` the
/// provider accepted also forgets the route.
pub(super) async fn native_call(
    gw: &Gateway,
    caller: &Caller,
    method: Method,
    id: &str,
    suffix: &str,
) -> Option<Response> {
    let route = match load_route(gw, caller, id).await {
        Ok(Some(route)) => route,
        Ok(None) => return None,
        Err(e) => return Some(refused(e)),
    };
    let deleting = method == Method::DELETE;
    let answer = ask_route(gw, caller, &route, method, id, suffix).await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return Some(refused(e)),
    };
    if deleting
        && answer.status().is_success()
        && let Some(key) = route_key(id)
        && let Err(e) = gw.store.delete_doc(&key).await
    {
        tracing::warn!(error = %e, "the route of a deleted native response could not be removed");
    }
    Some(answer)
}

async fn ask_route(
    gw: &Gateway,
    caller: &Caller,
    route: &Route,
    method: Method,
    id: &str,
    suffix: &str,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::bad_request(
            "bound_key_unavailable",
            format!(
                "this response is kept by provider `{}` key `{}`, which is no longer configured for native Responses",
                route.provider, route.key
            ),
        )
    };
    if !caller.client.may_use_provider(&route.provider) {
        return Err(ApiError::forbidden(format!(
            "client `{}` may no longer use provider `{}`",
            caller.client.id, route.provider
        )));
    }
    let routes = &caller.runtime.routes;
    let provider = routes
        .providers
        .iter()
        .find(|p| p.id == route.provider && p.protocol.responses_native())
        .ok_or_else(gone)?;
    let key = provider
        .keys
        .iter()
        .find(|k| k.id == route.key)
        .ok_or_else(gone)?;
    let base = provider
        .protocol
        .url(Operation::Responses, "", false)
        .ok_or_else(gone)?;
    let uri: Uri = format!("{base}/{id}{suffix}")
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_request", "the query cannot be passed on"))?;
    let headers = provider
        .protocol
        .authorize(&key.secret, &uri, &[], &HeaderMap::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let upstream_error = |e: String| {
        ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            format!("provider `{}` key `{}`: {e}", provider.id, key.id),
        )
    };
    let response = gw
        .upstream
        .call(method, &uri, headers)
        .await
        .map_err(|e| upstream_error(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .bytes(relay::MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| upstream_error(e.to_string()))?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, relay::JSON)],
        bytes,
    )
        .into_response())
}
