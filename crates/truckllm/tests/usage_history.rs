//! `truckllm usage export --db postgres://…` reads the long-term usage history that a
//! gateway's history writer put in a real PostgreSQL, by provider and by model.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use truckllm_store::postgres::history::{HistoryWriter, SETTLE_MS};
use truckllm_store::postgres::{PostgresOptions, connect_pool};
use truckllm_store::{ManualClock, Metric, ProviderKey, RollupPoint, SeriesRollup};
use truckllm_testkit::PostgresServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_daily_sums_per_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = PostgresServer::shared();
    let url = tokio::task::spawn_blocking(move || server.fresh_database())
        .await
        .expect("create a test database");
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    };
    let pool = connect_pool(&url, &options).await.expect("connect");

    // Two minutes of usage two days ago, written by the history writer.
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("now")
            .as_millis(),
    )
    .expect("ms");
    let day_ms = 86_400_000;
    let start = now_ms - 2 * day_ms;
    let start = start - start % 60_000;
    let series = ProviderKey::new("openai", "k1")
        .expect("key")
        .series(Metric::CompletionTokens);
    let points = vec![
        RollupPoint {
            start_ms: start,
            value: 30.0,
        },
        RollupPoint {
            start_ms: start + 60_000,
            value: 12.0,
        },
    ];
    let by_model = ProviderKey::new("_models", "openai:gpt-4o")
        .expect("key")
        .series(Metric::CompletionTokens);
    let rollups = [
        SeriesRollup {
            series,
            points: points.clone(),
        },
        SeriesRollup {
            series: by_model,
            points,
        },
    ];
    let clock = Arc::new(ManualClock::new(start + 120_000 + SETTLE_MS));
    let writer = HistoryWriter::new(pool, "fleet", 400, clock)
        .await
        .expect("writer");
    let report = writer
        .write_finished(&rollups, Duration::from_secs(60))
        .await
        .expect("write");
    assert_eq!(report.written, 2);

    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["usage", "export", "--since", "30d", "--db", &url])
        .args(["--by", "provider", "--step", "day", "--format", "csv"])
        .output()
        .expect("run truckllm");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"start,provider,metric,value"));
    // Both minutes may fall on either side of midnight: the day sums add up to 42.
    let total: f64 = lines[1..]
        .iter()
        .map(|l| {
            assert!(l.contains(",openai,completion_tokens,"), "row: {l}");
            l.rsplit(',')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("value")
        })
        .sum();
    assert_eq!(total, 42.0);

    // The same usage by model: the gateway counts it under `_models`, named as asked for.
    let output = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["usage", "export", "--since", "30d", "--db", &url])
        .args(["--by", "model", "--step", "day"])
        .output()
        .expect("run truckllm");
    assert!(output.status.success());
    let total: f64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("json line");
            assert_eq!(row["model"], "openai:gpt-4o", "{row}");
            row["value"].as_f64().expect("value")
        })
        .sum();
    assert_eq!(total, 42.0);

    let bad = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["usage", "export", "--db", &url, "--by", "region"])
        .output()
        .expect("run truckllm");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("known: provider, key, client, team, model")
    );
}
