//! `truckllm serve` (the gateway, or with `--demo` a self-contained demo) and
//! `truckllm mock-upstream`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use truckllm_config::schema::{ConfigKind, OutageLimitsConfig};
use truckllm_config::{
    ConfigStore, FileConfigStore, FileStoreOptions, LiveConfig, MasterKey, ProcessEnv,
};
use truckllm_gateway::alerts::{forward, storage_record};
use truckllm_gateway::bootstrap::{demo_config, runtime_store_url};
use truckllm_gateway::mock::{MockOptions, MockUpstream};
use truckllm_gateway::{Gateway, UpstreamOptions, UpstreamProxy};
use truckllm_storage_http::open_config_store;
use truckllm_store::{OutageLimits, ResilientOptions, RollupPolicy, StoreOptions, gateway_stack};

use super::open_url_with;

/// Prints a line to stdout, ignoring a closed stdout: the gateway keeps serving (and shuts down
/// cleanly) whether or not anyone reads its banner.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The same for stderr.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
use crate::cli::{MockArgs, ServeArgs, StoreArgs};

pub async fn serve(
    config: &Path,
    config_store: Option<&str>,
    store_args: &StoreArgs,
    args: &ServeArgs,
) -> Result<ExitCode> {
    // The demo's files and mock live as long as the gateway.
    let mut _demo_dir = None;
    let mut demo_admin_key = None;
    let config_path: PathBuf = if args.demo {
        let listen = args
            .listen
            .map_or_else(|| "127.0.0.1:2906".to_owned(), |a| a.to_string());
        let admin_key = demo_admin_key_new();
        let (dir, path) = start_demo(&listen, &admin_key).await?;
        _demo_dir = Some(dir);
        demo_admin_key = Some(admin_key);
        path
    } else {
        config.to_owned()
    };

    // The demo runs its own file, whatever --config-store says.
    let config_store = config_store.filter(|_| !args.demo);
    let (live, source, poll) = start_config(&config_path, config_store, store_args).await?;
    let _watch = live.watch_polling(poll)?;
    let running = live.current();

    let url = match &store_args.store {
        Some(url) => url.clone(),
        None => runtime_store_url(&running.resolved.storage.runtime).map_err(anyhow::Error::msg)?,
    };
    // The recorder must exist before any metric handle is registered.
    let prometheus = truckllm_gateway::metrics::install().map_err(anyhow::Error::msg)?;
    // An http store's token: --store-token / TRUCKLLM_STORE_TOKEN, else storage.runtime.api_key.
    let mut store_args = store_args.clone();
    if store_args.store_token.is_none() {
        store_args.store_token = running
            .resolved
            .storage
            .runtime
            .api_key
            .as_ref()
            .map(|k| k.expose().to_owned());
    }
    let logger = truckllm_logging::start(&running.resolved.storage.logging)
        .context("cannot start the log sinks (storage.logging)")?;
    #[cfg(feature = "postgres")]
    probe_log_databases(&running.resolved.storage.logging);
    let runtime_config = &running.resolved.storage.runtime;
    let store_options = StoreOptions {
        rollup: RollupPolicy {
            step: Duration::from_secs(runtime_config.rollup_step_secs),
            keep: Duration::from_secs(runtime_config.rollup_keep_secs),
        },
        ..StoreOptions::default()
    };
    let inner = open_url_with(&store_args, &url, store_options.clone()).await?;
    // A shared store may go away: it is served from memory meanwhile and replayed exactly
    // once; concurrent reservations share round trips (see truckllm_store::stack).
    let runtime = &running.resolved.storage.runtime;
    let limits = match runtime.outage_limits {
        OutageLimitsConfig::FailOpen => OutageLimits::FailOpen,
        OutageLimitsConfig::Share => OutageLimits::Share {
            instances: runtime.expected_instances,
        },
    };
    let resilient = ResilientOptions {
        limits,
        call_timeout: Duration::from_millis(runtime.call_timeout_ms),
        ..ResilientOptions::default()
    };
    #[cfg(feature = "postgres")]
    let rollup = store_options.rollup;
    let stack = gateway_stack(inner, store_options, resilient);
    // The dashboard's storage page follows the same events as the alerts.
    let watched = stack.events.as_ref().map(|e| e.resubscribe());
    if let Some(events) = stack.events {
        forward(events, logger.clone(), storage_record);
    }
    let store = stack.store;
    let upstream = UpstreamOptions {
        // The demo's provider runs in this process: no egress proxy may stand in between.
        proxy: if args.demo {
            UpstreamProxy::Direct
        } else {
            UpstreamProxy::FromEnvironment
        },
        ..UpstreamOptions::default()
    };
    let gateway = Gateway::new(
        Arc::clone(&live),
        Arc::clone(&store),
        &upstream,
        Some(prometheus),
        logger,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(events) = watched {
        gateway.ui.storage.track(events);
    }
    let _refresh = gateway.spawn_snapshot_refresh(Duration::from_secs(1));
    #[cfg(not(feature = "postgres"))]
    anyhow::ensure!(
        running.resolved.storage.history.is_none(),
        "storage.history needs PostgreSQL, which this build leaves out (cargo feature `postgres`)"
    );
    #[cfg(feature = "postgres")]
    let _history = match &running.resolved.storage.history {
        Some(history) => {
            let writer = open_history(history)?;
            gateway.set_history(writer.clone());
            Some(truckllm_store::postgres::history::spawn_history(
                writer,
                Arc::clone(&store),
                rollup,
            ))
        }
        None => None,
    };

    let listen = match args.listen {
        Some(addr) => addr,
        None => running
            .resolved
            .server
            .listen
            .parse()
            .context("server.listen")?,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let rt = gateway.runtime();
    say!(
        "TruckLLM gateway on http://{addr}/v1 (config {source} version {}, store {store}, {} providers)",
        running.version,
        rt.routes.providers.len()
    );
    if rt.clients.is_open() && running.resolved.server.open_mode {
        warn!(
            "WARNING: OPEN MODE (server.open_mode: true). No api_keys are configured, so anyone who can reach {addr} can use every provider."
        );
    } else if rt.clients.is_open() {
        warn!(
            "WARNING: OPEN MODE. No api_keys are configured, so anyone who can reach {addr} can use every provider. Add api_keys to require client keys, or set server.open_mode: true to say that open mode is meant."
        );
    }
    if args.demo {
        say!("Demo: a mock provider and the in-memory store; no keys or internet needed. Try:");
        say!(
            "  curl -s http://{addr}/v1/chat/completions -H 'Content-Type: application/json' -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}]}}'"
        );
        say!("  curl -s http://{addr}/metrics | grep truckllm_requests_total");
        if let Some(key) = &demo_admin_key {
            say!("Dashboard: http://{addr}/ui  (sign in with the demo admin key {key})");
        }
    } else if !rt.admins.is_empty() {
        say!("Dashboard: http://{addr}/ui  (sign in with an admin key of server.admin_keys)");
    }
    truckllm_gateway::app::serve(listener, gateway, shutdown_signal()).await?;
    say!("TruckLLM gateway stopped; usage flushed");
    Ok(ExitCode::SUCCESS)
}

/// The running config and where it comes from: `--config-store` if given; else the file at
/// `path`, or, when that file says `storage.config.type: http` or `postgres`, the storage
/// server or database it names (the file is then only read for that). SIGHUP, the admin API,
/// a poll every `storage.config.poll_secs` and, on PostgreSQL, LISTEN/NOTIFY reload from
/// the store.
async fn start_config(
    path: &Path,
    config_store: Option<&str>,
    store_args: &StoreArgs,
) -> Result<(Arc<LiveConfig>, String, Duration)> {
    let master_key = MasterKey::from_env()?.map(Arc::new);
    let options = FileStoreOptions {
        master_key: master_key.clone(),
        ..FileStoreOptions::default()
    };
    let path_shown = path.display().to_string();
    let (first, shown) = match config_store {
        Some(target) => (
            open_config_store(target, options.clone(), store_args.store_token.clone()).await?,
            truckllm_store::redact_url(target),
        ),
        None => (
            Arc::new(FileConfigStore::new(path, options.clone())) as Arc<dyn ConfigStore>,
            path_shown,
        ),
    };
    let env = Arc::new(ProcessEnv);
    let live = LiveConfig::start(first, env.clone(), master_key.clone())
        .await
        .with_context(|| format!("cannot start with the config in {shown}"))?;
    let bootstrap = &live.current().resolved.storage.config;
    let poll = Duration::from_secs(bootstrap.poll_secs.max(1));
    if config_store.is_some() || bootstrap.kind == ConfigKind::File {
        return Ok((live, shown, poll));
    }
    let addr = bootstrap
        .addr
        .clone()
        .context("storage.config.addr: the config store's URL is needed")?;
    let token = bootstrap
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .or_else(|| store_args.store_token.clone());
    let options = FileStoreOptions {
        history: bootstrap.history,
        ..options
    };
    let remote = open_config_store(&addr, options, token).await?;
    let shown = truckllm_store::redact_url(&addr);
    let live = LiveConfig::start(remote, env, master_key)
        .await
        .with_context(|| format!("cannot load the config from the config store {shown}"))?;
    Ok((live, shown, poll))
}

/// A fresh admin key for one demo run, printed with the dashboard's link.
fn demo_admin_key_new() -> String {
    let bytes = truckllm_config::secret::random_bytes();
    let hex: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("tk-admin-{hex}")
}

/// Starts an in-process mock provider and writes the demo config beside it (its request log
/// too, so the dashboard can search it).
async fn start_demo(listen: &str, admin_key: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot start the demo's mock provider")?;
    let upstream = format!("http://{}", listener.local_addr()?);
    tokio::spawn(truckllm_gateway::mock::serve(
        listener,
        MockUpstream::new(MockOptions::default()),
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().context("cannot create the demo's config directory")?;
    let path = dir.path().join("config.yaml");
    let log = dir.path().join("requests.jsonl");
    let log = log.to_str().context("the demo's directory is not UTF-8")?;
    std::fs::write(&path, demo_config(&upstream, listen, admin_key, log))
        .context("cannot write the demo config")?;
    Ok((dir, path))
}

pub async fn mock_upstream(args: &MockArgs) -> Result<ExitCode> {
    for (name, rate) in [
        ("--error-rate", args.error_rate),
        ("--rate-limit-rate", args.rate_limit_rate),
        ("--overload-rate", args.overload_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1"
        );
    }
    let options = MockOptions {
        latency: Duration::from_millis(args.latency_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        error_rate: args.error_rate,
        rate_limit_rate: args.rate_limit_rate,
        overload_rate: args.overload_rate,
        rpm_cap: args.rpm_cap,
        responses_native: args.responses_native,
        stream_chunks: args.stream_chunks,
        ..MockOptions::default()
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    say!("mock upstream on http://{}/v1", listener.local_addr()?);
    truckllm_gateway::mock::serve(listener, MockUpstream::new(options), shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(feature = "postgres")]
/// Opens the PostgreSQL usage history (`storage.history`) without waiting for the database:
/// the gateway serves while it is down, with a warning, and the writer task catches up when
/// it answers (from the roll-ups the runtime store keeps, `storage.runtime.rollup_keep_secs`).
fn open_history(
    history: &truckllm_config::schema::HistoryStorageConfig,
) -> Result<truckllm_store::postgres::history::HistoryWriter> {
    let options = truckllm_store::PostgresOptions::default();
    let pool = truckllm_store::postgres::lazy_pool(&history.url, &options)
        .context("the usage history database URL (storage.history.url)")?;
    let writer = truckllm_store::postgres::history::HistoryWriter::lazy(
        pool,
        history.source.clone(),
        history.keep_days,
        Arc::new(truckllm_store::SystemClock),
    )
    .context("cannot open the usage history (storage.history)")?;
    let probe = writer.clone();
    let shown = truckllm_store::redact_url(&history.url);
    tokio::spawn(async move {
        if let Err(e) = probe.ensure_schema().await {
            warn!(
                "WARNING: the usage history database {shown} does not answer ({e}); serving anyway. Finished roll-up steps are written once it does, as long as the runtime store still keeps them (storage.runtime.rollup_keep_secs)."
            );
        }
    });
    Ok(writer)
}

#[cfg(feature = "postgres")]
/// Warns, without holding up the start, about each PostgreSQL log sink whose database does
/// not answer: its records wait in the sink's bounded queue and are written once it does.
fn probe_log_databases(sinks: &[truckllm_config::schema::LogSinkConfig]) {
    for sink in sinks {
        let truckllm_config::schema::LogSinkConfig::Postgres(config) = sink else {
            continue;
        };
        let url = config.url.clone();
        tokio::spawn(async move {
            let options = truckllm_store::PostgresOptions {
                pool_size: 1,
                connect_timeout: Duration::from_secs(5),
                ..truckllm_store::PostgresOptions::default()
            };
            let shown = truckllm_store::redact_url(&url);
            if let Err(e) = truckllm_store::postgres::connect_pool(&url, &options).await {
                warn!(
                    "WARNING: the log database {shown} does not answer ({e}); serving anyway. Request and audit records wait in the sink's queue (bounded; past it they are dropped and counted) and are written once it answers."
                );
            }
        });
    }
}
