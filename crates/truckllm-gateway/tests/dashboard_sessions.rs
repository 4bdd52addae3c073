//! Dashboard sessions against a real gateway over HTTP, with the audit log read back from a
//! real file sink and the gateway's clock moved by hand: a session's polling reads are audited
//! once per interval (key reads, query-dependent reads, failed reads, changes, sign-in and
//! sign-out every time), and failed sign-ins from one address, at `/ui/login` or with wrong
//! admin keys on the API, are refused with a 429 after ten in a minute.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_gateway::ui::read_audits::READ_AUDIT_INTERVAL_MS;
use truckllm_gateway::ui::sign_in_limit::FAILED_PER_ADDRESS;
use truckllm_store::ManualClock;

const ADMIN: &str = "dashboard-admin-key-0123456789";

/// A gateway with an admin key, a file audit sink in `logs`, and a clock moved by hand.
async fn gateway(logs: &Path) -> (TestGateway, Arc<ManualClock>, Mock) {
    let mock = Mock::start(MockOptions::default()).await;
    let extra = format!(
        "server:\n  admin_keys: [{{id: ops, key: \"{ADMIN}\", role: admin}}]\n\
         storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n      audit_path: \"{}\"\n\
         api_keys:\n  - {{id: seed, key: seed-client-key}}\n",
        logs.join("requests.jsonl").display(),
        logs.join("audit.jsonl").display()
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    gw.gateway.use_clock(clock.clone());
    (gw, clock, mock)
}

fn audit(logs: &Path) -> Vec<Value> {
    std::fs::read_to_string(logs.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// `POST /ui/login` with `key`: the status, the session cookie if one was set, `Retry-After`.
async fn sign_in(gw: &TestGateway, key: &str) -> (StatusCode, Option<String>, Option<String>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = http
        .post(format!("{}/ui/login", gw.url))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .expect("sign in");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cookie = header(SET_COOKIE).and_then(|c| c.split(';').next().map(str::to_owned));
    (response.status(), cookie, header(RETRY_AFTER))
}

async fn get(gw: &TestGateway, path: &str, cookie: Option<&str>, key: Option<&str>) -> u16 {
    let mut request = gw.http.get(format!("{}{path}", gw.url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("get").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_polling_reads_are_audited_once_per_interval() {
    let logs = tempfile::tempdir().expect("dir");
    let (gw, clock, _mock) = gateway(logs.path()).await;
    let (status, cookie, _) = sign_in(&gw, ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("session cookie");

    // A tab polling every 5 s for a minute and a half.
    for _ in 0..20 {
        assert_eq!(get(&gw, "/admin/keys", Some(&cookie), None).await, 200);
        assert_eq!(get(&gw, "/admin/providers", Some(&cookie), None).await, 200);
        clock.advance(Duration::from_secs(5));
    }
    // A read whose content depends on its query is audited every time.
    for _ in 0..3 {
        assert_eq!(
            get(&gw, "/admin/config/show", Some(&cookie), None).await,
            200
        );
    }
    // A failed read, reads with the key, and a change made with the session.
    for _ in 0..2 {
        assert_eq!(
            get(&gw, "/admin/keys/nobody", Some(&cookie), None).await,
            404
        );
        assert_eq!(get(&gw, "/admin/keys", None, Some(ADMIN)).await, 200);
    }
    let session: Value = gw
        .http
        .get(format!("{}/ui/session", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let created = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", session["csrf"].as_str().expect("csrf"))
        .json(&json!({"id": "alice"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    // The next interval: the poll is audited again.
    clock.advance(Duration::from_millis(READ_AUDIT_INTERVAL_MS));
    assert_eq!(get(&gw, "/admin/keys", Some(&cookie), None).await, 200);
    let signed_out = gw
        .http
        .post(format!("{}/ui/logout", gw.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", session["csrf"].as_str().expect("csrf"))
        .send()
        .await
        .expect("sign out");
    assert_eq!(signed_out.status().as_u16(), 204);
    gw.stop().await;

    let audit = audit(logs.path());
    let count = |action: &str, status: u64| {
        audit
            .iter()
            .filter(|a| a["action"] == action && a["status"] == status)
            .count()
    };
    assert_eq!(
        count("keys.list", 200),
        2 + 2,
        "two session reads, two key reads"
    );
    assert_eq!(count("providers.list", 200), 1);
    assert_eq!(
        count("config.show", 200),
        3,
        "query-dependent reads every time"
    );
    assert_eq!(count("keys.show", 404), 2, "failed reads every time");
    assert_eq!(count("keys.create", 201), 1);
    assert_eq!(count("ui.sign_in", 303), 1);
    assert_eq!(count("ui.sign_out", 204), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_refused_after_ten_a_minute_from_one_address() {
    let logs = tempfile::tempdir().expect("dir");
    let (gw, clock, _mock) = gateway(logs.path()).await;
    for i in 0..FAILED_PER_ADDRESS {
        let (status, cookie, _) = sign_in(&gw, &format!("guess-{i}")).await;
        assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
        clock.advance(Duration::from_secs(1));
    }
    let (status, _, retry_after) = sign_in(&gw, "guess-more").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        retry_after.as_deref(),
        Some("50"),
        "until the first leaves the minute"
    );
    let (status, cookie, _) = sign_in(&gw, ADMIN).await;
    assert_eq!(
        (status, cookie),
        (StatusCode::TOO_MANY_REQUESTS, None),
        "the key is not looked at while refused"
    );
    clock.advance(Duration::from_secs(50));
    let (status, cookie, _) = sign_in(&gw, ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie.is_some());
    gw.stop().await;

    let audit = audit(logs.path());
    let denied = |status: u64| {
        audit
            .iter()
            .filter(|a| a["action"] == "ui.sign_in" && a["outcome"] == "denied")
            .filter(|a| a["status"] == status)
            .count()
    };
    assert_eq!(denied(401), FAILED_PER_ADDRESS);
    assert_eq!(denied(429), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_keys_on_the_api_count_as_failed_sign_ins() {
    let logs = tempfile::tempdir().expect("dir");
    let (gw, clock, _mock) = gateway(logs.path()).await;
    for i in 0..FAILED_PER_ADDRESS {
        let key = format!("guess-{i}");
        assert_eq!(get(&gw, "/admin/keys", None, Some(&key)).await, 401);
        clock.advance(Duration::from_secs(1));
    }
    let refused = gw
        .http
        .get(format!("{}/admin/keys", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("get");
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the key is not looked at while refused"
    );
    assert_eq!(
        refused
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("50")
    );
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_failed_sign_ins");
    let (status, _, _) = sign_in(&gw, ADMIN).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "one limit for both ways"
    );
    clock.advance(Duration::from_secs(50));
    assert_eq!(get(&gw, "/admin/keys", None, Some(ADMIN)).await, 200);
    gw.stop().await;
}
