//! The sinks against real parts: files on a real filesystem, a real HTTP receiver for the
//! webhook, a real `prometheus-pushgateway` process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use truckllm_config::Secret;
use truckllm_config::schema::{
    FileSinkConfig, FsyncPolicy, LogSinkConfig, PushgatewaySinkConfig, WebhookSinkConfig,
};
use truckllm_logging::file::{FileSink, Now, RotatingFile, Rotation, rotated_files};
use truckllm_logging::search::{self, Filter, GroupBy, Stats};
use truckllm_logging::webhook::{SIGNATURE_HEADER, sign};
use truckllm_logging::{AuditRecord, LogSink, Logger, QueueLimits, RequestRecord, Severity};

fn file_config(dir: &Path) -> FileSinkConfig {
    FileSinkConfig {
        path: dir.join("requests.jsonl").display().to_string(),
        audit_path: Some(dir.join("audit.jsonl").display().to_string()),
        max_size_mb: 100.0,
        max_age_hours: 24.0,
        keep_files: 10,
        keep_days: 7.0,
        fsync: FsyncPolicy::Batch,
        queue_size: 10_000,
        queue_max_mb: 16.0,
    }
}

fn webhook_config(url: String) -> WebhookSinkConfig {
    WebhookSinkConfig {
        url,
        secret: Some(Secret::new(String::from("hook-secret"))),
        batch_size: 10,
        flush_interval_ms: 50,
        timeout_ms: 5_000,
        queue_size: 10_000,
        queue_max_mb: 16.0,
        alerts_only: false,
    }
}

/// A clock the test moves by hand.
fn manual_clock(start: SystemTime) -> (Now, Arc<AtomicU64>) {
    let ms = Arc::new(AtomicU64::new(
        start
            .duration_since(UNIX_EPOCH)
            .expect("after epoch")
            .as_millis() as u64,
    ));
    let read = Arc::clone(&ms);
    (
        Arc::new(move || UNIX_EPOCH + Duration::from_millis(read.load(Ordering::SeqCst))),
        ms,
    )
}

#[allow(clippy::too_many_arguments)]
fn request(
    at: SystemTime,
    id: usize,
    provider: &str,
    key: &str,
    client: &str,
    model: &str,
    status: u16,
    latency_ms: f64,
) -> RequestRecord {
    let mut r = RequestRecord::new(at, format!("req-{id}"), "chat");
    r.provider = Some(provider.into());
    r.key = Some(key.into());
    r.client = Some(client.into());
    r.model = model.into();
    r.status = status;
    r.latency_ms = latency_ms;
    r.prompt_tokens = 10;
    r.completion_tokens = if status == 200 { 5 } else { 0 };
    r.cost = if status == 200 { 0.5 } else { 0.0 };
    r.rate_limited = status == 429;
    r.error = (status >= 400).then(|| "upstream_error".to_owned());
    r
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a whole JSON record"))
        .collect()
}

#[test]
fn a_file_rotates_by_size_between_lines_and_keeps_only_the_newest_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("requests.jsonl");
    let (now, ms) = manual_clock(SystemTime::now());
    let rotation = Rotation {
        max_bytes: 1_000,
        max_age: Duration::from_secs(3600),
        keep_files: 3,
        keep_age: None,
    };
    let mut file = RotatingFile::open(&path, rotation, now).expect("open");
    for i in 0..60 {
        let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(80)).into_bytes();
        file.append(&[line]).expect("append");
        ms.fetch_add(1, Ordering::SeqCst);
    }
    let rotated = rotated_files(&path).expect("list");
    assert_eq!(rotated.len(), 3, "retention keeps 3 rotated files");
    let mut numbers = Vec::new();
    for (_, p) in rotated
        .iter()
        .map(|(t, p)| (t, p.as_path()))
        .chain([(&SystemTime::now(), path.as_path())])
    {
        let size = std::fs::metadata(p).expect("stat").len();
        assert!(size <= 1_000, "{} is {size} bytes", p.display());
        numbers.extend(lines(p).iter().map(|v| v["n"].as_u64().expect("n")));
    }
    let expected: Vec<u64> = (60 - numbers.len() as u64..60).collect();
    assert_eq!(
        numbers, expected,
        "the newest lines, in order, none torn or repeated"
    );
}

#[test]
fn a_file_rotates_by_the_age_of_its_first_record_and_old_files_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("requests.jsonl");
    let (now, ms) = manual_clock(SystemTime::now());
    let hour = 3_600_000;
    let rotation = Rotation {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(3600),
        keep_files: 100,
        keep_age: Some(Duration::from_secs(3 * 3600)),
    };
    let mut file = RotatingFile::open(&path, rotation, Arc::clone(&now)).expect("open");
    file.append(&[b"{\"n\":1}".to_vec()]).expect("append");
    ms.fetch_add(hour / 2, Ordering::SeqCst);
    file.rotate_if_old().expect("check");
    assert!(
        rotated_files(&path).expect("list").is_empty(),
        "30 minutes is not old"
    );
    ms.fetch_add(hour / 2, Ordering::SeqCst);
    file.rotate_if_old().expect("check");
    assert_eq!(rotated_files(&path).expect("list").len(), 1, "an hour is");
    file.rotate_if_old().expect("check");
    assert_eq!(
        rotated_files(&path).expect("list").len(),
        1,
        "an empty file is never rotated"
    );

    // Each hour another file; after more than three hours the first has expired.
    for n in 2..=5 {
        file.append(&[format!("{{\"n\":{n}}}").into_bytes()])
            .expect("append");
        ms.fetch_add(hour, Ordering::SeqCst);
        file.rotate_if_old().expect("check");
    }
    let kept: Vec<u64> = rotated_files(&path)
        .expect("list")
        .iter()
        .flat_map(|(_, p)| lines(p))
        .map(|v| v["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(
        kept,
        vec![2, 3, 4, 5],
        "the file rotated 4 h ago is deleted; 3 h ago is kept"
    );

    // Reopened, the active file's age comes from its first record.
    file.append(&[format!(
        "{{\"ts\":\"{}\"}}",
        truckllm_logging::record::timestamp(now())
    )
    .into_bytes()])
        .expect("append");
    drop(file);
    ms.fetch_add(hour, Ordering::SeqCst);
    let mut reopened = RotatingFile::open(&path, rotation, now).expect("reopen");
    reopened.rotate_if_old().expect("check");
    assert!(
        std::fs::metadata(&path).expect("stat").len() == 0,
        "rotated after reopening"
    );
}

#[tokio::test]
async fn search_reads_every_rotated_file_and_applies_each_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = file_config(dir.path());
    config.max_size_mb = 0.002; // ~2 KB: the set below spans several files
    config.keep_files = 1_000;
    let logger = Logger::start(vec![(
        Box::new(FileSink::open(&config, truckllm_logging::file::system_now()).expect("open")),
        QueueLimits::new(10_000, 16.0),
    )]);
    let base = SystemTime::now() - Duration::from_secs(3600);
    let providers = [("openai", "k1"), ("openai", "k2"), ("groq", "g1")];
    let statuses = [200, 200, 200, 429, 502];
    for i in 0..150 {
        let (provider, key) = providers[i % 3];
        let client = if i % 2 == 0 { "team-a" } else { "team-b" };
        let model = if i % 5 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
        logger.emit(request(
            base + Duration::from_secs(i as u64 * 10),
            i,
            provider,
            key,
            client,
            model,
            statuses[i % 5],
            (i + 1) as f64,
        ));
    }
    logger.emit(AuditRecord::alert(
        "storage.degraded",
        Severity::Critical,
        "redis down",
    ));
    logger.shutdown(Duration::from_secs(5)).await;

    let active = Path::new(&config.path);
    let files = search::log_files(active, None).expect("files");
    assert!(files.len() > 3, "the log rotated: {} files", files.len());
    let count = |filter: Filter| {
        let mut ids = Vec::new();
        let summary =
            search::scan_requests(&files, &filter, |r, _| ids.push(r.request_id.to_string()))
                .expect("scan");
        assert_eq!(summary.malformed, 0);
        ids.len()
    };
    assert_eq!(count(Filter::default()), 150);
    assert_eq!(
        count(Filter {
            provider: Some("groq".into()),
            ..Filter::default()
        }),
        50
    );
    assert_eq!(
        count(Filter {
            provider: Some("openai".into()),
            key: Some("k2".into()),
            ..Filter::default()
        }),
        50
    );
    assert_eq!(
        count(Filter {
            client: Some("team-a".into()),
            ..Filter::default()
        }),
        75
    );
    assert_eq!(
        count(Filter {
            model: Some("gpt-4o".into()),
            ..Filter::default()
        }),
        30
    );
    assert_eq!(
        count(Filter {
            status: Some("2xx".parse().expect("status")),
            ..Filter::default()
        }),
        90
    );
    assert_eq!(
        count(Filter {
            status: Some("429".parse().expect("status")),
            ..Filter::default()
        }),
        30
    );
    assert_eq!(
        count(Filter {
            status: Some("5xx".parse().expect("status")),
            ..Filter::default()
        }),
        30
    );
    assert_eq!(
        count(Filter {
            grep: Some("req-14".into()),
            ..Filter::default()
        }),
        11,
        "req-14 and req-140..149"
    );
    // Records 100..149 are at base + 1000 s and later; until is exclusive.
    let since = Filter {
        since: Some(base + Duration::from_secs(1000)),
        ..Filter::default()
    };
    assert_eq!(count(since.clone()), 50);
    assert_eq!(
        count(Filter {
            until: Some(base + Duration::from_secs(1000)),
            ..since.clone()
        }),
        0
    );
    assert_eq!(
        count(Filter {
            until: Some(base + Duration::from_secs(1000)),
            ..Filter::default()
        }),
        100
    );
    assert_eq!(
        search::log_files(active, Some(SystemTime::now() + Duration::from_secs(60)))
            .expect("files"),
        vec![active.to_owned()],
        "rotated files that ended before --since are not even opened"
    );

    let mut stats = Stats::default();
    search::scan_requests(&files, &Filter::default(), |r, _| {
        stats.add(GroupBy::Key, r)
    })
    .expect("scan");
    stats.finish();
    let k1 = &stats.groups["openai/k1"];
    assert_eq!(k1.requests, 50);
    assert_eq!(k1.errors, 20, "every 429 and 502 in openai/k1");
    assert_eq!(k1.prompt_tokens, 500);
    assert_eq!(k1.completion_tokens, 150);
    assert!((k1.cost - 15.0).abs() < 1e-9);
    assert!((k1.error_rate - 0.4).abs() < 1e-9);
    // Latencies of openai/k1 are 1, 4, 7, …, 148 ms.
    assert_eq!(k1.latency_p50_ms, 73.0);
    assert_eq!(k1.latency_p99_ms, 148.0);

    let audit_files = search::log_files(&dir.path().join("audit.jsonl"), None).expect("files");
    let mut actions = Vec::new();
    search::scan_audit(&audit_files, &Filter::default(), |a, _| {
        actions.push(a.action.to_string())
    })
    .expect("scan");
    assert_eq!(
        actions,
        vec!["storage.degraded"],
        "audit records go to their own file"
    );
}

/// What the test webhook receiver saw.
#[derive(Default)]
struct Received {
    posts: Mutex<Vec<(HeaderMap, Bytes)>>,
    fail_first: AtomicUsize,
    hang: std::sync::atomic::AtomicBool,
}

async fn start_receiver(received: Arc<Received>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let received = Arc::clone(&received);
            async move {
                if received.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                received.posts.lock().expect("lock").push((headers, body));
                let failing = received
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn the_webhook_sends_signed_batches_and_retries_after_a_500_without_losing_a_record() {
    let received = Arc::new(Received::default());
    received.fail_first.store(2, Ordering::SeqCst);
    let url = start_receiver(Arc::clone(&received)).await;
    let config = webhook_config(url);
    let logger = truckllm_logging::start(&[LogSinkConfig::Webhook(config)]).expect("start");
    let now = SystemTime::now();
    for i in 0..25 {
        logger.emit(request(now, i, "openai", "k1", "c", "m", 200, 5.0));
    }
    logger.flush().await;

    let posts = received.posts.lock().expect("lock").clone();
    assert_eq!(posts.len(), 3 + 2, "3 batches, 2 of them retried once");
    let mut delivered = std::collections::BTreeMap::new();
    for (i, (headers, body)) in posts.iter().enumerate() {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .expect("signed")
            .to_str()
            .expect("ascii");
        assert_eq!(
            signature,
            sign(b"hook-secret", body),
            "signature over the raw body"
        );
        let batch: serde_json::Value = serde_json::from_slice(body).expect("json body");
        assert_eq!(batch["schema"], "truckllm.batch/v1");
        let records = batch["records"].as_array().expect("records");
        assert!(
            !records.is_empty() && records.len() <= 10,
            "batches of at most 10"
        );
        let id = batch["batch_id"].as_str().expect("id").to_owned();
        assert_eq!(
            headers
                .get("x-truckllm-batch-id")
                .and_then(|v| v.to_str().ok()),
            Some(id.as_str())
        );
        if i < 2 {
            assert_eq!(
                posts[i + 1].1,
                *body,
                "a 500 is retried with the same batch"
            );
        }
        delivered.insert(
            id,
            records
                .iter()
                .map(|r| r["request_id"].as_str().expect("id").to_owned())
                .collect::<Vec<_>>(),
        );
    }
    let mut ids: Vec<String> = delivered.into_values().flatten().collect();
    ids.sort();
    let mut expected: Vec<String> = (0..25).map(|i| format!("req-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected, "every record delivered once per batch id");
    assert_eq!(logger.sink_stats()[0].dropped_requests, 0);
    logger.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_hanging_webhook_never_blocks_emit_and_its_drops_are_counted_and_alerted() {
    let received = Arc::new(Received::default());
    received.hang.store(true, Ordering::SeqCst);
    let url = start_receiver(Arc::clone(&received)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hook = webhook_config(url);
    hook.queue_size = 10;
    hook.batch_size = 5;
    hook.timeout_ms = 60_000;
    let file = file_config(dir.path());
    let logger = truckllm_logging::start(&[
        LogSinkConfig::Webhook(hook),
        LogSinkConfig::File(file.clone()),
    ])
    .expect("start");
    let now = SystemTime::now();
    for i in 0..100 {
        logger.emit(request(now, i, "openai", "k1", "c", "m", 200, 5.0));
    }
    for _ in 0..20 {
        logger.emit(AuditRecord::new(
            truckllm_logging::AuditCategory::Admin,
            "config.reload",
            "admin",
            "ok",
        ));
    }
    let stats = logger.sink_stats();
    assert!(
        (85..=90).contains(&stats[0].dropped_requests),
        "queue 10 plus at most one batch of 5 in flight; the rest dropped: {stats:?}"
    );
    assert!(
        stats[0].dropped_audit >= 5,
        "audit overflow is counted: {stats:?}"
    );
    assert_eq!(
        stats[1].dropped_requests, 0,
        "the file sink is not held up by the webhook"
    );
    // The file sink gets everything, including an alert that the webhook is dropping
    // (100 requests, 20 audit records, 1 alert); poll its count, bounded.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let file_stats = logger.sink_stats()[1].clone();
            if file_stats.written >= 121 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the file sink keeps writing");
    let alerts: Vec<serde_json::Value> =
        lines(Path::new(file.audit_path.as_deref().expect("audit path")))
            .into_iter()
            .filter(|a| a["action"] == "log.sink_dropping")
            .collect();
    assert_eq!(alerts.len(), 1, "one alert per minute per sink");
    assert!(
        alerts[0]["target"]
            .as_str()
            .expect("target")
            .starts_with("webhook:")
    );
    assert_eq!(lines(Path::new(&file.path)).len(), 100);
    logger.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_alerts_only_webhook_receives_alerts_and_nothing_else() {
    let received = Arc::new(Received::default());
    let url = start_receiver(Arc::clone(&received)).await;
    let mut hook = webhook_config(url);
    hook.alerts_only = true;
    hook.secret = None;
    let logger = truckllm_logging::start(&[LogSinkConfig::Webhook(hook)]).expect("start");
    logger.emit(request(
        SystemTime::now(),
        1,
        "openai",
        "k1",
        "c",
        "m",
        200,
        5.0,
    ));
    logger.emit(AuditRecord::new(
        truckllm_logging::AuditCategory::Config,
        "config.reload",
        "admin",
        "ok",
    ));
    logger.emit(AuditRecord::alert(
        "storage.degraded",
        Severity::Critical,
        "redis down",
    ));
    logger.flush().await;
    let posts = received.posts.lock().expect("lock").clone();
    let records: Vec<serde_json::Value> = posts
        .iter()
        .flat_map(|(headers, body)| {
            assert!(
                headers.get(SIGNATURE_HEADER).is_none(),
                "no secret, no signature"
            );
            let v: serde_json::Value = serde_json::from_slice(body).expect("json");
            v["records"].as_array().expect("records").clone()
        })
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["action"], "storage.degraded");
    logger.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_pushgateway_sink_pushes_aggregates_a_real_pushgateway_accepts_and_deletes_on_shutdown()
{
    let gateway = tokio::task::spawn_blocking(truckllm_testkit::Pushgateway::start)
        .await
        .expect("start");
    let config = PushgatewaySinkConfig {
        url: gateway.url(),
        job: "truckllm".into(),
        instance: Some("test-1".into()),
        interval_secs: 0.1,
        timeout_ms: 5_000,
        delete_on_shutdown: true,
    };
    let mut sink = truckllm_logging::pushgateway::PushgatewaySink::new(&config).expect("sink");
    let now = SystemTime::now();
    let batch: Vec<truckllm_logging::LogRecord> = vec![
        request(now, 1, "openai", "k1", "c", "m", 200, 20.0).into(),
        request(now, 2, "openai", "k1", "c", "m", 502, 300.0).into(),
        request(now, 3, "groq", "g/1", "c", "m", 200, 7.0).into(),
    ];
    let stop = tokio_util::sync::CancellationToken::new();
    sink.write(&batch, &stop).await.expect("aggregate");
    sink.tick(&stop).await.expect("push accepted");

    let scraped = gateway.scrape();
    let find = |name: &str, labels: &[&str]| -> Option<f64> {
        scraped.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series.starts_with(&format!("{name}{{")) && labels.iter().all(|l| series.contains(l)))
                .then(|| value.parse().ok())
                .flatten()
        })
    };
    let k1 = [
        "instance=\"test-1\"",
        "job=\"truckllm\"",
        "provider=\"openai\"",
        "key_id=\"k1\"",
    ];
    assert_eq!(find("truckllm_requests_total", &k1), Some(2.0), "{scraped}");
    assert_eq!(find("truckllm_request_errors_total", &k1), Some(1.0));
    assert_eq!(
        find("truckllm_request_latency_seconds_count", &k1),
        Some(2.0)
    );
    assert_eq!(
        find(
            "truckllm_request_latency_seconds_bucket",
            &[k1[2], "le=\"0.025\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        find("truckllm_tokens_total", &[k1[3], "type=\"completion\""]),
        Some(5.0)
    );
    assert_eq!(
        find("truckllm_requests_total", &["key_id=\"g/1\""]),
        Some(1.0),
        "odd label values survive"
    );

    sink.close().await.expect("final push and delete");
    assert_eq!(
        find_after(&gateway, "instance=\"test-1\""),
        None,
        "deleted on shutdown"
    );
}

fn find_after(gateway: &truckllm_testkit::Pushgateway, needle: &str) -> Option<String> {
    gateway
        .scrape()
        .lines()
        .find(|l| l.starts_with("truckllm_") && l.contains(needle))
        .map(str::to_owned)
}
