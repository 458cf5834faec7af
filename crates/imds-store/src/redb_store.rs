//! [`RedbStore`]: the default [`Store`], one redb file.
//!
//! Layout: table `kv` maps a key to `(value, mod_revision, create_revision)`;
//! table `meta` holds the current revision and the layout version. Every
//! [`Store::txn`] is one redb write transaction committed with
//! [`Durability::Immediate`] on a blocking thread, so an acknowledged write
//! survives `kill -9` and power loss. The file is created with mode `0600`
//! (it holds secrets) and an existing file readable by others is tightened.
//!
//! Watches are served from memory (see the crate docs): revisions committed
//! before this process opened the file cannot be replayed.

use crate::hub::Hub;
use crate::{
    BoxFuture, Compare, DEFAULT_WATCH_HISTORY, KeyValue, Op, Revision, Store, StoreError, WatchEvent,
    WatchReceiver, validate_txn,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// key → (value, mod_revision, create_revision)
const KV: TableDefinition<&str, (&[u8], u64, u64)> = TableDefinition::new("kv");
/// Store-wide counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `META` key of the current revision.
const META_REVISION: &str = "revision";
/// `META` key of the layout version.
const META_LAYOUT: &str = "layout";
/// The layout this code reads and writes.
const LAYOUT_VERSION: u64 = 1;
/// Permissions of the database file.
const FILE_MODE: u32 = 0o600;
/// redb's page cache (reads 90 %, write buffer 10 %). redb's default is
/// 1 GiB, which a 100,000-instance store fills by being listed once at
/// start: RSS that grows with the fleet for pages read once. Listing is a
/// sequential scan and the hot reads (point lookups by key) touch few
/// pages, so a small cache serves them as well.
const CACHE_BYTES: usize = 32 << 20;

/// A [`Store`] in one redb file. Cloning gives another handle to the same
/// open database; the file stays locked against other processes while any
/// handle lives.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Orders commits and their publication to watchers.
    writer: Mutex<()>,
    hub: Hub,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating it (mode `0600`) if absent,
    /// keeping [`DEFAULT_WATCH_HISTORY`] revisions for watches. Blocking:
    /// redb may check or repair the file after an unclean shutdown.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_watch_history(path, DEFAULT_WATCH_HISTORY)
    }

    /// [`RedbStore::open`], keeping the last `revisions` revisions for
    /// watches.
    pub fn open_with_watch_history(path: impl AsRef<Path>, revisions: usize) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // Created by us with 0600 before redb sees it, so the secrets it
        // will hold are never readable by others, not even briefly.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)?;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o7777), "store file was accessible to others; setting mode 0600");
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        }
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create_file(file).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Backend(format!("{} is already open in another process", path.display()))
            }
            other => StoreError::Backend(format!("cannot open {}: {other}", path.display())),
        })?;
        let revision = init(&db)?;
        tracing::debug!(path = %path.display(), revision, "opened redb store");
        let inner = Inner { db, writer: Mutex::new(()), hub: Hub::new(revision, revisions) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Runs `f` on a blocking thread with the shared state.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}

/// Creates the tables on a new file, checks the layout of an old one, and
/// returns the current revision.
fn init(db: &Database) -> Result<Revision, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    let revision = {
        tx.open_table(KV)?;
        let mut meta = tx.open_table(META)?;
        let layout = meta.get(META_LAYOUT)?.map(|g| g.value());
        match layout {
            Some(LAYOUT_VERSION) => {}
            None => {
                meta.insert(META_LAYOUT, LAYOUT_VERSION)?;
            }
            Some(other) => {
                return Err(StoreError::Corrupt {
                    key: META_LAYOUT.to_owned(),
                    reason: format!("store layout {other}, this program knows {LAYOUT_VERSION}"),
                });
            }
        }
        let revision = meta.get(META_REVISION)?.map(|g| g.value());
        match revision {
            Some(revision) => revision,
            None => {
                meta.insert(META_REVISION, 0)?;
                0
            }
        }
    };
    tx.commit()?;
    Ok(revision)
}

/// What a txn did inside its write transaction.
enum Outcome {
    CompareFailed,
    Unchanged(Revision),
    Changed(Revision, Vec<WatchEvent>),
}

fn txn_blocking(inner: &Inner, compares: &[Compare], ops: Vec<Op>) -> Result<Option<Revision>, StoreError> {
    // Held until the commit is published, so watchers see revisions in order.
    let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    let mut tx = inner.db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    let outcome = {
        let mut kv = tx.open_table(KV)?;
        let mut meta = tx.open_table(META)?;
        let current = meta.get(META_REVISION)?.map_or(0, |g| g.value());
        let mut holds = true;
        for compare in compares {
            let mod_revision = kv.get(compare.key())?.map(|g| g.value().1);
            if !compare.holds(mod_revision) {
                holds = false;
                break;
            }
        }
        if holds {
            let revision = current + 1;
            let mut events = Vec::with_capacity(ops.len());
            for op in ops {
                match op {
                    Op::Put { key, value } => {
                        let create_revision = kv.get(key.as_str())?.map_or(revision, |g| g.value().2);
                        kv.insert(key.as_str(), (value.as_slice(), revision, create_revision))?;
                        events.push(WatchEvent::Put(KeyValue {
                            key,
                            value,
                            mod_revision: revision,
                            create_revision,
                        }));
                    }
                    Op::Delete { key } => {
                        if kv.remove(key.as_str())?.is_some() {
                            events.push(WatchEvent::Delete { key, mod_revision: revision });
                        }
                    }
                }
            }
            if events.is_empty() {
                Outcome::Unchanged(current)
            } else {
                meta.insert(META_REVISION, revision)?;
                Outcome::Changed(revision, events)
            }
        } else {
            Outcome::CompareFailed
        }
    };
    match outcome {
        Outcome::CompareFailed => {
            tx.abort()?;
            Ok(None)
        }
        Outcome::Unchanged(current) => {
            tx.abort()?;
            Ok(Some(current))
        }
        Outcome::Changed(revision, events) => {
            tx.commit()?;
            inner.hub.publish(revision, events);
            Ok(Some(revision))
        }
    }
}

fn get_blocking(inner: &Inner, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let tx = inner.db.begin_read()?;
    let kv = tx.open_table(KV)?;
    let found = kv.get(key)?.map(|g| {
        let (value, mod_revision, create_revision) = g.value();
        KeyValue { key: key.to_owned(), value: value.to_vec(), mod_revision, create_revision }
    });
    Ok(found)
}

fn list_blocking(inner: &Inner, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
    // One read transaction: the keys and the revision are one snapshot.
    let tx = inner.db.begin_read()?;
    let kv = tx.open_table(KV)?;
    let meta = tx.open_table(META)?;
    let revision = meta.get(META_REVISION)?.map_or(0, |g| g.value());
    let mut kvs = Vec::new();
    for entry in kv.range::<&str>(prefix..)? {
        let (key, stored) = entry?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        let (value, mod_revision, create_revision) = stored.value();
        kvs.push(KeyValue { key: key.to_owned(), value: value.to_vec(), mod_revision, create_revision });
    }
    Ok((kvs, revision))
}

impl Store for RedbStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |inner| get_blocking(inner, &key)))
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(self.blocking(move |inner| list_blocking(inner, &prefix)))
    }

    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>> {
        Box::pin(async move {
            validate_txn(&compares, &ops)?;
            self.blocking(move |inner| txn_blocking(inner, &compares, ops)).await
        })
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchReceiver, StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { self.inner.hub.watch(prefix, from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WatchMessage;
    use crate::conformance::{events_until, next_message, ok, put};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn data_and_revision_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        let r1 = put(&store, "a", b"1").await;
        let r2 = put(&store, "b", b"2").await;
        ok(store.txn(Vec::new(), vec![Op::delete("a")]).await);
        let before = ok(store.list("").await);
        drop(store);

        let store = RedbStore::open(&path).unwrap();
        assert_eq!(ok(store.list("").await), before);
        assert_eq!(before.1, r2 + 1);
        let kv = ok(store.get("b").await).unwrap();
        assert_eq!((kv.value.as_slice(), kv.mod_revision, kv.create_revision), (&b"2"[..], r2, r2));
        // The counter continues; it never reuses a revision.
        assert_eq!(put(&store, "c", b"3").await, r2 + 2);
        assert!(r1 < r2);
    }

    #[tokio::test]
    async fn watch_after_reopen_from_before_the_restart_gets_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        for i in 0..5u32 {
            put(&store, "k", &i.to_be_bytes()).await;
        }
        drop(store);
        let store = Arc::new(RedbStore::open(&path).unwrap());
        crate::conformance::watch_from_unavailable_revision_gets_compacted(store.clone(), 3).await;

        // From the reopened revision + 1 everything is delivered.
        let (_, revision) = ok(store.list("").await);
        let mut rx = ok(store.watch("", revision + 1).await);
        let next = put(store.as_ref(), "k", b"x").await;
        assert_eq!(events_until(&mut rx, next).await.len(), 1);
        // And from the very beginning it is compacted, with the oldest
        // watchable revision after the restart point.
        let mut old = ok(store.watch("", 1).await);
        assert_eq!(next_message(&mut old).await, Some(WatchMessage::Compacted { compact_revision: 6 }));
    }

    #[test]
    fn database_file_is_created_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(store);
        // Reopening keeps it private.
        drop(RedbStore::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn existing_file_readable_by_others_is_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbStore::open(&path).unwrap());
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        drop(RedbStore::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn second_open_of_the_same_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _first = RedbStore::open(&path).unwrap();
        let second = RedbStore::open(&path);
        assert!(matches!(second, Err(StoreError::Backend(_))), "{second:?}");
    }

    #[test]
    fn file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let opened = RedbStore::open(&path);
        assert!(matches!(opened, Err(StoreError::Backend(_))), "{opened:?}");
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let opened = RedbStore::open(dir.path().join("nope").join("store.redb"));
        assert!(matches!(opened, Err(StoreError::Io(_))), "{opened:?}");
    }
}
