//! One module per command; [`run`] dispatches.

#[cfg(all(feature = "redis", feature = "postgres"))]
mod bench;
#[cfg(all(feature = "redis", feature = "postgres"))]
mod bench_gateway;
#[cfg(all(feature = "redis", feature = "postgres"))]
mod bench_logs;
#[cfg(all(feature = "redis", feature = "postgres"))]
mod bench_outage;
#[cfg(all(feature = "redis", feature = "postgres"))]
mod bench_streams;
mod config;
mod keys;
mod logs;
mod serve;
mod storage_server;
mod usage;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use truckllm_store::{RedisOptions, RuntimeStore, StoreOptions, open_store, redact_url};

#[cfg(all(feature = "redis", feature = "postgres"))]
use crate::cli::BenchCommand;
use crate::cli::{Cli, Command, StoreArgs};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            serve::serve(&cli.config, cli.config_store.as_deref(), &cli.store, &args).await
        }
        Command::MockUpstream(args) => serve::mock_upstream(&args).await,
        Command::StorageServer(args) => {
            storage_server::run(&cli.store, cli.config_store.as_deref(), &args).await
        }
        Command::Usage(command) => usage::run(&cli.store, command).await,
        Command::Health => health(&cli.store).await,
        #[cfg(all(feature = "redis", feature = "postgres"))]
        Command::Bench(command) => match command {
            BenchCommand::Store(args) => bench::store(&cli.store, &args).await,
            BenchCommand::Gateway(args) => bench_gateway::run(&cli.store, &args).await,
            BenchCommand::Outage(args) => bench_outage::run(&args).await,
            BenchCommand::Logs(args) => bench_logs::run(&args).await,
            BenchCommand::Streams(args) => bench_streams::run(&args).await,
        },
        Command::Config(command) => {
            let target = config::Target {
                path: &cli.config,
                store: cli.config_store.as_deref(),
                token: cli.store.store_token.clone(),
            };
            config::run(&target, command).await
        }
        Command::Logs(command) => logs::run(&cli.config, command).await,
        Command::Keys { admin, command } => keys::keys(&admin, command).await,
        Command::Teams { admin, command } => keys::teams(&admin, command).await,
    }
}

/// Opens the store named by `--store`, bounded by `--timeout`.
pub async fn open(args: &StoreArgs) -> Result<Arc<dyn RuntimeStore>> {
    open_url(args, args.url()).await
}

/// Opens the store at `url`, bounded by `--timeout`: `http(s)://` is a storage server,
/// anything else goes to [`open_store`].
pub async fn open_url(args: &StoreArgs, url: &str) -> Result<Arc<dyn RuntimeStore>> {
    open_url_with(args, url, StoreOptions::default()).await
}

/// [`open_url`] with store options (roll-up policy, TTL) other than the defaults; an
/// `http(s)://` store follows the storage server's own.
pub async fn open_url_with(
    args: &StoreArgs,
    url: &str,
    options: StoreOptions,
) -> Result<Arc<dyn RuntimeStore>> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let options = truckllm_storage_http::HttpOptions {
            token: args.store_token.clone(),
            timeout: args.timeout() / 2,
            connect_timeout: args.timeout() / 4,
            tls_ca_file: args.store_ca.clone(),
            ..truckllm_storage_http::HttpOptions::default()
        };
        let store = within(
            args,
            truckllm_storage_http::HttpStore::connect(url, options),
        )
        .await
        .with_context(|| format!("cannot open store {}", redact_url(url)))?;
        return Ok(Arc::new(store));
    }
    let redis_options = RedisOptions {
        connect_timeout: args.timeout() / 2,
        response_timeout: args.timeout() / 2,
        tls_ca_file: args.store_ca.clone(),
        ..RedisOptions::default()
    };
    within(args, open_store(url, options, redis_options))
        .await
        .with_context(|| format!("cannot open store {}", redact_url(url)))
}

/// Runs `call`, failing with a clear error if it takes longer than `--timeout`.
pub async fn within<T, E>(args: &StoreArgs, call: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(args.timeout(), call).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("no answer from the store within {} s", args.timeout),
    }
}

async fn health(args: &StoreArgs) -> Result<ExitCode> {
    let store = open(args).await?;
    within(args, store.health())
        .await
        .with_context(|| format!("{store} is unhealthy"))?;
    println!("ok: {store}");
    Ok(ExitCode::SUCCESS)
}
