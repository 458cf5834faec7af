//! Role credentials for instances: from a provider chosen per role in the
//! config file, obtained and refreshed off the request path.
//!
//! This crate owns:
//!
//! * [`CredentialsConfig`] / [`ProviderConfig`]: which provider serves
//!   which role (`minted`, `static`, `sts`), validated while deserialised;
//! * [`CredentialManager`]: per tracked instance run, the identity
//!   credentials and two independent role credential sets (IMDSv1 and
//!   IMDSv2 deliveries, data-plane.md §8), refreshed by a background task
//!   before they expire; a failing provider never blocks anything and its
//!   last valid set is served until it expires;
//! * [`MintedRecord`] at `secrets/minted/<ACCESS_KEY_ID>` in the store, and
//!   [`MintedIndex`], the control plane's synchronous lookup of them (to
//!   authenticate minted keys and set `ec2:RoleDelivery`).
//!
//! It does not own HTTP or the JSON documents of the data plane (the
//! data plane renders [`InstanceCredentials`]), nor the choice of which
//! instances are served (the agent calls `track` / `untrack`).
//!
//! # Providers
//!
//! | provider | IMDSv1 vs IMDSv2 sets | `Expiration` | in the store |
//! | --- | --- | --- | --- |
//! | `minted` | two random sets | issue + `lifetime_secs`, replaced `refresh_before_secs` ahead | yes |
//! | `static` | the same configured keys | rolling window, re-announced at half | no |
//! | `sts` | two `AssumeRole` calls (`<instance-id>-imdsv1` / `-imdsv2`) | from STS, fetched anew `refresh_before_secs` ahead | no |
//!
//! Identity credentials are always minted.
//!
//! # Why some of this is written by hand
//!
//! Minting is a few lines over the system RNG (`aws-lc-rs`); no crate mints
//! AWS-shaped keys. STS calls go through `aws-sdk-sts` with its retries
//! disabled, so that one backoff policy (the manager's, on the injected
//! clock) governs retries.

mod config;
mod index;
mod manager;
mod mint;
mod record;
mod sts;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, CredentialsConfig, DEFAULT_MINTED_LIFETIME_SECS, DEFAULT_MINTED_REFRESH_BEFORE_SECS,
    DEFAULT_STATIC_WINDOW_SECS, DEFAULT_STS_DURATION_SECS, DEFAULT_STS_REFRESH_BEFORE_SECS,
    MIN_MINTED_REFRESH_BEFORE_SECS, MIN_STATIC_WINDOW_SECS, MIN_STS_REFRESH_BEFORE_SECS, ProviderConfig,
    STS_DURATION_RANGE,
};
pub use index::MintedIndex;
pub use manager::{
    CredentialManager, ERROR_CODE_PENDING, ERROR_CODE_UNAUTHORIZED, ERROR_CODE_UNAVAILABLE,
    InstanceCredentials, ManagerOptions, RoleSet,
};
pub use mint::{RandomError, TOKEN_PREFIX, mint};
pub use record::{IDENTITY_ROLE_NAME, MINTED_PREFIX, MintedRecord, RoleDelivery, minted_key};
