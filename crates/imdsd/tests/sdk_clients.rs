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
