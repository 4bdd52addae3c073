//! The one error type every runtime store returns.
//!
//! Backends map their own failures into [`StoreError`] with context (which backend, which
//! operation). The error decides once whether the caller was at fault ([`StoreError::is_caller_fault`])
//! and whether a retry may help ([`StoreError::is_retryable`]); layers above never re-guess it.

/// Errors of the runtime store.
/// Cloneable, so one failed batch call can answer each of its callers.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller passed something the store cannot accept (a NaN, an empty name, an unknown
    /// metric, a window longer than the store keeps). Nothing was stored.
    #[error("invalid input: {message}")]
    InvalidInput { message: String },

    /// The backend could not be reached or failed while serving the call. `detail` is the
    /// cause, rendered once (driver errors often repeat their own source).
    #[error("{backend} store unavailable during {operation}: {detail}")]
    Unavailable {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },

    /// The backend did not answer in time.
    #[error("{backend} store timed out during {operation} after {after_ms} ms")]
    Timeout {
        backend: &'static str,
        operation: &'static str,
        after_ms: u64,
    },

    /// The backend answered something this client does not understand.
    #[error("{backend} store gave an unexpected answer to {operation}: {detail}")]
    Protocol {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },

    /// A bounded store is full of live data and cannot take a new series.
    #[error(
        "{backend} store is full ({capacity} series); new series are refused until old ones expire"
    )]
    Capacity {
        backend: &'static str,
        capacity: usize,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        StoreError::InvalidInput {
            message: message.into(),
        }
    }

    /// The backend was unreachable or failing; `cause` is rendered once, with repeated
    /// `a: a` segments collapsed.
    pub fn unavailable(
        backend: &'static str,
        operation: &'static str,
        cause: &dyn std::fmt::Display,
    ) -> Self {
        let text = cause.to_string();
        let mut parts: Vec<&str> = Vec::new();
        for part in text.split(": ") {
            if parts.last() != Some(&part) {
                parts.push(part);
            }
        }
        StoreError::Unavailable {
            backend,
            operation,
            detail: parts.join(": "),
        }
    }

    /// True when the caller's input was wrong (maps to HTTP 400); false for backend faults.
    pub fn is_caller_fault(&self) -> bool {
        matches!(self, StoreError::InvalidInput { .. })
    }

    /// True when the same call may succeed later (the backend was down or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_rendered_once() {
        let e = StoreError::unavailable("redis", "get", &"Connection refused: Connection refused");
        assert_eq!(
            e.to_string(),
            "redis store unavailable during get: Connection refused"
        );
        assert!(e.is_retryable());
        assert!(!e.is_caller_fault());
    }
}
