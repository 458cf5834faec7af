//! Source address → instance lookup, the first thing done for every
//! connection and every request: with 10 and with 100,000 registered
//! instances, the cost must not grow. `cargo bench -p imds-net`.
//!
//! Tables hold host routes (an instance's private IPv4 and IPv6 address)
//! plus a few delegated prefixes (`/28` IPv4, `/80` IPv6), as a host with
//! prefix delegation has.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench panics on setup failure

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imds_net::SourceTable;
use ipnet::IpNet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Instance `n`'s private IPv4 address: 10.0.0.1 + n.
fn v4(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + n)
}

/// Instance `n`'s IPv6 address inside 2001:db8::/32.
fn v6(n: u32) -> Ipv6Addr {
    Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(n) << 16 | 1)
}

fn table(instances: u32) -> SourceTable<u32> {
    let mut t = SourceTable::new();
    for n in 0..instances {
        t.insert(IpNet::from(IpAddr::V4(v4(n))), n);
        t.insert(IpNet::from(IpAddr::V6(v6(n))), n);
    }
    // One delegated prefix per 100 instances (at least one), in 172.16/12
    // and fd00::/8.
    for p in 0..(instances / 100).max(1) {
        let net4 = format!("{}/28", Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + p * 16));
        t.insert(net4.parse().unwrap(), instances + p);
        let net6 = format!("{}/80", Ipv6Addr::from((0xfd00_u128 << 112) | u128::from(p) << 48));
        t.insert(net6.parse().unwrap(), instances + p);
    }
    t
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("source_lookup");
    for instances in [10u32, 100_000] {
        let t = table(instances);
        let last = instances - 1;
        let cases: [(&str, IpAddr); 5] = [
            ("v4_exact", IpAddr::V4(v4(last / 2))),
            ("v6_exact", IpAddr::V6(v6(last / 2))),
            ("v4_mapped_exact", IpAddr::V6(v4(last / 3).to_ipv6_mapped())),
            ("v4_prefix", IpAddr::V4(Ipv4Addr::new(172, 16, 0, 5))),
            ("v4_miss", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        ];
        for (name, ip) in cases {
            if name != "v4_miss" {
                assert!(t.lookup(ip).is_some(), "{name} must hit");
            }
            g.bench_with_input(BenchmarkId::new(name, instances), &ip, |b, ip| {
                b.iter(|| t.lookup(black_box(*ip)).copied())
            });
        }
        // Many different callers in turn: the table no longer sits in cache
        // at 100k entries (4096 addresses spread over the whole table).
        let spread: Vec<IpAddr> =
            (0..4096u32).map(|i| IpAddr::V4(v4(i.wrapping_mul(2_654_435_761) % instances))).collect();
        g.bench_function(BenchmarkId::new("v4_exact_spread", instances), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                t.lookup(black_box(spread[i])).copied()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
