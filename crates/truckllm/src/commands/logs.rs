//! `truckllm logs search|stats`: reads the file sink's request log (or audit log), rotated
//! files included, and prints matches as a table or JSON lines, or sums per group. Records
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
use truckllm_logging::search::{self, Filter, GroupBy, Stats, printable, printable_json};

use crate::cli::{LogFilterArgs, LogsCommand};

pub fn run(config: &Path, command: LogsCommand) -> Result<ExitCode> {
    match command {
        LogsCommand::Search {
            filter,
            audit,
            limit,
            json,
        } => search_logs(config, &filter, audit, limit, json),
        LogsCommand::Stats { filter, by, json } => stats(config, &filter, by, json),
    }
}

/// The request and audit log paths: `--file`, else the first file sink of the config.
fn log_paths(config: &Path, args: &LogFilterArgs) -> Result<(PathBuf, PathBuf)> {
    if let Some(file) = &args.file {
        let sink = FileSinkConfig::at(file.display().to_string());
        return Ok((file.clone(), audit_path_of(&sink)));
    }
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "cannot read {}; give the log with --file PATH",
            config.display()
        )
    })?;
    let parsed = truckllm_config::parse(&text)
        .with_context(|| format!("invalid config {}", config.display()))?;
    let Some(sink) = parsed.storage.logging.iter().find_map(|s| match s {
        LogSinkConfig::File(f) => Some(f),
        _ => None,
    }) else {
        bail!(
            "{} has no file sink under storage.logging; give the log with --file PATH",
            config.display()
        );
    };
    if sink.path.contains("${") {
        bail!("the file sink's path uses a variable; give the log with --file PATH");
    }
    Ok((PathBuf::from(&sink.path), audit_path_of(sink)))
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

fn search_logs(
    config: &Path,
    args: &LogFilterArgs,
    audit: bool,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let (requests, audit_log) = log_paths(config, args)?;
    let path = if audit { audit_log } else { requests };
    let files = files_of(&path, args.since)?;
    let filter = filter_of(args);
    let keep = limit.unwrap_or(usize::MAX);
    let mut shown: VecDeque<String> = VecDeque::new();
    let mut push = |line: String| {
        if keep == 0 {
            return;
        }
        if shown.len() == keep {
            shown.pop_front();
        }
        shown.push_back(line);
    };
    let summary = if audit {
        search::scan_audit(&files, &filter, |r, raw| {
            push(if json {
                json_line(raw)
            } else {
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
            })
        })
    } else {
        search::scan_requests(&files, &filter, |r, raw| {
            push(if json {
                json_line(raw)
            } else {
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
            })
        })
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
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
    eprintln!(
        "{} of {} records matched in {} files{}",
        summary.matched,
        summary.lines,
        summary.files,
        if summary.malformed > 0 {
            format!(" ({} lines skipped: not records)", summary.malformed)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A raw record line, safe to print.
fn json_line(raw: &[u8]) -> String {
    printable_json(&String::from_utf8_lossy(raw)).into_owned()
}

fn stats(config: &Path, args: &LogFilterArgs, by: GroupBy, json: bool) -> Result<ExitCode> {
    let (path, _) = log_paths(config, args)?;
    let files = files_of(&path, args.since)?;
    let mut stats = Stats::default();
    let summary = search::scan_requests(&files, &filter_of(args), |r, _| stats.add(by, r))
        .with_context(|| format!("cannot read {}", path.display()))?;
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
    eprintln!(
        "{} of {} records in {} files",
        summary.matched, summary.lines, summary.files
    );
    Ok(ExitCode::SUCCESS)
}
