//! Names of what the runtime store counts: a provider key, a metric, and the series they make.
//!
//! A [`Series`] is `(provider, key_id, metric)`. Provider and key ids are user-chosen strings and
//! may contain anything (`:`, `{`, `/`, spaces, unicode); [`encode_segment`] escapes the few
//! characters that carry meaning in a storage key so that distinct names never collide.

use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// Longest provider or key id accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Largest magnitude accepted for a value or a delta. Usage never comes near it, and it keeps
/// every sum finite, so no backend can be driven to store an infinity.
pub const MAX_ABS_VALUE: f64 = 1e15;

/// A usage metric. `latency` is the sum of milliseconds, so mean latency is `latency / req`.
/// `cooldown` is not usage: it holds the Unix second until which a failing key is skipped, so
/// that every gateway instance skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Req,
    Tokens,
    PromptTokens,
    CompletionTokens,
    /// Prompt tokens written to a provider's prompt cache (part of `prompt_tokens`).
    CacheWriteTokens,
    /// Prompt tokens read from a provider's prompt cache (part of `prompt_tokens`).
    CacheReadTokens,
    /// Completion tokens spent reasoning (part of `completion_tokens`).
    ReasoningTokens,
    Errors,
    Latency,
    Cost,
    Cooldown,
}

impl Metric {
    /// Every metric, in a fixed order.
    pub const ALL: [Metric; 11] = [
        Metric::Req,
        Metric::Tokens,
        Metric::PromptTokens,
        Metric::CompletionTokens,
        Metric::CacheWriteTokens,
        Metric::CacheReadTokens,
        Metric::ReasoningTokens,
        Metric::Errors,
        Metric::Latency,
        Metric::Cost,
        Metric::Cooldown,
    ];

    /// The wire and key name of the metric (`req`, `tokens`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Req => "req",
            Metric::Tokens => "tokens",
            Metric::PromptTokens => "prompt_tokens",
            Metric::CompletionTokens => "completion_tokens",
            Metric::CacheWriteTokens => "cache_write_tokens",
            Metric::CacheReadTokens => "cache_read_tokens",
            Metric::ReasoningTokens => "reasoning_tokens",
            Metric::Errors => "errors",
            Metric::Latency => "latency",
            Metric::Cost => "cost",
            Metric::Cooldown => "cooldown",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                StoreError::invalid(format!(
                    "unknown metric {s:?}; known metrics: {}",
                    known.join(", ")
                ))
            })
    }
}

/// One provider API key, by its configured id (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderKey {
    provider: String,
    key_id: String,
}

impl ProviderKey {
    /// Validates and builds a provider key. Names must be non-empty and at most
    /// [`MAX_NAME_LEN`] bytes; any characters are allowed.
    pub fn new(provider: impl Into<String>, key_id: impl Into<String>) -> Result<Self, StoreError> {
        let provider = provider.into();
        let key_id = key_id.into();
        check_name("provider", &provider)?;
        check_name("key id", &key_id)?;
        Ok(Self { provider, key_id })
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The series of one metric of this key.
    pub fn series(&self, metric: Metric) -> Series {
        Series {
            key: self.clone(),
            metric,
        }
    }

    /// `provider:key_id` with both segments escaped; unambiguous, used in keys and listings.
    pub fn encoded(&self) -> String {
        format!(
            "{}:{}",
            encode_segment(&self.provider),
            encode_segment(&self.key_id)
        )
    }
}

/// One counted quantity: a metric of one provider key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    key: ProviderKey,
    metric: Metric,
}

impl Series {
    /// Validates and builds a series (see [`ProviderKey::new`]).
    pub fn new(
        provider: impl Into<String>,
        key_id: impl Into<String>,
        metric: Metric,
    ) -> Result<Self, StoreError> {
        Ok(ProviderKey::new(provider, key_id)?.series(metric))
    }

    pub fn key(&self) -> &ProviderKey {
        &self.key
    }

    pub fn provider(&self) -> &str {
        self.key.provider()
    }

    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Parses the escaped form printed by [`Display`](fmt::Display): `provider:key_id:metric`.
    pub fn parse_encoded(s: &str) -> Result<Self, StoreError> {
        let mut parts = s.split(':');
        let (Some(p), Some(k), Some(m), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::invalid(format!(
                "series {s:?} is not of the form provider:key_id:metric"
            )));
        };
        Series::new(decode_segment(p)?, decode_segment(k)?, m.parse()?)
    }
}

impl fmt::Display for Series {
    /// `provider:key_id:metric`, with the provider and key id escaped by [`encode_segment`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key.encoded(), self.metric)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid(format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// Rejects NaN, infinities and magnitudes above [`MAX_ABS_VALUE`], naming what was wrong.
pub fn check_value(what: &str, value: f64) -> Result<f64, StoreError> {
    if !value.is_finite() {
        return Err(StoreError::invalid(format!(
            "{what} must be a finite number, got {value}"
        )));
    }
    if value.abs() > MAX_ABS_VALUE {
        return Err(StoreError::invalid(format!(
            "{what} {value:e} is out of range (|x| <= {MAX_ABS_VALUE:e})"
        )));
    }
    Ok(value)
}

/// Escapes the characters that separate or tag parts of a storage key (`%`, `:`, `{`, `}`) and
/// control characters as `%XX`. Everything else, unicode included, is kept as it is.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' | ':' | '{' | '}' => push_escaped(&mut out, c as u8),
            c if c.is_ascii_control() => push_escaped(&mut out, c as u8),
            c => out.push(c),
        }
    }
    out
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xF)] as char);
}

/// Reverses [`encode_segment`].
pub fn decode_segment(encoded: &str) -> Result<String, StoreError> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| StoreError::invalid(format!("bad escape in {encoded:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| StoreError::invalid(format!("{encoded:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_round_trip_through_the_encoded_form() {
        for name in [
            "a:b",
            "{tag}",
            "x/y",
            "with space",
            "ünï😀",
            "100%",
            "a%3Ab",
            "\n",
        ] {
            let series = Series::new(name, name, Metric::Tokens).expect("valid");
            let parsed = Series::parse_encoded(&series.to_string()).expect("parses");
            assert_eq!(parsed, series, "{name:?}");
        }
    }

    #[test]
    fn escaping_keeps_distinct_names_distinct() {
        let a = Series::new("a:b", "c", Metric::Req).expect("valid");
        let b = Series::new("a", "b:c", Metric::Req).expect("valid");
        assert_ne!(a.to_string(), b.to_string());
        assert_ne!(encode_segment("a%3Ab"), encode_segment("a:b"));
    }

    #[test]
    fn bad_names_and_values_are_rejected() {
        assert!(Series::new("", "k", Metric::Req).is_err());
        assert!(Series::new("p", "k".repeat(300), Metric::Req).is_err());
        assert!("bogus".parse::<Metric>().is_err());
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e16] {
            assert!(check_value("value", v).is_err(), "{v}");
        }
        assert_eq!(check_value("value", -2.5).ok(), Some(-2.5));
    }
}
