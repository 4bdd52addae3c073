//! One way to serve HTTP for every TruckLLM server (the gateway and the storage server), with
//! the connection hardening a public listener needs against slow or idle clients.
//!
//! [`serve`] accepts connections on a listener, over TLS when given a rustls config, and runs
//! an axum [`Router`] on each with hyper-util's HTTP/1 + HTTP/2 server. [`Limits`] bounds what
//! a client may hold:
//!
//! - **Request head**: HTTP/1 headers must be complete within `header_read_timeout`, counted
//!   from the moment the server waits for them (a new connection, or the end of the previous
//!   response on a kept-alive one). A client trickling bytes is disconnected.
//! - **Request body**: the whole body must arrive within `body_read_timeout` of its head; past
//!   that the request is answered `408` and the connection closed.
//! - **Idle**: a connection with no request in flight is closed after `idle_timeout`
//!   (gracefully: HTTP/2 gets a GOAWAY). HTTP/2 peers are pinged as often, and dropped if a
//!   ping is not answered within `header_read_timeout`.
//! - **TLS**: the handshake must finish within `tls_handshake_timeout`.
//! - **Connections**: at most `max_connections` at once (TLS handshakes included); one more is
//!   refused at once (plain HTTP gets a `503`), so a flood cannot exhaust file descriptors.
//!
//! Only reading requests is bounded: a response, however long it streams (SSE), counts as a
//! request in flight and is never cut by these limits.
//!
//! When `shutdown` resolves, [`serve`] stops accepting, asks every connection to finish
//! (requests in flight complete, idle connections close) and returns once all are closed.
//!
//! # Layout
//!
//! - `conn.rs`: one connection: TLS handshake, hyper's builder, idle and shutdown watch.
//! - `request.rs`: the per-request wrapper: body deadline, `408`, in-flight accounting.

mod conn;
mod request;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

/// Bounds on what one client connection may hold. Every duration must be non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a complete HTTP/1 request head (also the HTTP/2 ping-ack deadline).
    pub header_read_timeout: Duration,
    /// Time to send a request's whole body, counted from its head.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time to complete a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections served at once; one more is refused.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// What a refused connection reads, on plain HTTP.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 95\r\n\r\n{\"error\":{\"message\":\"too many connections\",\"type\":\"server_busy\",\"code\":\"too_many_connections\"}}";

/// Serves `app` on `listener`, over TLS when `tls` is given, within `limits`, until `shutdown`
/// resolves; then lets every connection finish and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Arc::new(conn::Server::new(app, tls, limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => { accept_failed(e).await; continue; }
            },
            () = &mut shutdown => break,
        };
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                let server = Arc::clone(&server);
                let stopping = stopping.clone();
                connections.spawn(async move {
                    server.connection(tcp, stopping).await;
                    drop(permit);
                });
            }
            Err(_) => refuse(&tcp, server.is_tls()),
        }
    }
    drop(listener);
    let _ = stop.send(true);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// An accept error ends one connection attempt, never the server; a pause lets a shortage of
/// file descriptors ease instead of spinning on it.
async fn accept_failed(error: std::io::Error) {
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Turns away a connection over the cap without blocking the accept loop.
fn refuse(tcp: &TcpStream, tls: bool) {
    tracing::warn!("connection refused: max_connections reached");
    if !tls {
        let _ = tcp.try_write(BUSY);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_declares_its_body_length() {
        let text = std::str::from_utf8(super::BUSY).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
