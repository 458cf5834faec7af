//! The real AWS CLI (`aws`, v1 or v2) against the Lightsail API: every
//! answer and error must parse in botocore (each call runs with `--debug`,
//! whose log shows the raw bodies and would show "Unable to parse"), and
//! the values must round-trip. The control plane runs on 127.0.0.1:0 with
//! the system clock; the CLI gets a temporary credentials file.
//!
//! Skipped only when `aws` is not on `PATH` and `CI` is not `true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use imds_control::{ControlConfig, ControlPlane, StaticCredential};
use imds_core::SystemClock;
use imds_store::MemoryStore;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Starts the control plane on its own runtime thread.
fn start() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let config = ControlConfig {
                credentials: vec![StaticCredential {
                    access_key_id: AKID.into(),
                    secret_access_key: SECRET.into(),
                    principal_arn: "arn:aws:iam::123456789012:user/admin".into(),
                    policy: None,
                }],
                subnet_v6: Some("2001:db8::/64".parse().unwrap()),
                ..ControlConfig::default()
            };
            let cp = ControlPlane::new(
                Arc::new(MemoryStore::new()),
                config,
                Arc::new(Vec::<StaticCredential>::new()),
                Arc::new(SystemClock),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, cp.router()).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn find_aws() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("aws")).find(|p| p.is_file())
}

/// The CLI with a private configuration.
struct Cli {
    aws: PathBuf,
    dir: tempfile::TempDir,
    endpoint: String,
}

/// One CLI run.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn new(aws: PathBuf, addr: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("credentials"),
            format!("[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n[bad]\naws_access_key_id = {AKID}\naws_secret_access_key = not-the-secret\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("config"), "[default]\nregion = us-east-1\noutput = json\n[profile bad]\nregion = us-east-1\noutput = json\n").unwrap();
        Self { aws, dir, endpoint: format!("http://{addr}") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run_profile(&self, profile: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.aws);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", self.path("credentials"))
            .env("AWS_CONFIG_FILE", self.path("config"))
            .env("AWS_PROFILE", profile)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--debug"]);
        let out = cmd.output().expect("run aws");
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for bad in ["Unable to parse", "ResponseParserError"] {
            assert!(!run.stderr.contains(bad), "aws {args:?}: {bad}\n{}", run.stderr);
        }
        run
    }

    /// A successful call's JSON output.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Value {
        let run = self.run_profile("default", args);
        assert!(run.ok, "aws {args:?} failed:\n{}", tail(&run.stderr));
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {}", run.stdout))
    }

    /// A failing call's error line: `An error occurred (<code>) when calling …: <message>`.
    #[track_caller]
    fn fails(&self, profile: &str, args: &[&str], code: &str, operation: &str) -> String {
        let run = self.run_profile(profile, args);
        assert!(!run.ok, "aws {args:?} succeeded: {}", run.stdout);
        let prefix = format!("An error occurred ({code}) when calling the {operation} operation: ");
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("An error occurred ("))
            .unwrap_or_else(|| panic!("aws {args:?}: no error line\n{}", tail(&run.stderr)));
        assert!(line.starts_with(&prefix), "aws {args:?}: {line}");
        line[prefix.len()..].to_owned()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

const CREATE: [&str; 6] =
    ["--availability-zone", "us-east-1a", "--blueprint-id", "amazon_linux_2023", "--bundle-id", "nano_3_0"];

fn names(v: &Value) -> Vec<String> {
    v["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn aws_cli_parses_every_lightsail_answer() {
    let Some(aws) = find_aws() else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "the AWS CLI (`aws`) is required on CI");
        eprintln!("skipping: `aws` is not on PATH");
        return;
    };
    let cli = Cli::new(aws, start());
    let ls = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["lightsail".to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };
    let ok = |args: &[&str]| cli.ok(&ls(args).iter().map(String::as_str).collect::<Vec<_>>());
    let fails = |args: &[&str], code: &str, op: &str| {
        cli.fails("default", &ls(args).iter().map(String::as_str).collect::<Vec<_>>(), code, op)
    };

    let mut args = vec!["create-instances", "--instance-names", "web-1"];
    args.extend(CREATE);
    args.extend(["--user-data", "#!/bin/sh\necho hi\n", "--tags", "key=team,value=a"]);
    let v = ok(&args);
    let op = &v["operations"][0];
    assert_eq!(
        (
            op["resourceName"].as_str(),
            op["operationType"].as_str(),
            op["status"].as_str(),
            op["isTerminal"].as_bool()
        ),
        (Some("web-1"), Some("CreateInstance"), Some("Started"), Some(false))
    );
    assert!(op["createdAt"].is_number() || op["createdAt"].is_string(), "{op}");

    let inst = &ok(&["get-instance", "--instance-name", "web-1"])["instance"];
    assert_eq!(inst["name"], "web-1");
    assert_eq!(inst["tags"], serde_json::json!([{"key": "team", "value": "a"}]));
    assert_eq!(inst["privateIpAddress"], "10.0.0.4");
    assert_eq!(inst["state"]["name"], "running");
    assert_eq!(
        inst["metadataOptions"],
        serde_json::json!({"state": "pending", "httpTokens": "optional", "httpEndpoint": "enabled",
                           "httpPutResponseHopLimit": 1, "httpProtocolIpv6": "disabled"})
    );
    assert!(inst["arn"].as_str().unwrap().starts_with("arn:aws:lightsail:us-east-1:123456789012:Instance/"));
    let id = inst["supportCode"].as_str().unwrap().split('/').nth(1).unwrap().to_owned();

    assert_eq!(names(&ok(&["get-instances"])), ["web-1"]);

    let v = ok(&[
        "update-instance-metadata-options",
        "--instance-name",
        "web-1",
        "--http-tokens",
        "required",
        "--http-put-response-hop-limit",
        "2",
    ]);
    let op = &v["operation"];
    assert_eq!(
        (
            op["resourceName"].as_str(),
            op["operationType"].as_str(),
            op["status"].as_str(),
            op["resourceType"].as_str()
        ),
        (Some("web-1"), Some("UpdateInstanceMetadataOptions"), Some("Started"), Some("Instance"))
    );
    let options = &ok(&["get-instance", "--instance-name", "web-1"])["instance"]["metadataOptions"];
    assert_eq!(
        (options["httpTokens"].as_str(), options["httpPutResponseHopLimit"].as_i64()),
        (Some("required"), Some(2))
    );
    assert_eq!(options["state"], "pending");

    // The EC2 API sees the same instance.
    let ec2 = cli.ok(&["ec2", "describe-instances", "--instance-ids", &id]);
    let i = &ec2["Reservations"][0]["Instances"][0];
    assert_eq!(
        (i["InstanceType"].as_str(), i["MetadataOptions"]["HttpTokens"].as_str()),
        (Some("t3.nano"), Some("required"))
    );

    // Errors parse, with their shape names and messages.
    assert_eq!(
        fails(&["get-instance", "--instance-name", "nope"], "NotFoundException", "GetInstance"),
        "The Instance does not exist: nope"
    );
    assert_eq!(
        fails(
            &["update-instance-metadata-options", "--instance-name", "nope", "--http-tokens", "required"],
            "NotFoundException",
            "UpdateInstanceMetadataOptions"
        ),
        "The Instance does not exist: nope"
    );
    assert_eq!(
        fails(
            &[
                "update-instance-metadata-options",
                "--instance-name",
                "web-1",
                "--http-put-response-hop-limit",
                "65"
            ],
            "InvalidInputException",
            "UpdateInstanceMetadataOptions"
        ),
        "The value 65 for parameter httpPutResponseHopLimit is not valid. It must be between 1 and 64."
    );
    let run = cli.run_profile(
        "default",
        &[
            "lightsail",
            "update-instance-metadata-options",
            "--instance-name",
            "web-1",
            "--http-tokens",
            "maybe",
        ],
    );
    // The CLI may refuse the enum value itself (v2); v1 sends it and gets the service's answer.
    assert!(!run.ok);
    if run.stderr.contains("An error occurred (InvalidInputException)") {
        assert!(
            run.stderr.contains(
                "Invalid value 'maybe' for parameter httpTokens. Valid values: optional, required."
            )
        );
    }
    let mut dup = vec!["create-instances", "--instance-names", "web-1"];
    dup.extend(CREATE);
    assert_eq!(
        fails(&dup, "InvalidInputException", "CreateInstances"),
        "Some names are already in use: web-1"
    );
    let mut bad_bundle = vec!["create-instances", "--instance-names", "web-2"];
    bad_bundle.extend([
        "--availability-zone",
        "us-east-1a",
        "--blueprint-id",
        "amazon_linux_2023",
        "--bundle-id",
        "huge_3_0",
    ]);
    assert_eq!(
        fails(&bad_bundle, "InvalidInputException", "CreateInstances"),
        "The bundle ID 'huge_3_0' is not valid."
    );
    fails(&["get-bundles"], "UnknownOperationException", "GetBundles");
    let m = cli.fails("bad", &["lightsail", "get-instances"], "UnauthenticatedException", "GetInstances");
    assert!(m.starts_with("The request signature we calculated does not match"), "{m}");
    // Nothing above changed the instance.
    let options = &ok(&["get-instance", "--instance-name", "web-1"])["instance"]["metadataOptions"];
    assert_eq!(
        (options["httpTokens"].as_str(), options["httpPutResponseHopLimit"].as_i64()),
        (Some("required"), Some(2))
    );

    // Twenty more: get-instances follows nextPageToken (botocore's paginator).
    let more: Vec<String> = (0..20).map(|i| format!("fleet-{i:02}")).collect();
    let mut args = vec!["create-instances", "--instance-names"];
    args.extend(more.iter().map(String::as_str));
    args.extend(CREATE);
    assert_eq!(ok(&args)["operations"].as_array().unwrap().len(), 20);
    let all = names(&ok(&["get-instances"]));
    assert_eq!(all.len(), 21);
    assert_eq!((all[0].as_str(), all[20].as_str()), ("fleet-00", "web-1"));
    let first = ok(&["get-instances", "--max-items", "5"]);
    assert_eq!(names(&first).len(), 5);
    assert!(first["NextToken"].is_string(), "{first}");

    let v = ok(&["delete-instance", "--instance-name", "web-1"]);
    assert_eq!(
        (v["operations"][0]["operationType"].as_str(), v["operations"][0]["status"].as_str()),
        (Some("DeleteInstance"), Some("Succeeded"))
    );
    fails(&["get-instance", "--instance-name", "web-1"], "NotFoundException", "GetInstance");
    assert_eq!(names(&ok(&["get-instances"])).len(), 20);
}
