//! The gateway's shared state: the live config, the runtime built from its current version
//! (routes, clients, per-key health and metrics, the usage snapshot), the store, the upstream
//! HTTP client, and the tasks that settle usage after responses.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::task::TaskTracker;
use truckllm_config::schema::PolicyConfig;
use truckllm_config::{Config, LiveConfig};
use truckllm_logging::Logger;
use truckllm_store::{Clock, RuntimeStore, SystemClock};

use crate::clients::Clients;
use crate::recorder::UsageRecorder;
use crate::routing::Routes;
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamClient;

/// Everything derived from one config version. Per-provider and per-key state (health,
/// metrics, rotation) lives on the [`Routes`] entries, taken over from the previous version for
/// whatever did not change.
#[derive(Debug)]
pub struct Runtime {
    pub version: u64,
    pub routes: Arc<Routes>,
    pub clients: Clients,
    pub policy: PolicyConfig,
    pub snapshot: Snapshot,
    /// The admin identities (digests and roles); none turns the admin API off.
    pub admins: crate::auth::Admins,
}

impl Runtime {
    /// Builds the runtime of `config`, taking over state from `previous`.
    pub fn build(
        version: u64,
        config: &Config,
        previous: Option<&Runtime>,
    ) -> Result<Self, String> {
        let routes = Routes::from_config(config, previous.map(|p| p.routes.as_ref()))?;
        Ok(Self {
            version,
            clients: Clients::from_config(config),
            policy: config.policy.clone(),
            snapshot: Snapshot::default(),
            admins: crate::auth::Admins::from_config(config),
            routes,
        })
    }
}

/// Upstream connection settings.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response; streams may run longer in total.
    pub read_timeout: Duration,
    pub max_idle_per_host: usize,
    pub proxy: UpstreamProxy,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(120),
            max_idle_per_host: 256,
            proxy: UpstreamProxy::FromEnvironment,
        }
    }
}

/// Whether provider connections go through an egress proxy.
#[derive(Clone)]
pub enum UpstreamProxy {
    /// As `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` say (curl's reading).
    FromEnvironment,
    /// Never.
    Direct,
    /// Every connection through this proxy URL (`http://[user:password@]host:port`).
    All(String),
}

impl std::fmt::Debug for UpstreamProxy {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FromEnvironment => f.write_str("FromEnvironment"),
            Self::Direct => f.write_str("Direct"),
            Self::All(_) => f.write_str("All(..)"),
        }
    }
}

/// The gateway's state, shared by every request.
pub struct Gateway {
    live: Arc<LiveConfig>,
    runtime: ArcSwap<Runtime>,
    pub store: Arc<dyn RuntimeStore>,
    pub upstream: UpstreamClient,
    pub prometheus: Option<PrometheusHandle>,
    /// Background writes that are not usage (shared cooldowns); awaited on shutdown.
    pub settlements: TaskTracker,
    /// Coalesced usage writes; flushed on shutdown so no usage is lost.
    pub usage: UsageRecorder,
    /// Request and audit records to the configured log sinks.
    pub logger: Logger,
    /// This instance's quota leases, and where their leftovers are settled.
    pub leases: Arc<crate::leases::Leases>,
    pub lease_returns: Arc<dyn crate::leases::GiveBack>,
    /// The long-term usage history (`storage.history`), once the binary has opened it.
    #[cfg(feature = "postgres")]
    history: std::sync::OnceLock<truckllm_store::postgres::history::HistoryWriter>,
    /// When each client key was last used, written through the store at most once a minute.
    pub last_used: crate::last_used::LastUsed,
    /// Model names without a config entry counted in the usage history under their own names.
    pub open_model_names: crate::attempt::OpenModelNames,
    /// Where "now" comes from when not the system clock: tests of calendar budgets inject one.
    clock: std::sync::OnceLock<truckllm_store::SharedClock>,
    /// The dashboard's sessions and what it shows of the store's state.
    pub ui: crate::ui::UiState,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_version", &self.runtime.load().version)
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(
        live: Arc<LiveConfig>,
        store: Arc<dyn RuntimeStore>,
        upstream: &UpstreamOptions,
        prometheus: Option<PrometheusHandle>,
        logger: Logger,
    ) -> Result<Arc<Self>, String> {
        let running = live.current();
        let runtime = Runtime::build(running.version, &running.resolved, None)?;
        let upstream = UpstreamClient::new(upstream)?;
        // Config versions applied or rejected become audit records and alerts.
        crate::alerts::forward(
            live.subscribe(),
            logger.clone(),
            crate::alerts::reload_record,
        );
        let events = live.subscribe();
        let usage = UsageRecorder::start(
            Arc::clone(&store),
            Duration::from_millis(running.resolved.storage.runtime.settle_interval_ms),
        );
        let lease_returns = Arc::new(crate::leases::ThroughRecorder {
            usage: usage.clone(),
            bucket_ms: store.windowing().bucket_ms(),
        });
        let gateway = Arc::new(Self {
            live,
            runtime: ArcSwap::from_pointee(runtime),
            upstream,
            prometheus,
            settlements: TaskTracker::new(),
            usage,
            store,
            logger,
            leases: Arc::default(),
            lease_returns,
            #[cfg(feature = "postgres")]
            history: std::sync::OnceLock::new(),
            clock: std::sync::OnceLock::new(),
            last_used: crate::last_used::LastUsed::default(),
            open_model_names: crate::attempt::OpenModelNames::default(),
            ui: crate::ui::UiState::default(),
        });
        gateway.apply_each_version(events);
        Ok(gateway)
    }

    /// Builds the runtime of every config version as it is applied, off the request path.
    fn apply_each_version(
        self: &Arc<Self>,
        mut events: tokio::sync::broadcast::Receiver<truckllm_config::ReloadEvent>,
    ) {
        let gateway = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                let Some(gateway) = gateway.upgrade() else {
                    return;
                };
                gateway.runtime();
            }
        });
    }

    pub fn live(&self) -> &Arc<LiveConfig> {
        &self.live
    }

    /// The runtime of the config in use. A new version is built as it is applied (see
    /// [`Gateway::new`]); a request that arrives between the two builds it itself.
    pub fn runtime(&self) -> Arc<Runtime> {
        let current = self.runtime.load_full();
        let running = self.live.current();
        if current.version == running.version {
            return current;
        }
        match Runtime::build(running.version, &running.resolved, Some(&current)) {
            Ok(rebuilt) => {
                let rebuilt = Arc::new(rebuilt);
                self.runtime.store(Arc::clone(&rebuilt));
                rebuilt
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot apply config version {}; keeping {}", running.version, current.version);
                current
            }
        }
    }

    /// Waits until every usage record and background write started so far has reached the
    /// store.
    pub async fn flush(&self) {
        self.leases.give_all_back(self.lease_returns.as_ref());
        self.settlements.close();
        self.settlements.wait().await;
        self.settlements.reopen();
        self.usage.flush().await;
    }

    /// Serves `GET /admin/usage/history` from `writer`'s database; the first call wins.
    #[cfg(feature = "postgres")]
    pub fn set_history(&self, writer: truckllm_store::postgres::history::HistoryWriter) {
        let _ = self.history.set(writer);
    }

    #[cfg(feature = "postgres")]
    pub fn history(&self) -> Option<&truckllm_store::postgres::history::HistoryWriter> {
        self.history.get()
    }

    pub fn now_ms(&self) -> u64 {
        match self.clock.get() {
            Some(clock) => clock.now_ms(),
            None => SystemClock.now_ms(),
        }
    }

    /// Makes `clock` this gateway's "now" (once; later calls change nothing), for tests that
    /// move time, such as a budget's calendar reset.
    pub fn use_clock(&self, clock: truckllm_store::SharedClock) {
        let _ = self.clock.set(clock);
    }

    /// Refreshes the usage snapshot every `every` until the process ends.
    pub fn spawn_snapshot_refresh(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let gateway = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                ticker.tick().await;
                let rt = gateway.runtime();
                match rt
                    .snapshot
                    .refresh(&rt.routes, gateway.store.as_ref())
                    .await
                {
                    Ok(()) if failing => {
                        tracing::info!("usage snapshot refresh recovered");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "usage snapshot refresh failed; balancing on the last snapshot");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
