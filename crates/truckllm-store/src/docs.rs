//! Documents: small opaque blobs stored under a name with a TTL, for state every gateway
//! instance must see (stored Responses conversations: `previous_response_id` works on any
//! instance). The store never looks inside a document.
//!
//! # Contract
//!
//! - `put_doc(key, value, ttl)` replaces the whole document and its TTL; `get_doc` answers it
//!   until the TTL has passed, then `None`; `delete_doc` removes it and says whether it was
//!   there. There is no partial update and no listing.
//! - Keys are 1 to [`MAX_DOC_KEY_BYTES`] characters of `[A-Za-z0-9._:-]`; values at most
//!   [`MAX_DOC_BYTES`]; TTLs from 1 s to [`MAX_DOC_TTL`]. Anything else is
//!   [`StoreError::InvalidInput`] and nothing is stored.
//! - Values are stored as given, uncompressed (callers that want compression compress).
//! - Redis keeps one key per document (`doc:{key}`, `SET … PX`). The memory store keeps at
//!   most [`MEMORY_DOC_BUDGET`] bytes of live documents (keys and values); past it, a new
//!   document is refused with [`StoreError::Capacity`] rather than evicting a live one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::StoreError;
use crate::store::Result;

/// Largest document accepted.
pub const MAX_DOC_BYTES: usize = 4 << 20;
/// Longest document key accepted.
pub const MAX_DOC_KEY_BYTES: usize = 128;
/// Longest TTL accepted: a year.
pub const MAX_DOC_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Bytes of live documents one memory store holds at most.
pub const MEMORY_DOC_BUDGET: usize = 256 << 20;

/// Checks a document key: 1 to [`MAX_DOC_KEY_BYTES`] characters of `[A-Za-z0-9._:-]`.
pub fn check_doc_key(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= MAX_DOC_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "a document key is 1 to {MAX_DOC_KEY_BYTES} characters of [A-Za-z0-9._:-]"
        )))
    }
}

/// Checks a whole `put_doc` call before anything is written.
pub fn check_put_doc(key: &str, value: &[u8], ttl: Duration) -> Result<()> {
    check_doc_key(key)?;
    if value.len() > MAX_DOC_BYTES {
        return Err(StoreError::invalid(format!(
            "a document is at most {MAX_DOC_BYTES} bytes (got {})",
            value.len()
        )));
    }
    if ttl < Duration::from_secs(1) || ttl > MAX_DOC_TTL {
        return Err(StoreError::invalid(format!(
            "a document's TTL is from 1 s to {} s",
            MAX_DOC_TTL.as_secs()
        )));
    }
    Ok(())
}

/// The memory store's documents: a bounded map, expired entries dropped when met or when
/// room is needed.
#[derive(Debug, Default)]
pub(crate) struct MemoryDocs {
    inner: Mutex<DocMap>,
}

#[derive(Debug, Default)]
struct DocMap {
    docs: HashMap<String, (Vec<u8>, u64)>,
    bytes: usize,
}

impl DocMap {
    fn remove(&mut self, key: &str) -> Option<(Vec<u8>, u64)> {
        let removed = self.docs.remove(key);
        if let Some((value, _)) = &removed {
            self.bytes -= key.len() + value.len();
        }
        removed
    }

    fn sweep(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .docs
            .iter()
            .filter(|(_, (_, expires))| *expires <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }
}

impl MemoryDocs {
    fn lock(&self) -> std::sync::MutexGuard<'_, DocMap> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn put(&self, key: &str, value: &[u8], ttl: Duration, now_ms: u64) -> Result<()> {
        check_put_doc(key, value, ttl)?;
        let expires = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut map = self.lock();
        map.remove(key);
        let size = key.len() + value.len();
        if map.bytes + size > MEMORY_DOC_BUDGET {
            map.sweep(now_ms);
        }
        if map.bytes + size > MEMORY_DOC_BUDGET {
            return Err(StoreError::Capacity {
                backend: "memory",
                detail: format!("documents hold {MEMORY_DOC_BUDGET} bytes at most"),
            });
        }
        map.bytes += size;
        map.docs.insert(key.to_owned(), (value.to_vec(), expires));
        Ok(())
    }

    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>> {
        check_doc_key(key)?;
        let mut map = self.lock();
        match map.docs.get(key) {
            Some((value, expires)) if *expires > now_ms => Ok(Some(value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    pub(crate) fn delete(&self, key: &str, now_ms: u64) -> Result<bool> {
        check_doc_key(key)?;
        let removed = self.lock().remove(key);
        Ok(removed.is_some_and(|(_, expires)| expires > now_ms))
    }
}
