//! `truckllm usage get|set|incr|list|export`: the seed's debug commands over any store, and
//! the export of roll-ups (the last hour, from the runtime store) or of the long-term usage
//! history (`--db`, from PostgreSQL).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
#[cfg(feature = "postgres")]
use truckllm_store::postgres::history::{HistoryGroup, HistoryStep, read_history};
use truckllm_store::{ListedSeries, RuntimeStoreExt, Series, SeriesRollup};

use super::{open, within};
use crate::cli::{SeriesArgs, StoreArgs, UsageCommand};

pub async fn run(args: &StoreArgs, command: UsageCommand) -> Result<ExitCode> {
    #[cfg(feature = "postgres")]
    if let UsageCommand::Export {
        since,
        format,
        db: Some(db),
        by,
        step,
        ..
    } = &command
    {
        export_history(db, *since, format, *by, *step).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = open(args).await?;
    match command {
        UsageCommand::Get { series, window } => {
            let series = to_series(series)?;
            let value = match window {
                Some(secs) => {
                    within(args, store.window(&series, Duration::from_secs_f64(secs))).await?
                }
                None => within(args, store.get(&series)).await?,
            };
            println!("{value}");
        }
        UsageCommand::Set { series, value } => {
            within(args, store.set(&to_series(series)?, value)).await?;
        }
        UsageCommand::Incr { series, delta } => {
            println!(
                "{}",
                within(args, store.increment(&to_series(series)?, delta)).await?
            );
        }
        UsageCommand::List { prefix } => {
            print!("{}", table(&within(args, store.list(&prefix)).await?));
        }
        UsageCommand::Export {
            since,
            format,
            prefix,
            ..
        } => {
            let since_ms = unix_ms(since);
            let rollups = within(args, store.rollups(&prefix, since_ms)).await?;
            export(&rollups, &format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn unix_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(feature = "postgres")]
/// Writes the usage history from `since` as JSON lines or CSV, one row per group, metric and
/// hour or day.
async fn export_history(
    db: &str,
    since: std::time::SystemTime,
    format: &str,
    by: HistoryGroup,
    step: HistoryStep,
) -> Result<()> {
    use std::io::Write as _;
    let options = truckllm_store::PostgresOptions::default();
    let pool = truckllm_store::postgres::connect_pool(db, &options).await?;
    let rows = read_history(&pool, by, step, unix_ms(since)).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == "csv" {
        writeln!(out, "start,{by},metric,value")?;
    }
    for row in rows {
        let start = truckllm_logging::record::timestamp(
            std::time::UNIX_EPOCH + Duration::from_millis(row.start_ms),
        );
        let line = if format == "csv" {
            [
                start,
                csv_field(&row.group),
                row.metric,
                row.value.to_string(),
            ]
            .join(",")
        } else {
            serde_json::json!({
                "start": start,
                "start_ms": row.start_ms,
                "step": step.as_str(),
                by.as_str(): row.group,
                "metric": row.metric,
                "value": row.value,
            })
            .to_string()
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes roll-ups as JSON lines or CSV (RFC 4180), one row per series and step.
fn export(rollups: &[SeriesRollup], format: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == "csv" {
        writeln!(out, "start,provider,key_id,metric,value")?;
    }
    for rollup in rollups {
        let s = &rollup.series;
        for point in &rollup.points {
            let start = truckllm_logging::record::timestamp(
                std::time::UNIX_EPOCH + Duration::from_millis(point.start_ms),
            );
            let line = if format == "csv" {
                [
                    start,
                    csv_field(s.provider()),
                    csv_field(s.key_id()),
                    s.metric().to_string(),
                    point.value.to_string(),
                ]
                .join(",")
            } else {
                serde_json::json!({
                    "start": start,
                    "start_ms": point.start_ms,
                    "provider": s.provider(),
                    "key_id": s.key_id(),
                    "metric": s.metric().to_string(),
                    "value": point.value,
                })
                .to_string()
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // stdout closed (piped to head)
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

fn to_series(args: SeriesArgs) -> Result<Series> {
    Ok(Series::new(args.provider, args.key_id, args.metric)?)
}

/// A plain-text table: series (escaped form), value, time to live.
fn table(rows: &[ListedSeries]) -> String {
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|row| {
            let ttl = row
                .ttl
                .map_or_else(|| "-".to_owned(), |t| format!("{:.1}s", t.as_secs_f64()));
            [row.series.to_string(), row.value.to_string(), ttl]
        })
        .collect();
    let header = ["SERIES".to_owned(), "VALUE".to_owned(), "TTL".to_owned()];
    let widths: Vec<usize> = (0..3)
        .map(|c| {
            cells
                .iter()
                .chain([&header])
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in [&header].into_iter().chain(cells.iter()) {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:>w2$}\n",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out
}
