//! The admin API for client keys and teams, over real HTTP against a gateway whose config
//! lives in a file store: every change is a config version authored by the admin identity,
//! takes effect at once, shows no secret, and bad input changes nothing.

mod common;

use common::{Backend, Mock, TestGateway, config};
use serde_json::{Value, json};
use truckllm_gateway::mock::MockOptions;
use truckllm_store::RuntimeStoreExt;

const ADMIN: &str = "admin-secret-key-0123456789";
const VIEWER: &str = "viewer-secret-key-012345678";
const SEED_KEY: &str = "seed-client-key";

fn setup() -> String {
    format!(
        "server:\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\n    - {{id: auditor, key: \"{VIEWER}\", role: viewer}}\napi_keys:\n  - id: seed\n    key: \"{SEED_KEY}\"\n"
    )
}

async fn admin(
    gw: &TestGateway,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = gw
        .http
        .request(method.parse().expect("method"), format!("{}{path}", gw.url))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
}

async fn chat_status(gw: &TestGateway, key: &str, model: &str) -> u16 {
    gw.chat(Some(key), hello(model)).await.0
}

fn version(gw: &TestGateway) -> u64 {
    gw.gateway.live().current().version
}

#[tokio::test]
async fn a_created_key_works_at_once_is_stored_hashed_and_its_change_is_a_version() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup()), Backend::Memory).await;
    let before = version(&gw);

    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "alice", "metadata": {"owner": "alice@example.com"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("the secret, shown once");
    assert!(
        secret.starts_with("tk-") && secret.len() >= 3 + 43,
        "{secret}"
    );
    assert_eq!(created["id"], "alice");
    assert_eq!(created["status"], "active");
    assert!(created.get("key_sha256").is_none(), "{created}");
    assert_eq!(created["config_version"], before + 1);
    assert_eq!(chat_status(&gw, secret, "mock:gpt-4o-mini").await, 200);

    // The config file holds only the digest; the version names its author and action.
    let text = std::fs::read_to_string(gw.dir.path().join("config.yaml")).expect("config");
    assert!(!text.contains(secret), "no secret in the config");
    let digest: String = truckllm_gateway::auth::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(text.contains(&digest), "the digest is saved: {text}");
    let versions = gw
        .gateway
        .live()
        .store()
        .versions()
        .await
        .expect("versions");
    let last = versions.last().expect("a version");
    assert_eq!(
        (last.author.as_str(), last.comment.as_str()),
        ("ops", "keys.create alice")
    );

    // Listing and showing never reveal a secret or a digest.
    for path in ["/admin/keys", "/admin/keys/alice"] {
        let (status, body) = admin(&gw, "GET", path, VIEWER, None).await;
        assert_eq!(status, 200, "{body}");
        let shown = body.to_string();
        assert!(
            !shown.contains(secret) && !shown.contains(&digest),
            "{shown}"
        );
        assert!(!shown.contains(SEED_KEY), "{shown}");
    }
    let (_, list) = admin(&gw, "GET", "/admin/keys", ADMIN, None).await;
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, ["seed", "alice"]);

    // A key created without an id gets one.
    let (status, anonymous) = admin(&gw, "POST", "/admin/keys", ADMIN, None).await;
    assert_eq!(status, 201, "{anonymous}");
    assert!(
        anonymous["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("key-"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_write_and_nothing_changes() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup()), Backend::Memory).await;
    let before = version(&gw);
    assert_eq!(admin(&gw, "GET", "/admin/keys", VIEWER, None).await.0, 200);
    assert_eq!(admin(&gw, "GET", "/admin/teams", VIEWER, None).await.0, 200);
    for (method, path) in [
        ("POST", "/admin/keys"),
        ("PATCH", "/admin/keys/seed"),
        ("DELETE", "/admin/keys/seed"),
        ("POST", "/admin/keys/seed/disable"),
        ("POST", "/admin/keys/seed/rotate"),
        ("POST", "/admin/teams"),
        ("POST", "/admin/config/reload"),
    ] {
        let (status, body) = admin(&gw, method, path, VIEWER, Some(json!({}))).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "read_only", "{body}");
    }
    assert_eq!(
        admin(&gw, "GET", "/admin/keys", SEED_KEY, None).await.0,
        401,
        "a client key is no admin key"
    );
    assert_eq!(version(&gw), before, "nothing was saved");
    assert_eq!(chat_status(&gw, SEED_KEY, "mock:gpt-4o-mini").await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_saves_nothing() {
    let mock = Mock::start(MockOptions::default()).await;
    let extra = format!("{}teams:\n  - id: red\n", setup());
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let before = version(&gw);
    let cases = [
        (
            "POST",
            "/admin/keys",
            json!({"id": "x", "colour": "red"}),
            "colour",
        ),
        ("POST", "/admin/keys", json!({"id": "seed"}), "id"),
        ("POST", "/admin/keys", json!({"id": "a/b"}), "id"),
        ("POST", "/admin/keys", json!({"id": ""}), "id"),
        ("POST", "/admin/keys", json!({"id": 7}), "id"),
        ("POST", "/admin/keys", json!({"team": "blue"}), "team"),
        (
            "POST",
            "/admin/keys",
            json!({"budget": {"max_cost": -1.0, "period": "day"}}),
            "budget.max_cost",
        ),
        (
            "POST",
            "/admin/keys",
            json!({"budget": {"max_cost": 1.0, "max_tokens": 5, "period": "day"}}),
            "budget",
        ),
        (
            "POST",
            "/admin/keys",
            json!({"budget": {"max_cost": 1.0, "period": "fortnight"}}),
            "budget.period",
        ),
        (
            "POST",
            "/admin/keys",
            json!({"limits": {"req_per_min": 0}}),
            "limits.req_per_min",
        ),
        (
            "POST",
            "/admin/keys",
            json!({"expires_at": "soon"}),
            "expires_at",
        ),
        (
            "POST",
            "/admin/keys",
            json!({"allowed_providers": ["nope"]}),
            "allowed_providers[0]",
        ),
        ("POST", "/admin/keys", json!([1, 2]), "object"),
        ("PATCH", "/admin/keys/seed", json!({"id": "renamed"}), "id"),
        ("PATCH", "/admin/keys/seed", json!({"team": "blue"}), "team"),
        (
            "POST",
            "/admin/keys/seed/rotate",
            json!({"grace_secs": -5}),
            "grace_secs",
        ),
        (
            "POST",
            "/admin/keys/seed/rotate",
            json!({"grace_secs": 99_999_999}),
            "grace_secs",
        ),
        ("POST", "/admin/teams", json!({"id": "red"}), "id"),
        ("POST", "/admin/teams", json!({}), "id"),
        (
            "POST",
            "/admin/teams",
            json!({"id": "blue", "budget": {"max_tokens": 0, "period": "month"}}),
            "budget.max_tokens",
        ),
        ("PATCH", "/admin/teams/red", json!({"owner": "x"}), "owner"),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = admin(&gw, method, path, ADMIN, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{method} {path} {body}: the message names `{field}`: {message}"
        );
    }
    // Numbers JSON cannot hold are refused as JSON.
    let response = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(r#"{"budget": {"max_cost": 1e999, "period": "day"}}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert_eq!(version(&gw), before, "nothing was saved");
    assert_eq!(
        admin(&gw, "GET", "/admin/keys/nobody", ADMIN, None).await.0,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn disable_patch_rotate_and_revoke_take_effect_at_once() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup()), Backend::Memory).await;
    let (_, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "bob"})),
    )
    .await;
    let first = created["key"].as_str().expect("key").to_owned();
    let model = "mock:gpt-4o-mini";

    let (status, body) = admin(&gw, "POST", "/admin/keys/bob/disable", ADMIN, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("disabled")));
    assert_eq!(chat_status(&gw, &first, model).await, 401);
    admin(&gw, "POST", "/admin/keys/bob/enable", ADMIN, None).await;
    assert_eq!(chat_status(&gw, &first, model).await, 200);

    let patch = json!({"allowed_models": ["mock:text-embedding-3-small"]});
    let (status, body) = admin(&gw, "PATCH", "/admin/keys/bob", ADMIN, Some(patch)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(chat_status(&gw, &first, model).await, 200, "narrowed");
    let clear = json!({"allowed_models": null});
    let (status, body) = admin(&gw, "PATCH", "/admin/keys/bob", ADMIN, Some(clear)).await;
    assert_eq!(
        (status, body["allowed_models"].clone()),
        (200, json!(["*"]))
    );
    assert_eq!(chat_status(&gw, &first, model).await, 200);

    // With a grace period both keys work; the id stays.
    let grace = json!({"grace_secs": 3600});
    let (status, rotated) = admin(&gw, "POST", "/admin/keys/bob/rotate", ADMIN, Some(grace)).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().expect("new key").to_owned();
    assert_ne!(first, second);
    assert_eq!(rotated["id"], "bob");
    assert!(rotated["previous_key_valid_until"].is_string(), "{rotated}");
    assert_eq!(
        chat_status(&gw, &first, model).await,
        200,
        "old key in grace"
    );
    assert_eq!(chat_status(&gw, &second, model).await, 200);
    // Without one, the key before ends at once.
    let (_, rotated) = admin(&gw, "POST", "/admin/keys/bob/rotate", ADMIN, None).await;
    let third = rotated["key"].as_str().expect("new key").to_owned();
    assert_eq!(chat_status(&gw, &first, model).await, 401);
    assert_eq!(chat_status(&gw, &second, model).await, 401);
    assert_eq!(chat_status(&gw, &third, model).await, 200);

    let (status, _) = admin(&gw, "DELETE", "/admin/keys/bob", ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(chat_status(&gw, &third, model).await, 401);
    // The last key cannot go without open mode being asked for.
    let (status, body) = admin(&gw, "DELETE", "/admin/keys/seed", ADMIN, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(chat_status(&gw, SEED_KEY, model).await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_team_bounds_its_keys_and_cannot_go_while_named() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup()), Backend::Memory).await;
    let team = json!({"id": "search", "allowed_models": ["mock:text-embedding-3-small"],
                      "budget": {"max_cost": 500.0, "period": "month"}});
    let (status, body) = admin(&gw, "POST", "/admin/teams", ADMIN, Some(team)).await;
    assert_eq!(status, 201, "{body}");
    let key = json!({"id": "carol", "team": "search"});
    let (status, created) = admin(&gw, "POST", "/admin/keys", ADMIN, Some(key)).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("key");
    // The key allows every model; its team does not.
    assert_eq!(chat_status(&gw, secret, "mock:gpt-4o-mini").await, 403);

    let (_, shown) = admin(&gw, "GET", "/admin/teams/search", VIEWER, None).await;
    assert_eq!(shown["keys"], json!(["carol"]), "{shown}");
    let (status, body) = admin(&gw, "DELETE", "/admin/teams/search", ADMIN, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("carol"), "{body}");

    let widen = json!({"allowed_models": null});
    admin(&gw, "PATCH", "/admin/teams/search", ADMIN, Some(widen)).await;
    assert_eq!(chat_status(&gw, secret, "mock:gpt-4o-mini").await, 200);

    admin(&gw, "DELETE", "/admin/keys/carol", ADMIN, None).await;
    let (status, body) = admin(&gw, "DELETE", "/admin/teams/search", ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_teams_minute_limits_hold_for_its_keys_together_and_a_refusal_gives_back_the_keys_share()
{
    let mock = Mock::start(MockOptions::default()).await;
    let extra = "teams:\n  - {id: duo, limits: {req_per_min: 2}}\napi_keys:\n  - {id: k1, key: key-one, team: duo, limits: {req_per_min: 5}}\n  - {id: k2, key: key-two, team: duo}\npolicy:\n  quota_leasing: false\n";
    let gw = TestGateway::start(&config(&mock.url, 1, "", extra), Backend::Memory).await;
    let model = "mock:gpt-4o-mini";
    assert_eq!(chat_status(&gw, "key-one", model).await, 200);
    assert_eq!(chat_status(&gw, "key-two", model).await, 200);
    let (status, headers, body) = gw.chat(Some("key-one"), hello(model)).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("team `duo`"), "{message}");
    gw.gateway.flush().await;
    let window = |provider: &'static str, id: &'static str| {
        let series =
            truckllm_store::Series::new(provider, id, truckllm_store::Metric::Req).expect("series");
        let store = std::sync::Arc::clone(&gw.store);
        async move {
            store
                .window(&series, std::time::Duration::from_secs(60))
                .await
                .expect("window")
        }
    };
    assert_eq!(window("_teams", "duo").await, 2.0);
    assert_eq!(
        window("_clients", "k1").await,
        1.0,
        "the refused request's reservation on k1 was given back"
    );
    gw.stop().await;
}

#[tokio::test]
async fn every_admin_call_is_audited_with_its_admin_and_never_a_secret() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let audit = logs.path().join("audit.jsonl");
    let extra = format!(
        "{}storage:\n  logging:\n    - type: file\n      path: \"{}\"\n      audit_path: \"{}\"\n",
        setup(),
        logs.path().join("requests.jsonl").display(),
        audit.display()
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let (_, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "dave"})),
    )
    .await;
    let secret = created["key"].as_str().expect("secret").to_owned();
    admin(&gw, "GET", "/admin/keys", VIEWER, None).await;
    admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "dave"})),
    )
    .await;
    admin(&gw, "POST", "/admin/keys/dave/rotate", VIEWER, None).await;
    gw.stop().await;
    let text = std::fs::read_to_string(&audit).expect("audit log");
    assert!(!text.contains(&secret), "no secret audited");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let seen: Vec<(&str, &str, &str, u64)> = records
        .iter()
        .filter(|r| r["action"].as_str().is_some_and(|a| a.starts_with("keys.")))
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default(),
                r["actor"].as_str().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or_default(),
                r["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("keys.create", "ops", "ok", 201),
            ("keys.list", "auditor", "ok", 200),
            ("keys.create", "ops", "failed", 400),
            ("keys.rotate", "auditor", "denied", 403),
        ],
        "{text}"
    );
}

#[tokio::test]
async fn an_edit_applies_to_the_newest_stored_version_and_keeps_another_writers_change() {
    let mock = Mock::start(MockOptions::default()).await;
    let base = config(&mock.url, 1, "", &setup());
    let gw = TestGateway::start(&base, Backend::Memory).await;
    // Another instance saves a version this one has not loaded (no watcher runs here).
    let store = gw.gateway.live().store();
    let current = store.load().await.expect("load").info.version;
    let theirs = format!("{base}  - {{id: from-elsewhere, key: elsewhere-key}}\n");
    let meta = truckllm_config::SaveMeta::new("other", "keys.create from-elsewhere");
    store.save_text(&theirs, current, meta).await.expect("save");
    assert_eq!(
        chat_status(&gw, "elsewhere-key", "mock:gpt-4o-mini").await,
        401
    );

    let (status, body) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "mine"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["config_version"],
        current + 2,
        "saved on top of theirs"
    );
    assert_eq!(
        chat_status(&gw, "elsewhere-key", "mock:gpt-4o-mini").await,
        200
    );
    let (_, list) = admin(&gw, "GET", "/admin/keys", ADMIN, None).await;
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, ["seed", "from-elsewhere", "mine"]);
    gw.stop().await;
}

/// A call that changes nothing (enabling an enabled key, an empty patch) saves no version, and
/// the writes after it still succeed.
#[tokio::test]
async fn a_call_that_changes_nothing_saves_no_version_and_later_writes_still_land() {
    let mock = Mock::start(MockOptions::default()).await;
    let gw = TestGateway::start(&config(&mock.url, 1, "", &setup()), Backend::Memory).await;
    let (status, _) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "bob"})),
    )
    .await;
    assert_eq!(status, 201);
    let saved = version(&gw);
    for (method, path, body) in [
        ("POST", "/admin/keys/bob/enable", None),
        ("PATCH", "/admin/keys/bob", Some(json!({}))),
    ] {
        let (status, answer) = admin(&gw, method, path, ADMIN, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(version(&gw), saved, "{path} saved a version");
    }
    let versions = gw
        .gateway
        .live()
        .store()
        .versions()
        .await
        .expect("versions");
    assert_eq!(versions.last().map(|v| v.version), Some(saved));
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "carol"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(version(&gw), saved + 1);
}

#[tokio::test]
async fn a_rollback_that_would_bring_back_a_revoked_key_is_refused_unless_forced() {
    let mock = Mock::start(MockOptions::default()).await;
    let logs = tempfile::tempdir().expect("dir");
    let audit = logs.path().join("audit.jsonl");
    let extra = format!(
        "{}storage:\n  logging:\n    - type: file\n      path: \"{}\"\n      audit_path: \"{}\"\n",
        setup(),
        logs.path().join("requests.jsonl").display(),
        audit.display()
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &extra), Backend::Memory).await;
    let before_alice = version(&gw);
    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("secret").to_owned();
    let with_alice = version(&gw);
    let (status, _) = admin(&gw, "DELETE", "/admin/keys/alice", ADMIN, None).await;
    assert_eq!(status, 200);
    assert_eq!(chat_status(&gw, &secret, "mock:gpt-4o-mini").await, 401);
    let revoked = version(&gw);

    let rollback = |body: Value| admin(&gw, "POST", "/admin/config/rollback", ADMIN, Some(body));
    let (status, refused) = rollback(json!({"version": with_alice})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "would_revive_keys");
    let message = refused["error"]["message"].as_str().expect("message");
    assert!(message.contains("client key alice"), "{message}");
    assert!(message.contains("force"), "{message}");
    assert!(!message.contains(&secret), "never the secret");
    assert_eq!(version(&gw), revoked, "nothing saved");
    assert_eq!(chat_status(&gw, &secret, "mock:gpt-4o-mini").await, 401);

    // A version from before the key existed revives nothing.
    let (status, body) = rollback(json!({"version": before_alice})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forced"], false);
    assert_eq!(body["revived"]["client_keys"], json!([]));
    // Forced, the revoked key works again, as asked, and the answer and audit say so.
    let (status, body) = rollback(json!({"version": with_alice, "force": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forced"], true);
    assert_eq!(body["revived"]["client_keys"], json!(["alice"]));
    assert_eq!(chat_status(&gw, &secret, "mock:gpt-4o-mini").await, 200);
    gw.stop().await;

    let text = std::fs::read_to_string(&audit).expect("audit log");
    assert!(!text.contains(&secret), "no secret audited");
    let messages: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .filter(|a| a["action"] == "config.rollback" && a["outcome"] == "ok")
        .map(|a| a["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        messages,
        [
            "not forced; lets in nothing again",
            "forced; lets in again client key alice"
        ]
    );
}

#[tokio::test]
async fn a_rollback_to_a_version_without_client_keys_is_refused_unless_forced() {
    let mock = Mock::start(MockOptions::default()).await;
    let open = format!(
        "server:\n  open_mode: true\n  admin_keys:\n    - {{id: ops, key: \"{ADMIN}\", role: admin}}\n"
    );
    let gw = TestGateway::start(&config(&mock.url, 1, "", &open), Backend::Memory).await;
    let open_version = version(&gw);
    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        ADMIN,
        Some(json!({"id": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let closed = version(&gw);
    let body = json!({"version": open_version});
    let (status, refused) = admin(&gw, "POST", "/admin/config/rollback", ADMIN, Some(body)).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "would_open_gateway");
    assert_eq!(version(&gw), closed, "nothing saved");
    let body = json!({"version": open_version, "force": true});
    let (status, forced) = admin(&gw, "POST", "/admin/config/rollback", ADMIN, Some(body)).await;
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["revived"]["opens_gateway"], true);
    gw.stop().await;
}
