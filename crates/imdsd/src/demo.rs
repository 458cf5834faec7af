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
/// whether it was created now.
pub async fn ensure_demo(store: &dyn Store) -> anyhow::Result<bool> {
    let record = demo_record()?;
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
