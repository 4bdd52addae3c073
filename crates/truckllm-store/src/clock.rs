//! Time as the stores see it, injectable so that window and TTL tests need no sleeps.
//!
//! Stores read wall-clock milliseconds since the Unix epoch from a [`Clock`]. Production uses
//! [`SystemClock`]; tests share a [`ManualClock`] and move it with [`ManualClock::advance`].
//! Instances that share a store should run NTP: window buckets are placed by each writer's clock.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Now, for placing events in time: window buckets, roll-up steps, reservations.
    fn now_ms(&self) -> u64;

    /// Now, for expiring and evicting stored data: the store's own time. The same as
    /// [`Clock::now_ms`] except for [`RequestClock`], whose `now_ms` is the caller's.
    fn expiry_ms(&self) -> u64 {
        self.now_ms()
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A clock standing at the current wall-clock time, rounded down to a whole second, so
    /// that backends with real expiry (Redis TTLs) see plausible timestamps.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_ms() / 1000 * 1000)
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A shared, dynamically chosen clock.
pub type SharedClock = Arc<dyn Clock>;

tokio::task_local! {
    static REQUEST_NOW_MS: u64;
}

/// The caller's clock, for a store behind a server: inside [`RequestClock::scope`] it reads
/// the time the request carried; elsewhere it is the system clock. A storage server built on
/// it places window buckets by its callers' clocks, as the Redis scripts do for each gateway,
/// so instances that talk to Redis directly and through the server agree.
///
/// Expiry and eviction ([`Clock::expiry_ms`]) always run on the system clock: a caller that
/// claims a later time must not expire other callers' counters, windows or batch ids. The
/// server bounds how far a caller's time may stray from its own (see the storage server).
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestClock;

impl RequestClock {
    /// Runs `fut` with "now" fixed at `now_ms`.
    pub async fn scope<F: Future>(now_ms: u64, fut: F) -> F::Output {
        REQUEST_NOW_MS.scope(now_ms, fut).await
    }
}

impl Clock for RequestClock {
    fn now_ms(&self) -> u64 {
        REQUEST_NOW_MS
            .try_with(|now| *now)
            .unwrap_or_else(|_| SystemClock.now_ms())
    }

    fn expiry_ms(&self) -> u64 {
        SystemClock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_clock_reads_the_scoped_time_and_falls_back_to_the_system() {
        assert_eq!(
            RequestClock::scope(42, async { RequestClock.now_ms() }).await,
            42
        );
        let outside = RequestClock.now_ms();
        assert!(
            outside > 1_700_000_000_000,
            "system time outside a scope: {outside}"
        );
    }

    #[tokio::test]
    async fn the_request_clock_expires_by_the_system_clock_whatever_the_caller_says() {
        let expiry = RequestClock::scope(u64::MAX, async { RequestClock.expiry_ms() }).await;
        assert!(
            expiry < u64::MAX / 2 && expiry > 1_700_000_000_000,
            "{expiry}"
        );
    }
}
