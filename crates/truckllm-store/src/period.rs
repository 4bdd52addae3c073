//! Period counters: what budgets count, per key and metric, over a calendar or rolling period.
//!
//! A window (see [`crate::window`]) answers "how much in the last minute"; a budget asks "how
//! much since midnight" or "how much this month", spans a window's buckets cannot cover. A
//! period counter is a plain sum with its own expiry, named by the caller:
//!
//! - a **calendar** period is one counter named after the period (`d20261127`) that expires
//!   some time after the period ends, so a request settled just after midnight still finds it;
//! - a **rolling** period is the sum of several coarser counters (`h491234`, one per hour for a
//!   day), each written while its bucket is current: conservative by at most one bucket;
//! - a **total** budget is one counter that never expires.
//!
//! The store knows nothing of calendars: the caller names the counters a check sums
//! ([`PeriodCheck::counted`]) and the one it writes ([`PeriodCheck::write`]). A counter whose
//! expiry has passed reads as `0.0` and is gone; an add to it changes nothing.

use crate::error::StoreError;
use crate::series::{Metric, ProviderKey, check_value};
use crate::store::{Result, check_batch_id};

/// Longest counter name, in bytes.
pub const MAX_PERIOD_NAME_LEN: usize = 64;

/// Most counters one check or read may sum (a month of daily buckets, with room).
pub const MAX_COUNTED: usize = 64;

/// Most checks, adds or reads in one call.
pub const MAX_PER_CALL: usize = 16;

/// One period counter to write: its name and when it expires (Unix ms; `None`: never).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeriodCounter {
    pub name: String,
    pub expires_at_ms: Option<u64>,
}

/// One budget checked by [`RuntimeStore::reserve_periods`](crate::RuntimeStore::reserve_periods):
/// the sum of the `counted` counters plus `amount` must stay at or below `limit`; if every
/// check of the call fits, `amount` is added to `write`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodCheck {
    pub metric: Metric,
    pub limit: f64,
    pub amount: f64,
    /// The counters summed (for a calendar period, just `write`'s name).
    pub counted: Vec<String>,
    pub write: PeriodCounter,
}

/// Every budget of one key, checked and reserved together.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodReserve {
    pub key: ProviderKey,
    pub checks: Vec<PeriodCheck>,
}

/// The answer to a [`PeriodReserve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PeriodOutcome {
    /// Every check fitted and every amount was added.
    Granted,
    /// Check number `check` (0-based) did not fit; `used` is what its counters summed to.
    /// Nothing was added.
    Denied { check: usize, used: f64 },
}

/// One delta for [`RuntimeStore::add_to_periods`](crate::RuntimeStore::add_to_periods): a
/// settlement (actual minus reserved, may be negative) or a release.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodAdd {
    pub metric: Metric,
    pub counter: PeriodCounter,
    pub delta: f64,
}

/// One sum for [`RuntimeStore::read_periods`](crate::RuntimeStore::read_periods).
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRead {
    pub metric: Metric,
    pub counted: Vec<String>,
}

/// Checks a counter name: 1 to [`MAX_PERIOD_NAME_LEN`] bytes of `[A-Za-z0-9._:-]`, so it can
/// sit in any backend's key without escaping.
pub fn check_period_name(name: &str) -> Result<()> {
    let ok = (1..=MAX_PERIOD_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "period counter name {name:?} must be 1 to {MAX_PERIOD_NAME_LEN} characters of letters, digits, '.', '_', ':' or '-'"
        )))
    }
}

fn check_counted(counted: &[String]) -> Result<()> {
    if counted.is_empty() || counted.len() > MAX_COUNTED {
        return Err(StoreError::invalid(format!(
            "a period check sums 1 to {MAX_COUNTED} counters, got {}",
            counted.len()
        )));
    }
    counted.iter().try_for_each(|name| check_period_name(name))
}

fn check_count(what: &str, n: usize) -> Result<()> {
    if (1..=MAX_PER_CALL).contains(&n) {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "{what}: 1 to {MAX_PER_CALL} per call, got {n}"
        )))
    }
}

/// A write must not name a counter that has already expired at `now_ms`.
fn check_write(counter: &PeriodCounter, now_ms: u64) -> Result<()> {
    check_period_name(&counter.name)?;
    match counter.expires_at_ms {
        Some(at) if at <= now_ms => Err(StoreError::invalid(format!(
            "period counter {:?} expired at {at} ms, before now ({now_ms} ms)",
            counter.name
        ))),
        _ => Ok(()),
    }
}

impl PeriodReserve {
    /// Validates the request against the store's clock (`now_ms`). Bad input changes nothing.
    pub fn validate(&self, now_ms: u64) -> Result<()> {
        check_count("period checks", self.checks.len())?;
        for check in &self.checks {
            check_value("limit", check.limit)?;
            check_value("amount", check.amount)?;
            if check.limit < 0.0 || check.amount < 0.0 {
                return Err(StoreError::invalid(format!(
                    "limit and amount of a {} budget must not be negative",
                    check.metric
                )));
            }
            check_counted(&check.counted)?;
            check_write(&check.write, now_ms)?;
        }
        Ok(())
    }
}

/// Validates adds (and the batch id, if any). Adds to counters that have expired are allowed
/// (a settlement just after a period's grace) and change nothing.
pub fn check_adds(batch_id: Option<&str>, adds: &[PeriodAdd]) -> Result<()> {
    if let Some(id) = batch_id {
        check_batch_id(id)?;
    }
    check_count("period adds", adds.len())?;
    for add in adds {
        check_value("delta", add.delta)?;
        check_period_name(&add.counter.name)?;
    }
    Ok(())
}

/// Validates reads.
pub fn check_reads(reads: &[PeriodRead]) -> Result<()> {
    check_count("period reads", reads.len())?;
    reads
        .iter()
        .try_for_each(|read| check_counted(&read.counted))
}

/// Whether `used + amount` fits under `limit` (with the float slack every backend allows).
pub fn fits_budget(used: f64, amount: f64, limit: f64) -> bool {
    used + amount <= limit + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str, expires_at_ms: Option<u64>) -> PeriodCounter {
        PeriodCounter {
            name: name.to_owned(),
            expires_at_ms,
        }
    }

    fn check(limit: f64, amount: f64, write: PeriodCounter) -> PeriodCheck {
        PeriodCheck {
            metric: Metric::Cost,
            limit,
            amount,
            counted: vec![write.name.clone()],
            write,
        }
    }

    fn reserve(checks: Vec<PeriodCheck>) -> PeriodReserve {
        PeriodReserve {
            key: ProviderKey::new("_clients", "alice").expect("valid"),
            checks,
        }
    }

    #[test]
    fn names_are_plain_and_bounded() {
        for good in ["d20261127", "h:491234", "total", "w.2026-48_x"] {
            assert!(check_period_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_PERIOD_NAME_LEN + 1);
        for bad in ["", "a b", "a{b}", "ü", long.as_str()] {
            assert!(check_period_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_amounts_expired_writes_and_empty_calls_are_refused() {
        let live = counter("d1", Some(2_000));
        assert!(
            reserve(vec![check(1.0, 0.5, live.clone())])
                .validate(1_000)
                .is_ok()
        );
        assert!(
            reserve(vec![check(1.0, 0.5, live.clone())])
                .validate(2_000)
                .is_err()
        );
        assert!(
            reserve(vec![check(-1.0, 0.5, live.clone())])
                .validate(0)
                .is_err()
        );
        assert!(
            reserve(vec![check(1.0, f64::NAN, live.clone())])
                .validate(0)
                .is_err()
        );
        assert!(
            reserve(vec![check(1.0, 1e16, live.clone())])
                .validate(0)
                .is_err()
        );
        assert!(reserve(vec![]).validate(0).is_err());
        let mut none_counted = check(1.0, 0.5, live);
        none_counted.counted.clear();
        assert!(reserve(vec![none_counted]).validate(0).is_err());
        let forever = counter("total", None);
        assert!(
            reserve(vec![check(1.0, 0.5, forever)])
                .validate(u64::MAX)
                .is_ok()
        );
    }

    #[test]
    fn adds_and_reads_are_checked() {
        let add = PeriodAdd {
            metric: Metric::Cost,
            counter: counter("d1", Some(1)),
            delta: -0.25,
        };
        assert!(check_adds(Some("settle-1"), std::slice::from_ref(&add)).is_ok());
        assert!(check_adds(Some("bad id"), std::slice::from_ref(&add)).is_err());
        assert!(check_adds(None, &[]).is_err());
        let inf = PeriodAdd {
            delta: f64::INFINITY,
            ..add
        };
        assert!(check_adds(None, &[inf]).is_err());
        let read = PeriodRead {
            metric: Metric::Tokens,
            counted: vec!["h1".into(), "h2".into()],
        };
        assert!(check_reads(&[read]).is_ok());
        assert!(check_reads(&[]).is_err());
    }
}
