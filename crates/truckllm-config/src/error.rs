//! The config crate's error type. Every variant says where (field path, and line and column
//! when the problem is in a file) and what to do.

use std::fmt;

/// A position in a YAML file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One problem in a configuration: the field path (`llm_providers[0].keys[1].id`), where it
/// stands in the file if known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        match self.position {
            Some(p) => write!(f, "{path} ({p}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Errors of loading, validating and storing configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid YAML or does not fit the schema.
    #[error("invalid config: {0}")]
    Parse(Problem),
    /// The file fits the schema but its values do not hold together.
    #[error("invalid config: {}", join(.0))]
    Invalid(Vec<Problem>),
    /// A `${VAR}` reference without a default names an unset variable, or is malformed.
    #[error("invalid config: {0}")]
    Interpolation(Problem),
    /// Encryption or decryption failed (wrong key, damaged value, bad key material).
    #[error("secret error: {0}")]
    Crypto(String),
    /// A save named a version that is no longer current.
    #[error(
        "version conflict: the save edits version {expected}, but the current version is {current}; load it again and reapply the change"
    )]
    Conflict { expected: u64, current: u64 },
    #[error("config version {0} is not in the history")]
    UnknownVersion(u64),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ConfigError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
