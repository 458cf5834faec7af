//! Every error a client of the EC2 Query API can see: its AWS code, HTTP
//! status and message are decided here and nowhere else, and rendered as
//! EC2's error document (`<Response><Errors><Error>…`).
//!
//! Protocol-independent failures of the store operations ([`OpError`]) are
//! mapped to EC2 errors here too; the Lightsail protocol maps the same
//! [`OpError`]s in its own module. This module does not decide *when* an
//! error happens (the parser, the authoriser and the actions do).

use crate::ops::OpError;
use crate::xml::escape;
use http::StatusCode;
use imds_core::options::InvalidOptionValue;

/// A client-visible EC2 error: code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The AWS error code (`InvalidParameterValue`, …).
    pub code: &'static str,
    /// The human-readable message, AWS wording where known.
    pub message: String,
    /// The HTTP status it is sent with; never 200.
    pub status: StatusCode,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { code, message: message.into(), status: StatusCode::BAD_REQUEST }
}

/// Joins ids the way EC2 lists them in messages: `i-a, i-b`.
fn joined(ids: &[String]) -> String {
    ids.join(", ")
}

impl ApiError {
    /// `DryRunOperation` (412): the request would have succeeded.
    pub fn dry_run_ok() -> Self {
        Self {
            code: "DryRunOperation",
            message: "Request would have succeeded, but DryRun flag is set.".to_owned(),
            status: StatusCode::PRECONDITION_FAILED,
        }
    }

    /// `UnauthorizedOperation` (403): a policy denied the request.
    pub fn unauthorized() -> Self {
        Self {
            code: "UnauthorizedOperation",
            message: "You are not authorized to perform this operation.".to_owned(),
            status: StatusCode::FORBIDDEN,
        }
    }

    /// `AuthFailure` (401) for an unknown access key or missing signature.
    pub fn auth_failure() -> Self {
        Self::auth_failure_with("AWS was not able to validate the provided access credentials")
    }

    /// `AuthFailure` (401) with a specific message (wrong region or
    /// service in the credential scope).
    pub fn auth_failure_with(message: impl Into<String>) -> Self {
        Self { code: "AuthFailure", message: message.into(), status: StatusCode::UNAUTHORIZED }
    }

    /// A signature-verification failure with the code and status the
    /// verifier chose (`SignatureDoesNotMatch`, `RequestExpired`, …).
    pub fn signature(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error())
            .unwrap_or(StatusCode::UNAUTHORIZED);
        Self { code, message: message.into(), status }
    }

    /// `InvalidInstanceID.NotFound`, singular or plural wording.
    pub fn instance_not_found(ids: &[String]) -> Self {
        let message = if ids.len() == 1 {
            format!("The instance ID '{}' does not exist", joined(ids))
        } else {
            format!("The instance IDs '{}' do not exist", joined(ids))
        };
        bad("InvalidInstanceID.NotFound", message)
    }

    /// `InvalidInstanceID.Malformed`.
    pub fn instance_malformed(id: &str) -> Self {
        bad("InvalidInstanceID.Malformed", format!("Invalid id: \"{id}\""))
    }

    /// `InvalidAMIID.NotFound`.
    pub fn image_not_found(ids: &[String]) -> Self {
        bad("InvalidAMIID.NotFound", format!("The image id '[{}]' does not exist", joined(ids)))
    }

    /// `InvalidAMIID.Malformed`.
    pub fn image_malformed(id: &str) -> Self {
        bad("InvalidAMIID.Malformed", format!("Invalid id: \"{id}\" (expecting \"ami-...\")"))
    }

    /// `InvalidAMIName.Duplicate`.
    pub fn image_name_duplicate(name: &str, existing: &str) -> Self {
        bad("InvalidAMIName.Duplicate", format!("AMI name {name} is already in use by AMI {existing}"))
    }

    /// `InvalidKeyPair.NotFound`.
    pub fn key_pair_not_found(name: &str) -> Self {
        bad("InvalidKeyPair.NotFound", format!("The key pair '{name}' does not exist"))
    }

    /// `InvalidKeyPair.Duplicate`.
    pub fn key_pair_duplicate(name: &str) -> Self {
        bad("InvalidKeyPair.Duplicate", format!("The keypair '{name}' already exists."))
    }

    /// `InvalidKeyPair.Format`.
    pub fn key_pair_format(message: impl Into<String>) -> Self {
        bad("InvalidKeyPair.Format", message)
    }

    /// `InvalidParameterValue` with a free-form message.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        bad("InvalidParameterValue", message)
    }

    /// `InvalidParameterValue` in EC2's generic wording:
    /// `Value (x) for parameter Name is invalid.`
    pub fn invalid_parameter(parameter: &str, value: &str) -> Self {
        Self::invalid_value(format!("Value ({value}) for parameter {parameter} is invalid."))
    }

    /// `InvalidParameterCombination`.
    pub fn invalid_combination(message: impl Into<String>) -> Self {
        bad("InvalidParameterCombination", message)
    }

    /// `MissingParameter`.
    pub fn missing_parameter(name: &str) -> Self {
        bad("MissingParameter", format!("The request must contain the parameter {name}"))
    }

    /// `UnknownParameter`.
    pub fn unknown_parameter(name: &str) -> Self {
        bad("UnknownParameter", format!("The parameter {name} is not recognized"))
    }

    /// `MissingAction`: no `Action` parameter at all.
    pub fn missing_action() -> Self {
        bad("MissingAction", "The request must contain the parameter Action")
    }

    /// `InvalidAction`: an `Action` this service does not have.
    pub fn invalid_action(action: &str) -> Self {
        bad("InvalidAction", format!("The action {action} is not valid for this web service."))
    }

    /// `NoSuchVersion`: a `Version` other than `2016-11-15`.
    pub fn no_such_version(version: &str) -> Self {
        bad("NoSuchVersion", format!("The requested version ({version}) of service AmazonEC2 does not exist"))
    }

    /// `IncorrectInstanceState` with the message for the situation.
    pub fn incorrect_instance_state(message: impl Into<String>) -> Self {
        bad("IncorrectInstanceState", message)
    }

    /// `InvalidID`: a resource id that is not an id of anything taggable.
    pub fn invalid_id(id: &str) -> Self {
        bad("InvalidID", format!("The ID '{id}' is not valid"))
    }

    /// `TagLimitExceeded`.
    pub fn tag_limit_exceeded() -> Self {
        bad("TagLimitExceeded", "You have exceeded the number of tags allowed per resource (50).")
    }

    /// `InvalidIPAddress.InUse`.
    pub fn address_in_use(ip: &str) -> Self {
        bad("InvalidIPAddress.InUse", format!("Address {ip} is in use."))
    }

    /// `InsufficientFreeAddressesInSubnet`.
    pub fn insufficient_addresses(subnet: &str) -> Self {
        bad(
            "InsufficientFreeAddressesInSubnet",
            format!(
                "There are not enough free addresses in subnet '{subnet}' to satisfy the requested number of instances."
            ),
        )
    }

    /// `IdempotentParameterMismatch`: a client token reused with other
    /// parameters.
    pub fn idempotent_mismatch() -> Self {
        bad(
            "IdempotentParameterMismatch",
            "The client token you have provided is associated with a request that had different parameters.",
        )
    }

    /// `InvalidNetworkInterfaceID.NotFound`.
    pub fn network_interface_not_found(id: &str) -> Self {
        bad("InvalidNetworkInterfaceID.NotFound", format!("The networkInterface ID '{id}' does not exist"))
    }

    /// `Unsupported`: valid EC2 input this emulation does not implement.
    pub fn unsupported(message: impl Into<String>) -> Self {
        bad("Unsupported", message)
    }

    /// `RequestEntityTooLarge` (413): the body exceeds the configured bound.
    pub fn body_too_large(limit: usize) -> Self {
        Self {
            code: "RequestEntityTooLarge",
            message: format!("The request body exceeds the limit of {limit} bytes."),
            status: StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// `UnsupportedHttpVerb` (405): neither `POST` nor `GET`.
    pub fn method_not_allowed(method: &str) -> Self {
        Self {
            code: "UnsupportedHttpVerb",
            message: format!("The HTTP verb {method} is not supported; use POST."),
            status: StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// `InsufficientInstanceCapacity` (500, a server error SDKs retry): no
    /// host agent is alive to place an instance on.
    pub fn insufficient_instance_capacity() -> Self {
        Self {
            code: "InsufficientInstanceCapacity",
            message: "There is no capacity for the requested instances: no host agent (imdsd agent) is alive. Start one and try again.".to_owned(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `InvalidHostID.NotFound`: a `HostId` that no live host has.
    pub fn host_not_found(id: &str) -> Self {
        bad("InvalidHostID.NotFound", format!("The host ID '{id}' does not exist"))
    }

    /// `InternalError` (500): a server fault; details are logged, not sent.
    pub fn internal() -> Self {
        Self {
            code: "InternalError",
            message: "An internal error has occurred".to_owned(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `Unavailable` (503): temporary; SDKs retry.
    pub fn unavailable() -> Self {
        Self {
            code: "Unavailable",
            message: "The service is unavailable. Please try again shortly.".to_owned(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `RequestLimitExceeded` (503): the caller's request-rate bucket is
    /// empty. botocore retries it with backoff (`_retry.json`, and its
    /// standard mode counts it as throttling).
    pub fn request_limit_exceeded() -> Self {
        Self {
            code: "RequestLimitExceeded",
            message: "Request limit exceeded.".to_owned(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `ServiceUnavailable` (503, "a temporary failure of the server" in
    /// EC2's catalogue, which has no timeout code): the request did not
    /// complete within the deadline. SDKs retry 503s.
    pub fn request_timeout(secs: f64) -> Self {
        Self {
            code: "ServiceUnavailable",
            message: format!("The request did not complete within {secs} seconds."),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The EC2 error document (docs/protocol/control-plane.md#query-errors).
    pub fn to_xml(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            escape(self.code),
            escape(&self.message),
            escape(request_id)
        )
    }
}

impl From<InvalidOptionValue> for ApiError {
    fn from(e: InvalidOptionValue) -> Self {
        Self::invalid_value(e.to_string())
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::InstanceNotFound(ids) => Self::instance_not_found(&ids),
            OpError::IncorrectInstanceState(message) => Self::incorrect_instance_state(message),
            OpError::AddressInUse(ip) => Self::address_in_use(&ip),
            OpError::InsufficientAddresses(subnet) => Self::insufficient_addresses(&subnet),
            OpError::InvalidValue(message) => Self::invalid_value(message),
            OpError::InvalidCombination(message) => Self::invalid_combination(message),
            OpError::ImdsTagKey(key) => Self::invalid_value(imds_core::instance::imds_tag_key_error(&key)),
            OpError::TagLimitExceeded => Self::tag_limit_exceeded(),
            OpError::ImageNotFound(id) => Self::image_not_found(&[id]),
            OpError::ImageNameDuplicate { name, existing } => Self::image_name_duplicate(&name, &existing),
            OpError::KeyPairNotFound(name) => Self::key_pair_not_found(&name),
            OpError::KeyPairDuplicate(name) => Self::key_pair_duplicate(&name),
            OpError::NameInUse(names) => {
                Self::invalid_value(format!("Some names are already in use: {}", joined(&names)))
            }
            OpError::IdempotentMismatch => Self::idempotent_mismatch(),
            OpError::HttpTokensEnforced => Self::invalid_value(
                "The account requires HttpTokens to be 'required' (HttpTokensEnforced is enabled).",
            ),
            OpError::Unsupported(message) => Self::unsupported(message),
            OpError::Contention => {
                tracing::warn!("too many concurrent writers; giving up");
                Self::unavailable()
            }
            OpError::NoLiveHost => Self::insufficient_instance_capacity(),
            OpError::HostNotFound(id) => Self::host_not_found(&id),
            OpError::Store(e) => {
                tracing::error!(error = %e, "store operation failed");
                match e {
                    imds_store::StoreError::Unavailable(_) => Self::unavailable(),
                    _ => Self::internal(),
                }
            }
            OpError::Random => {
                tracing::error!("the system random number generator failed");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document_matches_ec2_layout() {
        let e = ApiError::instance_not_found(&["i-0123456789abcdef0".to_owned()]);
        assert_eq!(
            e.to_xml("ea966190-f9aa-478e-9ede-example"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-0123456789abcdef0' does not exist</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn not_found_has_plural_form() {
        let e = ApiError::instance_not_found(&["i-1234abcd".into(), "i-5678abcd".into()]);
        assert_eq!(e.message, "The instance IDs 'i-1234abcd, i-5678abcd' do not exist");
    }

    #[test]
    fn messages_are_escaped() {
        let e = ApiError::invalid_parameter("HttpTokens", "<&>");
        assert!(e.to_xml("r").contains("Value (&lt;&amp;&gt;) for parameter HttpTokens is invalid."));
        assert!(ApiError::invalid_id("x'y").to_xml("r").contains("The ID 'x'y' is not valid"));
    }

    #[test]
    fn statuses_follow_the_catalogue() {
        assert_eq!(ApiError::dry_run_ok().status.as_u16(), 412);
        assert_eq!(ApiError::unauthorized().status.as_u16(), 403);
        assert_eq!(ApiError::auth_failure().status.as_u16(), 401);
        assert_eq!(ApiError::invalid_action("Foo").status.as_u16(), 400);
        assert_eq!(ApiError::internal().status.as_u16(), 500);
        assert_eq!(ApiError::unavailable().status.as_u16(), 503);
        assert_eq!(ApiError::body_too_large(1).status.as_u16(), 413);
        assert_eq!(ApiError::request_limit_exceeded().status.as_u16(), 503);
        assert_eq!(ApiError::request_timeout(1.0).status.as_u16(), 503);
        // A verifier can never turn an error into a success or a 5xx.
        assert_eq!(ApiError::signature("X", 200, "m").status.as_u16(), 401);
        assert_eq!(ApiError::signature("X", 403, "m").status.as_u16(), 403);
    }

    #[test]
    fn option_errors_keep_core_wording() {
        let e: ApiError = "maybe".parse::<imds_core::HttpTokens>().unwrap_err().into();
        assert_eq!(e.code, "InvalidParameterValue");
        assert_eq!(e.message, "Value (maybe) for parameter HttpTokens is invalid.");
    }
}
