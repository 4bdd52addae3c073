//! The dashboard (`/ui`) in a real headless Chromium against real gateway processes. The
//! browser checks are in `dashboard.py` (Playwright for Python driving Debian's `chromium`):
//! sign-in; every page renders without a console error at 1280x800 and 390 wide; traffic sent
//! with the OpenAI SDK shows in the overview as the admin API says; a key made in the UI works
//! with the SDK; a rollback made in the UI is applied; a viewer sees no change button and the
//! API refuses the viewer's changes; without a session every page redirects to sign-in and
//! every data route answers 401. Needs `python3` with the `openai` and `playwright` packages
//! and `/usr/bin/chromium` (or `CHROMIUM`); `bash .ci/run` installs them. Without them the test
//! fails and says so.
//!
//! Screenshots go to a temporary folder, or to `TRUCKLLM_SCREENSHOTS` when set (the README's
//! come from `TRUCKLLM_SCREENSHOTS=$PWD/docs/ui cargo test -p truckllm --test dashboard`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Process;
use truckllm_testkit::free_port;

const ADMIN: &str = "dashboard-admin-key-0123456789";
const VIEWER: &str = "dashboard-viewer-key-0123456789";
const CLIENT: &str = "dashboard-client-key-0123456789";

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Fails, naming the install step, when the browser or the Python packages are missing.
fn require_tools() {
    let probe = Command::new("python3")
        .args(["-c", "import openai, playwright.sync_api"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 with the openai and playwright packages is needed: `python3 -m pip install openai playwright` (never `playwright install`: the system chromium is used), or run `bash .ci/run`"
    );
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "Chromium is needed at {} (Debian: `apt-get install chromium`; or set CHROMIUM), or run `bash .ci/run`",
        chromium()
    );
}

fn config(mock_port: u16, log: &std::path::Path) -> String {
    format!(
        r#"server:
  admin_keys:
    - {{id: ops, key: "{ADMIN}", role: admin}}
    - {{id: auditor, key: "{VIEWER}", role: viewer}}
storage:
  logging:
    - type: "file"
      path: "{log}"
llm_providers:
  - id: mock
    base_url: "http://127.0.0.1:{mock_port}/v1"
    keys:
      - {{id: key-a, secret: mock-secret-1}}
      - {{id: key-b-with-a-long-name-to-test-that-the-layout-holds-up, secret: mock-secret-2}}
    limits: {{req_per_min: 600, tokens_per_min: 100000}}
    pricing: {{input_per_1m: 0.15, output_per_1m: 0.60}}
    models: ["gpt-4o-mini"]
api_keys:
  - {{id: seed, key: "{CLIENT}"}}
"#,
        log = log.display()
    )
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    require_tools();
    let dir = tempfile::tempdir().expect("dir");
    let mock_port = free_port();
    let _mock = Process::spawn(
        &[
            "mock-upstream",
            "--listen",
            &format!("127.0.0.1:{mock_port}"),
        ],
        &[],
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(mock_port, &dir.path().join("requests.jsonl"))).expect("config");
    let port = free_port();
    let gateway = Process::spawn(
        &[
            "serve",
            "--config",
            path.to_str().expect("utf-8 path"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    let shots = match std::env::var("TRUCKLLM_SCREENSHOTS") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard.py");
    let output = Command::new("python3")
        .args([
            script,
            &format!("http://127.0.0.1:{port}"),
            ADMIN,
            VIEWER,
            CLIENT,
            shots.to_str().expect("utf-8 path"),
        ])
        .env("CHROMIUM", chromium())
        // Loopback only: no proxy from the environment may stand in between.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run python3");
    gateway.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "dashboard checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for page in [
        "overview",
        "providers",
        "clients",
        "requests",
        "config",
        "storage",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }
}

/// `serve --demo` prints the dashboard's link and an admin key that signs in.
#[test]
fn the_demo_prints_the_dashboard_link_and_an_admin_key_that_signs_in() {
    let port = free_port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_truckllm"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the demo");
    let mut stdout = BufReader::new(demo.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut dashboard = None;
    for _ in 0..10 {
        line.clear();
        if stdout.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if line.starts_with("Dashboard: ") {
            dashboard = Some(line.trim().to_owned());
            break;
        }
    }
    let dashboard = dashboard.expect("the demo prints a Dashboard: line");
    assert!(
        dashboard.contains(&format!("http://127.0.0.1:{port}/ui")),
        "{dashboard}"
    );
    let key = dashboard
        .split_whitespace()
        .find(|w| w.starts_with("tk-admin-"))
        .expect("an admin key")
        .trim_end_matches(')')
        .to_owned();
    let signed_in = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-X",
            "POST",
            "--data-urlencode",
            &format!("key={key}"),
            &format!("http://127.0.0.1:{port}/ui/login"),
        ])
        .output()
        .expect("curl");
    let _ = demo.kill();
    let _ = demo.wait();
    let answer = String::from_utf8_lossy(&signed_in.stdout);
    assert!(
        answer.starts_with("303 ") && answer.ends_with("/ui"),
        "{answer}"
    );
}
