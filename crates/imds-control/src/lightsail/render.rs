//! The response shapes of the Lightsail model this endpoint produces
//! (`Operation`, `Instance` and their parts), serialised in model member
//! order. Timestamps (`IsoDate`) are epoch seconds as JSON numbers; absent
//! values are left out, as the service does.

use super::catalog;
use crate::ops::InstanceView;
use imds_core::{InstanceRecord, LightsailInfo};
use serde::Serialize;

/// Epoch seconds (with milliseconds) as the JSON number Lightsail sends.
pub fn epoch(millis: u64) -> f64 {
    // Exact for every time before the year 287396.
    (millis / 1000) as f64 + (millis % 1000) as f64 / 1000.0
}

/// `ResourceLocation`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// `us-east-1a`
    pub availability_zone: String,
    /// `us-east-1`
    pub region_name: String,
}

impl Location {
    /// Where an instance is.
    pub fn of(record: &InstanceRecord) -> Self {
        Self {
            availability_zone: record.placement.availability_zone.clone(),
            region_name: record.placement.region.clone(),
        }
    }
}

/// `Operation`: what a mutating call started.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// A fresh UUID.
    pub id: String,
    /// The instance name.
    pub resource_name: String,
    /// Always `Instance` here.
    pub resource_type: &'static str,
    /// When the operation began.
    pub created_at: f64,
    /// Where.
    pub location: Location,
    /// Whether the operation is finished.
    pub is_terminal: bool,
    /// `CreateInstance`, `DeleteInstance`, `UpdateInstanceMetadataOptions`.
    pub operation_type: &'static str,
    /// `Started`, `Succeeded`, …
    pub status: &'static str,
    /// When the status last changed.
    pub status_changed_at: f64,
}

impl Operation {
    /// An operation on `record` (which must be a Lightsail instance) at
    /// `now_millis`.
    pub fn new(
        record: &InstanceRecord,
        name: &str,
        operation_type: &'static str,
        status: &'static str,
        now_millis: u64,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            resource_name: name.to_owned(),
            resource_type: "Instance",
            created_at: epoch(now_millis),
            location: Location::of(record),
            is_terminal: matches!(status, "Succeeded" | "Failed" | "Completed"),
            operation_type,
            status,
            status_changed_at: epoch(now_millis),
        }
    }
}

/// `Tag`.
#[derive(Debug, Clone, Serialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value (empty when none was given).
    pub value: String,
}

/// `Disk` (the system disk only).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// Same as the instance's.
    pub created_at: f64,
    /// From the bundle.
    pub size_in_gb: u32,
    /// Always true here.
    pub is_system_disk: bool,
    /// gp2 baseline: 3 per GB, at least 100.
    pub iops: u32,
    /// Root device name.
    pub path: String,
    /// The instance name.
    pub attached_to: String,
    /// `attached`.
    pub attachment_state: &'static str,
}

/// `InstanceHardware`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    /// vCPUs.
    pub cpu_count: u32,
    /// The system disk.
    pub disks: Vec<Disk>,
    /// RAM.
    pub ram_size_in_gb: f64,
}

/// `MonthlyTransfer`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthlyTransfer {
    /// Allowance.
    pub gb_per_month_allocated: u32,
}

/// `InstancePortInfo`: the firewall Lightsail opens by default.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortInfo {
    /// First port.
    pub from_port: i32,
    /// Last port.
    pub to_port: i32,
    /// `tcp`.
    pub protocol: &'static str,
    /// `Anywhere (0.0.0.0/0)`.
    pub access_from: &'static str,
    /// `public`, as the service spells it.
    pub access_type: &'static str,
    /// Empty.
    pub common_name: &'static str,
    /// `inbound`.
    pub access_direction: &'static str,
    /// `0.0.0.0/0`.
    pub cidrs: Vec<&'static str>,
    /// `::/0` for instances with IPv6.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6_cidrs: Vec<&'static str>,
}

/// `InstanceNetworking`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// Transfer allowance.
    pub monthly_transfer: MonthlyTransfer,
    /// Open ports.
    pub ports: Vec<PortInfo>,
}

/// `InstanceState`.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    /// EC2's state code.
    pub code: u16,
    /// `running`, …
    pub name: &'static str,
}

/// `InstanceMetadataOptions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    /// `pending` / `applied`.
    pub state: &'static str,
    /// `optional` / `required`.
    pub http_tokens: &'static str,
    /// `enabled` / `disabled`.
    pub http_endpoint: &'static str,
    /// 1–64.
    pub http_put_response_hop_limit: u8,
    /// `enabled` / `disabled`.
    pub http_protocol_ipv6: &'static str,
}

/// `Instance`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Name.
    pub name: String,
    /// `arn:aws:lightsail:<region>:<account>:Instance/<uuid>`.
    pub arn: String,
    /// `<account>/<instance id>`: ties the Lightsail name to the EC2 id.
    pub support_code: String,
    /// Creation time.
    pub created_at: f64,
    /// Where.
    pub location: Location,
    /// `Instance`.
    pub resource_type: &'static str,
    /// Tags, by key.
    pub tags: Vec<Tag>,
    /// Blueprint.
    pub blueprint_id: String,
    /// Bundle.
    pub bundle_id: String,
    /// Never a static IP here.
    pub is_static_ip: bool,
    /// Primary private IPv4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ip_address: Option<String>,
    /// Public IPv4, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip_address: Option<String>,
    /// IPv6 addresses of the primary interface.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<String>,
    /// `dualstack`, `ipv4`, `ipv6`.
    pub ip_address_type: String,
    /// From the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// From the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    /// Lifecycle state.
    pub state: State,
    /// Login user of the blueprint.
    pub username: &'static str,
    /// Key pair, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key_name: Option<String>,
    /// IMDS settings.
    pub metadata_options: MetadataOptions,
}

/// The ARN of a Lightsail instance.
pub fn instance_arn(region: &str, account: &str, info: &LightsailInfo) -> String {
    format!("arn:aws:lightsail:{region}:{account}:Instance/{}", info.resource_id)
}

fn port(n: i32, ipv6: bool) -> PortInfo {
    PortInfo {
        from_port: n,
        to_port: n,
        protocol: "tcp",
        access_from: "Anywhere (0.0.0.0/0)",
        access_type: "public",
        common_name: "",
        access_direction: "inbound",
        cidrs: vec!["0.0.0.0/0"],
        ipv6_cidrs: if ipv6 { vec!["::/0"] } else { Vec::new() },
    }
}

/// The `Instance` shape of a Lightsail instance (`None` for instances the
/// Lightsail API did not create).
pub fn instance(view: &InstanceView, account: &str) -> Option<Instance> {
    let r = &view.record;
    let info = r.lightsail.as_ref()?;
    let created_at = epoch(info.created_at_millis);
    let ipv6: Vec<String> =
        r.primary_interface().map(|n| n.ipv6s.iter().map(ToString::to_string).collect()).unwrap_or_default();
    let bundle = catalog::bundle(&info.bundle_id).ok();
    let root = r
        .block_devices
        .iter()
        .find(|b| b.name == "root")
        .map_or_else(|| "/dev/xvda".to_owned(), |b| b.device.clone());
    let hardware = bundle.map(|b| Hardware {
        cpu_count: b.cpu_count,
        disks: vec![Disk {
            created_at,
            size_in_gb: b.disk_size_in_gb,
            is_system_disk: true,
            iops: (b.disk_size_in_gb * 3).max(100),
            path: root,
            attached_to: info.name.clone(),
            attachment_state: "attached",
        }],
        ram_size_in_gb: b.ram_size_in_gb,
    });
    let has_v6 = !ipv6.is_empty();
    let networking = bundle.map(|b| Networking {
        monthly_transfer: MonthlyTransfer { gb_per_month_allocated: b.transfer_gb },
        ports: vec![port(22, has_v6), port(80, has_v6)],
    });
    let o = &r.metadata_options;
    Some(Instance {
        name: info.name.clone(),
        arn: instance_arn(&r.placement.region, account, info),
        support_code: format!("{account}/{}", r.instance_id),
        created_at,
        location: Location::of(r),
        resource_type: "Instance",
        tags: r.tags.iter().map(|(k, v)| Tag { key: k.clone(), value: v.clone() }).collect(),
        blueprint_id: info.blueprint_id.clone(),
        bundle_id: info.bundle_id.clone(),
        is_static_ip: false,
        private_ip_address: r.private_ipv4().map(|a| a.to_string()),
        public_ip_address: r.public_ipv4().map(|a| a.to_string()),
        ipv6_addresses: ipv6,
        ip_address_type: info.ip_address_type.clone(),
        hardware,
        networking,
        state: State { code: r.state.code(), name: r.state.name() },
        username: catalog::username(&info.blueprint_id),
        ssh_key_name: r.key.as_ref().map(|k| k.name.clone()),
        metadata_options: MetadataOptions {
            state: view.options_state.as_str(),
            http_tokens: o.http_tokens.as_str(),
            http_endpoint: o.http_endpoint.as_str(),
            http_put_response_hop_limit: o.http_put_response_hop_limit.get(),
            http_protocol_ipv6: o.http_protocol_ipv6.as_str(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_seconds_with_millis() {
        assert_eq!(serde_json::to_string(&epoch(1_479_816_991_349)).unwrap(), "1479816991.349");
        assert_eq!(serde_json::to_string(&epoch(1_704_164_645_000)).unwrap(), "1704164645.0");
    }
}
