//! A restart on the same data directory keeps tokens valid and does not
//! create a second demo instance.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_testkit::ImdsdBuilder;
use imds_testkit::http::{get, token};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");

#[test]
fn tokens_survive_a_restart_and_the_demo_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    let tok = token(first.data_v4(), 600).unwrap();
    let creds_before =
        get(first.data_v4(), "/latest/meta-data/iam/security-credentials/demo-role", &[]).unwrap().text();
    drop(first); // SIGKILL: no clean shutdown

    let second = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    let r = get(
        second.data_v4(),
        "/latest/meta-data/instance-id",
        &[&format!("X-aws-ec2-metadata-token: {tok}")],
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "i-0123456789abcdef0"));
    // Still exactly one instance owns 127.0.0.1, and it is the same one.
    let listing = get(second.data_v4(), "/latest/meta-data/network/interfaces/macs/", &[]).unwrap().text();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(!creds_before.is_empty());
}

#[test]
fn a_clean_sigterm_exits_zero_and_the_store_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    assert_eq!(first.terminate().unwrap(), Some(0));
    let second = ImdsdBuilder::new(BIN).data_dir(dir.path()).start().unwrap();
    let r = get(second.data_v4(), "/latest/meta-data/instance-id", &[]).unwrap();
    assert_eq!(r.text(), "i-0123456789abcdef0", "the demo instance persisted without --demo");
}

#[test]
fn a_bad_config_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[data_plane]\nlisten_on = []\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `listen_on`") && err.contains("bad.toml"), "{err}");
}

#[test]
fn token_key_rotation_keeps_issued_tokens_valid_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    let old = token(first.data_v4(), 600).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["tokens", "rotate", "--admin-url", &format!("http://{}", first.admin)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("token key 2 now seals new tokens"));
    // The new key is served within moments; the old token keeps working.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let new = loop {
        let t = token(first.data_v4(), 600).unwrap();
        // The key id travels in the token (bytes 1..5, after the version byte).
        if key_id(&t) != key_id(&old) {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "the rotated key was never used");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!((key_id(&old), key_id(&new)), (1, 2));
    drop(first);
    let second = ImdsdBuilder::new(BIN).data_dir(dir.path()).start().unwrap();
    for t in [&old, &new] {
        let r = get(
            second.data_v4(),
            "/latest/meta-data/instance-id",
            &[&format!("X-aws-ec2-metadata-token: {t}")],
        )
        .unwrap();
        assert_eq!(r.status, 200, "tokens of both keys survive a restart");
    }
}

fn key_id(token: &str) -> u32 {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).unwrap();
    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
}

#[test]
fn sighup_reloads_limits_and_a_bad_file_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imdsd.toml");
    std::fs::write(&config, "[limits]\nrequests_per_second = 1000\nburst = 1000\n").unwrap();
    let s = ImdsdBuilder::new(BIN).demo().arg("--config").arg(config.to_str().unwrap()).start().unwrap();
    let count_ok = || {
        (0..20)
            .filter(|_| get(s.data_v4(), "/latest/meta-data/instance-id", &[]).unwrap().status == 200)
            .count()
    };
    assert_eq!(count_ok(), 20);
    let hup = || {
        let ok = std::process::Command::new("kill").args(["-HUP", &s.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    };
    // A broken file is refused; the service keeps its limits and keeps running.
    std::fs::write(&config, "[limits]\nrequests_per_second = \"fast\"\n").unwrap();
    hup();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count_ok(), 20);
    // A valid file takes effect: 2 requests of burst, then 429s.
    std::fs::write(&config, "[limits]\nrequests_per_second = 1\nburst = 2\n").unwrap();
    hup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count_ok() > 3 {
        assert!(std::time::Instant::now() < deadline, "the reloaded limits never applied");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = get(s.data_v4(), "/latest/meta-data/instance-id", &[]).unwrap();
    assert_eq!((r.status, r.body.len()), (429, 0));
}
