//! Choosing a key: first order the candidates by the configured algorithm, then the caller
//! tries them in that order (the next one after a denial or a failure).
//!
//! All algorithms read a [`Snapshot`] of 60-second windows refreshed in the background, plus
//! each key's requests sent since that snapshot; none reads the store per request.
//!
//! - `round_robin`: rotate through the keys.
//! - `least_loaded`: the lowest load relative to the key's limits (the higher of request and
//!   token ratios; keys without limits compare by raw usage).
//! - `hybrid`: a weighted score of token ratio, request ratio, error rate, EWMA latency and
//!   cost, lowest first.
//!
//! Keys cooling down (here or, through the store, on any instance) go last.

use std::sync::atomic::{AtomicUsize, Ordering};

use truckllm_config::schema::Algorithm;

use crate::health::KeyHealth;
use crate::routing::Key;
use crate::snapshot::KeyUsage;

/// Weights of the hybrid score.
const W_TOKENS: f64 = 0.35;
const W_REQUESTS: f64 = 0.25;
const W_ERRORS: f64 = 0.2;
const W_LATENCY: f64 = 0.1;
const W_COST: f64 = 0.1;

/// What the balancer knows about one candidate key.
pub struct Candidate<'a> {
    pub key: &'a Key,
    pub health: &'a KeyHealth,
    pub usage: KeyUsage,
}

/// Orders candidate indexes, best first.
pub fn order(
    algorithm: Algorithm,
    candidates: &[Candidate<'_>],
    rotation: &AtomicUsize,
    now_ms: u64,
) -> Vec<usize> {
    let n = candidates.len();
    if n == 0 {
        return Vec::new();
    }
    let start = rotation.fetch_add(1, Ordering::Relaxed) % n;
    // Rotated order breaks ties fairly between equally loaded keys.
    let rotated: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
    let mut ranked: Vec<(bool, f64, usize)> = rotated
        .iter()
        .enumerate()
        .map(|(position, &i)| {
            let c = &candidates[i];
            let cooling = c.health.cooling_down(now_ms) || c.usage.cooldown_until_ms > now_ms;
            let score = match algorithm {
                Algorithm::RoundRobin => position as f64,
                Algorithm::LeastLoaded => load(c, candidates),
                Algorithm::Hybrid => hybrid(c, candidates),
            };
            (cooling, score, i)
        })
        .collect();
    // Stable sort keeps the rotation among equal scores.
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    ranked.into_iter().map(|(_, _, i)| i).collect()
}

fn requests(c: &Candidate<'_>) -> f64 {
    c.usage.req + c.health.sent_since_snapshot.load(Ordering::Relaxed) as f64
}

fn ratio(used: f64, limit: Option<f64>, total: f64) -> f64 {
    match limit {
        Some(limit) if limit > 0.0 => used / limit,
        _ => used / (total + 1.0),
    }
}

fn load(c: &Candidate<'_>, all: &[Candidate<'_>]) -> f64 {
    let total_req: f64 = all.iter().map(requests).sum();
    let total_tokens: f64 = all.iter().map(|c| c.usage.tokens).sum();
    ratio(requests(c), c.key.limits.req_per_min, total_req).max(ratio(
        c.usage.tokens,
        c.key.limits.tokens_per_min,
        total_tokens,
    ))
}

fn hybrid(c: &Candidate<'_>, all: &[Candidate<'_>]) -> f64 {
    let total_req: f64 = all.iter().map(requests).sum();
    let total_tokens: f64 = all.iter().map(|c| c.usage.tokens).sum();
    let max_latency = all
        .iter()
        .map(|c| c.health.ewma_latency_ms())
        .fold(0.0, f64::max);
    let max_cost = all.iter().map(|c| c.usage.cost).fold(0.0, f64::max);
    let error_rate = if c.usage.req > 0.0 {
        c.usage.errors / c.usage.req
    } else {
        0.0
    };
    let norm = |v: f64, max: f64| if max > 0.0 { v / max } else { 0.0 };
    W_TOKENS * ratio(c.usage.tokens, c.key.limits.tokens_per_min, total_tokens)
        + W_REQUESTS * ratio(requests(c), c.key.limits.req_per_min, total_req)
        + W_ERRORS * error_rate
        + W_LATENCY * norm(c.health.ewma_latency_ms(), max_latency)
        + W_COST * norm(c.usage.cost, max_cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use truckllm_config::Secret;
    use truckllm_config::schema::Limits;
    use truckllm_store::ProviderKey;

    fn key(id: &str, req_per_min: f64) -> Key {
        Key {
            id: id.into(),
            secret: crate::providers::KeySecret::ApiKey(Secret::new("s")),
            limits: Limits {
                req_per_min: Some(req_per_min),
                tokens_per_min: None,
            },
            store_key: ProviderKey::new("p", id).expect("key"),
            state: std::sync::Arc::new(crate::routing::KeyState {
                health: crate::health::KeyHealth::default(),
                metrics: crate::metrics::KeyMetrics::register("p", id),
            }),
        }
    }

    fn usage(req: f64, errors: f64) -> KeyUsage {
        KeyUsage {
            req,
            errors,
            ..KeyUsage::default()
        }
    }

    #[test]
    fn round_robin_rotates() {
        let keys = [key("a", 10.0), key("b", 10.0), key("c", 10.0)];
        let health: Vec<KeyHealth> = (0..3).map(|_| KeyHealth::default()).collect();
        let c: Vec<Candidate<'_>> = keys
            .iter()
            .zip(&health)
            .map(|(key, health)| Candidate {
                key,
                health,
                usage: usage(0.0, 0.0),
            })
            .collect();
        let rotation = AtomicUsize::new(0);
        let firsts: Vec<usize> = (0..6)
            .map(|_| order(Algorithm::RoundRobin, &c, &rotation, 0)[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_loaded_compares_load_to_each_keys_limit() {
        // a: 50 of 100 (0.5); b: 30 of 40 (0.75); c: 10 of 100 (0.1)
        let keys = [key("a", 100.0), key("b", 40.0), key("c", 100.0)];
        let health: Vec<KeyHealth> = (0..3).map(|_| KeyHealth::default()).collect();
        let used = [50.0, 30.0, 10.0];
        let c: Vec<Candidate<'_>> = keys
            .iter()
            .zip(&health)
            .zip(used)
            .map(|((key, health), u)| Candidate {
                key,
                health,
                usage: usage(u, 0.0),
            })
            .collect();
        assert_eq!(
            order(Algorithm::LeastLoaded, &c, &AtomicUsize::new(0), 0),
            vec![2, 0, 1]
        );
        health[2].sent_since_snapshot.store(80, Ordering::Relaxed);
        assert_eq!(
            order(Algorithm::LeastLoaded, &c, &AtomicUsize::new(0), 0)[0],
            0,
            "requests since the snapshot count"
        );
    }

    #[test]
    fn hybrid_avoids_erroring_keys_and_cooldowns_go_last() {
        let keys = [key("a", 100.0), key("b", 100.0)];
        let health: Vec<KeyHealth> = (0..2).map(|_| KeyHealth::default()).collect();
        let c = vec![
            Candidate {
                key: &keys[0],
                health: &health[0],
                usage: usage(10.0, 8.0),
            },
            Candidate {
                key: &keys[1],
                health: &health[1],
                usage: usage(10.0, 0.0),
            },
        ];
        assert_eq!(
            order(Algorithm::Hybrid, &c, &AtomicUsize::new(0), 0),
            vec![1, 0]
        );
        health[1].cool_down_until(5_000);
        assert_eq!(
            order(Algorithm::Hybrid, &c, &AtomicUsize::new(0), 1_000),
            vec![0, 1]
        );
        let shared = vec![
            Candidate {
                key: &keys[0],
                health: &health[0],
                usage: KeyUsage {
                    cooldown_until_ms: 9_000,
                    ..usage(0.0, 0.0)
                },
            },
            Candidate {
                key: &keys[1],
                health: &health[0],
                usage: usage(50.0, 5.0),
            },
        ];
        assert_eq!(
            order(Algorithm::Hybrid, &shared, &AtomicUsize::new(0), 1_000),
            vec![1, 0],
            "cooldowns from other instances count"
        );
    }
}
