//! [`MintedVerifier`]: how the control plane authenticates minted role and
//! identity credentials, without any per-set state.
//!
//! It owns the decision "does this session token still stand for a live
//! set": the token opens with the minting key (so it was minted here and
//! not altered), it has not expired, and the instance it was delivered to
//! still runs the same incarnation with the same instance profile (read
//! from the store at every call: a stop, a terminate or a profile change
//! revokes at once). It gives back what SigV4 verification and policy
//! evaluation need (the re-derived secret, the principal ARN, the role and
//! `ec2:RoleDelivery`). It does not check signatures or policies.

use crate::mint::{MintingKey, MintingKeyError, OpenError, SetKind};
use crate::principal::RoleDelivery;
use imds_core::{InstanceId, InstanceRecord};
use imds_store::records::get_instance;
use imds_store::{Store, StoreError};
use std::fmt;
use std::sync::Arc;

/// Why a presented minted set is refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not one we minted, or was altered.
    #[error(transparent)]
    Token(#[from] OpenError),
    /// The set expired.
    #[error("the credentials expired")]
    Expired,
    /// The instance no longer exists.
    #[error("the instance no longer exists")]
    InstanceGone,
    /// The instance is stopped, stopping or terminated.
    #[error("the instance is not running")]
    NotRunning,
    /// The instance was stopped and started since (a new run).
    #[error("the credentials belong to an earlier run of the instance")]
    OtherRun,
    /// The instance profile changed (role credentials only).
    #[error("the instance profile changed")]
    ProfileChanged,
    /// The instance record could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A minted set that still stands: who signs with it and how.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedCaller {
    /// `ASIA…`.
    pub access_key_id: String,
    /// The secret requests must be signed with.
    pub secret_access_key: String,
    /// `arn:<partition>:sts::<account>:assumed-role/<role>/<instance-id>`.
    pub principal_arn: String,
    /// The role (`aws:ec2-instance` for identity credentials).
    pub role_name: String,
    /// `ec2:RoleDelivery`; `None` for identity credentials.
    pub role_delivery: Option<RoleDelivery>,
    /// The instance the set was delivered to.
    pub instance_id: InstanceId,
    /// Unix seconds after which the set is refused.
    pub expiration: u64,
}

impl fmt::Debug for MintedCaller {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedCaller")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .field("role_delivery", &self.role_delivery)
            .field("instance_id", &self.instance_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Authenticates minted credentials against the minting key and the
/// instance records in the store.
pub struct MintedVerifier {
    key: Arc<MintingKey>,
    store: Arc<dyn Store>,
}

impl fmt::Debug for MintedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedVerifier").field("key", &self.key).finish_non_exhaustive()
    }
}

impl MintedVerifier {
    /// A verifier with the fleet's minting key from `store` (created there
    /// if no process did yet).
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, MintingKeyError> {
        let key = MintingKey::load_or_create(store.as_ref()).await?;
        Ok(Self::new(Arc::new(key), store))
    }

    /// A verifier with a key already loaded.
    pub fn new(key: Arc<MintingKey>, store: Arc<dyn Store>) -> Self {
        Self { key, store }
    }

    /// The set `session_token` stands for, if it still stands at `now_secs`
    /// (Unix seconds). One store read of the instance record.
    pub async fn verify(&self, session_token: &str, now_secs: u64) -> Result<MintedCaller, VerifyError> {
        let opened = self.key.open(session_token)?;
        let spec = &opened.spec;
        if now_secs >= spec.expiration {
            return Err(VerifyError::Expired);
        }
        let record = get_instance(self.store.as_ref(), &spec.instance_id).await?.map(|(r, _)| r);
        check_run(spec.kind, spec, record.as_ref())?;
        Ok(MintedCaller {
            access_key_id: opened.access_key_id,
            secret_access_key: opened.secret_access_key,
            principal_arn: opened.spec.principal_arn,
            role_name: opened.spec.role_name,
            role_delivery: opened.spec.kind.delivery(),
            instance_id: opened.spec.instance_id,
            expiration: opened.spec.expiration,
        })
    }
}

/// Whether the run a set was minted for is still the instance's: served
/// state (pending or running, as the agent serves it), same incarnation,
/// and for role sets the same instance profile. The same rules under which
/// the agent keeps serving a set.
fn check_run(
    kind: SetKind,
    spec: &crate::mint::SetSpec,
    record: Option<&InstanceRecord>,
) -> Result<(), VerifyError> {
    let record = record.ok_or(VerifyError::InstanceGone)?;
    if !record.state.is_served() {
        return Err(VerifyError::NotRunning);
    }
    if record.incarnation != spec.incarnation {
        return Err(VerifyError::OtherRun);
    }
    if kind != SetKind::Identity {
        let same = record.iam_instance_profile.as_ref().is_some_and(|p| {
            p.arn == spec.profile_arn && p.id == spec.profile_id && p.role_name == spec.role_name
        });
        if !same {
            return Err(VerifyError::ProfileChanged);
        }
    }
    Ok(())
}
