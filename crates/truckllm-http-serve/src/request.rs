//! The per-request wrapper around the app: a deadline on the request body (a `408` when it
//! passes), in-flight accounting that the connection's idle timer reads, and the client's
//! address as [`axum::extract::ConnectInfo`].
//!
//! The body deadline costs nothing for a body that has already arrived with its head: a timer
//! is armed only the first time reading the body has to wait.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests in flight on one connection; every start and end bumps a generation that the idle
/// timer watches.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    changes: watch::Sender<u64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            changes: watch::channel(0).0,
        }
    }
}

impl Activity {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Notified on every start and end of a request.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        InFlight(Arc::clone(self))
    }
}

/// One request in flight, from its head until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changes.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// The hyper service of one connection: the app, with the body deadline and accounting.
#[derive(Clone)]
pub struct RequestService {
    pub app: Router,
    pub body_read_timeout: Duration,
    pub activity: Arc<Activity>,
    /// The client's address, handed to the app as [`axum::extract::ConnectInfo`].
    pub peer: Option<SocketAddr>,
}

impl hyper::service::Service<Request<Incoming>> for RequestService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.start();
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.body_read_timeout;
        let mut request = request.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline,
                sleep: None,
                expired: Arc::clone(&expired),
            })
        });
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let mut app = self.app.clone();
        let timeout = self.body_read_timeout;
        Box::pin(async move {
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if expired.load(Ordering::Acquire) {
                body_timed_out(timeout)
            } else {
                response
            };
            Ok(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// The answer to a request whose body did not arrive in time; the connection closes after it.
fn body_timed_out(timeout: Duration) -> Response<Body> {
    let message = format!(
        "{{\"error\":{{\"message\":\"the request body did not arrive within {} s\",\"type\":\"request_timeout\",\"code\":\"request_timeout\"}}}}",
        timeout.as_secs_f64()
    );
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a request body yields once its deadline has passed.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails once `deadline` has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Armed the first time reading has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(BoxError::from)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is done or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
