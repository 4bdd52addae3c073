//! Budgets over real HTTP against a gateway and the mock provider, whose usage is
//! deterministic: a prompt of "ab ab ab ab" is 4 tokens to the mock and, by the gateway's
//! estimate (16 characters with the role, four to a token), 4 as well; the reply is cut to
//! `max_tokens` words (at most 9). The test config prices input at 1 and output at 2 per
//! token, so a request with `max_tokens: 2` costs exactly 4 + 2 × 2 = 8, reserved and spent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Mock, TestGateway, config};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_store::{ManualClock, MemoryStore, StoreOptions};

const KEY: &str = "alice-secret-key";
const ADMIN: &str = "admin-secret-key-0123456789";

fn ask(max_tokens: u32) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ab ab ab ab"}], "max_tokens": max_tokens})
}

fn keys(budget: &str, team: &str) -> String {
    format!(
        "server:\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\n{team}api_keys:\n  - id: alice\n    key: \"{KEY}\"\n{budget}"
    )
}

async fn start(budget: &str, team: &str, policy: &str) -> (Mock, TestGateway) {
    let mock = Mock::start(MockOptions::default()).await;
    let extra = format!("{}{policy}", keys(budget, team));
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    (mock, gw)
}

async fn admin_get(gw: &TestGateway, path: &str) -> Value {
    let response = gw
        .http
        .get(format!("{}{path}", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin call");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// The key's spend once every settlement has landed (they are written on background tasks).
async fn settled_spend(gw: &TestGateway, path: &str, expected: f64) -> f64 {
    let mut spent = f64::NAN;
    for _ in 0..200 {
        spent = admin_get(gw, path).await["budget_status"]["spent"]
            .as_f64()
            .expect("spent");
        if (spent - expected).abs() < 1e-9 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spent
}

#[tokio::test]
async fn a_budget_admits_exactly_the_requests_it_can_pay_for_and_says_why_it_refuses() {
    let (mock, gw) = start("    budget: {max_cost: 20, period: day}\n", "", "").await;
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200);
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200, "16 of 20 spent");
    let (status, headers, body) = gw.chat(Some(KEY), ask(2)).await;
    assert_eq!(status, 429, "a third would make 24: {body}");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("key `alice`'s day budget"), "{message}");
    assert!(message.contains("resets at"), "{message}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=86_400).contains(&retry), "until midnight: {retry}");
    assert_eq!(
        headers["x-truckllm-budget-remaining"], "4.000000",
        "the refusal says what is left"
    );
    assert_eq!(headers["x-truckllm-budget-unit"], "cost");
    assert_eq!(mock.total_requests(), 2, "the refused request never left");

    // In the Anthropic dialect, Anthropic's error shape.
    let (status, _, text) = gw
        .post(
            "/v1/messages",
            Some(KEY),
            &json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "ab ab ab ab"}]}),
        )
        .await;
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((status, &body["type"]), (429, &json!("error")), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget"))
    );

    let status = admin_get(&gw, "/admin/keys/alice").await["budget_status"].clone();
    assert_eq!(status["spent"], 16.0, "{status}");
    assert_eq!(status["remaining"], 4.0, "{status}");
    assert_eq!(status["unit"], "cost");
}

#[tokio::test]
async fn a_team_budget_bounds_its_keys_and_its_refusal_gives_back_the_keys_reservation() {
    let team = "teams:\n  - id: search\n    budget: {max_cost: 10, period: month}\n";
    let budget = "    team: search\n    budget: {max_cost: 100, period: day}\n";
    let (_mock, gw) = start(budget, team, "").await;
    assert_eq!(
        gw.chat(Some(KEY), ask(2)).await.0,
        200,
        "8 of the team's 10"
    );
    let (status, _, body) = gw.chat(Some(KEY), ask(2)).await;
    assert_eq!(status, 429, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("team `search`'s month budget"),
        "{message}"
    );
    assert_eq!(
        settled_spend(&gw, "/admin/keys/alice", 8.0).await,
        8.0,
        "the key keeps only the admitted request"
    );
    let team = admin_get(&gw, "/admin/teams/search").await;
    assert_eq!(team["budget_status"]["spent"], 8.0, "{team}");
}

#[tokio::test]
async fn a_reservation_settles_to_the_real_cost() {
    let (_mock, gw) = start("    budget: {max_cost: 1000, period: week}\n", "", "").await;
    // Reserved: 4 + 100 × 2 = 204. Spent: the mock's 9-word reply, 4 + 9 × 2 = 22.
    assert_eq!(gw.chat(Some(KEY), ask(100)).await.0, 200);
    assert_eq!(settled_spend(&gw, "/admin/keys/alice", 22.0).await, 22.0);
}

#[tokio::test]
async fn the_cap_lets_a_large_max_tokens_through_and_bounds_the_overspend() {
    let policy = "policy:\n  max_estimate_tokens: 2\n";
    let (_mock, gw) = start("    budget: {max_cost: 10, period: day}\n", "", policy).await;
    // Without the cap the worst case is 204, over the budget of 10; with it, 4 + 2 × 2 = 8.
    assert_eq!(gw.chat(Some(KEY), ask(100)).await.0, 200);
    let spent = settled_spend(&gw, "/admin/keys/alice", 22.0).await;
    // The bound: the limit plus the request's tokens above the cap at the output price.
    let bound = 10.0 + (9.0 - 2.0) * 2.0;
    assert!(
        spent > 10.0 && spent <= bound,
        "spent {spent}, bound {bound}"
    );
    let (status, _, _) = gw.chat(Some(KEY), ask(1)).await;
    assert_eq!(status, 429, "an overspent budget admits nothing more");
}

#[tokio::test]
async fn a_token_budget_counts_tokens() {
    let (_mock, gw) = start(
        "    budget: {max_tokens: 13, period: hour, reset: rolling}\n",
        "",
        "",
    )
    .await;
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200, "6 tokens");
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200, "12 tokens");
    assert_eq!(
        gw.chat(Some(KEY), ask(2)).await.0,
        429,
        "18 would be over 13"
    );
    let status = admin_get(&gw, "/admin/keys/alice").await["budget_status"].clone();
    assert_eq!(
        (status["unit"].as_str(), status["spent"].as_f64()),
        (Some("tokens"), Some(12.0))
    );
}

#[tokio::test]
async fn every_answer_says_what_the_key_has_left() {
    let budget = "    limits: {req_per_min: 10}\n    budget: {max_cost: 100, period: day}\n";
    let (_mock, gw) = start(budget, "", "policy:\n  quota_leasing: false\n").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = gw.chat(Some(KEY), ask(2)).await;
        assert_eq!(status, 200);
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .to_str()
                .expect("ascii")
                .parse::<f64>()
                .expect("number")
        };
        assert_eq!(header("x-ratelimit-limit-requests"), 10.0);
        seen.push((
            header("x-ratelimit-remaining-requests"),
            header("x-truckllm-budget-remaining"),
        ));
    }
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![9.0, 8.0, 7.0],
        "each request counted as it is answered"
    );
    let budget_left: Vec<f64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(budget_left, vec![92.0, 84.0, 76.0]);
}

#[tokio::test]
async fn a_calendar_budget_starts_again_at_midnight_by_the_gateways_clock() {
    let mock = Mock::start(MockOptions::default()).await;
    let clock = Arc::new(ManualClock::new(ms("2026-11-27T23:59:00Z").max(now_ms())));
    let store = MemoryStore::with_options(
        StoreOptions {
            clock: clock.clone(),
            ..StoreOptions::default()
        },
        1000,
    );
    let extra = keys("    budget: {max_cost: 10, period: day}\n", "");
    let gw = TestGateway::start(
        &config(&mock.url, 1, "", &extra),
        Backend::Given(Arc::new(store)),
    )
    .await;
    gw.gateway.use_clock(clock.clone());
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200);
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 429, "16 is over 10");
    let midnight = next_midnight(clock.now());
    clock.set_ms(midnight - 1);
    assert_eq!(
        gw.chat(Some(KEY), ask(2)).await.0,
        429,
        "still the same day"
    );
    clock.set_ms(midnight);
    assert_eq!(
        gw.chat(Some(KEY), ask(2)).await.0,
        200,
        "a new day, a new budget"
    );
}

fn ms(text: &str) -> u64 {
    text.parse::<jiff::Timestamp>()
        .expect("time")
        .as_millisecond() as u64
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond() as u64
}

fn next_midnight(now_ms: u64) -> u64 {
    const DAY: u64 = 86_400_000;
    (now_ms / DAY + 1) * DAY
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        truckllm_store::Clock::now_ms(self)
    }
}

#[tokio::test]
async fn alerts_go_out_once_per_threshold_per_period() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let sink = format!(
        "storage:\n  logging:\n    - type: \"file\"\n      path: \"{}\"\n      audit_path: \"{}\"\n",
        logs.path().join("requests.jsonl").display(),
        logs.path().join("audit.jsonl").display()
    );
    let extra = format!(
        "{}{sink}",
        keys("    budget: {max_cost: 16, period: day}\n", "")
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let statuses = [
        gw.chat(Some(KEY), ask(2)).await.0, // 8: 50 %
        gw.chat(Some(KEY), ask(2)).await.0, // 16: 80 % and 100 %
        gw.chat(Some(KEY), ask(2)).await.0, // refused: spent
        gw.chat(Some(KEY), ask(2)).await.0, // refused again: no new alert
    ];
    assert_eq!(statuses, [200, 200, 429, 429]);
    gw.stop().await;
    let audit = std::fs::read_to_string(logs.path().join("audit.jsonl")).expect("audit log");
    let alerts: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .filter(|a| a["action"] == "budget.threshold")
        .collect();
    let said: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            let message = a["message"].as_str().unwrap_or_default();
            let pct = ["50 %", "80 %", "100 %"]
                .into_iter()
                .find(|p| message.contains(p))
                .unwrap_or("?");
            (
                pct.to_owned(),
                a["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut sorted = said.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("100 %".to_owned(), "critical".to_owned()),
            ("50 %".to_owned(), "warning".to_owned()),
            ("80 %".to_owned(), "warning".to_owned()),
        ],
        "{alerts:?}"
    );
    assert!(!audit.contains(KEY), "no secret in the audit log");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_charged_its_reservation() {
    let mock = Mock::start(MockOptions {
        latency: Duration::from_millis(1500),
        ..MockOptions::default()
    })
    .await;
    let extra = keys("    budget: {max_cost: 1000, period: day}\n", "");
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let left = impatient
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(KEY)
        .json(&ask(100))
        .send()
        .await;
    assert!(left.is_err(), "the client gave up first");
    // A patient request after it (1.5 s, long after the first connection closed) spends 22;
    // the first was sent to the provider, which may bill it: its worst case, 4 + 100 × 2,
    // stands, where giving it back would leave 22.
    assert_eq!(gw.chat(Some(KEY), ask(100)).await.0, 200);
    let spent = settled_spend(&gw, "/admin/keys/alice", 226.0).await;
    assert_eq!(spent, 226.0);
}

#[tokio::test]
async fn the_admin_api_says_when_a_key_was_last_used() {
    let (_mock, gw) = start("", "", "").await;
    let shown = admin_get(&gw, "/admin/keys/alice").await;
    assert_eq!(shown["last_used"], Value::Null, "never used: {shown}");
    let before = now_ms() / 1000 * 1000;
    assert_eq!(gw.chat(Some(KEY), ask(2)).await.0, 200);
    let mut used = Value::Null;
    for _ in 0..200 {
        used = admin_get(&gw, "/admin/keys").await["keys"][0]["last_used"].clone();
        if !used.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = ms(used.as_str().expect("a time"));
    assert!(at >= before && at <= now_ms(), "{used}");
}
