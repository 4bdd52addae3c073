//! A provider's answer, back to the client in the client's dialect: read whole and passed (or
//! translated), or streamed event by event through a [`StreamRelay`] that passes, drops or
//! re-frames each event and keeps the usage it saw. The attempt is settled with that usage
//! when the body has been read, the stream ended, or the client went away.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::ClientRequest;
pub(crate) use super::body::Prompt;
use crate::attempt::{Attempt, Outcome};
use crate::conversion;
use crate::dispatch::Answer;
use crate::error::ApiError;
use crate::providers::bedrock::eventstream::FrameSplitter;
use crate::providers::{Operation, Wire, anthropic};
use crate::trace::Trace;
use crate::upstream::{ReadBody, UpstreamResponse};
use crate::usage::{self, SseScanner, Usage};

pub(crate) const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

/// Largest non-streaming response body read from a provider.
pub(crate) const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// [`render`], for [`super::run`]: the request handed over.
pub async fn render_owned(answer: Answer, request: ClientRequest, trace: &mut Trace) -> Response {
    render(answer, &request, trace).await
}

/// Renders a provider's answer for the client.
pub async fn render(answer: Answer, request: &ClientRequest, trace: &mut Trace) -> Response {
    let Answer {
        response,
        attempt,
        client_error,
        ..
    } = answer;
    let from = attempt.provider_config().protocol.wire();
    if client_error {
        return refusal(response, attempt, from, request.wire).await;
    }
    if request.stream {
        trace.status(response.status().as_u16());
        let relay = stream_relay(from, request);
        return stream_back(response, attempt, relay, request, trace.take());
    }
    complete(response, attempt, from, request, trace).await
}

/// The answer's head: the provider's status, its content type when the body passes as it is
/// (else `translated_type`), and which provider key answered.
pub(crate) fn head(
    upstream: &UpstreamResponse,
    attempt: &Attempt,
    translated_type: Option<&'static str>,
) -> axum::http::response::Builder {
    let content_type = match translated_type {
        Some(kind) => HeaderValue::from_static(kind),
        None => upstream
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    };
    let mut builder = Response::builder()
        .status(upstream.status())
        .header(header::CONTENT_TYPE, content_type);
    let provider = attempt.provider_config();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", provider.id, attempt.key_config().id)) {
        builder = builder.header("x-truckllm-key", v);
    }
    builder
}

pub(crate) fn built(builder: axum::http::response::Builder, body: Body) -> Response {
    builder
        .body(body)
        .unwrap_or_else(|_| ApiError::internal("bad upstream headers").into_response())
}

/// The provider refused the request itself: its answer, in the client's dialect.
pub(crate) async fn refusal(
    response: UpstreamResponse,
    attempt: Attempt,
    from: Wire,
    to: Wire,
) -> Response {
    let builder = head(&response, &attempt, (from != to).then_some(JSON));
    let status = response.status().as_u16();
    let read = response.bytes(MAX_RESPONSE_BYTES).await;
    attempt.settle(Outcome::ClientError);
    match read {
        Ok(bytes) if from == to => built(builder, Body::from(bytes)),
        Ok(bytes) => built(
            builder,
            Body::from(translate_error(status, &bytes, from, to).to_string()),
        ),
        Err(e) => ApiError::upstream(StatusCode::BAD_GATEWAY, e.to_string()).into_response_for(to),
    }
}

async fn complete(
    response: UpstreamResponse,
    attempt: Attempt,
    from: Wire,
    request: &ClientRequest,
    trace: &mut Trace,
) -> Response {
    let builder = head(&response, &attempt, (from != request.wire).then_some(JSON));
    let provider = attempt.provider_config();
    let read = response.bytes(MAX_RESPONSE_BYTES).await;
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("provider `{}` broke off: {e}", provider.id);
            attempt.settle(Outcome::UpstreamFailure);
            trace.error("upstream_broke_off");
            return ApiError::upstream(StatusCode::BAD_GATEWAY, message)
                .into_response_for(request.wire);
        }
    };
    let usage = provider.protocol.usage_of_body(&bytes);
    trace.usage(usage.as_ref(), &provider.pricing);
    attempt.settle(Outcome::Success(usage));
    if from == request.wire {
        return built(builder, Body::from(bytes));
    }
    match translate_body(&bytes, from, request) {
        Ok(body) => built(builder, Body::from(body.to_string())),
        Err(message) => {
            trace.error("untranslatable_response");
            ApiError::upstream(StatusCode::BAD_GATEWAY, message).into_response_for(request.wire)
        }
    }
}

/// A provider's error body (status `status`, dialect `from`) in the client's dialect `to`.
fn translate_error(status: u16, bytes: &[u8], from: Wire, to: Wire) -> Value {
    match (from, to) {
        (Wire::Anthropic, _) => conversion::anthropic_error_to_openai(status, bytes),
        (Wire::OpenAi, _) => conversion::openai_error_to_anthropic(status, bytes),
        (native, Wire::Anthropic) => {
            let openai = conversion::native::native_error_to_openai(native, status, bytes);
            conversion::openai_error_to_anthropic(status, openai.to_string().as_bytes())
        }
        (native, _) => conversion::native::native_error_to_openai(native, status, bytes),
    }
}

fn translate_body(bytes: &[u8], from: Wire, request: &ClientRequest) -> Result<Value, String> {
    let parsed: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the provider's answer is not JSON: {e}"))?;
    let translated = match (from, request.wire) {
        (Wire::Anthropic, Wire::OpenAi) => {
            conversion::messages_to_chat_response(&parsed, &request.model)
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            conversion::chat_to_messages_response(&parsed, &request.model)
        }
        (Wire::OpenAi | Wire::Anthropic, _) => Ok(parsed),
        (native, _) if request.operation == Operation::Embeddings => {
            let base64 = request
                .body
                .field("encoding_format")
                .is_some_and(|f| f == "base64");
            conversion::native::native_to_embeddings_response(
                native,
                &parsed,
                &request.model,
                base64,
            )
        }
        (native, to) => {
            conversion::native::native_to_chat_response(native, &parsed, &request.model).and_then(
                |chat| match to {
                    Wire::Anthropic => conversion::chat_to_messages_response(&chat, &request.model),
                    _ => Ok(chat),
                },
            )
        }
    };
    translated.map_err(|e| format!("the provider's answer cannot be translated: {e}"))
}

/// Passes, drops or re-frames one stream event at a time, keeping the usage it saw.
pub trait StreamRelay: Send {
    /// What to send the client for one complete event (possibly nothing).
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String>;
    /// What to send when the provider's stream ends.
    fn finish(&mut self) -> Option<Bytes>;
    fn usage(&self) -> Option<Usage>;
    /// A store write the bytes just produced must wait for: the stream holds them until it
    /// is done, so a client that has the last event finds what it names on any instance.
    /// The write runs on its own task and finishes even if the client leaves meanwhile.
    fn hold_until(&mut self) -> Option<Gate> {
        None
    }
    /// Whether the stream, though it ended, ended in an error the relay passed on (a native
    /// provider's in-stream exception, or a stream cut short): settled as broken off.
    fn failed(&self) -> bool {
        false
    }
}

/// A store write a stream's next bytes wait for (see [`StreamRelay::hold_until`]).
pub(crate) type Gate = tokio::task::JoinHandle<()>;

/// OpenAI to OpenAI: events pass untouched, but for the usage chunk the gateway asked for.
struct OpenAiPassthrough {
    strip_usage: bool,
    usage: Option<Usage>,
}

impl StreamRelay for OpenAiPassthrough {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        let inspected = usage::inspect(event);
        if inspected.usage.is_some() {
            self.usage = inspected.usage;
        }
        Ok((!(self.strip_usage && inspected.usage_only)).then_some(inspected.bytes))
    }
    fn finish(&mut self) -> Option<Bytes> {
        None
    }
    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// Anthropic to Anthropic: events pass untouched; usage from `message_start`/`message_delta`.
struct AnthropicPassthrough {
    usage: anthropic::StreamUsage,
}

impl StreamRelay for AnthropicPassthrough {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        self.usage.observe(&event);
        Ok(Some(event))
    }
    fn finish(&mut self) -> Option<Bytes> {
        None
    }
    fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }
}

/// Anthropic events re-framed as OpenAI chunks.
impl StreamRelay for conversion::MessagesToChatStream {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        conversion::MessagesToChatStream::event(self, &event)
            .map(|b| (!b.is_empty()).then_some(b))
            .map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Option<Bytes> {
        let last = conversion::MessagesToChatStream::finish(self);
        (!last.is_empty()).then_some(last)
    }
    fn usage(&self) -> Option<Usage> {
        conversion::MessagesToChatStream::usage(self)
    }
}

/// OpenAI chunks re-framed as Anthropic events.
impl StreamRelay for conversion::ChatToMessagesStream {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        conversion::ChatToMessagesStream::event(self, &event)
            .map(|b| (!b.is_empty()).then_some(b))
            .map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Option<Bytes> {
        let last = conversion::ChatToMessagesStream::finish(self);
        (!last.is_empty()).then_some(last)
    }
    fn usage(&self) -> Option<Usage> {
        conversion::ChatToMessagesStream::usage(self)
    }
}

/// A native provider's stream re-framed as Chat chunks.
struct NativeToChat(Box<dyn conversion::ChatReframer>);

impl StreamRelay for NativeToChat {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        self.0
            .event(&event)
            .map(|b| (!b.is_empty()).then_some(b))
            .map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Option<Bytes> {
        let last = self.0.finish();
        (!last.is_empty()).then_some(last)
    }
    fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }
    fn failed(&self) -> bool {
        self.0.failed()
    }
}

/// A native provider's stream re-framed as Chat chunks, then as Anthropic events.
impl StreamRelay for conversion::NativeToMessagesStream {
    fn event(&mut self, event: Bytes) -> Result<Option<Bytes>, String> {
        conversion::NativeToMessagesStream::event(self, &event)
            .map(|b| (!b.is_empty()).then_some(b))
            .map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Option<Bytes> {
        let last = conversion::NativeToMessagesStream::finish(self);
        (!last.is_empty()).then_some(last)
    }
    fn usage(&self) -> Option<Usage> {
        conversion::NativeToMessagesStream::usage(self)
    }
    fn failed(&self) -> bool {
        conversion::NativeToMessagesStream::failed(self)
    }
}

/// A relay that cannot start (a dialect without a stream re-framer): its first event ends
/// the stream as broken, with why.
struct Refused(String);

impl StreamRelay for Refused {
    fn event(&mut self, _event: Bytes) -> Result<Option<Bytes>, String> {
        Err(self.0.clone())
    }
    fn finish(&mut self) -> Option<Bytes> {
        None
    }
    fn usage(&self) -> Option<Usage> {
        None
    }
}

fn stream_relay(from: Wire, request: &ClientRequest) -> Box<dyn StreamRelay> {
    let native = |wire: Wire| {
        conversion::native::native_to_chat_stream(wire, &request.model, !request.strip_usage)
    };
    match (from, request.wire) {
        (Wire::OpenAi, Wire::OpenAi) => Box::new(OpenAiPassthrough {
            strip_usage: request.strip_usage,
            usage: None,
        }),
        (Wire::Anthropic, Wire::Anthropic) => Box::new(AnthropicPassthrough {
            usage: anthropic::StreamUsage::default(),
        }),
        (Wire::Anthropic, Wire::OpenAi) => Box::new(conversion::MessagesToChatStream::new(
            &request.model,
            !request.strip_usage,
        )),
        (Wire::OpenAi, Wire::Anthropic) => {
            Box::new(conversion::ChatToMessagesStream::new(&request.model))
        }
        (from, Wire::Anthropic) => match native(from) {
            Ok(chat) => Box::new(conversion::NativeToMessagesStream::new(
                chat,
                &request.model,
            )),
            Err(e) => Box::new(Refused(e.to_string())),
        },
        (from, _) => match native(from) {
            Ok(chat) => Box::new(NativeToChat(chat)),
            Err(e) => Box::new(Refused(e.to_string())),
        },
    }
}

fn stream_back(
    response: UpstreamResponse,
    attempt: Attempt,
    relay: Box<dyn StreamRelay>,
    request: &ClientRequest,
    trace: Trace,
) -> Response {
    let from = attempt.provider_config().protocol.wire();
    let translated = from != request.wire;
    stream_through(
        response,
        attempt,
        relay,
        translated,
        request.body.prompt(),
        trace,
    )
}

/// Largest request body a stream copies for its usage estimate instead of sharing it.
///
/// A small body usually arrives with its head, and is then a slice of the connection's read
/// buffer (8 KiB at least): kept for the estimate, it would hold that whole buffer for as
/// long as the stream lasts while the connection reads into a new one. A copy frees it. A
/// larger body was gathered from several reads into its own buffer, and is kept as it is.
const MAX_COPIED_PROMPT: usize = 16 << 10;

/// `prompt`, holding its own copy of a small body (see [`MAX_COPIED_PROMPT`]).
fn detached(prompt: Prompt) -> Prompt {
    match prompt {
        Prompt::Fields { raw, fields } if raw.len() <= MAX_COPIED_PROMPT => Prompt::Fields {
            raw: Bytes::copy_from_slice(&raw),
            fields,
        },
        other => other,
    }
}

/// Streams a provider's answer through `relay`, metered and settled as [`Metered`] does;
/// `translated` streams are sent as `text/event-stream`, others with the provider's type.
/// `prompt` sizes the estimate used when the provider never reports usage.
pub(crate) fn stream_through(
    response: UpstreamResponse,
    attempt: Attempt,
    relay: Box<dyn StreamRelay>,
    translated: bool,
    prompt: Prompt,
    trace: Trace,
) -> Response {
    let builder = head(&response, &attempt, translated.then_some(SSE))
        .header(header::CACHE_CONTROL, "no-cache");
    let max_event = attempt.runtime_policy().max_stream_event_bytes as usize;
    let framing = Framing::for_wire(attempt.provider_config().protocol.wire(), max_event);
    let metered = Metered {
        live: Some(Relaying {
            trace,
            inner: response.into_stream(),
            framing,
            relay,
            attempt,
            events: 0,
            prompt: detached(prompt),
        }),
        held: None,
    };
    built(builder, Body::from_stream(metered))
}

/// How a provider's stream is cut into events: SSE, or AWS's binary event-stream messages
/// (Bedrock's `/converse-stream`), each whole however the chunks fall.
enum Framing {
    Sse(SseScanner),
    EventStream(FrameSplitter),
}

impl Framing {
    fn for_wire(wire: Wire, max_event: usize) -> Self {
        match wire {
            Wire::Bedrock => Framing::EventStream(FrameSplitter::new(max_event)),
            Wire::OpenAi | Wire::Anthropic | Wire::Gemini => {
                Framing::Sse(SseScanner::new(max_event))
            }
        }
    }

    /// The whole events completed by `chunk`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        match self {
            Framing::Sse(scanner) => scanner.push(chunk).map_err(|e| e.to_string()),
            Framing::EventStream(splitter) => splitter.push(chunk).map_err(|e| e.to_string()),
        }
    }

    /// At the stream's end: a last SSE event that missed its blank line (with it added, to
    /// be pushed again), or an error for an event-stream message cut short.
    fn finish(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Framing::Sse(scanner) => Ok(scanner.finish().map(|rest| {
                let mut event = BytesMut::from(&rest[..]);
                event.extend_from_slice(b"\n\n");
                event.freeze()
            })),
            Framing::EventStream(splitter) => {
                splitter.finish().map(|()| None).map_err(|e| e.to_string())
            }
        }
    }
}

/// Relays a provider's stream event by event; settles usage when the stream ends. If the
/// client goes away first, the rest is drained in the background (see [`Relaying::drain`]).
struct Metered {
    /// `None` once the stream has ended (or broken) and been settled.
    live: Option<Relaying>,
    /// What to send once a store write is done.
    held: Option<(Gate, StreamItem)>,
}

type StreamItem = Result<Bytes, std::io::Error>;

/// A stream being relayed, with what settling it needs.
struct Relaying {
    trace: Trace,
    inner: ReadBody,
    framing: Framing,
    relay: Box<dyn StreamRelay>,
    attempt: Attempt,
    /// Events passed to the client: about one output token each, for an estimate.
    events: u64,
    /// The prompt, measured only if the usage must be estimated.
    prompt: Prompt,
}

impl Relaying {
    /// Frames a chunk into events and relays them; what to send the client.
    fn relay_chunk(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, String> {
        let events = self.framing.push(chunk)?;
        let mut out = BytesMut::new();
        for event in events {
            if let Some(bytes) = self.relay.event(event)? {
                self.events += 1;
                out.extend_from_slice(&bytes);
            }
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
    }

    /// The provider's stream ended: relay what is left (a last event without its blank
    /// line), close the stream in the client's dialect, settle with the usage seen; what is
    /// left to send.
    fn ended(mut self) -> Result<(Option<Bytes>, Option<Gate>), std::io::Error> {
        let mut out = BytesMut::new();
        match self.relay_rest() {
            Ok(Some(rest)) => out.extend_from_slice(&rest),
            Ok(None) => {}
            Err(e) => return Err(self.broken(e)),
        }
        if let Some(last) = self.relay.finish() {
            out.extend_from_slice(&last);
        }
        let gate = self.relay.hold_until();
        let out = (!out.is_empty()).then(|| out.freeze());
        if self.relay.failed() {
            // The provider's error reached the client as the stream's last frame.
            self.settle_broken("stream_failed");
            return Ok((out, gate));
        }
        let usage = self.relay.usage();
        let pricing = &self.attempt.provider_config().pricing;
        self.trace.usage(usage.as_ref(), pricing);
        self.attempt.settle(Outcome::Success(usage));
        Ok((out, gate))
    }

    /// An unterminated last event, ended and relayed like any other.
    fn relay_rest(&mut self) -> Result<Option<Bytes>, String> {
        match self.framing.finish()? {
            Some(event) => self.relay_chunk(&event),
            None => Ok(None),
        }
    }

    /// Ends the stream as broken by the provider: an upstream failure that still uses the
    /// tokens streamed so far (reported, or estimated); the upstream body is dropped with it,
    /// so nothing more is read.
    fn broken(self, cause: impl std::fmt::Display) -> std::io::Error {
        self.settle_broken("stream_broken");
        std::io::Error::other(cause.to_string())
    }

    /// Settles the stream as broken off (`why` in the record): an error for the key, with
    /// the usage streamed so far (reported, or estimated).
    fn settle_broken(mut self, why: &str) {
        self.trace.error(why);
        let usage = self.usage_or_estimate(false);
        let pricing = &self.attempt.provider_config().pricing;
        self.trace.usage(Some(&usage), pricing);
        self.attempt.settle(Outcome::BrokenOff(usage));
    }

    /// The provider's usage if the stream reached its end (`complete`), else an estimate
    /// (marked in the record).
    fn usage_or_estimate(&mut self, complete: bool) -> Usage {
        match self.relay.usage() {
            Some(usage) if complete => usage,
            partial => {
                self.trace.usage_estimated();
                estimate(partial, self.prompt.estimate_tokens(), self.events as f64)
            }
        }
    }

    /// The client left: read the provider's stream on, for at most `within`, for the usage it
    /// reports at its end. Without it, settle with an estimate: the prompt's size plus one
    /// token an event already streamed, marked `usage_estimated`.
    async fn drain(mut self, within: std::time::Duration) {
        let read_to_end = async {
            while let Some(chunk) = self.inner.next().await {
                match chunk {
                    Ok(chunk) => {
                        if self.relay_chunk(&chunk).is_err() {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
            self.relay_rest().is_ok()
        };
        let complete = !within.is_zero()
            && tokio::time::timeout(within, read_to_end)
                .await
                .unwrap_or(false);
        self.settle_drained(complete);
    }

    /// Settles a stream the client left, with the provider's usage if the stream reached its
    /// end (`complete`), else with an estimate.
    fn settle_drained(mut self, complete: bool) {
        let usage = self.usage_or_estimate(complete);
        let pricing = &self.attempt.provider_config().pricing;
        self.trace.usage(Some(&usage), pricing);
        self.attempt.settle(Outcome::Success(Some(usage)));
    }
}

/// Usage for a stream that never reported its own: what the provider said of the prompt if
/// anything, else the prompt's estimate; the events streamed as completion tokens.
fn estimate(partial: Option<Usage>, prompt_estimate: f64, streamed: f64) -> Usage {
    let partial = partial.unwrap_or_default();
    let prompt = if partial.prompt_tokens > 0.0 {
        partial.prompt_tokens
    } else {
        prompt_estimate
    };
    let completion = partial.completion_tokens.max(streamed);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ..partial
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        live.trace.error("client_disconnected");
        let within = std::time::Duration::from_secs_f64(
            live.attempt
                .runtime_policy()
                .stream_drain_secs
                .clamp(0.0, 3600.0),
        );
        // Dropped outside the runtime (at exit): no drain, an estimate.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let tasks = live.attempt.gateway().settlements.clone();
                tasks.spawn_on(live.drain(within), &runtime);
            }
            Err(_) => live.settle_drained(false),
        }
    }
}

impl Metered {
    /// The next thing to send, and the store write it must wait for, if any.
    fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<Option<(StreamItem, Option<Gate>)>> {
        let Some(live) = self.live.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match live.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match live.relay_chunk(&chunk) {
                    Ok(Some(out)) => {
                        live.trace.first_byte();
                        return Poll::Ready(Some((Ok(out), live.relay.hold_until())));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Poll::Ready(self.live.take().map(|l| (Err(l.broken(e)), None)));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(self.live.take().map(|l| (Err(l.broken(e)), None)));
                }
                Poll::Ready(None) => {
                    return Poll::Ready(self.live.take().and_then(|l| match l.ended() {
                        Ok((out, gate)) => match (out, gate) {
                            (None, None) => None,
                            // Nothing left but a write to wait for: an empty chunk after it.
                            (out, gate) => Some((Ok(out.unwrap_or_default()), gate)),
                        },
                        Err(e) => Some((Err(e), None)),
                    }));
                }
            }
        }
    }
}

impl Stream for Metered {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.held.is_none() {
            match std::task::ready!(this.poll_relay(cx)) {
                None => return Poll::Ready(None),
                Some((item, None)) => return Poll::Ready(Some(item)),
                Some((item, Some(gate))) => this.held = Some((gate, item)),
            }
        }
        let Some((gate, _)) = this.held.as_mut() else {
            return Poll::Ready(None);
        };
        // The write's own failure is logged by it; the bytes go either way.
        let _ = std::task::ready!(Pin::new(gate).poll(cx));
        Poll::Ready(this.held.take().map(|(_, item)| item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_keeps_what_the_provider_said_and_counts_streamed_events() {
        let none = estimate(None, 12.0, 5.0);
        assert_eq!(
            (none.prompt_tokens, none.completion_tokens, none.total()),
            (12.0, 5.0, 17.0)
        );
        let started = Usage {
            prompt_tokens: 40.0,
            completion_tokens: 1.0,
            cache_read_tokens: 30.0,
            ..Usage::default()
        };
        let kept = estimate(Some(started), 12.0, 7.0);
        assert_eq!(
            (
                kept.prompt_tokens,
                kept.completion_tokens,
                kept.cache_read_tokens
            ),
            (40.0, 7.0, 30.0)
        );
    }
}
