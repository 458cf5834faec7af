//! Compaction: watches from compacted revisions report `Compacted`, also
//! when a broken watch is re-created after its revision was compacted.

use std::sync::Arc;
use std::time::Duration;

use imds_store::conformance::{self, events_until, next_message, ok, put};
use imds_store::{Store, WatchMessage};
use imds_store_etcd::testing::{EtcdCluster, TcpProxy};
use imds_store_etcd::{EtcdOptions, EtcdStore};

const BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_gets_compacted() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let store = cluster.store(EtcdOptions::default()).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        for i in 0..10u32 {
            put(&store, &format!("k/{i}"), &i.to_be_bytes()).await;
        }
        let compacted = ok(store.list("").await).1 - 2;
        ok(store.compact(compacted).await);

        // The shared check: Compacted first, then the end; relist and watch.
        conformance::watch_from_unavailable_revision_gets_compacted(Arc::new(store.clone()), 1).await;

        // The reported revision is the compaction point, and a watch can
        // start exactly there.
        let mut rx = ok(store.watch("k/", 3).await);
        assert_eq!(
            next_message(&mut rx).await,
            Some(WatchMessage::Compacted { compact_revision: compacted })
        );
        let mut rx = ok(store.watch("k/", compacted).await);
        let events = events_until(&mut rx, compacted + 2).await;
        let revisions: Vec<_> = events.iter().map(|e| e.mod_revision()).collect();
        assert_eq!(revisions, [compacted, compacted + 1, compacted + 2]);

        // Data survives compaction; reads at the current revision work.
        let (kvs, _) = ok(store.list("k/").await);
        assert_eq!(kvs.len(), 10);
        assert!(ok(store.get("k/0").await).is_some());
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_off_while_its_revision_is_compacted_gets_compacted() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let writer = cluster.store(EtcdOptions::default()).await.expect("store connects");
    let proxy = TcpProxy::start(&cluster.endpoint(0)).await.expect("proxy starts");
    let options = EtcdOptions { keep_alive_interval: Duration::from_secs(2), ..EtcdOptions::default() };
    let watcher = EtcdStore::connect(&[proxy.endpoint()], options).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        let (_, start) = ok(watcher.list("w/").await);
        let mut rx = ok(watcher.watch("w/", start + 1).await);
        let first = put(&writer, "w/a", b"1").await;
        assert_eq!(events_until(&mut rx, first).await.len(), 1);

        // Partition the watcher, move on and compact past what it saw.
        proxy.cut();
        for i in 0..5u32 {
            put(&writer, &format!("w/{i}"), b"2").await;
        }
        let compacted = ok(writer.list("").await).1;
        ok(writer.compact(compacted).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.restore();

        // The watch is re-created from first + 1, which is gone.
        assert_eq!(
            next_message(&mut rx).await,
            Some(WatchMessage::Compacted { compact_revision: compacted })
        );
        assert_eq!(next_message(&mut rx).await, None, "a compacted watch ends");
        assert!(watcher.stats().watch_restarts >= 1, "{:?}", watcher.stats());
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_off_briefly_resumes_without_gap_or_duplicate() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let writer = cluster.store(EtcdOptions::default()).await.expect("store connects");
    let proxy = TcpProxy::start(&cluster.endpoint(0)).await.expect("proxy starts");
    let watcher = EtcdStore::connect(&[proxy.endpoint()], EtcdOptions::default()).await.expect("connects");
    tokio::time::timeout(BOUND, async {
        let (_, start) = ok(watcher.list("w/").await);
        let mut rx = ok(watcher.watch("w/", start + 1).await);
        let mut last = 0;
        for round in 0..3u32 {
            for i in 0..20u32 {
                last = put(&writer, &format!("w/{}", i % 3), &round.to_be_bytes()).await;
            }
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(200)).await;
            proxy.restore();
        }
        let events = events_until(&mut rx, last).await;
        let revisions: Vec<_> = events.iter().map(|e| e.mod_revision()).collect();
        assert_eq!(revisions, (start + 1..=last).collect::<Vec<_>>());
        assert!(watcher.stats().watch_restarts >= 1, "{:?}", watcher.stats());
    })
    .await
    .expect("bounded");
}
