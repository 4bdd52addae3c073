//! `truckllm`: the one binary. Argument parsing and dispatch only; the work lives in the
//! library crates and in [`commands`].

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// buffers, and glibc malloc showed up as about a tenth of the gateway's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    // redis-rs builds rustls configs with the process-wide provider; exactly one must exist.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: multi-threaded, with `TRUCKLLM_WORKER_THREADS` workers if set (default:
/// one per core).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = std::env::var("TRUCKLLM_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.worker_threads(n);
    }
    builder.build()
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUCKLLM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
