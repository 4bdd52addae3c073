//! TruckLLM's request path: a gateway speaking OpenAI Chat and Anthropic Messages in front of
//! many providers and keys.
//!
//! # Layout (ingress → dispatch → providers)
//!
//! - [`app`]: the route table (each route's access class and dialect), layers, serving.
//! - [`auth`]: the client and admin layers; every route but the public list needs one.
//! - [`admin`]: the admin API for client keys and teams (every change is a config version),
//!   usage, provider keys, the request log, config history and rollback, storage state.
//! - [`ui`]: the dashboard at `/ui`: embedded pages over the admin API, session sign-in.
//! - [`ingress`]: one module per client dialect (`openai`, `anthropic`): parse into a
//!   neutral request, render answers, stream frames and errors in the client's dialect
//!   (`relay`).
//! - [`dispatch`]: the protocol-free attempt loop (resolve, order keys, reserve, call,
//!   classify, retry or fall back).
//! - [`providers`]: one file per upstream protocol behind one trait (URLs per model and
//!   stream, authorisation of the exact body, verdicts, usage): OpenAI-compatible, Anthropic,
//!   Azure OpenAI, Gemini.
//! - [`conversion`]: OpenAI Chat ↔ Anthropic Messages, and Chat ↔ providers' own dialects
//!   (Gemini), requests, answers, streams, errors.
//! - [`attempt`]: one reserved attempt and how its usage is settled (also when dropped).
//! - [`recorder`]: usage corrections, coalesced per key and bucket before they reach the store.
//! - [`budgets`]: spend per period on keys and teams: worst case reserved before the call,
//!   settled to the real cost after it, alerts at 50/80/100 %.
//! - [`client_status`]: the `x-ratelimit-*` and budget headers every answer carries.
//! - [`last_used`]: when each client key was last used, shared through the store.
//! - [`clients`]: client keys, hashed and compared in constant time; permissions.
//! - [`routing`]: model names to provider targets; per-provider and per-key state, carried
//!   across config versions.
//! - [`balancer`]: ordering a provider's keys (round_robin, least_loaded, hybrid).
//! - [`snapshot`]: 60-second usage of every key, refreshed in the background.
//! - [`health`]: per-key failures, cooldowns (shared through the store) and latency EWMA.
//! - [`usage`]: usage by class, from JSON bodies and SSE streams, without re-serialising.
//! - [`state`]: the shared gateway state and the runtime built from each config version.
//! - [`metrics`]: the gateway's Prometheus metrics.
//! - [`upstream`]: the pooled HTTP client that calls providers (TLS, connect and read
//!   timeouts).
//! - [`mock`]: the mock provider (OpenAI, Anthropic, Azure and Gemini dialects) used by
//!   tests, the demo and benchmarks.
//! - [`bootstrap`]: store URLs from config, and the demo config.
//! - [`error`]: errors, rendered in either dialect.
//!
//! A request, end to end: [`auth::client`] authenticates the client against the current
//! runtime; `ingress::openai::chat_completions` (or `ingress::anthropic::messages`) parses
//! the body once; [`dispatch::dispatch`] resolves the model to targets the client may use
//! (`routing`), and for each key in the balancer's order reserves the key's limits in the
//! runtime store (one round trip), has the target's provider build the call (the body as the
//! client sent it but for the model, or translated), calls it, and on a retryable verdict
//! tries the next key or target. `ingress::relay` sends the answer back in the client's
//! dialect (streams event by event) while `attempt` hands the real usage to `recorder`,
//! which writes it coalesced with other requests' (the second round trip, shared).

pub mod admin;
pub mod alerts;
pub mod app;
pub mod attempt;
pub mod auth;
pub mod balancer;
pub mod bootstrap;
pub mod budgets;
pub mod client_status;
pub mod clients;
pub mod conversion;
pub mod dispatch;
pub mod error;
pub mod health;
pub mod ingress;
pub mod last_used;
pub mod leases;
pub mod metrics;
pub mod mock;
pub mod providers;
pub mod recorder;
pub mod routing;
pub mod snapshot;
pub mod state;
pub mod trace;
pub mod ui;
pub mod upstream;
pub mod usage;

pub use error::ApiError;
pub use state::{Gateway, UpstreamOptions, UpstreamProxy};
