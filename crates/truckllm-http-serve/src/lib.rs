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
//!   At start the soft open-file limit is raised to the hard one ([`raise_open_files_limit`]),
//!   and a warning says so when it is still too low for the cap.
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
    warn_if_too_few_files(raise_open_files_limit(), limits.max_connections);
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

/// Open files a server needs besides its connections' sockets (log files, store pools,
/// the listener, the runtime).
const SPARE_FILES: u64 = 256;

/// Raises this process's soft limit on open files to its hard limit (a server holds a socket
/// per connection, a proxy two) and returns the soft limit in force, `None` where the
/// platform has no such limit or it could not be read.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The open files `max_connections` may need at most: two sockets each (a proxied request
/// holds one to the client and one upstream) and some to spare.
pub fn files_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(SPARE_FILES)
}

fn warn_if_too_few_files(limit: Option<u64>, max_connections: usize) {
    let needed = files_needed(max_connections);
    if let Some(limit) = limit.filter(|limit| *limit < needed) {
        tracing::warn!(
            "the open-file limit is {limit}, below the {needed} that max_connections = \
             {max_connections} may need (two sockets a proxied request, {SPARE_FILES} spare): \
             raise it (ulimit -n, LimitNOFILE=) or lower server.limits.max_connections"
        );
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

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("readable");
        // Start below the hard limit, so the raise has something to do.
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(1024) / 2, hard).expect("lowered");
        let raised = super::raise_open_files_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("readable");
        assert_eq!(raised, Some(soft));
        assert_eq!(soft, hard);
    }

    #[test]
    fn a_proxied_connection_counts_two_files() {
        assert_eq!(super::files_needed(4096), 2 * 4096 + super::SPARE_FILES);
        assert_eq!(super::files_needed(usize::MAX), u64::MAX, "saturates");
    }
}
