//! The one error type every runtime store returns.
//!
//! Backends map their own failures into [`StoreError`] with context (which backend, which
//! operation). The error decides once whether the caller was at fault ([`StoreError::is_caller_fault`]),
//! whether a retry may help ([`StoreError::is_retryable`]; only these are outages), and how the
//! storage protocol carries it ([`StoreError::wire`], [`StoreError::from_wire`]); layers above
//! never re-guess it.

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

    /// A bounded store is full of live data and cannot take a new series. Not an outage:
    /// the store answers, and every series it holds still works.
    #[error("{backend} store is full: {detail}")]
    Capacity {
        backend: &'static str,
        detail: String,
    },

    /// The caller holds as many series as its share of the store allows (a storage-server
    /// token's `quota`); new ones are refused until some expire. Not an outage either.
    #[error("{backend} store refused a new series: {detail}")]
    QuotaExceeded {
        backend: &'static str,
        detail: String,
    },
}

/// How the HTTP storage protocol carries an error: status and machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub code: &'static str,
}

/// 507 Insufficient Storage: the store (or the caller's share of it) is full.
const INSUFFICIENT_STORAGE: u16 = 507;

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

    /// True when the same call may succeed later (the backend was down or slow). These, and
    /// only these, are outages: the resilient wrapper degrades on them.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. }
        )
    }

    /// The status and code the storage server answers with.
    pub fn wire(&self) -> WireError {
        let (status, code) = match self {
            StoreError::InvalidInput { .. } => (400, "invalid_input"),
            StoreError::Unavailable { .. } | StoreError::Timeout { .. } => {
                (503, "store_unavailable")
            }
            StoreError::Protocol { .. } => (502, "store_error"),
            StoreError::Capacity { .. } => (INSUFFICIENT_STORAGE, "store_full"),
            StoreError::QuotaExceeded { .. } => (INSUFFICIENT_STORAGE, "quota_exceeded"),
        };
        WireError { status, code }
    }

    /// The error an HTTP client reads from a storage server's error answer (the inverse of
    /// [`StoreError::wire`]); `code` is the answer's `error.code`, if it had one.
    pub fn from_wire(
        backend: &'static str,
        operation: &'static str,
        status: u16,
        code: Option<&str>,
        message: String,
    ) -> Self {
        match (status, code) {
            (INSUFFICIENT_STORAGE, Some("store_full")) => StoreError::Capacity {
                backend,
                detail: message,
            },
            (INSUFFICIENT_STORAGE, Some("quota_exceeded")) => StoreError::QuotaExceeded {
                backend,
                detail: message,
            },
            (400 | 413, _) => StoreError::invalid(message),
            (500..=599, _) => StoreError::unavailable(
                backend,
                operation,
                &format!("server answered {status}: {message}"),
            ),
            _ => StoreError::Protocol {
                backend,
                operation,
                detail: format!("server answered {status}: {message}"),
            },
        }
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

    #[test]
    fn a_full_store_crosses_the_wire_as_itself_and_is_no_outage() {
        let full = StoreError::Capacity {
            backend: "memory",
            detail: "10 keys".into(),
        };
        let quota = StoreError::QuotaExceeded {
            backend: "memory",
            detail: "token `t` holds 5".into(),
        };
        for e in [full, quota] {
            let wire = e.wire();
            assert_eq!(wire.status, 507, "{e}");
            let back = StoreError::from_wire(
                "http",
                "increment",
                wire.status,
                Some(wire.code),
                e.to_string(),
            );
            assert_eq!(back.wire(), wire, "{back}");
            assert!(!back.is_retryable() && !back.is_caller_fault(), "{back}");
        }
        let down = StoreError::from_wire("http", "get", 503, Some("store_unavailable"), "x".into());
        assert!(down.is_retryable());
        let odd = StoreError::from_wire("http", "get", 507, None, "proxy says full".into());
        assert!(
            odd.is_retryable(),
            "a 507 without our code is some other server's 5xx"
        );
    }
}
