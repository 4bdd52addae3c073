//! TruckLLM's request path: an OpenAI-compatible gateway in front of many providers and keys.
//!
//! # Layout
//!
//! - [`app`]: routes, which of them skip client auth, and serving with graceful shutdown.
//! - [`proxy`]: the OpenAI endpoints and the attempt loop (reserve, call, retry, fall back).
//! - [`attempt`]: one reserved attempt and how its usage is settled (also when dropped).
//! - [`recorder`]: usage corrections, coalesced per key and bucket before they reach the store.
//! - [`clients`]: client keys, hashed and compared in constant time; scopes.
//! - [`routing`]: model names to provider targets, with the client's permissions applied.
//! - [`balancer`]: ordering a provider's keys (round_robin, least_loaded, hybrid).
//! - [`snapshot`]: 60-second usage of every key, refreshed in the background.
//! - [`health`]: per-key failures, cooldowns (shared through the store) and latency EWMA.
//! - [`usage`]: token usage from JSON bodies and SSE streams, without re-serialising.
//! - [`state`]: the shared gateway state and the runtime built from each config version.
//! - [`metrics`]: the gateway's Prometheus metrics.
//! - [`upstream`]: the pooled HTTP client that calls providers (TLS, connect and read
//!   timeouts).
//! - [`mock`]: the mock upstream used by tests, the demo and benchmarks.
//! - [`bootstrap`]: store URLs from config, and the demo config.
//! - [`error`]: errors in the OpenAI error shape.
//!
//! A request, end to end: `proxy::chat_completions` authenticates the client
//! (`clients`), parses the body once, resolves the model to targets the client may use
//! (`routing`), and for each key in the balancer's order (`balancer`, reading `snapshot`)
//! reserves the key's limits in the runtime store (one round trip), calls the provider, and on
//! 429/5xx/transport errors tries the next key or target. The response goes back as received
//! (streams chunk by chunk) while `attempt` hands the real usage to `recorder`, which writes it
//! coalesced with other requests' (the second round trip, shared).

pub mod alerts;
pub mod app;
pub mod attempt;
pub mod auth;
pub mod balancer;
pub mod bootstrap;
pub mod clients;
pub mod conversion;
pub mod dispatch;
pub mod error;
pub mod health;
pub mod ingress;
pub mod metrics;
pub mod mock;
pub mod providers;
pub mod recorder;
pub mod routing;
pub mod snapshot;
pub mod state;
pub mod trace;
pub mod upstream;
pub mod usage;

pub use error::ApiError;
pub use state::{Gateway, UpstreamOptions, UpstreamProxy};
