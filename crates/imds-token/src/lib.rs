//! IMDSv2 session tokens.
//!
//! This crate owns everything about a token except how it travels:
//!
//! * the protocol constants (header names, TTL bounds, the longest token text
//!   we look at);
//! * [`parse_ttl`], the parser of the `X-aws-ec2-metadata-token-ttl-seconds`
//!   request header;
//! * the key ring ([`KeyRing`], [`TokenKey`]): which key seals, which keys
//!   still open, rotation, and its serde form so the store can persist it;
//! * the wire format and [`KeyRing::seal`] / [`KeyRing::open`].
//!
//! It does not own HTTP: reading headers, choosing status codes (every
//! [`TokenError`] from `open` is a 401 to the client) and counting metrics
//! (use [`TokenError::reason`] as the label) belong to the data plane.
//!
//! Tokens are stateless: a token is an AES-256-GCM sealed expiry time,
//! authenticated together with the instance it was issued to and that
//! instance's incarnation. Checking one needs no table and no store I/O, a
//! token from another instance (or from before a restart of the same
//! instance) fails authentication, and altering any character invalidates it.
//! See [`KeyRing`] for the exact layout.

mod key;
mod ring;
mod ttl;

pub use key::TokenKey;
pub use ring::{KeyRing, MAX_PREVIOUS_KEYS, MAX_SEALS_PER_KEY};
pub use ttl::{TtlError, parse_ttl};

/// Request header of `PUT /latest/api/token` asking for a token, and response
/// header carrying the granted (or, on GET, remaining) lifetime in seconds.
///
/// Lower case because HTTP header names are case-insensitive and `http`
/// stores them lower case; clients send several spellings.
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// Request header carrying a session token on GET/HEAD.
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Shortest token lifetime a client may ask for, in seconds.
pub const TTL_MIN_SECS: u32 = 1;

/// Longest token lifetime a client may ask for, in seconds (6 hours).
pub const TTL_MAX_SECS: u32 = 21_600;

/// Longest token text we accept before decoding.
///
/// Every token this crate issues is exactly this long (55 characters), so
/// [`KeyRing::open`] rejects any other length before it spends time on
/// base64 or AEAD.
pub const MAX_TOKEN_LEN: usize = ring::TOKEN_TEXT_LEN;

/// What a token is bound to: an instance and its incarnation.
///
/// The incarnation changes every time the instance starts, so tokens issued
/// before a stop/start (or to a previous instance that reused the address)
/// stop working, as on EC2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBinding<'a> {
    /// The instance id, e.g. `i-0123456789abcdef0`.
    pub instance_id: &'a str,
    /// Changes at every start of the instance.
    pub incarnation: u64,
}

/// Why a token could not be sealed or opened.
///
/// Every variant returned by [`KeyRing::open`] means "not a currently valid
/// token for this instance" and is answered with 401; the variants exist for
/// metrics and logs ([`TokenError::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Wrong length, not base64url, or an unknown format version.
    #[error("token is malformed")]
    Malformed,
    /// Well formed, but sealed with a key this host does not have (rotated
    /// out, or issued by another host).
    #[error("token was sealed with a key this host does not hold")]
    UnknownKey,
    /// Authentication failed: the token was altered, or issued to another
    /// instance or another incarnation of this one.
    #[error("token failed authentication")]
    Forged,
    /// Authentic, but its lifetime is over.
    #[error("token has expired")]
    Expired,
    /// [`KeyRing::seal`] was asked for a TTL outside
    /// [`TTL_MIN_SECS`]..=[`TTL_MAX_SECS`].
    #[error("token TTL must be between {TTL_MIN_SECS} and {TTL_MAX_SECS} seconds")]
    InvalidTtl,
    /// The current key has sealed [`MAX_SEALS_PER_KEY`] tokens; call
    /// [`KeyRing::rotate`] before sealing more.
    #[error("the current token key is exhausted; rotate the key ring")]
    KeyExhausted,
    /// The cryptographic backend failed (random source, key setup). Says
    /// which operation failed.
    #[error("cryptographic backend failed: {0}")]
    Crypto(&'static str),
}

impl TokenError {
    /// A stable, lower-case label for this error, usable as a metric label
    /// (a small closed set).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::Forged => "forged",
            TokenError::Expired => "expired",
            TokenError::InvalidTtl => "invalid_ttl",
            TokenError::KeyExhausted => "key_exhausted",
            TokenError::Crypto(_) => "crypto",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let all = [
            TokenError::Malformed,
            TokenError::UnknownKey,
            TokenError::Forged,
            TokenError::Expired,
            TokenError::InvalidTtl,
            TokenError::KeyExhausted,
            TokenError::Crypto("x"),
        ];
        let mut labels: Vec<_> = all.iter().map(TokenError::reason).collect();
        assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        assert_eq!(TokenError::Forged.reason(), "forged");
        assert_eq!(TokenError::UnknownKey.reason(), "unknown_key");
    }

    #[test]
    fn max_token_len_matches_the_wire_format() {
        assert_eq!(MAX_TOKEN_LEN, 55);
    }
}
