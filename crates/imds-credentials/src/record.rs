//! The store record of a minted credential set, so that `imdsd`'s control
//! plane can authenticate requests signed with it.
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `secrets/minted/<ACCESS_KEY_ID>` | JSON [`MintedRecord`] | the [`CredentialManager`](crate::CredentialManager) that minted it |
//!
//! This module owns the key layout and the record shape; the manager
//! decides when records are written and deleted, and
//! [`MintedIndex`](crate::MintedIndex) reads them.

use imds_core::InstanceId;
use imds_core::instance::partition_of;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Prefix of minted credential records: `secrets/minted/<ACCESS_KEY_ID>`.
pub const MINTED_PREFIX: &str = "secrets/minted/";

/// Role name of the instance identity credentials
/// (`identity-credentials/ec2/security-credentials/ec2-instance`).
pub const IDENTITY_ROLE_NAME: &str = "aws:ec2-instance";

/// `secrets/minted/<access_key_id>`
pub fn minted_key(access_key_id: &str) -> String {
    format!("{MINTED_PREFIX}{access_key_id}")
}

/// Which metadata request delivered a role credential set: the value of the
/// IAM condition key `ec2:RoleDelivery` for requests signed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoleDelivery {
    /// Delivered to token-less (IMDSv1) requests: `1.0`.
    #[serde(rename = "1.0")]
    V1,
    /// Delivered to token-authenticated (IMDSv2) requests: `2.0`.
    #[serde(rename = "2.0")]
    V2,
}

impl RoleDelivery {
    /// `1.0` or `2.0`, as `ec2:RoleDelivery` compares it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }

    /// The suffix of an STS `RoleSessionName` for this delivery.
    pub(crate) fn session_suffix(self) -> &'static str {
        match self {
            Self::V1 => "imdsv1",
            Self::V2 => "imdsv2",
        }
    }
}

/// One minted set as stored at `secrets/minted/<access_key_id>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedRecord {
    /// `ASIA…`; also the last part of the key.
    pub access_key_id: String,
    /// The secret the control plane verifies signatures with.
    pub secret_access_key: String,
    /// The session token requests must carry (`X-Amz-Security-Token`).
    pub session_token: String,
    /// Unix seconds after which the set is refused.
    pub expiration: u64,
    /// The instance the set was delivered to.
    pub instance_id: InstanceId,
    /// The role (`aws:ec2-instance` for identity credentials).
    pub role_name: String,
    /// `1.0` / `2.0` for role credentials; absent for identity credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_delivery: Option<RoleDelivery>,
    /// `arn:<partition>:sts::<account>:assumed-role/<role>/<instance-id>`.
    pub principal_arn: String,
    /// The host whose manager minted the set; a restarted manager deletes
    /// its predecessor's records once they expire.
    #[serde(default)]
    pub host_id: String,
}

impl fmt::Debug for MintedRecord {
    /// Never prints the secret or the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedRecord")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .field("instance_id", &self.instance_id)
            .field("role_name", &self.role_name)
            .field("role_delivery", &self.role_delivery)
            .field("principal_arn", &self.principal_arn)
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

impl MintedRecord {
    /// Whether the set is still accepted at `now_secs`.
    pub fn is_valid_at(&self, now_secs: u64) -> bool {
        now_secs < self.expiration
    }
}

/// Partition and account of an ARN such as
/// `arn:aws:iam::123456789012:instance-profile/name`.
pub(crate) fn arn_partition_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some(_service), Some(_region), Some(account)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!partition.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then_some((partition, account))
}

/// `arn:<partition>:sts::<account>:assumed-role/<role>/<instance-id>`.
///
/// Partition and account come from the instance profile ARN when it has
/// them (the role lives in the profile's account), else from the instance.
pub(crate) fn principal_arn(
    profile_arn: Option<&str>,
    owner_id: &str,
    region: &str,
    role_name: &str,
    instance_id: &InstanceId,
) -> String {
    let (partition, account) =
        profile_arn.and_then(arn_partition_account).unwrap_or((partition_of(region), owner_id));
    format!("arn:{partition}:sts::{account}:assumed-role/{role_name}/{instance_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_shape() {
        let r = MintedRecord {
            access_key_id: "ASIAAAAAAAAAAAAAAAAA".into(),
            secret_access_key: "sec".into(),
            session_token: "tok".into(),
            expiration: 100,
            instance_id: InstanceId::parse("i-1234abcd").unwrap(),
            role_name: "web".into(),
            role_delivery: Some(RoleDelivery::V1),
            principal_arn: "arn:aws:sts::123456789012:assumed-role/web/i-1234abcd".into(),
            host_id: "h-1".into(),
        };
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["role_delivery"], "1.0");
        assert_eq!(json["instance_id"], "i-1234abcd");
        let identity = MintedRecord { role_delivery: None, ..r.clone() };
        let json = serde_json::to_value(&identity).unwrap();
        assert!(json.get("role_delivery").is_none());
        let back: MintedRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, identity);
        let shown = format!("{r:?}");
        assert!(shown.contains("ASIAAAAAAAAAAAAAAAAA") && !shown.contains("sec\"") && !shown.contains("tok"));
        assert!(r.is_valid_at(99) && !r.is_valid_at(100));
    }

    #[test]
    fn principal_arns() {
        let id = InstanceId::parse("i-1234abcd").unwrap();
        assert_eq!(
            principal_arn(
                Some("arn:aws-cn:iam::111122223333:instance-profile/p"),
                "123456789012",
                "cn-north-1",
                "web",
                &id
            ),
            "arn:aws-cn:sts::111122223333:assumed-role/web/i-1234abcd"
        );
        assert_eq!(
            principal_arn(None, "123456789012", "us-east-1", IDENTITY_ROLE_NAME, &id),
            "arn:aws:sts::123456789012:assumed-role/aws:ec2-instance/i-1234abcd"
        );
        assert_eq!(
            principal_arn(Some("garbage"), "123456789012", "us-gov-west-1", "r", &id),
            "arn:aws-us-gov:sts::123456789012:assumed-role/r/i-1234abcd"
        );
        assert_eq!(minted_key("ASIAX"), "secrets/minted/ASIAX");
        // The records are secrets: under the prefix nothing logs or serves.
        assert!(MINTED_PREFIX.starts_with(imds_store::records::SECRETS_PREFIX));
    }
}
