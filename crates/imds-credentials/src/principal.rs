//! Who a minted set belongs to: the delivery (`ec2:RoleDelivery`), the
//! identity role's name and the principal ARN a set authenticates as.
//!
//! This module owns those names and the ARN rules; the sets themselves are
//! [`crate::mint`]'s.

use imds_core::InstanceId;
use imds_core::instance::partition_of;
use serde::{Deserialize, Serialize};

/// Role name of the instance identity credentials
/// (`identity-credentials/ec2/security-credentials/ec2-instance`).
pub const IDENTITY_ROLE_NAME: &str = "aws:ec2-instance";

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
    }
}
