//! The Redis key layout, in one place.
//!
//! - Counter (the seed's layout): `usage:{provider:key_id}:metric`, a float with the counter TTL.
//! - Window buckets: `usage-buckets:{provider:key_id}:metric`, a hash of bucket index to float.
//! - Roll-ups: `usage-rollup:{provider:key_id}:metric`, a hash of step index to float, kept
//!   for the roll-up retention.
//! - Applied batch ids: `usage-batch:{provider:key_id}:id`, kept an hour (exactly-once batches).
//!
//! The braces are a Redis Cluster hash tag: every key of one provider key lands in one slot, so
//! the scripts that touch several metrics of a key stay single-slot. Provider and key ids are
//! escaped with [`encode_segment`], which escapes `{`, `}` and `:`, so the tag always ends where
//! intended and distinct names never share a key.

use crate::series::{ProviderKey, Series, decode_segment};

pub const COUNTER_PREFIX: &str = "usage:";
pub const BUCKETS_PREFIX: &str = "usage-buckets:";
pub const BATCH_PREFIX: &str = "usage-batch:";
pub const ROLLUP_PREFIX: &str = "usage-rollup:";

/// The hash tag shared by every key of one provider key, braces included.
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

/// Marks a batch id as applied to one provider key (`usage-batch:{provider:key_id}:id`).
pub fn batch_marker_key(key: &ProviderKey, batch_id: &str) -> String {
    format!("{BATCH_PREFIX}{}:{batch_id}", hash_tag(key))
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
    use crate::series::Metric;

    #[test]
    fn keys_follow_the_seed_layout_with_a_hash_tag() {
        let s = Series::new("openai", "key1", Metric::Req).expect("valid");
        assert_eq!(counter_key(&s), "usage:{openai:key1}:req");
        assert_eq!(buckets_key(&s), "usage-buckets:{openai:key1}:req");
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
}
