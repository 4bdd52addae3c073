//! `truckllm mock-upstream`: a real OpenAI-compatible HTTP server standing in for a provider
//! in tests, demos and benchmarks. Answers are deterministic and carry `usage` (prompt tokens
//! are the words of the input; the reply is a fixed sentence cut to `max_tokens` words).
//! Streams end with a usage chunk when `stream_options.include_usage` is set, as OpenAI's do.
//!
//! Knobs: latency before answering, a delay between stream chunks, a share of 500s, a share of
//! 429s with `Retry-After`, and a per-key requests-per-minute cap (429 past it, like a real
//! provider). `GET /mock/stats` reports what each key was asked and answered, by the key's
//! [`key_label`] (a short SHA-256 fingerprint): the mock never shows a secret it received.
//! Embeddings honour `encoding_format: "base64"` (little-endian `f32`s, as OpenAI sends them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

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

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    pub latency: Duration,
    pub chunk_delay: Duration,
    /// Share of requests answered 500 (0 to 1).
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After` (0 to 1).
    pub rate_limit_rate: f64,
    /// Requests per minute per key before 429s.
    pub rpm_cap: Option<u64>,
    pub seed: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            rpm_cap: None,
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
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The mock's state.
#[derive(Debug)]
pub struct MockUpstream {
    options: MockOptions,
    rng: AtomicU64,
    stats: Mutex<HashMap<String, KeyStats>>,
    /// Per key: the current minute and requests in it, for the rpm cap.
    minutes: Mutex<HashMap<String, (u64, u64)>>,
    /// The last request body received, as JSON, so tests can see what reached the provider.
    last_request: Mutex<Option<Value>>,
}

impl MockUpstream {
    pub fn new(options: MockOptions) -> Arc<Self> {
        Arc::new(Self {
            rng: AtomicU64::new(options.seed.max(1)),
            options,
            stats: Mutex::new(HashMap::new()),
            minutes: Mutex::new(HashMap::new()),
            last_request: Mutex::new(None),
        })
    }

    /// The last request body received.
    pub fn last_request(&self) -> Option<Value> {
        self.last_request.lock().ok().and_then(|r| r.clone())
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

    fn count(&self, key: &str, f: impl FnOnce(&mut KeyStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(stats.entry(key.to_owned()).or_default());
        }
    }

    /// The answer that replaces a normal one, if a knob fires.
    fn refusal(&self, key: &str) -> Option<Response> {
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
                return Some(too_many(60 - now % 60));
            }
        }
        if self.options.rate_limit_rate > 0.0 && self.random() < self.options.rate_limit_rate {
            self.count(key, |s| s.rate_limited += 1);
            return Some(too_many(1));
        }
        if self.options.error_rate > 0.0 && self.random() < self.options.error_rate {
            self.count(key, |s| s.errors += 1);
            return Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "mock upstream failure",
            ));
        }
        None
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "mock upstream rate limit",
    );
    if let Ok(v) = retry_after.to_string().parse() {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": null}})),
    )
        .into_response()
}

/// The mock's routes.
pub fn router(mock: Arc<MockUpstream>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/mock/stats", get(stats))
        .route("/mock/last-request", get(last_request))
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

async fn last_request(State(mock): State<Arc<MockUpstream>>) -> Response {
    axum::Json(mock.last_request()).into_response()
}

async fn stats(State(mock): State<Arc<MockUpstream>>) -> Response {
    axum::Json(mock.stats()).into_response()
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "text-embedding-3-small", "object": "model", "created": 0, "owned_by": "mock"}
    ]}))
    .into_response()
}

/// How the mock names a key in its stats: `sha256:` and the first 12 hex digits of the
/// secret's SHA-256, enough to tell keys apart and nothing to call a provider with.
pub fn key_label(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The bearer token's label ([`key_label`]), if a token was sent.
fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .map(key_label)
}

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

async fn admit(
    mock: &MockUpstream,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), Response> {
    let key = key_of(headers).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing bearer token",
        )
    })?;
    mock.count(&key, |s| s.requests += 1);
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &format!("bad JSON: {e}"),
        )
    })?;
    if let Ok(mut last) = mock.last_request.lock() {
        *last = Some(request.clone());
    }
    if !mock.options.latency.is_zero() {
        tokio::time::sleep(mock.options.latency).await;
    }
    if let Some(refusal) = mock.refusal(&key) {
        return Err(refusal);
    }
    Ok((key, request))
}

async fn chat(State(mock): State<Arc<MockUpstream>>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, request) = match admit(&mock, &headers, &body).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_owned();
    let prompt = request.get("messages").map_or(0, words);
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64))
        .unwrap_or(REPLY.len() as u64);
    let reply: Vec<&str> = REPLY.iter().take(max.max(1) as usize).copied().collect();
    let completion = reply.len() as u64;
    mock.count(&key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
        s.completion_tokens += completion;
    });
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return stream(&mock.options, model, reply, include_usage.then_some(usage));
    }
    axum::Json(json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.join(" ")}, "finish_reason": "stop", "logprobs": null}],
        "usage": usage,
    }))
    .into_response()
}

fn stream(
    options: &MockOptions,
    model: String,
    reply: Vec<&'static str>,
    usage: Option<Value>,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if usage.is_some() {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let last = reply.len().saturating_sub(1);
    for (i, word) in reply.iter().enumerate() {
        let text = if i == last {
            (*word).to_owned()
        } else {
            format!("{word} ")
        };
        events.push(chunk(json!({"content": text}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if let Some(usage) = usage {
        events.push(format!("data: {}\n\n", json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": usage})));
    }
    events.push("data: [DONE]\n\n".to_owned());
    let delay = options.chunk_delay;
    let body = futures_util::stream::iter(events).then(move |event| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(event))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot build stream",
            )
        })
}

use futures_util::StreamExt as _;

async fn embeddings(
    State(mock): State<Arc<MockUpstream>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, request) = match admit(&mock, &headers, &body).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let inputs: Vec<String> = match request.get("input") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`input` is required",
            );
        }
    };
    let prompt: u64 = inputs
        .iter()
        .map(|s| s.split_whitespace().count() as u64)
        .sum();
    mock.count(&key, |s| {
        s.ok += 1;
        s.prompt_tokens += prompt;
    });
    let base64 = match request.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("`encoding_format` must be \"float\" or \"base64\", not {other}"),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let embedding = vector(text);
            let embedding = if base64 {
                Value::String(encode_f32s(&embedding))
            } else {
                json!(embedding)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }))
    .into_response()
}

/// An embedding as OpenAI's `base64` format carries it: the vector's `f32`s, little-endian.
fn encode_f32s(vector: &[f64]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A deterministic 8-dimensional unit vector for a text.
fn vector(text: &str) -> Vec<f64> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let raw: Vec<f64> = (0..8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.into_iter().map(|v| v / norm).collect()
}
