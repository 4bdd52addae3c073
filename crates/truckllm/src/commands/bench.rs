//! `truckllm bench store`: store throughput against `redis-benchmark` in the same run.
//!
//! Six workloads run through the store API from `--tasks` concurrent tasks for `--seconds`
//! each: unbatched and batched increments, unbatched and batched window reads, and
//! reservations alone and coalesced, spread over `--keys` provider keys. Then `redis-benchmark` runs the very increment script the store
//! uses (EVALSHA, same keys shape, same arguments) against the same server, unpipelined and
//! with `-P --batch`, and the report gives store ÷ raw Redis ratios.

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use truckllm_store::redis::{keys, scripts::Scripts};
use truckllm_store::{
    Clock, CoalescingOptions, CoalescingStore, Increment, LimitCheck, Metric, ProviderKey,
    ReserveRequest, RollupPolicy, RuntimeStore, RuntimeStoreExt, Series, StoreOptions, SystemClock,
};

use super::open_url_with;
use crate::cli::{StoreArgs, StoreBenchArgs};

#[derive(Debug, Clone, Copy)]
enum Workload {
    Increment,
    IncrementBatch,
    Window,
    WindowBatch,
    /// A gateway's pre-call step: check and reserve req/min and tokens/min of one key.
    Reserve,
    /// The same through [`CoalescingStore`], as `truckllm serve` runs it: concurrent
    /// reservations share `reserve_many` calls.
    ReserveCoalesced,
}

impl Workload {
    fn label(self, batch: usize) -> String {
        match self {
            Workload::Increment => "increment, unbatched".into(),
            Workload::IncrementBatch => format!("increment_many, batch {batch}"),
            Workload::Window => "window(60s), unbatched".into(),
            Workload::WindowBatch => format!("window_many(60s), batch {batch}"),
            Workload::Reserve => "reserve (req/min + tokens/min), unbatched".into(),
            Workload::ReserveCoalesced => "reserve, coalesced (as serve runs it)".into(),
        }
    }
}

pub async fn store(args: &StoreArgs, bench: &StoreBenchArgs) -> Result<ExitCode> {
    if bench.tasks == 0 || bench.batch == 0 || bench.keys == 0 {
        bail!("--tasks, --batch and --keys must be at least 1");
    }
    let store = open_url_with(args, args.url(), store_options(bench)).await?;
    let keys: Vec<ProviderKey> = (0..bench.keys)
        .map(|i| ProviderKey::new("bench", format!("key{i}")))
        .collect::<Result<_, _>>()?;
    let duration = Duration::from_secs_f64(bench.seconds);
    println!(
        "store {store}; {} tasks, batch {}, {} keys, {} s per run\n",
        bench.tasks, bench.batch, bench.keys, bench.seconds
    );
    println!("| workload | ops/s |\n|---|---:|");
    let mut rates = Vec::new();
    for workload in [
        Workload::Increment,
        Workload::IncrementBatch,
        Workload::Window,
        Workload::WindowBatch,
        Workload::Reserve,
        Workload::ReserveCoalesced,
    ] {
        let rate = measure(&store, &keys, workload, bench, duration).await?;
        println!("| {} | {rate:.0} |", workload.label(bench.batch));
        rates.push(rate);
    }
    let Some(target) = RedisTarget::parse(args.url()) else {
        println!("\n(redis-benchmark comparison needs a standalone redis:// store URL)");
        return Ok(ExitCode::SUCCESS);
    };
    let raw_single = redis_benchmark(&target, bench, 1, rates[0] * bench.seconds)?;
    let raw_piped = redis_benchmark(&target, bench, bench.batch, rates[1] * bench.seconds)?;
    println!(
        "| redis-benchmark EVALSHA (same script), -P 1 | {raw_single:.0} |\n\
         | redis-benchmark EVALSHA (same script), -P {} | {raw_piped:.0} |",
        bench.batch
    );
    println!(
        "\nratio increment / redis-benchmark -P 1: {:.2}\n\
         ratio increment_many / redis-benchmark -P {}: {:.2} (target >= 0.70)",
        rates[0] / raw_single,
        bench.batch,
        rates[1] / raw_piped
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs one workload from `tasks` tasks for `duration`; returns operations per second, where
/// one increment or one window read is one operation whether batched or not.
async fn measure(
    store: &Arc<dyn RuntimeStore>,
    keys: &[ProviderKey],
    workload: Workload,
    bench: &StoreBenchArgs,
    duration: Duration,
) -> Result<f64> {
    let store: Arc<dyn RuntimeStore> = match workload {
        Workload::ReserveCoalesced => Arc::new(CoalescingStore::new(
            Arc::clone(store),
            CoalescingOptions::default(),
        )),
        _ => Arc::clone(store),
    };
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..bench.tasks)
        .map(|task| {
            let store = Arc::clone(&store);
            let batch: Vec<Series> = (0..bench.batch)
                .map(|i| keys[(task * bench.batch + i) % keys.len()].series(Metric::Req))
                .collect();
            tokio::spawn(async move { run_task(&*store, workload, &batch, deadline).await })
        })
        .collect();
    let mut ops = 0u64;
    for task in tasks {
        ops += task.await.context("benchmark task panicked")??;
    }
    Ok(ops as f64 / started.elapsed().as_secs_f64())
}

async fn run_task(
    store: &dyn RuntimeStore,
    workload: Workload,
    batch: &[Series],
    deadline: Instant,
) -> Result<u64> {
    let window = Duration::from_secs(60);
    let increments: Vec<Increment> = batch
        .iter()
        .map(|s| Increment::new(s.clone(), 1.0))
        .collect();
    let mut ops = 0u64;
    let mut i = 0usize;
    while Instant::now() < deadline {
        let series = &batch[i % batch.len()];
        i += 1;
        ops += match workload {
            Workload::Increment => store.increment(series, 1.0).await.map(|_| 1)?,
            Workload::IncrementBatch => store
                .increment_many(&increments)
                .await
                .map(|v| v.len() as u64)?,
            Workload::Window => store.window(series, window).await.map(|_| 1)?,
            Workload::WindowBatch => store
                .window_many(batch, window)
                .await
                .map(|v| v.len() as u64)?,
            Workload::Reserve | Workload::ReserveCoalesced => {
                store.reserve(&reserve_request(series)).await.map(|_| 1)?
            }
        };
    }
    Ok(ops)
}

/// Limits high enough that every reservation is granted, so each call does the full work.
fn reserve_request(series: &Series) -> ReserveRequest {
    let check = |metric, amount| LimitCheck {
        metric,
        limit: 1e12,
        window: Duration::from_secs(60),
        amount,
    };
    ReserveRequest {
        key: series.key().clone(),
        checks: vec![check(Metric::Req, 1.0), check(Metric::Tokens, 100.0)],
        id: None,
    }
}

/// Host, port, password and db of a standalone `redis://` URL, for redis-benchmark.
struct RedisTarget {
    host: String,
    port: u16,
    password: Option<String>,
    db: u32,
}

impl RedisTarget {
    fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("redis://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((auth, hostport)) => (Some(auth), hostport),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (hostport.to_owned(), 6379),
        };
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        let db = path
            .split('?')
            .next()
            .filter(|d| !d.is_empty())
            .map_or(Some(0), |d| d.parse().ok())?;
        Some(Self {
            host,
            port,
            password,
            db,
        })
    }
}

/// The store's options: the defaults, with the roll-up retention of `--rollup-keep-secs`.
fn store_options(bench: &StoreBenchArgs) -> StoreOptions {
    StoreOptions {
        rollup: RollupPolicy {
            keep: Duration::from_secs(bench.rollup_keep_secs),
            ..RollupPolicy::default()
        },
        ..StoreOptions::default()
    }
}

/// Runs redis-benchmark on the store's increment script and returns its requests per second.
fn redis_benchmark(
    target: &RedisTarget,
    bench: &StoreBenchArgs,
    pipeline: usize,
    requests: f64,
) -> Result<f64> {
    let script = Scripts::new().increment;
    let sample = ProviderKey::new("rb", "key__rand_int__")?.series(Metric::Req);
    // The write arguments of `apply.lua` (`read_write_args`), as the store sends them.
    let w = truckllm_store::Windowing::default();
    let rollup = store_options(bench).rollup;
    let now_ms = SystemClock.now_ms();
    let bucket = w.bucket_index(now_ms);
    let requests = (requests as u64).clamp(10_000, 5_000_000);
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", &target.host, "-p", &target.port.to_string()])
        .args(["--dbnum", &target.db.to_string()])
        .args(["-c", &bench.tasks.to_string(), "-P", &pipeline.to_string()])
        .args([
            "-n",
            &requests.to_string(),
            "-r",
            &bench.keys.to_string(),
            "--csv",
        ]);
    if let Some(password) = &target.password {
        command.env("REDISCLI_AUTH", password);
    }
    command
        .args(["EVALSHA", script.sha(), "3"])
        .arg(keys::counter_key(&sample))
        .arg(keys::buckets_key(&sample))
        .arg(keys::rollup_key(&sample))
        .args([
            "60000".to_owned(),
            bucket.to_string(),
            w.oldest_kept(bucket).to_string(),
            w.bucket_ttl_ms().to_string(),
            rollup.step_index(now_ms).to_string(),
            rollup.oldest_kept(now_ms).to_string(),
            rollup.ttl_ms().to_string(),
            "1".to_owned(),
        ]);
    let output = command
        .output()
        .context("cannot run redis-benchmark (apt-get install redis-tools)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || stdout.contains("ERR") {
        bail!(
            "redis-benchmark failed: {}{}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // CSV: a header line, then "test","rps",... per test.
    stdout
        .lines()
        .nth(1)
        .and_then(|line| line.split(',').nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .with_context(|| format!("cannot read redis-benchmark output: {stdout}"))
}
