//! Instance metadata options: the settings `ModifyInstanceMetadataOptions`
//! changes and the data plane enforces.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An option value was not one of the allowed spellings or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Value ({value}) for parameter {parameter} is invalid.")]
pub struct InvalidOptionValue {
    /// The API member name, e.g. `HttpTokens`.
    pub parameter: &'static str,
    /// The value as received.
    pub value: String,
}

/// `HttpTokens`: whether IMDSv1 (token-less) requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpTokens {
    /// IMDSv1 and IMDSv2 both served.
    #[default]
    Optional,
    /// Only requests with a valid session token are served.
    Required,
}

impl HttpTokens {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

impl FromStr for HttpTokens {
    type Err = InvalidOptionValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            _ => Err(InvalidOptionValue { parameter: "HttpTokens", value: s.to_owned() }),
        }
    }
}

impl fmt::Display for HttpTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `enabled` / `disabled` switches (`HttpEndpoint`, `HttpProtocolIpv6`,
/// `InstanceMetadataTags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enabled {
    /// `enabled`
    Enabled,
    /// `disabled`
    Disabled,
}

impl Enabled {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }

    /// `true` for `enabled`.
    pub fn is_enabled(self) -> bool {
        self == Self::Enabled
    }

    /// Parses the wire spelling, naming `parameter` in the error.
    pub fn parse(parameter: &'static str, s: &str) -> Result<Self, InvalidOptionValue> {
        match s {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            _ => Err(InvalidOptionValue { parameter, value: s.to_owned() }),
        }
    }
}

impl fmt::Display for Enabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `HttpPutResponseHopLimit`: the IP TTL of the token response, 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct HopLimit(u8);

impl HopLimit {
    /// The smallest hop limit: the token cannot cross a router.
    pub const MIN: u8 = 1;
    /// The largest hop limit EC2 accepts.
    pub const MAX: u8 = 64;
    /// The service default.
    pub const DEFAULT: HopLimit = HopLimit(1);

    /// Validates a hop limit given as an integer of any width.
    pub fn new(value: i64) -> Result<Self, InvalidOptionValue> {
        match u8::try_from(value) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidOptionValue { parameter: "HttpPutResponseHopLimit", value: value.to_string() }),
        }
    }

    /// The hop limit as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for HopLimit {
    type Error = InvalidOptionValue;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        Self::new(i64::from(v))
    }
}

impl From<HopLimit> for u8 {
    fn from(h: HopLimit) -> u8 {
        h.0
    }
}

impl Default for HopLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The metadata options of one instance, all members always present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataOptions {
    /// `HttpTokens`
    pub http_tokens: HttpTokens,
    /// `HttpPutResponseHopLimit`
    pub http_put_response_hop_limit: HopLimit,
    /// `HttpEndpoint`
    pub http_endpoint: Enabled,
    /// `HttpProtocolIpv6`
    pub http_protocol_ipv6: Enabled,
    /// `InstanceMetadataTags`
    pub instance_metadata_tags: Enabled,
}

impl Default for MetadataOptions {
    /// EC2's service defaults: IMDSv1 allowed, hop limit 1, endpoint on,
    /// IPv6 endpoint off, tags off.
    fn default() -> Self {
        Self {
            http_tokens: HttpTokens::Optional,
            http_put_response_hop_limit: HopLimit::DEFAULT,
            http_endpoint: Enabled::Enabled,
            http_protocol_ipv6: Enabled::Disabled,
            instance_metadata_tags: Enabled::Disabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_limit_bounds() {
        assert!(HopLimit::new(0).is_err());
        assert!(HopLimit::new(65).is_err());
        assert!(HopLimit::new(-1).is_err());
        assert_eq!(HopLimit::new(1).map(HopLimit::get), Ok(1));
        assert_eq!(HopLimit::new(64).map(HopLimit::get), Ok(64));
    }

    #[test]
    fn enums_parse_case_sensitively() {
        assert_eq!("required".parse::<HttpTokens>(), Ok(HttpTokens::Required));
        assert!("Required".parse::<HttpTokens>().is_err());
        assert!(Enabled::parse("HttpEndpoint", "Enabled").is_err());
        let err = Enabled::parse("HttpEndpoint", "on").unwrap_err();
        assert_eq!(err.to_string(), "Value (on) for parameter HttpEndpoint is invalid.");
    }

    #[test]
    fn options_round_trip_through_json() {
        let o = MetadataOptions::default();
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<MetadataOptions>(&json).unwrap(), o);
        assert!(
            serde_json::from_str::<MetadataOptions>(
                &json.replace("\"http_put_response_hop_limit\":1", "\"http_put_response_hop_limit\":0")
            )
            .is_err()
        );
    }
}
