//! `truckllm bench logs`: writes a request log of realistic records through the real file sink
//! (rotating, fsync per batch), then times what `truckllm logs search` and `logs stats` do over
//! it: a full scan, field filters, a text search, and per-key stats. With `--db`, the same
//! records go through the PostgreSQL sink too and the same queries run in SQL.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use truckllm_config::schema::{FileSinkConfig, LogSinkConfig, PostgresSinkConfig};
use truckllm_logging::RequestRecord;
use truckllm_logging::search::{self, Filter, GroupBy, Stats};

use crate::cli::LogsBenchArgs;

pub async fn run(args: &LogsBenchArgs) -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a scratch directory")?;
    let path = dir.path().join("requests.jsonl");
    let sink = FileSinkConfig {
        max_size_mb: args.rotate_mb,
        keep_files: 1_000,
        queue_size: 100_000,
        ..FileSinkConfig::at(path.display().to_string())
    };
    let (records, bytes, write_time) = write_log(LogSinkConfig::File(sink), args.mb << 20).await?;
    let files = search::log_files(&path, None)?;
    println!(
        "log: {records} records, {:.1} MiB in {} files, written through the file sink in {:.2} s ({:.0} records/s)",
        bytes as f64 / (1 << 20) as f64,
        files.len(),
        write_time.as_secs_f64(),
        records as f64 / write_time.as_secs_f64()
    );
    println!("| query | matched | time | MiB/s |");
    println!("|---|---:|---:|---:|");
    for (name, filter) in queries() {
        let started = Instant::now();
        let summary = search::scan_requests(&files, &filter, |_, _| {})?;
        report(name, summary.matched, started.elapsed(), bytes);
    }
    let started = Instant::now();
    let mut stats = Stats::default();
    let summary = search::scan_requests(&files, &Filter::default(), |r, _| {
        stats.add(GroupBy::Key, r)
    })?;
    stats.finish();
    report(
        "stats --by key (p50/p95/p99)",
        summary.matched,
        started.elapsed(),
        bytes,
    );
    if let Some(url) = &args.db {
        in_postgres(url, args.mb << 20).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The same records through the PostgreSQL sink, and the same queries in SQL.
async fn in_postgres(url: &str, target: u64) -> Result<()> {
    let sink = PostgresSinkConfig {
        url: url.to_owned(),
        keep_days: 30.0,
        audit_keep_days: 400.0,
        batch_size: 1_000,
        flush_interval_ms: 50,
        queue_size: 100_000,
        queue_max_mb: 256.0,
    };
    let (records, _, took) = write_log(LogSinkConfig::Postgres(sink), target).await?;
    println!(
        "postgres: the same {records} records written through the PostgreSQL sink in {:.2} s ({:.0} records/s)",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64()
    );
    println!("| query (SQL) | matched | time |");
    println!("|---|---:|---:|");
    for (name, filter) in queries() {
        let started = Instant::now();
        let summary = truckllm_logging::postgres::scan_sql(url, false, &filter, |_| {})
            .await
            .map_err(anyhow::Error::msg)?;
        report_sql(name, summary.matched, started.elapsed());
    }
    let started = Instant::now();
    let mut stats = Stats::default();
    let summary = truckllm_logging::postgres::scan_sql(url, false, &Filter::default(), |raw| {
        if let Ok(r) = serde_json::from_slice::<search::RequestView<'_>>(raw) {
            stats.add(GroupBy::Key, &r);
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    stats.finish();
    report_sql(
        "stats --by key (p50/p95/p99)",
        summary.matched,
        started.elapsed(),
    );
    Ok(())
}

fn report_sql(name: &str, matched: usize, took: Duration) {
    println!("| `{name}` | {matched} | {:.3} s |", took.as_secs_f64());
}

/// The queries timed, as `logs search` flags and filters.
fn queries() -> [(&'static str, Filter); 5] {
    let since = SystemTime::now() - Duration::from_secs(600);
    [
        ("everything", Filter::default()),
        (
            "--provider groq --key g1",
            Filter {
                provider: Some("groq".into()),
                key: Some("g1".into()),
                ..Filter::default()
            },
        ),
        (
            "--status 5xx",
            Filter {
                status: Some(search::StatusFilter::Class(5)),
                ..Filter::default()
            },
        ),
        (
            "--grep req-00000004217",
            Filter {
                grep: Some("req-00000004217".into()),
                ..Filter::default()
            },
        ),
        (
            "--since 10m --client team-b",
            Filter {
                since: Some(since),
                client: Some("team-b".into()),
                ..Filter::default()
            },
        ),
    ]
}

fn report(name: &str, matched: usize, took: Duration, bytes: u64) {
    println!(
        "| `{name}` | {matched} | {:.3} s | {:.0} |",
        took.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
    );
}

/// Emits records until the log holds `target` bytes; returns records, bytes and time taken.
async fn write_log(sink: LogSinkConfig, target: u64) -> Result<(usize, u64, Duration)> {
    let logger = truckllm_logging::start(&[sink])?;
    let providers = [
        ("openai", "k1"),
        ("openai", "k2"),
        ("groq", "g1"),
        ("mistral", "m1"),
    ];
    let start = SystemTime::now() - Duration::from_secs(3600);
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut n = 0usize;
    while bytes < target {
        let (provider, key) = providers[n % providers.len()];
        let mut r = RequestRecord::new(
            start + Duration::from_millis(n as u64 * 20),
            format!("req-{n:011}"),
            "chat",
        );
        r.client = Some(
            if n.is_multiple_of(3) {
                "team-a"
            } else {
                "team-b"
            }
            .into(),
        );
        r.model = "gpt-4o-mini".into();
        r.provider = Some(provider.into());
        r.key = Some(key.into());
        r.upstream_model = Some("gpt-4o-mini".into());
        r.status = if n.is_multiple_of(50) { 502 } else { 200 };
        r.prompt_tokens = 20 + (n % 200) as u64;
        r.completion_tokens = (n % 90) as u64;
        r.latency_ms = 50.0 + (n % 700) as f64;
        r.cost = r.prompt_tokens as f64 * 1.5e-7;
        bytes += truckllm_logging::LogRecord::from(r.clone()).to_json().len() as u64 + 1;
        logger.emit(r);
        n += 1;
        if n.is_multiple_of(10_000) {
            logger.flush().await; // stay inside the queue: this measures the sink, not drops
        }
    }
    logger.shutdown(Duration::from_secs(60)).await;
    let dropped = logger
        .sink_stats()
        .iter()
        .map(|s| s.dropped_requests)
        .sum::<u64>();
    anyhow::ensure!(
        dropped == 0,
        "{dropped} records dropped while writing the log"
    );
    Ok((n, bytes, started.elapsed()))
}
