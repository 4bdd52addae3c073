//! The Redis key layout, in one place.
//!
//! - Counter (the seed's layout): `usage:{provider:key_id}:metric`, a float with the counter TTL.
//! - Window buckets: `usage-buckets:{provider:key_id}:metric`, a hash of bucket index to float.
//! - Roll-ups: `usage-rollup:{provider:key_id}:metric`, a hash of step index to float, kept
//!   for the roll-up retention.
//! - Applied batch ids (exactly-once batches): `usage-batch:{provider:key_id}:g<generation>`, a
//!   hash of id to `1` per ten minutes of application, kept until an hour after its ten minutes
//!   end (see [`MarkerGenerations`]).
//! - Period counters (budgets, see [`crate::period`]):
//!   `usage-period:{provider:key_id}:metric:name`, a float expiring at the counter's own
//!   instant (`PEXPIREAT`) or never.
//!
//! The braces are a Redis Cluster hash tag: every key of one provider key lands in one slot, so
//! the scripts that touch several metrics of a key stay single-slot. Provider and key ids are
//! escaped with [`encode_segment`], which escapes `{`, `}` and `:`, so the tag always ends where
//! intended and distinct names never share a key.

use crate::series::{Metric, ProviderKey, Series, decode_segment};
use crate::store::BATCH_ID_TTL;

pub const COUNTER_PREFIX: &str = "usage:";
pub const BUCKETS_PREFIX: &str = "usage-buckets:";
pub const BATCH_PREFIX: &str = "usage-batch:";
pub const ROLLUP_PREFIX: &str = "usage-rollup:";
pub const PERIOD_PREFIX: &str = "usage-period:";

/// The hash tag shared by every key of one provider key, braces included.
/// The key of a document (see [`crate::docs`]): one Redis key each.
pub fn doc_key(key: &str) -> String {
    format!("doc:{key}")
}

pub fn hash_tag(key: &ProviderKey) -> String {
    format!("{{{}}}", key.encoded())
}

pub fn counter_key(series: &Series) -> String {
    format!(
        "{COUNTER_PREFIX}{}:{}",
        hash_tag(series.key()),
        series.metric()
    )
}

pub fn buckets_key(series: &Series) -> String {
    format!(
        "{BUCKETS_PREFIX}{}:{}",
        hash_tag(series.key()),
        series.metric()
    )
}

pub fn rollup_key(series: &Series) -> String {
    format!(
        "{ROLLUP_PREFIX}{}:{}",
        hash_tag(series.key()),
        series.metric()
    )
}

/// A period counter of one provider key and metric (`name` is checked by
/// [`crate::period::check_period_name`]: no braces, so the hash tag stays the only one).
pub fn period_key(key: &ProviderKey, metric: Metric, name: &str) -> String {
    format!("{PERIOD_PREFIX}{}:{metric}:{name}", hash_tag(key))
}

/// The hash of batch ids applied to one provider key during one marker generation
/// (`usage-batch:{provider:key_id}:g<generation>`).
pub fn batch_markers_key(key: &ProviderKey, generation: u64) -> String {
    format!("{BATCH_PREFIX}{}:g{generation}", hash_tag(key))
}

/// Where applied batch ids are remembered, as seen at one instant.
///
/// An id applied at time `t` becomes a field of the hash of generation `t / G`, where `G` is
/// a sixth of [`BATCH_ID_TTL`] (ten minutes); each write sets that hash to expire
/// `BATCH_ID_TTL` after its generation ends. So an id is remembered for at least
/// `BATCH_ID_TTL` and at most `G` longer, and a check at `now` finds every id applied in the
/// last `BATCH_ID_TTL` in the current generation or the six before it. One hash field per id,
/// written with one `HSET` per script, instead of a key with its own expiry per id.
#[derive(Debug, Clone, Copy)]
pub struct MarkerGenerations {
    now_ms: u64,
}

impl MarkerGenerations {
    /// Generations per `BATCH_ID_TTL`.
    const PER_TTL: u64 = 6;
    const GENERATION_MS: u64 = BATCH_ID_TTL.as_millis() as u64 / Self::PER_TTL;

    pub fn at(now_ms: u64) -> Self {
        Self { now_ms }
    }

    fn current(self) -> u64 {
        self.now_ms / Self::GENERATION_MS
    }

    /// The hash new ids go in.
    pub fn current_key(self, key: &ProviderKey) -> String {
        batch_markers_key(key, self.current())
    }

    /// The hashes a check must look in: the current generation's first, then the ones before
    /// it that may still hold an id applied within `BATCH_ID_TTL`.
    pub fn check_keys(self, key: &ProviderKey) -> Vec<String> {
        let g = self.current();
        (0..=Self::PER_TTL)
            .map(|back| batch_markers_key(key, g.saturating_sub(back)))
            .collect()
    }

    /// The `PEXPIRE` for the current hash: `BATCH_ID_TTL` after its generation ends.
    pub fn current_ttl_ms(self) -> u64 {
        (self.current() + 1) * Self::GENERATION_MS + BATCH_ID_TTL.as_millis() as u64 - self.now_ms
    }
}

/// Parses a counter key back into its series; `None` for keys of any other shape.
pub fn parse_counter_key(key: &str) -> Option<Series> {
    parse_key(COUNTER_PREFIX, key)
}

/// Parses a roll-up key back into its series.
pub fn parse_rollup_key(key: &str) -> Option<Series> {
    parse_key(ROLLUP_PREFIX, key)
}

fn parse_key(prefix: &str, key: &str) -> Option<Series> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('{')?;
    let (tag, metric) = rest.split_once("}:")?;
    let (provider, key_id) = tag.split_once(':')?;
    Series::new(
        decode_segment(provider).ok()?,
        decode_segment(key_id).ok()?,
        metric.parse().ok()?,
    )
    .ok()
}

/// A SCAN MATCH pattern that covers every counter whose escaped name starts with `prefix`.
/// It may match more (callers filter exactly); `None` when nothing can match.
pub fn scan_pattern(prefix: &str) -> Option<String> {
    scan_pattern_for(COUNTER_PREFIX, prefix)
}

/// The same for roll-up keys.
pub fn rollup_scan_pattern(prefix: &str) -> Option<String> {
    scan_pattern_for(ROLLUP_PREFIX, prefix)
}

fn scan_pattern_for(key_prefix: &str, prefix: &str) -> Option<String> {
    let parts: Vec<&str> = prefix.split(':').collect();
    let body = match parts.as_slice() {
        [provider] => glob_escape(provider),
        [provider, key_id] => format!("{}:{}", glob_escape(provider), glob_escape(key_id)),
        [provider, key_id, metric] => format!(
            "{}:{}}}:{}",
            glob_escape(provider),
            glob_escape(key_id),
            glob_escape(metric)
        ),
        _ => return None,
    };
    Some(format!("{key_prefix}{{{body}*"))
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_seed_layout_with_a_hash_tag() {
        let s = Series::new("openai", "key1", Metric::Req).expect("valid");
        assert_eq!(counter_key(&s), "usage:{openai:key1}:req");
        assert_eq!(buckets_key(&s), "usage-buckets:{openai:key1}:req");
        assert_eq!(
            period_key(s.key(), Metric::Cost, "d20261127"),
            "usage-period:{openai:key1}:cost:d20261127"
        );
    }

    #[test]
    fn odd_names_keep_one_hash_tag_and_parse_back() {
        let s = Series::new("a}{b", "c:d/e f", Metric::Tokens).expect("valid");
        let key = counter_key(&s);
        assert_eq!(key.matches('{').count(), 1);
        assert_eq!(key.matches('}').count(), 1);
        assert_eq!(parse_counter_key(&key), Some(s));
    }

    #[test]
    fn scan_patterns_narrow_by_prefix_parts() {
        assert_eq!(scan_pattern("open").as_deref(), Some("usage:{open*"));
        assert_eq!(
            scan_pattern("openai:k*").as_deref(),
            Some("usage:{openai:k\\**")
        );
        assert_eq!(scan_pattern("a:b:to").as_deref(), Some("usage:{a:b}:to*"));
        assert_eq!(scan_pattern("a:b:c:d"), None);
    }

    #[test]
    fn an_applied_id_stays_in_the_hashes_a_check_reads_for_its_whole_ttl() {
        let key = ProviderKey::new("openai", "key1").expect("valid");
        let ttl = BATCH_ID_TTL.as_millis() as u64;
        for applied_at in [0, 1, 599_999, 600_000, 5_000_123, 1_764_000_000_000] {
            let at = MarkerGenerations::at(applied_at);
            let hash = at.current_key(&key);
            assert!(hash.starts_with("usage-batch:{openai:key1}:g"), "{hash}");
            let expires_at = applied_at + at.current_ttl_ms();
            assert!(at.current_ttl_ms() > ttl, "the hash outlives the id's hour");
            assert!(
                at.current_ttl_ms() <= ttl + ttl / 6,
                "and not by more than ten minutes"
            );
            for later in [0, 1, ttl / 6, ttl / 2, ttl - 1] {
                let check = MarkerGenerations::at(applied_at + later);
                assert!(
                    check.check_keys(&key).contains(&hash),
                    "found {later} ms later"
                );
                assert!(applied_at + later < expires_at, "and not yet expired");
            }
        }
    }
}
