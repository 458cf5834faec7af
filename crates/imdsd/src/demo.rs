//! The `--demo` instance: one instance that owns the loopback addresses, so
//! a newcomer can `curl` the service on the machine that runs it.

use imds_core::sample::sample_instance;
use imds_core::{Enabled, InstanceId, InstanceRecord};
use imds_store::{Compare, Op, Store, StoreError};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Marks that the demo instance was created, holding its id.
const DEMO_MARKER: &str = imds_store::records::DEMO_INSTANCE_KEY;

/// The demo instance's id.
pub const DEMO_INSTANCE_ID: &str = "i-0123456789abcdef0";

/// The demo record: loopback addresses, IPv6 endpoint on, role
/// `demo-role`, tags `Name` and `Environment` visible in metadata, user data.
pub fn demo_record() -> Result<InstanceRecord, imds_core::ids::MalformedId> {
    let id = InstanceId::parse(DEMO_INSTANCE_ID)?;
    let mut record = sample_instance(id, Ipv4Addr::LOCALHOST, Some(Ipv6Addr::LOCALHOST));
    record.metadata_options.http_protocol_ipv6 = Enabled::Enabled;
    record.metadata_options.instance_metadata_tags = Enabled::Enabled;
    record.user_data = Some(b"#!/bin/sh\necho 'hello from imdsd user data'\n".to_vec());
    Ok(record)
}

/// Creates the demo instance unless this store already had one; returns
/// whether it was created now. It is launched at `now_secs`, as a
/// RunInstances would launch it: its `pendingTime` and its first
/// credentials' `LastUpdated` are the moment it was created.
pub async fn ensure_demo(store: &dyn Store, now_secs: u64) -> anyhow::Result<bool> {
    let mut record = demo_record()?;
    record.launch_time = now_secs;
    let key = imds_store::records::instance_key(&record.instance_id);
    let value = serde_json::to_vec(&record)?;
    let created = store
        .txn(
            vec![Compare::Absent(DEMO_MARKER.to_owned()), Compare::Absent(key.clone())],
            vec![Op::put(DEMO_MARKER, DEMO_INSTANCE_ID), Op::put(key, value)],
        )
        .await
        .map_err(|e: StoreError| anyhow::anyhow!("cannot create the demo instance: {e}"))?;
    Ok(created.is_some())
}

/// Where the demo access key is kept, so it stays the same across restarts.
const DEMO_CREDENTIALS_KEY: &str = "secrets/demo-credentials";

/// Name of the AWS CLI profile `--demo` writes.
pub const DEMO_PROFILE: &str = "imdsd-demo";

/// The demo's control-plane access key (allowed everything).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DemoKey {
    /// `AKIA…`
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

/// The demo access key, created once per store.
pub async fn demo_key(store: &dyn Store) -> anyhow::Result<DemoKey> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    use base64::Engine;
    let mut random = [0u8; 46];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String =
        "AKIA".chars().chain(random[..16].iter().map(|b| ALNUM[usize::from(b & 31)] as char)).collect();
    let secret = base64::engine::general_purpose::STANDARD.encode(&random[16..]);
    let fresh = serde_json::to_vec(&DemoKey { access_key_id: id, secret_access_key: secret })?;
    let stored = imds_store::records::put_secret_if_absent(store, DEMO_CREDENTIALS_KEY, fresh).await?;
    Ok(serde_json::from_slice(&stored)?)
}

/// Writes an AWS shared-credentials file holding the `imdsd-demo` profile
/// (mode 0600) and returns its path.
pub fn write_profile(data_dir: &std::path::Path, key: &DemoKey) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("aws-credentials");
    let mut file =
        std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&path)?;
    writeln!(
        file,
        "[{DEMO_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}",
        key.access_key_id, key.secret_access_key
    )?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}
