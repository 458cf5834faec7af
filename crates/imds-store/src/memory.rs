//! [`MemoryStore`]: the [`Store`] semantics without a file, for tests and
//! throw-away demo runs. Everything is lost when the last handle is dropped.

use crate::hub::Hub;
use crate::{
    BoxFuture, Compare, DEFAULT_WATCH_HISTORY, KeyValue, Op, Revision, Store, StoreError, WatchEvent,
    WatchReceiver, validate_txn,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// An in-memory [`Store`]. Cloning gives another handle to the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Also the lock that orders commits and their publication.
    data: Mutex<Data>,
    hub: Hub,
}

#[derive(Default)]
struct Data {
    revision: Revision,
    kvs: BTreeMap<String, KeyValue>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0 keeping [`DEFAULT_WATCH_HISTORY`]
    /// revisions for watches.
    pub fn new() -> Self {
        Self::with_watch_history(DEFAULT_WATCH_HISTORY)
    }

    /// An empty store keeping the last `revisions` revisions for watches;
    /// a watch from an older revision gets `Compacted`.
    pub fn with_watch_history(revisions: usize) -> Self {
        let inner = Inner { data: Mutex::new(Data::default()), hub: Hub::new(0, revisions) };
        Self { inner: Arc::new(inner) }
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // No code panics while holding the lock; a poisoned map is still a
        // consistent map because every txn is applied only after validation.
        self.inner.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn txn_now(&self, compares: &[Compare], ops: Vec<Op>) -> Result<Option<Revision>, StoreError> {
        validate_txn(compares, &ops)?;
        let mut data = self.data();
        let holds = compares.iter().all(|c| c.holds(data.kvs.get(c.key()).map(|kv| kv.mod_revision)));
        if !holds {
            return Ok(None);
        }
        let revision = data.revision + 1;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let create_revision = data.kvs.get(&key).map_or(revision, |kv| kv.create_revision);
                    let kv = KeyValue { key: key.clone(), value, mod_revision: revision, create_revision };
                    data.kvs.insert(key, kv.clone());
                    events.push(WatchEvent::Put(kv));
                }
                Op::Delete { key } => {
                    if data.kvs.remove(&key).is_some() {
                        events.push(WatchEvent::Delete { key, mod_revision: revision });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(Some(data.revision));
        }
        data.revision = revision;
        self.inner.hub.publish(revision, events);
        Ok(Some(revision))
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move { Ok(self.data().kvs.get(&key).cloned()) })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let data = self.data();
            let kvs = data
                .kvs
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, kv)| kv.clone())
                .collect();
            Ok((kvs, data.revision))
        })
    }

    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>> {
        Box::pin(async move { self.txn_now(&compares, ops) })
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchReceiver, StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { self.inner.hub.watch(prefix, from) })
    }
}
