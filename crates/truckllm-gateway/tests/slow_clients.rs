//! The gateway applies `server.limits` to its clients: a head or body sent too slowly ends the
//! connection (the body with a 408), while a streamed answer longer than every limit arrives
//! whole. Over real sockets; no assertion on elapsed time.

mod common;

use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use truckllm_gateway::mock::MockOptions;

/// Turns a hang into a failure; never reached when the gateway behaves.
const GUARD: Duration = Duration::from_secs(30);

const LIMITS: &str = "server:\n  limits:\n    header_read_timeout_secs: 1\n    body_read_timeout_secs: 1\n    idle_timeout_secs: 1\n";

async fn gateway(mock: &Mock) -> TestGateway {
    TestGateway::start(&config(&mock.url, 1, "", LIMITS), Backend::Memory).await
}

fn addr(gw: &TestGateway) -> String {
    gw.url.trim_start_matches("http://").to_owned()
}

/// Writes `bytes` one at a time, 100 ms apart, until done or the gateway hangs up.
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

/// Everything the gateway sends until it closes the connection.
async fn read_to_close(reader: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, reader.read(&mut buf)).await {
            Err(_) => panic!(
                "the gateway kept the connection open; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_trickled_head_is_disconnected() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = gateway(&mock).await;
    let stream = TcpStream::connect(addr(&gw)).await.expect("connect");
    let (mut reader, writer) = stream.into_split();
    let head = format!(
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(160)
    );
    trickle(writer, head.into_bytes());
    let answer = read_to_close(&mut reader).await;
    assert!(!answer.contains(" 200 "), "served: {answer}");
}

#[tokio::test]
async fn a_trickled_body_gets_408() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = gateway(&mock).await;
    let mut stream = TcpStream::connect(addr(&gw)).await.expect("connect");
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there, how are you today? fine."}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut reader, writer) = stream.into_split();
    trickle(writer, body.as_bytes().to_vec());
    let answer = read_to_close(&mut reader).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(mock.total_requests(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn a_stream_longer_than_every_limit_arrives_whole() {
    let mock = Mock::start(MockOptions {
        chunk_delay: Duration::from_millis(400),
        ..MockOptions::default()
    })
    .await;
    let gw = gateway(&mock).await;
    let mut stream = TcpStream::connect(addr(&gw)).await.expect("connect");
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three four five"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("data: [DONE]"), "cut short: {answer}");
}
