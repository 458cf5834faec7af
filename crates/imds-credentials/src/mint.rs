//! Minting: random temporary keys in the shapes AWS uses.
//!
//! Owns only the generation of key material from the system RNG; when and
//! for whom keys are minted is decided by the manager.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imds_core::RoleCredentials;

/// Prefix of every session token, like real STS tokens (`IQoJb3JpZ2luX2Vj`
/// is base64 of the start of their encoded origin field).
pub const TOKEN_PREFIX: &str = "IQoJb3JpZ2luX2VjE";

/// The system random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Fills `buf` from the system RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    SystemRandom::new().fill(buf).map_err(|_| RandomError)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// Mints one set valid from `now_secs` for `lifetime_secs`: `ASIA` + 16
/// upper-case base32 characters (20 in all), a 40-character secret of
/// `[A-Za-z0-9+/]`, and a 401-character opaque session token.
pub fn mint(now_secs: u64, lifetime_secs: u64) -> Result<RoleCredentials, RandomError> {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id_bytes = random_bytes::<16>()?;
    let access_key_id: String =
        "ASIA".chars().chain(id_bytes.iter().map(|b| char::from(BASE32[usize::from(b & 31)]))).collect();
    // 30 bytes encode to exactly 40 characters, without padding.
    let secret_access_key = STANDARD.encode(random_bytes::<30>()?);
    let token = format!("{TOKEN_PREFIX}{}", STANDARD.encode(random_bytes::<288>()?));
    Ok(RoleCredentials {
        access_key_id,
        secret_access_key,
        token,
        last_updated: now_secs,
        expiration: now_secs.saturating_add(lifetime_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_have_aws_shapes() {
        let c = mint(1_000, 21_600).unwrap();
        assert_eq!(c.access_key_id.len(), 20);
        assert!(c.access_key_id.starts_with("ASIA"));
        assert!(c.access_key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(c.secret_access_key.len(), 40);
        assert!(c.secret_access_key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        assert!(c.token.starts_with("IQoJb3JpZ2luX2Vj") && c.token.len() > 300);
        assert_eq!((c.last_updated, c.expiration), (1_000, 22_600));
    }

    #[test]
    fn two_mints_differ() {
        let (a, b) = (mint(1, 10).unwrap(), mint(1, 10).unwrap());
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.token, b.token);
    }
}
