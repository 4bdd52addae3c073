//! `truckllm mock-upstream`: a real HTTP server standing in for LLM providers in tests, demos
//! and benchmarks. It speaks OpenAI's chat, embeddings and models API ([`openai`]),
//! Anthropic's Messages API with streaming and token counting ([`anthropic`]), Azure
//! OpenAI's deployment and `v1` routes ([`azure`]) and Gemini's `generateContent`, its SSE
//! stream and `batchEmbedContents` ([`gemini`]) and AWS Bedrock's Converse API with SigV4
//! checks and event-stream framing ([`bedrock`]), and checks requests the way those providers
//! do (a key whose secret starts with `revoked` is refused as each refuses a bad key). Answers are deterministic and carry usage: input
//! tokens are the words of the input; the reply is a fixed sentence cut to `max_tokens` words.
//!
//! Knobs ([`MockOptions`]): latency before answering, a delay between stream events, a length
//! for OpenAI chat streams whatever `max_tokens` says (long, slow streams), a share of
//! 500s, a share of 429s with `Retry-After`, a share of "overloaded" answers (529 on the
//! Anthropic route, 503 on the OpenAI ones) and a per-key requests-per-minute cap (429 past
//! it, like a real provider). Tests can also fault one key for good ([`MockUpstream::fault_key`]:
//! every request 429, or 500). Each route renders these in its own provider's error shape.
//! With `responses_native` it also answers OpenAI's Responses API natively ([`responses`]),
//! keeping each response bound to the key that made it, as OpenAI does.
//!
//! Inspection: `GET /mock/stats` reports what each key was asked and answered, by the key's
//! [`key_label`] (a short SHA-256 fingerprint); `GET /mock/last-request` the last JSON body;
//! `GET /mock/last-headers` the last request's path (as `:path`) and the headers that matter
//! to a provider (an allowlist: `anthropic-version`, `anthropic-beta`, `content-type`, …), with
//! `x-api-key`, `api-key`, `x-goog-api-key` and `authorization` shown only as key labels (a
//! SigV4 `authorization` without its signature). The mock never shows a secret.

mod anthropic;
mod azure;
pub mod bedrock;
mod gemini;
mod openai;
mod responses;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::Value;

/// The reply every completion is cut from.
const REPLY: [&str; 9] = [
    "This",
    "is",
    "a",
    "mock",
    "reply",
    "from",
    "the",
    "TruckLLM",
    "upstream.",
];

/// Request headers `last_headers` keeps: what a provider reads besides the key.
const RECORDED_HEADERS: [&str; 9] = [
    "accept",
    "anthropic-beta",
    "anthropic-version",
    "content-type",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "user-agent",
    "x-amz-date",
];

/// Prefixes remembered for the cache rules before the memory is cleared.
const MAX_CACHED_PREFIXES: usize = 100_000;

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    pub latency: Duration,
    pub chunk_delay: Duration,
    /// Share of requests answered 500 (0 to 1).
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After` (0 to 1).
    pub rate_limit_rate: f64,
    /// Share of requests answered "overloaded": 529 `overloaded_error` on the Anthropic route,
    /// 503 on the OpenAI ones (0 to 1).
    pub overload_rate: f64,
    /// Requests per minute per key before 429s.
    pub rpm_cap: Option<u64>,
    /// Answer `POST /v1/responses` natively (else 404, as most OpenAI-compatible APIs).
    pub responses_native: bool,
    /// OpenAI chat streams carry this many content chunks (the reply's words over and over),
    /// whatever `max_tokens` says: with `chunk_delay`, a stream held open for a long time, as
    /// the concurrent-streams benchmark needs. `None`: the reply cut to `max_tokens`.
    pub stream_chunks: Option<u64>,
    pub seed: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            overload_rate: 0.0,
            rpm_cap: None,
            responses_native: false,
            stream_chunks: None,
            seed: 0x5eed,
        }
    }
}

/// What one key was asked and answered.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyStats {
    pub requests: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub errors: u64,
    /// Answered "overloaded" (529 / 503) by the `overload_rate` knob.
    pub overloaded: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens reported as written to / read from the prompt cache.
    pub cache_write_tokens: u64,
    pub cache_read_tokens: u64,
}

/// The mock's state.
#[derive(Debug)]
pub struct MockUpstream {
    options: MockOptions,
    rng: AtomicU64,
    /// Numbers message, tool-call and request ids so they are deterministic.
    ids: AtomicU64,
    stats: Mutex<HashMap<String, KeyStats>>,
    /// Per key: the current minute and requests in it, for the rpm cap.
    minutes: Mutex<HashMap<String, (u64, u64)>>,
    /// The last request body received, as JSON, so tests can see what reached the provider.
    last_request: Mutex<Option<Value>>,
    /// The same body, byte for byte, so tests can see that a pass-through changed nothing else.
    last_raw_request: Mutex<Option<Bytes>>,
    /// The last request's path and recorded headers (see the module doc).
    last_headers: Mutex<Option<BTreeMap<String, String>>>,
    /// Fingerprints of prompt prefixes seen, for the prompt-cache rules.
    cached: Mutex<HashSet<String>>,
    /// Native Responses API answers: id → (the key that made it, words of its conversation,
    /// the response object).
    responses: Mutex<HashMap<String, (String, u64, Value)>>,
    /// Keys (by label) answered with a fault every time ([`MockUpstream::fault_key`]).
    faults: Mutex<HashMap<String, KeyFault>>,
}

/// A fault one key meets on every request, whatever the knobs say (tests of retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFault {
    /// 429 with `Retry-After: 1`, in the route's dialect.
    RateLimited,
    /// 500, in the route's dialect.
    Failing,
}

/// Why a knob refused a request; each dialect renders it in its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    RateLimited { retry_after: u64 },
    Overloaded,
    Failed,
}

impl MockUpstream {
    pub fn new(options: MockOptions) -> Arc<Self> {
        Arc::new(Self {
            rng: AtomicU64::new(options.seed.max(1)),
            ids: AtomicU64::new(0),
            options,
            stats: Mutex::new(HashMap::new()),
            minutes: Mutex::new(HashMap::new()),
            last_request: Mutex::new(None),
            last_raw_request: Mutex::new(None),
            last_headers: Mutex::new(None),
            cached: Mutex::new(HashSet::new()),
            responses: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
        })
    }

    /// Answers every request made with `secret` with `fault` from now on.
    pub fn fault_key(&self, secret: &str, fault: KeyFault) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.insert(key_label(secret), fault);
        }
    }

    /// The last request body received.
    pub fn last_request(&self) -> Option<Value> {
        self.last_request.lock().ok().and_then(|r| r.clone())
    }

    /// The last request body received, byte for byte.
    pub fn last_raw_request(&self) -> Option<Bytes> {
        self.last_raw_request.lock().ok().and_then(|r| r.clone())
    }

    /// The last request's path (key `:path`, with its query) and the headers that matter to a
    /// provider; `x-api-key` and `authorization` appear only as [`key_label`]s.
    pub fn last_headers(&self) -> Option<BTreeMap<String, String>> {
        self.last_headers.lock().ok().and_then(|r| r.clone())
    }

    /// A snapshot of the per-key counters.
    pub fn stats(&self) -> HashMap<String, KeyStats> {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn random(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next number for a deterministic id.
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn count(&self, key: &str, f: impl FnOnce(&mut KeyStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(stats.entry(key.to_owned()).or_default());
        }
    }

    fn record_body(&self, request: &Value, raw: &Bytes) {
        if let Ok(mut last) = self.last_request.lock() {
            *last = Some(request.clone());
        }
        if let Ok(mut last) = self.last_raw_request.lock() {
            *last = Some(raw.clone());
        }
    }

    fn record_headers(&self, uri: &Uri, headers: &HeaderMap) {
        let mut kept = BTreeMap::new();
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        kept.insert(":path".to_owned(), path.to_owned());
        for name in RECORDED_HEADERS {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !values.is_empty() {
                kept.insert(name.to_owned(), values.join(", "));
            }
        }
        for name in ["x-api-key", "api-key", "x-goog-api-key"] {
            if let Some(secret) = header_str(headers, name) {
                kept.insert(name.to_owned(), key_label(secret));
            }
        }
        if let Some(auth) = header_str(headers, "authorization") {
            let shown = match auth.strip_prefix("Bearer ") {
                Some(token) => format!("Bearer {}", key_label(token)),
                // SigV4: the credential scope and signed headers, not the signature.
                None if auth.starts_with("AWS4-HMAC-SHA256 ") => auth
                    .split(", Signature=")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                None => "(not a bearer token)".to_owned(),
            };
            kept.insert("authorization".to_owned(), shown);
        }
        if let Ok(mut last) = self.last_headers.lock() {
            *last = Some(kept);
        }
    }

    /// Of `prefixes` (fingerprints, shortest first), the index of the longest one seen before;
    /// all of them are remembered from now on.
    fn cache_lookup(&self, prefixes: &[String]) -> Option<usize> {
        let Ok(mut cached) = self.cached.lock() else {
            return None;
        };
        let hit = prefixes.iter().rposition(|p| cached.contains(p));
        if cached.len() + prefixes.len() > MAX_CACHED_PREFIXES {
            cached.clear();
        }
        cached.extend(prefixes.iter().cloned());
        hit
    }

    /// The refusal that replaces a normal answer, if a knob fires.
    fn refusal(&self, key: &str) -> Option<Refusal> {
        let fault = self.faults.lock().ok().and_then(|f| f.get(key).copied());
        match fault {
            Some(KeyFault::RateLimited) => {
                self.count(key, |s| s.rate_limited += 1);
                return Some(Refusal::RateLimited { retry_after: 1 });
            }
            Some(KeyFault::Failing) => {
                self.count(key, |s| s.errors += 1);
                return Some(Refusal::Failed);
            }
            None => {}
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if let Some(cap) = self.options.rpm_cap {
            let over = self.minutes.lock().is_ok_and(|mut m| {
                let entry = m.entry(key.to_owned()).or_insert((now / 60, 0));
                if entry.0 != now / 60 {
                    *entry = (now / 60, 0);
                }
                entry.1 += 1;
                entry.1 > cap
            });
            if over {
                self.count(key, |s| s.rate_limited += 1);
                return Some(Refusal::RateLimited {
                    retry_after: 60 - now % 60,
                });
            }
        }
        if self.fires(self.options.rate_limit_rate) {
            self.count(key, |s| s.rate_limited += 1);
            return Some(Refusal::RateLimited { retry_after: 1 });
        }
        if self.fires(self.options.overload_rate) {
            self.count(key, |s| s.overloaded += 1);
            return Some(Refusal::Overloaded);
        }
        if self.fires(self.options.error_rate) {
            self.count(key, |s| s.errors += 1);
            return Some(Refusal::Failed);
        }
        None
    }

    /// Whether a knob with this share fires now (no draw when the share is zero, so adding a
    /// knob does not change the sequence the others see).
    fn fires(&self, rate: f64) -> bool {
        rate > 0.0 && self.random() < rate
    }
}

/// The mock's routes.
pub fn router(mock: Arc<MockUpstream>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/model/{model}/converse", post(bedrock::converse))
        .route(
            "/model/{model}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::deployment_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure::deployment_embeddings),
        )
        .route("/openai/v1/chat/completions", post(azure::v1_chat))
        .route("/openai/v1/embeddings", post(azure::v1_embeddings))
        .route("/v1beta/models/{call}", post(gemini::call))
        .route("/mock/stats", get(stats))
        .route("/mock/last-request", get(last_request))
        .route("/mock/last-headers", get(last_headers))
        .fallback(not_found)
        .with_state(mock)
}

/// Serves the mock on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mock: Arc<MockUpstream>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(mock))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `HEAD /` and `GET /`: clients (Claude Code) probe the base URL before their first call.
async fn root() -> Response {
    "truckllm mock upstream\n".into_response()
}

/// Unknown routes: 404 in the dialect the caller speaks (Anthropic's when it sent
/// `anthropic-version`).
async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    let message = format!("no route {}", uri.path());
    if headers.contains_key("anthropic-version") {
        return anthropic::error(StatusCode::NOT_FOUND, "not_found_error", &message, None);
    }
    openai::error(StatusCode::NOT_FOUND, "invalid_request_error", &message)
}

async fn last_request(State(mock): State<Arc<MockUpstream>>) -> Response {
    axum::Json(mock.last_request()).into_response()
}

async fn last_headers(State(mock): State<Arc<MockUpstream>>) -> Response {
    axum::Json(mock.last_headers()).into_response()
}

async fn stats(State(mock): State<Arc<MockUpstream>>) -> Response {
    axum::Json(mock.stats()).into_response()
}

/// How the mock names a key in its stats: `sha256:` and the first 12 hex digits of the
/// secret's SHA-256, enough to tell keys apart and nothing to call a provider with.
pub fn key_label(secret: &str) -> String {
    let hex = sha256_hex(secret.as_bytes());
    format!("sha256:{}", &hex[..12])
}

/// The label ([`key_label`]) of an `Authorization: Bearer` token, if one was sent.
fn bearer_label(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .map(key_label)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Keys whose secret starts with `revoked` are refused as the provider refuses a bad key
/// (401, or Google's 403), so tests can see a refused key handled.
fn is_revoked(secret: &str) -> bool {
    secret.starts_with("revoked")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// Words of the text in a value: strings, and objects' `content` or `text`.
fn words(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(words).sum(),
        Value::Object(map) => map
            .get("content")
            .or_else(|| map.get("text"))
            .map_or(0, words),
        _ => 0,
    }
}

/// The reply cut to at most `max` words (at least one).
fn reply(max: u64) -> Vec<&'static str> {
    REPLY
        .iter()
        .take(usize::try_from(max.max(1)).unwrap_or(usize::MAX))
        .copied()
        .collect()
}

/// `count` words of the reply, over and over (a long stream).
fn long_reply(count: u64) -> Vec<&'static str> {
    REPLY
        .iter()
        .cycle()
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .copied()
        .collect()
}

fn sleep_latency(options: &MockOptions) -> impl Future<Output = ()> + use<> {
    let latency = options.latency;
    async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
}

/// A `text/event-stream` answer sending `events` with `chunk_delay` before each.
fn event_stream(options: &MockOptions, events: Vec<String>) -> Result<Response, axum::http::Error> {
    let delay = options.chunk_delay;
    let body = futures_util::stream::iter(events).then(move |event| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(event))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::{REPLY, long_reply, reply};

    #[test]
    fn a_long_reply_repeats_the_sentence_for_as_many_words_as_asked() {
        let long = long_reply(20);
        assert_eq!(long.len(), 20);
        assert_eq!(long[..REPLY.len()], REPLY[..]);
        assert_eq!(long[REPLY.len()..2 * REPLY.len()], REPLY[..]);
        assert_eq!(long[19], REPLY[1]);
        assert_eq!(
            reply(20).len(),
            REPLY.len(),
            "without the knob, cut at the sentence"
        );
    }
}
