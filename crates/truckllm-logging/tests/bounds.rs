//! What clients cannot do to the logging store, against real files and a real HTTP receiver:
//! grow records with long strings, push audit records out of the file sink with traffic, fill
//! a sink's queue with a few huge records, or stop the webhook sink with a `Retry-After`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use truckllm_config::schema::{FileSinkConfig, LogSinkConfig, WebhookSinkConfig};
use truckllm_logging::file::{FileSink, RotatingFile, Rotation, rotated_files, system_now};
use truckllm_logging::search::{self, Filter};
use truckllm_logging::webhook::WebhookSink;
use truckllm_logging::{AuditCategory, AuditRecord, Logger, QueueLimits, RequestRecord};

fn file_config(dir: &Path) -> FileSinkConfig {
    FileSinkConfig {
        audit_path: Some(dir.join("audit.jsonl").display().to_string()),
        ..FileSinkConfig::at(dir.join("requests.jsonl").display().to_string())
    }
}

fn webhook_config(url: String) -> WebhookSinkConfig {
    WebhookSinkConfig {
        url,
        secret: None,
        batch_size: 5,
        flush_interval_ms: 10,
        timeout_ms: 60_000,
        queue_size: 10_000,
        queue_max_mb: 16.0,
        alerts_only: false,
    }
}

fn request(id: usize, model: &str) -> RequestRecord {
    let mut r = RequestRecord::new(SystemTime::now(), format!("req-{id}"), "chat");
    r.client = Some("restricted".into());
    r.model = model.into();
    r.status = 403;
    r.error = Some("model_not_allowed".into());
    r
}

/// An access denial as the gateway writes it: the message quotes the model asked for.
fn denial(model: &str) -> AuditRecord {
    AuditRecord::new(AuditCategory::Access, "chat", "client", "denied")
        .status(403)
        .message(format!("model `{model}` is not allowed for this client"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn client_strings_of_megabytes_reach_the_file_capped_and_marked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    let logger = truckllm_logging::start(&[LogSinkConfig::File(config.clone())]).expect("start");
    let huge = "x".repeat(8 << 20);
    for i in 0..9 {
        // Fields set directly, past every builder: the logger caps them all the same.
        let mut r = request(i, &huge);
        r.request_id = huge.clone();
        r.error = Some(huge.clone());
        logger.emit(r);
        logger.emit(denial(&huge).target(huge.clone()));
    }
    logger.flush().await;
    for path in [
        Path::new(&config.path),
        dir.path().join("audit.jsonl").as_path(),
    ] {
        let written = lines(path);
        assert_eq!(written.len(), 9, "{}", path.display());
        for line in written {
            assert!(line.len() < 4096, "a record of {} bytes", line.len());
            assert!(line.contains("…[truncated "), "{line}");
        }
    }
    logger.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn no_volume_of_traffic_deletes_audit_records_and_search_reads_both_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = FileSinkConfig {
        max_size_mb: 0.002, // ~2 KB: every few records rotate
        keep_files: 1,
        keep_days: 0.0,
        ..file_config(dir.path())
    };
    let logger = truckllm_logging::start(&[LogSinkConfig::File(config.clone())]).expect("start");
    logger.emit(
        AuditRecord::new(AuditCategory::Config, "config.applied", "admin", "ok")
            .versions(Some(1), Some(2)),
    );
    logger.flush().await;
    // A restricted client floods: each request leaves a request record and an audit record.
    for i in 0..300 {
        logger.emit(request(i, "forbidden-model"));
        logger.emit(denial("forbidden-model"));
    }
    logger.flush().await;
    logger.shutdown(Duration::from_secs(5)).await;

    let audit_path = dir.path().join("audit.jsonl");
    assert!(
        rotated_files(&audit_path).expect("list").len() > 1,
        "the audit log rotated"
    );
    let files = search::log_files(&audit_path, None).expect("audit files");
    let mut actions = Vec::new();
    search::scan_audit(&files, &Filter::default(), |r, _| {
        actions.push(r.action.to_string())
    })
    .expect("scan audit");
    assert_eq!(actions.len(), 301, "every audit record is still there");
    assert_eq!(actions[0], "config.applied");

    let request_path = Path::new(&config.path);
    assert_eq!(
        rotated_files(request_path).expect("list").len(),
        1,
        "keep_files still bounds the request log"
    );
    let files = search::log_files(request_path, None).expect("request files");
    let summary = search::scan_requests(&files, &Filter::default(), |_, _| {}).expect("scan");
    assert!(summary.matched > 0 && summary.malformed == 0);
}

#[test]
fn a_file_sink_whose_two_logs_are_one_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let same = FileSinkConfig::at(dir.path().join("audit.jsonl").display().to_string());
    assert!(
        FileSink::open(&same, system_now()).is_err(),
        "audit.jsonl is also the default audit path"
    );
    let spelled_apart = FileSinkConfig {
        audit_path: Some(dir.path().join("x/../requests.jsonl").display().to_string()),
        ..FileSinkConfig::at(dir.path().join("./requests.jsonl").display().to_string())
    };
    assert!(FileSink::open(&spelled_apart, system_now()).is_err());
    assert!(FileSink::open(&file_config(dir.path()), system_now()).is_ok());
}

#[cfg(unix)]
#[tokio::test]
async fn log_files_and_rotated_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = file_config(dir.path());
    let logger = truckllm_logging::start(&[LogSinkConfig::File(config.clone())]).expect("start");
    logger.emit(request(1, "m"));
    logger.emit(denial("m"));
    logger.flush().await;
    logger.shutdown(Duration::from_secs(5)).await;
    let rotation = Rotation {
        max_bytes: 100,
        max_age: Duration::from_secs(3600),
        keep_files: 10,
        keep_age: None,
    };
    let rotating = dir.path().join("rotating.jsonl");
    let mut file = RotatingFile::open(&rotating, rotation, system_now()).expect("open");
    for n in 0..5 {
        let line = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(80));
        file.append(&[line.into_bytes()]).expect("append");
    }
    let rotated = rotated_files(&rotating).expect("list");
    assert!(!rotated.is_empty());
    let paths = [
        Path::new(&config.path).to_owned(),
        dir.path().join("audit.jsonl"),
        rotating.clone(),
    ]
    .into_iter()
    .chain(rotated.into_iter().map(|(_, p)| p));
    for path in paths {
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
    }
}

/// A webhook receiver: answers 429 (with `retry_after`) to the first `throttle` posts, never
/// answers while `hang` is set, else 200; keeps every body it took.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<Bytes>>,
    throttle: AtomicUsize,
    retry_after: Mutex<String>,
    hang: std::sync::atomic::AtomicBool,
}

async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let receiver = Arc::clone(&receiver);
            async move {
                if receiver.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                receiver.bodies.lock().expect("lock").push(body);
                let throttled = receiver
                    .throttle
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if throttled {
                    let after = receiver.retry_after.lock().expect("lock").clone();
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", after)]).into_response()
                } else {
                    StatusCode::OK.into_response()
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

fn request_ids(bodies: &[Bytes]) -> Vec<String> {
    bodies
        .iter()
        .flat_map(|body| {
            let batch: serde_json::Value = serde_json::from_slice(body).expect("json");
            batch["records"].as_array().expect("records").clone()
        })
        .map(|r| r["request_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_huge_retry_after_neither_stops_the_webhook_sink_nor_stalls_it() {
    let receiver = Arc::new(Receiver::default());
    receiver.throttle.store(1, Ordering::SeqCst);
    *receiver.retry_after.lock().expect("lock") = "1e20".into();
    let url = start_receiver(Arc::clone(&receiver)).await;
    // The cap on waits is shortened so the capped Retry-After passes quickly.
    let sink = WebhookSink::new(&webhook_config(url))
        .expect("sink")
        .with_max_backoff(Duration::from_millis(20));
    let logger = Logger::start(vec![(Box::new(sink), QueueLimits::new(100, 16.0))]);
    logger.emit(request(1, "m"));
    logger.flush().await;
    logger.emit(request(2, "m"));
    logger.flush().await;
    let bodies = receiver.bodies.lock().expect("lock").clone();
    assert_eq!(
        request_ids(&bodies),
        ["req-1", "req-1", "req-2"],
        "the throttled batch is retried, and later records still go out"
    );
    let stats = &logger.sink_stats()[0];
    assert_eq!((stats.written, stats.dropped_requests), (2, 0));
    logger.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_queue_is_bounded_by_bytes_as_well_as_by_records() {
    let receiver = Arc::new(Receiver::default());
    receiver.hang.store(true, Ordering::SeqCst);
    let url = start_receiver(Arc::clone(&receiver)).await;
    let config = WebhookSinkConfig {
        queue_size: 10_000,
        queue_max_mb: 0.0625, // 64 KiB
        ..webhook_config(url)
    };
    let logger = truckllm_logging::start(&[LogSinkConfig::Webhook(config)]).expect("start");
    // Each record weighs over 700 bytes (a 512-byte model after capping): at most ~90 fit in
    // 64 KiB, plus one batch of 5 the worker holds; 10,000 would fit by count.
    let model = "m".repeat(4096);
    for i in 0..1_000 {
        logger.emit(request(i, &model));
    }
    let stats = &logger.sink_stats()[0];
    assert!(
        (895..=1_000).contains(&stats.dropped_requests),
        "dropped by bytes, and counted: {stats:?}"
    );
    logger.shutdown(Duration::from_millis(100)).await;
}
