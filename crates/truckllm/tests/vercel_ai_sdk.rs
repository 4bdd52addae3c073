//! The Vercel AI SDK's default OpenAI model (`openai('gpt-4o-mini')` speaks the Responses API)
//! against `truckllm serve --demo`, tried as a new user would: `generateText`, `streamText`,
//! and a tool the model calls and the SDK runs, with a second step on its result. The checks
//! run in `vercel/check.mjs`, with the SDK versions pinned in `vercel/package.json`.
//!
//! Needs Node and `npm ci --prefix crates/truckllm/tests/vercel`; `bash .ci/run` does both.
//! Without them the test fails and says so.

mod common;

use std::path::Path;
use std::process::Command;

use common::Process;
use serde_json::Value;
use truckllm_testkit::free_port;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vercel");

#[test]
fn the_vercel_ai_sdk_default_openai_model_works_against_the_demo() {
    assert!(
        Path::new(DIR).join("node_modules/ai").is_dir(),
        "the Vercel AI SDK is needed: `npm ci --prefix crates/truckllm/tests/vercel` (or run `bash .ci/run`)"
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gateway = Process::spawn(&["serve", "--demo", "--listen", &listen], &[]);
    let output = Command::new("node")
        .current_dir(DIR)
        .args(["check.mjs", &format!("http://{listen}/v1")])
        .output()
        .expect("run node (Node.js is needed)");
    gateway.stop();
    assert!(
        output.status.success(),
        "the Vercel AI SDK checks failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let reply = seen["text"].as_str().unwrap_or_default();
    assert!(reply.contains("mock reply"), "{seen}");
    assert_eq!(
        seen["streamed"], seen["text"],
        "the stream carries the same text"
    );
    for usage in [&seen["textUsage"], &seen["streamedUsage"]] {
        let input = usage["inputTokens"].as_f64().unwrap_or_default();
        let output = usage["outputTokens"].as_f64().unwrap_or_default();
        assert!(input > 0.0 && output > 0.0, "usage reported: {usage}");
        assert_eq!(usage["totalTokens"].as_f64(), Some(input + output));
    }
    assert_eq!(seen["toolCalls"], serde_json::json!(["weather"]));
    assert_eq!(
        seen["toolSteps"], 2,
        "the tool's result went back for a second step"
    );
}
