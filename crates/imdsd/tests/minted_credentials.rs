//! Minted role credentials as a user sees them: read from IMDS, used with
//! the AWS CLI against the control plane of a real `imdsd serve`, across a
//! restart, altered, and after the instance stopped or ended.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_testkit::http::{get, token};
use imds_testkit::{ImdsdBuilder, ImdsdProcess};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");
const DEMO_ID: &str = "i-0123456789abcdef0";
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/demo-role";
const IDENTITY_PATH: &str = "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance";

/// A credential set as served.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    access_key_id: String,
    secret: String,
    token: String,
    last_updated: String,
    expiration: String,
}

/// The set at `path`, read with an IMDSv2 token.
fn fetch(s: &ImdsdProcess, path: &str) -> Set {
    let t = token(s.data_v4(), 600).unwrap();
    let r = get(s.data_v4(), path, &[&format!("X-aws-ec2-metadata-token: {t}")]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let field = |k: &str| doc[k].as_str().unwrap().to_owned();
    Set {
        access_key_id: field("AccessKeyId"),
        secret: field("SecretAccessKey"),
        token: field("Token"),
        last_updated: field("LastUpdated"),
        expiration: field("Expiration"),
    }
}

/// `aws ec2 <args>` against the control plane signed with `set`; (success,
/// stderr).
fn aws_as(s: &ImdsdProcess, set: &Set, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("aws")
        .args(["--region", "us-east-1", "--endpoint-url", &s.control_url(), "--output", "json", "ec2"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &set.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &set.secret)
        .env("AWS_SESSION_TOKEN", &set.token)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI (aws) must be installed");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `aws ec2 <args>` with the demo's long-term key (allowed everything).
fn aws_admin(s: &ImdsdProcess, args: &[&str]) {
    let out = std::process::Command::new("aws")
        .args(["--region", "us-east-1", "--endpoint-url", &s.control_url(), "--output", "json"])
        .args(["--profile", "imdsd-demo", "ec2"])
        .args(args)
        .env("AWS_SHARED_CREDENTIALS_FILE", s.demo_credentials_file())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI (aws) must be installed");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn describe(s: &ImdsdProcess, set: &Set) -> (bool, String) {
    aws_as(s, set, &["describe-instances", "--instance-ids", DEMO_ID])
}

fn assert_auth_failure(s: &ImdsdProcess, set: &Set, what: &str) {
    assert_refused(s, set, "AuthFailure", what);
}

fn assert_refused(s: &ImdsdProcess, set: &Set, code: &str, what: &str) {
    let (ok, err) = describe(s, set);
    assert!(!ok && err.contains(code), "{what} must not authenticate ({code}): {err}");
}

/// Changes one character in the middle of `s`.
fn altered(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let at = b.len() / 2;
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[test]
fn minted_credentials_sign_calls_across_a_restart_and_altered_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    let before = fetch(&first, ROLE_PATH);
    let (ok, err) = describe(&first, &before);
    assert!(ok, "{err}");
    drop(first); // SIGKILL: no clean shutdown

    let second = ImdsdBuilder::new(BIN).demo().data_dir(dir.path()).start().unwrap();
    // Nothing is re-minted: the same set, unless its rotation time (one in
    // five hours) fell within the restart.
    let after = fetch(&second, ROLE_PATH);
    if after.last_updated == before.last_updated {
        assert_eq!(after, before);
    }
    // The set read before the restart still signs calls.
    let (ok, err) = describe(&second, &before);
    assert!(ok, "credentials from before the restart: {err}");

    // Altered or mismatched material is refused.
    assert_auth_failure(
        &second,
        &Set { token: altered(&before.token), ..before.clone() },
        "an altered token",
    );
    assert_auth_failure(&second, &Set { token: "forged".into(), ..before.clone() }, "a forged token");
    let wrong_secret = Set { secret: altered(&before.secret), ..before.clone() };
    assert_refused(&second, &wrong_secret, "SignatureDoesNotMatch", "a wrong secret");
    let identity = fetch(&second, IDENTITY_PATH);
    assert_auth_failure(
        &second,
        &Set { token: identity.token.clone(), ..before.clone() },
        "another set's token",
    );

    // Identity credentials authenticate (as the identity role, which the
    // control plane allows nothing).
    let (ok, err) = describe(&second, &identity);
    assert!(!ok && err.contains("UnauthorizedOperation"), "{err}");
}

#[test]
fn credentials_of_a_stopped_or_terminated_instance_are_refused_at_once() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let first = fetch(&s, ROLE_PATH);
    let (ok, err) = describe(&s, &first);
    assert!(ok, "{err}");

    aws_admin(&s, &["stop-instances", "--instance-ids", DEMO_ID]);
    assert_auth_failure(&s, &first, "credentials of a stopped instance");

    // Started again: a new run, whose new sets work while the old stay refused.
    aws_admin(&s, &["start-instances", "--instance-ids", DEMO_ID]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let t = token(s.data_v4(), 600);
        if let Ok(t) = t {
            let r = get(s.data_v4(), ROLE_PATH, &[&format!("X-aws-ec2-metadata-token: {t}")]).unwrap();
            if r.status == 200 && !r.text().contains(&first.access_key_id) {
                break fetch(&s, ROLE_PATH);
            }
        }
        assert!(Instant::now() < deadline, "the restarted instance was never served new credentials");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ok, err) = describe(&s, &second);
    assert!(ok, "the new run's credentials: {err}");
    assert_auth_failure(&s, &first, "credentials of the previous run");

    aws_admin(&s, &["terminate-instances", "--instance-ids", DEMO_ID]);
    assert_auth_failure(&s, &second, "credentials of a terminated instance");
}
