//! The command line, as clap types. Every command that touches the runtime store takes
//! `--store URL`; every config command takes `--config PATH`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use truckllm_store::Metric;

#[derive(Debug, Parser)]
#[command(
    name = "truckllm",
    version,
    about = "TruckLLM: an OpenAI-compatible LLM gateway"
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "TRUCKLLM_CONFIG",
        default_value = "./configs/config.yaml"
    )]
    pub config: std::path::PathBuf,
    /// Config store: a YAML file path, `postgres://user:pass@host:port/db`, or a storage
    /// server's `http(s)://` URL (token: --store-token). `serve` and the config commands
    /// use it instead of --config; `storage-server` serves GET/PUT /config from it.
    #[arg(
        long,
        global = true,
        env = "TRUCKLLM_CONFIG_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub config_store: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the runtime store is.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Runtime store: `memory:`, `redis://[user:pass@]host:port/db`, `rediss://…`,
    /// `redis+cluster://h1:p1,h2:p2`, `postgres://user:pass@host:port/db[?sslmode=…]`,
    /// or a storage server's `http(s)://` URL. Default: `redis://127.0.0.1:6379` for the usage and
    /// health commands; `serve` follows `storage.runtime` in the config.
    #[arg(long, global = true, env = "TRUCKLLM_STORE")]
    pub store: Option<String>,

    /// Bearer token for an `http(s)://` store (a TruckLLM storage server).
    #[arg(
        long,
        global = true,
        env = "TRUCKLLM_STORE_TOKEN",
        hide_env_values = true
    )]
    pub store_token: Option<String>,

    /// PEM file of a private CA that signed a `rediss://` server's certificate.
    #[arg(long, global = true, env = "TRUCKLLM_STORE_CA", value_name = "PEM")]
    pub store_ca: Option<std::path::PathBuf>,

    /// Give up on the store after this many seconds.
    #[arg(long, global = true, default_value_t = 5.0, value_parser = parse_seconds)]
    pub timeout: f64,
}

impl StoreArgs {
    /// The store URL given, or the seed's local Redis.
    pub fn url(&self) -> &str {
        self.store.as_deref().unwrap_or("redis://127.0.0.1:6379")
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: an OpenAI-compatible endpoint in front of the configured providers.
    Serve(ServeArgs),
    /// Run a mock provider (OpenAI chat and Anthropic Messages), for tests, demos and benchmarks.
    MockUpstream(MockArgs),
    /// Serve the HTTP storage API from a runtime store (and optionally a config store).
    StorageServer(StorageServerArgs),
    /// Read and change usage counters (the seed's debug commands).
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Check the store: exit 0 when healthy, non-zero with the reason.
    Health,
    /// Benchmarks that report ratios measured in one run.
    #[cfg(all(feature = "redis", feature = "postgres"))]
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Validate, inspect, version, back up and encrypt the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Search and summarise the logs the file sink wrote (rotated files included).
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Manage client keys through a running gateway's admin API.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage teams through a running gateway's admin API.
    Teams {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: TeamsCommand,
    },
}

/// Which gateway's admin API, as whom, and how to print its answers.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "TRUCKLLM_ADMIN_URL",
        default_value = "http://127.0.0.1:2906"
    )]
    pub admin_url: String,
    /// An admin key (`server.admin_keys`, or `server.admin_key`); required.
    #[arg(
        long,
        global = true,
        env = "TRUCKLLM_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Print the API's JSON answers instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Fields of a key or team to set, beyond the named flags.
#[derive(Debug, Clone, Args)]
pub struct FieldArgs {
    /// `team` of a key.
    #[arg(long)]
    pub team: Option<String>,
    /// When a key stops working (RFC 3339, UTC).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Comma-separated `allowed_models`.
    #[arg(long, value_delimiter = ',')]
    pub allowed_models: Option<Vec<String>>,
    /// Comma-separated `allowed_providers`.
    #[arg(long, value_delimiter = ',')]
    pub allowed_providers: Option<Vec<String>>,
    /// A `metadata` label, `name=value`; repeatable.
    #[arg(long = "meta", value_name = "NAME=VALUE")]
    pub metadata: Vec<String>,
    /// Any other fields, as a JSON object (`{"budget": {"max_cost": 5, "period": "day"}}`).
    #[arg(long, value_name = "JSON")]
    pub fields: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed this once.
    Create {
        /// The key's id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// List keys (never their secrets).
    List,
    Show {
        id: String,
    },
    /// Change a key's fields (a JSON `null` in --fields clears one).
    Update {
        id: String,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// A new secret for the same id, printed this once; the old one works for --grace-secs.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_secs: u64,
    },
    /// Revoke a key on every gateway sharing the config.
    Revoke {
        id: String,
    },
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    Create {
        id: String,
        #[command(flatten)]
        fields: FieldArgs,
    },
    List,
    Show {
        id: String,
    },
    /// Change a team's fields (a JSON `null` in --fields clears one).
    Update {
        id: String,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// Delete a team no key names.
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Print matching records, oldest first: a table, or JSON lines with --json.
    Search {
        #[command(flatten)]
        filter: LogFilterArgs,
        /// Search the audit log (admin actions, config changes, storage writes, denials,
        /// alerts) instead of the request log.
        #[arg(long)]
        audit: bool,
        /// Print at most the last N matches.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Sums of matching requests per group: requests, errors and error rate, rate-limited,
    /// tokens, cost, latency p50/p95/p99.
    Stats {
        #[command(flatten)]
        filter: LogFilterArgs,
        /// provider, key, model or client.
        #[arg(long, default_value = "provider", value_parser = parse_group)]
        by: truckllm_logging::search::GroupBy,
        #[arg(long)]
        json: bool,
    },
}

/// Which log and which records.
#[derive(Debug, Args)]
pub struct LogFilterArgs {
    /// The request log (its rotated files are found beside it). Default: the first file sink
    /// of --config, or its PostgreSQL sink if it has no file sink.
    #[arg(long, value_name = "PATH", conflicts_with = "db")]
    pub file: Option<std::path::PathBuf>,
    /// Search the PostgreSQL sink's tables at this `postgres://` URL, in SQL.
    #[arg(
        long,
        value_name = "URL",
        env = "TRUCKLLM_LOG_DB",
        hide_env_values = true
    )]
    pub db: Option<String>,
    /// Records from this long ago (`90s`, `15m`, `1h`, `2d`) or this time (RFC 3339).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub since: Option<std::time::SystemTime>,
    /// Records before this long ago or this time.
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<std::time::SystemTime>,
    #[arg(long)]
    pub provider: Option<String>,
    /// A key id (never its secret).
    #[arg(long)]
    pub key: Option<String>,
    /// A client id.
    #[arg(long)]
    pub client: Option<String>,
    /// The model as the client asked for it.
    #[arg(long)]
    pub model: Option<String>,
    /// A status (`429`) or class (`2xx`, `4xx`, `5xx`).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<truckllm_logging::search::StatusFilter>,
    /// Text anywhere in the record's line.
    #[arg(long)]
    pub grep: Option<String>,
}

pub fn parse_when(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(s) {
        return std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("`{s}` reaches before the epoch"));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!("`{s}` is neither a duration (15m, 1h, 2d) nor a time (2026-11-25T19:00:00Z)")
    })
}

fn parse_status(s: &str) -> Result<truckllm_logging::search::StatusFilter, String> {
    s.parse()
}

fn parse_group(s: &str) -> Result<truckllm_logging::search::GroupBy, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file (default: --config) and exit non-zero with every problem found.
    Validate { path: Option<std::path::PathBuf> },
    /// Print the current config with literal secrets redacted.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// List the kept versions.
    History,
    /// Unified diff between two versions.
    Diff { from: u64, to: u64 },
    /// Make an old version current again (as a new version).
    Rollback {
        version: u64,
        #[arg(long, env = "USER", default_value = "cli")]
        author: String,
        /// Roll back even if keys revoked, disabled or rotated since would work again.
        #[arg(long)]
        force: bool,
    },
    /// Write the config and its history to one file.
    Backup { file: std::path::PathBuf },
    /// Replace the config and its history with a backup.
    Restore { file: std::path::PathBuf },
    /// Print a new random master key (base64), for TRUCKLLM_MASTER_KEY.
    GenerateKey,
    /// Read a secret from stdin and print it as an enc:v1: value (needs TRUCKLLM_MASTER_KEY).
    EncryptValue,
    /// Re-encrypt every enc:v1: value under a new key and save it as a new version.
    RotateKey {
        /// File holding the new key (base64); or set TRUCKLLM_NEW_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<std::path::PathBuf>,
        #[arg(long, env = "USER", default_value = "cli")]
        author: String,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Save a YAML file as the config store's next version (how a fleet's store is begun).
    Import {
        file: std::path::PathBuf,
        #[arg(long, env = "USER", default_value = "cli")]
        author: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of `server.listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Run against an in-process mock provider with the in-memory store: no keys, no internet.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct StorageServerArgs {
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: std::net::SocketAddr,
    /// YAML file of bearer tokens with scopes (read, write, config) and optional providers.
    #[arg(long)]
    pub tokens: std::path::PathBuf,
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Serve plain HTTP; without it a certificate and key are required.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,
    /// Append audit records (JSON lines) to this file.
    #[arg(long)]
    pub audit_log: Option<std::path::PathBuf>,
    /// Send audit records to the log sinks of this config file's `storage.logging` (file,
    /// webhook; the Pushgateway sink takes request records only).
    #[arg(long)]
    pub log_config: Option<std::path::PathBuf>,
    /// TTL of the usage counters, in seconds (the seed's 60 by default).
    #[arg(long, default_value_t = 60)]
    pub counter_ttl: u64,
    /// Roll-up step in seconds (usage totals per step, for `GET /rollups`).
    #[arg(long, default_value_t = 60)]
    pub rollup_step_secs: u64,
    /// How long roll-ups are kept, in seconds (the seed's hour); 0 turns them off.
    #[arg(long, default_value_t = 3600)]
    pub rollup_keep_secs: u64,
    /// Serve repeated reads (counters, windows) from a cache at most this many ms old, never
    /// across a window bucket; writes invalidate. 0 (the default) turns the cache off.
    #[arg(long, default_value_t = 0)]
    pub cache_ms: u64,
    /// Seconds a client has to send a request head (and a kept-alive connection to send its
    /// next one); a slow client is disconnected.
    #[arg(long, default_value_t = truckllm_config::schema::default_header_read_timeout_secs())]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request body after its head (then 408).
    #[arg(long, default_value_t = truckllm_config::schema::default_body_read_timeout_secs())]
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight.
    #[arg(long, default_value_t = truckllm_config::schema::default_idle_timeout_secs())]
    pub idle_timeout_secs: u64,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, default_value_t = truckllm_config::schema::default_tls_handshake_timeout_secs())]
    pub tls_handshake_timeout_secs: u64,
    /// Client connections served at once; more are refused.
    #[arg(long, default_value_t = truckllm_config::schema::default_max_connections())]
    pub max_connections: usize,
}

#[derive(Debug, Args)]
pub struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: std::net::SocketAddr,
    /// Wait this long before answering.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Wait this long between stream chunks.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
    /// OpenAI chat streams carry this many content chunks whatever max_tokens says (with
    /// --chunk-delay-ms: long, slow streams).
    #[arg(long)]
    pub stream_chunks: Option<u64>,
    /// Share of requests answered 500 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests answered 429 with Retry-After (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Share of requests answered "overloaded": 529 overloaded_error on /v1/messages, 503 on
    /// the OpenAI routes (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub overload_rate: f64,
    /// Requests per minute per key before 429s.
    #[arg(long)]
    pub rpm_cap: Option<u64>,
    /// Answer OpenAI's Responses API (`POST /v1/responses`) natively, responses bound to the
    /// key that made them.
    #[arg(long)]
    pub responses_native: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Print a counter, or with --window the sum over the last SECONDS.
    Get {
        #[command(flatten)]
        series: SeriesArgs,
        #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
        window: Option<f64>,
    },
    /// Overwrite a counter.
    #[command(allow_negative_numbers = true)]
    Set {
        #[command(flatten)]
        series: SeriesArgs,
        value: f64,
    },
    /// Add DELTA to a counter and print the new value.
    #[command(allow_negative_numbers = true)]
    Incr {
        #[command(flatten)]
        series: SeriesArgs,
        delta: f64,
    },
    /// List counters whose name (provider:key_id:metric) starts with PREFIX.
    List {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Export the roll-ups (usage totals per step, kept an hour by default) to external
    /// systems: one row per series and step, oldest first.
    Export {
        /// Steps from this long ago (`15m`, `1h`) or this time (RFC 3339).
        #[arg(long, value_name = "WHEN", default_value = "1h", value_parser = parse_when)]
        since: std::time::SystemTime,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
        /// Only series whose name (provider:key_id:metric) starts with this.
        #[cfg_attr(
            feature = "postgres",
            arg(long, default_value = "", conflicts_with = "db")
        )]
        #[cfg_attr(not(feature = "postgres"), arg(long, default_value = ""))]
        prefix: String,
        /// Read the long-term usage history (storage.history) at this `postgres://` URL
        /// instead of the runtime store's roll-ups: sums per hour or day, kept for months.
        #[cfg(feature = "postgres")]
        #[arg(
            long,
            value_name = "URL",
            env = "TRUCKLLM_HISTORY_DB",
            hide_env_values = true
        )]
        db: Option<String>,
        /// With --db: sum by provider, key (provider:key_id), client, team or model (as the
        /// clients asked for it).
        #[cfg(feature = "postgres")]
        #[arg(long, default_value = "key", requires = "db", value_parser = parse_history_group)]
        by: truckllm_store::postgres::history::HistoryGroup,
        /// With --db: one row per hour or per day.
        #[cfg(feature = "postgres")]
        #[arg(long, default_value = "hour", requires = "db", value_parser = parse_history_step)]
        step: truckllm_store::postgres::history::HistoryStep,
    },
}

#[cfg(feature = "postgres")]
fn parse_history_group(s: &str) -> Result<truckllm_store::postgres::history::HistoryGroup, String> {
    s.parse()
        .map_err(|e: truckllm_store::StoreError| e.to_string())
}

#[cfg(feature = "postgres")]
fn parse_history_step(s: &str) -> Result<truckllm_store::postgres::history::HistoryStep, String> {
    s.parse()
        .map_err(|e: truckllm_store::StoreError| e.to_string())
}

#[derive(Debug, Args)]
pub struct SeriesArgs {
    pub provider: String,
    pub key_id: String,
    #[arg(value_parser = parse_metric)]
    pub metric: Metric,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Store throughput against `redis-benchmark` running the same Lua script on the same server.
    Store(StoreBenchArgs),
    /// The gateway in front of mock-upstream against mock-upstream direct, in one run.
    Gateway(GatewayBenchArgs),
    /// A Redis outage under load through the gateway: served, lost, detection and recovery.
    Outage(OutageBenchArgs),
    /// Writes a request log of the given size through the file sink, then times search and
    /// stats over it (rotated files included).
    Logs(LogsBenchArgs),
    /// Many slow streaming requests held open at once through the gateway: its memory and
    /// open files per stream.
    Streams(StreamsBenchArgs),
}

#[derive(Debug, Args)]
pub struct StreamsBenchArgs {
    /// Streaming requests held open at once.
    #[arg(long, default_value_t = 9000)]
    pub streams: usize,
    /// Milliseconds between two chunks of a stream (and before its first).
    #[arg(long, default_value_t = 2000)]
    pub chunk_interval_ms: u64,
    /// Content chunks in each stream: with --chunk-interval-ms, how long streams stay open;
    /// they must outlast opening all of them.
    #[arg(long, default_value_t = 60)]
    pub chunks: u64,
    /// Requests being opened at once (connect, send, wait for the response head).
    #[arg(long, default_value_t = 128)]
    pub opening: usize,
}

#[derive(Debug, Args)]
pub struct LogsBenchArgs {
    /// Size of the log to write, in MiB.
    #[arg(long, default_value_t = 50)]
    pub mb: u64,
    /// Rotate at this many MiB, so the search spans several files.
    #[arg(long, default_value_t = 16.0)]
    pub rotate_mb: f64,
    /// Also write the same records through the PostgreSQL sink into this (empty) database and
    /// time the same queries in SQL, beside the file's.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

#[derive(Debug, Args)]
pub struct OutageBenchArgs {
    /// Requests per second sent to the gateway throughout.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of load before Redis is killed.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub before: f64,
    /// Seconds Redis stays down.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub down: f64,
    /// Seconds of load after Redis is restarted.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub after: f64,
}

#[derive(Debug, Args)]
pub struct GatewayBenchArgs {
    /// Concurrent requests for the throughput runs.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Requests per second for the latency runs.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// The gateway's `storage.runtime.rollup_keep_secs` (0 turns roll-ups off, to measure
    /// their cost).
    #[arg(long, default_value_t = 3600)]
    pub rollup_keep_secs: u64,
}

#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// Concurrent tasks calling the store.
    #[arg(long, default_value_t = 32)]
    pub tasks: usize,
    /// Increments per batched call (and redis-benchmark's pipeline depth).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Distinct provider keys the load is spread over.
    #[arg(long, default_value_t = 64)]
    pub keys: usize,
    /// Roll-up retention for the store and for redis-benchmark's script arguments (0 turns
    /// roll-ups off, to measure what they cost).
    #[arg(long, default_value_t = 3600)]
    pub rollup_keep_secs: u64,
}

fn parse_metric(s: &str) -> Result<Metric, String> {
    s.parse()
        .map_err(|e: truckllm_store::StoreError| e.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        Ok(_) => Err(format!(
            "{s} is not a number of seconds between 0 and 86400"
        )),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}
