//! The records the logging store carries: one [`RequestRecord`] per gateway request and
//! [`AuditRecord`]s for admin actions, config changes, storage writes, denied access and alerts.
//! Both are JSON objects with a `schema` field naming their type and version, so readers can
//! tell them apart and evolve with them. No record ever holds a secret: clients and keys
//! appear by id.
//!
//! Many string fields come from clients (the model asked for, the request id, error text that
//! quotes them), so every string field is capped at [`MAX_FIELD_BYTES`]: a longer one is cut
//! on a character boundary and ends in `…[truncated N bytes]`. The cap is applied when a record
//! becomes a [`LogRecord`] (the only way into [`crate::Logger::emit`]), so no caller can forget
//! it, and a record never grows past a few KiB however large the client's strings were.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// `schema` of a request record.
pub const REQUEST_SCHEMA: &str = "truckllm.request/v1";
/// `schema` of an audit record.
pub const AUDIT_SCHEMA: &str = "truckllm.audit/v1";

/// Most bytes a string field of a record keeps, the truncation marker included.
pub const MAX_FIELD_BYTES: usize = 512;

/// Caps `value` at [`MAX_FIELD_BYTES`]: cut on a character boundary and marked
/// `…[truncated N bytes]`, N the bytes left out. A capped value is left alone by a second call.
pub fn cap_field(value: &mut String) {
    let len = value.len();
    if len <= MAX_FIELD_BYTES {
        return;
    }
    // The marker is longest when N has as many digits as the whole length.
    let longest_marker = truncation_marker(len).len();
    let mut cut = MAX_FIELD_BYTES.saturating_sub(longest_marker);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let marker = truncation_marker(len - cut);
    value.truncate(cut);
    value.push_str(&marker);
}

fn truncation_marker(left_out: usize) -> String {
    format!("…[truncated {left_out} bytes]")
}

fn cap_opt(value: &mut Option<String>) {
    if let Some(v) = value {
        cap_field(v);
    }
}

/// A UTC timestamp with milliseconds, `2026-11-25T19:37:43.123Z`. Fixed width, so two
/// timestamps compare as strings the way they compare as times.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// One gateway request, written when it ends (for a stream: when the stream ends or the
/// client goes away).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub schema: String,
    /// When the request arrived.
    pub ts: String,
    pub request_id: String,
    /// The client key's id; `None` in open mode or when authentication failed.
    pub client: Option<String>,
    /// `chat` or `embeddings`.
    pub endpoint: String,
    /// The model the client asked for (`provider:model` or an alias).
    pub model: String,
    /// The provider and key of the last attempt; `None` if no attempt was made.
    pub provider: Option<String>,
    pub key: Option<String>,
    /// The model name sent upstream.
    pub upstream_model: Option<String>,
    pub stream: bool,
    /// The HTTP status the client got.
    pub status: u16,
    /// Why it failed (`rate_limited`, `upstream_error`, `invalid_json`, `client_disconnected`…);
    /// `None` on success.
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// From arrival to the last byte.
    pub latency_ms: f64,
    /// Streams: from arrival to the first byte sent back.
    pub ttfb_ms: Option<f64>,
    pub cost: f64,
    /// Attempts after the first.
    pub retries: u32,
    /// A limit (ours or the provider's) stopped at least one attempt.
    pub rate_limited: bool,
    /// The token counts are the gateway's estimate: the client left a stream and the provider
    /// never said what it used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
}

impl RequestRecord {
    /// A record for a request that arrived at `at`; the rest is filled in as it goes.
    pub fn new(at: SystemTime, request_id: String, endpoint: &str) -> Self {
        Self {
            schema: REQUEST_SCHEMA.into(),
            ts: timestamp(at),
            request_id,
            client: None,
            endpoint: endpoint.into(),
            model: String::new(),
            provider: None,
            key: None,
            upstream_model: None,
            stream: false,
            status: 0,
            error: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_ms: 0.0,
            ttfb_ms: None,
            cost: 0.0,
            retries: 0,
            rate_limited: false,
            usage_estimated: false,
        }
    }

    /// 4xx and 5xx answers, and streams the provider broke off.
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }

    /// Caps every string field (see [`cap_field`]). The pattern names every field, so a new
    /// one does not compile until it is sorted here.
    pub fn cap_fields(&mut self) {
        let Self {
            schema,
            ts,
            request_id,
            client,
            endpoint,
            model,
            provider,
            key,
            upstream_model,
            error,
            stream: _,
            status: _,
            prompt_tokens: _,
            completion_tokens: _,
            latency_ms: _,
            ttfb_ms: _,
            cost: _,
            retries: _,
            rate_limited: _,
            usage_estimated: _,
        } = self;
        for field in [schema, ts, request_id, endpoint, model] {
            cap_field(field);
        }
        for field in [client, provider, key, upstream_model, error] {
            cap_opt(field);
        }
    }

    /// Whether some string field is over the cap.
    fn needs_cap(&self) -> bool {
        let long = |s: &str| s.len() > MAX_FIELD_BYTES;
        [
            &self.schema,
            &self.ts,
            &self.request_id,
            &self.endpoint,
            &self.model,
        ]
        .into_iter()
        .any(|s| long(s))
            || [
                &self.client,
                &self.provider,
                &self.key,
                &self.upstream_model,
                &self.error,
            ]
            .into_iter()
            .any(|s| s.as_deref().is_some_and(long))
    }
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditCategory {
    /// An admin API call.
    Admin,
    /// A config version applied, saved, rolled back or restored.
    Config,
    /// A write to the storage server.
    Storage,
    /// A request refused for its credentials or scope.
    Access,
    /// Something an operator should know: storage degraded or recovered, a reload failed, a
    /// sink dropping records.
    Alert,
}

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub schema: String,
    pub ts: String,
    pub category: AuditCategory,
    /// What happened, dotted: `config.reload`, `usage.increment`, `storage.degraded`…
    pub action: String,
    /// Who did it: a token or client id, `admin`, `gateway`, `cli`. Never a secret.
    pub actor: String,
    /// What it was done to: a series, `config`, a sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`, or for alerts `raised` / `resolved`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AuditRecord {
    pub fn new(
        category: AuditCategory,
        action: impl Into<String>,
        actor: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        Self {
            schema: AUDIT_SCHEMA.into(),
            ts: timestamp(SystemTime::now()),
            category,
            action: action.into(),
            actor: actor.into(),
            target: None,
            outcome: outcome.into(),
            status: None,
            old_version: None,
            new_version: None,
            severity: None,
            message: None,
        }
    }

    /// An alert raised (or resolved, with `Severity::Info`) by the storage layer.
    pub fn alert(
        action: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        let outcome = if severity == Severity::Info {
            "resolved"
        } else {
            "raised"
        };
        Self {
            severity: Some(severity),
            message: Some(message.into()),
            ..Self::new(AuditCategory::Alert, action, "truckllm", outcome)
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn versions(mut self, old: Option<u64>, new: Option<u64>) -> Self {
        self.old_version = old;
        self.new_version = new;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn is_alert(&self) -> bool {
        self.category == AuditCategory::Alert
    }

    /// Caps every string field (see [`cap_field`]). The pattern names every field, so a new
    /// one does not compile until it is sorted here.
    pub fn cap_fields(&mut self) {
        let Self {
            schema,
            ts,
            action,
            actor,
            target,
            outcome,
            message,
            category: _,
            status: _,
            old_version: _,
            new_version: _,
            severity: _,
        } = self;
        for field in [schema, ts, action, actor, outcome] {
            cap_field(field);
        }
        for field in [target, message] {
            cap_opt(field);
        }
    }

    /// Whether some string field is over the cap.
    fn needs_cap(&self) -> bool {
        let long = |s: &str| s.len() > MAX_FIELD_BYTES;
        [
            &self.schema,
            &self.ts,
            &self.action,
            &self.actor,
            &self.outcome,
        ]
        .into_iter()
        .any(|s| long(s))
            || [&self.target, &self.message]
                .into_iter()
                .any(|s| s.as_deref().is_some_and(long))
    }
}

/// A record on its way to the sinks. Cloning is cheap: every sink shares one copy.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    Request(Arc<RequestRecord>),
    Audit(Arc<AuditRecord>),
}

/// Bytes a record is counted for in a sink's queue besides its strings.
const RECORD_OVERHEAD_BYTES: usize = 256;

impl LogRecord {
    /// The record with every string field capped (see [`cap_field`]); copies only a record
    /// that needs it. [`crate::Logger::emit`] applies it to every record, however it was built.
    pub fn capped(mut self) -> Self {
        match &mut self {
            LogRecord::Request(r) if r.needs_cap() => Arc::make_mut(r).cap_fields(),
            LogRecord::Audit(a) if a.needs_cap() => Arc::make_mut(a).cap_fields(),
            _ => {}
        }
        self
    }

    /// About what the record weighs in a queue: its strings plus a fixed overhead. Cheap (no
    /// encoding), for bounding queues by bytes.
    pub fn weight(&self) -> usize {
        let opt = |s: &Option<String>| s.as_deref().map_or(0, str::len);
        let strings = match self {
            LogRecord::Request(r) => {
                r.schema.len()
                    + r.ts.len()
                    + r.request_id.len()
                    + r.endpoint.len()
                    + r.model.len()
                    + opt(&r.client)
                    + opt(&r.provider)
                    + opt(&r.key)
                    + opt(&r.upstream_model)
                    + opt(&r.error)
            }
            LogRecord::Audit(a) => {
                a.schema.len()
                    + a.ts.len()
                    + a.action.len()
                    + a.actor.len()
                    + a.outcome.len()
                    + opt(&a.target)
                    + opt(&a.message)
            }
        };
        strings + RECORD_OVERHEAD_BYTES
    }

    pub fn is_audit(&self) -> bool {
        matches!(self, LogRecord::Audit(_))
    }

    pub fn is_alert(&self) -> bool {
        matches!(self, LogRecord::Audit(a) if a.is_alert())
    }

    /// The record as one JSON line (without the newline).
    pub fn to_json(&self) -> Vec<u8> {
        let encoded = match self {
            LogRecord::Request(r) => serde_json::to_vec(r.as_ref()),
            LogRecord::Audit(a) => serde_json::to_vec(a.as_ref()),
        };
        // Both types are plain structs of strings and numbers (NaN is written as null), so
        // encoding cannot fail; an empty object keeps a line per record if it ever did.
        encoded.unwrap_or_else(|_| b"{}".to_vec())
    }

    pub fn ts(&self) -> &str {
        match self {
            LogRecord::Request(r) => &r.ts,
            LogRecord::Audit(a) => &a.ts,
        }
    }
}

impl From<RequestRecord> for LogRecord {
    fn from(mut record: RequestRecord) -> Self {
        record.cap_fields();
        LogRecord::Request(Arc::new(record))
    }
}

impl From<AuditRecord> for LogRecord {
    fn from(mut record: AuditRecord) -> Self {
        record.cap_fields();
        LogRecord::Audit(Arc::new(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_fixed_width_and_order_as_strings() {
        let a = timestamp(UNIX_EPOCH + Duration::from_millis(1_764_099_463_000));
        let b = timestamp(UNIX_EPOCH + Duration::from_millis(1_764_099_463_120));
        assert_eq!(a, "2025-11-25T19:37:43.000Z");
        assert_eq!(a.len(), b.len());
        assert!(a < b);
    }

    #[test]
    fn records_carry_their_schema_and_round_trip() {
        let mut request = RequestRecord::new(SystemTime::now(), "req-1".into(), "chat");
        request.status = 200;
        let line = LogRecord::from(request.clone()).to_json();
        let value: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(value["schema"], REQUEST_SCHEMA);
        assert_eq!(
            serde_json::from_slice::<RequestRecord>(&line).expect("parse"),
            request
        );

        let alert = AuditRecord::alert("storage.degraded", Severity::Critical, "redis down");
        let line = LogRecord::from(alert).to_json();
        let value: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(value["schema"], AUDIT_SCHEMA);
        assert_eq!(value["category"], "alert");
        assert_eq!(value["outcome"], "raised");
        assert!(
            value.get("old_version").is_none(),
            "absent fields are left out"
        );
    }

    #[test]
    fn long_fields_are_cut_on_a_char_boundary_and_marked() {
        // 3-byte characters, so the cut point falls inside one unless it is moved back.
        let mut value = "€".repeat(3 * 1024 * 1024);
        let len = value.len();
        cap_field(&mut value);
        assert!(value.len() <= MAX_FIELD_BYTES, "{}", value.len());
        let (kept, marker) = value.split_once('…').expect("marked");
        assert!(kept.chars().all(|c| c == '€'));
        assert_eq!(marker, format!("[truncated {} bytes]", len - kept.len()));
        let once = value.clone();
        cap_field(&mut value);
        assert_eq!(value, once, "capping twice changes nothing");
        let mut short = "gpt-4o-mini".to_owned();
        cap_field(&mut short);
        assert_eq!(short, "gpt-4o-mini");
    }

    #[test]
    fn every_string_field_is_capped_however_the_record_was_built() {
        let huge = "m".repeat(8 << 20);
        let mut request = RequestRecord::new(SystemTime::now(), huge.clone(), "chat");
        request.model = huge.clone();
        request.client = Some(huge.clone());
        request.provider = Some(huge.clone());
        request.key = Some(huge.clone());
        request.upstream_model = Some(huge.clone());
        request.error = Some(huge.clone());
        let capped = LogRecord::Request(Arc::new(request)).capped();
        assert!(
            capped.to_json().len() < 8 * 1024,
            "{}",
            capped.to_json().len()
        );
        let audit = AuditRecord::new(AuditCategory::Access, huge.clone(), huge.clone(), "denied")
            .target(huge.clone())
            .message(huge);
        let line = LogRecord::from(audit).to_json();
        assert!(line.len() < 8 * 1024, "{}", line.len());
        let value: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert!(
            value["message"]
                .as_str()
                .expect("message")
                .ends_with(&format!("…[truncated {} bytes]", (8 << 20) - 484))
        );
    }

    #[test]
    fn nan_latency_is_written_as_null_not_an_error() {
        let mut request = RequestRecord::new(SystemTime::now(), "r".into(), "chat");
        request.latency_ms = f64::NAN;
        let line = LogRecord::from(request).to_json();
        let value: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert!(value["latency_ms"].is_null());
    }
}
