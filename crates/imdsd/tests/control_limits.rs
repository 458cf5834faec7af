//! `[control]` limits of a real `imdsd serve`: the per-key rate limit
//! (RequestLimitExceeded in EC2's XML, other keys unaffected), a SIGHUP
//! that raises it, and the header-read timeout against a slow client.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_testkit::ImdsdBuilder;
use imds_testkit::ec2::Ec2Client;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");
const A: (&str, &str) = ("AKIALIMITSAAAAAAAAAA", "secret-a");
const B: (&str, &str) = ("AKIALIMITSBBBBBBBBBB", "secret-b");

fn config(burst: u32) -> String {
    // One token every 100 s: nothing refills during the test.
    let mut text =
        format!("[control]\nrequests_per_second = 0.01\nburst = {burst}\nheader_read_timeout_secs = 1\n");
    for (id, secret) in [A, B] {
        text.push_str(&format!(
            "[[control.credentials]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\n"
        ));
    }
    text
}

#[test]
fn a_key_over_its_limit_gets_request_limit_exceeded_until_a_reload_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imdsd.toml");
    std::fs::write(&path, config(2)).unwrap();
    let s = ImdsdBuilder::new(BIN).arg("--config").arg(path.to_str().unwrap()).start().unwrap();
    let a = Ec2Client::new(s.control, A.0, A.1);
    let b = Ec2Client::new(s.control, B.0, B.1);
    a.ok("DescribeInstances", &[]).unwrap();
    a.ok("DescribeInstances", &[]).unwrap();
    let refused = a.call("DescribeInstances", &[]).unwrap();
    assert_eq!(
        (refused.status, refused.code().as_deref()),
        (503, Some("RequestLimitExceeded")),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("<Message>Request limit exceeded.</Message></Error></Errors><RequestID>"));
    b.ok("DescribeInstances", &[]).unwrap();

    std::fs::write(&path, config(10)).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &s.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    // The reload is asynchronous: poll until the key gets through again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.call("DescribeInstances", &[]).unwrap().status != 200 {
        assert!(Instant::now() < deadline, "the raised limit never applied");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        a.ok("DescribeInstances", &[]).unwrap();
    }
}

#[test]
fn a_client_sending_its_head_a_byte_a_second_is_disconnected() {
    let s = ImdsdBuilder::new(BIN).config(&config(2)).start().unwrap();
    let mut conn = std::net::TcpStream::connect(s.control).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n";
    let mut buf = [0u8; 512];
    for (i, byte) in head.iter().enumerate() {
        if conn.write_all(&[*byte]).is_err() {
            return; // reset: disconnected
        }
        match conn.read(&mut buf) {
            Ok(0) => return, // EOF: disconnected
            Ok(n) => panic!("an answer to half a head: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                assert!(i < head.len() - 1, "the server waited for the whole head");
            }
            Err(_) => return, // reset
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    panic!("the whole head went through at a byte a second without a disconnect");
}
