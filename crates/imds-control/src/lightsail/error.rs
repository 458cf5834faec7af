//! Every error a Lightsail client can see: the error shape (`__type`), the
//! HTTP status, and the `code` / `docs` / `message` / `tip` members every
//! Lightsail error shape has. Protocol-independent [`OpError`]s are mapped
//! here, as [`crate::error`] maps them for EC2.
//!
//! botocore reads the shape name from `__type` and the text from `message`
//! (docs/protocol/control-plane.md#lightsail-protocol); `code` is a
//! finer-grained reason (`DoesNotExist`, `AlreadyExists`, …) for humans and
//! scripts reading the raw body.

use crate::error::ApiError;
use crate::ops::OpError;
use http::StatusCode;
use serde::Serialize;

/// The error shapes of the Lightsail model this endpoint answers with, plus
/// the protocol-level `UnknownOperationException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A value that does not conform to the validation rules (400).
    InvalidInput,
    /// A resource that does not exist (400).
    NotFound,
    /// A policy does not allow the call (400).
    AccessDenied,
    /// The request is not (validly) signed (400).
    Unauthenticated,
    /// The operation could not be carried out (400).
    OperationFailure,
    /// A server fault (500, the only `fault` shape; SDKs retry it).
    Service,
    /// `X-Amz-Target` names no operation of this endpoint (400).
    UnknownOperation,
    /// The caller's request-rate bucket is empty (400, AWS's front-end
    /// `ThrottlingException`, not in the Lightsail model; botocore retries
    /// it as throttling).
    Throttling,
}

impl Shape {
    /// The `__type` value.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInputException",
            Self::NotFound => "NotFoundException",
            Self::AccessDenied => "AccessDeniedException",
            Self::Unauthenticated => "UnauthenticatedException",
            Self::OperationFailure => "OperationFailureException",
            Self::Service => "ServiceException",
            Self::UnknownOperation => "com.amazon.coral.service#UnknownOperationException",
            Self::Throttling => "ThrottlingException",
        }
    }

    /// The HTTP status: 500 for `ServiceException`, 400 otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Service => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn tip(self) -> &'static str {
        match self {
            Self::InvalidInput => "Please check the request parameters against the Lightsail API reference.",
            Self::NotFound => "Please check that the resource name and the AWS Region are correct.",
            Self::AccessDenied => "Please check the IAM policies of the caller.",
            Self::Unauthenticated => "Please check the access key, the secret key and the signing region.",
            Self::OperationFailure => "Please try again later.",
            Self::Service => "Please try again.",
            Self::UnknownOperation => "",
            Self::Throttling => "Please slow down and retry with backoff.",
        }
    }
}

/// A client-visible Lightsail error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsError {
    /// The error shape.
    pub shape: Shape,
    /// The `code` member (`DoesNotExist`, `InvalidInput`, …).
    pub code: String,
    /// The `message` member.
    pub message: String,
}

impl std::fmt::Display for LsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.shape.type_name(), self.code, self.message)
    }
}

impl std::error::Error for LsError {}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    code: &'a str,
    docs: String,
    message: &'a str,
    tip: &'a str,
}

impl LsError {
    fn new(shape: Shape, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { shape, code: code.into(), message: message.into() }
    }

    /// `InvalidInputException` with code `InvalidInput`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Shape::InvalidInput, "InvalidInput", message)
    }

    /// `InvalidInputException` with a specific code.
    pub fn invalid_code(code: &str, message: impl Into<String>) -> Self {
        Self::new(Shape::InvalidInput, code, message)
    }

    /// `InvalidInputException` for a required member that is absent.
    pub fn missing(member: &str) -> Self {
        Self::invalid_code("MissingParameter", format!("Missing required parameter in input: \"{member}\""))
    }

    /// `InvalidInputException` for a member of the wrong JSON type.
    pub fn wrong_type(member: &str, expected: &str) -> Self {
        Self::invalid_code(
            "InvalidParameterType",
            format!("Invalid type for parameter {member}, expected {expected}."),
        )
    }

    /// `InvalidInputException` for a value outside an enum.
    pub fn not_in_enum(member: &str, value: &str, allowed: &[&str]) -> Self {
        Self::invalid(format!(
            "Invalid value '{value}' for parameter {member}. Valid values: {}.",
            allowed.join(", ")
        ))
    }

    /// `NotFoundException` (`DoesNotExist`) for a named resource:
    /// `The Instance does not exist: web-1`.
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(Shape::NotFound, "DoesNotExist", format!("The {kind} does not exist: {name}"))
    }

    /// `AccessDeniedException` in IAM's wording.
    pub fn access_denied(principal: &str, action: &str, resource: &str) -> Self {
        Self::new(
            Shape::AccessDenied,
            "AccessDenied",
            format!("User: {principal} is not authorized to perform: {action} on resource: {resource}"),
        )
    }

    /// `UnauthenticatedException` carrying the signature check's reason.
    pub fn unauthenticated(e: &ApiError) -> Self {
        Self::new(Shape::Unauthenticated, e.code, e.message.clone())
    }

    /// `ServiceException` (500): details are logged, not sent.
    pub fn internal() -> Self {
        Self::new(Shape::Service, "InternalError", "An internal error has occurred. Please try again.")
    }

    /// `ServiceException` (500) for a temporary condition SDKs retry.
    pub fn unavailable() -> Self {
        Self::new(Shape::Service, "Unavailable", "The service is busy. Please try again.")
    }

    /// `ThrottlingException` (400): the caller's request-rate bucket is empty.
    pub fn throttled() -> Self {
        Self::new(Shape::Throttling, "TooManyRequests", "Rate exceeded")
    }

    /// `ServiceException` (500): the request did not complete within the
    /// deadline; SDKs retry it.
    pub fn request_timeout(secs: f64) -> Self {
        Self::new(
            Shape::Service,
            "RequestTimeout",
            format!("The request did not complete within {secs} seconds."),
        )
    }

    /// `UnknownOperationException` for an unknown `X-Amz-Target`.
    pub fn unknown_operation() -> Self {
        Self::new(Shape::UnknownOperation, "", "")
    }

    /// Maps a store-level failure; `name` is the instance name the request
    /// addressed, for not-found messages.
    pub fn from_op(e: OpError, name: Option<&str>) -> Self {
        match e {
            OpError::InstanceNotFound(ids) => {
                let shown = name.map_or_else(|| ids.join(", "), str::to_owned);
                Self::not_found("Instance", &shown)
            }
            OpError::KeyPairNotFound(key) => Self::not_found("KeyPair", &key),
            OpError::ImageNotFound(image) => Self::not_found("Blueprint", &image),
            OpError::NameInUse(names) => Self::invalid_code(
                "AlreadyExists",
                format!("Some names are already in use: {}", names.join(", ")),
            ),
            OpError::IncorrectInstanceState(message) => {
                Self::new(Shape::OperationFailure, "IncorrectState", message)
            }
            OpError::AddressInUse(ip) => {
                Self::new(Shape::OperationFailure, "AddressInUse", format!("Address {ip} is in use."))
            }
            OpError::InsufficientAddresses(_) => Self::new(
                Shape::OperationFailure,
                "InsufficientCapacity",
                "There are not enough free addresses to create the requested instances.",
            ),
            OpError::InvalidValue(message) | OpError::InvalidCombination(message) => Self::invalid(message),
            OpError::ImdsTagKey(key) => Self::invalid(imds_core::instance::imds_tag_key_error(&key)),
            OpError::TagLimitExceeded => {
                Self::invalid_code("TagLimitExceeded", "A resource can have at most 50 tags.")
            }
            OpError::ImageNameDuplicate { name, .. } | OpError::KeyPairDuplicate(name) => {
                Self::invalid_code("AlreadyExists", format!("Some names are already in use: {name}"))
            }
            OpError::IdempotentMismatch => Self::invalid("The request conflicts with an earlier request."),
            OpError::HttpTokensEnforced => Self::invalid_code(
                "HttpTokensEnforced",
                "The account requires httpTokens to be 'required' (HttpTokensEnforced is enabled).",
            ),
            OpError::Unsupported(message) => Self::invalid_code("Unsupported", message),
            OpError::Contention => {
                tracing::warn!("too many concurrent writers; giving up");
                Self::unavailable()
            }
            OpError::NoLiveHost => Self::new(
                Shape::OperationFailure,
                "InsufficientCapacity",
                "No host is available to create the requested instances.",
            ),
            OpError::HostNotFound(host) => Self::not_found("Host", &host),
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

    /// Maps a usage-query failure: bad periods and ranges are
    /// `InvalidInputException` with the usage crate's message, a store
    /// failure a `ServiceException`.
    pub fn from_usage(e: imds_usage::UsageError) -> Self {
        match e.aws_code() {
            Some(_) => Self::invalid(e.to_string()),
            None => {
                tracing::error!(error = %e, "reading usage data failed");
                match e {
                    imds_usage::UsageError::Store(imds_store::StoreError::Unavailable(_)) => {
                        Self::unavailable()
                    }
                    _ => Self::internal(),
                }
            }
        }
    }

    /// The awsJson error body. `UnknownOperationException` is the bare
    /// `{"__type": …}` AWS's front end sends; every Lightsail shape has
    /// `code`, `docs`, `message` and `tip`. `operation` picks the `docs` page.
    pub fn to_json(&self, operation: Option<&str>) -> String {
        if self.shape == Shape::UnknownOperation {
            return serde_json::json!({ "__type": self.shape.type_name() }).to_string();
        }
        let docs = match operation {
            Some(op) => {
                format!("https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/API_{op}.html")
            }
            None => "https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/Welcome.html".to_owned(),
        };
        let body = Body {
            kind: self.shape.type_name(),
            code: &self.code,
            docs,
            message: &self.message,
            tip: self.shape.tip(),
        };
        serde_json::to_string(&body)
            .unwrap_or_else(|_| format!("{{\"__type\":\"{}\"}}", self.shape.type_name()))
    }
}

impl From<OpError> for LsError {
    /// [`LsError::from_op`] without an instance name (for
    /// [`crate::ops::Ops::update`], whose error type must come from
    /// [`OpError`]).
    fn from(e: OpError) -> Self {
        Self::from_op(e, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_member_of_the_error_shapes() {
        let e = LsError::not_found("Instance", "web-1");
        let v: serde_json::Value = serde_json::from_str(&e.to_json(Some("GetInstance"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "__type": "NotFoundException",
                "code": "DoesNotExist",
                "docs": "https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/API_GetInstance.html",
                "message": "The Instance does not exist: web-1",
                "tip": "Please check that the resource name and the AWS Region are correct."
            })
        );
        assert_eq!(e.shape.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn only_service_exception_is_a_fault() {
        assert_eq!(LsError::internal().shape.status().as_u16(), 500);
        for s in [
            Shape::InvalidInput,
            Shape::NotFound,
            Shape::AccessDenied,
            Shape::Unauthenticated,
            Shape::OperationFailure,
            Shape::UnknownOperation,
            Shape::Throttling,
        ] {
            assert_eq!(s.status().as_u16(), 400, "{s:?}");
        }
        assert_eq!(
            LsError::unknown_operation().to_json(None),
            r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#
        );
    }

    #[test]
    fn usage_errors_are_invalid_input_or_service_faults() {
        let e = LsError::from_usage(imds_usage::UsageError::InvalidPeriod(90));
        assert_eq!((e.shape, e.code.as_str()), (Shape::InvalidInput, "InvalidInput"));
        assert!(e.message.contains("multiple of 60"), "{}", e.message);
        let e =
            LsError::from_usage(imds_usage::UsageError::Store(imds_store::StoreError::Backend("x".into())));
        assert_eq!(e.shape, Shape::Service);
    }

    #[test]
    fn op_errors_name_the_instance() {
        let e = LsError::from_op(OpError::InstanceNotFound(vec!["i-1234abcd".into()]), Some("web-1"));
        assert_eq!((e.shape, e.message.as_str()), (Shape::NotFound, "The Instance does not exist: web-1"));
        let e = LsError::from_op(OpError::NameInUse(vec!["a1".into(), "b2".into()]), None);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("AlreadyExists", "Some names are already in use: a1, b2")
        );
    }
}
