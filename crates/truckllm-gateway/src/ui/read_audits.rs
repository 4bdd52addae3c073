//! How often a dashboard session's reads are audited. The dashboard polls its page's admin
//! routes every few seconds; auditing each poll would write about 17,000 records a day per
//! open tab, drowning the records that matter. So a successful read made with a session is
//! audited the first time the session reads that route and target, and then at most once per
//! [`READ_AUDIT_INTERVAL_MS`]: the audit log still shows who looked at what, and when to within
//! that interval, while it stays readable.
//!
//! Everything else is audited every time: reads whose content depends on the query
//! ([`AUDITED_EVERY_TIME`]: a search, a config version, a diff), reads made with an admin key
//! (scripts, where each call is deliberate), reads that failed, every change, sign-in and
//! sign-out, and every refusal.

use std::collections::HashMap;
use std::sync::Mutex;

/// The longest a session's repeated reads of one route and target go unaudited.
pub const READ_AUDIT_INTERVAL_MS: u64 = 15 * 60 * 1000;

/// Reads audited every time, even with a session: what they show depends on the query (the
/// search, the version, the versions compared), which a coarse target does not tell apart.
pub const AUDITED_EVERY_TIME: &[&str] = &["requests.search", "config.show", "config.diff"];

/// Most (session, route, target) entries remembered; when full, entries past their interval
/// are dropped, and if none are, reads are audited every time rather than forgotten.
const MAX_ENTRIES: usize = 16_384;

type Entry = ([u8; 32], &'static str, String);

/// When each session's read of each route and target was last audited, on this instance.
#[derive(Debug, Default)]
pub struct ReadAudits {
    last: Mutex<HashMap<Entry, u64>>,
}

impl ReadAudits {
    /// Whether `session`'s successful read `action` of `target` at `now_ms` is to be audited;
    /// if so, it is remembered as audited.
    pub fn due(&self, session: [u8; 32], action: &'static str, target: &str, now_ms: u64) -> bool {
        if AUDITED_EVERY_TIME.contains(&action) {
            return true;
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = (session, action, target.to_owned());
        if last
            .get(&entry)
            .is_some_and(|at| now_ms < at.saturating_add(READ_AUDIT_INTERVAL_MS))
        {
            return false;
        }
        if last.len() >= MAX_ENTRIES {
            last.retain(|_, at| now_ms < at.saturating_add(READ_AUDIT_INTERVAL_MS));
        }
        if last.len() < MAX_ENTRIES || last.contains_key(&entry) {
            last.insert(entry, now_ms);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_repeated_read_is_audited_once_per_interval() {
        let audits = ReadAudits::default();
        let (a, b) = ([1; 32], [2; 32]);
        assert!(audits.due(a, "usage.summary", "usage", 0));
        assert!(!audits.due(a, "usage.summary", "usage", 5_000));
        assert!(audits.due(a, "keys.show", "alice", 5_000), "another route");
        assert!(audits.due(a, "keys.show", "bob", 5_000), "another target");
        assert!(
            audits.due(b, "usage.summary", "usage", 5_000),
            "another session"
        );
        assert!(!audits.due(a, "usage.summary", "usage", READ_AUDIT_INTERVAL_MS - 1));
        assert!(audits.due(a, "usage.summary", "usage", READ_AUDIT_INTERVAL_MS));
    }

    #[test]
    fn when_full_reads_are_audited_rather_than_forgotten() {
        let audits = ReadAudits::default();
        for i in 0..MAX_ENTRIES {
            assert!(audits.due([0; 32], "keys.show", &i.to_string(), 0));
        }
        assert!(audits.due([0; 32], "keys.show", "one more", 0));
        assert!(
            audits.due([0; 32], "keys.show", "one more", 1),
            "not remembered"
        );
        assert!(audits.due([0; 32], "keys.show", "later", READ_AUDIT_INTERVAL_MS));
        assert!(!audits.due([0; 32], "keys.show", "later", READ_AUDIT_INTERVAL_MS + 1));
    }

    #[test]
    fn reads_that_depend_on_the_query_are_audited_every_time() {
        let audits = ReadAudits::default();
        for action in AUDITED_EVERY_TIME {
            assert!(audits.due([1; 32], action, "config", 0));
            assert!(audits.due([1; 32], action, "config", 1), "{action}");
        }
    }
}
