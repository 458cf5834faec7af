//! Behaviour tests of the manager and the index: minted and static
//! providers on an in-memory store with a manual clock, and the STS
//! provider against a real STS-compatible server (moto) run as a child
//! process.

use crate::*;
use imds_core::sample::sample_instance;
use imds_core::{Clock, IamInstanceProfile, InstanceId, InstanceRecord, ManualClock, SystemClock};
use imds_store::{BoxFuture, Compare, KeyValue, MemoryStore, Op, Revision, Store, StoreError, WatchReceiver};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const T0: u64 = 1_700_000_000;
const HOST: &str = "h-0123456789abcdef0";
const WAIT: Duration = Duration::from_secs(20);

fn id(s: &str) -> InstanceId {
    InstanceId::parse(s).unwrap()
}

fn instance(instance_id: &str) -> InstanceRecord {
    sample_instance(id(instance_id), Ipv4Addr::new(10, 0, 0, 12), None)
}

fn with_role(mut r: InstanceRecord, role: &str) -> InstanceRecord {
    r.iam_instance_profile = Some(IamInstanceProfile {
        arn: format!("arn:aws:iam::111122223333:instance-profile/{role}"),
        id: "AIPA5BOGHHXZELSK34VU4".into(),
        role_name: role.into(),
    });
    r
}

fn minted(lifetime_secs: u64, refresh_before_secs: u64) -> CredentialsConfig {
    CredentialsConfig {
        default: ProviderConfig::Minted { lifetime_secs, refresh_before_secs },
        roles: BTreeMap::new(),
    }
}

/// The task only runs when woken (the clock never reaches a due time on its
/// own), so tests drive it with `run_once`.
fn quiet() -> ManagerOptions {
    ManagerOptions { tick: Duration::from_secs(3600), retry_min_secs: 1, retry_max_secs: 4 }
}

/// The task looks at the clock every 20 ms: for tests that wait on it.
fn busy() -> ManagerOptions {
    ManagerOptions { tick: Duration::from_millis(20), retry_min_secs: 1, retry_max_secs: 4 }
}

fn manager(
    store: &Arc<dyn Store>,
    clock: &ManualClock,
    config: CredentialsConfig,
    options: ManagerOptions,
) -> (CredentialManager, UnboundedReceiver<InstanceId>) {
    CredentialManager::with_options(
        Arc::clone(store),
        Arc::new(clock.clone()),
        config,
        HOST.to_owned(),
        options,
    )
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn stored(store: &Arc<dyn Store>, akid: &str) -> Option<MintedRecord> {
    let kv = store.get(&minted_key(akid)).await.unwrap()?;
    Some(serde_json::from_slice(&kv.value).unwrap())
}

/// Polls `check` until it holds or [`WAIT`] passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_change(rx: &mut UnboundedReceiver<InstanceId>) -> InstanceId {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("no change announced").expect("channel closed")
}

fn role(c: &InstanceCredentials) -> &RoleSet {
    c.role.as_ref().expect("a role set")
}

fn v1(c: &InstanceCredentials) -> &imds_core::RoleCredentials {
    role(c).imdsv1.as_ref().expect("an IMDSv1 set")
}

fn v2(c: &InstanceCredentials) -> &imds_core::RoleCredentials {
    role(c).imdsv2.as_ref().expect("an IMDSv2 set")
}

fn error_code(c: &InstanceCredentials) -> Option<&str> {
    role(c).error.as_ref().map(|(code, _)| code.as_str())
}

mod minted_provider {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_independent_sets_with_aws_shapes() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let c = m.track(&instance("i-1234567890abcdef0"));
        let (a, b) = (v1(&c), v2(&c));
        assert_eq!(role(&c).error, None);
        for set in [a, b, c.identity.as_ref().unwrap()] {
            assert_eq!(set.access_key_id.len(), 20);
            assert!(set.access_key_id.starts_with("ASIA"));
            assert!(set.access_key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            assert_eq!(set.secret_access_key.len(), 40);
            assert!(set.token.starts_with("IQoJb3JpZ2luX2Vj") && set.token.len() > 300);
            assert_eq!((set.last_updated, set.expiration), (T0, T0 + 21_600));
        }
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.token, b.token);
        assert_ne!(c.identity.as_ref().unwrap().access_key_id, a.access_key_id);
        assert_eq!(role(&c).get(RoleDelivery::V1), Some(a));
        // Tracking the same run again changes nothing.
        assert_eq!(m.track(&instance("i-1234567890abcdef0")), c);
        assert_eq!(m.current(&id("i-1234567890abcdef0")), Some(c));
        assert_eq!(m.current(&id("i-0badc0de")), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_profile_only_identity_credentials_exist() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let mut r = instance("i-1234abcd");
        r.iam_instance_profile = None;
        let c = m.track(&r);
        assert_eq!(c.role, None);
        assert!(c.identity.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_persisted_and_found_by_the_index() {
        persisted_and_indexed(memory()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_persisted_and_found_by_the_index_on_redb() {
        let dir = tempfile::tempdir().unwrap();
        let store = imds_store::RedbStore::open(dir.path().join("s.redb")).unwrap();
        persisted_and_indexed(Arc::new(store)).await;
    }

    async fn persisted_and_indexed(store: Arc<dyn Store>) {
        let clock = ManualClock::new(T0 * 1000);
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let index = MintedIndex::spawn(Arc::clone(&store), Arc::new(clock.clone()));
        let r = with_role(instance("i-1234abcd"), "web");
        let c = m.track(&r);
        m.run_once().await;
        let (a, b, ident) = (v1(&c), v2(&c), c.identity.clone().unwrap());

        let rec = stored(&store, &a.access_key_id).await.expect("v1 record");
        assert_eq!(rec.secret_access_key, a.secret_access_key);
        assert_eq!(rec.session_token, a.token);
        assert_eq!(rec.expiration, a.expiration);
        assert_eq!(rec.instance_id, r.instance_id);
        assert_eq!(rec.role_name, "web");
        assert_eq!(rec.role_delivery, Some(RoleDelivery::V1));
        assert_eq!(rec.principal_arn, "arn:aws:sts::111122223333:assumed-role/web/i-1234abcd");
        assert_eq!(rec.host_id, HOST);
        assert_eq!(stored(&store, &b.access_key_id).await.unwrap().role_delivery, Some(RoleDelivery::V2));
        let id_rec = stored(&store, &ident.access_key_id).await.expect("identity record");
        assert_eq!(id_rec.role_delivery, None);
        assert_eq!(id_rec.role_name, "aws:ec2-instance");
        assert_eq!(
            id_rec.principal_arn,
            "arn:aws:sts::123456789012:assumed-role/aws:ec2-instance/i-1234abcd"
        );
        // The stored JSON has the documented shape.
        let raw = store.get(&minted_key(&b.access_key_id)).await.unwrap().unwrap().value;
        let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(json["role_delivery"], "2.0");

        index.synced().await;
        assert!(index.is_synced());
        eventually("the index sees all three sets", || async {
            [a, b, &ident].iter().all(|s| index.lookup(&s.access_key_id).is_some())
        })
        .await;
        assert_eq!(index.lookup(&a.access_key_id).unwrap(), rec);
        assert_eq!(index.lookup("ASIANOTMINTEDHERE000"), None);
        assert!(!format!("{index:?}").contains(&a.secret_access_key));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_follows_the_clock_and_old_sets_expire() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, minted(7200, 1800), quiet());
        let index = MintedIndex::spawn(Arc::clone(&store), Arc::new(clock.clone()));
        let r = instance("i-1234abcd");
        let first = m.track(&r);
        m.run_once().await;

        // Just before refresh_before: same keys, nothing announced.
        clock.set_millis((T0 + 7200 - 1800 - 1) * 1000);
        m.run_once().await;
        assert_eq!(m.current(&r.instance_id).as_ref(), Some(&first));
        assert!(rx.try_recv().is_err());

        // Inside the refresh window: new keys, announced, LastUpdated moves.
        clock.set_millis((T0 + 7200 - 1800) * 1000);
        m.run_once().await;
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let second = m.current(&r.instance_id).unwrap();
        for (old, new) in [(v1(&first), v1(&second)), (v2(&first), v2(&second))] {
            assert_ne!(old.access_key_id, new.access_key_id);
            assert_ne!(old.secret_access_key, new.secret_access_key);
            assert_eq!(new.last_updated, T0 + 5400);
            assert_eq!(new.expiration, T0 + 5400 + 7200);
            assert!(old.last_updated < new.last_updated);
        }
        assert_ne!(first.identity, second.identity);
        assert!(stored(&store, &v1(&second).access_key_id).await.is_some());
        // A rotation is idempotent: nothing more to do at the same time.
        m.run_once().await;
        assert_eq!(m.current(&r.instance_id).unwrap(), second);

        // The replaced sets stay valid (and stored) until their expiry.
        let old_keys: Vec<String> = [v1(&first), v2(&first), first.identity.as_ref().unwrap()]
            .iter()
            .map(|c| c.access_key_id.clone())
            .collect();
        eventually("the index sees the new sets", || async {
            index.lookup(&v2(&second).access_key_id).is_some()
        })
        .await;
        for akid in &old_keys {
            assert!(index.lookup(akid).is_some(), "{akid} still valid");
            assert!(stored(&store, akid).await.is_some());
        }

        // Once expired, the index refuses them at once, and the store drops
        // them at the next pass.
        clock.set_millis((T0 + 7200) * 1000);
        for akid in &old_keys {
            assert_eq!(index.lookup(akid), None);
        }
        assert!(index.lookup(&v1(&second).access_key_id).is_some());
        m.run_once().await;
        for akid in &old_keys {
            assert!(stored(&store, akid).await.is_none(), "{akid} deleted");
        }
        assert!(stored(&store, &v1(&second).access_key_id).await.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_run_and_new_profile_get_new_credentials_and_untrack_revokes() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let r = instance("i-1234abcd");
        let first = m.track(&r);
        m.run_once().await;

        // Another profile: new role sets, same identity; old role revoked.
        let r2 = with_role(r.clone(), "other");
        let second = m.track(&r2);
        assert_eq!(second.identity, first.identity);
        assert_ne!(v1(&second).access_key_id, v1(&first).access_key_id);
        assert_ne!(v2(&second).access_key_id, v2(&first).access_key_id);
        m.run_once().await;
        assert!(stored(&store, &v1(&first).access_key_id).await.is_none());
        assert!(stored(&store, &v2(&first).access_key_id).await.is_none());
        assert_eq!(stored(&store, &v1(&second).access_key_id).await.unwrap().role_name, "other");

        // A new incarnation (stop/start): everything new.
        let mut r3 = r2.clone();
        r3.incarnation += 1;
        let third = m.track(&r3);
        assert_ne!(third.identity, second.identity);
        assert_ne!(v1(&third).access_key_id, v1(&second).access_key_id);
        m.run_once().await;
        assert!(stored(&store, &second.identity.as_ref().unwrap().access_key_id).await.is_none());

        // Untrack: gone from memory and store.
        m.untrack(&r.instance_id);
        assert_eq!(m.current(&r.instance_id), None);
        m.run_once().await;
        let (left, _) = store.list(MINTED_PREFIX).await.unwrap();
        assert!(left.is_empty(), "{} records left", left.len());
        m.untrack(&r.instance_id); // twice is fine
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_task_rotates_on_its_own() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, minted(3600, 900), busy());
        let r = instance("i-1234abcd");
        let first = m.track(&r);
        clock.set_millis((T0 + 2700) * 1000);
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let second = m.current(&r.instance_id).unwrap();
        assert_ne!(v1(&second).access_key_id, v1(&first).access_key_id);
        eventually("the rotated set is persisted", || async {
            stored(&store, &v1(&second).access_key_id).await.is_some()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_store_delays_persistence_only() {
        let flaky = Arc::new(FlakyStore::default());
        flaky.fail_txn.store(true, Ordering::SeqCst);
        let store: Arc<dyn Store> = flaky.clone();
        let clock = ManualClock::new(T0 * 1000);
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let c = m.track(&instance("i-1234abcd"));
        m.run_once().await;
        assert!(stored(&store, &v1(&c).access_key_id).await.is_none());
        assert_eq!(m.current(&id("i-1234abcd")), Some(c.clone()));
        // Healthy again; the write is retried after its backoff.
        flaky.fail_txn.store(false, Ordering::SeqCst);
        clock.advance_millis(10_000);
        m.run_once().await;
        assert!(stored(&store, &v1(&c).access_key_id).await.is_some());
        assert!(stored(&store, &c.identity.as_ref().unwrap().access_key_id).await.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_manager_sweeps_what_its_predecessor_left() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let put = |akid: &str, expiration: u64, host: &str| {
            let r = MintedRecord {
                access_key_id: akid.into(),
                secret_access_key: "s".into(),
                session_token: "t".into(),
                expiration,
                instance_id: id("i-1234abcd"),
                role_name: "r".into(),
                role_delivery: Some(RoleDelivery::V2),
                principal_arn: "arn:aws:sts::123456789012:assumed-role/r/i-1234abcd".into(),
                host_id: host.into(),
            };
            Op::put(minted_key(akid), serde_json::to_vec(&r).unwrap())
        };
        let ops = vec![
            put("ASIAOURSVALID0000000", T0 + 100, HOST),
            put("ASIAOURSEXPIRED00000", T0 - 1, HOST),
            put("ASIATHEIRSEXPIRED000", T0, "h-other"),
            put("ASIATHEIRSVALID00000", T0 + 100, "h-other"),
        ];
        store.txn(Vec::new(), ops).await.unwrap();
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let c = m.track(&instance("i-1234abcd"));
        m.run_once().await;
        assert!(stored(&store, "ASIAOURSEXPIRED00000").await.is_none());
        assert!(stored(&store, "ASIATHEIRSEXPIRED000").await.is_none());
        assert!(stored(&store, "ASIAOURSVALID0000000").await.is_some(), "still valid: kept until expiry");
        assert!(stored(&store, "ASIATHEIRSVALID00000").await.is_some());
        assert!(stored(&store, &v1(&c).access_key_id).await.is_some(), "our live sets are not orphans");
        clock.set_millis((T0 + 100) * 1000);
        m.run_once().await;
        assert!(stored(&store, "ASIAOURSVALID0000000").await.is_none());
        assert!(stored(&store, "ASIATHEIRSVALID00000").await.is_some(), "another host's record is theirs");
        assert!(stored(&store, &v1(&c).access_key_id).await.is_some());
    }
}

mod static_provider {
    use super::*;

    fn config() -> CredentialsConfig {
        let mut roles = BTreeMap::new();
        roles.insert(
            "fixed".to_owned(),
            ProviderConfig::Static {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                session_token: Some("static-token".into()),
                expiration_secs: Some(7200),
            },
        );
        CredentialsConfig { default: ProviderConfig::default(), roles }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_sets_are_the_configured_keys_on_a_rolling_window() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, config(), quiet());
        let r = with_role(instance("i-1234abcd"), "fixed");
        let c = m.track(&r);
        for set in [v1(&c), v2(&c)] {
            assert_eq!(set.access_key_id, "AKIAIOSFODNN7EXAMPLE");
            assert_eq!(set.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
            assert_eq!(set.token, "static-token");
            assert_eq!((set.last_updated, set.expiration), (T0, T0 + 7200));
        }
        assert_eq!(role(&c).error, None);
        m.run_once().await;
        // Static keys are not minted: only the identity set is recorded.
        let (records, _) = store.list(MINTED_PREFIX).await.unwrap();
        assert_eq!(records.len(), 1);
        assert!(stored(&store, &c.identity.as_ref().unwrap().access_key_id).await.is_some());

        // Half the window later the same keys are re-announced.
        clock.set_millis((T0 + 3599) * 1000);
        m.run_once().await;
        assert!(rx.try_recv().is_err());
        clock.set_millis((T0 + 3600) * 1000);
        m.run_once().await;
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let later = m.current(&r.instance_id).unwrap();
        assert_eq!(v1(&later).access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!((v2(&later).last_updated, v2(&later).expiration), (T0 + 3600, T0 + 3600 + 7200));
        // Other roles still use the default (minted) provider.
        let other = m.track(&with_role(instance("i-0badc0de"), "web"));
        assert!(v1(&other).access_key_id.starts_with("ASIA"));
    }
}

mod index {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relists_after_a_compacted_watch() {
        let flaky = Arc::new(FlakyStore::default());
        flaky.compact_watch.store(true, Ordering::SeqCst);
        let store: Arc<dyn Store> = flaky.clone();
        let clock = ManualClock::new(T0 * 1000);
        let index = MintedIndex::spawn(Arc::clone(&store), Arc::new(clock.clone()));
        index.synced().await;
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet());
        let c = m.track(&instance("i-1234abcd"));
        m.run_once().await;
        // The first watch was compacted at once; the relist finds the sets.
        eventually("the index relisted", || async { index.lookup(&v1(&c).access_key_id).is_some() }).await;
        assert!(flaky.watches.load(Ordering::SeqCst) >= 2);
    }
}

/// A [`MemoryStore`] whose transactions can be made to fail and whose
/// first watch can be made to report compaction.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail_txn: AtomicBool,
    compact_watch: AtomicBool,
    watches: std::sync::atomic::AtomicUsize,
}

impl Store for FlakyStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>> {
        self.inner.list(prefix)
    }

    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>> {
        if self.fail_txn.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: store down".into())) });
        }
        self.inner.txn(compares, ops)
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchReceiver, StoreError>> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        if self.compact_watch.swap(false, Ordering::SeqCst) {
            return Box::pin(async {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.try_send(imds_store::WatchMessage::Compacted { compact_revision: 1 });
                Ok(rx)
            });
        }
        self.inner.watch(prefix, from)
    }
}

/// STS against moto's server (`pip install 'moto[server]'`), started as a
/// child process on a free port for each test.
mod sts_provider {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A running `python3 -m moto.server`; killed (by pid) when dropped.
    struct Moto {
        child: Child,
    }

    impl Moto {
        async fn start(port: u16) -> Self {
            let child = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot run python3 (needed for moto's server: pip install 'moto[server]')");
            let mut moto = Self { child };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return moto;
                }
                if let Ok(Some(status)) = moto.child.try_wait() {
                    panic!("moto's server exited with {status}: is `moto[server]` installed for python3?");
                }
                assert!(Instant::now() < deadline, "moto's server did not listen on port {port} within 60 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        fn kill(mut self) {
            self.stop();
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn config(port: u16) -> CredentialsConfig {
        let mut roles = BTreeMap::new();
        roles.insert(
            "bridged".to_owned(),
            ProviderConfig::Sts {
                endpoint: format!("http://127.0.0.1:{port}"),
                region: "us-east-1".into(),
                role_arn: "arn:aws:iam::123456789012:role/bridged".into(),
                access_key_id: "AKIABRIDGEEXAMPLE000".into(),
                secret_access_key: "bridge-secret".into(),
                duration_secs: 3600,
                refresh_before_secs: 900,
                external_id: Some("imdsd-test".into()),
            },
        );
        CredentialsConfig { default: ProviderConfig::default(), roles }
    }

    /// A manual clock standing at real time: STS expirations are real.
    fn real_now() -> ManualClock {
        ManualClock::new(SystemClock.now_millis())
    }

    async fn wait_for(
        m: &CredentialManager,
        rx: &mut UnboundedReceiver<InstanceId>,
        id: &InstanceId,
        what: &str,
        done: impl Fn(&InstanceCredentials) -> bool,
    ) -> InstanceCredentials {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = m.current(id).expect("tracked");
            if done(&c) {
                return c;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(changed)) => assert_eq!(&changed, id),
                _ => panic!("timed out waiting for {what}; now {c:?}"),
            }
        }
    }

    fn both(c: &InstanceCredentials) -> bool {
        let r = role(c);
        r.imdsv1.is_some() && r.imdsv2.is_some()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_sets_are_fetched_with_distinct_keys() {
        let port = free_port();
        let _moto = Moto::start(port).await;
        let (store, clock) = (memory(), real_now());
        let (m, mut rx) = manager(&store, &clock, config(port), busy());
        let r = with_role(instance("i-1234abcd"), "bridged");
        let first = m.track(&r);
        assert_eq!(role(&first).imdsv1, None);
        assert_eq!(error_code(&first), Some(ERROR_CODE_PENDING));
        assert!(first.identity.is_some(), "identity credentials are minted at once");

        let c = wait_for(&m, &mut rx, &r.instance_id, "both STS sets", both).await;
        let (a, b) = (v1(&c), v2(&c));
        assert_eq!(role(&c).error, None);
        assert!(a.access_key_id.starts_with("ASIA") && b.access_key_id.starts_with("ASIA"));
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.token, b.token);
        let now = clock.now_secs();
        for set in [a, b] {
            assert!(set.expiration > now + 3000 && set.expiration <= now + 3700, "{set:?}");
            assert!(set.last_updated >= now.saturating_sub(5));
        }
        // STS keys are not minted by imdsd: only the identity set is stored.
        m.run_once().await;
        assert!(stored(&store, &a.access_key_id).await.is_none());
        assert!(stored(&store, &c.identity.as_ref().unwrap().access_key_id).await.is_some());
        // Tracking again serves the same sets.
        assert_eq!(m.track(&r), c);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_down_at_first_is_retried_until_it_answers() {
        let port = free_port();
        let (store, clock) = (memory(), real_now());
        let (m, mut rx) = manager(&store, &clock, config(port), busy());
        let r = with_role(instance("i-1234abcd"), "bridged");
        assert_eq!(error_code(&m.track(&r)), Some(ERROR_CODE_PENDING));
        let c = wait_for(&m, &mut rx, &r.instance_id, "the unavailable error document", |c| {
            error_code(c) == Some(ERROR_CODE_UNAVAILABLE)
        })
        .await;
        assert_eq!((&role(&c).imdsv1, &role(&c).imdsv2), (&None, &None));
        let (_, message) = role(&c).error.clone().unwrap();
        assert!(message.contains("bridged") && !message.contains("127.0.0.1"), "{message}");

        let _moto = Moto::start(port).await;
        // Backoff is on the injected clock: move it past the longest delay.
        clock.advance_millis(10_000);
        let c = wait_for(&m, &mut rx, &r.instance_id, "both sets after the retry", both).await;
        assert_eq!(role(&c).error, None);
        assert_ne!(v1(&c).access_key_id, v2(&c).access_key_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_server_leaves_the_last_set_served_until_it_expires() {
        let port = free_port();
        let moto = Moto::start(port).await;
        let (store, clock) = (memory(), real_now());
        let (m, mut rx) = manager(&store, &clock, config(port), busy());
        let r = with_role(instance("i-1234abcd"), "bridged");
        m.track(&r);
        let good = wait_for(&m, &mut rx, &r.instance_id, "both STS sets", both).await;
        moto.kill();

        // Inside the refresh window: the refresh fails, the last set stays.
        let expiration = v1(&good).expiration.min(v2(&good).expiration);
        clock.set_millis((expiration - 900 + 1) * 1000);
        eventually("failed refreshes of both sets", || async {
            m.sts_failures(&r.instance_id).is_some_and(|(a, b)| a >= 1 && b >= 1)
        })
        .await;
        assert_eq!(m.current(&r.instance_id).unwrap(), good);
        // `track` is synchronous (no future to await): it answers from memory
        // even while refreshes fail.
        let started = Instant::now();
        let again = m.track(&r);
        assert!(started.elapsed() < Duration::from_millis(100), "track took {:?}", started.elapsed());
        assert_eq!(again, good);

        // After expiry with the server still down: the error document.
        clock.set_millis((v1(&good).expiration.max(v2(&good).expiration) + 1) * 1000);
        let c = wait_for(&m, &mut rx, &r.instance_id, "the error document after expiry", |c| {
            role(c).imdsv1.is_none() && role(c).imdsv2.is_none()
        })
        .await;
        assert_eq!(error_code(&c), Some(ERROR_CODE_UNAVAILABLE));
        assert!(c.identity.is_some(), "identity credentials do not depend on STS");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_by_sts_is_served_as_assume_role_unauthorized_access() {
        // A minimal STS that refuses everything, as AWS does for a role
        // whose trust policy does not allow the bridge account.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = conn.read(&mut buf).await;
                    let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                        <Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::999999999999:\
                        user/bridge is not authorized to perform: sts:AssumeRole</Message></Error>\
                        <RequestId>1</RequestId></ErrorResponse>";
                    let response = format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        let (store, clock) = (memory(), real_now());
        let (m, mut rx) = manager(&store, &clock, config(port), busy());
        let r = with_role(instance("i-1234abcd"), "bridged");
        m.track(&r);
        let c = wait_for(&m, &mut rx, &r.instance_id, "the refusal", |c| {
            error_code(c) == Some(ERROR_CODE_UNAUTHORIZED)
        })
        .await;
        let (_, message) = role(&c).error.clone().unwrap();
        assert!(message.starts_with("EC2 cannot assume the role bridged."), "{message}");
        assert!(!message.contains("999999999999"), "STS details stay in the log: {message}");
        server.abort();
    }
}
