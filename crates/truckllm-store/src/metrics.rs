//! The HELP text of every metric family the store and its wrappers export, registered once at
//! start-up so `/metrics` describes each family (as `promtool check metrics` asks).

use crate::instrumented::{ACTIVE_METRIC, DURATION_METRIC, ERRORS_METRIC, IDLE_METRIC};

/// Describes the store's metric families to the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        DURATION_METRIC,
        metrics::Unit::Seconds,
        "Time taken by runtime store operations, by operation and backend."
    );
    metrics::describe_counter!(
        ERRORS_METRIC,
        "Runtime store operations that failed, by backend and operation."
    );
    metrics::describe_gauge!(
        ACTIVE_METRIC,
        "Connections to the runtime store backend in use."
    );
    metrics::describe_gauge!(
        IDLE_METRIC,
        "Connections to the runtime store backend open and idle."
    );
    metrics::describe_gauge!(
        "truckllm_storage_degraded",
        "1 while the runtime store is unreachable and usage is served from memory, else 0."
    );
    metrics::describe_counter!(
        "truckllm_storage_degraded_seconds_total",
        metrics::Unit::Seconds,
        "Seconds spent degraded (serving from memory) because the runtime store was unreachable."
    );
    metrics::describe_counter!(
        "truckllm_storage_replayed_increments_total",
        "Usage increments recorded in memory during an outage and replayed to the store."
    );
    metrics::describe_counter!(
        "truckllm_store_cache_hits_total",
        "Reads answered by the store's cache."
    );
    metrics::describe_counter!(
        "truckllm_store_cache_misses_total",
        "Reads the store's cache passed to the backend."
    );
    metrics::describe_gauge!(
        "truckllm_store_cache_hit_ratio",
        "Share of reads answered by the store's cache."
    );
}
