//! At least 100,000 forged, bit-flipped, truncated, cross-instance and
//! expired tokens, every one rejected; and every genuine token accepted.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_token::{KeyRing, TokenBinding, TokenError};

const NOW: u64 = 1_700_000_000_000;

#[test]
fn a_hundred_thousand_bad_tokens_are_all_rejected() {
    let ring = KeyRing::generate(NOW).unwrap();
    let other_ring = KeyRing::generate(NOW).unwrap();
    let mine = TokenBinding { instance_id: "i-0123456789abcdef0", incarnation: 7 };
    let other_instance = TokenBinding { instance_id: "i-0fedcba9876543210", incarnation: 7 };
    let other_run = TokenBinding { instance_id: "i-0123456789abcdef0", incarnation: 8 };
    let mut rejected = 0usize;
    let mut reject = |token: &[u8], binding: &TokenBinding<'_>, at: u64, ring: &KeyRing| {
        assert!(
            ring.open(token, binding, at).is_err(),
            "accepted a bad token: {:?}",
            String::from_utf8_lossy(token)
        );
        rejected += 1;
    };
    for round in 0..400u64 {
        let token = ring.seal(&mine, NOW, 60).unwrap();
        assert_eq!(ring.open(token.as_bytes(), &mine, NOW + 59_999), Ok(0));
        let bytes = token.as_bytes();
        // Every single-bit flip of the text (8 per character).
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut forged = bytes.to_vec();
                forged[i] ^= 1 << bit;
                reject(&forged, &mine, NOW, &ring);
            }
        }
        // Every truncation and one extension.
        for len in 0..bytes.len() {
            reject(&bytes[..len], &mine, NOW, &ring);
        }
        reject(format!("{token}A").as_bytes(), &mine, NOW, &ring);
        // Another instance, another run of the same instance, another host's keys.
        reject(bytes, &other_instance, NOW, &ring);
        reject(bytes, &other_run, NOW, &ring);
        reject(bytes, &mine, NOW, &other_ring);
        // Expired: exactly at expiry and long after.
        reject(bytes, &mine, NOW + 60_000, &ring);
        reject(bytes, &mine, NOW + 60_000 + round * 1_000_000, &ring);
        // Random garbage of the right length and alphabet.
        let garbage: String = (0..bytes.len())
            .map(|j| {
                let x = (round * 31 + j as u64 * 17) % 64;
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[x as usize] as char
            })
            .collect();
        reject(garbage.as_bytes(), &mine, NOW, &ring);
    }
    assert!(rejected >= 100_000, "only {rejected} forgeries tried");
    // The reasons are the documented ones.
    let token = ring.seal(&mine, NOW, 1).unwrap();
    assert_eq!(ring.open(token.as_bytes(), &mine, NOW + 1_000), Err(TokenError::Expired));
    assert_eq!(ring.open(token.as_bytes(), &other_instance, NOW), Err(TokenError::Forged));
    assert_eq!(ring.open(b"x", &mine, NOW), Err(TokenError::Malformed));
}
