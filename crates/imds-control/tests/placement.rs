//! Host placement over the wire: `ModifyInstancePlacement` and where
//! `RunInstances` puts instances, on one host and in a fleet (live hosts
//! registered under `hosts/`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{Server, texts};
use imds_control::HostAssignment;
use imds_store::records;
use imds_store::{Op, Store};

async fn fleet() -> Server {
    Server::start_with(|c| c.host_assignment = HostAssignment::LiveHosts).await
}

async fn alive(s: &Server, host: &str) {
    s.store.txn(Vec::new(), vec![Op::put(records::host_key(host), "{}")]).await.unwrap().unwrap();
}

async fn host_of(s: &Server, id: &str) -> Option<String> {
    s.record(id).await.placement.host_id
}

#[tokio::test]
async fn a_stopped_instance_changes_host_and_its_spec_generation() {
    let s = Server::start().await;
    let id = s.run(&[]).await.remove(0);
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("HostId", "h-2")]).await;
    r.assert_error(400, "IncorrectInstanceState");
    s.ec2("StopInstances", &[("InstanceId.1", &id)]).await.assert_ok();
    let before = s.record(&id).await.generation;

    let r =
        s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("HostId", "h-2"), ("DryRun", "true")]).await;
    r.assert_error(412, "DryRunOperation");
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("HostId", "h-2")]).await;
    r.assert_ok();
    assert_eq!(r.text("return").as_deref(), Some("true"));
    let after = s.record(&id).await;
    assert_eq!((after.placement.host_id.as_deref(), after.generation), (Some("h-2"), before + 1));

    let d = s.ec2("DescribeInstances", &[("InstanceId.1", &id)]).await;
    assert_eq!(d.text("hostId").as_deref(), Some("h-2"));
    assert_eq!(d.text("tenancy").as_deref(), Some("host"));
    assert_eq!(d.metadata_states(), ["pending"], "the new host has not acknowledged the move yet");

    // Groups and partitions; tenancy must agree with the host.
    s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("GroupName", "pg"), ("PartitionNumber", "3")])
        .await
        .assert_ok();
    let p = s.record(&id).await.placement;
    assert_eq!((p.group_name.as_deref(), p.partition_number), (Some("pg"), Some(3)));
    s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("GroupName", "")]).await.assert_ok();
    let p = s.record(&id).await.placement;
    assert_eq!((p.group_name, p.partition_number), (None, None));
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("Tenancy", "default")]).await;
    r.assert_error(400, "InvalidParameterCombination");
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("PartitionNumber", "2")]).await;
    r.assert_error(400, "InvalidParameterCombination");
    s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("Affinity", "host"), ("Tenancy", "host")])
        .await
        .assert_ok();

    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id)]).await;
    r.assert_error(400, "InvalidParameterCombination");
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &id), ("HostIds", "h-1")]).await;
    r.assert_error(400, "UnknownParameter");
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", "i-0000ffff"), ("HostId", "h-1")]).await;
    r.assert_error(400, "InvalidInstanceID.NotFound");
}

#[tokio::test]
async fn one_host_mode_takes_any_host_id_and_chooses_none() {
    let s = Server::start().await;
    let id = s.run(&[]).await.remove(0);
    assert_eq!(host_of(&s, &id).await, None);
    let id = s.run(&[("Placement.HostId", "h-nowhere")]).await.remove(0);
    assert_eq!(host_of(&s, &id).await.as_deref(), Some("h-nowhere"));
}

#[tokio::test]
async fn fleet_launches_go_to_live_hosts_only() {
    let s = fleet().await;
    let launch = [("ImageId", "ami-0abcdef1234567890"), ("MinCount", "1"), ("MaxCount", "1")];
    let r = s.ec2("RunInstances", &launch).await;
    r.assert_error(500, "InsufficientInstanceCapacity");
    assert!(s.store.list(records::INSTANCES_PREFIX).await.unwrap().0.is_empty(), "nothing was created");

    alive(&s, "h-b").await;
    alive(&s, "h-a").await;
    let ids = s.run(&[("MinCount", "3"), ("MaxCount", "3")]).await;
    let mut hosts = Vec::new();
    for id in &ids {
        hosts.push(host_of(&s, id).await.unwrap());
    }
    assert_eq!(hosts, ["h-a", "h-b", "h-a"], "spread, least loaded first, ties by id");

    let mut named = launch.to_vec();
    named.push(("Placement.HostId", "h-c"));
    s.ec2("RunInstances", &named).await.assert_error(400, "InvalidHostID.NotFound");
    named.pop();
    named.push(("Placement.HostId", "h-b"));
    let r = s.ec2("RunInstances", &named).await;
    r.assert_ok();
    assert_eq!(texts(&r.body, "hostId"), ["h-b"]);

    s.ec2("StopInstances", &[("InstanceId.1", &ids[0])]).await.assert_ok();
    let r = s.ec2("ModifyInstancePlacement", &[("InstanceId", &ids[0]), ("HostId", "h-c")]).await;
    r.assert_error(400, "InvalidHostID.NotFound");
    s.ec2("ModifyInstancePlacement", &[("InstanceId", &ids[0]), ("HostId", "h-b")]).await.assert_ok();
    assert_eq!(host_of(&s, &ids[0]).await.as_deref(), Some("h-b"));
}
