//! The wire protocol, both sides in one place: paths, headers, and the JSON bodies.
//!
//! The seed's endpoints, exactly:
//! - `GET /usage/{provider}/{keyId}/{metric}` answers the number as plain text (`45`);
//!   `?window=SECONDS` answers the window sum instead.
//! - `PUT /usage/{provider}/{keyId}/{metric}` takes `{"value": 123.45}`.
//! - `POST /usage/{provider}/{keyId}/{metric}/increment` takes `{"delta": 10.0}` and answers the
//!   new value as plain text.
//! - `GET /config` / `PUT /config` move the config as JSON (with `ETag` / `If-Match` versions).
//! - `GET /health`.
//!
//! Beyond the seed: `GET /usage?prefix=P` (listing), `POST /batch/get`, `POST /batch/increment`,
//! `POST /reserve`, `POST /batch/reserve`, `POST /reconcile`, budgets' period counters
//! (`POST /periods/reserve`, `/periods/add`, `/periods/read`), and documents
//! (`GET`/`PUT`/`DELETE /docs/{key}`, the value base64 in JSON). Path segments are percent-decoded, so ids may hold `:`,
//! `/`, `{` or spaces. Bearer tokens authenticate every route but `/health`.
//! `docs/storage-api.openapi.yaml` documents it all.

use serde::{Deserialize, Serialize};
use truckllm_store::{
    Denial, LimitCheck, Metric, PeriodAdd, PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead,
    PeriodReserve, ProviderKey, Reservation, ReserveOutcome, ReserveRequest, Series, StoreError,
};

/// Makes an increment exactly-once: the server applies a repeated key only once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The caller's clock (Unix ms); the server places window buckets by it.
pub const TIME_HEADER: &str = "x-truckllm-time-ms";
/// Largest request body the server reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Largest `PUT /docs/{key}` body: a largest document, base64-encoded, and its TTL.
pub const MAX_DOC_BODY_BYTES: usize = truckllm_store::docs::MAX_DOC_BYTES / 3 * 4 + 1024;

/// `PUT /docs/{key}`: the document (base64) and how long to keep it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutDocBody {
    pub value_b64: String,
    pub ttl_ms: u64,
}

/// `GET /docs/{key}`: the document (base64), or `null` when there is none.
#[derive(Debug, Serialize, Deserialize)]
pub struct DocResponse {
    pub value_b64: Option<String>,
}

/// `DELETE /docs/{key}`: whether a live document was there.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeletedResponse {
    pub deleted: bool,
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/usage/{provider}/{key_id}/{metric}`, encoded.
pub fn usage_path(series: &Series) -> String {
    format!(
        "/usage/{}/{}/{}",
        encode_segment(series.provider()),
        encode_segment(series.key_id()),
        series.metric()
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementBody {
    pub delta: f64,
}

/// A series on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRef {
    pub provider: String,
    pub key_id: String,
    pub metric: String,
}

impl SeriesRef {
    pub fn from_series(series: &Series) -> Self {
        Self {
            provider: series.provider().to_owned(),
            key_id: series.key_id().to_owned(),
            metric: series.metric().as_str().to_owned(),
        }
    }

    pub fn to_series(&self) -> Result<Series, StoreError> {
        Series::new(
            self.provider.clone(),
            self.key_id.clone(),
            self.metric.parse()?,
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchGetBody {
    pub series: Vec<SeriesRef>,
    /// With it, window sums over this many seconds instead of counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementRef {
    #[serde(flatten)]
    pub series: SeriesRef,
    pub delta: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIncrementBody {
    pub increments: Vec<IncrementRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValuesResponse {
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListedRef {
    #[serde(flatten)]
    pub series: SeriesRef,
    pub value: f64,
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub series: Vec<ListedRef>,
}

/// One step of a roll-up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PointRef {
    pub start_ms: u64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollupRef {
    #[serde(flatten)]
    pub series: SeriesRef,
    pub points: Vec<PointRef>,
}

/// `GET /rollups?prefix=&since_ms=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollupsResponse {
    pub series: Vec<RollupRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRef {
    pub metric: String,
    pub limit: f64,
    pub window_seconds: f64,
    pub amount: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    pub provider: String,
    pub key_id: String,
    pub checks: Vec<CheckRef>,
    /// Marks the reservation's id as applied when granted (see `ReserveRequest::id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricAmount {
    pub metric: String,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRef {
    pub provider: String,
    pub key_id: String,
    pub at_ms: u64,
    pub reserved: Vec<MetricAmount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DenialRef {
    pub metric: String,
    pub limit: f64,
    pub used: f64,
    pub requested: f64,
    pub retry_after_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReserveResponse {
    pub granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<DenialRef>,
}

/// `POST /batch/reserve`: reservations decided in order, as `RuntimeStore::reserve_many`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReserveBody {
    pub reservations: Vec<ReserveBody>,
}

/// One answer per reservation of a [`BatchReserveBody`], in its order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReserveResponse {
    pub outcomes: Vec<ReserveResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBody {
    pub reservation: ReservationRef,
    pub actual: Vec<MetricAmount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub bucket_ms: u64,
    pub max_window_seconds: u64,
}

/// `{"error": {"message", "code"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    pub code: String,
}

pub fn parse_metric_amounts(items: &[MetricAmount]) -> Result<Vec<(Metric, f64)>, StoreError> {
    items
        .iter()
        .map(|m| Ok((m.metric.parse::<Metric>()?, m.amount)))
        .collect()
}

pub fn metric_amounts(items: &[(Metric, f64)]) -> Vec<MetricAmount> {
    items
        .iter()
        .map(|(m, a)| MetricAmount {
            metric: m.as_str().to_owned(),
            amount: *a,
        })
        .collect()
}

impl ReservationRef {
    pub fn from_reservation(r: &Reservation) -> Self {
        Self {
            provider: r.key.provider().to_owned(),
            key_id: r.key.key_id().to_owned(),
            at_ms: r.at_ms,
            reserved: metric_amounts(&r.reserved),
        }
    }

    pub fn to_reservation(&self) -> Result<Reservation, StoreError> {
        Ok(Reservation {
            key: ProviderKey::new(self.provider.clone(), self.key_id.clone())?,
            at_ms: self.at_ms,
            reserved: parse_metric_amounts(&self.reserved)?,
        })
    }
}

impl ReserveBody {
    pub fn from_request(request: &ReserveRequest) -> Self {
        Self {
            provider: request.key.provider().to_owned(),
            key_id: request.key.key_id().to_owned(),
            checks: request.checks.iter().map(CheckRef::from_check).collect(),
            id: request.id.clone(),
        }
    }

    pub fn to_request(&self) -> Result<ReserveRequest, StoreError> {
        Ok(ReserveRequest {
            key: ProviderKey::new(self.provider.clone(), self.key_id.clone())?,
            checks: self
                .checks
                .iter()
                .map(CheckRef::to_check)
                .collect::<Result<_, _>>()?,
            id: self.id.clone(),
        })
    }
}

impl ReserveResponse {
    pub fn from_outcome(outcome: &ReserveOutcome) -> Self {
        match outcome {
            ReserveOutcome::Granted(r) => Self {
                granted: true,
                reservation: Some(ReservationRef::from_reservation(r)),
                denial: None,
            },
            ReserveOutcome::Denied(d) => Self {
                granted: false,
                reservation: None,
                denial: Some(DenialRef::from_denial(d)),
            },
        }
    }

    pub fn to_outcome(&self) -> Result<ReserveOutcome, StoreError> {
        match (self.granted, &self.reservation, &self.denial) {
            (true, Some(reservation), _) => {
                Ok(ReserveOutcome::Granted(reservation.to_reservation()?))
            }
            (false, _, Some(denial)) => Ok(ReserveOutcome::Denied(denial.to_denial()?)),
            _ => Err(StoreError::Protocol {
                backend: "http",
                operation: "reserve",
                detail: "incomplete answer".into(),
            }),
        }
    }
}

impl CheckRef {
    pub fn from_check(c: &LimitCheck) -> Self {
        Self {
            metric: c.metric.as_str().to_owned(),
            limit: c.limit,
            window_seconds: c.window.as_secs_f64(),
            amount: c.amount,
        }
    }

    pub fn to_check(&self) -> Result<LimitCheck, StoreError> {
        if !(self.window_seconds.is_finite()
            && self.window_seconds > 0.0
            && self.window_seconds <= 86_400.0)
        {
            return Err(StoreError::invalid(format!(
                "window_seconds {} is out of range",
                self.window_seconds
            )));
        }
        Ok(LimitCheck {
            metric: self.metric.parse()?,
            limit: self.limit,
            window: std::time::Duration::from_secs_f64(self.window_seconds),
            amount: self.amount,
        })
    }
}

impl DenialRef {
    pub fn from_denial(d: &Denial) -> Self {
        Self {
            metric: d.metric.as_str().to_owned(),
            limit: d.limit,
            used: d.used,
            requested: d.requested,
            retry_after_ms: u64::try_from(d.retry_after.as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub fn to_denial(&self) -> Result<Denial, StoreError> {
        Ok(Denial {
            metric: self.metric.parse()?,
            limit: self.limit,
            used: self.used,
            requested: self.requested,
            retry_after: std::time::Duration::from_millis(self.retry_after_ms),
        })
    }
}

/// A period counter on the wire (see `truckllm_store::period`); no `expires_at_ms`: never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodCounterRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// One budget check of `POST /periods/reserve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodCheckRef {
    pub metric: String,
    pub limit: f64,
    pub amount: f64,
    pub counted: Vec<String>,
    pub write: PeriodCounterRef,
}

/// `POST /periods/reserve`: `RuntimeStore::reserve_periods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodReserveBody {
    pub provider: String,
    pub key_id: String,
    pub checks: Vec<PeriodCheckRef>,
}

/// The answer to `POST /periods/reserve`: granted, or the check (0-based) that did not fit and
/// what its counters summed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodReserveResponse {
    pub granted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<f64>,
}

/// One delta of `POST /periods/add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodAddRef {
    pub metric: String,
    pub counter: PeriodCounterRef,
    pub delta: f64,
}

/// `POST /periods/add`: `RuntimeStore::add_to_periods`; the batch id is the
/// `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodAddBody {
    pub provider: String,
    pub key_id: String,
    pub adds: Vec<PeriodAddRef>,
}

/// One sum of `POST /periods/read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodReadRef {
    pub metric: String,
    pub counted: Vec<String>,
}

/// `POST /periods/read`: `RuntimeStore::read_periods`, answered as [`ValuesResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodReadBody {
    pub provider: String,
    pub key_id: String,
    pub reads: Vec<PeriodReadRef>,
}

impl PeriodCounterRef {
    pub fn from_counter(c: &PeriodCounter) -> Self {
        Self {
            name: c.name.clone(),
            expires_at_ms: c.expires_at_ms,
        }
    }

    pub fn to_counter(&self) -> PeriodCounter {
        PeriodCounter {
            name: self.name.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

impl PeriodReserveBody {
    pub fn from_request(request: &PeriodReserve) -> Self {
        Self {
            provider: request.key.provider().to_owned(),
            key_id: request.key.key_id().to_owned(),
            checks: request
                .checks
                .iter()
                .map(|c| PeriodCheckRef {
                    metric: c.metric.as_str().to_owned(),
                    limit: c.limit,
                    amount: c.amount,
                    counted: c.counted.clone(),
                    write: PeriodCounterRef::from_counter(&c.write),
                })
                .collect(),
        }
    }

    pub fn to_request(&self) -> Result<PeriodReserve, StoreError> {
        let checks = self
            .checks
            .iter()
            .map(|c| {
                Ok(PeriodCheck {
                    metric: c.metric.parse()?,
                    limit: c.limit,
                    amount: c.amount,
                    counted: c.counted.clone(),
                    write: c.write.to_counter(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(PeriodReserve {
            key: ProviderKey::new(self.provider.clone(), self.key_id.clone())?,
            checks,
        })
    }
}

impl PeriodReserveResponse {
    pub fn from_outcome(outcome: PeriodOutcome) -> Self {
        match outcome {
            PeriodOutcome::Granted => Self {
                granted: true,
                check: None,
                used: None,
            },
            PeriodOutcome::Denied { check, used } => Self {
                granted: false,
                check: Some(check),
                used: Some(used),
            },
        }
    }

    pub fn to_outcome(&self) -> Result<PeriodOutcome, StoreError> {
        match (self.granted, self.check, self.used) {
            (true, _, _) => Ok(PeriodOutcome::Granted),
            (false, Some(check), Some(used)) => Ok(PeriodOutcome::Denied { check, used }),
            _ => Err(StoreError::Protocol {
                backend: "http",
                operation: "reserve_periods",
                detail: "a denial without its check and sum".into(),
            }),
        }
    }
}

impl PeriodAddBody {
    pub fn from_adds(key: &ProviderKey, adds: &[PeriodAdd]) -> Self {
        Self {
            provider: key.provider().to_owned(),
            key_id: key.key_id().to_owned(),
            adds: adds
                .iter()
                .map(|a| PeriodAddRef {
                    metric: a.metric.as_str().to_owned(),
                    counter: PeriodCounterRef::from_counter(&a.counter),
                    delta: a.delta,
                })
                .collect(),
        }
    }

    pub fn to_adds(&self) -> Result<Vec<PeriodAdd>, StoreError> {
        self.adds
            .iter()
            .map(|a| {
                Ok(PeriodAdd {
                    metric: a.metric.parse()?,
                    counter: a.counter.to_counter(),
                    delta: a.delta,
                })
            })
            .collect()
    }
}

impl PeriodReadBody {
    pub fn from_reads(key: &ProviderKey, reads: &[PeriodRead]) -> Self {
        Self {
            provider: key.provider().to_owned(),
            key_id: key.key_id().to_owned(),
            reads: reads
                .iter()
                .map(|r| PeriodReadRef {
                    metric: r.metric.as_str().to_owned(),
                    counted: r.counted.clone(),
                })
                .collect(),
        }
    }

    pub fn to_reads(&self) -> Result<Vec<PeriodRead>, StoreError> {
        self.reads
            .iter()
            .map(|r| {
                Ok(PeriodRead {
                    metric: r.metric.parse()?,
                    counted: r.counted.clone(),
                })
            })
            .collect()
    }
}
