//! `truckllm bench gateway`: the gateway in front of mock-upstream against the same
//! mock-upstream direct, in one run, with usage recording and limits on.
//!
//! It starts `truckllm mock-upstream` and `truckllm serve` as child processes (the gateway on
//! the `--store` runtime store, Redis by default, with limits configured so every request
//! reserves and reconciles), then drives both from this process:
//! - throughput at a fixed concurrency (closed loop), direct, through nginx as a bare reverse
//!   proxy to the same mock (when nginx is installed: the physical limit of a proxy here), and
//!   through the gateway;
//! - latency at a fixed rate (open loop; each latency counts from the request's scheduled
//!   start, so a stall is not hidden), direct, through the gateway and through nginx on the same
//!   ticks of the same run, p50 and p99;
//! - the gateway's peak resident memory (VmHWM) after the load;
//! - CPU time per request during the throughput runs, of mock-upstream (direct and through
//!   the gateway), the gateway, nginx (master and workers) and, on a Redis store,
//!   redis-server. Throughput ratios on a
//!   shared 2-core machine swing with its neighbours; CPU per request hardly does, so it is
//!   the figure to compare changes by.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use crate::cli::{GatewayBenchArgs, StoreArgs};

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short benchmark prompt"}],"max_tokens":8}"#;

/// A child process, killed on drop.
pub(super) struct ChildProcess(pub(super) Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn spawn(args: &[&str]) -> Result<ChildProcess> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start truckllm {}", args.join(" ")))?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut banner = String::new();
    stdout.read_line(&mut banner)?;
    if !banner.contains("http://") {
        bail!("truckllm {} did not start: {banner}", args.join(" "));
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Ok(ChildProcess(child))
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(store: &StoreArgs, args: &GatewayBenchArgs) -> Result<ExitCode> {
    let store_url = store.url().to_owned();
    let dir = tempfile::tempdir()?;
    let mock_port = free_port()?;
    let mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ])?;
    let gateway_port = free_port()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, gateway_config(gateway_port, mock_port, args))?;
    let gateway = spawn(&[
        "serve",
        "--config",
        config.to_str().context("path")?,
        "--store",
        &store_url,
    ])?;
    let nginx = Nginx::start(dir.path(), mock_port)?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .tcp_nodelay(true)
        .build()?;
    let chat = |port: u16, key| Target {
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        key,
    };
    let direct = chat(mock_port, "bench-1");
    let through = chat(gateway_port, "bench-client-key");
    let proxied = nginx.as_ref().map(|n| chat(n.port, "bench-1"));
    let duration = Duration::from_secs_f64(args.seconds);

    // Warm every path (connections, caches) before measuring.
    for target in [Some(&direct), proxied.as_ref(), Some(&through)]
        .into_iter()
        .flatten()
    {
        closed_loop(&client, target, args.concurrency, Duration::from_secs(1)).await?;
    }

    let redis = redis_cpu_probe(&store_url);
    let mock_before = process_cpu_secs(mock.0.id());
    let direct_run = closed_loop(&client, &direct, args.concurrency, duration).await?;
    let mock_direct = cpu_us_per_request(
        mock_before,
        process_cpu_secs(mock.0.id()),
        direct_run.requests,
    );
    let (nginx_rps, nginx_cpu) = match (&proxied, &nginx) {
        (Some(target), Some(nginx)) => {
            let before = nginx.cpu_secs();
            let run = closed_loop(&client, target, args.concurrency, duration).await?;
            let cpu = cpu_us_per_request(before, nginx.cpu_secs(), run.requests);
            (Some(run.rate()), cpu)
        }
        _ => (None, None),
    };
    let cpu_before = [
        process_cpu_secs(mock.0.id()),
        process_cpu_secs(gateway.0.id()),
        redis.now().await,
    ];
    let gateway_run = closed_loop(&client, &through, args.concurrency, duration).await?;
    let cpu_after = [
        process_cpu_secs(mock.0.id()),
        process_cpu_secs(gateway.0.id()),
        redis.now().await,
    ];
    let [mock_through, gateway_cpu, redis_cpu] =
        [0, 1, 2].map(|i| cpu_us_per_request(cpu_before[i], cpu_after[i], gateway_run.requests));
    let latency_targets: Vec<&Target> = [Some(&direct), Some(&through), proxied.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let latencies = open_loop(&client, &latency_targets, args.rate, duration).await?;
    let rss_kib = peak_rss_kib(gateway.0.id()).unwrap_or(0);

    println!(
        "gateway bench: store {}, {} s per run, machine: {} cores\n",
        truckllm_store::redact_url(&store_url),
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let report = Report {
        concurrency: args.concurrency,
        rate: args.rate,
        direct_rps: direct_run.rate(),
        gateway_rps: gateway_run.rate(),
        nginx_rps,
        latencies,
    };
    report.print();
    println!(
        "\nCPU per request in the throughput runs (µs): mock-upstream {} direct, {} through the \
         gateway; gateway {}; redis-server {}; nginx as the proxy {}",
        show_us(mock_direct),
        show_us(mock_through),
        show_us(gateway_cpu),
        show_us(redis_cpu),
        show_us(nginx_cpu)
    );
    println!(
        "gateway peak RSS (VmHWM): {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    println!("targets: throughput ratio >= 0.25, added p99 <= 1 ms at 1000 req/s, RSS <= 50 MiB");
    Ok(ExitCode::SUCCESS)
}

fn gateway_config(gateway_port: u16, mock_port: u16, args: &GatewayBenchArgs) -> String {
    format!(
        "server:\n  listen: \"127.0.0.1:{gateway_port}\"\nstorage:\n  runtime:\n    rollup_keep_secs: {}\nllm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys:\n      - {{id: \"k1\", secret: \"bench-1\"}}\n      - {{id: \"k2\", secret: \"bench-2\"}}\n      - {{id: \"k3\", secret: \"bench-3\"}}\n      - {{id: \"k4\", secret: \"bench-4\"}}\n    limits:\n      req_per_min: 100000000\n      tokens_per_min: 100000000000\n    pricing: {{input_per_1m: 0.15, output_per_1m: 0.6}}\n    models: [\"gpt-4o-mini\"]\napi_keys:\n  - id: \"bench\"\n    key: \"bench-client-key\"\n",
        args.rollup_keep_secs
    )
}

/// What one run measured, printed as a table: direct, through the gateway and, when nginx is
/// installed, through nginx as a bare reverse proxy to the same upstream.
struct Report {
    concurrency: usize,
    rate: u64,
    direct_rps: f64,
    gateway_rps: f64,
    nginx_rps: Option<f64>,
    /// Direct, through the gateway, then through nginx if it ran.
    latencies: Vec<Latency>,
}

impl Report {
    fn print(&self) {
        println!(
            "| run | direct | nginx proxy | through gateway | gateway/direct | gateway/nginx |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        let nginx = self.nginx_rps.map_or("n/a".into(), |r| format!("{r:.0}"));
        let vs_nginx = self
            .nginx_rps
            .map_or("n/a".into(), |r| format!("{:.2}", self.gateway_rps / r));
        println!(
            "| throughput, {} concurrent (req/s) | {:.0} | {nginx} | {:.0} | {:.2} | {vs_nginx} |",
            self.concurrency,
            self.direct_rps,
            self.gateway_rps,
            self.gateway_rps / self.direct_rps
        );
        self.latency_row("p50", |l| l.p50);
        self.latency_row("p99", |l| l.p99);
        let errors: Vec<String> = self
            .latencies
            .iter()
            .map(|l| l.errors.to_string())
            .collect();
        println!(
            "| errors in the latency runs (direct, gateway, nginx) | {} | | | | |",
            errors.join(", ")
        );
    }

    /// One percentile: each path's latency, and what the gateway and nginx add to direct.
    fn latency_row(&self, name: &str, pick: impl Fn(&Latency) -> f64) {
        let [direct, gateway] = [0, 1].map(|i| self.latencies.get(i).map_or(f64::NAN, &pick));
        let nginx = self.latencies.get(2).map(&pick);
        println!(
            "| latency {name} at {} req/s (ms) | {direct:.3} | {} | {gateway:.3} | +{:.3} | {} |",
            self.rate,
            nginx.map_or("n/a".into(), |n| format!("{n:.3} (+{:.3})", n - direct)),
            gateway - direct,
            nginx.map_or("n/a".into(), |n| format!("{:+.3}", gateway - n)),
        );
    }
}

/// nginx as a bare reverse proxy (keep-alive upstream, no buffering, no access log) in front
/// of the mock: the physical limit a proxy on this machine can reach. Absent when nginx is
/// not installed (`bench/run.sh` installs it).
struct Nginx {
    process: Child,
    port: u16,
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: nginx's master then stops its workers, which a killed master
    /// would leave running.
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .arg("-TERM")
            .arg(self.process.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
    }
}

impl Nginx {
    /// CPU time of the master and its workers, in seconds.
    fn cpu_secs(&self) -> Option<f64> {
        let master = self.process.id();
        let children =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .chain([master])
            .map(process_cpu_secs)
            .sum()
    }

    fn start(dir: &std::path::Path, upstream_port: u16) -> Result<Option<Self>> {
        let Some(binary) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("nginx is not installed: the nginx column is skipped");
            return Ok(None);
        };
        let port = free_port()?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root)?;
        let conf = root.join("nginx.conf");
        std::fs::write(&conf, nginx_config(&root, port, upstream_port))?;
        let process = Command::new(binary)
            .arg("-p")
            .arg(&root)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(root.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        let nginx = Nginx { process, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                bail!("nginx did not start: {}", log.trim());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(nginx))
    }
}

fn nginx_config(root: &std::path::Path, port: u16, upstream_port: u16) -> String {
    let root = root.display();
    format!(
        r#"daemon off;
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"#
    )
}

struct Target {
    url: String,
    key: &'static str,
}

async fn call(client: &reqwest::Client, target: &Target) -> Result<()> {
    let response = client
        .post(&target.url)
        .bearer_auth(target.key)
        .header("content-type", "application/json")
        .body(Bytes::from_static(BODY.as_bytes()))
        .send()
        .await?;
    let status = response.status();
    response.bytes().await?;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

/// What a closed-loop run completed, and in how long.
struct ClosedLoop {
    requests: u64,
    elapsed: Duration,
}

impl ClosedLoop {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `duration` with `concurrency` requests always in flight.
async fn closed_loop(
    client: &reqwest::Client,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> Result<ClosedLoop> {
    let started = Instant::now();
    let deadline = started + duration;
    let target = Arc::new(Target {
        url: target.url.clone(),
        key: target.key,
    });
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    call(&client, &target).await?;
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await??;
    }
    Ok(ClosedLoop {
        requests: total,
        elapsed: started.elapsed(),
    })
}

struct Latency {
    p50: f64,
    p99: f64,
    errors: usize,
}

/// Latency percentiles at a fixed arrival rate, each measured from its scheduled start. Every
/// tick sends one request to each target, so both are measured under the same conditions.
async fn open_loop(
    client: &reqwest::Client,
    targets: &[&Target],
    rate: u64,
    duration: Duration,
) -> Result<Vec<Latency>> {
    let count = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let targets: Vec<Arc<Target>> = targets
        .iter()
        .map(|t| {
            Arc::new(Target {
                url: t.url.clone(),
                key: t.key,
            })
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(count as usize * targets.len());
    for i in 0..count {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        for (which, target) in targets.iter().enumerate() {
            let client = client.clone();
            let target = Arc::clone(target);
            tasks.push(tokio::spawn(async move {
                let ok = call(&client, &target).await.is_ok();
                (which, scheduled.elapsed().as_secs_f64() * 1000.0, ok)
            }));
        }
    }
    let mut latencies = vec![Vec::with_capacity(count as usize); targets.len()];
    let mut errors = vec![0; targets.len()];
    for task in tasks {
        let (which, ms, ok) = task.await?;
        if ok {
            latencies[which].push(ms);
        } else {
            errors[which] += 1;
        }
    }
    Ok((0..targets.len())
        .map(|which| {
            let l = &mut latencies[which];
            l.sort_by(f64::total_cmp);
            let at = |q: f64| {
                l.get(((l.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            Latency {
                p50: at(0.50),
                p99: at(0.99),
                errors: errors[which],
            }
        })
        .collect())
}

/// Peak resident set of a process, from /proc.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time a process has used, in seconds, from /proc (Linux ticks are
/// 1/100 s).
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn cpu_us_per_request(before: Option<f64>, after: Option<f64>, requests: u64) -> Option<f64> {
    (requests > 0).then_some((after? - before?) / requests as f64 * 1e6)
}

fn show_us(us: Option<f64>) -> String {
    us.map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}"))
}

/// Reads redis-server's own CPU time (`INFO cpu`) when the store is a Redis URL.
struct RedisCpuProbe(Option<redis::Client>);

fn redis_cpu_probe(store_url: &str) -> RedisCpuProbe {
    RedisCpuProbe(
        store_url
            .starts_with("redis://")
            .then(|| redis::Client::open(store_url).ok())
            .flatten(),
    )
}

impl RedisCpuProbe {
    async fn now(&self) -> Option<f64> {
        let mut conn = self
            .0
            .as_ref()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn)
            .await
            .ok()?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some(field("used_cpu_sys:")? + field("used_cpu_user:")?)
    }
}
