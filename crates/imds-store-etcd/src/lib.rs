//! The etcd backend of the `imdsd` [`Store`]: what a fleet of host agents
//! and the control plane share.
//!
//! This crate owns:
//!
//! * [`EtcdStore`], the [`Store`] trait over an etcd v3 cluster (tested
//!   against Debian's etcd 3.4): `get` and `list` are linearizable range
//!   reads (a `list` is one revision, paged at that revision), `txn` is one
//!   etcd `Txn`, `watch` is a prefix watch that survives member loss;
//! * [`HostLease`], an etcd lease kept alive by this process, for the
//!   agent's `hosts/<host-id>` alive markers;
//! * the mapping of etcd failures to [`StoreError`], documented once in
//!   the `error` module and summarised below;
//! * behind the `testing` feature, the `testing` module: real etcd
//!   clusters of one or three members for tests, with member kill and
//!   restart.
//!
//! It does not own the Store semantics (`imds-store` does, and its
//! `conformance` suite is run against this backend), nor what is written
//! (control plane, agent), nor etcd's own security: etcd users, roles and
//! TLS are configured on the cluster. Keys under `secrets/` are ordinary
//! keys here; restrict `<namespace>secrets/` to the agents' and the control
//! plane's etcd roles with etcd RBAC (`etcdctl role grant-permission
//! --prefix`).
//!
//! # Keys and revisions
//!
//! Every key lives under [`EtcdOptions::namespace`] (default `/imdsd/`);
//! the trait's keys are relative to it (`instances/i-…` is stored as
//! `/imdsd/instances/i-…`). Anything outside the namespace is invisible.
//!
//! etcd starts an empty cluster at revision 1 and the first write makes
//! revision 2, while the Store trait counts from 0 for an empty store. So a
//! Store revision is the etcd revision − 1, everywhere: in results, in
//! [`Compare::ModRevision`] (0 still means "absent"), in watch start
//! revisions and in [`WatchMessage::Compacted`](imds_store::WatchMessage::Compacted). Both grow by exactly one
//! per changing transaction, so nothing else changes; `etcdctl` users add 1.
//!
//! # Failures (detail in the `error` module)
//!
//! * A request that never reached a server (`Unavailable` "tcp connect
//!   error" from a killed member's endpoint, "no leader") is retried across
//!   the endpoints with backoff; if every attempt fails: [`StoreError::Unavailable`],
//!   and nothing was applied.
//! * A write whose request may have reached a server and got no answer (our
//!   request timeout, `Unknown` "transport error", "request timed out" after
//!   a leader loss) is **never retried**: [`StoreError::OutcomeUnknown`]; the
//!   caller re-reads (its txns are guarded by revisions, so re-applying is
//!   safe when it decides to). Reads are retried on such errors too.
//! * Each call, retries included, is bounded by
//!   [`EtcdOptions::request_timeout`]. etcd-client has no keep-alive loop
//!   for leases and does not re-create broken watch or keep-alive streams;
//!   this crate does both.
//! * A watch whose stream breaks is re-created from the last delivered
//!   revision + 1, gaplessly, and reports [`WatchMessage::Compacted`](imds_store::WatchMessage::Compacted) only
//!   if that revision was compacted meanwhile; it ends (channel closed)
//!   after [`EtcdOptions::watch_reconnect_window`] of failed attempts.
//! * A `list` whose pages meet a compaction restarts at a new revision.
//!
//! Limits are etcd's: at most 128 ops in a txn (`--max-txn-ops`), requests
//! up to 1.5 MiB (`--max-request-bytes`).

mod error;
mod lease;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use imds_store::{BoxFuture, Compare, KeyValue, Op, Revision, Store, StoreError, WatchReceiver};
use tokio::time::Instant;

pub use lease::HostLease;

use crate::error::{Class, Failure, classify};

/// The URL scheme of [`parse_store_url`].
pub const URL_SCHEME: &str = "etcd://";

/// The default key namespace.
pub const DEFAULT_NAMESPACE: &str = "/imdsd/";

/// Largest gRPC message this client decodes (a page of `list`, a batch of
/// watch events); etcd-client's default of 4 MiB is too small for a page of
/// instance records with user data.
const MAX_DECODING_MESSAGE: usize = 64 * 1024 * 1024;

/// Keys per `list` page; every page is read at the first page's revision.
const LIST_PAGE: i64 = 500;

/// How often `list` starts over when its revision is compacted between
/// pages, before giving up.
const LIST_RESTARTS: u32 = 3;

/// How an [`EtcdStore`] connects and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Prefix of every key (default [`DEFAULT_NAMESPACE`]); end it with `/`.
    /// Empty means the whole keyspace.
    pub namespace: String,
    /// Bound of one call including its retries (default 5 s). A write that
    /// hits it fails with [`StoreError::OutcomeUnknown`]. Keep it below
    /// etcd's own ~7 s proposal timeout so a leader loss is reported by us.
    pub request_timeout: Duration,
    /// How long [`EtcdStore::connect`] waits for a first answer, and the TCP
    /// connect timeout of every connection (default 3 s).
    pub connect_timeout: Duration,
    /// Attempts of a call whose failures are safe to retry (default 8).
    /// With one of three members down about a quarter of attempts hit its
    /// dead endpoint, so 8 attempts all failing is vanishingly rare.
    pub attempts: u32,
    /// How long a broken watch or lease keep-alive stream is retried before
    /// the watch ends / the lease is given up (default 60 s).
    pub watch_reconnect_window: Duration,
    /// HTTP/2 keep-alive ping interval (default 10 s; the ping timeout is
    /// half of it): detects members that vanished without closing their
    /// connections, so their streams are re-created elsewhere.
    pub keep_alive_interval: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            attempts: 8,
            watch_reconnect_window: Duration::from_secs(60),
            keep_alive_interval: Duration::from_secs(10),
        }
    }
}

/// A parsed `etcd://host:port,host:port[/namespace/]` store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// The client endpoints, `host:port` each.
    pub endpoints: Vec<String>,
    /// The namespace from the URL's path (`/imdsd/` in
    /// `etcd://h:2379/imdsd/`), if it had one other than `/`.
    pub namespace: Option<String>,
}

/// Parses `etcd://host:port,host:port[/namespace/]`.
///
/// Each endpoint must be `host:port` (IPv6 as `[addr]:port`); the optional
/// path becomes the key namespace. Errors are [`StoreError::InvalidRequest`]
/// with a message naming the problem.
pub fn parse_store_url(url: &str) -> Result<EtcdUrl, StoreError> {
    let invalid = |why: &str| StoreError::InvalidRequest(format!("invalid etcd store URL {url:?}: {why}"));
    let rest = url
        .strip_prefix(URL_SCHEME)
        .ok_or_else(|| invalid("expected etcd://host:port[,host:port...][/namespace/]"))?;
    let (hosts, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let mut endpoints = Vec::new();
    for endpoint in hosts.split(',') {
        let port = endpoint
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty() && !host.contains('@'))
            .map(|(_, port)| port)
            .ok_or_else(|| invalid(&format!("endpoint {endpoint:?} is not host:port")))?;
        if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
            return Err(invalid(&format!("endpoint {endpoint:?} has no valid port")));
        }
        endpoints.push(endpoint.to_owned());
    }
    if path.contains(['?', '#']) {
        return Err(invalid("query and fragment are not supported"));
    }
    let namespace = (!path.is_empty() && path != "/").then(|| path.to_owned());
    Ok(EtcdUrl { endpoints, namespace })
}

/// Counters of what the store did to hide failures; a snapshot from
/// [`EtcdStore::stats`], for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EtcdStats {
    /// Attempts retried because the request never reached a server.
    pub retried_not_sent: u64,
    /// Read attempts retried after an in-flight failure or timeout.
    pub retried_reads: u64,
    /// Calls that failed with [`StoreError::Unavailable`].
    pub unavailable: u64,
    /// Calls that failed with [`StoreError::OutcomeUnknown`].
    pub outcome_unknown: u64,
    /// Watch streams re-created after they broke.
    pub watch_restarts: u64,
    /// Lease keep-alive streams re-opened after they broke.
    pub keep_alive_restarts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    retried_not_sent: AtomicU64,
    retried_reads: AtomicU64,
    unavailable: AtomicU64,
    outcome_unknown: AtomicU64,
    watch_restarts: AtomicU64,
    keep_alive_restarts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The [`Store`] on an etcd cluster. Cheap to clone (one shared client);
/// see the crate docs for keys, revisions and failure handling.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("namespace", &self.inner.options.namespace)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    client: Client,
    endpoints: Vec<String>,
    options: EtcdOptions,
    counters: Counters,
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`host:port` or
    /// `http://host:port` each) and waits, up to
    /// [`EtcdOptions::connect_timeout`], for one read to succeed through a
    /// member that has a leader.
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> Result<Self, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidRequest("no etcd endpoints given".to_owned()));
        }
        let half = options.keep_alive_interval / 2;
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(options.keep_alive_interval, half.max(Duration::from_secs(1)))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| classify(&e).into_store_error(false))?;
        let store = Self {
            inner: Arc::new(Inner {
                client,
                endpoints: endpoints.to_vec(),
                options,
                counters: Counters::default(),
            }),
        };
        let deadline = Instant::now() + store.inner.options.connect_timeout;
        loop {
            match store.current_revision().await {
                Ok(_) => return Ok(store),
                Err(e) if Instant::now() >= deadline => {
                    return Err(StoreError::Unavailable(format!(
                        "no etcd member of {endpoints:?} answered within {:?}: {e}",
                        store.inner.options.connect_timeout
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// [`EtcdStore::connect`] with the endpoints (and namespace, if the URL
    /// has one) of an `etcd://` URL.
    pub async fn connect_url(url: &str, mut options: EtcdOptions) -> Result<Self, StoreError> {
        let parsed = parse_store_url(url)?;
        if let Some(namespace) = parsed.namespace {
            options.namespace = namespace;
        }
        Self::connect(&parsed.endpoints, options).await
    }

    /// The options this store was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.options
    }

    /// What the store has retried and how calls failed so far.
    pub fn stats(&self) -> EtcdStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EtcdStats {
            retried_not_sent: load(&c.retried_not_sent),
            retried_reads: load(&c.retried_reads),
            unavailable: load(&c.unavailable),
            outcome_unknown: load(&c.outcome_unknown),
            watch_restarts: load(&c.watch_restarts),
            keep_alive_restarts: load(&c.keep_alive_restarts),
        }
    }

    /// The store's current revision (linearizable).
    pub async fn current_revision(&self) -> Result<Revision, StoreError> {
        let key = self.inner.full_key("");
        let response = self
            .inner
            .call(false, move |client| {
                let key = key.clone();
                async move {
                    let options = GetOptions::new().with_count_only();
                    client.kv_client().get(key, Some(options)).await
                }
            })
            .await
            .map_err(|f| self.inner.fail(f, false))?;
        Ok(header_revision(response.header()))
    }

    /// Compacts etcd's history up to `revision` (a Store revision): watches
    /// from older revisions get [`WatchMessage::Compacted`](imds_store::WatchMessage::Compacted) from then on.
    /// The whole cluster is compacted, not only this namespace.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let at = to_etcd(revision);
        self.inner
            .call(true, move |client| async move { client.kv_client().compact(at, None).await.map(drop) })
            .await
            .map_err(|f| self.inner.fail(f, true))
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Inner {
    /// Runs one etcd call with the retry policy of the `error` module:
    /// failures that never reached a server are retried (and, for reads,
    /// in-flight failures too) until [`EtcdOptions::attempts`] or
    /// [`EtcdOptions::request_timeout`] runs out.
    pub(crate) async fn call<T, F, Fut>(&self, write: bool, mut attempt: F) -> Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.options.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut tries = 0u32;
        let mut delay = Duration::from_millis(20);
        loop {
            tries += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let failure = match tokio::time::timeout(remaining, attempt(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => classify(&e),
                Err(_) => Failure::timed_out(timeout),
            };
            let retry = match failure.class {
                Class::NotSent => Some(&self.counters.retried_not_sent),
                Class::Unknown if !write => Some(&self.counters.retried_reads),
                _ => None,
            };
            let pause = delay.min(deadline.saturating_duration_since(Instant::now()));
            match retry {
                Some(counter) if tries < self.options.attempts && !pause.is_zero() => {
                    bump(counter);
                    tracing::debug!(tries, error = %failure.message, "retrying etcd request");
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                _ => return Err(failure),
            }
        }
    }

    /// Converts a final failure into the caller's error, counting it.
    pub(crate) fn fail(&self, failure: Failure, write: bool) -> StoreError {
        let error = failure.into_store_error(write);
        match &error {
            StoreError::Unavailable(_) => bump(&self.counters.unavailable),
            StoreError::OutcomeUnknown(_) => bump(&self.counters.outcome_unknown),
            _ => {}
        }
        error
    }

    /// The etcd key of a Store key.
    pub(crate) fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.options.namespace.len() + key.len());
        full.extend_from_slice(self.options.namespace.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The etcd key range `[start, end)` of all Store keys with `prefix`.
    pub(crate) fn prefix_range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        if start.is_empty() {
            // etcd's spelling of "every key".
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&start);
        (start, end)
    }

    /// The Store key of an etcd key from this namespace.
    pub(crate) fn relative_key(&self, full: &[u8]) -> Result<String, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(full).into_owned(),
            reason: reason.to_owned(),
        };
        let rest = full
            .strip_prefix(self.options.namespace.as_bytes())
            .ok_or_else(|| corrupt("key outside the namespace"))?;
        String::from_utf8(rest.to_vec()).map_err(|_| corrupt("key is not UTF-8"))
    }

    /// A Store [`KeyValue`] from an etcd one.
    pub(crate) fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.relative_key(kv.key())?,
            value: kv.value().to_vec(),
            mod_revision: to_store(kv.mod_revision()),
            create_revision: to_store(kv.create_revision()),
        })
    }
}

/// The first key after every key starting with `prefix` (etcd's
/// `range_end` for a prefix); `[0]` ("to the end") when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Store revision of an etcd revision (see the crate docs).
pub(crate) fn to_store(etcd: i64) -> Revision {
    u64::try_from(etcd.saturating_sub(1)).unwrap_or(0)
}

/// etcd revision of a Store revision.
pub(crate) fn to_etcd(revision: Revision) -> i64 {
    i64::try_from(revision).map_or(i64::MAX, |r| r.saturating_add(1))
}

/// etcd's mod_revision for a [`Compare::ModRevision`]: 0 stays "absent".
fn compare_revision(revision: Revision) -> i64 {
    if revision == 0 { 0 } else { to_etcd(revision) }
}

/// The Store revision of a response header (0 if etcd sent none).
pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| to_store(h.revision()))
}

/// Refuses what etcd refuses, before anything is sent (the namespace would
/// otherwise make an empty key valid): empty keys, a key changed twice.
fn validate_txn(compares: &[Compare], ops: &[Op]) -> Result<(), StoreError> {
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

impl EtcdStore {
    async fn get_impl(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if key.is_empty() {
            return Ok(None);
        }
        let full = self.inner.full_key(key);
        let response = self
            .inner
            .call(false, move |client| {
                let full = full.clone();
                async move { client.kv_client().get(full, None).await }
            })
            .await
            .map_err(|f| self.inner.fail(f, false))?;
        response.kvs().first().map(|kv| self.inner.key_value(kv)).transpose()
    }

    async fn list_impl(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let (start, end) = self.inner.prefix_range(prefix);
        let mut restarts = 0;
        'restart: loop {
            let mut kvs = Vec::new();
            let mut from = start.clone();
            // etcd revision of the first page; every later page reads at it.
            let mut at: Option<i64> = None;
            loop {
                let (key, range_end) = (from.clone(), end.clone());
                let page = self
                    .inner
                    .call(false, move |client| {
                        let (key, range_end) = (key.clone(), range_end.clone());
                        async move {
                            let mut options = GetOptions::new().with_range(range_end).with_limit(LIST_PAGE);
                            if let Some(revision) = at {
                                options = options.with_revision(revision);
                            }
                            client
                                .kv_client()
                                .max_decoding_message_size(MAX_DECODING_MESSAGE)
                                .get(key, Some(options))
                                .await
                        }
                    })
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(f) if f.class == Class::Compacted && restarts < LIST_RESTARTS => {
                        restarts += 1;
                        continue 'restart;
                    }
                    Err(f) => return Err(self.inner.fail(f, false)),
                };
                let revision = *at.get_or_insert(page.header().map_or(1, |h| h.revision()));
                for kv in page.kvs() {
                    kvs.push(self.inner.key_value(kv)?);
                }
                match page.kvs().last() {
                    Some(last) if page.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => return Ok((kvs, to_store(revision))),
                }
            }
        }
    }

    async fn txn_impl(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<Option<Revision>, StoreError> {
        validate_txn(&compares, &ops)?;
        let when: Vec<etcd_client::Compare> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(key) => etcd_client::Compare::create_revision(
                    self.inner.full_key(key),
                    etcd_client::CompareOp::Equal,
                    0,
                ),
                Compare::ModRevision(key, revision) => etcd_client::Compare::mod_revision(
                    self.inner.full_key(key),
                    etcd_client::CompareOp::Equal,
                    compare_revision(*revision),
                ),
            })
            .collect();
        let then: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.inner.full_key(&key), value, None),
                Op::Delete { key } => TxnOp::delete(self.inner.full_key(&key), None),
            })
            .collect();
        let txn = Txn::new().when(when).and_then(then);
        let response = self
            .inner
            .call(true, move |client| {
                let txn = txn.clone();
                async move { client.kv_client().txn(txn).await }
            })
            .await
            .map_err(|f| self.inner.fail(f, true))?;
        Ok(response.succeeded().then(|| header_revision(response.header())))
    }

    /// A put under a lease; used by [`HostLease::put`].
    pub(crate) async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Revision, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidRequest("empty key".to_owned()));
        }
        let full = self.inner.full_key(key);
        let response =
            self.inner
                .call(true, move |client| {
                    let (full, value) = (full.clone(), value.clone());
                    async move {
                        client.kv_client().put(full, value, Some(PutOptions::new().with_lease(lease))).await
                    }
                })
                .await
                .map_err(|f| self.inner.fail(f, true))?;
        Ok(header_revision(response.header()))
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move { self.get_impl(&key).await })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { self.list_impl(&prefix).await })
    }

    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>> {
        Box::pin(self.txn_impl(compares, ops))
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchReceiver, StoreError>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { watch::start(self, &prefix, from).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_endpoints_and_namespace() {
        let url = parse_store_url("etcd://10.0.0.1:2379,[::1]:2379,etcd-2:2379/imdsd/").unwrap();
        assert_eq!(url.endpoints, ["10.0.0.1:2379", "[::1]:2379", "etcd-2:2379"]);
        assert_eq!(url.namespace.as_deref(), Some("/imdsd/"));
        let url = parse_store_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!((url.endpoints.len(), url.namespace), (1, None));
        assert_eq!(parse_store_url("etcd://h:1/").unwrap().namespace, None);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for bad in [
            "http://h:2379",
            "etcd://",
            "etcd://h",
            "etcd://h:0",
            "etcd://h:99999",
            "etcd://h:1,,h:2",
            "etcd://:2379",
            "etcd://u@h:1",
            "etcd://h:1/p?x",
        ] {
            assert!(matches!(parse_store_url(bad), Err(StoreError::InvalidRequest(_))), "{bad}");
        }
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/imdsd/"), b"/imdsd0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }

    #[test]
    fn revisions_are_etcd_minus_one_and_absent_stays_zero() {
        assert_eq!(to_store(1), 0);
        assert_eq!(to_store(2), 1);
        assert_eq!(to_store(0), 0);
        assert_eq!(to_etcd(1), 2);
        assert_eq!(compare_revision(0), 0);
        assert_eq!(compare_revision(7), 8);
    }

    #[test]
    fn txns_etcd_would_refuse_are_refused_locally() {
        let twice = validate_txn(&[], &[Op::put("a", b"1".to_vec()), Op::delete("a")]);
        assert!(matches!(twice, Err(StoreError::InvalidRequest(_))));
        let empty = validate_txn(&[Compare::Absent(String::new())], &[]);
        assert!(matches!(empty, Err(StoreError::InvalidRequest(_))));
        assert!(validate_txn(&[Compare::Absent("a".into())], &[Op::put("a", b"1".to_vec())]).is_ok());
    }
}
