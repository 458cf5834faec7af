//! Instance identity signing: per-region keys and the three signature
//! formats served under `/latest/dynamic/instance-identity/`.
//!
//! This crate owns
//!
//! * [`RegionSigner`]: the signing keys and self-signed certificates of one
//!   region, generated once ([`RegionSigner::generate`]) and kept by the store
//!   in its serde form (PEM strings inside);
//! * the three formats, each over the exact bytes the caller passes:
//!   [`RegionSigner::signature`] (raw RSA PKCS#1 v1.5 over SHA-256),
//!   [`RegionSigner::pkcs7`] (attached PKCS#7 `SignedData`, DSA over SHA-1
//!   like AWS) and [`RegionSigner::rsa2048`] (the same with RSA-2048 over
//!   SHA-256), all served as base64 wrapped by [`wrap76`];
//! * the public certificates users verify with
//!   ([`RegionSigner::certificate_pem`]).
//!
//! It does not own the identity document's text (the data plane renders it
//! and passes the bytes it serves) nor storage (the store keeps the
//! serialised signer). Signing is cheap to call repeatedly: keys and
//! certificates are parsed once per signer, never per call.
//!
//! Cryptography is OpenSSL's (design: openssl for PKCS#7, never the `rsa`
//! crate). One piece is written here: the DER of the DSA/SHA-1 `SignedData`
//! (see `der.rs` for why).

mod der;
mod signer;
mod wrap;

pub use signer::{Pkcs7Algorithm, RegionSigner};
pub use wrap::{LINE_WIDTH, wrap76};

/// Why a signer could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The region name cannot go into a certificate subject: it must be 1 to
    /// [`RegionSigner::MAX_REGION_LEN`] characters of ASCII letters, digits,
    /// `-`, `_` or `.`.
    #[error("invalid region name {0:?}: expected 1 to 40 ASCII letters, digits, '-', '_' or '.'")]
    InvalidRegion(String),
    /// A serialised signer is inconsistent (wrong format version, key and
    /// certificate do not match, wrong key type or size, half of a key pair).
    #[error("invalid stored signer: {0}")]
    InvalidStored(&'static str),
    /// The system clock reads before 1970, so no `signingTime` can be written.
    #[error("system clock is before the Unix epoch")]
    Clock,
    /// OpenSSL failed; `context` says which step.
    #[error("OpenSSL failed to {context}: {source}")]
    OpenSsl {
        /// The step that failed, e.g. "sign the PKCS#7 attributes".
        context: &'static str,
        /// OpenSSL's error queue.
        #[source]
        source: openssl::error::ErrorStack,
    },
}

/// Attaches a step description to OpenSSL errors.
pub(crate) trait Context<T> {
    /// Maps an [`openssl::error::ErrorStack`] to [`IdentityError::OpenSsl`].
    fn context(self, context: &'static str) -> Result<T, IdentityError>;
}

impl<T> Context<T> for Result<T, openssl::error::ErrorStack> {
    fn context(self, context: &'static str) -> Result<T, IdentityError> {
        self.map_err(|source| IdentityError::OpenSsl { context, source })
    }
}
