//! Minted role credentials: temporary keys `imdsd` issues itself.
//!
//! Each instance with a role gets two independent sets (IMDSv1 and IMDSv2
//! callers see different keys, data-plane.md §8) plus the instance identity
//! credentials. They live for [`CredentialPolicy::lifetime_secs`] and are
//! replaced [`CredentialPolicy::refresh_before_secs`] before they expire, so
//! clients (botocore refreshes 15 minutes ahead) always get a fresh set.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imds_core::RoleCredentials;

/// How long minted credentials live and when they are replaced.
#[derive(Debug, Clone, Copy)]
pub struct CredentialPolicy {
    /// Validity of a new set (EC2: about 6 hours).
    pub lifetime_secs: u64,
    /// A set with less than this left is replaced (EC2: at least 5 minutes;
    /// we use an hour so no SDK ever sees credentials it considers stale).
    pub refresh_before_secs: u64,
}

impl Default for CredentialPolicy {
    fn default() -> Self {
        Self { lifetime_secs: 6 * 3600, refresh_before_secs: 3600 }
    }
}

impl CredentialPolicy {
    /// Whether `creds` must be replaced at `now_secs`.
    pub fn needs_refresh(&self, creds: &RoleCredentials, now_secs: u64) -> bool {
        creds.expiration <= now_secs.saturating_add(self.refresh_before_secs)
    }
}

/// Randomness failed (the OS RNG is unavailable).
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    SystemRandom::new().fill(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// Mints one set: `ASIA` + 16 upper-case alphanumerics, a 40-character
/// secret, an opaque session token.
pub fn mint(now_secs: u64, policy: &CredentialPolicy) -> Result<RoleCredentials, RandomError> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id_bytes = random_bytes::<16>()?;
    let access_key_id: String =
        "ASIA".chars().chain(id_bytes.iter().map(|b| ALNUM[usize::from(b & 31)] as char)).collect();
    let secret: String = STANDARD.encode(random_bytes::<30>()?);
    let token = format!("IQoJb3JpZ2luX2VjE{}", STANDARD.encode(random_bytes::<288>()?));
    Ok(RoleCredentials {
        access_key_id,
        secret_access_key: secret,
        token,
        last_updated: now_secs,
        expiration: now_secs.saturating_add(policy.lifetime_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_have_aws_shapes() {
        let c = mint(1_000, &CredentialPolicy::default()).unwrap();
        assert_eq!(c.access_key_id.len(), 20);
        assert!(c.access_key_id.starts_with("ASIA"));
        assert!(c.access_key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(c.secret_access_key.len(), 40);
        assert!(c.token.len() > 300);
        assert_eq!(c.expiration - c.last_updated, 6 * 3600);
    }

    #[test]
    fn two_mints_differ() {
        let p = CredentialPolicy::default();
        assert_ne!(mint(1, &p).unwrap().access_key_id, mint(1, &p).unwrap().access_key_id);
    }

    #[test]
    fn refresh_an_hour_before_expiry() {
        let p = CredentialPolicy::default();
        let c = mint(0, &p).unwrap();
        assert!(!p.needs_refresh(&c, 5 * 3600 - 1));
        assert!(p.needs_refresh(&c, 5 * 3600));
    }
}
