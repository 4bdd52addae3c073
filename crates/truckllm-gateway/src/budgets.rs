//! Budgets: what a client key or a team may spend per period, in cost or in tokens, enforced
//! before the call and settled to the real spend after it.
//!
//! **Before the call** the request's worst case is reserved: its prompt (estimated at about
//! four characters a token) at the highest input price among the providers it may go to, plus
//! its `max_tokens` capped at `policy.max_estimate_tokens` at the highest output price. The
//! key's budget is reserved first, then its team's; a refusal at the team gives back the
//! key's, so a refused request never counts. Refused: a 429 `budget_exceeded` (type
//! `insufficient_quota`) saying which budget and when it resets, with `Retry-After`.
//!
//! **After the call** each reservation moves to what the request really cost, priced by class
//! by the provider that answered (see [`crate::trace::cost`]); a request that reached no
//! provider gives its reservation back. Writes go through the store's settlements, so a store
//! outage journals them and replays them exactly once (see `truckllm_store::resilient`).
//!
//! **Overspend bound.** A reservation covers the whole request except the part of its
//! `max_tokens` above the cap (and any error in the prompt estimate), so a budget is exceeded
//! by at most what the requests in flight when it ran out spend beyond their reservations:
//! `Σ (completion tokens − cap)⁺ × output price` over those requests. With `max_tokens` at or
//! under the cap, only the prompt estimate's error remains.
//!
//! **Periods** are the runtime store's period counters ([`truckllm_store::period`]):
//! a calendar period is one counter named after the period's start (in UTC, or the budget's
//! `timezone`), kept a day past its end so a late settlement still finds it; a rolling period
//! sums coarser buckets (5 s for a minute, a minute for an hour, an hour for a day, six hours
//! for a week, a day for a 30-day month), so it counts up to one bucket more than the period:
//! conservative, never generous; `total` is one counter that never expires.
//!
//! **Alerts** at 50 %, 80 % and 100 % of each budget go through the alert path (log sinks,
//! webhooks) once per period per threshold across every instance: the first instance to see a
//! threshold crossed takes a once-only marker in the store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use truckllm_config::schema::{BudgetConfig, BudgetPeriod, BudgetReset};
use truckllm_logging::{AuditRecord, Severity};
use truckllm_store::{
    Metric, PeriodAdd, PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve,
    ProviderKey,
};

use crate::error::ApiError;
use crate::state::Gateway;
use tokio_util::task::TaskTracker;
use truckllm_store::RuntimeStore;

/// Provider id under which budget alert markers are kept.
const ALERTS_NAMESPACE: &str = "_budget_alerts";

/// The thresholds alerted on, in percent of a budget.
const THRESHOLDS: [u32; 3] = [50, 80, 100];

/// A calendar counter is kept this long past its period's end, for settlements that land late.
const CALENDAR_GRACE_MS: u64 = 24 * 3600 * 1000;

/// Whose budget it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Client,
    Team,
}

impl Owner {
    fn as_str(self) -> &'static str {
        match self {
            Owner::Client => "key",
            Owner::Team => "team",
        }
    }
}

/// One budget of a client key or a team, resolved from its config when a version is applied.
#[derive(Debug, Clone)]
pub struct Budget {
    pub owner: Owner,
    pub id: String,
    /// Where its counters live: the owner's limits key (`_clients` or `_teams`, and its id).
    key: ProviderKey,
    pub limit: f64,
    /// [`Metric::Cost`] for `max_cost`, [`Metric::Tokens`] for `max_tokens`.
    pub metric: Metric,
    pub period: BudgetPeriod,
    pub reset: BudgetReset,
    zone: TimeZone,
    /// The highest threshold this instance has already seen taken, and in which period (the
    /// alert marker's name without its threshold), so a budget past 50 % does not ask the
    /// store about its markers on every request.
    alerted: Arc<Mutex<Option<Alerted>>>,
}

/// A threshold marker this instance saw taken: its period, threshold, and when it expires.
#[derive(Debug)]
struct Alerted {
    period: String,
    threshold: u32,
    until_ms: Option<u64>,
}

/// Where a budget stands at one instant: the counters it sums, the one it writes, and when it
/// next frees up.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub counted: Vec<String>,
    pub write: PeriodCounter,
    /// When the period starts again (calendar), or the next bucket leaves the window
    /// (rolling); `None` for a total budget, which never resets.
    pub resets_at_ms: Option<u64>,
}

/// A request's worst case, before the call.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WorstCase {
    pub cost: f64,
    pub tokens: f64,
}

/// A budget's reservation for one request, settled once: to the real spend, kept as it is
/// when the spend is unknown, or given back if the hold is dropped unsettled (the request was
/// cancelled before any provider was called).
pub struct BudgetHold {
    key: ProviderKey,
    metric: Metric,
    counter: PeriodCounter,
    reserved: f64,
    /// Where the settlement goes; taken by the one settlement.
    writer: Option<(Arc<dyn RuntimeStore>, TaskTracker)>,
}

impl std::fmt::Debug for BudgetHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetHold")
            .field("key", &self.key)
            .field("counter", &self.counter.name)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl BudgetHold {
    /// Moves the reservation to `actual` (in the budget's unit); `None` keeps it as the spend.
    fn settle(mut self, actual: Option<f64>) {
        self.write(actual);
    }

    fn write(&mut self, actual: Option<f64>) {
        let (Some((store, tasks)), Some(actual)) = (self.writer.take(), actual) else {
            return;
        };
        let delta = actual - self.reserved;
        if delta == 0.0 || !delta.is_finite() {
            return;
        }
        let key = self.key.clone();
        let add = PeriodAdd {
            metric: self.metric,
            counter: self.counter.clone(),
            delta,
        };
        tasks.spawn(async move {
            if let Err(e) = store.add_to_periods(&key, None, &[add]).await {
                tracing::error!(error = %e, key = ?key, "cannot settle a budget");
            }
        });
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.write(Some(0.0));
    }
}

impl Budget {
    /// The budget of `config`, counted under `(namespace, id)`; `None` if the config is one
    /// validation refuses (neither or both amounts, an unknown zone).
    pub fn from_config(
        owner: Owner,
        namespace: &str,
        id: &str,
        config: &BudgetConfig,
    ) -> Option<Self> {
        let (metric, limit) = match (config.max_cost, config.max_tokens) {
            (Some(cost), None) => (Metric::Cost, cost),
            (None, Some(tokens)) => (Metric::Tokens, tokens),
            _ => return None,
        };
        let zone = match &config.timezone {
            Some(name) => TimeZone::get(name).ok()?,
            None => TimeZone::UTC,
        };
        Some(Self {
            owner,
            id: id.to_owned(),
            key: ProviderKey::new(namespace, id).ok()?,
            limit,
            metric,
            period: config.period,
            reset: config.reset,
            zone,
            alerted: Arc::default(),
        })
    }

    /// The counters this budget reads and writes at `now_ms`.
    pub fn span(&self, now_ms: u64) -> Span {
        match (self.period, self.reset) {
            (BudgetPeriod::Total, _) => Span {
                counted: vec!["total".into()],
                write: PeriodCounter {
                    name: "total".into(),
                    expires_at_ms: None,
                },
                resets_at_ms: None,
            },
            (period, BudgetReset::Rolling) => rolling_span(period, now_ms),
            (period, BudgetReset::Calendar) => calendar_span(period, &self.zone, now_ms),
        }
    }

    /// What a request's worst case amounts to in this budget's unit.
    fn amount(&self, worst: WorstCase) -> f64 {
        match self.metric {
            Metric::Cost => worst.cost,
            _ => worst.tokens,
        }
    }

    fn unit(&self, amount: f64) -> String {
        match self.metric {
            Metric::Cost => format!("{amount:.4}"),
            _ => format!("{amount:.0} tokens"),
        }
    }

    fn describe(&self) -> String {
        let period = format!("{:?}", self.period).to_lowercase();
        match (self.period, self.reset) {
            (BudgetPeriod::Total, _) => {
                format!("{} `{}`'s total budget", self.owner.as_str(), self.id)
            }
            (_, BudgetReset::Rolling) => format!(
                "{} `{}`'s rolling {period} budget",
                self.owner.as_str(),
                self.id
            ),
            _ => format!("{} `{}`'s {period} budget", self.owner.as_str(), self.id),
        }
    }

    /// The refusal of a request this budget cannot pay for.
    fn exceeded(&self, span: &Span, used: f64, amount: f64, now_ms: u64) -> ApiError {
        let (when, wait) = match span.resets_at_ms {
            Some(at) => (
                format!("it resets at {}", rfc3339(at)),
                Some(Duration::from_millis(at.saturating_sub(now_ms).max(1000))),
            ),
            None => ("it does not reset".to_owned(), None),
        };
        ApiError::budget_exceeded(
            format!(
                "{} is spent: {} of {} used, and this request may cost up to {}; {when}",
                self.describe(),
                self.unit(used),
                self.unit(self.limit),
                self.unit(amount),
            ),
            wait,
        )
    }
}

/// The counter of the calendar period holding `now_ms`, in `zone`.
fn calendar_span(period: BudgetPeriod, zone: &TimeZone, now_ms: u64) -> Span {
    let now = timestamp(now_ms).to_zoned(zone.clone());
    let (tag, start, end) = calendar_bounds(period, &now);
    let start_ms = start.timestamp().as_millisecond().max(0) as u64;
    let end_ms = end.timestamp().as_millisecond().max(0) as u64;
    let name = format!("{tag}{}", start_ms / 1000);
    Span {
        counted: vec![name.clone()],
        write: PeriodCounter {
            name,
            expires_at_ms: Some(end_ms + CALENDAR_GRACE_MS),
        },
        resets_at_ms: Some(end_ms),
    }
}

/// The start and end of the calendar period holding `now`, and the tag naming its kind.
fn calendar_bounds(period: BudgetPeriod, now: &Zoned) -> (&'static str, Zoned, Zoned) {
    let floor = |unit: jiff::Unit| {
        now.round(
            jiff::ZonedRound::new()
                .smallest(unit)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or_else(|_| now.clone())
    };
    let day = now
        .start_of_day()
        .unwrap_or_else(|_| floor(jiff::Unit::Day));
    let plus =
        |from: &Zoned, span: jiff::Span| from.checked_add(span).unwrap_or_else(|_| from.clone());
    match period {
        BudgetPeriod::Minute => {
            let start = floor(jiff::Unit::Minute);
            let end = plus(&start, 1.minute());
            ("m", start, end)
        }
        BudgetPeriod::Hour => {
            let start = floor(jiff::Unit::Hour);
            let end = plus(&start, 1.hour());
            ("h", start, end)
        }
        BudgetPeriod::Day | BudgetPeriod::Total => {
            let end = plus(&day, 1.day());
            ("d", day, end)
        }
        BudgetPeriod::Week => {
            let back = i64::from(now.weekday().to_monday_zero_offset());
            let start = day.checked_sub(back.days()).unwrap_or_else(|_| day.clone());
            let end = plus(&start, 1.week());
            ("w", start, end)
        }
        BudgetPeriod::Month => {
            let start = day.first_of_month().unwrap_or_else(|_| day.clone());
            let end = plus(&start, 1.month());
            ("M", start, end)
        }
    }
}

/// Bucket width and bucket count of a rolling period.
fn rolling_buckets(period: BudgetPeriod) -> (u64, u64) {
    const MIN: u64 = 60_000;
    match period {
        BudgetPeriod::Minute => (5_000, 12),
        BudgetPeriod::Hour => (MIN, 60),
        BudgetPeriod::Day | BudgetPeriod::Total => (60 * MIN, 24),
        BudgetPeriod::Week => (6 * 60 * MIN, 28),
        BudgetPeriod::Month => (24 * 60 * MIN, 30),
    }
}

/// The buckets of the rolling period ending in the current bucket: the current one and the
/// `count` before it (so up to one bucket more than the period).
fn rolling_span(period: BudgetPeriod, now_ms: u64) -> Span {
    let (width, count) = rolling_buckets(period);
    let current = now_ms / width;
    let name = |index: u64| format!("r{}-{index}", width / 1000);
    Span {
        counted: (current.saturating_sub(count)..=current)
            .map(name)
            .collect(),
        write: PeriodCounter {
            name: name(current),
            // Counted while it is among the last `count` buckets, and kept an hour longer for
            // the settlements of long streams.
            expires_at_ms: Some((current + count + 2) * width + 3_600_000),
        },
        resets_at_ms: Some((current + 1) * width),
    }
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or(Timestamp::MAX)
}

/// `ms` as an RFC 3339 UTC time, to the second.
pub fn rfc3339(ms: u64) -> String {
    timestamp(ms / 1000 * 1000).to_string()
}

/// Reserves `worst` against each budget in turn (a key's, then its team's); a refusal gives
/// back what the earlier ones reserved.
pub async fn reserve(
    gw: &Gateway,
    budgets: &[&Budget],
    worst: WorstCase,
) -> Result<Vec<BudgetHold>, ApiError> {
    let mut held = Vec::with_capacity(budgets.len());
    for budget in budgets {
        match reserve_one(gw, budget, worst).await {
            Ok(hold) => held.push(hold),
            Err(e) => {
                release(held);
                return Err(e);
            }
        }
    }
    Ok(held)
}

async fn reserve_one(
    gw: &Gateway,
    budget: &Budget,
    worst: WorstCase,
) -> Result<BudgetHold, ApiError> {
    let now_ms = gw.now_ms();
    let span = budget.span(now_ms);
    let amount = budget.amount(worst);
    let request = PeriodReserve {
        key: budget.key.clone(),
        checks: vec![PeriodCheck {
            metric: budget.metric,
            limit: budget.limit,
            amount,
            counted: span.counted.clone(),
            write: span.write.clone(),
        }],
    };
    match gw.store.reserve_periods(&request).await {
        Ok(PeriodOutcome::Granted) => Ok(BudgetHold {
            key: budget.key.clone(),
            metric: budget.metric,
            counter: span.write,
            reserved: amount,
            writer: Some((Arc::clone(&gw.store), gw.settlements.clone())),
        }),
        Ok(PeriodOutcome::Denied { used, .. }) => {
            alert_crossings(gw, budget, &span, used).await;
            Err(budget.exceeded(&span, used, amount, now_ms))
        }
        Err(e) if e.is_caller_fault() => Err(ApiError::bad_request(
            "invalid_request",
            format!("the request cannot be metered: {e}"),
        )),
        Err(e) => Err(ApiError::store_unavailable(format!(
            "usage store unavailable, refusing to guess budgets: {e}"
        ))),
    }
}

/// Moves each hold to what the request really spent (`cost`, `tokens`), on a tracked task;
/// with `None` (a provider answered but its usage is unknown) each reservation stands as the
/// spend.
pub fn settle(holds: Vec<BudgetHold>, spent: Option<WorstCase>) {
    for hold in holds {
        let actual = spent.map(|s| match hold.metric {
            Metric::Cost => s.cost,
            _ => s.tokens,
        });
        hold.settle(actual);
    }
}

/// Gives every hold back: the request spent nothing.
pub fn release(holds: Vec<BudgetHold>) {
    settle(holds, Some(WorstCase::default()));
}

/// A budget's spend in its current period.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub used: f64,
    pub limit: f64,
    pub resets_at_ms: Option<u64>,
    /// The counters read, kept for the alert check that may follow.
    span: Span,
}

impl Standing {
    pub fn remaining(&self) -> f64 {
        (self.limit - self.used).max(0.0)
    }
}

/// Reads where `budget` stands now.
pub async fn standing(
    gw: &Gateway,
    budget: &Budget,
) -> Result<Standing, truckllm_store::StoreError> {
    let span = budget.span(gw.now_ms());
    let read = PeriodRead {
        metric: budget.metric,
        counted: span.counted.clone(),
    };
    let used = gw
        .store
        .read_periods(&budget.key, std::slice::from_ref(&read))
        .await?
        .first()
        .copied()
        .unwrap_or(0.0);
    Ok(Standing {
        used,
        limit: budget.limit,
        resets_at_ms: span.resets_at_ms,
        span,
    })
}

/// Alerts on each threshold `standing` has reached (see [`alert_crossings`]).
pub async fn alert_on(gw: &Gateway, budget: &Budget, standing: &Standing) {
    if standing.used > 0.0 {
        alert_crossings(gw, budget, &standing.span, standing.used).await;
    }
}

/// Alerts on each threshold `used` has reached, once per period per threshold across every
/// instance sharing the store: the first to take the threshold's marker alerts.
async fn alert_crossings(gw: &Gateway, budget: &Budget, span: &Span, used: f64) {
    let Ok(key) = ProviderKey::new(
        ALERTS_NAMESPACE,
        format!("{}:{}", budget.owner.as_str(), budget.id),
    ) else {
        return;
    };
    for threshold in THRESHOLDS {
        if used + 1e-9 < budget.limit * f64::from(threshold) / 100.0 {
            break;
        }
        let marker = alert_marker(budget, span, threshold, gw.now_ms());
        let seen = Alerted {
            period: marker
                .name
                .split_once('-')
                .map_or("", |(_, p)| p)
                .to_owned(),
            threshold,
            until_ms: marker.expires_at_ms,
        };
        if budget.already_alerted(&seen, gw.now_ms()) {
            continue;
        }
        let request = PeriodReserve {
            key: key.clone(),
            checks: vec![PeriodCheck {
                metric: Metric::Req,
                limit: 1.0,
                amount: 1.0,
                counted: vec![marker.name.clone()],
                write: marker,
            }],
        };
        match gw.store.reserve_periods(&request).await {
            Ok(PeriodOutcome::Granted) => {
                gw.logger.emit(alert_record(budget, threshold, used, span));
                budget.mark_alerted(seen);
            }
            Ok(PeriodOutcome::Denied { .. }) => budget.mark_alerted(seen),
            Err(_) => {}
        }
    }
}

impl Budget {
    /// Whether a marker at least as high as `asked`'s, for its period, is known taken.
    fn already_alerted(&self, asked: &Alerted, now_ms: u64) -> bool {
        let seen = self.alerted.lock().unwrap_or_else(PoisonError::into_inner);
        seen.as_ref().is_some_and(|s| {
            s.period == asked.period
                && s.threshold >= asked.threshold
                && s.until_ms.is_none_or(|until| now_ms < until)
        })
    }

    fn mark_alerted(&self, seen: Alerted) {
        *self.alerted.lock().unwrap_or_else(PoisonError::into_inner) = Some(seen);
    }
}

/// The once-per-period marker of one threshold: named after the calendar period (or, for a
/// rolling budget, held for one period from when it is taken).
fn alert_marker(budget: &Budget, span: &Span, threshold: u32, now_ms: u64) -> PeriodCounter {
    match (budget.period, budget.reset) {
        (BudgetPeriod::Total, _) | (_, BudgetReset::Calendar) => PeriodCounter {
            name: format!("a{threshold}-{}", span.write.name),
            expires_at_ms: span.write.expires_at_ms,
        },
        (period, BudgetReset::Rolling) => {
            let (width, count) = rolling_buckets(period);
            PeriodCounter {
                name: format!("a{threshold}-rolling"),
                expires_at_ms: Some(now_ms + width * count),
            }
        }
    }
}

fn alert_record(budget: &Budget, threshold: u32, used: f64, span: &Span) -> AuditRecord {
    let severity = if threshold >= 100 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let resets = span
        .resets_at_ms
        .map_or("it does not reset".to_owned(), |at| {
            format!("it resets at {}", rfc3339(at))
        });
    AuditRecord::alert(
        "budget.threshold",
        severity,
        format!(
            "{} has reached {threshold} %: {} of {}; {resets}",
            budget.describe(),
            budget.unit(used),
            budget.unit(budget.limit),
        ),
    )
    .target(format!("{}:{}", budget.owner.as_str(), budget.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(period: BudgetPeriod, reset: BudgetReset, timezone: Option<&str>) -> Budget {
        let config = BudgetConfig {
            max_cost: Some(1.0),
            max_tokens: None,
            period,
            reset,
            timezone: timezone.map(str::to_owned),
        };
        Budget::from_config(Owner::Client, "_clients", "alice", &config).expect("valid")
    }

    fn ms(text: &str) -> u64 {
        text.parse::<Timestamp>().expect("time").as_millisecond() as u64
    }

    #[test]
    fn a_calendar_day_is_one_counter_that_resets_at_midnight_utc() {
        let day = budget(BudgetPeriod::Day, BudgetReset::Calendar, None);
        let morning = day.span(ms("2026-11-27T08:00:00Z"));
        let night = day.span(ms("2026-11-27T23:59:59.999Z"));
        let next = day.span(ms("2026-11-28T00:00:00Z"));
        assert_eq!(morning, night, "one counter all day");
        assert_ne!(morning.write.name, next.write.name, "a new one at midnight");
        assert_eq!(morning.counted, vec![morning.write.name.clone()]);
        assert_eq!(morning.resets_at_ms, Some(ms("2026-11-28T00:00:00Z")));
        assert_eq!(
            morning.write.expires_at_ms,
            Some(ms("2026-11-29T00:00:00Z")),
            "kept a day past its end for late settlements"
        );
    }

    #[test]
    fn calendar_periods_start_on_the_hour_monday_and_the_first_in_their_zone() {
        let at = ms("2026-11-27T23:30:00Z"); // a Friday; Saturday 00:30 in Berlin
        let reset = |period, zone| {
            budget(period, BudgetReset::Calendar, zone)
                .span(at)
                .resets_at_ms
        };
        assert_eq!(
            reset(BudgetPeriod::Hour, None),
            Some(ms("2026-11-28T00:00:00Z"))
        );
        assert_eq!(
            reset(BudgetPeriod::Minute, None),
            Some(ms("2026-11-27T23:31:00Z"))
        );
        assert_eq!(
            reset(BudgetPeriod::Week, None),
            Some(ms("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            reset(BudgetPeriod::Month, None),
            Some(ms("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            reset(BudgetPeriod::Day, Some("Europe/Berlin")),
            Some(ms("2026-11-28T23:00:00Z")),
            "Berlin's next midnight"
        );
        assert_eq!(
            reset(BudgetPeriod::Month, Some("Europe/Berlin")),
            Some(ms("2026-11-30T23:00:00Z"))
        );
        let berlin = budget(
            BudgetPeriod::Day,
            BudgetReset::Calendar,
            Some("Europe/Berlin"),
        );
        let utc = budget(BudgetPeriod::Day, BudgetReset::Calendar, None);
        assert_ne!(berlin.span(at).write.name, utc.span(at).write.name);
    }

    #[test]
    fn a_rolling_day_sums_hourly_buckets_and_writes_the_current_one() {
        let day = budget(BudgetPeriod::Day, BudgetReset::Rolling, None);
        let at = ms("2026-11-27T10:15:00Z");
        let span = day.span(at);
        assert_eq!(
            span.counted.len(),
            25,
            "24 hours and the current, partial one"
        );
        assert_eq!(span.counted.last(), Some(&span.write.name));
        let later = day.span(at + 3600 * 1000);
        assert_eq!(
            later.counted[..24],
            span.counted[1..],
            "the window slides by a bucket"
        );
        assert_eq!(span.resets_at_ms, Some(ms("2026-11-27T11:00:00Z")));
        let expires = span.write.expires_at_ms.expect("expires");
        let last_counted_at = ms("2026-11-28T10:59:59Z");
        assert!(expires > last_counted_at, "alive while counted");
        for period in [
            BudgetPeriod::Minute,
            BudgetPeriod::Hour,
            BudgetPeriod::Week,
            BudgetPeriod::Month,
        ] {
            let span = budget(period, BudgetReset::Rolling, None).span(at);
            assert!(
                span.counted.len() <= truckllm_store::period::MAX_COUNTED,
                "{period:?}"
            );
            for name in &span.counted {
                truckllm_store::period::check_period_name(name).expect("a valid name");
            }
        }
    }

    #[test]
    fn a_total_budget_never_expires_or_resets() {
        let total = budget(BudgetPeriod::Total, BudgetReset::Rolling, None);
        let span = total.span(ms("2026-11-27T10:15:00Z"));
        assert_eq!(span.write.expires_at_ms, None);
        assert_eq!(span.resets_at_ms, None);
        assert_eq!(span, total.span(ms("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn the_refusal_says_which_budget_and_when_it_resets() {
        let day = budget(BudgetPeriod::Day, BudgetReset::Calendar, None);
        let now = ms("2026-11-27T23:00:00Z");
        let e = day.exceeded(&day.span(now), 0.9995, 0.002, now);
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!((e.kind, e.code), ("insufficient_quota", "budget_exceeded"));
        assert!(
            e.message.contains("key `alice`'s day budget"),
            "{}",
            e.message
        );
        assert!(e.message.contains("2026-11-28T00:00:00Z"), "{}", e.message);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    }
}
