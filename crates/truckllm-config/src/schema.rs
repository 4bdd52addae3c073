//! The configuration schema of the whole gateway, as serde types.
//!
//! The YAML shape follows the seed (`storage.runtime`, `storage.config`) and adds what a gateway
//! needs. Every struct rejects unknown fields. Strings may hold `${VAR}` / `${VAR:-default}`
//! references and `enc:v1:…` encrypted values; a [`Config`] as loaded keeps them as written
//! (that is what is saved back), and [`crate::resolve`] makes the in-memory copy the gateway uses.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::governance::{
    AdminKeyConfig, AdminRole, BudgetConfig, BudgetPeriod, BudgetReset, PreviousKeyConfig,
    TeamConfig,
};
use crate::secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Upstream LLM providers, each with several API keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llm_providers: Vec<ProviderConfig>,
    /// Model aliases: a name clients may use, mapped to one or more `provider:model` targets,
    /// tried in order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Client API keys. With none, the gateway runs in an explicit open mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ClientKeyConfig>,
    /// Teams: limits, budgets and permissions that bound the keys naming them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
}

/// The gateway's own listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` the gateway listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Key for the admin API (config reload, usage). Without it the admin API is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<Secret>,
    /// Admin identities with roles (`admin` writes, `viewer` only reads); `admin_key`, when
    /// set too, is one more `admin` named `admin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_keys: Vec<AdminKeyConfig>,
    /// Serve without client keys on purpose: with no `api_keys`, anyone who can reach the
    /// gateway may use every provider. A reload that removes the last client key is refused
    /// unless this is true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_mode: bool,
    /// Bounds on client connections (slow or idle clients). Read at start.
    #[serde(default, skip_serializing_if = "ServerLimitsConfig::is_default")]
    pub limits: ServerLimitsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_key: None,
            admin_keys: Vec::new(),
            open_mode: false,
            limits: ServerLimitsConfig::default(),
        }
    }
}

/// `server.limits`: what one client connection may hold. Only reading a request is bounded;
/// a streamed response is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerLimitsConfig {
    /// Seconds to send a complete request head; also how long a kept-alive HTTP/1 connection
    /// may wait for its next request.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds to send a request's whole body after its head (then `408`).
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Seconds to complete a TLS handshake.
    #[serde(default = "default_tls_handshake_timeout_secs")]
    pub tls_handshake_timeout_secs: u64,
    /// Client connections served at once; more are refused (`503`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl ServerLimitsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ServerLimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: default_header_read_timeout_secs(),
            body_read_timeout_secs: default_body_read_timeout_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            tls_handshake_timeout_secs: default_tls_handshake_timeout_secs(),
            max_connections: default_max_connections(),
        }
    }
}

/// The default of `server.limits.header_read_timeout_secs` (and of the storage server's flag).
/// As long as the idle timeout: on HTTP/1 hyper runs this timer while a kept-alive connection
/// waits for its next request, and a shorter one would close pooled connections that clients
/// (reqwest keeps them 90 s) are about to reuse, failing their next request.
pub fn default_header_read_timeout_secs() -> u64 {
    60
}

/// The default of `server.limits.body_read_timeout_secs`.
pub fn default_body_read_timeout_secs() -> u64 {
    60
}

/// The default of `server.limits.idle_timeout_secs`.
pub fn default_idle_timeout_secs() -> u64 {
    60
}

/// The default of `server.limits.tls_handshake_timeout_secs`.
pub fn default_tls_handshake_timeout_secs() -> u64 {
    10
}

/// The default of `server.limits.max_connections`.
pub fn default_max_connections() -> usize {
    4096
}

fn default_listen() -> String {
    "127.0.0.1:2906".into()
}

/// Where runtime usage, configuration and logs are stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub runtime: RuntimeStorageConfig,
    #[serde(default)]
    pub config: ConfigStorageConfig,
    /// Log sinks; several may be configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logging: Vec<LogSinkConfig>,
    /// Long-term usage history: the runtime store's roll-ups summed per hour and day in
    /// PostgreSQL. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryStorageConfig>,
}

/// `storage.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryStorageConfig {
    /// `postgres://user:pass@host:port/db` (a `${VAR}` for the password keeps it out of files).
    pub url: String,
    /// Days of hourly and daily rows kept.
    #[serde(default = "default_history_keep_days")]
    pub keep_days: u32,
    /// Name of this fleet's share of the history: gateways sharing one runtime store share a
    /// source (each roll-up step is written once per source); fleets with separate runtime
    /// stores writing to one database need different sources, and their sums add up.
    #[serde(default = "default_history_source")]
    pub source: String,
}

fn default_history_keep_days() -> u32 {
    400
}

fn default_history_source() -> String {
    "default".into()
}

/// Which runtime store backs usage metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Redis,
    Http,
    /// PostgreSQL: `addr` is a `postgres://` URL; for teams that run PostgreSQL and not Redis.
    Postgres,
    /// In-process: one gateway only. The default, so nothing else needs installing.
    #[default]
    Memory,
}

/// The seed's `storage.runtime`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeStorageConfig {
    #[serde(rename = "type", default)]
    pub kind: RuntimeKind,
    /// Redis: `host:port`, or a full `redis://`, `rediss://` or `redis+cluster://` URL.
    /// HTTP: the storage server's base URL.
    /// PostgreSQL: `postgres://[user[:password]@]host:port/db[?sslmode=…]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Redis (or PostgreSQL, when `addr` names no user) password; an empty string means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default)]
    pub db: u32,
    /// Use TLS (`rediss://`) when `addr` is a bare `host:port`; for PostgreSQL, adds
    /// `sslmode=verify-full` to a URL that names no `sslmode`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Bearer token for the HTTP storage API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Limits while the store is unreachable (calls are then served from memory and replayed
    /// later): `fail_open` admits every request, `share` enforces each limit divided by
    /// `expected_instances`.
    #[serde(default)]
    pub outage_limits: OutageLimitsConfig,
    /// Gateway instances sharing the store, for `outage_limits: share`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub expected_instances: u32,
    /// Longest a store call may take before the gateway serves from memory (and journals the
    /// usage for replay): the time to detect an outage. Raise it on a busy host where the
    /// store is slow but alive, since a slow store is then treated as down.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// The gateway writes usage corrections (actual usage minus the reserved estimate),
    /// summed per key, at most this often; 0 writes each batch as soon as the last is done.
    /// Longer means fewer store calls under load, and corrections that land later (the
    /// estimate stands in the windows meanwhile). Read at start.
    #[serde(default = "default_settle_interval_ms")]
    pub settle_interval_ms: u64,
    /// Roll-ups for performance analysis: usage totals per `rollup_step_secs` (default a
    /// minute), kept `rollup_keep_secs` (default an hour; 0 turns roll-ups off). Read with
    /// `truckllm usage export`.
    #[serde(default = "default_rollup_step_secs")]
    pub rollup_step_secs: u64,
    #[serde(default = "default_rollup_keep_secs")]
    pub rollup_keep_secs: u64,
}

fn default_call_timeout_ms() -> u64 {
    300
}

fn default_settle_interval_ms() -> u64 {
    10
}

fn default_rollup_step_secs() -> u64 {
    60
}

fn default_rollup_keep_secs() -> u64 {
    3600
}

/// Limits during a store outage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutageLimitsConfig {
    #[default]
    FailOpen,
    Share,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Default for RuntimeStorageConfig {
    fn default() -> Self {
        Self {
            kind: RuntimeKind::Memory,
            addr: None,
            username: None,
            password: None,
            db: 0,
            tls: false,
            api_key: None,
            outage_limits: OutageLimitsConfig::default(),
            expected_instances: 1,
            call_timeout_ms: default_call_timeout_ms(),
            settle_interval_ms: default_settle_interval_ms(),
            rollup_step_secs: default_rollup_step_secs(),
            rollup_keep_secs: default_rollup_keep_secs(),
        }
    }
}

/// Which config store holds this file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    #[default]
    File,
    Http,
    /// PostgreSQL: `addr` is a `postgres://` URL; versions shared by every host, saves
    /// announced by LISTEN/NOTIFY.
    Postgres,
}

/// The seed's `storage.config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigStorageConfig {
    #[serde(rename = "type", default)]
    pub kind: ConfigKind,
    /// File store: path of the YAML file.
    #[serde(default = "default_config_path")]
    pub path: String,
    /// HTTP store: the storage server's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// How many past versions the file store keeps.
    #[serde(default = "default_history")]
    pub history: usize,
    /// HTTP store: seconds between checks for a new version (a file store is watched instead).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
}

fn default_poll_secs() -> u64 {
    5
}

impl Default for ConfigStorageConfig {
    fn default() -> Self {
        Self {
            kind: ConfigKind::File,
            path: default_config_path(),
            addr: None,
            api_key: None,
            history: default_history(),
            poll_secs: default_poll_secs(),
        }
    }
}

/// The seed's default config path.
pub fn default_config_path() -> String {
    "./configs/config.yaml".into()
}

fn default_history() -> usize {
    20
}

/// One log sink under `storage.logging`. Each sink has its own bounded queue, so a slow one
/// never holds up a request or another sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogSinkConfig {
    /// JSON lines on disk, rotated by size and age.
    File(FileSinkConfig),
    /// Batched, HMAC-signed POSTs.
    Webhook(WebhookSinkConfig),
    /// Periodic pushes of aggregates to a Prometheus Pushgateway.
    Pushgateway(PushgatewaySinkConfig),
    /// Request and audit records in PostgreSQL tables partitioned by day.
    Postgres(PostgresSinkConfig),
}

/// When the file sink forces its writes to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Leave it to the OS (fastest; a power cut may lose the last seconds).
    Never,
    /// fsync after each batch the sink writes (a batch is whatever was queued).
    #[default]
    Batch,
}

/// `type: file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Request records, one JSON object per line.
    pub path: String,
    /// Audit records (and alerts); default `audit.jsonl` beside `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_path: Option<String>,
    /// Rotate when the active file would grow past this many MiB.
    #[serde(default = "default_max_size_mb")]
    pub max_size_mb: f64,
    /// Rotate when the active file's first record is older than this many hours.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: f64,
    /// Rotated request files kept (the oldest beyond this are deleted). Audit files are
    /// deleted by age only, so no volume of traffic can push audit records out.
    #[serde(default = "default_keep_files")]
    pub keep_files: usize,
    /// Rotated files older than this many days are deleted (0: request files are kept by count
    /// only, audit files for good).
    #[serde(default = "default_keep_days")]
    pub keep_days: f64,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Records queued before new request records are dropped (and counted).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// MiB of records each of the sink's queues (requests, audit) holds before new records are
    /// dropped (and counted), however few they are.
    #[serde(default = "default_queue_max_mb")]
    pub queue_max_mb: f64,
}

impl FileSinkConfig {
    /// A sink writing request records to `path`, everything else at its default.
    pub fn at(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            audit_path: None,
            max_size_mb: default_max_size_mb(),
            max_age_hours: default_max_age_hours(),
            keep_files: default_keep_files(),
            keep_days: default_keep_days(),
            fsync: FsyncPolicy::default(),
            queue_size: default_queue_size(),
            queue_max_mb: default_queue_max_mb(),
        }
    }
}

/// `type: webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    pub url: String,
    /// HMAC-SHA256 key; the signature of each body goes in `X-TruckLLM-Signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Most records in one POST.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Deadline of one POST.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Records queued while the endpoint is slow or down; beyond this they are dropped and
    /// counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// MiB of records each queue holds before new records are dropped (and counted).
    #[serde(default = "default_queue_max_mb")]
    pub queue_max_mb: f64,
    /// Receive only alerts (storage degraded/recovered, reload failed, sink dropping).
    #[serde(default)]
    pub alerts_only: bool,
}

/// `type: postgres`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user:pass@host:port/db` (a `${VAR}` for the password keeps it out of files).
    pub url: String,
    /// Days of request records kept: older days' partitions are dropped whole.
    #[serde(default = "default_log_keep_days")]
    pub keep_days: f64,
    /// Days of audit records kept (longer: who changed what is kept after the traffic).
    #[serde(default = "default_audit_keep_days")]
    pub audit_keep_days: f64,
    /// Most records in one INSERT.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Records queued while the database is slow or down; beyond this they are dropped and
    /// counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// MiB of records each queue holds before new records are dropped (and counted).
    #[serde(default = "default_queue_max_mb")]
    pub queue_max_mb: f64,
}

fn default_log_keep_days() -> f64 {
    30.0
}

fn default_audit_keep_days() -> f64 {
    400.0
}

/// `type: pushgateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushgatewaySinkConfig {
    pub url: String,
    #[serde(default = "default_job")]
    pub job: String,
    /// The `instance` grouping label; default the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Seconds between pushes.
    #[serde(default = "default_push_interval_secs")]
    pub interval_secs: f64,
    /// Deadline of one push.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Delete this instance's group from the Pushgateway on shutdown.
    #[serde(default)]
    pub delete_on_shutdown: bool,
}

fn default_queue_max_mb() -> f64 {
    16.0
}

fn default_max_size_mb() -> f64 {
    100.0
}

fn default_max_age_hours() -> f64 {
    24.0
}

fn default_keep_files() -> usize {
    10
}

fn default_keep_days() -> f64 {
    7.0
}

fn default_queue_size() -> usize {
    10_000
}

fn default_batch_size() -> usize {
    100
}

fn default_flush_interval_ms() -> u64 {
    1_000
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_push_interval_secs() -> f64 {
    15.0
}

fn default_job() -> String {
    "truckllm".into()
}

/// Wire protocol of a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API (OpenAI, Together, OpenRouter, Mistral, Groq, vLLM, Ollama…).
    #[default]
    Openai,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google's Gemini API (AI Studio: `generateContent`, `x-goog-api-key`).
    Gemini,
    /// AWS Bedrock's Converse API, signed with SigV4 (keys hold AWS credentials).
    Bedrock,
    /// Azure OpenAI (`api-key`, deployments, `api-version`).
    Azure,
}

impl ProviderKind {
    /// The `base_url` used when the provider names none (`None`: it must name one).
    /// Bedrock's depends on the region: `https://bedrock-runtime.{region}.amazonaws.com`.
    pub fn default_base_url(self, region: Option<&str>) -> Option<String> {
        match self {
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta".into()),
            ProviderKind::Bedrock => {
                region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"))
            }
            ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Azure => None,
        }
    }
}

/// One upstream provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique id, used in model names (`openai:gpt-4o`) and usage keys.
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: ProviderKind,
    /// Base URL including the version path, as with the OpenAI SDK (`https://api.openai.com/v1`).
    /// Gemini and Bedrock have a default ([`ProviderKind::default_base_url`]); Azure's is the
    /// resource's endpoint (`https://{resource}.openai.azure.com`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    /// API keys; requests are balanced across them.
    pub keys: Vec<ProviderKeyConfig>,
    /// Limits applied to each key of this provider (a key may override them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// Models served; empty means any model name is passed through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `type: anthropic`: the `anthropic-version` header sent (default `2023-06-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_version: Option<String>,
    /// `type: anthropic`: the `anthropic-beta` flags a client may pass on; absent lets every
    /// one through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_betas: Option<Vec<String>>,
    /// `type: openai`: how OpenAI Responses API requests reach this provider: translated to
    /// Chat (the default), or `native`, passed through to its own `/responses` (OpenAI,
    /// recent vLLM), which keeps the conversation state bound to the key that made it.
    #[serde(default, skip_serializing_if = "ResponsesMode::is_default")]
    pub responses: ResponsesMode,
    /// `type: bedrock`: the AWS region (`us-east-1`), signed into every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `type: azure`: the deployment serving each model (`gpt-4o: my-gpt4o-deploy`); a model
    /// not listed is sent as its own deployment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, String>,
    /// `type: azure`: the `api-version` query parameter (default `2024-10-21`); `v1` uses the
    /// newer `{base_url}/openai/v1/` routes, with the model in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// How a provider takes Responses API requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponsesMode {
    /// Translated to Chat Completions (or Messages); the gateway keeps the conversation.
    #[default]
    Translate,
    /// Passed through to the provider's own `/responses`; the provider keeps the conversation.
    Native,
}

impl ResponsesMode {
    fn is_default(&self) -> bool {
        *self == ResponsesMode::Translate
    }
}

/// One provider API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderKeyConfig {
    /// Id used in usage metrics and logs; never the secret.
    pub id: String,
    /// The API key (every type but `bedrock`).
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub secret: Secret,
    /// `type: bedrock`: the AWS access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    /// `type: bedrock`: the AWS secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// `type: bedrock`: an AWS session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Rate limits per key, over 60-second windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_per_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_min: Option<f64>,
}

/// Prices in currency units per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub input_per_1m: f64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub output_per_1m: f64,
    /// Input tokens written to a prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1m: Option<f64>,
    /// Input tokens read from a prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_1m: Option<f64>,
}

/// One client of the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientKeyConfig {
    pub id: String,
    /// The key itself, best as a `${ENV}` reference or `enc:v1:` value; hashed once loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// Or only its SHA-256, in hex, so the file holds no secret at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    /// Provider ids this client may use; `*` for all.
    #[serde(default = "everything")]
    pub allowed_providers: Vec<String>,
    /// Models (`provider:model` or alias) this client may use; `*` for all.
    #[serde(default = "everything")]
    pub allowed_models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The team whose limits, budget and permissions bound this key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// When the key stops working: RFC 3339, UTC (`2026-12-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A disabled key is refused (401) until enabled again; its usage is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Free-form labels (owner, purpose), shown by the admin API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// After a rotation: the old key, still accepted until its grace period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousKeyConfig>,
}

use crate::governance::everything;

/// How a key is chosen among candidates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    RoundRobin,
    LeastLoaded,
    #[default]
    Hybrid,
}

/// Balancing, retry, fallback and cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Try the next target of an alias when every key of one target fails.
    #[serde(default = "yes")]
    pub fallback: bool,
    #[serde(default)]
    pub cooldown: CooldownPolicy,
    /// Tokens reserved for a request that names no `max_tokens`.
    #[serde(default = "default_estimate")]
    pub default_max_tokens: u32,
    /// Longest stream event (SSE) accepted from a provider, in bytes; a provider that sends a
    /// longer one without ending it has its stream cut as broken.
    #[serde(default = "default_max_stream_event")]
    pub max_stream_event_bytes: u32,
    /// A stream the client leaves early is read on in the background for up to this many
    /// seconds, to record the usage the provider reports at its end; 0 stops it at once.
    #[serde(default = "default_stream_drain")]
    pub stream_drain_secs: f64,
    /// Admit requests from a slice of each key's minute limits leased from the store (one
    /// store call per lease instead of one per request); near a limit, requests reserve one
    /// by one again. See the README's "Quota leasing".
    #[serde(default = "yes")]
    pub quota_leasing: bool,
    /// How long a stored Responses API response (its input and output, for
    /// `previous_response_id`) is kept in the runtime store, in seconds.
    #[serde(default = "default_responses_ttl")]
    pub responses_ttl_secs: u64,
    /// A budget reserves a request's worst case before the call: its prompt (estimated) and
    /// its `max_tokens`, the latter capped at this many tokens so an agent's 64k `max_tokens`
    /// does not block a small budget. What a request spends above the cap is settled after
    /// the call: the bound on a budget's overspend (see the README's "Keys and budgets").
    #[serde(default = "default_max_estimate_tokens")]
    pub max_estimate_tokens: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            retry: RetryPolicy::default(),
            fallback: true,
            cooldown: CooldownPolicy::default(),
            default_max_tokens: default_estimate(),
            max_stream_event_bytes: default_max_stream_event(),
            stream_drain_secs: default_stream_drain(),
            quota_leasing: true,
            responses_ttl_secs: default_responses_ttl(),
            max_estimate_tokens: default_max_estimate_tokens(),
        }
    }
}

/// 30 days, as OpenAI keeps responses.
fn default_responses_ttl() -> u64 {
    30 * 24 * 3600
}

fn default_stream_drain() -> f64 {
    30.0
}

fn default_max_stream_event() -> u32 {
    4 << 20
}

fn yes() -> bool {
    true
}

fn default_max_estimate_tokens() -> u32 {
    4096
}

fn default_estimate() -> u32 {
    1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per request, across keys and targets.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Deadline for all attempts together, in seconds.
    #[serde(default = "default_deadline")]
    pub deadline_secs: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            deadline_secs: default_deadline(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}

fn default_deadline() -> f64 {
    120.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CooldownPolicy {
    /// Consecutive failures that put a key in cooldown.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long a cooled-down key is skipped, in seconds.
    #[serde(default = "default_cooldown")]
    pub seconds: f64,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            seconds: default_cooldown(),
        }
    }
}

fn default_failures() -> u32 {
    3
}

fn default_cooldown() -> f64 {
    30.0
}

impl Config {
    /// A copy safe to print: `${ENV}` and `enc:` references stay, literal secrets, the
    /// defaults of references (`${VAR:-[REDACTED]}`) and URL passwords
    /// (`redis://:[REDACTED]@host`) become `[REDACTED]`.
    pub fn redacted(&self) -> Config {
        let secrets_hidden = self.secrets_redacted();
        let Ok(mut value) = serde_json::to_value(&secrets_hidden) else {
            return Config::default();
        };
        let _ = crate::interpolate::walk(&mut value, String::new(), &mut |_, text| {
            Ok(crate::secret::shown(text))
        });
        // Only strings changed, to strings, so this fits the schema; were it not to, the
        // default config reveals nothing.
        serde_json::from_value(value).unwrap_or_default()
    }

    /// Secret fields: literal values become `[REDACTED]`, references lose their defaults.
    fn secrets_redacted(&self) -> Config {
        let hide = |s: &Secret| Secret::new(s.to_string());
        let hide_opt = |s: &Option<Secret>| s.as_ref().map(hide);
        let mut out = self.clone();
        out.server.admin_key = hide_opt(&self.server.admin_key);
        // A key's SHA-256 is no secret to the gateway, but an unsalted digest of a weak key
        // can be reversed offline: shown to nobody who reads the config.
        let digest_hidden =
            |d: &Option<String>| d.as_ref().map(|d| Secret::new(d.clone()).to_string());
        for admin in &mut out.server.admin_keys {
            admin.key = hide_opt(&admin.key);
            admin.key_sha256 = digest_hidden(&admin.key_sha256);
        }
        out.storage.runtime.password = hide_opt(&self.storage.runtime.password);
        out.storage.runtime.api_key = hide_opt(&self.storage.runtime.api_key);
        out.storage.config.api_key = hide_opt(&self.storage.config.api_key);
        for sink in &mut out.storage.logging {
            if let LogSinkConfig::Webhook(webhook) = sink {
                webhook.secret = hide_opt(&webhook.secret);
            }
        }
        for provider in &mut out.llm_providers {
            for key in &mut provider.keys {
                key.secret = hide(&key.secret);
                key.access_key_id = hide_opt(&key.access_key_id);
                key.secret_access_key = hide_opt(&key.secret_access_key);
                key.session_token = hide_opt(&key.session_token);
            }
        }
        for client in &mut out.api_keys {
            client.key = hide_opt(&client.key);
            client.key_sha256 = digest_hidden(&client.key_sha256);
            if let Some(previous) = &mut client.previous {
                previous.key_sha256 = Secret::new(previous.key_sha256.clone()).to_string();
            }
        }
        out
    }
}
