//! The STS provider: `AssumeRole` against a configured STS-compatible
//! endpoint with the static credentials of a bridge account.
//!
//! Owns the SDK client and the classification of its failures into "STS
//! refused" (served as `AssumeRoleUnauthorizedAccess`) and "unavailable"
//! (transient). Scheduling, retries and serving belong to the manager; the
//! SDK's own retries are disabled so that one policy (the manager's backoff)
//! applies.

use crate::config::ProviderConfig;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use imds_core::RoleCredentials;
use std::time::Duration;

/// Time allowed to connect to the STS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one whole `AssumeRole` call.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Why `AssumeRole` gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// STS answered with a client error (access denied, invalid key, bad
    /// request): retrying will not help until someone fixes IAM.
    Refused {
        /// STS error code, e.g. `AccessDenied`.
        code: String,
        /// Full detail for the log (never served to the guest).
        detail: String,
    },
    /// No usable answer (connection refused, timeout, 5xx, throttling).
    Unavailable {
        /// Full detail for the log.
        detail: String,
    },
}

/// One configured STS role: a client plus the call parameters.
pub(crate) struct StsProvider {
    client: aws_sdk_sts::Client,
    role_arn: String,
    duration_secs: u32,
    external_id: Option<String>,
    /// Fetch anew when less than this is left.
    pub(crate) refresh_before_secs: u64,
}

impl StsProvider {
    /// A client for a [`ProviderConfig::Sts`], signing with the bridge
    /// account's keys; `None` for the other providers.
    pub(crate) fn from_config(config: &ProviderConfig) -> Option<Self> {
        let ProviderConfig::Sts {
            endpoint,
            region,
            role_arn,
            access_key_id,
            secret_access_key,
            duration_secs,
            refresh_before_secs,
            external_id,
        } = config
        else {
            return None;
        };
        let credentials = Credentials::new(
            access_key_id.as_str(),
            secret_access_key.as_str(),
            None,
            None,
            "imdsd-sts-bridge",
        );
        let sdk_config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint.as_str())
            .region(Region::new(region.clone()))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .build();
        Some(Self {
            client: aws_sdk_sts::Client::from_conf(sdk_config),
            role_arn: role_arn.clone(),
            duration_secs: *duration_secs,
            external_id: external_id.clone(),
            refresh_before_secs: *refresh_before_secs,
        })
    }

    /// The role this provider assumes.
    pub(crate) fn role_arn(&self) -> &str {
        &self.role_arn
    }

    /// One `AssumeRole` call; `now_secs` becomes `LastUpdated`.
    pub(crate) async fn assume(
        &self,
        session_name: &str,
        now_secs: u64,
    ) -> Result<RoleCredentials, FetchError> {
        let duration = i32::try_from(self.duration_secs).unwrap_or(i32::MAX);
        let mut request = self
            .client
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(session_name)
            .duration_seconds(duration);
        if let Some(external_id) = &self.external_id {
            request = request.external_id(external_id);
        }
        let output = request.send().await.map_err(classify)?;
        let Some(c) = output.credentials() else {
            return Err(FetchError::Unavailable {
                detail: "AssumeRole answered without Credentials".to_owned(),
            });
        };
        let expiration = u64::try_from(c.expiration().secs()).unwrap_or(0);
        if expiration <= now_secs {
            return Err(FetchError::Unavailable {
                detail: format!("AssumeRole returned credentials that expired at {expiration}"),
            });
        }
        Ok(RoleCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            token: c.session_token().to_owned(),
            last_updated: now_secs,
            expiration,
        })
    }
}

/// Client errors other than throttling are refusals; everything else
/// (transport, timeout, 5xx, unparsable answers) is transient.
fn classify<E, R>(err: SdkError<E, R>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let code = ctx.err().code().unwrap_or("Unknown").to_owned();
            let throttled = status == 429 || code.contains("Throttl") || code == "RequestLimitExceeded";
            if (400..500).contains(&status) && !throttled {
                FetchError::Refused { code, detail }
            } else {
                FetchError::Unavailable { detail }
            }
        }
        _ => FetchError::Unavailable { detail },
    }
}

/// The HTTP status of a raw response, abstracted so [`classify`] stays
/// generic over the SDK's response type.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_sts::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}
