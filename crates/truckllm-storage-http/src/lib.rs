//! The HTTP storage protocol, both sides: [`server`] serves any runtime store (and a config
//! store) over HTTP; [`client`] is a runtime store that speaks to such a server.
//!
//! # Layout
//!
//! - [`protocol`]: paths, headers and JSON bodies, shared by both sides.
//! - [`tokens`]: the server's bearer tokens, scopes, provider limits and quotas.
//! - [`server`]: routes, the auth layer (every route but `PUBLIC_ROUTES`), the caller's
//!   clock, audit records, TLS.
//! - [`client`]: [`HttpStore`], with connection reuse, timeouts, safe retries, idempotent
//!   increments, coalesced batches and a circuit breaker.
//! - [`config_client`]: [`HttpConfigStore`], the `ConfigStore` over `GET/PUT /config`.

pub mod client;
pub mod config_client;
pub mod protocol;
pub mod server;
pub mod tokens;

pub use client::{HttpOptions, HttpStore};
pub use config_client::{HttpConfigStore, open_config_store};
pub use server::{Audit, ServerState};
pub use tokens::Tokens;
