//! One token key: an id, 32 bytes of AES-256-GCM key material, and when it
//! was created.
//!
//! Owns key generation, its serde form (material as a base64 string, for the
//! store) and keeping the material out of `Debug` output. Which key seals and
//! which keys open is [`crate::KeyRing`]'s business.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TokenError;

/// Length of AES-256 key material in bytes.
const KEY_LEN: usize = 32;

/// One AES-256-GCM token key with an id.
///
/// Serializes as `{"id": .., "material": "<base64>", "created_millis": ..}`.
/// `Debug` shows the id and creation time, never the material.
#[derive(Clone)]
pub struct TokenKey {
    id: u32,
    material: [u8; KEY_LEN],
    created_millis: u64,
    /// Prepared once so sealing and opening do no key setup. `Arc` because
    /// aws-lc-rs keys are not `Clone` and a ring is cloned on every rotation.
    aead: Arc<LessSafeKey>,
}

impl TokenKey {
    /// Generates a key with fresh random material.
    ///
    /// `now_millis` (Unix milliseconds) is recorded as its creation time; the
    /// key ring uses it to decide when an old key can be dropped.
    pub fn generate(id: u32, now_millis: u64) -> Result<Self, TokenError> {
        let mut material = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut material).map_err(|_| TokenError::Crypto("generating key material"))?;
        Self::from_parts(id, material, now_millis)
    }

    /// The id written into every token this key seals.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// When this key was created, in Unix milliseconds.
    pub fn created_millis(&self) -> u64 {
        self.created_millis
    }

    /// The prepared AEAD key.
    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.aead
    }

    fn from_parts(id: u32, material: [u8; KEY_LEN], created_millis: u64) -> Result<Self, TokenError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &material)
            .map_err(|_| TokenError::Crypto("preparing AES-256-GCM key"))?;
        Ok(Self { id, material, created_millis, aead: Arc::new(LessSafeKey::new(unbound)) })
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("created_millis", &self.created_millis)
            .field("material", &"<redacted>")
            .finish()
    }
}

/// The persisted form of a [`TokenKey`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenKeyRepr {
    id: u32,
    material: String,
    created_millis: u64,
}

impl Serialize for TokenKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TokenKeyRepr {
            id: self.id,
            material: STANDARD.encode(self.material),
            created_millis: self.created_millis,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TokenKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = TokenKeyRepr::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(repr.material.as_bytes())
            .map_err(|_| D::Error::custom("token key material is not valid base64"))?;
        let material: [u8; KEY_LEN] =
            bytes.try_into().map_err(|_| D::Error::custom("token key material must be 32 bytes"))?;
        Self::from_parts(repr.id, material, repr.created_millis).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        let a = TokenKey::generate(1, 0).unwrap();
        let b = TokenKey::generate(1, 0).unwrap();
        assert_ne!(a.material, b.material);
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let key = TokenKey::generate(7, 42).unwrap();
        let debug = format!("{key:?}");
        let json = serde_json::to_value(&key).unwrap();
        let b64 = json["material"].as_str().unwrap();
        assert!(!debug.contains(b64), "{debug}");
        assert!(!debug.contains(&format!("{:?}", key.material)), "{debug}");
        assert!(debug.contains("redacted") && debug.contains("id: 7"), "{debug}");
    }

    #[test]
    fn serde_round_trip_keeps_id_time_and_material() {
        let key = TokenKey::generate(3, 1_700_000_000_000).unwrap();
        let json = serde_json::to_string(&key).unwrap();
        let back: TokenKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.id(), 3);
        assert_eq!(back.created_millis(), 1_700_000_000_000);
        assert_eq!(back.material, key.material);
    }

    #[test]
    fn deserialize_refuses_wrong_material_length() {
        let short = r#"{"id":1,"material":"AAAA","created_millis":0}"#;
        assert!(serde_json::from_str::<TokenKey>(short).is_err());
        let not_b64 = r#"{"id":1,"material":"!!!!","created_millis":0}"#;
        assert!(serde_json::from_str::<TokenKey>(not_b64).is_err());
    }
}
