//! Temporary role credentials as the data plane serves them.

use serde::{Deserialize, Serialize};

/// One set of temporary credentials (`AccessKeyId`, `SecretAccessKey`,
/// `Token`) with its validity window. The data plane renders it into the
/// JSON document of `iam/security-credentials/<role>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCredentials {
    /// `ASIA…`, 20 characters.
    pub access_key_id: String,
    /// 40 characters of `[A-Za-z0-9/+]`.
    pub secret_access_key: String,
    /// Session token, opaque.
    pub token: String,
    /// When these were issued, Unix seconds (`LastUpdated`).
    pub last_updated: u64,
    /// When they stop working, Unix seconds (`Expiration`).
    pub expiration: u64,
}

impl std::fmt::Debug for RoleCredentials {
    /// Never prints the secret or the token: credentials must not reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("last_updated", &self.last_updated)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = RoleCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s3cr3t".into(),
            token: "t0k3n".into(),
            last_updated: 1,
            expiration: 2,
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("ASIAEXAMPLE"));
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k3n"));
    }
}
