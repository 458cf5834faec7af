//! Link-local endpoints, hop limit, IPv6 and source mapping on real routing:
//! `imdsd serve` runs in the IMDS namespace of `../shared/netlab`, instances
//! are registered with the real AWS CLI, and guests are curl processes in
//! the VM and container namespaces. Needs root (CI runs as root); each test
//! builds its own lab and tears it down, even when it fails.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");
const V4: &str = "http://169.254.169.254";
const V6: &str = "http://[fd00:ec2::254]";
const KEY_ID: &str = "AKIANETLABEXAMPLE0001";
const SECRET: &str = "netlab/secret/key/for/tests/only/000000000";

fn netlab() -> PathBuf {
    // The repository sits beside shared/ (locally and in CI).
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/netlab/netlab")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// One lab with a running imdsd; torn down on drop.
struct Lab {
    prefix: String,
    server: Option<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// `None` when this machine cannot run labs (not root, outside CI).
    fn up(test: &str) -> Option<Lab> {
        if !is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "network-namespace tests must run in CI (needs root)"
            );
            eprintln!("skipping {test}: needs root for network namespaces");
            return None;
        }
        let prefix = format!("im{}{test}", std::process::id() % 100_000);
        let lab = Lab { prefix, server: None, dir: tempfile::tempdir().unwrap() };
        let ok = Command::new(netlab()).args(["up", "--prefix", &lab.prefix]).status().unwrap().success();
        assert!(ok, "netlab up failed");
        Some(lab)
    }

    fn command(&self, role: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new(netlab());
        c.args(["exec", "--prefix", &self.prefix, role, "--"]).args(cmd);
        c
    }

    fn exec(&self, role: &str, cmd: &[&str]) -> Output {
        self.command(role, cmd).output().unwrap()
    }

    /// Starts `imdsd serve` in the IMDS namespace on the link-local
    /// addresses, with a control key for the AWS CLI, and waits until ready.
    fn start_imdsd(&mut self) {
        let config = self.dir.path().join("imdsd.toml");
        std::fs::write(
            &config,
            format!(
                "[[control.credentials]]\naccess_key_id = \"{KEY_ID}\"\nsecret_access_key = \"{SECRET}\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.path().join("aws-credentials"),
            format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
        )
        .unwrap();
        let data_dir = self.dir.path().join("data");
        let child = self
            .command(
                "imds",
                &[
                    BIN,
                    "serve",
                    "--data-dir",
                    data_dir.to_str().unwrap(),
                    "--config",
                    config.to_str().unwrap(),
                    "--data-listen",
                    "169.254.169.254:80",
                    "--data-listen",
                    "[fd00:ec2::254]:80",
                    "--control-listen",
                    "127.0.0.1:8773",
                    "--admin-listen",
                    "127.0.0.1:9773",
                ],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .exec("imds", &["curl", "-sf", "--max-time", "1", "http://127.0.0.1:9773/healthz"])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "imdsd did not become ready in the lab");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the AWS CLI against the control plane, inside the IMDS namespace.
    fn aws(&self, args: &[&str]) -> Value {
        let creds = self.dir.path().join("aws-credentials");
        let out = self
            .command(
                "imds",
                &[
                    "aws",
                    "--endpoint-url",
                    "http://127.0.0.1:8773",
                    "--region",
                    "us-east-1",
                    "--output",
                    "json",
                ],
            )
            .args(args)
            .env("AWS_SHARED_CREDENTIALS_FILE", creds)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        if out.stdout.is_empty() { Value::Null } else { serde_json::from_slice(&out.stdout).unwrap() }
    }

    /// RunInstances with one interface; returns the instance id.
    fn register(&self, interface: Value) -> String {
        let nic = serde_json::to_string(&[interface]).unwrap();
        let r = self.aws(&[
            "ec2",
            "run-instances",
            "--image-id",
            "ami-0a887e401f7654935",
            "--network-interfaces",
            &nic,
            "--metadata-options",
            "HttpProtocolIpv6=enabled",
        ]);
        let id = r["Instances"][0]["InstanceId"].as_str().unwrap().to_owned();
        self.wait_applied(&id);
        id
    }

    /// Waits until DescribeInstances says the data plane serves the spec.
    fn wait_applied(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = self.aws(&["ec2", "describe-instances", "--instance-ids", id]);
            if d["Reservations"][0]["Instances"][0]["MetadataOptions"]["State"] == "applied" {
                return;
            }
            assert!(Instant::now() < deadline, "{id} never reached applied");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Modifies options and waits until DescribeInstances says `applied`.
    fn modify(&self, id: &str, options: &[&str]) {
        let mut args = vec!["ec2", "modify-instance-metadata-options", "--instance-id", id];
        args.extend_from_slice(options);
        self.aws(&args);
        self.wait_applied(id);
    }

    /// `curl` from a guest namespace: (exit code, body).
    fn curl(&self, role: &str, method: &str, url: &str, headers: &[String]) -> (i32, String) {
        let mut cmd = vec!["curl", "-sS", "-g", "--noproxy", "*", "--max-time", "3", "-X", method];
        for h in headers {
            cmd.push("-H");
            cmd.push(h);
        }
        cmd.push(url);
        let out = self.exec(role, &cmd);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn token(&self, role: &str, base: &str) -> (i32, String) {
        self.curl(
            role,
            "PUT",
            &format!("{base}/latest/api/token"),
            &["X-aws-ec2-metadata-token-ttl-seconds: 300".into()],
        )
    }

    fn get(&self, role: &str, base: &str, path: &str, token: Option<&str>) -> (i32, String) {
        let headers: Vec<String> =
            token.map(|t| format!("X-aws-ec2-metadata-token: {t}")).into_iter().collect();
        // --fail so that an HTTP error is a non-zero exit (22) we can tell apart.
        let mut h = headers;
        h.push("Accept: */*".into());
        let url = format!("{base}{path}");
        let mut cmd = vec!["curl", "-sS", "-g", "--fail", "--noproxy", "*", "--max-time", "3"];
        for x in &h {
            cmd.push("-H");
            cmd.push(x);
        }
        cmd.push(&url);
        let out = self.exec(role, &cmd);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new(netlab()).args(["down", "--prefix", &self.prefix]).status();
    }
}

fn vm1_interface() -> Value {
    serde_json::json!({
        "DeviceIndex": 0,
        "PrivateIpAddress": "10.200.1.2",
        "Ipv6Addresses": [{"Ipv6Address": "fd00:200:1::2"}],
        "Ipv4Prefixes": [{"Ipv4Prefix": "10.201.1.0/28"}],
        "Ipv6Prefixes": [{"Ipv6Prefix": "fd00:201:1::/80"}]
    })
}

fn vm2_interface() -> Value {
    serde_json::json!({
        "DeviceIndex": 0,
        "PrivateIpAddress": "10.200.2.2",
        "Ipv6Addresses": [{"Ipv6Address": "fd00:200:2::2"}]
    })
}

#[test]
fn each_vm_gets_its_own_identity_over_ipv4_and_ipv6() {
    let Some(mut lab) = Lab::up("ident") else { return };
    lab.start_imdsd();
    let vm1 = lab.register(vm1_interface());
    let vm2 = lab.register(vm2_interface());
    for base in [V4, V6] {
        for (role, id) in [("vm1", &vm1), ("vm2", &vm2)] {
            let (rc, token) = lab.token(role, base);
            assert_eq!(rc, 0, "{role} token over {base}");
            let (rc, body) = lab.get(role, base, "/latest/meta-data/instance-id", Some(&token));
            assert_eq!((rc, body.as_str()), (0, id.as_str()), "{role} over {base}");
        }
        // A token vm1 obtained is refused when vm2 presents it.
        let (_, vm1_token) = lab.token("vm1", base);
        let (rc, _) = lab.get("vm2", base, "/latest/meta-data/instance-id", Some(&vm1_token));
        assert_eq!(rc, 22, "vm1's token must be 401 for vm2 over {base}");
    }
    // The container is served as vm1 (its address is in vm1's delegated prefixes),
    // token-less, at hop limit 1: only the PUT response is hop-limited.
    for base in [V4, V6] {
        let (rc, body) = lab.get("ctr1", base, "/latest/meta-data/instance-id", None);
        assert_eq!((rc, body.as_str()), (0, vm1.as_str()), "ctr1 IMDSv1 over {base}");
    }
}

#[test]
fn hop_limit_keeps_tokens_from_the_container_until_raised() {
    let Some(mut lab) = Lab::up("hops") else { return };
    lab.start_imdsd();
    let vm1 = lab.register(vm1_interface());
    for base in [V4, V6] {
        assert_eq!(lab.token("vm1", base).0, 0, "vm1 gets a token over {base}");
        assert_eq!(
            lab.token("ctr1", base).0,
            28,
            "hop limit 1: ctr1's token response must die one hop short over {base}"
        );
    }
    lab.modify(&vm1, &["--http-put-response-hop-limit", "2"]);
    for base in [V4, V6] {
        let (rc, token) = lab.token("ctr1", base);
        assert_eq!(rc, 0, "hop limit 2: ctr1 gets a token over {base}");
        let (rc, body) = lab.get("ctr1", base, "/latest/meta-data/instance-id", Some(&token));
        assert_eq!((rc, body.as_str()), (0, vm1.as_str()));
    }
    lab.modify(&vm1, &["--http-put-response-hop-limit", "1"]);
    for base in [V4, V6] {
        assert_eq!(lab.token("ctr1", base).0, 28, "back at hop limit 1 over {base}");
        assert_eq!(lab.token("vm1", base).0, 0);
    }
}

#[test]
fn ipv6_and_endpoint_switches_refuse_connections() {
    let Some(mut lab) = Lab::up("switch") else { return };
    lab.start_imdsd();
    let vm1 = lab.register(vm1_interface());
    lab.modify(&vm1, &["--http-protocol-ipv6", "disabled"]);
    let (rc, _) = lab.get("vm1", V6, "/latest/meta-data/instance-id", None);
    assert!(matches!(rc, 7 | 52 | 56), "IPv6 disabled: no HTTP answer over IPv6 (curl rc {rc})");
    assert_eq!(lab.get("vm1", V4, "/latest/meta-data/instance-id", None).0, 0, "IPv4 still works");
    lab.modify(&vm1, &["--http-protocol-ipv6", "enabled", "--http-endpoint", "disabled"]);
    let (rc, _) = lab.get("vm1", V4, "/latest/meta-data/instance-id", None);
    assert_eq!(rc, 22, "endpoint disabled: IPv4 answers 403");
    assert_eq!(lab.token("vm1", V4).0, 0, "curl without --fail exits 0 on the 403 token answer");
    let (rc, body) = lab.token("vm1", V4);
    assert_eq!((rc, body.as_str()), (0, ""), "403 with an empty body");
    let (rc, _) = lab.get("vm1", V6, "/latest/meta-data/instance-id", None);
    assert!(matches!(rc, 7 | 52 | 56), "endpoint disabled: IPv6 refuses (curl rc {rc})");
    lab.modify(&vm1, &["--http-endpoint", "enabled"]);
    assert_eq!(lab.get("vm1", V6, "/latest/meta-data/instance-id", None).0, 0);
}

/// On the wire: on one keep-alive connection, the answer to a GET before
/// the token PUT leaves with the normal TTL, the token response with the
/// hop limit (1), and anything after it keeps the lowered TTL (it is never
/// raised again, so a retransmitted token can never leave with more).
#[test]
fn only_the_token_response_and_what_follows_it_carry_the_hop_limit() {
    let Some(mut lab) = Lab::up("wire") else { return };
    lab.start_imdsd();
    lab.register(vm1_interface());
    let pcap = lab.dir.path().join("capture.txt");
    let capture = std::fs::File::create(&pcap).unwrap();
    // Server → vm1 segments with payload, printed with their IP TTL.
    let mut tcpdump = lab
        .command(
            "vm1",
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-nn",
                "-v",
                "-l",
                "-U",
                "tcp src port 80 and (tcp[tcpflags] & tcp-push != 0)",
            ],
        )
        .stdout(capture)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let out = lab.exec(
        "vm1",
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}\n",
            "http://169.254.169.254/latest/meta-data/instance-id",
            "--next",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}\n",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            "http://169.254.169.254/latest/api/token",
            "--next",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects}\n",
            "http://169.254.169.254/latest/meta-data/instance-type",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One connection for all three: the second and third reused it.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n0\n0\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let ttls = loop {
        let text = std::fs::read_to_string(&pcap).unwrap();
        let ttls: Vec<u32> = text
            .lines()
            .filter_map(|l| l.split("ttl ").nth(1))
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect();
        if ttls.len() >= 3 || Instant::now() > deadline {
            break ttls;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    assert_eq!(ttls, vec![64, 1, 1], "TTLs of the GET, token and later GET responses");
}
