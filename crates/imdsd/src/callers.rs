//! Role credentials as control-plane callers: an instance that fetched
//! minted credentials from IMDS can call the control API as its role, with
//! the role's policy and `ec2:RoleDelivery` telling whether the keys came
//! through IMDSv1 (`1.0`) or IMDSv2 (`2.0`).

use imds_control::{Caller, CredentialSource};
use imds_credentials::MintedIndex;
use imds_policy::Policy;
use std::collections::HashMap;
use std::sync::Arc;

/// Minted role credentials, looked up in the store-backed index.
pub struct RoleCallers {
    minted: MintedIndex,
    /// Identity policies of roles, from `[control.role_policies]`.
    role_policies: HashMap<String, Arc<Policy>>,
    /// What a role without a configured policy gets: nothing, as an IAM role
    /// without policies.
    deny_all: Arc<Policy>,
}

/// A role with no policy may do nothing (IAM's implicit deny, made explicit
/// because an empty policy list means "allow everything" to the control plane).
const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

impl RoleCallers {
    /// Callers from `minted`, with `role_policies` by role name.
    pub fn new(minted: MintedIndex, role_policies: HashMap<String, Policy>) -> anyhow::Result<Self> {
        Ok(Self {
            minted,
            role_policies: role_policies.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            deny_all: Arc::new(Policy::parse(DENY_ALL)?),
        })
    }
}

impl CredentialSource for RoleCallers {
    fn lookup(&self, access_key_id: &str) -> Option<Caller> {
        let record = self.minted.lookup(access_key_id)?;
        let policy = self.role_policies.get(&record.role_name).unwrap_or(&self.deny_all);
        Some(Caller {
            access_key_id: record.access_key_id,
            secret_access_key: record.secret_access_key,
            principal_arn: record.principal_arn,
            policies: vec![Arc::clone(policy)],
            role_delivery: record.role_delivery.map(|d| d.as_str().to_owned()),
            session_token: Some(record.session_token),
        })
    }
}
