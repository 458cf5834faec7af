//! Source address → owner lookup: exact addresses and delegated prefixes,
//! longest prefix wins.
//!
//! Written here rather than taken from a trie crate because the shape of the
//! data is special: nearly every entry is a host route (an instance's private
//! address), answered by one hash lookup, and the few delegated prefixes come
//! in a handful of distinct lengths (`/28` for IPv4, `/80` for IPv6), so one
//! hash map per distinct length, probed from the longest, is both the
//! simplest and the fastest structure.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// The maps of the table. foldhash rather than the standard SipHash: every
/// data-plane request and accepted connection does a lookup, and its keys
/// (addresses) are short fixed-size integers, where foldhash is several
/// times faster. Still seeded per map at random, so the addresses the
/// control plane registers cannot be chosen to collide.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Maps source addresses to values (instances) by exact address or by the
/// longest matching prefix. Immutable once built; rebuild to change.
#[derive(Debug, Clone)]
pub struct SourceTable<T> {
    exact: Map<IpAddr, T>,
    /// (prefix length, masked network address → value), longest first.
    v4: Vec<(u8, Map<u32, T>)>,
    v6: Vec<(u8, Map<u128, T>)>,
}

impl<T> Default for SourceTable<T> {
    fn default() -> Self {
        Self { exact: Map::default(), v4: Vec::new(), v6: Vec::new() }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, seen on dual-stack
/// listeners) are the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn mask_v4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len))) }
}

fn mask_v6(addr: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { addr & (u128::MAX << (128 - u32::from(len))) }
}

impl<T> SourceTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `net` → `value`. Host routes (`/32`, `/128`) go to the exact map.
    /// Returns the value previously registered for exactly this network.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match net.trunc() {
            IpNet::V4(n) if n.prefix_len() == 32 => self.exact.insert(IpAddr::V4(n.addr()), value),
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.exact.insert(canonical_ip(IpAddr::V6(n.addr())), value)
            }
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let map = slot(&mut self.v4, len);
                map.insert(u32::from(n.addr()), value)
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let map = slot(&mut self.v6, len);
                map.insert(u128::from(n.addr()), value)
            }
        }
    }

    /// The value for `ip`: its exact entry, else the longest matching prefix.
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let ip = canonical_ip(ip);
        if let Some(v) = self.exact.get(&ip) {
            return Some(v);
        }
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(len, m)| m.get(&mask_v4(a, *len)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(len, m)| m.get(&mask_v6(a, *len)))
            }
        }
    }

    /// Number of entries (addresses plus prefixes).
    pub fn len(&self) -> usize {
        self.exact.len()
            + self.v4.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// `true` when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The map for prefix length `len`, created in longest-first order if new.
fn slot<K, T>(levels: &mut Vec<(u8, Map<K, T>)>, len: u8) -> &mut Map<K, T> {
    let pos = match levels.iter().position(|(l, _)| *l <= len) {
        Some(p) if levels[p].0 == len => p,
        Some(p) => {
            levels.insert(p, (len, Map::default()));
            p
        }
        None => {
            levels.push((len, Map::default()));
            levels.len() - 1
        }
    };
    &mut levels[pos].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn exact_address_beats_prefix() {
        let mut t = SourceTable::new();
        t.insert(net("10.0.0.0/24"), "vm-prefix");
        t.insert(net("10.0.0.7/32"), "vm7");
        assert_eq!(t.lookup("10.0.0.7".parse().unwrap()), Some(&"vm7"));
        assert_eq!(t.lookup("10.0.0.8".parse().unwrap()), Some(&"vm-prefix"));
        assert_eq!(t.lookup("10.0.1.8".parse().unwrap()), None);
    }

    #[test]
    fn longest_prefix_wins_whatever_the_insertion_order() {
        let mut t = SourceTable::new();
        t.insert(net("10.0.0.0/8"), 8);
        t.insert(net("10.1.2.0/28"), 28);
        t.insert(net("10.1.0.0/16"), 16);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(&28));
        assert_eq!(t.lookup("10.1.9.3".parse().unwrap()), Some(&16));
        assert_eq!(t.lookup("10.9.9.9".parse().unwrap()), Some(&8));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ipv6_prefixes_and_mapped_ipv4() {
        let mut t = SourceTable::new();
        t.insert(net("fd00:201:1::/64"), "ctr-prefix");
        t.insert(net("127.0.0.1/32"), "loopback");
        assert_eq!(t.lookup("fd00:201:1::2".parse().unwrap()), Some(&"ctr-prefix"));
        assert_eq!(t.lookup("fd00:201:2::2".parse().unwrap()), None);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(t.lookup(mapped), Some(&"loopback"));
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::LOCALHOST)), None);
    }

    #[test]
    fn host_bits_of_a_prefix_are_ignored() {
        let mut t = SourceTable::new();
        t.insert(net("10.201.1.77/24"), 1);
        assert_eq!(t.lookup("10.201.1.2".parse().unwrap()), Some(&1));
    }

    proptest! {
        /// The table agrees with a brute-force longest-prefix search.
        #[test]
        fn matches_brute_force(prefixes in prop::collection::vec((any::<u32>(), 0u8..=32), 0..20), probe in any::<u32>()) {
            let mut t = SourceTable::new();
            let mut list = Vec::new();
            for (i, (addr, len)) in prefixes.iter().enumerate() {
                let n = IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(*addr), *len).unwrap().trunc());
                t.insert(n, i);
                list.retain(|(m, _): &(IpNet, usize)| *m != n);
                list.push((n, i));
            }
            let ip = IpAddr::V4(Ipv4Addr::from(probe));
            let expected = list.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, i)| *i);
            prop_assert_eq!(t.lookup(ip).copied(), expected);
        }
    }
}
