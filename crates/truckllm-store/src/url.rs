//! Opening a runtime store from a URL, and printing URLs without their secrets.
//!
//! | URL | store |
//! |---|---|
//! | `memory:` | [`MemoryStore`](crate::MemoryStore), this process only |
//! | `redis://[user:pass@]host:port[/db]` | [`RedisStore`](crate::RedisStore) |
//! | `rediss://…` | the same over TLS |
//! | `redis+cluster://h1:p1,h2:p2` (`rediss+cluster://` for TLS) | Redis Cluster |
//! | `postgres://[user:pass@]host:port/db[?sslmode=…]` (or `postgresql://`) | [`PostgresStore`](crate::PostgresStore) (cargo feature `postgres`) |
//!
//! The connect and response timeouts and the CA file of [`RedisOptions`] apply to PostgreSQL
//! too: they say how to reach whichever server the URL names.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::memory::{DEFAULT_CAPACITY, MemoryStore};
use crate::store::RuntimeStore;
use crate::window::StoreOptions;

/// How to reach the server a URL names and how long to wait for it (Redis, and PostgreSQL's
/// timeouts and CA file; kept here, not in the Redis backend, so builds without the `redis`
/// feature open stores the same way).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Multiplexed connections to a standalone server, used round-robin.
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// PEM file of the CA that signed the server's certificate, for `rediss://` servers with a
    /// private CA. Without it the system's trust store is used.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            pool_size: 2,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            tls_ca_file: None,
        }
    }
}

/// Opens the store a URL names.
pub async fn open_store(
    url: &str,
    options: StoreOptions,
    redis_options: RedisOptions,
) -> Result<Arc<dyn RuntimeStore>, StoreError> {
    #[cfg(not(any(feature = "redis", feature = "postgres")))]
    let _ = (&redis_options, &options);
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::with_options(
            options,
            DEFAULT_CAPACITY,
        ))),
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => Ok(Arc::new(
            crate::redis::RedisStore::connect(url, options, redis_options).await?,
        )),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let postgres = crate::postgres::PostgresOptions {
                connect_timeout: redis_options.connect_timeout,
                response_timeout: redis_options.response_timeout,
                tls_ca_file: redis_options.tls_ca_file,
                ..crate::postgres::PostgresOptions::default()
            };
            Ok(Arc::new(
                crate::postgres::PostgresStore::connect(url, options, postgres).await?,
            ))
        }
        _ => Err(StoreError::invalid(format!(
            "unsupported store URL {:?}: use memory:, redis://, rediss://, redis+cluster:// or postgres:// \
             (redis and postgres: cargo features of the same names, on by default)",
            redact_url(url)
        ))),
    }
}

/// The URL with the password (and any `password=` query value) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => format!("***@{hosts}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("redis://user:s3cret@host:6379/2"),
            "redis://user:***@host:6379/2"
        );
        assert_eq!(redact_url("rediss://:s3cret@host"), "rediss://:***@host");
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis+cluster://u:s3cret@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
        assert_eq!(
            redact_url("redis://host/0?password=s3cret&x=1"),
            "redis://host/0?password=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/usage?sslmode=require"),
            "postgres://app:***@db:5432/usage?sslmode=require"
        );
        assert_eq!(redact_url("memory:"), "memory:");
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused_with_the_choices() {
        let err = open_store(
            "ftp://u:s3cret@x",
            StoreOptions::default(),
            RedisOptions::default(),
        )
        .await
        .expect_err("ftp is not a store");
        let message = err.to_string();
        assert!(message.contains("memory:"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
