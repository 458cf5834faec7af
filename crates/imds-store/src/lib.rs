//! The `imdsd` store: a revisioned key-value interface in the style of etcd,
//! its two embedded backends, and the typed records kept in it.
//!
//! The control plane writes desired state (instance specs, each with a
//! generation) through [`Store::txn`]; host agents [`Store::list`] a prefix at
//! one revision and [`Store::watch`] it from the next revision, then write
//! back the generation they observed. Everything needed for that loop is in
//! the [`Store`] trait, which is object safe (`Arc<dyn Store>`).
//!
//! This crate owns:
//!
//! * the [`Store`] trait and its value types ([`KeyValue`], [`Compare`],
//!   [`Op`], [`WatchEvent`], [`WatchMessage`]) and [`StoreError`];
//! * [`RedbStore`], the default backend: one redb file, every transaction
//!   durable before it is acknowledged, created with mode `0600`;
//! * [`MemoryStore`], the same semantics without a file (tests, `--demo`);
//! * [`records`], the key layout and the JSON records stored under it.
//!
//! It does not own the etcd backend (`imds-store-etcd`, which keeps its
//! protobuf build out of this crate), nor any policy about *what* is written
//! (the control plane and the agent decide that).
//!
//! # Semantics shared by every backend
//!
//! These follow etcd v3 so that the etcd backend is a thin mapping:
//!
//! * The store has one revision counter. A successful [`Store::txn`] that
//!   changes at least one key creates exactly one new revision (previous + 1);
//!   all its changes carry it as their `mod_revision`. A successful txn that
//!   changes nothing (no ops, or only deletes of absent keys) creates none and
//!   reports the current revision, as etcd does.
//! * [`Compare::ModRevision`] on an absent key compares against 0, as etcd
//!   does; real revisions start at 1, so `ModRevision(k, 0)` means "absent".
//! * A txn may not name the same key in two ops, and keys may not be empty
//!   (etcd refuses both); such a txn fails with [`StoreError::InvalidRequest`].
//! * A watch delivers every change with `mod_revision >= from` to a key with
//!   the prefix, exactly once, in revision order, with no gap between history
//!   and live changes. If the backend cannot replay from `from` it sends one
//!   [`WatchMessage::Compacted`] and ends: relist, then watch from the
//!   relist revision + 1. A watch whose channel simply ends (store shut down,
//!   connection lost) is re-created from the last seen revision + 1.
//!
//! The embedded backends keep the last [`DEFAULT_WATCH_HISTORY`] revisions
//! of changes in memory for watches; older revisions, and anything committed
//! before the process started, are "compacted" for watch purposes (the data
//! itself is of course kept).

mod error;
mod hub;
mod memory;
pub mod records;
mod redb_store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// A store revision: 0 for an empty store, then +1 per changing transaction.
pub type Revision = u64;

/// A boxed, `Send` future borrowing for `'a`; what [`Store`] methods return,
/// so the trait stays usable as `dyn Store`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The receiving end of a watch. `None` from `recv` means the watch ended
/// (store closed, connection lost): re-create it from the last seen
/// revision + 1. Dropping the receiver cancels the watch.
pub type WatchReceiver = tokio::sync::mpsc::Receiver<WatchMessage>;

/// How many recent revisions the embedded backends keep in memory so that a
/// watch can start in the past (from a list revision + 1).
pub const DEFAULT_WATCH_HISTORY: usize = 10_000;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, opaque to the store.
    pub value: Vec<u8>,
    /// Revision of the last change to this key.
    pub mod_revision: Revision,
    /// Revision at which this key was created (since its last deletion).
    pub create_revision: Revision,
}

/// A condition of a [`Store::txn`]; all must hold for the ops to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key is absent (etcd: `create_revision == 0`).
    Absent(String),
    /// The key's `mod_revision` equals the given revision (0 for an absent
    /// key, as in etcd).
    ModRevision(String, Revision),
}

impl Compare {
    /// The key this condition is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Absent(key) | Self::ModRevision(key, _) => key,
        }
    }

    /// Whether the condition holds for a key whose current `mod_revision` is
    /// `current` (`None` when absent).
    pub(crate) fn holds(&self, current: Option<Revision>) -> bool {
        match self {
            Self::Absent(_) => current.is_none(),
            Self::ModRevision(_, expected) => current.unwrap_or(0) == *expected,
        }
    }
}

/// A change applied by a successful [`Store::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace the key's value.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove the key (nothing happens if it is absent).
    Delete {
        /// The key.
        key: String,
    },
}

impl Op {
    /// A [`Op::Put`].
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put { key: key.into(), value: value.into() }
    }

    /// A [`Op::Delete`].
    pub fn delete(key: impl Into<String>) -> Self {
        Self::Delete { key: key.into() }
    }

    /// The key this op changes.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key } => key,
        }
    }
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or replaced; the new value and revisions.
    Put(KeyValue),
    /// The key was deleted at `mod_revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// Revision of the deletion.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            Self::Put(kv) => &kv.key,
            Self::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn mod_revision(&self) -> Revision {
        match self {
            Self::Put(kv) => kv.mod_revision,
            Self::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes to watched keys, in revision order. Every change up to and
    /// including `revision` has now been delivered; each event carries its
    /// own `mod_revision` (the embedded backends send one message per
    /// revision, an etcd backend may batch several).
    Events {
        /// The revision up to which this watch is complete.
        revision: Revision,
        /// The changes, in order; never empty.
        events: Vec<WatchEvent>,
    },
    /// The requested start revision is no longer available (or the watcher
    /// fell too far behind): relist and watch from the relist revision + 1.
    /// The watch ends after this message.
    Compacted {
        /// The oldest revision a new watch could start from now.
        compact_revision: Revision,
    },
}

/// A revisioned key-value store with atomic compare-and-set transactions and
/// watches that resume from a revision; see the crate docs for the exact
/// semantics every backend keeps.
pub trait Store: Send + Sync + 'static {
    /// The key's current value and revisions, if present.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>>;

    /// All keys starting with `prefix` (in key order) at one consistent
    /// revision, and that revision. `""` lists everything.
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>>;

    /// Atomic compare-and-set: if every compare holds, apply all ops at one
    /// new revision and return `Ok(Some(revision))` (the current revision if
    /// the ops changed nothing); otherwise `Ok(None)` and nothing changes.
    /// Returns only once the write is durable.
    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>>;

    /// Every change to keys starting with `prefix` with revision `>= from`
    /// (normally the list revision + 1; 0 means "from now on"). Changes
    /// committed after this returns are always delivered. When the backend
    /// cannot replay from `from`, the first message is
    /// [`WatchMessage::Compacted`].
    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchReceiver, StoreError>>;
}

/// Refuses what etcd refuses: empty keys, and a key named by two ops.
pub(crate) fn validate_txn(compares: &[Compare], ops: &[Op]) -> Result<(), StoreError> {
    if compares.iter().any(|c| c.key().is_empty()) || ops.iter().any(|o| o.key().is_empty()) {
        return Err(StoreError::InvalidRequest("empty key".to_owned()));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.key()) {
            return Err(StoreError::InvalidRequest(format!(
                "key {:?} is changed twice in one transaction",
                op.key()
            )));
        }
    }
    Ok(())
}
