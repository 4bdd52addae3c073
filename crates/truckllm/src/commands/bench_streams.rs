//! `truckllm bench streams`: many slow streaming requests held open at once through the
//! gateway, and what they cost it in resident memory and open files.
//!
//! It starts `truckllm mock-upstream` (one SSE chunk every `--chunk-interval-ms`, `--chunks`
//! of them a stream) and `truckllm serve` (memory store, `max_connections` above `--streams`)
//! as child processes. Both inherit this process's open-file limit, raised to its hard limit
//! first. Then it opens `--streams` streaming chat requests through the gateway, each on its
//! own connection and `--opening` at a time (plain HTTP/1.1 on a socket, so the client side
//! costs little), waits until every one has had its first chunk and reads the gateway's
//! figures from `/proc`: VmRSS, RssAnon, VmHWM and open files. The cost of a stream is the
//! growth of VmRSS over the warmed-up gateway, divided by the streams open. Then it waits for
//! every stream to end with `[DONE]`, counts failures by cause, and reads the gateway's RSS
//! once more. It exits with failure if any stream failed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::bench_gateway::{free_port, spawn};
use crate::cli::StreamsBenchArgs;

const API_KEY: &str = "bench-client-key";

pub async fn run(args: &StreamsBenchArgs) -> Result<ExitCode> {
    if args.streams == 0 || args.chunks == 0 || args.opening == 0 {
        bail!("--streams, --chunks and --opening must be at least 1");
    }
    let files = truckllm_http_serve::raise_open_files_limit();
    let needed = truckllm_http_serve::files_needed(args.streams);
    if let Some(limit) = files.filter(|limit| *limit < needed) {
        eprintln!(
            "warning: the open-file limit is {limit}; the gateway may need {needed} for {} \
             streams (two sockets each): expect failures",
            args.streams
        );
    }
    let dir = tempfile::tempdir()?;
    let mock_port = free_port()?;
    let mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
        "--chunk-delay-ms",
        &args.chunk_interval_ms.to_string(),
        "--stream-chunks",
        &args.chunks.to_string(),
    ])?;
    let port = free_port()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, gateway_config(port, mock_port, args.streams))?;
    let gateway = spawn(&[
        "serve",
        "--config",
        config.to_str().context("path")?,
        "--store",
        "memory:",
    ])?;
    let gateway_pid = gateway.0.id();
    warm_up(port).await?;
    let warm = Figures::read(gateway_pid).context("cannot read the gateway's /proc figures")?;

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let tasks = open_streams(port, args, &counters);
    let settled = counters
        .wait_all_started(args.streams, stream_guard(args))
        .await;
    let opened_in = started.elapsed();
    let open = Figures::read(gateway_pid).context("cannot read the gateway's /proc figures")?;
    let mock_rss = Figures::read(mock.0.id()).map_or(0, |f| f.rss_kib);
    let open_at_once =
        counters.first.load(Ordering::Acquire) - counters.done.load(Ordering::Acquire);

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        if let Err(cause) = task.await.context("a stream task panicked")? {
            *failures.entry(cause).or_default() += 1;
        }
    }
    let after = Figures::read(gateway_pid).context("cannot read the gateway's /proc figures")?;
    let report = Report {
        args,
        files,
        settled,
        opened_in,
        open_at_once,
        warm,
        open,
        after,
        mock_rss,
        first_chunks: counters.first.load(Ordering::Acquire),
        completed: counters.done.load(Ordering::Acquire),
        failures,
    };
    report.print();
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn gateway_config(port: u16, mock_port: u16, streams: usize) -> String {
    format!(
        "server:\n  listen: \"127.0.0.1:{port}\"\n  limits:\n    max_connections: {}\nllm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys:\n      - {{id: \"k1\", secret: \"bench-1\"}}\n    limits:\n      req_per_min: 100000000\n      tokens_per_min: 100000000000\n    pricing: {{input_per_1m: 0.15, output_per_1m: 0.6}}\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - id: \"bench\"\n    key: \"{API_KEY}\"\n",
        streams + 64
    )
}

/// A few plain requests, so the figures before the streams are those of a gateway that has
/// served (pools, caches and the runtime's threads started).
async fn warm_up(port: u16) -> Result<()> {
    let client = reqwest::Client::new();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"warm up"}],"max_tokens":4}"#;
    for _ in 0..16 {
        let response = client
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        if !status.is_success() {
            bail!("the gateway answered a warm-up request with {status}");
        }
    }
    Ok(())
}

/// A gateway's figures from `/proc/PID/status` and `/proc/PID/fd`.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rss_kib: u64,
    anon_kib: u64,
    hwm_kib: u64,
    threads: u64,
    fds: usize,
}

impl Figures {
    fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        Some(Self {
            rss_kib: field("VmRSS")?,
            anon_kib: field("RssAnon")?,
            hwm_kib: field("VmHWM")?,
            threads: field("Threads")?,
            fds,
        })
    }
}

/// What the stream tasks have reached, for the main task to wait on.
#[derive(Debug, Default)]
struct Counters {
    /// Streams that have had their first chunk.
    first: AtomicUsize,
    /// Streams that ended with `[DONE]`.
    done: AtomicUsize,
    /// Streams that failed, before or after their first chunk.
    failed: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Counters {
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Waits until each of `streams` has had its first chunk or failed (or `guard` passes);
    /// whether all did.
    async fn wait_all_started(&self, streams: usize, guard: Duration) -> bool {
        let settled =
            || self.first.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire) >= streams;
        let waiting = async {
            while !settled() {
                self.changed.notified().await;
            }
        };
        tokio::time::timeout(guard, waiting).await.is_ok()
    }
}

/// The longest a stream may take, to turn a hang into a failure.
fn stream_guard(args: &StreamsBenchArgs) -> Duration {
    Duration::from_millis(args.chunk_interval_ms.saturating_mul(args.chunks + 5))
        + Duration::from_secs(120)
}

fn open_streams(
    port: u16,
    args: &StreamsBenchArgs,
    counters: &Arc<Counters>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short benchmark prompt"}],"stream":true}"#;
    let request: Arc<[u8]> = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into();
    let opening = Arc::new(Semaphore::new(args.opening));
    let guard = stream_guard(args);
    (0..args.streams)
        .map(|_| {
            let stream = OneStream {
                port,
                request: Arc::clone(&request),
                opening: Arc::clone(&opening),
                counters: Arc::clone(counters),
            };
            tokio::spawn(async move {
                let result = match tokio::time::timeout(guard, stream.run()).await {
                    Ok(result) => result,
                    Err(_) => Err("no end within the guard time".to_owned()),
                };
                if result.is_err() {
                    stream.counters.bump(&stream.counters.failed);
                }
                result
            })
        })
        .collect()
}

/// One streaming request on its own connection.
struct OneStream {
    port: u16,
    request: Arc<[u8]>,
    /// Bounds the requests being opened at once.
    opening: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl OneStream {
    /// Opens the stream, counts its first chunk, reads it to its end; the cause of a failure.
    async fn run(&self) -> Result<(), String> {
        let permit = self.opening.acquire().await.map_err(|e| e.to_string())?;
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.write_all(&self.request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut reader = Reader::default();
        let head = reader.read_head(&mut tcp).await?;
        drop(permit);
        if !head.starts_with("HTTP/1.1 200") {
            let status = head.lines().next().unwrap_or_default().to_owned();
            return Err(format!("answered {status}"));
        }
        reader.read_until(&mut tcp, b"data:").await?;
        self.counters.bump(&self.counters.first);
        reader.read_to_end(&mut tcp).await?;
        if !reader.seen(b"[DONE]") {
            return Err("ended without [DONE]".to_owned());
        }
        self.counters.bump(&self.counters.done);
        Ok(())
    }
}

/// What a stream has sent so far: all of it until the head is complete, then a short tail
/// (enough to find a marker split across two reads).
#[derive(Default)]
struct Reader {
    window: Vec<u8>,
}

/// Bytes of the body kept between reads.
const TAIL: usize = 64;

impl Reader {
    fn seen(&self, marker: &[u8]) -> bool {
        self.window.windows(marker.len()).any(|w| w == marker)
    }

    /// Reads more; `false` at the end of the stream.
    async fn more(&mut self, tcp: &mut TcpStream) -> Result<bool, String> {
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        self.window.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// Reads the response head; returns it, keeping what follows it.
    async fn read_head(&mut self, tcp: &mut TcpStream) -> Result<String, String> {
        loop {
            if let Some(end) = self.window.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.window[..end]).into_owned();
                self.window.drain(..end + 4);
                return Ok(head);
            }
            if !self.more(tcp).await? {
                return Err("closed before the response head".to_owned());
            }
        }
    }

    /// Reads until `marker` has been seen.
    async fn read_until(&mut self, tcp: &mut TcpStream, marker: &[u8]) -> Result<(), String> {
        while !self.seen(marker) {
            self.trim();
            if !self.more(tcp).await? {
                return Err("closed before the first chunk".to_owned());
            }
        }
        Ok(())
    }

    /// Reads until the server closes the connection (the request asked it to).
    async fn read_to_end(&mut self, tcp: &mut TcpStream) -> Result<(), String> {
        loop {
            self.trim();
            if !self.more(tcp).await? {
                return Ok(());
            }
        }
    }

    fn trim(&mut self) {
        let extra = self.window.len().saturating_sub(TAIL);
        self.window.drain(..extra);
    }
}

/// What one run measured.
struct Report<'a> {
    args: &'a StreamsBenchArgs,
    files: Option<u64>,
    /// Whether every stream had its first chunk or failed within the guard time.
    settled: bool,
    opened_in: Duration,
    /// Streams that had their first chunk and had not ended when the figures were read.
    open_at_once: usize,
    warm: Figures,
    open: Figures,
    after: Figures,
    mock_rss: u64,
    /// Streams that had their first chunk, at the end.
    first_chunks: usize,
    completed: usize,
    failures: BTreeMap<String, usize>,
}

impl Report<'_> {
    fn ok(&self) -> bool {
        self.settled && self.failures.is_empty() && self.completed == self.args.streams
    }

    fn print(&self) {
        let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
        let per_stream = |now: u64, before: u64| {
            let streams = self.open_at_once.max(1) as f64;
            format!("{:.1}", now.saturating_sub(before) as f64 / streams)
        };
        println!(
            "streams bench: {} streams, a chunk every {} ms, {} chunks each, {} opening at once; \
             machine: {} cores; open-file limit {}\n",
            self.args.streams,
            self.args.chunk_interval_ms,
            self.args.chunks,
            self.args.opening,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.files.map_or("unknown".into(), |f| f.to_string()),
        );
        println!("| gateway figure | value |\n|---|---:|");
        println!(
            "| streams open at once when read (all had a first chunk) | {} |",
            self.open_at_once
        );
        println!(
            "| time until every stream had its first chunk (s) | {:.1} |",
            self.opened_in.as_secs_f64()
        );
        println!(
            "| VmRSS warmed up, no stream (MiB) | {} |",
            mib(self.warm.rss_kib)
        );
        println!("| VmRSS, streams open (MiB) | {} |", mib(self.open.rss_kib));
        println!(
            "| RssAnon, streams open (MiB) | {} |",
            mib(self.open.anon_kib)
        );
        println!("| VmHWM (peak) (MiB) | {} |", mib(self.open.hwm_kib));
        println!(
            "| VmRSS per open stream (KiB) | {} |",
            per_stream(self.open.rss_kib, self.warm.rss_kib)
        );
        println!(
            "| RssAnon per open stream (KiB) | {} |",
            per_stream(self.open.anon_kib, self.warm.anon_kib)
        );
        println!(
            "| open files: warmed up, streams open | {}, {} |",
            self.warm.fds, self.open.fds
        );
        println!("| threads, streams open | {} |", self.open.threads);
        println!(
            "| VmRSS after every stream ended (MiB) | {} |",
            mib(self.after.rss_kib)
        );
        println!(
            "| mock-upstream VmRSS, streams open (MiB) | {} |",
            mib(self.mock_rss)
        );
        println!(
            "| streams that had their first chunk | {} of {} |",
            self.first_chunks, self.args.streams
        );
        println!(
            "| streams completed with [DONE] | {} of {} |",
            self.completed, self.args.streams
        );
        let failed: usize = self.failures.values().sum();
        println!("| streams failed | {failed} |");
        for (cause, count) in &self.failures {
            println!("failed: {count} × {cause}");
        }
        if !self.settled {
            println!("not every stream had its first chunk within the guard time");
        }
        if self.open_at_once < self.args.streams {
            println!(
                "only {} of {} streams were open at once: raise --chunks so streams outlast \
                 opening them all",
                self.open_at_once, self.args.streams
            );
        }
        println!("target: 9000 streams open with the gateway's VmRSS <= 200 MiB");
    }
}
