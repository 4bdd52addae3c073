//! A picture of every key's usage over the last 60 seconds, refreshed in the background (two
//! batched store calls per refresh, whatever the number of keys), so the balancer never reads
//! the store on the request path.

use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use truckllm_store::{Metric, RuntimeStore, Series, StoreError};

use crate::routing::Routes;

/// The window every balancing decision looks at.
pub const WINDOW: Duration = Duration::from_secs(60);

const WINDOWED: [Metric; 5] = [
    Metric::Req,
    Metric::Tokens,
    Metric::Errors,
    Metric::Latency,
    Metric::Cost,
];

/// One key's usage in the window, across every instance sharing the store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeyUsage {
    pub req: f64,
    pub tokens: f64,
    pub errors: f64,
    pub latency: f64,
    pub cost: f64,
    /// Unix ms until which some instance cooled the key down.
    pub cooldown_until_ms: u64,
}

/// Usage of every key, by provider and key index.
#[derive(Debug, Default)]
pub struct Snapshot {
    usage: ArcSwap<Vec<Vec<KeyUsage>>>,
}

impl Snapshot {
    pub fn get(&self, provider: usize, key: usize) -> KeyUsage {
        self.usage
            .load()
            .get(provider)
            .and_then(|keys| keys.get(key))
            .copied()
            .unwrap_or_default()
    }

    /// Reads every key's windows and cooldowns from the store and swaps them in.
    pub async fn refresh(
        &self,
        routes: &Routes,
        store: &dyn RuntimeStore,
    ) -> Result<(), StoreError> {
        let keys: Vec<(usize, usize)> = routes
            .providers
            .iter()
            .enumerate()
            .flat_map(|(p, provider)| (0..provider.keys.len()).map(move |k| (p, k)))
            .collect();
        let windowed: Vec<Series> = keys
            .iter()
            .flat_map(|&(p, k)| WINDOWED.map(|m| routes.providers[p].keys[k].store_key.series(m)))
            .collect();
        let cooldowns: Vec<Series> = keys
            .iter()
            .map(|&(p, k)| {
                routes.providers[p].keys[k]
                    .store_key
                    .series(Metric::Cooldown)
            })
            .collect();
        let (windows, cooldown_secs) = futures_util::try_join!(
            store.window_many(&windowed, WINDOW),
            store.get_many(&cooldowns)
        )?;
        let mut usage: Vec<Vec<KeyUsage>> = routes
            .providers
            .iter()
            .map(|p| vec![KeyUsage::default(); p.keys.len()])
            .collect();
        for (i, &(p, k)) in keys.iter().enumerate() {
            let w = &windows[i * WINDOWED.len()..(i + 1) * WINDOWED.len()];
            usage[p][k] = KeyUsage {
                req: w[0],
                tokens: w[1],
                errors: w[2],
                latency: w[3],
                cost: w[4],
                cooldown_until_ms: (cooldown_secs[i].max(0.0) * 1000.0) as u64,
            };
            routes.providers[p].keys[k]
                .state
                .health
                .sent_since_snapshot
                .store(0, Ordering::Relaxed);
        }
        self.usage.store(std::sync::Arc::new(usage));
        Ok(())
    }
}
