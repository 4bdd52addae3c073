//! Real gateway processes: limits hold across gateways sharing one Redis (or one PostgreSQL,
//! or a storage server), and a graceful
//! shutdown lets a request in flight finish and flushes its usage.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Process;
use futures_util::StreamExt;
use truckllm_testkit::{PostgresServer, RedisServer, free_port};

/// Starts `truckllm ARGS` and waits for its banner.
fn spawn(args: &[&str]) -> Process {
    Process::spawn(args, &[])
}

fn config(
    dir: &std::path::Path,
    redis_port: u16,
    upstream: &str,
    listen: u16,
    provider_limits: &str,
) -> std::path::PathBuf {
    let runtime = format!("    type: \"redis\"\n    addr: \"127.0.0.1:{redis_port}\"\n    db: 0\n");
    config_with(dir, &runtime, upstream, listen, provider_limits)
}

/// A gateway config with the given `storage.runtime` body and one provider key, `only`.
fn config_with(
    dir: &std::path::Path,
    runtime: &str,
    upstream: &str,
    listen: u16,
    provider_limits: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("config-{listen}.yaml"));
    let text = format!(
        "server:\n  listen: \"127.0.0.1:{listen}\"\nstorage:\n  runtime:\n{runtime}llm_providers:\n  - id: \"mock\"\n    base_url: \"{upstream}/v1\"\n    keys:\n      - id: \"only\"\n        secret: \"secret-only\"\n{provider_limits}    models: [\"gpt-4o-mini\"]\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn chat(port: u16) -> u16 {
    chat_within(port, 30)
}

/// Arguments that run a storage server on a free port in front of `redis`, with one
/// read-write token, `store-secret` (its file is written in `dir`); and that port.
fn storage_server(dir: &std::path::Path, redis: &RedisServer) -> (Vec<String>, u16) {
    let tokens = dir.join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tokens:\n  - name: gateways\n    token: \"store-secret\"\n    scopes: [read, write, docs]\n",
    )
    .expect("tokens");
    let port = free_port();
    let args = [
        "storage-server",
        "--insecure-plain-http",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--store",
        &redis.url(),
        "--tokens",
        tokens.to_str().expect("utf-8 path"),
    ];
    (args.iter().map(|a| (*a).to_owned()).collect(), port)
}

fn spawn_owned(args: &[String]) -> Process {
    spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `storage.runtime` for a gateway that uses the storage server on `port`.
fn http_runtime(port: u16) -> String {
    format!(
        "    type: \"http\"\n    addr: \"http://127.0.0.1:{port}\"\n    api_key: \"store-secret\"\n"
    )
}

fn mock_requests(mock_port: u16) -> u64 {
    let output = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{mock_port}/mock/stats")])
        .output()
        .expect("curl");
    let stats: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stats json");
    stats[truckllm_gateway::mock::key_label("secret-only")]["requests"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn two_gateways_sharing_redis_never_exceed_a_limit() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let upstream = format!("http://127.0.0.1:{mock_port}");
    let limits = "    limits:\n      req_per_min: 20\n";
    let ports = [free_port(), free_port()];
    let _gateways: Vec<Process> = ports
        .iter()
        .map(|&port| {
            let path = config(dir.path(), redis.port(), &upstream, port, limits);
            spawn(&["serve", "--config", path.to_str().expect("utf-8 path")])
        })
        .collect();
    // 60 requests, 30 per gateway, all at once from 12 threads.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|t| scope.spawn(move || (0..5).map(|_| chat(ports[t % 2])).collect::<Vec<u16>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, limited), (20, 40), "statuses: {statuses:?}");
    assert_eq!(
        mock_requests(mock_port),
        20,
        "the provider saw exactly the admitted requests"
    );
    let counted: f64 = redis
        .cli(&["GET", "usage:{mock:only}:req"])
        .parse()
        .expect("counter");
    assert_eq!(counted, 20.0, "every admitted request counted once");
}

#[test]
fn graceful_shutdown_finishes_requests_and_flushes_usage() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
        "--latency-ms",
        "800",
    ]);
    let port = free_port();
    let path = config(
        dir.path(),
        redis.port(),
        &format!("http://127.0.0.1:{mock_port}"),
        port,
        "",
    );
    let mut gateway = spawn(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    let request = std::thread::spawn(move || chat(port));
    // Signal once the request is in flight at the mock (bounded wait, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock_requests(mock_port) == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the mock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.terminate();
    assert_eq!(
        request.join().expect("thread"),
        200,
        "the request in flight finished"
    );
    let status = gateway.wait();
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        redis.cli(&["GET", "usage:{mock:only}:req"]),
        "1",
        "usage flushed before exit"
    );
    assert_eq!(
        redis.cli(&["GET", "usage:{mock:only}:completion_tokens"]),
        "2"
    );
}

#[test]
fn two_gateways_through_the_storage_server_never_exceed_a_limit() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let (storage_args, store_port) = storage_server(dir.path(), &redis);
    let _storage = spawn_owned(&storage_args);
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let runtime = format!("{}    call_timeout_ms: 5000\n", http_runtime(store_port));
    let ports = [free_port(), free_port()];
    let _gateways: Vec<Process> = ports
        .iter()
        .map(|&port| {
            let path = config_with(
                dir.path(),
                &runtime,
                &format!("http://127.0.0.1:{mock_port}"),
                port,
                "    limits:\n      req_per_min: 15\n",
            );
            spawn(&["serve", "--config", path.to_str().expect("utf-8 path")])
        })
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| scope.spawn(move || (0..5).map(|_| chat(ports[t % 2])).collect::<Vec<u16>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(
        (ok, statuses.len() - ok),
        (15, 25),
        "statuses: {statuses:?}"
    );
    assert_eq!(mock_requests(mock_port), 15);
    assert_eq!(
        redis.cli(&["GET", "usage:{mock:only}:req"]),
        "15",
        "counted once, in Redis behind the server"
    );
}

#[test]
fn a_redis_outage_fails_no_request_and_loses_no_count() {
    // Redis keeps what it acknowledged across the kill (AOF), as a production Redis would.
    let redis = std::cell::RefCell::new(RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]));
    let port = redis.borrow().port();
    an_outage_fails_no_request_and_loses_no_count(
        &format!("    type: \"redis\"\n    addr: \"127.0.0.1:{port}\"\n    db: 0\n"),
        || redis.borrow_mut().kill(),
        || redis.borrow_mut().restart(),
        || {
            redis
                .borrow()
                .cli(&["GET", "usage:{mock:only}:req"])
                .parse()
                .unwrap_or(0.0)
        },
    );
}

#[test]
fn a_postgres_outage_fails_no_request_and_loses_no_count() {
    let postgres = std::cell::RefCell::new(PostgresServer::start());
    let url = postgres.borrow().url();
    an_outage_fails_no_request_and_loses_no_count(
        &format!("    type: \"postgres\"\n    addr: \"{url}\"\n"),
        || postgres.borrow_mut().stop(),
        || postgres.borrow_mut().restart(),
        || {
            postgres
                .borrow()
                .psql("SELECT value FROM truckllm_counters WHERE series = 'mock:only:req'")
                .parse()
                .unwrap_or(0.0)
        },
    );
}

/// One gateway under sustained load on the store `runtime` names; the store goes down
/// (`stop`) for 10 s and comes back (`start`): no request fails (fail-open), and `counted`
/// (the store's request counter) ends at exactly the requests served, none lost, none twice.
fn an_outage_fails_no_request_and_loses_no_count(
    runtime: &str,
    stop_store: impl FnOnce(),
    start_store: impl FnOnce(),
    counted: impl Fn() -> f64,
) {
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let port = free_port();
    // A limit, so every request reserves, far above what two clients send in 13 s on a fast
    // host (over 1,200 were seen): this test is about the outage, not about 429s.
    let limits = "    limits:\n      req_per_min: 100000\n";
    let path = config_with(
        dir.path(),
        runtime,
        &format!("http://127.0.0.1:{mock_port}"),
        port,
        limits,
    );
    let _gateway = spawn(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    // Sustained load throughout: two clients, one request after another.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    statuses.push(chat(port));
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    stop_store();
    // Down for 10 s under load, as the issue asks.
    std::thread::sleep(Duration::from_secs(10));
    start_store();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    let served = statuses.len() as f64;
    assert!(served > 40.0, "the load ran throughout: {served} requests");
    let mut by_status = std::collections::BTreeMap::new();
    for status in &statuses {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    assert_eq!(
        by_status.keys().copied().collect::<Vec<u16>>(),
        [200],
        "no request failed because of the store (fail-open): {by_status:?}"
    );
    settles_at(
        counted,
        served,
        "the outage's requests replayed, none twice",
    );
    assert_eq!(mock_requests(mock_port) as f64, served);
}

/// Waits until `counted` (the store's request counter for the key) is exactly `served`. Until
/// each quota lease's bucket ends (a second) the count may stand above it, by what the lease
/// did not hand out; a request counted twice keeps it there, and fails at the deadline.
fn settles_at(counted: impl Fn() -> f64, served: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counted = counted();
        if counted == served {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: counted {counted} of {served}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Redis request counter of the key `only`.
fn redis_requests(redis: &RedisServer) -> f64 {
    redis
        .cli(&["GET", "usage:{mock:only}:req"])
        .parse()
        .unwrap_or(0.0)
}

/// Sends `total` chat requests spread over `ports`, 48 at a time; returns how many got 200.
fn admitted(ports: &[u16], total: usize) -> usize {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let body =
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
        let statuses: Vec<u16> = futures_util::stream::iter(0..total)
            .map(|i| {
                let client = client.clone();
                let url = format!(
                    "http://127.0.0.1:{}/v1/chat/completions",
                    ports[i % ports.len()]
                );
                async move {
                    let response = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    response.map_or(0, |r| r.status().as_u16())
                }
            })
            .buffer_unordered(48)
            .collect()
            .await;
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "only 200 or 429: {statuses:?}"
        );
        statuses.iter().filter(|s| **s == 200).count()
    })
}

/// Three gateways whose `storage.runtime` is `runtime` admit exactly 600 of 2,000 requests;
/// `counted` reads the store's request counter (as its own CLI would), and `store_url` is
/// where `truckllm usage export` reads the roll-ups.
fn three_gateways_admit_exactly_the_limit(
    runtime: impl Fn(&std::path::Path) -> String,
    store_url: &str,
    counted: impl Fn() -> String,
) {
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    // A healthy store that is merely slow on a loaded test host must not count as an outage
    // here (which would admit from memory): this test is about exactness, not faults.
    let runtime = format!("{}    call_timeout_ms: 5000\n", runtime(dir.path()));
    let ports = [free_port(), free_port(), free_port()];
    let _gateways: Vec<Process> = ports
        .iter()
        .map(|&port| {
            let path = config_with(
                dir.path(),
                &runtime,
                &format!("http://127.0.0.1:{mock_port}"),
                port,
                "    limits:\n      req_per_min: 600\n",
            );
            spawn(&["serve", "--config", path.to_str().expect("utf-8 path")])
        })
        .collect();
    assert_eq!(
        admitted(&ports, 2000),
        600,
        "exactly the limit, across three gateways"
    );
    assert_eq!(
        mock_requests(mock_port),
        600,
        "the provider saw exactly the admitted requests"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted() != "600" {
        assert!(Instant::now() < deadline, "counted {}", counted());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The hour's roll-up holds the same total, whichever gateway wrote it.
    let export = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args([
            "--store",
            store_url,
            "usage",
            "export",
            "--prefix",
            "mock:only:req",
        ])
        .output()
        .expect("export");
    let exported: f64 = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("json line");
            row["value"].as_f64().expect("value")
        })
        .sum();
    assert_eq!(
        exported, 600.0,
        "the roll-up counts every admitted request once"
    );
}

/// A gateway's reservations decided by `decided` (`lease`: locally; `store`: asked of the
/// store), from its `/metrics`.
fn reservations(port: u16, decided: &str) -> f64 {
    let output = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl /metrics");
    let prefix = format!(r#"truckllm_quota_reservations_total{{decided="{decided}"}}"#);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn far_below_a_limit_leased_quota_admits_everything_with_few_store_calls_and_counts_exactly() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let runtime = format!(
        "    type: \"redis\"\n    addr: \"127.0.0.1:{}\"\n    call_timeout_ms: 5000\n",
        redis.port()
    );
    let ports = [free_port(), free_port(), free_port()];
    let _gateways: Vec<Process> = ports
        .iter()
        .map(|&port| {
            let path = config_with(
                dir.path(),
                &runtime,
                &format!("http://127.0.0.1:{mock_port}"),
                port,
                "    limits:\n      req_per_min: 1000000\n",
            );
            spawn(&["serve", "--config", path.to_str().expect("utf-8 path")])
        })
        .collect();
    assert_eq!(
        admitted(&ports, 1200),
        1200,
        "nothing refused far below the limit"
    );
    let [local, asked] =
        ["lease", "store"].map(|d| ports.iter().map(|&p| reservations(p, d)).sum::<f64>());
    assert_eq!(local + asked, 1200.0, "every request reserved once");
    assert!(
        asked * 2.0 < 1200.0,
        "leases, not a reservation per request: {asked} asked of the store for 1200 requests"
    );
    settles_at(
        || redis_requests(&redis),
        1200.0,
        "leftovers given back when each lease's bucket ends",
    );
    assert_eq!(mock_requests(mock_port), 1200);
}

#[test]
fn three_gateways_on_one_redis_admit_exactly_600_of_2000() {
    let redis = RedisServer::start();
    let port = redis.port();
    three_gateways_admit_exactly_the_limit(
        |_| format!("    type: \"redis\"\n    addr: \"127.0.0.1:{port}\"\n"),
        &redis.url(),
        || redis.cli(&["GET", "usage:{mock:only}:req"]),
    );
}

/// A fleet with PostgreSQL alone: no Redis anywhere.
#[test]
fn three_gateways_on_one_postgres_admit_exactly_600_of_2000() {
    let postgres = PostgresServer::start();
    let url = postgres.url();
    three_gateways_admit_exactly_the_limit(
        |_| format!("    type: \"postgres\"\n    addr: \"{url}\"\n"),
        &url,
        || postgres.psql("SELECT value FROM truckllm_counters WHERE series = 'mock:only:req'"),
    );
}

#[test]
fn three_gateways_through_the_storage_server_admit_exactly_600_of_2000() {
    let redis = RedisServer::start();
    let tokens_dir = tempfile::tempdir().expect("dir");
    let (storage_args, store_port) = storage_server(tokens_dir.path(), &redis);
    let _storage = spawn_owned(&storage_args);
    three_gateways_admit_exactly_the_limit(
        |_| http_runtime(store_port),
        &redis.url(),
        || redis.cli(&["GET", "usage:{mock:only}:req"]),
    );
}

fn chat_within(port: u16, max_secs: u32) -> u16 {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            &max_secs.to_string(),
        ])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

/// `serve` sends provider calls through the egress proxy its environment names, and not to
/// hosts in `NO_PROXY`. The proxy here is a closed port, so a call that obeys it fails.
#[test]
fn serve_takes_its_egress_proxy_from_the_environment() {
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let upstream = format!("http://127.0.0.1:{mock_port}");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let memory = "    type: \"memory\"\n";
    let ask = |no_proxy: &str| {
        let port = free_port();
        let path = config_with(dir.path(), memory, &upstream, port, "");
        let env = [
            ("HTTP_PROXY", nowhere.as_str()),
            ("http_proxy", nowhere.as_str()),
            ("NO_PROXY", no_proxy),
            ("no_proxy", no_proxy),
        ];
        let _gateway = Process::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &env);
        chat(port)
    };
    assert_eq!(ask(""), 502, "the call went to the (closed) proxy");
    assert_eq!(mock_requests(mock_port), 0);
    assert_eq!(ask("127.0.0.1"), 200, "NO_PROXY lets it go direct");
    assert_eq!(mock_requests(mock_port), 1);
}

#[test]
fn a_blackholed_or_resetting_redis_never_hangs_the_gateway() {
    let redis = RedisServer::start();
    let proxy = truckllm_testkit::FaultProxy::start(redis.port());
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let port = free_port();
    let limits = "    limits:\n      req_per_min: 1000\n";
    let path = config(
        dir.path(),
        proxy.port(),
        &format!("http://127.0.0.1:{mock_port}"),
        port,
        limits,
    );
    let _gateway = spawn(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    let mut served = 0;
    for (mode, requests) in [
        (truckllm_testkit::ProxyMode::Pass, 5),
        (truckllm_testkit::ProxyMode::Blackhole, 5),
        (truckllm_testkit::ProxyMode::Reset, 5),
        (truckllm_testkit::ProxyMode::Pass, 5),
    ] {
        proxy.set(mode);
        for i in 0..requests {
            // Timeouts must fire: a request that hangs fails here after 10 s.
            assert_eq!(
                chat_within(port, 10),
                200,
                "request {i} with the proxy in {mode:?}"
            );
            served += 1;
        }
    }
    settles_at(
        || redis_requests(&redis),
        f64::from(served),
        "every request counted once",
    );
}

#[test]
fn a_storage_server_outage_behind_the_http_backend_degrades_the_same_way() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let (storage_args, store_port) = storage_server(dir.path(), &redis);
    let storage = spawn_owned(&storage_args);
    let mock_port = free_port();
    let _mock = spawn(&[
        "mock-upstream",
        "--listen",
        &format!("127.0.0.1:{mock_port}"),
    ]);
    let runtime = http_runtime(store_port);
    let port = free_port();
    let path = config_with(
        dir.path(),
        &runtime,
        &format!("http://127.0.0.1:{mock_port}"),
        port,
        "    limits:\n      req_per_min: 1000\n",
    );
    let _gateway = spawn(&["serve", "--config", path.to_str().expect("utf-8 path")]);
    for i in 0..10 {
        assert_eq!(chat_within(port, 10), 200, "request {i} before the outage");
    }
    drop(storage); // killed
    for i in 0..10 {
        assert_eq!(
            chat_within(port, 10),
            200,
            "request {i} with the storage server down"
        );
    }
    let _storage = spawn_owned(&storage_args);
    settles_at(
        || redis_requests(&redis),
        20.0,
        "the outage's requests replayed, none twice",
    );
}
