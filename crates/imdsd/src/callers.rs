//! Who may call the control API: the long-term keys of the config file, and
//! role credentials that instances read from IMDS, which authenticate as
//! their role with the role's policy and `ec2:RoleDelivery` telling whether
//! they came through IMDSv1 (`1.0`) or IMDSv2 (`2.0`). Both sets are swapped
//! whole when the config file is reloaded (SIGHUP).

use arc_swap::ArcSwap;
use imds_control::{Caller, CredentialSource, StaticCredential, StaticCredentials};
use imds_credentials::MintedIndex;
use imds_policy::Policy;
use std::collections::HashMap;
use std::sync::Arc;

/// The reloadable part: keys and role policies.
struct Rules {
    statics: StaticCredentials,
    role_policies: HashMap<String, Arc<Policy>>,
}

/// The control plane's callers.
pub struct Callers {
    minted: MintedIndex,
    rules: ArcSwap<Rules>,
    /// What a role without a configured policy gets: nothing, as an IAM role
    /// without policies.
    deny_all: Arc<Policy>,
}

/// A role with no policy may do nothing (IAM's implicit deny, made explicit
/// because an empty policy list means "allow everything" to the control plane).
const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

fn rules(statics: &[StaticCredential], role_policies: HashMap<String, Policy>) -> Rules {
    Rules {
        statics: StaticCredentials::new(statics),
        role_policies: role_policies.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
    }
}

impl Callers {
    /// Callers from `statics` and from `minted`, with `role_policies` by role name.
    pub fn new(
        minted: MintedIndex,
        statics: &[StaticCredential],
        role_policies: HashMap<String, Policy>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            minted,
            rules: ArcSwap::from_pointee(rules(statics, role_policies)),
            deny_all: Arc::new(Policy::parse(DENY_ALL)?),
        })
    }

    /// Replaces the keys and role policies (config reload).
    pub fn reload(&self, statics: &[StaticCredential], role_policies: HashMap<String, Policy>) {
        self.rules.store(Arc::new(rules(statics, role_policies)));
    }
}

impl CredentialSource for Callers {
    fn lookup(&self, access_key_id: &str) -> Option<Caller> {
        let rules = self.rules.load();
        if let Some(caller) = rules.statics.lookup(access_key_id) {
            return Some(caller);
        }
        let record = self.minted.lookup(access_key_id)?;
        let policy = rules.role_policies.get(&record.role_name).unwrap_or(&self.deny_all);
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
