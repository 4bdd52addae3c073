//! Connections to a standalone Redis (a small pool of multiplexed, self-reconnecting
//! `ConnectionManager`s) or to a Redis Cluster (one cluster connection that follows MOVED/ASK).
//!
//! Every call has a response timeout, so an unreachable server gives an error, never a hang.
//! Calls made while a connection is down fail; the manager reconnects in the background.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, TlsCertificates, Value};

use crate::error::StoreError;
use crate::store::ConnectionStats;

pub use crate::url::RedisOptions;

/// A live connection to standalone Redis or to a cluster.
pub(crate) enum Connection {
    Standalone {
        pool: Vec<Pooled>,
        next: AtomicUsize,
    },
    Cluster {
        conn: ClusterConnection,
        in_flight: AtomicU64,
    },
}

pub(crate) struct Pooled {
    conn: ConnectionManager,
    in_flight: AtomicU64,
}

/// Counts a call in flight on one connection for as long as it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backend name used in errors and metrics for each kind of connection.
pub(crate) const STANDALONE: &str = "redis";
pub(crate) const CLUSTER: &str = "redis-cluster";

impl Connection {
    /// Connects to `redis://`/`rediss://` (user, password, db and TLS from the URL) or to
    /// `redis+cluster://`/`rediss+cluster://host:port,host:port`.
    pub async fn open(url: &str, options: &RedisOptions) -> Result<Self, StoreError> {
        if let Some(nodes) = cluster_nodes(url) {
            return Self::open_cluster(&nodes?, options).await;
        }
        let client = match tls_certificates(options)? {
            Some(certs) => redis::Client::build_with_tls(url, certs),
            None => redis::Client::open(url),
        }
        .map_err(|e| config_error(STANDALONE, e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let mut pool = Vec::with_capacity(options.pool_size.max(1));
        for _ in 0..options.pool_size.max(1) {
            let conn = with_deadline(
                STANDALONE,
                "connect",
                options.connect_timeout * 2,
                ConnectionManager::new_with_config(client.clone(), config.clone()),
            )
            .await?;
            pool.push(Pooled {
                conn,
                in_flight: AtomicU64::new(0),
            });
        }
        Ok(Connection::Standalone {
            pool,
            next: AtomicUsize::new(0),
        })
    }

    async fn open_cluster(nodes: &[String], options: &RedisOptions) -> Result<Self, StoreError> {
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
        if let Some(certs) = tls_certificates(options)? {
            builder = builder.certs(certs);
        }
        let client = builder
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(3)
            .build()
            .map_err(|e| config_error(CLUSTER, e))?;
        let conn = with_deadline(
            CLUSTER,
            "connect",
            options.connect_timeout * 2,
            client.get_async_connection(),
        )
        .await?;
        Ok(Connection::Cluster {
            conn,
            in_flight: AtomicU64::new(0),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Connection::Standalone { .. } => STANDALONE,
            Connection::Cluster { .. } => CLUSTER,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster { .. })
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let backend = self.backend();
        self.with_conn(|mut conn| async move {
            cmd.query_async(&mut conn)
                .await
                .map_err(|e| map_error(backend, operation, e))
        })
        .await
    }

    /// Runs a pipeline whose commands all address one slot (or any commands, standalone).
    /// Server errors come back per entry as `Value::ServerError`, so the caller can retry only
    /// the entries that failed.
    pub async fn pipeline(
        &self,
        operation: &'static str,
        pipe: &Pipeline,
    ) -> Result<Vec<Value>, StoreError> {
        let backend = self.backend();
        self.with_conn(|mut conn| async move {
            pipe.query_async(&mut conn)
                .await
                .map_err(|e| map_error(backend, operation, e))
        })
        .await
    }

    /// Sends a command to every primary (PING, SCRIPT LOAD); standalone has one.
    pub async fn on_every_primary(
        &self,
        operation: &'static str,
        cmd: Cmd,
    ) -> Result<(), StoreError> {
        match self {
            Connection::Standalone { .. } => self.query::<Value>(operation, &cmd).await.map(drop),
            Connection::Cluster { conn, in_flight } => {
                let _guard = InFlight::new(in_flight);
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                conn.clone()
                    .route_command(cmd, routing)
                    .await
                    .map(drop)
                    .map_err(|e| map_error(CLUSTER, operation, e))
            }
        }
    }

    /// Runs a command on one node by address (cluster only; SCAN is per node).
    pub async fn on_node(
        &self,
        operation: &'static str,
        host: &str,
        port: u16,
        cmd: Cmd,
    ) -> Result<Value, StoreError> {
        match self {
            Connection::Standalone { .. } => self.query(operation, &cmd).await,
            Connection::Cluster { conn, in_flight } => {
                let _guard = InFlight::new(in_flight);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                });
                conn.clone()
                    .route_command(cmd, routing)
                    .await
                    .map_err(|e| map_error(CLUSTER, operation, e))
            }
        }
    }

    async fn with_conn<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnHandle) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self {
            Connection::Standalone { pool, next } => {
                let pooled = &pool[next.fetch_add(1, Ordering::Relaxed) % pool.len()];
                let _guard = InFlight::new(&pooled.in_flight);
                f(ConnHandle::Standalone(pooled.conn.clone())).await
            }
            Connection::Cluster { conn, in_flight } => {
                let _guard = InFlight::new(in_flight);
                f(ConnHandle::Cluster(conn.clone())).await
            }
        }
    }

    pub fn stats(&self) -> ConnectionStats {
        let (busy, total) = match self {
            Connection::Standalone { pool, .. } => (
                pool.iter()
                    .filter(|p| p.in_flight.load(Ordering::Relaxed) > 0)
                    .count() as u64,
                pool.len() as u64,
            ),
            Connection::Cluster { in_flight, .. } => {
                (u64::from(in_flight.load(Ordering::Relaxed) > 0), 1)
            }
        };
        ConnectionStats {
            active: busy,
            idle: total - busy,
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Standalone { pool, .. } => write!(f, "Standalone(pool={})", pool.len()),
            Connection::Cluster { .. } => f.write_str("Cluster"),
        }
    }
}

/// A cloned handle to one connection; both kinds multiplex, so clones are cheap.
enum ConnHandle {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for ConnHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            ConnHandle::Standalone(c) => c.req_packed_command(cmd),
            ConnHandle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            ConnHandle::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            ConnHandle::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            ConnHandle::Standalone(c) => c.get_db(),
            ConnHandle::Cluster(c) => c.get_db(),
        }
    }
}

/// `Some(nodes)` for cluster URLs: `redis+cluster://[user:pass@]h1:p1,h2:p2[/]` becomes one
/// `redis://[user:pass@]h:p` URL per node (`rediss` for TLS).
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, StoreError>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{auth}{h}"))
        .collect();
    if nodes.is_empty() {
        return Some(Err(StoreError::invalid(
            "a cluster URL needs at least one host:port",
        )));
    }
    Some(Ok(nodes))
}

/// The private CA to trust, if one is configured.
fn tls_certificates(options: &RedisOptions) -> Result<Option<TlsCertificates>, StoreError> {
    let Some(path) = &options.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        StoreError::invalid(format!("cannot read TLS CA file {}: {e}", path.display()))
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

async fn with_deadline<T>(
    backend: &'static str,
    operation: &'static str,
    deadline: Duration,
    fut: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(result) => result.map_err(|e| map_error(backend, operation, e)),
        Err(_) => Err(StoreError::Timeout {
            backend,
            operation,
            after_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

fn config_error(backend: &'static str, e: RedisError) -> StoreError {
    StoreError::invalid(format!("bad {backend} URL: {e}"))
}

/// Server error codes that mean "not now" rather than "never".
const TRANSIENT_CODES: [&str; 6] = [
    "READONLY",
    "LOADING",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MASTERDOWN",
    "BUSY",
];

/// Maps a redis-rs error into the store's error, deciding retryability once.
pub(crate) fn map_error(
    backend: &'static str,
    operation: &'static str,
    e: RedisError,
) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout {
            backend,
            operation,
            after_ms: 0,
        };
    }
    let transient = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_cluster_error()
        || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        || e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| c == "NOAUTH" || c == "WRONGPASS" || c == "NOPERM");
    if transient {
        StoreError::unavailable(backend, operation, &e)
    } else {
        StoreError::Protocol {
            backend,
            operation,
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_expand_to_one_url_per_node() {
        let nodes = cluster_nodes("redis+cluster://u:p@a:1,b:2/")
            .and_then(Result::ok)
            .expect("cluster url");
        assert_eq!(nodes, vec!["redis://u:p@a:1", "redis://u:p@b:2"]);
        let tls = cluster_nodes("rediss+cluster://a:1")
            .and_then(Result::ok)
            .expect("tls cluster url");
        assert_eq!(tls, vec!["rediss://a:1"]);
        assert!(cluster_nodes("redis://a:1").is_none());
        assert!(matches!(cluster_nodes("redis+cluster://"), Some(Err(_))));
    }
}
