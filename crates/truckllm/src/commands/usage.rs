//! `truckllm usage get|set|incr|list`: the seed's debug commands over any store.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use truckllm_store::{ListedSeries, Series};

use super::{open, within};
use crate::cli::{SeriesArgs, StoreArgs, UsageCommand};

pub async fn run(args: &StoreArgs, command: UsageCommand) -> Result<ExitCode> {
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
    }
    Ok(ExitCode::SUCCESS)
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
