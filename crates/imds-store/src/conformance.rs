//! The behaviour every [`Store`] backend must have, written once.
//!
//! Each function takes a fresh, empty store that nobody else writes to and
//! panics (like a test assertion) when the backend misbehaves. This crate
//! runs them against [`MemoryStore`](crate::MemoryStore) and
//! [`RedbStore`](crate::RedbStore); the etcd backend runs the same functions
//! with the `conformance` feature. Not for production use.

use crate::{Compare, KeyValue, Op, Revision, Store, StoreError, WatchEvent, WatchMessage, WatchReceiver};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for one watch message before declaring it lost.
const WAIT: Duration = Duration::from_secs(30);

/// Unwraps a store result, failing the test with the error.
pub fn ok<T>(result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("store error: {e}"),
    }
}

/// Unconditional single put; returns its revision.
pub async fn put(store: &dyn Store, key: &str, value: &[u8]) -> Revision {
    match ok(store.txn(Vec::new(), vec![Op::put(key, value)]).await) {
        Some(revision) => revision,
        None => panic!("unconditional put of {key:?} was refused"),
    }
}

/// Unconditional single delete; returns the resulting revision.
pub async fn delete(store: &dyn Store, key: &str) -> Revision {
    match ok(store.txn(Vec::new(), vec![Op::delete(key)]).await) {
        Some(revision) => revision,
        None => panic!("unconditional delete of {key:?} was refused"),
    }
}

/// The next watch message, failing the test after a long wait.
pub async fn next_message(rx: &mut WatchReceiver) -> Option<WatchMessage> {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(message) => message,
        Err(_) => panic!("no watch message within {WAIT:?}"),
    }
}

/// Reads events until the watch has reached `revision`; checks that they
/// come in strictly increasing revision order, each message's events
/// carrying its revision.
pub async fn events_until(rx: &mut WatchReceiver, revision: Revision) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    let mut last = 0;
    while last < revision {
        match next_message(rx).await {
            Some(WatchMessage::Events { revision: at, events: batch }) => {
                assert!(at > last, "watch went back from {last} to {at}");
                assert!(!batch.is_empty(), "empty events message at {at}");
                let mut previous = last;
                for event in &batch {
                    assert!(
                        event.mod_revision() > last && event.mod_revision() <= at,
                        "event at {} in message for {at} after {last}",
                        event.mod_revision()
                    );
                    assert!(event.mod_revision() >= previous, "events out of order");
                    previous = event.mod_revision();
                }
                last = at;
                events.extend(batch);
            }
            Some(WatchMessage::Compacted { compact_revision }) => {
                panic!("unexpected Compacted({compact_revision}) before {revision}")
            }
            None => panic!("watch ended at {last} before {revision}"),
        }
    }
    events
}

/// Applies watch events to a listed state.
pub fn apply(state: &mut BTreeMap<String, KeyValue>, events: &[WatchEvent]) {
    for event in events {
        match event {
            WatchEvent::Put(kv) => {
                state.insert(kv.key.clone(), kv.clone());
            }
            WatchEvent::Delete { key, .. } => {
                state.remove(key);
            }
        }
    }
}

fn by_key(kvs: Vec<KeyValue>) -> BTreeMap<String, KeyValue> {
    kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect()
}

/// Put then get returns the value with create and mod revisions; a second
/// put keeps `create_revision`; after a delete and put it starts again.
pub async fn put_then_get_returns_value_and_revisions(store: Arc<dyn Store>) {
    let store = store.as_ref();
    assert_eq!(ok(store.get("a").await), None);
    let r1 = put(store, "a", b"one").await;
    let kv = ok(store.get("a").await);
    let expected =
        KeyValue { key: "a".into(), value: b"one".to_vec(), mod_revision: r1, create_revision: r1 };
    assert_eq!(kv, Some(expected));
    let r2 = put(store, "a", b"two").await;
    let kv = ok(store.get("a").await);
    assert_eq!(kv.as_ref().map(|kv| (kv.mod_revision, kv.create_revision)), Some((r2, r1)));
    assert_eq!(kv.map(|kv| kv.value), Some(b"two".to_vec()));
    delete(store, "a").await;
    assert_eq!(ok(store.get("a").await), None);
    let r4 = put(store, "a", b"three").await;
    let kv = ok(store.get("a").await);
    assert_eq!(kv.map(|kv| (kv.mod_revision, kv.create_revision)), Some((r4, r4)));
}

/// A txn whose compare fails returns `None` and changes nothing: no value,
/// no revision; one whose compares hold applies every op.
pub async fn failed_compare_changes_nothing(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let r1 = put(store, "k/a", b"1").await;
    let before = ok(store.list("").await);

    // Absent fails on a present key: the other op must not happen either.
    let refused = ok(store
        .txn(
            vec![Compare::Absent("k/a".into())],
            vec![Op::put("k/a", b"2".to_vec()), Op::put("k/b", b"2".to_vec())],
        )
        .await);
    assert_eq!(refused, None);
    // A stale mod_revision fails.
    let refused =
        ok(store.txn(vec![Compare::ModRevision("k/a".into(), r1 + 1)], vec![Op::delete("k/a")]).await);
    assert_eq!(refused, None);
    // One failing compare among holding ones fails the whole txn.
    let refused = ok(store
        .txn(
            vec![Compare::ModRevision("k/a".into(), r1), Compare::Absent("k/a".into())],
            vec![Op::put("k/c", b"3".to_vec())],
        )
        .await);
    assert_eq!(refused, None);
    assert_eq!(ok(store.list("").await), before, "a failed txn changed the store");

    // Holding compares apply everything at one revision.
    let applied = ok(store
        .txn(
            vec![Compare::ModRevision("k/a".into(), r1), Compare::Absent("k/b".into())],
            vec![Op::put("k/a", b"2".to_vec()), Op::put("k/b", b"2".to_vec())],
        )
        .await);
    assert_eq!(applied, Some(r1 + 1));
    let (kvs, revision) = ok(store.list("k/").await);
    assert_eq!(revision, r1 + 1);
    assert!(kvs.iter().all(|kv| kv.mod_revision == r1 + 1 && kv.value == b"2"), "{kvs:?}");

    // etcd semantics: an absent key's mod_revision compares as 0.
    let applied = ok(store
        .txn(vec![Compare::ModRevision("k/none".into(), 0)], vec![Op::put("k/none", b"x".to_vec())])
        .await);
    assert_eq!(applied, Some(r1 + 2));
}

/// Every txn that changes something creates exactly one revision (+1);
/// one that changes nothing creates none and reports the current one.
pub async fn revision_grows_by_one_per_changing_txn(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (_, start) = ok(store.list("").await);
    let mut expected = start;
    for i in 0..20u32 {
        let revision = match i % 3 {
            0 => put(store, &format!("r/{i}"), b"v").await,
            1 => {
                let ops = vec![Op::put(format!("r/{i}"), b"v".to_vec()), Op::delete(format!("r/{}", i - 1))];
                ok(store.txn(Vec::new(), ops).await).unwrap_or(0)
            }
            _ => delete(store, &format!("r/{}", i - 1)).await,
        };
        expected += 1;
        assert_eq!(revision, expected, "txn {i}");
    }
    assert_eq!(ok(store.list("").await).1, expected);
    // No ops, or a delete of an absent key: no new revision.
    assert_eq!(ok(store.txn(Vec::new(), Vec::new()).await), Some(expected));
    assert_eq!(delete(store, "r/absent").await, expected);
    assert_eq!(ok(store.list("").await).1, expected);
}

/// Empty keys and a key changed twice in one txn are refused, and change
/// nothing.
pub async fn invalid_txn_is_refused(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let twice = store.txn(Vec::new(), vec![Op::put("d", b"1".to_vec()), Op::delete("d")]).await;
    assert!(matches!(twice, Err(StoreError::InvalidRequest(_))), "{twice:?}");
    let empty = store.txn(Vec::new(), vec![Op::put("", b"1".to_vec())]).await;
    assert!(matches!(empty, Err(StoreError::InvalidRequest(_))), "{empty:?}");
    let empty = store.txn(vec![Compare::Absent(String::new())], Vec::new()).await;
    assert!(matches!(empty, Err(StoreError::InvalidRequest(_))), "{empty:?}");
    assert_eq!(ok(store.list("").await), (Vec::new(), 0));
}

/// `list` is one snapshot: while a writer moves two keys together, every
/// list sees them equal, and no key is newer than the list revision.
pub async fn list_is_one_consistent_revision(store: Arc<dyn Store>) {
    let both = vec![Op::put("pair/a", b"0".to_vec()), Op::put("pair/b", b"0".to_vec())];
    ok(store.txn(Vec::new(), both).await);
    put(store.as_ref(), "other", b"x").await;
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 1..=60u32 {
                let value = i.to_string().into_bytes();
                let ops = vec![Op::put("pair/a", value.clone()), Op::put("pair/b", value)];
                ok(store.txn(Vec::new(), ops).await);
            }
        })
    };
    let mut previous = 0;
    for _ in 0..60 {
        let (kvs, revision) = ok(store.list("pair/").await);
        assert_eq!(kvs.len(), 2, "{kvs:?}");
        assert_eq!(kvs[0].key, "pair/a", "list is in key order");
        assert_eq!(kvs[0].value, kvs[1].value, "list saw half a txn: {kvs:?}");
        assert_eq!(kvs[0].mod_revision, kvs[1].mod_revision);
        assert!(kvs[0].mod_revision <= revision, "key newer than list revision");
        assert!(revision >= previous, "list revision went back");
        previous = revision;
        tokio::task::yield_now().await;
    }
    ok(writer.await.map_err(StoreError::from));
    let (kvs, _) = ok(store.list("pair/").await);
    assert_eq!(kvs[0].value, b"60");
}

/// A watch from list revision + 1 sees every later put and delete once, in
/// order, and replaying them on the list gives the final list.
pub async fn watch_from_list_revision_sees_later_changes_in_order(store: Arc<dyn Store>) {
    let store = store.as_ref();
    put(store, "w/a", b"1").await;
    put(store, "w/b", b"1").await;
    let (listed, revision) = ok(store.list("w/").await);
    let mut rx = ok(store.watch("w/", revision + 1).await);
    let r1 = put(store, "w/c", b"1").await;
    let r2 = delete(store, "w/a").await;
    let r3 = put(store, "w/b", b"2").await;
    let r4 =
        ok(store.txn(Vec::new(), vec![Op::delete("w/c"), Op::put("w/d", b"1".to_vec())]).await).unwrap_or(0);
    assert_eq!([r1, r2, r3, r4], [revision + 1, revision + 2, revision + 3, revision + 4]);

    let events = events_until(&mut rx, r4).await;
    let seen: Vec<(String, Revision, bool)> = events
        .iter()
        .map(|e| (e.key().to_owned(), e.mod_revision(), matches!(e, WatchEvent::Put(_))))
        .collect();
    let expected: Vec<(String, Revision, bool)> = vec![
        ("w/c".into(), r1, true),
        ("w/a".into(), r2, false),
        ("w/b".into(), r3, true),
        ("w/c".into(), r4, false),
        ("w/d".into(), r4, true),
    ];
    assert_eq!(seen, expected);
    let mut state = by_key(listed);
    apply(&mut state, &events);
    assert_eq!(state, by_key(ok(store.list("w/").await).0));
}

/// Writers run while the list and watch are made: the watch still sees
/// exactly the changes after the list revision, none twice, none missing.
pub async fn watch_created_during_writes_has_no_gap_or_duplicate(store: Arc<dyn Store>) {
    const WRITERS: u32 = 3;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("c/{w}/{}", n % 4);
                let mut ops = vec![Op::put(key, n.to_string().into_bytes())];
                if n % 3 == 2 {
                    // Present: written in the previous txn of this writer.
                    ops.push(Op::delete(format!("c/{w}/{}", (n + 3) % 4)));
                }
                ok(store.txn(Vec::new(), ops).await);
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        }));
    }
    let wait_for = |revision: Revision| {
        let store = Arc::clone(&store);
        async move {
            while ok(store.list("").await).1 < revision {
                tokio::task::yield_now().await;
            }
        }
    };
    // List and watch in the middle of the writes, then let them go on.
    wait_for(30).await;
    let (listed, revision) = ok(store.list("c/").await);
    let mut rx = ok(store.watch("c/", revision + 1).await);
    wait_for(revision + 60).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut txns = 0;
    for writer in writers {
        txns += ok(writer.await.map_err(StoreError::from));
    }
    let (final_kvs, final_revision) = ok(store.list("c/").await);
    assert_eq!(final_revision, u64::from(txns), "one revision per txn");

    let events = events_until(&mut rx, final_revision).await;
    let mut revisions: Vec<Revision> = events.iter().map(WatchEvent::mod_revision).collect();
    revisions.dedup();
    let expected: Vec<Revision> = (revision + 1..=final_revision).collect();
    assert_eq!(revisions, expected, "every revision after the list exactly once");
    let mut state = by_key(listed);
    apply(&mut state, &events);
    assert_eq!(state, by_key(final_kvs));
}

/// A watch sees only its prefix; one from a future revision starts there;
/// one from 0 starts with the next change.
pub async fn watch_filters_by_prefix_and_start(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let base = put(store, "p/x", b"0").await;
    let mut prefix_rx = ok(store.watch("p/", base + 1).await);
    let mut future_rx = ok(store.watch("p/", base + 3).await);
    let mut now_rx = ok(store.watch("", 0).await);
    let r1 = put(store, "q/x", b"1").await;
    let r2 = put(store, "p/y", b"1").await;
    let r3 = put(store, "p/z", b"1").await;
    let r4 = put(store, "q/y", b"1").await;
    let r5 = put(store, "p/x", b"2").await;

    let keys = |events: Vec<WatchEvent>| events.iter().map(|e| e.key().to_owned()).collect::<Vec<_>>();
    assert_eq!(keys(events_until(&mut prefix_rx, r5).await), ["p/y", "p/z", "p/x"]);
    assert_eq!(keys(events_until(&mut future_rx, r5).await), ["p/z", "p/x"]);
    let all = events_until(&mut now_rx, r5).await;
    assert_eq!(all.iter().map(WatchEvent::mod_revision).collect::<Vec<_>>(), [r1, r2, r3, r4, r5]);
}

/// A watch from a revision the backend cannot replay (`old`) gets
/// `Compacted` first and then ends; relisting and watching from the relist
/// revision + 1 works.
pub async fn watch_from_unavailable_revision_gets_compacted(store: Arc<dyn Store>, old: Revision) {
    let store = store.as_ref();
    let mut rx = ok(store.watch("", old).await);
    match next_message(&mut rx).await {
        Some(WatchMessage::Compacted { compact_revision }) => {
            assert!(compact_revision > old, "compact revision {compact_revision} <= {old}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_eq!(next_message(&mut rx).await, None, "a compacted watch ends");

    let (_, revision) = ok(store.list("").await);
    let mut rx = ok(store.watch("", revision + 1).await);
    let next = put(store, "after-compaction", b"1").await;
    let events = events_until(&mut rx, next).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key(), "after-compaction");
}

/// A watcher that reads nothing while `writes` changes are made still gets
/// all of them in order afterwards (the backend keeps at least `writes`
/// revisions of history).
pub async fn slow_watcher_gets_every_change(store: Arc<dyn Store>, writes: u32) {
    let mut rx = ok(store.watch("s/", 1).await);
    let mut last = 0;
    for i in 0..writes {
        last = put(store.as_ref(), &format!("s/{}", i % 7), &i.to_be_bytes()).await;
    }
    let events = events_until(&mut rx, last).await;
    let revisions: Vec<Revision> = events.iter().map(WatchEvent::mod_revision).collect();
    assert_eq!(revisions, (1..=last).collect::<Vec<_>>());
}

/// Dropping a watch receiver does not disturb writes or other watchers.
pub async fn dropped_watcher_does_not_block_writes(store: Arc<dyn Store>) {
    let dropped = ok(store.watch("", 1).await);
    let mut kept = ok(store.watch("", 1).await);
    drop(dropped);
    let mut last = 0;
    for i in 0..100u32 {
        last = put(store.as_ref(), "x", &i.to_be_bytes()).await;
    }
    assert_eq!(events_until(&mut kept, last).await.len(), 100);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, RedbStore};

    /// A fresh store and whatever must outlive it.
    struct Fixture {
        store: Arc<dyn Store>,
        _dir: Option<tempfile::TempDir>,
    }

    fn memory(history: usize) -> Fixture {
        Fixture { store: Arc::new(MemoryStore::with_watch_history(history)), _dir: None }
    }

    fn redb(history: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with_watch_history(dir.path().join("store.redb"), history).unwrap();
        Fixture { store: Arc::new(store), _dir: Some(dir) }
    }

    async fn compacted_after_history_is_exceeded(make: fn(usize) -> Fixture) {
        let f = make(5);
        for i in 0..12u32 {
            put(f.store.as_ref(), "h", &i.to_be_bytes()).await;
        }
        // Revisions 8..=12 are kept; 7 and older are gone.
        let mut rx = ok(f.store.watch("", 8).await);
        assert_eq!(events_until(&mut rx, 12).await.len(), 5);
        watch_from_unavailable_revision_gets_compacted(Arc::clone(&f.store), 7).await;
    }

    async fn watcher_too_far_behind_gets_compacted(make: fn(usize) -> Fixture) {
        let f = make(8);
        let mut rx = ok(f.store.watch("", 1).await);
        for i in 0..400u32 {
            put(f.store.as_ref(), "l", &i.to_be_bytes()).await;
        }
        let mut expected = 1;
        loop {
            match next_message(&mut rx).await {
                Some(WatchMessage::Events { revision, .. }) => {
                    assert_eq!(revision, expected, "gap in a lagging watch");
                    expected += 1;
                }
                Some(WatchMessage::Compacted { compact_revision }) => {
                    assert!(compact_revision > expected);
                    break;
                }
                None => panic!("watch ended without Compacted"),
            }
        }
        assert_eq!(next_message(&mut rx).await, None);
    }

    async fn dropping_the_store_ends_watches(make: fn(usize) -> Fixture) {
        let f = fresh(make);
        let mut rx = ok(f.store.watch("", 1).await);
        let last = put(f.store.as_ref(), "k", b"v").await;
        assert_eq!(events_until(&mut rx, last).await.len(), 1);
        let Fixture { store, _dir } = f;
        drop(store);
        assert_eq!(next_message(&mut rx).await, None);
    }

    fn fresh(make: fn(usize) -> Fixture) -> Fixture {
        make(crate::DEFAULT_WATCH_HISTORY)
    }

    /// Wraps a suite function taking only a store into one taking a
    /// fixture maker.
    macro_rules! plain {
        ($($name:ident $(, $arg:expr)?;)*) => {
            $(async fn $name(make: fn(usize) -> Fixture) {
                let f = fresh(make);
                super::$name(Arc::clone(&f.store) $(, $arg)?).await;
            })*
        };
    }

    plain! {
        put_then_get_returns_value_and_revisions;
        failed_compare_changes_nothing;
        revision_grows_by_one_per_changing_txn;
        invalid_txn_is_refused;
        list_is_one_consistent_revision;
        watch_from_list_revision_sees_later_changes_in_order;
        watch_created_during_writes_has_no_gap_or_duplicate;
        watch_filters_by_prefix_and_start;
        slow_watcher_gets_every_change, 500;
        dropped_watcher_does_not_block_writes;
    }

    macro_rules! for_each_backend {
        ($($name:ident),* $(,)?) => {
            mod memory_backend {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory).await;
                })*
            }
            mod redb_backend {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::redb).await;
                })*
            }
        };
    }

    for_each_backend!(
        put_then_get_returns_value_and_revisions,
        failed_compare_changes_nothing,
        revision_grows_by_one_per_changing_txn,
        invalid_txn_is_refused,
        list_is_one_consistent_revision,
        watch_from_list_revision_sees_later_changes_in_order,
        watch_created_during_writes_has_no_gap_or_duplicate,
        watch_filters_by_prefix_and_start,
        slow_watcher_gets_every_change,
        dropped_watcher_does_not_block_writes,
        compacted_after_history_is_exceeded,
        watcher_too_far_behind_gets_compacted,
        dropping_the_store_ends_watches,
    );

    /// One step of a random history: (key, kind, guard) where kind 0..=2 is
    /// put, 3 is delete, and guard 0 none, 1 absent, 2 current, 3 stale.
    type Step = (u8, u8, u8);

    /// Runs random txns against a store and a model of etcd's rules; the
    /// store must agree with the model after every txn, and a watch from
    /// revision 1 must rebuild the final list.
    fn matches_model(store: &dyn Store, steps: &[Step]) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut rx = ok(store.watch("", 1).await);
            let mut model: BTreeMap<String, KeyValue> = BTreeMap::new();
            let mut revision = 0;
            for &(k, kind, guard) in steps {
                let key = format!("m/{}", k % 5);
                let current = model.get(&key).map(|kv| kv.mod_revision);
                let compare = match guard % 4 {
                    0 => None,
                    1 => Some(Compare::Absent(key.clone())),
                    2 => Some(Compare::ModRevision(key.clone(), current.unwrap_or(0))),
                    _ => Some(Compare::ModRevision(key.clone(), current.unwrap_or(0) + 1)),
                };
                let holds = compare.as_ref().is_none_or(|c| c.holds(current));
                let op =
                    if kind % 4 == 3 { Op::delete(key.clone()) } else { Op::put(key.clone(), vec![kind, k]) };
                let got = ok(store.txn(compare.into_iter().collect(), vec![op.clone()]).await);
                let expected = if !holds {
                    None
                } else {
                    match op {
                        Op::Put { key, value } => {
                            revision += 1;
                            let create_revision = model.get(&key).map_or(revision, |kv| kv.create_revision);
                            let kv =
                                KeyValue { key: key.clone(), value, mod_revision: revision, create_revision };
                            model.insert(key, kv);
                        }
                        Op::Delete { key } => {
                            if model.remove(&key).is_some() {
                                revision += 1;
                            }
                        }
                    }
                    Some(revision)
                };
                assert_eq!(got, expected);
                assert_eq!(ok(store.list("m/").await), (model.values().cloned().collect(), revision));
            }
            if revision > 0 {
                let mut state = BTreeMap::new();
                apply(&mut state, &events_until(&mut rx, revision).await);
                assert_eq!(state, model);
            }
        });
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn memory_store_follows_the_model(steps in proptest::collection::vec((0u8..8, 0u8..4, 0u8..4), 0..60)) {
            matches_model(&MemoryStore::new(), &steps);
        }

        #[test]
        fn redb_store_follows_the_model(steps in proptest::collection::vec((0u8..8, 0u8..4, 0u8..4), 0..30)) {
            let f = redb(crate::DEFAULT_WATCH_HISTORY);
            matches_model(f.store.as_ref(), &steps);
        }
    }
}
