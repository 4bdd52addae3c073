//! One client connection: the TLS handshake under its deadline, hyper's HTTP/1 + HTTP/2
//! server with its timers, and the watch that closes it gracefully when it has been idle too
//! long or the server is shutting down.

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
    builder: auto::Builder<TokioExecutor>,
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
            builder,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves one accepted connection until it closes.
    pub async fn connection(&self, tcp: TcpStream, mut stopping: watch::Receiver<bool>) {
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &self.tls else {
            return self.http(tcp, stopping).await;
        };
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
        self.http(stream, stopping).await;
    }

    /// Runs HTTP on a (plain or TLS) stream until the client, the idle timer or a shutdown
    /// ends it.
    async fn http<S>(&self, stream: S, mut stopping: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = RequestService {
            app: self.app.clone(),
            body_read_timeout: self.limits.body_read_timeout,
            activity: Arc::clone(&activity),
        };
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
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
