//! `truckllm bench outage`: a Redis outage under load through the gateway.
//!
//! Starts its own `redis-server` (AOF on, so Redis keeps what it acknowledged, as a production
//! Redis would), `truckllm mock-upstream` and `truckllm serve` (fail-open), then sends
//! requests at a fixed rate. After `--before` seconds Redis is killed (SIGKILL); after `--down`
//! seconds it is restarted; load goes on for `--after` seconds. The gateway's `/metrics` is
//! read every 50 ms to see when it noticed the outage and when it recovered. At the end it
//! compares the requests served with the count in Redis.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::bench_gateway::{free_port, spawn};
use crate::cli::OutageBenchArgs;

struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Result<Self> {
        let mut redis = Self {
            child: None,
            port: free_port()?,
            dir: tempfile::tempdir()?,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            if Instant::now() > deadline {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gauge or counter from Prometheus text, summed over its label sets.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn run(args: &OutageBenchArgs) -> Result<ExitCode> {
    let mut redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let mock_port = free_port()?;
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ])?;
    let port = free_port()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\nstorage:\n  runtime:\n    type: \"redis\"\n    addr: \"127.0.0.1:{}\"\n    outage_limits: \"fail_open\"\nllm_providers:\n  - id: \"mock\"\n    base_url: \"http://127.0.0.1:{mock_port}/v1\"\n    keys:\n      - {{id: \"k1\", secret: \"s1\"}}\n      - {{id: \"k2\", secret: \"s2\"}}\n    limits: {{req_per_min: 1000000, tokens_per_min: 1000000000}}\n    models: [\"gpt-4o-mini\"]\n",
            redis.port
        ),
    )?;
    let _gateway = spawn(&["serve", "--config", config.to_str().context("path")?])?;
    let client = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let chat_url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;

    let total = Duration::from_secs_f64(args.before + args.down + args.after);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = Instant::now();
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut i = 0u32;
            while start.elapsed() < total {
                tokio::time::sleep_until((start + interval * i).into()).await;
                let client = client.clone();
                let url = chat_url.clone();
                tasks.push(tokio::spawn(async move {
                    let sent = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    sent.map(|r| r.status().as_u16()).unwrap_or(0)
                }));
                i += 1;
            }
            let mut statuses = Vec::with_capacity(tasks.len());
            for t in tasks {
                statuses.push(t.await.unwrap_or(0));
            }
            statuses
        })
    };
    let scrape = |client: reqwest::Client, url: String| async move {
        match client.get(url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    tokio::time::sleep(Duration::from_secs_f64(args.before)).await;
    redis.kill();
    let killed = Instant::now();
    let mut detected = None;
    while killed.elapsed() < Duration::from_secs_f64(args.down) {
        if detected.is_none()
            && metric(
                &scrape(client.clone(), metrics_url.clone()).await,
                "truckllm_storage_degraded",
            ) >= 1.0
        {
            detected = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.spawn()?;
    let restarted = Instant::now();
    let mut recovered = None;
    while recovered.is_none() && restarted.elapsed() < Duration::from_secs(60) {
        let text = scrape(client.clone(), metrics_url.clone()).await;
        if metric(&text, "truckllm_storage_degraded") == 0.0 && !text.is_empty() {
            recovered = Some(restarted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses = load.await?;
    // Let the last settlements and any replay land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = scrape(client.clone(), metrics_url.clone()).await;
    let replayed = metric(&text, "truckllm_storage_replayed_increments_total");
    let served = statuses.iter().filter(|s| **s == 200).count();
    let failed = statuses.len() - served;
    let counted: f64 = ["k1", "k2"]
        .iter()
        .map(|k| {
            redis
                .cli(&["GET", &format!("usage:{{mock:{k}}}:req")])
                .parse::<f64>()
                .unwrap_or(0.0)
        })
        .sum();
    // Metrics are read every 50 ms, so times are known to that resolution.
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "never".to_owned(),
            |d| format!("≤ {} ms", (d.as_millis() / 50 + 1) * 50),
        )
    };
    println!(
        "outage bench: {} req/s, Redis killed after {} s for {} s, {} s more load\n",
        args.rate, args.before, args.down, args.after
    );
    println!("| figure | value |\n|---|---:|");
    println!("| requests sent | {} |", statuses.len());
    println!("| served (200) | {served} |");
    println!("| failed | {failed} |");
    println!("| counted in Redis after recovery | {counted} |");
    println!("| lost (served − counted) | {} |", served as f64 - counted);
    println!("| time to detect the outage | {} |", ms(detected));
    println!("| time to recover after restart | {} |", ms(recovered));
    println!("| increments replayed | {replayed} |");
    Ok(ExitCode::SUCCESS)
}
