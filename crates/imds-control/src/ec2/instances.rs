//! The instance lifecycle actions: RunInstances (request parsing into a
//! [`LaunchSpec`]), DescribeInstances (filters, pagination, reservations),
//! DescribeInstanceStatus, and the state machine of Stop/Start/Terminate/
//! RebootInstances. Store work is in [`crate::ops`].

use super::filter::{self, Filter};
use super::{Cx, render, required_instance_ids, tags};
use crate::error::ApiError;
use crate::ids;
use crate::ops::launch::{
    InterfaceSpec, LaunchSpec, OptionsRequest, PlacementSpec, Prepared, default_security_group,
};
use crate::ops::{InstanceView, OptionsState, Visibility};
use crate::query::View;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imds_core::ids::is_valid_resource_id;
use imds_core::instance::USER_DATA_MAX_BYTES;
use imds_core::{Enabled, HopLimit, IamInstanceProfile, InstanceState, SecurityGroup};
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most instances one RunInstances call may launch.
pub const MAX_LAUNCH_COUNT: i64 = 1000;

/// The instance type when the request names none.
pub const DEFAULT_INSTANCE_TYPE: &str = "t2.micro";

/// Resource types a launch may tag.
const LAUNCH_TAG_TYPES: &[&str] = &["instance", "volume", "spot-instances-request", "network-interface"];

/// The network-interface tag of a launch that names the MACs the hypervisor
/// gave the VM's NICs (comma separated, in device order), so that
/// `network/interfaces/macs/` is the guest's own hardware: EC2 assigns
/// MACs itself and its API has no member for one, but a host registering a
/// VM that already exists (a libvirt domain) cannot change its NIC.
pub const MAC_ADDRESS_TAG: &str = "imdsd:mac-address";

/// Decodes base64 user data (whitespace ignored) and checks its size.
pub fn decode_user_data(text: &str) -> Result<Option<Vec<u8>>, ApiError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Ok(None);
    }
    // A cheap bound before decoding: 4 characters per 3 bytes.
    if compact.len() / 4 * 3 > USER_DATA_MAX_BYTES + 3 {
        return Err(ApiError::invalid_value("User data is limited to 16384 bytes"));
    }
    let bytes = STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        .map_err(|_| ApiError::invalid_value("Invalid BASE64 encoding of user data"))?;
    if bytes.len() > USER_DATA_MAX_BYTES {
        return Err(ApiError::invalid_value("User data is limited to 16384 bytes"));
    }
    Ok(Some(bytes))
}

/// Parses the `MetadataOptions`-style members of `v` (RunInstances'
/// `MetadataOptions.*`, ModifyInstanceMetadataOptions' top level).
pub fn options_request(v: &View<'_>) -> Result<OptionsRequest, ApiError> {
    let tokens = v.str("HttpTokens").map(str::parse).transpose()?;
    let hops = match v.str("HttpPutResponseHopLimit") {
        None => None,
        Some(raw) => {
            let n = raw
                .trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid_parameter("HttpPutResponseHopLimit", raw))?;
            Some(HopLimit::new(n)?)
        }
    };
    let enabled = |name: &'static str| v.str(name).map(|s| Enabled::parse(name, s)).transpose();
    Ok(OptionsRequest {
        http_tokens: tokens,
        http_put_response_hop_limit: hops,
        http_endpoint: enabled("HttpEndpoint")?,
        http_protocol_ipv6: enabled("HttpProtocolIpv6")?,
        instance_metadata_tags: enabled("InstanceMetadataTags")?,
    })
}

fn parse_v4(name: &str, raw: &str) -> Result<Ipv4Addr, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid_value(format!(
            "Value ({raw}) for parameter {name} is invalid. This is not a valid IP address."
        ))
    })
}

fn parse_v6(name: &str, raw: &str) -> Result<Ipv6Addr, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid_value(format!(
            "Value ({raw}) for parameter {name} is invalid. This is not a valid IPv6 address."
        ))
    })
}

fn parse_prefix<N: std::str::FromStr + Copy + PartialEq>(
    name: &str,
    raw: &str,
    trunc: impl Fn(N) -> N,
) -> Result<N, ApiError> {
    match raw.parse::<N>() {
        Ok(net) if trunc(net) == net => Ok(net),
        _ => Err(ApiError::invalid_value(format!(
            "Value ({raw}) for parameter {name} is invalid. This is not a valid prefix."
        ))),
    }
}

fn count(v: &View<'_>, name: &str, max: i64) -> Result<u32, ApiError> {
    match v.int(name)? {
        None => Ok(0),
        Some(n) if (0..=max).contains(&n) => Ok(u32::try_from(n).unwrap_or(0)),
        Some(n) => Err(ApiError::invalid_parameter(&v.name_of(name), &n.to_string())),
    }
}

fn security_groups(ids: &[&str], names: &[&str]) -> Result<Vec<SecurityGroup>, ApiError> {
    let default = default_security_group();
    let mut out = Vec::new();
    for id in ids {
        if !is_valid_resource_id("sg", id) {
            return Err(ApiError::invalid_value(format!("Invalid id: \"{id}\" (expecting \"sg-...\")")));
        }
        let name = if *id == default.id { default.name.clone() } else { (*id).to_owned() };
        out.push(SecurityGroup { id: (*id).to_owned(), name });
    }
    for name in names {
        if name.is_empty() || name.len() > 255 {
            return Err(ApiError::invalid_parameter("SecurityGroup", name));
        }
        let id = if *name == default.name { default.id.clone() } else { ids::derived_id("sg", name) };
        out.push(SecurityGroup { id, name: (*name).to_owned() });
    }
    let mut seen = HashSet::new();
    out.retain(|g| seen.insert(g.id.clone()));
    Ok(out)
}

fn subnet(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(s) if is_valid_resource_id("subnet", s) => Ok(Some(s.to_owned())),
        Some(s) => Err(ApiError::invalid_value(format!("Invalid id: \"{s}\" (expecting \"subnet-...\")"))),
    }
}

/// One `NetworkInterface.N` structure.
fn interface_spec(n: &View<'_>) -> Result<InterfaceSpec, ApiError> {
    if let Some(id) = n.str("NetworkInterfaceId") {
        return Err(ApiError::network_interface_not_found(id));
    }
    for unsupported in ["Ipv4PrefixCount", "Ipv6PrefixCount"] {
        if n.int(unsupported)?.is_some_and(|c| c > 0) {
            return Err(ApiError::unsupported(format!(
                "{unsupported} is not supported; give the prefixes explicitly."
            )));
        }
    }
    let device = n
        .int("DeviceIndex")?
        .ok_or_else(|| ApiError::invalid_value("Each network interface requires a device index."))?;
    let device_index = u32::try_from(device)
        .ok()
        .filter(|d| *d < 32)
        .ok_or_else(|| ApiError::invalid_parameter(&n.name_of("DeviceIndex"), &device.to_string()))?;
    let card = n.int("NetworkCardIndex")?.unwrap_or(0);
    let network_card_index = u32::try_from(card)
        .ok()
        .filter(|c| *c < 16)
        .ok_or_else(|| ApiError::invalid_parameter(&n.name_of("NetworkCardIndex"), &card.to_string()))?;
    let mut v4 = Vec::new();
    if let Some(raw) = n.str("PrivateIpAddress") {
        v4.push(parse_v4(&n.name_of("PrivateIpAddress"), raw)?);
    }
    let mut listed: Vec<(bool, Ipv4Addr)> = Vec::new();
    for a in n.struct_list("PrivateIpAddresses") {
        let raw = a.required_str("PrivateIpAddress")?;
        listed.push((a.bool("Primary")?.unwrap_or(false), parse_v4(&a.name_of("PrivateIpAddress"), raw)?));
    }
    if listed.iter().filter(|(p, _)| *p).count() > 1 {
        return Err(ApiError::invalid_combination(
            "Only one private IP address can be designated as primary.",
        ));
    }
    if let (Some(primary), Some((_, listed_primary))) = (v4.first(), listed.iter().find(|(p, _)| *p))
        && primary != listed_primary
    {
        return Err(ApiError::invalid_combination(
            "The primary private IP address is specified twice with different values.",
        ));
    }
    listed.sort_by_key(|(p, _)| !*p);
    for (_, ip) in listed {
        if !v4.contains(&ip) {
            v4.push(ip);
        }
    }
    let ipv6s = n
        .struct_list("Ipv6Addresses")
        .iter()
        .map(|a| a.required_str("Ipv6Address").and_then(|raw| parse_v6(&a.name_of("Ipv6Address"), raw)))
        .collect::<Result<Vec<_>, _>>()?;
    let ipv4_prefixes = n
        .struct_list("Ipv4Prefix")
        .iter()
        .map(|a| {
            a.required_str("Ipv4Prefix")
                .and_then(|raw| parse_prefix::<Ipv4Net>(&a.name_of("Ipv4Prefix"), raw, |n| n.trunc()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ipv6_prefixes = n
        .struct_list("Ipv6Prefix")
        .iter()
        .map(|a| {
            a.required_str("Ipv6Prefix")
                .and_then(|raw| parse_prefix::<Ipv6Net>(&a.name_of("Ipv6Prefix"), raw, |n| n.trunc()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InterfaceSpec {
        device_index,
        network_card_index,
        subnet_id: subnet(n.str("SubnetId"))?,
        security_groups: security_groups(&n.list("SecurityGroupId"), &[])?,
        private_ipv4s: v4,
        secondary_ipv4_count: count(n, "SecondaryPrivateIpAddressCount", 49)?,
        ipv6s,
        ipv6_count: count(n, "Ipv6AddressCount", 64)?,
        ipv4_prefixes,
        ipv6_prefixes,
        mac: None,
    })
}

fn interfaces(p: &View<'_>) -> Result<Vec<InterfaceSpec>, ApiError> {
    let listed = p.struct_list("NetworkInterface");
    let top_level = ["PrivateIpAddress", "SubnetId", "Ipv6AddressCount"].iter().any(|k| p.str(k).is_some())
        || !p.list("SecurityGroupId").is_empty()
        || !p.list("SecurityGroup").is_empty()
        || !p.struct_list("Ipv6Address").is_empty();
    if listed.is_empty() {
        let mut spec = InterfaceSpec {
            subnet_id: subnet(p.str("SubnetId"))?,
            security_groups: security_groups(&p.list("SecurityGroupId"), &p.list("SecurityGroup"))?,
            ipv6_count: count(p, "Ipv6AddressCount", 64)?,
            ..Default::default()
        };
        if let Some(raw) = p.str("PrivateIpAddress") {
            spec.private_ipv4s.push(parse_v4("PrivateIpAddress", raw)?);
        }
        for a in p.struct_list("Ipv6Address") {
            spec.ipv6s.push(parse_v6(&a.name_of("Ipv6Address"), a.required_str("Ipv6Address")?)?);
        }
        return Ok(vec![spec]);
    }
    if top_level {
        return Err(ApiError::invalid_combination(
            "Network interfaces and an instance-level private IP address, subnet, security groups or IPv6 addresses should not be specified on the same request",
        ));
    }
    let mut specs = listed.iter().map(interface_spec).collect::<Result<Vec<_>, _>>()?;
    specs.sort_by_key(|s| (s.network_card_index, s.device_index));
    let mut seen = HashSet::new();
    if !specs.iter().all(|s| seen.insert((s.network_card_index, s.device_index))) {
        return Err(ApiError::invalid_value("Each network interface requires a unique device index."));
    }
    if !specs.iter().any(|s| s.device_index == 0 && s.network_card_index == 0) {
        return Err(ApiError::invalid_value("A network interface with device index 0 is required."));
    }
    Ok(specs)
}

fn instance_profile(p: &View<'_>, account: &str) -> Result<Option<IamInstanceProfile>, ApiError> {
    let v = p.sub("IamInstanceProfile");
    let (arn, name) = match (v.str("Arn"), v.str("Name")) {
        (None, None) => return Ok(None),
        (Some(arn), name) => {
            let profile = arn
                .strip_prefix("arn:")
                .and_then(|r| r.split_once(":iam::"))
                .and_then(|(_, r)| r.split_once(":instance-profile/"))
                .filter(|(acct, path)| {
                    acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) && !path.is_empty()
                })
                .and_then(|(_, path)| path.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::invalid_parameter("IamInstanceProfile.Arn", arn))?;
            if name.is_some_and(|n| n != profile) {
                return Err(ApiError::invalid_combination(
                    "The instance profile name does not match the instance profile ARN.",
                ));
            }
            (arn.to_owned(), profile.to_owned())
        }
        (None, Some(name)) => (format!("arn:aws:iam::{account}:instance-profile/{name}"), name.to_owned()),
    };
    let valid_name =
        name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c));
    if !valid_name {
        return Err(ApiError::invalid_parameter("IamInstanceProfile.Name", &name));
    }
    Ok(Some(IamInstanceProfile { id: ids::instance_profile_id(&arn), arn, role_name: name }))
}

fn launch_tags(p: &View<'_>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for spec in p.struct_list("TagSpecification") {
        let kind = spec.required_str("ResourceType")?;
        if !LAUNCH_TAG_TYPES.contains(&kind) {
            return Err(ApiError::invalid_value(format!(
                "'{kind}' is not a valid taggable resource type for this operation."
            )));
        }
        let parsed = tags::parse_tags(&spec, true)?;
        if kind == "instance" {
            for (k, v) in parsed {
                if out.insert(k.clone(), v.unwrap_or_default()).is_some() {
                    return Err(ApiError::invalid_value(format!("Duplicate tag key '{k}' specified.")));
                }
            }
        }
    }
    if out.len() > tags::MAX_TAGS {
        return Err(ApiError::tag_limit_exceeded());
    }
    Ok(out)
}

/// The MACs of the `imdsd:mac-address` network-interface tag, one per
/// interface in device order, lower-case; empty when the tag is absent.
fn interface_macs(p: &View<'_>, interfaces: usize) -> Result<Vec<String>, ApiError> {
    let mut listed = None;
    for spec in p.struct_list("TagSpecification") {
        if spec.str("ResourceType") != Some("network-interface") {
            continue;
        }
        for t in spec.struct_list("Tag") {
            if t.str("Key") == Some(MAC_ADDRESS_TAG) {
                listed = Some(t.str("Value").unwrap_or_default().to_owned());
            }
        }
    }
    let Some(listed) = listed else { return Ok(Vec::new()) };
    let macs = listed
        .split(',')
        .map(|m| parse_mac(m.trim()).ok_or_else(|| ApiError::invalid_parameter(MAC_ADDRESS_TAG, m.trim())))
        .collect::<Result<Vec<_>, _>>()?;
    if macs.len() != interfaces {
        return Err(ApiError::invalid_value(format!(
            "The {MAC_ADDRESS_TAG} tag lists {} MAC addresses for {interfaces} network interfaces.",
            macs.len()
        )));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = macs.iter().find(|m| !seen.insert(m.as_str())) {
        return Err(ApiError::invalid_value(format!("The MAC address {dup} is listed twice.")));
    }
    Ok(macs)
}

/// A unicast, non-zero MAC (`aa:bb:cc:dd:ee:ff`, either case), lower-cased.
fn parse_mac(raw: &str) -> Option<String> {
    let octets = raw
        .split(':')
        .map(|o| (o.len() == 2).then(|| u8::from_str_radix(o, 16).ok()).flatten())
        .collect::<Option<Vec<u8>>>()?;
    let unicast = octets.len() == 6 && octets[0] & 1 == 0 && octets.iter().any(|o| *o != 0);
    unicast.then(|| raw.to_ascii_lowercase())
}

/// A stable digest of the request parameters that matter for idempotency.
fn fingerprint(p: &View<'_>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for (k, v) in p.params().iter() {
        if matches!(k, "ClientToken" | "DryRun") || k.starts_with("X-Amz-") {
            continue;
        }
        ctx.update(k.as_bytes());
        ctx.update(b"\0");
        ctx.update(v.as_bytes());
        ctx.update(b"\0");
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn launch_spec(cx: &Cx<'_>, p: &View<'_>) -> Result<LaunchSpec, ApiError> {
    let image_id = p.required_str("ImageId")?;
    if !is_valid_resource_id("ami", image_id) {
        return Err(ApiError::image_malformed(image_id));
    }
    let min = p.int("MinCount")?.ok_or_else(|| ApiError::missing_parameter("MinCount"))?;
    let max = p.int("MaxCount")?.ok_or_else(|| ApiError::missing_parameter("MaxCount"))?;
    for (name, n) in [("MinCount", min), ("MaxCount", max)] {
        if !(1..=MAX_LAUNCH_COUNT).contains(&n) {
            return Err(ApiError::invalid_value(format!(
                "Value ({n}) for parameter {name} is invalid. Expected a value between 1 and {MAX_LAUNCH_COUNT}."
            )));
        }
    }
    if min > max {
        return Err(ApiError::invalid_value(format!(
            "MinCount ({min}) cannot be greater than MaxCount ({max})."
        )));
    }
    let instance_type = p.str("InstanceType").unwrap_or(DEFAULT_INSTANCE_TYPE);
    let type_ok = instance_type.len() <= 64
        && instance_type.split_once('.').is_some_and(|(a, b)| {
            let ok = |s: &str| {
                !s.is_empty() && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            };
            ok(a) && ok(b)
        });
    if !type_ok {
        return Err(ApiError::invalid_value(format!("Invalid value '{instance_type}' for InstanceType.")));
    }
    let mut interfaces = interfaces(p)?;
    let macs = interface_macs(p, interfaces.len())?;
    if !macs.is_empty() && max > 1 {
        return Err(ApiError::invalid_combination(format!(
            "The {MAC_ADDRESS_TAG} network-interface tag cannot be specified when launching more than one instance."
        )));
    }
    for (i, mac) in interfaces.iter_mut().zip(macs) {
        i.mac = Some(mac);
    }
    let explicit = interfaces.iter().any(|i| {
        !i.private_ipv4s.is_empty()
            || !i.ipv6s.is_empty()
            || !i.ipv4_prefixes.is_empty()
            || !i.ipv6_prefixes.is_empty()
    });
    if explicit && max > 1 {
        return Err(ApiError::invalid_combination(
            "Explicit private IP addresses, IPv6 addresses or prefixes cannot be specified when launching more than one instance.",
        ));
    }
    let subnet_v4 = cx.ops.config().subnet_v4;
    for ip in interfaces.iter().flat_map(|i| &i.private_ipv4s) {
        if crate::ops::addresses::is_reserved_v4(subnet_v4, *ip) {
            return Err(ApiError::invalid_value(format!("Address {ip} is reserved in subnet {subnet_v4}.")));
        }
    }
    let pl = p.sub("Placement");
    if let Some(t) = pl.str("Tenancy")
        && !matches!(t, "default" | "dedicated" | "host")
    {
        return Err(ApiError::invalid_parameter("Placement.Tenancy", t));
    }
    let partition_number = match pl.int("PartitionNumber")? {
        None => None,
        Some(n) => Some(
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=7).contains(n))
                .ok_or_else(|| ApiError::invalid_parameter("Placement.PartitionNumber", &n.to_string()))?,
        ),
    };
    let host_id = pl.str("HostId").map(str::to_owned);
    if host_id.as_deref().is_some_and(|h| {
        h.is_empty() || h.len() > 128 || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }) {
        return Err(ApiError::invalid_parameter("Placement.HostId", host_id.as_deref().unwrap_or_default()));
    }
    let placement = PlacementSpec {
        availability_zone: pl.str("AvailabilityZone").map(str::to_owned),
        availability_zone_id: pl.str("AvailabilityZoneId").map(str::to_owned),
        group_name: pl.str("GroupName").filter(|g| !g.is_empty()).map(str::to_owned),
        partition_number,
        host_id,
    };
    let key_name = match p.str("KeyName") {
        Some(k) if k.is_empty() || k.len() > 255 => return Err(ApiError::invalid_parameter("KeyName", k)),
        k => k.map(str::to_owned),
    };
    let life_cycle = match p.sub("InstanceMarketOptions").str("MarketType") {
        None => "on-demand".to_owned(),
        Some(m @ ("spot" | "capacity-block" | "interruptible-capacity-reservation")) => m.to_owned(),
        Some(other) => return Err(ApiError::invalid_parameter("InstanceMarketOptions.MarketType", other)),
    };
    let aki = |name: &str, prefix: &str| -> Result<Option<String>, ApiError> {
        match p.str(name) {
            None => Ok(None),
            Some(id) if is_valid_resource_id(prefix, id) => Ok(Some(id.to_owned())),
            Some(id) => {
                Err(ApiError::invalid_value(format!("Invalid id: \"{id}\" (expecting \"{prefix}-...\")")))
            }
        }
    };
    let client_token = match p.str("ClientToken") {
        None | Some("") => None,
        Some(t) if t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(ApiError::invalid_value(format!(
                "Value ({t}) for parameter clientToken is invalid. Must be at most 64 printable ASCII characters."
            )));
        }
        Some(t) => Some((t.to_owned(), fingerprint(p))),
    };
    Ok(LaunchSpec {
        image_id: image_id.to_owned(),
        instance_type: instance_type.to_owned(),
        min_count: u32::try_from(min).unwrap_or(1),
        max_count: u32::try_from(max).unwrap_or(1),
        interfaces,
        placement,
        key_name,
        iam_instance_profile: instance_profile(p, cx.account)?,
        user_data: p.str("UserData").map(decode_user_data).transpose()?.flatten(),
        tags: launch_tags(p)?,
        options: options_request(&p.sub("MetadataOptions"))?,
        monitoring: p.sub("Monitoring").bool("Enabled")?.unwrap_or(false),
        instance_life_cycle: life_cycle,
        kernel_id: aki("KernelId", "aki")?,
        ramdisk_id: aki("RamdiskId", "ari")?,
        client_token,
    })
}

/// What RunInstances shows for an instance it launched: running → pending.
fn launch_state(s: InstanceState) -> InstanceState {
    if s == InstanceState::Running { InstanceState::Pending } else { s }
}

/// `RunInstances`.
pub async fn run(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let spec = launch_spec(cx, &p)?;
    let prepared = cx.ops.prepare_launch(spec.clone()).await?;
    let options = match &prepared {
        Prepared::New(plan) => plan.options,
        Prepared::Existing(records) => records.first().map(|r| r.metadata_options).unwrap_or_default(),
    };
    let any_instance = cx.instance_arn("*");
    let mut checks = vec![
        cx.check(&any_instance)
            .metadata_options(&options)
            .with("ec2:InstanceType", spec.instance_type.clone())
            .with("ec2:ImageID", spec.image_id.clone())
            .request_tags(&spec.tags),
        // The option keys go with every resource of the launch, so a Deny
        // on `Resource: *` conditioned on them judges the options, not
        // their absence on the image or key pair.
        cx.check(cx.image_arn(&spec.image_id)).metadata_options(&options),
    ];
    if let Some(k) = &spec.key_name {
        checks.push(cx.check(cx.key_pair_arn(k)).metadata_options(&options));
    }
    if !spec.tags.is_empty() {
        checks.push(
            crate::auth::Check::new("ec2:CreateTags", &any_instance)
                .with("ec2:CreateAction", "RunInstances")
                .request_tags(&spec.tags),
        );
    }
    cx.gate(checks)?;
    let records = match prepared {
        Prepared::New(plan) => cx.ops.commit_launch(&plan).await?,
        Prepared::Existing(records) => records,
    };
    cx.touched = records.iter().map(|r| r.instance_id.to_string()).collect();
    let mut x = cx.xml();
    let reservation = records.first().map(|r| r.reservation_id.clone()).unwrap_or_default();
    let shown: Vec<_> = records.iter().map(|r| (r, OptionsState::Pending, launch_state(r.state))).collect();
    render::reservation(&mut x, &reservation, cx.account, &shown);
    Ok(x.finish())
}

/// The values of an instance for a DescribeInstances filter name.
fn instance_filter_values(v: &InstanceView, name: &str) -> Vec<String> {
    let r = &v.record;
    let o = &r.metadata_options;
    let nics = &r.network_interfaces;
    let one = |s: String| vec![s];
    if let Some(key) = name.strip_prefix("tag:") {
        return r.tags.get(key).cloned().into_iter().collect();
    }
    match name {
        "instance-id" => one(r.instance_id.to_string()),
        "instance-state-name" => one(r.state.name().to_owned()),
        "instance-state-code" => one(r.state.code().to_string()),
        "instance-type" => one(r.instance_type.clone()),
        "image-id" => one(r.image_id.clone()),
        "reservation-id" => one(r.reservation_id.clone()),
        "owner-id" => one(r.owner_id.clone()),
        "architecture" => one(r.architecture.clone()),
        "instance-lifecycle" => one(r.instance_life_cycle.clone()),
        "launch-index" => one(r.ami_launch_index.to_string()),
        "availability-zone" => one(r.placement.availability_zone.clone()),
        "placement-group-name" => r.placement.group_name.clone().into_iter().collect(),
        "host-id" => r.placement.host_id.clone().into_iter().collect(),
        "key-name" => r.key.iter().map(|k| k.name.clone()).collect(),
        "monitoring-state" => one(if r.monitoring { "enabled" } else { "disabled" }.to_owned()),
        "iam-instance-profile.arn" => r.iam_instance_profile.iter().map(|p| p.arn.clone()).collect(),
        "private-ip-address" => r.private_ipv4().map(|a| a.to_string()).into_iter().collect(),
        "private-dns-name" => one(r.local_hostname()),
        "ip-address" => r.public_ipv4().map(|a| a.to_string()).into_iter().collect(),
        "dns-name" => r.public_hostname().into_iter().collect(),
        "ipv6-address" => r.ipv6().map(|a| a.to_string()).into_iter().collect(),
        "subnet-id" => r.primary_interface().map(|n| n.subnet_id.clone()).into_iter().collect(),
        "vpc-id" => r.primary_interface().map(|n| n.vpc_id.clone()).into_iter().collect(),
        "tag-key" => r.tags.keys().cloned().collect(),
        "tag-value" => r.tags.values().cloned().collect(),
        "network-interface.mac-address" => nics.iter().map(|n| n.mac.clone()).collect(),
        "network-interface.network-interface-id" => nics.iter().map(|n| n.interface_id.clone()).collect(),
        "network-interface.addresses.private-ip-address" | "network-interface.private-ip-address" => {
            nics.iter().flat_map(|n| n.private_ipv4s.iter().map(|a| a.to_string())).collect()
        }
        "network-interface.ipv6-address" | "network-interface.ipv6-addresses.ipv6-address" => {
            nics.iter().flat_map(|n| n.ipv6s.iter().map(|a| a.to_string())).collect()
        }
        "network-interface.subnet-id" => nics.iter().map(|n| n.subnet_id.clone()).collect(),
        "instance.group-id" | "network-interface.group-id" => {
            nics.iter().flat_map(|n| n.security_groups.iter().map(|g| g.id.clone())).collect()
        }
        "instance.group-name" | "network-interface.group-name" => {
            nics.iter().flat_map(|n| n.security_groups.iter().map(|g| g.name.clone())).collect()
        }
        "metadata-options.http-tokens" => one(o.http_tokens.as_str().to_owned()),
        "metadata-options.http-put-response-hop-limit" => {
            one(o.http_put_response_hop_limit.get().to_string())
        }
        "metadata-options.http-endpoint" => one(o.http_endpoint.as_str().to_owned()),
        "metadata-options.http-protocol-ipv4" => one("enabled".to_owned()),
        "metadata-options.http-protocol-ipv6" => one(o.http_protocol_ipv6.as_str().to_owned()),
        "metadata-options.instance-metadata-tags" => one(o.instance_metadata_tags.as_str().to_owned()),
        "metadata-options.state" => one(v.options_state.as_str().to_owned()),
        _ => Vec::new(),
    }
}

/// Filter names DescribeInstances knows.
const INSTANCE_FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "reservation-id",
    "owner-id",
    "architecture",
    "instance-lifecycle",
    "launch-index",
    "availability-zone",
    "placement-group-name",
    "host-id",
    "key-name",
    "monitoring-state",
    "iam-instance-profile.arn",
    "private-ip-address",
    "private-dns-name",
    "ip-address",
    "dns-name",
    "ipv6-address",
    "subnet-id",
    "vpc-id",
    "tag-key",
    "tag-value",
    "network-interface.mac-address",
    "network-interface.network-interface-id",
    "network-interface.addresses.private-ip-address",
    "network-interface.private-ip-address",
    "network-interface.ipv6-address",
    "network-interface.ipv6-addresses.ipv6-address",
    "network-interface.subnet-id",
    "instance.group-id",
    "network-interface.group-id",
    "instance.group-name",
    "network-interface.group-name",
    "metadata-options.http-tokens",
    "metadata-options.http-put-response-hop-limit",
    "metadata-options.http-endpoint",
    "metadata-options.http-protocol-ipv4",
    "metadata-options.http-protocol-ipv6",
    "metadata-options.instance-metadata-tags",
    "metadata-options.state",
];

fn known_instance_filter(name: &str) -> bool {
    INSTANCE_FILTERS.contains(&name) || name.strip_prefix("tag:").is_some_and(|k| !k.is_empty())
}

/// Instances selected by `InstanceId.N` (all when none) and `Filter.N`.
async fn select(cx: &Cx<'_>, p: &View<'_>, filters: &[Filter]) -> Result<Vec<InstanceView>, ApiError> {
    let ids = super::instance_ids(&p.list("InstanceId"))?;
    let views = if ids.is_empty() {
        cx.ops.list().await?
    } else {
        cx.ops.get_many(&ids, Visibility::IncludeTerminated).await?
    };
    filter::apply(views, filters, known_instance_filter, instance_filter_values)
}

/// `DescribeInstances`.
pub async fn describe(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    if !p.list("InstanceId").is_empty() && p.str("MaxResults").is_some() {
        return Err(ApiError::invalid_combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let filters = filter::parse(&p)?;
    let page = filter::page(&p, 5, 1000)?;
    let views = select(cx, &p, &filters).await?;
    cx.gate(vec![cx.check("*")])?;
    let key = |v: &InstanceView| {
        format!("{}/{:05}/{}", v.record.reservation_id, v.record.ami_launch_index, v.record.instance_id)
    };
    let (views, next) = filter::paginate(views, &page, key);
    let mut groups: Vec<(String, Vec<&InstanceView>)> = Vec::new();
    for v in &views {
        match groups.last_mut() {
            Some((rid, members)) if *rid == v.record.reservation_id => members.push(v),
            _ => groups.push((v.record.reservation_id.clone(), vec![v])),
        }
    }
    let mut x = cx.xml();
    x.list("reservationSet", &groups, |x, (rid, members)| {
        let owner = members.first().map(|v| v.record.owner_id.as_str()).unwrap_or(cx.account);
        let shown: Vec<_> = members.iter().map(|v| (&v.record, v.options_state, v.record.state)).collect();
        render::reservation(x, rid, owner, &shown);
    });
    x.leaf_opt("nextToken", next);
    Ok(x.finish())
}

/// `DescribeInstanceStatus`: running instances (all with
/// `IncludeAllInstances=true`), always healthy.
pub async fn describe_status(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    if !p.list("InstanceId").is_empty() && p.str("MaxResults").is_some() {
        return Err(ApiError::invalid_combination(
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let include_all = p.bool("IncludeAllInstances")?.unwrap_or(false);
    let filters = filter::parse(&p)?;
    let page = filter::page(&p, 5, 1000)?;
    let known = |n: &str| {
        matches!(
            n,
            "availability-zone"
                | "instance-state-name"
                | "instance-state-code"
                | "instance-status.status"
                | "system-status.status"
        )
    };
    let ids = super::instance_ids(&p.list("InstanceId"))?;
    let views = if ids.is_empty() {
        cx.ops.list().await?
    } else {
        cx.ops.get_many(&ids, Visibility::IncludeTerminated).await?
    };
    let status = |s: InstanceState| if s == InstanceState::Running { "ok" } else { "not-applicable" };
    let views = filter::apply(views, &filters, known, |v, name| {
        let r = &v.record;
        vec![match name {
            "availability-zone" => r.placement.availability_zone.clone(),
            "instance-state-name" => r.state.name().to_owned(),
            "instance-state-code" => r.state.code().to_string(),
            _ => status(r.state).to_owned(),
        }]
    })?;
    let views: Vec<_> =
        views.into_iter().filter(|v| include_all || v.record.state == InstanceState::Running).collect();
    cx.gate(vec![cx.check("*")])?;
    let (views, next) = filter::paginate(views, &page, |v| v.record.instance_id.to_string());
    let mut x = cx.xml();
    x.list("instanceStatusSet", &views, |x, v| {
        let r = &v.record;
        x.leaf("instanceId", &r.instance_id)
            .leaf("availabilityZone", &r.placement.availability_zone)
            .leaf("availabilityZoneId", &r.placement.availability_zone_id);
        x.empty("eventsSet");
        render::state(x, "instanceState", r.state);
        for element in ["systemStatus", "instanceStatus"] {
            x.structure(element, |x| {
                x.leaf("status", status(r.state));
                x.list("details", [()].into_iter().filter(|_| r.state == InstanceState::Running), |x, ()| {
                    x.leaf("name", "reachability").leaf("status", "passed");
                });
            });
        }
    });
    x.leaf_opt("nextToken", next);
    Ok(x.finish())
}

/// Which lifecycle action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Stop,
    Start,
    Terminate,
}

/// Stop/Start/Terminate: validates every instance's state, authorises,
/// then changes all of them in one transaction.
async fn transition(cx: &mut Cx<'_>, p: View<'_>, t: Transition) -> Result<String, ApiError> {
    let ids = required_instance_ids(&p)?;
    let now = cx.ops.clock().now_secs();
    let changes = {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(&ids, Visibility::IncludeTerminated, |views| {
                for v in views {
                    let r = &v.record;
                    let refused = match (t, r.state) {
                        (Transition::Stop, InstanceState::Terminated | InstanceState::ShuttingDown) => {
                            Some("stopped")
                        }
                        (Transition::Start, InstanceState::Terminated | InstanceState::ShuttingDown) => {
                            Some("started")
                        }
                        _ => None,
                    };
                    if let Some(what) = refused {
                        return Err(ApiError::incorrect_instance_state(format!(
                            "The instance '{}' is not in a state from which it can be {what}.",
                            r.instance_id
                        )));
                    }
                }
                let checks = views
                    .iter()
                    .map(|v| cx.check(cx.instance_arn(v.record.instance_id.as_str())).instance(&v.record))
                    .collect();
                cx.gate(checks)?;
                views
                    .iter()
                    .map(|v| {
                        let mut r = v.record.clone();
                        match (t, r.state) {
                            (Transition::Stop, InstanceState::Running | InstanceState::Pending) => {
                                r.state = InstanceState::Stopped;
                            }
                            (Transition::Start, InstanceState::Stopped | InstanceState::Stopping) => {
                                r.state = InstanceState::Running;
                                r.incarnation = ids::incarnation().map_err(|_| ApiError::internal())?;
                                r.launch_time = now;
                            }
                            (Transition::Terminate, s) if s != InstanceState::Terminated => {
                                r.state = InstanceState::Terminated;
                            }
                            _ => {}
                        }
                        Ok(r)
                    })
                    .collect()
            })
            .await?
    };
    cx.touched = changes.iter().map(|c| c.before.instance_id.to_string()).collect();
    let mut x = cx.xml();
    x.list("instancesSet", &changes, |x, c| {
        let previous = c.before.state;
        let current = if c.before == c.after {
            previous
        } else {
            match t {
                Transition::Stop => InstanceState::Stopping,
                Transition::Start => InstanceState::Pending,
                Transition::Terminate => InstanceState::ShuttingDown,
            }
        };
        x.leaf("instanceId", &c.before.instance_id);
        render::state(x, "currentState", current);
        render::state(x, "previousState", previous);
    });
    Ok(x.finish())
}

/// `StopInstances`.
pub async fn stop(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    p.bool("Hibernate")?;
    p.bool("Force")?;
    p.bool("SkipOsShutdown")?;
    transition(cx, p, Transition::Stop).await
}

/// `StartInstances`.
pub async fn start(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    transition(cx, p, Transition::Start).await
}

/// `TerminateInstances`.
pub async fn terminate(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    p.bool("Force")?;
    p.bool("SkipOsShutdown")?;
    transition(cx, p, Transition::Terminate).await
}

/// `RebootInstances`: checks and authorises; the guest reboots on its own
/// (metadata, tokens and credentials are unaffected, as on EC2).
pub async fn reboot(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let ids = required_instance_ids(&p)?;
    let views = cx.ops.get_many(&ids, Visibility::LiveOnly).await?;
    if let Some(v) = views.iter().find(|v| v.record.state != InstanceState::Running) {
        return Err(ApiError::incorrect_instance_state(format!(
            "The instance '{}' is not in the 'running' state.",
            v.record.instance_id
        )));
    }
    let checks = views
        .iter()
        .map(|v| cx.check(cx.instance_arn(v.record.instance_id.as_str())).instance(&v.record))
        .collect();
    cx.gate(checks)?;
    cx.touched = views.iter().map(|v| v.record.instance_id.to_string()).collect();
    Ok(crate::xml::Xml::return_true(cx.action, cx.request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_rules() {
        assert_eq!(decode_user_data("IyEvYmluL3NoCg==").unwrap(), Some(b"#!/bin/sh\n".to_vec()));
        assert_eq!(decode_user_data("IyEv\nYmluL3NoCg==").unwrap(), Some(b"#!/bin/sh\n".to_vec()));
        assert_eq!(decode_user_data("").unwrap(), None);
        assert_eq!(
            decode_user_data("not base64!").unwrap_err().message,
            "Invalid BASE64 encoding of user data"
        );
        let max = STANDARD.encode(vec![b'x'; USER_DATA_MAX_BYTES]);
        assert_eq!(decode_user_data(&max).unwrap().map(|b| b.len()), Some(USER_DATA_MAX_BYTES));
        let over = STANDARD.encode(vec![b'x'; USER_DATA_MAX_BYTES + 1]);
        assert_eq!(decode_user_data(&over).unwrap_err().message, "User data is limited to 16384 bytes");
    }

    #[test]
    fn option_members_validate() {
        use crate::query::Params;
        let p = Params::from_pairs([("HttpTokens", "maybe")]);
        assert_eq!(
            options_request(&p.root()).unwrap_err().message,
            "Value (maybe) for parameter HttpTokens is invalid."
        );
        for bad in ["0", "65", "x", "-1"] {
            let p = Params::from_pairs([("HttpPutResponseHopLimit", bad)]);
            assert_eq!(
                options_request(&p.root()).unwrap_err().message,
                format!("Value ({bad}) for parameter HttpPutResponseHopLimit is invalid.")
            );
        }
        let p = Params::from_pairs([("HttpEndpoint", "Enabled")]);
        assert!(options_request(&p.root()).is_err());
        let p = Params::from_pairs([("HttpPutResponseHopLimit", "64"), ("InstanceMetadataTags", "enabled")]);
        let o = options_request(&p.root()).unwrap();
        assert_eq!(o.http_put_response_hop_limit.map(HopLimit::get), Some(64));
        assert_eq!(o.instance_metadata_tags, Some(Enabled::Enabled));
    }
}
