//! Fleet mode end to end, with real processes only: a 3-member etcd cluster
//! (`imds_store_etcd::testing`), `imdsd control` and `imdsd agent`
//! children, signed EC2 calls (the real `aws-sigv4` signer, one attempt
//! per call, so every outcome is seen) and the AWS CLI for
//! `modify-instance-placement`. Guests are played by sockets bound to the
//! instances' private addresses (`127.0.0.x`).
//!
//! How outcomes are judged when etcd members die under a stream of writes:
//!
//! * HTTP 200: acknowledged, so it must be in the final state and reach
//!   `applied` on the data plane of the instance's host.
//! * HTTP 4xx or 503 (`Unavailable`: the store was unreachable and nothing
//!   was sent, or the compare-and-set gave up): nothing was written, so
//!   its unique tag key must be absent.
//! * HTTP 500 (`InternalError`: the store reported the write's outcome
//!   unknown) or no HTTP answer: either is allowed — but only its own
//!   value: every write is a compare-and-set on the instance's revision, so
//!   a late-landing unknown write can never undo an acknowledged later one.
//!   For the hop limit this means the final value is the last acknowledged
//!   one or that of an unknown-outcome call made after it.
//!
//! Every process is SIGKILLed when its guard drops (also on failure), and
//! a failing test prints the end of every process's log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use imds_store_etcd::testing::EtcdCluster;
use imds_testkit::ec2::xml_texts;
use imds_testkit::http::{RawResponse, request_from};
use imds_testkit::{Ec2Client, FleetBuilder, FleetProcess, ImdsdBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");
const KEY_ID: &str = "AKIAFLEETTEST0000001";
const SECRET: &str = "fleet/test/secret/access/key";
const H1: &str = "h-0f1ee70000000001";
const H2: &str = "h-0f1ee70000000002";
const AMI: &str = "ami-0abcdef1234567890";
/// How long a change may take to reach `applied` (generous: debug builds,
/// two cores, elections).
const APPLY_WITHIN: Duration = Duration::from_secs(30);

fn control_config() -> String {
    format!("[[control.credentials]]\naccess_key_id = \"{KEY_ID}\"\nsecret_access_key = \"{SECRET}\"\n")
}

/// A running fleet. Fields drop in order: agents and control first, then
/// etcd, then the runtime its helpers need.
struct Fleet {
    agents: Vec<FleetProcess>,
    control: FleetProcess,
    etcd: EtcdCluster,
    rt: tokio::runtime::Runtime,
}

impl Fleet {
    /// A 3-member etcd, a control process and one agent per host.
    fn start(hosts: &[&str]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let etcd = rt
            .block_on(EtcdCluster::start(3))
            .expect("a 3-member etcd cluster (needs /usr/bin/etcd, Debian package etcd-server)");
        let control = FleetBuilder::control(BIN, &etcd.url()).config(&control_config()).start().unwrap();
        let mut fleet = Self { agents: Vec::new(), control, etcd, rt };
        for h in hosts {
            fleet.add_agent(h);
        }
        fleet
    }

    fn add_agent(&mut self, host: &str) {
        self.agents.push(FleetBuilder::agent(BIN, host, &self.etcd.url()).start().unwrap());
    }

    fn agent(&mut self, host: &str) -> &mut FleetProcess {
        self.agents
            .iter_mut()
            .find(|a| matches!(a.role(), imds_testkit::fleet::Role::Agent(h) if h == host))
            .unwrap()
    }

    /// The data-plane address of `host`'s agent.
    fn data(&mut self, host: &str) -> SocketAddr {
        self.agent(host).data().unwrap()
    }

    fn ec2(&self) -> Ec2Client {
        Ec2Client::new(self.control.control().unwrap(), KEY_ID, SECRET)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- control log:\n{}", self.control.log_tail(40));
            for a in &self.agents {
                eprintln!("--- {:?} log:\n{}", a.role(), a.log_tail(40));
            }
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`.
fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An instance as DescribeInstances shows it.
#[derive(Debug, Clone)]
struct Shown {
    state: String,
    options_state: String,
    host: Option<String>,
    http_tokens: String,
    hop_limit: u8,
    tags: BTreeMap<String, String>,
}

fn describe(ec2: &Ec2Client, id: &str) -> anyhow::Result<Shown> {
    let r = ec2.ok("DescribeInstances", &[("InstanceId.1", id)])?;
    let first = |body: &str, name: &str| xml_texts(body, name).into_iter().next().unwrap_or_default();
    let options = first(&r.body, "metadataOptions");
    let tag_set = first(&r.body, "tagSet");
    let tags = xml_texts(&tag_set, "item").iter().map(|i| (first(i, "key"), first(i, "value"))).collect();
    let host = first(&first(&r.body, "placement"), "hostId");
    Ok(Shown {
        state: first(&first(&r.body, "instanceState"), "name"),
        options_state: first(&options, "state"),
        host: (!host.is_empty()).then_some(host),
        http_tokens: first(&options, "httpTokens"),
        hop_limit: first(&options, "httpPutResponseHopLimit").parse().unwrap_or(0),
        tags,
    })
}

/// Waits until every instance in `ids` shows `applied`; returns them.
fn wait_applied(ec2: &Ec2Client, ids: &[&str]) -> Vec<Shown> {
    wait_for(APPLY_WITHIN, &format!("{ids:?} to be applied"), || {
        let shown: Vec<Shown> = ids.iter().map(|id| describe(ec2, id)).collect::<Result<_, _>>().ok()?;
        shown.iter().all(|s| s.options_state == "applied").then_some(shown)
    })
}

/// RunInstances of one instance with the private address `ip`, IMDSv1
/// allowed and tags exposed in metadata; returns its id.
fn run(ec2: &Ec2Client, host: Option<&str>, ip: &str) -> String {
    let mut params = launch_params(ip);
    if let Some(h) = host {
        params.push(("Placement.HostId", h));
    }
    ec2.ok("RunInstances", &params).unwrap().text("instanceId").unwrap()
}

fn launch_params(ip: &str) -> Vec<(&str, &str)> {
    let mut params = vec![
        ("ImageId", AMI),
        ("MinCount", "1"),
        ("MaxCount", "1"),
        ("MetadataOptions.HttpTokens", "optional"),
        ("MetadataOptions.InstanceMetadataTags", "enabled"),
    ];
    if !ip.is_empty() {
        params.push(("PrivateIpAddress", ip));
    }
    params
}

/// A data-plane request from the instance owning `ip`; `Err` when the
/// connection is refused or closed without an answer (unknown source).
fn imds(ip: &str, at: SocketAddr, method: &str, path: &str, headers: &[&str]) -> anyhow::Result<RawResponse> {
    request_from(ip.parse::<IpAddr>()?, at, method, path, headers)
}

fn token(ip: &str, at: SocketAddr) -> String {
    let r =
        imds(ip, at, "PUT", "/latest/api/token", &["X-aws-ec2-metadata-token-ttl-seconds: 21600"]).unwrap();
    assert_eq!(r.status, 200, "token PUT from {ip} at {at}: {}", r.text());
    r.text()
}

/// GET with a fresh token; (status, body).
fn get(ip: &str, at: SocketAddr, path: &str) -> (u16, String) {
    let t = token(ip, at);
    let r = imds(ip, at, "GET", path, &[&format!("X-aws-ec2-metadata-token: {t}")]).unwrap();
    (r.status, r.text())
}

/// The tag keys the data plane at `at` shows the instance owning `ip`.
fn served_tag_keys(ip: &str, at: SocketAddr) -> BTreeSet<String> {
    let (status, body) = get(ip, at, "/latest/meta-data/tags/instance");
    match status {
        200 => body.lines().map(str::to_owned).collect(),
        404 => BTreeSet::new(),
        other => panic!("tags listing answered {other}: {body}"),
    }
}

#[test]
fn each_host_serves_its_own_instances_and_launches_go_to_live_hosts() {
    let mut f = Fleet::start(&[]);
    let ec2 = f.ec2();

    // No agent is alive: nothing could serve a new instance.
    let r = ec2.call("RunInstances", &launch_params("127.0.0.10")).unwrap();
    assert_eq!((r.status, r.code().as_deref()), (500, Some("InsufficientInstanceCapacity")), "{}", r.body);

    // One live agent: a launch without HostId goes to it.
    f.add_agent(H1);
    let auto = run(&ec2, None, "127.0.0.10");
    assert_eq!(describe(&ec2, &auto).unwrap().host.as_deref(), Some(H1));

    // A named host must be alive.
    let mut params = launch_params("127.0.0.12");
    params.push(("Placement.HostId", H2));
    let r = ec2.call("RunInstances", &params).unwrap();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidHostID.NotFound")), "{}", r.body);

    f.add_agent(H2);
    let a = run(&ec2, Some(H1), "127.0.0.11");
    let b = run(&ec2, Some(H2), "127.0.0.12");
    wait_applied(&ec2, &[&auto, &a, &b]);
    let (d1, d2) = (f.data(H1), f.data(H2));

    // Each host answers its own instances and refuses the other's sources.
    assert_eq!(get("127.0.0.10", d1, "/latest/meta-data/instance-id"), (200, auto.clone()));
    assert_eq!(get("127.0.0.11", d1, "/latest/meta-data/instance-id"), (200, a.clone()));
    assert_eq!(get("127.0.0.12", d2, "/latest/meta-data/instance-id"), (200, b.clone()));
    for (ip, other) in [("127.0.0.11", d2), ("127.0.0.10", d2), ("127.0.0.12", d1)] {
        assert!(imds(ip, other, "GET", "/latest/meta-data/instance-id", &[]).is_err(), "{ip} at {other}");
    }

    // A change answers `pending`, becomes `applied`, and the right host
    // serves it: IMDSv1 is refused for `a` on h1, still allowed for `b`.
    let v1 = |ip: &str, at| imds(ip, at, "GET", "/latest/meta-data/instance-id", &[]).unwrap().status;
    assert_eq!(v1("127.0.0.11", d1), 200);
    let r =
        ec2.ok("ModifyInstanceMetadataOptions", &[("InstanceId", &a), ("HttpTokens", "required")]).unwrap();
    assert_eq!(xml_texts(&r.body, "state").first().map(String::as_str), Some("pending"));
    let shown = wait_applied(&ec2, &[&a]);
    assert_eq!(shown[0].http_tokens, "required");
    assert_eq!(v1("127.0.0.11", d1), 401);
    assert_eq!(v1("127.0.0.12", d2), 200);
    assert!(imds("127.0.0.11", d2, "GET", "/latest/meta-data/instance-id", &[]).is_err());

    ec2.ok("CreateTags", &[("ResourceId.1", &b), ("Tag.1.Key", "role"), ("Tag.1.Value", "db")]).unwrap();
    wait_applied(&ec2, &[&b]);
    assert_eq!(get("127.0.0.12", d2, "/latest/meta-data/tags/instance/role"), (200, "db".to_owned()));
    assert!(imds("127.0.0.12", d1, "GET", "/latest/meta-data/tags/instance/role", &[]).is_err());
}

/// What one call of the write stream did.
#[derive(Debug, Clone)]
struct Call {
    instance: usize,
    change: Change,
    outcome: Outcome,
    started: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Tag(String),
    HopLimit(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// HTTP 200.
    Acknowledged,
    /// 4xx or 503: nothing was written.
    NotApplied(u16, String),
    /// 500 or no answer: may or may not have been written.
    Unknown(String),
}

fn classify(r: anyhow::Result<imds_testkit::Ec2Response>) -> Outcome {
    match r {
        Ok(r) if r.ok() => Outcome::Acknowledged,
        Ok(r) if r.status == 503 || (400..500).contains(&r.status) => {
            Outcome::NotApplied(r.status, r.code().unwrap_or_default())
        }
        Ok(r) => Outcome::Unknown(format!("{} {}", r.status, r.code().unwrap_or_default())),
        Err(e) => Outcome::Unknown(format!("{e:#}")),
    }
}

/// A background stream of CreateTags (unique keys `<prefix><n>`) and
/// ModifyInstanceMetadataOptions (hop limits) calls, round-robin over
/// `ids`, until stopped or the tag budget (45 per instance) is used.
struct Stream {
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(ec2: Ec2Client, ids: Vec<String>, prefix: &str, with_hop_limits: bool) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, prefix) = (Arc::clone(&calls), Arc::clone(&stop), prefix.to_owned());
        let thread = std::thread::spawn(move || {
            let budget = ids.len() * 45;
            let mut tags = 0;
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) && tags < budget {
                // With hop limits, calls come in pairs (tag, hop limit) per instance.
                let instance = if with_hop_limits { (n / 2) % ids.len() } else { n % ids.len() };
                let id = ids[instance].as_str();
                let started = Instant::now();
                let (change, result) = if with_hop_limits && n % 2 == 1 {
                    let hops = u8::try_from(1 + (n / 2) % 60).unwrap();
                    let value = hops.to_string();
                    let r = ec2.call(
                        "ModifyInstanceMetadataOptions",
                        &[("InstanceId", id), ("HttpPutResponseHopLimit", &value)],
                    );
                    (Change::HopLimit(hops), r)
                } else {
                    tags += 1;
                    let key = format!("{prefix}{n}");
                    let r = ec2.call(
                        "CreateTags",
                        &[("ResourceId.1", id), ("Tag.1.Key", &key), ("Tag.1.Value", "v")],
                    );
                    (Change::Tag(key), r)
                };
                let outcome = classify(result);
                c.lock().unwrap().push(Call { instance, change, outcome, started });
                n += 1;
            }
        });
        Self { calls, stop, thread: Some(thread) }
    }

    fn acknowledged(&self) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.outcome == Outcome::Acknowledged).count()
    }

    /// Waits until `more` further calls were acknowledged.
    fn wait_acknowledged(&self, more: usize, within: Duration) {
        let target = self.acknowledged() + more;
        wait_for(within, &format!("{target} acknowledged calls"), || {
            (self.acknowledged() >= target).then_some(())
        });
    }

    /// Number of calls started in `[from, to)`.
    fn started_between(&self, from: Instant, to: Instant) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.started >= from && c.started < to).count()
    }

    fn finish(mut self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks the final states against the calls (see the module docs).
/// Returns (acknowledged, not applied, unknown) counts.
fn check_outcomes(calls: &[Call], finals: &[Shown]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for c in calls {
        let tags = &finals[c.instance].tags;
        match (&c.change, &c.outcome) {
            (Change::Tag(k), Outcome::Acknowledged) => {
                assert!(tags.contains_key(k), "acknowledged tag {k} is missing");
            }
            (Change::Tag(k), Outcome::NotApplied(status, code)) => {
                assert!(
                    !tags.contains_key(k),
                    "tag {k} is present although the call failed ({status} {code})"
                );
            }
            _ => {}
        }
        match &c.outcome {
            Outcome::Acknowledged => counts.0 += 1,
            Outcome::NotApplied(..) => counts.1 += 1,
            Outcome::Unknown(_) => counts.2 += 1,
        }
    }
    for (i, shown) in finals.iter().enumerate() {
        let hops: Vec<&Call> =
            calls.iter().filter(|c| c.instance == i && matches!(c.change, Change::HopLimit(_))).collect();
        let last_ack = hops.iter().rposition(|c| c.outcome == Outcome::Acknowledged);
        let mut allowed: BTreeSet<u8> = BTreeSet::new();
        if last_ack.is_none() {
            allowed.insert(1); // the launch value
        }
        for (j, c) in hops.iter().enumerate() {
            let Change::HopLimit(v) = c.change else { continue };
            let after = last_ack.is_none_or(|l| j >= l);
            if after && (Some(j) == last_ack || matches!(c.outcome, Outcome::Unknown(_))) {
                allowed.insert(v);
            }
        }
        assert!(
            allowed.contains(&shown.hop_limit),
            "instance {i}: hop limit {} not in {allowed:?}",
            shown.hop_limit
        );
    }
    counts
}

#[test]
fn etcd_member_loss_under_writes_keeps_every_acknowledged_change() {
    let mut f = Fleet::start(&[H1, H2]);
    let ec2 = f.ec2().with_timeout(Duration::from_secs(30));
    let ips = ["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"];
    let hosts = [H1, H2, H1, H2];
    let ids: Vec<String> = ips.iter().zip(hosts).map(|(ip, h)| run(&ec2, Some(h), ip)).collect();
    wait_applied(&ec2, &ids.iter().map(String::as_str).collect::<Vec<_>>());

    let stream = Stream::start(ec2.clone(), ids.clone(), "k", true);
    stream.wait_acknowledged(20, Duration::from_secs(30));

    // A follower dies and comes back.
    let leader = f.rt.block_on(f.etcd.leader()).unwrap();
    let follower = (leader + 1) % 3;
    let killed = Instant::now();
    f.etcd.kill(follower);
    stream.wait_acknowledged(20, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    f.rt.block_on(f.etcd.restart(follower)).unwrap();
    assert!(
        stream.started_between(killed, Instant::now()) >= 20,
        "the stream kept going while a follower was down"
    );
    stream.wait_acknowledged(10, Duration::from_secs(30));

    // The leader dies: writes in flight time out, an election follows.
    let leader = f.rt.block_on(f.etcd.leader()).unwrap();
    let killed = Instant::now();
    f.etcd.kill(leader);
    stream.wait_acknowledged(20, Duration::from_secs(45));
    f.rt.block_on(f.etcd.restart(leader)).unwrap();
    assert!(
        stream.started_between(killed, Instant::now()) >= 20,
        "the stream kept going after the leader died"
    );
    stream.wait_acknowledged(10, Duration::from_secs(30));
    let calls = stream.finish();

    let finals = wait_applied(&ec2, &ids.iter().map(String::as_str).collect::<Vec<_>>());
    let (acked, failed, unknown) = check_outcomes(&calls, &finals);
    let landed = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Unknown(_)))
        .filter(|c| matches!(&c.change, Change::Tag(k) if finals[c.instance].tags.contains_key(k)))
        .count();
    eprintln!(
        "etcd member loss: {acked} acknowledged, {failed} refused (nothing written), \
         {unknown} outcome unknown ({landed} of them tags that landed)"
    );
    for (i, shown) in finals.iter().enumerate() {
        let at = f.data(hosts[i]);
        let stored: BTreeSet<String> = shown.tags.keys().cloned().collect();
        assert_eq!(served_tag_keys(ips[i], at), stored, "instance {i}: the data plane serves the final tags");
    }
}

#[test]
fn a_killed_agent_resyncs_and_applies_what_changed_while_it_was_down() {
    let mut f = Fleet::start(&[H1, H2]);
    let ec2 = f.ec2();
    let a = run(&ec2, Some(H1), "127.0.0.31");
    let b = run(&ec2, Some(H2), "127.0.0.32");
    wait_applied(&ec2, &[&a, &b]);
    let d1 = f.data(H1);

    // kill -9 while changes stream in.
    let stream = Stream::start(ec2.clone(), vec![a.clone()], "s", false);
    stream.wait_acknowledged(10, Duration::from_secs(30));
    f.agent(H1).kill();
    stream.wait_acknowledged(5, Duration::from_secs(30));
    let calls = stream.finish();
    assert!(calls.iter().all(|c| c.outcome == Outcome::Acknowledged), "the control plane is unaffected");

    // A change while the agent is down stays pending (the other host is unaffected).
    ec2.ok("CreateTags", &[("ResourceId.1", &a), ("Tag.1.Key", "while-down"), ("Tag.1.Value", "1")]).unwrap();
    ec2.ok("ModifyInstanceMetadataOptions", &[("InstanceId", &a), ("HttpPutResponseHopLimit", "3")]).unwrap();
    ec2.ok("CreateTags", &[("ResourceId.1", &b), ("Tag.1.Key", "other"), ("Tag.1.Value", "1")]).unwrap();
    wait_applied(&ec2, &[&b]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(describe(&ec2, &a).unwrap().options_state, "pending");
    assert!(imds("127.0.0.31", d1, "GET", "/latest/meta-data/instance-id", &[]).is_err(), "h1 is down");

    // Back on the same address: resync, ack, serve the latest spec.
    f.agent(H1).restart().unwrap();
    assert_eq!(f.data(H1), d1);
    let shown = wait_applied(&ec2, &[&a]).remove(0);
    assert_eq!(shown.hop_limit, 3);
    let served = served_tag_keys("127.0.0.31", d1);
    let stored: BTreeSet<String> = shown.tags.keys().cloned().collect();
    assert_eq!(served, stored);
    assert!(served.contains("while-down"));
    for c in &calls {
        let Change::Tag(k) = &c.change else { continue };
        assert!(served.contains(k), "{k} acknowledged before the kill is served after the restart");
    }
}

/// Runs the AWS CLI against the control plane; returns its JSON output.
fn aws(control: SocketAddr, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("aws")
        .args(["--endpoint-url", &format!("http://{control}"), "--region", "us-east-1", "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI (aws) must be installed");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    if out.stdout.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&out.stdout).unwrap() }
}

#[test]
fn a_stopped_instance_moves_to_another_host() {
    let mut f = Fleet::start(&[H1, H2]);
    let ec2 = f.ec2();
    let control = f.control.control().unwrap();
    let ip = "127.0.0.51";
    let id = run(&ec2, Some(H1), ip);
    wait_applied(&ec2, &[&id]);
    let (d1, d2) = (f.data(H1), f.data(H2));
    let old_token = token(ip, d1);

    // Moving needs a stopped instance.
    let r = ec2.call("ModifyInstancePlacement", &[("InstanceId", &id), ("HostId", H2)]).unwrap();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("IncorrectInstanceState")), "{}", r.body);
    ec2.ok("StopInstances", &[("InstanceId.1", &id)]).unwrap();
    wait_applied(&ec2, &[&id]);
    let r = ec2
        .call("ModifyInstancePlacement", &[("InstanceId", &id), ("HostId", "h-0f1ee70000000009")])
        .unwrap();
    assert_eq!((r.status, r.code().as_deref()), (400, Some("InvalidHostID.NotFound")), "{}", r.body);

    let out = aws(control, &["ec2", "modify-instance-placement", "--instance-id", &id, "--host-id", H2]);
    assert_eq!(out["Return"], serde_json::Value::Bool(true), "{out}");
    let shown = wait_applied(&ec2, &[&id]).remove(0);
    assert_eq!((shown.host.as_deref(), shown.state.as_str()), (Some(H2), "stopped"));

    ec2.ok("StartInstances", &[("InstanceId.1", &id)]).unwrap();
    let shown = wait_applied(&ec2, &[&id]).remove(0);
    assert_eq!(shown.state, "running");
    wait_for(APPLY_WITHIN, "the new host to serve the instance", || {
        imds(ip, d2, "GET", "/latest/meta-data/instance-id", &[]).ok().filter(|r| r.status == 200)
    });
    assert_eq!(get(ip, d2, "/latest/meta-data/instance-id"), (200, id.clone()));
    assert_eq!(get(ip, d2, "/latest/meta-data/placement/host-id").1, H2);
    assert!(imds(ip, d1, "GET", "/latest/meta-data/instance-id", &[]).is_err(), "the old host refuses it");
    let r = imds(
        ip,
        d2,
        "GET",
        "/latest/meta-data/instance-id",
        &[&format!("X-aws-ec2-metadata-token: {old_token}")],
    )
    .unwrap();
    assert_eq!(r.status, 401, "a token from before the move is refused on the new host");
}

#[test]
fn redb_serve_killed_mid_write_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        ImdsdBuilder::new(BIN)
            .data_dir(dir.path())
            .data_listen("127.0.0.1:0")
            .config(&control_config())
            .start()
    };
    let mut serve = start().unwrap();
    let mut ec2 = Ec2Client::new(serve.control, KEY_ID, SECRET);
    let ids: Vec<String> = (0..8).map(|_| run(&ec2, None, "")).collect();
    let mut acknowledged: Vec<(usize, String)> = Vec::new();
    let (mut cut_off, mut refused_while_down) = (0, 0);
    for cycle in 0..3 {
        let stream = Stream::start(ec2.clone(), ids.clone(), &format!("c{cycle}-"), false);
        stream.wait_acknowledged(15, Duration::from_secs(30));
        let killed = Instant::now();
        serve.kill(); // SIGKILL in the middle of the stream
        for c in stream.finish() {
            match (c.change, c.outcome) {
                (Change::Tag(k), Outcome::Acknowledged) => acknowledged.push((c.instance, k)),
                _ if c.started < killed => cut_off += 1,
                _ => refused_while_down += 1,
            }
        }
        serve = start().unwrap_or_else(|e| panic!("the store must reopen after kill -9: {e:#}"));
        ec2 = Ec2Client::new(serve.control, KEY_ID, SECRET);
        let finals: Vec<Shown> = ids.iter().map(|id| describe(&ec2, id).unwrap()).collect();
        for (i, k) in &acknowledged {
            assert!(finals[*i].tags.contains_key(k), "cycle {cycle}: acknowledged tag {k} was lost");
        }
        // And it takes writes again.
        ec2.ok(
            "CreateTags",
            &[("ResourceId.1", &ids[0]), ("Tag.1.Key", &format!("after-{cycle}")), ("Tag.1.Value", "1")],
        )
        .unwrap();
    }
    assert!(cut_off <= 3, "at most one call is in flight when the process dies");
    eprintln!(
        "redb kill -9 x3: {} acknowledged writes all kept, {cut_off} in flight at a kill, \
         {refused_while_down} refused while down",
        acknowledged.len()
    );
}

/// `aws ec2 describe-instances` at `control` signed with the role set in
/// the IMDS document `doc`; the AWS CLI's stderr.
fn describe_as_role(control: SocketAddr, doc: &serde_json::Value) -> String {
    let field = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
    let out = std::process::Command::new("aws")
        .args(["--endpoint-url", &format!("http://{control}"), "--region", "us-east-1", "--output", "json"])
        .args(["ec2", "describe-instances"])
        .env("AWS_ACCESS_KEY_ID", field("AccessKeyId"))
        .env("AWS_SECRET_ACCESS_KEY", field("SecretAccessKey"))
        .env("AWS_SESSION_TOKEN", field("Token"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI (aws) must be installed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn role_credentials_an_agent_serves_authenticate_at_the_control_process() {
    // Two processes, one store: the agent mints, the control process
    // verifies; they agree on the minting key through etcd.
    let mut f = Fleet::start(&[H1]);
    let ec2 = f.ec2();
    let control = f.control.control().unwrap();
    let ip = "127.0.0.61";
    let mut params = launch_params(ip);
    params.extend([("Placement.HostId", H1), ("IamInstanceProfile.Name", "fleet-role")]);
    let id = ec2.ok("RunInstances", &params).unwrap().text("instanceId").unwrap();
    wait_applied(&ec2, &[&id]);
    let data = f.data(H1);
    let (status, body) = get(ip, data, "/latest/meta-data/iam/security-credentials/fleet-role");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Authenticated: the role has no policy at the control plane, so the
    // call is denied by authorisation, not refused as unknown.
    let err = describe_as_role(control, &doc);
    assert!(err.contains("UnauthorizedOperation"), "{err}");
    let mut forged = doc.clone();
    forged["Token"] = serde_json::Value::String(format!("{}x", doc["Token"].as_str().unwrap_or_default()));
    let err = describe_as_role(control, &forged);
    assert!(err.contains("AuthFailure"), "{err}");
}
