//! The connection limits over real sockets: slow heads and bodies, idle connections and the
//! connection cap end as configured, long streamed responses are never cut, and a shutdown
//! lets a request in flight finish.
//!
//! No assertion is on elapsed time: each test waits for the server's own action (a close, a
//! status), under a generous guard that only turns a hang into a failure.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use truckllm_http_serve::{Limits, serve};

/// Signalled when `/wait` has its request.
static ENTERED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Turns a hang into a failure; never reached when the server behaves.
const GUARD: Duration = Duration::from_secs(30);

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route("/slow", get(slow_stream))
        .route(
            "/wait",
            get(|| async {
                ENTERED.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
}

/// Ten chunks, 300 ms apart: longer than every limit of [`short`].
async fn slow_stream() -> Body {
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((Ok::<_, std::io::Error>(format!("data: {i}\n\n")), i + 1))
    });
    Body::from_stream(chunks)
}

/// Every timeout one second, unless a test needs otherwise.
fn short() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        tls_handshake_timeout: Duration::from_secs(1),
        max_connections: 64,
    }
}

/// Starts a server; returns its address and a trigger that shuts it down.
async fn start(
    limits: Limits,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app(), None, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` one at a time, 100 ms apart, until done or the server hangs up.
fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) {
    tokio::spawn(async move {
        for b in bytes {
            if writer.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// One request on a kept-alive connection; returns the response head and body read so far.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    let text = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(GUARD, stream.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_client_trickling_its_head_is_disconnected() {
    let (addr, _stop, _server) = start(short()).await;
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut reader, writer) = stream.into_split();
    // Two hundred header bytes at ten a second: twenty seconds, if the server let it.
    let head = format!(
        "GET /hello HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(160)
    );
    trickle(writer, head.into_bytes());
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(GUARD, reader.read(&mut buf))
        .await
        .expect("the server closed the connection");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                !text.contains("200 OK"),
                "the trickled request was served: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_408_and_a_close() {
    let (addr, _stop, _server) = start(short()).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 200\r\n\r\n")
        .await
        .expect("head");
    let (mut reader, writer) = stream.into_split();
    trickle(writer, vec![b'x'; 200]);
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(GUARD, reader.read(&mut buf))
            .await
            .expect("closed")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[tokio::test]
async fn a_body_sent_in_time_is_served() {
    let (addr, _stop, _server) = start(short()).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
        .await
        .expect("request");
    let text = read_to_close(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n5"), "{text}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    // The head timer would close an idle HTTP/1 connection too; make it long so that the idle
    // limit is what acts.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(60),
        ..short()
    };
    let (addr, _stop, _server) = start(limits).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let first = request(&mut stream, "/hello").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let rest = read_to_close(&mut stream).await;
    assert_eq!(rest, "", "nothing more was sent before the close");
}

#[tokio::test]
async fn a_long_stream_is_never_cut_by_the_limits() {
    let (addr, _stop, _server) = start(short()).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let text = read_to_close(&mut stream).await;
    for i in 0..10 {
        assert!(
            text.contains(&format!("data: {i}\n\n")),
            "chunk {i} missing: {text}"
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused() {
    let limits = Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..short()
    };
    let (addr, _stop, _server) = start(limits).await;
    // The first connection is served and kept alive: it holds the only place.
    let mut first = TcpStream::connect(&addr).await.expect("connect");
    assert!(
        request(&mut first, "/hello")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let mut second = TcpStream::connect(&addr).await.expect("connect");
    let _ = second
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let refused = read_to_close(&mut second).await;
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503"),
        "{refused}"
    );
    // Once the first leaves, its place is free again.
    drop(first);
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let mut third = TcpStream::connect(&addr).await.expect("connect");
        if request_or_close(&mut third)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request whose connection may be refused: the answer, or "" on a close or reset.
async fn request_or_close(stream: &mut TcpStream) -> String {
    if stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    read_to_close(stream).await
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let (addr, stop, server) = start(short()).await;
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    tokio::time::timeout(GUARD, ENTERED.notified())
        .await
        .expect("the request reached its handler");
    let _ = stop.send(());
    let text = read_to_close(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("done"), "{text}");
    tokio::time::timeout(GUARD, server)
        .await
        .expect("the server returned")
        .expect("task")
        .expect("serve");
}
