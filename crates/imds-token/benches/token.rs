//! Token seal and open: the cryptographic cost of every `PUT
//! /latest/api/token` and every IMDSv2 GET. `cargo bench -p imds-token`.
//!
//! Besides the happy paths, the refusals are measured: a token of the wrong
//! length must cost next to nothing (it is refused before base64 and AEAD),
//! and a forged one costs one AEAD open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench panics on setup failure

use criterion::{Criterion, criterion_group, criterion_main};
use imds_token::{KeyRing, TokenBinding};
use std::hint::black_box;

const T0: u64 = 1_700_000_000_000;

fn token(c: &mut Criterion) {
    let ring = KeyRing::generate(T0).unwrap();
    let binding = TokenBinding { instance_id: "i-0123456789abcdef0", incarnation: 7 };
    let other = TokenBinding { instance_id: "i-0123456789abcdef1", incarnation: 7 };
    let good = ring.seal(&binding, T0, 21_600).unwrap();
    let mut forged = good.clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };

    let mut g = c.benchmark_group("token");
    g.bench_function("seal", |b| b.iter(|| ring.seal(black_box(&binding), black_box(T0), 21_600).unwrap()));
    g.bench_function("open_valid", |b| {
        b.iter(|| ring.open(black_box(good.as_bytes()), black_box(&binding), T0 + 1_000).unwrap())
    });
    g.bench_function("open_other_instance", |b| {
        b.iter(|| ring.open(black_box(good.as_bytes()), black_box(&other), T0 + 1_000).unwrap_err())
    });
    g.bench_function("open_forged", |b| {
        b.iter(|| ring.open(black_box(&forged), black_box(&binding), T0 + 1_000).unwrap_err())
    });
    g.bench_function("open_wrong_length", |b| {
        let long = [b'A'; 4096];
        b.iter(|| ring.open(black_box(&long), black_box(&binding), T0 + 1_000).unwrap_err())
    });

    // After rotations the token of the oldest key still kept is found last.
    let mut rotated = ring.clone();
    for i in 1..=8 {
        rotated.rotate(T0 + i * 1_000).unwrap();
    }
    g.bench_function("open_after_8_rotations", |b| {
        b.iter(|| rotated.open(black_box(good.as_bytes()), black_box(&binding), T0 + 10_000).unwrap())
    });
    g.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
