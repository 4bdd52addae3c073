//! The wrappers around a backend, and their order, in one place: `truckllm serve`,
//! `truckllm storage-server` and the tests all build their stores here, so what is tested is
//! what ships.
//!
//! - A gateway ([`gateway_stack`]): `Coalescing(Resilient(Instrumented(backend)))` for a shared
//!   store: metrics see every backend call (the resilient wrapper's probes and replays
//!   included), an outage is served from memory and replayed, and concurrent reservations share
//!   `reserve_many` calls. The in-memory store cannot go away and has no round trips to share,
//!   so it is only instrumented.
//! - A storage server ([`storage_server_stack`]): `Cached(Instrumented(backend))`, the cache
//!   only if asked for: many gateways' snapshot reads repeat there.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::cached::CachedStore;
use crate::clock::SharedClock;
use crate::coalescing::{CoalescingOptions, CoalescingStore};
use crate::instrumented::InstrumentedStore;
use crate::resilient::{ResilientOptions, ResilientStore, StorageEvent};
use crate::store::RuntimeStore;
use crate::window::StoreOptions;

/// A gateway's store, and the resilient wrapper's degraded/recovered events if it has one.
pub struct GatewayStack {
    pub store: Arc<dyn RuntimeStore>,
    pub events: Option<broadcast::Receiver<StorageEvent>>,
}

/// The store a gateway runs on `backend`; `options` must be the backend's own (the resilient
/// wrapper's memory fallback keeps the same windows and clock).
pub fn gateway_stack(
    backend: Arc<dyn RuntimeStore>,
    options: StoreOptions,
    resilient: ResilientOptions,
) -> GatewayStack {
    let is_memory = backend.backend() == "memory";
    let instrumented = InstrumentedStore::new(backend);
    if is_memory {
        return GatewayStack {
            store: Arc::new(instrumented),
            events: None,
        };
    }
    let resilient = ResilientStore::new(instrumented, options, resilient);
    let events = resilient.subscribe();
    GatewayStack {
        store: Arc::new(CoalescingStore::new(
            resilient,
            CoalescingOptions::default(),
        )),
        events: Some(events),
    }
}

/// A bounded read cache in front of a storage server's store.
#[derive(Debug, Clone)]
pub struct ServerCache {
    /// Most series cached.
    pub capacity: usize,
    /// Longest a cached value is served.
    pub max_age: Duration,
    /// The clock freshness is judged by (the callers' clock on a storage server).
    pub clock: SharedClock,
}

/// The store a storage server serves from `backend`, cached if `cache` is given.
pub fn storage_server_stack(
    backend: Arc<dyn RuntimeStore>,
    cache: Option<ServerCache>,
) -> Arc<dyn RuntimeStore> {
    let instrumented = InstrumentedStore::new(backend);
    match cache {
        Some(cache) => Arc::new(CachedStore::new(
            instrumented,
            cache.capacity,
            cache.max_age,
            cache.clock,
        )),
        None => Arc::new(instrumented),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[test]
    fn the_memory_store_is_only_instrumented_and_a_shared_one_gets_every_wrapper() {
        let memory: Arc<dyn RuntimeStore> = Arc::new(MemoryStore::new());
        let stack = gateway_stack(memory, StoreOptions::default(), ResilientOptions::default());
        assert!(stack.events.is_none());
        assert!(stack.store.to_string().starts_with("Instrumented("));
    }
}
