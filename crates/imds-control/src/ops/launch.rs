//! Launching instances: resolving metadata options by precedence (launch
//! parameters > account defaults > AMI `ImdsSupport` > service defaults),
//! idempotency by client token, address allocation and the single
//! transaction that creates every instance of a request together with its
//! address-index keys.
//!
//! A launch is two steps so that front ends can authorise and honour
//! DryRun in between: [`Ops::prepare_launch`] reads and validates everything
//! that depends on stored state (and answers a repeated client token),
//! [`Ops::commit_launch`] allocates and writes. Parsing a request into a
//! [`LaunchSpec`] belongs to the front ends.
//!
//! Host assignment ([`HostAssignment`]): on one host (`imdsd serve`) an
//! instance keeps the `Placement.HostId` it was given, or none, and the
//! in-process agent serves it either way. In a fleet (`imdsd control`) a
//! host is alive while its agent's lease keeps `hosts/<host-id>` in the
//! store, and:
//!
//! * a launch without `Placement.HostId` puts each of its instances on the
//!   live host with the fewest non-terminated instances, counting those
//!   placed earlier in the same launch (ties: the smallest host id), so a
//!   launch of several instances is spread; with one live host, all go to
//!   it; with none, the launch is refused with
//!   [`OpError::NoLiveHost`] (EC2's `InsufficientInstanceCapacity`);
//! * a launch (or `ModifyInstancePlacement`) naming a host that is not
//!   alive is refused with [`OpError::HostNotFound`]
//!   (`InvalidHostID.NotFound`), as EC2 refuses a Dedicated Host that does
//!   not exist: an instance is never placed where nothing would serve it.
//!
//! Liveness is read when the launch is prepared and committed; a host that
//! dies right after is the same as one that dies later: its instances stay
//! placed on it (`pending` after changes) until it returns or they are
//! moved with `ModifyInstancePlacement`.

use super::addresses::{self, Allocator, address_key, prefix_key};
use super::settings::{AccountDefaults, ImageRecord};
use super::{CAS_ATTEMPTS, OpError, Ops, names};
use crate::ids;
use imds_core::instance::is_imds_tag_key;
use imds_core::sample::sample_instance;
use imds_core::{
    BlockDevice, Enabled, HopLimit, HttpTokens, IamInstanceProfile, InstanceId, InstanceRecord,
    InstanceState, LightsailInfo, MetadataOptions, NetworkInterface, Placement, PublicKey, SecurityGroup,
};
use imds_store::records::{self, decode};
use imds_store::{Compare, Op, StoreError};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix of client-token records.
pub const CLIENT_TOKENS_PREFIX: &str = "client-tokens/";

/// How launches choose `Placement.HostId` (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostAssignment {
    /// One host serves everything (`imdsd serve`): the given `HostId` is
    /// kept as is, and no host is chosen when none is given.
    #[default]
    None,
    /// A fleet (`imdsd control`): instances are placed on live hosts
    /// (`hosts/<host-id>` present), and a named host must be alive.
    LiveHosts,
}

/// The live host with the fewest instances in `load` (host id → count of
/// non-terminated instances); ties go to the smallest host id.
pub fn least_loaded(load: &BTreeMap<String, usize>) -> Option<String> {
    // `min_by_key` keeps the first of equal minima, and a BTreeMap iterates
    // in id order.
    load.iter().min_by_key(|(_, n)| **n).map(|(h, _)| h.clone())
}

/// Metadata options given at launch; `None` = not specified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionsRequest {
    /// `HttpTokens`.
    pub http_tokens: Option<HttpTokens>,
    /// `HttpPutResponseHopLimit`.
    pub http_put_response_hop_limit: Option<HopLimit>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<Enabled>,
    /// `HttpProtocolIpv6`.
    pub http_protocol_ipv6: Option<Enabled>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<Enabled>,
}

/// The options an instance launches with: each member from the first
/// source that specifies it — launch parameters, account defaults, the
/// AMI (`ImdsSupport=v2.0` ⇒ `required` and hop limit 2), service defaults.
pub fn resolve_options(
    req: &OptionsRequest,
    defaults: &AccountDefaults,
    image: Option<&ImageRecord>,
) -> MetadataOptions {
    let service = MetadataOptions::default();
    let v2_ami = image.is_some_and(|i| i.imds_support.as_deref() == Some("v2.0"));
    let ami_tokens = v2_ami.then_some(HttpTokens::Required);
    let ami_hops = if v2_ami { HopLimit::new(2).ok() } else { None };
    MetadataOptions {
        http_tokens: req.http_tokens.or(defaults.http_tokens).or(ami_tokens).unwrap_or(service.http_tokens),
        http_put_response_hop_limit: req
            .http_put_response_hop_limit
            .or(defaults.http_put_response_hop_limit)
            .or(ami_hops)
            .unwrap_or(service.http_put_response_hop_limit),
        http_endpoint: req.http_endpoint.or(defaults.http_endpoint).unwrap_or(service.http_endpoint),
        http_protocol_ipv6: req.http_protocol_ipv6.unwrap_or(service.http_protocol_ipv6),
        instance_metadata_tags: req
            .instance_metadata_tags
            .or(defaults.instance_metadata_tags)
            .unwrap_or(service.instance_metadata_tags),
    }
}

/// One network interface to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// `DeviceIndex`.
    pub device_index: u32,
    /// `NetworkCardIndex`.
    pub network_card_index: u32,
    /// `SubnetId`, if given.
    pub subnet_id: Option<String>,
    /// Security groups; empty = the default group.
    pub security_groups: Vec<SecurityGroup>,
    /// Explicit private IPv4 addresses, primary first; empty = allocate one.
    pub private_ipv4s: Vec<Ipv4Addr>,
    /// How many secondary private IPv4 addresses to allocate.
    pub secondary_ipv4_count: u32,
    /// Explicit IPv6 addresses.
    pub ipv6s: Vec<Ipv6Addr>,
    /// How many IPv6 addresses to allocate.
    pub ipv6_count: u32,
    /// Delegated IPv4 prefixes.
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// Delegated IPv6 prefixes.
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// The MAC the hypervisor gave this NIC; `None` = a random one.
    pub mac: Option<String>,
}

impl InterfaceSpec {
    fn explicit_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.private_ipv4s.iter().map(|a| address_key(IpAddr::V4(*a))).collect();
        keys.extend(self.ipv6s.iter().map(|a| address_key(IpAddr::V6(*a))));
        keys.extend(self.ipv4_prefixes.iter().map(|p| prefix_key(IpNet::V4(*p))));
        keys.extend(self.ipv6_prefixes.iter().map(|p| prefix_key(IpNet::V6(*p))));
        keys
    }
}

/// `Placement.*` as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementSpec {
    /// `us-east-1b`.
    pub availability_zone: Option<String>,
    /// `use1-az2`.
    pub availability_zone_id: Option<String>,
    /// Placement group.
    pub group_name: Option<String>,
    /// Partition number.
    pub partition_number: Option<u32>,
    /// Serving host (`h-…`).
    pub host_id: Option<String>,
}

/// Everything a launch request asks for, already syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// `ami-…`
    pub image_id: String,
    /// `t2.micro`
    pub instance_type: String,
    /// `MinCount`
    pub min_count: u32,
    /// `MaxCount`
    pub max_count: u32,
    /// Interfaces, device 0 first.
    pub interfaces: Vec<InterfaceSpec>,
    /// Placement.
    pub placement: PlacementSpec,
    /// `KeyName`
    pub key_name: Option<String>,
    /// Instance profile.
    pub iam_instance_profile: Option<IamInstanceProfile>,
    /// Raw user data.
    pub user_data: Option<Vec<u8>>,
    /// Instance tags.
    pub tags: BTreeMap<String, String>,
    /// Requested metadata options.
    pub options: OptionsRequest,
    /// Detailed monitoring.
    pub monitoring: bool,
    /// `on-demand`, `spot`, …
    pub instance_life_cycle: String,
    /// `KernelId`
    pub kernel_id: Option<String>,
    /// `RamdiskId`
    pub ramdisk_id: Option<String>,
    /// `ClientToken` and a fingerprint of the other parameters.
    pub client_token: Option<(String, String)>,
}

/// What a client token created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Fingerprint of the request parameters.
    pub fingerprint: String,
    /// The reservation.
    pub reservation_id: String,
    /// Its instances, in launch order.
    pub instance_ids: Vec<InstanceId>,
}

/// A launch ready to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// The request.
    pub spec: LaunchSpec,
    /// Resolved metadata options.
    pub options: MetadataOptions,
    /// The key pair's public key.
    pub key: Option<PublicKey>,
    /// `x86_64` / `arm64`.
    pub architecture: String,
    /// Root device of the image.
    pub root_device_name: String,
}

/// The outcome of [`Ops::prepare_launch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The client token was used before with the same parameters: these
    /// are the instances it launched.
    Existing(Vec<InstanceRecord>),
    /// A new launch.
    New(Box<LaunchPlan>),
}

/// `arm64` for Graviton families (`t4g`, `m6gd`, `c7gn`, `a1`, …),
/// `x86_64` otherwise.
pub fn architecture_of_type(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let suffix = family.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '-');
    let suffix = suffix.trim_start_matches(|c: char| c.is_ascii_digit());
    if family == "a1" || suffix.contains('g') { "arm64" } else { "x86_64" }
}

fn token_key(token: &str) -> String {
    format!("{CLIENT_TOKENS_PREFIX}{token}")
}

/// The subnet, VPC and security group of the sample instance: the network
/// every instance is in unless the request names others.
fn network_defaults() -> (String, String, SecurityGroup) {
    let default_sg = || SecurityGroup { id: "sg-00000000".into(), name: "default".into() };
    let sample = InstanceId::parse("i-00000000").ok().and_then(|id| {
        sample_instance(id, Ipv4Addr::UNSPECIFIED, None).network_interfaces.into_iter().next()
    });
    match sample {
        Some(n) => (n.subnet_id, n.vpc_id, n.security_groups.into_iter().next().unwrap_or_else(default_sg)),
        None => ("subnet-00000000".into(), "vpc-00000000".into(), default_sg()),
    }
}

/// The default security group (`default`).
pub fn default_security_group() -> SecurityGroup {
    network_defaults().2
}

/// The network containing `ip` with `bits`, or `ip` itself as a host net.
fn enclosing_v4(ip: Ipv4Addr, bits: u8) -> Ipv4Net {
    Ipv4Net::new(ip, bits).map(|n| n.trunc()).unwrap_or_else(|_| Ipv4Net::from(ip))
}

fn enclosing_v6(ip: Ipv6Addr, bits: u8) -> Ipv6Net {
    Ipv6Net::new(ip, bits).map(|n| n.trunc()).unwrap_or_else(|_| Ipv6Net::from(ip))
}

impl Ops {
    async fn token_record(&self, token: &str) -> Result<Option<TokenRecord>, OpError> {
        match self.store().get(&token_key(token)).await? {
            Some(kv) => Ok(Some(decode(&kv.key, &kv.value)?)),
            None => Ok(None),
        }
    }

    async fn existing_launch(
        &self,
        token: &TokenRecord,
        fingerprint: &str,
    ) -> Result<Vec<InstanceRecord>, OpError> {
        if token.fingerprint != fingerprint {
            return Err(OpError::IdempotentMismatch);
        }
        let mut out = Vec::new();
        for id in &token.instance_ids {
            if let Some((r, _)) = records::get_instance(self.store(), id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The zone name and id for a placement request.
    fn zone(&self, p: &PlacementSpec) -> Result<(String, String), OpError> {
        let region = &self.config().region;
        let letter_of = |az: &str| -> Option<char> {
            let rest = az.strip_prefix(region.as_str())?;
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_lowercase() => Some(c),
                _ => None,
            }
        };
        match (&p.availability_zone, &p.availability_zone_id) {
            (Some(az), id) => {
                let letter = letter_of(az)
                    .ok_or_else(|| OpError::InvalidValue(format!("Invalid availability zone: [{az}]")))?;
                let zone_id = ids::availability_zone_id(region, letter);
                if id.as_ref().is_some_and(|i| i != &zone_id) {
                    return Err(OpError::InvalidCombination(format!(
                        "The availability zone {az} does not have the zone id {}",
                        id.as_deref().unwrap_or_default()
                    )));
                }
                Ok((az.clone(), zone_id))
            }
            (None, Some(id)) => ('a'..='z')
                .find(|c| &ids::availability_zone_id(region, *c) == id)
                .map(|c| (format!("{region}{c}"), id.clone()))
                .ok_or_else(|| OpError::InvalidValue(format!("Invalid availability zone ID: [{id}]"))),
            (None, None) => Ok((format!("{region}a"), ids::availability_zone_id(region, 'a'))),
        }
    }

    /// Reads what a launch depends on and validates against it: a repeated
    /// client token, account defaults and the image (for the options), the
    /// enforcement of `HttpTokens=required`, IMDS tag keys when tags are
    /// exposed, the key pair, and that explicit addresses are free.
    pub async fn prepare_launch(&self, spec: LaunchSpec) -> Result<Prepared, OpError> {
        if let Some((token, fingerprint)) = &spec.client_token
            && let Some(existing) = self.token_record(token).await?
        {
            return Ok(Prepared::Existing(self.existing_launch(&existing, fingerprint).await?));
        }
        self.zone(&spec.placement)?;
        if let Some(host) = &spec.placement.host_id {
            self.ensure_host(host).await?;
        }
        let defaults = self.account_defaults().await?;
        let image = self.image(&spec.image_id).await?;
        let options = resolve_options(&spec.options, &defaults, image.as_ref());
        if defaults.http_tokens_enforced == Some(Enabled::Enabled)
            && options.http_tokens != HttpTokens::Required
        {
            return Err(OpError::HttpTokensEnforced);
        }
        if options.instance_metadata_tags.is_enabled()
            && let Some(bad) = spec.tags.keys().find(|k| !is_imds_tag_key(k))
        {
            return Err(OpError::ImdsTagKey(bad.clone()));
        }
        let key = match &spec.key_name {
            Some(name) => {
                let pair =
                    self.key_pair(name).await?.ok_or_else(|| OpError::KeyPairNotFound(name.clone()))?;
                Some(PublicKey { name: pair.key_name, openssh_key: pair.public_key })
            }
            None => None,
        };
        let mut seen = HashSet::new();
        for key in spec.interfaces.iter().flat_map(InterfaceSpec::explicit_keys) {
            if !seen.insert(key.clone()) {
                let addr = key.trim_start_matches(addresses::ADDRESSES_PREFIX);
                return Err(OpError::InvalidValue(format!(
                    "The address {addr} is specified more than once."
                )));
            }
        }
        if !seen.is_empty() {
            let (instances, _) = records::list_instances(self.store()).await?;
            let records: Vec<InstanceRecord> = instances.into_iter().map(|(r, _)| r).collect();
            let used = addresses::used_keys(self.store(), &records).await?;
            if let Some(taken) = seen.iter().filter(|k| used.contains(*k)).min() {
                return Err(OpError::AddressInUse(
                    taken.trim_start_matches(addresses::ADDRESSES_PREFIX).to_owned(),
                ));
            }
        }
        let architecture = image
            .as_ref()
            .map(|i| i.architecture.clone())
            .unwrap_or_else(|| architecture_of_type(&spec.instance_type).to_owned());
        let root_device_name =
            image.as_ref().map_or_else(|| "/dev/xvda".to_owned(), |i| i.root_device_name.clone());
        Ok(Prepared::New(Box::new(LaunchPlan { spec, options, key, architecture, root_device_name })))
    }

    /// Creates the instances of a prepared launch in one transaction:
    /// `MaxCount` of them, or as many as the address pool allows if that is
    /// at least `MinCount`. Returns them in launch order (or the instances
    /// of a client token another request committed meanwhile).
    pub async fn commit_launch(&self, plan: &LaunchPlan) -> Result<Vec<InstanceRecord>, OpError> {
        self.commit(plan, &[]).await
    }

    /// [`Ops::commit_launch`] for the Lightsail API: instance `i` of the
    /// launch gets `named[i]` (so `MinCount` = `MaxCount` = `named.len()`),
    /// and its name is claimed in the index ([`super::names`]) in the same
    /// transaction. A name held by a live instance gives
    /// [`OpError::NameInUse`] and creates nothing.
    pub async fn commit_launch_named(
        &self,
        plan: &LaunchPlan,
        named: &[LightsailInfo],
    ) -> Result<Vec<InstanceRecord>, OpError> {
        let n = u32::try_from(named.len()).unwrap_or(u32::MAX);
        if named.is_empty() || plan.spec.min_count != n || plan.spec.max_count != n {
            return Err(OpError::InvalidValue("Every instance of the launch needs a name.".into()));
        }
        if plan.spec.client_token.is_some() {
            return Err(OpError::InvalidCombination("Named launches take no client token.".into()));
        }
        self.commit(plan, named).await
    }

    async fn commit(
        &self,
        plan: &LaunchPlan,
        named: &[LightsailInfo],
    ) -> Result<Vec<InstanceRecord>, OpError> {
        let spec = &plan.spec;
        for _ in 0..CAS_ATTEMPTS {
            let names: Vec<String> = named.iter().map(|l| l.name.clone()).collect();
            let name_guards = if names.is_empty() { Vec::new() } else { self.name_claims(&names).await? };
            if let Some((token, fingerprint)) = &spec.client_token
                && let Some(existing) = self.token_record(token).await?
            {
                return self.existing_launch(&existing, fingerprint).await;
            }
            let (instances, _) = records::list_instances(self.store()).await?;
            let live: Vec<InstanceRecord> = instances.into_iter().map(|(r, _)| r).collect();
            let mut load = match (self.config().host_assignment, &spec.placement.host_id) {
                (HostAssignment::LiveHosts, None) => Some(self.host_load(&live).await?),
                _ => None,
            };
            let mut alloc = Allocator::new(addresses::used_keys(self.store(), &live).await?);
            for key in spec.interfaces.iter().flat_map(InterfaceSpec::explicit_keys) {
                if !alloc.claim(key.clone()) {
                    return Err(OpError::AddressInUse(
                        key.trim_start_matches(addresses::ADDRESSES_PREFIX).to_owned(),
                    ));
                }
            }
            let reservation_id = ids::resource_id("r")?;
            let now_secs = self.clock().now_secs();
            let mut created = Vec::new();
            for index in 0..spec.max_count {
                match self.build_instance(plan, &reservation_id, index, now_secs, &mut alloc)? {
                    Some(mut record) => {
                        record.lightsail = usize::try_from(index).ok().and_then(|i| named.get(i)).cloned();
                        if let Some(load) = load.as_mut() {
                            let host = least_loaded(load).ok_or(OpError::NoLiveHost)?;
                            *load.entry(host.clone()).or_default() += 1;
                            record.placement.host_id = Some(host);
                        }
                        created.push(record);
                    }
                    None if index >= spec.min_count => break,
                    None => {
                        let subnet = spec
                            .interfaces
                            .first()
                            .and_then(|i| i.subnet_id.clone())
                            .unwrap_or_else(|| network_defaults().0);
                        return Err(OpError::InsufficientAddresses(subnet));
                    }
                }
            }
            let mut compares = name_guards;
            let mut ops = Vec::new();
            for r in &created {
                if let Some(info) = &r.lightsail {
                    ops.push(Op::put(names::name_key(&info.name), r.instance_id.as_str()));
                }
                let key = records::instance_key(&r.instance_id);
                compares.push(Compare::Absent(key.clone()));
                ops.push(Op::put(key, encode(r)?));
                for k in addresses::keys_of(r) {
                    compares.push(Compare::Absent(k.clone()));
                    ops.push(Op::put(k, r.instance_id.as_str()));
                }
            }
            if let Some((token, fingerprint)) = &spec.client_token {
                let record = TokenRecord {
                    fingerprint: fingerprint.clone(),
                    reservation_id: reservation_id.clone(),
                    instance_ids: created.iter().map(|r| r.instance_id.clone()).collect(),
                };
                compares.push(Compare::Absent(token_key(token)));
                ops.push(Op::put(token_key(token), encode(&record)?));
            }
            if self.store().txn(compares, ops).await?.is_some() {
                return Ok(created);
            }
            tracing::debug!("launch raced with another writer; retrying");
        }
        Err(OpError::Contention)
    }

    /// The ids of the live hosts (`hosts/<host-id>` present), sorted.
    pub async fn live_hosts(&self) -> Result<Vec<String>, OpError> {
        let (kvs, _) = self.store().list(records::HOSTS_PREFIX).await?;
        let mut hosts: Vec<String> = kvs
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(records::HOSTS_PREFIX).map(str::to_owned))
            .filter(|h| !h.is_empty())
            .collect();
        hosts.sort();
        Ok(hosts)
    }

    /// With [`HostAssignment::LiveHosts`], [`OpError::HostNotFound`] unless
    /// `host_id` is a live host; with [`HostAssignment::None`], any id goes.
    pub async fn ensure_host(&self, host_id: &str) -> Result<(), OpError> {
        if self.config().host_assignment == HostAssignment::None
            || self.store().get(&records::host_key(host_id)).await?.is_some()
        {
            Ok(())
        } else {
            Err(OpError::HostNotFound(host_id.to_owned()))
        }
    }

    /// Every live host with its number of non-terminated instances among
    /// `instances`; [`OpError::NoLiveHost`] when there is none.
    async fn host_load(&self, instances: &[InstanceRecord]) -> Result<BTreeMap<String, usize>, OpError> {
        let mut load: BTreeMap<String, usize> =
            self.live_hosts().await?.into_iter().map(|h| (h, 0)).collect();
        if load.is_empty() {
            return Err(OpError::NoLiveHost);
        }
        for r in instances.iter().filter(|r| r.state != InstanceState::Terminated) {
            if let Some(n) = r.placement.host_id.as_ref().and_then(|h| load.get_mut(h)) {
                *n += 1;
            }
        }
        Ok(load)
    }

    /// One instance of a launch, or `None` when the pool ran dry.
    fn build_instance(
        &self,
        plan: &LaunchPlan,
        reservation_id: &str,
        index: u32,
        now_secs: u64,
        alloc: &mut Allocator,
    ) -> Result<Option<InstanceRecord>, OpError> {
        let spec = &plan.spec;
        let cfg = self.config();
        let (default_subnet, default_vpc, default_sg) = network_defaults();
        let (availability_zone, availability_zone_id) = self.zone(&spec.placement)?;
        let mut interfaces = Vec::new();
        for i in &spec.interfaces {
            let mut v4 = i.private_ipv4s.clone();
            if v4.is_empty() {
                match alloc.next_v4(cfg.subnet_v4) {
                    Some(ip) => v4.push(ip),
                    None => return Ok(None),
                }
            }
            for _ in 0..i.secondary_ipv4_count {
                match alloc.next_v4(cfg.subnet_v4) {
                    Some(ip) => v4.push(ip),
                    None => return Ok(None),
                }
            }
            let mut v6 = i.ipv6s.clone();
            if i.ipv6_count > 0 {
                let Some(net) = cfg.subnet_v6 else {
                    return Err(OpError::InvalidValue(
                        "The subnet has no IPv6 CIDR block, so IPv6 addresses cannot be assigned.".into(),
                    ));
                };
                for _ in 0..i.ipv6_count {
                    match alloc.next_v6(net) {
                        Some(ip) => v6.push(ip),
                        None => return Ok(None),
                    }
                }
            }
            let primary = v4.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
            let subnet_v4 =
                if cfg.subnet_v4.contains(&primary) { cfg.subnet_v4 } else { enclosing_v4(primary, 24) };
            let (subnet_v6, vpc_v6) = match v6.first() {
                Some(ip) => match cfg.subnet_v6.filter(|n| n.contains(ip)) {
                    Some(n) => (vec![n], vec![enclosing_v6(n.network(), n.prefix_len().min(56))]),
                    None => (vec![enclosing_v6(*ip, 64)], vec![enclosing_v6(*ip, 56)]),
                },
                None => (Vec::new(), Vec::new()),
            };
            interfaces.push(NetworkInterface {
                interface_id: ids::resource_id("eni")?,
                mac: match &i.mac {
                    Some(mac) => mac.clone(),
                    None => ids::mac()?,
                },
                device_index: i.device_index,
                network_card_index: i.network_card_index,
                owner_id: cfg.account_id.clone(),
                subnet_id: i.subnet_id.clone().unwrap_or_else(|| default_subnet.clone()),
                vpc_id: default_vpc.clone(),
                private_ipv4s: v4,
                ipv6s: v6,
                ipv4_prefixes: i.ipv4_prefixes.clone(),
                ipv6_prefixes: i.ipv6_prefixes.clone(),
                public_ipv4: None,
                subnet_ipv4_cidr: Some(subnet_v4),
                subnet_ipv6_cidrs: subnet_v6,
                vpc_ipv4_cidrs: vec![subnet_v4],
                vpc_ipv6_cidrs: vpc_v6,
                security_groups: if i.security_groups.is_empty() {
                    vec![default_sg.clone()]
                } else {
                    i.security_groups.clone()
                },
            });
        }
        let instance_id = InstanceId::parse(&ids::resource_id("i")?)
            .map_err(|e| OpError::Store(StoreError::Backend(e.to_string())))?;
        Ok(Some(InstanceRecord {
            instance_id,
            generation: 1,
            incarnation: ids::incarnation()?,
            state: InstanceState::Running,
            reservation_id: reservation_id.to_owned(),
            owner_id: cfg.account_id.clone(),
            image_id: spec.image_id.clone(),
            instance_type: spec.instance_type.clone(),
            architecture: plan.architecture.clone(),
            ami_launch_index: index,
            kernel_id: spec.kernel_id.clone(),
            ramdisk_id: spec.ramdisk_id.clone(),
            product_codes: Vec::new(),
            billing_products: Vec::new(),
            instance_life_cycle: spec.instance_life_cycle.clone(),
            placement: Placement {
                availability_zone,
                availability_zone_id,
                region: cfg.region.clone(),
                group_name: spec.placement.group_name.clone(),
                partition_number: spec.placement.partition_number,
                host_id: spec.placement.host_id.clone(),
            },
            network_interfaces: interfaces,
            key: plan.key.clone(),
            iam_instance_profile: spec.iam_instance_profile.clone(),
            user_data: spec.user_data.clone(),
            tags: spec.tags.clone(),
            metadata_options: plan.options,
            block_devices: vec![
                BlockDevice { name: "ami".into(), device: plan.root_device_name.clone() },
                BlockDevice { name: "root".into(), device: plan.root_device_name.clone() },
            ],
            launch_time: now_secs,
            monitoring: spec.monitoring,
            lightsail: None,
        }))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, OpError> {
    serde_json::to_vec(value).map_err(|e| OpError::Store(StoreError::Backend(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::super::{OptionsState, Visibility};
    use super::*;
    use imds_store::Store;

    fn spec(count: u32) -> LaunchSpec {
        LaunchSpec {
            image_id: "ami-0abcdef1234567890".into(),
            instance_type: "t2.micro".into(),
            min_count: count,
            max_count: count,
            interfaces: vec![InterfaceSpec::default()],
            placement: PlacementSpec::default(),
            key_name: None,
            iam_instance_profile: None,
            user_data: None,
            tags: BTreeMap::new(),
            options: OptionsRequest::default(),
            monitoring: false,
            instance_life_cycle: "on-demand".into(),
            kernel_id: None,
            ramdisk_id: None,
            client_token: None,
        }
    }

    async fn launch(ops: &Ops, s: LaunchSpec) -> Result<Vec<InstanceRecord>, OpError> {
        match ops.prepare_launch(s).await? {
            Prepared::New(plan) => ops.commit_launch(&plan).await,
            Prepared::Existing(r) => Ok(r),
        }
    }

    fn v2_image() -> ImageRecord {
        ImageRecord {
            image_id: "ami-1".into(),
            name: "n".into(),
            description: None,
            architecture: "arm64".into(),
            imds_support: Some("v2.0".into()),
            root_device_name: "/dev/sda1".into(),
            virtualization_type: "hvm".into(),
            kernel_id: None,
            ramdisk_id: None,
            ena_support: true,
            boot_mode: None,
            tpm_support: None,
            sriov_net_support: None,
            image_location: None,
            creation_millis: 0,
            owner_id: "1".into(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn precedence_is_launch_then_account_then_ami_then_service() {
        let none = AccountDefaults::default();
        let img = v2_image();
        let o = resolve_options(&OptionsRequest::default(), &none, None);
        assert_eq!(o, MetadataOptions::default());
        let o = resolve_options(&OptionsRequest::default(), &none, Some(&img));
        assert_eq!((o.http_tokens, o.http_put_response_hop_limit.get()), (HttpTokens::Required, 2));
        let acct = AccountDefaults { http_tokens: Some(HttpTokens::Optional), ..Default::default() };
        let o = resolve_options(&OptionsRequest::default(), &acct, Some(&img));
        assert_eq!((o.http_tokens, o.http_put_response_hop_limit.get()), (HttpTokens::Optional, 2));
        let req = OptionsRequest { http_put_response_hop_limit: HopLimit::new(5).ok(), ..Default::default() };
        let o = resolve_options(&req, &acct, Some(&img));
        assert_eq!((o.http_tokens, o.http_put_response_hop_limit.get()), (HttpTokens::Optional, 5));
    }

    #[test]
    fn graviton_types_are_arm() {
        for t in ["t4g.micro", "m6gd.large", "c7gn.xlarge", "a1.medium", "im4gn.large", "is4gen.large"] {
            assert_eq!(architecture_of_type(t), "arm64", "{t}");
        }
        for t in ["t2.micro", "m5.large", "g4dn.xlarge", "c5n.large", "u-6tb1.metal", "weird"] {
            assert_eq!(architecture_of_type(t), "x86_64", "{t}");
        }
    }

    #[tokio::test]
    async fn launch_allocates_distinct_addresses_in_one_reservation() {
        let (ops, store, _) = testing::ops();
        let made = launch(&ops, spec(3)).await.unwrap();
        assert_eq!(made.len(), 3);
        let ips: Vec<_> = made.iter().map(|r| r.private_ipv4().unwrap().to_string()).collect();
        assert_eq!(ips, ["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert!(made.iter().all(|r| r.reservation_id == made[0].reservation_id));
        assert_eq!(made.iter().map(|r| r.ami_launch_index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(made[0].generation, 1);
        assert_eq!(made[0].placement.availability_zone, "us-east-1a");
        assert_eq!(made[0].network_interfaces[0].subnet_ipv4_cidr, "10.0.0.0/24".parse().ok());
        let (kvs, _) = store.list(addresses::ADDRESSES_PREFIX).await.unwrap();
        assert_eq!(kvs.len(), 3);
        let views = ops.list().await.unwrap();
        assert!(views.iter().all(|v| v.options_state == OptionsState::Pending));
    }

    #[tokio::test]
    async fn explicit_address_in_use_is_refused_until_released() {
        let (ops, _, _) = testing::ops();
        let mut s = spec(1);
        s.interfaces[0].private_ipv4s = vec![Ipv4Addr::new(192, 168, 1, 10)];
        let first = launch(&ops, s.clone()).await.unwrap();
        assert_eq!(first[0].network_interfaces[0].subnet_ipv4_cidr, "192.168.1.0/24".parse().ok());
        let err = launch(&ops, s.clone()).await.unwrap_err();
        assert!(matches!(&err, OpError::AddressInUse(a) if a == "192.168.1.10"), "{err:?}");
        let id = first[0].instance_id.clone();
        ops.update::<OpError, _>(&[id], Visibility::IncludeTerminated, |v| {
            let mut r = v[0].record.clone();
            r.state = InstanceState::Terminated;
            Ok(vec![r])
        })
        .await
        .unwrap();
        launch(&ops, s).await.unwrap();
    }

    #[tokio::test]
    async fn pool_exhaustion_respects_min_count() {
        let (ops, _, _) = testing::ops();
        // 10.0.0.0/24 has 256 - 5 usable addresses.
        let mut s = spec(1);
        s.min_count = 100;
        s.max_count = 300;
        assert_eq!(launch(&ops, s).await.unwrap().len(), 251);
        assert!(matches!(launch(&ops, spec(1)).await, Err(OpError::InsufficientAddresses(_))));
    }

    #[tokio::test]
    async fn client_token_returns_the_same_reservation() {
        let (ops, _, _) = testing::ops();
        let mut s = spec(2);
        s.client_token = Some(("tok".into(), "fp1".into()));
        let a = launch(&ops, s.clone()).await.unwrap();
        let b = launch(&ops, s.clone()).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(ops.list().await.unwrap().len(), 2);
        s.client_token = Some(("tok".into(), "fp2".into()));
        assert!(matches!(launch(&ops, s).await, Err(OpError::IdempotentMismatch)));
    }

    #[tokio::test]
    async fn enforcement_tags_and_key_pairs_are_checked_before_writing() {
        let (ops, _, _) = testing::ops();
        let mut s = spec(1);
        s.options.instance_metadata_tags = Some(Enabled::Enabled);
        s.tags.insert("bad key".into(), "v".into());
        assert!(matches!(launch(&ops, s).await, Err(OpError::ImdsTagKey(k)) if k == "bad key"));
        let mut s = spec(1);
        s.key_name = Some("nope".into());
        assert!(matches!(launch(&ops, s).await, Err(OpError::KeyPairNotFound(_))));
        let enforce = super::super::settings::DefaultsPatch {
            http_tokens_enforced: Some(Some(Enabled::Enabled)),
            ..Default::default()
        };
        ops.modify_account_defaults::<OpError>(enforce, |_| Ok(())).await.unwrap();
        assert!(matches!(launch(&ops, spec(1)).await, Err(OpError::HttpTokensEnforced)));
        let mut s = spec(1);
        s.options.http_tokens = Some(HttpTokens::Required);
        launch(&ops, s).await.unwrap();
        assert_eq!(ops.list().await.unwrap().len(), 1);
    }

    fn info(name: &str) -> LightsailInfo {
        LightsailInfo {
            name: name.into(),
            resource_id: format!("uuid-{name}"),
            blueprint_id: "amazon_linux_2023".into(),
            bundle_id: "nano_3_0".into(),
            ip_address_type: "ipv4".into(),
            created_at_millis: 1,
        }
    }

    async fn plan(ops: &Ops, count: u32) -> LaunchPlan {
        match ops.prepare_launch(spec(count)).await.unwrap() {
            Prepared::New(p) => *p,
            Prepared::Existing(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn named_launches_claim_names_until_termination() {
        let (ops, store, _) = testing::ops();
        let made = ops.commit_launch_named(&plan(&ops, 2).await, &[info("a1"), info("b2")]).await.unwrap();
        assert_eq!(made[1].lightsail.as_ref().map(|l| l.name.as_str()), Some("b2"));
        let (kvs, _) = store.list(names::NAMES_PREFIX).await.unwrap();
        assert_eq!(kvs.len(), 2);
        let again = ops.commit_launch_named(&plan(&ops, 2).await, &[info("c3"), info("b2")]).await;
        assert!(matches!(&again, Err(OpError::NameInUse(n)) if n == &["b2".to_owned()]), "{again:?}");
        assert_eq!(ops.list().await.unwrap().len(), 2, "a refused launch creates nothing");
        assert!(ops.get_by_name("b2").await.unwrap().is_some());
        assert_eq!(ops.list_named().await.unwrap().len(), 2);
        let id = made[1].instance_id.clone();
        ops.update::<OpError, _>(&[id], Visibility::LiveOnly, |v| {
            let mut r = v[0].record.clone();
            r.state = InstanceState::Terminated;
            Ok(vec![r])
        })
        .await
        .unwrap();
        assert!(ops.get_by_name("b2").await.unwrap().is_none());
        assert_eq!(store.list(names::NAMES_PREFIX).await.unwrap().0.len(), 1, "the name was released");
        let b2 = ops.commit_launch_named(&plan(&ops, 1).await, &[info("b2")]).await.unwrap();
        assert_eq!(ops.get_by_name("b2").await.unwrap().unwrap().record.instance_id, b2[0].instance_id);
        // A stale index entry (its instance gone) does not block the name.
        let stale = Op::put(names::name_key("d4"), "i-0123456789abcdef0");
        store.txn(Vec::new(), vec![stale]).await.unwrap().unwrap();
        ops.commit_launch_named(&plan(&ops, 1).await, &[info("d4")]).await.unwrap();
        // Counts must match.
        assert!(ops.commit_launch_named(&plan(&ops, 2).await, &[info("e5")]).await.is_err());
    }

    /// Ops in fleet mode over a store where `hosts` are alive.
    async fn fleet_ops(hosts: &[&str]) -> Ops {
        let (ops, store, clock) = testing::ops();
        let config =
            super::super::OpsConfig { host_assignment: HostAssignment::LiveHosts, ..ops.config().clone() };
        for h in hosts {
            store.txn(Vec::new(), vec![Op::put(records::host_key(h), "{}")]).await.unwrap().unwrap();
        }
        Ops::new(store, std::sync::Arc::new(clock), config)
    }

    fn host_of(r: &InstanceRecord) -> &str {
        r.placement.host_id.as_deref().unwrap_or("-")
    }

    #[test]
    fn least_loaded_breaks_ties_by_host_id() {
        let load: BTreeMap<String, usize> = [("h-b".into(), 1), ("h-c".into(), 0), ("h-a".into(), 0)].into();
        assert_eq!(least_loaded(&load).as_deref(), Some("h-a"));
        assert_eq!(least_loaded(&BTreeMap::new()), None);
    }

    #[tokio::test]
    async fn fleet_launches_spread_over_the_least_loaded_live_hosts() {
        let ops = fleet_ops(&["h-b", "h-a"]).await;
        let made = launch(&ops, spec(3)).await.unwrap();
        assert_eq!(made.iter().map(host_of).collect::<Vec<_>>(), ["h-a", "h-b", "h-a"]);
        assert_eq!(host_of(&launch(&ops, spec(1)).await.unwrap()[0]), "h-b");
        // Terminated instances do not count: h-a drops to 0 of 4.
        let on_a: Vec<InstanceId> =
            made.iter().filter(|r| host_of(r) == "h-a").map(|r| r.instance_id.clone()).collect();
        ops.update::<OpError, _>(&on_a, Visibility::LiveOnly, |v| {
            Ok(v.iter()
                .map(|v| InstanceRecord { state: InstanceState::Terminated, ..v.record.clone() })
                .collect())
        })
        .await
        .unwrap();
        assert_eq!(host_of(&launch(&ops, spec(1)).await.unwrap()[0]), "h-a");
    }

    #[tokio::test]
    async fn fleet_launches_need_a_live_host_and_named_hosts_must_be_alive() {
        let ops = fleet_ops(&[]).await;
        assert!(matches!(launch(&ops, spec(1)).await, Err(OpError::NoLiveHost)));
        assert!(ops.list().await.unwrap().is_empty(), "a refused launch creates nothing");
        let ops = fleet_ops(&["h-1"]).await;
        assert_eq!(host_of(&launch(&ops, spec(1)).await.unwrap()[0]), "h-1");
        let mut s = spec(1);
        s.placement.host_id = Some("h-2".into());
        assert!(matches!(launch(&ops, s.clone()).await, Err(OpError::HostNotFound(h)) if h == "h-2"));
        s.placement.host_id = Some("h-1".into());
        assert_eq!(host_of(&launch(&ops, s).await.unwrap()[0]), "h-1");
    }

    #[tokio::test]
    async fn one_host_mode_keeps_the_given_host_or_none() {
        let (ops, _, _) = testing::ops();
        assert_eq!(launch(&ops, spec(1)).await.unwrap()[0].placement.host_id, None);
        let mut s = spec(1);
        s.placement.host_id = Some("h-elsewhere".into());
        assert_eq!(host_of(&launch(&ops, s).await.unwrap()[0]), "h-elsewhere");
    }

    #[tokio::test]
    async fn ipv6_counts_need_a_pool() {
        let (ops, _, _) = testing::ops();
        let mut s = spec(1);
        s.interfaces[0].ipv6_count = 2;
        let r = launch(&ops, s).await.unwrap();
        let n = &r[0].network_interfaces[0];
        assert_eq!(n.ipv6s.len(), 2);
        assert_eq!(n.subnet_ipv6_cidrs, vec!["2001:db8::/64".parse::<Ipv6Net>().unwrap()]);
    }
}
