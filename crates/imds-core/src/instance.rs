//! The launch record of an instance: everything the metadata tree is rendered
//! from. The control plane creates and edits it; the store keeps it; the agent
//! turns it into a data-plane snapshot.

use crate::ids::InstanceId;
use crate::options::MetadataOptions;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Raw user data may be at most this many bytes (16 KiB, before base64).
pub const USER_DATA_MAX_BYTES: usize = 16 * 1024;

/// Lifecycle state, with EC2's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// 0
    Pending,
    /// 16
    Running,
    /// 32
    ShuttingDown,
    /// 48
    Terminated,
    /// 64
    Stopping,
    /// 80
    Stopped,
}

impl InstanceState {
    /// EC2's state code (`instanceState/code`).
    pub fn code(self) -> u16 {
        match self {
            Self::Pending => 0,
            Self::Running => 16,
            Self::ShuttingDown => 32,
            Self::Terminated => 48,
            Self::Stopping => 64,
            Self::Stopped => 80,
        }
    }

    /// EC2's state name (`instanceState/name`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// Whether the data plane answers an instance in this state. EC2 serves
    /// metadata from boot (pending) until shutdown.
    pub fn is_served(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// Where the instance runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// `us-east-1a`
    pub availability_zone: String,
    /// `use1-az4`
    pub availability_zone_id: String,
    /// `us-east-1`
    pub region: String,
    /// Placement group, if any.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Partition of a partition placement group, if any.
    #[serde(default)]
    pub partition_number: Option<u32>,
    /// The host that serves the instance (`h-…`); also a Dedicated Host id.
    #[serde(default)]
    pub host_id: Option<String>,
}

/// A security group attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-…`
    pub id: String,
    /// Group name.
    pub name: String,
}

/// One elastic network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// `eni-…`
    pub interface_id: String,
    /// Lower-case, colon separated.
    pub mac: String,
    /// `DeviceIndex` (eth N).
    pub device_index: u32,
    /// Network card index.
    #[serde(default)]
    pub network_card_index: u32,
    /// Owning account.
    pub owner_id: String,
    /// `subnet-…`
    pub subnet_id: String,
    /// `vpc-…`
    pub vpc_id: String,
    /// Private IPv4 addresses, primary first.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub private_ipv4s: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub ipv6s: Vec<Ipv6Addr>,
    /// Delegated IPv4 prefixes (`Ipv4Prefix`).
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// Delegated IPv6 prefixes (`Ipv6Prefix`).
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// Public IPv4 associated with the primary private address, if any.
    #[serde(default)]
    pub public_ipv4: Option<Ipv4Addr>,
    /// Subnet IPv4 CIDR.
    #[serde(default)]
    pub subnet_ipv4_cidr: Option<Ipv4Net>,
    /// Subnet IPv6 CIDRs.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub subnet_ipv6_cidrs: Vec<Ipv6Net>,
    /// VPC IPv4 CIDRs, primary first.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub vpc_ipv4_cidrs: Vec<Ipv4Net>,
    /// VPC IPv6 CIDRs.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub vpc_ipv6_cidrs: Vec<Ipv6Net>,
    /// Security groups of this interface.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub security_groups: Vec<SecurityGroup>,
}

/// The key pair the instance was launched with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Key pair name.
    pub name: String,
    /// OpenSSH public key material (`ssh-ed25519 AAAA…`), without comment.
    pub openssh_key: String,
}

/// The instance profile and the role it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamInstanceProfile {
    /// `arn:aws:iam::<account>:instance-profile/<name>`
    pub arn: String,
    /// `AIPA…` (21 characters)
    pub id: String,
    /// The role name served under `iam/security-credentials/`.
    pub role_name: String,
}

/// One entry of `block-device-mapping/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// `ami`, `root`, `ebsN`, `ephemeralN` or `swap`.
    pub name: String,
    /// Device name, e.g. `/dev/xvda` or `sdb`.
    pub device: String,
}

/// Everything known about one instance: its desired state (the spec).
///
/// `generation` grows on every change made through the control plane; an
/// agent reports the generation it serves, which is how `pending` becomes
/// `applied`. `incarnation` changes at every start, and tokens are bound to
/// it, so a stop/start invalidates the tokens of the previous run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `i-…`
    pub instance_id: InstanceId,
    /// Spec generation, starts at 1.
    pub generation: u64,
    /// Random per start; tokens are bound to it.
    pub incarnation: u64,
    /// Lifecycle state.
    pub state: InstanceState,
    /// `r-…`
    pub reservation_id: String,
    /// Owning account (12 digits).
    pub owner_id: String,
    /// `ami-…`
    pub image_id: String,
    /// `m5.large`
    pub instance_type: String,
    /// `x86_64`, `arm64` or `i386`.
    pub architecture: String,
    /// Launch order within its RunInstances call.
    #[serde(default)]
    pub ami_launch_index: u32,
    /// Kernel (paravirtual only).
    #[serde(default)]
    pub kernel_id: Option<String>,
    /// RAM disk (paravirtual only).
    #[serde(default)]
    pub ramdisk_id: Option<String>,
    /// Marketplace product codes.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub product_codes: Vec<String>,
    /// Billing products (identity document only).
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub billing_products: Vec<String>,
    /// `on-demand`, `spot`, `scheduled`, …
    pub instance_life_cycle: String,
    /// Placement.
    pub placement: Placement,
    /// Interfaces; the one with device index 0 is the primary.
    #[serde(deserialize_with = "compact_vec::deserialize")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Key pair.
    #[serde(default)]
    pub key: Option<PublicKey>,
    /// Instance profile.
    #[serde(default)]
    pub iam_instance_profile: Option<IamInstanceProfile>,
    /// Raw user data (stored base64 in JSON).
    #[serde(default, with = "opt_base64")]
    pub user_data: Option<Vec<u8>>,
    /// Instance tags, ordered by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Metadata options in force.
    pub metadata_options: MetadataOptions,
    /// Block device mapping.
    #[serde(default, deserialize_with = "compact_vec::deserialize")]
    pub block_devices: Vec<BlockDevice>,
    /// Last launch or start, Unix seconds (`pendingTime`).
    pub launch_time: u64,
    /// Detailed monitoring (`fws/instance-monitoring`).
    #[serde(default)]
    pub monitoring: bool,
    /// Set for instances created through the Lightsail API (their name and
    /// plan); `None` for EC2 launches. Absent from the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightsail: Option<LightsailInfo>,
}

/// What the Lightsail API knows about an instance it created. The name is
/// unique among the live Lightsail instances of a region (the control plane
/// keeps an index); everything else is fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightsailInfo {
    /// The instance name (`web-1`).
    pub name: String,
    /// The UUID at the end of the instance's Lightsail ARN.
    pub resource_id: String,
    /// The blueprint (`amazon_linux_2023`).
    pub blueprint_id: String,
    /// The bundle (`nano_3_0`).
    pub bundle_id: String,
    /// `dualstack`, `ipv4` or `ipv6`.
    pub ip_address_type: String,
    /// When it was created, Unix milliseconds (`createdAt`).
    pub created_at_millis: u64,
}

impl InstanceRecord {
    /// The primary interface (device index 0), if the instance has one.
    pub fn primary_interface(&self) -> Option<&NetworkInterface> {
        self.network_interfaces.iter().find(|n| n.device_index == 0)
    }

    /// Primary private IPv4 of device 0 (`local-ipv4`).
    pub fn private_ipv4(&self) -> Option<Ipv4Addr> {
        self.primary_interface().and_then(|n| n.private_ipv4s.first().copied())
    }

    /// First IPv6 of device 0 (`ipv6`).
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.primary_interface().and_then(|n| n.ipv6s.first().copied())
    }

    /// Public IPv4 of device 0.
    pub fn public_ipv4(&self) -> Option<Ipv4Addr> {
        self.primary_interface().and_then(|n| n.public_ipv4)
    }

    /// `ec2.internal` in us-east-1, `<region>.compute.internal` elsewhere.
    pub fn private_dns_suffix(&self) -> String {
        if self.placement.region == "us-east-1" {
            "ec2.internal".to_owned()
        } else {
            format!("{}.compute.internal", self.placement.region)
        }
    }

    /// `hostname` / `local-hostname`: IP-based name of the primary private
    /// IPv4, or the resource name on an IPv6-only instance.
    pub fn local_hostname(&self) -> String {
        match self.private_ipv4() {
            Some(ip) => ip_hostname(ip, &self.private_dns_suffix()),
            None => format!("{}.{}", self.instance_id, self.private_dns_suffix()),
        }
    }

    /// `public-hostname`, present only with a public IPv4.
    pub fn public_hostname(&self) -> Option<String> {
        self.public_ipv4().map(|ip| public_hostname(ip, &self.placement.region))
    }

    /// `services/partition`.
    pub fn partition(&self) -> &'static str {
        partition_of(&self.placement.region)
    }

    /// `services/domain`.
    pub fn domain(&self) -> &'static str {
        if self.placement.region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" }
    }

    /// Every source network that identifies this instance to the data
    /// plane: private addresses (as host routes) and delegated prefixes.
    pub fn source_networks(&self) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for n in &self.network_interfaces {
            nets.extend(n.private_ipv4s.iter().map(|a| IpNet::from(IpAddr::V4(*a))));
            nets.extend(n.ipv6s.iter().map(|a| IpNet::from(IpAddr::V6(*a))));
            nets.extend(n.ipv4_prefixes.iter().map(|p| IpNet::V4(*p)));
            nets.extend(n.ipv6_prefixes.iter().map(|p| IpNet::V6(*p)));
        }
        nets
    }

    /// All security groups of device 0 (`security-groups`).
    pub fn security_groups(&self) -> &[SecurityGroup] {
        self.primary_interface().map(|n| n.security_groups.as_slice()).unwrap_or(&[])
    }
}

/// `aws`, `aws-cn` or `aws-us-gov` for a region name.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `ip-10-0-0-12.<suffix>`
pub fn ip_hostname(ip: Ipv4Addr, suffix: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{suffix}")
}

/// `ec2-203-0-113-25.compute-1.amazonaws.com` in us-east-1,
/// `ec2-203-0-113-25.<region>.compute.amazonaws.com` elsewhere.
pub fn public_hostname(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ec2-{a}-{b}-{c}-{d}.compute-1.amazonaws.com")
    } else {
        format!("ec2-{a}-{b}-{c}-{d}.{region}.compute.amazonaws.com")
    }
}

/// Whether a tag key may be exposed under `tags/instance/`: letters, digits
/// and `+ - = . , _ : @`, 1 to 255 characters, not `.`, `..` or `_index`.
pub fn is_imds_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 255
        && !matches!(key, "." | ".." | "_index")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-=.,_:@".contains(&b))
}

/// The exact EC2 message for a tag key that IMDS cannot expose.
pub fn imds_tag_key_error(key: &str) -> String {
    format!(
        "'{key}' is not a valid tag key. Tag keys must match pattern ([0-9a-zA-Z\\\\-_+=,.@:]{{1,255}}), and must not be a reserved name ('.', '..', '_index')"
    )
}

/// Lists are decoded with their exact length: serde grows a `Vec` by
/// doubling (no length hint from JSON), and a record lives as long as its
/// instance is served, so the spare capacity (3 of 4 interface slots, ~1 KiB
/// per record) would be held for every instance of the fleet (issue #9).
mod compact_vec {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        let mut v = Vec::<T>::deserialize(d)?;
        v.shrink_to_fit();
        Ok(v)
    }
}

mod opt_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_lists_hold_no_spare_capacity() {
        let id = InstanceId::parse("i-0123456789abcdef0").unwrap();
        let record = crate::sample::sample_instance(id, Ipv4Addr::new(10, 0, 0, 1), None);
        let json = serde_json::to_vec(&record).unwrap();
        let decoded: InstanceRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(decoded.network_interfaces.capacity(), decoded.network_interfaces.len());
        assert_eq!(decoded.block_devices.capacity(), decoded.block_devices.len());
        let eni = &decoded.network_interfaces[0];
        assert_eq!(eni.security_groups.capacity(), eni.security_groups.len());
        assert_eq!(eni.private_ipv4s.capacity(), eni.private_ipv4s.len());
    }

    #[test]
    fn tag_key_rules() {
        for ok in ["Name", "aws:autoscaling:groupName", "a+b-c=d.e,f_g:h@i", "0"] {
            assert!(is_imds_tag_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "_index", "has space", "a/b", "ü", &"x".repeat(256)] {
            assert!(!is_imds_tag_key(bad), "{bad}");
        }
    }

    #[test]
    fn tag_key_error_matches_ec2_text() {
        assert_eq!(
            imds_tag_key_error("a b"),
            r"'a b' is not a valid tag key. Tag keys must match pattern ([0-9a-zA-Z\\-_+=,.@:]{1,255}), and must not be a reserved name ('.', '..', '_index')"
        );
    }

    #[test]
    fn hostnames_follow_region_naming() {
        let ip = Ipv4Addr::new(10, 251, 50, 12);
        assert_eq!(ip_hostname(ip, "ec2.internal"), "ip-10-251-50-12.ec2.internal");
        assert_eq!(
            public_hostname(Ipv4Addr::new(203, 0, 113, 25), "us-west-2"),
            "ec2-203-0-113-25.us-west-2.compute.amazonaws.com"
        );
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("eu-west-1"), "aws");
    }
}
