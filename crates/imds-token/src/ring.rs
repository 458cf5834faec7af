//! The key ring and the token wire format: seal, open, rotate.
//!
//! Owns which key seals (the current one), which keys open (current and
//! previous), when a previous key may be forgotten, and the per-key seal
//! budget. Persisting the ring is the store's job; this module only makes it
//! serde-serializable.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{Aad, MAX_TAG_LEN, NONCE_LEN, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{TTL_MAX_SECS, TTL_MIN_SECS, TokenBinding, TokenError, TokenKey};

/// Previous keys kept for opening after a rotation, at most.
///
/// See [`KeyRing::rotate`] for the rule; with 8 keys, rotating at most every
/// 45 minutes (6 h / 8) never invalidates a token before its expiry.
pub const MAX_PREVIOUS_KEYS: usize = 8;

/// Tokens one key may seal (2^32) in one process before [`KeyRing::seal`]
/// answers [`TokenError::KeyExhausted`].
///
/// Nonces follow NIST SP 800-38D §8.2.1 (deterministic construction): a
/// 64-bit fixed field drawn at random whenever a key is loaded into a
/// process (generated, rotated in, or deserialized from the store) ‖ a
/// 32-bit invocation counter, the ring's seal count. The counter cannot wrap
/// below this bound, so one load never repeats a nonce; two loads of the
/// same key repeat one only if they drew the same 64-bit prefix (a repeat
/// would leak the GCM authentication key). The bound also stays within the
/// 2^32 invocations SP 800-38D allows per key for random 96-bit nonces.
pub const MAX_SEALS_PER_KEY: u64 = 1 << 32;

/// Length of the random fixed field of a nonce; the rest is the counter.
const NONCE_PREFIX_LEN: usize = 8;
// The counter field holds every seal number below the bound.
const _: () = assert!(NONCE_LEN - NONCE_PREFIX_LEN == 4 && MAX_SEALS_PER_KEY == 1 << 32);

/// Format version, the first byte of every token, so the layout can change
/// later without misreading old tokens.
const VERSION: u8 = 1;

// Byte layout of a decoded token.
const KEY_ID: Range<usize> = 1..5;
const NONCE: Range<usize> = KEY_ID.end..KEY_ID.end + NONCE_LEN;
/// The expiry (u64 BE) encrypted in place, followed by the GCM tag.
const SEALED: Range<usize> = NONCE.end..TOKEN_BYTES;
const EXPIRY_LEN: usize = 8;
const TOKEN_BYTES: usize = NONCE.end + EXPIRY_LEN + MAX_TAG_LEN;

/// Length of a token as text: unpadded base64url of [`TOKEN_BYTES`].
pub(crate) const TOKEN_TEXT_LEN: usize = (TOKEN_BYTES * 4).div_ceil(3);

const MILLIS_PER_SEC: u64 = 1000;
const TTL_MAX_MILLIS: u64 = TTL_MAX_SECS as u64 * MILLIS_PER_SEC;

/// The keys one host uses for tokens: the current key seals, the current and
/// previous keys open.
///
/// # Wire format
///
/// A token is unpadded base64url (`[A-Za-z0-9_-]`, 55 characters) of 41
/// bytes:
///
/// | bytes | content |
/// | --- | --- |
/// | 1 | format version (1) |
/// | 4 | key id, u32 big-endian |
/// | 12 | nonce: random per-load prefix (8) ‖ seal counter (4, big-endian) |
/// | 8 | expiry in Unix milliseconds, u64 big-endian, AES-256-GCM encrypted |
/// | 16 | GCM tag |
///
/// The additional authenticated data is version ‖ key id ‖ instance id bytes
/// ‖ incarnation (u64 BE), so a token only opens for the instance and
/// incarnation it was sealed for. (The incarnation has a fixed length and
/// comes last, so no two bindings give the same AAD.)
///
/// # Seal budget
///
/// The ring counts seals with the current key and refuses more than
/// [`MAX_SEALS_PER_KEY`] ([`TokenError::KeyExhausted`]); the caller then
/// calls [`KeyRing::rotate`]. Clones share the count and the nonce prefix
/// (they share the key), and [`KeyRing::rotate`] starts a fresh count with a
/// fresh prefix. The count is not persisted: after a restart (or any
/// deserialization) it starts from zero under a new random prefix, so rotate
/// on a schedule as well (at 2^32 tokens per key the schedule is what
/// matters in practice).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "KeyRingRepr")]
pub struct KeyRing {
    current: TokenKey,
    /// Newest first. `previous[0]` was retired when `current` was created,
    /// `previous[i]` when `previous[i - 1]` was created.
    previous: Vec<TokenKey>,
    /// Nonce state of `current` in this process.
    #[serde(skip)]
    seals: Arc<SealCounter>,
}

/// The nonce source of one key in one process: a random prefix drawn when
/// the key was loaded and the number of seals made since.
struct SealCounter {
    prefix: [u8; NONCE_PREFIX_LEN],
    count: AtomicU64,
}

impl SealCounter {
    fn fresh() -> Result<Arc<Self>, TokenError> {
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        aws_lc_rs::rand::fill(&mut prefix).map_err(|_| TokenError::Crypto("generating nonce prefix"))?;
        Ok(Arc::new(Self { prefix, count: AtomicU64::new(0) }))
    }
}

impl std::fmt::Debug for SealCounter {
    // The prefix is public in every token; the count is what matters here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealCounter").field("count", &self.count.load(Ordering::Relaxed)).finish()
    }
}

/// The persisted form of a [`KeyRing`]: everything but the nonce state,
/// which every load draws afresh.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingRepr {
    current: TokenKey,
    previous: Vec<TokenKey>,
}

impl TryFrom<KeyRingRepr> for KeyRing {
    type Error = TokenError;

    fn try_from(repr: KeyRingRepr) -> Result<Self, TokenError> {
        Ok(Self { current: repr.current, previous: repr.previous, seals: SealCounter::fresh()? })
    }
}

impl KeyRing {
    /// A ring whose only key is `current`.
    pub fn new(current: TokenKey) -> Result<Self, TokenError> {
        Ok(Self { current, previous: Vec::new(), seals: SealCounter::fresh()? })
    }

    /// A ring with one random key (id 1), created at `now_millis`.
    pub fn generate(now_millis: u64) -> Result<Self, TokenError> {
        Self::new(TokenKey::generate(1, now_millis)?)
    }

    /// Replaces the current key with a new random one (id = old id + 1,
    /// wrapping) and keeps the old one for opening.
    ///
    /// Rule for forgetting keys: a key seals only while it is current, and a
    /// token lives at most [`TTL_MAX_SECS`], so a previous key can still
    /// have valid tokens until `retired + TTL_MAX` (retired = when its
    /// successor was created). Keys past that are dropped; of the rest, at
    /// most [`MAX_PREVIOUS_KEYS`] (the newest) are kept, so rotating faster
    /// than every 45 minutes ends the oldest tokens early (clients get 401
    /// and fetch a new token, which they are built to do).
    pub fn rotate(&mut self, now_millis: u64) -> Result<(), TokenError> {
        let next = TokenKey::generate(self.current.id().wrapping_add(1), now_millis)?;
        let seals = SealCounter::fresh()?;
        let retired = std::mem::replace(&mut self.current, next);
        self.previous.insert(0, retired);
        self.seals = seals;

        let mut retired_at = self.current.created_millis();
        let still_needed = self
            .previous
            .iter()
            .take_while(|key| {
                let needed = now_millis < retired_at.saturating_add(TTL_MAX_MILLIS);
                retired_at = key.created_millis();
                needed
            })
            .count();
        self.previous.truncate(still_needed.min(MAX_PREVIOUS_KEYS));
        Ok(())
    }

    /// When the key that seals new tokens was created (Unix milliseconds):
    /// scheduled rotation compares it with the rotation period.
    pub fn current_created_millis(&self) -> u64 {
        self.current.created_millis()
    }

    /// The id of the key that seals new tokens.
    pub fn current_key_id(&self) -> u32 {
        self.current.id()
    }

    /// Seals a token for `binding`, valid for `ttl_secs` from `now_millis`
    /// (Unix milliseconds).
    ///
    /// The result is printable, header-safe ASCII (base64url without
    /// padding, no whitespace), exactly [`crate::MAX_TOKEN_LEN`] long.
    /// `ttl_secs` must lie in [`TTL_MIN_SECS`]`..=`[`TTL_MAX_SECS`].
    pub fn seal(
        &self,
        binding: &TokenBinding<'_>,
        now_millis: u64,
        ttl_secs: u32,
    ) -> Result<String, TokenError> {
        if !(TTL_MIN_SECS..=TTL_MAX_SECS).contains(&ttl_secs) {
            return Err(TokenError::InvalidTtl);
        }
        // The seal's number under this key in this process: below
        // MAX_SEALS_PER_KEY = 2^32, so it fits the 32-bit counter field.
        let seal_no = self.seals.count.fetch_add(1, Ordering::Relaxed);
        if seal_no >= MAX_SEALS_PER_KEY {
            return Err(TokenError::KeyExhausted);
        }
        let Ok(counter) = u32::try_from(seal_no) else {
            return Err(TokenError::KeyExhausted);
        };
        let key_id = self.current.id();
        let expiry = now_millis.saturating_add(u64::from(ttl_secs) * MILLIS_PER_SEC);

        let mut token = [0u8; TOKEN_BYTES];
        token[0] = VERSION;
        token[KEY_ID].copy_from_slice(&key_id.to_be_bytes());
        let mut nonce = [0u8; NONCE_LEN];
        let (prefix, count) = nonce.split_at_mut(NONCE_PREFIX_LEN);
        prefix.copy_from_slice(&self.seals.prefix);
        count.copy_from_slice(&counter.to_be_bytes());
        token[NONCE].copy_from_slice(&nonce);

        let (plaintext, tag) = token[SEALED].split_at_mut(EXPIRY_LEN);
        plaintext.copy_from_slice(&expiry.to_be_bytes());
        let sealed_tag = self
            .current
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(key_id, binding)),
                plaintext,
            )
            .map_err(|_| TokenError::Crypto("sealing token"))?;
        tag.copy_from_slice(sealed_tag.as_ref());

        // Encoded on the stack, then copied once into the exact-size String
        // (`encode` would allocate a zeroed buffer and grow it).
        let text = encode_token(&token);
        std::str::from_utf8(&text).map(str::to_owned).map_err(|_| TokenError::Crypto("encoding token"))
    }

    /// Opens a token presented by `binding` at `now_millis` and returns its
    /// remaining lifetime in whole seconds (rounded down, so 0 in its last
    /// second).
    ///
    /// Checks in order of cost: length, base64url, version, key id, AEAD
    /// (bound to `binding`), expiry. A token is valid while
    /// `now < expiry`.
    pub fn open(&self, token: &[u8], binding: &TokenBinding<'_>, now_millis: u64) -> Result<u32, TokenError> {
        // Every token we issue has exactly this length; anything else is
        // refused before decoding, whatever its size.
        if token.len() != TOKEN_TEXT_LEN {
            return Err(TokenError::Malformed);
        }
        // The base64 engine refuses non-zero trailing bits, so each token
        // has exactly one accepted spelling and any changed character fails.
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(token, &mut bytes) {
            Ok(TOKEN_BYTES) => {}
            _ => return Err(TokenError::Malformed),
        }
        if bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&bytes[KEY_ID]);
        let key_id = u32::from_be_bytes(key_id);
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id() == key_id)
            .ok_or(TokenError::UnknownKey)?;

        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[NONCE]);
        let plaintext = key
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(key_id, binding)),
                &mut bytes[SEALED],
            )
            .map_err(|_| TokenError::Forged)?;
        let expiry = <[u8; EXPIRY_LEN]>::try_from(&*plaintext)
            .map(u64::from_be_bytes)
            .map_err(|_| TokenError::Malformed)?;

        if now_millis >= expiry {
            return Err(TokenError::Expired);
        }
        // More than the maximum TTL left is only possible if the clock was
        // stepped back; never report more than a client could have asked for.
        let remaining = (expiry - now_millis) / MILLIS_PER_SEC;
        Ok(u32::try_from(remaining).unwrap_or(u32::MAX).min(TTL_MAX_SECS))
    }
}

/// The base64url alphabet (RFC 4648 §5).
const URL_SAFE_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url of a token, the same text as `URL_SAFE_NO_PAD`
/// gives (a test checks), written for the one fixed length: the general
/// engine costs twice as much on every token PUT.
fn encode_token(token: &[u8; TOKEN_BYTES]) -> [u8; TOKEN_TEXT_LEN] {
    let mut text = [0u8; TOKEN_TEXT_LEN];
    // 13 groups of 3 bytes → 4 characters, then 2 bytes → 3 characters.
    for (group, out) in token.chunks(3).zip(text.chunks_mut(4)) {
        let byte = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let bits = byte(0) << 16 | byte(1) << 8 | byte(2);
        for (slot, shift) in out.iter_mut().zip([18, 12, 6, 0]) {
            *slot = URL_SAFE_ALPHABET[((bits >> shift) & 63) as usize];
        }
    }
    text
}

/// Room for the AAD on the stack: 13 fixed bytes plus an instance id of up
/// to 51 bytes (EC2 ids are 19), so sealing and opening do not allocate.
const INLINE_AAD: usize = 64;

/// The additional authenticated data, on the stack when it fits.
enum AadBuf {
    Inline([u8; INLINE_AAD], usize),
    Heap(Vec<u8>),
}

impl AsRef<[u8]> for AadBuf {
    fn as_ref(&self) -> &[u8] {
        match self {
            // `aad` only builds `Inline` with `len <= INLINE_AAD`.
            AadBuf::Inline(buf, len) => buf.get(..*len).unwrap_or(buf),
            AadBuf::Heap(buf) => buf,
        }
    }
}

/// version ‖ key id ‖ instance id ‖ incarnation, written with slice copies
/// (this runs on every token PUT and IMDSv2 GET).
fn aad(key_id: u32, binding: &TokenBinding<'_>) -> AadBuf {
    let id = binding.instance_id.as_bytes();
    let len = 1 + 4 + id.len() + 8;
    let fill = |buf: &mut [u8]| {
        let (head, rest) = buf.split_at_mut(5);
        head[0] = VERSION;
        head[1..].copy_from_slice(&key_id.to_be_bytes());
        let (middle, tail) = rest.split_at_mut(id.len());
        middle.copy_from_slice(id);
        tail.copy_from_slice(&binding.incarnation.to_be_bytes());
    };
    if len <= INLINE_AAD {
        let mut buf = [0u8; INLINE_AAD];
        fill(&mut buf[..len]);
        AadBuf::Inline(buf, len)
    } else {
        let mut buf = vec![0u8; len];
        fill(&mut buf);
        AadBuf::Heap(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_TOKEN_LEN;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    const T0: u64 = 1_700_000_000_000;
    const B: TokenBinding<'static> = TokenBinding { instance_id: "i-0123456789abcdef0", incarnation: 7 };

    fn ring() -> KeyRing {
        KeyRing::generate(T0).unwrap()
    }

    #[test]
    fn key_ring_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeyRing>();
    }

    #[test]
    fn seal_then_open_gives_remaining_ttl() {
        let ring = ring();
        let token = ring.seal(&B, T0, 21_600).unwrap();
        assert_eq!(ring.open(token.as_bytes(), &B, T0), Ok(21_600));
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + 1), Ok(21_599));
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + 1_500), Ok(21_598));
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + 60_000), Ok(21_540));
    }

    #[test]
    fn token_is_valid_until_one_millisecond_before_expiry() {
        let ring = ring();
        let token = ring.seal(&B, T0, 1).unwrap();
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + 999), Ok(0));
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + 1_000), Err(TokenError::Expired));
        assert_eq!(ring.open(token.as_bytes(), &B, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn token_for_another_instance_is_forged() {
        let ring = ring();
        let token = ring.seal(&B, T0, 60).unwrap();
        let other = TokenBinding { instance_id: "i-0123456789abcdef1", ..B };
        assert_eq!(ring.open(token.as_bytes(), &other, T0), Err(TokenError::Forged));
    }

    #[test]
    fn token_from_another_incarnation_is_forged() {
        let ring = ring();
        let token = ring.seal(&B, T0, 60).unwrap();
        let restarted = TokenBinding { incarnation: 8, ..B };
        assert_eq!(ring.open(token.as_bytes(), &restarted, T0), Err(TokenError::Forged));
    }

    #[test]
    fn token_from_another_host_with_the_same_key_id_is_forged() {
        let (a, b) = (ring(), ring());
        assert_eq!(a.current_key_id(), b.current_key_id());
        let token = a.seal(&B, T0, 60).unwrap();
        assert_eq!(b.open(token.as_bytes(), &B, T0), Err(TokenError::Forged));
    }

    #[test]
    fn long_instance_ids_are_bound_too() {
        let ring = ring();
        let long = "i-".to_owned() + &"a".repeat(200);
        let binding = TokenBinding { instance_id: &long, incarnation: 1 };
        let token = ring.seal(&binding, T0, 60).unwrap();
        assert_eq!(ring.open(token.as_bytes(), &binding, T0), Ok(60));
        let shorter = TokenBinding { instance_id: &long[..long.len() - 1], incarnation: 1 };
        assert_eq!(ring.open(token.as_bytes(), &shorter, T0), Err(TokenError::Forged));
    }

    #[test]
    fn tokens_sealed_before_rotate_still_open_after_it() {
        let mut ring = ring();
        let old = ring.seal(&B, T0, 600).unwrap();
        ring.rotate(T0 + 1_000).unwrap();
        assert_eq!(ring.current_key_id(), 2);
        let new = ring.seal(&B, T0 + 1_000, 600).unwrap();
        assert_eq!(ring.open(old.as_bytes(), &B, T0 + 1_000), Ok(599));
        assert_eq!(ring.open(new.as_bytes(), &B, T0 + 1_000), Ok(600));
    }

    #[test]
    fn key_is_dropped_once_none_of_its_tokens_can_be_valid() {
        let mut ring = ring();
        let token = ring.seal(&B, T0, TTL_MAX_SECS).unwrap();
        let retired = T0 + 1;
        ring.rotate(retired).unwrap();
        // Just before its last possible token expires the key is kept.
        ring.rotate(retired + TTL_MAX_MILLIS - 1).unwrap();
        assert_eq!(ring.previous.len(), 2);
        assert_eq!(ring.open(token.as_bytes(), &B, T0 + TTL_MAX_MILLIS - 1), Ok(0));
        ring.rotate(retired + TTL_MAX_MILLIS).unwrap();
        assert!(ring.previous.iter().all(|k| k.id() != 1));
        assert_eq!(ring.open(token.as_bytes(), &B, retired + TTL_MAX_MILLIS), Err(TokenError::UnknownKey));
    }

    #[test]
    fn rotation_keeps_at_most_max_previous_keys() {
        let mut ring = ring();
        let first = ring.seal(&B, T0, 600).unwrap();
        let mut second = String::new();
        for i in 0..=MAX_PREVIOUS_KEYS {
            ring.rotate(T0 + 1).unwrap();
            if i == 0 {
                second = ring.seal(&B, T0 + 1, 600).unwrap();
            }
        }
        assert_eq!(ring.previous.len(), MAX_PREVIOUS_KEYS);
        assert_eq!(ring.open(first.as_bytes(), &B, T0 + 1), Err(TokenError::UnknownKey));
        assert_eq!(ring.open(second.as_bytes(), &B, T0 + 1), Ok(600));
    }

    #[test]
    fn token_is_header_safe_ascii_of_fixed_length() {
        let ring = ring();
        let mut seen = std::collections::HashSet::new();
        for ttl in [1, 60, 21_600] {
            let token = ring.seal(&B, T0, ttl).unwrap();
            assert_eq!(token.len(), MAX_TOKEN_LEN);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
            assert!(seen.insert(token));
        }
        // Same inputs, different nonce, different token.
        let a = ring.seal(&B, T0, 60).unwrap();
        let b = ring.seal(&B, T0, 60).unwrap();
        assert_ne!(a, b);
    }

    fn nonce_of(token: &str) -> [u8; NONCE_LEN] {
        let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
        bytes[NONCE].try_into().unwrap()
    }

    #[test]
    fn two_seals_never_share_a_nonce() {
        let mut ring = ring();
        let clone = ring.clone();
        let mut seen = std::collections::HashSet::new();
        // Sealed through the ring and a clone (they share the key), then
        // after a rotation, and by a ring loaded again from its stored form
        // (same key, counter back at zero).
        for i in 0..5_000u64 {
            let r = if i % 2 == 0 { &ring } else { &clone };
            assert!(seen.insert(nonce_of(&r.seal(&B, T0, 60).unwrap())));
        }
        let reloaded: KeyRing = serde_json::from_str(&serde_json::to_string(&ring).unwrap()).unwrap();
        for _ in 0..1_000 {
            assert!(seen.insert(nonce_of(&reloaded.seal(&B, T0, 60).unwrap())));
        }
        ring.rotate(T0 + 1).unwrap();
        for _ in 0..1_000 {
            assert!(seen.insert(nonce_of(&ring.seal(&B, T0, 60).unwrap())));
        }
        assert_eq!(seen.len(), 7_000);
    }

    #[test]
    fn nonce_is_a_per_load_prefix_and_the_seal_count() {
        let ring = ring();
        let first = nonce_of(&ring.seal(&B, T0, 60).unwrap());
        let second = nonce_of(&ring.seal(&B, T0, 60).unwrap());
        assert_eq!(first[..NONCE_PREFIX_LEN], second[..NONCE_PREFIX_LEN]);
        assert_eq!(first[NONCE_PREFIX_LEN..], [0, 0, 0, 0]);
        assert_eq!(second[NONCE_PREFIX_LEN..], [0, 0, 0, 1]);
        // Loading the same key again (restart, store reload) draws a new
        // prefix, so the restarted counter cannot repeat a nonce.
        let reloaded: KeyRing = serde_json::from_str(&serde_json::to_string(&ring).unwrap()).unwrap();
        let third = nonce_of(&reloaded.seal(&B, T0, 60).unwrap());
        assert_eq!(third[NONCE_PREFIX_LEN..], [0, 0, 0, 0]);
        assert_ne!(third[..NONCE_PREFIX_LEN], first[..NONCE_PREFIX_LEN]);
        // The last seal of a key's budget still has its own counter value.
        ring.seals.count.store(MAX_SEALS_PER_KEY - 1, Ordering::Relaxed);
        let last = nonce_of(&ring.seal(&B, T0, 60).unwrap());
        assert_eq!(last[NONCE_PREFIX_LEN..], [0xff; 4]);
    }

    #[test]
    fn bad_input_is_malformed_without_panicking() {
        let ring = ring();
        let token = ring.seal(&B, T0, 60).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage".to_vec(),
            b"A".repeat(MAX_TOKEN_LEN + 1),
            vec![0xff; 100_000],
            b"!".repeat(MAX_TOKEN_LEN),
            format!(" {token}").into_bytes(),
            format!("{token}\n").into_bytes(),
            format!("{token}=").into_bytes(),
            token.replace('-', "+").replace('_', "/").into_bytes(),
        ];
        for case in cases {
            if case == token.as_bytes() {
                continue; // the replace above found nothing to replace
            }
            assert_eq!(
                ring.open(&case, &B, T0),
                Err(TokenError::Malformed),
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn unknown_version_is_malformed() {
        let ring = ring();
        let token = ring.seal(&B, T0, 60).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[0] = 2;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(ring.open(token.as_bytes(), &B, T0), Err(TokenError::Malformed));
    }

    #[test]
    fn seal_refuses_ttl_out_of_bounds() {
        let ring = ring();
        assert_eq!(ring.seal(&B, T0, 0), Err(TokenError::InvalidTtl));
        assert_eq!(ring.seal(&B, T0, TTL_MAX_SECS + 1), Err(TokenError::InvalidTtl));
    }

    #[test]
    fn sealing_at_the_end_of_time_does_not_overflow() {
        let ring = ring();
        let token = ring.seal(&B, u64::MAX - 5, 60).unwrap();
        assert_eq!(ring.open(token.as_bytes(), &B, u64::MAX - 5), Ok(0));
    }

    #[test]
    fn exhausted_key_refuses_to_seal_until_rotated() {
        let mut ring = ring();
        let token = ring.seal(&B, T0, 60).unwrap();
        ring.seals.count.store(MAX_SEALS_PER_KEY - 1, Ordering::Relaxed);
        assert!(ring.seal(&B, T0, 60).is_ok());
        // Clones share the budget of the key they share.
        let clone = ring.clone();
        assert_eq!(clone.seal(&B, T0, 60), Err(TokenError::KeyExhausted));
        assert_eq!(ring.seal(&B, T0, 60), Err(TokenError::KeyExhausted));
        // Opening is unaffected.
        assert_eq!(ring.open(token.as_bytes(), &B, T0), Ok(60));
        ring.rotate(T0).unwrap();
        assert!(ring.seal(&B, T0, 60).is_ok());
        assert_eq!(clone.seal(&B, T0, 60), Err(TokenError::KeyExhausted));
    }

    #[test]
    fn persisted_ring_keeps_tokens_valid_across_restart() {
        let mut ring = ring();
        let old = ring.seal(&B, T0, 600).unwrap();
        ring.rotate(T0 + 10).unwrap();
        let new = ring.seal(&B, T0 + 10, 600).unwrap();

        let json = serde_json::to_string(&ring).unwrap();
        let restarted: KeyRing = serde_json::from_str(&json).unwrap();

        assert_eq!(restarted.current_key_id(), ring.current_key_id());
        assert_eq!(restarted.open(old.as_bytes(), &B, T0 + 1_000), Ok(599));
        assert_eq!(restarted.open(new.as_bytes(), &B, T0 + 1_000), Ok(599));
        let after = restarted.seal(&B, T0 + 1_000, 60).unwrap();
        assert_eq!(ring.open(after.as_bytes(), &B, T0 + 1_000), Ok(60));
    }

    #[test]
    fn debug_of_ring_and_keys_does_not_contain_key_material() {
        let mut ring = ring();
        ring.rotate(T0 + 1).unwrap();
        let debug = format!("{ring:?} {:?}", ring.current);
        let json = serde_json::to_value(&ring).unwrap();
        let keys = std::iter::once(&json["current"])
            .chain(json["previous"].as_array().unwrap())
            .map(|key| key["material"].as_str().unwrap().to_owned());
        let mut n = 0;
        for material in keys {
            let raw = base64::engine::general_purpose::STANDARD.decode(&material).unwrap();
            assert!(!debug.contains(&material), "{debug}");
            assert!(!debug.contains(&format!("{raw:?}")), "{debug}");
            n += 1;
        }
        assert_eq!(n, 2);
    }

    static RING: LazyLock<KeyRing> = LazyLock::new(ring);
    static TOKEN: LazyLock<String> = LazyLock::new(|| RING.seal(&B, T0, 600).unwrap());

    #[test]
    fn shared_fixture_token_opens() {
        assert_eq!(RING.open(TOKEN.as_bytes(), &B, T0), Ok(600));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_open(
            input in proptest::collection::vec(any::<u8>(), 0..128)
        ) {
            prop_assert!(RING.open(&input, &B, T0).is_err());
        }

        #[test]
        fn arbitrary_well_formed_text_never_opens(input in "[A-Za-z0-9_-]{55}") {
            prop_assert!(RING.open(input.as_bytes(), &B, T0).is_err());
        }

        #[test]
        fn flipping_any_bit_of_the_text_fails(index in 0..MAX_TOKEN_LEN, bit in 0..8u8) {
            let mut token = TOKEN.clone().into_bytes();
            token[index] ^= 1 << bit;
            prop_assert!(RING.open(&token, &B, T0).is_err());
        }

        #[test]
        fn replacing_any_character_fails(
            index in 0..MAX_TOKEN_LEN,
            replacement in "[A-Za-z0-9_-]",
        ) {
            let mut token = TOKEN.clone().into_bytes();
            let replacement = replacement.as_bytes()[0];
            prop_assume!(token[index] != replacement);
            token[index] = replacement;
            prop_assert!(RING.open(&token, &B, T0).is_err());
        }

        #[test]
        fn flipping_any_bit_of_the_decoded_bytes_fails(index in 0..TOKEN_BYTES, bit in 0..8u8) {
            let mut bytes = URL_SAFE_NO_PAD.decode(TOKEN.as_bytes()).unwrap();
            bytes[index] ^= 1 << bit;
            let token = URL_SAFE_NO_PAD.encode(bytes);
            prop_assert!(RING.open(token.as_bytes(), &B, T0).is_err());
        }

        #[test]
        fn token_text_is_standard_unpadded_base64url(bytes in proptest::array::uniform::<_, TOKEN_BYTES>(any::<u8>())) {
            let expected = URL_SAFE_NO_PAD.encode(bytes);
            prop_assert_eq!(&encode_token(&bytes)[..], expected.as_bytes());
        }

        #[test]
        fn truncated_token_is_malformed(len in 0..MAX_TOKEN_LEN) {
            prop_assert_eq!(
                RING.open(&TOKEN.as_bytes()[..len], &B, T0),
                Err(TokenError::Malformed)
            );
        }

        #[test]
        fn extended_token_is_malformed(suffix in "[A-Za-z0-9_=-]{1,8}") {
            let token = format!("{}{suffix}", *TOKEN);
            prop_assert_eq!(RING.open(token.as_bytes(), &B, T0), Err(TokenError::Malformed));
        }
    }
}
