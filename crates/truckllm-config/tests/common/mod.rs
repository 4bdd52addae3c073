//! Helpers shared by the config tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use truckllm_config::{FileConfigStore, FileStoreOptions, MasterKey};

/// The issue's example config, exactly as users will write it.
pub const EXAMPLE: &str = r#"server:
  listen: "127.0.0.1:2906"
storage:
  runtime:
    type: "redis"            # redis | http | memory
    addr: "localhost:6379"
    password: ""
    db: 0
  config:
    type: "file"
    path: "./configs/config.yaml"
llm_providers:
  - id: "openai"
    type: "openai"
    base_url: "https://api.openai.com/v1"
    keys:
      - id: "key1"
        secret: "${OPENAI_KEY_1}"
      - id: "key2"
        secret: "${OPENAI_KEY_2}"
    limits:
      req_per_min: 200
      tokens_per_min: 100000
    pricing:
      input_per_1m: 0.15
      output_per_1m: 0.60
api_keys:
  - id: "client-1"
    key: "${TRUCKLLM_CLIENT_KEY}"
    allowed_providers: ["*"]
policy:
  algorithm: "hybrid"       # round_robin | least_loaded | hybrid
"#;

pub fn env() -> HashMap<String, String> {
    [
        ("OPENAI_KEY_1", "sk-one-secret"),
        ("OPENAI_KEY_2", "sk-two-secret"),
        ("TRUCKLLM_CLIENT_KEY", "client-secret"),
        ("ANTHROPIC_KEY_1", "sk-ant-secret"),
        ("TRUCKLLM_ADMIN_KEY", "admin-key-of-32-bytes-0123456789"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

pub fn store_in(dir: &Path, key: Option<MasterKey>) -> FileConfigStore {
    FileConfigStore::new(
        dir.join("config.yaml"),
        FileStoreOptions {
            history: 5,
            env: Arc::new(env()),
            master_key: key.map(Arc::new),
            ..FileStoreOptions::default()
        },
    )
}

/// A valid config whose every provider carries `n`, so a torn file cannot pass for a whole one.
pub fn numbered(n: u64) -> String {
    let mut text = format!(
        "server:\n  listen: \"127.0.0.1:{}\"\nllm_providers:\n",
        1000 + n % 60000
    );
    for j in 0..30 {
        text.push_str(&format!(
            "  - id: \"p{n}-{j}\"\n    base_url: \"https://p{j}.example/v1\"\n    keys:\n      - id: \"k\"\n        secret: \"${{OPENAI_KEY_1}}\"\n"
        ));
    }
    text
}
