//! Signed identity documents verified exactly as AWS's guide shows (the real
//! `openssl` command), and instance events scheduled through the `imdsd
//! events` command appearing and disappearing in the metadata.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_core::timefmt::iso8601_secs;
use imds_testkit::http::get;
use imds_testkit::{ImdsdBuilder, ImdsdProcess};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");
const DEMO: &str = "i-0123456789abcdef0";

fn imdsd_cmd(s: &ImdsdProcess, args: &[&str]) -> String {
    let out =
        Command::new(BIN).args(args).arg("--admin-url").arg(format!("http://{}", s.admin)).output().unwrap();
    assert!(out.status.success(), "imdsd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fetch(s: &ImdsdProcess, path: &str) -> (u16, String) {
    let r = get(s.data_v4(), path, &[]).unwrap();
    (r.status, r.text())
}

/// Polls until `path` answers `status` (events apply asynchronously, within a second).
fn wait_for(s: &ImdsdProcess, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = fetch(s, path);
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} still answers {got}, wanted {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).current_dir(dir).output().unwrap()
}

/// Verifies the three signed documents with the certificate, as the AWS
/// user guide does; returns whether each verified.
fn verify_all(s: &ImdsdProcess, dir: &Path, cert: &str) -> (bool, bool, bool) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    let (_, document) = fetch(s, "/latest/dynamic/instance-identity/document");
    std::fs::write(dir.join("document"), &document).unwrap();
    let smime = |name: &str| {
        let (status, body) = fetch(s, &format!("/latest/dynamic/instance-identity/{name}"));
        assert_eq!(status, 200);
        assert!(body.lines().all(|l| l.len() <= 76) && !body.ends_with('\n') && !body.contains("BEGIN"));
        std::fs::write(dir.join(name), format!("-----BEGIN PKCS7-----\n{body}\n-----END PKCS7-----\n"))
            .unwrap();
        let out = openssl(
            dir,
            &["smime", "-verify", "-in", name, "-inform", "PEM", "-certfile", "cert.pem", "-noverify"],
        );
        out.status.success() && out.stdout == document.as_bytes()
    };
    let pkcs7 = smime("pkcs7");
    let rsa2048 = smime("rsa2048");
    let (_, sig) = fetch(s, "/latest/dynamic/instance-identity/signature");
    let raw = base64_decode(&sig.replace('\n', ""));
    std::fs::write(dir.join("sig"), raw).unwrap();
    let key = openssl(dir, &["x509", "-pubkey", "-noout", "-in", "cert.pem"]);
    std::fs::write(dir.join("key.pem"), key.stdout).unwrap();
    let out = openssl(dir, &["dgst", "-sha256", "-verify", "key.pem", "-signature", "sig", "document"]);
    let signature = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK");
    (pkcs7, rsa2048, signature)
}

fn base64_decode(text: &str) -> Vec<u8> {
    let out = Command::new("sh").arg("-c").arg(format!("printf '%s' '{text}' | base64 -d")).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn identity_documents_verify_with_the_printed_certificate_and_survive_restart_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = ImdsdBuilder::new(BIN).demo().data_dir(&data).start().unwrap();
    let cert = imdsd_cmd(&s, &["identity", "certificate", "--region", "us-east-1"]);
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(verify_all(&s, dir.path(), &cert), (true, true, true));

    // A tampered document fails the signature check.
    std::fs::write(
        dir.path().join("document"),
        fetch(&s, "/latest/dynamic/instance-identity/document").1.replace("us-east-1a", "us-east-1b"),
    )
    .unwrap();
    let out =
        openssl(dir.path(), &["dgst", "-sha256", "-verify", "key.pem", "-signature", "sig", "document"]);
    assert!(!out.status.success(), "a tampered document must not verify");

    // Keys persist: after a restart the same certificate still verifies.
    drop(s);
    let s = ImdsdBuilder::new(BIN).data_dir(&data).start().unwrap();
    assert_eq!(imdsd_cmd(&s, &["identity", "certificate"]), cert);
    assert_eq!(verify_all(&s, dir.path(), &cert), (true, true, true));

    // Rotation: new documents verify with the new certificate only.
    let new_cert = imdsd_cmd(&s, &["identity", "rotate", "--region", "us-east-1"]);
    assert_ne!(new_cert, cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    while verify_all(&s, dir.path(), &new_cert) != (true, true, true) {
        assert!(Instant::now() < deadline, "rotated keys never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(verify_all(&s, dir.path(), &cert), (false, false, false));
}

#[test]
fn every_event_kind_appears_and_disappears() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = ImdsdBuilder::new(BIN).demo().data_dir(&data).start().unwrap();
    // Absent before anything is scheduled, and not listed.
    assert_eq!(fetch(&s, "/latest/meta-data/spot/instance-action").0, 404);
    assert!(!fetch(&s, "/latest/meta-data/").1.contains("spot/"));

    let spot = imdsd_cmd(
        &s,
        &["events", "schedule", "--instance-id", DEMO, "spot-interruption", "--action", "terminate"],
    );
    let body = wait_for(&s, "/latest/meta-data/spot/instance-action", 200);
    assert!(body.starts_with(r#"{"action": "terminate", "time": ""#), "{body}");
    assert_eq!(fetch(&s, "/latest/meta-data/spot/termination-time").0, 200);

    let rebalance = imdsd_cmd(&s, &["events", "schedule", "--instance-id", DEMO, "rebalance"]);
    assert!(
        wait_for(&s, "/latest/meta-data/events/recommendations/rebalance", 200)
            .starts_with(r#"{"noticeTime": ""#)
    );

    let lifecycle =
        imdsd_cmd(&s, &["events", "schedule", "--instance-id", DEMO, "lifecycle", "--state", "InService"]);
    assert_eq!(wait_for(&s, "/latest/meta-data/autoscaling/target-lifecycle-state", 200), "InService");

    let maint = imdsd_cmd(
        &s,
        &[
            "events",
            "schedule",
            "--instance-id",
            DEMO,
            "maintenance",
            "--code",
            "system-reboot",
            "--starts-in",
            "1h",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fetch(&s, "/latest/meta-data/events/maintenance/scheduled").1.contains(maint.trim()) {
        assert!(Instant::now() < deadline, "maintenance never scheduled");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A delayed event stays hidden until its time.
    let delayed = imdsd_cmd(
        &s,
        &[
            "events",
            "schedule",
            "--instance-id",
            DEMO,
            "--delay",
            "2s",
            "spot-interruption",
            "--action",
            "stop",
        ],
    );
    let listed = imdsd_cmd(&s, &["events", "list", "--instance-id", DEMO]);
    assert!(listed.lines().any(|l| l.starts_with(delayed.trim()) && l.ends_with("scheduled")), "{listed}");

    // Events persist across a restart.
    drop(s);
    let s = ImdsdBuilder::new(BIN).data_dir(&data).start().unwrap();
    assert_eq!(fetch(&s, "/latest/meta-data/autoscaling/target-lifecycle-state").1, "InService");
    assert!(fetch(&s, "/latest/meta-data/events/maintenance/scheduled").1.contains(maint.trim()));

    // Canceling: spot, rebalance and lifecycle disappear; maintenance moves to history.
    for id in [&spot, &rebalance, &lifecycle, &delayed, &maint] {
        imdsd_cmd(&s, &["events", "cancel", id.trim()]);
    }
    wait_for(&s, "/latest/meta-data/spot/instance-action", 404);
    wait_for(&s, "/latest/meta-data/events/recommendations/rebalance", 404);
    wait_for(&s, "/latest/meta-data/autoscaling/target-lifecycle-state", 404);
    let history = fetch(&s, "/latest/meta-data/events/maintenance/history").1;
    assert!(history.contains("[Canceled] scheduled reboot"), "{history}");
    assert_eq!(fetch(&s, "/latest/meta-data/events/maintenance/scheduled").1, "[]");
}

#[test]
fn bad_event_requests_get_clear_errors() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN).args(args).arg("--admin-url").arg(format!("http://{}", s.admin)).output().unwrap()
    };
    let unknown = run(&["events", "schedule", "--instance-id", "i-0000000000000000f", "rebalance"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
    let bad_state = run(&["events", "schedule", "--instance-id", DEMO, "lifecycle", "--state", "Flying"]);
    assert!(String::from_utf8_lossy(&bad_state.stderr).contains("invalid lifecycle state 'Flying'"));
    let bad_code = run(&["events", "schedule", "--instance-id", DEMO, "maintenance", "--code", "explode"]);
    assert!(String::from_utf8_lossy(&bad_code.stderr).contains("invalid maintenance code"));
    let bad_id = run(&["events", "cancel", "instance-event-00000000000000000"]);
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("no event"));
    let unreachable =
        Command::new(BIN).args(["events", "list", "--admin-url", "http://127.0.0.1:9"]).output().unwrap();
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the imdsd admin API"));
}

#[test]
fn the_admin_api_refuses_cross_site_changes() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let body = format!(r#"{{"instance_id":"{DEMO}","kind":"rebalance","notice_time":1}}"#);
    let post = |headers: &str| {
        let req = format!(
            "POST /v1/events HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            s.admin,
            body.len()
        );
        imds_testkit::raw_request(s.admin, req.as_bytes()).unwrap().status
    };
    // What an HTML form on another site can send without a preflight.
    assert_eq!(post("Content-Type: text/plain\r\n"), 415);
    assert_eq!(
        post("Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://evil.example\r\n"),
        415
    );
    assert_eq!(post("Content-Type: application/json\r\nOrigin: http://evil.example\r\n"), 403);
    assert_eq!(post("Content-Type: application/json\r\n"), 201);
    let rotate = format!(
        "POST /v1/tokens/rotate HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s.admin
    );
    assert_eq!(imds_testkit::raw_request(s.admin, rotate.as_bytes()).unwrap().status, 415);
}

#[test]
fn the_v1_caller_report_names_the_user_agent_and_the_safe_instances() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let before = imdsd_cmd(&s, &["report", "v1-callers", "--since", "1h"]);
    assert!(before.contains(&format!("safe for --http-tokens required): {DEMO}")), "{before}");
    for _ in 0..3 {
        let r = get(s.data_v4(), "/latest/meta-data/ami-id", &["User-Agent: legacy-inventory/2.3"]).unwrap();
        assert_eq!(r.status, 200);
    }
    // The recorder flushes every 10 s; the report reads what was flushed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report: serde_json::Value = loop {
        let text = imdsd_cmd(&s, &["report", "v1-callers", "--instance", DEMO, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["instances"].as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(Instant::now() < deadline, "no IMDSv1 caller reported: {text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let inst = &report["instances"][0];
    assert_eq!(inst["instance_id"], DEMO);
    assert_eq!(inst["no_token_requests"], 3);
    let caller = &inst["callers"][0];
    assert_eq!(caller["user_agent"], "legacy-inventory/2.3");
    assert_eq!(caller["source"], "127.0.0.1");
    assert_eq!(caller["count"], 3);
    assert!(report["no_imdsv1_calls"].as_array().unwrap().is_empty());
    let table = imdsd_cmd(&s, &["report", "v1-callers"]);
    assert!(table.contains("legacy-inventory/2.3") && table.contains("/latest/meta-data/ami-id"), "{table}");
}

#[test]
fn the_demo_instance_is_launched_when_it_is_created() {
    // As a RunInstances launch: pendingTime is the creation, and the first
    // role credentials are issued then, with their whole 6 hours.
    let unix_now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let before = unix_now();
    let dir = tempfile::tempdir().unwrap();
    let s = ImdsdBuilder::new(BIN).demo().data_dir(dir.path().join("data")).start().unwrap();
    let after = unix_now();
    let doc: serde_json::Value =
        serde_json::from_str(&fetch(&s, "/latest/dynamic/instance-identity/document").1).unwrap();
    let pending_time = doc["pendingTime"].as_str().unwrap();
    let pending = (before..=after)
        .find(|t| iso8601_secs(*t) == pending_time)
        .unwrap_or_else(|| panic!("pendingTime {pending_time} is not between {before} and {after}"));
    let creds: serde_json::Value =
        serde_json::from_str(&fetch(&s, "/latest/meta-data/iam/security-credentials/demo-role").1).unwrap();
    assert_eq!(creds["LastUpdated"], iso8601_secs(pending).as_str(), "{creds}");
    assert_eq!(creds["Expiration"], iso8601_secs(pending + 21_600).as_str(), "{creds}");
}
