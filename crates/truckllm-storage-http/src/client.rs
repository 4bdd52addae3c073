//! [`HttpStore`]: a runtime store that speaks the HTTP storage protocol to a storage server.
//!
//! - **Connection reuse**: one pooled keep-alive client.
//! - **Timeouts** on every call.
//! - **Retries** with exponential backoff and jitter, only where safe: reads, `set`, and
//!   increments, which always carry an idempotency key that the server applies once. `reserve`
//!   and `reconcile` are never retried blindly (a second reserve would reserve twice).
//! - **Batching**: concurrent single increments (`increment`, an `increment_many` of one) are
//!   coalesced into one `/batch/increment` call; while one batch is in flight the next one
//!   fills up. Single `get`, `window` and `reserve` calls are batches of one
//!   (`/batch/get`, `/batch/reserve`).
//! - **Circuit breaker**: after `breaker_failures` consecutive failures it opens and calls fail
//!   at once with a clear error; after `breaker_cooldown` one probe is let through, and its
//!   success closes the breaker again.
//! - **Time**: every request carries this client's clock, so the server places window buckets
//!   as a store used directly would.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use truckllm_store::period::{check_adds, check_reads};
use truckllm_store::{
    ConnectionStats, Increment, ListedSeries, Metric, Reservation, ReserveOutcome, ReserveRequest,
    RollupPoint, RuntimeStore, Series, SeriesRollup, SharedClock, StoreError, SystemClock,
    Windowing, redact_url,
};
use truckllm_store::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve, ProviderKey};

use crate::protocol::*;

const BACKEND: &str = "http";
const MAX_QUEUED_BATCH: usize = 512;

/// How the client talks to the server.
#[derive(Clone)]
pub struct HttpOptions {
    /// Bearer token (from `--store-token`, `TRUCKLLM_STORE_TOKEN` or `storage.runtime.api_key`).
    pub token: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts after the first, for calls that are safe to repeat.
    pub retries: usize,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// PEM of a private CA that signed the server's certificate.
    pub tls_ca_file: Option<std::path::PathBuf>,
    pub clock: SharedClock,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            token: None,
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            retries: 3,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
            tls_ca_file: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// Fails fast while the server keeps failing; lets one probe through after a cooldown.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// When open: until when; a probe is in flight once that has passed and `probing` is set.
    state: Mutex<(Option<Instant>, bool)>,
}

impl Breaker {
    fn allow(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            (None, _) => Ok(()),
            (Some(until), _) if Instant::now() < until => Err(open_error(until)),
            (Some(_), false) => {
                state.1 = true;
                Ok(())
            }
            (Some(until), true) => Err(open_error(until)),
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (None, false);
    }

    fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let probing = state.1;
        if probing || failures >= self.threshold {
            *state = (Some(Instant::now() + self.cooldown), false);
        }
    }
}

fn open_error(until: Instant) -> StoreError {
    StoreError::unavailable(
        BACKEND,
        "call",
        &format!(
            "circuit open after repeated failures; next probe in {} ms",
            until.saturating_duration_since(Instant::now()).as_millis()
        ),
    )
}

type Waiter = (Increment, oneshot::Sender<Result<f64, StoreError>>);

/// The HTTP runtime store.
pub struct HttpStore {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Waiter>,
}

struct Inner {
    base: String,
    redacted: String,
    http: reqwest::Client,
    options: HttpOptions,
    breaker: Breaker,
    windowing: Windowing,
    in_flight: AtomicU64,
    id_seed: u64,
    next_id: AtomicU64,
}

impl HttpStore {
    /// Connects: checks `/health` and learns the server's windowing.
    pub async fn connect(url: &str, options: HttpOptions) -> Result<Self, StoreError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::invalid(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| StoreError::invalid(format!("bad CA file: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| StoreError::invalid(format!("cannot build HTTP client: {e}")))?;
        let inner = Arc::new(Inner {
            base: url.trim_end_matches('/').to_owned(),
            redacted: redact_url(url),
            http,
            breaker: Breaker {
                threshold: options.breaker_failures.max(1),
                cooldown: options.breaker_cooldown,
                failures: AtomicU32::new(0),
                state: Mutex::new((None, false)),
            },
            windowing: Windowing::default(),
            options,
            in_flight: AtomicU64::new(0),
            id_seed: RandomState::new().build_hasher().finish(),
            next_id: AtomicU64::new(0),
        });
        let health: HealthResponse = inner
            .json("connect", Method::GET, "/health", None::<&()>, None, true)
            .await?;
        let windowing = Windowing::new(
            Duration::from_millis(health.bucket_ms),
            Duration::from_secs(health.max_window_seconds),
        )?;
        let inner = Arc::new(Inner {
            windowing,
            ..Arc::into_inner(inner)
                .ok_or_else(|| StoreError::invalid("client shared during connect"))?
        });
        let (queue, rx) = mpsc::channel(4096);
        tokio::spawn(batch_loop(Arc::clone(&inner), rx));
        Ok(Self { inner, queue })
    }
}

impl Inner {
    /// A fresh idempotency key, unique across processes and calls.
    fn new_id(&self) -> String {
        format!(
            "{:016x}-{:x}",
            self.id_seed,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// One call, retried (when `retry`) on transport errors and 502/503/504.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
        retry: bool,
    ) -> Result<Bytes, StoreError> {
        let attempt = || {
            self.attempt(
                operation,
                method.clone(),
                path,
                body.clone(),
                idempotency_key,
            )
        };
        if !retry {
            return attempt().await;
        }
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(500))
                    .with_max_times(self.options.retries),
            )
            .when(|e: &StoreError| e.is_retryable() && !is_breaker_open(e))
            .await
    }

    async fn attempt(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        self.breaker.allow()?;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self
            .send(operation, method, path, body, idempotency_key)
            .await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match &result {
            Ok(_) => self.breaker.success(),
            Err(e) if e.is_retryable() => self.breaker.failure(),
            Err(_) => self.breaker.success(),
        }
        result
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(TIME_HEADER, self.options.clock.now_ms().to_string());
        if let Some(token) = &self.options.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(operation, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(operation, e))?;
        if status.is_success() {
            return Ok(bytes);
        }
        // The error type maps the answer back, so a full store or an exhausted quota stays
        // what it is (not an outage) and a 5xx stays retryable.
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => (
                None,
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        Err(StoreError::from_wire(
            BACKEND,
            operation,
            status.as_u16(),
            code.as_deref(),
            message,
        ))
    }

    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        retry: bool,
    ) -> Result<T, StoreError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Bytes::from))
            .transpose()
            .map_err(|e| StoreError::invalid(format!("cannot encode request: {e}")))?;
        let bytes = self
            .call(operation, method, path, body, idempotency_key, retry)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Protocol {
            backend: BACKEND,
            operation,
            detail: format!("bad JSON answer: {e}"),
        })
    }

    async fn number(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        key: Option<&str>,
    ) -> Result<f64, StoreError> {
        let bytes = self.call(operation, method, path, body, key, true).await?;
        let text = String::from_utf8_lossy(&bytes);
        text.trim().parse().map_err(|_| StoreError::Protocol {
            backend: BACKEND,
            operation,
            detail: format!("not a number: {text:?}"),
        })
    }

    /// Counters, or window sums over `window`, of many series in one `/batch/get`.
    async fn batch_get(
        &self,
        operation: &'static str,
        series: &[Series],
        window: Option<Duration>,
    ) -> Result<Vec<f64>, StoreError> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let body = BatchGetBody {
            series: series.iter().map(SeriesRef::from_series).collect(),
            window_seconds: window.map(|w| w.as_secs_f64()),
        };
        let r: ValuesResponse = self
            .json(
                operation,
                Method::POST,
                "/batch/get",
                Some(&body),
                None,
                true,
            )
            .await?;
        Ok(r.values)
    }

    async fn increment_batch(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>, StoreError> {
        let body = BatchIncrementBody {
            increments: increments
                .iter()
                .map(|i| IncrementRef {
                    series: SeriesRef::from_series(&i.series),
                    delta: i.delta,
                })
                .collect(),
        };
        let response: ValuesResponse = self
            .json(
                "increment_many",
                Method::POST,
                "/batch/increment",
                Some(&body),
                Some(batch_id),
                true,
            )
            .await?;
        if response.values.len() != increments.len() {
            return Err(StoreError::Protocol {
                backend: BACKEND,
                operation: "increment_many",
                detail: "wrong number of values".into(),
            });
        }
        Ok(response.values)
    }
}

fn is_breaker_open(e: &StoreError) -> bool {
    e.to_string().contains("circuit open")
}

fn transport_error(operation: &'static str, e: reqwest::Error) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout {
            backend: BACKEND,
            operation,
            after_ms: 0,
        }
    } else {
        StoreError::unavailable(BACKEND, operation, &e.without_url())
    }
}

/// Coalesces queued single increments into batch calls.
async fn batch_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while waiters.len() < MAX_QUEUED_BATCH {
            match rx.try_recv() {
                Ok(w) => waiters.push(w),
                Err(_) => break,
            }
        }
        let increments: Vec<Increment> = waiters.iter().map(|(i, _)| i.clone()).collect();
        let result = inner.increment_batch(&inner.new_id(), &increments).await;
        for (i, (_, reply)) in waiters.into_iter().enumerate() {
            let answer = match &result {
                Ok(values) => Ok(values[i]),
                Err(e) => Err(e.clone()),
            };
            let _ = reply.send(answer);
        }
    }
}

impl HttpStore {
    /// Queues one increment for the batching task and waits for its value.
    async fn queue_increment(&self, increment: Increment) -> Result<f64, StoreError> {
        truckllm_store::series::check_value("delta", increment.delta)?;
        let stopped = || StoreError::unavailable(BACKEND, "increment", &"batching task stopped");
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((increment, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

#[async_trait]
impl RuntimeStore for HttpStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn windowing(&self) -> Windowing {
        self.inner.windowing
    }

    async fn set(&self, series: &Series, value: f64) -> Result<(), StoreError> {
        truckllm_store::series::check_value("value", value)?;
        let body = serde_json::to_vec(&SetBody { value })
            .map_err(|e| StoreError::invalid(e.to_string()))?;
        self.inner
            .number(
                "set",
                Method::PUT,
                &usage_path(series),
                Some(Bytes::from(body)),
                None,
            )
            .await
            .map(drop)
    }

    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>, StoreError> {
        self.inner.batch_get("get_many", series, None).await
    }

    async fn window_many(
        &self,
        series: &[Series],
        window: Duration,
    ) -> Result<Vec<f64>, StoreError> {
        self.inner.windowing.buckets_in(window)?;
        self.inner
            .batch_get("window_many", series, Some(window))
            .await
    }

    /// A lone increment (what [`RuntimeStoreExt::increment`] sends) is queued and shares the
    /// next `/batch/increment` call with other concurrent ones; several are already a batch.
    ///
    /// [`RuntimeStoreExt::increment`]: truckllm_store::RuntimeStoreExt::increment
    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>, StoreError> {
        match increments {
            [increment] => self
                .queue_increment(increment.clone())
                .await
                .map(|v| vec![v]),
            _ => {
                self.increment_many_once(&self.inner.new_id(), increments)
                    .await
            }
        }
    }

    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>, StoreError> {
        truckllm_store::store::check_batch_id(batch_id)?;
        for inc in increments {
            truckllm_store::series::check_value("delta", inc.delta)?;
        }
        if increments.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.increment_batch(batch_id, increments).await
    }

    /// One `POST /batch/reserve`; like `reserve`, never retried blindly.
    async fn reserve_many(
        &self,
        requests: &[ReserveRequest],
    ) -> Result<Vec<ReserveOutcome>, StoreError> {
        for request in requests {
            request.amounts(&self.inner.windowing)?;
        }
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let body = BatchReserveBody {
            reservations: requests.iter().map(ReserveBody::from_request).collect(),
        };
        let r: BatchReserveResponse = self
            .inner
            .json(
                "reserve_many",
                Method::POST,
                "/batch/reserve",
                Some(&body),
                None,
                false,
            )
            .await?;
        if r.outcomes.len() != requests.len() {
            return Err(StoreError::Protocol {
                backend: BACKEND,
                operation: "reserve_many",
                detail: format!(
                    "{} answers to {} reservations",
                    r.outcomes.len(),
                    requests.len()
                ),
            });
        }
        r.outcomes.iter().map(ReserveResponse::to_outcome).collect()
    }

    async fn reconcile(
        &self,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<(), StoreError> {
        reservation.deltas(actual)?;
        let body = ReconcileBody {
            reservation: ReservationRef::from_reservation(&reservation),
            actual: metric_amounts(actual),
        };
        let payload = serde_json::to_vec(&body).map_err(|e| StoreError::invalid(e.to_string()))?;
        self.inner
            .call(
                "reconcile",
                Method::POST,
                "/reconcile",
                Some(Bytes::from(payload)),
                None,
                false,
            )
            .await
            .map(drop)
    }

    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<(), StoreError> {
        truckllm_store::store::check_batch_id(settle_id)?;
        reservation.deltas(actual)?;
        let body = ReconcileBody {
            reservation: ReservationRef::from_reservation(&reservation),
            actual: metric_amounts(actual),
        };
        let payload = serde_json::to_vec(&body).map_err(|e| StoreError::invalid(e.to_string()))?;
        // Safe to retry: the server applies the id once.
        let call = self.inner.call(
            "reconcile_once",
            Method::POST,
            "/reconcile",
            Some(Bytes::from(payload)),
            Some(settle_id),
            true,
        );
        call.await.map(drop)
    }

    /// One `POST /periods/reserve`; like `reserve`, never retried blindly.
    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome, StoreError> {
        request.validate(self.inner.options.clock.expiry_ms())?;
        let r: PeriodReserveResponse = self
            .inner
            .json(
                "reserve_periods",
                Method::POST,
                "/periods/reserve",
                Some(&PeriodReserveBody::from_request(request)),
                None,
                false,
            )
            .await?;
        r.to_outcome()
    }
    /// One `POST /periods/add` under the batch id (a fresh one if none is given, so that a
    /// retry of the same call is applied once).
    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<(), StoreError> {
        check_adds(batch_id, adds)?;
        let id = batch_id.map_or_else(|| self.inner.new_id(), str::to_owned);
        let body = serde_json::to_vec(&PeriodAddBody::from_adds(key, adds))
            .map(Bytes::from)
            .map_err(|e| StoreError::invalid(format!("cannot encode request: {e}")))?;
        self.inner
            .call(
                "add_to_periods",
                Method::POST,
                "/periods/add",
                Some(body),
                Some(&id),
                true,
            )
            .await
            .map(drop)
    }
    async fn read_periods(
        &self,
        key: &ProviderKey,
        reads: &[PeriodRead],
    ) -> Result<Vec<f64>, StoreError> {
        check_reads(reads)?;
        let r: ValuesResponse = self
            .inner
            .json(
                "read_periods",
                Method::POST,
                "/periods/read",
                Some(&PeriodReadBody::from_reads(key, reads)),
                None,
                true,
            )
            .await?;
        if r.values.len() != reads.len() {
            return Err(StoreError::Protocol {
                backend: BACKEND,
                operation: "read_periods",
                detail: "wrong number of sums".into(),
            });
        }
        Ok(r.values)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>, StoreError> {
        let path = format!("/usage?prefix={}", encode_segment(prefix));
        let r: ListResponse = self
            .inner
            .json("list", Method::GET, &path, None::<&()>, None, true)
            .await?;
        r.series
            .into_iter()
            .map(|l| {
                Ok(ListedSeries {
                    series: l.series.to_series()?,
                    value: l.value,
                    ttl: l.ttl_ms.map(Duration::from_millis),
                })
            })
            .collect()
    }

    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>, StoreError> {
        let path = format!(
            "/rollups?prefix={}&since_ms={since_ms}",
            encode_segment(prefix)
        );
        let r: RollupsResponse = self
            .inner
            .json("rollups", Method::GET, &path, None::<&()>, None, true)
            .await?;
        r.series
            .into_iter()
            .map(|r| {
                Ok(SeriesRollup {
                    series: r.series.to_series()?,
                    points: r
                        .points
                        .into_iter()
                        .map(|p| RollupPoint {
                            start_ms: p.start_ms,
                            value: p.value,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        truckllm_store::docs::check_put_doc(key, value, ttl)?;
        let body = PutDocBody {
            value_b64: BASE64.encode(value),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        let body = serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| StoreError::invalid(format!("cannot encode request: {e}")))?;
        let path = format!("/docs/{}", encode_segment(key));
        self.inner
            .call("put_doc", Method::PUT, &path, Some(body), None, true)
            .await
            .map(drop)
    }

    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        truckllm_store::docs::check_doc_key(key)?;
        let path = format!("/docs/{}", encode_segment(key));
        let r: DocResponse = self
            .inner
            .json("get_doc", Method::GET, &path, None::<&()>, None, true)
            .await?;
        r.value_b64
            .map(|v| {
                BASE64.decode(v).map_err(|e| StoreError::Protocol {
                    backend: BACKEND,
                    operation: "get_doc",
                    detail: format!("bad base64 document: {e}"),
                })
            })
            .transpose()
    }

    async fn delete_doc(&self, key: &str) -> Result<bool, StoreError> {
        truckllm_store::docs::check_doc_key(key)?;
        let path = format!("/docs/{}", encode_segment(key));
        let r: DeletedResponse = self
            .inner
            .json("delete_doc", Method::DELETE, &path, None::<&()>, None, true)
            .await?;
        Ok(r.deleted)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner
            .call("health", Method::GET, "/health", None, None, false)
            .await
            .map(drop)
    }

    /// Requests in flight (reqwest does not expose its pool).
    fn connection_stats(&self) -> ConnectionStats {
        ConnectionStats {
            active: self.inner.in_flight.load(Ordering::Relaxed),
            idle: 0,
        }
    }
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("url", &self.inner.redacted)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl fmt::Display for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpStore({})", self.inner.redacted)
    }
}
