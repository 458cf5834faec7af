//! The one error type of the store boundary, shared by every backend and by
//! the typed [`records`](crate::records) layer.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File-system error around the store (creating, opening, permissions).
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The backend failed (redb error, task failure, no runtime).
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record at {key:?}: {reason}")]
    Corrupt {
        /// The key holding the record.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The request is malformed (empty key, key changed twice in one txn);
    /// retrying it cannot succeed.
    #[error("invalid store request: {0}")]
    InvalidRequest(String),
    /// The store could not be reached and the request was not applied; it is
    /// safe to retry (etcd: a member is down).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have been applied (etcd: timeout or transport
    /// error in flight). Re-read before deciding; never retry blindly.
    #[error("store write outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl StoreError {
    /// A [`StoreError::Backend`] from anything printable.
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::backend(e)
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Backend(format!("store task failed: {e}"))
    }
}
