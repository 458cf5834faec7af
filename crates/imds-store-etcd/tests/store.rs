//! Connecting, namespaces, and a cluster that is entirely down.

use std::time::Duration;

use imds_store::conformance::{ok, put};
use imds_store::{Compare, Op, Store, StoreError};
use imds_store_etcd::testing::EtcdCluster;
use imds_store_etcd::{EtcdOptions, EtcdStore};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_isolate_stores_on_one_cluster() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let a = EtcdStore::connect_url(&format!("{}/tenant-a/", cluster.url()), EtcdOptions::default())
        .await
        .expect("connects");
    let b = cluster.store(EtcdOptions::default()).await.expect("connects");
    assert_eq!(a.options().namespace, "/tenant-a/");
    assert_eq!(b.options().namespace, "/imdsd/");
    let revision = put(&a, "instances/i-1", b"a").await;
    put(&b, "instances/i-2", b"b").await;
    let (listed, _) = ok(a.list("").await);
    assert_eq!(listed.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["instances/i-1"]);
    assert_eq!(listed[0].mod_revision, revision);
    assert_eq!(ok(b.get("instances/i-1").await), None);
    // The raw etcd key carries the namespace, and its revision is ours + 1.
    let mut raw = cluster.client().await.expect("raw client");
    let got = raw.get("/tenant-a/instances/i-1", None).await.expect("raw get");
    let kv = got.kvs().first().expect("stored under the namespace");
    assert_eq!(kv.mod_revision(), i64::try_from(revision).expect("small") + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_is_unavailable_quickly_and_nothing_is_applied() {
    let mut cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let options = EtcdOptions { request_timeout: Duration::from_secs(2), ..EtcdOptions::default() };
    let store = cluster.store(options.clone()).await.expect("connects");
    put(&store, "k/before", b"1").await;
    cluster.kill(0);

    let began = Instant::now();
    let txn =
        store.txn(vec![Compare::Absent("k/during".into())], vec![Op::put("k/during", b"1".to_vec())]).await;
    assert!(matches!(txn, Err(StoreError::Unavailable(_))), "{txn:?}");
    let read = store.get("k/before").await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    let watch = store.watch("k/", 1).await;
    assert!(matches!(watch, Err(StoreError::Unavailable(_))), "{:?}", watch.err());
    assert!(began.elapsed() < Duration::from_secs(8), "took {:?}", began.elapsed());
    let connect = EtcdStore::connect(&cluster.endpoints(), options).await;
    assert!(matches!(connect, Err(StoreError::Unavailable(_))), "{connect:?}");

    cluster.restart(0).await.expect("restarts");
    assert_eq!(ok(store.get("k/during").await), None, "an Unavailable txn was applied");
    assert!(ok(store.get("k/before").await).is_some());
    assert!(store.stats().unavailable >= 3, "{:?}", store.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_empty_endpoints_are_refused() {
    let refused = EtcdStore::connect(&[], EtcdOptions::default()).await;
    assert!(matches!(refused, Err(StoreError::InvalidRequest(_))));
    let refused = EtcdStore::connect_url("redb:///var/lib/imdsd", EtcdOptions::default()).await;
    assert!(matches!(refused, Err(StoreError::InvalidRequest(_))));
}
