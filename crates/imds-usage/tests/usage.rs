//! Behaviour of the recorder and the queries over real store backends,
//! with an injected clock (no sleeping).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

use imds_core::{Clock, InstanceId, ManualClock};
use imds_dataplane::usage::UsageSink;
use imds_store::{BoxFuture, Compare, KeyValue, MemoryStore, Op, RedbStore, Revision, Store, StoreError};
use imds_usage::{
    Datapoint, InstanceReport, MAX_USER_AGENT_BYTES, Metric, UsageConfig, UsageError, UsageRecorder, layout,
    metric_statistics, v1_callers,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// An hour start (2026-11-23T00:00:00Z).
const T0: u64 = 1_795_478_400;
const DAY: u64 = 86_400;

fn instance(n: u64) -> InstanceId {
    InstanceId::parse(&format!("i-{n:017x}")).unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn config(top: usize) -> UsageConfig {
    UsageConfig { top_callers_per_instance: top, ..UsageConfig::default() }
}

struct Fixture {
    store: Arc<dyn Store>,
    clock: ManualClock,
    rec: Arc<UsageRecorder>,
}

impl Fixture {
    fn new(top: usize) -> Self {
        Self::on(Arc::new(MemoryStore::new()), top)
    }

    fn on(store: Arc<dyn Store>, top: usize) -> Self {
        let clock = ManualClock::new(T0 * 1000);
        let rec = UsageRecorder::new(Arc::clone(&store), Arc::new(clock.clone()), config(top));
        Self { store, clock, rec }
    }

    fn at(&self, secs: u64) {
        self.clock.set_millis(secs * 1000);
    }

    fn call(&self, id: &InstanceId, ua: &str, path: &str) {
        self.rec.no_token(id, ip(5), Some(ua.as_bytes()), path);
    }

    async fn stats(
        &self,
        id: &InstanceId,
        metric: Metric,
        start: u64,
        end: u64,
        period: u64,
    ) -> Vec<Datapoint> {
        metric_statistics(self.store.as_ref(), id, metric, start, end, period).await.unwrap()
    }

    async fn report(&self, id: &InstanceId, since: u64) -> Option<InstanceReport> {
        let mut reports = v1_callers(self.store.as_ref(), Some(id), since).await.unwrap();
        assert!(reports.len() <= 1);
        reports.pop()
    }
}

fn sums(points: &[Datapoint]) -> Vec<(u64, f64)> {
    points.iter().map(|d| (d.timestamp, d.sum)).collect()
}

fn total(report: &InstanceReport) -> u64 {
    report.callers.iter().map(|g| g.count).sum::<u64>() + report.other_requests
}

#[tokio::test]
async fn n_calls_in_a_minute_sum_to_n() {
    let f = Fixture::new(20);
    let id = instance(1);
    for s in 0..7 {
        f.at(T0 + 120 + s * 8);
        f.call(&id, "curl/8.5", "/latest/meta-data/");
    }
    f.rec.flush().await.unwrap();
    let points = f.stats(&id, Metric::MetadataNoToken, T0 + 120, T0 + 180, 60).await;
    assert_eq!(points.len(), 1);
    let d = points[0];
    assert_eq!(
        (d.timestamp, d.sum, d.sample_count, d.average, d.minimum, d.maximum),
        (T0 + 120, 7.0, 1.0, 7.0, 7.0, 7.0)
    );
    // Nothing else was observed: neighbouring minutes have no datapoint.
    let points = f.stats(&id, Metric::MetadataNoToken, T0, T0 + 3600, 60).await;
    assert_eq!(sums(&points), [(T0 + 120, 7.0)]);
    // Rejected requests are a separate metric.
    let rejected = f.stats(&id, Metric::MetadataNoTokenRejected, T0, T0 + 3600, 60).await;
    assert_eq!(sums(&rejected), [(T0 + 120, 0.0)]);
    assert!(f.rec.pending().instances == 0);
}

#[tokio::test]
async fn statistics_over_a_five_minute_period() {
    let f = Fixture::new(20);
    let id = instance(2);
    // minute 0: 3 served; minute 1: 2 rejected only; minute 2: 5 served;
    // minute 3: 1 served + 1 rejected; minute 4: nothing.
    let plan: [(u64, u64); 4] = [(3, 0), (0, 2), (5, 0), (1, 1)];
    for (m, (served, rejected)) in plan.into_iter().enumerate() {
        f.at(T0 + 60 * m as u64 + 30);
        for _ in 0..served {
            f.call(&id, "python-requests/2.31", "/latest/meta-data/instance-id");
        }
        for _ in 0..rejected {
            f.rec.no_token_rejected(&id);
        }
    }
    f.rec.flush().await.unwrap();
    let points = f.stats(&id, Metric::MetadataNoToken, T0, T0 + 300, 300).await;
    assert_eq!(points.len(), 1);
    let d = points[0];
    assert_eq!(d.timestamp, T0);
    assert_eq!(d.sum, 9.0);
    assert_eq!(d.sample_count, 4.0);
    assert_eq!(d.average, 2.25);
    assert_eq!(d.minimum, 0.0);
    assert_eq!(d.maximum, 5.0);
    let r = f.stats(&id, Metric::MetadataNoTokenRejected, T0, T0 + 300, 300).await;
    assert_eq!((r[0].sum, r[0].sample_count, r[0].minimum, r[0].maximum), (3.0, 4.0, 0.0, 2.0));
    // The report counts both, separately.
    let report = f.report(&id, T0).await.unwrap();
    assert_eq!((report.no_token_requests, report.rejected_requests), (9, 3));
}

#[tokio::test]
async fn periods_are_validated() {
    let f = Fixture::new(20);
    let id = instance(3);
    let s = f.store.as_ref();
    for period in [0, 30, 59, 90, 61] {
        let e = metric_statistics(s, &id, Metric::MetadataNoToken, T0, T0 + 3600, period).await.unwrap_err();
        assert!(matches!(e, UsageError::InvalidPeriod(p) if p == period), "{e}");
        assert_eq!(e.aws_code(), Some("InvalidParameterValue"));
    }
    for (start, end) in [(T0, T0), (T0 + 60, T0)] {
        let e = metric_statistics(s, &id, Metric::MetadataNoToken, start, end, 60).await.unwrap_err();
        assert!(matches!(e, UsageError::InvalidTimeRange { .. }), "{e}");
        assert_eq!(e.aws_code(), Some("InvalidParameterValue"));
    }
    let e = metric_statistics(s, &id, Metric::MetadataNoToken, T0, T0 + 1441 * 60, 60).await.unwrap_err();
    assert!(matches!(e, UsageError::TooManyDatapoints { requested: 1441 }), "{e}");
    assert_eq!(e.aws_code(), Some("InvalidParameterCombination"));
    assert!(e.to_string().contains("1,440"));
    // Exactly 1440 is allowed, and so is a range ending mid-period.
    assert!(
        metric_statistics(s, &id, Metric::MetadataNoToken, T0, T0 + 1440 * 60, 60).await.unwrap().is_empty()
    );
    assert!(metric_statistics(s, &id, Metric::MetadataNoToken, T0, T0 + 90, 300).await.is_ok());
    // Long ranges with long periods are fine too (they list instead of get).
    assert!(metric_statistics(s, &id, Metric::MetadataNoToken, 0, T0, 86_400 * 30).await.is_ok());
}

#[tokio::test]
async fn datapoints_are_stamped_with_period_starts() {
    let f = Fixture::new(20);
    let id = instance(4);
    for (minute, n) in [(0u64, 1u64), (6, 2), (13, 4), (14, 8), (61, 16)] {
        f.at(T0 + minute * 60 + 59);
        for _ in 0..n {
            f.call(&id, "aws-cli/1.18", "/latest/meta-data/iam/security-credentials/");
        }
    }
    f.rec.flush().await.unwrap();
    // An unaligned start is rounded down to the minute; periods follow it.
    let points = f.stats(&id, Metric::MetadataNoToken, T0 + 17, T0 + 7200, 300).await;
    assert_eq!(sums(&points), [(T0, 1.0), (T0 + 300, 2.0), (T0 + 600, 12.0), (T0 + 3600, 16.0)]);
    // Periods aligned to an odd start, across the hour record boundary.
    let points = f.stats(&id, Metric::MetadataNoToken, T0 + 360, T0 + 3720, 3300).await;
    assert_eq!(sums(&points), [(T0 + 360, 14.0), (T0 + 3660, 16.0)]);
    // A minute starting at or after `end` is left out.
    let points = f.stats(&id, Metric::MetadataNoToken, T0, T0 + 360, 60).await;
    assert_eq!(sums(&points), [(T0, 1.0)]);
}

#[tokio::test]
async fn top_n_keeps_heavy_hitters_and_bounds_memory() {
    let top = 20;
    let f = Fixture::new(top);
    let id = instance(5);
    let heavy = ["aws-sdk-go/1.44", "cloud-init/23.1", "ec2-metadata/0.1"];
    let mut calls = 0u64;
    for i in 0..1000u64 {
        f.at(T0 + i);
        f.call(&id, &format!("light-agent/{i}"), "/latest/meta-data/");
        calls += 1;
        if i % 10 == 0 {
            for h in heavy {
                f.call(&id, h, "/latest/meta-data/iam/info");
                calls += 1;
            }
        }
        assert!(f.rec.pending().max_groups_per_instance <= top);
        if i % 250 == 249 {
            f.rec.flush().await.unwrap();
        }
    }
    f.rec.flush().await.unwrap();
    let report = f.report(&id, T0).await.unwrap();
    assert!(report.callers.len() <= top);
    for h in heavy {
        let g =
            report.callers.iter().find(|g| g.user_agent == h).unwrap_or_else(|| panic!("{h} was evicted"));
        assert_eq!(g.count, 100);
        assert_eq!(g.first_seen, T0);
        assert_eq!(g.last_seen, T0 + 990);
    }
    assert_eq!(&report.callers[0].path, "/latest/meta-data/iam/info");
    assert!(report.callers.windows(2).all(|w| w[0].count >= w[1].count));
    assert_eq!(report.no_token_requests, calls);
    assert_eq!(total(&report), calls, "evicted requests are counted as other");
    assert!(report.other_requests > 0);
}

#[tokio::test]
async fn long_and_invalid_user_agents_are_bounded_and_lossy() {
    let f = Fixture::new(20);
    let id = instance(6);
    let long = format!("Mozilla/5.0 {}", "x".repeat(1000));
    f.call(&id, &long, "/latest/meta-data/");
    f.rec.no_token(&id, ip(6), Some(b"curl/\xff\xfe8.0"), "/latest/user-data");
    f.rec.no_token(&id, ip(7), None, &format!("/latest/meta-data/{}", "p".repeat(1000)));
    f.rec.flush().await.unwrap();
    let report = f.report(&id, T0).await.unwrap();
    assert_eq!(report.callers.len(), 3);
    let find = |p: &str| report.callers.iter().find(|g| g.path.starts_with(p)).unwrap();
    let g = find("/latest/meta-data/");
    assert!(g.user_agent.len() <= MAX_USER_AGENT_BYTES);
    let long_ua = report.callers.iter().find(|g| g.user_agent.starts_with("Mozilla")).unwrap();
    assert_eq!(long_ua.user_agent.len(), MAX_USER_AGENT_BYTES);
    assert_eq!(find("/latest/user-data").user_agent, "curl/\u{fffd}\u{fffd}8.0");
    let no_ua = report.callers.iter().find(|g| g.source == ip(7)).unwrap();
    assert_eq!(no_ua.user_agent, "");
    assert_eq!(no_ua.path.len(), imds_usage::MAX_PATH_BYTES);
}

#[tokio::test]
async fn flushes_merge_counts_and_times() {
    let f = Fixture::new(20);
    let id = instance(7);
    f.at(T0 + 10);
    f.call(&id, "ua", "/latest/meta-data/");
    f.call(&id, "ua", "/latest/meta-data/");
    f.rec.flush().await.unwrap();
    f.at(T0 + 4000);
    f.call(&id, "ua", "/latest/meta-data/");
    f.call(&id, "other-ua", "/latest/meta-data/");
    f.rec.flush().await.unwrap();
    let report = f.report(&id, 0).await.unwrap();
    let g = &report.callers[0];
    assert_eq!((g.user_agent.as_str(), g.count, g.first_seen, g.last_seen), ("ua", 3, T0 + 10, T0 + 4000));
    assert_eq!(report.no_token_requests, 4);
    // `since` narrows the window: minutes and groups before it are left out.
    let later = f.report(&id, T0 + 3600).await.unwrap();
    assert_eq!(later.no_token_requests, 2);
    assert_eq!(later.callers.len(), 2);
    assert!(f.report(&id, T0 + 5000).await.is_none());
    // Flushing with nothing counted changes nothing.
    let (before, _) = f.store.list(layout::USAGE_PREFIX).await.unwrap();
    f.rec.flush().await.unwrap();
    let (after, _) = f.store.list(layout::USAGE_PREFIX).await.unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn data_survives_a_restart_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let (a, b) = (instance(8), instance(9));
    let (report, stats) = {
        let f = Fixture::on(Arc::new(RedbStore::open(&path).unwrap()), 20);
        for m in 0..3u64 {
            f.at(T0 + m * 60);
            f.call(&a, "aws-sdk-java/1.12", "/latest/meta-data/placement/region");
            f.call(&b, "cloud-init/22.4", "/latest/meta-data/instance-id");
            f.call(&b, "cloud-init/22.4", "/latest/meta-data/instance-id");
        }
        f.rec.flush().await.unwrap();
        let report = v1_callers(f.store.as_ref(), None, T0).await.unwrap();
        let stats = f.stats(&b, Metric::MetadataNoToken, T0, T0 + 3600, 60).await;
        (report, stats)
    };
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].instance_id, b, "sorted by requests");
    let f = Fixture::on(Arc::new(RedbStore::open(&path).unwrap()), 20);
    assert_eq!(v1_callers(f.store.as_ref(), None, T0).await.unwrap(), report);
    assert_eq!(f.stats(&b, Metric::MetadataNoToken, T0, T0 + 3600, 60).await, stats);
    assert_eq!(sums(&stats), [(T0, 2.0), (T0 + 60, 2.0), (T0 + 120, 2.0)]);
    // A new process adds to what the old one wrote.
    f.at(T0 + 300);
    f.call(&b, "cloud-init/22.4", "/latest/meta-data/instance-id");
    f.rec.flush().await.unwrap();
    let again = f.report(&b, T0).await.unwrap();
    assert_eq!((again.no_token_requests, again.callers[0].count), (7, 7));
    assert_eq!((again.callers[0].first_seen, again.callers[0].last_seen), (T0, T0 + 300));
}

#[tokio::test]
async fn data_past_retention_is_deleted_at_flush() {
    let f = Fixture::new(20);
    let (old, live) = (instance(10), instance(11));
    f.at(T0 + 5);
    f.call(&old, "old-agent", "/latest/meta-data/");
    f.call(&live, "old-agent", "/latest/meta-data/");
    f.at(T0 + DAY + 5);
    f.call(&live, "day-two", "/latest/meta-data/");
    f.rec.flush().await.unwrap();
    let hours = |id: InstanceId| {
        let store = Arc::clone(&f.store);
        async move { store.list(&layout::counts_prefix(&id)).await.unwrap().0.len() }
    };
    assert_eq!((hours(old.clone()).await, hours(live.clone()).await), (1, 2));

    // 15 days and a bit after T0: the first hour is past retention.
    f.at(T0 + 15 * DAY + 3600 + 1);
    f.call(&live, "new-agent", "/latest/meta-data/");
    f.rec.flush().await.unwrap();
    assert_eq!(hours(old.clone()).await, 0);
    assert!(f.store.get(&layout::callers_key(&old)).await.unwrap().is_none(), "nothing left of it");
    assert_eq!(hours(live.clone()).await, 2);
    let report = f.report(&live, 0).await.unwrap();
    let agents: Vec<_> = report.callers.iter().map(|g| g.user_agent.as_str()).collect();
    assert_eq!(agents, ["new-agent", "day-two"]);
    assert_eq!(report.no_token_requests, 2);
    assert!(v1_callers(f.store.as_ref(), None, 0).await.unwrap().iter().all(|r| r.instance_id != old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recording_loses_nothing() {
    let f = Fixture::new(8);
    let ids: Vec<_> = (20..23).map(instance).collect();
    let done = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let rec = Arc::clone(&f.rec);
            let ids = ids.clone();
            std::thread::spawn(move || {
                for i in 0..5000usize {
                    let id = &ids[i % ids.len()];
                    rec.no_token(
                        id,
                        ip(t),
                        Some(format!("agent-{}", i % 50).as_bytes()),
                        "/latest/meta-data/",
                    );
                    if i % 10 == 0 {
                        rec.no_token_rejected(id);
                    }
                }
            })
        })
        .collect();
    let flusher = {
        let (rec, clock, done) = (Arc::clone(&f.rec), f.clock.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut flushes = 0;
            while !done.load(Ordering::SeqCst) {
                clock.advance_millis(7_000);
                rec.flush().await.unwrap();
                flushes += 1;
                tokio::task::yield_now().await;
            }
            flushes
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let flushes = flusher.await.unwrap();
    f.rec.flush().await.unwrap();
    assert!(flushes > 0);
    let end = f.clock.now_secs() + 60;
    let (mut served, mut rejected) = (0.0, 0.0);
    for id in &ids {
        served +=
            f.stats(id, Metric::MetadataNoToken, T0, end, 3600).await.iter().map(|d| d.sum).sum::<f64>();
        rejected += f
            .stats(id, Metric::MetadataNoTokenRejected, T0, end, 3600)
            .await
            .iter()
            .map(|d| d.sum)
            .sum::<f64>();
    }
    assert_eq!((served, rejected), (20_000.0, 2_000.0));
    let reports = v1_callers(f.store.as_ref(), None, 0).await.unwrap();
    assert_eq!(reports.iter().map(total).sum::<u64>(), 20_000);
    assert_eq!(reports.iter().map(|r| r.no_token_requests).sum::<u64>(), 20_000);
    assert!(reports.iter().all(|r| r.callers.len() <= 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_flushing_one_instance_both_count() {
    let store: Arc<dyn Store> = Arc::new(Flaky { inner: MemoryStore::new(), mode: AtomicU8::new(0) });
    let a = Fixture::on(Arc::clone(&store), 20);
    let b = Fixture::on(Arc::clone(&store), 20);
    let id = instance(30);
    for round in 0..20u64 {
        for f in [&a, &b] {
            f.at(T0 + round * 30);
            for _ in 0..=round {
                f.call(&id, "shared", "/latest/meta-data/");
            }
        }
        let (ra, rb) = tokio::join!(a.rec.flush(), b.rec.flush());
        ra.unwrap();
        rb.unwrap();
    }
    let expected = 2 * (1..=20).sum::<u64>();
    let report = a.report(&id, 0).await.unwrap();
    assert_eq!((report.no_token_requests, report.callers[0].count), (expected, expected));
}

#[tokio::test]
async fn served_instances_read_zero_not_no_data() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new((T0 + 30) * 1000);
    let (quiet, gone) = (instance(40), instance(41));
    let served = {
        let (quiet, gone) = (quiet.clone(), gone.clone());
        let first = Arc::new(AtomicBool::new(true));
        move || {
            if first.swap(false, Ordering::SeqCst) {
                vec![quiet.clone(), gone.clone()]
            } else {
                vec![quiet.clone()]
            }
        }
    };
    let rec =
        UsageRecorder::with_served(Arc::clone(&store), Arc::new(clock.clone()), config(20), Arc::new(served));
    rec.flush().await.unwrap();
    clock.set_millis((T0 + 150) * 1000);
    rec.flush().await.unwrap();
    let points =
        metric_statistics(store.as_ref(), &quiet, Metric::MetadataNoToken, T0, T0 + 600, 60).await.unwrap();
    assert_eq!(sums(&points), [(T0, 0.0), (T0 + 60, 0.0), (T0 + 120, 0.0)]);
    let points =
        metric_statistics(store.as_ref(), &gone, Metric::MetadataNoToken, T0, T0 + 600, 60).await.unwrap();
    assert_eq!(sums(&points), [(T0, 0.0)], "no longer served: no new minutes");
    // An instance that only uses IMDSv2 is not in the v1 report.
    assert!(v1_callers(store.as_ref(), None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn run_flushes_on_shutdown() {
    let f = Fixture::new(20);
    let id = instance(50);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&f.rec).run(rx));
    f.call(&id, "late", "/latest/meta-data/");
    tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(f.report(&id, 0).await.unwrap().no_token_requests, 1);
    // A dropped sender also ends the loop, with a last flush.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&f.rec).run(rx));
    f.call(&id, "late", "/latest/meta-data/");
    drop(tx);
    task.await.unwrap();
    assert_eq!(f.report(&id, 0).await.unwrap().no_token_requests, 2);
}

/// A store that yields before every read (so concurrent flushes interleave)
/// and fails on demand: mode 1 fails every txn before applying it
/// (`Unavailable`), mode 2 applies it and then reports `OutcomeUnknown`.
struct Flaky {
    inner: MemoryStore,
    mode: AtomicU8,
}

impl Store for Flaky {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>, StoreError>> {
        let key = key.to_owned();
        Box::pin(async move {
            // Lets concurrent flushes interleave between their reads and writes.
            tokio::task::yield_now().await;
            self.inner.get(&key).await
        })
    }
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision), StoreError>> {
        self.inner.list(prefix)
    }
    fn txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<Option<Revision>, StoreError>> {
        Box::pin(async move {
            match self.mode.load(Ordering::SeqCst) {
                1 => Err(StoreError::Unavailable("down".into())),
                2 => {
                    self.inner.txn(compares, ops).await?;
                    Err(StoreError::OutcomeUnknown("timeout".into()))
                }
                _ => self.inner.txn(compares, ops).await,
            }
        })
    }
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> BoxFuture<'_, Result<imds_store::WatchReceiver, StoreError>> {
        self.inner.watch(prefix, from)
    }
}

#[tokio::test]
async fn failed_flushes_keep_counts_and_unknown_outcomes_are_not_doubled() {
    let flaky = Arc::new(Flaky { inner: MemoryStore::new(), mode: AtomicU8::new(1) });
    let f = Fixture::on(Arc::clone(&flaky) as Arc<dyn Store>, 20);
    let id = instance(60);
    f.call(&id, "ua", "/latest/meta-data/");
    assert!(matches!(f.rec.flush().await, Err(StoreError::Unavailable(_))));
    f.call(&id, "ua", "/latest/meta-data/");
    assert_eq!(f.rec.pending().instances, 1);
    flaky.mode.store(0, Ordering::SeqCst);
    f.rec.flush().await.unwrap();
    assert_eq!(f.report(&id, 0).await.unwrap().callers[0].count, 2);

    flaky.mode.store(2, Ordering::SeqCst);
    f.call(&id, "ua", "/latest/meta-data/");
    let _ = f.rec.flush().await; // the sweep may report the unknown outcome of its own writes
    assert_eq!(f.rec.pending().instances, 0, "the write was recognised as applied");
    flaky.mode.store(0, Ordering::SeqCst);
    f.rec.flush().await.unwrap();
    let report = f.report(&id, 0).await.unwrap();
    assert_eq!((report.no_token_requests, report.callers[0].count), (3, 3));
}

#[tokio::test]
async fn corrupt_records_are_reported_by_queries_and_replaced_by_flushes() {
    let f = Fixture::new(20);
    let id = instance(70);
    let key = layout::counts_key(&id, T0);
    f.store.txn(vec![], vec![Op::put(key.clone(), b"not json".to_vec())]).await.unwrap();
    let e =
        metric_statistics(f.store.as_ref(), &id, Metric::MetadataNoToken, T0, T0 + 60, 60).await.unwrap_err();
    assert!(matches!(e, UsageError::Store(StoreError::Corrupt { .. })), "{e}");
    f.call(&id, "ua", "/latest/meta-data/");
    f.rec.flush().await.unwrap();
    assert_eq!(sums(&f.stats(&id, Metric::MetadataNoToken, T0, T0 + 60, 60).await), [(T0, 1.0)]);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// For any sequence of (minute, count) records, flushed at arbitrary
        /// points, Sum over any aligned window equals the brute-force sum.
        #[test]
        fn sum_over_any_aligned_window_is_the_brute_force_sum(
            records in proptest::collection::vec((0u64..240, 1u64..6, any::<bool>()), 0..40),
            windows in proptest::collection::vec((0u64..240, proptest::sample::select(vec![1u64, 2, 3, 5, 10, 15, 60, 90]), 1u64..12), 1..6),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let f = Fixture::new(4);
                let id = instance(80);
                let mut brute = std::collections::BTreeMap::<u64, u64>::new();
                for (minute, count, flush) in &records {
                    f.at(T0 + minute * 60 + 7);
                    for _ in 0..*count {
                        f.call(&id, "p", "/");
                    }
                    *brute.entry(*minute).or_default() += count;
                    if *flush {
                        f.rec.flush().await.unwrap();
                    }
                }
                f.rec.flush().await.unwrap();
                for (start_minute, period_minutes, n) in &windows {
                    let start = T0 + start_minute * 60;
                    let period = period_minutes * 60;
                    let end = start + n * period;
                    let points = f.stats(&id, Metric::MetadataNoToken, start, end, period).await;
                    let mut expected = Vec::new();
                    for k in 0..*n {
                        let (lo, hi) = (start_minute + k * period_minutes, start_minute + (k + 1) * period_minutes);
                        let sum: u64 = brute.range(lo..hi).map(|(_, c)| c).sum();
                        if sum > 0 {
                            expected.push((start + k * period, sum as f64));
                        }
                    }
                    prop_assert_eq!(sums(&points), expected);
                }
                Ok(())
            })?;
        }
    }
}

/// A store that counts transactions and the keys they write.
struct Counting {
    inner: Arc<dyn Store>,
    txns: std::sync::atomic::AtomicUsize,
    writes: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn over(inner: Arc<dyn Store>) -> Self {
        Self { inner, txns: Default::default(), writes: Default::default() }
    }

    /// (transactions, written keys) since the last call.
    fn take(&self) -> (usize, usize) {
        (self.txns.swap(0, Ordering::SeqCst), self.writes.swap(0, Ordering::SeqCst))
    }
}

impl Store for Counting {
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
        self.txns.fetch_add(1, Ordering::SeqCst);
        self.writes.fetch_add(ops.len(), Ordering::SeqCst);
        self.inner.txn(compares, ops)
    }
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> BoxFuture<'_, Result<imds_store::WatchReceiver, StoreError>> {
        self.inner.watch(prefix, from)
    }
}

/// A served set that tests change between flushes.
fn fleet(ids: Vec<InstanceId>) -> (Arc<std::sync::Mutex<Vec<InstanceId>>>, impl Fn() -> Vec<InstanceId>) {
    let set = Arc::new(std::sync::Mutex::new(ids));
    let view = Arc::clone(&set);
    (set, move || view.lock().unwrap().clone())
}

#[tokio::test]
async fn an_idle_fleet_costs_one_small_write_per_minute_not_per_instance() {
    idle_fleet(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn an_idle_fleet_on_redb_costs_one_small_write_per_minute_not_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    idle_fleet(Arc::new(RedbStore::open(dir.path().join("usage.redb")).unwrap())).await;
}

async fn idle_fleet(inner: Arc<dyn Store>) {
    const FLEET: usize = 10_000;
    let counting = Arc::new(Counting::over(inner));
    let store: Arc<dyn Store> = counting.clone();
    let clock = ManualClock::new(T0 * 1000);
    let ids: Vec<InstanceId> = (0..FLEET as u64).map(|n| instance(0x1000 + n)).collect();
    let (set, served) = fleet(ids.clone());
    let rec =
        UsageRecorder::with_served(Arc::clone(&store), Arc::new(clock.clone()), config(20), Arc::new(served));

    // First sight of the fleet: one span per instance, batched.
    rec.flush().await.unwrap();
    let (txns, writes) = counting.take();
    assert!(txns <= 1 + FLEET.div_ceil(100) + 2, "{txns} transactions for the first flush");
    assert!(writes <= FLEET + 3, "{writes} keys written for the first flush");

    // Ten idle minutes of 10-s flushes: the run record, once a minute.
    for k in 1..=60 {
        clock.set_millis((T0 + 10 * k) * 1000);
        rec.flush().await.unwrap();
    }
    let (txns, writes) = counting.take();
    assert!(txns <= 10, "{txns} transactions in 60 idle flushes of {FLEET} instances");
    assert!(writes <= 10, "{writes} keys written in 60 idle flushes");

    // Thirty instances call IMDSv1: their counts (two keys each), batched;
    // nothing for the others.
    for id in &ids[..30] {
        rec.no_token(id, ip(5), Some(b"curl/8"), "/latest/meta-data/");
    }
    clock.set_millis((T0 + 610) * 1000);
    rec.flush().await.unwrap();
    let (txns, writes) = counting.take();
    assert!(txns <= 2, "{txns} transactions for 30 called instances");
    assert!(writes <= 60 + 1, "{writes} keys written for 30 called instances");

    // One instance goes away: one batched change.
    set.lock().unwrap().pop();
    clock.set_millis((T0 + 620) * 1000);
    rec.flush().await.unwrap();
    let (txns, writes) = counting.take();
    assert!(txns <= 2 && writes <= 2, "{txns} transactions / {writes} keys for one instance leaving");

    // Every idle minute still reads 0, not "no data"; the called minute
    // has its count; the departed instance ends with its last flush.
    let idle = &ids[100];
    let points =
        metric_statistics(store.as_ref(), idle, Metric::MetadataNoToken, T0, T0 + 720, 60).await.unwrap();
    assert_eq!(points.len(), 11, "{points:?}");
    assert!(points.iter().all(|p| p.sum == 0.0 && p.sample_count == 1.0), "{points:?}");
    let points = metric_statistics(store.as_ref(), &ids[0], Metric::MetadataNoToken, T0 + 600, T0 + 660, 60)
        .await
        .unwrap();
    assert_eq!(sums(&points), [(T0 + 600, 1.0)]);
    let gone = ids.last().unwrap();
    let points =
        metric_statistics(store.as_ref(), gone, Metric::MetadataNoToken, T0, T0 + 720, 60).await.unwrap();
    assert_eq!(points.last().map(|p| p.timestamp), Some(T0 + 600), "{points:?}");
}

#[tokio::test]
async fn a_restart_covers_its_own_minutes_not_the_downtime() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0 * 1000);
    let id = instance(60);
    let first = {
        let id = id.clone();
        UsageRecorder::with_served(
            Arc::clone(&store),
            Arc::new(clock.clone()),
            config(20),
            Arc::new(move || vec![id.clone()]),
        )
    };
    first.flush().await.unwrap();
    clock.set_millis((T0 + 130) * 1000);
    first.flush().await.unwrap();
    // The process dies without a last flush; another starts 5 minutes on.
    drop(first);
    clock.set_millis((T0 + 480) * 1000);
    let second = {
        let id = id.clone();
        UsageRecorder::with_served(
            Arc::clone(&store),
            Arc::new(clock.clone()),
            config(20),
            Arc::new(move || vec![id.clone()]),
        )
    };
    second.flush().await.unwrap();
    clock.set_millis((T0 + 545) * 1000);
    second.flush().await.unwrap();
    let points =
        metric_statistics(store.as_ref(), &id, Metric::MetadataNoToken, T0, T0 + 900, 60).await.unwrap();
    let minutes: Vec<u64> = points.iter().map(|p| (p.timestamp - T0) / 60).collect();
    assert_eq!(minutes, [0, 1, 2, 8, 9]);
    // A 5-minute period counts each served minute once.
    let points =
        metric_statistics(store.as_ref(), &id, Metric::MetadataNoToken, T0, T0 + 600, 300).await.unwrap();
    assert_eq!(points.iter().map(|p| p.sample_count).collect::<Vec<_>>(), [3.0, 2.0]);
}

#[tokio::test]
async fn served_spans_past_retention_are_deleted() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0 * 1000);
    let id = instance(61);
    let old = {
        let id = id.clone();
        UsageRecorder::with_served(
            Arc::clone(&store),
            Arc::new(clock.clone()),
            config(20),
            Arc::new(move || vec![id.clone()]),
        )
    };
    old.flush().await.unwrap();
    drop(old);
    let (kvs, _) = store.list(layout::USAGE_PREFIX).await.unwrap();
    assert_eq!(kvs.len(), 2, "a run record and a served record: {kvs:?}");
    clock.set_millis((T0 + 16 * DAY) * 1000);
    let now = UsageRecorder::with_served(
        Arc::clone(&store),
        Arc::new(clock.clone()),
        config(20),
        Arc::new(Vec::new),
    );
    now.flush().await.unwrap();
    let (kvs, _) = store.list(layout::USAGE_PREFIX).await.unwrap();
    assert!(kvs.is_empty(), "{kvs:?}");
}
