//! The request handler without sockets: every policy edge of docs/protocol/data-plane.md,
//! with an injected clock so expiry is tested without sleeping.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use imds_core::sample::sample_instance;
use imds_core::{Enabled, HopLimit, HttpTokens, InstanceId, InstanceRecord, ManualClock, RoleCredentials};
use imds_dataplane::service::{ConnInfo, Outcome, RequestHead, handle};
use imds_dataplane::tree::RenderInputs;
use imds_dataplane::{DataPlane, DataPlaneOptions, InstanceSnapshot, Limits, SnapshotChange};
use imds_net::HopLimitControl;
use imds_token::KeyRing;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;

struct Fixture {
    dp: Arc<DataPlane>,
    clock: ManualClock,
}

fn record(id: &str, ip: [u8; 4]) -> InstanceRecord {
    sample_instance(InstanceId::parse(id).unwrap(), Ipv4Addr::from(ip), None)
}

fn creds(tag: &str) -> RoleCredentials {
    RoleCredentials {
        access_key_id: format!("ASIA{tag:0>16}"),
        secret_access_key: "s".repeat(40),
        token: format!("token-{tag}"),
        last_updated: T0 / 1000,
        expiration: T0 / 1000 + 21600,
    }
}

fn snapshot(r: &InstanceRecord) -> Arc<InstanceSnapshot> {
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
    Arc::new(InstanceSnapshot::render(r, &inputs))
}

impl Fixture {
    fn new(records: &[InstanceRecord]) -> Self {
        let clock = ManualClock::new(T0);
        Self::with_options(records, clock, DataPlaneOptions::default())
    }

    fn with_options(records: &[InstanceRecord], clock: ManualClock, options: DataPlaneOptions) -> Self {
        let dp = DataPlane::new(KeyRing::generate(T0).unwrap(), Arc::new(clock.clone()), options);
        dp.apply(records.iter().map(|r| SnapshotChange::Upsert(snapshot(r))).collect());
        Self { dp, clock }
    }

    fn call(&self, from: [u8; 4], method: Method, path: &str, headers: &[(&'static str, &str)]) -> Reply {
        self.call_on(&conn(from), method, path, headers)
    }

    fn call_on(
        &self,
        conn: &ConnInfo,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let head = RequestHead { method: &method, path_and_query: path, headers: &map };
        match handle(&self.dp, conn, &head) {
            Outcome::Close(reason) => Reply::Closed(reason),
            Outcome::Respond(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = futures_lite_block(resp.into_body());
                Reply::Answer { status, headers, body }
            }
        }
    }

    fn token(&self, from: [u8; 4], ttl: &str) -> String {
        match self.call(
            from,
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        ) {
            Reply::Answer { status: 200, body, .. } => String::from_utf8(body).unwrap(),
            other => panic!("token PUT failed: {other:?}"),
        }
    }
}

fn conn(ip: [u8; 4]) -> ConnInfo {
    ConnInfo { peer: IpAddr::V4(Ipv4Addr::from(ip)), via_ipv6: false, hop_limit: HopLimitControl::default() }
}

fn futures_lite_block(body: http_body_util::Full<bytes::Bytes>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async { body.collect().await.unwrap().to_bytes().to_vec() })
}

#[derive(Debug)]
enum Reply {
    Answer { status: u16, headers: HeaderMap, body: Vec<u8> },
    Closed(&'static str),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Answer { status, .. } => *status,
            Reply::Closed(r) => panic!("connection closed: {r}"),
        }
    }
    fn body(&self) -> String {
        match self {
            Reply::Answer { body, .. } => String::from_utf8_lossy(body).into_owned(),
            Reply::Closed(r) => panic!("connection closed: {r}"),
        }
    }
    fn header(&self, name: &str) -> Option<String> {
        match self {
            Reply::Answer { headers, .. } => headers.get(name).map(|v| v.to_str().unwrap().to_owned()),
            Reply::Closed(_) => None,
        }
    }
}

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const ID_A: &str = "i-0000000000000000a";
const ID_B: &str = "i-0000000000000000b";

#[test]
fn token_expires_exactly_at_its_ttl() {
    let f = Fixture::new(&[record(ID_A, A)]);
    let tok = f.token(A, "2");
    let hdr = [("x-aws-ec2-metadata-token", tok.as_str())];
    let r = f.call(A, Method::GET, "/latest/meta-data/instance-id", &hdr);
    assert_eq!((r.status(), r.header("x-aws-ec2-metadata-token-ttl-seconds").as_deref()), (200, Some("2")));
    f.clock.advance_millis(1_999);
    let r = f.call(A, Method::GET, "/latest/meta-data/instance-id", &hdr);
    assert_eq!((r.status(), r.header("x-aws-ec2-metadata-token-ttl-seconds").as_deref()), (200, Some("0")));
    f.clock.advance_millis(1);
    assert_eq!(f.call(A, Method::GET, "/latest/meta-data/instance-id", &hdr).status(), 401);
}

#[test]
fn a_token_from_one_instance_is_401_on_another() {
    let f = Fixture::new(&[record(ID_A, A), record(ID_B, B)]);
    let tok = f.token(A, "60");
    let r = f.call(B, Method::GET, "/latest/meta-data/instance-id", &[("x-aws-ec2-metadata-token", &tok)]);
    assert_eq!(r.status(), 401);
    let r = f.call(A, Method::GET, "/latest/meta-data/instance-id", &[("x-aws-ec2-metadata-token", &tok)]);
    assert_eq!((r.status(), r.body()), (200, ID_A.to_owned()));
}

#[test]
fn a_restarted_instance_rejects_tokens_of_its_previous_run() {
    let mut r = record(ID_A, A);
    let f = Fixture::new(std::slice::from_ref(&r));
    let tok = f.token(A, "60");
    r.incarnation += 1;
    f.dp.apply(vec![SnapshotChange::Upsert(snapshot(&r))]);
    assert_eq!(
        f.call(A, Method::GET, "/latest/meta-data/", &[("x-aws-ec2-metadata-token", &tok)]).status(),
        401
    );
}

#[test]
fn required_tokens_refuse_imdsv1_but_serve_imdsv2() {
    let mut r = record(ID_A, A);
    r.metadata_options.http_tokens = HttpTokens::Required;
    let f = Fixture::new(&[r]);
    let v1 = f.call(A, Method::GET, "/latest/meta-data/instance-id", &[]);
    assert_eq!(v1.status(), 401);
    assert!(v1.body().contains("401 - Unauthorized"));
    // Authentication comes before lookup: an unknown path is 401 too.
    assert_eq!(f.call(A, Method::GET, "/latest/meta-data/nope", &[]).status(), 401);
    let tok = f.token(A, "60");
    assert_eq!(
        f.call(A, Method::GET, "/latest/meta-data/instance-id", &[("x-aws-ec2-metadata-token", &tok)])
            .status(),
        200
    );
    let metrics = f.dp.metrics();
    assert_eq!(metrics.no_token_rejected.get(), 2);
    assert_eq!(metrics.no_token.get(), 0);
}

#[test]
fn imdsv1_and_imdsv2_callers_get_different_credentials() {
    let f = Fixture::new(&[record(ID_A, A)]);
    let path = "/latest/meta-data/iam/security-credentials/demo-role";
    let v1 = f.call(A, Method::GET, path, &[]).body();
    let tok = f.token(A, "60");
    let v2 = f.call(A, Method::GET, path, &[("x-aws-ec2-metadata-token", &tok)]).body();
    assert!(v1.contains("\"AccessKeyId\" : \"ASIA00000000000000V1\""), "{v1}");
    assert!(v2.contains("\"AccessKeyId\" : \"ASIA00000000000000V2\""), "{v2}");
}

#[test]
fn disabled_endpoint_answers_403_to_everything() {
    let mut r = record(ID_A, A);
    r.metadata_options.http_endpoint = Enabled::Disabled;
    let f = Fixture::new(&[r]);
    for (method, path) in
        [(Method::GET, "/latest/meta-data/"), (Method::PUT, "/latest/api/token"), (Method::GET, "/")]
    {
        let reply = f.call(A, method, path, &[("x-aws-ec2-metadata-token-ttl-seconds", "60")]);
        assert_eq!((reply.status(), reply.body()), (403, String::new()));
    }
}

#[test]
fn ipv6_endpoint_exists_only_when_enabled() {
    let mut r = record(ID_A, A);
    r.network_interfaces[0].ipv6s = vec!["fd00::1".parse().unwrap()];
    let f = Fixture::new(std::slice::from_ref(&r));
    let v6 =
        ConnInfo { peer: "fd00::1".parse().unwrap(), via_ipv6: true, hop_limit: HopLimitControl::default() };
    assert!(matches!(f.call_on(&v6, Method::GET, "/", &[]), Reply::Closed("ipv6_disabled")));
    r.metadata_options.http_protocol_ipv6 = Enabled::Enabled;
    f.dp.apply(vec![SnapshotChange::Upsert(snapshot(&r))]);
    assert_eq!(f.call_on(&v6, Method::GET, "/", &[]).status(), 200);
    r.metadata_options.http_endpoint = Enabled::Disabled;
    f.dp.apply(vec![SnapshotChange::Upsert(snapshot(&r))]);
    assert!(matches!(f.call_on(&v6, Method::GET, "/", &[]), Reply::Closed(_)));
}

#[test]
fn token_put_lowers_the_hop_limit_to_the_instance_option() {
    let mut r = record(ID_A, A);
    r.metadata_options.http_put_response_hop_limit = HopLimit::new(2).unwrap();
    let f = Fixture::new(std::slice::from_ref(&r));
    let c = conn(A);
    f.call_on(&c, Method::GET, "/latest/meta-data/", &[]);
    assert_eq!(c.hop_limit.requested(), None, "a GET leaves the TTL alone");
    let put =
        f.call_on(&c, Method::PUT, "/latest/api/token", &[("x-aws-ec2-metadata-token-ttl-seconds", "60")]);
    assert_eq!(put.status(), 200);
    assert_eq!(c.hop_limit.requested(), Some(2));
    // A refused PUT carries no token and does not touch the TTL.
    let c2 = conn(A);
    f.call_on(&c2, Method::PUT, "/latest/api/token", &[]);
    assert_eq!(c2.hop_limit.requested(), None);
}

#[test]
fn delegated_prefix_callers_are_their_instance() {
    let mut r = record(ID_A, A);
    r.network_interfaces[0].ipv4_prefixes = vec!["10.201.1.0/28".parse().unwrap()];
    let f = Fixture::new(&[r]);
    assert_eq!(f.call([10, 201, 1, 2], Method::GET, "/latest/meta-data/instance-id", &[]).body(), ID_A);
    assert!(matches!(f.call([10, 201, 1, 17], Method::GET, "/", &[]), Reply::Closed("unknown_source")));
}

#[test]
fn removed_instances_stop_answering_at_once() {
    let r = record(ID_A, A);
    let f = Fixture::new(&[r]);
    assert_eq!(f.call(A, Method::GET, "/", &[]).status(), 200);
    f.dp.apply(vec![SnapshotChange::Remove(InstanceId::parse(ID_A).unwrap())]);
    assert!(matches!(f.call(A, Method::GET, "/", &[]), Reply::Closed("unknown_source")));
}

#[test]
fn option_changes_apply_to_the_next_request() {
    let mut r = record(ID_A, A);
    let f = Fixture::new(std::slice::from_ref(&r));
    assert_eq!(f.call(A, Method::GET, "/latest/meta-data/tags/instance", &[]).status(), 404);
    r.metadata_options.instance_metadata_tags = Enabled::Enabled;
    r.generation += 1;
    f.dp.apply(vec![SnapshotChange::Upsert(snapshot(&r))]);
    assert_eq!(f.call(A, Method::GET, "/latest/meta-data/tags/instance", &[]).body(), "Environment\nName");
}

/// Records what the data plane reports.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl imds_dataplane::usage::UsageSink for Recorder {
    fn no_token(&self, instance: &InstanceId, source: IpAddr, user_agent: Option<&[u8]>, path: &str) {
        let ua = user_agent.map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
        self.0.lock().unwrap().push(format!("v1 {instance} {source} {ua} {path}"));
    }
    fn no_token_rejected(&self, instance: &InstanceId) {
        self.0.lock().unwrap().push(format!("rejected {instance}"));
    }
}

#[test]
fn imdsv1_use_is_reported_with_source_agent_and_path() {
    let recorder = Arc::new(Recorder::default());
    let clock = ManualClock::new(T0);
    let mut required = record(ID_B, B);
    required.metadata_options.http_tokens = HttpTokens::Required;
    let options = DataPlaneOptions { usage: recorder.clone(), ..DataPlaneOptions::default() };
    let f = Fixture::with_options(&[record(ID_A, A), required], clock, options);
    f.call(A, Method::GET, "//latest/meta-data/instance-id", &[("user-agent", "legacy-agent/1.0")]);
    let tok = f.token(A, "60");
    f.call(A, Method::GET, "/latest/meta-data/instance-id", &[("x-aws-ec2-metadata-token", &tok)]);
    f.call(B, Method::GET, "/latest/meta-data/instance-id", &[]);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            format!("v1 {ID_A} 10.0.0.1 legacy-agent/1.0 latest/meta-data/instance-id"),
            format!("rejected {ID_B}"),
        ],
        "IMDSv2 requests are not reported; the path is the normalised one"
    );
}

#[test]
fn a_flooding_instance_gets_429_and_others_are_unaffected() {
    let limits = Limits {
        requests_per_second: std::num::NonZeroU32::new(1).unwrap(),
        burst: std::num::NonZeroU32::new(10).unwrap(),
        ..Limits::default()
    };
    let options = DataPlaneOptions { limits, ..DataPlaneOptions::default() };
    let f = Fixture::with_options(&[record(ID_A, A), record(ID_B, B)], ManualClock::new(T0), options);
    let statuses: Vec<u16> =
        (0..100).map(|_| f.call(A, Method::GET, "/latest/meta-data/", &[]).status()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&ok), "the burst, then 429s: {ok} answered 200");
    let throttled = f.call(A, Method::GET, "/latest/meta-data/", &[]);
    assert_eq!((throttled.status(), throttled.body()), (429, String::new()));
    // The other instance has its own bucket.
    assert_eq!(f.call(B, Method::GET, "/latest/meta-data/instance-id", &[]).body(), ID_B);
    assert!(f.dp.metrics().throttled.get() >= 89);
}
