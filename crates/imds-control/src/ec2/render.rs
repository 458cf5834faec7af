//! XML shapes shared by several actions: `Reservation`, `Instance` (with
//! its network interfaces, placement, tags and `metadataOptions`),
//! `InstanceState`, `InstanceMetadataOptionsResponse`, tag and group sets.
//! Element names are the `locationName`s of the botocore EC2 model.

use crate::ops::OptionsState;
use crate::xml::Xml;
use imds_core::timefmt::iso8601_secs;
use imds_core::{InstanceRecord, InstanceState, MetadataOptions, NetworkInterface, SecurityGroup};
use std::collections::BTreeMap;

/// `2024-01-02T03:04:05.000Z`, the timestamp form EC2 answers with.
pub fn iso_time(secs: u64) -> String {
    let t = iso8601_secs(secs);
    match t.strip_suffix('Z') {
        Some(base) => format!("{base}.000Z"),
        None => t,
    }
}

/// `<name><code>16</code><name>running</name></name>`.
pub fn state(x: &mut Xml, element: &str, s: InstanceState) {
    x.structure(element, |x| {
        x.leaf("code", s.code()).leaf("name", s.name());
    });
}

/// An `InstanceMetadataOptionsResponse` under `element`.
pub fn options(x: &mut Xml, element: &str, o: &MetadataOptions, s: OptionsState) {
    x.structure(element, |x| {
        x.leaf("state", s.as_str())
            .leaf("httpTokens", o.http_tokens.as_str())
            .leaf("httpPutResponseHopLimit", o.http_put_response_hop_limit.get())
            .leaf("httpEndpoint", o.http_endpoint.as_str())
            .leaf("httpProtocolIpv6", o.http_protocol_ipv6.as_str())
            .leaf("instanceMetadataTags", o.instance_metadata_tags.as_str());
    });
}

/// `<tagSet>` of `{key, value}` items.
pub fn tags(x: &mut Xml, tags: &BTreeMap<String, String>) {
    x.list("tagSet", tags, |x, (k, v)| {
        x.leaf("key", k).leaf("value", v);
    });
}

/// `<groupSet>` of `{groupId, groupName}` items.
pub fn groups(x: &mut Xml, groups: &[SecurityGroup]) {
    x.list("groupSet", groups, |x, g| {
        x.leaf("groupId", &g.id).leaf("groupName", &g.name);
    });
}

/// One instance as DescribeInstances / RunInstances show it, in `shown`
/// state (RunInstances shows `pending` for what is stored as running).
pub fn instance(x: &mut Xml, r: &InstanceRecord, options_state: OptionsState, shown: InstanceState) {
    let live = shown != InstanceState::Terminated;
    let running = matches!(shown, InstanceState::Running | InstanceState::Pending);
    let primary = r.primary_interface().filter(|_| live);
    let public_ip = r.public_ipv4().filter(|_| running);
    let launch = iso_time(r.launch_time);
    x.leaf("instanceId", &r.instance_id).leaf("imageId", &r.image_id);
    state(x, "instanceState", shown);
    x.leaf("privateDnsName", if live && primary.is_some() { r.local_hostname() } else { String::new() })
        .leaf(
            "dnsName",
            public_ip
                .map(|ip| imds_core::instance::public_hostname(ip, &r.placement.region))
                .unwrap_or_default(),
        )
        .leaf("reason", "");
    x.leaf_opt("keyName", r.key.as_ref().map(|k| &k.name)).leaf("amiLaunchIndex", r.ami_launch_index);
    x.list("productCodes", &r.product_codes, |x, code| {
        x.leaf("productCode", code).leaf("type", "marketplace");
    });
    x.leaf("instanceType", &r.instance_type).leaf("launchTime", &launch);
    x.structure("placement", |x| {
        let p = &r.placement;
        x.leaf("availabilityZoneId", &p.availability_zone_id)
            .leaf("availabilityZone", &p.availability_zone)
            .leaf("groupName", p.group_name.as_deref().unwrap_or_default())
            .leaf_opt("partitionNumber", p.partition_number)
            .leaf_opt("hostId", p.host_id.as_deref())
            .leaf("tenancy", if p.host_id.is_some() { "host" } else { "default" });
    });
    x.leaf_opt("kernelId", r.kernel_id.as_deref()).leaf_opt("ramdiskId", r.ramdisk_id.as_deref());
    x.structure("monitoring", |x| {
        x.leaf("state", if r.monitoring { "enabled" } else { "disabled" });
    });
    if let Some(n) = primary {
        x.leaf("subnetId", &n.subnet_id).leaf("vpcId", &n.vpc_id);
        x.leaf_opt("privateIpAddress", n.private_ipv4s.first());
    }
    x.leaf_opt("ipAddress", public_ip);
    x.leaf("sourceDestCheck", true);
    groups(x, primary.map(|n| n.security_groups.as_slice()).unwrap_or_default());
    if matches!(shown, InstanceState::Stopped | InstanceState::Stopping | InstanceState::Terminated) {
        x.structure("stateReason", |x| {
            x.leaf("code", "Client.UserInitiatedShutdown")
                .leaf("message", "Client.UserInitiatedShutdown: User initiated shutdown");
        });
    }
    let root_device = r.block_devices.iter().find(|b| b.name == "root").map(|b| b.device.as_str());
    x.leaf("architecture", &r.architecture)
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", root_device.unwrap_or("/dev/xvda"))
        .empty("blockDeviceMapping");
    if r.instance_life_cycle != "on-demand" && !r.instance_life_cycle.is_empty() {
        x.leaf("instanceLifecycle", &r.instance_life_cycle);
    }
    x.leaf("virtualizationType", "hvm");
    tags(x, &r.tags);
    x.leaf("hypervisor", "xen");
    let interfaces: Vec<&NetworkInterface> =
        if live { r.network_interfaces.iter().collect() } else { Vec::new() };
    x.list("networkInterfaceSet", interfaces, |x, n| interface(x, r, n, running, &launch));
    if let Some(p) = &r.iam_instance_profile {
        x.structure("iamInstanceProfile", |x| {
            x.leaf("arn", &p.arn).leaf("id", &p.id);
        });
    }
    x.leaf("ebsOptimized", false).leaf("enaSupport", true);
    options(x, "metadataOptions", &r.metadata_options, options_state);
    x.leaf_opt("ipv6Address", primary.and_then(|n| n.ipv6s.first()));
    x.leaf("platformDetails", "Linux/UNIX").leaf("usageOperation", "RunInstances");
}

fn interface(x: &mut Xml, r: &InstanceRecord, n: &NetworkInterface, running: bool, launch: &str) {
    let suffix = r.private_dns_suffix();
    let public = n.public_ipv4.filter(|_| running);
    let association = |x: &mut Xml| {
        if let Some(ip) = public {
            x.structure("association", |x| {
                x.leaf("publicIp", ip)
                    .leaf("publicDnsName", imds_core::instance::public_hostname(ip, &r.placement.region))
                    .leaf("ipOwnerId", "amazon");
            });
        }
    };
    x.leaf("networkInterfaceId", &n.interface_id)
        .leaf("subnetId", &n.subnet_id)
        .leaf("vpcId", &n.vpc_id)
        .leaf("description", "")
        .leaf("ownerId", &n.owner_id)
        .leaf("status", "in-use")
        .leaf("macAddress", &n.mac);
    x.leaf_opt("privateIpAddress", n.private_ipv4s.first());
    x.leaf_opt(
        "privateDnsName",
        n.private_ipv4s.first().map(|ip| imds_core::instance::ip_hostname(*ip, &suffix)),
    );
    x.leaf("sourceDestCheck", true);
    groups(x, &n.security_groups);
    x.structure("attachment", |x| {
        let id = n.interface_id.trim_start_matches("eni-");
        x.leaf("attachmentId", format!("eni-attach-{id}"))
            .leaf("deviceIndex", n.device_index)
            .leaf("status", "attached")
            .leaf("attachTime", launch)
            .leaf("deleteOnTermination", true)
            .leaf("networkCardIndex", n.network_card_index);
    });
    association(x);
    x.list("privateIpAddressesSet", n.private_ipv4s.iter().enumerate(), |x, (i, ip)| {
        x.leaf("privateIpAddress", ip)
            .leaf("privateDnsName", imds_core::instance::ip_hostname(*ip, &suffix))
            .leaf("primary", i == 0);
        if i == 0 {
            association(x);
        }
    });
    x.list("ipv6AddressesSet", &n.ipv6s, |x, ip| {
        x.leaf("ipv6Address", ip).leaf("isPrimaryIpv6", false);
    });
    x.list("ipv4PrefixSet", &n.ipv4_prefixes, |x, p| {
        x.leaf("ipv4Prefix", p);
    });
    x.list("ipv6PrefixSet", &n.ipv6_prefixes, |x, p| {
        x.leaf("ipv6Prefix", p);
    });
    x.leaf("interfaceType", "interface");
}

/// The members of one `Reservation` (inside its `<item>` or at the top of
/// a RunInstances response).
pub fn reservation(
    x: &mut Xml,
    reservation_id: &str,
    owner_id: &str,
    instances: &[(&InstanceRecord, OptionsState, InstanceState)],
) {
    x.leaf("reservationId", reservation_id).leaf("ownerId", owner_id);
    x.empty("groupSet");
    x.list("instancesSet", instances, |x, (r, o, s)| instance(x, r, *o, *s));
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_core::InstanceId;
    use imds_core::sample::sample_instance;
    use std::net::Ipv4Addr;

    #[test]
    fn launch_time_has_milliseconds() {
        assert_eq!(iso_time(1_700_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn options_shape() {
        let mut x = Xml::response("ModifyInstanceMetadataOptions", "r");
        options(&mut x, "instanceMetadataOptions", &MetadataOptions::default(), OptionsState::Pending);
        assert!(x.finish().contains(
            "<instanceMetadataOptions><state>pending</state><httpTokens>optional</httpTokens><httpPutResponseHopLimit>1</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint><httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags></instanceMetadataOptions>"
        ));
    }

    #[test]
    fn terminated_instances_lose_their_network() {
        let r = sample_instance(InstanceId::parse("i-1234abcd").unwrap(), Ipv4Addr::new(10, 0, 0, 9), None);
        let mut x = Xml::response("DescribeInstances", "r");
        instance(&mut x, &r, OptionsState::Applied, InstanceState::Terminated);
        let doc = x.finish();
        assert!(doc.contains("<networkInterfaceSet/>"));
        assert!(!doc.contains("privateIpAddress"));
        assert!(doc.contains("<privateDnsName/><dnsName/><reason/>"));
        let mut x = Xml::response("DescribeInstances", "r");
        instance(&mut x, &r, OptionsState::Applied, InstanceState::Running);
        let doc = x.finish();
        assert!(
            doc.contains("<privateIpAddress>10.0.0.9</privateIpAddress><ipAddress>192.0.2.54</ipAddress>")
        );
        assert!(doc.contains("<dnsName>ec2-192-0-2-54.compute-1.amazonaws.com</dnsName>"));
    }
}
