//! The shared `imds_store::conformance` suite against a fresh one-member
//! etcd cluster per test.

use std::sync::Arc;

use imds_store::Store;
use imds_store::conformance;
use imds_store_etcd::EtcdOptions;
use imds_store_etcd::testing::EtcdCluster;

/// A fresh cluster and a store on it; the cluster dies with the fixture.
async fn fresh() -> (EtcdCluster, Arc<dyn Store>) {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let store = cluster.store(EtcdOptions::default()).await.expect("store connects");
    (cluster, Arc::new(store))
}

macro_rules! suite {
    ($($name:ident $(, $arg:expr)?;)*) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_cluster, store) = fresh().await;
            let run = conformance::$name(store $(, $arg)?);
            tokio::time::timeout(std::time::Duration::from_secs(120), run)
                .await
                .expect("conformance test finishes in time");
        })*
    };
}

suite! {
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
