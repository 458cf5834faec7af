//! A three-member cluster loses a member (a follower, or the leader) by
//! SIGKILL in the middle of concurrent transactions and watches.
//!
//! What must hold: a txn that returned `Ok(Some(rev))` is present at `rev`;
//! one that returned `Unavailable` changed nothing; `OutcomeUnknown` may
//! have applied (the re-read decides); every watch opened before the kill
//! delivers every committed revision exactly once, in order — also the one
//! whose only endpoint was the killed member, once it is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use imds_store::conformance::{events_until, ok};
use imds_store::{Compare, Op, Revision, Store, StoreError, WatchEvent, WatchReceiver};
use imds_store_etcd::testing::EtcdCluster;
use imds_store_etcd::{EtcdOptions, EtcdStore};
use tokio::time::Instant;

const WRITERS: usize = 4;
/// Upper bound of txns per writer, whatever the timing.
const MAX_TXNS: usize = 3000;
/// Writes before the kill, and after it.
const BEFORE_KILL: Duration = Duration::from_millis(1500);
const AFTER_KILL: Duration = Duration::from_secs(5);

/// One txn's key, result and time relative to the kill (negative: before).
struct Outcome {
    key: String,
    result: Result<Option<Revision>, StoreError>,
    at_ms: i128,
}

fn options() -> EtcdOptions {
    // Below etcd's ~7 s proposal timeout, so a leader loss shows as our
    // timeout; short HTTP/2 pings so dead connections are noticed.
    EtcdOptions {
        request_timeout: Duration::from_secs(3),
        keep_alive_interval: Duration::from_secs(2),
        ..EtcdOptions::default()
    }
}

/// Reads a watch up to `last` and checks it saw exactly `(start, last]`,
/// each revision once, in order, and the listed keys.
async fn check_watch(
    name: &str,
    rx: &mut WatchReceiver,
    start: Revision,
    last: Revision,
    listed: &BTreeMap<String, Revision>,
) {
    let events = events_until(rx, last).await;
    let revisions: Vec<Revision> = events.iter().map(WatchEvent::mod_revision).collect();
    assert_eq!(revisions, (start + 1..=last).collect::<Vec<_>>(), "{name}: not every revision exactly once");
    let seen: BTreeMap<String, Revision> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Put(kv) => Some((kv.key.clone(), kv.mod_revision)),
            WatchEvent::Delete { .. } => None,
        })
        .collect();
    assert_eq!(&seen, listed, "{name}: watched puts differ from the final list");
}

async fn txns_and_watches_survive_a_member_kill(kill_leader: bool) {
    let mut cluster = EtcdCluster::start(3).await.expect("etcd starts");
    let store = Arc::new(cluster.store(options()).await.expect("store connects"));
    let leader = cluster.leader().await.expect("a leader");
    let victim = if kill_leader { leader } else { (leader + 1) % 3 };

    let (_, start) = ok(store.list("t/").await);
    // Watches through every endpoint (some are served by the victim), and
    // one whose only endpoint is the victim: it must wait for the restart.
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(ok(store.watch("t/", start + 1).await));
    }
    let lonely = EtcdStore::connect(&[cluster.endpoint(victim)], options()).await.expect("connects");
    let mut lonely_rx = ok(lonely.watch("t/", start + 1).await);

    let stop = Arc::new(AtomicBool::new(false));
    let kill_time = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, stop, kill_time) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&kill_time));
        writers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..MAX_TXNS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("t/{w}/{n:05}");
                let result = store
                    .txn(
                        vec![Compare::Absent(key.clone())],
                        vec![Op::put(key.clone(), n.to_string().into_bytes())],
                    )
                    .await;
                let now = Instant::now();
                let at_ms = match kill_time.get() {
                    Some(&killed) => (now - killed).as_millis() as i128,
                    None => -1,
                };
                outcomes.push(Outcome { key, result, at_ms });
            }
            outcomes
        }));
    }
    tokio::time::sleep(BEFORE_KILL).await;
    kill_time.set(Instant::now()).expect("killed once");
    cluster.kill(victim);
    tokio::time::sleep(AFTER_KILL).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.expect("writer task"));
    }

    // The re-read decides.
    let (kvs, last) = ok(store.list("t/").await);
    let listed: BTreeMap<String, Revision> = kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect();
    let (mut applied, mut unavailable, mut unknown_applied, mut unknown_lost) = (0, 0, 0, 0);
    let mut failures_after_kill = Vec::new();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(Some(revision)) => {
                applied += 1;
                assert_eq!(
                    listed.get(&outcome.key),
                    Some(revision),
                    "{} acknowledged but not stored",
                    outcome.key
                );
            }
            Ok(None) => panic!("{}: create-if-absent of a fresh key was refused", outcome.key),
            Err(StoreError::Unavailable(e)) => {
                unavailable += 1;
                assert!(!listed.contains_key(&outcome.key), "{} Unavailable ({e}) but applied", outcome.key);
                failures_after_kill.push((outcome.at_ms, format!("Unavailable: {e}")));
            }
            Err(StoreError::OutcomeUnknown(e)) => {
                if listed.contains_key(&outcome.key) {
                    unknown_applied += 1;
                } else {
                    unknown_lost += 1;
                }
                failures_after_kill.push((outcome.at_ms, format!("OutcomeUnknown: {e}")));
            }
            Err(e) => panic!("{}: unexpected error {e}", outcome.key),
        }
    }
    let acknowledged_or_unknown = applied + unknown_applied;
    assert_eq!(listed.len(), acknowledged_or_unknown, "the store holds keys no txn wrote");
    assert_eq!(last, start + listed.len() as Revision, "one revision per applied txn");
    let after_kill = outcomes.iter().filter(|o| o.at_ms >= 0 && o.result.is_ok()).count();
    assert!(after_kill > 0, "no txn succeeded after the kill");

    for (i, rx) in watches.iter_mut().enumerate() {
        check_watch(&format!("watch {i}"), rx, start, last, &listed).await;
    }
    let stats = store.stats();
    cluster.restart(victim).await.expect("victim restarts");
    check_watch("watch on the victim only", &mut lonely_rx, start, last, &listed).await;
    assert!(lonely.stats().watch_restarts >= 1, "{:?}", lonely.stats());

    eprintln!(
        "kill {} (member {victim}): {} txns, {applied} Ok, {unavailable} Unavailable, \
         OutcomeUnknown {unknown_applied} applied + {unknown_lost} not; store stats {stats:?}",
        if kill_leader { "leader" } else { "follower" },
        outcomes.len()
    );
    failures_after_kill.sort();
    for (at, what) in &failures_after_kill {
        eprintln!("  {at:>6} ms after kill: {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_kill_loses_no_acknowledged_txn_and_no_watch_event() {
    tokio::time::timeout(Duration::from_secs(120), txns_and_watches_survive_a_member_kill(false))
        .await
        .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_loses_no_acknowledged_txn_and_no_watch_event() {
    tokio::time::timeout(Duration::from_secs(120), txns_and_watches_survive_a_member_kill(true))
        .await
        .expect("bounded");
}
