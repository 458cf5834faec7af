//! The real Rust SDK IMDS client (`aws-config`) against a real `imdsd`.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use aws_config::imds::client::Client;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_credential_types::provider::ProvideCredentials;
use imds_testkit::{ImdsdBuilder, ImdsdProcess};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");

fn client(s: &ImdsdProcess) -> Client {
    Client::builder().endpoint(s.data_url()).expect("valid endpoint").build()
}

#[tokio::test]
async fn imds_client_reads_metadata_with_a_token() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let c = client(&s);
    let id = c.get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), "i-0123456789abcdef0");
    let doc = c.get("/latest/dynamic/instance-identity/document").await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(doc.as_ref()).unwrap();
    assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
    assert_eq!(doc["region"], "us-east-1");
    let missing = c.get("/latest/meta-data/no-such-thing").await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn credentials_provider_loads_role_credentials() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let provider = ImdsCredentialsProvider::builder().imds_client(client(&s)).build();
    let creds = provider.provide_credentials().await.unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(creds.secret_access_key().len(), 40);
    assert!(creds.session_token().is_some());
    let expiry = creds.expiry().unwrap();
    let left = expiry.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left.as_secs() > 3600, "credentials expire in {left:?}");
}

#[tokio::test]
async fn region_provider_reads_the_region() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let region = ImdsRegionProvider::builder().imds_client(client(&s)).build().region().await;
    assert_eq!(region.unwrap().as_ref(), "us-east-1");
}

#[tokio::test]
async fn ipv6_endpoint_works_for_the_sdk() {
    let s = ImdsdBuilder::new(BIN).demo().start().unwrap();
    let v6 = s.data_v6().unwrap();
    let c = Client::builder().endpoint(format!("http://{v6}")).unwrap().build();
    assert_eq!(c.get("/latest/meta-data/placement/region").await.unwrap().as_ref(), "us-east-1");
}

/// The AWS CLI against the control plane with the given credentials.
fn aws_as(
    s: &ImdsdProcess,
    creds: &aws_credential_types::Credentials,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new("aws")
        .args(["--region", "us-east-1", "--endpoint-url", &s.control_url(), "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env("AWS_SESSION_TOKEN", creds.session_token().unwrap_or_default())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap()
}

#[tokio::test]
async fn rotated_role_credentials_keep_working_and_sign_control_plane_calls() {
    // Credentials live 901 s and are replaced 900 s before expiry: a new set
    // about every second, so rotation is observed without long sleeps.
    let s = ImdsdBuilder::new(BIN)
        .demo()
        .config(
            "[credentials.default]\nprovider = \"minted\"\nlifetime_secs = 901\nrefresh_before_secs = 900\n",
        )
        .start()
        .unwrap();
    let provider = ImdsCredentialsProvider::builder().imds_client(client(&s)).build();
    let first = provider.provide_credentials().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let second = loop {
        let c = provider.provide_credentials().await.unwrap();
        if c.access_key_id() != first.access_key_id() {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "credentials never rotated");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Both the new set and the rotated-out one (not yet expired) sign calls;
    // the demo role may read but not change anything.
    for creds in [&first, &second] {
        let out = aws_as(&s, creds, &["ec2", "describe-instances"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body["Reservations"][0]["Instances"][0]["InstanceId"], "i-0123456789abcdef0");
    }
    let out = aws_as(
        &s,
        &second,
        &[
            "ec2",
            "modify-instance-metadata-options",
            "--instance-id",
            "i-0123456789abcdef0",
            "--http-tokens",
            "required",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UnauthorizedOperation"));
    // A forged session token is refused.
    let forged = aws_credential_types::Credentials::new(
        second.access_key_id(),
        second.secret_access_key(),
        Some("forged".to_owned()),
        None,
        "test",
    );
    let out = aws_as(&s, &forged, &["ec2", "describe-instances"]);
    assert!(!out.status.success(), "a forged session token must not authenticate");
}

#[tokio::test]
async fn role_delivery_tells_imdsv1_credentials_from_imdsv2_ones() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("role.json");
    // The documented policy: deny every call made with credentials that
    // came through IMDSv1.
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
            {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"ec2:RoleDelivery":"2.0"}}}]}"#,
    )
    .unwrap();
    let s = ImdsdBuilder::new(BIN)
        .demo()
        .config(&format!("[control.role_policies]\ndemo-role = {:?}\n", policy.display().to_string()))
        .start()
        .unwrap();
    let v1: serde_json::Value = serde_json::from_str(
        &imds_testkit::http::get(s.data_v4(), "/latest/meta-data/iam/security-credentials/demo-role", &[])
            .unwrap()
            .text(),
    )
    .unwrap();
    let v1 = aws_credential_types::Credentials::new(
        v1["AccessKeyId"].as_str().unwrap(),
        v1["SecretAccessKey"].as_str().unwrap(),
        v1["Token"].as_str().map(str::to_owned),
        None,
        "imdsv1",
    );
    let v2 = ImdsCredentialsProvider::builder()
        .imds_client(client(&s))
        .build()
        .provide_credentials()
        .await
        .unwrap();
    assert_ne!(v1.access_key_id(), v2.access_key_id());
    let denied = aws_as(&s, &v1, &["ec2", "describe-instances"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("UnauthorizedOperation"),
        "IMDSv1 credentials must be denied"
    );
    let allowed = aws_as(&s, &v2, &["ec2", "describe-instances"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
}
