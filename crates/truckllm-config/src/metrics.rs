//! The HELP text of the config metrics, registered once at start-up. The reload-failure counter
//! is created at zero, so an alert that rates over it has a series before the first failure.

/// Describes the config's metric families to the installed recorder.
pub fn describe() {
    metrics::describe_gauge!("truckllm_config_version", "Version of the config in use.");
    metrics::describe_counter!(
        "truckllm_config_reload_failures_total",
        "Config changes rejected (invalid config or unreadable store); the running version stays."
    );
    metrics::counter!("truckllm_config_reload_failures_total").absolute(0);
}
