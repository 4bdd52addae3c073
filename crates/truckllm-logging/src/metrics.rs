//! The HELP text of every metric family the logging store exports, registered once at
//! start-up so `/metrics` describes each family (as `promtool check metrics` asks).

/// Describes the logging store's metric families to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        "truckllm_log_written_total",
        "Log records delivered, by sink."
    );
    metrics::describe_counter!(
        "truckllm_log_write_failures_total",
        "Log deliveries that failed, by sink."
    );
    metrics::describe_counter!(
        "truckllm_log_dropped_total",
        "Log records dropped because a sink's queue was full, by sink and class (request, audit)."
    );
    metrics::describe_counter!(
        "truckllm_log_retries_total",
        "Deliveries a sink retried after a failure, by sink."
    );
    metrics::describe_counter!(
        "truckllm_log_pushes_total",
        "Pushes of aggregates to the Pushgateway, by outcome."
    );
}
