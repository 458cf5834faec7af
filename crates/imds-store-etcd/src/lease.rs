//! [`HostLease`]: an etcd lease this process keeps alive, so that keys put
//! under it (an agent's `hosts/<host-id>` marker) vanish when the process
//! or its host does.
//!
//! etcd-client sends a keep-alive only when asked, and its keep-alive
//! stream ends for good with the member serving it; a task here sends one
//! every third of the TTL and re-opens the stream (on any member) when it
//! breaks. This module does not decide what is put under the lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use imds_store::{Revision, StoreError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Class, Failure};
use crate::{EtcdStore, Inner, bump};

/// Shortest pause between keep-alives, whatever the TTL.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A lease with a TTL, kept alive by a background task until
/// [`HostLease::revoke`] or drop. Dropping it stops the keep-alives: its
/// keys disappear one TTL later. If etcd lets the lease expire anyway (the
/// cluster was unreachable for a whole TTL), [`HostLease::expired`] turns
/// true: grant a new lease and put the keys again.
#[derive(Debug)]
pub struct HostLease {
    store: EtcdStore,
    id: i64,
    ttl: i64,
    expired: Arc<AtomicBool>,
    keeper: JoinHandle<()>,
}

impl HostLease {
    /// Grants a lease of `ttl_secs` seconds (etcd may raise a very short TTL
    /// to its minimum) and starts keeping it alive.
    pub async fn grant(store: &EtcdStore, ttl_secs: i64) -> Result<Self, StoreError> {
        if ttl_secs <= 0 {
            return Err(StoreError::InvalidRequest(format!("lease TTL {ttl_secs} is not positive")));
        }
        let inner = store.inner();
        // A grant whose outcome is unknown may have created a lease nobody
        // keeps alive: harmless, it expires after its TTL.
        let granted = inner
            .call(true, |client| async move { client.lease_client().grant(ttl_secs, None).await })
            .await
            .map_err(|f| inner.fail(f, true))?;
        if !granted.error().is_empty() {
            return Err(StoreError::Backend(format!("lease grant refused: {}", granted.error())));
        }
        let (id, ttl) = (granted.id(), granted.ttl());
        let expired = Arc::new(AtomicBool::new(false));
        let keeper = tokio::spawn(keep_alive(Arc::clone(inner), id, ttl, Arc::clone(&expired)));
        Ok(Self { store: store.clone(), id, ttl, expired, keeper })
    }

    /// Puts `key` (relative to the store's namespace) under this lease;
    /// returns the revision of the put. Fails with
    /// [`StoreError::InvalidRequest`] once the lease is gone.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<Revision, StoreError> {
        let result = self.store.put_with_lease(key, value.into(), self.id).await;
        if let Err(StoreError::InvalidRequest(message)) = &result
            && message.contains("lease not found")
        {
            self.expired.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The etcd lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted, in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Whether etcd has let this lease expire (or it was revoked elsewhere):
    /// its keys are gone and puts under it fail.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Stops the keep-alives and revokes the lease: its keys are deleted at
    /// once. A lease that is already gone counts as revoked.
    pub async fn revoke(self) -> Result<(), StoreError> {
        self.keeper.abort();
        let inner = self.store.inner();
        let id = self.id;
        // Revoking twice is harmless, so in-flight failures are retried
        // like a read.
        match inner.call(false, |client| async move { client.lease_client().revoke(id).await }).await {
            Ok(_) => Ok(()),
            Err(f) if is_lease_not_found(&f) => Ok(()),
            Err(f) => Err(inner.fail(f, false)),
        }
    }
}

impl Drop for HostLease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

fn is_lease_not_found(failure: &Failure) -> bool {
    failure.class == Class::Refused && failure.message.contains("lease not found")
}

/// Keeps lease `id` alive until aborted or until etcd says it is gone.
async fn keep_alive(inner: Arc<Inner>, id: i64, ttl: i64, expired: Arc<AtomicBool>) {
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1));
    let interval = (ttl / 3).max(MIN_INTERVAL);
    // When etcd last confirmed the lease; once a TTL has passed without a
    // confirmation it may be gone, but only etcd's answer says so.
    let mut confirmed = Instant::now();
    let mut first = true;
    let mut warned = false;
    loop {
        let opened =
            inner.call(false, |client| async move { client.lease_client().keep_alive(id).await }).await;
        let (mut keeper, mut stream) = match opened {
            Ok(opened) => opened,
            Err(failure) if lease_gone(&failure) => {
                tracing::warn!(lease = id, "etcd lease expired");
                expired.store(true, Ordering::Relaxed);
                return;
            }
            Err(failure) => {
                if !warned && confirmed.elapsed() > inner.options.watch_reconnect_window.max(ttl * 2) {
                    warned = true;
                    tracing::warn!(lease = id, error = %failure.message, "cannot reach etcd to keep a lease alive");
                }
                tokio::time::sleep(interval.min(Duration::from_secs(1))).await;
                continue;
            }
        };
        if !first {
            bump(&inner.counters.keep_alive_restarts);
        }
        first = false;
        warned = false;
        // Opening sent a keep-alive and got a positive TTL back.
        confirmed = Instant::now();
        match renew(&inner, &mut keeper, &mut stream, interval).await {
            Renewal::Gone => {
                tracing::warn!(lease = id, "etcd lease expired");
                expired.store(true, Ordering::Relaxed);
                return;
            }
            Renewal::Broken(reason) => {
                tracing::info!(lease = id, %reason, "etcd lease keep-alive stream broke; re-opening it");
            }
        }
    }
}

/// Why [`renew`] returned.
enum Renewal {
    /// etcd answered TTL 0: the lease no longer exists.
    Gone,
    /// The stream broke; re-open it.
    Broken(String),
}

/// Sends a keep-alive every `interval` on one stream until it breaks.
async fn renew(
    inner: &Inner,
    keeper: &mut LeaseKeeper,
    stream: &mut LeaseKeepAliveStream,
    interval: Duration,
) -> Renewal {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = keeper.keep_alive().await {
            return Renewal::Broken(e.to_string());
        }
        match tokio::time::timeout(inner.options.request_timeout, stream.message()).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return Renewal::Gone,
            Ok(Ok(None)) => return Renewal::Broken("stream ended".to_owned()),
            Ok(Err(e)) => return Renewal::Broken(e.to_string()),
            Err(_) => return Renewal::Broken("no keep-alive answer in time".to_owned()),
        }
    }
}

/// Whether opening a keep-alive failed because the lease does not exist
/// (etcd-client reports a first answer with TTL 0 this way).
fn lease_gone(failure: &Failure) -> bool {
    failure.message.contains("lease not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::classify;
    use etcd_client::Error;

    #[test]
    fn a_keep_alive_for_a_missing_lease_means_gone() {
        let failure = classify(&Error::LeaseKeepAliveError("lease not found".to_owned()));
        assert!(lease_gone(&failure));
        let failure =
            crate::error::classify_status(tonic::Code::NotFound, "etcdserver: requested lease not found");
        assert!(is_lease_not_found(&failure));
        assert!(lease_gone(&failure));
    }
}
