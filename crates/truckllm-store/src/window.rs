//! Sliding windows built from time buckets, and the options every backend shares.
//!
//! A counter whose TTL is refreshed on every write never expires under steady traffic, so it
//! cannot answer "how much in the last 60 s". Each series therefore also keeps one bucket per
//! bucket of time. A window of W seconds is the sum of the W/B buckets before the current one
//! plus the current, partial one, so it covers between W and W + B of history: it never misses
//! an increment of the last W seconds (a limit checked against it holds in every W-second span)
//! and over-counts by at most one bucket.
//! Buckets older than the longest window are pruned, and a series' buckets expire together
//! `max_window + bucket` after its last write.

use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::error::StoreError;

/// Most buckets a series may keep; bounds memory and the cost of a window read.
pub const MAX_BUCKETS: u64 = 3600;

/// Bucket width and the longest window a store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    bucket_ms: u64,
    max_window_ms: u64,
}

impl Default for Windowing {
    /// One-second buckets and windows of up to 60 s: the seed's 60 s active-metrics horizon.
    fn default() -> Self {
        Self {
            bucket_ms: 1000,
            max_window_ms: 60_000,
        }
    }
}

impl Windowing {
    /// Validates a bucket width and longest window: the window must be a whole number of
    /// buckets and at most [`MAX_BUCKETS`] of them.
    pub fn new(bucket: Duration, max_window: Duration) -> Result<Self, StoreError> {
        let bucket_ms = duration_ms(bucket);
        let max_window_ms = duration_ms(max_window);
        if bucket_ms == 0 {
            return Err(StoreError::invalid("bucket width must be at least 1 ms"));
        }
        if max_window_ms < bucket_ms || !max_window_ms.is_multiple_of(bucket_ms) {
            return Err(StoreError::invalid(format!(
                "longest window ({max_window_ms} ms) must be a whole, non-zero number of buckets ({bucket_ms} ms)"
            )));
        }
        if max_window_ms / bucket_ms > MAX_BUCKETS {
            return Err(StoreError::invalid(format!(
                "longest window holds {} buckets; the limit is {MAX_BUCKETS}",
                max_window_ms / bucket_ms
            )));
        }
        Ok(Self {
            bucket_ms,
            max_window_ms,
        })
    }

    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    pub fn max_window(&self) -> Duration {
        Duration::from_millis(self.max_window_ms)
    }

    /// The bucket a timestamp falls in.
    pub fn bucket_index(&self, at_ms: u64) -> u64 {
        at_ms / self.bucket_ms
    }

    /// How many whole buckets a window of `window` spans (the current, partial bucket comes on
    /// top of these).
    pub fn buckets_in(&self, window: Duration) -> Result<u64, StoreError> {
        let ms = duration_ms(window);
        if ms == 0 || ms > self.max_window_ms {
            return Err(StoreError::invalid(format!(
                "window must be between 1 ms and {} s, got {} ms",
                self.max_window_ms / 1000,
                ms
            )));
        }
        Ok(ms.div_ceil(self.bucket_ms))
    }

    /// The oldest bucket index inside a window of `buckets` buckets ending with the current,
    /// partial bucket `now_index`.
    pub fn first_in_window(now_index: u64, buckets: u64) -> u64 {
        now_index.saturating_sub(buckets)
    }

    /// Buckets older than this index are outside every window and may be dropped.
    pub fn oldest_kept(&self, now_index: u64) -> u64 {
        Self::first_in_window(now_index, self.max_window_ms / self.bucket_ms)
    }

    /// How long a series' buckets live after its last write.
    pub fn bucket_ttl_ms(&self) -> u64 {
        self.max_window_ms + self.bucket_ms
    }
}

/// How long until enough old buckets leave the window for `amount` to fit under `limit`.
///
/// `buckets` are the `(index, value)` pairs inside the window, in any order; `used` is their
/// sum. If `amount` alone exceeds `limit`, no wait helps and the whole window is returned.
pub fn retry_after_ms(
    buckets: &mut [(u64, f64)],
    used: f64,
    amount: f64,
    limit: f64,
    window_buckets: u64,
    bucket_ms: u64,
    now_ms: u64,
) -> u64 {
    buckets.sort_by_key(|(index, _)| *index);
    let mut freed = 0.0;
    for (index, value) in buckets.iter() {
        freed += value;
        if fits(used - freed, amount, limit) {
            // Bucket `index` is in the window until `now_index - window_buckets > index`.
            let leaves_at_ms = (index + window_buckets + 1) * bucket_ms;
            return leaves_at_ms.saturating_sub(now_ms).max(1);
        }
    }
    window_buckets * bucket_ms
}

/// Whether `amount` more fits under `limit` when `used` is already taken. A small tolerance
/// absorbs float rounding so that `limit` itself is reachable.
pub fn fits(used: f64, amount: f64, limit: f64) -> bool {
    used + amount <= limit + 1e-9
}

/// Options every backend understands: the seed's counter TTL, the windowing, and the clock.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// TTL of the plain counters (`usage:{provider}:{key_id}:{metric}`), refreshed on write.
    pub ttl: Duration,
    pub windowing: Windowing,
    /// Roll-ups kept for performance analysis (the seed's medium-term retention).
    pub rollup: RollupPolicy,
    /// Where "now" comes from; tests inject a [`ManualClock`](crate::clock::ManualClock).
    pub clock: SharedClock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            windowing: Windowing::default(),
            rollup: RollupPolicy::default(),
            clock: std::sync::Arc::new(SystemClock),
        }
    }
}

impl StoreOptions {
    pub fn ttl_ms(&self) -> u64 {
        duration_ms(self.ttl).max(1)
    }
}

/// Roll-ups: every increment is also added to a per-`step` total of its series, and totals are
/// kept for `keep` (the seed's "medium-term: 1 hour, performance analysis"). They are written
/// with the increment, atomically, so every instance's usage lands in the same totals, and read
/// by [`RuntimeStore::rollups`](crate::RuntimeStore::rollups) (`truckllm usage export`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupPolicy {
    pub step: Duration,
    /// Zero turns roll-ups off.
    pub keep: Duration,
}

impl Default for RollupPolicy {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(60),
            keep: Duration::from_secs(3600),
        }
    }
}

impl RollupPolicy {
    pub fn off() -> Self {
        Self {
            step: Duration::from_secs(60),
            keep: Duration::ZERO,
        }
    }

    pub fn is_on(&self) -> bool {
        !self.keep.is_zero() && !self.step.is_zero()
    }

    pub fn step_ms(&self) -> u64 {
        duration_ms(self.step).max(1)
    }

    /// The step an instant falls in.
    pub fn step_index(&self, at_ms: u64) -> u64 {
        at_ms / self.step_ms()
    }

    /// The oldest step still kept at `now_ms`: the current one and `keep` before it.
    pub fn oldest_kept(&self, now_ms: u64) -> u64 {
        self.step_index(now_ms)
            .saturating_sub(duration_ms(self.keep) / self.step_ms())
    }

    /// How long a roll-up lives untouched (0 when off).
    pub fn ttl_ms(&self) -> u64 {
        if self.is_on() {
            duration_ms(self.keep) + self.step_ms()
        } else {
            0
        }
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_spans_whole_buckets_including_the_current_one() {
        let w = Windowing::default();
        assert_eq!(w.buckets_in(Duration::from_secs(60)).ok(), Some(60));
        assert_eq!(w.buckets_in(Duration::from_millis(1500)).ok(), Some(2));
        assert!(w.buckets_in(Duration::from_secs(61)).is_err());
        assert!(w.buckets_in(Duration::ZERO).is_err());
        assert_eq!(Windowing::first_in_window(100, 60), 40);
    }

    #[test]
    fn retry_after_waits_for_the_oldest_buckets_that_free_enough() {
        // Limit 10 over 10 one-second buckets; 4 used at bucket 100, 6 at bucket 105; now = 107.5 s.
        let mut buckets = vec![(105, 6.0), (100, 4.0)];
        let wait = retry_after_ms(&mut buckets, 10.0, 3.0, 10.0, 10, 1000, 107_500);
        // Freeing bucket 100 (in the window until 111 s) is enough: 6 + 3 <= 10.
        assert_eq!(wait, 3_500);
        let wait = retry_after_ms(&mut buckets, 10.0, 5.0, 10.0, 10, 1000, 107_500);
        // 5 more needs both buckets gone: bucket 105 leaves at 116 s.
        assert_eq!(wait, 8_500);
        let wait = retry_after_ms(&mut buckets, 10.0, 11.0, 10.0, 10, 1000, 107_500);
        assert_eq!(wait, 10_000, "an amount above the limit never fits");
    }

    #[test]
    fn windowing_rejects_nonsense() {
        assert!(Windowing::new(Duration::ZERO, Duration::from_secs(60)).is_err());
        assert!(Windowing::new(Duration::from_secs(7), Duration::from_secs(60)).is_err());
        assert!(Windowing::new(Duration::from_millis(1), Duration::from_secs(60)).is_err());
        assert!(Windowing::new(Duration::from_secs(5), Duration::from_secs(3600)).is_ok());
    }
}
