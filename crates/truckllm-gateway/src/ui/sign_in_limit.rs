//! A limit on failed admin sign-ins, against guessing admin keys: through `POST /ui/login`,
//! and through a wrong admin key presented on any `/admin/...` route ([`crate::auth::admin`]).
//! Both count in the same log, so neither way guesses faster than the other allows.
//!
//! Failed attempts are counted over the last minute (a sliding log of their times, in memory,
//! on this instance): after [`FAILED_PER_ADDRESS`] from one client address, or
//! [`FAILED_IN_ALL`] from all together, further attempts are refused with a 429 and
//! `Retry-After` (the time until the oldest counted failure leaves the minute), without the key
//! being looked at. An IPv6 address counts with its whole /64, which one client usually holds.
//!
//! The address is the TCP peer's: behind a reverse proxy every client shares the proxy's, and
//! the per-address limit acts as a second global one. `X-Forwarded-For` is not trusted, since
//! any client could set it to escape the limit. The global limit bounds guessing from many
//! addresses; its cost is that a flood of bad attempts can hold off sign-ins for up to a
//! minute, on the dashboard and on the admin API alike (sessions already open are not
//! affected; a right admin key is refused too while limited, since it is not looked at).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Failed sign-ins from one address in a minute before its attempts are refused.
pub const FAILED_PER_ADDRESS: usize = 10;
/// Failed sign-ins from all addresses in a minute before every attempt is refused.
pub const FAILED_IN_ALL: usize = 100;
const WINDOW_MS: u64 = 60_000;
/// Most addresses remembered; when full, those without a failure in the minute are dropped,
/// and if none is, a new address is counted by the global limit only.
const MAX_ADDRESSES: usize = 10_000;

/// Recent failed sign-ins, by address and in all.
#[derive(Debug, Default)]
pub struct SignInLimit {
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_address: HashMap<IpAddr, VecDeque<u64>>,
    all: VecDeque<u64>,
}

impl SignInLimit {
    /// Whether a sign-in from `address` may be tried at `now_ms`; if not, how long to wait.
    pub fn check(&self, address: Option<IpAddr>, now_ms: u64) -> Result<(), Duration> {
        let mut failures = self.lock();
        let Failures { by_address, all } = &mut *failures;
        let own = address.and_then(|a| by_address.get_mut(&group(a)));
        let full = [(all, FAILED_IN_ALL)]
            .into_iter()
            .chain(own.map(|times| (times, FAILED_PER_ADDRESS)))
            .filter_map(|(times, limit)| {
                forget_before(times, now_ms);
                if times.len() >= limit {
                    times.front().copied()
                } else {
                    None
                }
            })
            .max();
        match full {
            Some(oldest) => Err(Duration::from_millis(
                (oldest + WINDOW_MS).saturating_sub(now_ms).max(1),
            )),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in from `address` at `now_ms`.
    pub fn failed(&self, address: Option<IpAddr>, now_ms: u64) {
        let mut failures = self.lock();
        push(&mut failures.all, now_ms, FAILED_IN_ALL);
        let Some(address) = address.map(group) else {
            return;
        };
        let by_address = &mut failures.by_address;
        if by_address.len() >= MAX_ADDRESSES && !by_address.contains_key(&address) {
            by_address.retain(|_, times| {
                forget_before(times, now_ms);
                !times.is_empty()
            });
            if by_address.len() >= MAX_ADDRESSES {
                return;
            }
        }
        push(
            by_address.entry(address).or_default(),
            now_ms,
            FAILED_PER_ADDRESS,
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address a client is counted by: IPv4 as it is (also when IPv4-mapped, as a dual-stack
/// listener sees it), IPv6 by its /64.
fn group(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

/// Drops the failures that left the minute before `now_ms`.
fn forget_before(times: &mut VecDeque<u64>, now_ms: u64) {
    while times
        .front()
        .is_some_and(|&at| at.saturating_add(WINDOW_MS) <= now_ms)
    {
        times.pop_front();
    }
}

/// Adds a failure, keeping only the newest `limit` (older ones cannot change an answer).
fn push(times: &mut VecDeque<u64>, now_ms: u64, limit: usize) {
    forget_before(times, now_ms);
    times.push_back(now_ms);
    while times.len() > limit {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_oldest_leaves_the_minute() {
        let limit = SignInLimit::default();
        for i in 0..FAILED_PER_ADDRESS as u64 {
            assert!(limit.check(ip("10.0.0.1"), i * 1000).is_ok());
            limit.failed(ip("10.0.0.1"), i * 1000);
        }
        assert_eq!(
            limit.check(ip("10.0.0.1"), 10_000),
            Err(Duration::from_secs(50))
        );
        assert!(
            limit.check(ip("10.0.0.2"), 10_000).is_ok(),
            "another address"
        );
        assert!(
            limit.check(ip("10.0.0.1"), 60_000).is_ok(),
            "the first left"
        );
        limit.failed(ip("10.0.0.1"), 60_000);
        assert!(limit.check(ip("10.0.0.1"), 60_500).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_all_addresses_share_a_global_limit() {
        let limit = SignInLimit::default();
        for i in 0..FAILED_PER_ADDRESS {
            limit.failed(ip(&format!("2001:db8::{i:x}")), 0);
        }
        assert!(limit.check(ip("2001:db8::ffff"), 1).is_err(), "same /64");
        assert!(limit.check(ip("2001:db8:0:1::1"), 1).is_ok());
        for i in 0..FAILED_IN_ALL {
            limit.failed(ip(&format!("10.1.{}.{}", i / 256, i % 256)), 0);
        }
        assert!(limit.check(ip("192.0.2.9"), 1).is_err(), "global");
        assert!(limit.check(None, 1).is_err());
        assert!(limit.check(ip("192.0.2.9"), WINDOW_MS).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let limit = SignInLimit::default();
        for i in 0..FAILED_PER_ADDRESS {
            limit.failed(ip("::ffff:192.0.2.1"), i as u64);
        }
        assert!(limit.check(ip("::ffff:192.0.2.1"), 100).is_err());
        assert!(
            limit.check(ip("192.0.2.1"), 100).is_err(),
            "the same client"
        );
        assert!(
            limit.check(ip("::ffff:192.0.2.2"), 100).is_ok(),
            "another IPv4 client, though in the same /64"
        );
    }
}
