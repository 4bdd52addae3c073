//! When each client key was last used, as every instance sees it: a small document per key in
//! the runtime store (`last-used:{id}`, the Unix millisecond), written at most once a minute
//! per key by each instance, so the admin API's `last_used` is exact to a minute and costs
//! the store one write per busy key per minute, never one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;

use crate::state::Gateway;

/// An instance writes a key's time at most this often.
const EVERY_MS: u64 = 60_000;

/// How long a key's last use is remembered without a new one.
const KEEP: Duration = truckllm_store::docs::MAX_DOC_TTL;

/// Reads made at once when listing many keys.
const CONCURRENT_READS: usize = 16;

/// This instance's last write per key id.
#[derive(Debug, Default)]
pub struct LastUsed {
    written_ms: Mutex<HashMap<String, u64>>,
}

fn doc_key(id: &str) -> String {
    format!("last-used:{id}")
}

impl LastUsed {
    /// Records that client `id` was used now, unless this instance did within the minute.
    pub fn touch(&self, gw: &Arc<Gateway>, id: &str) {
        let now = gw.now_ms();
        {
            let mut written = self
                .written_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match written.get_mut(id) {
                Some(at) if now.saturating_sub(*at) < EVERY_MS => return,
                Some(at) => *at = now,
                None => {
                    written.insert(id.to_owned(), now);
                }
            }
        }
        let store = Arc::clone(&gw.store);
        let key = doc_key(id);
        gw.settlements.spawn(async move {
            if let Err(e) = store.put_doc(&key, &now.to_be_bytes(), KEEP).await {
                tracing::debug!(error = %e, "cannot record a key's last use");
            }
        });
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
