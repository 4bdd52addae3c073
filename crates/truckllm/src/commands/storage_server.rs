//! `truckllm storage-server`: the HTTP storage API over a runtime store and a config store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use truckllm_config::schema::LogSinkConfig;
use truckllm_config::{ConfigStore, FileStoreOptions, MasterKey, ProcessEnv, load_str};
use truckllm_storage_http::server::{ServerState, router, serve_with, tls_config};
use truckllm_storage_http::{Audit, Tokens, open_config_store};
use truckllm_store::{
    RedisOptions, RequestClock, RollupPolicy, ServerCache, StoreOptions, open_store, redact_url,
    storage_server_stack,
};

use crate::cli::{StorageServerArgs, StoreArgs};

pub async fn run(
    store_args: &StoreArgs,
    config_store: Option<&str>,
    args: &StorageServerArgs,
) -> Result<ExitCode> {
    if args.tls_cert.is_none() && !args.insecure_plain_http {
        bail!("give --tls-cert and --tls-key, or --insecure-plain-http to serve without TLS");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let yaml = std::fs::read_to_string(&args.tokens)
        .with_context(|| format!("cannot read {}", args.tokens.display()))?;
    let tokens = Tokens::parse(&yaml, &ProcessEnv).map_err(anyhow::Error::msg)?;
    let url = store_args.url();
    // Store calls run on each caller's clock (x-truckllm-time-ms).
    let options = StoreOptions {
        clock: Arc::new(RequestClock),
        ttl: std::time::Duration::from_secs(args.counter_ttl.max(1)),
        rollup: RollupPolicy {
            step: std::time::Duration::from_secs(args.rollup_step_secs.max(1)),
            keep: std::time::Duration::from_secs(args.rollup_keep_secs),
        },
        ..StoreOptions::default()
    };
    let redis = RedisOptions {
        tls_ca_file: store_args.store_ca.clone(),
        ..RedisOptions::default()
    };
    let inner = open_store(url, options, redis)
        .await
        .with_context(|| format!("cannot open store {}", redact_url(url)))?;
    let cache = (args.cache_ms > 0).then(|| ServerCache {
        capacity: 100_000,
        max_age: std::time::Duration::from_millis(args.cache_ms),
        clock: Arc::new(RequestClock),
    });
    let store = storage_server_stack(inner, cache);
    // The stored config is the gateways', checked as written: this server never resolves
    // `${VAR}` from its own environment nor decrypts `enc:` values (errors would echo them).
    let config: Option<Arc<dyn ConfigStore>> = match config_store {
        Some(target) => Some(
            open_config_store(target, FileStoreOptions::written_only(), None)
                .await
                .context("cannot open the config store")?,
        ),
        None => None,
    };
    let audit = Audit::new(
        truckllm_logging::start(&log_sinks(args)?).context("cannot start the audit log sinks")?,
    );
    let state = Arc::new(ServerState {
        store: Arc::clone(&store),
        config,
        tokens,
        audit: audit.clone(),
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "storage server on {scheme}://{} (store {store})",
            listener.local_addr()?
        );
    }
    serve_with(
        listener,
        router(state),
        tls,
        connection_limits(args),
        super::serve::shutdown_signal(),
    )
    .await?;
    audit.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The connection limits of the flags; every bound is at least 1.
fn connection_limits(args: &StorageServerArgs) -> truckllm_http_serve::Limits {
    let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
    truckllm_http_serve::Limits {
        header_read_timeout: secs(args.header_read_timeout_secs),
        body_read_timeout: secs(args.body_read_timeout_secs),
        idle_timeout: secs(args.idle_timeout_secs),
        tls_handshake_timeout: secs(args.tls_handshake_timeout_secs),
        max_connections: args.max_connections.max(1),
    }
}

/// The sinks of `--log-config`'s `storage.logging`, plus `--audit-log` as a file sink.
fn log_sinks(args: &StorageServerArgs) -> Result<Vec<LogSinkConfig>> {
    let mut sinks = Vec::new();
    if let Some(path) = &args.log_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let master_key = MasterKey::from_env()?;
        let loaded = load_str(&text, &ProcessEnv, master_key.as_ref())
            .with_context(|| format!("invalid config {}", path.display()))?;
        sinks.extend(loaded.resolved.storage.logging);
    }
    if let Some(path) = &args.audit_log {
        sinks.push(LogSinkConfig::File(truckllm_logging::file::audit_only(
            path,
        )));
    }
    Ok(sinks)
}
