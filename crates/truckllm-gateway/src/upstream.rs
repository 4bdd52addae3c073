//! The HTTP client the gateway calls providers with.
//!
//! hyper-util's pooled client over rustls: HTTP/1.1, or HTTP/2 where the provider offers it
//! by ALPN, with server certificates checked by the platform's verifier (as reqwest does). It
//! replaced reqwest on the request path because a profile blamed reqwest's layers (URL
//! re-parsing, redirect and retry services) for about a tenth of the gateway's CPU; the gateway
//! needs none of them. Nothing here follows redirects or reads proxy settings.
//!
//! Two timeouts: connect, and read. The read timeout is the longest wait for the response
//! head or for the next chunk of its body, never for the whole response, so a long stream that
//! keeps sending is not cut.
//!
//! Egress proxies: by default the usual variables are honoured as curl reads them
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, lower case too). A proxied
//! connection is an HTTP `CONNECT` tunnel to the provider; for an `https` provider TLS runs
//! inside it, so the proxy sees neither the key nor the prompt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

use crate::state::{UpstreamOptions, UpstreamProxy};

/// Why a call to a provider failed before a complete answer. Messages never carry the URL's
/// query, credentials or the key's secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no response within the {0:?} read timeout")]
    HeadTimeout(Duration),
    #[error("the response stalled for longer than the {0:?} read timeout")]
    BodyTimeout(Duration),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Transport(String),
}

impl UpstreamError {
    /// The error and its causes, one line (hyper's own message alone says little, e.g.
    /// "client error (Connect)").
    fn transport(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        Self::Transport(message)
    }
}

/// The pooled provider client; cheap to clone.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<ProxyConnector>, Full<Bytes>>,
    read_timeout: Duration,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    pub fn new(options: &UpstreamOptions) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .map_err(|e| format!("cannot set up TLS for upstream calls: {e}"))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(ProxyConnector::new(http, &options.proxy));
        // The pool needs a timer to close connections idle past the timeout.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(options.max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self {
            client,
            read_timeout: options.read_timeout,
        })
    }

    /// `POST`s a JSON body to `uri` with `headers` (the provider's auth, built by its
    /// [`Protocol`](crate::providers::Protocol)); resolves when the response head has arrived.
    pub async fn post(
        &self,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let request = Request::post(uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        self.send(request, headers).await
    }

    /// A bodiless `method` call (`GET`, `DELETE`) to `uri`, as [`UpstreamClient::post`].
    pub async fn call(
        &self,
        method: axum::http::Method,
        uri: &Uri,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let request = Request::builder()
            .method(method)
            .uri(uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        self.send(request, headers).await
    }

    async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        request.headers_mut().extend(headers);
        let sent = tokio::time::timeout(self.read_timeout, self.client.request(request)).await;
        let response = sent
            .map_err(|_| UpstreamError::HeadTimeout(self.read_timeout))?
            .map_err(|e| UpstreamError::transport(&e))?;
        let (head, body) = response.into_parts();
        Ok(UpstreamResponse {
            status: head.status,
            headers: head.headers,
            body: ReadBody::new(body, self.read_timeout),
        })
    }
}

/// A provider's answer: the head, and the body still to read.
pub struct UpstreamResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: ReadBody,
}

impl UpstreamResponse {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Reads the whole body, refusing one longer than `limit` bytes.
    pub async fn bytes(self, limit: u64) -> Result<Bytes, UpstreamError> {
        if self.body.inner.size_hint().lower() > limit {
            return Err(UpstreamError::TooLarge(limit));
        }
        let mut body = std::pin::pin!(self.body);
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
            let chunk = chunk?;
            let total = first.as_ref().map_or(0, Bytes::len) + rest.len() + chunk.len();
            if total as u64 > limit {
                return Err(UpstreamError::TooLarge(limit));
            }
            match &first {
                None => first = Some(chunk),
                Some(_) => rest.extend_from_slice(&chunk),
            }
        }
        // The usual answer is one chunk: hand it on without copying.
        Ok(match first {
            None => Bytes::new(),
            Some(only) if rest.is_empty() => only,
            Some(head) => {
                let mut all = BytesMut::with_capacity(head.len() + rest.len());
                all.extend_from_slice(&head);
                all.extend_from_slice(&rest);
                all.freeze()
            }
        })
    }

    /// The body as a stream of chunks, as they arrive.
    pub fn into_stream(self) -> ReadBody {
        self.body
    }
}

/// A response body read chunk by chunk, each within the read timeout.
pub struct ReadBody {
    inner: Incoming,
    timeout: Duration,
    /// Armed when a read has to wait (most answers arrive whole with their head, and never
    /// need it); disarmed when a chunk arrives.
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl ReadBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            waiting: false,
        }
    }
}

impl Stream for ReadBody {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.waiting = false;
                    // Trailers carry nothing the gateway reads.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.waiting = false;
                    return Poll::Ready(Some(Err(UpstreamError::transport(&e))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if !this.waiting {
                        this.waiting = true;
                        let at = Instant::now() + this.timeout;
                        match this.deadline.as_mut() {
                            Some(deadline) => deadline.as_mut().reset(at),
                            None => this.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                        }
                    }
                    // Armed just above; the body's own waker is registered either way.
                    let Some(deadline) = this.deadline.as_mut() else {
                        return Poll::Pending;
                    };
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(UpstreamError::BodyTimeout(this.timeout))));
                }
            }
        }
    }
}

/// Opens a provider's TCP connection directly, or through a `CONNECT` tunnel where the proxy
/// rules send it.
#[derive(Clone)]
pub struct ProxyConnector {
    direct: HttpConnector,
    rules: Option<Arc<Matcher>>,
}

type ConnectResult = Result<
    <HttpConnector as tower::Service<Uri>>::Response,
    Box<dyn std::error::Error + Send + Sync>,
>;

impl ProxyConnector {
    fn new(direct: HttpConnector, proxy: &UpstreamProxy) -> Self {
        let rules = match proxy {
            UpstreamProxy::FromEnvironment => Some(Matcher::from_env()),
            UpstreamProxy::Direct => None,
            UpstreamProxy::All(url) => Some(Matcher::builder().all(url.clone()).build()),
        };
        Self {
            direct,
            rules: rules.map(Arc::new),
        }
    }
}

impl tower::Service<Uri> for ProxyConnector {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = ConnectResult> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.rules.as_ref().and_then(|rules| rules.intercept(&dst));
        let Some(proxy) = proxy else {
            let connecting = self.direct.call(dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        let mut tunnel = Tunnel::new(proxy.uri().clone(), self.direct.clone());
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let connecting = tunnel.call(with_port(dst));
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// `dst` with its port spelled out (the tunnel would otherwise ask for 443 even for `http`).
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = if dst.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let (Some(scheme), Some(authority)) = (dst.scheme_str(), dst.authority()) else {
        return dst;
    };
    format!("{scheme}://{authority}:{port}/")
        .parse()
        .unwrap_or(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_are_asked_for_the_scheme_s_port_when_the_url_has_none() {
        let port = |url: &str| with_port(url.parse().expect("uri")).port_u16();
        assert_eq!(port("http://llm.internal/v1/chat/completions"), Some(80));
        assert_eq!(
            port("https://api.openai.com/v1/chat/completions"),
            Some(443)
        );
        assert_eq!(port("http://127.0.0.1:8000/v1/embeddings"), Some(8000));
        assert_eq!(port("https://[::1]/v1"), Some(443));
    }
}
