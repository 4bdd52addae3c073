//! `truckllm logs search|stats`: reads the file sink's request log (or audit log), rotated
//! files included, or the PostgreSQL sink's tables (in SQL), and prints matches as a table or
//! JSON lines, or sums per group. Records
//! hold client strings, so every string printed goes through [`search::printable`] or
//! [`search::printable_json`]: no control character or bidirectional override reaches the
//! terminal.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use truckllm_config::schema::{FileSinkConfig, LogSinkConfig};
use truckllm_logging::file::audit_path_of;
use truckllm_logging::search::{
    self, AuditView, Filter, GroupBy, RequestView, ScanSummary, Stats, printable, printable_json,
};

use crate::cli::{LogFilterArgs, LogsCommand};

pub async fn run(config: &Path, command: LogsCommand) -> Result<ExitCode> {
    match command {
        LogsCommand::Search {
            filter,
            audit,
            limit,
            json,
        } => search_logs(config, &filter, audit, limit, json).await,
        LogsCommand::Stats { filter, by, json } => stats(config, &filter, by, json).await,
    }
}

/// Where the records are read from.
enum Source {
    /// The request and audit logs of a file sink.
    Files { requests: PathBuf, audit: PathBuf },
    /// The PostgreSQL sink's tables.
    Sql(String),
}

impl Source {
    /// `--db`, `--file`, else the config's first file sink, else its PostgreSQL sink.
    fn of(config: &Path, args: &LogFilterArgs) -> Result<Self> {
        if let Some(url) = &args.db {
            return Ok(Source::Sql(url.clone()));
        }
        if let Some(file) = &args.file {
            let sink = FileSinkConfig::at(file.display().to_string());
            return Ok(Source::Files {
                requests: file.clone(),
                audit: audit_path_of(&sink),
            });
        }
        let text = std::fs::read_to_string(config).with_context(|| {
            format!(
                "cannot read {}; give the log with --file PATH or --db URL",
                config.display()
            )
        })?;
        let parsed = truckllm_config::parse(&text)
            .with_context(|| format!("invalid config {}", config.display()))?;
        let sinks = &parsed.storage.logging;
        if let Some(sink) = sinks.iter().find_map(|s| match s {
            LogSinkConfig::File(f) => Some(f),
            _ => None,
        }) {
            if sink.path.contains("${") {
                bail!("the file sink's path uses a variable; give the log with --file PATH");
            }
            return Ok(Source::Files {
                requests: PathBuf::from(&sink.path),
                audit: audit_path_of(sink),
            });
        }
        match sinks.iter().find_map(|s| match s {
            LogSinkConfig::Postgres(p) => Some(p),
            _ => None,
        }) {
            Some(pg) if !pg.url.contains("${") => Ok(Source::Sql(pg.url.clone())),
            Some(_) => bail!("the postgres sink's url uses a variable; give it with --db URL"),
            None => bail!(
                "{} has no file or postgres sink under storage.logging; give the log with --file PATH or --db URL",
                config.display()
            ),
        }
    }

    /// How the source is named in messages.
    fn shown(&self, audit: bool) -> String {
        match self {
            Source::Files { requests, .. } if !audit => requests.display().to_string(),
            Source::Files { audit, .. } => audit.display().to_string(),
            Source::Sql(url) => truckllm_store::redact_url(url),
        }
    }

    /// Calls `each` with every matching record's raw JSON, oldest first.
    async fn scan(
        &self,
        audit: bool,
        filter: &Filter,
        mut each: impl FnMut(&[u8]),
    ) -> Result<ScanSummary> {
        let shown = self.shown(audit);
        match self {
            #[cfg(feature = "postgres")]
            Source::Sql(url) => truckllm_logging::postgres::scan_sql(url, audit, filter, each)
                .await
                .map_err(|e| anyhow::anyhow!("cannot search {shown}: {e}")),
            #[cfg(not(feature = "postgres"))]
            Source::Sql(_) => anyhow::bail!(
                "cannot search {shown}: this build has no PostgreSQL support (cargo feature `postgres`)"
            ),
            Source::Files {
                requests,
                audit: audit_log,
            } => {
                let path = if audit { audit_log } else { requests };
                let files = files_of(path, filter.since)?;
                let scanned = if audit {
                    search::scan_audit(&files, filter, |_, raw| each(raw))
                } else {
                    search::scan_requests(&files, filter, |_, raw| each(raw))
                };
                scanned.with_context(|| format!("cannot read {shown}"))
            }
        }
    }
}

fn filter_of(args: &LogFilterArgs) -> Filter {
    Filter {
        since: args.since,
        until: args.until,
        provider: args.provider.clone(),
        key: args.key.clone(),
        client: args.client.clone(),
        model: args.model.clone(),
        status: args.status,
        grep: args.grep.clone(),
    }
}

fn files_of(path: &Path, since: Option<std::time::SystemTime>) -> Result<Vec<PathBuf>> {
    let files = search::log_files(path, since)
        .with_context(|| format!("cannot list the log files of {}", path.display()))?;
    if files.is_empty() {
        bail!("no log at {} (nor rotated files beside it)", path.display());
    }
    Ok(files)
}

async fn search_logs(
    config: &Path,
    args: &LogFilterArgs,
    audit: bool,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let source = Source::of(config, args)?;
    let filter = filter_of(args);
    let keep = limit.unwrap_or(usize::MAX);
    let mut shown: VecDeque<String> = VecDeque::new();
    let summary = source
        .scan(audit, &filter, |raw| {
            if keep == 0 {
                return;
            }
            let line = if json {
                Some(json_line(raw))
            } else if audit {
                serde_json::from_slice(raw).ok().map(|r| audit_row(&r))
            } else {
                serde_json::from_slice(raw).ok().map(|r| request_row(&r))
            };
            if let Some(line) = line {
                if shown.len() == keep {
                    shown.pop_front();
                }
                shown.push_back(line);
            }
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if !json {
        let header = if audit {
            "time                      category action                 actor        outcome  code target  message"
        } else {
            "time                      code provider/key             model              client       prompt  compl  latency_ms  request_id  error"
        };
        let _ = writeln!(out, "{header}");
    }
    for line in shown {
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS); // stdout closed (e.g. piped to head)
        }
    }
    let _ = out.flush();
    eprintln!("{}", summary_line(&source, &summary));
    Ok(ExitCode::SUCCESS)
}

fn summary_line(source: &Source, summary: &ScanSummary) -> String {
    let skipped = if summary.malformed > 0 {
        format!(" ({} lines skipped: not records)", summary.malformed)
    } else {
        String::new()
    };
    match source {
        Source::Sql(_) => format!(
            "{} of {} records matched in the database{skipped}",
            summary.matched, summary.lines
        ),
        Source::Files { .. } => format!(
            "{} of {} records matched in {} files{skipped}",
            summary.matched, summary.lines, summary.files
        ),
    }
}

fn audit_row(r: &AuditView<'_>) -> String {
    format!(
        "{}  {:<7} {:<22} {:<12} {:<8} {:<4} {}  {}",
        printable(&r.ts),
        printable(&r.category),
        printable(&r.action),
        printable(&r.actor),
        printable(&r.outcome),
        r.status.map_or_else(|| "-".into(), |s| s.to_string()),
        printable(r.target.as_deref().unwrap_or("-")),
        printable(r.message.as_deref().unwrap_or(""))
    )
}

fn request_row(r: &RequestView<'_>) -> String {
    format!(
        "{}  {:<3} {:<24} {:<18} {:<12} {:>6} {:>6} {:>9.1}  {}{}",
        printable(&r.ts),
        r.status,
        format!(
            "{}/{}",
            printable(r.provider.as_deref().unwrap_or("-")),
            printable(r.key.as_deref().unwrap_or("-"))
        ),
        printable(&r.model),
        printable(r.client.as_deref().unwrap_or("-")),
        r.prompt_tokens,
        r.completion_tokens,
        r.latency_ms.unwrap_or(f64::NAN),
        printable(&r.request_id),
        r.error
            .as_deref()
            .map_or_else(String::new, |e| format!("  {}", printable(e)))
    )
}

/// A raw record line, safe to print.
fn json_line(raw: &[u8]) -> String {
    printable_json(&String::from_utf8_lossy(raw)).into_owned()
}

async fn stats(config: &Path, args: &LogFilterArgs, by: GroupBy, json: bool) -> Result<ExitCode> {
    let source = Source::of(config, args)?;
    let mut stats = Stats::default();
    let summary = source
        .scan(false, &filter_of(args), |raw| {
            if let Ok(r) = serde_json::from_slice::<RequestView<'_>>(raw) {
                stats.add(by, &r);
            }
        })
        .await?;
    stats.finish();
    let mut out = std::io::stdout().lock();
    if json {
        for (group, g) in &stats.groups {
            let mut value = serde_json::to_value(g)?;
            value["group"] = serde_json::Value::String(group.clone());
            let _ = writeln!(out, "{}", printable_json(&value.to_string()));
        }
    } else {
        let _ = writeln!(
            out,
            "{:<28} {:>8} {:>7} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
            "group",
            "requests",
            "errors",
            "err_rate",
            "limited",
            "prompt",
            "completion",
            "cost",
            "p50_ms",
            "p95_ms",
            "p99_ms"
        );
        for (group, g) in &stats.groups {
            let _ = writeln!(
                out,
                "{:<28} {:>8} {:>7} {:>7.2}% {:>8} {:>10} {:>10} {:>10.4} {:>8.1} {:>8.1} {:>8.1}",
                printable(group),
                g.requests,
                g.errors,
                g.error_rate * 100.0,
                g.rate_limited,
                g.prompt_tokens,
                g.completion_tokens,
                g.cost,
                g.latency_p50_ms,
                g.latency_p95_ms,
                g.latency_p99_ms
            );
        }
    }
    eprintln!("{}", summary_line(&source, &summary));
    Ok(ExitCode::SUCCESS)
}
