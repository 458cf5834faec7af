//! A throw-away control plane for poking at with the AWS CLI (EC2 and
//! Lightsail):
//!
//! ```sh
//! cargo run -p imds-control --example serve -- 127.0.0.1:8773
//! export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
//! aws ec2 describe-instances --endpoint-url http://127.0.0.1:8773 --region us-east-1
//! aws lightsail create-instances --instance-names web-1 --availability-zone us-east-1a \
//!   --blueprint-id amazon_linux_2023 --bundle-id nano_3_0 --endpoint-url http://127.0.0.1:8773 --region us-east-1
//! ```
//!
//! In-memory store, one policy-free access key, nothing persisted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use imds_control::{ControlConfig, ControlPlane, StaticCredential};
use imds_core::SystemClock;
use imds_store::MemoryStore;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8773".to_owned());
    let config = ControlConfig {
        credentials: vec![StaticCredential {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
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
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("EC2 and Lightsail control plane on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, cp.router()).await.unwrap();
}
