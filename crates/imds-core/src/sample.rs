//! A complete, realistic instance record: the `--demo` instance and the
//! fixture tests start from. Values follow the official metadata mock's
//! defaults where it has them.

use crate::ids::InstanceId;
use crate::instance::{
    BlockDevice, IamInstanceProfile, InstanceRecord, InstanceState, NetworkInterface, Placement, PublicKey,
    SecurityGroup,
};
use crate::options::MetadataOptions;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The account every sample resource belongs to.
pub const SAMPLE_ACCOUNT: &str = "123456789012";

/// A running instance in us-east-1a with one interface holding `ipv4` (and
/// `ipv6` if given), a role `demo-role`, a key pair, two tags and no user
/// data. Everything the metadata tree needs is filled in.
pub fn sample_instance(id: InstanceId, ipv4: Ipv4Addr, ipv6: Option<Ipv6Addr>) -> InstanceRecord {
    let suffix = id.as_str().trim_start_matches("i-").to_owned();
    let mut tags = BTreeMap::new();
    tags.insert("Name".to_owned(), "demo-instance".to_owned());
    tags.insert("Environment".to_owned(), "dev".to_owned());
    let sg = SecurityGroup { id: "sg-0b07f8f6cb485d4df".to_owned(), name: "default".to_owned() };
    InstanceRecord {
        instance_id: id,
        generation: 1,
        incarnation: 1,
        state: InstanceState::Running,
        reservation_id: format!("r-{suffix}"),
        owner_id: SAMPLE_ACCOUNT.to_owned(),
        image_id: "ami-0a887e401f7654935".to_owned(),
        instance_type: "m5.large".to_owned(),
        architecture: "x86_64".to_owned(),
        ami_launch_index: 0,
        kernel_id: None,
        ramdisk_id: None,
        product_codes: Vec::new(),
        billing_products: Vec::new(),
        instance_life_cycle: "on-demand".to_owned(),
        placement: Placement {
            availability_zone: "us-east-1a".to_owned(),
            availability_zone_id: "use1-az4".to_owned(),
            region: "us-east-1".to_owned(),
            group_name: None,
            partition_number: None,
            host_id: None,
        },
        network_interfaces: vec![NetworkInterface {
            interface_id: format!("eni-{suffix}"),
            mac: "0e:49:61:0f:c3:11".to_owned(),
            device_index: 0,
            network_card_index: 0,
            owner_id: SAMPLE_ACCOUNT.to_owned(),
            subnet_id: "subnet-be9b61d7".to_owned(),
            vpc_id: "vpc-d295a6a7".to_owned(),
            private_ipv4s: vec![ipv4],
            ipv6s: ipv6.into_iter().collect(),
            ipv4_prefixes: Vec::new(),
            ipv6_prefixes: Vec::new(),
            public_ipv4: Some(Ipv4Addr::new(192, 0, 2, 54)),
            subnet_ipv4_cidr: "172.16.0.0/16".parse().ok(),
            subnet_ipv6_cidrs: if ipv6.is_some() {
                "2001:db8:1234:1a00::/64".parse().into_iter().collect()
            } else {
                Vec::new()
            },
            vpc_ipv4_cidrs: "172.16.0.0/16".parse().into_iter().collect(),
            vpc_ipv6_cidrs: if ipv6.is_some() {
                "2001:db8:1234::/56".parse().into_iter().collect()
            } else {
                Vec::new()
            },
            security_groups: vec![sg],
        }],
        key: Some(PublicKey {
            name: "demo-key".to_owned(),
            openssh_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL"
                .to_owned(),
        }),
        iam_instance_profile: Some(IamInstanceProfile {
            arn: format!("arn:aws:iam::{SAMPLE_ACCOUNT}:instance-profile/demo-role"),
            id: "AIPA5BOGHHXZELSK34VU4".to_owned(),
            role_name: "demo-role".to_owned(),
        }),
        user_data: None,
        tags,
        metadata_options: MetadataOptions::default(),
        block_devices: vec![
            BlockDevice { name: "ami".to_owned(), device: "/dev/xvda".to_owned() },
            BlockDevice { name: "root".to_owned(), device: "/dev/xvda".to_owned() },
        ],
        launch_time: 1_700_000_000,
        monitoring: false,
        lightsail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_round_trips_through_json() {
        let id = InstanceId::parse("i-1234567890abcdef0").unwrap();
        let mut rec = sample_instance(id, Ipv4Addr::LOCALHOST, Some(Ipv6Addr::LOCALHOST));
        rec.user_data = Some(vec![0, 159, 146, 150, 255]);
        let json = serde_json::to_string(&rec).unwrap();
        assert_eq!(serde_json::from_str::<InstanceRecord>(&json).unwrap(), rec);
        assert_eq!(rec.local_hostname(), "ip-127-0-0-1.ec2.internal");
        assert_eq!(rec.source_networks().len(), 2);
    }
}
