//! TruckLLM's storage layer: the runtime store that every gateway instance shares.
//!
//! # Layout
//!
//! - [`store`]: the [`RuntimeStore`] trait and its contract (the methods a backend writes), the
//!   [`RuntimeStoreExt`] single forms every store gets from its batch forms, and the request
//!   types (increments, limit checks, reservations).
//! - [`series`]: what is counted: `(provider, key_id, metric)` and the escaping of odd names.
//! - [`window`]: time buckets that make windows really slide; options shared by backends.
//! - [`period`]: period counters for budgets (calendar and rolling periods).
//! - [`docs`]: small TTL'd documents every instance shares (stored Responses conversations).
//! - [`clock`]: injectable time, so window and TTL tests need no sleeps.
//! - Backends, one per module: [`memory`] (the embedded default), `redis` (production; cargo
//!   feature `redis`) and `postgres` (for teams that run PostgreSQL and not Redis; cargo
//!   feature `postgres`); both features are on by default.
//! - Wrappers that add one behaviour to any store: [`instrumented`] (Prometheus metrics),
//!   [`resilient`] (serve from memory during an outage, replay exactly once after it),
//!   [`cached`] (bounded cache for hot reads, write-through), [`coalescing`] (concurrent
//!   reservations share one `reserve_many` round trip).
//! - [`stack`]: the wrappers and their order, as `serve`, `storage-server` and the tests
//!   assemble them.
//! - [`url`]: opens a store from a URL (`memory:`, `redis://`, `rediss://`, `redis+cluster://`,
//!   `postgres://`).
//! - `conformance`: the one suite every backend and wrapper must pass (cargo feature
//!   `conformance`, enabled by the tests' dev-dependencies only, so it is not compiled into the
//!   shipping binary).
//! - [`error`]: the one error type, which knows whether the caller or the backend was at fault.

pub mod cached;
pub mod clock;
pub mod coalescing;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod docs;
pub mod error;
pub mod instrumented;
pub mod memory;
pub mod metrics;
pub mod period;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod resilient;
pub mod series;
pub mod stack;
pub mod store;
pub mod url;
pub mod window;

pub use cached::CachedStore;
pub use clock::{Clock, ManualClock, RequestClock, SharedClock, SystemClock};
pub use coalescing::{CoalescingOptions, CoalescingStore};
pub use error::StoreError;
pub use instrumented::InstrumentedStore;
pub use memory::MemoryStore;
pub use period::{PeriodAdd, PeriodCheck, PeriodCounter, PeriodOutcome, PeriodRead, PeriodReserve};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use resilient::{OutageLimits, ResilientOptions, ResilientStore, StorageEvent};
pub use series::{Metric, ProviderKey, Series};
pub use stack::{GatewayStack, ServerCache, gateway_stack, storage_server_stack};
pub use store::{
    ConnectionStats, Denial, Increment, LimitCheck, ListedSeries, Reservation, ReserveOutcome,
    ReserveRequest, RollupPoint, RuntimeStore, RuntimeStoreExt, SeriesRollup,
};
pub use url::{RedisOptions, open_store, redact_url};
pub use window::{RollupPolicy, StoreOptions, Windowing};
