//! The conformance suite against every backend and wrapper: memory, Redis (a real
//! `redis-server` started per test on a free loopback port), a real three-primary Redis
//! Cluster, PostgreSQL (one real server per test process, a fresh database per test), and the
//! wrappers (instrumented, resilient, cached, coalescing) around them,
//! including the stack `truckllm serve` runs.

use std::sync::Arc;
use std::time::Duration;

use truckllm_store::conformance::{Context, Expiry};
use truckllm_store::{
    CachedStore, CoalescingOptions, CoalescingStore, InstrumentedStore, MemoryStore,
    PostgresOptions, PostgresStore, RedisOptions, RedisStore, ResilientOptions, ResilientStore,
    RuntimeStore, StoreOptions, gateway_stack,
};
use truckllm_testkit::{PostgresServer, RedisCluster, RedisServer};

fn options(ctx: &Context) -> StoreOptions {
    StoreOptions {
        ttl: ctx.ttl,
        clock: Arc::new(ctx.clock.clone()),
        ..StoreOptions::default()
    }
}

/// The resilient wrapper's options in this suite. `check_concurrent_increments` sends 1,000
/// increments of one counter at once; the backend applies them one after another (one key),
/// so on a loaded 2-core CI host (this binary runs Redis and PostgreSQL checks side by side)
/// the last may wait longer than the default 300 ms call timeout, which the wrapper would
/// rightly treat as an outage. The suite checks correctness; outage detection is tested in
/// `resilient.rs` and `postgres.rs`. A deployment with such bursts on one key raises
/// `storage.runtime.call_timeout_ms` the same way (see the README).
fn patient_resilient_options() -> ResilientOptions {
    ResilientOptions {
        call_timeout: Duration::from_secs(10),
        ..ResilientOptions::default()
    }
}

/// Redis expires counters by its own clock; a short TTL keeps the expiry check quick.
const REDIS_TTL: Duration = Duration::from_secs(3);

async fn redis_store(ctx: &Context) -> (RedisStore, RedisServer) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), options(ctx), RedisOptions::default())
        .await
        .expect("connect to the test redis-server");
    (store, server)
}

mod memory {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let store: Arc<dyn RuntimeStore> =
                Arc::new(MemoryStore::with_options(options(&ctx), 10_000));
            (store, ())
        },
        Duration::from_secs(60),
        Expiry::Clock
    );
}

mod redis {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let (store, server) = redis_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> = Arc::new(store);
            (store, server)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod instrumented_memory {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = MemoryStore::with_options(options(&ctx), 10_000);
            let store: Arc<dyn RuntimeStore> = Arc::new(InstrumentedStore::new(inner));
            (store, ())
        },
        Duration::from_secs(60),
        Expiry::Clock
    );
}

mod instrumented_redis {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let (inner, server) = redis_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> = Arc::new(InstrumentedStore::new(inner));
            (store, server)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod redis_cluster {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let cluster = RedisCluster::start();
            let store = RedisStore::connect(&cluster.url(), options(&ctx), RedisOptions::default())
                .await
                .expect("connect to the test cluster");
            let store: Arc<dyn RuntimeStore> = Arc::new(store);
            (store, cluster)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod resilient_redis {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let (inner, server) = redis_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> = Arc::new(ResilientStore::new(
                inner,
                options(&ctx),
                patient_resilient_options(),
            ));
            (store, server)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod cached_memory {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = MemoryStore::with_options(options(&ctx), 10_000);
            let clock = Arc::new(ctx.clock.clone());
            let store: Arc<dyn RuntimeStore> = Arc::new(CachedStore::new(
                inner,
                1000,
                Duration::from_millis(500),
                clock,
            ));
            (store, ())
        },
        Duration::from_secs(60),
        Expiry::Clock
    );
}

mod cached_redis {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let (inner, server) = redis_store(&ctx).await;
            let clock = Arc::new(ctx.clock.clone());
            let store: Arc<dyn RuntimeStore> = Arc::new(CachedStore::new(
                inner,
                1000,
                Duration::from_millis(500),
                clock,
            ));
            (store, server)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod coalescing_memory {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = MemoryStore::with_options(options(&ctx), 10_000);
            let store: Arc<dyn RuntimeStore> =
                Arc::new(CoalescingStore::new(inner, CoalescingOptions::default()));
            (store, ())
        },
        Duration::from_secs(60),
        Expiry::Clock
    );
}

/// The stack `truckllm serve` runs on a shared store ([`gateway_stack`]): coalesced
/// reservations over the resilient and instrumented wrappers.
mod gateway_stack_redis {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let (inner, server) = redis_store(&ctx).await;
            let stack = gateway_stack(Arc::new(inner), options(&ctx), patient_resilient_options());
            (stack.store, server)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

mod coalescing_redis_cluster {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let cluster = RedisCluster::start();
            let store = RedisStore::connect(&cluster.url(), options(&ctx), RedisOptions::default())
                .await
                .expect("connect to the test cluster");
            let store: Arc<dyn RuntimeStore> =
                Arc::new(CoalescingStore::new(store, CoalescingOptions::default()));
            (store, cluster)
        },
        REDIS_TTL,
        Expiry::RealTime
    );
}

/// PostgreSQL expires by the store's clock, like memory: checks move it instead of waiting.
const POSTGRES_TTL: Duration = Duration::from_secs(60);

/// Checks such as `check_concurrent_increments` queue 1,000 calls on one key and a pool of 8
/// connections; on a loaded CI host the last may wait longer than the default 2 s, which
/// would fail a check about correctness, not speed.
fn patient_postgres_options() -> PostgresOptions {
    PostgresOptions {
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
        ..PostgresOptions::default()
    }
}

/// A store on a database of its own in the process's PostgreSQL server, so that a check that
/// moves its clock an hour ahead sweeps nobody else's rows.
async fn postgres_store(ctx: &Context) -> PostgresStore {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let url = tokio::task::spawn_blocking(|| PostgresServer::shared().fresh_database())
        .await
        .expect("create a test database");
    PostgresStore::connect(&url, options(ctx), patient_postgres_options())
        .await
        .expect("connect to the test postgres")
}

mod postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let store: Arc<dyn RuntimeStore> = Arc::new(postgres_store(&ctx).await);
            (store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}

mod instrumented_postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = postgres_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> = Arc::new(InstrumentedStore::new(inner));
            (store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}

mod resilient_postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = postgres_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> = Arc::new(ResilientStore::new(
                inner,
                options(&ctx),
                patient_resilient_options(),
            ));
            (store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}

mod cached_postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = postgres_store(&ctx).await;
            let clock = Arc::new(ctx.clock.clone());
            let store: Arc<dyn RuntimeStore> = Arc::new(CachedStore::new(
                inner,
                1000,
                Duration::from_millis(500),
                clock,
            ));
            (store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}

mod coalescing_postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = postgres_store(&ctx).await;
            let store: Arc<dyn RuntimeStore> =
                Arc::new(CoalescingStore::new(inner, CoalescingOptions::default()));
            (store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}

/// The stack `truckllm serve` runs, over PostgreSQL.
mod gateway_stack_postgres {
    use super::*;
    truckllm_store::conformance_tests!(
        |ctx: Context| async move {
            let inner = postgres_store(&ctx).await;
            let stack = gateway_stack(Arc::new(inner), options(&ctx), patient_resilient_options());
            assert!(
                stack
                    .store
                    .to_string()
                    .starts_with("Coalescing(Resilient(Instrumented(PostgresStore("),
                "{}",
                stack.store
            );
            (stack.store, ())
        },
        POSTGRES_TTL,
        Expiry::Clock
    );
}
