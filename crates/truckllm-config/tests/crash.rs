//! Crash safety: a child process saves in a loop and is killed with SIGKILL at random moments;
//! after every kill the file parses and is one complete version.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{numbered, store_in};
use truckllm_config::{ConfigStore, SaveMeta, parse};

const DIR_ENV: &str = "TRUCKLLM_CRASH_TEST_DIR";

/// The child: saves forever into the directory the parent names. Run only by the parent.
#[tokio::test]
#[ignore = "helper process for save_loop_survives_sigkill"]
async fn save_loop_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let store = store_in(std::path::Path::new(&dir), None);
    let mut n = 1000;
    loop {
        let current = store.load().await.map(|v| v.info.version).unwrap_or(0);
        let _ = store
            .save_text(&numbered(n), current, SaveMeta::new("child", "loop"))
            .await;
        n += 1;
    }
}

#[tokio::test]
async fn save_loop_survives_sigkill() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path(), None);
    store
        .save_text(&numbered(1), 0, SaveMeta::default())
        .await
        .expect("seed");
    let exe = std::env::current_exe().expect("test binary");
    let mut seed = 0x2545_f491_u64;
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .args(["--exact", "save_loop_child", "--ignored", "--nocapture"])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        // A pseudo-random kill point between 30 and 280 ms; chooses when to crash, not a wait
        // for anything to happen.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(30 + seed % 250)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let text = std::fs::read_to_string(store.path()).expect("config file exists");
        let config =
            parse(&text).unwrap_or_else(|e| panic!("round {round}: torn file: {e}\n{text}"));
        let first = &config.llm_providers[0].id;
        let n: u64 = first
            .trim_start_matches('p')
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("numbered provider id");
        assert_eq!(
            text,
            numbered(n),
            "round {round}: the file is exactly one complete version"
        );
        let current = store.load().await.expect("the history still reads");
        assert_eq!(current.text, text);
    }
    let last = store.load().await.expect("load").info.version;
    store
        .save_text(&numbered(5), last, SaveMeta::default())
        .await
        .expect("saves still work");
}
