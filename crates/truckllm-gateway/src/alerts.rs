//! Turns state changes of the storage layer into records of the logging store: config
//! versions applied (audit, with old and new version) or rejected (an alert), and the runtime
//! store degrading to memory or recovering (alerts). Each runs as a task until its source ends.

use tokio::sync::broadcast;
use truckllm_config::ReloadEvent;
use truckllm_logging::{AuditCategory, AuditRecord, Logger, Severity};
use truckllm_store::StorageEvent;

/// The record for a reload event.
pub fn reload_record(event: &ReloadEvent) -> AuditRecord {
    match event {
        ReloadEvent::Applied {
            trigger,
            old_version,
            new_version,
        } => AuditRecord::new(
            AuditCategory::Config,
            "config.applied",
            trigger.clone(),
            "ok",
        )
        .target("config")
        .versions(Some(*old_version), Some(*new_version)),
        ReloadEvent::Rejected {
            trigger,
            kept_version,
            error,
        } => AuditRecord::alert(
            "config.reload_failed",
            Severity::Warning,
            format!("config rejected ({trigger}), version {kept_version} kept: {error}"),
        )
        .target("config")
        .versions(Some(*kept_version), None),
    }
}

/// The alert for a storage event.
pub fn storage_record(event: &StorageEvent) -> AuditRecord {
    match event {
        StorageEvent::Degraded {
            backend,
            operation,
            reason,
        } => AuditRecord::alert(
            "storage.degraded",
            Severity::Critical,
            format!("{backend} failed on {operation} ({reason}); serving from memory and journaling usage"),
        )
        .target(*backend),
        StorageEvent::Recovered {
            backend,
            outage_seconds,
            replayed_increments,
        } => AuditRecord::alert(
            "storage.recovered",
            Severity::Info,
            format!("{backend} is back after {outage_seconds:.1} s; {replayed_increments} increments replayed"),
        )
        .target(*backend),
    }
}

/// Forwards every event of `events` to `logger` as `to_record` makes it; with no sink
/// configured there is nothing to forward to, and no task is started.
pub fn forward<E: Clone + Send + 'static>(
    mut events: broadcast::Receiver<E>,
    logger: Logger,
    to_record: fn(&E) -> AuditRecord,
) -> Option<tokio::task::JoinHandle<()>> {
    if !logger.is_enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => logger.emit(to_record(&event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    logger.emit(AuditRecord::alert(
                        "log.events_missed",
                        Severity::Warning,
                        format!("{missed} storage-layer events were missed"),
                    ))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}
