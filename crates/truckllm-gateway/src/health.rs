//! Per-key health as this instance sees it: consecutive failures, a cooldown, and an EWMA of
//! latency. A key that fails `cooldown.failures` times in a row (or answers 429 with a
//! Retry-After) is cooled down for a while; the cooldown is also written to the runtime store
//! (metric `cooldown`, the Unix second it ends), so every instance skips the key. State changes
//! only past the threshold: one failure among successes changes nothing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Longest cooldown shared through the store (its counters live 60 s).
pub const MAX_SHARED_COOLDOWN: Duration = Duration::from_secs(60);

/// Health of one key.
#[derive(Debug, Default)]
pub struct KeyHealth {
    consecutive_failures: AtomicU32,
    /// Unix ms until which this instance skips the key.
    cooldown_until_ms: AtomicU64,
    /// EWMA of latency in ms, as f64 bits; 0 until the first sample.
    ewma_latency_bits: AtomicU64,
    /// Requests sent since the last usage snapshot, so that a stale snapshot does not send
    /// every request to the same key.
    pub sent_since_snapshot: AtomicU64,
}

impl KeyHealth {
    pub fn record_success(&self, latency_ms: f64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.update_latency(latency_ms);
    }

    /// Counts a failure; returns true when it crosses the threshold and the key should cool down.
    pub fn record_failure(&self, threshold: u32) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= threshold.max(1)
    }

    /// Skips the key until `until_ms` (keeps a later cooldown already in place).
    pub fn cool_down_until(&self, until_ms: u64) {
        self.cooldown_until_ms
            .fetch_max(until_ms, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    pub fn cooling_down(&self, now_ms: u64) -> bool {
        self.cooldown_until_ms.load(Ordering::Relaxed) > now_ms
    }

    pub fn ewma_latency_ms(&self) -> f64 {
        f64::from_bits(self.ewma_latency_bits.load(Ordering::Relaxed))
    }

    fn update_latency(&self, sample: f64) {
        const ALPHA: f64 = 0.2;
        let _ = self
            .ewma_latency_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old == 0.0 {
                    sample
                } else {
                    old + ALPHA * (sample - old)
                };
                Some(new.to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_cools_down_only_past_the_threshold() {
        let h = KeyHealth::default();
        assert!(!h.record_failure(3));
        h.record_success(10.0);
        assert!(!h.record_failure(3));
        assert!(!h.record_failure(3));
        assert!(h.record_failure(3), "third failure in a row");
        h.cool_down_until(2_000);
        assert!(h.cooling_down(1_999) && !h.cooling_down(2_000));
        h.cool_down_until(1_000);
        assert!(
            h.cooling_down(1_500),
            "an earlier end does not shorten a cooldown"
        );
    }

    #[test]
    fn latency_is_smoothed() {
        let h = KeyHealth::default();
        h.record_success(100.0);
        assert_eq!(h.ewma_latency_ms(), 100.0);
        h.record_success(200.0);
        assert!((h.ewma_latency_ms() - 120.0).abs() < 1e-9);
    }
}
