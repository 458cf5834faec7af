//! `HostLease`: keys under it live while it is kept alive, vanish on
//! revoke and when keep-alives stop, and survive the loss of any member.

use std::time::Duration;

use imds_store::conformance::{events_until, ok};
use imds_store::{Store, WatchEvent};
use imds_store_etcd::testing::EtcdCluster;
use imds_store_etcd::{EtcdOptions, EtcdStore, HostLease};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(90);

/// Polls until `key` is absent; how long that took.
async fn gone_within(store: &EtcdStore, key: &str, limit: Duration) -> Duration {
    let began = Instant::now();
    while ok(store.get(key).await).is_some() {
        assert!(began.elapsed() < limit, "{key} still present after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_deletes_the_keys_at_once() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let store = cluster.store(EtcdOptions::default()).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        let (_, start) = ok(store.list("hosts/").await);
        let mut rx = ok(store.watch("hosts/", start + 1).await);
        let lease = ok(HostLease::grant(&store, 10).await);
        assert!(lease.id() != 0 && lease.ttl() >= 10);
        let put = ok(lease.put("hosts/h-1", b"alive".to_vec()).await);
        assert_eq!(ok(store.get("hosts/h-1").await).map(|kv| kv.mod_revision), Some(put));
        ok(lease.revoke().await);
        assert_eq!(ok(store.get("hosts/h-1").await), None);
        let events = events_until(&mut rx, put + 1).await;
        assert!(
            matches!(&events[..], [WatchEvent::Put(_), WatchEvent::Delete { key, .. }] if key == "hosts/h-1")
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_while_kept_alive_and_expire_when_keep_alive_stops() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let store = cluster.store(EtcdOptions::default()).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        let lease = ok(HostLease::grant(&store, 2).await);
        let ttl = Duration::from_secs(u64::try_from(lease.ttl()).expect("positive TTL"));
        ok(lease.put("hosts/h-1", b"alive".to_vec()).await);
        tokio::time::sleep(ttl * 2 + Duration::from_millis(500)).await;
        assert!(ok(store.get("hosts/h-1").await).is_some(), "kept-alive key expired");
        assert!(!lease.expired());
        drop(lease); // Stops the keep-alives, does not revoke.
        let took = gone_within(&store, "hosts/h-1", ttl + Duration::from_secs(3)).await;
        eprintln!("key expired {took:?} after keep-alives stopped (TTL {ttl:?})");
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_revoked_elsewhere_is_reported_expired() {
    let cluster = EtcdCluster::start(1).await.expect("etcd starts");
    let store = cluster.store(EtcdOptions::default()).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        let lease = ok(HostLease::grant(&store, 2).await);
        ok(lease.put("hosts/h-1", b"alive".to_vec()).await);
        let mut raw = cluster.client().await.expect("raw client");
        raw.lease_revoke(lease.id()).await.expect("revoked");
        let began = Instant::now();
        while !lease.expired() {
            assert!(began.elapsed() < Duration::from_secs(5), "expiry not noticed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let put = lease.put("hosts/h-1", b"again".to_vec()).await;
        assert!(matches!(put, Err(imds_store::StoreError::InvalidRequest(_))), "{put:?}");
        ok(lease.revoke().await); // Already gone: still fine.
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_survives_killing_each_member_in_turn() {
    let mut cluster = EtcdCluster::start(3).await.expect("etcd starts");
    let options = EtcdOptions {
        request_timeout: Duration::from_secs(3),
        keep_alive_interval: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let store = cluster.store(options).await.expect("store connects");
    tokio::time::timeout(BOUND, async {
        let lease = ok(HostLease::grant(&store, 3).await);
        let ttl = Duration::from_secs(u64::try_from(lease.ttl()).expect("positive TTL"));
        ok(lease.put("hosts/h-1", b"alive".to_vec()).await);
        // One of the three serves the keep-alive stream; each is killed for
        // longer than the TTL, so a stream that was not re-opened would let
        // the lease expire.
        for victim in 0..3 {
            cluster.kill(victim);
            tokio::time::sleep(ttl + Duration::from_millis(1500)).await;
            assert!(!lease.expired(), "lease expired while member {victim} was down");
            assert!(ok(store.get("hosts/h-1").await).is_some(), "key gone while member {victim} was down");
            cluster.restart(victim).await.expect("member restarts");
        }
        let stats = store.stats();
        assert!(stats.keep_alive_restarts >= 1, "{stats:?}");
        eprintln!("keep-alive over three member kills: {stats:?}");
        ok(lease.revoke().await);
        assert_eq!(ok(store.get("hosts/h-1").await), None);
    })
    .await
    .expect("bounded");
}
