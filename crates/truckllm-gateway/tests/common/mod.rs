//! Test harness: a mock upstream and a gateway, each on a free loopback port, talking real
//! HTTP; the gateway's store is memory or a real redis-server.

#![allow(dead_code)]

pub mod slow_docs;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use truckllm_config::{FileConfigStore, FileStoreOptions, LiveConfig};
use truckllm_gateway::mock::{KeyStats, MockOptions, MockUpstream};
use truckllm_gateway::{Gateway, UpstreamOptions, UpstreamProxy};
use truckllm_store::{
    MemoryStore, RedisOptions, RedisStore, RuntimeStore, RuntimeStoreExt, StoreOptions,
};
use truckllm_testkit::RedisServer;

pub struct Mock {
    pub url: String,
    pub mock: Arc<MockUpstream>,
    _stop: oneshot::Sender<()>,
}

impl Mock {
    pub async fn start(options: MockOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mock = MockUpstream::new(options);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(truckllm_gateway::mock::serve(
            listener,
            Arc::clone(&mock),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            url,
            mock,
            _stop: stop,
        }
    }

    pub fn stats(&self, key_secret: &str) -> KeyStats {
        self.mock
            .stats()
            .get(&truckllm_gateway::mock::key_label(key_secret))
            .cloned()
            .unwrap_or_default()
    }

    pub fn total_requests(&self) -> u64 {
        self.mock.stats().values().map(|s| s.requests).sum()
    }
}

/// A minimal HTTP `CONNECT` proxy on a free loopback port that records the targets it opened
/// tunnels to, as an egress proxy in front of the providers.
pub struct ConnectProxy {
    pub url: String,
    targets: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&targets);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(Self::tunnel(client, Arc::clone(&seen)));
            }
        });
        Self { url, targets }
    }

    /// The `host:port` of every tunnel opened so far.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().expect("lock").clone()
    }

    async fn tunnel(
        mut client: tokio::net::TcpStream,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let Some(target) = head
            .strip_prefix("CONNECT ")
            .and_then(|r| r.split(' ').next())
        else {
            return client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                .await;
        };
        seen.lock().expect("lock").push(target.to_owned());
        let mut upstream = tokio::net::TcpStream::connect(target).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        Ok(())
    }
}

/// Which runtime store the gateway uses.
pub enum Backend {
    Memory,
    Redis,
    /// A store the test built (see [`slow_docs`]).
    Given(Arc<dyn RuntimeStore>),
}

pub struct TestGateway {
    pub url: String,
    pub gateway: Arc<Gateway>,
    pub store: Arc<dyn RuntimeStore>,
    pub dir: tempfile::TempDir,
    pub redis: Option<RedisServer>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub http: reqwest::Client,
}

impl TestGateway {
    pub async fn start(config: &str, backend: Backend) -> Self {
        // Direct, so a proxy set in the test machine's environment cannot reroute the mock.
        let upstream = UpstreamOptions {
            proxy: UpstreamProxy::Direct,
            ..UpstreamOptions::default()
        };
        Self::start_with_upstream(config, backend, upstream).await
    }

    /// As [`TestGateway::start`], with its own upstream client settings (timeouts).
    pub async fn start_with_upstream(
        config: &str,
        backend: Backend,
        upstream: UpstreamOptions,
    ) -> Self {
        Self::start_with_env(config, backend, upstream, HashMap::new()).await
    }

    /// As [`TestGateway::start_with_upstream`], with the environment `${VAR}`s resolve from.
    pub async fn start_with_env(
        config: &str,
        backend: Backend,
        upstream: UpstreamOptions,
        env: HashMap<String, String>,
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("write config");
        let file_store = FileConfigStore::new(
            &path,
            FileStoreOptions {
                env: Arc::new(env.clone()),
                ..FileStoreOptions::default()
            },
        );
        let live = LiveConfig::start(Arc::new(file_store), Arc::new(env), None)
            .await
            .expect("config");
        let (store, redis): (Arc<dyn RuntimeStore>, Option<RedisServer>) = match backend {
            Backend::Memory => (Arc::new(MemoryStore::new()), None),
            Backend::Given(store) => (store, None),
            Backend::Redis => {
                let server = RedisServer::start();
                let store = RedisStore::connect(
                    &server.url(),
                    StoreOptions::default(),
                    RedisOptions::default(),
                )
                .await
                .expect("redis");
                (Arc::new(store), Some(server))
            }
        };
        let logger =
            truckllm_logging::start(&live.current().resolved.storage.logging).expect("log sinks");
        let gateway =
            Gateway::new(live, Arc::clone(&store), &upstream, None, logger).expect("gateway");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(truckllm_gateway::app::serve(
            listener,
            Arc::clone(&gateway),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            url,
            gateway,
            store,
            dir,
            redis,
            stop: Some(stop),
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    /// POSTs JSON to a path with an optional bearer key; returns status, headers and body.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("body"))
    }

    pub async fn chat(
        &self,
        key: Option<&str>,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let (status, headers, text) = self.post("/v1/chat/completions", key, &body).await;
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, json)
    }

    /// Starts a streaming chat completion for 50 tokens, reads its first chunk and goes away
    /// (drops the stream): a client that leaves mid-stream. Returns the first chunk.
    pub async fn leave_a_stream_after_its_first_chunk(&self) -> bytes::Bytes {
        use futures_util::StreamExt;
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "three words here"}],
            "max_tokens": 50,
            "stream": true,
        });
        let response = self
            .http
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&body)
            .send()
            .await
            .expect("stream");
        let mut chunks = response.bytes_stream();
        chunks.next().await.expect("a first chunk").expect("bytes")
    }

    /// Waits for every usage settlement, then reads a counter.
    pub async fn usage(&self, provider: &str, key: &str, metric: truckllm_store::Metric) -> f64 {
        self.gateway.flush().await;
        let series = truckllm_store::Series::new(provider, key, metric).expect("series");
        self.store.get(&series).await.expect("get")
    }

    pub async fn refresh_snapshot(&self) {
        let rt = self.gateway.runtime();
        rt.snapshot
            .refresh(&rt.routes, self.store.as_ref())
            .await
            .expect("refresh");
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("serve");
        }
    }
}

/// A config with one provider at `upstream`, keys `k1`.. with secrets `secret-k1`.., and extra YAML.
pub fn config(upstream: &str, keys: usize, provider_extra: &str, extra: &str) -> String {
    let mut keys_yaml = String::new();
    for i in 1..=keys {
        keys_yaml.push_str(&format!(
            "      - id: \"k{i}\"\n        secret: \"secret-k{i}\"\n"
        ));
    }
    format!(
        "llm_providers:\n  - id: \"mock\"\n    base_url: \"{upstream}/v1\"\n    keys:\n{keys_yaml}    pricing:\n      input_per_1m: 1000000\n      output_per_1m: 2000000\n    models: [\"gpt-4o-mini\", \"text-embedding-3-small\"]\n{provider_extra}{extra}"
    )
}
