//! EC2 resource identifiers and their validation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid id: \"{0}\"")]
pub struct MalformedId(pub String);

/// `true` for `<prefix>-` followed by 8 or 17 lower-case hex digits, the two
/// lengths EC2 has used for every resource type.
pub fn is_valid_resource_id(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    (rest.len() == 8 || rest.len() == 17)
        && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Formats 17 hex digits from random bytes as `<prefix>-<hex>`; the caller
/// supplies the randomness so this crate stays free of I/O.
pub fn resource_id_from_bytes(prefix: &str, random: [u8; 9]) -> String {
    let mut hex = String::with_capacity(18);
    for b in random {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(17);
    format!("{prefix}-{hex}")
}

/// An instance identifier, `i-` + 8 or 17 hex digits.
///
/// Shared text (`Arc<str>`): an id is cloned into every per-instance map
/// (agent, data plane, credentials, usage) and snapshot; a clone is a
/// reference count, not one more allocation per map (issue #9). Equality,
/// order, hash and `Debug` are those of the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// Validates and wraps an instance id.
    pub fn parse(s: &str) -> Result<Self, MalformedId> {
        if is_valid_resource_id("i", s) { Ok(Self(Arc::from(s))) } else { Err(MalformedId(s.to_owned())) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = MalformedId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_short_and_long_ids() {
        assert!(InstanceId::parse("i-1234abcd").is_ok());
        assert!(InstanceId::parse("i-1234567890abcdef0").is_ok());
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "i-", "i-123", "i-1234567890ABCDEF0", "x-1234abcd", "i-1234abcg", "i1234abcd"] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_valid() {
        let id = resource_id_from_bytes("i", [0xab; 9]);
        assert_eq!(id, "i-ababababababababa");
        assert!(InstanceId::parse(&id).is_ok());
    }
}
