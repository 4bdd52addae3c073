//! One client connection: the TLS handshake under its deadline, hyper's HTTP/1 + HTTP/2
//! server with its timers, and the watch that closes it gracefully when it has been idle too
//! long or the server is shutting down.
//!
//! The protocol is chosen before hyper reads anything: over TLS by ALPN when one was agreed
//! (the TLS configs offer none today), and on plain TCP by peeking at the client's first bytes
//! (the HTTP/2 preface, or not). hyper-util's own detection reads those bytes and hands them
//! back to hyper as a first read of at most 24 bytes; hyper's next read then doubles its read
//! buffer, so every HTTP/1 connection allocated 16 KiB for reading instead of 8 KiB (see
//! BENCHMARKS.md, "Concurrent streams and memory"). Only a client whose first bytes are an
//! unfinished start of the preface, or a TLS client without ALPN, goes through hyper-util's
//! detection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Limits;
use crate::request::{Activity, RequestService};

/// What every connection of one listener shares.
pub struct Server {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    /// Serves either protocol, detecting which by reading the first bytes.
    builder: auto::Builder<TokioExecutor>,
    /// The same, for a connection known to speak HTTP/1.
    http1: auto::Builder<TokioExecutor>,
    /// The same, for a connection known to speak HTTP/2.
    http2: auto::Builder<TokioExecutor>,
}

/// The protocol a client speaks, as far as its first bytes (or ALPN) tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// Not known yet: hyper-util reads the first bytes to find out.
    Unknown,
}

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of a client whose first bytes are `first` (as many as have arrived).
pub(crate) fn sniff(first: &[u8]) -> Protocol {
    let n = first.len().min(H2_PREFACE.len());
    if n == 0 {
        Protocol::Unknown
    } else if first[..n] != H2_PREFACE[..n] {
        Protocol::Http1
    } else if n == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unknown
    }
}

/// The protocol a TLS client agreed to by ALPN, if it offered any.
pub(crate) fn by_alpn(alpn: Option<&[u8]>) -> Protocol {
    match alpn {
        Some(b"h2") => Protocol::Http2,
        Some(b"http/1.1") => Protocol::Http1,
        _ => Protocol::Unknown,
    }
}

impl Server {
    pub fn new(app: Router, tls: Option<Arc<rustls::ServerConfig>>, limits: Limits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(limits.header_read_timeout);
        Self {
            app,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            limits,
            http1: builder.clone().http1_only(),
            http2: builder.clone().http2_only(),
            builder,
        }
    }

    fn builder(&self, protocol: Protocol) -> &auto::Builder<TokioExecutor> {
        match protocol {
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
            Protocol::Unknown => &self.builder,
        }
    }

    /// Waits for a plain-TCP client's first bytes and tells its protocol from them, without
    /// consuming them; `None` if the client sent nothing within the head deadline (or the
    /// idle timeout, if shorter), the server is stopping, or the connection failed.
    async fn first_bytes(
        &self,
        tcp: &TcpStream,
        stopping: &mut watch::Receiver<bool>,
    ) -> Option<Protocol> {
        let mut first = [0u8; H2_PREFACE.len()];
        let within = self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout);
        tokio::select! {
            peeked = tokio::time::timeout(within, tcp.peek(&mut first)) => match peeked {
                Ok(Ok(n)) => Some(sniff(&first[..n])),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "connection failed before its first byte");
                    None
                }
                Err(_) => None,
            },
            _ = stopping.wait_for(|stop| *stop) => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves one accepted connection until it closes.
    pub async fn connection(&self, tcp: TcpStream, mut stopping: watch::Receiver<bool>) {
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().ok();
        match &self.tls {
            None => {
                let Some(protocol) = self.first_bytes(&tcp, &mut stopping).await else {
                    return;
                };
                self.http(tcp, peer, protocol, stopping).await;
            }
            // Boxed, so the task of every plain connection is not sized for a TLS one.
            Some(acceptor) => Box::pin(self.tls(acceptor, tcp, peer, stopping)).await,
        }
    }

    /// The TLS handshake under its deadline, then HTTP over it.
    async fn tls(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        tcp: TcpStream,
        peer: Option<SocketAddr>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let handshake =
            tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(tcp));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            },
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let protocol = by_alpn(stream.get_ref().1.alpn_protocol());
        self.http(stream, peer, protocol, stopping).await;
    }

    /// Runs HTTP on a (plain or TLS) stream until the client, the idle timer or a shutdown
    /// ends it.
    async fn http<S>(
        &self,
        stream: S,
        peer: Option<SocketAddr>,
        protocol: Protocol,
        mut stopping: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = RequestService {
            app: self.app.clone(),
            body_read_timeout: self.limits.body_read_timeout,
            activity: Arc::clone(&activity),
            peer,
        };
        let conn = self
            .builder(protocol)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = idle(&activity, self.limits.idle_timeout), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = stopping.wait_for(|stop| *stop), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle(activity: &Activity, timeout: Duration) {
    let mut changes = activity.subscribe();
    loop {
        changes.borrow_and_update();
        if activity.in_flight() == 0 {
            tokio::select! {
                () = tokio::time::sleep(timeout) => return,
                _ = changes.changed() => {}
            }
        } else if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Protocol, by_alpn, sniff};

    #[test]
    fn the_first_bytes_tell_http1_from_the_http2_preface() {
        assert_eq!(
            sniff(b"POST /v1/chat/completions HTTP/1.1\r\n"),
            Protocol::Http1
        );
        assert_eq!(sniff(b"G"), Protocol::Http1, "one byte can be enough");
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Protocol::Http2);
        assert_eq!(
            sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"),
            Protocol::Http2,
            "the preface and the first frame"
        );
        assert_eq!(
            sniff(b"PRI * HTTP"),
            Protocol::Unknown,
            "the preface, unfinished"
        );
        assert_eq!(sniff(b"PRI * HTTP/1.1"), Protocol::Http1);
        assert_eq!(
            sniff(b""),
            Protocol::Unknown,
            "nothing yet (or a closed connection)"
        );
    }

    #[test]
    fn alpn_names_the_protocol_when_the_client_offered_one() {
        assert_eq!(by_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(by_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(by_alpn(None), Protocol::Unknown);
        assert_eq!(by_alpn(Some(b"spdy/3")), Protocol::Unknown);
    }
}
