//! `truckllm storage-server` applies its connection-limit flags: over TLS, a client that never
//! sends its ClientHello, or trickles it, is closed after `--tls-handshake-timeout-secs`. No
//! assertion on elapsed time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Process;
use truckllm_testkit::{free_port, make_certificates};

/// Turns a hang into a failure; never reached when the server behaves.
const GUARD: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(GUARD)).expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept the connection open")
            }
            Err(_) => return seen,
        }
    }
}

#[test]
fn the_storage_server_closes_silent_tls_clients_and_slow_heads() {
    let dir = tempfile::tempdir().expect("dir");
    make_certificates(dir.path());
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - name: t\n    token: \"secret\"\n    scopes: [read]\n",
    )
    .expect("tokens");
    let port = free_port();
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let _server = Process::spawn(
        &[
            "storage-server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            "memory:",
            "--tokens",
            &path("tokens.yaml"),
            "--tls-cert",
            &path("server.crt"),
            "--tls-key",
            &path("server.key"),
            "--tls-handshake-timeout-secs",
            "1",
            "--header-read-timeout-secs",
            "1",
        ],
        &[],
    );
    let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    assert!(
        read_to_close(&mut silent).is_empty(),
        "closed without a word"
    );

    // A ClientHello that never ends is a trickled head, one layer down: the handshake deadline
    // ends it too.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let writer = slow.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut writer = writer;
        for b in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc] {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    assert!(read_to_close(&mut slow).is_empty());
}
