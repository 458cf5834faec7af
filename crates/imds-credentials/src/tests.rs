//! Behaviour tests of the manager and the verifier: minted and static
//! providers on an in-memory (or redb) store with a manual clock, and the
//! STS provider against a real STS-compatible server (moto) run as a child
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

/// A manager whose minting key is loaded.
async fn manager(
    store: &Arc<dyn Store>,
    clock: &ManualClock,
    config: CredentialsConfig,
    options: ManagerOptions,
) -> (CredentialManager, UnboundedReceiver<InstanceId>) {
    let (m, rx) = unready(store, clock, config, options);
    m.ready().await.unwrap();
    (m, rx)
}

/// A manager that may not have its minting key yet.
fn unready(
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

/// Every key in the store: minting writes only the minting key.
async fn all_keys(store: &Arc<dyn Store>) -> Vec<String> {
    store.list("").await.unwrap().0.into_iter().map(|kv| kv.key).collect()
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

/// Puts (or replaces) an instance record, as the control plane does.
async fn put_record(store: &Arc<dyn Store>, r: &InstanceRecord) {
    let current = imds_store::records::get_instance(store.as_ref(), &r.instance_id).await.unwrap();
    imds_store::records::put_instance_if(store.as_ref(), r, current.map(|(_, rev)| rev))
        .await
        .unwrap()
        .unwrap();
}

mod minted_provider {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_started_now_gets_sets_issued_now_with_their_whole_lifetime() {
        // As on EC2: LastUpdated is the start of the run, not earlier, and
        // the first set lasts the full 6 h.
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let mut record = with_role(instance("i-1234567890abcdef0"), "app");
        record.launch_time = T0 - 7;
        let c = m.track(&record);
        for set in [v1(&c), v2(&c), c.identity.as_ref().unwrap()] {
            assert_eq!((set.last_updated, set.expiration), (T0 - 7, T0 - 7 + 21_600), "{set:?}");
        }
        // Five hours into the run the next sets are issued.
        clock.set_millis((T0 - 7 + 18_000) * 1000);
        let later = m.current(&record.instance_id).unwrap();
        assert_eq!(v1(&later).last_updated, T0 - 7 + 18_000);
        assert_ne!(v1(&later).access_key_id, v1(&c).access_key_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_independent_sets_with_aws_shapes() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let record = instance("i-1234567890abcdef0");
        let c = m.track(&record);
        let (a, b) = (v1(&c), v2(&c));
        assert_eq!(role(&c).error, None);
        for set in [a, b, c.identity.as_ref().unwrap()] {
            assert_eq!(set.access_key_id.len(), 20);
            assert!(set.access_key_id.starts_with("ASIA"));
            assert!(set.access_key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            assert_eq!(set.secret_access_key.len(), 40);
            assert!(set.token.starts_with("IQoJb3JpZ2luX2Vj") && set.token.len() > 300);
            // Issued on the run's schedule (launch time + k × 5 h): at most
            // one period ago, valid 6 h, so at least the refresh margin
            // (1 h) is left.
            assert!(set.last_updated <= T0 && set.last_updated > T0 - 18_000, "{set:?}");
            assert_eq!(set.last_updated.abs_diff(record.launch_time) % 18_000, 0, "{set:?}");
            assert_eq!(set.expiration, set.last_updated + 21_600);
            assert!(set.expiration - T0 > 3600);
        }
        // Identity and role sets of a run rotate together.
        assert_eq!(a.last_updated, c.identity.as_ref().unwrap().last_updated);
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
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let mut r = instance("i-1234abcd");
        r.iam_instance_profile = None;
        let c = m.track(&r);
        assert_eq!(c.role, None);
        assert!(c.identity.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_stored_per_set_and_a_restart_serves_the_same_sets() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let records: Vec<InstanceRecord> = ["i-1234abcd", "i-2234abcd", "i-3234abcd"]
            .iter()
            .map(|i| with_role(instance(i), "web"))
            .collect();
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let before: Vec<InstanceCredentials> = records.iter().map(|r| m.track(r)).collect();
        m.run_once().await;
        assert_eq!(all_keys(&store).await, [MINTING_KEY], "only the minting key is stored");
        drop(m);
        clock.advance_millis(60_000);
        let (again, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        for (r, b) in records.iter().zip(&before) {
            let c = again.track(r);
            // Unless the run's period ended in that minute, the very same sets.
            if c.identity.as_ref().unwrap().last_updated == b.identity.as_ref().unwrap().last_updated {
                assert_eq!(&c, b);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_on_redb_serves_the_same_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = ManualClock::new(T0 * 1000);
        let r = with_role(instance("i-1234abcd"), "web");
        let before = {
            let store: Arc<dyn Store> = Arc::new(imds_store::RedbStore::open(&path).unwrap());
            let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
            m.track(&r)
        };
        // The first manager's task lets go of the file once its abort is
        // processed: retry the open until then.
        let deadline = Instant::now() + WAIT;
        let store: Arc<dyn Store> = loop {
            match imds_store::RedbStore::open(&path) {
                Ok(s) => break Arc::new(s),
                Err(e) => assert!(Instant::now() < deadline, "cannot reopen: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        assert_eq!(m.track(&r), before);
        assert_eq!(all_keys(&store).await, [MINTING_KEY]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_on_one_store_agree_on_the_key_and_the_sets() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (a, _ra) = unready(&store, &clock, CredentialsConfig::default(), quiet());
        let (b, _rb) = unready(&store, &clock, CredentialsConfig::default(), quiet());
        let (x, y) = tokio::join!(a.ready(), b.ready());
        x.unwrap();
        y.unwrap();
        let r = with_role(instance("i-1234abcd"), "web");
        assert_eq!(a.track(&r), b.track(&r));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_follows_the_schedule_and_old_sets_stay_valid_until_expiry() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, minted(7200, 1800), quiet()).await;
        let verifier = MintedVerifier::load(Arc::clone(&store)).await.unwrap();
        let r = instance("i-1234abcd");
        put_record(&store, &r).await;
        let first = m.track(&r);
        m.run_once().await;
        let issued = v1(&first).last_updated;
        assert!(issued <= T0 && issued > T0 - 5400);
        assert_eq!(v1(&first).expiration, issued + 7200);

        // Just before the period ends: same keys, nothing announced.
        clock.set_millis((issued + 5400 - 1) * 1000);
        m.run_once().await;
        assert_eq!(m.current(&r.instance_id).as_ref(), Some(&first));
        assert!(rx.try_recv().is_err());

        // Refresh margin reached: new keys, announced, LastUpdated moves.
        clock.set_millis((issued + 5400) * 1000);
        m.run_once().await;
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let second = m.current(&r.instance_id).unwrap();
        for (old, new) in [(v1(&first), v1(&second)), (v2(&first), v2(&second))] {
            assert_ne!(old.access_key_id, new.access_key_id);
            assert_ne!(old.secret_access_key, new.secret_access_key);
            assert_eq!(new.last_updated, issued + 5400);
            assert_eq!(new.expiration, issued + 5400 + 7200);
        }
        assert_ne!(first.identity, second.identity);
        // Announced once per rotation.
        m.run_once().await;
        assert!(rx.try_recv().is_err());
        assert_eq!(m.current(&r.instance_id).unwrap(), second);

        // The replaced sets still authenticate until their own expiry.
        let now = clock.now_secs();
        for set in [v1(&first), v2(&first), first.identity.as_ref().unwrap(), v1(&second)] {
            let caller = verifier.verify(&set.token, now).await.unwrap();
            assert_eq!(caller.access_key_id, set.access_key_id);
            assert_eq!(caller.secret_access_key, set.secret_access_key);
        }
        clock.set_millis((issued + 7200) * 1000);
        let now = clock.now_secs();
        for set in [v1(&first), v2(&first), first.identity.as_ref().unwrap()] {
            assert!(matches!(verifier.verify(&set.token, now).await, Err(VerifyError::Expired)));
        }
        assert!(verifier.verify(&v1(&second).token, now).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_second_rotations_are_honoured() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, minted(901, 900), quiet()).await;
        let r = instance("i-1234abcd");
        let first = m.track(&r);
        assert_eq!(v1(&first).last_updated, T0);
        clock.advance_millis(1000);
        m.run_once().await;
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let second = m.current(&r.instance_id).unwrap();
        assert_eq!((v1(&second).last_updated, v1(&second).expiration), (T0 + 1, T0 + 902));
        assert_ne!(v1(&second).access_key_id, v1(&first).access_key_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_run_and_new_profile_get_new_credentials() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let r = instance("i-1234abcd");
        let first = m.track(&r);

        // Another profile: new role sets, same identity.
        let r2 = with_role(r.clone(), "other");
        let second = m.track(&r2);
        assert_eq!(second.identity, first.identity);
        assert_ne!(v1(&second).access_key_id, v1(&first).access_key_id);
        assert_ne!(v2(&second).access_key_id, v2(&first).access_key_id);

        // A new incarnation (stop/start): everything new.
        let mut r3 = r2.clone();
        r3.incarnation += 1;
        let third = m.track(&r3);
        assert_ne!(third.identity, second.identity);
        assert_ne!(v1(&third).access_key_id, v1(&second).access_key_id);

        m.untrack(&r.instance_id);
        assert_eq!(m.current(&r.instance_id), None);
        m.untrack(&r.instance_id); // twice is fine
        m.run_once().await;
        assert_eq!(m.sizes(), (0, 0), "contexts of untracked runs are dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_with_the_same_profile_share_one_context() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        for i in 0..50u32 {
            m.track(&with_role(instance(&format!("i-{:08x}", 0x1000_0000 + i)), "web"));
        }
        m.track(&with_role(instance("i-2000abcd"), "other"));
        assert_eq!(m.sizes(), (51, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_task_rotates_on_its_own() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, mut rx) = manager(&store, &clock, minted(3600, 900), busy()).await;
        let r = instance("i-1234abcd");
        let first = m.track(&r);
        clock.set_millis((v1(&first).last_updated + 2700) * 1000);
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let second = m.current(&r.instance_id).unwrap();
        assert_ne!(v1(&second).access_key_id, v1(&first).access_key_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_minting_key_minted_roles_are_pending_until_it_loads() {
        let flaky = Arc::new(FlakyStore::default());
        flaky.fail_txn.store(true, Ordering::SeqCst);
        let store: Arc<dyn Store> = flaky.clone();
        let clock = ManualClock::new(T0 * 1000);
        let (m, mut rx) = unready(&store, &clock, CredentialsConfig::default(), quiet());
        assert!(m.ready().await.is_err());
        let r = instance("i-1234abcd");
        let c = m.track(&r);
        assert_eq!(c.identity, None);
        assert_eq!(error_code(&c), Some(ERROR_CODE_PENDING));
        m.run_once().await;
        assert_eq!(m.current(&r.instance_id), Some(c));
        // Healthy again; the load is retried after its backoff and every
        // waiting run is announced.
        flaky.fail_txn.store(false, Ordering::SeqCst);
        clock.advance_millis(10_000);
        m.run_once().await;
        assert_eq!(next_change(&mut rx).await, r.instance_id);
        let c = m.current(&r.instance_id).unwrap();
        assert!(c.identity.is_some());
        assert_eq!(role(&c).error, None);
        assert!(v1(&c).access_key_id.starts_with("ASIA"));
    }

    /// Not a timed assertion: prints how long tracking 100,000 runs takes.
    /// `cargo test -p imds-credentials --release -- --ignored --nocapture track_100k`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn track_100k() {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        let records: Vec<InstanceRecord> = (0..100_000u32)
            .map(|i| with_role(instance(&format!("i-{:017x}", 0x1000_0000_0000_u64 + u64::from(i))), "web"))
            .collect();
        let rss_before = rss_bytes();
        let started = Instant::now();
        for r in &records {
            std::hint::black_box(m.track(r));
        }
        let tracked = started.elapsed();
        let rss_per_run = rss_bytes().saturating_sub(rss_before) / 100_000;
        let started = Instant::now();
        for r in &records {
            std::hint::black_box(m.current(&r.instance_id));
        }
        let current = started.elapsed();
        let started = Instant::now();
        m.run_once().await;
        let pass = started.elapsed();
        println!(
            "track 100k: {tracked:?} ({} µs each); current 100k: {current:?}; idle pass over 100k: {pass:?}; \
             manager RSS growth {rss_per_run} bytes per run",
            tracked.as_micros() / 100_000
        );
    }

    /// Resident set size of this process (Linux).
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        pages * 4096
    }
}

mod verifier {
    use super::*;

    async fn setup() -> (Arc<dyn Store>, ManualClock, CredentialManager, MintedVerifier, InstanceRecord) {
        let (store, clock) = (memory(), ManualClock::new(T0 * 1000));
        let (m, _rx) = manager(&store, &clock, CredentialsConfig::default(), quiet()).await;
        // The control plane loads the key on its own: the same one.
        let verifier = MintedVerifier::load(Arc::clone(&store)).await.unwrap();
        let r = with_role(instance("i-1234abcd"), "web");
        put_record(&store, &r).await;
        (store, clock, m, verifier, r)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn minted_sets_authenticate_with_principal_and_delivery() {
        let (_store, clock, m, verifier, r) = setup().await;
        let c = m.track(&r);
        let now = clock.now_secs();
        for (set, delivery) in [(v1(&c), Some(RoleDelivery::V1)), (v2(&c), Some(RoleDelivery::V2))] {
            let caller = verifier.verify(&set.token, now).await.unwrap();
            assert_eq!(caller.access_key_id, set.access_key_id);
            assert_eq!(caller.secret_access_key, set.secret_access_key);
            assert_eq!(caller.role_delivery, delivery);
            assert_eq!(caller.role_name, "web");
            assert_eq!(caller.principal_arn, "arn:aws:sts::111122223333:assumed-role/web/i-1234abcd");
            assert_eq!(caller.instance_id, r.instance_id);
            assert_eq!(caller.expiration, set.expiration);
            assert!(!format!("{caller:?}").contains(&set.secret_access_key));
        }
        let identity = verifier.verify(&c.identity.as_ref().unwrap().token, now).await.unwrap();
        assert_eq!(identity.role_delivery, None);
        assert_eq!(identity.role_name, IDENTITY_ROLE_NAME);
        assert_eq!(
            identity.principal_arn,
            "arn:aws:sts::123456789012:assumed-role/aws:ec2-instance/i-1234abcd"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forged_and_altered_tokens_are_refused() {
        let (_store, clock, m, verifier, r) = setup().await;
        let c = m.track(&r);
        let now = clock.now_secs();
        assert!(matches!(
            verifier.verify("forged", now).await,
            Err(VerifyError::Token(OpenError::Malformed))
        ));
        let token = &v1(&c).token;
        let mut altered = token.clone().into_bytes();
        let at = token.len() - 10;
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(matches!(verifier.verify(&altered, now).await, Err(VerifyError::Token(_))));
        // Another fleet's key does not open ours.
        let other = MintedVerifier::load(memory()).await.unwrap();
        assert!(matches!(other.verify(token, now).await, Err(VerifyError::Token(OpenError::Forged))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_a_new_run_a_profile_change_or_a_deletion_revokes_at_once() {
        let (store, clock, m, verifier, r) = setup().await;
        let c = m.track(&r);
        let now = clock.now_secs();
        let (role_token, identity_token) = (&v2(&c).token, &c.identity.as_ref().unwrap().token);

        // Another profile: role sets refused, identity still fine.
        put_record(&store, &with_role(r.clone(), "other")).await;
        assert!(matches!(verifier.verify(role_token, now).await, Err(VerifyError::ProfileChanged)));
        assert!(verifier.verify(identity_token, now).await.is_ok());
        // The same role through another instance profile is a change too.
        let mut other_profile = r.clone();
        if let Some(p) = other_profile.iam_instance_profile.as_mut() {
            p.arn = "arn:aws:iam::111122223333:instance-profile/elsewhere".into();
        }
        put_record(&store, &other_profile).await;
        assert!(matches!(verifier.verify(role_token, now).await, Err(VerifyError::ProfileChanged)));
        // Back to the profile: the sets stand again (they never expired).
        put_record(&store, &r).await;
        assert!(verifier.verify(role_token, now).await.is_ok());

        let mut stopped = r.clone();
        stopped.state = imds_core::InstanceState::Stopped;
        put_record(&store, &stopped).await;
        assert!(matches!(verifier.verify(role_token, now).await, Err(VerifyError::NotRunning)));
        assert!(matches!(verifier.verify(identity_token, now).await, Err(VerifyError::NotRunning)));

        let mut restarted = r.clone();
        restarted.incarnation += 1;
        put_record(&store, &restarted).await;
        assert!(matches!(verifier.verify(role_token, now).await, Err(VerifyError::OtherRun)));
        assert!(matches!(verifier.verify(identity_token, now).await, Err(VerifyError::OtherRun)));
        // The new run's sets are accepted.
        let fresh = m.track(&restarted);
        assert!(verifier.verify(&v1(&fresh).token, now).await.is_ok());

        let (_, rev) =
            imds_store::records::get_instance(store.as_ref(), &r.instance_id).await.unwrap().unwrap();
        imds_store::records::delete_instance_if(store.as_ref(), &r.instance_id, rev).await.unwrap();
        assert!(matches!(verifier.verify(&v1(&fresh).token, now).await, Err(VerifyError::InstanceGone)));
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
        let (m, mut rx) = manager(&store, &clock, config(), quiet()).await;
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
        // Nothing is recorded per set.
        assert_eq!(all_keys(&store).await, [MINTING_KEY]);

        // Half the window later the same keys are re-announced.
        clock.set_millis((T0 + 3599) * 1000);
        m.run_once().await;
        assert_eq!(v1(&m.current(&r.instance_id).unwrap()).last_updated, T0);
        // (The identity set may have rotated meanwhile, on its own schedule.)
        while rx.try_recv().is_ok() {}
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

/// A [`MemoryStore`] whose transactions can be made to fail.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail_txn: AtomicBool,
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
        let (m, mut rx) = manager(&store, &clock, config(port), busy()).await;
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
        // STS keys are not minted by imdsd: the verifier does not know them.
        let verifier = MintedVerifier::load(Arc::clone(&store)).await.unwrap();
        assert!(matches!(verifier.verify(&a.token, now).await, Err(VerifyError::Token(_))));
        // Tracking again serves the same sets.
        assert_eq!(m.track(&r), c);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_down_at_first_is_retried_until_it_answers() {
        let port = free_port();
        let (store, clock) = (memory(), real_now());
        let (m, mut rx) = manager(&store, &clock, config(port), busy()).await;
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
        let (m, mut rx) = manager(&store, &clock, config(port), busy()).await;
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
        // (Role sets only: the minted identity set follows its own
        // schedule and may have rotated while the clock moved.)
        assert_eq!(role(&m.current(&r.instance_id).unwrap()), role(&good));
        // `track` is synchronous (no future to await): it answers from memory
        // even while refreshes fail.
        let started = Instant::now();
        let again = m.track(&r);
        assert!(started.elapsed() < Duration::from_millis(100), "track took {:?}", started.elapsed());
        assert_eq!(role(&again), role(&good));

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
        let (m, mut rx) = manager(&store, &clock, config(port), busy()).await;
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
