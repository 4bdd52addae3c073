//! Both protocols on one plain listener: the server tells them apart by the client's first
//! bytes (peeked, not consumed), so an HTTP/2 client with prior knowledge and an HTTP/1
//! client are each served, on fresh connections and on a kept-alive one.
//!
//! The HTTP/2 client is a few hand-made frames (no HTTP/2 client library is a dependency
//! here). No assertion is on elapsed time.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use truckllm_http_serve::{Limits, serve};

/// Turns a hang into a failure; never reached when the server behaves.
const GUARD: Duration = Duration::from_secs(30);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = Router::new().route("/hello", get(|| async { "hello" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, None, Limits::default(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /hello` as an HPACK header block: indexed `:method GET` and `:scheme http`, literal
/// `:path` and `:authority` (names from the static table, values not Huffman-coded).
fn get_hello() -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    block.extend_from_slice(&[0x44, 6]);
    block.extend_from_slice(b"/hello");
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    block
}

/// Reads frames until a DATA frame on stream 1; returns its payload.
async fn data_of_stream_one(tcp: &mut TcpStream) -> Vec<u8> {
    loop {
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.expect("a frame head");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.expect("a frame payload");
        if head[3] == 0x0 && stream == 1 {
            return payload;
        }
    }
}

#[tokio::test]
async fn an_http2_client_with_prior_knowledge_is_served_http2() {
    let (addr, _stop) = start().await;
    let mut tcp = TcpStream::connect(&addr).await.expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(0x4, 0, 0, &[])); // SETTINGS, none changed
    hello.extend(frame(0x1, 0x4 | 0x1, 1, &get_hello())); // HEADERS, END_HEADERS | END_STREAM
    tcp.write_all(&hello).await.expect("send");
    let data = tokio::time::timeout(GUARD, data_of_stream_one(&mut tcp))
        .await
        .expect("an answer in time");
    assert_eq!(data, b"hello");
}

#[tokio::test]
async fn an_http1_client_is_served_http1_on_a_kept_alive_connection() {
    let (addr, _stop) = start().await;
    let mut tcp = TcpStream::connect(&addr).await.expect("connect");
    for _ in 0..2 {
        tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .expect("send");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.ends_with(b"hello") {
            let n = tokio::time::timeout(GUARD, tcp.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    }
}
