//! The request hot path without sockets: path normalisation, the lookup in
//! a rendered metadata tree, and [`handle`] end to end (source lookup,
//! admission, token open/seal, policy, response building, metrics) with 1
//! and with 100,000 instances being served. `cargo bench -p imds-dataplane`.
//!
//! The parts `handle` spends time on besides the snapshot read (the
//! request-counter family, the rate limiter) are measured on their own too,
//! so a profile of the server can be read against them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench panics on setup failure

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use imds_core::sample::sample_instance;
use imds_core::{InstanceId, ManualClock, RoleCredentials};
use imds_dataplane::limits::InstanceAdmission;
use imds_dataplane::metrics::{ImdsVersion, RequestLabels, RouteClass};
use imds_dataplane::path::normalise;
use imds_dataplane::service::{ConnInfo, Outcome, RequestHead, handle};
use imds_dataplane::tree::RenderInputs;
use imds_dataplane::{DataPlane, DataPlaneOptions, InstanceSnapshot, Limits, SnapshotChange};
use imds_net::HopLimitControl;
use imds_token::KeyRing;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
const INSTANCE: &str = "i-0123456789abcdef0";
const CALLER: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

fn creds(tag: &str) -> RoleCredentials {
    RoleCredentials {
        access_key_id: format!("ASIA{tag:0>16}"),
        secret_access_key: "s".repeat(40),
        token: format!("token-{tag}"),
        last_updated: T0 / 1000,
        expiration: T0 / 1000 + 21600,
    }
}

/// The fully rendered snapshot of the instance the benches call as.
fn full_snapshot() -> InstanceSnapshot {
    let record = sample_instance(InstanceId::parse(INSTANCE).unwrap(), CALLER, None);
    let (v1, v2, id) = (creds("V1"), creds("V2"), creds("ID"));
    let inputs = RenderInputs {
        role_credentials_v1: Some(&v1),
        role_credentials_v2: Some(&v2),
        role_error: None,
        identity_credentials: Some(&id),
        now_secs: T0 / 1000,
        events: &[],
        signer: None,
    };
    InstanceSnapshot::render(&record, &inputs)
}

/// Other instances only fill the routing table; nobody queries them.
fn filler(n: u32) -> InstanceSnapshot {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + n);
    let record = sample_instance(
        InstanceId::parse(&format!("i-{:017x}", 0x1000_0000_0000_0000_u64 + u64::from(n))).unwrap(),
        ip,
        None,
    );
    let inputs = RenderInputs {
        role_credentials_v1: None,
        role_credentials_v2: None,
        role_error: None,
        identity_credentials: None,
        now_secs: T0 / 1000,
        events: &[],
        signer: None,
    };
    InstanceSnapshot::render(&record, &inputs)
}

/// Limits that never refuse during a bench.
fn open_limits() -> Limits {
    Limits {
        requests_per_second: NonZeroU32::MAX,
        burst: NonZeroU32::MAX,
        max_connections_per_instance: usize::MAX,
        max_connections: usize::MAX,
    }
}

fn data_plane(others: u32) -> Arc<DataPlane> {
    let options = DataPlaneOptions { limits: open_limits(), ..DataPlaneOptions::default() };
    let dp = DataPlane::new(KeyRing::generate(T0).unwrap(), Arc::new(ManualClock::new(T0)), options);
    let mut changes: Vec<SnapshotChange> =
        (0..others).map(|n| SnapshotChange::Upsert(Arc::new(filler(n)))).collect();
    changes.push(SnapshotChange::Upsert(Arc::new(full_snapshot())));
    dp.apply(changes);
    dp
}

fn conn() -> ConnInfo {
    ConnInfo { peer: IpAddr::V4(CALLER), via_ipv6: false, hop_limit: HopLimitControl::default() }
}

fn call(dp: &DataPlane, conn: &ConnInfo, method: &Method, path: &str, headers: &HeaderMap) -> u16 {
    let head = RequestHead { method, path_and_query: path, headers };
    match handle(dp, conn, &head) {
        Outcome::Respond(r) => r.status().as_u16(),
        Outcome::Close(_) => 0,
    }
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    for (name, raw) in [
        ("instance_id", "/latest/meta-data/instance-id"),
        ("token", "/latest/api/token"),
        ("slashes_query", "//latest//meta-data/iam/security-credentials/demo-role/?x=1"),
        ("percent_encoded", "/latest/meta-data/tags/instance/Name%20with%20spaces"),
        ("unknown_version", "/2099-01-01/meta-data/instance-id"),
    ] {
        g.bench_function(BenchmarkId::new("normalise", name), |b| {
            b.iter(|| normalise(black_box(raw)).map(|p| p.as_str().len()))
        });
    }
    let snap = full_snapshot();
    g.bench_function("normalise_and_tree_get/instance_id", |b| {
        b.iter(|| {
            let p = normalise(black_box("/latest/meta-data/instance-id")).unwrap();
            match p.route() {
                imds_dataplane::path::Route::Tree(t) => snap.tree().get(t).is_some(),
                _ => false,
            }
        })
    });
    for (name, path) in [
        ("instance_id", "meta-data/instance-id"),
        ("deep", "meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/subnet-ipv4-cidr-block"),
        ("missing", "meta-data/no-such-thing"),
    ] {
        g.bench_function(BenchmarkId::new("tree_get", name), |b| {
            b.iter(|| snap.tree().get(black_box(path)).is_some())
        });
    }
    g.finish();
}

fn handle_end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("handle");
    for others in [0u32, 100_000] {
        let dp = data_plane(others);
        let conn = conn();
        let mut put_headers = HeaderMap::new();
        put_headers.insert("x-aws-ec2-metadata-token-ttl-seconds", HeaderValue::from_static("21600"));
        let mut token = None;
        {
            let head = RequestHead {
                method: &Method::PUT,
                path_and_query: "/latest/api/token",
                headers: &put_headers,
            };
            if let Outcome::Respond(r) = handle(&dp, &conn, &head) {
                let body = r.into_body();
                // `Full` yields its one frame synchronously.
                let bytes = futures_poll_full(body);
                token = Some(HeaderValue::from_bytes(&bytes).unwrap());
            }
        }
        let mut v2_headers = HeaderMap::new();
        v2_headers.insert("x-aws-ec2-metadata-token", token.expect("a token"));
        let v1_headers = HeaderMap::new();
        let instances = others + 1;
        assert_eq!(call(&dp, &conn, &Method::GET, "/latest/meta-data/instance-id", &v2_headers), 200);
        assert_eq!(call(&dp, &conn, &Method::GET, "/latest/meta-data/instance-id", &v1_headers), 200);
        g.bench_function(BenchmarkId::new("v2_get_instance_id", instances), |b| {
            b.iter(|| call(&dp, &conn, &Method::GET, black_box("/latest/meta-data/instance-id"), &v2_headers))
        });
        g.bench_function(BenchmarkId::new("v1_get_instance_id", instances), |b| {
            b.iter(|| call(&dp, &conn, &Method::GET, black_box("/latest/meta-data/instance-id"), &v1_headers))
        });
        g.bench_function(BenchmarkId::new("token_put", instances), |b| {
            b.iter(|| call(&dp, &conn, &Method::PUT, black_box("/latest/api/token"), &put_headers))
        });
        g.bench_function(BenchmarkId::new("slot_for", instances), |b| {
            b.iter(|| dp.slot_for(black_box(IpAddr::V4(CALLER))).is_some())
        });
    }
    g.finish();
}

/// The single frame of a `Full` body, without an executor.
fn futures_poll_full(body: http_body_util::Full<bytes::Bytes>) -> Vec<u8> {
    use http_body_util::BodyExt;
    let mut fut = std::pin::pin!(body.collect());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(collected)) => collected.to_bytes().to_vec(),
        _ => panic!("Full body was not ready"),
    }
}

fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("parts");
    let dp = data_plane(0);
    let labels = RequestLabels { version: ImdsVersion::V2, route: RouteClass::MetaData, status: 200 };
    g.bench_function("metrics_requests_family_inc", |b| {
        b.iter(|| dp.metrics().requests.get_or_create(black_box(&labels)).inc())
    });
    g.bench_function("metrics_request_cached_inc", |b| {
        b.iter(|| dp.metrics().request(black_box(labels.clone())))
    });
    g.bench_function("metrics_plain_counter_inc", |b| b.iter(|| dp.metrics().no_token.inc()));
    let admission = InstanceAdmission::new(&open_limits());
    g.bench_function("rate_limiter_admit_request", |b| b.iter(|| admission.admit_request()));
    g.bench_function("keys_load", |b| b.iter(|| dp.keys().current_key_id()));
    g.finish();
}

criterion_group!(benches, paths, handle_end_to_end, parts);
criterion_main!(benches);
