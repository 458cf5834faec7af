//! The TOML configuration file, parsed once into typed settings. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded store.
    pub data_dir: Option<PathBuf>,
    /// `[data_plane]`
    #[serde(default)]
    pub data_plane: DataPlaneConfig,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[tokens]`
    #[serde(default)]
    pub tokens: TokensConfig,
    /// `[control]`
    #[serde(default)]
    pub control: ControlConfig,
    /// `[credentials]`: role credential providers (`[credentials.default]`,
    /// `[credentials.roles.<role-name>]`).
    #[serde(default)]
    pub credentials: imds_credentials::CredentialsConfig,
}

/// `[data_plane]`: the IMDS endpoint guests call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlaneConfig {
    /// Addresses to listen on (`169.254.169.254:80`, `[fd00:ec2::254]:80`).
    pub listen: Option<Vec<SocketAddr>>,
    /// Seconds a client may take to send a request head.
    pub header_read_timeout_secs: Option<u64>,
}

/// `[limits]`: how much one instance, and all together, may ask of the
/// data plane. Over the request rate an instance gets HTTP 429; over a
/// connection cap its new connections are reset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per instance (default 500).
    pub requests_per_second: Option<std::num::NonZeroU32>,
    /// Burst above the sustained rate (default 1000).
    pub burst: Option<std::num::NonZeroU32>,
    /// Simultaneous connections per instance (default 64).
    pub max_connections_per_instance: Option<usize>,
    /// Simultaneous connections in all (default 16384); above half of it,
    /// each instance is held to its fair share.
    pub max_connections: Option<usize>,
}

impl LimitsConfig {
    /// `defaults` with every value this section sets.
    pub fn apply(&self, defaults: imds_dataplane::Limits) -> imds_dataplane::Limits {
        imds_dataplane::Limits {
            requests_per_second: self.requests_per_second.unwrap_or(defaults.requests_per_second),
            burst: self.burst.unwrap_or(defaults.burst),
            max_connections_per_instance: self
                .max_connections_per_instance
                .unwrap_or(defaults.max_connections_per_instance),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
        }
    }
}

/// `[tokens]`: IMDSv2 session token keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// Make a new sealing key when the current one is this old (default
    /// 86400 = a day); older keys keep opening their tokens until they expire.
    pub rotate_every_secs: Option<u64>,
}

/// `[admin]`: health and metrics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/healthz` and `/metrics`.
    pub listen: Option<SocketAddr>,
}

/// `[control]`: the EC2 / Lightsail API endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Address of the control API.
    pub listen: Option<SocketAddr>,
    /// Region the endpoint serves (default `us-east-1`); requests must be
    /// signed for it.
    pub region: Option<String>,
    /// Account that owns every resource (12 digits; default 123456789012).
    pub account_id: Option<String>,
    /// Pool of private IPv4 addresses for instances launched without one.
    pub subnet: Option<ipnet::Ipv4Net>,
    /// Pool of IPv6 addresses (`Ipv6AddressCount`).
    pub ipv6_subnet: Option<ipnet::Ipv6Net>,
    /// Access keys accepted by the control API.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    /// IAM policy file (JSON, relative to the config file) of each instance
    /// role, by role name: what an instance may do on the control API with
    /// the role credentials it got from IMDS. A role not listed may do
    /// nothing.
    #[serde(default)]
    pub role_policies: std::collections::BTreeMap<String, PathBuf>,
    /// Sustained requests per second allowed per access key (and per
    /// source address for requests that fail authentication); over it,
    /// callers get their protocol's throttling error. `0` turns the limit
    /// off. Default 100. Reloaded on SIGHUP.
    pub requests_per_second: Option<f64>,
    /// Requests a key may send at once above the sustained rate (the
    /// bucket size). Default 1000. Reloaded on SIGHUP.
    pub burst: Option<u32>,
    /// Deadline of one request (reading the body, handling, answering),
    /// in seconds; a late request gets a retryable 5xx and its connection
    /// is closed. Default 30. Reloaded on SIGHUP.
    pub request_timeout_secs: Option<u64>,
    /// Time a client has to send a complete request head, and the longest
    /// a kept-alive connection may idle, in seconds. Default 10. Reloaded on
    /// SIGHUP (for new connections).
    pub header_read_timeout_secs: Option<u64>,
}

impl ControlConfig {
    /// The listener limits: these settings over the defaults.
    pub fn limits(&self) -> imds_control::ControlLimits {
        let mut limits = imds_control::ControlLimits::default();
        if let Some(rps) = self.requests_per_second {
            limits.requests_per_second = rps;
        }
        if let Some(burst) = self.burst {
            limits.burst = burst;
        }
        if let Some(secs) = self.request_timeout_secs {
            limits.request_timeout = std::time::Duration::from_secs(secs);
        }
        if let Some(secs) = self.header_read_timeout_secs {
            limits.header_read_timeout = std::time::Duration::from_secs(secs);
        }
        limits
    }
}

/// One `[[control.credentials]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// `AKIA…`
    pub access_key_id: String,
    /// The secret.
    pub secret_access_key: String,
    /// IAM policy document (JSON file, relative to the config file);
    /// absent = allow everything.
    pub policy: Option<PathBuf>,
    /// Principal the key acts as (`aws:PrincipalARN`); default
    /// `arn:aws:iam::<account>:user/<access key id>`.
    pub principal_arn: Option<String>,
}

impl std::fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("access_key_id", &self.access_key_id)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not readable.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not our keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with line and column.
        message: String,
    },
    /// Values that parse but make no sense.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(path, &text)?;
        // Policy files are named relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for c in &mut config.control.credentials {
            if let Some(p) = c.policy.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
        for p in config.control.role_policies.values_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
        Ok(config)
    }

    /// Parses and validates the text of a config file (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid =
            |message: &str| ConfigError::Invalid { path: path.to_owned(), message: message.to_owned() };
        config.credentials.validate().map_err(|e| invalid(&format!("credentials: {e}")))?;
        for (i, c) in config.control.credentials.iter().enumerate() {
            if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
                return Err(invalid(&format!(
                    "control.credentials[{i}]: access_key_id and secret_access_key must not be empty"
                )));
            }
        }
        if config.limits.max_connections_per_instance == Some(0) || config.limits.max_connections == Some(0) {
            return Err(invalid("limits: connection caps must be at least 1"));
        }
        if config.tokens.rotate_every_secs.is_some_and(|s| s < 60) {
            return Err(invalid("tokens.rotate_every_secs must be at least 60"));
        }
        if config.control.requests_per_second.is_some_and(|r| !(r.is_finite() && r >= 0.0)) {
            return Err(invalid("control.requests_per_second must be a number, at least 0 (0 = no limit)"));
        }
        if config.control.burst == Some(0) {
            return Err(invalid("control.burst must be at least 1"));
        }
        if config.control.request_timeout_secs == Some(0)
            || config.control.header_read_timeout_secs == Some(0)
        {
            return Err(invalid(
                "control.request_timeout_secs and header_read_timeout_secs must be at least 1",
            ));
        }
        if config.data_plane.header_read_timeout_secs == Some(0) {
            return Err(invalid("data_plane.header_read_timeout_secs must be at least 1"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert!(c.data_plane.listen.is_none());
        assert!(c.data_dir.is_none());
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
data_dir = "/var/lib/imdsd"
[data_plane]
listen = ["169.254.169.254:80", "[fd00:ec2::254]:80"]
header_read_timeout_secs = 5
[admin]
listen = "127.0.0.1:9773"
[control]
listen = "127.0.0.1:8773"
region = "eu-west-1"
subnet = "10.20.0.0/16"
[[control.credentials]]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
policy = "admin.json"
[credentials.default]
provider = "minted"
lifetime_secs = 21600
refresh_before_secs = 3600
[credentials.roles.bridge-role]
provider = "static"
access_key_id = "AKIABRIDGEEXAMPLE000"
secret_access_key = "bridge-secret"
"#,
        )
        .unwrap();
        assert_eq!(c.data_plane.listen.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.credentials.provider_for("bridge-role").name(), "static");
        assert_eq!(c.credentials.provider_for("other").name(), "minted");
        assert_eq!(c.control.credentials.len(), 1);
        assert_eq!(c.control.subnet, "10.20.0.0/16".parse().ok());
        assert!(!format!("{c:?}").contains("wJalrXUtnFEMI"), "secrets never in Debug output");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = parse("[data_plane]\nlisten_on = []\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_on`"), "{err}");
        assert!(err.contains("test.toml"), "{err}");
        let err = parse("[dataplane]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `dataplane`"), "{err}");
    }

    proptest::proptest! {
        /// Whatever the file holds, parsing answers Ok or a clear error, never a panic.
        #[test]
        fn parse_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        /// Values of the right type but any size are validated, not trusted.
        #[test]
        fn numeric_settings_never_panic(rps in proptest::num::u64::ANY, conns in proptest::num::u64::ANY, rot in proptest::num::u64::ANY) {
            let text = format!("[limits]\nrequests_per_second = {rps}\nmax_connections = {conns}\n[tokens]\nrotate_every_secs = {rot}\n");
            let _ = parse(&text);
        }
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/imdsd.toml"));
        let c = Config::load(path).unwrap();
        assert_eq!(c.control.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.tokens.rotate_every_secs, Some(86_400));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse("[data_plane]\nlisten = [\"nowhere\"]\n").is_err());
        assert!(parse("[credentials.default]\nprovider = \"minted\"\nlifetime_secs = 60\n").is_err());
        assert!(parse("[credentials.default]\nprovider = \"minted\"\nlifetime_secs = 3600\nrefresh_before_secs = 3600\n").is_err());
        assert!(parse("[credentials.roles.r]\nprovider = \"magic\"\n").is_err());
        assert!(parse("[data_plane]\nheader_read_timeout_secs = 0\n").is_err());
        assert!(parse("[[control.credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"\"\n").is_err());
        assert!(parse("[control]\nsubnet = \"10.0.0.0/33\"\n").is_err());
        assert!(parse("[control]\nrequests_per_second = -1\n").is_err());
        assert!(parse("[control]\nburst = 0\n").is_err());
        assert!(parse("[control]\nrequest_timeout_secs = 0\n").is_err());
        assert!(parse("[control]\nheader_read_timeout_secs = 0\n").is_err());
    }

    #[test]
    fn control_limits_default_and_override() {
        let d = parse("").unwrap().control.limits();
        assert_eq!(d, imds_control::ControlLimits::default());
        let c = parse("[control]\nrequests_per_second = 5\nburst = 10\nrequest_timeout_secs = 3\nheader_read_timeout_secs = 2\n")
            .unwrap()
            .control
            .limits();
        assert_eq!((c.requests_per_second, c.burst), (5.0, 10));
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(3));
        assert_eq!(c.header_read_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            parse("[control]\nrequests_per_second = 0.5\n").unwrap().control.limits().requests_per_second,
            0.5
        );
    }
}
