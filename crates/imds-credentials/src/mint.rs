//! Minting: credential sets computed from the fleet-wide minting key, like
//! real STS session tokens, so that nothing is stored per set.
//!
//! This module owns the minting key (`secrets/minting-key` in the store,
//! created once by whichever process needs it first), the derivation of a
//! set from its [`SetSpec`], and the opening of a session token back into
//! the spec it was minted from ([`MintingKey::open`]). When sets are issued
//! is the manager's business; whether an opened set is still honoured (the
//! instance still runs the same incarnation and profile) is the verifier's.
//!
//! # Construction
//!
//! From the stored 32 random bytes two sub-keys are derived with HMAC (one
//! for derivation, one for sealing, so no key serves two algorithms). For a
//! spec, `A = HMAC-SHA-256(derive key, canonical encoding of the spec)` (the
//! encoding is the *claims*): its first 10 bytes make the access key id
//! (`ASIA` + 16 base32 characters, 80 bits), the next 12 the AES-256-GCM
//! nonce; `HMAC-SHA-256(derive key, "secret" ‖ A)` gives the 30 bytes of the
//! secret (40 base64 characters). (SHA-256 rather than one SHA-512 call:
//! with the CPUs' SHA extensions two are faster.) The session
//! token is [`TOKEN_PREFIX`] + base64 of `header ‖ nonce ‖ AES-GCM(claims ‖
//! access key id ‖ zero padding)`, the header (format version and key id)
//! being the associated data. The nonce is a function of the whole
//! plaintext, so equal claims give equal tokens and different claims
//! different nonces (a synthetic-IV construction): minting the same spec
//! twice, in two processes or after a restart, gives the same set.
//!
//! The verifier needs only the token: it opens it, re-derives the secret
//! from the claims, and has everything SigV4 verification needs.

use crate::principal::RoleDelivery;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imds_core::{InstanceId, RoleCredentials};
use imds_store::records::put_secret_if_absent;
use imds_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Prefix of every session token, like real STS tokens (`IQoJb3JpZ2luX2Vj`
/// is base64 of the start of their encoded origin field).
pub const TOKEN_PREFIX: &str = "IQoJb3JpZ2luX2VjE";

/// Store key of the fleet's minting key (under `secrets/`, so nothing logs
/// or serves it).
pub const MINTING_KEY: &str = "secrets/minting-key";

/// Version byte of the token format; bumped if the claims encoding changes.
const FORMAT_VERSION: u8 = 1;
/// Version byte and key id.
const HEADER_LEN: usize = 5;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// Plaintexts are padded to at least this many bytes so every token has
/// the length of a real one (> 300 characters); a multiple of 3 so that,
/// with a header, nonce and tag of 33 bytes, the base64 needs no `=`.
const MIN_PLAINTEXT_LEN: usize = 258;
/// Length of a minted access key id.
const ACCESS_KEY_ID_LEN: usize = 20;
/// Bytes of key material.
const MATERIAL_LEN: usize = 32;

/// The system random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Fills `buf` from the system RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| RandomError)
}

/// The minting key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum MintingKeyError {
    /// The store failed; retrying may help.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key is unreadable, or key material could not be made.
    #[error("minting key: {0}")]
    Key(String),
}

impl From<MintingKeyError> for StoreError {
    /// For callers whose only error type is the store's (the agent's sync).
    fn from(e: MintingKeyError) -> Self {
        match e {
            MintingKeyError::Store(e) => e,
            MintingKeyError::Key(msg) => StoreError::Backend(format!("minting key: {msg}")),
        }
    }
}

/// What a set is for: delivered as identity credentials or as one of the
/// two role credential sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// `identity-credentials/ec2/security-credentials/ec2-instance`.
    Identity,
    /// Role credentials of one delivery (`ec2:RoleDelivery`).
    Role(RoleDelivery),
}

impl SetKind {
    fn code(self) -> u8 {
        match self {
            Self::Identity => 0,
            Self::Role(RoleDelivery::V1) => 1,
            Self::Role(RoleDelivery::V2) => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Identity),
            1 => Some(Self::Role(RoleDelivery::V1)),
            2 => Some(Self::Role(RoleDelivery::V2)),
            _ => None,
        }
    }

    /// The delivery of a role set; `None` for identity credentials.
    pub fn delivery(self) -> Option<RoleDelivery> {
        match self {
            Self::Identity => None,
            Self::Role(d) => Some(d),
        }
    }
}

/// Everything a minted set is a function of, besides the key. Also what a
/// session token carries (sealed) and what [`MintingKey::open`] gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// The instance the set is delivered to.
    pub instance_id: InstanceId,
    /// Its run; a new run (stop/start) gets new sets.
    pub incarnation: u64,
    /// Identity or role set, and which delivery.
    pub kind: SetKind,
    /// The role (`aws:ec2-instance` for identity credentials).
    pub role_name: String,
    /// ARN of the instance profile; empty for identity credentials.
    pub profile_arn: String,
    /// Id (`AIPA…`) of the instance profile; empty for identity credentials.
    pub profile_id: String,
    /// `arn:<partition>:sts::<account>:assumed-role/<role>/<instance-id>`.
    pub principal_arn: String,
    /// Unix seconds; `LastUpdated`.
    pub issued: u64,
    /// Unix seconds after which the set is refused; `Expiration`.
    pub expiration: u64,
}

/// A session token opened by [`MintingKey::open`]: the spec it was minted
/// from and the set's keys, re-derived.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedSet {
    /// What the set was minted for.
    pub spec: SetSpec,
    /// `ASIA…` as sealed in the token.
    pub access_key_id: String,
    /// The secret the request must be signed with.
    pub secret_access_key: String,
}

impl fmt::Debug for OpenedSet {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedSet")
            .field("spec", &self.spec)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a session token does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not one of ours: wrong prefix, not base64, too short, unknown
    /// format version.
    #[error("not a session token minted here")]
    Malformed,
    /// Sealed with a key id this process does not hold.
    #[error("session token sealed with an unknown key")]
    UnknownKey,
    /// The seal does not verify: forged or altered.
    #[error("session token does not authenticate")]
    Forged,
}

/// The stored form of the key (`secrets/minting-key`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    /// Written into every token's header, so that a future key ring can
    /// tell which key sealed it.
    id: u32,
    /// 32 random bytes, base64.
    material: String,
}

/// The fleet's minting key, prepared for deriving and sealing.
pub struct MintingKey {
    id: u32,
    derive: hmac::Key,
    seal: LessSafeKey,
}

impl fmt::Debug for MintingKey {
    /// Shows the id only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintingKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MintingKey {
    /// The key stored at [`MINTING_KEY`], created with fresh random
    /// material if absent. Creation is a create-if-absent transaction, so
    /// processes starting at once (agents, control plane) agree on one key.
    pub async fn load_or_create(store: &dyn Store) -> Result<Self, MintingKeyError> {
        let mut material = [0u8; MATERIAL_LEN];
        fill_random(&mut material).map_err(|e| MintingKeyError::Key(e.to_string()))?;
        let fresh = StoredKey { id: 1, material: STANDARD.encode(material) };
        let bytes = serde_json::to_vec(&fresh).map_err(|e| MintingKeyError::Key(e.to_string()))?;
        let stored = put_secret_if_absent(store, MINTING_KEY, bytes).await?;
        let stored: StoredKey = serde_json::from_slice(&stored)
            .map_err(|e| MintingKeyError::Key(format!("the stored key is unreadable: {e}")))?;
        let material = STANDARD
            .decode(&stored.material)
            .ok()
            .and_then(|m| <[u8; MATERIAL_LEN]>::try_from(m).ok())
            .ok_or_else(|| MintingKeyError::Key("the stored key is not 32 bytes of base64".to_owned()))?;
        Self::from_material(stored.id, &material)
    }

    /// A key from its id and material.
    pub fn from_material(id: u32, material: &[u8; MATERIAL_LEN]) -> Result<Self, MintingKeyError> {
        let master = hmac::Key::new(hmac::HMAC_SHA256, material);
        let derive_material = hmac::sign(&master, b"imdsd minted credentials: derive v1");
        let seal_material = hmac::sign(&master, b"imdsd minted credentials: seal v1");
        let seal = UnboundKey::new(&AES_256_GCM, seal_material.as_ref())
            .map_err(|_| MintingKeyError::Key("cannot prepare the AES-256-GCM key".to_owned()))?;
        Ok(Self {
            id,
            derive: hmac::Key::new(hmac::HMAC_SHA256, derive_material.as_ref()),
            seal: LessSafeKey::new(seal),
        })
    }

    /// The id sealed into every token's header.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The set minted for `spec`; `None` only if sealing failed (it cannot
    /// for the inputs we build, but no request path panics on it).
    pub fn mint(&self, spec: &SetSpec) -> Option<RoleCredentials> {
        self.mint_claims(&Claims::of(spec))
    }

    /// [`MintingKey::mint`] of borrowed fields (the manager's, which mints
    /// without copying its strings).
    pub(crate) fn mint_claims(&self, claims: &Claims<'_>) -> Option<RoleCredentials> {
        let mut plaintext = Vec::with_capacity(MIN_PLAINTEXT_LEN + TAG_LEN);
        claims.encode(&mut plaintext);
        let derived = self.derived(&plaintext);
        let access_key_id = access_key_id(&derived);
        plaintext.extend_from_slice(access_key_id.as_bytes());
        let padded = plaintext.len().max(MIN_PLAINTEXT_LEN).next_multiple_of(3);
        plaintext.resize(padded, 0);
        let header = self.header();
        let nonce = nonce(&derived);
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..]),
                &mut plaintext,
            )
            .ok()?;
        let mut blob = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&plaintext);
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + blob.len().div_ceil(3) * 4);
        token.push_str(TOKEN_PREFIX);
        STANDARD.encode_string(&blob, &mut token);
        Some(RoleCredentials {
            access_key_id,
            secret_access_key: self.secret(&derived),
            token,
            last_updated: claims.issued,
            expiration: claims.expiration,
        })
    }

    /// Opens a session token minted with this key: checks its seal and
    /// gives back the spec and the set's keys. Says nothing about expiry or
    /// revocation.
    pub fn open(&self, token: &str) -> Result<OpenedSet, OpenError> {
        let encoded = token.strip_prefix(TOKEN_PREFIX).ok_or(OpenError::Malformed)?;
        let mut blob = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if blob.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || blob[0] != FORMAT_VERSION {
            return Err(OpenError::Malformed);
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&blob[1..HEADER_LEN]);
        if u32::from_be_bytes(key_id) != self.id {
            return Err(OpenError::UnknownKey);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let (head, sealed) = blob.split_at_mut(HEADER_LEN + NONCE_LEN);
        let plaintext = self
            .seal
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&head[..HEADER_LEN]), sealed)
            .map_err(|_| OpenError::Forged)?;
        // Authentic from here on: only a holder of the key sealed it. The
        // checks below guard against our own bugs, not against forgers.
        let (spec, claims_len) = decode_claims(plaintext).ok_or(OpenError::Malformed)?;
        let (claims, rest) = plaintext.split_at(claims_len);
        let derived = self.derived(claims);
        let access_key_id = access_key_id(&derived);
        let (sealed_id, padding) = rest.split_at_checked(ACCESS_KEY_ID_LEN).ok_or(OpenError::Malformed)?;
        if sealed_id != access_key_id.as_bytes()
            || padding.iter().any(|b| *b != 0)
            || self::nonce(&derived) != nonce
        {
            return Err(OpenError::Malformed);
        }
        let secret_access_key = self.secret(&derived);
        Ok(OpenedSet { spec, access_key_id, secret_access_key })
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let id = self.id.to_be_bytes();
        [FORMAT_VERSION, id[0], id[1], id[2], id[3]]
    }

    /// `A`: HMAC-SHA-256 of the claims (access key id and nonce bytes).
    fn derived(&self, claims: &[u8]) -> Derived {
        let mut ctx = hmac::Context::with_key(&self.derive);
        ctx.update(b"set\0");
        ctx.update(claims);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// 40 characters of `[A-Za-z0-9+/]`: 30 bytes of `HMAC("secret" ‖ A)`
    /// (30 bytes encode to exactly 40 characters, without padding).
    fn secret(&self, derived: &Derived) -> String {
        let mut ctx = hmac::Context::with_key(&self.derive);
        ctx.update(b"secret\0");
        ctx.update(derived);
        STANDARD.encode(&ctx.sign().as_ref()[..30])
    }
}

/// `A`, the 32 bytes a set's public parts are cut from.
type Derived = [u8; 32];

/// `ASIA` + 16 upper-case base32 characters: the 80 bits of bytes 0..10.
fn access_key_id(derived: &Derived) -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = [0u8; 16];
    bits[6..].copy_from_slice(&derived[..10]);
    let bits = u128::from_be_bytes(bits);
    let mut id = String::with_capacity(ACCESS_KEY_ID_LEN);
    id.push_str("ASIA");
    id.extend((0..16).rev().map(|i| char::from(BASE32[((bits >> (5 * i)) & 31) as usize])));
    id
}

/// The AES-GCM nonce: bytes 10..22.
fn nonce(derived: &Derived) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&derived[10..10 + NONCE_LEN]);
    n
}

/// A spec's fields, borrowed, as they are encoded.
pub(crate) struct Claims<'a> {
    pub(crate) instance_id: &'a str,
    pub(crate) incarnation: u64,
    pub(crate) kind: SetKind,
    pub(crate) role_name: &'a str,
    pub(crate) profile_arn: &'a str,
    pub(crate) profile_id: &'a str,
    pub(crate) principal_arn: &'a str,
    pub(crate) issued: u64,
    pub(crate) expiration: u64,
}

impl<'a> Claims<'a> {
    fn of(spec: &'a SetSpec) -> Self {
        Self {
            instance_id: spec.instance_id.as_str(),
            incarnation: spec.incarnation,
            kind: spec.kind,
            role_name: &spec.role_name,
            profile_arn: &spec.profile_arn,
            profile_id: &spec.profile_id,
            principal_arn: &spec.principal_arn,
            issued: spec.issued,
            expiration: spec.expiration,
        }
    }

    /// Canonical encoding: kind, incarnation, issued, expiration
    /// (big-endian), then five strings each with a 16-bit length.
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&self.expiration.to_be_bytes());
        for s in [self.instance_id, self.role_name, self.profile_arn, self.profile_id, self.principal_arn] {
            // Every field is far below 64 KiB (ARNs are at most 2048
            // characters); a longer one is cut, never wrapped around.
            let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
            let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// The spec and the length of its encoding at the start of `bytes`.
fn decode_claims(bytes: &[u8]) -> Option<(SetSpec, usize)> {
    let mut r = Reader { bytes, at: 0 };
    let kind = SetKind::from_code(r.take(1)?[0])?;
    let incarnation = r.u64()?;
    let issued = r.u64()?;
    let expiration = r.u64()?;
    let instance_id = InstanceId::parse(r.str()?).ok()?;
    let role_name = r.str()?.to_owned();
    let profile_arn = r.str()?.to_owned();
    let profile_id = r.str()?.to_owned();
    let principal_arn = r.str()?.to_owned();
    let spec = SetSpec {
        instance_id,
        incarnation,
        kind,
        role_name,
        profile_arn,
        profile_id,
        principal_arn,
        issued,
        expiration,
    };
    Some((spec, r.at))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_store::MemoryStore;

    fn key(byte: u8) -> MintingKey {
        MintingKey::from_material(1, &[byte; 32]).unwrap()
    }

    fn spec(kind: SetKind) -> SetSpec {
        SetSpec {
            instance_id: InstanceId::parse("i-1234567890abcdef0").unwrap(),
            incarnation: 7,
            kind,
            role_name: "web".into(),
            profile_arn: "arn:aws:iam::111122223333:instance-profile/web".into(),
            profile_id: "AIPA5BOGHHXZELSK34VU4".into(),
            principal_arn: "arn:aws:sts::111122223333:assumed-role/web/i-1234567890abcdef0".into(),
            issued: 1_000,
            expiration: 22_600,
        }
    }

    #[test]
    fn minted_credentials_have_aws_shapes() {
        let c = key(1).mint(&spec(SetKind::Role(RoleDelivery::V1))).unwrap();
        assert_eq!(c.access_key_id.len(), 20);
        assert!(c.access_key_id.starts_with("ASIA"));
        assert!(c.access_key_id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(c.secret_access_key.len(), 40);
        assert!(c.secret_access_key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'));
        assert!(c.token.starts_with("IQoJb3JpZ2luX2VjE") && c.token.len() > 300, "{}", c.token.len());
        assert!(!c.token.contains('='), "no base64 padding");
        assert_eq!((c.last_updated, c.expiration), (1_000, 22_600));
    }

    #[test]
    fn a_set_is_a_function_of_its_spec_and_key() {
        let k = key(1);
        let s = spec(SetKind::Role(RoleDelivery::V1));
        assert_eq!(k.mint(&s), k.mint(&s));
        assert_eq!(key(1).mint(&s), k.mint(&s), "another process with the same key");
        let base = k.mint(&s).unwrap();
        let variants = [
            SetSpec { kind: SetKind::Role(RoleDelivery::V2), ..s.clone() },
            SetSpec { kind: SetKind::Identity, ..s.clone() },
            SetSpec { incarnation: 8, ..s.clone() },
            SetSpec { issued: 1_001, ..s.clone() },
            SetSpec { role_name: "other".into(), ..s.clone() },
            SetSpec { profile_arn: "arn:aws:iam::111122223333:instance-profile/x".into(), ..s.clone() },
        ];
        for v in &variants {
            let c = k.mint(v).unwrap();
            assert_ne!(c.access_key_id, base.access_key_id, "{v:?}");
            assert_ne!(c.secret_access_key, base.secret_access_key);
            assert_ne!(c.token, base.token);
        }
        let other = key(2).mint(&s).unwrap();
        assert_ne!(other.access_key_id, base.access_key_id);
        assert_ne!(other.secret_access_key, base.secret_access_key);
    }

    #[test]
    fn a_token_opens_to_its_spec_and_keys() {
        let k = key(1);
        for kind in [SetKind::Identity, SetKind::Role(RoleDelivery::V1), SetKind::Role(RoleDelivery::V2)] {
            let s = spec(kind);
            let c = k.mint(&s).unwrap();
            let opened = k.open(&c.token).unwrap();
            assert_eq!(opened.spec, s);
            assert_eq!(opened.access_key_id, c.access_key_id);
            assert_eq!(opened.secret_access_key, c.secret_access_key);
            assert!(!format!("{opened:?}").contains(&c.secret_access_key));
        }
    }

    #[test]
    fn forged_altered_and_foreign_tokens_do_not_open() {
        let k = key(1);
        let c = k.mint(&spec(SetKind::Role(RoleDelivery::V2))).unwrap();
        assert_eq!(k.open("forged"), Err(OpenError::Malformed));
        assert_eq!(k.open(TOKEN_PREFIX), Err(OpenError::Malformed));
        assert_eq!(k.open(&format!("{TOKEN_PREFIX}!!!!")), Err(OpenError::Malformed));
        // Every single-character change of the sealed part is caught.
        let body = &c.token[TOKEN_PREFIX.len()..];
        for at in [0, 7, 30, body.len() / 2, body.len() - 1] {
            let mut altered: Vec<u8> = body.bytes().collect();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = format!("{TOKEN_PREFIX}{}", String::from_utf8(altered).unwrap());
            assert!(k.open(&altered).is_err(), "altered at {at}");
        }
        // Another fleet's key (same id) cannot open it.
        assert_eq!(key(2).open(&c.token), Err(OpenError::Forged));
        let other_id = MintingKey::from_material(2, &[1; 32]).unwrap();
        assert_eq!(other_id.open(&c.token), Err(OpenError::UnknownKey));
    }

    #[tokio::test]
    async fn processes_sharing_a_store_agree_on_one_key() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let (a, b) = tokio::join!(
            MintingKey::load_or_create(store.as_ref()),
            MintingKey::load_or_create(store.as_ref())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let s = spec(SetKind::Identity);
        assert_eq!(a.mint(&s), b.mint(&s));
        let again = MintingKey::load_or_create(store.as_ref()).await.unwrap();
        assert_eq!(again.mint(&s), a.mint(&s));
        assert!(!format!("{again:?}").contains("material"));
        // The key lives under secrets/, which nothing logs or serves.
        assert!(MINTING_KEY.starts_with(imds_store::records::SECRETS_PREFIX));
        let fresh = MintingKey::load_or_create(&MemoryStore::new()).await.unwrap();
        assert_ne!(fresh.mint(&s), a.mint(&s), "another store, another key");
    }
}
