//! Snapshots render their metadata tree on the first request that needs it.
//! What a guest sees must not depend on when that first request comes: each
//! answer is the one an eager render at the moment the snapshot was made
//! would have given, before or after the clock moves, before or after the
//! snapshot is replaced, from one caller or many at once.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use imds_core::events::{EventKind, InstanceEvent, SpotAction};
use imds_core::sample::sample_instance;
use imds_core::{InstanceId, InstanceRecord, ManualClock, RoleCredentials};
use imds_dataplane::service::{ConnInfo, Outcome, RequestHead, handle};
use imds_dataplane::tree::{MetadataTree, RenderInputs};
use imds_dataplane::{DataPlane, DataPlaneOptions, InstanceSnapshot, SnapshotChange};
use imds_net::HopLimitControl;
use imds_token::KeyRing;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/demo-role";
const SPOT_PATH: &str = "/latest/meta-data/spot/instance-action";

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 50, 0, 1)) + n)
}

fn record(n: u32) -> InstanceRecord {
    let id = InstanceId::parse(&format!("i-{:017x}", 0x00a0_0000_0000_0000_u64 + u64::from(n))).unwrap();
    sample_instance(id, ip(n), None)
}

fn creds(tag: &str, at: u64) -> RoleCredentials {
    RoleCredentials {
        access_key_id: format!("ASIA{tag:0>16}"),
        secret_access_key: "s".repeat(40),
        token: format!("token-{tag}"),
        last_updated: at,
        expiration: at + 21600,
    }
}

/// Inputs of one snapshot, owned so the test can render the eager twin.
struct Inputs {
    v1: Option<RoleCredentials>,
    v2: Option<RoleCredentials>,
    identity: Option<RoleCredentials>,
    events: Vec<InstanceEvent>,
    now_secs: u64,
}

impl Inputs {
    fn with_creds(tag: &str, now_secs: u64) -> Self {
        Self {
            v1: Some(creds(&format!("{tag}V1"), now_secs)),
            v2: Some(creds(&format!("{tag}V2"), now_secs)),
            identity: Some(creds(&format!("{tag}ID"), now_secs)),
            events: Vec::new(),
            now_secs,
        }
    }

    fn without_creds(now_secs: u64) -> Self {
        Self { v1: None, v2: None, identity: None, events: Vec::new(), now_secs }
    }

    fn borrowed(&self) -> RenderInputs<'_> {
        RenderInputs {
            role_credentials_v1: self.v1.as_ref(),
            role_credentials_v2: self.v2.as_ref(),
            role_error: None,
            identity_credentials: self.identity.as_ref(),
            now_secs: self.now_secs,
            events: &self.events,
            signer: None,
        }
    }

    fn snapshot(&self, r: &InstanceRecord) -> Arc<InstanceSnapshot> {
        Arc::new(InstanceSnapshot::render(r, &self.borrowed()))
    }

    /// The body an eagerly rendered tree gives for a version-rooted path.
    fn eager(&self, r: &InstanceRecord, path: &str, imdsv2: bool) -> Option<Vec<u8>> {
        let tree = MetadataTree::render(r, &self.borrowed());
        let tree_path = path.strip_prefix("/latest/").unwrap();
        tree.get(tree_path).map(|n| n.body(imdsv2).unwrap().to_vec())
    }
}

fn data_plane(clock: &ManualClock) -> Arc<DataPlane> {
    DataPlane::new(KeyRing::generate(T0).unwrap(), Arc::new(clock.clone()), DataPlaneOptions::default())
}

/// An IMDSv1 GET from `from`: (status, body).
fn get(dp: &DataPlane, from: Ipv4Addr, path: &str) -> (u16, Vec<u8>) {
    let conn = ConnInfo { peer: IpAddr::V4(from), via_ipv6: false, hop_limit: HopLimitControl::default() };
    let headers = HeaderMap::new();
    let head = RequestHead { method: &Method::GET, path_and_query: path, headers: &headers };
    match handle(dp, &conn, &head) {
        Outcome::Respond(resp) => {
            let status = resp.status().as_u16();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let body = rt.block_on(async { resp.into_body().collect().await.unwrap().to_bytes().to_vec() });
            (status, body)
        }
        Outcome::Close(reason) => panic!("connection closed: {reason}"),
    }
}

#[test]
fn first_request_after_load_answers_as_an_eager_render() {
    let clock = ManualClock::new(T0);
    let dp = data_plane(&clock);
    let records: Vec<InstanceRecord> = (0..500).map(record).collect();
    let inputs = Inputs::with_creds("A", T0 / 1000);
    let snapshots: Vec<Arc<InstanceSnapshot>> = records.iter().map(|r| inputs.snapshot(r)).collect();
    dp.apply(snapshots.iter().map(|s| SnapshotChange::Upsert(Arc::clone(s))).collect());
    // Loading renders nothing: a registered instance nobody asked costs its inputs only.
    assert!(snapshots.iter().all(|s| !s.is_rendered()));

    for n in [0u32, 1, 250, 499] {
        let r = &records[n as usize];
        for path in [
            "/latest/meta-data/instance-id",
            "/latest/meta-data",
            "/latest/meta-data/network/interfaces/macs",
            "/latest/dynamic/instance-identity/document",
            ROLE_PATH,
            "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
        ] {
            let (status, body) = get(&dp, ip(n), path);
            assert_eq!(status, 200, "{path}");
            assert_eq!(Some(body), inputs.eager(r, path, false), "{path} of instance {n}");
        }
        assert!(snapshots[n as usize].is_rendered());
    }
    // Only the instances that were asked rendered their tree.
    assert_eq!(snapshots.iter().filter(|s| s.is_rendered()).count(), 4);
    assert_eq!(get(&dp, ip(7), "/latest/meta-data/no-such-thing").0, 404);
}

#[test]
fn a_late_first_request_sees_the_time_the_snapshot_was_made() {
    // No credentials yet: the error documents carry `LastUpdated` = the
    // snapshot's time; a spot notice becomes visible 60 s after it.
    let clock = ManualClock::new(T0);
    let dp = data_plane(&clock);
    let r = record(1);
    let mut inputs = Inputs::without_creds(T0 / 1000);
    inputs.events.push(InstanceEvent {
        event_id: "instance-event-00000000000000001".into(),
        instance_id: r.instance_id.clone(),
        kind: EventKind::SpotInterruption { action: SpotAction::Terminate, time: T0 / 1000 + 180 },
        visible_from: T0 / 1000 + 60,
        canceled_at: None,
    });
    dp.apply(vec![SnapshotChange::Upsert(inputs.snapshot(&r))]);

    // The first request comes two minutes later: the answers are those of
    // the moment the snapshot was made (the agent makes a new snapshot when
    // an event changes phase; until then this one is in force).
    clock.advance_millis(120_000);
    let (status, body) = get(&dp, ip(1), ROLE_PATH);
    assert_eq!(status, 200);
    assert_eq!(Some(body.clone()), inputs.eager(&r, ROLE_PATH, false));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("\"LastUpdated\" : \"2023-11-14T22:13:20Z\""), "{text}");
    assert_eq!(get(&dp, ip(1), SPOT_PATH).0, 404);

    // The agent's snapshot at the later time shows the notice.
    let later = Inputs { events: inputs.events.clone(), ..Inputs::without_creds(T0 / 1000 + 120) };
    dp.apply(vec![SnapshotChange::Upsert(later.snapshot(&r))]);
    let (status, body) = get(&dp, ip(1), SPOT_PATH);
    assert_eq!((status, Some(body)), (200, later.eager(&r, SPOT_PATH, false)));
}

#[test]
fn answers_do_not_depend_on_a_request_before_a_swap() {
    let r = record(2);
    let first = Inputs::without_creds(T0 / 1000);
    let second = Inputs::with_creds("B", T0 / 1000 + 5);
    let paths = [ROLE_PATH, "/latest/meta-data/iam/info", "/latest/meta-data/identity-credentials/ec2/info"];

    // Asked before and after the swap.
    let clock = ManualClock::new(T0);
    let asked = data_plane(&clock);
    asked.apply(vec![SnapshotChange::Upsert(first.snapshot(&r))]);
    let before: Vec<_> = paths.iter().map(|p| get(&asked, ip(2), p)).collect();
    clock.advance_millis(5_000);
    asked.apply(vec![SnapshotChange::Upsert(second.snapshot(&r))]);
    let after_asked: Vec<_> = paths.iter().map(|p| get(&asked, ip(2), p)).collect();

    // Asked only after the swap; the replaced snapshot never renders.
    let clock = ManualClock::new(T0);
    let quiet = data_plane(&clock);
    let replaced = first.snapshot(&r);
    quiet.apply(vec![SnapshotChange::Upsert(Arc::clone(&replaced))]);
    clock.advance_millis(5_000);
    quiet.apply(vec![SnapshotChange::Upsert(second.snapshot(&r))]);
    let after_quiet: Vec<_> = paths.iter().map(|p| get(&quiet, ip(2), p)).collect();
    assert!(!replaced.is_rendered());

    assert_eq!(after_asked, after_quiet);
    for (path, (status, body)) in paths.iter().zip(&before) {
        assert_eq!((*status, Some(body.clone())), (200, first.eager(&r, path, false)), "{path}");
    }
    for (path, (status, body)) in paths.iter().zip(&after_quiet) {
        assert_eq!((*status, Some(body.clone())), (200, second.eager(&r, path, false)), "{path}");
    }
    assert_ne!(before, after_quiet);
}

#[test]
fn concurrent_first_requests_all_get_the_same_bytes() {
    let clock = ManualClock::new(T0);
    let dp = data_plane(&clock);
    let r = record(3);
    let inputs = Inputs::with_creds("C", T0 / 1000);
    dp.apply(vec![SnapshotChange::Upsert(inputs.snapshot(&r))]);
    let bodies: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| get(&dp, ip(3), ROLE_PATH))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected = (200, inputs.eager(&r, ROLE_PATH, false).unwrap());
    assert!(bodies.iter().all(|b| *b == expected));
}
