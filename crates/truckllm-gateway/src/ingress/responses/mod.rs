//! The OpenAI Responses dialect: `POST /v1/responses` (streaming or not),
//! `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`. Errors are in OpenAI's shape.
//!
//! Every provider is reached by translation: the request becomes a Chat request
//! ([`conversion::responses_to_chat_request`]), and for an Anthropic provider a Messages
//! request through the Chat one; the answer (or stream) comes back the same way.
//!
//! # Conversation state
//!
//! Unless the request says `store: false`, each response is kept in the runtime store (a
//! document `resp:{id}`, see [`truckllm_store::docs`]) for `policy.responses_ttl_secs`: its
//! conversation before this turn, this turn's input items, the response object, and which
//! client made it. A request naming `previous_response_id` is answered with that stored
//! conversation, its output, and the new input, on whichever instance it lands; another
//! client's response is not found. `instructions` are not carried over, as OpenAI documents.
//!
//! # Native providers
//!
//! A provider with `responses: native` gets the request as it is but for the model, at its
//! own `/responses`, and the answer (or stream) comes back as it sent it. Its response ids are
//! bound to the provider key that made them, so the gateway records `route:{id}` → (provider,
//! key, client) in the store, and a follow-up naming that id goes to that key on any instance;
//! when the key cannot take it, the answer is a 400 that says so, never another conversation.
//! `GET`/`DELETE /v1/responses/{id}` and `…/input_items` of such a response are asked of that
//! provider key (a `DELETE` also forgets the route).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use truckllm_store::RuntimeStore;

mod native;

use native::{load_route, native, native_call};

use super::relay::{self, Gate, Prompt, StreamRelay};
use super::{max_tokens, model_of, read_json, text_len, to_bytes};
use crate::attempt::{Attempt, Outcome};
use crate::auth::Caller;
use crate::conversion::{
    self, ChatReframer, ChatToResponsesStream, MessagesToResponsesStream, ResponseShell,
};
use crate::dispatch::{Answer, CallPlan};
use crate::error::{ApiError, clip};
use crate::providers::{Operation, Protocol, Wire};
use crate::state::Gateway;
use crate::trace::{RequestId, Trace};
use crate::upstream::UpstreamResponse;
use crate::usage::Usage;

/// What is kept in the store for one response.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// The client that made it; other clients do not find it.
    client: String,
    /// The conversation before this turn (earlier inputs and outputs).
    history: Vec<Value>,
    /// This turn's input items.
    input: Vec<Value>,
    /// The response object as the client received it.
    response: Value,
}

impl Stored {
    /// The whole conversation after this response: what a follow-up continues.
    fn conversation(self) -> Vec<Value> {
        let mut items = self.history;
        items.extend(self.input);
        if let Some(Value::Array(output)) = self.response.get("output") {
            items.extend(output.iter().cloned());
        }
        items
    }
}

fn doc_key(id: &str) -> String {
    format!("resp:{id}")
}

/// Where a response is kept, and for how long.
#[derive(Clone)]
struct Keeper {
    store: Arc<dyn RuntimeStore>,
    gateway: Arc<Gateway>,
    ttl: Duration,
    client: String,
    history: Vec<Value>,
    input: Vec<Value>,
}

impl Keeper {
    async fn keep(self, response: Value) {
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        let stored = Stored {
            client: self.client,
            history: self.history,
            input: self.input,
            response,
        };
        let written = match serde_json::to_vec(&stored) {
            Ok(bytes) => self.store.put_doc(&doc_key(&id), &bytes, self.ttl).await,
            Err(e) => Err(truckllm_store::StoreError::invalid(e.to_string())),
        };
        if let Err(e) = written {
            tracing::warn!(response = %id, error = %e, "the response could not be stored; a follow-up naming it will not find it");
        }
    }

    /// Keeps the response on its own task (shutdown waits for it); the stream holds its last
    /// event until the returned write is done.
    fn keep_later(self, response: Value) -> Gate {
        let tasks = self.gateway.settlements.clone();
        tasks.spawn(self.keep(response))
    }
}

/// A Responses request, parsed once; builds each target's body by translation.
pub struct ResponsesRequest {
    body: Map<String, Value>,
    /// The whole conversation: the stored one of `previous_response_id`, then `input`.
    items: Vec<Value>,
    model: String,
    stream: bool,
    estimate: f64,
    headers: HeaderMap,
    default_max_tokens: u32,
    shell: ResponseShell,
    /// `None` with `store: false`.
    keeper: Option<Keeper>,
    /// A follow-up of a conversation a native provider keeps: (provider id, key id).
    pinned: Option<(String, String)>,
}

impl CallPlan for ResponsesRequest {
    fn model(&self) -> &str {
        &self.model
    }

    fn operation(&self) -> Operation {
        Operation::Responses
    }

    fn estimate(&self) -> f64 {
        self.estimate
    }

    fn prompt_estimate(&self) -> f64 {
        let chars = items_text_len(&self.items) + text_len(self.body.get("instructions"));
        (chars as f64 / 4.0).ceil()
    }

    fn streams(&self) -> bool {
        self.stream
    }

    fn client_headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn pinned_key(&self) -> Option<(&str, &str)> {
        self.pinned.as_ref().map(|(p, k)| (p.as_str(), k.as_str()))
    }

    fn body_for(&mut self, protocol: &dyn Protocol, model: &str) -> Result<Bytes, ApiError> {
        if protocol.responses_native() {
            return to_bytes(&self.native_body(model));
        }
        if self.pinned.is_some() {
            return Err(ApiError::bad_request(
                "untranslatable_request",
                "this conversation is kept by a provider that takes Responses natively; it cannot be continued by translation",
            ));
        }
        let chat = conversion::responses_to_chat_request(&self.body, &self.items, model);
        let translated = match protocol.wire() {
            Wire::OpenAi => chat,
            Wire::Anthropic => chat.and_then(|chat| {
                conversion::chat_to_messages_request(&chat, model, self.default_max_tokens)
            }),
            native => chat.and_then(|chat| {
                conversion::native::chat_to_native_request(
                    native,
                    &chat,
                    model,
                    self.default_max_tokens,
                )
            }),
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

impl ResponsesRequest {
    /// The client's body for a native provider: the model replaced; a conversation the
    /// gateway kept is sent whole as `input` instead of its `previous_response_id`.
    fn native_body(&self, model: &str) -> Map<String, Value> {
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(model.to_owned()));
        let kept_here = self.pinned.is_none() && body.contains_key("previous_response_id");
        if kept_here {
            body.remove("previous_response_id");
            body.insert("input".into(), Value::Array(self.items.clone()));
        }
        body
    }
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let parsed = parse(&gw, &caller, headers, body);
    super::run(
        &gw,
        &caller,
        &id,
        parsed,
        ("responses", Wire::OpenAi),
        render,
    )
    .await
}

/// Most items one request's `input` may hold.
const MAX_INPUT_ITEMS: usize = 10_000;

/// `background: true` is refused on every provider: a background response's usage arrives
/// after the request has been settled, so it could not be metered.
fn refuse_background(body: &Map<String, Value>) -> Result<(), ApiError> {
    if body.get("background") == Some(&Value::Bool(true)) {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            "`background` responses are not supported by the gateway: their usage could not be metered",
        ));
    }
    Ok(())
}

/// Provider-side objects that clients create and name by id, which the gateway cannot tell
/// the owner of: behind one shared provider key, one client could read another's by naming
/// it. Refused on every provider; `previous_response_id` is the one such id the gateway
/// tracks (stored conversations and native routes are kept per client).
fn refuse_unowned_objects(body: &Map<String, Value>, input: &[Value]) -> Result<(), ApiError> {
    if body.get("conversation").is_some_and(|c| !c.is_null()) {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            "`conversation` objects are not supported by the gateway (their owner cannot be checked behind a shared provider key); use `previous_response_id`",
        ));
    }
    let is_reference = |item: &Value| match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind == "item_reference",
        None => item.get("role").is_none() && item.get("id").is_some(),
    };
    if input.iter().any(is_reference) {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            "`item_reference` input items are not supported by the gateway (their owner cannot be checked behind a shared provider key); send the items themselves or use `previous_response_id`",
        ));
    }
    Ok(())
}

/// `metadata` and `user` are kept with a response but sent to no translated provider, so
/// they are held to OpenAI's own bounds: at most 16 pairs, keys of at most 64 characters,
/// string values of at most 512; `user` at most 256 characters.
fn check_kept_extras(body: &Map<String, Value>) -> Result<(), ApiError> {
    let invalid = |message: &str| Err(ApiError::bad_request("invalid_metadata", message));
    match body.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(pairs)) => {
            let fits = |(k, v): (&String, &Value)| {
                k.chars().count() <= 64 && v.as_str().is_some_and(|v| v.chars().count() <= 512)
            };
            if pairs.len() > 16 || !pairs.iter().all(fits) {
                return invalid(
                    "`metadata` holds at most 16 pairs, keys of at most 64 characters and string values of at most 512",
                );
            }
        }
        Some(_) => return invalid("`metadata` must be an object of strings"),
    }
    match body.get("user") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(user)) if user.chars().count() <= 256 => Ok(()),
        Some(_) => invalid("`user` must be a string of at most 256 characters"),
    }
}

async fn parse(
    gw: &Arc<Gateway>,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<ResponsesRequest, ApiError> {
    let body = read_json(&headers, body).await?;
    let model = model_of(body.get("model"))?;
    let policy = &caller.runtime.policy;
    let cap = body
        .get("max_output_tokens")
        .filter(|v| !v.is_null())
        .map(|v| ("max_output_tokens", v.clone()));
    let estimate = max_tokens(cap)?.unwrap_or(f64::from(policy.default_max_tokens));
    refuse_background(&body)?;
    let input = conversion::input_items(body.get("input"))
        .map_err(|e| ApiError::bad_request("invalid_input", e.0))?;
    refuse_unowned_objects(&body, &input)?;
    check_kept_extras(&body)?;
    if input.len() > MAX_INPUT_ITEMS {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!(
                "`input` holds {} items; at most {MAX_INPUT_ITEMS} are accepted",
                input.len()
            ),
        ));
    }
    let mut pinned = None;
    let history = match body.get("previous_response_id") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(previous)) => match load_route(gw, caller, previous).await? {
            Some(route) => {
                pinned = Some((route.provider, route.key));
                Vec::new()
            }
            None => previous_conversation(gw, caller, previous).await?,
        },
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_previous_response_id",
                "`previous_response_id` must be a string",
            ));
        }
    };
    let mut items = history.clone();
    items.extend(input.iter().cloned());
    if items.is_empty() && pinned.is_none() {
        return Err(ApiError::bad_request(
            "missing_input",
            "`input` is required (a string or a list of items)",
        ));
    }
    let id = new_response_id();
    let shell = ResponseShell::new(&id, &model, now_seconds(), &body);
    let keeper = (body.get("store") != Some(&Value::Bool(false))).then(|| Keeper {
        store: Arc::clone(&gw.store),
        gateway: Arc::clone(gw),
        ttl: Duration::from_secs(policy.responses_ttl_secs.max(1)),
        client: caller.client.id.clone(),
        history,
        // Only what a provider is sent: reasoning items and unknown fields are not kept.
        input: input.iter().filter_map(conversion::kept_item).collect(),
    });
    Ok(ResponsesRequest {
        stream: body.get("stream").and_then(Value::as_bool) == Some(true),
        body,
        items,
        model,
        estimate,
        headers,
        default_max_tokens: policy.default_max_tokens,
        shell,
        keeper,
        pinned,
    })
}

/// The stored conversation a follow-up continues; 400 when there is none for this client.
async fn previous_conversation(
    gw: &Gateway,
    caller: &Caller,
    previous: &str,
) -> Result<Vec<Value>, ApiError> {
    let stored = load(gw, caller, previous).await?.ok_or_else(|| {
        ApiError::bad_request(
            "previous_response_not_found",
            format!(
                "Previous response with id '{}' not found.",
                crate::error::clip(previous, 64)
            ),
        )
    })?;
    Ok(stored.conversation())
}

/// The stored response `id` of this caller, if there is one.
async fn load(gw: &Gateway, caller: &Caller, id: &str) -> Result<Option<Stored>, ApiError> {
    if !is_response_id(id) {
        return Ok(None);
    }
    let bytes =
        gw.store.get_doc(&doc_key(id)).await.map_err(|e| {
            ApiError::store_unavailable(format!("stored responses unavailable: {e}"))
        })?;
    let stored = bytes.and_then(|b| serde_json::from_slice::<Stored>(&b).ok());
    Ok(stored.filter(|s| s.client == caller.client.id))
}

/// A response id this gateway could have made: `resp_` and hex.
fn is_response_id(id: &str) -> bool {
    id.strip_prefix("resp_").is_some_and(|hex| {
        (1..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Keys of the id generator, random per process (SipHash with secret keys is a PRF, so the
/// ids are not guessable from each other).
static ID_KEYS: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// `resp_` and 128 unguessable bits in hex.
fn new_response_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let half = |lane: u64| {
        let mut hasher = ID_KEYS.build_hasher();
        hasher.write_u64(n);
        hasher.write_u64(lane);
        hasher.finish()
    };
    format!("resp_{:016x}{:016x}", half(0), half(1))
}

/// Characters of text in a conversation's items (a rough measure of its tokens).
pub(super) fn items_text_len(items: &[Value]) -> usize {
    items.iter().map(|item| text_len(Some(item))).sum()
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn render(answer: Answer, request: ResponsesRequest, trace: &mut Trace) -> Response {
    let Answer {
        response,
        attempt,
        client_error,
        ..
    } = answer;
    let from = attempt.provider_config().protocol.wire();
    if client_error {
        return relay::refusal(response, attempt, from, Wire::OpenAi).await;
    }
    if attempt.provider_config().protocol.responses_native() {
        return native(response, attempt, request, trace).await;
    }
    if request.stream {
        trace.status(response.status().as_u16());
        let prompt_chars =
            items_text_len(&request.items) + text_len(request.body.get("instructions"));
        let reframer = match from {
            Wire::OpenAi => Reframer::Chat(ChatToResponsesStream::new(request.shell)),
            Wire::Anthropic => Reframer::Messages(MessagesToResponsesStream::new(
                request.shell,
                &request.model,
            )),
            native => match conversion::native::native_to_chat_stream(native, &request.model, true)
            {
                Ok(chat) => Reframer::Native(chat, ChatToResponsesStream::new(request.shell)),
                Err(e) => {
                    attempt.settle(Outcome::UpstreamFailure);
                    return ApiError::upstream(StatusCode::BAD_GATEWAY, e.to_string())
                        .into_response_for(Wire::OpenAi);
                }
            },
        };
        let relay = Box::new(ResponsesRelay {
            reframer,
            keeper: request.keeper,
            gate: None,
        });
        return relay::stream_through(
            response,
            attempt,
            relay,
            true,
            Prompt::Chars(prompt_chars),
            trace.take(),
        );
    }
    complete(response, attempt, from, request, trace).await
}

async fn complete(
    response: UpstreamResponse,
    attempt: Attempt,
    from: Wire,
    request: ResponsesRequest,
    trace: &mut Trace,
) -> Response {
    let builder = relay::head(&response, &attempt, Some(relay::JSON));
    let provider = attempt.provider_config();
    let bytes = match response.bytes(relay::MAX_RESPONSE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("provider `{}` broke off: {e}", provider.id);
            attempt.settle(Outcome::UpstreamFailure);
            trace.error("upstream_broke_off");
            return ApiError::upstream(StatusCode::BAD_GATEWAY, message)
                .into_response_for(Wire::OpenAi);
        }
    };
    let usage = provider.protocol.usage_of_body(&bytes);
    trace.usage(usage.as_ref(), &provider.pricing);
    attempt.settle(Outcome::Success(usage));
    let translated = translate_answer(&bytes, from, &request);
    let object = match translated {
        Ok(object) => object,
        Err(message) => {
            trace.error("untranslatable_response");
            return ApiError::upstream(StatusCode::BAD_GATEWAY, message)
                .into_response_for(Wire::OpenAi);
        }
    };
    if let Some(keeper) = request.keeper {
        keeper.keep(object.clone()).await;
    }
    relay::built(builder, Body::from(object.to_string()))
}

/// The provider's answer as a Responses object, through Chat for an Anthropic provider.
fn translate_answer(bytes: &[u8], from: Wire, request: &ResponsesRequest) -> Result<Value, String> {
    let parsed: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the provider's answer is not JSON: {e}"))?;
    let translated = match from {
        Wire::OpenAi => conversion::chat_to_responses_response(&parsed, &request.shell),
        Wire::Anthropic => conversion::messages_to_chat_response(&parsed, &request.model)
            .and_then(|chat| conversion::chat_to_responses_response(&chat, &request.shell))
            .map(|mut object| {
                // The neutral usage keeps what Chat cannot carry (Anthropic cache writes).
                if let Some(usage) = conversion::usage_of_message(&parsed) {
                    object["usage"] = conversion::responses_usage_json(&usage);
                }
                object
            }),
        native => conversion::native::native_to_chat_response(native, &parsed, &request.model)
            .and_then(|chat| conversion::chat_to_responses_response(&chat, &request.shell)),
    };
    translated.map_err(|e| format!("the provider's answer cannot be translated: {e}"))
}

/// The stream re-framer for the provider's dialect.
enum Reframer {
    Chat(ChatToResponsesStream),
    Messages(MessagesToResponsesStream),
    /// A native provider's stream, through Chat chunks.
    Native(Box<dyn ChatReframer>, ChatToResponsesStream),
}

impl Reframer {
    /// Chat frames from a native provider, re-framed as Responses events.
    fn native_event(
        chat: &mut dyn ChatReframer,
        responses: &mut ChatToResponsesStream,
        event: &[u8],
    ) -> Result<Bytes, conversion::Unsupported> {
        let frames = chat.event(event)?;
        Self::through(responses, &frames)
    }

    fn through(
        responses: &mut ChatToResponsesStream,
        frames: &[u8],
    ) -> Result<Bytes, conversion::Unsupported> {
        let mut out = Vec::new();
        for frame in conversion::native::chat_frames(frames) {
            out.extend_from_slice(&responses.event(&frame)?);
        }
        Ok(Bytes::from(out))
    }
}

/// Re-frames a provider's stream as Responses events; keeps the response once complete.
struct ResponsesRelay {
    reframer: Reframer,
    keeper: Option<Keeper>,
    /// The write of the completed response, which its last event waits for.
    gate: Option<Gate>,
}

impl ResponsesRelay {
    fn response(&self) -> Option<&Value> {
        match &self.reframer {
            Reframer::Chat(s) => s.response(),
            Reframer::Messages(s) => s.response(),
            Reframer::Native(_, s) => s.response(),
        }
    }

    /// Once the stream completed (not failed), keep the response, once.
    fn keep_when_done(&mut self) {
        let done = self.response().filter(|r| r["status"] != "failed").cloned();
        if let Some(response) = done
            && let Some(keeper) = self.keeper.take()
        {
            self.gate = Some(keeper.keep_later(response));
        }
    }
}

impl StreamRelay for ResponsesRelay {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        let out = match &mut self.reframer {
            Reframer::Chat(s) => s.event(&event),
            Reframer::Messages(s) => s.event(&event),
            Reframer::Native(chat, s) => Reframer::native_event(chat.as_mut(), s, &event),
        }
        .map_err(|e| e.to_string())?;
        self.keep_when_done();
        Ok((!out.is_empty()).then_some(out))
    }

    fn finish(&mut self) -> Option<Bytes> {
        let out = match &mut self.reframer {
            Reframer::Chat(s) => s.finish(),
            Reframer::Messages(s) => s.finish(),
            Reframer::Native(chat, s) => {
                let last = chat.finish();
                let mut out = Reframer::through(s, &last).unwrap_or_default().to_vec();
                out.extend_from_slice(&s.finish());
                Bytes::from(out)
            }
        };
        self.keep_when_done();
        (!out.is_empty()).then_some(out)
    }

    fn usage(&self) -> Option<Usage> {
        match &self.reframer {
            Reframer::Chat(s) => s.usage(),
            Reframer::Messages(s) => s.usage(),
            Reframer::Native(chat, _) => chat.usage(),
        }
    }

    fn hold_until(&mut self) -> Option<Gate> {
        self.gate.take()
    }
}

/// `GET /v1/responses/{id}`: a stored response of this client.
pub async fn retrieve(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return refused(path_refused(&rejection)),
    };
    match load(&gw, &caller, &id).await {
        Ok(Some(stored)) => axum::Json(stored.response).into_response(),
        Ok(None) => native_call(&gw, &caller, Method::GET, &id, "")
            .await
            .unwrap_or_else(|| not_found(&id)),
        Err(e) => refused(e),
    }
}

/// `DELETE /v1/responses/{id}`: removes a stored response of this client, for every instance.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => return refused(path_refused(&rejection)),
    };
    let deleted = match load(&gw, &caller, &id).await {
        Ok(Some(_)) => gw.store.delete_doc(&doc_key(&id)).await,
        Ok(None) => {
            return native_call(&gw, &caller, Method::DELETE, &id, "")
                .await
                .unwrap_or_else(|| not_found(&id));
        }
        Err(e) => return refused(e),
    };
    match deleted {
        Ok(_) => {
            axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
        }
        Err(e) => refused(ApiError::store_unavailable(format!(
            "stored responses unavailable: {e}"
        ))),
    }
}

/// A path the router matched but whose id cannot be read (bad percent-encoding).
fn path_refused(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        clip(&rejection.body_text(), 200).into_owned(),
    )
}

/// Paging of `input_items`, as OpenAI takes it.
#[derive(Debug, Deserialize)]
pub struct ItemsQuery {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the input the response was made from (the stored
/// conversation before it and its own input), newest first unless `order=asc`.
pub async fn input_items(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<ItemsQuery>, QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (id, query) = match (id, query) {
        (Ok(Path(id)), Ok(Query(query))) => (id, query),
        (Err(rejection), _) => return refused(path_refused(&rejection)),
        (_, Err(rejection)) => {
            return refused(ApiError::bad_request(
                "invalid_query",
                clip(&rejection.body_text(), 200).into_owned(),
            ));
        }
    };
    let stored = match load(&gw, &caller, &id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            let suffix = match raw {
                Some(raw) => format!("/input_items?{raw}"),
                None => "/input_items".to_owned(),
            };
            return native_call(&gw, &caller, Method::GET, &id, &suffix)
                .await
                .unwrap_or_else(|| not_found(&id));
        }
        Err(e) => return refused(e),
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return refused(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be from 1 to 100",
        ));
    }
    let mut items: Vec<Value> = stored.history.into_iter().chain(stored.input).collect();
    for (i, item) in items.iter_mut().enumerate() {
        with_item_id(item, &id, i);
    }
    if query.order.as_deref() != Some("asc") {
        items.reverse();
    }
    let start = match &query.after {
        Some(after) => items
            .iter()
            .position(|item| item["id"] == after.as_str())
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < items.len();
    axum::Json(json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": has_more,
    }))
    .into_response()
}

/// Input items as OpenAI lists them: each with an `id` and a `type`.
fn with_item_id(item: &mut Value, response_id: &str, index: usize) {
    let Some(map) = item.as_object_mut() else {
        return;
    };
    if !map.contains_key("type") && map.contains_key("role") {
        map.insert("type".into(), "message".into());
    }
    if map.get("id").is_none_or(|v| !v.is_string()) {
        let stem = response_id.strip_prefix("resp_").unwrap_or(response_id);
        map.insert("id".into(), format!("item_{stem}_{index}").into());
    }
}

fn not_found(id: &str) -> Response {
    refused(ApiError::not_found(format!(
        "No response found with id '{}'.",
        crate::error::clip(id, 64)
    )))
}

fn refused(e: ApiError) -> Response {
    crate::metrics::rejected(e.code);
    e.into_response_for(Wire::OpenAi)
}
