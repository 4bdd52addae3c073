//! Search and statistics over the file sink: every rotated file of a log, oldest first, then
//! the active one, filtered by time, provider, key, client, model, status and text. Lines are
//! parsed into borrowed views (no copies of the strings), and a `--grep` text is looked for in
//! the raw line before any parsing, so tens of megabytes read in well under a second.
//!
//! Records hold client strings, so what is shown of them on a terminal goes through
//! [`printable`] (a table cell) or [`printable_json`] (a JSON line) first: no control character
//! (an ANSI escape, a newline, a carriage return) or bidirectional override reaches the screen.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::file::rotated_files;
use crate::record::timestamp;

/// Characters never printed as they are: C0 and C1 controls and DEL (`char::is_control`:
/// ANSI escapes start with ESC or CSI), and the bidirectional marks, embeddings, overrides and
/// isolates and the line and paragraph separators, which reorder or break what is shown.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` for a terminal: `\n`, `\r` and `\t` for those, `\u{1b}` for the other characters
/// of [`unprintable`], the rest as it is (no copy when there is nothing to escape).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unprintable(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON line for a terminal, still valid JSON with the same value: when it holds a character
/// of [`unprintable`] (raw DEL, C1 controls and bidirectional marks are valid JSON), it is
/// re-encoded compactly with those written as `\uXXXX`. A line that is not JSON goes through
/// [`printable`].
pub fn printable_json(line: &str) -> Cow<'_, str> {
    if !line.chars().any(unprintable) {
        return Cow::Borrowed(line);
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return Cow::Owned(printable(line).into_owned());
    };
    // Compact: nothing outside strings but tokens, and serde_json escapes C0 inside them, so
    // what is left is inside strings, where `\uXXXX` means the same character.
    let compact = value.to_string();
    let mut out = String::with_capacity(compact.len() + 8);
    for c in compact.chars() {
        if unprintable(c) {
            // All of them are in the Basic Multilingual Plane: one `\uXXXX` each.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Which statuses to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// `2xx`, `4xx`, `5xx`: by the first digit.
    Class(u16),
    Exact(u16),
}

impl FromStr for StatusFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            return match class.parse::<u16>() {
                Ok(c) if (1..=5).contains(&c) => Ok(StatusFilter::Class(c)),
                _ => Err(format!("`{s}` is not a status class (1xx to 5xx)")),
            };
        }
        match lower.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Ok(StatusFilter::Exact(code)),
            _ => Err(format!(
                "`{s}` is not a status: give a code (429) or a class (2xx, 5xx)"
            )),
        }
    }
}

impl StatusFilter {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::Class(c) => status / 100 == c,
            StatusFilter::Exact(code) => status == code,
        }
    }
}

/// What to keep. Empty fields keep everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub provider: Option<String>,
    pub key: Option<String>,
    pub client: Option<String>,
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
    pub grep: Option<String>,
}

/// A request record as read back, borrowing from the line.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RequestView<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub client: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub key: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub status: u16,
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub cost: Option<f64>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub rate_limited: bool,
}

impl RequestView<'_> {
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }
}

/// An audit record as read back.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuditView<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow, default)]
    pub category: Cow<'a, str>,
    #[serde(borrow, default)]
    pub action: Cow<'a, str>,
    #[serde(borrow, default)]
    pub actor: Cow<'a, str>,
    #[serde(borrow, default)]
    pub target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub outcome: Cow<'a, str>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// What a scan read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    pub files: usize,
    pub lines: usize,
    pub matched: usize,
    /// Lines that were not records (a torn last line after a crash, foreign text).
    pub malformed: usize,
}

/// The files of the log whose active file is `active`, oldest first, skipping rotated files
/// that ended before `since`.
pub fn log_files(active: &Path, since: Option<SystemTime>) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = rotated_files(active)?
        .into_iter()
        .filter(|(rotated_at, _)| since.is_none_or(|s| *rotated_at >= s))
        .map(|(_, path)| path)
        .collect();
    if active.exists() {
        files.push(active.to_owned());
    }
    Ok(files)
}

struct TimeRange {
    since: Option<String>,
    until: Option<String>,
}

impl TimeRange {
    fn new(filter: &Filter) -> Self {
        Self {
            since: filter.since.map(timestamp),
            until: filter.until.map(timestamp),
        }
    }

    /// Timestamps are fixed-width UTC, so they compare as strings.
    fn contains(&self, ts: &str) -> bool {
        self.since.as_deref().is_none_or(|s| ts >= s)
            && self.until.as_deref().is_none_or(|u| ts < u)
    }
}

/// Cheap tests on a raw line that rule most non-matching records out before parsing: each
/// field filter as it is serialised (`"provider":"groq"`; the file sink writes compact JSON),
/// and the timestamp, read at its place. A line that passes is still parsed and checked.
struct Prefilter {
    fields: Vec<memchr::memmem::Finder<'static>>,
}

impl Prefilter {
    fn new(filter: &Filter) -> Self {
        let fields = [
            ("provider", &filter.provider),
            ("key", &filter.key),
            ("client", &filter.client),
            ("model", &filter.model),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            let value = serde_json::to_string(value.as_ref()?).ok()?;
            Some(memchr::memmem::Finder::new(format!("\"{name}\":{value}").as_bytes()).into_owned())
        })
        .collect();
        Self { fields }
    }

    fn may_match(&self, line: &[u8], range: &TimeRange) -> bool {
        self.fields.iter().all(|f| f.find(line).is_some())
            && raw_ts(line).is_none_or(|ts| range.contains(ts))
    }
}

/// The `ts` value of a raw line, if it is where the file sink puts it.
fn raw_ts(line: &[u8]) -> Option<&str> {
    let head = &line[..line.len().min(96)];
    let start = memchr::memmem::find(head, b"\"ts\":\"")? + 6;
    std::str::from_utf8(line.get(start..start + 24)?).ok()
}

/// Calls `each` with every matching request record (and its raw line), in file order.
pub fn scan_requests(
    files: &[PathBuf],
    filter: &Filter,
    mut each: impl FnMut(&RequestView<'_>, &[u8]),
) -> std::io::Result<ScanSummary> {
    let range = TimeRange::new(filter);
    let prefilter = Prefilter::new(filter);
    scan_lines(files, filter.grep.as_deref(), |line, summary| {
        if !prefilter.may_match(line, &range) {
            return;
        }
        let Ok(record) = serde_json::from_slice::<RequestView<'_>>(line) else {
            summary.malformed += 1;
            return;
        };
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        let keep = range.contains(&record.ts)
            && eq(&filter.provider, record.provider.as_deref())
            && eq(&filter.key, record.key.as_deref())
            && eq(&filter.client, record.client.as_deref())
            && eq(&filter.model, Some(&record.model))
            && filter.status.is_none_or(|s| s.matches(record.status));
        if keep {
            summary.matched += 1;
            each(&record, line);
        }
    })
}

/// Calls `each` with every matching audit record: time, status and text filters apply.
pub fn scan_audit(
    files: &[PathBuf],
    filter: &Filter,
    mut each: impl FnMut(&AuditView<'_>, &[u8]),
) -> std::io::Result<ScanSummary> {
    let range = TimeRange::new(filter);
    scan_lines(files, filter.grep.as_deref(), |line, summary| {
        let Ok(record) = serde_json::from_slice::<AuditView<'_>>(line) else {
            summary.malformed += 1;
            return;
        };
        let keep = range.contains(&record.ts)
            && filter
                .status
                .is_none_or(|s| record.status.is_some_and(|code| s.matches(code)));
        if keep {
            summary.matched += 1;
            each(&record, line);
        }
    })
}

fn scan_lines(
    files: &[PathBuf],
    grep: Option<&str>,
    mut each: impl FnMut(&[u8], &mut ScanSummary),
) -> std::io::Result<ScanSummary> {
    let finder = grep.map(|g| memchr::memmem::Finder::new(g.as_bytes()).into_owned());
    let mut summary = ScanSummary::default();
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            // Rotated away or deleted by retention since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        summary.files += 1;
        for line in bytes.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            summary.lines += 1;
            if finder.as_ref().is_some_and(|f| f.find(line).is_none()) {
                continue;
            }
            each(line, &mut summary);
        }
    }
    Ok(summary)
}

/// What `logs stats` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Provider,
    /// `provider/key`.
    Key,
    Model,
    Client,
}

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provider" => Ok(GroupBy::Provider),
            "key" => Ok(GroupBy::Key),
            "model" => Ok(GroupBy::Model),
            "client" => Ok(GroupBy::Client),
            other => Err(format!(
                "cannot group by `{other}`: use provider, key, model or client"
            )),
        }
    }
}

impl GroupBy {
    fn group_of(self, r: &RequestView<'_>) -> String {
        let or_none = |v: &Option<Cow<'_, str>>| v.as_deref().unwrap_or("-").to_owned();
        match self {
            GroupBy::Provider => or_none(&r.provider),
            GroupBy::Key => format!("{}/{}", or_none(&r.provider), or_none(&r.key)),
            GroupBy::Model => r.model.to_string(),
            GroupBy::Client => or_none(&r.client),
        }
    }
}

/// Sums for one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupStats {
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub error_rate: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    #[serde(skip)]
    latencies: Vec<f64>,
}

/// `logs stats`: sums per group.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub groups: BTreeMap<String, GroupStats>,
}

impl Stats {
    pub fn add(&mut self, by: GroupBy, r: &RequestView<'_>) {
        let g = self.groups.entry(by.group_of(r)).or_default();
        g.requests += 1;
        g.errors += u64::from(r.is_error());
        g.rate_limited += u64::from(r.rate_limited);
        g.prompt_tokens += r.prompt_tokens;
        g.completion_tokens += r.completion_tokens;
        g.cost += r.cost.filter(|c| c.is_finite()).unwrap_or(0.0);
        if let Some(l) = r.latency_ms.filter(|l| l.is_finite()) {
            g.latencies.push(l);
        }
    }

    /// Computes rates and percentiles; call once after the last `add`.
    pub fn finish(&mut self) {
        for g in self.groups.values_mut() {
            g.error_rate = if g.requests == 0 {
                0.0
            } else {
                g.errors as f64 / g.requests as f64
            };
            g.latencies.sort_by(f64::total_cmp);
            g.latency_p50_ms = percentile(&g.latencies, 50.0);
            g.latency_p95_ms = percentile(&g.latencies, 95.0);
            g.latency_p99_ms = percentile(&g.latencies, 99.0);
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse_codes_and_classes() {
        assert_eq!("2xx".parse(), Ok(StatusFilter::Class(2)));
        assert_eq!("5XX".parse(), Ok(StatusFilter::Class(5)));
        assert_eq!("429".parse(), Ok(StatusFilter::Exact(429)));
        assert!("9xx".parse::<StatusFilter>().is_err());
        assert!("42".parse::<StatusFilter>().is_err());
        assert!("abc".parse::<StatusFilter>().is_err());
        assert!(StatusFilter::Class(5).matches(503) && !StatusFilter::Class(5).matches(429));
    }

    #[test]
    fn client_strings_print_without_control_characters() {
        let hostile = "gpt\u{1b}[2J\u{1b}]0;owned\u{7}\nfake line\r\u{9b}31m\u{202e}txt.exe\u{7f}";
        let shown = printable(hostile);
        assert!(!shown.chars().any(unprintable), "{shown}");
        assert_eq!(
            shown,
            "gpt\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nfake line\\r\\u{9b}31m\\u{202e}txt.exe\\u{7f}"
        );
        assert!(matches!(printable("gpt-4o-mini é 模型"), Cow::Borrowed(_)));

        let line = serde_json::json!({"model": hostile, "n": 1}).to_string();
        assert!(line.contains('\u{9b}'), "serde_json leaves C1 controls raw");
        let shown = printable_json(&line);
        assert!(!shown.chars().any(unprintable), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still json");
        assert_eq!(back["model"], hostile, "the same value");
        assert!(matches!(
            printable_json(r#"{"model":"é"}"#),
            Cow::Borrowed(_)
        ));
        assert!(!printable_json("not json \u{1b}[31m").contains('\u{1b}'));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
