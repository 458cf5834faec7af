//! The address index: `addresses/<ip>` (and `addresses/<cidr>` for
//! delegated prefixes) names the instance holding that address, so two
//! launches racing for one address cannot both win — each create is
//! conditional on its index keys being absent. Terminating an instance
//! deletes its keys in the same transaction.
//!
//! Allocation picks the lowest free address of the pool, skipping what VPC
//! reserves (the network address and the next three, and the last address).
//! Addresses of live instances written without index keys (e.g. by
//! `imdsd serve --demo`) also count as used. This module does not decide
//! how many addresses an instance gets (the launch does).

use imds_core::{InstanceRecord, InstanceState};
use imds_store::{Compare, Op, Store, StoreError};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix of the address index.
pub const ADDRESSES_PREFIX: &str = "addresses/";

/// How many addresses at the start of a subnet VPC reserves.
pub const RESERVED_AT_START: u32 = 4;

/// `addresses/<ip>`.
pub fn address_key(ip: IpAddr) -> String {
    format!("{ADDRESSES_PREFIX}{ip}")
}

/// `addresses/<cidr>` for a delegated prefix.
pub fn prefix_key(net: IpNet) -> String {
    format!("{ADDRESSES_PREFIX}{net}")
}

/// Every index key an instance's addresses and prefixes occupy.
pub fn keys_of(record: &InstanceRecord) -> Vec<String> {
    let mut keys = Vec::new();
    for n in &record.network_interfaces {
        keys.extend(n.private_ipv4s.iter().map(|a| address_key(IpAddr::V4(*a))));
        keys.extend(n.ipv6s.iter().map(|a| address_key(IpAddr::V6(*a))));
        keys.extend(n.ipv4_prefixes.iter().map(|p| prefix_key(IpNet::V4(*p))));
        keys.extend(n.ipv6_prefixes.iter().map(|p| prefix_key(IpNet::V6(*p))));
    }
    keys
}

/// Compares and deletes that release the index keys `record` holds (only
/// keys whose value still names it), for the transaction that terminates it.
pub async fn release(
    store: &dyn Store,
    record: &InstanceRecord,
) -> Result<(Vec<Compare>, Vec<Op>), StoreError> {
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    for key in keys_of(record) {
        if !seen.insert(key.clone()) {
            continue;
        }
        if let Some(kv) = store.get(&key).await?
            && kv.value == record.instance_id.as_str().as_bytes()
        {
            compares.push(Compare::ModRevision(key.clone(), kv.mod_revision));
            ops.push(Op::delete(key));
        }
    }
    Ok((compares, ops))
}

/// The set of index keys in use: the index itself plus the addresses of
/// every instance that is not terminated.
pub async fn used_keys(
    store: &dyn Store,
    instances: &[InstanceRecord],
) -> Result<HashSet<String>, StoreError> {
    let (kvs, _) = store.list(ADDRESSES_PREFIX).await?;
    let mut used: HashSet<String> = kvs.into_iter().map(|kv| kv.key).collect();
    for r in instances.iter().filter(|r| r.state != InstanceState::Terminated) {
        used.extend(keys_of(r));
    }
    Ok(used)
}

/// Whether `ip` is one of the addresses VPC keeps for itself in `net`.
pub fn is_reserved_v4(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    let offset = u32::from(ip).wrapping_sub(u32::from(net.network()));
    net.contains(&ip) && (offset < RESERVED_AT_START || ip == net.broadcast())
}

/// Hands out the lowest free addresses of the pools, marking what it hands
/// out (and what callers claim explicitly) as used.
#[derive(Debug)]
pub struct Allocator {
    used: HashSet<String>,
}

impl Allocator {
    /// An allocator over the given used index keys.
    pub fn new(used: HashSet<String>) -> Self {
        Self { used }
    }

    /// Marks an explicitly requested key as taken; `false` if it already was.
    pub fn claim(&mut self, key: String) -> bool {
        self.used.insert(key)
    }

    /// Whether a key is in use.
    pub fn is_used(&self, key: &str) -> bool {
        self.used.contains(key)
    }

    /// The lowest free IPv4 address of `net`, claimed.
    pub fn next_v4(&mut self, net: Ipv4Net) -> Option<Ipv4Addr> {
        let first = u32::from(net.network()).checked_add(RESERVED_AT_START)?;
        let last = u32::from(net.broadcast()).checked_sub(1)?;
        (first..=last).map(Ipv4Addr::from).find(|ip| self.used.insert(address_key(IpAddr::V4(*ip))))
    }

    /// The lowest free IPv6 address of `net`, claimed.
    pub fn next_v6(&mut self, net: Ipv6Net) -> Option<Ipv6Addr> {
        let first = u128::from(net.network()).checked_add(u128::from(RESERVED_AT_START))?;
        let last = u128::from(net.broadcast()).checked_sub(1)?;
        // Bounded by how many are used: at most that many probes fail.
        let probes = u128::try_from(self.used.len()).unwrap_or(u128::MAX).saturating_add(1);
        let end = last.min(first.saturating_add(probes));
        (first..=end).map(Ipv6Addr::from).find(|ip| self.used.insert(address_key(IpAddr::V6(*ip))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_skips_reserved_and_used() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let mut a = Allocator::new(HashSet::from([address_key("10.0.0.5".parse().unwrap())]));
        assert_eq!(a.next_v4(net), Some(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(a.next_v4(net), Some(Ipv4Addr::new(10, 0, 0, 6)));
        assert_eq!(a.next_v4(net), None, ".7 is the broadcast address");
        assert!(is_reserved_v4(net, Ipv4Addr::new(10, 0, 0, 1)));
        assert!(is_reserved_v4(net, Ipv4Addr::new(10, 0, 0, 7)));
        assert!(!is_reserved_v4(net, Ipv4Addr::new(10, 0, 0, 4)));
        assert!(!is_reserved_v4(net, Ipv4Addr::new(192, 168, 0, 1)));
        assert_eq!(Allocator::new(HashSet::new()).next_v4("10.0.0.0/31".parse().unwrap()), None);
    }

    #[test]
    fn ipv6_allocation_is_sequential() {
        let net: Ipv6Net = "2001:db8::/64".parse().unwrap();
        let mut a = Allocator::new(HashSet::new());
        assert_eq!(a.next_v6(net), Some("2001:db8::4".parse().unwrap()));
        assert_eq!(a.next_v6(net), Some("2001:db8::5".parse().unwrap()));
        assert!(!a.claim(address_key("2001:db8::5".parse().unwrap())));
        assert!(a.claim(address_key("2001:db8::9".parse().unwrap())));
    }
}
