//! When each client key was last used, as every instance sees it: a small document per key in
//! the runtime store (`last-used:{id}`, the Unix millisecond), written at most once a minute
//! per key by each instance, so the admin API's `last_used` is exact to a minute and costs
//! the store one write per busy key per minute, never one per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::StreamExt;

use crate::state::Gateway;

/// An instance writes a key's time at most this often.
const EVERY_MS: u64 = 60_000;

/// How long a key's last use is remembered without a new one.
const KEEP: Duration = truckllm_store::docs::MAX_DOC_TTL;

/// Reads made at once when listing many keys.
const CONCURRENT_READS: usize = 16;

/// This instance's last write per key id. A request takes the read lock and, once a minute per
/// key, one compare-and-swap; only a key's first use on this instance takes the write lock.
#[derive(Debug, Default)]
pub struct LastUsed {
    written_ms: RwLock<HashMap<String, AtomicU64>>,
}

fn doc_key(id: &str) -> String {
    format!("last-used:{id}")
}

impl LastUsed {
    /// Records that client `id` was used now, unless this instance did within the minute.
    pub fn touch(&self, gw: &Arc<Gateway>, id: &str) {
        let now = gw.now_ms();
        if !self.claim(id, now) {
            return;
        }
        let store = Arc::clone(&gw.store);
        let key = doc_key(id);
        gw.settlements.spawn(async move {
            if let Err(e) = store.put_doc(&key, &now.to_be_bytes(), KEEP).await {
                tracing::debug!(error = %e, "cannot record a key's last use");
            }
        });
    }

    /// Whether this instance is to write `id`'s use at `now`: its first use here, or the first
    /// in a minute. Of concurrent callers, one wins.
    fn claim(&self, id: &str, now: u64) -> bool {
        let known = self
            .written_ms
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = known.get(id) {
            let last = at.load(Ordering::Relaxed);
            return now.saturating_sub(last) >= EVERY_MS
                && at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
        }
        drop(known);
        let mut known = self
            .written_ms
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match known.entry(id.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(AtomicU64::new(now));
                true
            }
        }
    }
}

/// Each id's last use (Unix ms), in order; `None` for a key not used (or not readable).
pub async fn read_many(gw: &Gateway, ids: &[String]) -> Vec<Option<u64>> {
    let keys: Vec<String> = ids.iter().map(|id| doc_key(id)).collect();
    futures_util::stream::iter(keys)
        .map(|key| async move {
            let doc = gw.store.get_doc(&key).await.ok()??;
            Some(u64::from_be_bytes(doc.as_slice().try_into().ok()?))
        })
        .buffered(CONCURRENT_READS)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_a_minute() {
        let last_used = LastUsed::default();
        assert!(last_used.claim("a", 1_000));
        assert!(!last_used.claim("a", 1_000 + EVERY_MS - 1));
        assert!(last_used.claim("b", 1_500), "keys are claimed apart");
        assert!(last_used.claim("a", 1_000 + EVERY_MS));
        assert!(!last_used.claim("a", 1_000 + EVERY_MS + 1));
    }

    #[test]
    fn of_concurrent_callers_one_claims() {
        let last_used = Arc::new(LastUsed::default());
        assert!(last_used.claim("a", 0));
        let wins: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| usize::from(last_used.claim("a", EVERY_MS))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(wins, 1);
    }
}
