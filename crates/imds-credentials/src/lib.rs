//! Role credentials for instances: from a provider chosen per role in the
//! config file, obtained and refreshed off the request path.
//!
//! This crate owns:
//!
//! * [`CredentialsConfig`] / [`ProviderConfig`]: which provider serves
//!   which role (`minted`, `static`, `sts`), validated while deserialised;
//! * [`CredentialManager`]: per tracked instance run, the identity
//!   credentials and two independent role credential sets (IMDSv1 and
//!   IMDSv2 deliveries, docs/protocol/credentials.md#v1-v2-sets), refreshed by a background task
//!   before they expire; a failing provider never blocks anything and its
//!   last valid set is served until it expires;
//! * minting ([`MintingKey`]): sets computed from one fleet-wide key at
//!   `secrets/minting-key`, so nothing is stored per set and every process
//!   computes the same sets;
//! * [`MintedVerifier`]: the control plane's authentication of minted sets
//!   (opens the session token, checks expiry and, in the store, that the
//!   instance still runs that incarnation and profile; gives the principal
//!   and `ec2:RoleDelivery`).
//!
//! It does not own HTTP or the JSON documents of the data plane (the
//! data plane renders [`InstanceCredentials`]), nor the choice of which
//! instances are served (the agent calls `track` / `untrack`).
//!
//! # Providers
//!
//! | provider | IMDSv1 vs IMDSv2 sets | `Expiration` | in the store |
//! | --- | --- | --- | --- |
//! | `minted` | two sets derived from the minting key | issue + `lifetime_secs`, replaced `refresh_before_secs` ahead | the key only |
//! | `static` | the same configured keys | rolling window, re-announced at half | no |
//! | `sts` | two `AssumeRole` calls (`<instance-id>-imdsv1` / `-imdsv2`) | from STS, fetched anew `refresh_before_secs` ahead | no |
//!
//! Identity credentials are always minted.
//!
//! # Why some of this is written by hand
//!
//! Minting is HMAC and AES-GCM from `aws-lc-rs` over a small hand-written
//! claims encoding (a fixed binary layout, so that every process derives
//! byte-identical sets); no crate mints AWS-shaped keys. STS calls go
//! through `aws-sdk-sts` with its retries disabled, so that one backoff
//! policy (the manager's, on the injected clock) governs retries.

mod config;
mod manager;
mod mint;
mod principal;
mod sts;
mod verify;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, CredentialsConfig, DEFAULT_MINTED_LIFETIME_SECS, DEFAULT_MINTED_REFRESH_BEFORE_SECS,
    DEFAULT_STATIC_WINDOW_SECS, DEFAULT_STS_DURATION_SECS, DEFAULT_STS_REFRESH_BEFORE_SECS,
    MIN_MINTED_REFRESH_BEFORE_SECS, MIN_STATIC_WINDOW_SECS, MIN_STS_REFRESH_BEFORE_SECS, ProviderConfig,
    STS_DURATION_RANGE,
};
pub use manager::{
    CredentialManager, ERROR_CODE_PENDING, ERROR_CODE_UNAUTHORIZED, ERROR_CODE_UNAVAILABLE,
    InstanceCredentials, MIN_MINTED_ROTATION_SECS, ManagerOptions, RoleSet,
};
pub use mint::{
    MINTING_KEY, MintingKey, MintingKeyError, OpenError, OpenedSet, RandomError, SetKind, SetSpec,
    TOKEN_PREFIX,
};
pub use principal::{IDENTITY_ROLE_NAME, RoleDelivery};
pub use verify::{MintedCaller, MintedVerifier, VerifyError};
