//! [`MintedIndex`]: an in-memory map from access key id to
//! [`MintedRecord`], kept in step with the store, for the control plane to
//! authenticate role and identity credentials and to set
//! `ec2:RoleDelivery`.
//!
//! It owns the list-and-watch loop over `secrets/minted/` and the lookup;
//! it never writes (the [`CredentialManager`](crate::CredentialManager)
//! that minted a set writes and deletes its record).

use crate::record::{MINTED_PREFIX, MintedRecord};
use imds_core::Clock;
use imds_store::records::decode;
use imds_store::{KeyValue, Store, WatchEvent, WatchMessage};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Expired entries are dropped from memory at most this often.
const PRUNE_EVERY_SECS: u64 = 60;
/// Longest pause before listing again after a store error.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Every minted credential set in the store, by access key id; updated by a
/// background task (list, then watch; relist when the watch is compacted or
/// ends). Dropping it stops the task.
pub struct MintedIndex {
    shared: Arc<IndexShared>,
    synced: watch::Receiver<bool>,
    task: AbortHandle,
}

struct IndexShared {
    clock: Arc<dyn Clock>,
    /// Written only by the background task, never held across `.await`.
    records: RwLock<HashMap<String, MintedRecord>>,
}

impl std::fmt::Debug for MintedIndex {
    /// Shows the size only: the records hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.shared.records.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("MintedIndex").field("records", &len).finish_non_exhaustive()
    }
}

impl Drop for MintedIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MintedIndex {
    /// Starts following `secrets/minted/` in `store`; `clock` decides which
    /// records have expired.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns its background task).
    pub fn spawn(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let shared = Arc::new(IndexShared { clock, records: RwLock::new(HashMap::new()) });
        let (synced_tx, synced) = watch::channel(false);
        let task = tokio::spawn(follow(store, Arc::clone(&shared), synced_tx)).abort_handle();
        Self { shared, synced, task }
    }

    /// The record of `access_key_id` if it exists and has not expired.
    pub fn lookup(&self, access_key_id: &str) -> Option<MintedRecord> {
        let now = self.shared.clock.now_secs();
        let records = self.shared.records.read().unwrap_or_else(PoisonError::into_inner);
        records.get(access_key_id).filter(|r| r.is_valid_at(now)).cloned()
    }

    /// Whether the first listing has completed.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first listing (e.g. before the control plane accepts
    /// requests).
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        // An error means the task ended, which only dropping `self` does.
        let _ = synced.wait_for(|s| *s).await;
    }
}

impl IndexShared {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, MintedRecord>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The record in `kv`, if it decodes and is stored under its own key id.
fn record_of(kv: &KeyValue) -> Option<MintedRecord> {
    let akid = kv.key.strip_prefix(MINTED_PREFIX)?;
    match decode::<MintedRecord>(&kv.key, &kv.value) {
        Ok(r) if r.access_key_id == akid => Some(r),
        Ok(_) => {
            tracing::warn!(key = %kv.key, "minted record stored under another key id; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "undecodable minted record ignored");
            None
        }
    }
}

/// List, watch, apply; relist on compaction, a closed watch or an error.
async fn follow(store: Arc<dyn Store>, shared: Arc<IndexShared>, synced: watch::Sender<bool>) {
    let mut failures = 0u32;
    let mut last_prune = 0u64;
    loop {
        if failures > 0 {
            let exp = failures.min(5);
            tokio::time::sleep(Duration::from_millis(250u64 << exp).min(MAX_RETRY)).await;
        }
        let (kvs, revision) = match store.list(MINTED_PREFIX).await {
            Ok(listed) => listed,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "cannot list minted credentials; retrying");
                continue;
            }
        };
        let now = shared.clock.now_secs();
        let fresh: HashMap<String, MintedRecord> = kvs
            .iter()
            .filter_map(record_of)
            .filter(|r| r.is_valid_at(now))
            .map(|r| (r.access_key_id.clone(), r))
            .collect();
        let count = fresh.len();
        *shared.write() = fresh;
        synced.send_replace(true);
        tracing::debug!(records = count, revision, "minted credentials listed");
        let mut rx = match store.watch(MINTED_PREFIX, revision + 1).await {
            Ok(rx) => rx,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "cannot watch minted credentials; relisting");
                continue;
            }
        };
        failures = 0;
        loop {
            match rx.recv().await {
                Some(WatchMessage::Events { events, .. }) => {
                    let now = shared.clock.now_secs();
                    let mut records = shared.write();
                    for event in events {
                        match event {
                            WatchEvent::Put(kv) => {
                                if let Some(r) = record_of(&kv) {
                                    records.insert(r.access_key_id.clone(), r);
                                }
                            }
                            WatchEvent::Delete { key, .. } => {
                                if let Some(akid) = key.strip_prefix(MINTED_PREFIX) {
                                    records.remove(akid);
                                }
                            }
                        }
                    }
                    if now >= last_prune.saturating_add(PRUNE_EVERY_SECS) {
                        records.retain(|_, r| r.is_valid_at(now));
                        last_prune = now;
                    }
                }
                Some(WatchMessage::Compacted { compact_revision }) => {
                    tracing::info!(compact_revision, "minted credentials watch compacted; relisting");
                    break;
                }
                None => {
                    tracing::info!("minted credentials watch ended; relisting");
                    failures = 1;
                    break;
                }
            }
        }
    }
}
