//! Redis runtime store: the production default, shared by every gateway instance.
//!
//! Layout in [`keys`]; every write is one Lua script per provider key ([`scripts`]), so a
//! counter, its window bucket and (for reserve) every limit check change together atomically.
//! Batches are pipelined: one round trip on a standalone server; on a cluster, one pipeline per
//! hash-tag group, sent concurrently, so no command or pipeline ever spans slots. Listing uses
//! SCAN (per primary on a cluster), never KEYS.

pub mod connection;
pub mod keys;
pub mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::period::{PeriodAdd, PeriodOutcome, PeriodRead, PeriodReserve, check_adds, check_reads};
use crate::series::ProviderKey;
use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{Cmd, FromRedisValue, Pipeline, ServerErrorKind, Value, cmd};

pub use connection::RedisOptions;
use connection::{Connection, map_error};
use scripts::{LuaScript, Scripts};

use crate::error::StoreError;
use crate::series::{Metric, Series, check_value};
use crate::store::{
    ConnectionStats, Denial, Increment, KeyDeltas, ListedSeries, Reservation, ReserveOutcome,
    ReserveRequest, Result, RollupPoint, RuntimeStore, SeriesRollup, check_batch_id,
    check_increments, group_by_key, group_indices_by_key,
};
use crate::url::redact_url;
use crate::window::{StoreOptions, Windowing};

/// How many keys one SCAN step asks for, and how many keys one MGET reads.
const SCAN_COUNT: usize = 1000;

/// The Redis runtime store.
pub struct RedisStore {
    conn: Connection,
    options: StoreOptions,
    scripts: Scripts,
    /// The URL with any password removed, for Display and errors.
    redacted_url: String,
}

/// One script call within a pipeline: which script, its keys and arguments, and the hash tag
/// that decides its slot.
struct ScriptCall<'a> {
    script: &'a LuaScript,
    tag: String,
    keys: Vec<String>,
    args: Vec<String>,
}

impl RedisStore {
    /// Connects and loads the scripts. `url` is `redis://[user:pass@]host:port/db`,
    /// `rediss://…` for TLS, or `redis+cluster://h1:p1,h2:p2`.
    pub async fn connect(
        url: &str,
        options: StoreOptions,
        redis_options: RedisOptions,
    ) -> Result<Self> {
        let conn = Connection::open(url, &redis_options).await?;
        let store = Self {
            conn,
            options,
            scripts: Scripts::new(),
            redacted_url: redact_url(url),
        };
        store.load_scripts("connect").await?;
        Ok(store)
    }

    fn backend_name(&self) -> &'static str {
        self.conn.backend()
    }

    async fn load_scripts(&self, operation: &'static str) -> Result<()> {
        for script in self.scripts.all() {
            let mut load = cmd("SCRIPT");
            load.arg("LOAD").arg(script.source);
            self.conn.on_every_primary(operation, load).await?;
        }
        Ok(())
    }

    /// Runs one command per item, grouped by hash tag on a cluster; returns one raw value per
    /// item, in order. Server errors come back as `Value::ServerError` entries.
    async fn run_grouped(
        &self,
        operation: &'static str,
        tags: &[&str],
        add: impl Fn(&mut Pipeline, usize),
    ) -> Result<Vec<Value>> {
        let groups: Vec<Vec<usize>> = if self.conn.is_cluster() {
            let mut by_tag: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, tag) in tags.iter().enumerate() {
                by_tag.entry(tag).or_default().push(i);
            }
            by_tag.into_values().collect()
        } else {
            vec![(0..tags.len()).collect()]
        };
        let pipelines: Vec<Pipeline> = groups
            .iter()
            .map(|group| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for &i in group {
                    add(&mut pipe, i);
                }
                pipe
            })
            .collect();
        let answers =
            try_join_all(pipelines.iter().map(|p| self.conn.pipeline(operation, p))).await?;
        let mut out = vec![Value::Nil; tags.len()];
        for (group, values) in groups.iter().zip(answers) {
            if values.len() != group.len() {
                return Err(self.protocol(
                    operation,
                    format!("{} answers to {} commands", values.len(), group.len()),
                ));
            }
            for (&i, value) in group.iter().zip(values) {
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// Runs script calls pipelined (EVALSHA). Calls that fail with NOSCRIPT (the server lost
    /// its script cache) are re-run, alone, after the scripts are reloaded, so no call that
    /// succeeded is ever sent twice.
    async fn run_scripts(
        &self,
        operation: &'static str,
        calls: &[ScriptCall<'_>],
    ) -> Result<Vec<Value>> {
        let mut results = vec![Value::Nil; calls.len()];
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for _attempt in 0..3 {
            let tags: Vec<&str> = pending.iter().map(|&i| calls[i].tag.as_str()).collect();
            let values = self
                .run_grouped(operation, &tags, |pipe, j| {
                    let call = &calls[pending[j]];
                    pipe.cmd("EVALSHA")
                        .arg(call.script.sha())
                        .arg(call.keys.len())
                        .arg(&call.keys)
                        .arg(&call.args);
                })
                .await?;
            let mut missing = Vec::new();
            for (&i, value) in pending.iter().zip(values) {
                match value {
                    Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript) => {
                        missing.push(i);
                    }
                    Value::ServerError(e) => {
                        return Err(map_error(self.backend_name(), operation, e.into()));
                    }
                    value => results[i] = value,
                }
            }
            if missing.is_empty() {
                return Ok(results);
            }
            self.load_scripts(operation).await?;
            pending = missing;
        }
        Err(self.protocol(
            operation,
            "scripts still missing after reloading them".into(),
        ))
    }

    fn increment_calls(&self, increments: &[KeyDeltas], at_ms: u64) -> Vec<ScriptCall<'_>> {
        let w = self.options.windowing;
        let now_bucket = w.bucket_index(self.options.clock.now_ms());
        increments
            .iter()
            .map(|(key, deltas)| {
                let mut args = self.write_args(at_ms, w.oldest_kept(now_bucket));
                let mut keys = Vec::with_capacity(deltas.len() * 3);
                for (metric, delta) in deltas {
                    let series = key.series(*metric);
                    keys.push(keys::counter_key(&series));
                    keys.push(keys::buckets_key(&series));
                    keys.push(keys::rollup_key(&series));
                    args.push(delta.to_string());
                }
                ScriptCall {
                    script: &self.scripts.increment,
                    tag: keys::hash_tag(key),
                    keys,
                    args,
                }
            })
            .collect()
    }

    /// Increment calls at `at_ms`'s bucket that apply at most once per `batch_id`.
    fn once_calls<'a>(
        &'a self,
        groups: &[KeyDeltas],
        at_ms: u64,
        batch_id: &str,
    ) -> Vec<ScriptCall<'a>> {
        let mut calls = self.increment_calls(groups, at_ms);
        let markers = keys::MarkerGenerations::at(self.options.clock.now_ms());
        let marker_ttl = markers.current_ttl_ms().to_string();
        for (call, (key, _)) in calls.iter_mut().zip(groups) {
            call.script = &self.scripts.increment_once;
            let hashes = markers.check_keys(key);
            call.args.splice(
                0..0,
                [
                    batch_id.to_owned(),
                    marker_ttl.clone(),
                    hashes.len().to_string(),
                ],
            );
            call.keys.splice(0..0, hashes);
        }
        calls
    }

    /// The arguments every write script starts with (`read_write_args` in `apply.lua`), for a
    /// write that counts at `at_ms`.
    fn write_args(&self, at_ms: u64, oldest_kept: u64) -> Vec<String> {
        let rollup = self.options.rollup;
        vec![
            self.options.ttl_ms().to_string(),
            self.options.windowing.bucket_index(at_ms).to_string(),
            oldest_kept.to_string(),
            self.options.windowing.bucket_ttl_ms().to_string(),
            rollup.step_index(at_ms).to_string(),
            rollup.oldest_kept(self.options.clock.now_ms()).to_string(),
            rollup.ttl_ms().to_string(),
        ]
    }

    /// The keys SCAN finds for `pattern` that `parse` reads as a series whose name starts
    /// with `prefix`, sorted by series, each once (a cluster may report a key twice).
    async fn series_keys(
        &self,
        pattern: Option<String>,
        parse: fn(&str) -> Option<Series>,
        prefix: &str,
    ) -> Result<Vec<(String, Series)>> {
        let Some(pattern) = pattern else {
            return Ok(Vec::new());
        };
        let mut found: Vec<(String, Series)> = self
            .scan_keys(&pattern)
            .await?
            .into_iter()
            .filter_map(|key| parse(&key).map(|s| (key, s)))
            .filter(|(_, s)| s.to_string().starts_with(prefix))
            .collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let nodes: Vec<Option<(String, u16)>> = if self.conn.is_cluster() {
            self.primaries().await?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let value = match &node {
                    Some((host, port)) => self.conn.on_node("list", host, *port, scan).await?,
                    None => self.conn.query("list", &scan).await?,
                };
                let (next, batch): (u64, Vec<String>) = self.parse("list", value)?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(keys)
    }

    /// Address of every primary of the cluster, from CLUSTER NODES.
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let text: String = self.conn.query("list", cmd("CLUSTER").arg("NODES")).await?;
        let mut nodes = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let addr = addr.split('@').next().unwrap_or_default();
            if let Some((host, port)) = addr.rsplit_once(':')
                && let Ok(port) = port.parse()
            {
                nodes.push((host.to_owned(), port));
            }
        }
        Ok(nodes)
    }

    fn parse<T: FromRedisValue>(&self, operation: &'static str, value: Value) -> Result<T> {
        T::from_redis_value(value)
            .map_err(|e| self.protocol(operation, format!("cannot read answer: {e}")))
    }

    fn protocol(&self, operation: &'static str, detail: String) -> StoreError {
        StoreError::Protocol {
            backend: self.backend_name(),
            operation,
            detail,
        }
    }

    fn parse_floats(&self, operation: &'static str, value: Value) -> Result<Vec<f64>> {
        let values: Vec<Option<f64>> = self.parse(operation, value)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(0.0)).collect())
    }

    /// Puts per-group script answers back in input order (see [`group_by_key`]).
    fn scatter(
        &self,
        operation: &'static str,
        answers: Vec<Value>,
        places: &[(usize, usize)],
    ) -> Result<Vec<f64>> {
        let per_group: Vec<Vec<f64>> = answers
            .into_iter()
            .map(|v| self.parse_floats(operation, v))
            .collect::<Result<_>>()?;
        places
            .iter()
            .map(|&(g, i)| {
                per_group
                    .get(g)
                    .and_then(|values| values.get(i))
                    .copied()
                    .ok_or_else(|| self.protocol(operation, "missing value".into()))
            })
            .collect()
    }

    /// One `reserve.lua` call for the requests at `members` (all of one provider key): the
    /// metrics they name, the hash their ids are marked in if any carries one, then each
    /// request's id, amounts and checks (see the script's header).
    fn reserve_call(
        &self,
        requests: &[ReserveRequest],
        amounts: &[Vec<(Metric, f64)>],
        members: &[usize],
        now_ms: u64,
    ) -> Result<ScriptCall<'_>> {
        let w = self.options.windowing;
        let key = &requests[members[0]].key;
        let mut metrics: Vec<Metric> = Vec::new();
        let mut any_id = false;
        let mut per_request: Vec<String> = Vec::new();
        for &i in members {
            any_id |= requests[i].id.is_some();
            per_request.push(requests[i].id.clone().unwrap_or_default());
            per_request.push(amounts[i].len().to_string());
            for (metric, amount) in &amounts[i] {
                per_request.push(position_or_push(&mut metrics, *metric).to_string());
                per_request.push(amount.to_string());
            }
            per_request.push(requests[i].checks.len().to_string());
            for check in &requests[i].checks {
                per_request.push(position_or_push(&mut metrics, check.metric).to_string());
                per_request.push(check.limit.to_string());
                per_request.push(w.buckets_in(check.window)?.to_string());
            }
        }
        let markers = keys::MarkerGenerations::at(now_ms);
        let mut keys = Vec::with_capacity(metrics.len() * 3 + 1);
        for metric in &metrics {
            let series = key.series(*metric);
            keys.push(keys::counter_key(&series));
            keys.push(keys::buckets_key(&series));
            keys.push(keys::rollup_key(&series));
        }
        if any_id {
            keys.push(markers.current_key(key));
        }
        let mut args = self.write_args(now_ms, w.oldest_kept(w.bucket_index(now_ms)));
        args.extend([
            w.bucket_ms().to_string(),
            now_ms.to_string(),
            metrics.len().to_string(),
            markers.current_ttl_ms().to_string(),
            members.len().to_string(),
        ]);
        args.extend(per_request);
        Ok(ScriptCall {
            script: &self.scripts.reserve,
            tag: keys::hash_tag(key),
            keys,
            args,
        })
    }

    /// One `period_reserve.lua` call (see the script's header).
    fn period_reserve_call(&self, request: &PeriodReserve) -> ScriptCall<'_> {
        let key = &request.key;
        let mut keys = Vec::new();
        let mut args = vec![request.checks.len().to_string()];
        for check in &request.checks {
            keys.extend(
                check
                    .counted
                    .iter()
                    .map(|name| keys::period_key(key, check.metric, name)),
            );
            keys.push(keys::period_key(key, check.metric, &check.write.name));
            args.extend([
                check.limit.to_string(),
                check.amount.to_string(),
                check.counted.len().to_string(),
                expiry_arg(check.write.expires_at_ms),
            ]);
        }
        ScriptCall {
            script: &self.scripts.period_reserve,
            tag: keys::hash_tag(key),
            keys,
            args,
        }
    }

    /// One `period_add.lua` call (see the script's header).
    fn period_add_call(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> ScriptCall<'_> {
        let markers = keys::MarkerGenerations::at(self.options.clock.now_ms());
        let mut keys = match batch_id {
            Some(_) => markers.check_keys(key),
            None => Vec::new(),
        };
        let mut args = vec![
            batch_id.unwrap_or_default().to_owned(),
            markers.current_ttl_ms().to_string(),
            keys.len().to_string(),
            self.options.clock.expiry_ms().to_string(),
        ];
        for add in adds {
            keys.push(keys::period_key(key, add.metric, &add.counter.name));
            args.push(add.delta.to_string());
            args.push(expiry_arg(add.counter.expires_at_ms));
        }
        ScriptCall {
            script: &self.scripts.period_add,
            tag: keys::hash_tag(key),
            keys,
            args,
        }
    }

    /// Runs one script call; its raw answer.
    async fn run_one_script(&self, operation: &'static str, call: ScriptCall<'_>) -> Result<Value> {
        self.run_scripts(operation, std::slice::from_ref(&call))
            .await?
            .pop()
            .ok_or_else(|| self.protocol(operation, "no answer".into()))
    }

    fn parse_reserve(
        &self,
        value: Value,
        request: &ReserveRequest,
        amounts: Vec<(Metric, f64)>,
        now_ms: u64,
    ) -> Result<ReserveOutcome> {
        let answer: Vec<Value> = self.parse("reserve", value)?;
        let granted: i64 = match answer.first() {
            Some(v) => self.parse("reserve", v.clone())?,
            None => return Err(self.protocol("reserve", "empty answer".into())),
        };
        if granted == 1 {
            return Ok(ReserveOutcome::Granted(Reservation {
                key: request.key.clone(),
                at_ms: now_ms,
                reserved: amounts,
            }));
        }
        let (_, check_number, used, wait_ms): (i64, usize, f64, u64) =
            self.parse("reserve", Value::Array(answer))?;
        let check = check_number
            .checked_sub(1)
            .and_then(|i| request.checks.get(i))
            .ok_or_else(|| self.protocol("reserve", format!("no check {check_number}")))?;
        Ok(ReserveOutcome::Denied(Denial {
            metric: check.metric,
            limit: check.limit,
            used,
            requested: check.amount,
            retry_after: Duration::from_millis(wait_ms),
        }))
    }
}

#[async_trait]
impl RuntimeStore for RedisStore {
    fn backend(&self) -> &'static str {
        self.backend_name()
    }

    fn windowing(&self) -> Windowing {
        self.options.windowing
    }

    async fn set(&self, series: &Series, value: f64) -> Result<()> {
        check_value("value", value)?;
        let mut set = Cmd::new();
        set.arg("SET")
            .arg(keys::counter_key(series))
            .arg(value.to_string())
            .arg("PX")
            .arg(self.options.ttl_ms());
        self.conn.query::<Value>("set", &set).await.map(drop)
    }

    async fn get_many(&self, series: &[Series]) -> Result<Vec<f64>> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = series.iter().map(keys::counter_key).collect();
        // MGET is split by slot by the cluster client, so it is safe on a cluster too.
        let values: Vec<Option<f64>> = self.conn.query("get_many", cmd("MGET").arg(&keys)).await?;
        Ok(values.into_iter().map(|v| v.unwrap_or(0.0)).collect())
    }

    async fn window_many(&self, series: &[Series], window: Duration) -> Result<Vec<f64>> {
        let w = self.options.windowing;
        let buckets = w.buckets_in(window)?;
        let now_bucket = w.bucket_index(self.options.clock.now_ms());
        let first = Windowing::first_in_window(now_bucket, buckets);
        let args = vec![
            first.to_string(),
            w.oldest_kept(now_bucket).to_string(),
            now_bucket.to_string(),
        ];
        let calls: Vec<ScriptCall<'_>> = series
            .iter()
            .map(|s| ScriptCall {
                script: &self.scripts.window,
                tag: keys::hash_tag(s.key()),
                keys: vec![keys::buckets_key(s)],
                args: args.clone(),
            })
            .collect();
        let values = self.run_scripts("window", &calls).await?;
        values
            .into_iter()
            .map(|v| self.parse("window", v))
            .collect()
    }

    async fn increment_many(&self, increments: &[Increment]) -> Result<Vec<f64>> {
        check_increments(increments)?;
        if increments.is_empty() {
            return Ok(Vec::new());
        }
        let (groups, places) = group_by_key(increments);
        let calls = self.increment_calls(&groups, self.options.clock.now_ms());
        let answers = self.run_scripts("increment", &calls).await?;
        self.scatter("increment", answers, &places)
    }

    async fn increment_many_once(
        &self,
        batch_id: &str,
        increments: &[Increment],
    ) -> Result<Vec<f64>> {
        check_batch_id(batch_id)?;
        check_increments(increments)?;
        if increments.is_empty() {
            return Ok(Vec::new());
        }
        let (groups, places) = group_by_key(increments);
        let calls = self.once_calls(&groups, self.options.clock.now_ms(), batch_id);
        let answers = self.run_scripts("increment_once", &calls).await?;
        self.scatter("increment_once", answers, &places)
    }

    async fn reserve_many(&self, requests: &[ReserveRequest]) -> Result<Vec<ReserveOutcome>> {
        let w = self.options.windowing;
        let amounts: Vec<Vec<(Metric, f64)>> = requests
            .iter()
            .map(|r| r.amounts(&w))
            .collect::<Result<_>>()?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = self.options.clock.now_ms();
        let groups = group_indices_by_key(requests, |r| &r.key);
        let calls: Vec<ScriptCall<'_>> = groups
            .iter()
            .map(|members| self.reserve_call(requests, &amounts, members, now_ms))
            .collect::<Result<_>>()?;
        let answers = self.run_scripts("reserve", &calls).await?;
        let mut outcomes: Vec<Option<ReserveOutcome>> = vec![None; requests.len()];
        for (members, answer) in groups.iter().zip(answers) {
            let per_request: Vec<Value> = self.parse("reserve", answer)?;
            if per_request.len() != members.len() {
                return Err(self.protocol(
                    "reserve",
                    format!(
                        "{} answers to {} requests",
                        per_request.len(),
                        members.len()
                    ),
                ));
            }
            for (&i, value) in members.iter().zip(per_request) {
                outcomes[i] =
                    Some(self.parse_reserve(value, &requests[i], amounts[i].clone(), now_ms)?);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| self.protocol("reserve", "missing answer".into())))
            .collect()
    }

    async fn reconcile(&self, reservation: Reservation, actual: &[(Metric, f64)]) -> Result<()> {
        let deltas = reservation.deltas(actual)?;
        if deltas.is_empty() {
            return Ok(());
        }
        let calls = self.increment_calls(&[(reservation.key.clone(), deltas)], reservation.at_ms);
        self.run_scripts("reconcile", &calls).await.map(drop)
    }

    async fn reconcile_once(
        &self,
        settle_id: &str,
        reservation: Reservation,
        actual: &[(Metric, f64)],
    ) -> Result<()> {
        check_batch_id(settle_id)?;
        let deltas = reservation.deltas(actual)?;
        if deltas.is_empty() {
            return Ok(());
        }
        let calls = self.once_calls(
            &[(reservation.key.clone(), deltas)],
            reservation.at_ms,
            settle_id,
        );
        self.run_scripts("reconcile_once", &calls).await.map(drop)
    }

    async fn reserve_periods(&self, request: &PeriodReserve) -> Result<PeriodOutcome> {
        request.validate(self.options.clock.expiry_ms())?;
        let call = self.period_reserve_call(request);
        let answer = self.run_one_script("reserve_periods", call).await?;
        let answer: Vec<Value> = self.parse("reserve_periods", answer)?;
        let granted: i64 = match answer.first() {
            Some(v) => self.parse("reserve_periods", v.clone())?,
            None => return Err(self.protocol("reserve_periods", "empty answer".into())),
        };
        if granted == 1 {
            return Ok(PeriodOutcome::Granted);
        }
        let (_, check_number, used): (i64, usize, f64) =
            self.parse("reserve_periods", Value::Array(answer))?;
        let check = check_number
            .checked_sub(1)
            .filter(|&i| i < request.checks.len())
            .ok_or_else(|| self.protocol("reserve_periods", format!("no check {check_number}")))?;
        Ok(PeriodOutcome::Denied { check, used })
    }

    async fn add_to_periods(
        &self,
        key: &ProviderKey,
        batch_id: Option<&str>,
        adds: &[PeriodAdd],
    ) -> Result<()> {
        check_adds(batch_id, adds)?;
        let call = self.period_add_call(key, batch_id, adds);
        self.run_one_script("add_to_periods", call).await.map(drop)
    }

    async fn read_periods(&self, key: &ProviderKey, reads: &[PeriodRead]) -> Result<Vec<f64>> {
        check_reads(reads)?;
        let keys: Vec<String> = reads
            .iter()
            .flat_map(|read| {
                read.counted
                    .iter()
                    .map(|name| keys::period_key(key, read.metric, name))
            })
            .collect();
        // One hash tag, so one slot: a single MGET on a cluster too.
        let values: Vec<Option<f64>> = self
            .conn
            .query("read_periods", cmd("MGET").arg(&keys))
            .await?;
        if values.len() != keys.len() {
            return Err(self.protocol("read_periods", "wrong number of values".into()));
        }
        let mut values = values.into_iter();
        Ok(reads
            .iter()
            .map(|read| {
                values
                    .by_ref()
                    .take(read.counted.len())
                    .map(|v| v.unwrap_or(0.0))
                    .sum()
            })
            .collect())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedSeries>> {
        let found = self
            .series_keys(keys::scan_pattern(prefix), keys::parse_counter_key, prefix)
            .await?;
        let mut listed = Vec::with_capacity(found.len());
        for chunk in found.chunks(SCAN_COUNT) {
            let series: Vec<Series> = chunk.iter().map(|(_, s)| s.clone()).collect();
            let values = self.get_many(&series).await?;
            let tags: Vec<String> = series.iter().map(|s| keys::hash_tag(s.key())).collect();
            let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            let ttls = self
                .run_grouped("list", &tag_refs, |pipe, i| {
                    pipe.cmd("PTTL").arg(&chunk[i].0);
                })
                .await?;
            for ((s, value), ttl) in series.into_iter().zip(values).zip(ttls) {
                let ttl_ms: i64 = self.parse("list", ttl)?;
                if ttl_ms == -2 {
                    continue; // expired between SCAN and read
                }
                listed.push(ListedSeries {
                    series: s,
                    value,
                    ttl: u64::try_from(ttl_ms).ok().map(Duration::from_millis),
                });
            }
        }
        Ok(listed)
    }

    async fn rollups(&self, prefix: &str, since_ms: u64) -> Result<Vec<SeriesRollup>> {
        let found = self
            .series_keys(
                keys::rollup_scan_pattern(prefix),
                keys::parse_rollup_key,
                prefix,
            )
            .await?;
        let policy = self.options.rollup;
        let step_ms = policy.step_ms();
        // Steps past retention are pruned on the next write; until then they are not shown.
        let since_ms = since_ms.max(policy.oldest_kept(self.options.clock.now_ms()) * step_ms);
        let mut rollups = Vec::with_capacity(found.len());
        for chunk in found.chunks(SCAN_COUNT) {
            let tags: Vec<String> = chunk.iter().map(|(_, s)| keys::hash_tag(s.key())).collect();
            let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            let hashes = self
                .run_grouped("rollups", &tag_refs, |pipe, i| {
                    pipe.cmd("HGETALL").arg(&chunk[i].0);
                })
                .await?;
            for ((_, series), hash) in chunk.iter().zip(hashes) {
                let steps: HashMap<u64, f64> = self.parse("rollups", hash)?;
                let mut points: Vec<RollupPoint> = steps
                    .into_iter()
                    .map(|(step, value)| RollupPoint {
                        start_ms: step * step_ms,
                        value,
                    })
                    .filter(|p| p.start_ms >= since_ms)
                    .collect();
                points.sort_by_key(|p| p.start_ms);
                if !points.is_empty() {
                    rollups.push(SeriesRollup {
                        series: series.clone(),
                        points,
                    });
                }
            }
        }
        Ok(rollups)
    }

    async fn put_doc(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        crate::docs::check_put_doc(key, value, ttl)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut set = cmd("SET");
        set.arg(keys::doc_key(key)).arg(value).arg("PX").arg(ttl_ms);
        self.conn.query::<()>("put_doc", &set).await
    }

    async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>> {
        crate::docs::check_doc_key(key)?;
        let mut get = cmd("GET");
        get.arg(keys::doc_key(key));
        self.conn.query("get_doc", &get).await
    }

    async fn delete_doc(&self, key: &str) -> Result<bool> {
        crate::docs::check_doc_key(key)?;
        let mut del = cmd("DEL");
        del.arg(keys::doc_key(key));
        let removed: i64 = self.conn.query("delete_doc", &del).await?;
        Ok(removed > 0)
    }

    async fn health(&self) -> Result<()> {
        self.conn.on_every_primary("health", cmd("PING")).await
    }

    fn connection_stats(&self) -> ConnectionStats {
        self.conn.stats()
    }
}

/// A period counter's expiry as a script argument: Unix ms, or empty for never.
fn expiry_arg(expires_at_ms: Option<u64>) -> String {
    expires_at_ms.map(|at| at.to_string()).unwrap_or_default()
}

/// The 1-based position of `item` in `items`, appending it if absent.
fn position_or_push<T: PartialEq>(items: &mut Vec<T>, item: T) -> usize {
    match items.iter().position(|x| *x == item) {
        Some(p) => p + 1,
        None => {
            items.push(item);
            items.len()
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.redacted_url)
            .field("connection", &self.conn)
            .field("options", &self.options)
            .finish()
    }
}

impl fmt::Display for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisStore({})", self.redacted_url)
    }
}
