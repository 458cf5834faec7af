//! The credentials section of the `imdsd` config file: which provider
//! serves each role, and the validation of those settings.
//!
//! This module owns the typed settings and their rules; it does not read
//! files (the `imdsd` binary parses the TOML and embeds
//! [`CredentialsConfig`]). Every value is checked while it is deserialised,
//! so an invalid provider or an out-of-range lifetime is a config error with
//! a message naming the field, never a surprise at run time.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Default validity of minted credentials: 6 hours, as observed on EC2.
pub const DEFAULT_MINTED_LIFETIME_SECS: u64 = 6 * 3600;
/// Default margin before expiry at which minted credentials are replaced.
pub const DEFAULT_MINTED_REFRESH_BEFORE_SECS: u64 = 3600;
/// Smallest refresh margin for minted credentials: botocore refreshes 15
/// minutes ahead of `Expiration`, so a set must be replaced before that.
pub const MIN_MINTED_REFRESH_BEFORE_SECS: u64 = 900;
/// Default served lifetime window of static credentials (now + 6 h, rolling).
pub const DEFAULT_STATIC_WINDOW_SECS: u64 = 6 * 3600;
/// Smallest served window of static credentials; they are re-announced when
/// half of it has passed, so clients always see at least 15 minutes left.
pub const MIN_STATIC_WINDOW_SECS: u64 = 1800;
/// Default `DurationSeconds` of STS `AssumeRole`.
pub const DEFAULT_STS_DURATION_SECS: u32 = 3600;
/// STS `AssumeRole` accepts `DurationSeconds` in this range.
pub const STS_DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43_200;
/// Default margin before expiry at which STS credentials are fetched anew.
pub const DEFAULT_STS_REFRESH_BEFORE_SECS: u64 = 900;
/// Smallest refresh margin for STS credentials: EC2 makes new credentials
/// available at least five minutes before the old ones expire.
pub const MIN_STS_REFRESH_BEFORE_SECS: u64 = 300;

/// A settings value that breaks a rule; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the credentials of one role come from.
///
/// In the config file this is a table tagged by `provider = "minted" |
/// "static" | "sts"`; unknown fields and unknown providers are refused.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawProvider")]
pub enum ProviderConfig {
    /// `imdsd` issues the keys itself (random, `ASIA…`); they authenticate
    /// to `imdsd`'s own control plane and nowhere else.
    Minted {
        /// Validity of a new set (`Expiration = issue + lifetime`).
        lifetime_secs: u64,
        /// A set with less than this left is replaced; at least
        /// [`MIN_MINTED_REFRESH_BEFORE_SECS`] and below `lifetime_secs`.
        refresh_before_secs: u64,
    },
    /// Fixed keys from the config file. The IMDSv1 and IMDSv2 sets are the
    /// *same* keys (nothing can tell the two deliveries apart), and they are
    /// not minted (no session token of ours), so `imdsd`'s control plane
    /// does not accept them unless it knows them otherwise.
    Static {
        /// Served as `AccessKeyId`.
        access_key_id: String,
        /// Served as `SecretAccessKey`.
        secret_access_key: String,
        /// Served as `Token`; without one the `Token` field is empty, which
        /// botocore and the JS SDK skip when signing (set one for other SDKs).
        session_token: Option<String>,
        /// Served window: `Expiration = LastUpdated + window`, re-announced
        /// (new `LastUpdated`) when half of it has passed, because static
        /// keys never really expire. Default [`DEFAULT_STATIC_WINDOW_SECS`].
        expiration_secs: Option<u64>,
    },
    /// Real temporary credentials from an STS-compatible endpoint, obtained
    /// with `AssumeRole` by a bridge account: one call per delivery
    /// (`RoleSessionName` `<instance-id>-imdsv1` / `-imdsv2`).
    Sts {
        /// Endpoint URL, e.g. `http://127.0.0.1:5000` or
        /// `https://sts.eu-west-1.amazonaws.com`.
        endpoint: String,
        /// Signing region.
        region: String,
        /// The role to assume.
        role_arn: String,
        /// Bridge account access key.
        access_key_id: String,
        /// Bridge account secret key.
        secret_access_key: String,
        /// `DurationSeconds`, within [`STS_DURATION_RANGE`].
        duration_secs: u32,
        /// Fetch anew when less than this is left; at least
        /// [`MIN_STS_REFRESH_BEFORE_SECS`] and below `duration_secs`.
        refresh_before_secs: u64,
        /// `ExternalId` required by the role's trust policy, if any.
        external_id: Option<String>,
    },
}

impl Default for ProviderConfig {
    /// Minted credentials with the EC2-like defaults (6 h, replaced 1 h
    /// before expiry).
    fn default() -> Self {
        Self::Minted {
            lifetime_secs: DEFAULT_MINTED_LIFETIME_SECS,
            refresh_before_secs: DEFAULT_MINTED_REFRESH_BEFORE_SECS,
        }
    }
}

impl fmt::Debug for ProviderConfig {
    /// Never prints a secret key or a session token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Minted { lifetime_secs, refresh_before_secs } => f
                .debug_struct("Minted")
                .field("lifetime_secs", lifetime_secs)
                .field("refresh_before_secs", refresh_before_secs)
                .finish(),
            Self::Static { access_key_id, expiration_secs, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("expiration_secs", expiration_secs)
                .finish_non_exhaustive(),
            Self::Sts {
                endpoint,
                region,
                role_arn,
                access_key_id,
                duration_secs,
                refresh_before_secs,
                ..
            } => f
                .debug_struct("Sts")
                .field("endpoint", endpoint)
                .field("region", region)
                .field("role_arn", role_arn)
                .field("access_key_id", access_key_id)
                .field("duration_secs", duration_secs)
                .field("refresh_before_secs", refresh_before_secs)
                .finish_non_exhaustive(),
        }
    }
}

impl ProviderConfig {
    /// The provider's name as written in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Minted { .. } => "minted",
            Self::Static { .. } => "static",
            Self::Sts { .. } => "sts",
        }
    }

    /// Checks every rule of this provider's settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |msg: String| Err(ConfigError(format!("provider \"{}\": {msg}", self.name())));
        match self {
            Self::Minted { lifetime_secs, refresh_before_secs } => {
                if *refresh_before_secs < MIN_MINTED_REFRESH_BEFORE_SECS {
                    return err(format!(
                        "refresh_before_secs = {refresh_before_secs} is too small: it must be at least \
                         {MIN_MINTED_REFRESH_BEFORE_SECS} (botocore refreshes 15 minutes before expiry)"
                    ));
                }
                if refresh_before_secs >= lifetime_secs {
                    return err(format!(
                        "refresh_before_secs = {refresh_before_secs} must be smaller than \
                         lifetime_secs = {lifetime_secs}"
                    ));
                }
            }
            Self::Static { access_key_id, secret_access_key, session_token, expiration_secs } => {
                if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return err("access_key_id must be a non-empty alphanumeric key id".to_owned());
                }
                if secret_access_key.is_empty() {
                    return err("secret_access_key must not be empty".to_owned());
                }
                if session_token.as_deref().is_some_and(str::is_empty) {
                    return err("session_token must not be empty (leave it out instead)".to_owned());
                }
                if let Some(window) = expiration_secs
                    && *window < MIN_STATIC_WINDOW_SECS
                {
                    return err(format!(
                        "expiration_secs = {window} is too small: it must be at least {MIN_STATIC_WINDOW_SECS}"
                    ));
                }
            }
            Self::Sts {
                endpoint,
                region,
                role_arn,
                access_key_id,
                secret_access_key,
                duration_secs,
                refresh_before_secs,
                external_id,
            } => {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return err(format!("endpoint {endpoint:?} must be an http:// or https:// URL"));
                }
                if region.is_empty() {
                    return err("region must not be empty".to_owned());
                }
                if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                    return err(format!(
                        "role_arn {role_arn:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"
                    ));
                }
                if access_key_id.is_empty() || secret_access_key.is_empty() {
                    return err("access_key_id and secret_access_key must not be empty".to_owned());
                }
                if !STS_DURATION_RANGE.contains(duration_secs) {
                    return err(format!(
                        "duration_secs = {duration_secs} is outside {}..={}",
                        STS_DURATION_RANGE.start(),
                        STS_DURATION_RANGE.end()
                    ));
                }
                if *refresh_before_secs < MIN_STS_REFRESH_BEFORE_SECS {
                    return err(format!(
                        "refresh_before_secs = {refresh_before_secs} is too small: it must be at least \
                         {MIN_STS_REFRESH_BEFORE_SECS}"
                    ));
                }
                if *refresh_before_secs >= u64::from(*duration_secs) {
                    return err(format!(
                        "refresh_before_secs = {refresh_before_secs} must be smaller than \
                         duration_secs = {duration_secs}"
                    ));
                }
                if external_id.as_deref().is_some_and(|e| e.len() < 2 || e.len() > 1224) {
                    return err("external_id must be 2 to 1224 characters long".to_owned());
                }
            }
        }
        Ok(())
    }
}

/// Which provider serves which role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "RawCredentialsConfig")]
pub struct CredentialsConfig {
    /// For every role not listed in `roles` (default: minted).
    pub default: ProviderConfig,
    /// By role name (the role of the instance profile).
    pub roles: BTreeMap<String, ProviderConfig>,
}

impl CredentialsConfig {
    /// The provider of `role_name`.
    pub fn provider_for(&self, role_name: &str) -> &ProviderConfig {
        self.roles.get(role_name).unwrap_or(&self.default)
    }

    /// Checks every provider and every role name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate().map_err(|e| ConfigError(format!("credentials.default: {e}")))?;
        for (role, provider) in &self.roles {
            if !is_role_name(role) {
                return Err(ConfigError(format!(
                    "credentials.roles: {role:?} is not a role name (1 to 64 of letters, digits and +=,.@_-)"
                )));
            }
            provider.validate().map_err(|e| ConfigError(format!("credentials.roles.{role}: {e}")))?;
        }
        Ok(())
    }
}

/// IAM role names: `[\w+=,.@-]{1,64}`.
fn is_role_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn default_minted_lifetime() -> u64 {
    DEFAULT_MINTED_LIFETIME_SECS
}
fn default_minted_refresh() -> u64 {
    DEFAULT_MINTED_REFRESH_BEFORE_SECS
}
fn default_sts_duration() -> u32 {
    DEFAULT_STS_DURATION_SECS
}
fn default_sts_refresh() -> u64 {
    DEFAULT_STS_REFRESH_BEFORE_SECS
}

/// The file shape, before validation.
#[derive(Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase", deny_unknown_fields)]
enum RawProvider {
    Minted {
        #[serde(default = "default_minted_lifetime")]
        lifetime_secs: u64,
        #[serde(default = "default_minted_refresh")]
        refresh_before_secs: u64,
    },
    Static {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default)]
        session_token: Option<String>,
        #[serde(default)]
        expiration_secs: Option<u64>,
    },
    Sts {
        endpoint: String,
        region: String,
        role_arn: String,
        access_key_id: String,
        secret_access_key: String,
        #[serde(default = "default_sts_duration")]
        duration_secs: u32,
        #[serde(default = "default_sts_refresh")]
        refresh_before_secs: u64,
        #[serde(default)]
        external_id: Option<String>,
    },
}

impl TryFrom<RawProvider> for ProviderConfig {
    type Error = ConfigError;

    fn try_from(raw: RawProvider) -> Result<Self, ConfigError> {
        let config = match raw {
            RawProvider::Minted { lifetime_secs, refresh_before_secs } => {
                Self::Minted { lifetime_secs, refresh_before_secs }
            }
            RawProvider::Static { access_key_id, secret_access_key, session_token, expiration_secs } => {
                Self::Static { access_key_id, secret_access_key, session_token, expiration_secs }
            }
            RawProvider::Sts {
                endpoint,
                region,
                role_arn,
                access_key_id,
                secret_access_key,
                duration_secs,
                refresh_before_secs,
                external_id,
            } => Self::Sts {
                endpoint,
                region,
                role_arn,
                access_key_id,
                secret_access_key,
                duration_secs,
                refresh_before_secs,
                external_id,
            },
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentialsConfig {
    #[serde(default)]
    default: ProviderConfig,
    #[serde(default)]
    roles: BTreeMap<String, ProviderConfig>,
}

impl TryFrom<RawCredentialsConfig> for CredentialsConfig {
    type Error = ConfigError;

    fn try_from(raw: RawCredentialsConfig) -> Result<Self, ConfigError> {
        let config = Self { default: raw.default, roles: raw.roles };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<CredentialsConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_config_is_minted_with_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, CredentialsConfig::default());
        assert_eq!(
            c.provider_for("any"),
            &ProviderConfig::Minted { lifetime_secs: 21_600, refresh_before_secs: 3600 }
        );
    }

    #[test]
    fn all_three_providers_parse_with_defaults() {
        let c = parse(
            r#"{
              "default": {"provider": "minted", "lifetime_secs": 7200},
              "roles": {
                "fixed": {"provider": "static", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t"},
                "real": {"provider": "sts", "endpoint": "http://127.0.0.1:5000", "region": "us-east-1",
                         "role_arn": "arn:aws:iam::123456789012:role/real",
                         "access_key_id": "AKIABRIDGE", "secret_access_key": "bridge-secret",
                         "external_id": "ext-1"}
              }
            }"#,
        )
        .unwrap();
        assert_eq!(c.default, ProviderConfig::Minted { lifetime_secs: 7200, refresh_before_secs: 3600 });
        assert!(matches!(
            c.provider_for("fixed"),
            ProviderConfig::Static { session_token: None, expiration_secs: None, .. }
        ));
        match c.provider_for("real") {
            ProviderConfig::Sts { duration_secs, refresh_before_secs, external_id, .. } => {
                assert_eq!((*duration_secs, *refresh_before_secs), (3600, 900));
                assert_eq!(external_id.as_deref(), Some("ext-1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.provider_for("other"), &c.default);
    }

    #[test]
    fn unknown_provider_is_refused_with_the_valid_names() {
        let e = parse(r#"{"roles": {"r": {"provider": "vault"}}}"#).unwrap_err();
        assert!(e.contains("unknown variant `vault`"), "{e}");
        assert!(e.contains("`minted`, `static`, `sts`"), "{e}");
        let e = parse(r#"{"roles": {"r": {"lifetime_secs": 7200}}}"#).unwrap_err();
        assert!(e.contains("missing field `provider`"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse(r#"{"roles": {"r": {"provider": "minted", "lifetime": 7200}}}"#).unwrap_err();
        assert!(e.contains("unknown field `lifetime`"), "{e}");
        let e = parse(r#"{"defaults": {"provider": "minted"}}"#).unwrap_err();
        assert!(e.contains("unknown field `defaults`"), "{e}");
        // A field of another provider is unknown too.
        let e = parse(r#"{"default": {"provider": "minted", "role_arn": "x"}}"#).unwrap_err();
        assert!(e.contains("unknown field `role_arn`"), "{e}");
    }

    #[test]
    fn minted_refresh_rules() {
        let e = parse(r#"{"default": {"provider": "minted", "refresh_before_secs": 600}}"#).unwrap_err();
        assert!(e.contains("refresh_before_secs = 600 is too small"), "{e}");
        let e = parse(
            r#"{"default": {"provider": "minted", "lifetime_secs": 3600, "refresh_before_secs": 3600}}"#,
        )
        .unwrap_err();
        assert!(e.contains("must be smaller than lifetime_secs = 3600"), "{e}");
        assert!(
            parse(
                r#"{"default": {"provider": "minted", "lifetime_secs": 3600, "refresh_before_secs": 900}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn sts_rules() {
        let sts = |extra: &str| {
            parse(&format!(
                r#"{{"roles": {{"r": {{"provider": "sts", "endpoint": "http://127.0.0.1:5000", "region": "us-east-1",
                   "role_arn": "arn:aws:iam::123456789012:role/r", "access_key_id": "AKIA1",
                   "secret_access_key": "x"{extra}}}}}}}"#
            ))
        };
        assert!(sts("").is_ok());
        assert!(
            sts(r#", "duration_secs": 600"#)
                .unwrap_err()
                .contains("duration_secs = 600 is outside 900..=43200")
        );
        assert!(
            sts(r#", "duration_secs": 900"#)
                .unwrap_err()
                .contains("must be smaller than duration_secs = 900")
        );
        assert!(sts(r#", "duration_secs": 900, "refresh_before_secs": 300"#).is_ok());
        assert!(sts(r#", "refresh_before_secs": 60"#).unwrap_err().contains("too small"));
        let e = parse(
            r#"{"roles": {"r": {"provider": "sts", "endpoint": "127.0.0.1:5000", "region": "us-east-1",
               "role_arn": "arn:aws:iam::123456789012:role/r", "access_key_id": "A", "secret_access_key": "x"}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("must be an http:// or https:// URL"), "{e}");
    }

    #[test]
    fn static_rules_and_bad_role_names() {
        let e = parse(
            r#"{"roles": {"r": {"provider": "static", "access_key_id": "AKIA1", "secret_access_key": "x",
               "expiration_secs": 60}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("expiration_secs = 60 is too small"), "{e}");
        let e = parse(r#"{"roles": {"no/slash": {"provider": "minted"}}}"#).unwrap_err();
        assert!(e.contains("\"no/slash\" is not a role name"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        let s = ProviderConfig::Static {
            access_key_id: "AKIAVISIBLE".into(),
            secret_access_key: "hidden-secret".into(),
            session_token: Some("hidden-token".into()),
            expiration_secs: None,
        };
        let t = ProviderConfig::Sts {
            endpoint: "http://x".into(),
            region: "r".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            access_key_id: "AKIABRIDGE".into(),
            secret_access_key: "hidden-bridge".into(),
            duration_secs: 3600,
            refresh_before_secs: 900,
            external_id: Some("hidden-ext".into()),
        };
        let shown = format!("{s:?} {t:?}");
        assert!(shown.contains("AKIAVISIBLE") && shown.contains("AKIABRIDGE"), "{shown}");
        assert!(!shown.contains("hidden"), "{shown}");
    }
}
